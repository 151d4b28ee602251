-- Views for finance teams. Amounts in minor units, signed relative to the topic's account.

-- Counts and sums per ledger, topic, ledger date and entry type.
CREATE VIEW daily_summary AS
SELECT ledger_id, topic, ledger_date, entry_type, currency,
       count(*) AS entries, sum(amount)::bigint AS amount_sum
FROM entries
GROUP BY ledger_id, topic, ledger_date, entry_type, currency;

-- The balance of every (ledger, topic) after its newest stored entry.
CREATE VIEW current_balances AS
SELECT c.ledger_id, c.topic, l.currency, c.last_balance_after AS balance,
       c.last_seq AS entries, e.time AS as_of, e.ledger_date AS as_of_ledger_date
FROM feed_cursors c
JOIN ledgers l USING (ledger_id)
LEFT JOIN entries e ON e.ledger_id = c.ledger_id AND e.topic = c.topic AND e.seq = c.last_seq
WHERE c.last_seq > 0;

-- One row per payout (the `payout-scheduled` entry, either spelling, on `funds`), with the
-- funds entries it covers: those after the previous payout of the ledger, up to and
-- including this one (seq first_seq..last_seq), and the ledger dates they span.
CREATE VIEW payouts AS
WITH p AS (
    SELECT ledger_id, seq, psp_reference, reference, time, ledger_date, amount, currency,
           lag(seq) OVER (PARTITION BY ledger_id ORDER BY seq) AS previous_seq
    FROM entries
    WHERE topic = 'funds' AND entry_type IN ('payout-scheduled', 'scheduled-for-payout')
)
SELECT p.ledger_id,
       p.psp_reference AS payout_reference,
       p.reference AS bank_reference,
       p.time,
       -p.amount AS paid_out,
       p.currency,
       coalesce(p.previous_seq, 0) + 1 AS first_seq,
       p.seq AS last_seq,
       p.seq - coalesce(p.previous_seq, 0) AS entries,
       (SELECT min(e.ledger_date) FROM entries e
        WHERE e.ledger_id = p.ledger_id AND e.topic = 'funds'
          AND e.seq > coalesce(p.previous_seq, 0) AND e.seq <= p.seq) AS first_ledger_date,
       p.ledger_date AS last_ledger_date
FROM p;

-- Every funds entry with the payout that covers it (entries after the newest payout are not
-- paid out yet and are absent).
CREATE VIEW payout_entries AS
SELECT p.payout_reference, e.*
FROM payouts p
JOIN entries e ON e.ledger_id = p.ledger_id AND e.topic = 'funds'
              AND e.seq BETWEEN p.first_seq AND p.last_seq;
