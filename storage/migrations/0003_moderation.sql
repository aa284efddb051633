-- Moderation: bans and suspensions, strikes, quotas, the review queue, admin-edited
-- blocklist terms and service settings (the queue's pause switch).

-- A ban or suspension: until a time, or NULL with a reason for "until an admin lifts it".
ALTER TABLE users ADD COLUMN banned_until TEXT;
ALTER TABLE users ADD COLUMN ban_reason TEXT;
-- Quotas an admin set for this user; NULL means the configured default.
ALTER TABLE users ADD COLUMN images_per_day INTEGER;
ALTER TABLE users ADD COLUMN trainings_per_week INTEGER;

-- A refused prompt counts as a strike; enough in the window suspends the user.
CREATE TABLE strikes (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    category TEXT NOT NULL,
    at       TEXT NOT NULL
);
CREATE INDEX strikes_user ON strikes (user_id, at);

-- What admins look at: refused prompts, blocked images, user reports. Everything about
-- the subject goes with them when they are erased.
CREATE TABLE review_items (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL CHECK (kind IN ('prompt', 'image', 'report')),
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    reporter_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
    job_id      INTEGER,
    blob        TEXT,            -- a blocked image kept for review (keep_blocked_images)
    detail      TEXT NOT NULL DEFAULT '{}',
    status      TEXT NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'approved', 'rejected', 'banned')),
    created_at  TEXT NOT NULL,
    resolved_at TEXT,
    resolved_by TEXT
);
CREATE INDEX review_items_open ON review_items (status, id);
CREATE INDEX review_items_user ON review_items (user_id);

-- Admin changes to the prompt filter's lists: added terms, and shipped terms taken out.
CREATE TABLE blocklist_terms (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    term       TEXT NOT NULL,
    category   TEXT NOT NULL,
    removed    INTEGER NOT NULL DEFAULT 0,
    added_by   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (term, category)
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
