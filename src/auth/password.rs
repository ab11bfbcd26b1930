//! Password hashing with Argon2id, kept off the async I/O threads and capped in concurrency.
//!
//! Parameters follow OWASP's Argon2id recommendation: m = 19 MiB, t = 2, p = 1. Each hash
//! costs tens of milliseconds of CPU and 19 MiB of memory, so concurrent logins are queued
//! behind a semaphore instead of starving the proxy or exhausting memory, and they run on
//! threads of their own at a lower CPU priority: a burst of logins gets the CPU the proxy
//! leaves idle, not the CPU it needs. Idle priority alone still let hashes take the short
//! gaps of a saturated proxy (and its caches with them, 19 MiB a hash), so a hashing thread
//! that finds its CPU contended while our proxy threads were busy also rests after each
//! hash, holding hashing to `BUSY_SHARE` of that CPU. On a CPU of its own, or one that
//! other processes keep busy while our proxy idles, it never rests: resting there would
//! slow logins and help nobody.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::wordlists;
use crate::proxy_cpu::{self, ThreadClocks};

/// Argon2id memory cost in KiB (OWASP).
const MEMORY_KIB: u32 = 19_456;
/// Argon2id passes (OWASP).
const ITERATIONS: u32 = 2;
/// Argon2id lanes (OWASP).
const LANES: u32 = 1;
/// The hashing threads' Linux nice value, which counts only if `SCHED_IDLE` (below) is
/// refused: weight 36 against the proxy's 1024.
const HASH_NICE: libc::c_int = 15;
/// While the CPU a hash ran on was wanted by others (the proxy), hashing takes at most
/// this share of it: at 50 ms a hash, one every 2.5 s.
const BUSY_SHARE: f64 = 0.02;
/// A hash whose wall time exceeds its own CPU time by this factor got less than a
/// quarter of its CPU: something else (the proxy) nearly saturates it. Below that, the
/// hash ran in idle time the proxy did not want, and resting would only slow logins.
const CONTENDED: f64 = 4.0;
/// The proxy counts as busy over a hash when its threads together used at least this
/// many CPUs' worth of the hash's wall time.
const PROXY_BUSY: f64 = 0.5;
/// The longest rest after one hash.
const MAX_REST: Duration = Duration::from_secs(5);
/// How long a login or signup waits for a free hasher before it is answered 503:
/// under a flood, a bounded wait rather than an ever-growing queue.
pub const HASH_WAIT: Duration = Duration::from_secs(5);
/// Accepted password length in characters, inclusive.
const MIN_CHARS: usize = 8;
const MAX_CHARS: usize = 256;

/// Why hashing failed. Never carries the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordError {
    /// The hasher's semaphore was closed or its thread is gone (shutdown or panic).
    Unavailable,
    /// No hasher came free within `HASH_WAIT`.
    Busy,
    /// Argon2 rejected its input or parameters.
    Hash(String),
}

impl fmt::Display for PasswordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordError::Unavailable => f.write_str("password hasher unavailable"),
            PasswordError::Busy => f.write_str("every password hasher stayed busy"),
            PasswordError::Hash(why) => write!(f, "password hashing failed: {why}"),
        }
    }
}

impl std::error::Error for PasswordError {}

/// Checks the length policy before any hashing is done, so an oversized password costs
/// nothing. Counts characters, not bytes; the message is safe to show to the user.
pub fn acceptable(password: &str) -> Result<(), &'static str> {
    // A byte-length bound first keeps the character count itself cheap for huge inputs.
    if password.len() > MAX_CHARS * 4 || password.chars().count() > MAX_CHARS {
        return Err("password must be at most 256 characters");
    }
    if password.chars().count() < MIN_CHARS {
        return Err("password must be at least 8 characters");
    }
    Ok(())
}

/// The policy for a password being set (signup, `portcullis user add`): the length rule,
/// then not one of the bundled breached passwords (NIST SP 800-63B §3.1.1.2). Login
/// checks only the length, so an account made before its password joined the list can
/// still sign in. The message never repeats the password.
pub fn acceptable_new(password: &str) -> Result<(), &'static str> {
    acceptable(password)?;
    if wordlists::is_common_password(password) {
        return Err("password is too common: it appears in lists of breached passwords");
    }
    Ok(())
}

/// Argon2id hasher shared by signup, login and password change. Cheap to clone.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    workers: Arc<Workers>,
    /// Hash of a random password, verified against when the account does not exist so
    /// that "unknown email" and "wrong password" take the same time.
    dummy: Arc<str>,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher")
            .field("available_permits", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Hasher {
    /// A hasher allowing `max_concurrent` hashes at once (at least one). Computes the dummy
    /// hash immediately, which blocks for one hash (tens of ms): call at startup.
    pub fn new(max_concurrent: usize) -> Result<Hasher, PasswordError> {
        Hasher::yielding_to(max_concurrent, &proxy_cpu::PROXY_THREADS)
    }

    /// As [`Hasher::new`], resting after contended hashes only while `proxy` (the
    /// threads hashing should yield to) was busy.
    fn yielding_to(
        max_concurrent: usize,
        proxy: &'static ThreadClocks,
    ) -> Result<Hasher, PasswordError> {
        let random: [u8; 32] = rand::random();
        let dummy = hash_now(&super::tokens::hex(&random))?;
        crate::memory::give_back_freed();
        let threads = max_concurrent.max(1);
        Ok(Hasher {
            permits: Arc::new(Semaphore::new(threads)),
            workers: Arc::new(Workers::start(threads, proxy)?),
            dummy: dummy.into(),
        })
    }

    /// A hasher allowing as many concurrent hashes as there are CPUs.
    pub fn with_cpu_limit() -> Result<Hasher, PasswordError> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Hasher::new(cpus)
    }

    /// Hashes a password (signup, password change) into a PHC string with a fresh salt.
    /// Check [`acceptable`] first.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let permit = self.permit().await?;
        self.workers
            .run(permit, move || hash_now(&password))
            .await?
    }

    /// Login check. `phc` is the stored hash, or `None` for an unknown account, in which
    /// case a dummy hash is verified (for equal timing) and the answer is `false`.
    /// Also `false` for a malformed stored hash or when the hasher is unavailable; an
    /// error only when no hasher came free within `HASH_WAIT`.
    pub async fn verify(
        &self,
        password: String,
        phc: Option<String>,
    ) -> Result<bool, PasswordError> {
        let permit = match self.permit().await {
            Ok(permit) => permit,
            Err(PasswordError::Busy) => return Err(PasswordError::Busy),
            Err(_) => return Ok(false),
        };
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy.to_string());
        let matched = self
            .workers
            .run(permit, move || match PasswordHash::new(&phc) {
                Ok(parsed) => argon2()
                    .map(|a| a.verify_password(password.as_bytes(), &parsed).is_ok())
                    .unwrap_or(false),
                Err(_) => false,
            })
            .await
            .unwrap_or(false);
        Ok(known && matched)
    }

    /// One of the hashes that may run at once, waited for at most `HASH_WAIT`.
    async fn permit(&self) -> Result<OwnedSemaphorePermit, PasswordError> {
        let permits = Arc::clone(&self.permits);
        match tokio::time::timeout(HASH_WAIT, permits.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(PasswordError::Unavailable),
            Err(_) => Err(PasswordError::Busy),
        }
    }
}

struct Job {
    work: Box<dyn FnOnce() + Send>,
    /// Held until the thread has run the job and rested after it, even if the
    /// caller gave up waiting: a caller that gets a permit gets a hasher that
    /// starts at once, and the others wait at the semaphore (at most `HASH_WAIT`)
    /// rather than in a queue behind rests.
    permit: OwnedSemaphorePermit,
}

/// The threads hashes run on, one per hash that may run at once, at idle priority.
/// They exit when the hasher is dropped.
struct Workers {
    jobs: mpsc::Sender<Job>,
}

impl Workers {
    fn start(count: usize, proxy: &'static ThreadClocks) -> Result<Workers, PasswordError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..count {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let next = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        let Ok(Job { work, permit }) = next else {
                            return;
                        };
                        let started = Instant::now();
                        let (cpu_before, proxy_before) = (thread_cpu_time(), proxy.used());
                        // A panic fails that one hash (its caller sees Unavailable), not the thread.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(work));
                        crate::memory::give_back_freed();
                        let cpu = thread_cpu_time().saturating_sub(cpu_before);
                        let proxy_cpu = proxy.used().saturating_sub(proxy_before);
                        std::thread::sleep(rest_after(started.elapsed(), cpu, proxy_cpu));
                        drop(permit);
                    }
                })
                .map_err(|e| PasswordError::Hash(format!("cannot start a hashing thread: {e}")))?;
        }
        Ok(Workers { jobs })
    }

    /// Runs `work` on a hashing thread; `permit` is given back once that thread
    /// can take the next job.
    async fn run<T: Send + 'static>(
        &self,
        permit: OwnedSemaphorePermit,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job = Job {
            work: Box::new(move || {
                let _ = answer.send(work());
            }),
            permit,
        };
        self.jobs
            .send(job)
            .map_err(|_| PasswordError::Unavailable)?;
        answered.await.map_err(|_| PasswordError::Unavailable)
    }
}

/// Puts the calling thread in Linux's `SCHED_IDLE` class: it runs on CPU time the
/// proxy leaves idle and gives the core back the moment a proxy thread wakes; a
/// nice value alone still lets hashes delay proxied requests. Best effort: the nice
/// value stays as the fallback, and a process that already runs nicer keeps its own.
fn lower_priority() {
    // SAFETY: plain system calls about the calling thread itself.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        if libc::getpriority(libc::PRIO_PROCESS, tid) < HASH_NICE {
            libc::setpriority(libc::PRIO_PROCESS, tid, HASH_NICE);
        }
        let idle = libc::sched_param { sched_priority: 0 };
        // 0: the calling thread (Linux schedules threads, not processes).
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &idle);
    }
}

/// How long a hashing thread rests after a job that took `cpu` of its own CPU time
/// over `wall`, while the proxy's threads used `proxy_cpu`: nothing when it had its CPU
/// to itself or the proxy was not busy; otherwise long enough that the job's CPU time
/// is `BUSY_SHARE` of the time from its start to the rest's end.
fn rest_after(wall: Duration, cpu: Duration, proxy_cpu: Duration) -> Duration {
    if wall.as_secs_f64() < cpu.as_secs_f64() * CONTENDED
        || proxy_cpu.as_secs_f64() < wall.as_secs_f64() * PROXY_BUSY
    {
        return Duration::ZERO;
    }
    cpu.div_f64(BUSY_SHARE).saturating_sub(wall).min(MAX_REST)
}

/// The CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    proxy_cpu::cpu_time(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn argon2() -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, None)
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes on the current thread; only call from blocking contexts.
fn hash_now(password: &str) -> Result<String, PasswordError> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| PasswordError::Hash(e.to_string()))?;
    let hash = argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(hash.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `work` on a hashing thread as a hash runs: holding a permit.
    async fn on_hasher<T: Send + 'static>(
        hasher: &Hasher,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let permit = hasher.permit().await.expect("permit");
        hasher.workers.run(permit, work).await.expect("ran")
    }

    #[tokio::test]
    async fn hash_then_verify_accepts_the_password_and_rejects_others() {
        let hasher = Hasher::new(2).expect("hasher");
        let phc = hasher
            .hash("correct horse battery".into())
            .await
            .expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_eq!(
            hasher
                .verify("correct horse battery".into(), Some(phc.clone()))
                .await,
            Ok(true)
        );
        assert_eq!(
            hasher.verify("wrong horse battery".into(), Some(phc)).await,
            Ok(false)
        );
    }

    #[tokio::test]
    async fn hashes_run_in_the_idle_class_at_a_lower_priority_than_the_caller() {
        let hasher = Hasher::new(1).expect("hasher");
        // SAFETY: read the calling thread's own priority and scheduling class.
        let nice_of_this_thread =
            || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let class_of_this_thread = || unsafe { libc::sched_getscheduler(0) };
        let caller = (nice_of_this_thread(), class_of_this_thread());
        let worker = on_hasher(&hasher, move || {
            (nice_of_this_thread(), class_of_this_thread())
        })
        .await;
        assert!(
            worker.0 >= HASH_NICE && worker.0 > caller.0,
            "caller {caller:?}, worker {worker:?}"
        );
        assert_eq!(worker.1, libc::SCHED_IDLE, "caller {caller:?}");
        assert_ne!(
            caller.1,
            libc::SCHED_IDLE,
            "the caller's class is untouched"
        );
    }

    #[test]
    fn a_hash_rests_only_after_sharing_its_cpu_with_a_busy_proxy_and_then_to_the_busy_share() {
        let ms = Duration::from_millis;
        // The proxy's threads busy for the whole hash.
        let busy = |wall, cpu| rest_after(wall, cpu, wall);
        assert_eq!(busy(ms(50), ms(50)), Duration::ZERO, "a CPU of its own");
        assert_eq!(busy(ms(70), ms(50)), Duration::ZERO, "within CONTENDED");
        assert_eq!(
            busy(ms(150), ms(50)),
            Duration::ZERO,
            "a CPU two thirds busy still has room"
        );
        // 50 ms of CPU over 400 ms: the next may start 2.5 s after this one did.
        let rest = busy(ms(400), ms(50));
        assert!(
            rest.abs_diff(ms(2100)) < Duration::from_micros(1),
            "{rest:?}"
        );
        assert_eq!(busy(ms(400), ms(1000)), Duration::ZERO);
        assert_eq!(busy(ms(30_000), ms(5_000)), MAX_REST);
        assert_eq!(busy(ms(1), Duration::ZERO), Duration::ZERO);
        // Just as contended, but by something other than our proxy: no rest.
        assert_eq!(rest_after(ms(400), ms(50), ms(0)), Duration::ZERO);
        assert_eq!(
            rest_after(ms(400), ms(50), ms(199)),
            Duration::ZERO,
            "the proxy used under half a CPU"
        );
        assert_eq!(rest_after(ms(400), ms(50), ms(200)), rest);
        // Several proxy threads add up.
        assert_eq!(rest_after(ms(400), ms(50), ms(700)), rest);
    }

    /// Pins the calling thread to `cpu`.
    fn pin_to(cpu: usize) {
        // SAFETY: a zeroed cpu_set_t is the empty set; the calls concern this thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }

    /// Spins until this thread has used `cpu` of CPU time; the instant it is done.
    fn spin_for(cpu: Duration) -> Instant {
        let start = thread_cpu_time();
        while thread_cpu_time().saturating_sub(start) < cpu {
            std::hint::spin_loop();
        }
        Instant::now()
    }

    /// Held by the tests that pin a hasher and a hog to one CPU, so that they do not
    /// share that CPU with each other.
    static PINNED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// Where the hog of [`a_job_beside_a_hog`] runs, and whose thread it is.
    #[derive(Clone, Copy)]
    enum Hog {
        ProxyBesideTheHasher,
        OtherBesideTheHasher,
        ProxyElsewhere,
    }

    /// Runs a 40 ms job on a hasher pinned to one CPU while a thread at normal priority
    /// keeps a CPU busy for 200 ms: the hasher's own, where the idle-class job waits the
    /// hog out, or another. Returns how long the job took, then how long the hasher
    /// took to start its next job.
    async fn a_job_beside_a_hog(hog: Hog) -> (Duration, Duration) {
        let _alone = PINNED.lock().await;
        // SAFETY: asks which CPU this thread is on.
        let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).unwrap_or(0);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let hog_cpu = match hog {
            Hog::ProxyElsewhere => {
                assert!(cpus > 1, "this test needs two CPUs");
                (cpu + 1) % cpus
            }
            _ => cpu,
        };
        let hog_is_proxy = !matches!(hog, Hog::OtherBesideTheHasher);
        let proxy: &'static ThreadClocks = Box::leak(Box::default());
        let hasher = Hasher::yielding_to(1, proxy).expect("hasher");
        let job = move || {
            pin_to(cpu);
            spin_for(Duration::from_millis(40))
        };
        let (release, released) = std::sync::mpsc::channel::<()>();
        let hog = std::thread::spawn(move || {
            pin_to(hog_cpu);
            if hog_is_proxy {
                proxy.enter_this_thread();
            }
            let until = Instant::now() + Duration::from_millis(200);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            // Lives on, idle, as proxy threads do: an exited thread's clock reads nothing.
            let _ = released.recv();
        });
        let started = Instant::now();
        let done = on_hasher(&hasher, job).await;
        let next = on_hasher(&hasher, Instant::now).await;
        let _ = release.send(());
        hog.join().expect("hog");
        (done - started, next - done)
    }

    #[tokio::test]
    async fn a_hashing_thread_with_a_cpu_of_its_own_does_not_rest_however_busy_the_proxy() {
        let (took, rested) = a_job_beside_a_hog(Hog::ProxyElsewhere).await;
        assert!(took < Duration::from_millis(150), "{took:?}");
        assert!(rested < Duration::from_millis(800), "rested {rested:?}");
    }

    #[tokio::test]
    async fn a_hashing_thread_that_shared_its_cpu_with_the_proxy_rests_before_the_next_job() {
        let (took, rested) = a_job_beside_a_hog(Hog::ProxyBesideTheHasher).await;
        assert!(took >= Duration::from_millis(150), "{took:?}");
        // 40 ms / 2 % = 2 s from the job's start.
        assert!(
            rested >= Duration::from_millis(1200),
            "rested only {rested:?}"
        );
    }

    #[tokio::test]
    async fn a_hashing_thread_that_shared_its_cpu_with_another_process_does_not_rest() {
        let (took, rested) = a_job_beside_a_hog(Hog::OtherBesideTheHasher).await;
        assert!(took >= Duration::from_millis(150), "{took:?}");
        assert!(rested < Duration::from_millis(800), "rested {rested:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_login_that_finds_every_hasher_busy_for_hash_wait_gets_busy() {
        let hasher = Hasher::new(1).expect("hasher");
        let held = Arc::clone(&hasher.permits)
            .acquire_owned()
            .await
            .expect("permit");
        let started = tokio::time::Instant::now();
        assert_eq!(
            hasher.verify("whatever password".into(), None).await,
            Err(PasswordError::Busy)
        );
        assert_eq!(started.elapsed(), HASH_WAIT);
        assert_eq!(
            hasher.hash("whatever password".into()).await,
            Err(PasswordError::Busy)
        );
        drop(held);
        assert_eq!(
            hasher.verify("whatever password".into(), None).await,
            Ok(false)
        );
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone_and_the_thread_keeps_serving() {
        let hasher = Hasher::new(1).expect("hasher");
        let failed = hasher
            .workers
            .run(hasher.permit().await.expect("permit"), || panic!("boom"))
            .await;
        assert_eq!(failed.err(), Some(PasswordError::Unavailable));
        assert_eq!(
            hasher.verify("anything at all".into(), None).await,
            Ok(false)
        );
        assert_eq!(
            hasher
                .workers
                .run(hasher.permit().await.expect("permit"), || 7)
                .await,
            Ok(7)
        );
    }

    #[tokio::test]
    async fn verifying_an_unknown_account_returns_false_even_for_the_dummy_password() {
        let hasher = Hasher::new(1).expect("hasher");
        assert_eq!(
            hasher.verify("anything at all".into(), None).await,
            Ok(false)
        );
        assert_eq!(hasher.verify(String::new(), None).await, Ok(false));
    }

    #[tokio::test]
    async fn a_malformed_stored_hash_never_verifies() {
        let hasher = Hasher::new(1).expect("hasher");
        assert_eq!(
            hasher
                .verify("password".into(), Some("not-a-phc".into()))
                .await,
            Ok(false)
        );
    }

    #[test]
    fn a_10_kb_password_is_rejected_by_policy_without_hashing() {
        let huge = "a".repeat(10 * 1024);
        assert_eq!(
            acceptable(&huge),
            Err("password must be at most 256 characters")
        );
    }

    #[test]
    fn the_length_policy_counts_characters_from_8_to_256() {
        assert_eq!(
            acceptable("1234567"),
            Err("password must be at least 8 characters")
        );
        assert_eq!(acceptable("12345678"), Ok(()));
        assert_eq!(acceptable(&"é".repeat(256)), Ok(()));
        assert!(acceptable(&"é".repeat(257)).is_err());
    }
}
