//! `keys.json`, the list of signing keys in `auth.keys_dir`, and the schedule it
//! implies. Everything here is a pure function of the index and `now`.
//!
//! Keys are kept in the order they became (or will become) the signing key. Key
//! `i` signs from its `active_from` until key `i + 1`'s, and keeps verifying for
//! `retain` seconds more (the access token lifetime plus leeway), by which time
//! every token it signed has expired. A key whose `active_from` lies ahead is
//! published (JWKS) but does not sign yet.

use serde::{Deserialize, Serialize};

/// The index file, written whole (temp file + rename) on every change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    pub keys: Vec<Entry>,
}

/// One key file and its schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// The one JOSE algorithm this key is used with.
    pub alg: String,
    /// The PKCS#8 PEM file, relative to keys_dir.
    pub file: String,
    pub created_at: u64,
    /// When it becomes the signing key (unix seconds).
    pub active_from: u64,
}

/// What the configuration asks of the key set.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// The configured `auth.algorithm` (JOSE name).
    pub alg: &'a str,
    /// How long a retired key keeps verifying: access_ttl + leeway, in seconds.
    pub retain: u64,
    /// `auth.key_rotation` in seconds, if rotation is scheduled.
    pub rotation: Option<u64>,
    /// How long before it signs a scheduled key is published (the JWKS max-age).
    pub lead: u64,
}

impl Index {
    /// The index of the key that signs at `now`.
    pub fn signer_at(&self, now: u64) -> Option<usize> {
        self.keys.iter().rposition(|k| k.active_from <= now)
    }

    /// Until when (exclusive) key `i` verifies: forever while nothing replaced it.
    pub fn verify_until(&self, i: usize, retain: u64) -> u64 {
        match self.keys.get(i + 1) {
            Some(next) => next.active_from.saturating_add(retain),
            None => u64::MAX,
        }
    }

    /// When a new key should start signing, if the policy wants one now: none
    /// exists yet, the signing key has the wrong algorithm (the config changed),
    /// or the scheduled rotation is due within `lead`. A scheduled key is
    /// published `lead` ahead, so caches of the JWKS know it before it signs.
    pub fn due(&self, now: u64, policy: &Policy<'_>) -> Option<u64> {
        let Some(last) = self.keys.last() else {
            return Some(now);
        };
        if last.active_from > now {
            // A key is already waiting for its turn.
            return None;
        }
        if last.alg != policy.alg {
            return Some(now);
        }
        let period = policy.rotation?;
        let next = last.active_from.saturating_add(period);
        (now.saturating_add(policy.lead) >= next).then(|| next.max(now + policy.lead))
    }

    /// Drops the keys that no longer verify at `now` and returns them (their
    /// files can go). Only ever a prefix: keys retire in order.
    pub fn prune(&mut self, now: u64, retain: u64) -> Vec<Entry> {
        let expired = (0..self.keys.len())
            .take_while(|&i| self.verify_until(i, retain) <= now)
            .count();
        self.keys.drain(..expired).collect()
    }

    /// Appends a key that signs from `active_from`, keeping the order.
    pub fn push(&mut self, entry: Entry) {
        let at = self
            .keys
            .iter()
            .rposition(|k| k.active_from <= entry.active_from)
            .map_or(0, |i| i + 1);
        self.keys.insert(at, entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kid: &str, alg: &str, active_from: u64) -> Entry {
        Entry {
            kid: kid.into(),
            alg: alg.into(),
            file: format!("{kid}.pem"),
            created_at: active_from,
            active_from,
        }
    }

    const POLICY: Policy<'static> = Policy {
        alg: "EdDSA",
        retain: 905,
        rotation: None,
        lead: 300,
    };

    #[test]
    fn an_empty_index_wants_a_key_now() {
        assert_eq!(Index::default().due(1000, &POLICY), Some(1000));
    }

    #[test]
    fn a_changed_algorithm_wants_a_new_key_now() {
        let index = Index {
            keys: vec![entry("a", "ES256", 10)],
        };
        assert_eq!(index.due(1000, &POLICY), Some(1000));
        assert_eq!(
            index.due(
                1000,
                &Policy {
                    alg: "ES256",
                    ..POLICY
                }
            ),
            None
        );
    }

    #[test]
    fn a_scheduled_rotation_publishes_the_next_key_one_lead_ahead() {
        let index = Index {
            keys: vec![entry("a", "EdDSA", 0)],
        };
        let policy = Policy {
            rotation: Some(10_000),
            ..POLICY
        };
        assert_eq!(index.due(9_699, &policy), None);
        assert_eq!(index.due(9_700, &policy), Some(10_000));
        // Overdue (the gateway was down): still published a full lead ahead.
        assert_eq!(index.due(50_000, &policy), Some(50_300));
        let mut pending = index.clone();
        pending.push(entry("b", "EdDSA", 10_000));
        assert_eq!(pending.due(9_800, &policy), None);
    }

    #[test]
    fn the_newest_active_key_signs_and_its_predecessor_verifies_for_retain() {
        let mut index = Index::default();
        index.push(entry("a", "EdDSA", 0));
        index.push(entry("b", "EdDSA", 1000));
        assert_eq!(index.signer_at(999), Some(0));
        assert_eq!(index.signer_at(1000), Some(1));
        assert_eq!(index.verify_until(0, 905), 1905);
        assert_eq!(index.verify_until(1, 905), u64::MAX);
        assert!(index.clone().prune(1904, 905).is_empty());
        let mut pruned = index.clone();
        assert_eq!(pruned.prune(1905, 905), vec![entry("a", "EdDSA", 0)]);
        assert_eq!(pruned.keys, vec![entry("b", "EdDSA", 1000)]);
    }

    #[test]
    fn keys_rotated_in_the_same_second_sign_in_insertion_order() {
        let mut index = Index::default();
        index.push(entry("a", "EdDSA", 5));
        index.push(entry("b", "EdDSA", 5));
        assert_eq!(index.signer_at(5), Some(1));
        assert_eq!(index.verify_until(0, 10), 15);
    }
}
