//! Which path of the git-annex branch holds which log.
//!
//! Top-level files hold repository-wide logs (`uuid.log`, `trust.log`, ...). Per-key logs
//! live at `hashdirlower(K)/keyFile(K)` plus a suffix: `.log` (location), `.log.web`,
//! `.log.rmt`, `.log.cnk`, `.log.met`, `.log.rmet`, `.log.cid`, `.log.ek`. A `.log` file is
//! a location log only at the depth of the branch hash (3 path components, or 2 in a
//! repository with the one-level branch hash difference).
//!
//! git-annex's journal keeps uncommitted branch files flat in one directory, naming each by
//! its branch path with `_` written as `__` and `/` as `_`.

use crate::types::hashdir::{hash_dir_lower, hash_dir_lower_one};
use crate::types::key::{file_key, key_file};
use crate::types::Key;

pub const UUID_LOG: &str = "uuid.log";
pub const REMOTE_LOG: &str = "remote.log";
pub const TRUST_LOG: &str = "trust.log";
pub const GROUP_LOG: &str = "group.log";
pub const PREFERRED_CONTENT_LOG: &str = "preferred-content.log";
pub const REQUIRED_CONTENT_LOG: &str = "required-content.log";
pub const SCHEDULE_LOG: &str = "schedule.log";
pub const ACTIVITY_LOG: &str = "activity.log";
pub const DIFFERENCE_LOG: &str = "difference.log";
pub const MULTICAST_LOG: &str = "multicast.log";
pub const EXPORT_LOG: &str = "export.log";
pub const PROXY_LOG: &str = "proxy.log";
pub const CLUSTER_LOG: &str = "cluster.log";
pub const MAXSIZE_LOG: &str = "maxsize.log";
pub const NUMCOPIES_LOG: &str = "numcopies.log";
pub const MINCOPIES_LOG: &str = "mincopies.log";
pub const CONFIG_LOG: &str = "config.log";
pub const GROUP_PREFERRED_CONTENT_LOG: &str = "group-preferred-content.log";
pub const TRANSITIONS_LOG: &str = "transitions.log";

/// Top-level logs in the old UUID-based layout.
pub const OLD_UUID_LOGS: &[&str] = &[
    UUID_LOG,
    REMOTE_LOG,
    TRUST_LOG,
    GROUP_LOG,
    PREFERRED_CONTENT_LOG,
    REQUIRED_CONTENT_LOG,
    SCHEDULE_LOG,
    ACTIVITY_LOG,
    DIFFERENCE_LOG,
    MULTICAST_LOG,
];
/// Top-level logs in the new UUID-based layout.
pub const NEW_UUID_LOGS: &[&str] = &[EXPORT_LOG, PROXY_LOG, CLUSTER_LOG, MAXSIZE_LOG];

/// The kinds of per-key logs, by file suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyLog {
    Location,
    Url,
    RemoteState,
    Chunk,
    MetaData,
    RemoteMetaData,
    ContentId,
    EquivalentKeys,
}

impl KeyLog {
    pub const ALL: [KeyLog; 8] = [
        KeyLog::Location,
        KeyLog::Url,
        KeyLog::RemoteState,
        KeyLog::Chunk,
        KeyLog::MetaData,
        KeyLog::RemoteMetaData,
        KeyLog::ContentId,
        KeyLog::EquivalentKeys,
    ];

    pub fn suffix(self) -> &'static str {
        match self {
            KeyLog::Location => ".log",
            KeyLog::Url => ".log.web",
            KeyLog::RemoteState => ".log.rmt",
            KeyLog::Chunk => ".log.cnk",
            KeyLog::MetaData => ".log.met",
            KeyLog::RemoteMetaData => ".log.rmet",
            KeyLog::ContentId => ".log.cid",
            KeyLog::EquivalentKeys => ".log.ek",
        }
    }
}

/// How keys are spread over directories in the branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BranchHash {
    /// `aaa/bbb/` (the default).
    #[default]
    TwoLevel,
    /// `aaa/` (the OneLevelBranchHash difference).
    OneLevel,
}

impl BranchHash {
    /// Number of path components of a per-key log.
    pub fn depth(self) -> usize {
        match self {
            BranchHash::TwoLevel => 3,
            BranchHash::OneLevel => 2,
        }
    }
    /// The key's directory, ending in `/`.
    pub fn dir(self, key: &Key) -> String {
        match self {
            BranchHash::TwoLevel => hash_dir_lower(key),
            BranchHash::OneLevel => hash_dir_lower_one(key),
        }
    }
}

/// Branch path of one of a key's logs.
pub fn key_log_path(key: &Key, kind: KeyLog, hash: BranchHash) -> Vec<u8> {
    let mut p = hash.dir(key).into_bytes();
    p.extend_from_slice(&key_file(key));
    p.extend_from_slice(kind.suffix().as_bytes());
    p
}

/// Branch path of a key's location log.
pub fn location_log_path(key: &Key, hash: BranchHash) -> Vec<u8> {
    key_log_path(key, KeyLog::Location, hash)
}

/// The key whose location log is at `path`, if it is one.
pub fn location_log_key(path: &[u8], hash: BranchHash) -> Option<Key> {
    if path.split(|&b| b == b'/').count() != hash.depth() {
        return None;
    }
    key_of_log_file(path, KeyLog::Location)
}

/// The key of a per-key log file of the given kind (by its file name's suffix).
pub fn key_of_log_file(path: &[u8], kind: KeyLog) -> Option<Key> {
    let name = path.rsplit(|&b| b == b'/').next()?;
    let base = name.strip_suffix(kind.suffix().as_bytes())?;
    file_key(base).ok()
}

/// What a branch path holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFile {
    /// A top-level log in the old UUID-based layout.
    OldUuidBased(&'static str),
    /// A top-level log in the new UUID-based layout.
    NewUuidBased(&'static str),
    /// numcopies.log, mincopies.log, config.log, group-preferred-content.log.
    OtherTopLevel(&'static str),
    /// A per-key log.
    Key(KeyLog, Key),
    /// Anything else (transitions.log, old `remote/web/` url logs, export.tree ...).
    Other,
}

/// Classify a branch path.
pub fn classify(path: &[u8], hash: BranchHash) -> LogFile {
    let top = |list: &[&'static str]| list.iter().copied().find(|n| n.as_bytes() == path);
    if let Some(n) = top(OLD_UUID_LOGS) {
        return LogFile::OldUuidBased(n);
    }
    if let Some(n) = top(NEW_UUID_LOGS) {
        return LogFile::NewUuidBased(n);
    }
    if let Some(n) = top(&[
        NUMCOPIES_LOG,
        MINCOPIES_LOG,
        CONFIG_LOG,
        GROUP_PREFERRED_CONTENT_LOG,
    ]) {
        return LogFile::OtherTopLevel(n);
    }
    if let Some(k) = location_log_key(path, hash) {
        return LogFile::Key(KeyLog::Location, k);
    }
    for kind in KeyLog::ALL.iter().skip(1) {
        if path.ends_with(kind.suffix().as_bytes()) {
            return match key_of_log_file(path, *kind) {
                Some(k) => LogFile::Key(*kind, k),
                None => LogFile::Other,
            };
        }
    }
    LogFile::Other
}

/// Journal file name for a branch path: `_` -> `__`, `/` -> `_`.
pub fn journal_name(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + 4);
    for &b in path {
        match b {
            b'/' => out.push(b'_'),
            b'_' => out.extend_from_slice(b"__"),
            b => out.push(b),
        }
    }
    out
}

/// Branch path of a journal file name (reverse of [`journal_name`]).
pub fn journal_path(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        if name[i] == b'_' {
            if name.get(i + 1) == Some(&b'_') {
                out.push(b'_');
                i += 2;
            } else {
                out.push(b'/');
                i += 1;
            }
        } else {
            out.push(name[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const K: &str =
        "SHA256E-s11--b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9.txt";

    #[test]
    fn key_paths() {
        let k = Key::from_str(K).unwrap();
        assert_eq!(
            location_log_path(&k, BranchHash::TwoLevel),
            format!("d76/b9c/{K}.log").into_bytes()
        );
        assert_eq!(
            key_log_path(&k, KeyLog::Chunk, BranchHash::OneLevel),
            format!("d76/{K}.log.cnk").into_bytes()
        );
        let w = Key::from_str("WORM-s5-m1700000000--a&b%c:d").unwrap();
        let p = location_log_path(&w, BranchHash::TwoLevel);
        assert_eq!(p, b"47d/5e9/WORM-s5-m1700000000--a&ab&sc&cd.log".to_vec());
        assert_eq!(location_log_key(&p, BranchHash::TwoLevel), Some(w));
    }

    #[test]
    fn recognising_location_logs() {
        let k = Key::from_str(K).unwrap();
        let p = location_log_path(&k, BranchHash::TwoLevel);
        assert_eq!(location_log_key(&p, BranchHash::TwoLevel), Some(k.clone()));
        assert_eq!(location_log_key(&p, BranchHash::OneLevel), None);
        let p1 = location_log_path(&k, BranchHash::OneLevel);
        assert_eq!(location_log_key(&p1, BranchHash::OneLevel), Some(k.clone()));
        assert_eq!(location_log_key(b"uuid.log", BranchHash::TwoLevel), None);
        assert_eq!(
            location_log_key(
                format!("remote/web/d76/b9c/{K}.log").as_bytes(),
                BranchHash::TwoLevel
            ),
            None,
            "old url logs are deeper"
        );
        assert_eq!(
            location_log_key(
                format!("d76/b9c/{K}.log.web").as_bytes(),
                BranchHash::TwoLevel
            ),
            None
        );
        assert_eq!(
            classify(
                format!("d76/b9c/{K}.log.web").as_bytes(),
                BranchHash::TwoLevel
            ),
            LogFile::Key(KeyLog::Url, k.clone())
        );
        assert_eq!(
            classify(
                format!("d76/b9c/{K}.log.rmet").as_bytes(),
                BranchHash::TwoLevel
            ),
            LogFile::Key(KeyLog::RemoteMetaData, k)
        );
        assert_eq!(
            classify(b"trust.log", BranchHash::TwoLevel),
            LogFile::OldUuidBased(TRUST_LOG)
        );
        assert_eq!(
            classify(b"proxy.log", BranchHash::TwoLevel),
            LogFile::NewUuidBased(PROXY_LOG)
        );
        assert_eq!(
            classify(b"numcopies.log", BranchHash::TwoLevel),
            LogFile::OtherTopLevel(NUMCOPIES_LOG)
        );
        assert_eq!(
            classify(b"transitions.log", BranchHash::TwoLevel),
            LogFile::Other
        );
    }

    #[test]
    fn journal_names() {
        // The name git-annex used in a real journal.
        assert_eq!(
            journal_name(b"d91/b11/SHA256E-s6--5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03.txt.log"),
            b"d91_b11_SHA256E-s6--5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03.txt.log".to_vec()
        );
        assert_eq!(journal_name(b"a_b/c"), b"a__b_c".to_vec());
        assert_eq!(journal_path(b"a__b_c"), b"a_b/c".to_vec());
    }

    proptest! {
        #[test]
        fn journal_round_trip(parts in proptest::collection::vec("[a.][a_.]{0,3}", 1..4)) {
            // Branch paths never have a component starting with `_` (hash directories are
            // hex, key files start with a backend name); only those round-trip.
            let p = parts.join("/");
            prop_assert_eq!(journal_path(&journal_name(p.as_bytes())), p.as_bytes().to_vec());
        }
    }
}
