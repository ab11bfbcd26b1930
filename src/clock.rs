//! Wall-clock time in unix seconds, the unit of every token and store timestamp.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch; a clock before 1970 reads as 0 rather than panicking.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
