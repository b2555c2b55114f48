-- The ingest clock of 0007 updated its one row for every signal inserted. A batch of 1,000 new signals left
-- 1,000 versions of that row behind in one transaction, and each update had to step over the ones before it,
-- so a batch cost grew with the square of its size. Now the first row of a transaction locks the clock row
-- (SELECT … FOR UPDATE, no new version), the following rows continue from a transaction-local setting, and
-- the clock row is written once per statement. The guarantee is the same: the lock is held until commit, so no
-- two transactions hand out the same stamp, and the unique index still holds it.

CREATE OR REPLACE FUNCTION tp_capital.stamp_ingested_at()
RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_last  text := current_setting('tp_capital.ingest_last_stamp', true);
    v_prev  timestamptz;
    v_stamp timestamptz;
BEGIN
    IF v_last IS NULL OR v_last = '' THEN
        SELECT last_stamp INTO v_prev FROM tp_capital.ingest_clock WHERE id FOR UPDATE;
    ELSE
        v_prev := v_last::timestamptz;
    END IF;
    v_stamp := greatest(clock_timestamp(), v_prev + interval '1 microsecond');
    PERFORM set_config('tp_capital.ingest_last_stamp', v_stamp::text, true);
    NEW.ingested_at := v_stamp;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION tp_capital.save_ingest_clock()
RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_last text := current_setting('tp_capital.ingest_last_stamp', true);
BEGIN
    IF v_last IS NOT NULL AND v_last <> '' THEN
        UPDATE tp_capital.ingest_clock SET last_stamp = greatest(last_stamp, v_last::timestamptz) WHERE id;
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS signals_save_ingest_clock ON tp_capital.signals;
CREATE TRIGGER signals_save_ingest_clock AFTER INSERT ON tp_capital.signals
    FOR EACH STATEMENT EXECUTE FUNCTION tp_capital.save_ingest_clock();
