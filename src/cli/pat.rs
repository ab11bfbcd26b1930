//! `portcullis pat …`: personal access tokens from the shell, against the configured
//! store. A revocation reaches every running gateway from the feed within a second.

use super::user::{fail, find, store_failure};
use super::Failure;
use crate::auth::store::{Store, StoreError};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum PatCommand {
    /// List a user's live personal access tokens (never their secrets).
    List {
        #[arg(long)]
        email: String,
    },
    /// Revoke a personal access token by id.
    Revoke {
        /// The token's id, as `pat list` or `GET {prefix}/tokens` shows it.
        id: String,
    },
}

pub(super) async fn execute(store: &Store, command: PatCommand) -> Result<(), Failure> {
    let now = i64::try_from(crate::clock::now()).unwrap_or(i64::MAX);
    match command {
        PatCommand::List { email } => {
            let user = find(store, &email).await?;
            let tokens = store
                .pats_of_user(&user.id, now)
                .await
                .map_err(store_failure)?;
            println!(
                "{:<32}  {:<14}  {:<10}  {:<10}  {:<10}  name",
                "id", "prefix", "created", "expires", "last used"
            );
            for t in tokens {
                let last = t.last_used_at.map_or("-".to_owned(), |at| at.to_string());
                println!(
                    "{:<32}  {:<14}  {:<10}  {:<10}  {:<10}  {}",
                    t.id, t.display_prefix, t.created_at, t.expires_at, last, t.name
                );
            }
        }
        PatCommand::Revoke { id } => match store.revoke_pat(&id, None, now).await {
            Ok(t) => println!("token {} ({}) of user {} revoked", t.id, t.name, t.user_id),
            Err(StoreError::NotFound) => return Err(fail(format!("no live token with id {id:?}"))),
            Err(e) => return Err(store_failure(e)),
        },
    }
    Ok(())
}
