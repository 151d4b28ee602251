-- Personal data (GDPR), off by default: the payer's name, masked phone number and message,
-- stored only when `sync.include_gdpr_sensitive_data` is on, in their own columns (never in
-- `raw`) so they can be purged without touching anything else.
ALTER TABLE entries
    ADD COLUMN name            text,
    ADD COLUMN masked_phone_no text,
    ADD COLUMN message         text;

-- Only the rows that still hold personal data, so the retention purge stays cheap.
CREATE INDEX entries_with_personal_data ON entries (time)
    WHERE name IS NOT NULL OR masked_phone_no IS NOT NULL OR message IS NOT NULL;
