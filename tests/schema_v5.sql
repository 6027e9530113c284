-- Schema version 5. The tracker answers from an index in memory; the journal table is its
-- journal (see tracker/journal.py): a group commit's changes in order, in one or more rows of
-- whole records, each peer with its key (K records; version 2 wrote P records without one). A
-- checkpoint writes the whole index into the journal (B records, a run of peers each) and then
-- deletes the rows before it, so replaying the rows in seq order always rebuilds the index.
CREATE TABLE journal (
    seq INTEGER PRIMARY KEY,
    records BLOB NOT NULL
);
-- Torrents added to an access list through the admin API (the list file's are not stored).
-- Each row names its list, so that switching from --whitelist to --blacklist never turns one
-- into the other.
CREATE TABLE listed_torrents (
    list TEXT NOT NULL CHECK (list IN ('whitelist', 'blacklist')),
    info_hash BLOB NOT NULL,
    PRIMARY KEY (list, info_hash)
) WITHOUT ROWID;
-- Private mode's passkeys, with the bytes their announces reported moving (as deltas).
CREATE TABLE passkeys (
    passkey TEXT PRIMARY KEY,
    label TEXT NOT NULL DEFAULT '',
    created INTEGER NOT NULL,
    uploaded INTEGER NOT NULL DEFAULT 0,
    downloaded INTEGER NOT NULL DEFAULT 0
);
