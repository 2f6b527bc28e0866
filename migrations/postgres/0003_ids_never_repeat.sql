-- Identifiers that reach the outside never repeat (PostgreSQL's identity
-- columns already never do). Subscribers get a random `link_ref`, which is
-- what new signed links name instead of the id, so a link tells nothing of
-- the list's size and is never shared with a later subscriber. 62 random
-- bits from gen_random_uuid(), unique by constraint.
ALTER TABLE subscribers ADD COLUMN link_ref BIGINT;
UPDATE subscribers SET link_ref = ('x' || right(replace(gen_random_uuid()::text, '-', ''), 16))::bit(64)::bigint;
ALTER TABLE subscribers
    ALTER COLUMN link_ref SET DEFAULT ('x' || right(replace(gen_random_uuid()::text, '-', ''), 16))::bit(64)::bigint,
    ALTER COLUMN link_ref SET NOT NULL,
    ADD CONSTRAINT subscribers_link_ref_key UNIQUE (link_ref);

-- Links signed before this migration name the subscriber by id; they keep
-- working, but only for subscribers who existed before it.
INSERT INTO settings (name, value) VALUES ('legacy_links_before', (extract(epoch FROM now())::bigint)::text)
    ON CONFLICT (name) DO NOTHING;
