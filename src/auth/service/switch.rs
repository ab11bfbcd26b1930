//! `POST /switch {workspace}`: a token pair scoped to another workspace of the same user.
//!
//! Switching starts a *new* session (refresh family) rather than rotating the current
//! one: each session has one scope for its whole life, so a refresh can never widen a
//! token's rights, and the old scope's tokens keep exactly the old scope's rights until
//! they expire or that session is logged out. The new session ends no later than the one
//! the presented token came from, so switching back and forth never extends a login.

use super::{unsigned, Service, TokenPair};
use crate::auth::store::SessionOrigin;
use crate::authn::Identity;
use crate::error::Reject;
use crate::gateway::Gateway;

impl Service {
    /// Issues a token pair scoped to `workspace` for the (already verified, not revoked)
    /// bearer `id`. 403 `NotMember` when the user does not belong to it; a deleted or
    /// disabled account is refused like an invalid token.
    pub async fn switch(
        &self,
        gw: &Gateway,
        id: &Identity,
        workspace: &str,
        origin: &SessionOrigin,
        now: u64,
    ) -> Result<TokenPair, Reject> {
        self.available()?;
        // Every switch starts a session family in the store, so a token holder
        // gets as many per minute as refreshes, counted per user.
        let rate = &gw.config.auth.rate_limits.refresh;
        super::limit(&self.limits.routes, ("auth:switch", id.sub.as_str()), rate)?;
        let user = self
            .store
            .user_by_id(&id.sub)
            .await
            .map_err(|e| self.unavailable("switch", e))?;
        let Some(user) = user.filter(|u| !u.disabled) else {
            return Err(Reject::Revoked);
        };
        let scope = self
            .membership(&user.id, workspace)
            .await?
            .ok_or(Reject::NotMember)?;
        let mut expires_at = now.saturating_add(gw.config.auth.refresh_ttl.as_secs());
        if let Some(sid) = &id.sid {
            let current = self
                .store
                .family(sid)
                .await
                .map_err(|e| self.unavailable("switch", e))?;
            match current {
                Some(family) if family.revoked_at.is_none() => {
                    expires_at = expires_at.min(unsigned(family.expires_at));
                }
                // Revoked in the store but not yet in our set (another replica): refuse.
                Some(_) => return Err(Reject::Revoked),
                // Purged after its end: the token came from a session that is over.
                None => return Err(Reject::Revoked),
            }
        }
        if expires_at <= now {
            return Err(Reject::Revoked);
        }
        self.start_session(gw, &user.id, &scope, (now, expires_at), origin, "switch")
            .await
    }
}
