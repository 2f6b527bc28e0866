-- Each reader's rhythm (README, "Rhythms"): every story, a daily or a weekly
-- digest, in the reader's own time zone. '' means the newsletter's default
-- (its first rhythm, its time zone), so a change of default reaches everyone
-- who never chose.
ALTER TABLE subscriptions ADD COLUMN rhythm TEXT NOT NULL DEFAULT '';
ALTER TABLE subscriptions ADD COLUMN timezone TEXT NOT NULL DEFAULT '';
-- Stories that arrived up to this instant have reached this reader through
-- their rhythm. Moved forward in the same transaction that queues the
-- reader's mail, so a change of rhythm neither repeats nor loses a story.
-- NULL: no digest since the reader (last) confirmed; their next one starts there.
ALTER TABLE subscriptions ADD COLUMN digest_through BIGINT;
-- A run reads only the readers of one rhythm and zone.
CREATE INDEX subscriptions_by_rhythm ON subscriptions (newsletter_id, rhythm, timezone, status);
-- Stories by arrival, the order rhythms deliver them in.
CREATE INDEX items_by_arrival ON items (newsletter_id, added_at);
-- The digest run an issue was made by, and the stories each digest issue lists.
ALTER TABLE issues ADD COLUMN digest_run_id BIGINT  REFERENCES digest_runs(id);
CREATE TABLE issue_items (
    issue_id BIGINT  NOT NULL REFERENCES issues(id),
    item_id  BIGINT  NOT NULL REFERENCES items(id),
    position BIGINT  NOT NULL,
    PRIMARY KEY (issue_id, item_id)
);
-- Every run rewrites its readers' digest_through: room on each page lets
-- PostgreSQL update those rows in place (HOT) instead of adding entries to
-- every index of the table. Applies to pages written from now on.
ALTER TABLE subscriptions SET (fillfactor = 80);
