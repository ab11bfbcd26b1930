//! The one way a store URL is shown (logs, startup errors, `portcullis check`, `Debug`):
//! with its password masked, however the password is written.

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
///
/// The credentials end at the *last* `@`, since a password may hold an unescaped `@`,
/// `/` or `:`; the user name ends at the first `:`, as a user name cannot hold one
/// unescaped. A query `password=` (libpq style) is masked too. When in doubt this
/// masks too much (say a later `@` in a query), never too little.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let (head, rest) = url.split_at(scheme_end);
    let mut shown = String::with_capacity(url.len());
    shown.push_str(head);
    let after_credentials = match rest.rfind('@') {
        Some(at) => {
            let credentials = &rest[..at];
            match credentials.split_once(':') {
                Some((user, _)) => {
                    shown.push_str(user);
                    shown.push_str(":***");
                }
                None => shown.push_str(credentials),
            }
            &rest[at..]
        }
        None => rest,
    };
    match after_credentials.split_once('?') {
        Some((location, query)) => {
            shown.push_str(location);
            shown.push('?');
            shown.push_str(&redact_query(query));
        }
        None => shown.push_str(after_credentials),
    }
    shown
}

/// `a=1&password=x` → `a=1&password=***`, for any parameter named like a password.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name.to_ascii_lowercase().ends_with("password") => {
                format!("{name}=***")
            }
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_password_is_masked() {
        let cases = [
            ("postgres://u:secret@host/db", "postgres://u:***@host/db"),
            // An unescaped '@' in the password: the first '@' is not the end.
            ("postgres://u:p@ss@host/db", "postgres://u:***@host/db"),
            // ':' and '/' in the password.
            (
                "postgres://u:a:b/c@host:5432/db",
                "postgres://u:***@host:5432/db",
            ),
            // Percent-encoded, as the URL spec wants it.
            (
                "postgresql://u:p%40ss%3Aw%2Fd@host/db?sslmode=require",
                "postgresql://u:***@host/db?sslmode=require",
            ),
            // An empty password still says there was one.
            ("postgres://u:@host/db", "postgres://u:***@host/db"),
            // In the query, libpq style.
            (
                "postgres://u@host/db?sslmode=disable&password=hunter2",
                "postgres://u@host/db?sslmode=disable&password=***",
            ),
            ("postgres://host/db", "postgres://host/db"),
            ("postgres://u@host/db", "postgres://u@host/db"),
            (
                "sqlite:///var/lib/portcullis.db",
                "sqlite:///var/lib/portcullis.db",
            ),
            ("no scheme at all", "no scheme at all"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    #[test]
    fn no_password_character_survives_redaction() {
        for password in ["p@ss", "a:b", "x/y@z", "p%40ss", "@@@", "::"] {
            let url = format!("postgres://user:{password}@db.internal:5432/app");
            let shown = redact(&url);
            assert_eq!(shown, "postgres://user:***@db.internal:5432/app", "{url}");
        }
    }
}
