-- Readers, their subscriptions, confirmation tokens, the consent record,
-- issues and the delivery ledger. Timestamps are Unix seconds (UTC).

CREATE TABLE newsletters (
    id          INTEGER PRIMARY KEY,
    slug        TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
);

CREATE TABLE subscribers (
    id         INTEGER PRIMARY KEY,
    email      TEXT    NOT NULL,
    email_key  TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    -- Set when mail to the address bounced for good (5.1.x); cleared by a new opt-in.
    suppressed_at INTEGER
);

CREATE TABLE subscriptions (
    subscriber_id   INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
    newsletter_id   INTEGER NOT NULL REFERENCES newsletters(id),
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'confirmed', 'unsubscribed')),
    created_at      INTEGER NOT NULL,
    confirmed_at    INTEGER,
    unsubscribed_at INTEGER,
    PRIMARY KEY (subscriber_id, newsletter_id)
);
CREATE INDEX subscriptions_by_newsletter ON subscriptions (newsletter_id, status, subscriber_id);

CREATE TABLE confirmation_tokens (
    token_hash    TEXT    PRIMARY KEY,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER
);
CREATE INDEX confirmation_tokens_by_subscriber ON confirmation_tokens (subscriber_id);

CREATE TABLE consent_events (
    id            INTEGER PRIMARY KEY,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
    newsletter_id INTEGER NOT NULL REFERENCES newsletters(id),
    action        TEXT    NOT NULL CHECK (action IN ('signup', 'confirm', 'unsubscribe')),
    source        TEXT    NOT NULL,
    ip            TEXT,
    user_agent    TEXT,
    created_at    INTEGER NOT NULL
);
CREATE INDEX consent_events_by_subscriber ON consent_events (subscriber_id, created_at);

-- What an editor sends: one row per issue of a newsletter.
CREATE TABLE issues (
    id              INTEGER PRIMARY KEY,
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
CREATE INDEX issues_by_content ON issues (newsletter_id, content_hash);

-- The delivery ledger: one row per message to one subscriber, for
-- confirmation mail and issues alike. A row is claimed with a lease
-- (claim_token, lease_until), marked 'sending' just before it is handed to
-- SMTP, and settled right after the reply.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
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
-- Claims walk this in order and stop at the batch size.
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at, id);
CREATE INDEX deliveries_by_subscriber ON deliveries (subscriber_id, kind, created_at);
CREATE INDEX deliveries_by_issue ON deliveries (issue_id, status);

-- Addresses that must not be mailed or imported without a new opt-in:
-- a keyed hash only, so an erased address leaves no readable trace.
CREATE TABLE suppressions (
    email_hash TEXT    PRIMARY KEY,
    reason     TEXT    NOT NULL CHECK (reason IN ('erased', 'bounced')),
    created_at INTEGER NOT NULL
);

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
