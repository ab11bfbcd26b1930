//! Reads `auth.email`: the SMTP relay account mail goes through (verification, password
//! reset), the links the mails carry, the one-time tokens' lifetimes and the plain-text
//! templates, built in or the operator's own. Everything is checked here, at load, so the
//! mail worker only ever renders and sends.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use lettre::message::Mailbox;

use super::schema::{key, Section, Ty};
use super::sections::{env_value, resolve, Env};
use super::yaml::{Fields, Problems};
use super::{human, parse_duration};

#[rustfmt::skip]
pub(super) static EMAIL_KEYS: &Section = &Section {
    path: "auth.email",
    keys: &[
        key("smtp", Ty::Matching("^smtps?://."), "The relay: smtp://host[:port] (port 587 with starttls, else 25) or smtps://host[:port] (TLS from the first byte, port 465).").required(),
        key("starttls", Ty::Bool, "Upgrade an smtp:// connection with STARTTLS and refuse a relay that cannot (default true)."),
        key("username", Ty::Text, "SMTP login, with the password from password_env."),
        key("password_env", Ty::Text, "Environment variable holding the SMTP password (required with username)."),
        key("from", Ty::Text, "Sender of every mail: \"Name <addr@example.com>\" or a bare address.").required(),
        key("verify_signups", Ty::Bool, "Send new accounts a verification link, and answer signups 202 whether or not the address has an account (default true)."),
        key("verify_url", Ty::Text, "Page of your app that takes a verification token; the mail links to it with #token=… (default: the mail shows the token alone)."),
        key("reset_url", Ty::Text, "Page of your app that takes a password-reset token; the mail links to it with #token=…"),
        key("verify_ttl", Ty::Duration, "How long a verification token works (default 24h)."),
        key("reset_ttl", Ty::Duration, "How long a password-reset token works (default 15m, at most 1h)."),
        key("templates_dir", Ty::Text, "Directory with your own verify_email.txt, signup_existing.txt or password_reset.txt (relative to this file); missing files keep the built-in text."),
    ],
};

const MAX_RESET_TTL: Duration = Duration::from_secs(3_600);
const MAX_VERIFY_TTL: Duration = Duration::from_secs(7 * 86_400);

/// The mail settings of the auth module (`auth.email`).
#[derive(Clone)]
pub struct Email {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// Login and password (from `password_env`), or none for an open relay.
    pub credentials: Option<(String, String)>,
    pub from: Mailbox,
    /// Whether signup sends a verification link (and answers 202 whatever the address).
    pub verify_signups: bool,
    pub verify_url: Option<String>,
    pub reset_url: Option<String>,
    pub verify_ttl: Duration,
    pub reset_ttl: Duration,
    pub templates: Templates,
}

// Hand-written so the SMTP password never reaches a log.
impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Email")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.credentials.as_ref().map(|(u, _)| u))
            .field("from", &self.from.to_string())
            .field("verify_signups", &self.verify_signups)
            .field("verify_ttl", &self.verify_ttl)
            .field("reset_ttl", &self.reset_ttl)
            .finish_non_exhaustive()
    }
}

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain SMTP: only for a relay on the same host or a private network.
    Plain,
    /// STARTTLS, required: a relay that does not offer it gets no mail.
    StartTls,
    /// TLS from the first byte (`smtps://`).
    Tls,
}

/// The three mails, each a subject and a plain-text body with `{placeholders}`.
#[derive(Debug, Clone)]
pub struct Templates {
    pub verify_email: Template,
    pub signup_existing: Template,
    pub password_reset: Template,
}

/// One mail's text. Placeholders: `{email}`, `{link}`, `{token}`, `{expires_in}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub subject: String,
    pub body: String,
}

/// The placeholders a template may use.
const PLACEHOLDERS: [&str; 4] = ["email", "link", "token", "expires_in"];

/// (file name, built-in text, whether the mail carries a token).
const BUILT_IN: [(&str, &str, bool); 3] = [
    (
        "verify_email.txt",
        include_str!("../auth/mail/verify_email.txt"),
        true,
    ),
    (
        "signup_existing.txt",
        include_str!("../auth/mail/signup_existing.txt"),
        false,
    ),
    (
        "password_reset.txt",
        include_str!("../auth/mail/password_reset.txt"),
        true,
    ),
];

/// Reads `auth.email`; `None` when absent (no mail: verification and reset are off).
pub(super) fn read(a: &Fields, dir: &Path, env: Env, p: &mut Problems) -> Option<Email> {
    let field = a.get("email")?;
    let e = field.fields(p, EMAIL_KEYS);
    let smtp = e.require(p, "smtp").and_then(|f| f.str(p));
    let starttls = e.get("starttls").and_then(|f| f.bool(p));
    let username = e.get("username").and_then(|f| f.str(p));
    let password_env = e.get("password_env").and_then(|f| f.str(p));
    let from = e
        .require(p, "from")
        .and_then(|f| f.parsed(p, parse_mailbox));
    let verify_signups = e.or(p, "verify_signups", true, |f, p| f.bool(p));
    let verify_url = e.get("verify_url").and_then(|f| f.parsed(p, check_url));
    let reset_url = e.get("reset_url").and_then(|f| f.parsed(p, check_url));
    let verify_ttl = ttl(&e, "verify_ttl", 86_400, MAX_VERIFY_TTL, p);
    let reset_ttl = ttl(&e, "reset_ttl", 15 * 60, MAX_RESET_TTL, p);
    let templates_dir = e.get("templates_dir").and_then(|f| f.str(p));

    let (host, port, security) = match smtp.as_deref().map(parse_smtp) {
        Some(Ok((host, port, tls))) => {
            let security = match (tls, starttls) {
                (true, Some(_)) => {
                    p.error(
                        &e.spot_of("starttls"),
                        "does not apply to smtps:// (TLS from the first byte)",
                    );
                    Security::Tls
                }
                (true, None) => Security::Tls,
                (false, Some(false)) => Security::Plain,
                (false, _) => Security::StartTls,
            };
            let default_port = match security {
                Security::Tls => 465,
                Security::StartTls => 587,
                Security::Plain => 25,
            };
            (host, port.unwrap_or(default_port), security)
        }
        Some(Err(why)) => {
            p.error(&e.spot_of("smtp"), why);
            (String::new(), 0, Security::Plain)
        }
        None => (String::new(), 0, Security::Plain),
    };
    let credentials = match (username, password_env) {
        (None, None) => None,
        (Some(_), None) => {
            p.error(
                &e.spot_of("username"),
                "needs password_env, the environment variable holding the password",
            );
            None
        }
        (None, Some(_)) => {
            p.error(&e.spot_of("password_env"), "has no effect without username");
            None
        }
        (Some(user), Some(var)) => match env_value(env, &var) {
            Some(password) => Some((user, password)),
            None => {
                p.error(
                    &e.spot_of("password_env"),
                    format!("environment variable {var} is not set"),
                );
                None
            }
        },
    };
    let templates = read_templates(templates_dir.map(|d| resolve(dir, &d)), &e, p);
    Some(Email {
        host,
        port,
        security,
        credentials,
        from: from?,
        verify_signups,
        verify_url,
        reset_url,
        verify_ttl,
        reset_ttl,
        templates,
    })
}

fn parse_mailbox(s: &str) -> Result<Mailbox, String> {
    s.parse::<Mailbox>().map_err(|_| {
        format!("invalid sender \"{s}\": expected \"Name <addr@example.com>\" or addr@example.com")
    })
}

/// `smtp://host[:port]` or `smtps://host[:port]`: (host, port, TLS from the first byte).
fn parse_smtp(url: &str) -> Result<(String, Option<u16>, bool), String> {
    let bad = |why: &str| {
        format!("invalid relay \"{url}\": {why} (smtp://host[:port] or smtps://host[:port])")
    };
    let (rest, tls) = match (url.strip_prefix("smtp://"), url.strip_prefix("smtps://")) {
        (Some(rest), _) => (rest, false),
        (_, Some(rest)) => (rest, true),
        _ => return Err(bad("unknown scheme")),
    };
    if rest.contains(['/', '?', '#', '@']) {
        return Err(bad(
            "only a host and a port; the login goes in username and password_env",
        ));
    }
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            (host, after.strip_prefix(':'))
        }
        None => match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        },
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        None => None,
        Some(port) => Some(
            port.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
        ),
    };
    Ok((host.to_owned(), port, tls))
}

fn check_url(url: &str) -> Result<String, String> {
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.contains('#') {
        return Err(format!(
            "invalid URL \"{url}\": expected http(s)://… without a #fragment (the token is put there)"
        ));
    }
    Ok(url.to_owned())
}

fn ttl(e: &Fields, key: &str, default_secs: u64, max: Duration, p: &mut Problems) -> Duration {
    let default = Duration::from_secs(default_secs);
    let d = e.or(p, key, default, |f, p| f.parsed(p, parse_duration));
    if d < Duration::from_secs(1) || d > max {
        p.error(
            &e.spot_of(key),
            format!("must be from 1s to {} (got {})", human(max), human(d)),
        );
        return default;
    }
    d
}

/// The built-in templates, each replaced by the operator's file of the same name in `dir`.
fn read_templates(dir: Option<std::path::PathBuf>, e: &Fields, p: &mut Problems) -> Templates {
    let [verify_email, signup_existing, password_reset] =
        BUILT_IN.map(|(name, text, carries_token)| {
            let own = dir.as_ref().map(|d| d.join(name)).filter(|f| f.exists());
            let (text, source) = match own {
                None => (text.to_owned(), format!("built-in {name}")),
                Some(file) => match std::fs::read_to_string(&file) {
                    Ok(text) => (text, file.display().to_string()),
                    Err(err) => {
                        let why = format!("cannot read {}: {err}", file.display());
                        p.error(&e.spot_of("templates_dir"), why);
                        (text.to_owned(), String::new())
                    }
                },
            };
            parse_template(&text, carries_token).unwrap_or_else(|why| {
                p.error(&e.spot_of("templates_dir"), format!("{source}: {why}"));
                Template {
                    subject: String::new(),
                    body: String::new(),
                }
            })
        });
    Templates {
        verify_email,
        signup_existing,
        password_reset,
    }
}

/// `Subject: …`, a blank line, then the body; every `{name}` a known placeholder, and a
/// mail that carries a token must show it (`{link}` or `{token}`), one that does not must not.
pub(crate) fn parse_template(text: &str, carries_token: bool) -> Result<Template, String> {
    let text = text.replace("\r\n", "\n");
    let (head, body) = text
        .split_once("\n\n")
        .ok_or("expected a \"Subject: …\" line, a blank line, then the body")?;
    let subject = head
        .strip_prefix("Subject:")
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.contains('\n'))
        .ok_or("the first line must be \"Subject: …\" (one line, not empty)")?;
    let mut rest = format!("{subject}\n{body}");
    let mut shows_token = false;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or("a { without its }")?;
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}} (known: {})",
                PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
            ));
        }
        shows_token |= name == "link" || name == "token";
        rest = after[close + 1..].to_owned();
    }
    if carries_token && !shows_token {
        return Err("must show {link} or {token}, or the mail is useless".into());
    }
    if !carries_token && shows_token {
        return Err("has no token to show: {link} and {token} are not available here".into());
    }
    Ok(Template {
        subject: subject.to_owned(),
        body: body.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_are_smtp_or_smtps_urls_with_a_host_and_an_optional_port() {
        assert_eq!(
            parse_smtp("smtp://mail.example.com:2525"),
            Ok(("mail.example.com".into(), Some(2525), false))
        );
        assert_eq!(parse_smtp("smtps://[::1]"), Ok(("::1".into(), None, true)));
        assert!(parse_smtp("http://x").is_err());
        assert!(parse_smtp("smtp://user:pw@x").is_err());
        assert!(parse_smtp("smtp://x:0").is_err());
        assert!(parse_smtp("smtp://:25").is_err());
    }

    #[test]
    fn templates_need_a_subject_and_known_placeholders() {
        let t = parse_template("Subject: Hi {email}\n\nGo to {link}\n", true).unwrap();
        assert_eq!(t.subject, "Hi {email}");
        assert_eq!(t.body, "Go to {link}\n");
        assert!(parse_template("Hi\n\n{link}", true).is_err());
        assert!(parse_template("Subject: x\n\n{linc}", true).is_err());
        assert!(parse_template("Subject: x\n\nno token", true).is_err());
        assert!(parse_template("Subject: x\n\n{token}", false).is_err());
        for (_, text, carries) in BUILT_IN {
            assert!(parse_template(text, carries).is_ok());
        }
    }
}
