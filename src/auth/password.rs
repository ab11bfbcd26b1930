//! Password hashing with Argon2id, kept off the async I/O threads and capped in concurrency.
//!
//! Parameters follow OWASP's Argon2id recommendation: m = 19 MiB, t = 2, p = 1. Each hash
//! costs tens of milliseconds of CPU and 19 MiB of memory, so concurrent logins are queued
//! behind a semaphore instead of starving the proxy or exhausting memory, and they run on
//! threads of their own at a lower CPU priority: a burst of logins gets the CPU the proxy
//! leaves idle, not the CPU it needs.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{mpsc, Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// Argon2id memory cost in KiB (OWASP).
const MEMORY_KIB: u32 = 19_456;
/// Argon2id passes (OWASP).
const ITERATIONS: u32 = 2;
/// Argon2id lanes (OWASP).
const LANES: u32 = 1;
/// The hashing threads' Linux nice value, which counts only if `SCHED_IDLE` (below) is
/// refused: weight 36 against the proxy's 1024.
const HASH_NICE: libc::c_int = 15;
/// Accepted password length in characters, inclusive.
const MIN_CHARS: usize = 8;
const MAX_CHARS: usize = 256;

/// Why hashing failed. Never carries the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordError {
    /// The hasher's semaphore was closed or its thread is gone (shutdown or panic).
    Unavailable,
    /// Argon2 rejected its input or parameters.
    Hash(String),
}

impl fmt::Display for PasswordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordError::Unavailable => f.write_str("password hasher unavailable"),
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
        let random: [u8; 32] = rand::random();
        let dummy = hash_now(&super::tokens::hex(&random))?;
        let threads = max_concurrent.max(1);
        Ok(Hasher {
            permits: Arc::new(Semaphore::new(threads)),
            workers: Arc::new(Workers::start(threads)?),
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
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::Unavailable)?;
        self.workers
            .run(move || {
                // Held until the hash is done even if the caller gave up waiting.
                let _permit = permit;
                hash_now(&password)
            })
            .await?
    }

    /// Login check. `phc` is the stored hash, or `None` for an unknown account, in which
    /// case a dummy hash is verified (for equal timing) and the answer is `false`.
    /// Also `false` for a malformed stored hash or when the hasher is unavailable.
    pub async fn verify(&self, password: String, phc: Option<String>) -> bool {
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
            return false;
        };
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy.to_string());
        let matched = self
            .workers
            .run(move || {
                let _permit = permit;
                match PasswordHash::new(&phc) {
                    Ok(parsed) => argon2()
                        .map(|a| a.verify_password(password.as_bytes(), &parsed).is_ok())
                        .unwrap_or(false),
                    Err(_) => false,
                }
            })
            .await
            .unwrap_or(false);
        known && matched
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The threads hashes run on, one per hash that may run at once, at idle priority.
/// They exit when the hasher is dropped.
struct Workers {
    jobs: mpsc::Sender<Job>,
}

impl Workers {
    fn start(count: usize) -> Result<Workers, PasswordError> {
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
                        let Ok(job) = next else { return };
                        // A panic fails that one hash (its caller sees Unavailable), not the thread.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                    }
                })
                .map_err(|e| PasswordError::Hash(format!("cannot start a hashing thread: {e}")))?;
        }
        Ok(Workers { jobs })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = answer.send(work());
        });
        self.jobs
            .send(job)
            .map_err(|_| PasswordError::Unavailable)?;
        answered.await.map_err(|_| PasswordError::Unavailable)
    }
}

/// Puts the calling thread in Linux's `SCHED_IDLE` class: it runs on CPU time the
/// proxy leaves idle and gives the core back the moment a proxy thread wakes. At nice
/// 15 alone the 200 path's p99 under 20 logins/s was 13.8 ms, against 4.5 ms with
/// `SCHED_IDLE` (docs/benchmarks.md, sixth round). Best effort: the nice value stays
/// as the fallback, and a process that already runs nicer keeps its own.
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

    #[tokio::test]
    async fn hash_then_verify_accepts_the_password_and_rejects_others() {
        let hasher = Hasher::new(2).expect("hasher");
        let phc = hasher
            .hash("correct horse battery".into())
            .await
            .expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(
            hasher
                .verify("correct horse battery".into(), Some(phc.clone()))
                .await
        );
        assert!(!hasher.verify("wrong horse battery".into(), Some(phc)).await);
    }

    #[tokio::test]
    async fn hashes_run_in_the_idle_class_at_a_lower_priority_than_the_caller() {
        let hasher = Hasher::new(1).expect("hasher");
        // SAFETY: read the calling thread's own priority and scheduling class.
        let nice_of_this_thread =
            || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let class_of_this_thread = || unsafe { libc::sched_getscheduler(0) };
        let caller = (nice_of_this_thread(), class_of_this_thread());
        let worker = hasher
            .workers
            .run(move || (nice_of_this_thread(), class_of_this_thread()))
            .await
            .expect("ran");
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

    #[tokio::test]
    async fn a_panicking_job_fails_alone_and_the_thread_keeps_serving() {
        let hasher = Hasher::new(1).expect("hasher");
        let failed = hasher.workers.run(|| panic!("boom")).await;
        assert_eq!(failed.err(), Some(PasswordError::Unavailable));
        assert!(!hasher.verify("anything at all".into(), None).await);
        assert_eq!(hasher.workers.run(|| 7).await, Ok(7));
    }

    #[tokio::test]
    async fn verifying_an_unknown_account_returns_false_even_for_the_dummy_password() {
        let hasher = Hasher::new(1).expect("hasher");
        assert!(!hasher.verify("anything at all".into(), None).await);
        assert!(!hasher.verify(String::new(), None).await);
    }

    #[tokio::test]
    async fn a_malformed_stored_hash_never_verifies() {
        let hasher = Hasher::new(1).expect("hasher");
        assert!(
            !hasher
                .verify("password".into(), Some("not-a-phc".into()))
                .await
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
