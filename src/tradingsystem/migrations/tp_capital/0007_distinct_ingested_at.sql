-- Every signal row gets its own `ingested_at`. Dashboards key their signal tables by it and the old
-- `DELETE /signals {"ingestedAt"}` names a row by it, but `now()` is one value per transaction, so every row of
-- a batch shared it.
--
-- A one-row clock hands out stamps: each new row takes the later of the wall clock and the previous stamp plus
-- one microsecond. Updating the row locks it until commit, so two transactions never hand out the same stamp,
-- and stamps grow in commit order. Ingest transactions are single statements, so the lock is held briefly.
CREATE TABLE IF NOT EXISTS tp_capital.ingest_clock (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_stamp timestamptz NOT NULL
);

-- Rows stored before this migration: spread each group of equal stamps over consecutive microseconds, until
-- no two rows share one.
DO $$
BEGIN
    LOOP
        UPDATE tp_capital.signals s
           SET ingested_at = s.ingested_at + (d.rn - 1) * interval '1 microsecond'
          FROM (SELECT id, row_number() OVER (PARTITION BY ingested_at ORDER BY id) AS rn
                  FROM tp_capital.signals) AS d
         WHERE s.id = d.id AND d.rn > 1;
        EXIT WHEN NOT FOUND;
    END LOOP;
END
$$;

CREATE UNIQUE INDEX IF NOT EXISTS signals_ingested_at_key ON tp_capital.signals (ingested_at);

INSERT INTO tp_capital.ingest_clock (id, last_stamp)
SELECT true, coalesce(max(ingested_at), now()) FROM tp_capital.signals
ON CONFLICT (id) DO NOTHING;

CREATE OR REPLACE FUNCTION tp_capital.stamp_ingested_at()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tp_capital.ingest_clock
       SET last_stamp = greatest(clock_timestamp(), last_stamp + interval '1 microsecond')
     WHERE id
    RETURNING last_stamp INTO NEW.ingested_at;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS signals_stamp_ingested_at ON tp_capital.signals;
CREATE TRIGGER signals_stamp_ingested_at BEFORE INSERT ON tp_capital.signals
    FOR EACH ROW EXECUTE FUNCTION tp_capital.stamp_ingested_at();
