//! Key files on disk: created private, reused, rotated, retired.
