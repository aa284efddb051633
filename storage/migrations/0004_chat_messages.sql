-- What a chat front end still owes its users: the message that shows a job's progress,
-- kept until the job's final answer is delivered, so that a restarted bot (Telegram or
-- Discord) finds the message again and finishes it. Ids are text: each platform has its own.
-- Erasing the user or the job removes the row with them.

CREATE TABLE chat_messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    platform   TEXT NOT NULL,
    chat_id    TEXT NOT NULL,
    message_id TEXT NOT NULL,
    job_id     INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    UNIQUE (platform, job_id)
);
CREATE INDEX chat_messages_user ON chat_messages (user_id);
