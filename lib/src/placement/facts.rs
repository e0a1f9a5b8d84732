//! The facts placement decisions are made from.
//!
//! [`Facts`] holds what is global to a repository network (mostly from the git-annex
//! branch: `group.log`, `trust.log`, `preferred-content.log`, `required-content.log`,
//! `group-preferred-content.log`, `numcopies.log`, `mincopies.log`, `maxsize.log`,
//! `remote.log`'s `preferreddir`, `cluster.log`) plus a few local settings. It is filled
//! once and handed to [`super::Engine::new`].
//!
//! Per key, the engine asks a [`KeyFacts`] for what it needs, lazily: the location log is
//! read by almost every expression, metadata and URLs only by `metadata=` and `url=`. The
//! trait lets a caller answer from whatever it has loaded (or load on demand) without
//! copying global facts per key; [`KeyInfo`] is a plain owned implementation.

use crate::types::{Key, Uuid};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A repository's trust level, lowest first (`TRUST+` in `copies=` means "this or
/// higher").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum TrustLevel {
    Dead,
    Untrusted,
    #[default]
    SemiTrusted,
    Trusted,
}

impl TrustLevel {
    /// The names `copies=` and `git annex trust` use.
    pub fn from_name(s: &str) -> Option<TrustLevel> {
        match s {
            "trusted" => Some(TrustLevel::Trusted),
            "untrusted" => Some(TrustLevel::Untrusted),
            "semitrusted" => Some(TrustLevel::SemiTrusted),
            "dead" => Some(TrustLevel::Dead),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            TrustLevel::Trusted => "trusted",
            TrustLevel::Untrusted => "untrusted",
            TrustLevel::SemiTrusted => "semitrusted",
            TrustLevel::Dead => "dead",
        }
    }
    /// The `trust.log` value character (`1`, `0`, `X`, `?`); unknown characters are
    /// semitrusted and an empty value is trusted, as git-annex reads it.
    pub fn from_log_value(v: &str) -> TrustLevel {
        match v {
            "1" | "" => TrustLevel::Trusted,
            "0" => TrustLevel::Untrusted,
            "X" => TrustLevel::Dead,
            _ => TrustLevel::SemiTrusted,
        }
    }
}

/// Everything global a placement decision can depend on.
///
/// Fields map one to one onto the git-annex branch (see `spec/branch-logs.md`); a caller
/// fills them from the current branch state. Missing entries mean what they mean to
/// git-annex: no groups, semitrusted, no expression ("not configured"), no maxsize.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The repository this process runs as (for `present`, which then means "the object
    /// is really here" when the key facts can tell, see [`KeyFacts::present_here`]).
    pub local: Option<Uuid>,
    /// `group.log`: the groups of each repository.
    pub groups: HashMap<Uuid, BTreeSet<String>>,
    /// `trust.log` with local overrides applied; absent = semitrusted.
    pub trust: HashMap<Uuid, TrustLevel>,
    /// `preferred-content.log`: expression text per repository (empty = not configured).
    pub preferred: HashMap<Uuid, String>,
    /// `required-content.log`.
    pub required: HashMap<Uuid, String>,
    /// `group-preferred-content.log`: expression per group (used by `groupwanted`).
    pub group_preferred: BTreeMap<String, String>,
    /// `numcopies.log` (values below 1 count as 1); `None` = default 1.
    pub numcopies: Option<i64>,
    /// `mincopies.log`; `None` = default 1.
    pub mincopies: Option<i64>,
    /// `maxsize.log`, in bytes. A recorded 0 is kept as 0 (see the balanced terms).
    pub maxsize: HashMap<Uuid, u64>,
    /// Current size of each repository: the sum of the `-s` sizes of the keys its location
    /// log entries say it has. git-annex knows a size (0 if empty) for every repository in
    /// `uuid.log`; a repository missing here has an unknown size, and balancing then
    /// ignores its fullness.
    pub repo_sizes: HashMap<Uuid, u64>,
    /// `preferreddir=` from `remote.log` per repository (default `public`).
    pub preferreddir: HashMap<Uuid, String>,
    /// `cluster.log`: cluster UUID -> node UUIDs. A cluster "has" a key when a live node
    /// has it; cluster UUIDs never count as copies.
    pub clusters: HashMap<Uuid, BTreeSet<Uuid>>,
    /// `--rebalance`: balanced terms may move content that is already placed.
    pub rebalance: bool,
    /// `annex.fullybalancedthreshhold` / 100 (default 0.9): with `--rebalance`, a
    /// repository this full counts as too full.
    pub fullybalanced_threshold: f64,
}

impl Default for Facts {
    fn default() -> Self {
        Facts {
            local: None,
            groups: HashMap::new(),
            trust: HashMap::new(),
            preferred: HashMap::new(),
            required: HashMap::new(),
            group_preferred: BTreeMap::new(),
            numcopies: None,
            mincopies: None,
            maxsize: HashMap::new(),
            repo_sizes: HashMap::new(),
            preferreddir: HashMap::new(),
            clusters: HashMap::new(),
            rebalance: false,
            fullybalanced_threshold: 0.9,
        }
    }
}

impl Facts {
    /// Trust of a repository (semitrusted unless recorded).
    pub fn trust_of(&self, u: &Uuid) -> TrustLevel {
        self.trust.get(u).copied().unwrap_or_default()
    }

    /// numcopies from the branch, at least 1.
    pub fn global_numcopies(&self) -> i64 {
        self.numcopies.map(|n| n.max(1)).unwrap_or(1)
    }

    /// mincopies from the branch, at least 1.
    pub fn global_mincopies(&self) -> i64 {
        self.mincopies.map(|n| n.max(1)).unwrap_or(1)
    }

    // Small builder helpers, mostly for tests and tools.

    pub fn with_group(mut self, u: &Uuid, group: &str) -> Self {
        self.groups
            .entry(u.clone())
            .or_default()
            .insert(group.to_string());
        self
    }
    pub fn with_trust(mut self, u: &Uuid, t: TrustLevel) -> Self {
        self.trust.insert(u.clone(), t);
        self
    }
    pub fn with_preferred(mut self, u: &Uuid, expr: &str) -> Self {
        self.preferred.insert(u.clone(), expr.to_string());
        self
    }
    pub fn with_required(mut self, u: &Uuid, expr: &str) -> Self {
        self.required.insert(u.clone(), expr.to_string());
        self
    }
    pub fn with_group_preferred(mut self, group: &str, expr: &str) -> Self {
        self.group_preferred
            .insert(group.to_string(), expr.to_string());
        self
    }
    pub fn with_maxsize(mut self, u: &Uuid, max: u64) -> Self {
        self.maxsize.insert(u.clone(), max);
        self
    }
    pub fn with_repo_size(mut self, u: &Uuid, size: u64) -> Self {
        self.repo_sizes.insert(u.clone(), size);
        self
    }
}

/// What the engine may ask about one key. Only `key` and `locations` are required.
pub trait KeyFacts {
    /// The key.
    fn key(&self) -> &Key;

    /// UUIDs the location log says have the content (status `1`), as logged: dead
    /// repositories may be included (the engine filters them by trust) and cluster UUIDs
    /// need not be (the engine adds a cluster when one of its live nodes has the key).
    fn locations(&self) -> &[Uuid];

    /// Whether the object is really in the local repository ([`Facts::local`]), when the
    /// caller knows; `None` falls back to the location log.
    fn present_here(&self) -> Option<bool> {
        None
    }

    /// Call `pred` with each (field, value) of the key's current metadata until it
    /// returns true; returns whether it did. Field names are compared case-insensitively
    /// by the engine.
    fn metadata_any(&self, _pred: &mut dyn FnMut(&str, &[u8]) -> bool) -> bool {
        false
    }

    /// Call `pred` with each URL recorded for the key (the url log's present entries,
    /// as stored, e.g. `:pylog:…` or `yt:https://…`) until it returns true.
    fn url_any(&self, _pred: &mut dyn FnMut(&str) -> bool) -> bool {
        false
    }

    /// `annex.numcopies` from `.gitattributes` for this file, unparsed (git-annex reads
    /// it with `readish`).
    fn numcopies_attr(&self, _file: &[u8]) -> Option<String> {
        None
    }

    /// `annex.mincopies` from `.gitattributes` for this file.
    fn mincopies_attr(&self, _file: &[u8]) -> Option<String> {
        None
    }

    /// Whether the key is in the local list of unused keys (`unused`).
    fn is_unused(&self) -> bool {
        false
    }

    /// Equivalent keys (`.log.ek`), for deciding whether a `VURL` key is secure.
    fn equivalent_keys(&self) -> Vec<Key> {
        Vec::new()
    }
}

/// A plain owned [`KeyFacts`].
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub key: Key,
    pub locations: Vec<Uuid>,
    pub present_here: Option<bool>,
    pub metadata: Vec<(String, Vec<u8>)>,
    pub urls: Vec<String>,
    pub numcopies_attr: Option<String>,
    pub mincopies_attr: Option<String>,
    pub unused: bool,
    pub equivalent_keys: Vec<Key>,
}

impl KeyInfo {
    pub fn new(key: Key, locations: Vec<Uuid>) -> KeyInfo {
        KeyInfo {
            key,
            locations,
            present_here: None,
            metadata: Vec::new(),
            urls: Vec::new(),
            numcopies_attr: None,
            mincopies_attr: None,
            unused: false,
            equivalent_keys: Vec::new(),
        }
    }
}

impl KeyFacts for KeyInfo {
    fn key(&self) -> &Key {
        &self.key
    }
    fn locations(&self) -> &[Uuid] {
        &self.locations
    }
    fn present_here(&self) -> Option<bool> {
        self.present_here
    }
    fn metadata_any(&self, pred: &mut dyn FnMut(&str, &[u8]) -> bool) -> bool {
        self.metadata.iter().any(|(f, v)| pred(f, v))
    }
    fn url_any(&self, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        self.urls.iter().any(|u| pred(u))
    }
    fn numcopies_attr(&self, _file: &[u8]) -> Option<String> {
        self.numcopies_attr.clone()
    }
    fn mincopies_attr(&self, _file: &[u8]) -> Option<String> {
        self.mincopies_attr.clone()
    }
    fn is_unused(&self) -> bool {
        self.unused
    }
    fn equivalent_keys(&self) -> Vec<Key> {
        self.equivalent_keys.clone()
    }
}
