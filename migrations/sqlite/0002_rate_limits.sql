-- Portcullis auth schema, version 2 (SQLite): rate limits shared by every replica.
-- One row per limited key (a keyed hash of "login by IP 203.0.113.9", never the raw
-- address or email) holding its token bucket as a GCRA "theoretical arrival time" in
-- unix milliseconds. A row whose tat has passed is a full bucket and may be deleted.
CREATE TABLE rate_limits (
    key TEXT PRIMARY KEY,
    tat BIGINT NOT NULL
);
