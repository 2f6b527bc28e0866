-- Bounces and complaints that come back after the SMTP reply (README,
-- "Bounces and complaints"): one row per report applied. `report_id` is a
-- SHA-256 of the report's own id (a DSN's Message-ID, an SES feedback id
-- with the recipient), so the same report applied twice counts once. No foreign keys, as
-- the ledger: erasure clears `subscriber_id` itself, and an issue's counts
-- outlive its readers. `detail` is the remote's status and diagnostic,
-- addresses taken out.
CREATE TABLE feedback_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    subscriber_id INTEGER,
    delivery_id   INTEGER,
    issue_id      INTEGER,
    kind          TEXT    NOT NULL CHECK (kind IN ('hard_bounce', 'soft_bounce', 'complaint')),
    source        TEXT    NOT NULL,
    detail        TEXT    NOT NULL DEFAULT '',
    report_id     TEXT    UNIQUE,
    created_at    INTEGER NOT NULL
);
-- Soft bounces of one reader within the window; an issue's counts.
CREATE INDEX feedback_events_by_subscriber ON feedback_events (subscriber_id, kind, created_at);
CREATE INDEX feedback_events_by_issue ON feedback_events (issue_id, kind);

-- Why a subscriber is suppressed: 'bounced' (also NULL, as before this
-- column) or 'complained' (the reader reported our mail as spam).
ALTER TABLE subscribers ADD COLUMN suppressed_reason TEXT CHECK (suppressed_reason IN ('bounced', 'complained'));
