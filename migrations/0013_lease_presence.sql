-- A dead instance holds nothing: each instance keeps a session-level advisory lock on a key of
-- its own for as long as it runs (`store::presence`), and records that key on the leases it
-- takes. A lease whose key no session holds any more (the process died, its connection
-- closed) is free at once; a live holder, even a stalled one, keeps its lease until
-- `lease_expires_at` (sync.lease_ttl), and the fence refuses its late writes after that.
ALTER TABLE feed_cursors ADD COLUMN lease_key bigint;
