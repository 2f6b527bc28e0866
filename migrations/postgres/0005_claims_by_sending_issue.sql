-- Claims visit only rows that may go out: confirmation mail (issue_id NULL)
-- and the rows of issues that are sending, each through its own range of this
-- index in due order. A paused issue's rows are never walked (200 000 of them
-- made every claim, twice a second, read them all). It keeps the
-- (issue_id, status) prefix the old index served (progress counts, completion).
CREATE INDEX deliveries_due_by_issue ON deliveries (issue_id, status, next_attempt_at, id);
-- Recovery looks only at rows being sent (a handful). Indexed by id, not by
-- lease: claims and lease renewals change only unindexed columns, which keeps
-- them cheap (PostgreSQL updates such rows in place, "HOT").
CREATE INDEX deliveries_sending ON deliveries (id) WHERE status = 'sending';
DROP INDEX deliveries_by_issue;
DROP INDEX deliveries_due;
