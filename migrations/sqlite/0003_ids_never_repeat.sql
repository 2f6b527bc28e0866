-- no-transaction
-- Identifiers that reach the outside never repeat. Without AUTOINCREMENT
-- SQLite hands out max(id)+1, so erasing the newest subscriber gave the next
-- signup the erased reader's id, and the erased reader's old links acted on
-- the newcomer. Subscribers, issues and deliveries (whose ids name
-- Message-IDs) are rebuilt with AUTOINCREMENT; subscribers also get a random
-- `link_salt`, which new (sealed) links carry beside the id, so a link dies
-- with its subscriber.
--
-- SQLite cannot add AUTOINCREMENT in place: this is its documented
-- rebuild (foreign keys off, copy, drop, rename), in one transaction of our
-- own so that `PRAGMA foreign_keys` can change outside it.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

CREATE TABLE subscribers_rebuilt (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    email      TEXT    NOT NULL,
    email_key  TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    -- Set when mail to the address bounced for good (5.1.x); cleared by a new opt-in.
    suppressed_at INTEGER,
    -- Sealed into links with the id and checked against this row: a link
    -- outlives no erasure. Not indexed (lookups go by id): scattered inserts
    -- into an index on a random value cost more than the rest of a signup.
    link_salt  INTEGER NOT NULL DEFAULT (random())
);
INSERT INTO subscribers_rebuilt (id, email, email_key, created_at, suppressed_at)
    SELECT id, email, email_key, created_at, suppressed_at FROM subscribers;
DROP TABLE subscribers;
ALTER TABLE subscribers_rebuilt RENAME TO subscribers;

CREATE TABLE issues_rebuilt (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    newsletter_id   INTEGER NOT NULL REFERENCES newsletters(id),
    subject         TEXT    NOT NULL,
    body_markdown   TEXT    NOT NULL,
    content_hash    TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('sending', 'paused', 'done')),
    paused_reason   TEXT,
    policy_failures INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    completed_at    INTEGER
);
INSERT INTO issues_rebuilt SELECT id, newsletter_id, subject, body_markdown, content_hash, status, paused_reason,
    policy_failures, created_at, completed_at FROM issues;
DROP TABLE issues;
ALTER TABLE issues_rebuilt RENAME TO issues;
CREATE INDEX issues_by_content ON issues (newsletter_id, content_hash);

CREATE TABLE deliveries_rebuilt (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT    NOT NULL CHECK (kind IN ('confirmation', 'issue')),
    issue_id        INTEGER REFERENCES issues(id),
    subscriber_id   INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
    status          TEXT    NOT NULL CHECK (status IN ('queued', 'retry', 'sending', 'sent', 'failed', 'bounced', 'skipped', 'ambiguous')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    claim_token     TEXT,
    lease_until     INTEGER,
    last_reply      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    UNIQUE (issue_id, subscriber_id)
);
INSERT INTO deliveries_rebuilt SELECT id, kind, issue_id, subscriber_id, status, attempts, next_attempt_at,
    claim_token, lease_until, last_reply, created_at, sent_at FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_rebuilt RENAME TO deliveries;
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at, id);
CREATE INDEX deliveries_by_subscriber ON deliveries (subscriber_id, kind, created_at);
CREATE INDEX deliveries_by_issue ON deliveries (issue_id, status);

-- Links signed before this migration name the subscriber by id; they keep
-- working, but only for subscribers who existed before it.
INSERT INTO settings (name, value) VALUES ('legacy_links_before', CAST(strftime('%s', 'now') AS TEXT))
    ON CONFLICT (name) DO NOTHING;

COMMIT;
PRAGMA foreign_keys = ON;
