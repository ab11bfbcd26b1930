//! The process environment plus an optional `.env` file beside the config
//! (docs/configuration.md, Environment variables), read once. Variables set in
//! the real environment win.

use std::collections::HashMap;
use std::path::Path;

/// Lookup of the variables Portcullis reads (`JWT_SECRET`, `PORT`, ...).
pub struct Environment {
    dotenv: HashMap<String, String>,
}

impl Environment {
    /// Reads `<config dir>/.env` when present; a missing file is normal.
    pub fn load(config_path: &Path) -> Environment {
        let dir = config_path.parent().unwrap_or(Path::new("."));
        let text = std::fs::read_to_string(dir.join(".env")).unwrap_or_default();
        Environment {
            dotenv: parse_dotenv(&text),
        }
    }

    pub fn get(&self, key: &str) -> Option<String> {
        std::env::var(key)
            .ok()
            .or_else(|| self.dotenv.get(key).cloned())
    }
}

/// `KEY=value` lines; `#` comments, blank lines and an `export ` prefix are
/// allowed, and one pair of surrounding quotes is removed.
fn parse_dotenv(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let unquoted = ['"', '\'']
                .iter()
                .find_map(|q| v.strip_prefix(*q)?.strip_suffix(*q))
                .unwrap_or(v);
            Some((k.trim().to_owned(), unquoted.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_lines_are_parsed_like_shells_and_express_apps_expect() {
        let vars = parse_dotenv(
            "# comment\nJWT_SECRET=abc\nexport PORT=8081\nQUOTED=\"x y\"\nSINGLE='z'\n\nbroken line\n",
        );
        assert_eq!(vars.get("JWT_SECRET").map(String::as_str), Some("abc"));
        assert_eq!(vars.get("PORT").map(String::as_str), Some("8081"));
        assert_eq!(vars.get("QUOTED").map(String::as_str), Some("x y"));
        assert_eq!(vars.get("SINGLE").map(String::as_str), Some("z"));
        assert_eq!(vars.len(), 4);
    }
}
