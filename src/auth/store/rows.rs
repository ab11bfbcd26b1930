//! Plain records returned by the store, and their decoding from database rows.

use std::fmt;

use sqlx::any::AnyRow;
use sqlx::Row;

/// A registered account. `not_before` is the revocation watermark: access tokens whose
/// `iat` is earlier than it are no longer honoured.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    /// Normalised (trimmed, lower-case) email address.
    pub email: String,
    /// Argon2 PHC string; pass to the password hasher, never to clients or logs.
    pub password_hash: String,
    pub role: String,
    pub disabled: bool,
    pub not_before: i64,
    pub created_at: i64,
}

// Hand-written so the password hash cannot end up in logs through `{:?}`.
impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .field("not_before", &self.not_before)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A workspace (tenant) and its billing plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workspace {
    pub id: String,
    pub plan: String,
    pub created_at: i64,
}

/// One of a user's workspace memberships, with the workspace's plan for token claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub workspace_id: String,
    pub role: String,
    pub plan: String,
}

/// A refresh-token family: one login session. Its id is the `sid` claim of every
/// access token minted from it, so revoking the family revokes those tokens too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Family {
    pub id: String,
    pub user_id: String,
    pub workspace_id: Option<String>,
    pub created_at: i64,
    /// Absolute end of the session, however often it is refreshed.
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

pub(super) fn user_from(row: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        role: row.try_get("role")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        not_before: row.try_get("not_before")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn family_from(row: &AnyRow) -> Result<Family, sqlx::Error> {
    Ok(Family {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        workspace_id: row.try_get("workspace_id")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

pub(super) fn workspace_from(row: &AnyRow) -> Result<Workspace, sqlx::Error> {
    Ok(Workspace {
        id: row.try_get("id")?,
        plan: row.try_get("plan")?,
        created_at: row.try_get("created_at")?,
    })
}
