//! Account mail: the auth endpoints put a [`Job`] on a bounded queue and answer at once;
//! a worker on the auth runtime (never a proxy thread) looks the address up, writes the
//! one-time token's hash, renders the plain-text template and sends it over SMTP with
//! `lettre`, retrying with backoff. Because the lookup happens here, an answer about an
//! address takes the same time whether or not it has an account.
//!
//! The queue is in memory: mails not yet sent when the process stops are lost, and the
//! user asks again (resend, forgot). Tokens appear only in the mail itself, never in a log.

use std::sync::Arc;
use std::time::Duration;

use lettre::address::Address;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::{mpsc, Mutex, Semaphore};

use super::store::{Purpose, Store, User};
use super::tokens;
use crate::config::{human, Email, Security, Template};
use crate::metrics::METRICS;

/// Jobs waiting at most; beyond that a request's mail is dropped (and counted), never awaited.
const QUEUE: usize = 1024;
/// Mails being prepared or sent at once.
const CONCURRENT: usize = 4;
/// Attempts per mail, the first included; the waits between them double from `FIRST_RETRY`.
const ATTEMPTS: u32 = 6;
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// One SMTP conversation at most this long.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// What to mail. Addresses are normalized (`auth::email::normalize`).
#[derive(Debug)]
pub enum Job {
    /// A new account's verification link.
    Verify { user_id: String, email: String },
    /// `verify-email/resend`: a new link if the address has an unverified, enabled account.
    Resend { email: String },
    /// A signup with an address that already has an account: tell its owner.
    SignupExisting { email: String },
    /// `password/forgot`: a reset link if the address has an enabled account.
    Reset { email: String },
}

struct Queued {
    job: Job,
    /// The settings of the config the request was served under.
    settings: Arc<Email>,
}

/// The queue and its worker's end. One per process, beside the store.
pub struct Outbox {
    tx: mpsc::Sender<Queued>,
    rx: Mutex<Option<mpsc::Receiver<Queued>>>,
}

impl Default for Outbox {
    fn default() -> Outbox {
        let (tx, rx) = mpsc::channel(QUEUE);
        Outbox {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

impl Outbox {
    /// Queues `job` without waiting; a full queue drops it, counted and logged.
    pub fn push(&self, job: Job, settings: &Arc<Email>) {
        let template = job.template();
        let queued = Queued {
            job,
            settings: Arc::clone(settings),
        };
        if self.tx.try_send(queued).is_err() {
            METRICS.mails.with_label_values(&[template, "failed"]).inc();
            log::error!("mail {template}: queue full, not sent");
        }
    }

    /// The worker, forever: call once, on the auth runtime.
    pub async fn run(&self, store: Store) {
        let Some(mut rx) = self.rx.lock().await.take() else {
            return;
        };
        let slots = Arc::new(Semaphore::new(CONCURRENT));
        while let Some(queued) = rx.recv().await {
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                deliver(&store, queued).await;
                drop(slot);
            });
        }
    }
}

impl Job {
    /// The template's name: the `template` label of `portcullis_auth_mails_total`.
    fn template(&self) -> &'static str {
        match self {
            Job::Verify { .. } | Job::Resend { .. } => "verify_email",
            Job::SignupExisting { .. } => "signup_existing",
            Job::Reset { .. } => "password_reset",
        }
    }
}

/// Prepares and sends one job's mail; every outcome is counted, every failure logged.
async fn deliver(store: &Store, Queued { job, settings }: Queued) {
    let template = job.template();
    let mail = match prepare(store, &settings, job).await {
        Ok(Some(mail)) => mail,
        Ok(None) => {
            METRICS
                .mails
                .with_label_values(&[template, "skipped"])
                .inc();
            return;
        }
        Err(why) => {
            METRICS.mails.with_label_values(&[template, "failed"]).inc();
            log::error!("mail {template}: not sent: {why}");
            return;
        }
    };
    let mut wait = FIRST_RETRY;
    for attempt in 1..=ATTEMPTS {
        let error = match send(&settings, mail.clone()).await {
            Ok(()) => {
                METRICS.mails.with_label_values(&[template, "sent"]).inc();
                return;
            }
            Err(e) => e,
        };
        let last = attempt == ATTEMPTS || error.is_permanent();
        if last {
            METRICS.mails.with_label_values(&[template, "failed"]).inc();
            log::error!("mail {template}: attempt {attempt} failed, giving up: {error}");
            return;
        }
        METRICS
            .mails
            .with_label_values(&[template, "retried"])
            .inc();
        log::warn!("mail {template}: attempt {attempt} failed, retrying in {wait:?}: {error}");
        tokio::time::sleep(wait).await;
        wait = wait.saturating_mul(2);
    }
}

/// The message for `job`, with its token stored; `None` when nothing is to be sent (an
/// address without an account, an account already verified or disabled).
async fn prepare(store: &Store, s: &Email, job: Job) -> Result<Option<Message>, String> {
    let now = crate::clock::now();
    let (purpose, user_id, email) = match job {
        Job::Verify { user_id, email } => (Some(Purpose::VerifyEmail), user_id, email),
        Job::Resend { email } => match account(store, &email).await? {
            Some(user)
                if !store
                    .email_verified(&user.id)
                    .await
                    .map_err(|e| e.to_string())? =>
            {
                (Some(Purpose::VerifyEmail), user.id, user.email)
            }
            _ => return Ok(None),
        },
        Job::SignupExisting { email } => match account(store, &email).await? {
            Some(user) => (None, user.id, user.email),
            None => return Ok(None),
        },
        Job::Reset { email } => match account(store, &email).await? {
            Some(user) => (Some(Purpose::PasswordReset), user.id, user.email),
            None => return Ok(None),
        },
    };
    let Some(purpose) = purpose else {
        let text = render(&s.templates.signup_existing, &email, "", "", "");
        return message(s, &email, text).map(Some);
    };
    let (ttl, url, template) = match purpose {
        Purpose::VerifyEmail => (s.verify_ttl, &s.verify_url, &s.templates.verify_email),
        Purpose::PasswordReset => (s.reset_ttl, &s.reset_url, &s.templates.password_reset),
    };
    let token = tokens::new_refresh_token();
    let expires_at = now.saturating_add(ttl.as_secs());
    store
        .insert_account_token(
            purpose,
            &tokens::hash(&token),
            &user_id,
            &email,
            signed(now),
            signed(expires_at),
        )
        .await
        .map_err(|e| format!("storing the token: {e}"))?;
    // The fragment never reaches a server log or a Referer header.
    let link = match url {
        Some(url) => format!("{url}#token={token}"),
        None => token.clone(),
    };
    let text = render(template, &email, &link, &token, &human(ttl));
    message(s, &email, text).map(Some)
}

/// The enabled account with this address, if any.
async fn account(store: &Store, email: &str) -> Result<Option<User>, String> {
    let user = store
        .user_by_email(email)
        .await
        .map_err(|e| format!("looking the address up: {e}"))?;
    Ok(user.filter(|u| !u.disabled))
}

/// (subject, body) with every placeholder replaced, in one pass so a value that looks
/// like a placeholder stays as it is.
fn render(
    t: &Template,
    email: &str,
    link: &str,
    token: &str,
    expires_in: &str,
) -> (String, String) {
    let fill = |text: &str| {
        let mut out = String::with_capacity(text.len() + link.len());
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                break;
            };
            let value = match &after[..close] {
                "email" => email,
                "link" => link,
                "token" => token,
                "expires_in" => expires_in,
                // Templates are checked at load; anything else is kept verbatim.
                _ => &rest[open..open + close + 2],
            };
            out.push_str(value);
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        out
    };
    (fill(&t.subject), fill(&t.body))
}

fn message(s: &Email, to: &str, (subject, body): (String, String)) -> Result<Message, String> {
    let address: Address = to
        .parse()
        .map_err(|e| format!("the stored address is not one SMTP takes: {e}"))?;
    Message::builder()
        .from(s.from.clone())
        .to(Mailbox::new(None, address))
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| format!("building the message: {e}"))
}

async fn send(s: &Email, mail: Message) -> Result<(), lettre::transport::smtp::Error> {
    type Smtp = AsyncSmtpTransport<Tokio1Executor>;
    let builder = match s.security {
        Security::Plain => Smtp::builder_dangerous(&s.host),
        Security::StartTls => Smtp::starttls_relay(&s.host)?,
        Security::Tls => Smtp::relay(&s.host)?,
    };
    let mut builder = builder.port(s.port).timeout(Some(SEND_TIMEOUT));
    if let Some((user, password)) = &s.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    builder.build().send(mail).await.map(drop)
}

fn signed(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_fills_each_placeholder_once_and_leaves_values_alone() {
        let t = Template {
            subject: "For {email}".into(),
            body: "Open {link} ({expires_in}); code {token}.".into(),
        };
        let (subject, body) = render(&t, "a{token}@x.io", "L", "T", "15m");
        assert_eq!(subject, "For a{token}@x.io");
        assert_eq!(body, "Open L (15m); code T.");
    }
}
