-- Adaptive polling (issue 18): each feed's own next poll, from what it has shown. Stored, so
-- a restart (or another instance) keeps every feed's schedule.
--   poll_interval_secs  the feed's current interval: twice the time it takes to get news
--                       (`news_gap_secs`), or while that is unknown the minimum after news and
--                       doubled after each poll without, within `sync.min_poll_interval` and
--                       `sync.max_poll_interval`; null until first polled under the schedule
--   news_gap_secs       how long the feed takes to get news: a moving average of the time
--                       between polls that stored entries, raised to the time since the last
--                       news while none comes
--   next_poll_at        when `run` polls it next; null: at once (a new grant's feeds)
--   last_news_at        when a poll last stored entries
--   polled_at           when it was last polled
ALTER TABLE feed_cursors
    ADD COLUMN poll_interval_secs integer CHECK (poll_interval_secs > 0),
    ADD COLUMN news_gap_secs double precision CHECK (news_gap_secs >= 0),
    ADD COLUMN next_poll_at timestamptz,
    ADD COLUMN last_news_at timestamptz,
    ADD COLUMN polled_at timestamptz;
GRANT UPDATE (poll_interval_secs, news_gap_secs, next_poll_at, last_news_at, polled_at)
    ON feed_cursors TO vls_writer;
CREATE INDEX feed_cursors_polled ON feed_cursors (polled_at);

-- Every poll of the last two hours, by any instance: a pass counts the last hour's against
-- `sync.polls_per_hour` (a feed polled ten times is ten polls), and prunes the older ones.
CREATE TABLE feed_polls (polled_at timestamptz NOT NULL);
CREATE INDEX feed_polls_at ON feed_polls (polled_at);
GRANT SELECT, INSERT, DELETE ON feed_polls TO vls_writer;
