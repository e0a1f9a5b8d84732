//! Presence logs: `T SP STATUS SP INFO`, STATUS `1` (present), `0` (absent) or `X` (dead).
//!
//! Used for location logs (`KEY.log`, INFO = repository UUID), URL logs (`KEY.log.web`,
//! INFO = URL, with `:` in front for URLs claimed by other downloaders) and equivalent
//! keys (`KEY.log.ek`, INFO = a key). For each INFO the line with the greatest timestamp is
//! current; on equal timestamps the line earlier in the file wins, so after a union merge
//! (which sorts lines) `0` beats `1` beats `X`. [`PresenceLog::merge`] picks the same way:
//! on a tie, the bytewise smaller line.
//!
//! Writers record a change only when the current status differs ([`PresenceLog::record`])
//! and rewrite the file compacted, one line per INFO, in INFO order — what git-annex writes
//! for location logs.

use std::collections::{BTreeMap, BTreeSet};

use super::clock::Timestamp;
use super::lines::log_lines;
use super::uuidlogs::Clusters;
use crate::types::{Key, Uuid};

/// Status of an INFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Present,
    Absent,
    Dead,
}

impl Status {
    pub fn as_byte(self) -> u8 {
        match self {
            Status::Present => b'1',
            Status::Absent => b'0',
            Status::Dead => b'X',
        }
    }
    pub fn from_byte(b: u8) -> Option<Status> {
        match b {
            b'1' => Some(Status::Present),
            b'0' => Some(Status::Absent),
            b'X' => Some(Status::Dead),
            _ => None,
        }
    }
}

/// The current line of one INFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    pub ts: Timestamp,
    pub status: Status,
}

/// A parsed presence log, compacted: the current line per INFO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceLog {
    entries: BTreeMap<Vec<u8>, Presence>,
}

fn parse_line(line: &[u8]) -> Option<(Vec<u8>, Presence)> {
    let (ts, used) = Timestamp::parse_prefix(line)?;
    let rest = line[used..].strip_prefix(b" ")?;
    let status = Status::from_byte(*rest.first()?)?;
    let info = rest[1..].strip_prefix(b" ")?;
    Some((info.to_vec(), Presence { ts, status }))
}

fn line_bytes(info: &[u8], p: &Presence) -> Vec<u8> {
    let mut out = Vec::with_capacity(info.len() + 16);
    p.ts.format_into(&mut out);
    out.push(b' ');
    out.push(p.status.as_byte());
    out.push(b' ');
    out.extend_from_slice(info);
    out
}

impl PresenceLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse a file; unparsable lines are skipped.
    pub fn parse(content: &[u8]) -> PresenceLog {
        let mut entries: BTreeMap<Vec<u8>, Presence> = BTreeMap::new();
        for line in log_lines(content) {
            if let Some((info, p)) = parse_line(line) {
                // Earlier lines win ties: replace only when strictly newer.
                match entries.get(&info) {
                    Some(old) if old.ts >= p.ts => {}
                    _ => {
                        entries.insert(info, p);
                    }
                }
            }
        }
        PresenceLog { entries }
    }

    /// One line per INFO, in INFO order.
    pub fn format(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (info, p) in &self.entries {
            out.extend_from_slice(&line_bytes(info, p));
            out.push(b'\n');
        }
        out
    }

    pub fn get(&self, info: &[u8]) -> Option<&Presence> {
        self.entries.get(info)
    }

    pub fn status(&self, info: &[u8]) -> Option<Status> {
        self.entries.get(info).map(|p| p.status)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Presence)> {
        self.entries.iter().map(|(i, p)| (i.as_slice(), p))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// INFOs currently present.
    pub fn present(&self) -> impl Iterator<Item = &[u8]> {
        self.entries
            .iter()
            .filter(|(_, p)| p.status == Status::Present)
            .map(|(i, _)| i.as_slice())
    }

    /// Whether every INFO is dead (git-annex's test for a dead key; true for no lines).
    pub fn all_dead(&self) -> bool {
        self.entries.values().all(|p| p.status == Status::Dead)
    }

    /// Record `status` for `info`: returns false (no change) when it is already current;
    /// otherwise sets a line timed by the next-timestamp rule.
    pub fn record(&mut self, info: &[u8], status: Status, candidate: Timestamp) -> bool {
        let prev = self.entries.get(info);
        if prev.map(|p| p.status) == Some(status) {
            return false;
        }
        let ts = Timestamp::next(candidate, prev.map(|p| p.ts));
        self.entries.insert(info.to_vec(), Presence { ts, status });
        true
    }

    /// Insert a line of another version: it replaces the current one when newer, or as
    /// new with a bytewise smaller line.
    pub fn insert(&mut self, info: &[u8], p: Presence) {
        let wins = match self.entries.get(info) {
            None => true,
            Some(old) => {
                p.ts > old.ts || (p.ts == old.ts && line_bytes(info, &p) < line_bytes(info, old))
            }
        };
        if wins {
            self.entries.insert(info.to_vec(), p);
        }
    }

    /// Merge another version in (equals parsing the union merge of both files).
    pub fn merge(&mut self, other: &PresenceLog) {
        for (i, p) in &other.entries {
            self.insert(i, *p);
        }
    }
}

/// A location log: which repositories have a key's content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocationLog(pub PresenceLog);

impl LocationLog {
    pub fn parse(content: &[u8]) -> LocationLog {
        LocationLog(PresenceLog::parse(content))
    }
    pub fn format(&self) -> Vec<u8> {
        self.0.format()
    }
    /// Repositories that have the content, as logged (no cluster UUIDs).
    pub fn present(&self) -> Vec<Uuid> {
        self.0
            .present()
            .filter_map(|b| Uuid::parse_bytes(b).ok())
            .collect()
    }
    /// Repositories that have the content plus the clusters any of them is a live node of
    /// (git-annex adds those on reading; they do not count as copies).
    pub fn present_with_clusters(&self, clusters: &Clusters) -> Vec<Uuid> {
        let here = self.present();
        let mut out: BTreeSet<Uuid> = clusters.clusters_for(&here);
        out.extend(here);
        out.into_iter().collect()
    }
    pub fn status(&self, u: &Uuid) -> Option<Status> {
        self.0.status(u.as_str().as_bytes())
    }
    /// Record that `u` has or lacks the content. Cluster UUIDs are never recorded (as in
    /// git-annex); returns whether the log changed.
    pub fn record(&mut self, u: &Uuid, present: bool, candidate: Timestamp) -> bool {
        if u.is_cluster() {
            return false;
        }
        let st = if present {
            Status::Present
        } else {
            Status::Absent
        };
        self.0.record(u.as_str().as_bytes(), st, candidate)
    }
}

/// URLs recorded for a key (`KEY.log.web`).
pub fn current_urls(log: &PresenceLog) -> Vec<String> {
    log.present()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect()
}

/// Keys recorded as equivalent to a key (`KEY.log.ek`).
pub fn equivalent_keys(log: &PresenceLog) -> Vec<Key> {
    log.present().filter_map(|b| Key::parse(b).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::branch::log::clock::tests::arb_timestamp;
    use crate::branch::log::lines::union_merge_bytes;
    use proptest::prelude::*;

    fn u(s: &str) -> Uuid {
        Uuid::parse(s).unwrap()
    }

    const FIXTURE: &[u8] = b"1795644861s 1 350e264d-a98e-4449-affe-9cdb92de9916
1795644861s 1 72e8e007-25ba-4852-ad74-ad6e65919798
1795644860s 1 89bd1844-6182-492d-833c-51754289c616
1795644798s 1 b7681060-076a-4fc0-aab9-adfeb2bde4fd
1795644857s 0 b9330ac3-c381-4ace-9009-98621a4aeba7
";

    #[test]
    fn location_fixture() {
        let l = LocationLog::parse(FIXTURE);
        assert_eq!(l.present().len(), 4);
        assert_eq!(
            l.status(&u("b9330ac3-c381-4ace-9009-98621a4aeba7")),
            Some(Status::Absent)
        );
        // Compacted output of a compacted, sorted file is the file itself.
        assert_eq!(l.format(), FIXTURE.to_vec());
        // Cluster added when one of its live nodes is present.
        let cl = crate::branch::log::uuidlogs::ClusterLog::parse(
            b"1795644799s acb82efc-627c-8994-982b-f7149c37427b 350e264d-a98e-4449-affe-9cdb92de9916 72e8e007-25ba-4852-ad74-ad6e65919798 b9330ac3-c381-4ace-9009-98621a4aeba7\n",
        );
        let clusters = Clusters::new(&cl, &BTreeSet::new());
        let with = l.present_with_clusters(&clusters);
        assert!(with.contains(&u("acb82efc-627c-8994-982b-f7149c37427b")));
        assert_eq!(with.len(), 5);
    }

    #[test]
    fn url_fixture() {
        let l = PresenceLog::parse(
            b"1795644879s 1 :pylog:SHA256E-s11--b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9.txt\n",
        );
        assert_eq!(
            current_urls(&l),
            [":pylog:SHA256E-s11--b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9.txt"]
        );
        let ek = PresenceLog::parse(b"1s 1 SHA256-s1--ab\n2s 1 bogus\n");
        assert_eq!(equivalent_keys(&ek).len(), 1);
    }

    #[test]
    fn ties_go_to_the_earlier_line() {
        let l = PresenceLog::parse(b"5s 1 a\n5s 0 a\n");
        assert_eq!(l.status(b"a"), Some(Status::Present));
        let l = PresenceLog::parse(b"5s 0 a\n5s 1 a\n");
        assert_eq!(l.status(b"a"), Some(Status::Absent));
        // After a union merge (sorted), 0 beats 1 beats X.
        let m = union_merge_bytes(&[b"5s 1 a\n5s X b\n", b"5s 0 a\n5s 1 b\n"]);
        let l = PresenceLog::parse(&m);
        assert_eq!(l.status(b"a"), Some(Status::Absent));
        assert_eq!(l.status(b"b"), Some(Status::Present));
        let l = PresenceLog::parse(b"4s 1 a\n6s 0 a\nbad line\n5s 1 a\n");
        assert_eq!(l.status(b"a"), Some(Status::Absent));
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn record_skips_same_status_and_advances_clock() {
        let mut l = LocationLog::parse(b"100s 1 a\n");
        assert!(!l.record(&u("a"), true, Timestamp::from_secs(200)));
        assert!(l.record(&u("a"), false, Timestamp::from_secs(100)));
        assert!(l.record(&u("b"), true, Timestamp::from_secs(100)));
        assert_eq!(l.format(), b"101s 0 a\n100s 1 b\n".to_vec());
        assert!(!l.record(
            &u("acb82efc-627c-8994-982b-f7149c37427b"),
            true,
            Timestamp::from_secs(1)
        ));
        assert!(!l.0.all_dead());
        assert!(PresenceLog::parse(b"1s X a\n2s X b\n").all_dead());
    }

    fn arb_status() -> impl Strategy<Value = Status> {
        prop_oneof![
            Just(Status::Present),
            Just(Status::Absent),
            Just(Status::Dead)
        ]
    }
    fn arb_log() -> impl Strategy<Value = PresenceLog> {
        proptest::collection::vec(("[a-c]{1,2}", arb_timestamp(), arb_status()), 0..6).prop_map(
            |v| {
                let mut l = PresenceLog::new();
                for (i, ts, status) in v {
                    l.entries.insert(i.into_bytes(), Presence { ts, status });
                }
                l
            },
        )
    }

    proptest! {
        #[test]
        fn laws(a in arb_log(), b in arb_log(), c in arb_log()) {
            prop_assert_eq!(&PresenceLog::parse(&a.format()), &a);
            let m = |x: &PresenceLog, y: &PresenceLog| { let mut r = x.clone(); r.merge(y); r };
            prop_assert_eq!(m(&a, &b), m(&b, &a));
            prop_assert_eq!(m(&m(&a, &b), &c), m(&a, &m(&b, &c)));
            prop_assert_eq!(&m(&a, &a), &a);
            let u = union_merge_bytes(&[&a.format(), &b.format()]);
            prop_assert_eq!(PresenceLog::parse(&u), m(&a, &b));
            for (i, p) in m(&a, &b).iter() {
                for x in [&a, &b] {
                    if let Some(o) = x.get(i) { prop_assert!(o.ts <= p.ts); }
                }
            }
        }
    }
}
