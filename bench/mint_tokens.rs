//! Prints N distinct access tokens signed with a config's keys, one per line, for
//! `bench/algorithms.sh` (many distinct tokens defeat the verified-token cache).
//!
//!   cargo run --release --example mint_tokens -- CONFIG COUNT ROLE

use portcullis::environment::Environment;
use portcullis::gateway::signing_keys;
use portcullis::token::Grant;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, config, count, role] = args.as_slice() else {
        eprintln!("usage: mint_tokens CONFIG COUNT ROLE");
        std::process::exit(2);
    };
    let path = Path::new(config);
    let env = Environment::load(path);
    let vars = |name: &str| env.get(name);
    let loaded = match portcullis::config::load(path, &vars) {
        Ok(loaded) => loaded,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            std::process::exit(1);
        }
    };
    let keys = signing_keys(&loaded.config, env.get("JWT_SECRET").as_deref()).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1);
    });
    let count: usize = count.parse().unwrap_or(1);
    let now = portcullis::clock::now();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for i in 0..count {
        let sub = format!("user-{i}");
        let grant = Grant {
            sub: &sub,
            role,
            workspace: None,
            plan: None,
            sid: None,
        };
        // An hour, not access_ttl: a benchmark outlives a 15-minute token.
        let issued = keys.issue(grant, now, Duration::from_secs(3600));
        let _ = writeln!(out, "{}", issued.token);
    }
}
