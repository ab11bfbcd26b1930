-- Portcullis auth schema, version 6 (SQLite): personal access tokens and the TOTP second factor.
-- Statements are split on ';' by the embedded runner, so no ';' inside a statement.
--
-- A personal access token is stored only as the SHA-256 of the whole token (hex);
-- display_prefix is the part shown in listings (the fixed prefix and a few characters).
-- scopes is the JSON list of {path, methods} the token is limited to. Creating and
-- revoking one writes a revocation event of kind 'pat', which replicas poll to keep
-- their in-memory index current.
CREATE TABLE personal_access_tokens (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    token_hash     TEXT NOT NULL UNIQUE,
    display_prefix TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    workspace_id   TEXT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    last_used_at   BIGINT NULL,
    revoked_at     BIGINT NULL
);
CREATE INDEX personal_access_tokens_by_user ON personal_access_tokens (user_id);

-- One TOTP authenticator per user. The secret is sealed (AES-256-GCM under the
-- key-encryption key, bound to the user id); kek_id names the key that sealed it.
-- confirmed_at is NULL while enrollment waits for its first code. last_step is the
-- last time step accepted, advanced with a conditional update so a code is used once.
CREATE TABLE mfa_totp (
    user_id       TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    sealed_secret TEXT NOT NULL,
    kek_id        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    confirmed_at  BIGINT NULL,
    last_step     BIGINT NOT NULL DEFAULT 0
);

-- Single-use recovery codes, as SHA-256 hex.
CREATE TABLE mfa_recovery_codes (
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    used_at   BIGINT NULL,
    PRIMARY KEY (user_id, code_hash)
);

-- The short-lived, single-use ticket a password login hands out when a second factor
-- is due, as SHA-256 hex.
CREATE TABLE mfa_tickets (
    hash         TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    workspace_id TEXT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT NULL
);
