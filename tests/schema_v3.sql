-- Schema version 3. The tracker answers from an index in memory; this file is its journal
-- (see tracker/journal.py): one row per group commit, whose blob holds that commit's changes
-- in order. A checkpoint writes the whole index into the journal and then deletes the rows
-- before it, so replaying the rows in seq order always rebuilds the index. Version 3 writes
-- each peer with its key (K records, where version 2 wrote P records without one).
CREATE TABLE journal (
    seq INTEGER PRIMARY KEY,
    records BLOB NOT NULL
);
