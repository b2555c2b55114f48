-- Signal lifecycle: updates are linked to the trade their content names, every signal's state is derived from
-- its events, and channel performance is computed from those states.
--
-- Events are derived data, like signals: one row per update message (its latest version), re-derived whenever a
-- version of it arrives, and re-linked for its (channel, asset) whenever a signal or update of that asset changes.
-- Links depend only on the stored messages, never on the order they arrived in.

ALTER TABLE tp_capital.messages ADD COLUMN IF NOT EXISTS reply_to_message_id bigint;

ALTER TABLE tp_capital.signal_events ADD COLUMN IF NOT EXISTS price numeric;
ALTER TABLE tp_capital.signal_events ADD COLUMN IF NOT EXISTS reply_to_message_id bigint;
ALTER TABLE tp_capital.signal_events ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();

-- One event per update message (edits replace it), so the key no longer holds the edit; every row is re-derived
-- at the end of this migration.
DELETE FROM tp_capital.signal_events;
ALTER TABLE tp_capital.signal_events DROP CONSTRAINT IF EXISTS signal_events_key;
ALTER TABLE tp_capital.signal_events
    ADD CONSTRAINT signal_events_key UNIQUE (channel_id, message_id, message_date);
CREATE INDEX IF NOT EXISTS signal_events_group_idx
    ON tp_capital.signal_events (channel_id, asset, message_date, message_id);
CREATE INDEX IF NOT EXISTS signal_events_date_idx ON tp_capital.signal_events (message_date DESC, id DESC);
DROP INDEX IF EXISTS tp_capital.signal_events_signal_idx;
CREATE INDEX IF NOT EXISTS signal_events_signal_idx ON tp_capital.signal_events (signal_id, message_date);

-- A signal's target ladder: its numbered targets, then the final target when it is not the last of them.
CREATE OR REPLACE FUNCTION tp_capital.signal_levels(p_targets numeric[], p_final numeric)
RETURNS numeric[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_final IS NULL OR p_final = ANY (p_targets) THEN p_targets
                ELSE p_targets || p_final END;
$$;

-- Re-derive the event rows of the given messages from every stored version of each: the latest version that
-- parses as an update is the event; a message deleted, or no longer an update, has none.
CREATE OR REPLACE FUNCTION tp_capital.refresh_events(p_channel_id text[], p_message_id bigint[])
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
        SELECT channel_id, message_id, coalesce(bool_or(kind = 'delete'), false) AS deleted,
               (array_agg(reply_to_message_id ORDER BY edit_key DESC)
                    FILTER (WHERE reply_to_message_id IS NOT NULL))[1] AS reply_to
          FROM versions GROUP BY channel_id, message_id
    ),
    latest AS (
        SELECT DISTINCT ON (channel_id, message_id) *
          FROM versions WHERE kind <> 'delete'
         ORDER BY channel_id, message_id, edit_key DESC, id DESC
    ),
    wanted AS (
        SELECT l.*, a.reply_to FROM latest l JOIN agg a USING (channel_id, message_id)
         WHERE NOT a.deleted AND l.parsed ->> 'kind' = 'update'
    ),
    removed AS (
        DELETE FROM tp_capital.signal_events e USING keys k
         WHERE e.channel_id = k.channel_id AND e.message_id = k.message_id
           AND NOT EXISTS (SELECT 1 FROM wanted w WHERE w.channel_id = e.channel_id AND w.message_id = e.message_id
                                                    AND w.message_date = e.message_date)
        RETURNING e.id
    )
    INSERT INTO tp_capital.signal_events AS e (channel_id, message_id, edit_key, message_date, asset, event, target,
                                               gain_pct, price, reply_to_message_id, raw_message)
    SELECT w.channel_id, w.message_id, w.edit_key, w.message_date, w.parsed ->> 'asset', w.parsed ->> 'event',
           (w.parsed ->> 'target')::integer, (w.parsed ->> 'gain_pct')::numeric, (w.parsed ->> 'price')::numeric,
           w.reply_to, w.text
      FROM wanted w
    ON CONFLICT ON CONSTRAINT signal_events_key DO UPDATE SET
        edit_key = EXCLUDED.edit_key, asset = EXCLUDED.asset, event = EXCLUDED.event, target = EXCLUDED.target,
        gain_pct = EXCLUDED.gain_pct, price = EXCLUDED.price, reply_to_message_id = EXCLUDED.reply_to_message_id,
        raw_message = EXCLUDED.raw_message, updated_at = now()
     WHERE (e.edit_key, e.asset, e.event, e.target, e.gain_pct, e.price, e.reply_to_message_id, e.raw_message)
           IS DISTINCT FROM (EXCLUDED.edit_key, EXCLUDED.asset, EXCLUDED.event, EXCLUDED.target, EXCLUDED.gain_pct,
                             EXCLUDED.price, EXCLUDED.reply_to_message_id, EXCLUDED.raw_message);
END
$$;

-- Link every event of the given (channel, asset) groups dated at or after the group's date to the trade it names
-- (docs/parser.md, "Linking updates to signals"). Events are taken in Telegram order, so each one sees the links
-- of those before it: a trade that was stopped or reached its final target is no longer open. Events before the
-- date keep their links: nothing at or after it can change them.
CREATE OR REPLACE FUNCTION tp_capital.relink(p_channel_id text[], p_asset text[], p_from timestamptz[])
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    g record;
    e record;
    v_signal bigint;
BEGIN
    -- One linker per group at a time, locks taken in key order (after any per-message locks): never a deadlock.
    PERFORM pg_advisory_xact_lock(hashtextextended(k.channel_id || '/' || k.asset, 7241))
       FROM (SELECT DISTINCT c AS channel_id, a AS asset FROM unnest(p_channel_id, p_asset) AS u(c, a)
              WHERE a IS NOT NULL ORDER BY 1, 2) AS k;

    FOR g IN SELECT c AS channel_id, a AS asset, min(f) AS from_date
               FROM unnest(p_channel_id, p_asset, p_from) AS u(c, a, f)
              WHERE a IS NOT NULL GROUP BY c, a
    LOOP
        FOR e IN SELECT x.id, x.message_id, x.message_date, x.event, x.target, x.price, x.reply_to_message_id,
                        x.signal_id
                   FROM tp_capital.signal_events x
                  WHERE x.channel_id = g.channel_id AND x.asset = g.asset
                    AND x.message_date >= coalesce(g.from_date, '-infinity')
                  ORDER BY x.message_date, x.message_id
        LOOP
            v_signal := NULL;
            -- A reply names its trade: the signal replied to, or the trade of the update replied to.
            IF e.reply_to_message_id IS NOT NULL THEN
                SELECT s.id INTO v_signal FROM tp_capital.signals s
                 WHERE s.channel_id = g.channel_id AND s.message_id = e.reply_to_message_id AND s.asset = g.asset
                   AND NOT s.deleted AND s.message_date <= e.message_date;
                IF v_signal IS NULL THEN
                    SELECT x.signal_id INTO v_signal FROM tp_capital.signal_events x
                     WHERE x.channel_id = g.channel_id AND x.message_id = e.reply_to_message_id
                       AND x.asset = g.asset AND x.signal_id IS NOT NULL
                       AND (x.message_date, x.message_id) < (e.message_date, e.message_id)
                     LIMIT 1;
                END IF;
            END IF;
            IF v_signal IS NULL THEN
                SELECT s.id INTO v_signal
                  FROM tp_capital.signals s
                 CROSS JOIN LATERAL (SELECT tp_capital.signal_levels(s.targets, s.target_final) AS levels) l
                 CROSS JOIN LATERAL (
                        SELECT max(coalesce(x.target, cardinality(l.levels))) FILTER (WHERE x.event = 'target_hit')
                                   AS hit,
                               coalesce(bool_or(x.event IN ('stop_hit', 'closed', 'cancelled')), false) AS ended
                          FROM tp_capital.signal_events x
                         WHERE x.signal_id = s.id
                           AND (x.message_date, x.message_id) < (e.message_date, e.message_id)) p
                 WHERE s.channel_id = g.channel_id AND s.asset = g.asset AND NOT s.deleted
                   AND (s.message_date, s.message_id) < (e.message_date, e.message_id)
                   AND NOT p.ended
                   AND NOT coalesce(p.hit >= cardinality(l.levels), false)
                   AND (e.event <> 'target_hit' OR e.target IS NULL OR e.target <= cardinality(l.levels))
                   -- a quoted price must be one of the trade's levels (within 1 %): 28,00 is not the 39 of another
                   AND (e.price IS NULL OR EXISTS (SELECT 1 FROM unnest(l.levels || s.stop) AS v(level)
                                                    WHERE abs(v.level - e.price) <= abs(v.level) / 100))
                 ORDER BY
                   -- the quoted price is the level this event names (target N, the final target, the stop)
                   coalesce(e.price = CASE e.event
                                          WHEN 'stop_hit' THEN s.stop
                                          WHEN 'target_hit' THEN l.levels[coalesce(e.target, cardinality(l.levels))]
                                      END, false) DESC,
                   -- or at least one of its levels
                   coalesce(e.price = ANY (l.levels || s.stop), false) DESC,
                   -- a target not reached yet
                   (e.event = 'target_hit' AND coalesce(p.hit, 0) < coalesce(e.target, cardinality(l.levels))) DESC,
                   s.message_date DESC, s.message_id DESC
                 LIMIT 1;
            END IF;
            IF v_signal IS DISTINCT FROM e.signal_id THEN
                UPDATE tp_capital.signal_events SET signal_id = v_signal, updated_at = now()
                 WHERE id = e.id AND message_date = e.message_date;
            END IF;
        END LOOP;
    END LOOP;
END
$$;

-- Apply stored messages: re-derive their signals and events, then re-link every (channel, asset) any version
-- of them touches, from the earliest of their dates on.
CREATE OR REPLACE FUNCTION tp_capital.apply_messages(p_channel_id text[], p_message_id bigint[])
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_channels text[];
    v_assets   text[];
    v_dates    timestamptz[];
BEGIN
    -- Old assets too: an edit that changes a signal's asset re-links both groups.
    WITH keys AS (
        SELECT DISTINCT channel_id, message_id FROM unnest(p_channel_id, p_message_id) AS k(channel_id, message_id)
    ),
    touched AS (
        SELECT m.channel_id, m.parsed ->> 'asset' AS asset, m.message_date
          FROM tp_capital.messages m JOIN keys USING (channel_id, message_id)
        UNION ALL
        SELECT s.channel_id, s.asset, s.message_date FROM tp_capital.signals s JOIN keys USING (channel_id, message_id)
        UNION ALL
        SELECT e.channel_id, e.asset, e.message_date
          FROM tp_capital.signal_events e JOIN keys USING (channel_id, message_id)
    ),
    groups AS (
        SELECT channel_id, asset, min(message_date) AS from_date FROM touched WHERE asset IS NOT NULL
         GROUP BY channel_id, asset
    )
    SELECT array_agg(channel_id), array_agg(asset), array_agg(from_date) INTO v_channels, v_assets, v_dates
      FROM groups;

    PERFORM tp_capital.refresh_signals(p_channel_id, p_message_id);
    PERFORM tp_capital.refresh_events(p_channel_id, p_message_id);
    IF v_channels IS NOT NULL THEN
        PERFORM tp_capital.relink(v_channels, v_assets, v_dates);
    END IF;
END
$$;

DROP FUNCTION IF EXISTS tp_capital.ingest_batch(text[], bigint[], timestamptz[], text[], text[], timestamptz[], jsonb[],
                                                text[], text[], jsonb[], jsonb[]);
DROP FUNCTION IF EXISTS tp_capital.record_events(bigint[]);

CREATE OR REPLACE FUNCTION tp_capital.ingest_batch(
    p_channel_id text[], p_message_id bigint[], p_message_date timestamptz[], p_text text[], p_kind text[],
    p_edit_date timestamptz[], p_photos jsonb[], p_source text[], p_chat_title text[], p_forwarded_from jsonb[],
    p_parsed jsonb[], p_reply_to bigint[])
RETURNS TABLE (ord bigint, stored boolean, signal_id bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_stored_ord bigint[];
    v_stored_id  bigint[];
BEGIN
    -- How this transaction plans the statements below depends on the batch size (see migration 0005).
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
                      p_chat_title, p_forwarded_from, p_parsed,
                      coalesce(p_reply_to, array_fill(NULL::bigint, ARRAY[cardinality(p_channel_id)])))
               WITH ORDINALITY
               AS u(channel_id, message_id, message_date, text, kind, edit_date, photos, source, chat_title,
                    forwarded_from, parsed, reply_to_message_id, ord)
    ),
    first_of_key AS (
        SELECT DISTINCT ON (channel_id, message_id, kind, edit_key, message_date) *
          FROM input ORDER BY channel_id, message_id, kind, edit_key, message_date, ord
    ),
    inserted AS (
        INSERT INTO tp_capital.messages (channel_id, message_id, kind, edit_key, edit_date, message_date, text,
                                         photos, source, chat_title, forwarded_from, parsed, reply_to_message_id)
        SELECT channel_id, message_id, kind, edit_key, edit_date, message_date, text, coalesce(photos, '[]'),
               source, chat_title, forwarded_from, parsed, reply_to_message_id
          FROM first_of_key ORDER BY ord
        ON CONFLICT ON CONSTRAINT messages_delivery_key DO NOTHING
        RETURNING id, channel_id, message_id, kind, edit_key, message_date
    )
    SELECT array_agg(f.ord), array_agg(i.id)
      INTO v_stored_ord, v_stored_id
      FROM inserted i
      JOIN first_of_key f USING (channel_id, message_id, kind, edit_key, message_date);

    IF v_stored_id IS NOT NULL THEN
        PERFORM tp_capital.apply_messages(
            ARRAY(SELECT p_channel_id[o] FROM unnest(v_stored_ord) AS o),
            ARRAY(SELECT p_message_id[o] FROM unnest(v_stored_ord) AS o));
    END IF;

    RETURN QUERY
    SELECT u.ord, u.ord = ANY (coalesce(v_stored_ord, '{}')),
           (SELECT s.id FROM tp_capital.signals s WHERE s.channel_id = u.c AND s.message_id = u.m)
      FROM unnest(p_channel_id, p_message_id) WITH ORDINALITY AS u(c, m, ord)
     ORDER BY u.ord;
END
$$;

-- Every event of every signal, summed up per signal and day: the figures a signal's state is derived from. Each
-- column combines across days with sum, max or min, so a day's row never needs another day's. `max_target` is the
-- highest numbered target; `final_hits` counts events naming no number ("alvo final", or "ALVO ATINGIDO").
--
-- `signal_event_days_live` reads the events themselves (what /signals serves). `signal_event_days` holds the same
-- figures for the performance report: where TimescaleDB exists it is a continuous aggregate (real-time, so rows
-- newer than its last refresh are read from the events), otherwise a view of the live one. Both run the same
-- query; only the bucketing function of a continuous aggregate must be TimescaleDB's own (`time_bucket` with
-- its default origin and `date_bin` from 2000-01-03 cut the same days).
DO $$
DECLARE
    v_figures text := $q$
       count(*) AS events,
       max(CASE WHEN event = 'target_hit' THEN target END) AS max_target,
       sum(CASE WHEN event = 'target_hit' AND target IS NULL THEN 1 ELSE 0 END) AS final_hits,
       min(CASE WHEN event = 'target_hit' THEN message_date END) AS first_target_at,
       max(CASE WHEN event = 'target_hit' THEN message_date END) AS last_target_at,
       min(CASE WHEN event = 'stop_hit' THEN message_date END) AS stop_at,
       min(CASE WHEN event = 'closed' THEN message_date END) AS close_at,
       min(CASE WHEN event = 'cancelled' THEN message_date END) AS cancel_at,
       max(message_date) AS last_event_at,
       max(CASE WHEN event = 'target_hit' THEN gain_pct END) AS target_gain,
       min(CASE WHEN event = 'stop_hit' THEN gain_pct END) AS stop_gain,
       max(CASE WHEN event = 'closed' THEN gain_pct END) AS close_gain
    $q$;
    v_days text := 'SELECT %1$s AS day, signal_id, channel_id, %2$s FROM tp_capital.signal_events '
                || 'WHERE signal_id IS NOT NULL GROUP BY %1$s, signal_id, channel_id';
    v_totals text := 'CREATE VIEW tp_capital.%I AS SELECT signal_id, sum(events)::bigint AS events, '
                  || 'max(max_target) AS max_target, sum(final_hits)::bigint AS final_hits, '
                  || 'min(first_target_at) AS first_target_at, max(last_target_at) AS last_target_at, '
                  || 'min(stop_at) AS stop_at, min(close_at) AS close_at, min(cancel_at) AS cancel_at, '
                  || 'max(last_event_at) AS last_event_at, max(target_gain) AS target_gain, '
                  || 'min(stop_gain) AS stop_gain, max(close_gain) AS close_gain FROM tp_capital.%I GROUP BY signal_id';
BEGIN
    EXECUTE 'CREATE VIEW tp_capital.signal_event_days_live AS '
         || format(v_days, 'date_bin(INTERVAL ''1 day'', message_date, TIMESTAMPTZ ''2000-01-03 00:00:00+00'')',
                   v_figures);
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        EXECUTE 'CREATE MATERIALIZED VIEW tp_capital.signal_event_days '
             || 'WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS '
             || format(v_days, 'time_bucket(INTERVAL ''1 day'', message_date)', v_figures) || ' WITH NO DATA';
        PERFORM add_continuous_aggregate_policy('tp_capital.signal_event_days', start_offset => NULL,
                                                end_offset => INTERVAL '1 hour',
                                                schedule_interval => INTERVAL '5 minutes');
    ELSE
        EXECUTE 'CREATE VIEW tp_capital.signal_event_days AS SELECT * FROM tp_capital.signal_event_days_live';
    END IF;
    EXECUTE format(v_totals, 'signal_event_totals_live', 'signal_event_days_live');
    EXECUTE format(v_totals, 'signal_event_totals', 'signal_event_days');
END
$$;

-- A signal's state from its summed-up events (docs/api.md, "Signal lifecycle"). `p_now`, the swing horizon and
-- the session's time zone are the caller's: the state of an unfinished trade depends on the clock.
CREATE OR REPLACE FUNCTION tp_capital.signal_state(
    p_signal_type text, p_message_date timestamptz, p_buy_min numeric, p_buy_max numeric, p_targets numeric[],
    p_target_final numeric, p_stop numeric,
    p_events bigint, p_max_target integer, p_final_hits bigint, p_last_target_at timestamptz,
    p_stop_at timestamptz, p_close_at timestamptz, p_cancel_at timestamptz, p_last_event_at timestamptz,
    p_target_gain numeric, p_stop_gain numeric, p_close_gain numeric,
    p_now timestamptz, p_horizon_days integer, p_timezone text)
RETURNS TABLE (status text, highest_target_hit integer, closed_at timestamptz, gain_pct numeric, gain_source text,
               events_count bigint, final_target integer)
LANGUAGE sql STABLE AS $$
    WITH l AS (
        SELECT tp_capital.signal_levels(p_targets, p_target_final) AS levels,
               (p_buy_min + p_buy_max) / 2 AS entry
    ),
    h AS (
        SELECT l.*, cardinality(l.levels) AS n,
               nullif(greatest(coalesce(p_max_target, 0),
                               CASE WHEN coalesce(p_final_hits, 0) > 0 THEN cardinality(l.levels) ELSE 0 END),
                      0) AS highest,
               least(p_stop_at, p_close_at, p_cancel_at) AS ended_at,
               CASE WHEN p_signal_type IN ('Day Trade', 'Scalping')
                    THEN (((p_message_date AT TIME ZONE p_timezone)::date + 1)::timestamp) AT TIME ZONE p_timezone
                    ELSE greatest(p_message_date, p_last_event_at) + make_interval(days => p_horizon_days)
               END AS expires_at
          FROM l
    ),
    s AS (
        SELECT h.*,
               CASE WHEN h.ended_at IS NOT NULL AND h.ended_at = p_stop_at THEN 'stopped'
                    WHEN h.ended_at IS NOT NULL AND h.ended_at = p_close_at THEN 'closed'
                    WHEN h.ended_at IS NOT NULL THEN 'cancelled'
                    WHEN h.highest >= h.n THEN 'target_hit'
                    WHEN p_now >= h.expires_at THEN 'expired'
                    WHEN h.highest IS NOT NULL THEN 'target_hit'
                    ELSE 'open' END AS status
          FROM h
    ),
    g AS (
        SELECT s.*,
               CASE s.status WHEN 'stopped' THEN p_stop_gain WHEN 'closed' THEN p_close_gain
                             WHEN 'target_hit' THEN p_target_gain WHEN 'expired' THEN p_target_gain END AS stated,
               CASE WHEN s.entry IS NULL OR s.entry = 0 THEN NULL
                    WHEN s.status = 'stopped' THEN p_stop
                    WHEN s.status IN ('closed', 'target_hit', 'expired') AND s.highest IS NOT NULL
                         THEN s.levels[s.highest]
               END AS exit_level
          FROM s
    )
    SELECT g.status, g.highest,
           CASE WHEN g.ended_at IS NOT NULL THEN g.ended_at
                WHEN g.status = 'target_hit' AND g.highest >= g.n THEN p_last_target_at
                WHEN g.status = 'expired' THEN g.expires_at END,
           coalesce(g.stated, round((g.exit_level - g.entry) / g.entry * 100, 2)),
           CASE WHEN g.stated IS NOT NULL THEN 'stated' WHEN g.exit_level IS NOT NULL THEN 'computed' END,
           coalesce(p_events, 0), g.n
      FROM g;
$$;

-- The events of this deployment's history under the rules above.
DO $$
DECLARE
    v_channels text[];
    v_ids      bigint[];
BEGIN
    SELECT array_agg(channel_id), array_agg(message_id) INTO v_channels, v_ids
      FROM (SELECT DISTINCT channel_id, message_id FROM tp_capital.messages WHERE parsed ->> 'kind' = 'update') k;
    IF v_channels IS NOT NULL THEN
        PERFORM tp_capital.refresh_events(v_channels, v_ids);
        PERFORM tp_capital.relink(array_agg(channel_id), array_agg(asset), array_agg(NULL::timestamptz))
           FROM (SELECT DISTINCT channel_id, asset FROM tp_capital.signal_events) g;
    END IF;
END
$$;
