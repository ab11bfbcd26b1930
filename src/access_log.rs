//! One JSON line per request on stdout (docs/operations.md, Access log). Each proxy thread appends
//! its lines to a buffer of its own; a flusher thread writes every buffer out
//! a few times a second, so a request never waits on stdout and no request
//! wakes another thread (on the one core a benchmark gives the gateway, a
//! wake-up per line cost more than the request). Nothing here ever sees a
//! token, cookie, password or query string.

mod line;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

/// The fields of one access-log line, written in this order (`line.rs`).
#[cfg_attr(test, derive(serde::Serialize))]
pub struct Entry<'a> {
    /// Written as RFC 3339 UTC with milliseconds, e.g. `2026-11-23T10:15:00.123Z`.
    #[cfg_attr(test, serde(serialize_with = "tests::rfc3339"))]
    pub ts: SystemTime,
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
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
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
/// The flusher's empty buffer, swapped for a thread's full one and kept
/// between flushes: a thread goes on with a buffer that already has room
/// instead of regrowing one (a copy and fresh pages every interval).
static SPARE: Mutex<Vec<u8>> = Mutex::new(Vec::new());

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
        entry.write_json(&mut lines);
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
    let mut batch = std::mem::take(&mut *SPARE.lock().unwrap_or_else(PoisonError::into_inner));
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
    *SPARE.lock().unwrap_or_else(PoisonError::into_inner) = batch;
}

/// Writes `lines` to stdout in one go and empties them.
fn write_out(lines: &mut Vec<u8>) {
    let _held = STDOUT.lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = std::io::stdout().lock();
    // A closed or full stdout loses lines; it must not stop the gateway.
    let _ = out.write_all(lines).and_then(|()| out.flush());
    lines.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn timestamp(at: SystemTime) -> String {
        let mut out = Vec::new();
        line::timestamp_into(&mut out, at);
        String::from_utf8(out).unwrap()
    }

    pub fn rfc3339<S: serde::Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&timestamp(*at))
    }

    fn entry<'a>(path: &'a str, user: Option<&'a str>, reason: Option<&'a str>) -> Entry<'a> {
        Entry {
            ts: UNIX_EPOCH + Duration::from_millis(1_795_428_900_123),
            request_id: "r1",
            method: "GET",
            protocol: "HTTP/2",
            path,
            route: "/a/**",
            status: 200,
            duration_ms: 1.5,
            user,
            decision: "public",
            mode: "proxy",
            reason,
        }
    }

    fn line(entry: &Entry<'_>) -> String {
        let mut out = Vec::new();
        entry.write_json(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_line_is_json_with_the_fields_in_order() {
        assert_eq!(
            line(&entry("/a\"b", None, None)),
            r#"{"ts":"2026-11-23T10:15:00.123Z","request_id":"r1","method":"GET","protocol":"HTTP/2","path":"/a\"b","route":"/a/**","status":200,"duration_ms":1.500,"user":null,"decision":"public","mode":"proxy"}"#
        );
    }

    #[test]
    fn a_line_reads_back_as_serde_writes_the_same_entry() {
        let paths = [
            "/plain",
            "/q\"uote",
            "/back\\slash",
            "/ctl\u{1}\n\t",
            "/ünï/😀",
            "",
        ];
        let users = [None, Some("user-42"), Some("a\"b\\c\u{7f}")];
        for path in paths {
            for user in users {
                for reason in [None, Some("expired")] {
                    let e = entry(path, user, reason);
                    let ours: serde_json::Value = serde_json::from_str(&line(&e)).unwrap();
                    let serde = serde_json::to_value(&e).unwrap();
                    assert_eq!(ours, serde, "{path:?} {user:?} {reason:?}");
                }
            }
        }
    }

    #[test]
    fn durations_are_milliseconds_to_the_microsecond() {
        let cases = [
            (0.0, "0.000"),
            (0.0004, "0.000"),
            (0.0005, "0.001"),
            (0.394736, "0.395"),
            (12.0, "12.000"),
            (1234.5678, "1234.568"),
            (-1.0, "0.000"),
            (f64::NAN, "0.000"),
        ];
        for (ms, want) in cases {
            let mut out = Vec::new();
            line::millis(&mut out, ms);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{ms}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = UNIX_EPOCH + Duration::from_millis(1_795_428_900_123);
        assert_eq!(timestamp(at), "2026-11-23T10:15:00.123Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00.000Z");
        // The same second again (cached), then the next one, then an earlier one.
        assert_eq!(
            timestamp(at + Duration::from_millis(5)),
            "2026-11-23T10:15:00.128Z"
        );
        assert_eq!(
            timestamp(at + Duration::from_millis(900)),
            "2026-11-23T10:15:01.023Z"
        );
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_millis(7)),
            "1970-01-01T00:00:00.007Z"
        );
    }
}
