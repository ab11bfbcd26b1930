//! User and workspace management for the admin API (docs/auth-api.md, Admin API): list
//! users, change a user's role or disable them, set or remove workspace memberships,
//! set a workspace's plan. Every change that can reduce rights ends the affected users'
//! sessions in the store *and* in this process's revocation set before the answer goes
//! out, so the old tokens stop working on the very next request here (other replicas
//! follow the feed).

use super::{signed, unsigned, Service, MAX_ACCESS_TTL};
use crate::auth::store::{Membership, StoreError, User};
use crate::authn::Identity;
use crate::error::Reject;
use std::collections::HashMap;

/// The role a token must carry, unscoped, to use the admin API.
pub const ADMIN_ROLE: &str = "admin";

/// Longest workspace id the admin API and the CLI create.
const MAX_WORKSPACE_ID: usize = 128;

/// Workspace ids are 1 to 128 unreserved URL characters, so a path segment, a token
/// claim and the `X-Workspace-Id` header all spell them the same way.
pub fn valid_workspace_id(ws: &str) -> bool {
    !ws.is_empty()
        && ws.len() <= MAX_WORKSPACE_ID
        && ws
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// A user as the admin API shows it: never the password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub role: String,
    pub disabled: bool,
    pub memberships: Vec<Membership>,
}

impl Account {
    fn new(user: User, memberships: Vec<Membership>) -> Account {
        Account {
            id: user.id,
            email: user.email,
            role: user.role,
            disabled: user.disabled,
            memberships,
        }
    }
}

/// What `PATCH /users/{id}` may change; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct UserChange<'a> {
    pub role: Option<&'a str>,
    pub disabled: Option<bool>,
}

/// Allows the admin API to a token whose *global* role is `admin`. A workspace-scoped
/// token never qualifies, even with role `admin`: being admin of one workspace (the
/// Slack pattern) must not make anyone admin of every account.
pub fn require_admin(id: &Identity) -> Result<(), Reject> {
    if id.workspace.is_none() && id.role.as_deref() == Some(ADMIN_ROLE) {
        Ok(())
    } else {
        Err(Reject::Forbidden)
    }
}

impl Service {
    /// `GET /users`: every account, oldest first, with its memberships.
    pub async fn list_accounts(&self) -> Result<Vec<Account>, Reject> {
        self.available()?;
        let users = self
            .store
            .list_users()
            .await
            .map_err(|e| self.unavailable("list users", e))?;
        let mut memberships: HashMap<String, Vec<Membership>> = HashMap::new();
        for (user, membership) in self
            .store
            .all_memberships()
            .await
            .map_err(|e| self.unavailable("list users", e))?
        {
            memberships.entry(user).or_default().push(membership);
        }
        Ok(users
            .into_iter()
            .map(|user| {
                let mine = memberships.remove(&user.id).unwrap_or_default();
                Account::new(user, mine)
            })
            .collect())
    }

    /// One account with its memberships; `NotFound` for an unknown id.
    pub async fn account(&self, id: &str) -> Result<Account, Reject> {
        self.available()?;
        let user = self
            .store
            .user_by_id(id)
            .await
            .map_err(|e| self.unavailable("user", e))?
            .ok_or(Reject::NotFound)?;
        let memberships = self
            .store
            .memberships(id)
            .await
            .map_err(|e| self.unavailable("user", e))?;
        Ok(Account::new(user, memberships))
    }

    /// `PATCH /users/{id}`: a changed role or disabling ends the user's sessions;
    /// setting the role they already have, or re-enabling, ends nothing.
    pub async fn update_account(
        &self,
        id: &str,
        change: UserChange<'_>,
        now: u64,
    ) -> Result<Account, Reject> {
        let before = self.account(id).await?;
        if let Some(role) = change.role.filter(|r| *r != before.role) {
            let not_before = self
                .store
                .set_role(id, role, signed(now))
                .await
                .map_err(|e| self.not_found_or_unavailable("set role", e))?;
            self.sessions_ended(id, not_before);
        }
        if let Some(disabled) = change.disabled {
            let not_before = self
                .store
                .set_disabled(id, disabled, signed(now))
                .await
                .map_err(|e| self.not_found_or_unavailable("disable", e))?;
            if disabled {
                self.sessions_ended(id, not_before);
            }
        }
        self.sync_now().await;
        self.account(id).await
    }

    /// `PUT /users/{id}/workspaces/{ws}`: adds the membership (no session ends: rights
    /// only grow) or changes its role (the user's sessions end, since the store does not
    /// rank roles). `NotFound` for an unknown user or workspace.
    pub async fn put_membership(
        &self,
        user: &str,
        workspace: &str,
        role: &str,
        now: u64,
    ) -> Result<Account, Reject> {
        self.available()?;
        let ended = self
            .store
            .set_membership(user, workspace, role, signed(now))
            .await
            .map_err(|e| self.not_found_or_unavailable("set membership", e))?;
        if ended {
            // The store moved `not_before` to at least `now`; the feed brings the rest.
            self.sessions_ended(user, signed(now));
            self.sync_now().await;
        }
        self.account(user).await
    }

    /// `DELETE /users/{id}/workspaces/{ws}`: removes the membership and ends the user's
    /// sessions. `NotFound` when there was no such membership.
    pub async fn delete_membership(
        &self,
        user: &str,
        workspace: &str,
        now: u64,
    ) -> Result<(), Reject> {
        self.available()?;
        self.store
            .remove_membership(user, workspace, signed(now))
            .await
            .map_err(|e| self.not_found_or_unavailable("remove membership", e))?;
        self.sessions_ended(user, signed(now));
        self.sync_now().await;
        Ok(())
    }

    /// `PUT /workspaces/{ws}`: creates the workspace or changes its plan; a change ends
    /// the sessions of every member. Returns whether the workspace was created.
    pub async fn put_workspace(
        &self,
        workspace: &str,
        plan: &str,
        now: u64,
    ) -> Result<bool, Reject> {
        self.available()?;
        let change = self
            .store
            .put_workspace(workspace, plan, signed(now))
            .await
            .map_err(|e| self.unavailable("put workspace", e))?;
        for (user, not_before) in &change.ended {
            self.sessions_ended(user, *not_before);
        }
        if !change.ended.is_empty() {
            self.sync_now().await;
        }
        Ok(change.created)
    }

    /// Makes a store-side end of `user`'s sessions bite in this process at once: every
    /// token issued before `not_before` is refused. Tokens issued within that same second
    /// are caught by their revoked session, which `sync_now` applies from the feed.
    fn sessions_ended(&self, user: &str, not_before: i64) {
        let horizon = crate::clock::now().saturating_add(MAX_ACCESS_TTL.as_secs());
        self.revocations
            .set_not_before(user, unsigned(not_before), horizon);
    }

    fn not_found_or_unavailable(&self, during: &str, e: StoreError) -> Reject {
        match e {
            StoreError::NotFound => Reject::NotFound,
            e => self.unavailable(during, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(role: &str, workspace: Option<&str>) -> Identity {
        Identity {
            sub: "u1".into(),
            more_roles: Vec::new(),
            external: None,
            pat: None,
            role: Some(role.into()),
            workspace: workspace.map(str::to_owned),
            plan: workspace.map(|_| "pro".to_owned()),
            jti: "j".into(),
            sid: None,
            iat: 0,
            exp: 1,
        }
    }

    #[test]
    fn only_an_unscoped_admin_token_may_use_the_admin_api() {
        assert_eq!(require_admin(&identity("admin", None)), Ok(()));
        assert_eq!(
            require_admin(&identity("admin", Some("acme"))),
            Err(Reject::Forbidden)
        );
        assert_eq!(
            require_admin(&identity("viewer", None)),
            Err(Reject::Forbidden)
        );
    }
}
