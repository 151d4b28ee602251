-- GBAT10 voucher numbers (issue 17): one per (ledger, ledger date), given the first time the
-- voucher is exported and kept, so an export run again gives each voucher the number it had,
-- no two vouchers ever share one, and none is skipped: the next number is the highest plus
-- one, taken under an advisory lock (`store::export_rows::voucher_number`), not from a
-- sequence (which leaves gaps). GBAT10 allows 8 digits.
CREATE TABLE voucher_numbers (
    ledger_id   text NOT NULL REFERENCES ledgers,
    ledger_date date NOT NULL,
    number      bigint NOT NULL UNIQUE CHECK (number BETWEEN 1 AND 99999999),
    assigned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ledger_id, ledger_date)
);

GRANT SELECT, INSERT ON voucher_numbers TO vls_writer;
GRANT SELECT ON voucher_numbers TO finance_reader;
ALTER TABLE voucher_numbers ENABLE ROW LEVEL SECURITY;
CREATE POLICY writer_all ON voucher_numbers TO vls_writer USING (true) WITH CHECK (true);
CREATE POLICY reader_consented ON voucher_numbers FOR SELECT TO finance_reader
    USING (EXISTS (SELECT 1 FROM consent_windows w JOIN reader_partners r
                       ON r.partner = w.partner
                   WHERE r.role_name = session_user::text
                     AND w.ledger_id = voucher_numbers.ledger_id
                     AND (w.open OR voucher_numbers.assigned_at < w.visible_until)));
