-- Two costs that grew a batch of 1,000 messages to about 250 ms in PostgreSQL (bench/README.md, "Where a batch's
-- time goes in PostgreSQL"):
--
-- * `relink` runs one small query per event. Inside a batch, `ingest_batch` asks for plans made for each
--   statement's rows (migration 0005), and that setting reached every per-event query too: each was planned
--   afresh, which cost as much as running it. Its queries are all index lookups by key whatever the batch size,
--   so `relink` now always runs with plans cached per connection and with sequential scans off (a plan cached
--   while the tables were small must not keep scanning them as they grow, as in 0005).
--
-- * `refresh_signals` joined its per-message aggregate with the latest signal version of each message. Both are
--   CTEs the planner cannot size, so it joined them in a nested loop: a batch of 1,000 messages made 430,000
--   comparisons. Everything is now taken from one aggregate per message, as `refresh_events` does since 0008.
--   The rows written are exactly those of 0005.

ALTER FUNCTION tp_capital.relink(text[], text[], timestamptz[])
    SET plan_cache_mode = force_generic_plan
    SET enable_seqscan = off;

CREATE OR REPLACE FUNCTION tp_capital.refresh_signals(p_channel_id text[], p_message_id bigint[])
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    WITH keys AS (
        SELECT DISTINCT channel_id, message_id FROM unnest(p_channel_id, p_message_id) AS k(channel_id, message_id)
    ),
    versions AS (
        SELECT m.*, m.kind <> 'delete' AND m.parsed ->> 'kind' = 'signal' AS is_signal
          FROM tp_capital.messages m JOIN keys USING (channel_id, message_id)
    ),
    -- Everything about a message in one pass: its revision and delete flag over all versions, and the fields of
    -- its latest version that parses as a signal (none when no version does).
    per_key AS (
        SELECT channel_id, message_id,
               greatest(count(*) FILTER (WHERE kind <> 'delete'), 1)::integer AS revision,
               coalesce(bool_or(kind = 'delete'), false) AS deleted,
               (array_agg(chat_title ORDER BY edit_key DESC) FILTER (WHERE chat_title IS NOT NULL))[1] AS title,
               (array_agg(parsed ORDER BY edit_key DESC, id DESC) FILTER (WHERE is_signal))[1] AS parsed,
               (array_agg(message_date ORDER BY edit_key DESC, id DESC) FILTER (WHERE is_signal))[1] AS message_date,
               (array_agg(text ORDER BY edit_key DESC, id DESC) FILTER (WHERE is_signal))[1] AS text,
               (array_agg(source ORDER BY edit_key DESC, id DESC) FILTER (WHERE is_signal))[1] AS source
          FROM versions GROUP BY channel_id, message_id
    ),
    -- A data-modifying CTE always runs to completion, whether or not the statement reads it.
    upserted AS (
        INSERT INTO tp_capital.signals AS s (
            channel_id, message_id, message_date, channel_title, signal_type, asset, buy_min, buy_max, targets,
            target_final, stop, raw_message, source, revision, deleted)
        SELECT p.channel_id, p.message_id, p.message_date, p.title, p.parsed ->> 'signal_type', p.parsed ->> 'asset',
               (p.parsed ->> 'buy_min')::numeric, (p.parsed ->> 'buy_max')::numeric,
               ARRAY(SELECT jsonb_array_elements_text(p.parsed -> 'targets')::numeric),
               (p.parsed ->> 'target_final')::numeric, (p.parsed ->> 'stop')::numeric,
               p.text, p.source, p.revision, p.deleted
          FROM per_key p
         WHERE p.parsed IS NOT NULL
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
       SET deleted = s.deleted OR p.deleted, revision = p.revision, updated_at = now()
      FROM per_key p
     WHERE s.channel_id = p.channel_id AND s.message_id = p.message_id AND p.parsed IS NULL;
END
$$;
