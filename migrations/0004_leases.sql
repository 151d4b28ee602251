-- Several instances on one database: each (ledger, topic) unit is leased to one instance at a
-- time. Every lease acquisition increments `fence`; a page is committed only while the stored
-- fence is still the committer's, so an instance that stalled past its lease can never
-- overwrite newer progress.
ALTER TABLE feed_cursors
    ADD COLUMN lease_holder     text,
    ADD COLUMN lease_expires_at timestamptz,
    ADD COLUMN fence            bigint NOT NULL DEFAULT 0;
