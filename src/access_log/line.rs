//! One access-log line, written straight into the thread's buffer. Serde's
//! generic serializer was the largest single cost of a logged request
//! (docs/benchmarks.md): it escapes every fragment of a formatted field
//! through a byte-by-byte writer. Here the fields that cannot hold a byte JSON
//! must escape (the gateway's own labels) are copied as they are, the others
//! are checked against a table and escape through serde_json only when they
//! need to, and the timestamp's date and time of day are formatted once a
//! second per thread.

use super::Entry;
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

impl Entry<'_> {
    /// Appends the entry as one JSON object (no newline) to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"ts\":\"");
        timestamp_into(out, self.ts);
        out.extend_from_slice(b"\",\"request_id\":");
        string(out, self.request_id);
        out.extend_from_slice(b",\"method\":");
        string(out, self.method);
        out.extend_from_slice(b",\"protocol\":");
        plain(out, self.protocol);
        out.extend_from_slice(b",\"path\":");
        string(out, self.path);
        out.extend_from_slice(b",\"route\":");
        string(out, self.route);
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.status).as_bytes());
        out.extend_from_slice(b",\"duration_ms\":");
        millis(out, self.duration_ms);
        out.extend_from_slice(b",\"user\":");
        match self.user {
            Some(user) => string(out, user),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"decision\":");
        plain(out, self.decision);
        out.extend_from_slice(b",\"mode\":");
        plain(out, self.mode);
        if let Some(reason) = self.reason {
            out.extend_from_slice(b",\"reason\":");
            plain(out, reason);
        }
        out.push(b'}');
    }
}

/// `s` as a JSON string. Most values need no escape and are copied; any
/// that does goes through serde_json's escaping.
fn string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| ESCAPED[usize::from(b)]) {
        // Writing a `str` into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        plain(out, s);
    }
}

/// `s` as a JSON string, for the gateway's own labels (protocol, decision,
/// mode, reason), which hold no byte JSON escapes. Checked in debug builds.
fn plain(out: &mut Vec<u8>, s: &str) {
    debug_assert!(!s.bytes().any(|b| ESCAPED[usize::from(b)]), "{s:?}");
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// The bytes a JSON string must escape: controls, `"` and `\\`.
static ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Milliseconds with microsecond precision, as a JSON number (`0.412`, `12.000`).
pub(super) fn millis(out: &mut Vec<u8>, ms: f64) {
    let micros = if ms.is_finite() && ms > 0.0 {
        (ms * 1000.0).round() as u64
    } else {
        0
    };
    out.extend_from_slice(itoa::Buffer::new().format(micros / 1000).as_bytes());
    let frac = (micros % 1000) as u16;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

thread_local! {
    /// The last second this thread formatted, and its `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: RefCell<(u64, [u8; 19])> = const { RefCell::new((u64::MAX, [0; 19])) };
}

/// `at` as RFC 3339 UTC with milliseconds, e.g. `2026-11-23T10:15:00.123Z`.
pub(super) fn timestamp_into(out: &mut Vec<u8>, at: SystemTime) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs {
            *cached = (secs, date_and_time(secs));
        }
        out.extend_from_slice(&cached.1);
    });
    let ms = since.subsec_millis() as u16;
    out.extend_from_slice(&[
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
    ]);
}

/// `YYYY-MM-DDTHH:MM:SS` for a second since the epoch.
fn date_and_time(secs: u64) -> [u8; 19] {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let text = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    let mut out = [b'0'; 19];
    // Years past 9999 do not fit; such a clock is wrong anyway.
    if text.len() == out.len() {
        out.copy_from_slice(text.as_bytes());
    }
    out
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
