-- From version 5 to version 6: the secrets behind UDP connection IDs, kept across restarts.
-- Nothing of version 5 changes.
CREATE TABLE connection_secrets (
    window_number INTEGER PRIMARY KEY,
    secret BLOB NOT NULL
);
