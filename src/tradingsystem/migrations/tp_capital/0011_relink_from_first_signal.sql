-- Re-linking an older message walked every later event of its (channel, asset) one by one, linked or not. A
-- group with updates but no signal (a ticker the channel only comments on) has thousands of events that can
-- never be linked, and a failure queue re-driven after newer messages went through re-walked them all for each
-- message, so ingest dropped to about 150 messages/s. Events dated before the group's first signal are now
-- cleared in one statement and the walk starts at that signal; the links are exactly those of 0008.

CREATE OR REPLACE FUNCTION tp_capital.relink(p_channel_id text[], p_asset text[], p_from timestamptz[])
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    g record;
    e record;
    v_signal bigint;
    v_first  timestamptz;
    v_from   timestamptz;
BEGIN
    -- One linker per group at a time, locks taken in key order (after any per-message locks): never a deadlock.
    PERFORM pg_advisory_xact_lock(hashtextextended(k.channel_id || '/' || k.asset, 7241))
       FROM (SELECT DISTINCT c AS channel_id, a AS asset FROM unnest(p_channel_id, p_asset) AS u(c, a)
              WHERE a IS NOT NULL ORDER BY 1, 2) AS k;

    FOR g IN SELECT c AS channel_id, a AS asset, min(f) AS from_date
               FROM unnest(p_channel_id, p_asset, p_from) AS u(c, a, f)
              WHERE a IS NOT NULL GROUP BY c, a
    LOOP
        -- Every signal an event can name, by reply or not, is dated at or before it, so the events before the
        -- group's first signal have no link: cleared in one statement, and the ordered walk starts there.
        SELECT min(s.message_date) INTO v_first FROM tp_capital.signals s
         WHERE s.channel_id = g.channel_id AND s.asset = g.asset AND NOT s.deleted;
        v_from := coalesce(g.from_date, '-infinity');
        UPDATE tp_capital.signal_events x SET signal_id = NULL, updated_at = now()
         WHERE x.channel_id = g.channel_id AND x.asset = g.asset AND x.signal_id IS NOT NULL
           AND x.message_date >= v_from AND x.message_date < coalesce(v_first, 'infinity');
        FOR e IN SELECT x.id, x.message_id, x.message_date, x.event, x.target, x.price, x.reply_to_message_id,
                        x.signal_id
                   FROM tp_capital.signal_events x
                  WHERE x.channel_id = g.channel_id AND x.asset = g.asset
                    AND x.message_date >= greatest(v_from, coalesce(v_first, 'infinity'))
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
