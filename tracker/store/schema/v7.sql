-- Schema version 7. The tracker answers from an index in memory; the journal table is its
-- journal (see tracker/core/journal.py): a group commit's changes in order, in one or more rows of
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
-- The secrets behind UDP connection IDs (BEP 15; tracker/udp/connection_ids.py), each under the
-- number of the time window it serves, so that an ID issued before a restart is still accepted
-- after it. Only the last two windows' are kept.
CREATE TABLE connection_secrets (
    window_number INTEGER PRIMARY KEY,
    secret BLOB NOT NULL
);

-- The mode the tracker last ran in on this file, 'public' or 'private' (one row; none yet in a
-- new file): the stored peers announced in that mode, and a start in the other one forgets
-- them rather than hand them to the other mode's users (tracker/store/sqlite.py).
CREATE TABLE run_mode (
    mode TEXT NOT NULL CHECK (mode IN ('public', 'private'))
);
