-- Schema version 2. The tracker answers from an index in memory and keeps this file a copy of
-- it, written behind in group commits, so nothing here is read on the hot path: no secondary
-- index and no trigger, just one row per live peer and one per torrent ever completed.

-- Completed downloads ever reported (scrape "downloaded"); never reset.
CREATE TABLE torrents (
    info_hash BLOB PRIMARY KEY,
    downloaded INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE peers (
    info_hash BLOB NOT NULL,
    peer_id BLOB NOT NULL,
    -- Compact form: packed IP then big-endian port, 6 or 18 bytes.
    address BLOB NOT NULL,
    seeder INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    -- Whether this peer's completion has been counted, so it is counted once.
    completed INTEGER NOT NULL,
    PRIMARY KEY (info_hash, peer_id)
) WITHOUT ROWID;
