-- The durable job queue: cancellation requests, generated images, per-user trigger words.

ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;

CREATE TABLE images (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blob       TEXT NOT NULL,
    seed       INTEGER NOT NULL,
    width      INTEGER NOT NULL,
    height     INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX images_user ON images (user_id);
CREATE INDEX images_job ON images (job_id);

CREATE UNIQUE INDEX users_trigger_word ON users (trigger_word) WHERE trigger_word IS NOT NULL;

-- Results are keyed by the job that made them, so a job finished again after a crash
-- (its result stored, the program gone before the job was marked done) adds nothing twice.
ALTER TABLE loras ADD COLUMN job_id INTEGER;
CREATE UNIQUE INDEX loras_job ON loras (job_id) WHERE job_id IS NOT NULL;
CREATE UNIQUE INDEX images_job_blob ON images (job_id, blob);
