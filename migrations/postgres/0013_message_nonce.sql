-- A random part for each delivery's Message-ID (README, "Message-IDs"):
-- set when the row is first claimed and kept for its retries, so two
-- databases sharing `server.secret` (staging and production, a restored
-- backup) never send two messages under one Message-ID. NULL for rows
-- claimed before this column: their mail is out under the older shape.
ALTER TABLE deliveries ADD COLUMN message_nonce BIGINT;
