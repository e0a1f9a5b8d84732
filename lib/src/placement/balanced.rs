//! Balanced preferred content: which members of a group should hold a key.
//!
//! The picker hashes the key with HMAC-SHA256, keyed by the concatenation of the sorted
//! UUIDs of every member of the group, reads the digest as a big-endian integer `N`, and
//! picks the candidates at indexes `N mod m`, `N+1 mod m`, … of the sorted candidate list
//! (`m` candidates). The key of the HMAC covers the whole group even when candidates were
//! filtered out, so filtering changes `m` but not `N`.
//!
//! Candidates are the members with room for the key (`fullybalanced`), or the members with
//! the most free space in proportion to their maxsize (`fullysizebalanced`).

use crate::types::{Key, Uuid};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The picker of one group.
#[derive(Clone)]
pub struct Picker {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Picker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Picker")
    }
}

impl Picker {
    /// A picker for a group with these members (any order; they are sorted here).
    pub fn new<'a>(members: impl IntoIterator<Item = &'a Uuid>) -> Picker {
        let mut ms: Vec<&Uuid> = members.into_iter().collect();
        ms.sort();
        ms.dedup();
        let secret: Vec<u8> = ms.iter().flat_map(|u| u.as_str().bytes()).collect();
        Picker {
            mac: Hmac::<Sha256>::new_from_slice(&secret).expect("HMAC takes keys of any length"),
        }
    }

    /// HMAC-SHA256 of the key's serialisation.
    pub fn digest(&self, key: &Key) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(key.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The candidates picked for `key` when `n` are wanted. `candidates` may be in any
    /// order and contain duplicates. At most `min(n, m)` distinct picks are returned:
    /// beyond `m`, git-annex's list only repeats itself.
    pub fn pick<'a>(&self, candidates: &[&'a Uuid], key: &Key, n: i64) -> Vec<&'a Uuid> {
        let mut cands: Vec<&Uuid> = candidates.to_vec();
        cands.sort();
        cands.dedup();
        let m = cands.len();
        if m == 0 || n <= 0 {
            return Vec::new();
        }
        let r = mod_big_endian(&self.digest(key), m as u128) as usize;
        let count = (n as u128).min(m as u128) as usize;
        (0..count).map(|i| cands[(r + i) % m]).collect()
    }
}

/// A big-endian unsigned integer modulo `m` (`m` > 0).
pub fn mod_big_endian(bytes: &[u8], m: u128) -> u128 {
    bytes.iter().fold(0u128, |r, &b| ((r << 8) | b as u128) % m)
}

/// Whether a repository has room for a key: if it already has it, it must not be over its
/// maxsize; otherwise the key must fit. (A maxsize of 0 therefore never has room.)
pub fn repo_has_space(key_size: i128, in_repo: bool, repo_size: i128, max_size: i128) -> bool {
    if in_repo {
        repo_size <= max_size
    } else {
        repo_size + key_size <= max_size
    }
}

/// Inputs of the size-balanced candidate choice for one member.
#[derive(Debug, Clone, Copy)]
pub struct MemberSpace {
    pub max_size: Option<u64>,
    /// Unknown sizes count as 0 here.
    pub repo_size: Option<u64>,
    pub has_key: bool,
}

/// `fullysizebalanced` candidates: members with a positive maxsize and room for the key,
/// ordered by proportion of free space (counting the key as free if they hold it), most
/// free first, ties broken towards the larger UUID; the first `n` of them.
/// Returns the chosen members with their free proportions, in that order.
pub fn size_balanced_candidates<'a>(
    members: &[&'a Uuid],
    n: i64,
    key_size: i128,
    space: &dyn Fn(&Uuid) -> MemberSpace,
) -> Vec<(&'a Uuid, f64)> {
    let mut sorted: Vec<&Uuid> = members.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut free: Vec<(&Uuid, f64)> = sorted
        .into_iter()
        .filter_map(|u| {
            let s = space(u);
            let max = s.max_size? as i128;
            let size = s.repo_size.unwrap_or(0) as i128;
            if !repo_has_space(key_size, s.has_key, size, max) || max <= 0 {
                return None;
            }
            let free_bytes = max - size + if s.has_key { key_size } else { 0 };
            Some((u, free_bytes as f64 / max as f64))
        })
        .collect();
    // Stable ascending sort by free proportion, then reversed.
    free.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal));
    free.reverse();
    let take = if n <= 0 { 0 } else { n as u128 } as usize;
    free.truncate(take.min(free.len()));
    free
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Uuid {
        Uuid::parse(s).unwrap()
    }

    #[test]
    fn git_annex_test_vector() {
        // prop_balanced_stable in git-annex: members "1".."500", key WORM--test.
        let members: Vec<Uuid> = (1..=500).map(|i| u(&i.to_string())).collect();
        let refs: Vec<&Uuid> = members.iter().collect();
        let p = Picker::new(refs.iter().copied());
        let k = Key::from_str("WORM--test").unwrap();
        let one: Vec<&str> = p.pick(&refs, &k, 1).iter().map(|u| u.as_str()).collect();
        assert_eq!(one, ["332"]);
        let three: Vec<&str> = p.pick(&refs, &k, 3).iter().map(|u| u.as_str()).collect();
        assert_eq!(three, ["332", "333", "334"]);
    }

    #[test]
    fn worked_example_digest() {
        let b1 = u("ad24d0d7-b9ee-4b96-b029-746b1c075a51");
        let b2 = u("ed402f23-fb08-4f97-b0ab-67eeb4b3621a");
        let b3 = u("33ef313c-a4ce-4b3d-843a-bf86a7405cce");
        let p = Picker::new([&b1, &b2, &b3]);
        let k = Key::from_str(
            "SHA256E-s1000--c2e686823489ced2017f6059b8b239318b6364f6dcd835d0a519105a1eadd6e4.dat",
        )
        .unwrap();
        let d = p.digest(&k);
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "2e4fca76483ab1081f41b80627683d9dcc42ab15cc704606ee2e7a79990b8644"
        );
        assert_eq!(mod_big_endian(&d, 3), 1);
        assert_eq!(mod_big_endian(&d, 2), 0);
        assert_eq!(p.pick(&[&b1, &b2, &b3], &k, 1), vec![&b1]);
        assert_eq!(p.pick(&[&b2, &b3, &b1], &k, 2), vec![&b1, &b2]);
        assert_eq!(p.pick(&[&b1, &b3], &k, 1), vec![&b3]);
        assert!(p.pick(&[], &k, 1).is_empty());
        assert!(p.pick(&[&b1], &k, 0).is_empty());
        assert_eq!(p.pick(&[&b1, &b3], &k, 10).len(), 2);
    }

    #[test]
    fn size_balanced_order_and_ties() {
        // spec §7.6: b1 100000 max, 12000 used (holds f12); b2 5000/5000 (holds f5);
        // b3 50000 empty.
        let b1 = u("ad24d0d7-b9ee-4b96-b029-746b1c075a51");
        let b2 = u("ed402f23-fb08-4f97-b0ab-67eeb4b3621a");
        let b3 = u("33ef313c-a4ce-4b3d-843a-bf86a7405cce");
        let members = [&b1, &b2, &b3];
        let space = |holder: &'static str| {
            let (b1, b2, b3) = (b1.clone(), b2.clone(), b3.clone());
            move |x: &Uuid| {
                let has_key = x.as_str().starts_with(holder);
                if *x == b1 {
                    MemberSpace {
                        max_size: Some(100000),
                        repo_size: Some(12000),
                        has_key,
                    }
                } else if *x == b2 {
                    MemberSpace {
                        max_size: Some(5000),
                        repo_size: Some(5000),
                        has_key,
                    }
                } else {
                    assert_eq!(*x, b3);
                    MemberSpace {
                        max_size: Some(50000),
                        repo_size: None,
                        has_key,
                    }
                }
            }
        };
        // f12 (12000 bytes, in b1): b1 and b3 tie at 1.0; the larger UUID (b1) comes first.
        let c = size_balanced_candidates(&members, 1, 12000, &space("ad24"));
        assert_eq!(c, vec![(&b1, 1.0)]);
        // f5 (5000 bytes, in b2): b2 1.0, b3 1.0, b1 0.88 -> b2 first.
        let c = size_balanced_candidates(&members, 3, 5000, &space("ed40"));
        assert_eq!(
            c.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![&b2, &b3, &b1]
        );
        assert!((c[2].1 - 0.88).abs() < 1e-12);
        // A new key stored nowhere: b3 has the most free space.
        let c = size_balanced_candidates(&members, 1, 100, &space("none"));
        assert_eq!(c[0].0, &b3);
        // Without a maxsize a member is never a candidate.
        let c = size_balanced_candidates(&members, 3, 1, &|_| MemberSpace {
            max_size: None,
            repo_size: Some(0),
            has_key: false,
        });
        assert!(c.is_empty());
    }

    #[test]
    fn has_space_rules() {
        assert!(repo_has_space(10, false, 90, 100));
        assert!(!repo_has_space(11, false, 90, 100));
        assert!(repo_has_space(1000, true, 100, 100));
        assert!(!repo_has_space(1, true, 101, 100));
        // maxsize 0 never has room for new content.
        assert!(!repo_has_space(0, false, 1, 0));
        assert!(repo_has_space(0, false, 0, 0));
    }
}
