//! Users, workspaces and memberships; every reduction of rights ends the user's sessions.

use sqlx::AnyConnection;
use sqlx::Row;

use super::revocation_log::{record, EventKind};
use super::rows::{user_from, workspace_from, Membership, User, Workspace};
use super::{new_id, Store, StoreError};

/// Emails are stored and compared in one form (`auth::email::normalize`), so `A@x.io`,
/// `ａ@x.io` and `a@x.io ` cannot register twice.
pub(super) fn normalize_email(email: &str) -> String {
    crate::auth::email::normalize(email)
}

impl Store {
    /// Registers a user. The email is normalized (NFKC, lower-cased, trimmed) before storing;
    /// `Err(Conflict)` if it is already taken. `password_hash` must already be a PHC string.
    pub async fn create_user(
        &self,
        email: &str,
        password_hash: &str,
        role: &str,
        now: i64,
    ) -> Result<User, StoreError> {
        let row = sqlx::query(concat!(
            "INSERT INTO users (id, email, password_hash, role, disabled, not_before, created_at) \
             VALUES ($1, $2, $3, $4, 0, 0, $5) RETURNING ",
            user_columns!()
        ))
        .bind(new_id())
        .bind(normalize_email(email))
        .bind(password_hash)
        .bind(role)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(user_from(&row)?)
    }

    /// Looks a user up for login; `Ok(None)` when the email is unknown (the caller should
    /// still run a dummy password verification so timing does not reveal that).
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE email = $1"
        ))
        .bind(normalize_email(email))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_from).transpose()?)
    }

    /// Looks a user up by id (the `sub` claim).
    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_from).transpose()?)
    }

    /// All users, oldest first, for the admin API.
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(user_from).collect::<Result<_, _>>()?)
    }

    /// Changes a user's role and ends all their sessions (tokens carry the role as a claim,
    /// so they must be re-issued). Returns the new `not_before`.
    pub async fn set_role(&self, id: &str, role: &str, now: i64) -> Result<i64, StoreError> {
        let mut tx = self.write_tx().await?;
        let changed = sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
            .bind(role)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if changed.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let not_before = end_sessions(&mut tx, id, now).await?;
        tx.commit().await?;
        Ok(not_before)
    }

    /// Disables or re-enables a user. Disabling ends all their sessions; re-enabling does
    /// not resurrect them. Returns the user's `not_before` afterwards.
    pub async fn set_disabled(
        &self,
        id: &str,
        disabled: bool,
        now: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2 RETURNING not_before")
            .bind(i64::from(disabled))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound);
        };
        let not_before = if disabled {
            end_sessions(&mut tx, id, now).await?
        } else {
            // Nothing to revoke, but the owner's personal access tokens work again:
            // replicas learn it from the feed.
            record(&mut tx, EventKind::Account, id, now, None).await?;
            row.try_get("not_before")?
        };
        tx.commit().await?;
        Ok(not_before)
    }

    /// Logout-all: revokes every session of the user and every access token issued so far.
    /// Returns the new `not_before` for the in-memory revocation set.
    pub async fn revoke_user_sessions(&self, id: &str, now: i64) -> Result<i64, StoreError> {
        let mut tx = self.write_tx().await?;
        let not_before = end_sessions(&mut tx, id, now).await?;
        tx.commit().await?;
        Ok(not_before)
    }

    /// Creates a workspace on the given plan.
    pub async fn create_workspace(&self, plan: &str, now: i64) -> Result<Workspace, StoreError> {
        let row = sqlx::query(
            "INSERT INTO workspaces (id, plan, created_at) VALUES ($1, $2, $3) \
             RETURNING id, plan, created_at",
        )
        .bind(new_id())
        .bind(plan)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(workspace_from(&row)?)
    }

    /// Creates the workspace `id` on `plan`, or changes the plan of an existing one (the
    /// admin API's `PUT /workspaces/{ws}`, the CLI's `workspace set-plan` and
    /// `--workspace W:ROLE:PLAN`). A changed plan ends its members' sessions, as
    /// [`Store::set_plan`] does.
    pub async fn put_workspace(
        &self,
        id: &str,
        plan: &str,
        now: i64,
    ) -> Result<PlanChange, StoreError> {
        let mut tx = self.write_tx().await?;
        let change = write_plan(&mut tx, id, plan, now, true).await?;
        tx.commit().await?;
        Ok(change)
    }
    /// Looks a workspace up by id.
    pub async fn workspace(&self, id: &str) -> Result<Option<Workspace>, StoreError> {
        let row = sqlx::query("SELECT id, plan, created_at FROM workspaces WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(workspace_from).transpose()?)
    }

    /// Changes an existing workspace's plan. Tokens carry the plan as a claim and the
    /// store does not rank plans, so any change ends the sessions of every member (an
    /// upgrade costs them a fresh login; a downgrade must not leave `pro` tokens alive).
    /// `Err(NotFound)` if the workspace is unknown.
    pub async fn set_plan(&self, id: &str, plan: &str, now: i64) -> Result<PlanChange, StoreError> {
        let mut tx = self.write_tx().await?;
        let change = write_plan(&mut tx, id, plan, now, false).await?;
        tx.commit().await?;
        Ok(change)
    }

    /// Adds the user to the workspace, or changes their role there. The store does not
    /// rank roles, so any change of an existing role is treated as a possible reduction of
    /// rights and ends the user's sessions; adding a new membership does not.
    /// Returns `true` when sessions were ended. `Err(NotFound)` if user or workspace is unknown.
    pub async fn set_membership(
        &self,
        user_id: &str,
        workspace_id: &str,
        role: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let changed = sqlx::query(
            "UPDATE memberships SET role = $1 WHERE user_id = $2 AND workspace_id = $3 AND role <> $1",
        )
        .bind(role)
        .bind(user_id)
        .bind(workspace_id)
        .execute(&mut *tx)
        .await?;
        let ended = changed.rows_affected() > 0;
        if ended {
            end_sessions(&mut tx, user_id, now).await?;
        } else {
            sqlx::query(
                "INSERT INTO memberships (user_id, workspace_id, role) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id, workspace_id) DO NOTHING",
            )
            .bind(user_id)
            .bind(workspace_id)
            .bind(role)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(ended)
    }

    /// Removes the user from the workspace and ends all their sessions, since tokens may
    /// still name the workspace. `Err(NotFound)` if there was no such membership.
    pub async fn remove_membership(
        &self,
        user_id: &str,
        workspace_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM memberships WHERE user_id = $1 AND workspace_id = $2")
            .bind(user_id)
            .bind(workspace_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        end_sessions(&mut tx, user_id, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The user's workspaces with their role and the workspace plan, for minting tokens.
    pub async fn memberships(&self, user_id: &str) -> Result<Vec<Membership>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.workspace_id, m.role, w.plan FROM memberships m \
             JOIN workspaces w ON w.id = m.workspace_id \
             WHERE m.user_id = $1 ORDER BY m.workspace_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(membership_from(row)?);
        }
        Ok(out)
    }

    /// Every membership of every user, as (user id, membership), for the admin listing:
    /// one query instead of one per user.
    pub async fn all_memberships(&self) -> Result<Vec<(String, Membership)>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.user_id, m.workspace_id, m.role, w.plan FROM memberships m \
             JOIN workspaces w ON w.id = m.workspace_id ORDER BY m.user_id, m.workspace_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push((row.try_get("user_id")?, membership_from(row)?));
        }
        Ok(out)
    }
}

fn membership_from(row: &sqlx::any::AnyRow) -> Result<Membership, sqlx::Error> {
    Ok(Membership {
        workspace_id: row.try_get("workspace_id")?,
        role: row.try_get("role")?,
        plan: row.try_get("plan")?,
    })
}

/// What writing a workspace's plan did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanChange {
    /// The workspace did not exist and was created.
    pub created: bool,
    /// Members whose sessions were ended, each with their new `not_before`.
    pub ended: Vec<(String, i64)>,
}

/// Sets the plan of workspace `id` inside the caller's write transaction, creating the
/// workspace when `create` allows it; a changed plan ends every member's sessions.
async fn write_plan(
    conn: &mut AnyConnection,
    id: &str,
    plan: &str,
    now: i64,
    create: bool,
) -> Result<PlanChange, StoreError> {
    let current = sqlx::query("SELECT plan FROM workspaces WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let current: Option<String> = current.map(|row| row.try_get("plan")).transpose()?;
    match current {
        None if !create => Err(StoreError::NotFound),
        None => {
            sqlx::query("INSERT INTO workspaces (id, plan, created_at) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(plan)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            Ok(PlanChange {
                created: true,
                ended: Vec::new(),
            })
        }
        Some(current) if current == plan => Ok(PlanChange::default()),
        Some(_) => {
            sqlx::query("UPDATE workspaces SET plan = $1 WHERE id = $2")
                .bind(plan)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            let members = sqlx::query("SELECT user_id FROM memberships WHERE workspace_id = $1")
                .bind(id)
                .fetch_all(&mut *conn)
                .await?;
            let mut ended = Vec::with_capacity(members.len());
            for row in &members {
                let user: String = row.try_get("user_id")?;
                let not_before = end_sessions(conn, &user, now).await?;
                ended.push((user, not_before));
            }
            Ok(PlanChange {
                created: false,
                ended,
            })
        }
    }
}

/// Moves the user's `not_before` to `now` (never backwards, so a replica with a slow clock
/// cannot un-revoke tokens), revokes their live families and records the event. Returns
/// the resulting `not_before`. Must run inside the caller's write transaction.
pub(super) async fn end_sessions(
    conn: &mut AnyConnection,
    user_id: &str,
    now: i64,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "UPDATE users SET not_before = CASE WHEN not_before < $1 THEN $1 ELSE not_before END \
         WHERE id = $2 RETURNING not_before",
    )
    .bind(now)
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Err(StoreError::NotFound);
    };
    let not_before: i64 = row.try_get("not_before")?;
    let revoked = sqlx::query(
        "UPDATE families SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL RETURNING id",
    )
    .bind(now)
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?;
    // One event per session as well as the watermark: `not_before` has one-second
    // granularity, so a token issued earlier in the same second as this change would
    // slip past it, while its `sid` names a family revoked here.
    for row in &revoked {
        let family_id: String = row.try_get("id")?;
        record(conn, EventKind::Family, &family_id, now, None).await?;
    }
    record(conn, EventKind::User, user_id, not_before, None).await?;
    Ok(not_before)
}
