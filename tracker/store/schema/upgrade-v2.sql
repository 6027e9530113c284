-- From version 1 (counts kept by triggers, peers keyed by a torrent id) to version 2 (a plain
-- copy of the index in memory). Peers and completion counts carry over.
CREATE TABLE torrents_v2 (
    info_hash BLOB PRIMARY KEY,
    downloaded INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO torrents_v2 (info_hash, downloaded)
SELECT info_hash, downloaded FROM torrents WHERE downloaded > 0;

CREATE TABLE peers_v2 (
    info_hash BLOB NOT NULL,
    peer_id BLOB NOT NULL,
    address BLOB NOT NULL,
    seeder INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    completed INTEGER NOT NULL,
    PRIMARY KEY (info_hash, peer_id)
) WITHOUT ROWID;

INSERT INTO peers_v2 (info_hash, peer_id, address, seeder, last_seen, completed)
SELECT torrents.info_hash, peers.peer_id, peers.address, peers.seeder, peers.last_seen,
    peers.completed
FROM peers JOIN torrents ON torrents.id = peers.torrent_id;

DROP TRIGGER peer_added;
DROP TRIGGER peer_removed;
DROP TRIGGER peer_changed;
DROP TRIGGER peer_completed;
DROP TABLE peers;
DROP TABLE torrents;
ALTER TABLE torrents_v2 RENAME TO torrents;
ALTER TABLE peers_v2 RENAME TO peers;
