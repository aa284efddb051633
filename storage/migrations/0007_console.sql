-- The admin web console (bot.web): one-time sign-in links and the sessions they open.
-- Only sha256 hashes of the link tokens and session ids are stored, so a copy of the
-- database signs no one in. `admin` is the admin's identity, "telegram:123",
-- "discord:456" or "cli:operator"; whether they are still an admin is asked of the
-- config at every request.

CREATE TABLE web_links (
    token_hash TEXT PRIMARY KEY,
    admin TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);

CREATE TABLE web_sessions (
    id_hash TEXT PRIMARY KEY,
    admin TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_seen TEXT NOT NULL
);

-- Each time the engine process had to be started again after it ended unexpectedly: the
-- console's figures read them (the Prometheus counter lives only as long as the process).
CREATE TABLE engine_restarts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL
);
CREATE INDEX engine_restarts_at ON engine_restarts (at);
