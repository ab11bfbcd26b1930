-- Portcullis auth schema, version 4 (SQLite): the signing keys of EdDSA, ES256 and
-- RS256, so every replica signs and verifies with the same keys without a shared disk.
-- Private material is sealed (AES-256-GCM under PORTCULLIS_KEY_ENCRYPTION_KEY, bound to
-- its kid); kek_id names the key-encryption key that sealed it. Key i signs from its
-- active_from until the next key's; seq orders keys made in the same second.
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    alg         TEXT NOT NULL,
    sealed_key  TEXT NOT NULL,
    kek_id      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    active_from BIGINT NOT NULL,
    seq         BIGINT NOT NULL
);
-- One row. Every change to the key set bumps generation with a conditional update
-- (WHERE generation = the one the writer read), so of two replicas rotating at once
-- exactly one succeeds, and replicas poll generation to notice a change. The refresh
-- chain's secret (used when JWT_SECRET is unset) is sealed here too.
CREATE TABLE signing_key_set (
    id                    BIGINT PRIMARY KEY,
    generation            BIGINT NOT NULL,
    sealed_refresh_secret TEXT,
    refresh_kek_id        TEXT
);
INSERT INTO signing_key_set (id, generation) VALUES (1, 0);
