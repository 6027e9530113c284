-- From version 1 (peers and counts in tables kept by triggers) to version 2 (a journal). The
-- version 1 tables are kept, renamed, and read at start before the journal, until the first
-- checkpoint has written their contents into the journal and drops them.
DROP TRIGGER peer_added;
DROP TRIGGER peer_removed;
DROP TRIGGER peer_changed;
DROP TRIGGER peer_completed;
DROP INDEX peers_by_slot;
DROP INDEX peers_by_age;
ALTER TABLE peers RENAME TO v1_peers;
ALTER TABLE torrents RENAME TO v1_torrents;
CREATE TABLE journal (
    seq INTEGER PRIMARY KEY,
    records BLOB NOT NULL
);
