-- Exports a failure cannot spread from (issue 16):
--   failed    the last attempt failed (last_error); this ledger's later dates wait, other
--             ledgers go on; tried again from retry_at on, with a growing pause (failures)
-- and webhook deliveries that say which earlier delivery they revise.
ALTER TABLE export_log DROP CONSTRAINT export_log_status_check;
ALTER TABLE export_log ADD CONSTRAINT export_log_status_check
    CHECK (status IN ('pending', 'writing', 'exported', 'held', 'failed'));

-- Failed attempts in a row (0 once delivered) and when the next attempt may start.
ALTER TABLE export_log ADD COLUMN failures integer NOT NULL DEFAULT 0,
    ADD COLUMN retry_at timestamptz;

-- 0 for the first delivery of a date; 1, 2, … for each delivery after it (`export --force`,
-- a corrected date). A webhook's Idempotency-Key is `<exporter>:<ledger>:<date>` for
-- revision 0 and `<exporter>:<ledger>:<date>:r<n>` after, so a receiver that drops repeats
-- of one key still takes a revision.
ALTER TABLE export_log ADD COLUMN revision integer NOT NULL DEFAULT 0;

-- The ledgers an exporter's pass skips because a date of theirs failed recently.
CREATE INDEX export_log_retry ON export_log (exporter, ledger_id) WHERE retry_at IS NOT NULL;
