-- Reconciliation: each closed ledger date of each feed compared with the API's daily report.
CREATE TABLE reconciliations (
    ledger_id       text NOT NULL,
    topic           text NOT NULL CHECK (topic IN ('funds', 'fees')),
    ledger_date     date NOT NULL,
    -- 'ok': the same entries; 'mismatch': differences (see details); 'open': the date has not
    -- closed yet (tryLater), checked again from next_check_at.
    status          text NOT NULL CHECK (status IN ('ok', 'mismatch', 'open')),
    api_entries     integer NOT NULL DEFAULT 0,
    stored_entries  integer NOT NULL DEFAULT 0,
    inserted        integer NOT NULL DEFAULT 0,
    only_stored     integer NOT NULL DEFAULT 0,
    differing       integer NOT NULL DEFAULT 0,
    details         jsonb NOT NULL DEFAULT '{}',
    checked_at      timestamptz NOT NULL DEFAULT now(),
    next_check_at   timestamptz,
    PRIMARY KEY (ledger_id, topic, ledger_date),
    FOREIGN KEY (ledger_id, topic) REFERENCES feed_cursors
);

GRANT SELECT, INSERT, UPDATE ON reconciliations TO vls_writer;
GRANT SELECT ON reconciliations TO finance_reader;
ALTER TABLE reconciliations ENABLE ROW LEVEL SECURITY;
CREATE POLICY writer_all ON reconciliations TO vls_writer USING (true) WITH CHECK (true);
CREATE POLICY reader_own_ledgers ON reconciliations FOR SELECT TO finance_reader
    USING (ledger_id IN (SELECT reader_ledgers()));

-- The reconciliation status per ledger date, for people.
CREATE VIEW reconciliation_status WITH (security_invoker = true) AS
SELECT ledger_id, ledger_date,
       bool_and(status = 'ok') AS reconciled,
       string_agg(topic || ': ' || status, ', ' ORDER BY topic) AS topics,
       sum(inserted)::int AS inserted, sum(only_stored)::int AS only_stored,
       sum(differing)::int AS differing, max(checked_at) AS checked_at
FROM reconciliations
GROUP BY ledger_id, ledger_date;
GRANT SELECT ON reconciliation_status TO vls_writer, finance_reader;
