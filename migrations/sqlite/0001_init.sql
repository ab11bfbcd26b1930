-- Portcullis auth schema, version 1 (SQLite). Times are unix seconds.
-- Statements are split on ';' by the embedded runner, so no ';' inside a statement.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    disabled      BIGINT NOT NULL DEFAULT 0,
    not_before    BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

CREATE TABLE workspaces (
    id         TEXT PRIMARY KEY,
    plan       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE memberships (
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    role         TEXT NOT NULL,
    PRIMARY KEY (user_id, workspace_id)
);

CREATE TABLE families (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    workspace_id TEXT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT NULL
);
CREATE INDEX families_by_user ON families (user_id);

CREATE TABLE refresh_tokens (
    hash           TEXT PRIMARY KEY,
    family_id      TEXT NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    created_at     BIGINT NOT NULL,
    used_at        BIGINT NULL,
    successor_hash TEXT NULL
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);

CREATE TABLE revoked_jtis (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

-- Single-row counter: incrementing it inside each revoking transaction
-- serialises those transactions, so sequence order equals commit order.
CREATE TABLE revocation_clock (
    id  BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL
);
INSERT INTO revocation_clock (id, seq) VALUES (1, 0);

CREATE TABLE revocation_events (
    seq          BIGINT PRIMARY KEY,
    kind         TEXT NOT NULL,
    subject      TEXT NOT NULL,
    effective_at BIGINT NOT NULL,
    expires_at   BIGINT NULL
);
