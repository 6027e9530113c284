-- From version 6 to version 7: the mode the tracker runs in is recorded (run_mode), so that a
-- start in the other mode forgets the stored peers. Until now it was not recorded: a file with
-- passkeys has run in private mode (only private mode's admin API adds them), any other in
-- public mode, or in private mode with no passkey, in which no announce stores a peer.
CREATE TABLE run_mode (
    mode TEXT NOT NULL CHECK (mode IN ('public', 'private'))
);
INSERT INTO run_mode (mode)
SELECT CASE WHEN EXISTS (SELECT 1 FROM passkeys) THEN 'private' ELSE 'public' END;
