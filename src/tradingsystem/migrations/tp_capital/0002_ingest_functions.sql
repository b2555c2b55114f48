-- The ingest rules that must hold under concurrency live next to the data, so that one message costs one
-- round trip and 20 concurrent copies of it serialise on a per-message advisory lock.

-- Re-derive the signal row of one Telegram message from every stored version of it. The result depends only
-- on the set of stored versions, never on their arrival order: an edit that arrives before its original, or
-- a delete before both, ends in the same state as in-order delivery.
CREATE OR REPLACE FUNCTION tp_capital.refresh_signal(p_channel_id text, p_message_id bigint)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_latest   tp_capital.messages%ROWTYPE;
    v_versions integer;
    v_deleted  boolean;
    v_title    text;
    v_id       bigint;
BEGIN
    SELECT count(*) FILTER (WHERE kind <> 'delete'), coalesce(bool_or(kind = 'delete'), false),
           (array_agg(chat_title ORDER BY edit_key DESC) FILTER (WHERE chat_title IS NOT NULL))[1]
      INTO v_versions, v_deleted, v_title
      FROM tp_capital.messages
     WHERE channel_id = p_channel_id AND message_id = p_message_id;

    SELECT * INTO v_latest
      FROM tp_capital.messages
     WHERE channel_id = p_channel_id AND message_id = p_message_id
       AND kind <> 'delete' AND parsed ->> 'kind' = 'signal'
     ORDER BY edit_key DESC, id DESC
     LIMIT 1;

    IF NOT FOUND THEN
        UPDATE tp_capital.signals
           SET deleted = v_deleted OR deleted, revision = greatest(v_versions, 1), updated_at = now()
         WHERE channel_id = p_channel_id AND message_id = p_message_id
        RETURNING id INTO v_id;
        RETURN v_id;
    END IF;

    INSERT INTO tp_capital.signals AS s (
        channel_id, message_id, message_date, channel_title, signal_type, asset, buy_min, buy_max, targets,
        target_final, stop, raw_message, source, revision, deleted)
    VALUES (
        p_channel_id, p_message_id, v_latest.message_date, v_title,
        v_latest.parsed ->> 'signal_type', v_latest.parsed ->> 'asset',
        (v_latest.parsed ->> 'buy_min')::numeric, (v_latest.parsed ->> 'buy_max')::numeric,
        ARRAY(SELECT jsonb_array_elements_text(v_latest.parsed -> 'targets')::numeric),
        (v_latest.parsed ->> 'target_final')::numeric, (v_latest.parsed ->> 'stop')::numeric,
        v_latest.text, v_latest.source, greatest(v_versions, 1), v_deleted)
    ON CONFLICT ON CONSTRAINT signals_message_key DO UPDATE SET
        message_date = EXCLUDED.message_date,
        channel_title = coalesce(EXCLUDED.channel_title, s.channel_title),
        signal_type = EXCLUDED.signal_type, asset = EXCLUDED.asset,
        buy_min = EXCLUDED.buy_min, buy_max = EXCLUDED.buy_max, targets = EXCLUDED.targets,
        target_final = EXCLUDED.target_final, stop = EXCLUDED.stop, raw_message = EXCLUDED.raw_message,
        revision = EXCLUDED.revision, deleted = EXCLUDED.deleted OR s.deleted, updated_at = now()
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;

-- Record an update ("ALVO 1 ATINGIDO") as an event of the latest open signal of its asset in its channel.
CREATE OR REPLACE FUNCTION tp_capital.record_event(p_message tp_capital.messages)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_signal bigint;
BEGIN
    SELECT s.id INTO v_signal
      FROM tp_capital.signals s
     WHERE s.channel_id = p_message.channel_id AND s.asset = p_message.parsed ->> 'asset'
       AND NOT s.deleted AND s.message_date <= p_message.message_date
       AND NOT EXISTS (SELECT 1 FROM tp_capital.signal_events e
                        WHERE e.signal_id = s.id AND e.event IN ('stop_hit', 'closed', 'cancelled')
                          AND e.message_date < p_message.message_date)
     ORDER BY s.message_date DESC, s.id DESC
     LIMIT 1;

    INSERT INTO tp_capital.signal_events (channel_id, message_id, edit_key, message_date, signal_id, asset, event,
                                          target, gain_pct, raw_message)
    VALUES (p_message.channel_id, p_message.message_id, p_message.edit_key, p_message.message_date, v_signal,
            p_message.parsed ->> 'asset', p_message.parsed ->> 'event', (p_message.parsed ->> 'target')::integer,
            (p_message.parsed ->> 'gain_pct')::numeric, p_message.text)
    ON CONFLICT ON CONSTRAINT signal_events_key DO NOTHING;
END
$$;

-- Store one delivered message exactly once and apply it. Returns stored=false for a duplicate delivery.
CREATE OR REPLACE FUNCTION tp_capital.ingest_message(
    p_channel_id text, p_message_id bigint, p_message_date timestamptz, p_text text, p_kind text,
    p_edit_date timestamptz, p_photos jsonb, p_source text, p_chat_title text, p_forwarded_from jsonb,
    p_parsed jsonb)
RETURNS TABLE (stored boolean, raw_id bigint, signal_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_row tp_capital.messages%ROWTYPE;
BEGIN
    -- One message at a time per (channel, message): versions are compared after everything before is visible.
    PERFORM pg_advisory_xact_lock(hashtextextended(p_channel_id || ':' || p_message_id::text, 7240));

    INSERT INTO tp_capital.messages (channel_id, message_id, kind, edit_key, edit_date, message_date, text, photos,
                                     source, chat_title, forwarded_from, parsed)
    VALUES (p_channel_id, p_message_id, p_kind,
            CASE WHEN p_edit_date IS NULL THEN 0 ELSE (extract(epoch FROM p_edit_date) * 1000)::bigint END,
            p_edit_date, p_message_date, p_text, p_photos, p_source, p_chat_title, p_forwarded_from, p_parsed)
    ON CONFLICT ON CONSTRAINT messages_delivery_key DO NOTHING
    RETURNING * INTO v_row;

    IF NOT FOUND THEN
        RETURN QUERY SELECT false, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;

    IF p_kind <> 'delete' AND p_parsed ->> 'kind' = 'update' THEN
        PERFORM tp_capital.record_event(v_row);
    END IF;
    RETURN QUERY SELECT true, v_row.id, tp_capital.refresh_signal(p_channel_id, p_message_id);
END
$$;
