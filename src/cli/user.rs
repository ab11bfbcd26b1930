//! `portcullis user …`: account management from the shell, against the configured store
//! (how the first admin is made). Changes that reduce rights end the user's sessions; a
//! running gateway picks them up from the revocation feed within a second.

use super::{load, Failure};
use crate::auth::email;
use crate::auth::password::{self, Hasher};
use crate::auth::store::{Store, StoreError, User};
use crate::config::Config;
use clap::Subcommand;
use std::io::Read;
use std::path::Path;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from stdin (never from the command line).
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
        /// Workspace membership as W:ROLE, or W:ROLE:PLAN to create the workspace (or set its plan).
        #[arg(long = "workspace", value_name = "W:ROLE[:PLAN]")]
        workspaces: Vec<String>,
        /// Read the password from stdin (one line; the trailing newline is dropped).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List every user.
    List,
    /// Change a user's role; ends their sessions.
    SetRole {
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
    },
    /// Disable a user: login refused, every session and token ended.
    Disable {
        #[arg(long)]
        email: String,
    },
    /// Re-enable a disabled user (old sessions stay ended).
    Enable {
        #[arg(long)]
        email: String,
    },
    /// Add a user to a workspace, or change their role there (a change ends their sessions).
    SetWorkspace {
        #[arg(long)]
        email: String,
        /// The workspace id; create it first with `portcullis workspace set-plan`.
        #[arg(long)]
        workspace: String,
        /// The user's role in that workspace (one of `roles:`).
        #[arg(long)]
        role: String,
    },
    /// Remove a user from a workspace; ends their sessions.
    RemoveWorkspace {
        #[arg(long)]
        email: String,
        #[arg(long)]
        workspace: String,
    },
    /// Remove a user's TOTP second factor and recovery codes (a lost phone).
    ResetMfa {
        #[arg(long)]
        email: String,
    },
}

/// A command that needs the store: `user …` or `workspace …`.
pub enum StoreCommand {
    User(UserCommand),
    Workspace(super::workspace::WorkspaceCommand),
    Pat(super::pat::PatCommand),
}

/// A `--workspace W:ROLE[:PLAN]` argument.
struct Membership {
    workspace: String,
    role: String,
    plan: Option<String>,
}

/// Runs one `user` or `workspace` subcommand against the configured store.
pub fn run(path: &Path, command: StoreCommand) -> Result<(), Failure> {
    let loaded = load(path)?;
    let cfg = loaded.config;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start a runtime: {e}")))?;
    runtime.block_on(async move {
        let store = Store::connect(&cfg.store).await.map_err(|e| {
            fail(format!(
                "store {} is not usable: {e}",
                super::redact_store(&cfg.store)
            ))
        })?;
        let result = match command {
            StoreCommand::User(command) => execute(&cfg, &store, command).await,
            StoreCommand::Workspace(command) => {
                super::workspace::execute(&cfg, &store, command).await
            }
            StoreCommand::Pat(command) => super::pat::execute(&store, command).await,
        };
        store.close().await;
        result
    })
}

async fn execute(cfg: &Config, store: &Store, command: UserCommand) -> Result<(), Failure> {
    let now = i64::try_from(crate::clock::now()).unwrap_or(i64::MAX);
    match command {
        UserCommand::Add {
            email,
            role,
            workspaces,
            password_stdin: _,
        } => {
            let email = email::valid(&email).map_err(|why| fail(why.to_owned()))?;
            known_role(cfg, &role)?;
            let memberships = workspaces
                .iter()
                .map(|w| parse_membership(cfg, w))
                .collect::<Result<Vec<_>, _>>()?;
            let password = read_password()?;
            password::acceptable_new(&password).map_err(|why| fail(why.to_owned()))?;
            let hasher = Hasher::new(1).map_err(|e| fail(e.to_string()))?;
            let hash = hasher
                .hash(password)
                .await
                .map_err(|e| fail(e.to_string()))?;
            for m in &memberships {
                match &m.plan {
                    Some(plan) => store.put_workspace(&m.workspace, plan, now).await.map(drop),
                    None => match store.workspace(&m.workspace).await {
                        Ok(Some(_)) => Ok(()),
                        Ok(None) => {
                            return Err(fail(format!(
                                "workspace {:?} does not exist; give its plan to create it: --workspace {}:{}:PLAN",
                                m.workspace, m.workspace, m.role
                            )))
                        }
                        Err(e) => Err(e),
                    },
                }
                .map_err(store_failure)?;
            }
            let user = match store.create_user(&email, &hash, &role, now).await {
                Err(StoreError::Conflict) => {
                    return Err(fail(format!("{email} is already registered")))
                }
                other => other.map_err(store_failure)?,
            };
            for m in &memberships {
                store
                    .set_membership(&user.id, &m.workspace, &m.role, now)
                    .await
                    .map_err(store_failure)?;
            }
            println!(
                "created {} ({}) with role {}",
                user.email, user.id, user.role
            );
        }
        UserCommand::List => {
            let users = store.list_users().await.map_err(store_failure)?;
            let memberships = store.all_memberships().await.map_err(store_failure)?;
            println!(
                "{:<32}  {:<32}  {:<12}  {:<8}  workspaces",
                "id", "email", "role", "status"
            );
            for user in users {
                let status = if user.disabled { "disabled" } else { "active" };
                let workspaces: Vec<String> = memberships
                    .iter()
                    .filter(|(id, _)| *id == user.id)
                    .map(|(_, m)| format!("{}:{}:{}", m.workspace_id, m.role, m.plan))
                    .collect();
                println!(
                    "{:<32}  {:<32}  {:<12}  {status:<8}  {}",
                    user.id,
                    user.email,
                    user.role,
                    workspaces.join(",")
                );
            }
        }
        UserCommand::SetRole { email, role } => {
            known_role(cfg, &role)?;
            let user = find(store, &email).await?;
            store
                .set_role(&user.id, &role, now)
                .await
                .map_err(store_failure)?;
            println!(
                "{} now has role {role}; their sessions were ended",
                user.email
            );
        }
        UserCommand::Disable { email } => {
            let user = find(store, &email).await?;
            store
                .set_disabled(&user.id, true, now)
                .await
                .map_err(store_failure)?;
            println!("{} is disabled; their sessions were ended", user.email);
        }
        UserCommand::Enable { email } => {
            let user = find(store, &email).await?;
            store
                .set_disabled(&user.id, false, now)
                .await
                .map_err(store_failure)?;
            println!("{} is enabled", user.email);
        }
        UserCommand::SetWorkspace {
            email,
            workspace,
            role,
        } => {
            known_role(cfg, &role)?;
            let user = find(store, &email).await?;
            if store
                .workspace(&workspace)
                .await
                .map_err(store_failure)?
                .is_none()
            {
                return Err(fail(format!(
                    "workspace {workspace:?} does not exist; create it with: portcullis workspace set-plan {workspace} PLAN"
                )));
            }
            let ended = store
                .set_membership(&user.id, &workspace, &role, now)
                .await
                .map_err(store_failure)?;
            if ended {
                println!(
                    "{} now has role {role} in {workspace}; their sessions were ended",
                    user.email
                );
            } else {
                println!("{} has role {role} in {workspace}", user.email);
            }
        }
        UserCommand::RemoveWorkspace { email, workspace } => {
            let user = find(store, &email).await?;
            match store.remove_membership(&user.id, &workspace, now).await {
                Err(StoreError::NotFound) => {
                    return Err(fail(format!(
                        "{} is not a member of {workspace:?}",
                        user.email
                    )))
                }
                other => other.map_err(store_failure)?,
            }
            println!(
                "{} was removed from {workspace}; their sessions were ended",
                user.email
            );
        }
        UserCommand::ResetMfa { email } => {
            let user = find(store, &email).await?;
            let had = store.delete_totp(&user.id).await.map_err(store_failure)?;
            match had {
                true => println!("{}: second factor removed", user.email),
                false => println!("{} had no second factor", user.email),
            }
        }
    }
    Ok(())
}

pub(super) async fn find(store: &Store, email: &str) -> Result<User, Failure> {
    store
        .user_by_email(email)
        .await
        .map_err(store_failure)?
        .ok_or_else(|| fail(format!("no user with email {}", email::normalize(email))))
}

pub(super) fn known_role(cfg: &Config, role: &str) -> Result<(), Failure> {
    if cfg.roles.iter().any(|r| r == role) {
        return Ok(());
    }
    Err(fail(format!(
        "unknown role {role:?} (known: {})",
        cfg.roles.join(", ")
    )))
}

fn parse_membership(cfg: &Config, arg: &str) -> Result<Membership, Failure> {
    let mut parts = arg.splitn(3, ':');
    let (Some(workspace), Some(role)) = (parts.next(), parts.next()) else {
        return Err(fail(format!(
            "--workspace {arg:?}: expected W:ROLE or W:ROLE:PLAN"
        )));
    };
    let plan = parts.next().map(str::to_owned);
    if workspace.is_empty() || role.is_empty() || plan.as_deref() == Some("") {
        return Err(fail(format!(
            "--workspace {arg:?}: expected W:ROLE or W:ROLE:PLAN"
        )));
    }
    known_role(cfg, role)?;
    if let (Some(plan), Some(plans)) = (&plan, &cfg.plans) {
        if !plans.iter().any(|p| p == plan) {
            return Err(fail(format!(
                "unknown plan {plan:?} (known: {})",
                plans.join(", ")
            )));
        }
    }
    Ok(Membership {
        workspace: workspace.to_owned(),
        role: role.to_owned(),
        plan,
    })
}

/// The first line of stdin, without its line ending.
fn read_password() -> Result<String, Failure> {
    let mut input = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut input)
        .map_err(|e| fail(format!("cannot read the password from stdin: {e}")))?;
    let line = input.lines().next().unwrap_or_default();
    Ok(line.to_owned())
}

pub(super) fn store_failure(e: StoreError) -> Failure {
    fail(format!("store: {e}"))
}

pub(super) fn fail(message: String) -> Failure {
    Failure { message, code: 1 }
}
