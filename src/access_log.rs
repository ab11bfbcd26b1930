//! One JSON line per request on stdout (docs/operations.md, Access log). Each proxy thread appends
//! its lines to a buffer of its own; a flusher thread writes every buffer out
//! a few times a second, so a request never waits on stdout and no request
//! wakes another thread (on the one core a benchmark gives the gateway, a
//! wake-up per line cost more than the request). Nothing here ever sees a
//! token, cookie, password or query string.

use serde::{Serialize, Serializer};
use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The fields of one access-log line.
#[derive(Serialize)]
pub struct Entry<'a> {
    pub ts: Timestamp,
    pub request_id: &'a str,
    pub method: &'a str,
    /// `HTTP/1.1`, `HTTP/1.0` or `HTTP/2`.
    pub protocol: &'a str,
    /// The normalized path without its query (queries can carry secrets).
    pub path: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub duration_ms: f64,
    pub user: Option<&'a str>,
    pub decision: &'a str,
    /// `proxy`, or `forward_auth` for a question about another proxy's request
    /// (whose method and path are then the ones logged).
    pub mode: &'a str,
    /// Why a token or request was refused (a stable id such as `expired`), when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

/// How often buffered lines are written out: every line is on stdout within this.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// A thread's buffer past this is written at once by that thread (a burst
/// faster than the flusher drains), so memory stays bounded.
const MAX_BUFFERED: usize = 1 << 20;

/// One thread's lines not yet written.
type Buffer = Arc<Mutex<Vec<u8>>>;

/// Every thread's buffer, for the flusher; registered on a thread's first line.
static BUFFERS: Mutex<Vec<Buffer>> = Mutex::new(Vec::new());
/// Held while writing to stdout, so batches from the flusher and from a
/// thread over `MAX_BUFFERED` never interleave mid-line.
static STDOUT: Mutex<()> = Mutex::new(());
static FLUSHER: OnceLock<()> = OnceLock::new();

thread_local! {
    static MINE: Buffer = {
        let buffer = Buffer::default();
        BUFFERS.lock().unwrap_or_else(PoisonError::into_inner).push(buffer.clone());
        buffer
    };
}

/// Starts the flusher thread, once: at start-up when the access log is on,
/// else with the first line (a reload may turn it on).
pub fn start() {
    FLUSHER.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(|| loop {
                std::thread::sleep(FLUSH_EVERY);
                flush();
            });
        if let Err(e) = spawned {
            log::error!("access log: cannot start its flusher thread: {e}");
        }
    });
}

/// Appends one line to this thread's buffer; never blocks on stdout.
pub fn write(entry: &Entry<'_>) {
    if FLUSHER.get().is_none() {
        // The access log was turned on by a reload.
        start();
    }
    MINE.with(|buffer| {
        let mut lines = buffer.lock().unwrap_or_else(PoisonError::into_inner);
        let before = lines.len();
        if serde_json::to_writer(&mut *lines, entry).is_err() {
            lines.truncate(before);
            return;
        }
        lines.push(b'\n');
        if lines.len() >= MAX_BUFFERED {
            write_out(&mut lines);
        }
    });
}

/// Writes every buffered line to stdout now: at each flush interval, and
/// before the process exits, so no line is lost on SIGTERM or SIGINT.
pub fn flush() {
    let buffers = BUFFERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut batch = Vec::new();
    for buffer in buffers {
        {
            let mut lines = buffer.lock().unwrap_or_else(PoisonError::into_inner);
            if lines.is_empty() {
                continue;
            }
            // Swapped out, so the thread appends to a fresh buffer meanwhile.
            std::mem::swap(&mut *lines, &mut batch);
        }
        write_out(&mut batch);
    }
}

/// Writes `lines` to stdout in one go and empties them.
fn write_out(lines: &mut Vec<u8>) {
    let _held = STDOUT.lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = std::io::stdout().lock();
    // A closed or full stdout loses lines; it must not stop the gateway.
    let _ = out.write_all(lines).and_then(|()| out.flush());
    lines.clear();
}

/// A moment as the log writes it (see [`timestamp`]), formatted straight
/// into the line.
pub struct Timestamp(pub SystemTime);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (y, m, d) = civil_from_days(days as i64);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            since.subsec_millis()
        )
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-23T10:15:00.123Z`.
pub fn timestamp(at: SystemTime) -> String {
    Timestamp(at).to_string()
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
    fn a_line_is_json_with_the_timestamp_in_place() {
        let entry = Entry {
            ts: Timestamp(UNIX_EPOCH + Duration::from_millis(1_795_428_900_123)),
            request_id: "r1",
            method: "GET",
            protocol: "HTTP/2",
            path: "/a\"b",
            route: "/a/**",
            status: 200,
            duration_ms: 1.5,
            user: None,
            decision: "public",
            mode: "proxy",
            reason: None,
        };
        let line = serde_json::to_string(&entry).unwrap();
        assert_eq!(
            line,
            r#"{"ts":"2026-11-23T10:15:00.123Z","request_id":"r1","method":"GET","protocol":"HTTP/2","path":"/a\"b","route":"/a/**","status":200,"duration_ms":1.5,"user":null,"decision":"public","mode":"proxy"}"#
        );
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = UNIX_EPOCH + Duration::from_millis(1_795_428_900_123);
        assert_eq!(timestamp(at), "2026-11-23T10:15:00.123Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00.000Z");
    }
}
