-- The consent registry: merchants, partner health, and feeds blocked for a person to look at.

-- One row per merchant (the organisation owning a ledger) ever seen.
CREATE TABLE merchants (
    merchant_scheme text NOT NULL,
    merchant_id     text NOT NULL,
    first_seen_at   timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL,
    PRIMARY KEY (merchant_scheme, merchant_id)
);
INSERT INTO merchants (merchant_scheme, merchant_id, first_seen_at, last_seen_at)
SELECT owner_scheme, owner_id, min(first_seen_at), max(last_seen_at)
FROM ledgers WHERE owner_scheme IS NOT NULL AND owner_id IS NOT NULL
GROUP BY owner_scheme, owner_id;

-- One row per configured partner (set of accounting keys) that ever ran: is it healthy?
CREATE TABLE partners (
    partner           text PRIMARY KEY,
    first_seen_at     timestamptz NOT NULL DEFAULT now(),
    last_listing_at   timestamptz,
    last_listed       integer,
    failed_at         timestamptz,
    last_error        text,
    CHECK ((failed_at IS NULL) = (last_error IS NULL))
);

-- A feed whose stored cursor the API rejected is not restarted silently: it is blocked until
-- a person runs `reset-cursor`.
ALTER TABLE feed_cursors
    ADD COLUMN blocked_at     timestamptz,
    ADD COLUMN blocked_reason text,
    ADD CHECK ((blocked_at IS NULL) = (blocked_reason IS NULL));

CREATE INDEX grants_open_by_ledger ON grants (ledger_id) WHERE revoked_seen_at IS NULL;
