//! How much CPU the proxy's own threads have used, so that work which should yield to
//! the proxy (password hashing) can tell "our proxy wanted this CPU" apart from "some
//! other process did", where yielding would help nobody.
//!
//! A proxy thread enters itself once, on its first connection; after that, reading the
//! total is one `clock_gettime` per thread and costs the proxy nothing.

use std::cell::Cell;
use std::sync::Mutex;
use std::time::Duration;

/// The CPU clocks of a set of threads.
pub struct ThreadClocks {
    clocks: Mutex<Vec<libc::clockid_t>>,
}

/// The proxy's threads: the ones that serve client connections.
pub static PROXY_THREADS: ThreadClocks = ThreadClocks::new();

thread_local! {
    static ENTERED: Cell<bool> = const { Cell::new(false) };
}

/// Enters the calling thread in `PROXY_THREADS`, once per thread; later calls are a
/// thread-local read.
pub fn enter_this_thread() {
    ENTERED.with(|entered| {
        if !entered.replace(true) {
            PROXY_THREADS.enter_this_thread();
        }
    });
}

impl ThreadClocks {
    pub const fn new() -> ThreadClocks {
        ThreadClocks {
            clocks: Mutex::new(Vec::new()),
        }
    }

    /// Adds the calling thread (each thread at most once per set is the caller's job).
    pub fn enter_this_thread(&self) {
        let mut clock: libc::clockid_t = 0;
        // SAFETY: asks for the calling thread's own CPU clock; writes only `clock`.
        let ok = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) } == 0;
        if ok {
            if let Ok(mut clocks) = self.clocks.lock() {
                clocks.push(clock);
            }
        }
    }

    /// The CPU time all entered threads have used so far. A thread that has exited
    /// stops counting, so compare two readings only over a span no thread ends in
    /// (the proxy's threads live as long as the process).
    pub fn used(&self) -> Duration {
        let Ok(clocks) = self.clocks.lock() else {
            return Duration::ZERO;
        };
        clocks.iter().map(|&clock| cpu_time(clock)).sum()
    }
}

#[cfg(test)]
impl ThreadClocks {
    fn len(&self) -> usize {
        self.clocks.lock().map_or(0, |c| c.len())
    }
}

impl Default for ThreadClocks {
    fn default() -> ThreadClocks {
        ThreadClocks::new()
    }
}

/// The CPU time on `clock`, or zero if it cannot be read.
pub fn cpu_time(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes only `ts`.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin_cpu(cpu: Duration) {
        let start = cpu_time(libc::CLOCK_THREAD_CPUTIME_ID);
        while cpu_time(libc::CLOCK_THREAD_CPUTIME_ID).saturating_sub(start) < cpu {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn entered_threads_count_and_others_do_not() {
        let clocks: &'static ThreadClocks = Box::leak(Box::default());
        assert_eq!(clocks.used(), Duration::ZERO, "no thread entered yet");
        let (entered_done, release) = (
            std::sync::Arc::new(std::sync::Barrier::new(2)),
            std::sync::Arc::new(std::sync::Barrier::new(2)),
        );
        let entered = {
            let (done, release) = (entered_done.clone(), release.clone());
            std::thread::spawn(move || {
                clocks.enter_this_thread();
                spin_cpu(Duration::from_millis(60));
                done.wait();
                // Stays alive until the reading is taken.
                release.wait();
            })
        };
        let bystander = std::thread::spawn(|| spin_cpu(Duration::from_millis(60)));
        bystander.join().expect("bystander");
        entered_done.wait();
        let used = clocks.used();
        release.wait();
        entered.join().expect("entered thread");
        assert!(
            used >= Duration::from_millis(60) && used < Duration::from_millis(110),
            "the entered thread's 60 ms and not the bystander's: {used:?}"
        );
    }

    #[test]
    fn a_proxy_thread_is_entered_once_however_many_connections_it_serves() {
        // No other unit test serves connections, so nothing else enters PROXY_THREADS here.
        let before = PROXY_THREADS.len();
        std::thread::spawn(|| {
            enter_this_thread();
            enter_this_thread();
        })
        .join()
        .expect("thread");
        assert_eq!(PROXY_THREADS.len(), before + 1);
    }
}
