-- Linking looks at the 50 most recent signals of the asset before an update, not at every signal the channel
-- ever sent for it: an update never names a trade older than that, and the cost of linking one update stays
-- bounded however long the channel's history grows (a busy ticker collects thousands of signals). Events and
-- touched groups are derived without self-joins of a batch, which the planner cannot size.

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
                -- The 50 most recent signals of the asset before the update: an update never names a trade older
                -- than that, and the cost of linking stays bounded however long the channel's history grows.
                SELECT s.id INTO v_signal
                  FROM (SELECT * FROM tp_capital.signals s0
                         WHERE s0.channel_id = g.channel_id AND s0.asset = g.asset AND NOT s0.deleted
                           AND (s0.message_date, s0.message_id) < (e.message_date, e.message_id)
                         ORDER BY s0.message_date DESC, s0.message_id DESC
                         LIMIT 50) s
                 CROSS JOIN LATERAL (SELECT tp_capital.signal_levels(s.targets, s.target_final) AS levels) l
                 CROSS JOIN LATERAL (
                        SELECT max(coalesce(x.target, cardinality(l.levels))) FILTER (WHERE x.event = 'target_hit')
                                   AS hit,
                               coalesce(bool_or(x.event IN ('stop_hit', 'closed', 'cancelled')), false) AS ended
                          FROM tp_capital.signal_events x
                         WHERE x.signal_id = s.id
                           AND (x.message_date, x.message_id) < (e.message_date, e.message_id)) p
                 WHERE NOT p.ended
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

-- The links of this deployment's history under the rule above.
SELECT tp_capital.relink(array_agg(channel_id), array_agg(asset), array_agg(NULL::timestamptz))
  FROM (SELECT DISTINCT channel_id, asset FROM tp_capital.signal_events) AS g;

-- The same events as 0006's version, with one aggregate per message instead of a join of two: a batch of 1,000
-- messages no longer compares every update with every other message of the batch.
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
    -- Everything about a message's latest version in one pass, so that no step joins the batch with itself.
    per_key AS (
        SELECT channel_id, message_id,
               coalesce(bool_or(kind = 'delete'), false) AS deleted,
               (array_agg(reply_to_message_id ORDER BY edit_key DESC)
                    FILTER (WHERE reply_to_message_id IS NOT NULL))[1] AS reply_to,
               (array_agg(parsed ORDER BY edit_key DESC, id DESC) FILTER (WHERE kind <> 'delete'))[1] AS parsed,
               (array_agg(edit_key ORDER BY edit_key DESC, id DESC) FILTER (WHERE kind <> 'delete'))[1] AS edit_key,
               (array_agg(message_date ORDER BY edit_key DESC, id DESC) FILTER (WHERE kind <> 'delete'))[1]
                   AS message_date,
               (array_agg(text ORDER BY edit_key DESC, id DESC) FILTER (WHERE kind <> 'delete'))[1] AS text
          FROM versions GROUP BY channel_id, message_id
    ),
    wanted AS (
        SELECT * FROM per_key WHERE NOT deleted AND parsed ->> 'kind' = 'update'
    ),
    removed AS (
        DELETE FROM tp_capital.signal_events e USING per_key p
         WHERE e.channel_id = p.channel_id AND e.message_id = p.message_id
           AND (p.deleted OR p.parsed IS NULL OR p.parsed ->> 'kind' <> 'update' OR p.message_date <> e.message_date)
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

-- As in 0006, with the touched (channel, asset) groups found by semi-joins on the delivered keys, which the planner
-- sizes from the arrays, instead of joins with a materialised list it cannot size.
CREATE OR REPLACE FUNCTION tp_capital.apply_messages(p_channel_id text[], p_message_id bigint[])
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_channels text[];
    v_assets   text[];
    v_dates    timestamptz[];
BEGIN
    -- Old assets too: an edit that changes a signal's asset re-links both groups.
    SELECT array_agg(channel_id), array_agg(asset), array_agg(from_date) INTO v_channels, v_assets, v_dates
      FROM (SELECT channel_id, asset, min(message_date) AS from_date
              FROM (SELECT m.channel_id, m.parsed ->> 'asset' AS asset, m.message_date FROM tp_capital.messages m
                     WHERE (m.channel_id, m.message_id) IN (SELECT * FROM unnest(p_channel_id, p_message_id))
                    UNION ALL
                    SELECT s.channel_id, s.asset, s.message_date FROM tp_capital.signals s
                     WHERE (s.channel_id, s.message_id) IN (SELECT * FROM unnest(p_channel_id, p_message_id))
                    UNION ALL
                    SELECT e.channel_id, e.asset, e.message_date FROM tp_capital.signal_events e
                     WHERE (e.channel_id, e.message_id) IN (SELECT * FROM unnest(p_channel_id, p_message_id))
                   ) AS touched
             WHERE asset IS NOT NULL
             GROUP BY channel_id, asset) AS groups;

    PERFORM tp_capital.refresh_signals(p_channel_id, p_message_id);
    PERFORM tp_capital.refresh_events(p_channel_id, p_message_id);
    IF v_channels IS NOT NULL THEN
        PERFORM tp_capital.relink(v_channels, v_assets, v_dates);
    END IF;
END
$$;
