-- From version 3 to version 4: the access list's stored torrents and private mode's passkeys.
-- Nothing of version 3 changes.
CREATE TABLE listed_torrents (
    list TEXT NOT NULL CHECK (list IN ('whitelist', 'blacklist')),
    info_hash BLOB NOT NULL,
    PRIMARY KEY (list, info_hash)
) WITHOUT ROWID;
CREATE TABLE passkeys (
    passkey TEXT PRIMARY KEY,
    label TEXT NOT NULL DEFAULT '',
    created INTEGER NOT NULL,
    uploaded INTEGER NOT NULL DEFAULT 0,
    downloaded INTEGER NOT NULL DEFAULT 0
);
