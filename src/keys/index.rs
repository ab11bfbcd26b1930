//! The list of signing keys (as the store holds it) and the schedule it implies.
//! Everything here is a pure function of the index and `now`.
//!
//! Keys are kept in the order they became (or will become) the signing key. Key
//! `i` signs from its `active_from` until key `i + 1`'s, and keeps verifying for
//! `retain` seconds more (the access token lifetime plus leeway), by which time
//! every token it signed has expired. A key whose `active_from` lies ahead is
//! published (JWKS) but does not sign yet.
//!
//! A key made while others run never signs at once: replicas poll the store every
//! second, so it signs from at least [`SETTLE`] after it was made, when every replica
//! has loaded it and accepts its tokens. Only the very first key signs at once.

/// How long after it is made a new key starts signing (unless it is the first):
/// two of the replicas' one-second polls, plus the rounding of whole seconds.
pub const SETTLE: u64 = 3;

/// The key set's schedule, in signing order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    pub keys: Vec<Entry>,
}

/// One key and its schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// The one JOSE algorithm this key is used with.
    pub alg: String,
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
    /// exists yet (it signs at once), the signing key has the wrong algorithm (the
    /// config changed; it signs once every replica has it), or a scheduled rotation
    /// is due (see [`Index::scheduled`]).
    pub fn due(&self, now: u64, policy: &Policy<'_>) -> Option<u64> {
        let Some(last) = self.keys.last() else {
            return Some(now);
        };
        if last.active_from > now {
            // A key is already waiting for its turn.
            return None;
        }
        if last.alg != policy.alg {
            return Some(now + SETTLE);
        }
        self.scheduled(now, policy)
    }

    /// When the next scheduled key should start signing, if it is due within
    /// `lead`: it is published `lead` ahead, so caches of the JWKS know it before it
    /// signs. Running gateways act on this alone, never on an algorithm change, so
    /// replicas mid-way through a config change do not undo each other's keys.
    pub fn scheduled(&self, now: u64, policy: &Policy<'_>) -> Option<u64> {
        let last = self.keys.last()?;
        if last.active_from > now {
            return None;
        }
        let period = policy.rotation?;
        let lead = policy.lead.max(SETTLE);
        let next = last.active_from.saturating_add(period);
        (now.saturating_add(lead) >= next).then(|| next.max(now + lead))
    }

    /// Drops the keys that no longer verify at `now` and returns them (their
    /// rows can go). Only ever a prefix: keys retire in order.
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
        assert_eq!(index.due(1000, &POLICY), Some(1000 + SETTLE));
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
    fn a_scheduled_key_signs_no_sooner_than_every_replica_has_it() {
        let index = Index {
            keys: vec![entry("a", "EdDSA", 0)],
        };
        let policy = Policy {
            rotation: Some(10),
            lead: 1,
            ..POLICY
        };
        assert_eq!(index.scheduled(6, &policy), None);
        assert_eq!(index.scheduled(7, &policy), Some(10));
        assert_eq!(index.scheduled(20, &policy), Some(20 + SETTLE));
        // Running gateways leave an algorithm change to the next start.
        let other = Policy {
            alg: "ES256",
            ..policy
        };
        assert_eq!(index.scheduled(3, &other), None);
        assert_eq!(index.due(3, &other), Some(3 + SETTLE));
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
