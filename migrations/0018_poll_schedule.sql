-- Adaptive polling (issue 18): each feed's own next poll, from what it has shown. Stored, so
-- a restart (or another instance) keeps every feed's schedule.
--   poll_interval_secs  the feed's current interval: the minimum after a poll that stored
--                       entries, doubled after each poll that found nothing, up to the maximum
--                       (`sync.min_poll_interval`, `sync.max_poll_interval`); null until the
--                       feed is first polled under the schedule
--   next_poll_at        when `run` polls it next; null: at once (a new grant's feeds)
--   last_news_at        when a poll last stored entries
--   polled_at           when it was last polled (a pass counts the polls of the last hour
--                       against `sync.polls_per_hour`, across every instance)
ALTER TABLE feed_cursors
    ADD COLUMN poll_interval_secs integer CHECK (poll_interval_secs > 0),
    ADD COLUMN next_poll_at timestamptz,
    ADD COLUMN last_news_at timestamptz,
    ADD COLUMN polled_at timestamptz;
GRANT UPDATE (poll_interval_secs, next_poll_at, last_news_at, polled_at)
    ON feed_cursors TO vls_writer;
CREATE INDEX feed_cursors_polled ON feed_cursors (polled_at);
