-- A bounce refused for the sender's reasons after a 250 (README, "Bounces
-- and complaints": policy, reputation, a blocklist, SPF/DKIM/DMARC, content)
-- is recorded as kind 'sender_refused': counted against its issue, never
-- against the reader. SQLite cannot change a CHECK, so the table is built
-- again with the wider one and its rows copied, ids kept.
CREATE TABLE feedback_events_new (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    subscriber_id INTEGER,
    delivery_id   INTEGER,
    issue_id      INTEGER,
    kind          TEXT    NOT NULL CHECK (kind IN ('hard_bounce', 'soft_bounce', 'sender_refused', 'complaint')),
    source        TEXT    NOT NULL,
    detail        TEXT    NOT NULL DEFAULT '',
    report_id     TEXT    UNIQUE,
    created_at    INTEGER NOT NULL
);
INSERT INTO feedback_events_new (id, subscriber_id, delivery_id, issue_id, kind, source, detail, report_id, created_at)
    SELECT id, subscriber_id, delivery_id, issue_id, kind, source, detail, report_id, created_at FROM feedback_events;
DROP TABLE feedback_events;
ALTER TABLE feedback_events_new RENAME TO feedback_events;
CREATE INDEX feedback_events_by_subscriber ON feedback_events (subscriber_id, kind, created_at);
CREATE INDEX feedback_events_by_issue ON feedback_events (issue_id, kind);
