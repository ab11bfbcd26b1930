-- Account lifecycle: verified addresses, one-time tokens (email verification, password
-- reset) and what the sessions list shows. Tokens are stored as SHA-256 hashes only.
ALTER TABLE users ADD COLUMN email_verified_at BIGINT NULL;

CREATE TABLE account_tokens (
    hash       TEXT PRIMARY KEY,
    purpose    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT NULL
);
CREATE INDEX account_tokens_by_user ON account_tokens (user_id);

ALTER TABLE families ADD COLUMN user_agent TEXT NULL;
ALTER TABLE families ADD COLUMN ip_prefix TEXT NULL;
