-- Who may see and change what, hardened (docs/security.md has the threat model).
--
-- 1. No definer's rights anywhere. Row-level security reads the tables it needs as the reader
--    itself: a policy's expression is stored with the tables it names already resolved, so
--    nothing a reader creates in its temporary schema can stand in for them, and no function
--    runs with another role's rights (migration 0007's SECURITY DEFINER `reader_ledgers()`
--    looked its tables up on every call, `pg_temp` first).
-- 2. Consent bounded in time: a partner sees what was recorded while it could read the ledger
--    (see the view `consent_windows` below), not what arrived after its grant ended.
-- 3. The writer (the daemon's login) cannot rewrite history: no write on `_sqlx_migrations`,
--    no change to a stored entry but emptying its personal data, no deleting or rewriting a
--    closed grant period, no DELETE anywhere.
-- 4. Readers read their own partners' rows; the payer's personal data needs a role of its own.
--
-- Roles are cluster-wide: created here only if missing (docs/operations.md creates them first
-- as the superuser, so the owner applying migrations needs no CREATEROLE).
DO $$
BEGIN
    -- CREATE ROLE is refused without CREATEROLE even for a role that exists: only if missing.
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'finance_personal_data') THEN
        BEGIN
            CREATE ROLE finance_personal_data NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
END
$$;

-- Nobody but the owner creates objects that others' queries could find (PostgreSQL 15's
-- default; said again for databases created from an older template).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- Migration 0007's reader policies and the definer function they called.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['entries', 'ledgers', 'grants', 'feed_cursors',
        'balance_chain_breaks', 'entry_conflicts', 'reconciliations', 'export_log'] LOOP
        EXECUTE format('DROP POLICY reader_own_ledgers ON %I', t);
    END LOOP;
END
$$;
DROP POLICY reader_own_merchants ON merchants;
DROP POLICY reader_own_partners ON partners;
DROP FUNCTION reader_ledgers();

-- A reader login reads its own bindings (and no one else's), so the policies below can read
-- them with the reader's own rights.
GRANT SELECT ON reader_partners TO finance_reader;
ALTER TABLE reader_partners ENABLE ROW LEVEL SECURITY;
CREATE POLICY reader_self ON reader_partners FOR SELECT TO finance_reader
    USING (role_name = session_user::text);

-- Grant periods: a reader sees its own partners' periods only (not which other partners a
-- merchant shares a ledger with).
CREATE POLICY reader_own_partners ON grants FOR SELECT TO finance_reader
    USING (partner IN (SELECT r.partner FROM reader_partners r
                       WHERE r.role_name = session_user::text));

-- The consent rule in one place. A partner may see what was recorded about ledger L before
-- the end of one of its grant periods on L; an open period ends at infinity, so while it
-- holds, the partner sees everything (the API would serve it the whole history); a re-grant
-- restores everything. Row-level security and every partner filter of the daemon use it.
CREATE VIEW consent_windows WITH (security_invoker = true) AS
SELECT grant_id, partner, ledger_id, merchant_scheme, merchant_id, granted_seen_at,
       coalesce(revoked_seen_at, 'infinity'::timestamptz) AS visible_until,
       revoked_seen_at IS NULL AS open
FROM grants;
GRANT SELECT ON consent_windows TO vls_writer, finance_reader;

-- When a ledger's description (currency, owner, payout account, sales units) last changed,
-- so a partner whose grant ended does not see a later change (a new payout account).
ALTER TABLE ledgers ADD COLUMN changed_at timestamptz;
UPDATE ledgers SET changed_at = first_seen_at;
ALTER TABLE ledgers ALTER COLUMN changed_at SET NOT NULL,
    ALTER COLUMN changed_at SET DEFAULT now();

-- Which partner an exporter delivers for (its `partner` key; null: the whole installation),
-- so a reader sees the export log of its own partners' exporters only.
ALTER TABLE export_log ADD COLUMN partner text;

-- Reader policies: rows recorded before the end of one of the reader's partners' grant
-- periods on the row's ledger (`recorded` names the column that says when).
DO $$
DECLARE
    t text;
    recorded text;
BEGIN
    FOR t, recorded IN VALUES ('entries', 'synced_at'), ('balance_chain_breaks', 'detected_at'),
        ('entry_conflicts', 'first_seen_at'), ('reconciliations', 'checked_at'),
        ('ledgers', 'changed_at') LOOP
        EXECUTE format(
            'CREATE POLICY reader_consented ON %1$I FOR SELECT TO finance_reader
                USING (EXISTS (SELECT 1 FROM consent_windows w JOIN reader_partners r
                                   ON r.partner = w.partner
                               WHERE r.role_name = session_user::text
                                 AND w.ledger_id = %1$I.ledger_id
                                 AND (w.open OR %1$I.%2$I < w.visible_until)))',
            t, recorded);
    END LOOP;
END
$$;

-- Where a feed stands now (its cursor, balance, errors): only while a grant holds.
CREATE POLICY reader_consented ON feed_cursors FOR SELECT TO finance_reader
    USING (EXISTS (SELECT 1 FROM consent_windows w JOIN reader_partners r
                       ON r.partner = w.partner
                   WHERE r.role_name = session_user::text
                     AND w.ledger_id = feed_cursors.ledger_id AND w.open));

-- A merchant: while a grant on one of its ledgers holds, or if nobody has listed it since
-- one ended.
CREATE POLICY reader_consented ON merchants FOR SELECT TO finance_reader
    USING (EXISTS (SELECT 1 FROM consent_windows w JOIN reader_partners r
                       ON r.partner = w.partner
                   WHERE r.role_name = session_user::text
                     AND w.merchant_scheme = merchants.merchant_scheme
                     AND w.merchant_id = merchants.merchant_id
                     AND (w.open OR merchants.last_seen_at < w.visible_until)));

-- A reader's own partners' health.
CREATE POLICY reader_own_partners ON partners FOR SELECT TO finance_reader
    USING (partner IN (SELECT r.partner FROM reader_partners r
                       WHERE r.role_name = session_user::text));

-- The export log of the reader's partners' exporters, recorded within a grant period.
CREATE POLICY reader_consented ON export_log FOR SELECT TO finance_reader
    USING (EXISTS (SELECT 1 FROM consent_windows w JOIN reader_partners r
                       ON r.partner = w.partner
                   WHERE r.role_name = session_user::text
                     AND w.partner = export_log.partner
                     AND w.ledger_id = export_log.ledger_id
                     AND (w.open OR export_log.updated_at < w.visible_until)));

-- The payer's personal data: readable by `finance_personal_data` only.
REVOKE SELECT ON entries FROM finance_reader;
GRANT SELECT (ledger_id, topic, seq, entry_key, psp_reference, entry_type, time, ledger_date,
    reference, currency, amount, balance_before, balance_after, recipient_handle, raw,
    synced_at) ON entries TO finance_reader;
GRANT SELECT ON entries TO finance_personal_data;
-- A member of `finance_personal_data` sees the same rows as a reader (it must also be a
-- member of `finance_reader`, which the policies name).

-- `payout_entries` listed every column of `entries`, personal data included; now the same
-- columns a reader may read.
DROP VIEW payout_entries;
CREATE VIEW payout_entries WITH (security_invoker = true) AS
SELECT p.payout_reference, e.ledger_id, e.topic, e.seq, e.entry_key, e.psp_reference,
       e.entry_type, e.time, e.ledger_date, e.reference, e.currency, e.amount,
       e.balance_before, e.balance_after, e.recipient_handle, e.raw, e.synced_at
FROM payouts p
JOIN entries e ON e.ledger_id = p.ledger_id AND e.topic = 'funds'
              AND e.seq BETWEEN p.first_seq AND p.last_seq;
GRANT SELECT ON payout_entries TO vls_writer, finance_reader;

-- The writer: what the daemon does, and nothing that rewrites history.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON _sqlx_migrations FROM vls_writer;
REVOKE DELETE ON ledgers, grants, feed_cursors, merchants, partners FROM vls_writer;
-- Entries: inserted (`synced_at` always the database's clock), never changed but for the
-- personal-data purge.
REVOKE INSERT, UPDATE ON entries FROM vls_writer;
GRANT INSERT (ledger_id, topic, seq, entry_key, psp_reference, entry_type, time, ledger_date,
    reference, currency, amount, balance_before, balance_after, recipient_handle, raw, name,
    masked_phone_no, message) ON entries TO vls_writer;
GRANT UPDATE (name, masked_phone_no, message) ON entries TO vls_writer;
-- Chain breaks and conflicts are findings: recorded once, never edited.
REVOKE UPDATE ON balance_chain_breaks, entry_conflicts FROM vls_writer;
-- Grant periods: opened, seen, closed; who, which ledger and since when never change.
REVOKE UPDATE ON grants FROM vls_writer;
GRANT UPDATE (last_seen_at, merchant_scheme, merchant_id, revoked_seen_at, revoke_reason)
    ON grants TO vls_writer;
-- A period ends after it was last seen.
ALTER TABLE grants ADD CONSTRAINT grants_revoked_after_seen
    CHECK (revoked_seen_at IS NULL OR revoked_seen_at >= last_seen_at);

-- What privileges cannot say, triggers do, for everyone (the owner too, short of disabling
-- them): an entry's content never changes, its personal data may only be emptied; a closed
-- grant period never changes. The functions run with the caller's rights, name no table, and
-- search only pg_catalog.
CREATE FUNCTION entries_immutable() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF (NEW.ledger_id, NEW.topic, NEW.seq, NEW.entry_key, NEW.psp_reference, NEW.entry_type,
        NEW.time, NEW.ledger_date, NEW.reference, NEW.currency, NEW.amount,
        NEW.balance_before, NEW.balance_after, NEW.recipient_handle, NEW.raw, NEW.synced_at)
       IS DISTINCT FROM
       (OLD.ledger_id, OLD.topic, OLD.seq, OLD.entry_key, OLD.psp_reference, OLD.entry_type,
        OLD.time, OLD.ledger_date, OLD.reference, OLD.currency, OLD.amount,
        OLD.balance_before, OLD.balance_after, OLD.recipient_handle, OLD.raw, OLD.synced_at)
    THEN
        RAISE EXCEPTION 'entries are never changed once stored (ledger %, topic %, seq %)',
            OLD.ledger_id, OLD.topic, OLD.seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.name IS NOT NULL AND NEW.name IS DISTINCT FROM OLD.name)
       OR (NEW.masked_phone_no IS NOT NULL AND NEW.masked_phone_no IS DISTINCT FROM OLD.masked_phone_no)
       OR (NEW.message IS NOT NULL AND NEW.message IS DISTINCT FROM OLD.message)
    THEN
        RAISE EXCEPTION 'an entry''s personal data may only be emptied (ledger %, topic %, seq %)',
            OLD.ledger_id, OLD.topic, OLD.seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER entries_immutable BEFORE UPDATE ON entries
    FOR EACH ROW EXECUTE FUNCTION entries_immutable();

CREATE FUNCTION grants_closed_immutable() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF OLD.revoked_seen_at IS NOT NULL THEN
        RAISE EXCEPTION 'grant period % is closed; a closed period is never changed (a new grant opens a new period)',
            OLD.grant_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER grants_closed_immutable BEFORE UPDATE ON grants
    FOR EACH ROW EXECUTE FUNCTION grants_closed_immutable();
