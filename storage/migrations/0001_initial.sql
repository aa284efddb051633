-- The first schema: users, consents, photos, LoRAs, jobs and the audit log.
-- AUTOINCREMENT keeps ids of erased users from ever being handed out again.

CREATE TABLE users (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    platform         TEXT NOT NULL,
    platform_user_id TEXT NOT NULL,
    trigger_word     TEXT,
    created_at       TEXT NOT NULL,
    UNIQUE (platform, platform_user_id)
);

CREATE TABLE consents (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    version      TEXT NOT NULL,
    text_sha256  TEXT NOT NULL,
    platform     TEXT NOT NULL,
    accepted_at  TEXT NOT NULL,
    withdrawn_at TEXT
);
CREATE INDEX consents_user ON consents (user_id);

CREATE TABLE photos (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    sha256      TEXT NOT NULL,       -- of the bytes as uploaded
    image_blob  TEXT NOT NULL,       -- the upright, metadata-free image
    crop_blob   TEXT NOT NULL,       -- the square training crop
    descriptor  BLOB NOT NULL,       -- 128 float32, little-endian
    dhash       TEXT NOT NULL,       -- 16 hex digits
    face_box    TEXT NOT NULL,       -- JSON [left, top, right, bottom]
    sharpness   REAL NOT NULL,
    verdict     TEXT NOT NULL CHECK (verdict IN ('accepted', 'flagged', 'rejected')),
    reason      TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX photos_user ON photos (user_id);

CREATE TABLE loras (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    version      INTEGER NOT NULL,
    base_model   TEXT NOT NULL,
    family       TEXT NOT NULL,
    trigger_word TEXT NOT NULL,
    blob         TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    recipe       TEXT NOT NULL DEFAULT '{}',
    active       INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL,
    UNIQUE (user_id, version)
);

CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    params      TEXT NOT NULL DEFAULT '{}',
    status      TEXT NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    progress    REAL NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    result      TEXT,
    created_at  TEXT NOT NULL,
    started_at  TEXT,
    finished_at TEXT,
    updated_at  TEXT NOT NULL
);
CREATE INDEX jobs_status ON jobs (status, created_at);
CREATE INDEX jobs_user ON jobs (user_id);

-- Append-only: rows can be added, never changed or removed. Entries about a user's own
-- data carry no identifier of that user, so erasure leaves only the fact that it happened.
CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     TEXT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
