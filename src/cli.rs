//! The command line (README.md, Command line). Pingora's own `Opt` is never
//! parsed: its `-c/-d/-t/-u` flags would collide with ours.

mod health;
mod pat;
mod user;
mod workspace;

use crate::config::{parse_duration, Algorithm, AuthMode, Config};
use crate::environment::Environment;
use crate::gateway::{signing_keys, MIN_SECRET_LEN};
use crate::server;
use crate::token::Grant;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "An edge gateway: no request reaches your service unauthenticated or unauthorized"
)]
pub struct Cli {
    /// The gateway config file; relative paths inside it are relative to its directory.
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        default_value = "gateway.yaml"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Start the gateway (the default command).
    Run,
    /// Validate the config and print the resolved route table.
    Check,
    /// Print the JSON Schema (draft 2020-12) of the config file, for editors and CI.
    Schema,
    /// Ask a running gateway's /readyz: exit 0 when it answers 200, else 1 (a HEALTHCHECK).
    Health {
        /// The URL to ask instead of the config's admin listener, e.g. http://127.0.0.1:9090/readyz
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Show how a request would be routed and what the route requires.
    Explain {
        /// e.g. GET
        method: String,
        /// e.g. /api/admin/users?x=1
        path: String,
    },
    /// Print an access token signed with the configured key.
    Token {
        #[arg(long)]
        sub: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long)]
        plan: Option<String>,
        /// Lifetime, e.g. 15m (default: auth.access_ttl).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Manage users in the configured store.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Manage workspaces (tenants) in the configured store.
    #[command(subcommand)]
    Workspace(workspace::WorkspaceCommand),
    /// List and revoke users' personal access tokens in the configured store.
    #[command(subcommand)]
    Pat(pat::PatCommand),
    /// Manage the signing keys of EdDSA, ES256 and RS256, kept in the store.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Publish a new signing key, signing within seconds on every replica; older
    /// keys verify until their tokens expire.
    Rotate,
    /// Seal every key and TOTP secret in the store under PORTCULLIS_KEY_ENCRYPTION_KEY, opening them
    /// with the keys in PORTCULLIS_KEY_ENCRYPTION_KEY_OLD (rotating the encryption key).
    Rewrap,
}

/// A failed command: what to print, and the exit status.
pub struct Failure {
    pub message: String,
    pub code: i32,
}

impl Failure {
    fn usage(message: String) -> Failure {
        Failure { message, code: 1 }
    }
}

/// Runs the parsed command line.
pub fn dispatch(cli: Cli) -> Result<(), Failure> {
    let path = cli.config.as_path();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => server::run(path).map_err(|message| Failure { message, code: 1 }),
        Command::Check => check(path),
        Command::Schema => {
            print!("{}", crate::config::json_schema());
            Ok(())
        }
        Command::Health { url } => health::run(path, url.as_deref()),
        Command::Explain {
            method,
            path: target,
        } => explain(path, &method, &target),
        Command::Token {
            sub,
            role,
            workspace,
            plan,
            ttl,
        } => token(
            path,
            &sub,
            &role,
            workspace.as_deref(),
            plan.as_deref(),
            ttl.as_deref(),
        ),
        Command::User(command) => user::run(path, user::StoreCommand::User(command)),
        Command::Workspace(command) => user::run(path, user::StoreCommand::Workspace(command)),
        Command::Pat(command) => user::run(path, user::StoreCommand::Pat(command)),
        Command::Keys { command } => match command {
            KeysCommand::Rotate => crate::keys::rotate_command(path),
            KeysCommand::Rewrap => crate::keys::rewrap_command(path),
        }
        .map(|out| print!("{out}"))
        .map_err(|message| Failure { message, code: 1 }),
    }
}

fn load(path: &Path) -> Result<crate::config::Loaded, Failure> {
    let env = Environment::load(path);
    server::load_config(path, &env).map_err(|message| Failure { message, code: 2 })
}

fn check(path: &Path) -> Result<(), Failure> {
    let loaded = load(path)?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    let cfg = &loaded.config;
    let env = Environment::load(path);
    let problems = offline_problems(cfg, &env);
    if !problems.is_empty() {
        return Err(Failure {
            message: problems.join("\n"),
            code: 2,
        });
    }
    for warning in unresolved_upstreams(cfg) {
        eprintln!("warning: {warning}");
    }
    println!("{}: ok", path.display());
    println!(
        "listen {}  admin {}  store {}",
        cfg.listen,
        cfg.admin_listen,
        redact_store(&cfg.store)
    );
    if let Some(t) = &cfg.tracing {
        println!(
            "tracing to {} as {}  sample {}  trust traceparent {}  user id {}",
            t.otlp_endpoint,
            t.service_name,
            t.sample_ratio,
            t.trust_incoming_traceparent,
            t.include_user_id
        );
    }
    println!(
        "{:<4} {:<36} {:<18} {:<12} requires",
        "#", "path", "methods", "upstream"
    );
    for (i, route) in cfg.routes.iter().enumerate() {
        println!(
            "{:<4} {:<36} {:<18} {:<12} {}",
            i,
            route.pattern.as_str(),
            methods(route),
            upstream_name(cfg, route),
            requirements(route)
        );
    }
    Ok(())
}

/// What `run` would refuse that needs no network, each checked by the
/// function `run` itself uses, all reported at once.
fn offline_problems(cfg: &Config, env: &Environment) -> Vec<String> {
    let mut problems = Vec::new();
    let jwt_secret = env.get("JWT_SECRET");
    let secret = match cfg.auth.algorithm {
        // Present, long enough and not guessable, as the gateway's keys are built.
        Algorithm::HS256 => signing_keys(cfg, jwt_secret.as_deref()).map(drop),
        // The key set is made in the store on first start, so only a JWT_SECRET that
        // is set is checked: it keys the refresh chain, with the same rules (keys::open).
        Algorithm::EdDSA | Algorithm::ES256 | Algorithm::RS256 => match jwt_secret {
            Some(s) if s.len() < MIN_SECRET_LEN => Err(format!(
                "JWT_SECRET is {} bytes; it must be at least {MIN_SECRET_LEN} (or unset, to keep a random refresh secret in the store)",
                s.len()
            )),
            Some(s) => crate::auth::secret_strength::check_jwt_secret(&s),
            None => Ok(()),
        },
    };
    problems.extend(secret.err());
    // The key-encryption key of the signing keys in the store, read as `run` reads it
    // (the quickstart's own is only generated by `run`).
    if cfg.auth.algorithm != Algorithm::HS256 {
        problems.extend(crate::keys::kek_for(cfg, false).err());
    }
    if let Some(tls) = &cfg.tls {
        problems.extend(server::tls::load(tls).err());
    }
    problems
}

/// Upstream names that do not resolve from here: a warning, since the place
/// `check` runs may not see the network the gateway will; `run` refuses them.
fn unresolved_upstreams(cfg: &Config) -> Vec<String> {
    cfg.upstreams
        .iter()
        .filter_map(|u| {
            let spec = crate::upstream::Spec {
                name: &u.name,
                addrs: &u.addrs,
                tls: u.tls,
                sni: &u.sni,
                connect_timeout: u.connect_timeout,
                read_timeout: u.read_timeout,
                h2: u.protocol != crate::config::UpstreamProtocol::Http1,
            };
            crate::upstream::Pool::resolve(&spec).err()
        })
        .map(|why| format!("{why} (`run` refuses to start until it resolves)"))
        .collect()
}

fn explain(path: &Path, method: &str, target: &str) -> Result<(), Failure> {
    let loaded = load(path)?;
    let cfg = &loaded.config;
    let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| Failure::usage(format!("not an HTTP method: {method}")))?;
    let raw = target.split_once('?').map_or(target, |(p, _)| p);
    let normalized = match crate::route::normalize(raw) {
        Ok(p) => p,
        Err(e) => {
            println!("path:       {raw}");
            println!("refused:    400 Invalid request: {e}");
            return Ok(());
        }
    };
    println!("path:       {normalized}");
    if method == http::Method::TRACE || method == http::Method::CONNECT {
        println!("refused:    405 Method not allowed");
        return Ok(());
    }
    let table = crate::route::RouteTable::new(
        cfg.routes
            .iter()
            .map(|r| (r.pattern.clone(), r.methods.clone()))
            .collect(),
    );
    match table.find(&method, &normalized) {
        None => println!("route:      none (404 Not found)"),
        Some(found) => {
            let route = &cfg.routes[found.index];
            println!(
                "route:      #{} {} (line {})",
                found.index,
                route.pattern.as_str(),
                route.line
            );
            for (name, value) in found.captures.iter() {
                println!("capture:    {name} = {value}");
            }
            println!("methods:    {}", methods(route));
            println!("upstream:   {}", upstream_name(cfg, route));
            println!("requires:   {}", requirements(route));
            println!("cors:       {}", cors(route));
            let (max_body, timeout) = limits(cfg, route);
            println!("max_body:   {max_body}");
            println!("timeout:    {timeout}");
        }
    }
    Ok(())
}

/// A route's CORS policy, in one line.
fn cors(route: &crate::config::Route) -> String {
    let Some(policy) = &route.cors else {
        return "none (preflights go through like other requests)".to_owned();
    };
    let origins = match policy.any_origin {
        true => "*".to_owned(),
        false => policy.origins.join(", "),
    };
    let mut parts = vec![
        format!("origins {origins}"),
        format!("methods {}", policy.allow_methods),
    ];
    if !policy.headers.is_empty() {
        parts.push(format!("headers {}", policy.allow_headers));
    }
    if !policy.expose.is_empty() {
        parts.push(format!("expose {}", policy.expose));
    }
    if policy.credentials {
        parts.push("credentials".to_owned());
    }
    if let Some(max_age) = policy.max_age {
        parts.push(format!("max_age {}", crate::config::human(max_age)));
    }
    parts.join("; ")
}

/// A route's body limit and upstream timeout, saying where each comes from.
fn limits(cfg: &Config, route: &crate::config::Route) -> (String, String) {
    let size = crate::config::human_size;
    let Some(upstream) = route.upstream.map(|i| &cfg.upstreams[i]) else {
        let max = size(crate::auth::endpoints::MAX_BODY as u64);
        return (
            format!("{max} (auth module)"),
            "none (auth module)".to_owned(),
        );
    };
    let timeout = match route.timeout {
        Some(t) => format!("{} (route)", crate::config::human(t)),
        None => format!(
            "{} (upstream {}'s read_timeout)",
            crate::config::human(upstream.read_timeout),
            upstream.name
        ),
    };
    (size(route.max_body), timeout)
}

fn token(
    path: &Path,
    sub: &str,
    role: &str,
    workspace: Option<&str>,
    plan: Option<&str>,
    ttl: Option<&str>,
) -> Result<(), Failure> {
    let loaded = load(path)?;
    let cfg = &loaded.config;
    if !cfg.roles.iter().any(|r| r == role) {
        return Err(Failure::usage(format!(
            "unknown role {role:?} (known: {})",
            cfg.roles.join(", ")
        )));
    }
    let ttl = match ttl {
        Some(t) => parse_duration(t).map_err(|e| Failure::usage(format!("--ttl: {e}")))?,
        None => cfg.auth.access_ttl,
    };
    // The gateway refuses its own tokens that outlive access_ttl; minting one is a mistake.
    if ttl > cfg.auth.access_ttl || ttl.is_zero() {
        return Err(Failure::usage(format!(
            "--ttl: must be longer than 0 and at most auth.access_ttl ({}), got {}",
            crate::config::human(cfg.auth.access_ttl),
            crate::config::human(ttl)
        )));
    }
    let env = Environment::load(path);
    let keys = signing_keys(cfg, env.get("JWT_SECRET").as_deref()).map_err(Failure::usage)?;
    let grant = Grant {
        sub,
        role,
        workspace,
        plan,
        sid: None,
    };
    println!("{}", keys.issue(grant, crate::clock::now(), ttl).token);
    Ok(())
}

fn methods(route: &crate::config::Route) -> String {
    let names = route.methods.names();
    if names.is_empty() || names == ["*"] {
        "any".to_owned()
    } else {
        names.join(",")
    }
}

fn upstream_name<'a>(cfg: &'a crate::config::Config, route: &crate::config::Route) -> &'a str {
    route
        .upstream
        .map_or("(auth module)", |i| cfg.upstreams[i].name.as_str())
}

/// What a route asks of a request, in words.
fn requirements(route: &crate::config::Route) -> String {
    if route.auth == AuthMode::None {
        return "nothing (public)".to_owned();
    }
    let mut parts = vec!["a valid token".to_owned()];
    if !route.roles.is_empty() {
        parts.push(format!("role in [{}]", route.roles.join(", ")));
    }
    if !route.plans.is_empty() {
        parts.push(format!("plan in [{}]", route.plans.join(", ")));
    }
    if let Some(owner) = &route.owner {
        let bypass = if route.owner_bypass.is_empty() {
            String::new()
        } else {
            format!(" (bypass: {})", route.owner_bypass.join(", "))
        };
        parts.push(format!("{{{owner}}} = sub{bypass}"));
    }
    if let Some(ws) = &route.workspace {
        parts.push(format!("{{{ws}}} = token workspace"));
    }
    if let Some(rate) = &route.rate_limit {
        parts.push(format!("at most {} per {:?}", rate.count, rate.per));
    }
    parts.join(", ")
}

/// A store URL without its password, for printing: the config's one redactor.
pub(crate) use crate::config::store_url::redact as redact_store;
