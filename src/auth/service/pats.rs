//! Personal access tokens in the service: create, list and revoke
//! them for their owner or an admin, verify a presented one against the in-memory
//! index (no I/O), and keep that index following the store's feed.

use super::{require_admin, signed, unsigned, Service};
use crate::auth::pat::{self, Index, Owner, Refusal, Scope};
use crate::auth::store::{Event, EventKind, NewPat, Store, StoreError, StoredPat};
use crate::auth::tokens::hex;
use crate::authn::Identity;
use crate::error::Reject;
use crate::gateway::Gateway;
use crate::metrics::METRICS;
use crate::token::TokenError;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Live tokens one user may hold: each is a line in every replica's index.
pub const MAX_TOKENS_PER_USER: usize = 50;
/// Longest token name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// A token to create, already parsed by the HTTP adapter.
pub struct NewToken<'a> {
    pub name: &'a str,
    pub expires_in: Duration,
    pub scopes: Vec<Scope>,
    /// `scopes` as JSON, the form stored and shown.
    pub scopes_json: String,
    pub workspace: Option<&'a str>,
}

/// A token just created: the only time its secret exists outside the client.
pub struct Created {
    pub token: String,
    pub row: StoredPat,
}

impl Service {
    /// Verifies a presented personal access token (already seen to carry the prefix)
    /// against the in-memory index: no I/O, no lock. Counted by result.
    pub fn verify_pat(&self, token: &str, now: u64) -> Result<Arc<Identity>, Reject> {
        let pats = &METRICS.pats;
        match self.pats.verify(token, now) {
            Ok(identity) => {
                pats.ok.inc();
                Ok(identity)
            }
            Err(refusal) => {
                let (counter, reject) = match refusal {
                    Refusal::Malformed => {
                        (&pats.malformed, Reject::InvalidToken(TokenError::Malformed))
                    }
                    Refusal::Expired => (&pats.expired, Reject::InvalidToken(TokenError::Expired)),
                    Refusal::Unknown => (&pats.unknown, Reject::Revoked),
                    Refusal::OwnerInactive => (&pats.owner_inactive, Reject::Revoked),
                };
                counter.inc();
                Err(reject)
            }
        }
    }

    /// `POST /tokens`: a new token for the session's user, limited to `new.scopes` and
    /// (optionally) one workspace the user belongs to.
    pub async fn create_pat(
        &self,
        gw: &Gateway,
        id: &Identity,
        new: NewToken<'_>,
        now: u64,
    ) -> Result<Created, Reject> {
        self.available()?;
        let max = gw.config.auth.pat.max_ttl;
        if new.expires_in.is_zero() || new.expires_in > max {
            return Err(Reject::BadRequest(
                format!(
                    "field \"expires_in\" must be from 1s to {}",
                    crate::config::human(max)
                )
                .into(),
            ));
        }
        if let Some(ws) = new.workspace {
            if self.membership(&id.sub, ws).await?.is_none() {
                return Err(Reject::NotMember);
            }
        }
        let live = self
            .store
            .pats_of_user(&id.sub, signed(now))
            .await
            .map_err(|e| self.unavailable("create token", e))?;
        if live.len() >= MAX_TOKENS_PER_USER {
            return Err(Reject::BadRequest(
                format!("at most {MAX_TOKENS_PER_USER} live tokens per user; revoke one first")
                    .into(),
            ));
        }
        let token = pat::generate();
        let row = NewPat {
            user_id: &id.sub,
            name: new.name,
            token_hash: &hex(&pat::digest(&token)),
            display_prefix: pat::display_prefix(&token),
            scopes: &new.scopes_json,
            workspace_id: new.workspace,
            created_at: signed(now),
            expires_at: signed(now.saturating_add(new.expires_in.as_secs())),
        };
        let row = match self.store.create_pat(&row).await {
            Ok(row) => row,
            // A CLI-minted token for a user the store does not know.
            Err(StoreError::NotFound) => return Err(Reject::Revoked),
            Err(e) => return Err(self.unavailable("create token", e)),
        };
        // Usable here as soon as the answer is out; the other replicas follow the feed.
        self.sync_now().await;
        log::info!(
            "personal access token {} created for user {}",
            row.id,
            row.user_id
        );
        Ok(Created { token, row })
    }

    /// `GET /tokens` (the caller's) or `GET /users/{id}/tokens` (an admin): live tokens.
    pub async fn list_pats(&self, user: &str, now: u64) -> Result<Vec<StoredPat>, Reject> {
        self.available()?;
        self.store
            .pats_of_user(user, signed(now))
            .await
            .map_err(|e| self.unavailable("list tokens", e))
    }

    /// `DELETE /tokens/{id}`: the owner revokes their own, an admin anyone's. 404 for an
    /// unknown id, an already revoked token, or another user's token (to a non-admin).
    pub async fn revoke_pat(
        &self,
        caller: &Identity,
        token_id: &str,
        now: u64,
    ) -> Result<(), Reject> {
        self.available()?;
        let owner = match require_admin(caller) {
            Ok(()) => None,
            Err(_) => Some(caller.sub.as_str()),
        };
        match self.store.revoke_pat(token_id, owner, signed(now)).await {
            Ok(row) => {
                self.pats.remove(&row.id);
                log::info!(
                    "personal access token {} of user {} revoked by {}",
                    row.id,
                    row.user_id,
                    caller.sub
                );
            }
            Err(StoreError::NotFound) => return Err(Reject::NotFound),
            Err(e) => return Err(self.unavailable("revoke token", e)),
        }
        self.sync_now().await;
        Ok(())
    }

    /// Applies the feed's token and owner events to the index, re-reading what changed.
    /// Runs before the cursor moves past `events`, so a failure here is retried.
    pub(super) async fn follow_pats(&self, events: &[Event], now: u64) -> Result<(), StoreError> {
        let mut owners = Vec::new();
        let mut changed_users = Vec::new();
        for event in events {
            match event.kind {
                EventKind::Pat => match self.store.pat(&event.subject).await? {
                    Some(row) => owners.extend(self.pats.put(row, now)),
                    None => self.pats.remove(&event.subject),
                },
                EventKind::User | EventKind::Account => changed_users.push(event.subject.as_str()),
                EventKind::Jti | EventKind::Family => {}
            }
        }
        owners.extend(self.pats.owners_among(changed_users.into_iter()));
        owners.sort();
        owners.dedup();
        for user in owners {
            let owner = owner(&self.store, &user).await?;
            self.pats.set_owner(&user, owner);
        }
        Ok(())
    }

    /// Writes the last-used times gathered since the previous batch; on failure they
    /// wait for the next one.
    pub(super) async fn flush_pat_uses(&self) {
        let used = self.pats.take_used();
        if used.is_empty() {
            return;
        }
        if let Err(e) = self.store.touch_pats(&used).await {
            log::warn!("recording token use failed, retrying with the next batch: {e}");
            self.pats.untake(&used);
        }
    }
}

/// The index at start-up: every live token and its owner's current state.
pub(super) async fn load_index(store: &Store, now: u64) -> Result<Index, StoreError> {
    let index = Index::default();
    let rows = store.live_pats(signed(now)).await?;
    let mut owners = HashMap::new();
    for row in &rows {
        if !owners.contains_key(&row.user_id) {
            owners.insert(row.user_id.clone(), owner(store, &row.user_id).await?);
        }
    }
    index.load(rows, owners, now);
    Ok(index)
}

/// A token owner's current state; `None` when the user is gone.
async fn owner(store: &Store, user: &str) -> Result<Option<Owner>, StoreError> {
    let Some(found) = store.user_by_id(user).await? else {
        return Ok(None);
    };
    let memberships = store.memberships(user).await?;
    Ok(Some(Owner::new(&found, memberships)))
}

/// A token as listings show it: never the secret or its hash.
pub fn listed(row: &StoredPat) -> serde_json::Value {
    let scopes: serde_json::Value =
        serde_json::from_str(&row.scopes).unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "id": row.id,
        "name": row.name,
        "prefix": row.display_prefix,
        "scopes": scopes,
        "workspace": row.workspace_id,
        "created_at": unsigned(row.created_at),
        "expires_at": unsigned(row.expires_at),
        "last_used_at": row.last_used_at.map(unsigned),
    })
}
