-- How the ingest statements are planned depends on the batch size.
--
-- One message: planning the statements afresh costs more than running them (about 1.5 ms of planning for
-- 0.3 ms of work), so a single delivery uses plans cached per connection. Such a plan may have been made while
-- the tables were still empty, when a sequential scan looks cheapest; it would keep scanning as they grow, so
-- single deliveries run with sequential scans disabled and every table is reached through its indexes.
--
-- A batch: planning is a small part of the work and a plan made for the actual number of rows is much better,
-- so batches are planned every time.
--
-- The choice is made inside `ingest_batch` with transaction-local settings: the API runs each ingest as a
-- statement of its own, so the settings end with it. The helpers become plpgsql so that their plans are cached
-- like the caller's.

DROP FUNCTION IF EXISTS tp_capital.refresh_signals(text[], bigint[]);
DROP FUNCTION IF EXISTS tp_capital.record_events(bigint[]);

CREATE OR REPLACE FUNCTION tp_capital.refresh_signals(p_channel_id text[], p_message_id bigint[])
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    WITH keys AS (
        SELECT DISTINCT channel_id, message_id FROM unnest(p_channel_id, p_message_id) AS k(channel_id, message_id)
    ),
    versions AS (
        SELECT m.* FROM tp_capital.messages m JOIN keys USING (channel_id, message_id)
    ),
    agg AS (
        SELECT channel_id, message_id,
               greatest(count(*) FILTER (WHERE kind <> 'delete'), 1)::integer AS revision,
               coalesce(bool_or(kind = 'delete'), false) AS deleted,
               (array_agg(chat_title ORDER BY edit_key DESC) FILTER (WHERE chat_title IS NOT NULL))[1] AS title
          FROM versions GROUP BY channel_id, message_id
    ),
    latest AS (
        SELECT DISTINCT ON (channel_id, message_id) *
          FROM versions
         WHERE kind <> 'delete' AND parsed ->> 'kind' = 'signal'
         ORDER BY channel_id, message_id, edit_key DESC, id DESC
    ),
    -- A data-modifying CTE always runs to completion, whether or not the statement reads it.
    upserted AS (
        INSERT INTO tp_capital.signals AS s (
            channel_id, message_id, message_date, channel_title, signal_type, asset, buy_min, buy_max, targets,
            target_final, stop, raw_message, source, revision, deleted)
        SELECT l.channel_id, l.message_id, l.message_date, a.title, l.parsed ->> 'signal_type', l.parsed ->> 'asset',
               (l.parsed ->> 'buy_min')::numeric, (l.parsed ->> 'buy_max')::numeric,
               ARRAY(SELECT jsonb_array_elements_text(l.parsed -> 'targets')::numeric),
               (l.parsed ->> 'target_final')::numeric, (l.parsed ->> 'stop')::numeric,
               l.text, l.source, a.revision, a.deleted
          FROM latest l JOIN agg a USING (channel_id, message_id)
        ON CONFLICT ON CONSTRAINT signals_message_key DO UPDATE SET
            message_date = EXCLUDED.message_date,
            channel_title = coalesce(EXCLUDED.channel_title, s.channel_title),
            signal_type = EXCLUDED.signal_type, asset = EXCLUDED.asset,
            buy_min = EXCLUDED.buy_min, buy_max = EXCLUDED.buy_max, targets = EXCLUDED.targets,
            target_final = EXCLUDED.target_final, stop = EXCLUDED.stop, raw_message = EXCLUDED.raw_message,
            revision = EXCLUDED.revision, deleted = EXCLUDED.deleted OR s.deleted, updated_at = now()
        RETURNING s.id
    )
    -- Messages with no version that parses as a signal: an existing row only learns about deletes and revisions.
    UPDATE tp_capital.signals s
       SET deleted = s.deleted OR a.deleted, revision = a.revision, updated_at = now()
      FROM agg a
     WHERE s.channel_id = a.channel_id AND s.message_id = a.message_id
       AND NOT EXISTS (SELECT 1 FROM latest l WHERE l.channel_id = a.channel_id AND l.message_id = a.message_id);
END
$$;

CREATE OR REPLACE FUNCTION tp_capital.record_events(p_ids bigint[])
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tp_capital.signal_events (channel_id, message_id, edit_key, message_date, signal_id, asset, event,
                                          target, gain_pct, raw_message)
    SELECT m.channel_id, m.message_id, m.edit_key, m.message_date,
           (SELECT s.id FROM tp_capital.signals s
             WHERE s.channel_id = m.channel_id AND s.asset = m.parsed ->> 'asset'
               AND NOT s.deleted AND s.message_date <= m.message_date
               AND NOT EXISTS (SELECT 1 FROM tp_capital.signal_events e
                                WHERE e.signal_id = s.id AND e.event IN ('stop_hit', 'closed', 'cancelled')
                                  AND e.message_date < m.message_date)
             ORDER BY s.message_date DESC, s.id DESC LIMIT 1),
           m.parsed ->> 'asset', m.parsed ->> 'event', (m.parsed ->> 'target')::integer,
           (m.parsed ->> 'gain_pct')::numeric, m.text
      FROM tp_capital.messages m
     WHERE m.id = ANY (p_ids) AND m.kind <> 'delete' AND m.parsed ->> 'kind' = 'update'
     ORDER BY m.message_date, m.id
    ON CONFLICT ON CONSTRAINT signal_events_key DO NOTHING;
END
$$;


CREATE OR REPLACE FUNCTION tp_capital.ingest_batch(
    p_channel_id text[], p_message_id bigint[], p_message_date timestamptz[], p_text text[], p_kind text[],
    p_edit_date timestamptz[], p_photos jsonb[], p_source text[], p_chat_title text[], p_forwarded_from jsonb[],
    p_parsed jsonb[])
RETURNS TABLE (ord bigint, stored boolean, signal_id bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_stored_ord bigint[];
    v_stored_id  bigint[];
BEGIN
    -- How this transaction plans the statements below depends on the batch size (see the note at the top).
    IF cardinality(p_channel_id) = 1 THEN
        PERFORM set_config('plan_cache_mode', 'force_generic_plan', true);
        PERFORM set_config('enable_seqscan', 'off', true);
    ELSE
        PERFORM set_config('plan_cache_mode', 'force_custom_plan', true);
    END IF;
    -- Per-message locks, always taken in key order: concurrent batches and single deliveries of the same
    -- message serialise, and never deadlock.
    PERFORM pg_advisory_xact_lock(hashtextextended(k.channel_id || ':' || k.message_id::text, 7240))
       FROM (SELECT DISTINCT c AS channel_id, m AS message_id FROM unnest(p_channel_id, p_message_id) AS u(c, m)
             ORDER BY 1, 2) AS k;

    WITH input AS (
        SELECT u.*, CASE WHEN u.edit_date IS NULL THEN 0
                         ELSE (extract(epoch FROM u.edit_date) * 1000)::bigint END AS edit_key
          FROM unnest(p_channel_id, p_message_id, p_message_date, p_text, p_kind, p_edit_date, p_photos, p_source,
                      p_chat_title, p_forwarded_from, p_parsed) WITH ORDINALITY
               AS u(channel_id, message_id, message_date, text, kind, edit_date, photos, source, chat_title,
                    forwarded_from, parsed, ord)
    ),
    first_of_key AS (
        SELECT DISTINCT ON (channel_id, message_id, kind, edit_key, message_date) *
          FROM input ORDER BY channel_id, message_id, kind, edit_key, message_date, ord
    ),
    inserted AS (
        INSERT INTO tp_capital.messages (channel_id, message_id, kind, edit_key, edit_date, message_date, text,
                                         photos, source, chat_title, forwarded_from, parsed)
        SELECT channel_id, message_id, kind, edit_key, edit_date, message_date, text, coalesce(photos, '[]'),
               source, chat_title, forwarded_from, parsed
          FROM first_of_key ORDER BY ord
        ON CONFLICT ON CONSTRAINT messages_delivery_key DO NOTHING
        RETURNING id, channel_id, message_id, kind, edit_key, message_date
    )
    SELECT array_agg(f.ord), array_agg(i.id)
      INTO v_stored_ord, v_stored_id
      FROM inserted i
      JOIN first_of_key f USING (channel_id, message_id, kind, edit_key, message_date);

    IF v_stored_id IS NOT NULL THEN
        PERFORM tp_capital.refresh_signals(
            ARRAY(SELECT p_channel_id[o] FROM unnest(v_stored_ord) AS o),
            ARRAY(SELECT p_message_id[o] FROM unnest(v_stored_ord) AS o));
        PERFORM tp_capital.record_events(v_stored_id);
    END IF;

    RETURN QUERY
    SELECT u.ord, u.ord = ANY (coalesce(v_stored_ord, '{}')),
           (SELECT s.id FROM tp_capital.signals s WHERE s.channel_id = u.c AND s.message_id = u.m)
      FROM unnest(p_channel_id, p_message_id) WITH ORDINALITY AS u(c, m, ord)
     ORDER BY u.ord;
END
$$;


ALTER FUNCTION tp_capital.ingest_batch(text[], bigint[], timestamptz[], text[], text[], timestamptz[], jsonb[],
                                       text[], text[], jsonb[], jsonb[]) RESET plan_cache_mode;
