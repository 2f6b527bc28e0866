-- A reader's name, when a list imported from another system carried one
-- (README, "Importing a list"): offered to the issue and digest templates as
-- `name` and put in the To header. NULL: no name is known. Erasure deletes it
-- with the row. The consent record keeps the original consent's time and
-- source (`import:mailchimp`, …) in consent_events, which needs no new column.
ALTER TABLE subscribers ADD COLUMN name TEXT;
