//! Operator log lines on stderr (the access log has stdout to itself).
//! `PORTCULLIS_LOG` sets the level: error, warn, info (default) or debug.
//! Library chatter below warn is left out so the gateway's own lines stand out.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

struct Stderr {
    level: Level,
}

impl Log for Stderr {
    fn enabled(&self, meta: &Metadata) -> bool {
        let ours = meta.target().starts_with("portcullis");
        meta.level()
            <= if ours {
                self.level
            } else {
                self.level.min(Level::Warn)
            }
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{} {}: {}",
                record.level(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// Installs the logger once; later calls do nothing.
pub fn init() {
    let level = match std::env::var("PORTCULLIS_LOG").as_deref() {
        Ok("error") => Level::Error,
        Ok("warn") => Level::Warn,
        Ok("debug") => Level::Debug,
        _ => Level::Info,
    };
    if log::set_boxed_logger(Box::new(Stderr { level })).is_ok() {
        log::set_max_level(level.to_level_filter().max(LevelFilter::Warn));
    }
}
