//! When an issuer's keys are fetched: at start, every `jwks_refresh`, and for
//! unknown kids at most once per `refetch_interval`, the ones refused inside it
//! waiting for one fetch at its end. Pure decisions at given instants, kept under
//! the issuer's lock and driven by its fetcher thread.

use std::time::{Duration, Instant};

/// When the issuer's keys are fetched; kept under one lock.
#[derive(Default)]
pub(super) struct Fetches {
    /// A fetch is under way, or claimed by a request that waits for it.
    pub(super) running: bool,
    pub(super) failing: bool,
    /// When the last fetch that unknown kids asked for started.
    pub(super) last_on_demand: Option<Instant>,
    /// An unknown kid came inside the interval: fetch when it ends.
    pub(super) deferred: bool,
}

/// What a request whose `kid` is unknown does about it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ask {
    /// A fetch is under way: wait for it.
    Join,
    /// The request claimed a fetch: wake the fetcher and wait for it.
    Fetch,
    /// Too soon after the last unknown-kid fetch: refuse now; the fetcher
    /// fetches when the interval ends.
    Later,
}

impl Fetches {
    /// Decides for a request that found an unknown `kid` at `now`.
    pub(super) fn ask(&mut self, now: Instant, interval: Duration) -> Ask {
        if self.running {
            return Ask::Join;
        }
        let due = self
            .last_on_demand
            .is_none_or(|at| now.saturating_duration_since(at) >= interval);
        if !due {
            self.deferred = true;
            return Ask::Later;
        }
        // Claimed here, so requests arriving before the fetcher wakes wait too.
        self.running = true;
        self.last_on_demand = Some(now);
        self.deferred = false;
        Ask::Fetch
    }

    /// Marks a fetch starting at `now`. One that starts while an unknown kid
    /// waits for the interval's end is that kid's fetch, and counts as one.
    pub(super) fn start(&mut self, now: Instant) {
        self.running = true;
        if std::mem::take(&mut self.deferred) {
            self.last_on_demand = Some(now);
        }
    }

    /// When the fetcher fetches next, seen at `now` with the next periodic
    /// fetch due at `periodic`: at once when a request claimed one, at the end
    /// of the interval when an unknown kid waits for it, else at `periodic`.
    pub(super) fn next(&self, now: Instant, periodic: Instant, interval: Duration) -> Instant {
        match (self.running, self.deferred, self.last_on_demand) {
            (true, _, _) => now,
            (false, true, Some(at)) => (at + interval).min(periodic),
            _ => periodic,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(10);

    #[test]
    fn the_first_unknown_kid_fetches_at_once_even_right_after_the_start_up_fetch() {
        let t0 = Instant::now();
        let mut f = Fetches::default();
        f.start(t0);
        f.running = false; // the start-up fetch is done
        assert_eq!(f.ask(t0 + Duration::from_millis(100), INTERVAL), Ask::Fetch);
        assert!(f.running);
    }

    #[test]
    fn a_claimed_fetch_runs_at_once_and_unknown_kids_meanwhile_join_it() {
        let t0 = Instant::now();
        let mut f = Fetches::default();
        assert_eq!(f.ask(t0, INTERVAL), Ask::Fetch);
        let periodic = t0 + Duration::from_secs(600);
        assert_eq!(
            f.next(t0, periodic, INTERVAL),
            t0,
            "the fetcher fetches at once"
        );
        assert_eq!(f.ask(t0, INTERVAL), Ask::Join);
        assert_eq!(f.ask(t0 + Duration::from_secs(3), INTERVAL), Ask::Join);
    }

    #[test]
    fn unknown_kids_inside_the_interval_wait_for_one_fetch_at_its_end() {
        let t0 = Instant::now();
        let periodic = t0 + Duration::from_secs(600);
        let mut f = Fetches::default();
        assert_eq!(f.ask(t0, INTERVAL), Ask::Fetch);
        f.running = false;
        assert_eq!(f.next(t0, periodic, INTERVAL), periodic, "nothing waits");
        for ms in [1, 500, 9_999] {
            let at = t0 + Duration::from_millis(ms);
            assert_eq!(f.ask(at, INTERVAL), Ask::Later, "{ms} ms");
        }
        assert_eq!(f.next(t0, periodic, INTERVAL), t0 + INTERVAL);
        // The fetcher's fetch at the interval's end counts as the next unknown-kid fetch.
        f.start(t0 + INTERVAL);
        f.running = false;
        assert!(!f.deferred);
        assert_eq!(f.last_on_demand, Some(t0 + INTERVAL));
        assert_eq!(
            f.ask(t0 + INTERVAL + Duration::from_secs(1), INTERVAL),
            Ask::Later
        );
        assert_eq!(f.ask(t0 + INTERVAL * 2, INTERVAL), Ask::Fetch);
    }

    #[test]
    fn a_periodic_fetch_due_first_is_not_postponed_by_a_waiting_unknown_kid() {
        let t0 = Instant::now();
        let mut f = Fetches::default();
        assert_eq!(f.ask(t0, INTERVAL), Ask::Fetch);
        f.running = false;
        assert_eq!(f.ask(t0 + Duration::from_secs(1), INTERVAL), Ask::Later);
        let periodic = t0 + Duration::from_secs(4);
        assert_eq!(f.next(t0, periodic, INTERVAL), periodic);
    }

    #[test]
    fn periodic_fetches_do_not_hold_back_an_unknown_kid() {
        let t0 = Instant::now();
        let mut f = Fetches::default();
        for n in 0..3 {
            f.start(t0 + Duration::from_secs(n));
            f.running = false;
        }
        assert_eq!(f.last_on_demand, None);
        assert_eq!(f.ask(t0 + Duration::from_secs(3), INTERVAL), Ask::Fetch);
    }
}
