-- A bounce refused for the sender's reasons after a 250 (README, "Bounces
-- and complaints": policy, reputation, a blocklist, SPF/DKIM/DMARC, content)
-- is recorded as kind 'sender_refused': counted against its issue, never
-- against the reader.
ALTER TABLE feedback_events DROP CONSTRAINT feedback_events_kind_check;
ALTER TABLE feedback_events ADD CONSTRAINT feedback_events_kind_check
    CHECK (kind IN ('hard_bounce', 'soft_bounce', 'sender_refused', 'complaint'));
