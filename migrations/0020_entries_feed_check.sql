-- Every entry belongs to a feed (`feed_cursors`): the rule the foreign key
-- `entries (ledger_id, topic) → feed_cursors` kept, now kept once per statement.
--
-- Why (issue 18, an initial sync at the speed of one COPY): a foreign key is checked one row
-- at a time, a query for each inserted entry; in a first sync that was a sixth of the
-- database's time (measured with perf; README, "Why it is fast"). A page of entries always
-- belongs to one feed, so one check per statement says the same for the whole page.
--
--   entries_have_a_feed     after each statement that inserts entries: every (ledger, topic)
--                           it inserted has its `feed_cursors` row, and that row is locked
--                           FOR KEY SHARE until the transaction ends (as the foreign key's
--                           check locked it), so it cannot be deleted or renamed meanwhile;
--   feed_keeps_its_entries  before a feed's row is deleted or its (ledger, topic) changed:
--                           refused while the feed holds entries.
-- Both refuse with foreign_key_violation (23503), as the constraint did. TRUNCATE of
-- `feed_cursors` stays refused by the foreign key from `reconciliations`.
-- The functions run with the caller's rights (the writer reads and locks feeds anyway) and
-- search only pg_catalog; they name their tables with the schema.

ALTER TABLE entries DROP CONSTRAINT entries_ledger_id_topic_fkey;

CREATE FUNCTION entries_have_a_feed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    first record;
    several boolean;
    feed record;
BEGIN
    SELECT ledger_id, topic INTO first FROM inserted LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- The daemon's statements (a page) hold one feed's entries: then no sorting is needed.
    several := EXISTS (SELECT 1 FROM inserted
                       WHERE ledger_id <> first.ledger_id OR topic <> first.topic);
    FOR feed IN
        SELECT first.ledger_id, first.topic WHERE NOT several
        UNION ALL
        SELECT DISTINCT i.ledger_id, i.topic FROM inserted i WHERE several
    LOOP
        PERFORM 1 FROM public.feed_cursors c
        WHERE c.ledger_id = feed.ledger_id AND c.topic = feed.topic
        FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'an entry of ledger %, topic % belongs to no feed (no feed_cursors row)',
                feed.ledger_id, feed.topic
                USING ERRCODE = 'foreign_key_violation';
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER entries_have_a_feed AFTER INSERT ON entries
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION entries_have_a_feed();

CREATE FUNCTION feed_keeps_its_entries() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND (NEW.ledger_id, NEW.topic) = (OLD.ledger_id, OLD.topic) THEN
        RETURN NEW;
    END IF;
    IF EXISTS (SELECT 1 FROM public.entries e
               WHERE e.ledger_id = OLD.ledger_id AND e.topic = OLD.topic) THEN
        RAISE EXCEPTION 'the feed of ledger %, topic % holds entries: it is neither deleted nor renamed',
            OLD.ledger_id, OLD.topic
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER feed_keeps_its_entries BEFORE DELETE OR UPDATE OF ledger_id, topic
    ON feed_cursors
    FOR EACH ROW EXECUTE FUNCTION feed_keeps_its_entries();
