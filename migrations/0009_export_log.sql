-- Scheduled exporters: one row per (exporter, ledger, ledger date), so every closed and cleanly
-- reconciled date is exported exactly once across restarts and instances.
--   pending   not exported yet; the last attempt failed (last_error), tried again next pass
--   writing   the file's content is on disk under a temporary name (or the webhook is being
--             sent); a run that stopped here finishes the delivery, never starts it again
--   exported  delivered: the file renamed into place, or the webhook answered 2xx
--   held      the date's reconciliation found a mismatch; exported once it reconciles cleanly
CREATE TABLE export_log (
    exporter     text NOT NULL,
    ledger_id    text NOT NULL REFERENCES ledgers,
    ledger_date  date NOT NULL,
    kind         text NOT NULL,
    status       text NOT NULL CHECK (status IN ('pending', 'writing', 'exported', 'held')),
    -- Where it went: the file's path or the webhook's URL.
    target       text,
    -- SHA-256 (hex) of the bytes delivered (the file, or the webhook's body).
    checksum     text,
    entries      integer NOT NULL DEFAULT 0,
    attempts     integer NOT NULL DEFAULT 0,
    -- How many times `export --force` delivered it again.
    forced       integer NOT NULL DEFAULT 0,
    last_error   text,
    exported_at  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exporter, ledger_id, ledger_date),
    CHECK ((status = 'exported') = (exported_at IS NOT NULL))
);
CREATE INDEX export_log_not_exported ON export_log (exporter) WHERE status <> 'exported';

GRANT SELECT, INSERT, UPDATE ON export_log TO vls_writer;
GRANT SELECT ON export_log TO finance_reader;
ALTER TABLE export_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY writer_all ON export_log TO vls_writer USING (true) WITH CHECK (true);
CREATE POLICY reader_own_ledgers ON export_log FOR SELECT TO finance_reader
    USING (ledger_id IN (SELECT reader_ledgers()));
