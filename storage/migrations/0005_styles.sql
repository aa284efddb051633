-- The admins' library of style LoRAs (`admin style add|list|remove`): one row per style,
-- its file in the blob store. Not owned by a user: erasing a user leaves the library alone,
-- and `added_by` is the admin's name as the audit log writes it.

CREATE TABLE styles (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    name      TEXT NOT NULL UNIQUE,
    blob      TEXT NOT NULL,
    sha256    TEXT NOT NULL,
    weight    REAL NOT NULL,
    trigger   TEXT NOT NULL DEFAULT '',
    family    TEXT NOT NULL,
    added_by  TEXT NOT NULL,
    added_at  TEXT NOT NULL
);
