-- Resilience: conflicting re-deliveries are recorded, and failing feeds are backed off.

-- An entry that arrived again with the key of a stored entry but different content. The
-- stored entry is never changed; both versions are kept here for a person to look at.
CREATE TABLE entry_conflicts (
    conflict_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ledger_id     text NOT NULL,
    topic         text NOT NULL,
    seq           bigint NOT NULL,
    entry_key     bytea NOT NULL,
    stored_raw    jsonb NOT NULL,
    received_raw  jsonb NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (ledger_id, topic, seq) REFERENCES entries
);
-- The same differing version served again is one conflict, not many.
CREATE UNIQUE INDEX entry_conflicts_once
    ON entry_conflicts (ledger_id, topic, entry_key, md5(received_raw::text));

ALTER TABLE feed_cursors
    ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error           text,
    ADD COLUMN last_error_at        timestamptz,
    ADD COLUMN next_attempt_at      timestamptz,
    ADD COLUMN last_success_at      timestamptz;
