-- vipps-ledger-sync: the initial schema. Forward-only: never edit a migration once landed.
-- Every column is documented in README.md ("The database").

-- One row per ledger ever seen by any partner. Kept forever, also after access ends.
CREATE TABLE ledgers (
    ledger_id                     text PRIMARY KEY,
    currency                      text,
    owner_scheme                  text,
    owner_id                      text,
    payout_account_scheme         text,
    payout_account_id             text,
    settles_for_recipient_handles text[] NOT NULL DEFAULT '{}',
    sales_units                   jsonb NOT NULL DEFAULT '[]',
    raw                           jsonb NOT NULL,
    first_seen_at                 timestamptz NOT NULL DEFAULT now(),
    last_seen_at                  timestamptz NOT NULL DEFAULT now()
);

-- One row per grant period: partner P could read ledger L (owned by merchant M) from
-- granted_seen_at until revoked_seen_at (NULL while it holds). Re-granting opens a new row.
CREATE TABLE grants (
    grant_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner         text NOT NULL,
    ledger_id       text NOT NULL REFERENCES ledgers,
    merchant_scheme text,
    merchant_id     text,
    granted_seen_at timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL,
    revoked_seen_at timestamptz,
    revoke_reason   text CHECK (revoke_reason IN ('absent_from_list', 'feed_404')),
    CHECK ((revoked_seen_at IS NULL) = (revoke_reason IS NULL)),
    CHECK (last_seen_at >= granted_seen_at)
);
CREATE UNIQUE INDEX grants_one_open_period ON grants (partner, ledger_id) WHERE revoked_seen_at IS NULL;
CREATE INDEX grants_by_ledger ON grants (ledger_id);

-- Where each (ledger, topic) feed stands: the cursor to send next, committed in the same
-- transaction as the entries it follows.
CREATE TABLE feed_cursors (
    ledger_id          text NOT NULL REFERENCES ledgers,
    topic              text NOT NULL CHECK (topic IN ('funds', 'fees')),
    cursor             text,
    last_seq           bigint NOT NULL DEFAULT 0,
    last_balance_after bigint,
    pages              bigint NOT NULL DEFAULT 0,
    caught_up_at       timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ledger_id, topic)
);

-- One row per ledger entry, stored once: unique on the entry key within (ledger, topic).
CREATE TABLE entries (
    ledger_id        text NOT NULL,
    topic            text NOT NULL,
    seq              bigint NOT NULL CHECK (seq > 0),
    entry_key        bytea NOT NULL CHECK (length(entry_key) = 32),
    psp_reference    text NOT NULL,
    entry_type       text NOT NULL,
    time             timestamptz NOT NULL,
    ledger_date      date,
    reference        text,
    currency         text NOT NULL,
    amount           bigint NOT NULL,
    balance_before   bigint NOT NULL,
    balance_after    bigint NOT NULL,
    recipient_handle text,
    raw              jsonb NOT NULL,
    synced_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ledger_id, topic, seq),
    UNIQUE (ledger_id, topic, entry_key),
    FOREIGN KEY (ledger_id, topic) REFERENCES feed_cursors
);
CREATE INDEX entries_by_ledger_date ON entries (ledger_id, topic, ledger_date);
CREATE INDEX entries_by_psp_reference ON entries (psp_reference);

-- Places where the balance chain does not hold, found as entries arrive:
-- 'link': balance_before differs from the previous entry's balance_after;
-- 'arithmetic': balance_after differs from balance_before + amount.
CREATE TABLE balance_chain_breaks (
    ledger_id   text NOT NULL,
    topic       text NOT NULL,
    seq         bigint NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('link', 'arithmetic')),
    expected    bigint NOT NULL,
    actual      bigint NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ledger_id, topic, seq, kind),
    FOREIGN KEY (ledger_id, topic, seq) REFERENCES entries
);
