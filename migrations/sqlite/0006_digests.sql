-- Scheduled digests (README, "Digests").
--
-- A digest run is one period of one newsletter's stream: the UNIQUE key, not
-- a timer, is what keeps a second scheduler or a restart from sending a
-- period twice. `stream` is 'schedule' for the newsletter's own schedule;
-- readers' own rhythms (daily or weekly, per time zone) become further streams.
CREATE TABLE digest_runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    newsletter_id INTEGER NOT NULL REFERENCES newsletters(id),
    stream        TEXT    NOT NULL,
    period_start  INTEGER NOT NULL,
    period_label  TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('issued', 'skipped')),
    reason        TEXT,
    items         INTEGER NOT NULL DEFAULT 0,
    recipients    INTEGER NOT NULL DEFAULT 0,
    issue_id      INTEGER REFERENCES issues(id),
    created_at    INTEGER NOT NULL,
    UNIQUE (newsletter_id, stream, period_start)
);
CREATE INDEX digest_runs_by_issue ON digest_runs (issue_id);

-- Stories, stored once per newsletter: by the feed's GUID, else by link.
CREATE TABLE items (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    newsletter_id INTEGER NOT NULL REFERENCES newsletters(id),
    dedup_key     TEXT    NOT NULL,
    title         TEXT    NOT NULL,
    url           TEXT    NOT NULL,
    summary       TEXT,
    source        TEXT    NOT NULL,
    published_at  INTEGER NOT NULL,
    added_at      INTEGER NOT NULL,
    UNIQUE (newsletter_id, dedup_key)
);
CREATE INDEX items_by_publication ON items (newsletter_id, published_at);

-- Which story went in which digest: at most once per stream.
CREATE TABLE digest_items (
    run_id   INTEGER NOT NULL REFERENCES digest_runs(id),
    item_id  INTEGER NOT NULL REFERENCES items(id),
    stream   TEXT    NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (run_id, item_id),
    UNIQUE (item_id, stream)
);

-- What each newsletter's feeds last answered, for conditional GET and `digest list`.
CREATE TABLE feeds (
    newsletter_id INTEGER NOT NULL REFERENCES newsletters(id),
    url           TEXT    NOT NULL,
    etag          TEXT,
    last_modified TEXT,
    fetched_at    INTEGER,
    ok_at         INTEGER,
    last_error    TEXT,
    PRIMARY KEY (newsletter_id, url)
);
