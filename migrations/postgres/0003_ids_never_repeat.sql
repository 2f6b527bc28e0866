-- Identifiers that reach the outside never repeat (PostgreSQL's identity
-- columns already never do). Subscribers get a random `link_salt`, which new
-- (sealed) links carry beside the id and which is checked against the row, so
-- a link dies with its subscriber. Not indexed: lookups go by id, and
-- scattered inserts into an index on a random value would cost more than the
-- rest of a signup. 62 random bits from gen_random_uuid().
ALTER TABLE subscribers ADD COLUMN link_salt BIGINT;
UPDATE subscribers SET link_salt = ('x' || right(replace(gen_random_uuid()::text, '-', ''), 16))::bit(64)::bigint;
ALTER TABLE subscribers
    ALTER COLUMN link_salt SET DEFAULT ('x' || right(replace(gen_random_uuid()::text, '-', ''), 16))::bit(64)::bigint,
    ALTER COLUMN link_salt SET NOT NULL;

-- Links signed before this migration name the subscriber by id; they keep
-- working, but only for subscribers who existed before it.
INSERT INTO settings (name, value) VALUES ('legacy_links_before', (extract(epoch FROM now())::bigint)::text)
    ON CONFLICT (name) DO NOTHING;
