-- Readers, their subscriptions, confirmation tokens, the consent record and
-- the confirmation-mail outbox. Timestamps are Unix seconds (UTC).

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
    created_at INTEGER NOT NULL
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

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL CHECK (kind IN ('confirmation')),
    subscriber_id   INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
    status          TEXT    NOT NULL CHECK (status IN ('queued', 'sent', 'failed', 'skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_by_subscriber ON outbox (subscriber_id, created_at);

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
