-- Adaptive polling (issue 18): a feed's wake-up, apart from its regular next poll.
--   wake_at  when the feed's newest ledger date ends (plus the minimum interval): an extra
--            poll for the date's last entries and its payout, taken when the hour's budget
--            has room after the feeds whose regular poll is due (`next_poll_at`), so that the
--            midnight of thousands of ledgers never delays a feed past its maximum interval;
--            null: none planned
ALTER TABLE feed_cursors ADD COLUMN wake_at timestamptz;
GRANT UPDATE (wake_at) ON feed_cursors TO vls_writer;
