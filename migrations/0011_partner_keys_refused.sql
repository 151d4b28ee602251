-- Why a partner's last listing (or first token request) failed: `keys_refused` when the API
-- refused its accounting keys (the token endpoint said no, or a data call answered 401 with a
-- fresh token, or 403), so `vls_partner_up` and its alert mean "the keys", not "the API had a
-- bad minute" (5xx, timeouts and 429s leave it false). Rows from before this migration count
-- as not refused until their partner's next listing.
ALTER TABLE partners
    ADD COLUMN keys_refused boolean NOT NULL DEFAULT false,
    ADD CHECK (NOT keys_refused OR failed_at IS NOT NULL);
