-- Payouts as a unit an accountant books (issue 17): per payout, the transactions it settles,
-- and the payout's totals. Both run with the reader's rights (security_invoker), so row-level
-- security applies to them as to `entries`. Sums are `numeric`: exact whatever the amounts.

-- Per payout and transaction (`psp_reference`): what the funds entries the payout covers
-- captured, refunded and otherwise moved for it, the fees the fees feed charged for it
-- (`capture-fee` and `service-fee` entries of the same pspReference, on whatever date; they
-- belong to the payout that settles the capture, so a later refund or dispute of it in
-- another payout carries none), and the net. Ledger-level entries (`fees-retained`, the payout itself, `payout-aborted`) are not
-- transactions; `payout_totals` has them.
CREATE VIEW payout_transactions WITH (security_invoker = true) AS
SELECT t.ledger_id, t.payout_reference, t.psp_reference, t.reference, t.recipient_handle,
       t.currency, t.first_time, t.ledger_date, t.entries, t.captured, t.refunded, t.other,
       t.captured + t.refunded + t.other AS gross,
       t.fees,
       t.captured + t.refunded + t.other + t.fees AS net
FROM (
    SELECT pe.ledger_id, pe.payout_reference, pe.psp_reference,
           min(pe.reference) AS reference, min(pe.recipient_handle) AS recipient_handle,
           min(pe.currency) AS currency, min(pe.time) AS first_time,
           min(pe.ledger_date) AS ledger_date, count(*) AS entries,
           coalesce(sum(pe.amount) FILTER (WHERE pe.entry_type = 'capture'), 0)::numeric AS captured,
           coalesce(sum(pe.amount) FILTER (WHERE pe.entry_type = 'refund'), 0)::numeric AS refunded,
           coalesce(sum(pe.amount) FILTER (WHERE pe.entry_type NOT IN ('capture', 'refund')), 0)::numeric AS other,
           CASE WHEN bool_or(pe.entry_type = 'capture') THEN
               coalesce((SELECT sum(f.amount) FROM entries f
                         WHERE f.ledger_id = pe.ledger_id AND f.topic = 'fees'
                           AND f.psp_reference = pe.psp_reference
                           AND f.entry_type IN ('capture-fee', 'service-fee')), 0)
           ELSE 0 END::numeric AS fees
    FROM payout_entries pe
    WHERE pe.entry_type NOT IN ('payout-scheduled', 'scheduled-for-payout', 'fees-retained',
                                'payout-aborted')
    GROUP BY pe.ledger_id, pe.payout_reference, pe.psp_reference
) t;

-- One row per payout: what it settles, by kind, and where the money went. `paid_out` equals
-- `transactions_gross + fees_retained + ledger_other` (the funds entries it covers, the
-- payout excluded, from a balance of zero after the previous payout); `fees_charged` is what
-- the fees feed charged for its transactions, which on net settlement `fees_retained`
-- recovers (not always on the same day).
CREATE VIEW payout_totals WITH (security_invoker = true) AS
SELECT p.ledger_id, p.payout_reference, p.bank_reference, p.time, p.currency,
       p.first_ledger_date, p.last_ledger_date, p.first_seq, p.last_seq, p.entries,
       l.payout_account_scheme AS bank_account_scheme, l.payout_account_id AS bank_account_id,
       p.paid_out::numeric AS paid_out,
       coalesce(x.transactions, 0) AS transactions,
       coalesce(x.captured, 0) AS captured,
       coalesce(x.refunded, 0) AS refunded,
       coalesce(x.other, 0) AS transactions_other,
       coalesce(x.gross, 0) AS transactions_gross,
       coalesce(x.fees, 0) AS fees_charged,
       coalesce(e.fees_retained, 0) AS fees_retained,
       coalesce(e.ledger_other, 0) AS ledger_other
FROM payouts p
JOIN ledgers l USING (ledger_id)
LEFT JOIN (
    SELECT payout_reference, ledger_id, count(*) AS transactions, sum(captured) AS captured,
           sum(refunded) AS refunded, sum(other) AS other, sum(gross) AS gross,
           sum(fees) AS fees
    FROM payout_transactions GROUP BY payout_reference, ledger_id
) x ON x.payout_reference = p.payout_reference AND x.ledger_id = p.ledger_id
LEFT JOIN (
    SELECT payout_reference, ledger_id,
           sum(amount) FILTER (WHERE entry_type = 'fees-retained')::numeric AS fees_retained,
           sum(amount) FILTER (WHERE entry_type = 'payout-aborted')::numeric AS ledger_other
    FROM payout_entries
    WHERE entry_type IN ('fees-retained', 'payout-aborted')
    GROUP BY payout_reference, ledger_id
) e ON e.payout_reference = p.payout_reference AND e.ledger_id = p.ledger_id;

GRANT SELECT ON payout_transactions, payout_totals TO vls_writer, finance_reader;
