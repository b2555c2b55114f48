-- `relink` judged an update against each of the 50 most recent signals of its asset: for every one it read the
-- signal's earlier events to see whether the trade was still open, then sorted all of them by how well they
-- match. That was about 0.2 ms per update and half of a batch's time in PostgreSQL (bench/README.md, "Where a
-- batch's time goes in PostgreSQL"), though the match is nearly always the newest open signal.
--
-- The candidates are now a function (`link_candidates`, inlined by the planner), read newest first and lazily:
-- the first candidate that matches as well as the update allows (a quoted price equal to the level it names, or
-- to one of the trade's levels; a target not reached yet) is the answer of the full ordering, since the
-- ordering's last keys are the same newest-first order; reading stops there. Only when no candidate reaches that
-- is the full ordering evaluated, over the same candidates. The links are exactly those of 0011.
--
-- The candidates are read from an index in the order they are ranked in (date, then message id), so that reading
-- the newest few costs only those few rows: the index used before is ordered by row id after the date, and a
-- batch's messages often share one date, which made every lookup sort all the asset's signals of that date.

CREATE INDEX IF NOT EXISTS signals_link_idx
    ON tp_capital.signals (channel_id, asset, message_date, message_id) WHERE NOT deleted;

CREATE OR REPLACE FUNCTION tp_capital.link_candidates(
    p_channel_id text, p_asset text, p_date timestamptz, p_message_id bigint, p_event text, p_target integer,
    p_price numeric)
RETURNS TABLE (id bigint, message_date timestamptz, message_id bigint, exact boolean, on_level boolean,
               open_target boolean)
LANGUAGE sql STABLE AS $$
    -- The 50 most recent signals of the asset before the update: an update never names a trade older than that,
    -- and the cost of linking stays bounded however long the channel's history grows.
    SELECT s.id, s.message_date, s.message_id,
           -- the quoted price is the level this event names (target N, the final target, the stop)
           coalesce(p_price = CASE p_event
                                  WHEN 'stop_hit' THEN s.stop
                                  WHEN 'target_hit' THEN l.levels[coalesce(p_target, cardinality(l.levels))]
                              END, false),
           -- or at least one of its levels
           coalesce(p_price = ANY (l.levels || s.stop), false),
           -- a target not reached yet
           p_event = 'target_hit' AND coalesce(p.hit, 0) < coalesce(p_target, cardinality(l.levels))
      FROM (SELECT * FROM tp_capital.signals s0
             WHERE s0.channel_id = p_channel_id AND s0.asset = p_asset AND NOT s0.deleted
               AND (s0.message_date, s0.message_id) < (p_date, p_message_id)
             ORDER BY s0.message_date DESC, s0.message_id DESC
             LIMIT 50) s
     CROSS JOIN LATERAL (SELECT tp_capital.signal_levels(s.targets, s.target_final) AS levels) l
     CROSS JOIN LATERAL (
            SELECT max(coalesce(x.target, cardinality(l.levels))) FILTER (WHERE x.event = 'target_hit') AS hit,
                   coalesce(bool_or(x.event IN ('stop_hit', 'closed', 'cancelled')), false) AS ended
              FROM tp_capital.signal_events x
             WHERE x.signal_id = s.id
               AND (x.message_date, x.message_id) < (p_date, p_message_id)) p
     WHERE NOT p.ended
       AND NOT coalesce(p.hit >= cardinality(l.levels), false)
       AND (p_event <> 'target_hit' OR p_target IS NULL OR p_target <= cardinality(l.levels))
       -- a quoted price must be one of the trade's levels (within 1 %): 28,00 is not the 39 of another
       AND (p_price IS NULL OR EXISTS (SELECT 1 FROM unnest(l.levels || s.stop) AS v(level)
                                        WHERE abs(v.level - p_price) <= abs(v.level) / 100))
     ORDER BY s.message_date DESC, s.message_id DESC;
$$;

CREATE OR REPLACE FUNCTION tp_capital.relink(p_channel_id text[], p_asset text[], p_from timestamptz[])
RETURNS void
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
DECLARE
    g record;
    e record;
    v_signal bigint;
    v_first  timestamptz;
    v_from   timestamptz;
    v_exact  boolean;
    v_level  boolean;
    v_open   boolean;
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
        -- Skipped when that range is empty, as it is for messages newer than the group's first signal.
        IF v_from < coalesce(v_first, 'infinity') THEN
            UPDATE tp_capital.signal_events x SET signal_id = NULL, updated_at = now()
             WHERE x.channel_id = g.channel_id AND x.asset = g.asset AND x.signal_id IS NOT NULL
               AND x.message_date >= v_from AND x.message_date < coalesce(v_first, 'infinity');
        END IF;
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
                -- The best match this update can have: every key of the ordering below that can hold for it.
                v_exact := e.price IS NOT NULL AND e.event IN ('stop_hit', 'target_hit');
                v_level := e.price IS NOT NULL;
                v_open := e.event = 'target_hit';
                SELECT c.id INTO v_signal
                  FROM tp_capital.link_candidates(g.channel_id, g.asset, e.message_date, e.message_id, e.event,
                                                  e.target, e.price) c
                 WHERE c.exact = v_exact AND c.on_level = v_level AND c.open_target = v_open
                 ORDER BY c.message_date DESC, c.message_id DESC
                 LIMIT 1;
                -- No candidate matches that well: the best of them by the full ordering (as in 0011). When the
                -- update allows no key at all, the query above already took the newest candidate, if any.
                IF v_signal IS NULL AND (v_exact OR v_level OR v_open) THEN
                    SELECT c.id INTO v_signal
                      FROM tp_capital.link_candidates(g.channel_id, g.asset, e.message_date, e.message_id,
                                                      e.event, e.target, e.price) c
                     ORDER BY c.exact DESC, c.on_level DESC, c.open_target DESC, c.message_date DESC,
                              c.message_id DESC
                     LIMIT 1;
                END IF;
            END IF;
            IF v_signal IS DISTINCT FROM e.signal_id THEN
                UPDATE tp_capital.signal_events SET signal_id = v_signal, updated_at = now()
                 WHERE id = e.id AND message_date = e.message_date;
            END IF;
        END LOOP;
    END LOOP;
END
$$;
