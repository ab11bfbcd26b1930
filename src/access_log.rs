//! One JSON line per request on stdout (SPEC §7). Lines are handed to a writer
//! thread over a channel, so a request never waits on stdout or its lock.
//! Nothing here ever sees a token, cookie, password or query string.

use serde::Serialize;
use std::io::{BufWriter, Write};
use std::sync::mpsc::{channel, Sender};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The fields of one access-log line.
#[derive(Serialize)]
pub struct Entry<'a> {
    pub ts: String,
    pub request_id: &'a str,
    pub method: &'a str,
    /// The normalized path without its query (queries can carry secrets).
    pub path: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub duration_ms: f64,
    pub user: Option<&'a str>,
    pub decision: &'a str,
    /// Why a token or request was refused (a stable id such as `expired`), when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

static WRITER: OnceLock<Sender<String>> = OnceLock::new();

/// Starts the writer thread; before this is called (or when the access log is
/// off) entries are dropped.
pub fn start() {
    WRITER.get_or_init(|| {
        let (tx, rx) = channel::<String>();
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut out = BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
                while let Ok(line) = rx.recv() {
                    let _ = out.write_all(line.as_bytes());
                    // Drain what is queued, then flush once: one write per burst.
                    while let Ok(more) = rx.try_recv() {
                        let _ = out.write_all(more.as_bytes());
                    }
                    let _ = out.flush();
                }
            });
        if let Err(e) = spawned {
            log::error!("access log disabled: cannot start its thread: {e}");
        }
        tx
    });
}

/// Queues one line; never blocks.
pub fn write(entry: &Entry<'_>) {
    let Some(tx) = WRITER.get() else { return };
    if let Ok(mut line) = serde_json::to_string(entry) {
        line.push('\n');
        let _ = tx.send(line);
    }
}

/// Waits briefly for queued lines to reach stdout (before the process exits).
pub fn flush() {
    // The writer flushes after every burst; give it a moment to drain.
    std::thread::sleep(std::time::Duration::from_millis(50));
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-23T10:15:00.123Z`.
pub fn timestamp(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = UNIX_EPOCH + Duration::from_millis(1_795_428_900_123);
        assert_eq!(timestamp(at), "2026-11-23T10:15:00.123Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00.000Z");
    }
}
