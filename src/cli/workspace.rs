//! `portcullis workspace …`: workspaces (tenants) and their plans, from the shell. A
//! changed plan ends the members' sessions, as the admin API's `PUT /workspaces/{ws}` does;
//! a running gateway picks that up from the revocation feed within a second.

use super::user::{fail, store_failure};
use super::Failure;
use crate::auth::service::valid_workspace_id;
use crate::auth::store::Store;
use crate::config::Config;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum WorkspaceCommand {
    /// Create a workspace on a plan, or change its plan (a change ends its members' sessions).
    SetPlan {
        /// The workspace id: 1 to 128 of A-Z a-z 0-9 . _ ~ -
        workspace: String,
        /// The plan (one of `plans:` when the config declares them).
        plan: String,
    },
}

/// Runs one `workspace` subcommand against an open store.
pub(super) async fn execute(
    cfg: &Config,
    store: &Store,
    command: WorkspaceCommand,
) -> Result<(), Failure> {
    let now = i64::try_from(crate::clock::now()).unwrap_or(i64::MAX);
    match command {
        WorkspaceCommand::SetPlan { workspace, plan } => {
            if !valid_workspace_id(&workspace) {
                return Err(fail(format!(
                    "workspace id {workspace:?}: use 1 to 128 of A-Z a-z 0-9 . _ ~ -"
                )));
            }
            if let Some(plans) = &cfg.plans {
                if !plans.contains(&plan) {
                    return Err(fail(format!(
                        "unknown plan {plan:?} (known: {})",
                        plans.join(", ")
                    )));
                }
            }
            if plan.is_empty() {
                return Err(fail("the plan must not be empty".to_owned()));
            }
            let change = store
                .put_workspace(&workspace, &plan, now)
                .await
                .map_err(store_failure)?;
            if change.created {
                println!("created workspace {workspace} on plan {plan}");
            } else if change.ended.is_empty() {
                println!("workspace {workspace} is on plan {plan}");
            } else {
                println!(
                    "workspace {workspace} is now on plan {plan}; the sessions of its {} member(s) were ended",
                    change.ended.len()
                );
            }
        }
    }
    Ok(())
}
