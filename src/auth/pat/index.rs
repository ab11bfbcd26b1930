//! The in-memory index of live personal access tokens, consulted on every request that
//! presents one: no I/O and no lock on that path (an `ArcSwap` of an immutable table,
//! rebuilt on each change). Each entry holds the identity the token acts as, computed
//! from its owner's *current* role, memberships and disabled flag, so a downgrade or a
//! disable rebuilds the entry and limits or stops the token on the next request.
//!
//! The table follows the store through the revocation feed (`pat` events for tokens,
//! `user` and `account` events for owners), like the revocation set, so every replica
//! sees a change within one poll.

use super::{parse_scopes, Grant};
use crate::auth::store::{Membership, StoredPat, User};
use crate::authn::Identity;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use subtle::ConstantTimeEq;

/// Why a well-framed token was refused; the metric's `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Wrong length, characters or checksum: never issued by anyone.
    Malformed,
    /// Well-formed, but no live token has that hash (revoked, or never issued here).
    Unknown,
    Expired,
    /// The owner is disabled, gone, or no longer a member of the token's workspace.
    OwnerInactive,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::Unknown => "unknown",
            Refusal::Expired => "expired",
            Refusal::OwnerInactive => "owner_inactive",
        }
    }
}

/// What the proxy reads: tokens by the first 8 bytes of their hash.
#[derive(Default)]
struct Table {
    by_key: HashMap<u64, Vec<Arc<Entry>>>,
}

struct Entry {
    digest: [u8; 32],
    expires_at: u64,
    /// `None` while the owner may not use it (see [`Refusal::OwnerInactive`]).
    identity: Option<Arc<Identity>>,
    last_used: Arc<AtomicU64>,
}

/// A live token as the writer side keeps it.
struct Token {
    id: String,
    user_id: String,
    digest: [u8; 32],
    workspace: Option<String>,
    created_at: u64,
    expires_at: u64,
    grant: Arc<Grant>,
    /// Set by the proxy on use; survives rebuilds.
    last_used: Arc<AtomicU64>,
    /// The last value written to the store.
    flushed: u64,
}

/// What the index needs to know about a token's owner.
#[derive(Debug, Clone)]
pub struct Owner {
    pub role: String,
    pub disabled: bool,
    pub memberships: Vec<Membership>,
}

impl Owner {
    pub fn new(user: &User, memberships: Vec<Membership>) -> Owner {
        Owner {
            role: user.role.clone(),
            disabled: user.disabled,
            memberships,
        }
    }
}

#[derive(Default)]
struct State {
    tokens: HashMap<String, Token>,
    /// Owners of the tokens above; `None` for an owner the store no longer has.
    owners: HashMap<String, Option<Owner>>,
}

/// Live personal access tokens. Share behind the auth `Service`.
#[derive(Default)]
pub struct Index {
    table: ArcSwap<Table>,
    state: Mutex<State>,
}

impl Index {
    /// The identity a presented token acts as at `now`, or why it is refused.
    /// `token` has already been seen to start with the prefix.
    pub fn verify(&self, token: &str, now: u64) -> Result<Arc<Identity>, Refusal> {
        if !super::well_formed(token) {
            return Err(Refusal::Malformed);
        }
        let digest = super::digest(token);
        let table = self.table.load();
        let entry = table
            .by_key
            .get(&key(&digest))
            .and_then(|entries| entries.iter().find(|e| bool::from(e.digest.ct_eq(&digest))))
            .ok_or(Refusal::Unknown)?;
        if entry.expires_at <= now {
            return Err(Refusal::Expired);
        }
        let identity = entry.identity.clone().ok_or(Refusal::OwnerInactive)?;
        // Written only when it changes, so a busy token's cache line is not bounced
        // between cores on every request.
        if entry.last_used.load(Ordering::Relaxed) != now {
            entry.last_used.store(now, Ordering::Relaxed);
        }
        Ok(identity)
    }

    /// Replaces everything with `rows` (the live tokens) and their owners (`users`,
    /// `memberships` by user id): the start-up load.
    pub fn load(&self, rows: Vec<StoredPat>, owners: HashMap<String, Option<Owner>>, now: u64) {
        let mut state = self.lock();
        *state = State::default();
        for row in rows {
            insert(&mut state, row, now);
        }
        state.owners = owners;
        let users: Vec<String> = state.tokens.values().map(|t| t.user_id.clone()).collect();
        state.owners.retain(|user, _| users.contains(user));
        self.publish(&state);
    }

    /// A token row re-read after a `pat` event: added if live, dropped otherwise.
    /// Returns the owner id when the index does not know the owner yet.
    pub fn put(&self, row: StoredPat, now: u64) -> Option<String> {
        let mut state = self.lock();
        let user = row.user_id.clone();
        insert(&mut state, row, now);
        let unknown_owner =
            state.tokens.values().any(|t| t.user_id == user) && !state.owners.contains_key(&user);
        self.publish(&state);
        unknown_owner.then_some(user)
    }

    /// Drops a token (revoked, or gone from the store).
    pub fn remove(&self, id: &str) {
        let mut state = self.lock();
        if state.tokens.remove(id).is_some() {
            self.publish(&state);
        }
    }

    /// The users among `users` who own tokens here: whose state must be re-read.
    pub fn owners_among<'u>(&self, users: impl Iterator<Item = &'u str>) -> Vec<String> {
        let state = self.lock();
        let mut found: Vec<String> = users
            .filter(|u| state.tokens.values().any(|t| t.user_id == *u))
            .map(str::to_owned)
            .collect();
        found.sort();
        found.dedup();
        found
    }

    /// An owner's current state, re-read from the store (`None`: the user is gone).
    pub fn set_owner(&self, user: &str, owner: Option<Owner>) {
        let mut state = self.lock();
        state.owners.insert(user.to_owned(), owner);
        self.publish(&state);
    }

    /// Drops expired tokens and owners left without any. Returns how many tokens went.
    pub fn sweep(&self, now: u64) -> usize {
        let mut state = self.lock();
        let before = state.tokens.len();
        state.tokens.retain(|_, t| t.expires_at > now);
        let removed = before - state.tokens.len();
        if removed > 0 {
            let users: Vec<String> = state.tokens.values().map(|t| t.user_id.clone()).collect();
            state.owners.retain(|user, _| users.contains(user));
            self.publish(&state);
        }
        removed
    }

    /// Tokens used since the last call, with their latest use: the batch for the store.
    pub fn take_used(&self) -> Vec<(String, i64)> {
        let mut state = self.lock();
        let mut used = Vec::new();
        for token in state.tokens.values_mut() {
            let at = token.last_used.load(Ordering::Relaxed);
            if at > token.flushed {
                token.flushed = at;
                used.push((token.id.clone(), i64::try_from(at).unwrap_or(i64::MAX)));
            }
        }
        used
    }

    /// Puts uses that could not be written back in line for the next batch.
    pub fn untake(&self, used: &[(String, i64)]) {
        let mut state = self.lock();
        for (id, _) in used {
            if let Some(token) = state.tokens.get_mut(id) {
                token.flushed = 0;
            }
        }
    }

    /// How many live tokens the index holds.
    pub fn len(&self) -> usize {
        self.lock().tokens.len()
    }

    /// True when no token is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a state that is still consistent
        // (every change is a single insert or remove), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Builds the proxy's table from the writer side and swaps it in.
    fn publish(&self, state: &State) {
        let mut table = Table::default();
        for token in state.tokens.values() {
            let owner = state.owners.get(&token.user_id).and_then(Option::as_ref);
            let entry = Arc::new(Entry {
                digest: token.digest,
                expires_at: token.expires_at,
                identity: owner.and_then(|o| identity(token, o)),
                last_used: Arc::clone(&token.last_used),
            });
            table
                .by_key
                .entry(key(&token.digest))
                .or_default()
                .push(entry);
        }
        self.table.store(Arc::new(table));
    }
}

/// Adds or replaces the token of `row`, or drops it when revoked, expired or unreadable.
fn insert(state: &mut State, row: StoredPat, now: u64) {
    let live = row.revoked_at.is_none() && unsigned(row.expires_at) > now;
    let token = live.then(|| token_from(&row)).flatten();
    let Some(mut token) = token else {
        state.tokens.remove(&row.id);
        return;
    };
    if let Some(old) = state.tokens.get(&row.id) {
        token.last_used = Arc::clone(&old.last_used);
        token.flushed = old.flushed;
    }
    state.tokens.insert(row.id, token);
}

fn token_from(row: &StoredPat) -> Option<Token> {
    let digest = decode_hex32(&row.token_hash)?;
    let scopes = serde_json::from_str(&row.scopes)
        .ok()
        .and_then(|v| parse_scopes(&v).ok());
    let Some(scopes) = scopes else {
        log::error!(
            "personal access token {}: stored scopes unreadable; refused",
            row.id
        );
        return None;
    };
    let last = row.last_used_at.map_or(0, unsigned);
    Some(Token {
        id: row.id.clone(),
        user_id: row.user_id.clone(),
        digest,
        workspace: row.workspace_id.clone(),
        created_at: unsigned(row.created_at),
        expires_at: unsigned(row.expires_at),
        grant: Arc::new(Grant::new(row.id.clone(), scopes)),
        last_used: Arc::new(AtomicU64::new(last)),
        flushed: last,
    })
}

/// The identity a token acts as under its owner's current state, if it may act at all:
/// the owner's global role, or their role and plan in the token's workspace.
fn identity(token: &Token, owner: &Owner) -> Option<Arc<Identity>> {
    if owner.disabled {
        return None;
    }
    let (role, plan) = match &token.workspace {
        None => (owner.role.clone(), None),
        Some(ws) => {
            let m = owner.memberships.iter().find(|m| m.workspace_id == *ws)?;
            (m.role.clone(), Some(m.plan.clone()))
        }
    };
    Some(Arc::new(Identity {
        sub: token.user_id.clone(),
        role: Some(role),
        more_roles: Vec::new(),
        workspace: token.workspace.clone(),
        plan,
        jti: token.id.clone(),
        sid: None,
        iat: token.created_at,
        exp: token.expires_at,
        external: None,
        pat: Some(Arc::clone(&token.grant)),
    }))
}

fn key(digest: &[u8; 32]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

fn unsigned(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::tokens::hex;

    const NOW: u64 = 1_800_000_000;

    fn row(id: &str, user: &str, token: &str, workspace: Option<&str>) -> StoredPat {
        StoredPat {
            id: id.into(),
            user_id: user.into(),
            name: "ci".into(),
            token_hash: hex(&crate::auth::pat::digest(token)),
            display_prefix: crate::auth::pat::display_prefix(token).into(),
            scopes: r#"[{"path":"/api/**","methods":["GET"]}]"#.into(),
            workspace_id: workspace.map(Into::into),
            created_at: 1,
            expires_at: i64::try_from(NOW + 100).unwrap(),
            last_used_at: None,
            revoked_at: None,
        }
    }

    fn owner(role: &str, disabled: bool) -> Option<Owner> {
        Some(Owner {
            role: role.into(),
            disabled,
            memberships: vec![Membership {
                workspace_id: "acme".into(),
                role: "viewer".into(),
                plan: "pro".into(),
            }],
        })
    }

    #[test]
    fn a_live_token_acts_as_its_owner_with_the_owners_current_role() {
        let index = Index::default();
        let token = crate::auth::pat::generate();
        index.load(
            vec![row("t1", "u1", &token, None)],
            HashMap::from([("u1".to_owned(), owner("admin", false))]),
            NOW,
        );
        let id = index.verify(&token, NOW).unwrap();
        assert_eq!((id.sub.as_str(), id.role.as_deref()), ("u1", Some("admin")));
        assert_eq!(id.pat.as_ref().map(|g| g.id.as_str()), Some("t1"));
        index.set_owner("u1", owner("viewer", false));
        assert_eq!(
            index.verify(&token, NOW).unwrap().role.as_deref(),
            Some("viewer")
        );
        index.set_owner("u1", owner("viewer", true));
        assert_eq!(index.verify(&token, NOW), Err(Refusal::OwnerInactive));
        index.set_owner("u1", None);
        assert_eq!(index.verify(&token, NOW), Err(Refusal::OwnerInactive));
    }

    #[test]
    fn unknown_expired_revoked_and_malformed_tokens_are_refused() {
        let index = Index::default();
        let token = crate::auth::pat::generate();
        index.load(
            vec![row("t1", "u1", &token, None)],
            HashMap::from([("u1".to_owned(), owner("viewer", false))]),
            NOW,
        );
        assert_eq!(
            index.verify(&crate::auth::pat::generate(), NOW),
            Err(Refusal::Unknown)
        );
        assert_eq!(index.verify("pcl_pat_short", NOW), Err(Refusal::Malformed));
        assert_eq!(index.verify(&token, NOW + 100), Err(Refusal::Expired));
        let mut revoked = row("t1", "u1", &token, None);
        revoked.revoked_at = Some(5);
        index.put(revoked, NOW);
        assert_eq!(index.verify(&token, NOW), Err(Refusal::Unknown));
        assert!(index.is_empty());
    }

    #[test]
    fn a_workspace_token_takes_the_membership_role_and_dies_with_it() {
        let index = Index::default();
        let token = crate::auth::pat::generate();
        assert_eq!(
            index.put(row("t1", "u1", &token, Some("acme")), NOW),
            Some("u1".into())
        );
        index.set_owner("u1", owner("admin", false));
        let id = index.verify(&token, NOW).unwrap();
        assert_eq!(id.role.as_deref(), Some("viewer"));
        assert_eq!(id.plan.as_deref(), Some("pro"));
        index.set_owner(
            "u1",
            Some(Owner {
                role: "admin".into(),
                disabled: false,
                memberships: vec![],
            }),
        );
        assert_eq!(index.verify(&token, NOW), Err(Refusal::OwnerInactive));
    }

    #[test]
    fn uses_are_batched_once_and_survive_rebuilds() {
        let index = Index::default();
        let token = crate::auth::pat::generate();
        index.put(row("t1", "u1", &token, None), NOW);
        index.set_owner("u1", owner("viewer", false));
        assert!(index.take_used().is_empty());
        index.verify(&token, NOW).unwrap();
        index.set_owner("u1", owner("admin", false));
        assert_eq!(
            index.take_used(),
            vec![("t1".to_owned(), i64::try_from(NOW).unwrap())]
        );
        assert!(index.take_used().is_empty());
        assert_eq!(index.sweep(NOW + 100), 1);
    }
}
