-- Access for people and the daemon (roles are cluster-wide, so created only if missing):
--   vls_writer      the daemon's login is a member: reads and writes the synced data, may not
--                   change the schema (it owns nothing) and may not DELETE entries.
--   finance_reader  read-only; a login that is a member sees only the ledgers that the
--                   partners it is bound to in `reader_partners` hold or held a grant for.
-- README.md, "Access for finance teams", has the SQL to create a login for a team.
DO $$
BEGIN
    -- Amended (src/store/mod.rs, `migrations()`): PostgreSQL refuses CREATE ROLE to a login
    -- without CREATEROLE even when the role exists, so the roles are created only if missing.
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'vls_writer') THEN
        BEGIN
            CREATE ROLE vls_writer NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'finance_reader') THEN
        BEGIN
            CREATE ROLE finance_reader NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
END
$$;

-- Which partners' ledgers each reader login may see.
CREATE TABLE reader_partners (
    role_name text NOT NULL,
    partner   text NOT NULL,
    PRIMARY KEY (role_name, partner)
);

GRANT USAGE ON SCHEMA public TO vls_writer, finance_reader;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO vls_writer;
GRANT DELETE ON ledgers, grants, feed_cursors, merchants, partners TO vls_writer;
REVOKE ALL ON reader_partners FROM vls_writer;
GRANT SELECT ON _sqlx_migrations TO vls_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO finance_reader;
REVOKE ALL ON reader_partners, _sqlx_migrations FROM finance_reader;

-- The ledgers a reader may see: those its partners hold or held a grant for.
CREATE FUNCTION reader_ledgers() RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT DISTINCT g.ledger_id FROM grants g
    JOIN reader_partners r ON r.partner = g.partner
    WHERE r.role_name = session_user
$$;
REVOKE ALL ON FUNCTION reader_ledgers() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION reader_ledgers() TO finance_reader;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['entries', 'ledgers', 'grants', 'feed_cursors',
        'balance_chain_breaks', 'entry_conflicts'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY writer_all ON %I TO vls_writer USING (true) WITH CHECK (true)', t);
        EXECUTE format('CREATE POLICY reader_own_ledgers ON %I FOR SELECT TO finance_reader
            USING (ledger_id IN (SELECT reader_ledgers()))', t);
    END LOOP;
END
$$;

-- Merchants and partners are seen through the ledgers and grants above.
ALTER TABLE merchants ENABLE ROW LEVEL SECURITY;
CREATE POLICY writer_all ON merchants TO vls_writer USING (true) WITH CHECK (true);
CREATE POLICY reader_own_merchants ON merchants FOR SELECT TO finance_reader
    USING (EXISTS (SELECT 1 FROM ledgers l WHERE l.owner_scheme = merchants.merchant_scheme
        AND l.owner_id = merchants.merchant_id));
ALTER TABLE partners ENABLE ROW LEVEL SECURITY;
CREATE POLICY writer_all ON partners TO vls_writer USING (true) WITH CHECK (true);
CREATE POLICY reader_own_partners ON partners FOR SELECT TO finance_reader
    USING (partner IN (SELECT r.partner FROM reader_partners r WHERE r.role_name = session_user));

-- Views run with the privileges of whoever queries them, so row-level security applies.
ALTER VIEW daily_summary SET (security_invoker = true);
ALTER VIEW current_balances SET (security_invoker = true);
ALTER VIEW payouts SET (security_invoker = true);
ALTER VIEW payout_entries SET (security_invoker = true);
GRANT SELECT ON daily_summary, current_balances, payouts, payout_entries TO vls_writer, finance_reader;
