-- Schema version 1. Swarm counts live on the torrent row and are kept exact by triggers, so an
-- announce reads them in one row instead of counting a swarm.
CREATE TABLE torrents (
    id INTEGER PRIMARY KEY,
    info_hash BLOB NOT NULL UNIQUE,
    seeders INTEGER NOT NULL DEFAULT 0,
    leechers INTEGER NOT NULL DEFAULT 0,
    -- Completed downloads ever reported (scrape "downloaded"); never reset.
    downloaded INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE peers (
    torrent_id INTEGER NOT NULL,
    peer_id BLOB NOT NULL,
    -- Compact form: packed IP then big-endian port, 6 or 18 bytes.
    address BLOB NOT NULL,
    seeder INTEGER NOT NULL,
    -- A random key: sampling starts at a random slot and reads on, so choosing peers costs the
    -- same in a swarm of 10 or of 100,000.
    slot INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    -- Whether this peer's completion has been counted, so it is counted once.
    completed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (torrent_id, peer_id)
) WITHOUT ROWID;

-- Covers peer sampling: seeders and leechers of one torrent in slot order, with their addresses.
CREATE INDEX peers_by_slot ON peers (torrent_id, seeder, slot, address);
CREATE INDEX peers_by_age ON peers (last_seen);

-- Completions are counted here too, so recording an announce is one upsert statement.
CREATE TRIGGER peer_added AFTER INSERT ON peers BEGIN
    UPDATE torrents
    SET seeders = seeders + NEW.seeder, leechers = leechers + 1 - NEW.seeder,
        downloaded = downloaded + NEW.completed
    WHERE id = NEW.torrent_id;
END;

CREATE TRIGGER peer_removed AFTER DELETE ON peers BEGIN
    UPDATE torrents
    SET seeders = seeders - OLD.seeder, leechers = leechers - 1 + OLD.seeder
    WHERE id = OLD.torrent_id;
END;

CREATE TRIGGER peer_changed AFTER UPDATE OF seeder ON peers
WHEN OLD.seeder != NEW.seeder BEGIN
    UPDATE torrents
    SET seeders = seeders + NEW.seeder - OLD.seeder, leechers = leechers - NEW.seeder + OLD.seeder
    WHERE id = NEW.torrent_id;
END;

-- A peer's completion is counted the first time its flag goes from 0 to 1, and never again.
CREATE TRIGGER peer_completed AFTER UPDATE OF completed ON peers
WHEN NEW.completed > OLD.completed BEGIN
    UPDATE torrents SET downloaded = downloaded + 1 WHERE id = NEW.torrent_id;
END;
