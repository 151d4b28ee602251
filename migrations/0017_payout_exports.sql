-- Exporters that deliver per payout (issue 17: `payouts`, `settlement-xml`, `settlement-csv`,
-- `payout-webhook`): their unit is a payout, not a ledger date. Its row in the export log
-- carries the payout's reference and, as `ledger_date`, the payout's last ledger date (the
-- date of its `payout-scheduled` entry); the date exporters leave `payout_reference` empty.
-- Everything else (pending, writing, exported, held, failed; revisions; the pause after a
-- failure) is the same for both.
ALTER TABLE export_log ADD COLUMN payout_reference text NOT NULL DEFAULT '';
ALTER TABLE export_log DROP CONSTRAINT export_log_pkey,
    ADD PRIMARY KEY (exporter, ledger_id, ledger_date, payout_reference);
