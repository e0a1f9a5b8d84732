//! [`Facts`] from a repository: its git-annex branch and its git config.
//!
//! | fact | from |
//! |---|---|
//! | local UUID | `annex.uuid` |
//! | groups | `group.log` |
//! | trust | `trust.log`, overridden by `remote.<r>.annex-trustlevel`; a remote reached through a proxy (`annex-proxied-by`) or an export/import remote without versioning is at most untrusted |
//! | preferred, required, group-preferred content | `preferred-content.log`, `required-content.log`, `group-preferred-content.log` |
//! | numcopies | `numcopies.log`, else the deprecated git config `annex.numcopies` |
//! | mincopies | `mincopies.log` |
//! | maxsize | `maxsize.log` |
//! | repository sizes | the location logs (see [`super::sizes`]), only when some expression uses a balanced term and some repository has a maxsize: otherwise no decision depends on them |
//! | preferreddir | `remote.log` (`preferreddir=`, with `sameas` inheritance) |
//! | clusters | `cluster.log` |
//! | fully-balanced threshold | `annex.fullybalancedthreshhold` (git-annex's spelling), percent |
//!
//! Every branch file is read as git-annex reads it at this moment (journal, unmerged
//! siblings: [`BranchView::get`]).

use std::collections::{BTreeMap, HashMap};

use super::sizes::{repo_sizes, RepoSizes, SizesError};
use crate::branch::log::paths::BranchHash;
use crate::branch::log::uuidlogs::effective_remote_configs;
use crate::branch::log::{
    ClusterLog, CopiesLog, GroupLog, GroupPreferredContentLog, MaxSizeLog, PreferredContentLog,
    RemoteLog, TrustLevel as LogTrust, TrustLog, UuidLog,
};
use crate::branch::repo::{BranchView, GitConfig, GitRepo, RepoError};
use crate::placement::{Facts, TrustLevel};
use crate::types::Uuid;

/// Errors loading facts.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Sizes(#[from] SizesError),
}

/// What we know about the repositories by name.
#[derive(Debug, Clone, Default)]
pub struct RepoNames {
    /// `uuid.log` descriptions.
    pub descriptions: BTreeMap<Uuid, String>,
    /// git remote name -> UUID (`remote.<r>.annex-uuid`).
    pub remotes: BTreeMap<String, Uuid>,
    /// This repository.
    pub here: Option<Uuid>,
}

impl RepoNames {
    /// A repository named as git-annex accepts it: `here`, a remote name, a known UUID, or
    /// a description (the first that matches, in that order); failing those, anything
    /// shaped like a UUID.
    pub fn resolve(&self, name: &str) -> Option<Uuid> {
        if name == "here" || name == "." {
            return self.here.clone();
        }
        if let Some(u) = self.remotes.get(name) {
            return Some(u.clone());
        }
        if let Ok(u) = Uuid::parse(name) {
            if self.descriptions.contains_key(&u) || self.remotes.values().any(|r| *r == u) {
                return Some(u);
            }
        }
        let mut by_desc = self
            .descriptions
            .iter()
            .filter(|(_, d)| d.as_str() == name)
            .map(|(u, _)| u.clone());
        match (by_desc.next(), by_desc.next()) {
            (Some(u), None) => Some(u),
            // A UUID nobody described yet is still a UUID.
            _ => looks_like_uuid(name)
                .then(|| Uuid::parse(name).ok())
                .flatten(),
        }
    }

    /// A short label: the remote name, else the description, else nothing.
    pub fn label(&self, u: &Uuid) -> Option<String> {
        if self.here.as_ref() == Some(u) {
            return Some(
                self.descriptions
                    .get(u)
                    .map(|d| format!("here ({d})"))
                    .unwrap_or_else(|| "here".into()),
            );
        }
        if let Some((name, _)) = self.remotes.iter().find(|(_, r)| *r == u) {
            return Some(name.clone());
        }
        self.descriptions.get(u).cloned()
    }
}

/// `8-4-4-4-12` hexadecimal digits.
fn looks_like_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Everything loaded for placement decisions in one repository.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub facts: Facts,
    pub names: RepoNames,
    /// The branch hash layout (for per-key log paths).
    pub hash: BranchHash,
    /// Repository sizes, when they were needed (see the module docs).
    pub sizes: Option<RepoSizes>,
}

fn to_placement(t: LogTrust) -> TrustLevel {
    match t {
        LogTrust::Dead => TrustLevel::Dead,
        LogTrust::Untrusted => TrustLevel::Untrusted,
        LogTrust::SemiTrusted => TrustLevel::SemiTrusted,
        LogTrust::Trusted => TrustLevel::Trusted,
    }
}

fn yes(v: Option<&String>) -> bool {
    matches!(v.map(String::as_str), Some("yes" | "true"))
}

/// Which repositories' sizes are needed: only if some expression uses a balanced term
/// and some repository has a maxsize (no other decision reads them).
fn needs_sizes(f: &Facts) -> bool {
    !f.maxsize.is_empty()
        && f.preferred
            .values()
            .chain(f.required.values())
            .chain(f.group_preferred.values())
            .any(|e| e.contains("balanced"))
}

/// Load the facts from a view of the branch and the repository's config.
/// `want_sizes`: `Some(true)` always computes repository sizes, `Some(false)` never,
/// `None` when a decision may depend on them.
pub fn load(
    repo: &GitRepo,
    view: &BranchView<'_>,
    cfg: &GitConfig,
    want_sizes: Option<bool>,
) -> Result<Loaded, FactsError> {
    let hash = cfg.branch_hash();
    let mut f = Facts {
        local: cfg.annex_uuid(),
        ..Facts::default()
    };

    let uuid_log = UuidLog::parse(&view.get(b"uuid.log")?);
    let mut names = RepoNames {
        here: f.local.clone(),
        ..RepoNames::default()
    };
    for (u, d) in uuid_log.values() {
        names
            .descriptions
            .insert(u.clone(), String::from_utf8_lossy(d).into_owned());
    }
    for r in cfg.remotes() {
        if let Some(u) = cfg.remote_uuid(&r) {
            names.remotes.insert(r, u);
        }
    }

    for (u, gs) in GroupLog::parse(&view.get(b"group.log")?).values() {
        if !gs.is_empty() {
            f.groups.insert(u.clone(), gs.clone());
        }
    }

    // Trust: the log, then git config per remote, then "untrustworthy" caps.
    let remote_log = RemoteLog::parse(&view.get(b"remote.log")?);
    let remote_cfgs = effective_remote_configs(&remote_log);
    for (u, t) in TrustLog::parse(&view.get(b"trust.log")?).values() {
        f.trust.insert(u.clone(), to_placement(*t));
    }
    for (r, u) in &names.remotes {
        if let Some(t) = cfg
            .remote(r, "annex-trustlevel")
            .and_then(|v| TrustLevel::from_name(v.trim()))
        {
            f.trust.insert(u.clone(), t);
        }
    }
    for (r, u) in &names.remotes {
        let proxied = cfg
            .remote(r, "annex-proxied-by")
            .is_some_and(|v| !v.trim().is_empty());
        let rc = remote_cfgs.get(u);
        let export_like = rc.is_some_and(|c| {
            (yes(c.get("exporttree")) || yes(c.get("importtree")))
                && !yes(c.get("versioning"))
                && c.get("type").map(String::as_str) != Some("borg")
        });
        if proxied || export_like {
            let t = f.trust_of(u).min(TrustLevel::Untrusted);
            f.trust.insert(u.clone(), t);
        }
    }

    for (u, e) in PreferredContentLog::parse(&view.get(b"preferred-content.log")?).values() {
        f.preferred.insert(u.clone(), e.clone());
    }
    for (u, e) in PreferredContentLog::parse(&view.get(b"required-content.log")?).values() {
        f.required.insert(u.clone(), e.clone());
    }
    for (g, e) in
        GroupPreferredContentLog::parse(&view.get(b"group-preferred-content.log")?).values()
    {
        f.group_preferred.insert(g.clone(), e.clone());
    }

    f.numcopies = CopiesLog::parse(&view.get(b"numcopies.log")?)
        .value()
        .map(|c| i64::from(c.get()))
        .or_else(|| {
            cfg.get("annex.numcopies")
                .and_then(|v| v.trim().parse::<i64>().ok())
        });
    f.mincopies = CopiesLog::parse(&view.get(b"mincopies.log")?)
        .value()
        .map(|c| i64::from(c.get()));

    for (u, n) in MaxSizeLog::parse(&view.get(b"maxsize.log")?).values() {
        f.maxsize.insert(u.clone(), *n);
    }
    for (u, c) in &remote_cfgs {
        if let Some(d) = c.get("preferreddir") {
            f.preferreddir.insert(u.clone(), d.clone());
        }
    }
    for (c, nodes) in ClusterLog::parse(&view.get(b"cluster.log")?).values() {
        f.clusters.insert(c.clone(), nodes.clone());
    }
    if let Some(t) = cfg
        .get("annex.fullybalancedthreshhold")
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        f.fullybalanced_threshold = t / 100.0;
    }

    let sizes = if want_sizes.unwrap_or_else(|| needs_sizes(&f)) {
        let s = repo_sizes(repo, view, hash)?;
        f.repo_sizes = s.sizes.clone();
        Some(s)
    } else {
        None
    };
    Ok(Loaded {
        facts: f,
        names,
        hash,
        sizes,
    })
}

/// Every repository placement can be asked about: those in `uuid.log` and those with an
/// expression, minus dead ones, sorted.
pub fn live_repositories(loaded: &Loaded) -> Vec<Uuid> {
    let f = &loaded.facts;
    let mut all: Vec<Uuid> = loaded
        .names
        .descriptions
        .keys()
        .chain(f.preferred.keys())
        .chain(f.required.keys())
        .filter(|u| f.trust_of(u) != TrustLevel::Dead)
        .cloned()
        .collect();
    all.sort();
    all.dedup();
    all
}

/// Repositories that have a preferred or required content expression (not empty), minus
/// dead ones, sorted: the ones whose answer is more than "not configured".
pub fn configured_repositories(loaded: &Loaded) -> Vec<Uuid> {
    let f = &loaded.facts;
    let mut all: Vec<Uuid> = f
        .preferred
        .iter()
        .chain(f.required.iter())
        .filter(|(u, e)| !e.trim().is_empty() && f.trust_of(u) != TrustLevel::Dead)
        .map(|(u, _)| u.clone())
        .collect();
    all.sort();
    all.dedup();
    all
}

/// UUID -> size map for reports, without dead repositories' entries removed.
pub fn sizes_map(loaded: &Loaded) -> HashMap<Uuid, u64> {
    loaded
        .sizes
        .as_ref()
        .map(|s| s.sizes.clone())
        .unwrap_or_default()
}
