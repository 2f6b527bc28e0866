-- Refusals for the sender's reasons (policy, reputation, a blocklist,
-- SPF/DKIM/DMARC, content: BounceCause::Sender), counted per issue and per
-- receiving domain whichever way they came: at SMTP time (the delivery
-- failed) or later in a report (feedback_events kind 'sender_refused').
-- One row per refusal. The recipient's domain only, never the address, so
-- the count outlives an erasure and names nobody; no foreign keys, as the
-- ledger. `reason` is a BounceReason (blocked, auth_failure, policy, ...).
-- `issue status` reads one issue's refusals from the index alone.
CREATE TABLE sender_refusals (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    issue_id    INTEGER NOT NULL,
    delivery_id INTEGER,
    domain      TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    source      TEXT    NOT NULL CHECK (source IN ('smtp', 'report')),
    created_at  INTEGER NOT NULL
);
CREATE INDEX sender_refusals_by_issue ON sender_refusals (issue_id, domain, reason);
