//! Setting up gateways and clusters, the way git-annex's `initcluster`, `updatecluster`,
//! `extendcluster` and `updateproxy` do, writing the same git config and the same
//! `uuid.log`, `cluster.log` and `proxy.log` lines, so that either tool can set up a
//! cluster the other serves. Plus `status`: a cluster's nodes, whether each is reachable,
//! and how full each is according to the git-annex branch.
//!
//! Every function returns the lines to show the user (git-annex's own wording where it has
//! one); the CLI prints them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::branch::log::paths::BranchHash;
use crate::branch::log::presence::LocationLog;
use crate::branch::log::uuidlogs::escape_description;
use crate::branch::log::uuidlogs::{
    is_legal_remote_name, ClusterLog, MaxSizeLog, Proxy, ProxyLog, UuidLog,
};
use crate::branch::repo::{GitRepo, RepoError};
use crate::gateway::{Gateway, GatewayError, RemoteInfo, RemoteKind};
use crate::types::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Gateway(#[from] GatewayError),
    #[error("{0}")]
    Repo(#[from] RepoError),
    #[error("That cluster name is not a valid git remote name.")]
    BadClusterName,
    #[error("No remote named {0} exists.")]
    NoRemote(String),
    #[error("Expected to find a cluster remote named {cluster_remote} that is accessed via {remote}, but there is no such remote. Perhaps you need to git fetch from {remote}, or git-annex updatecluster needs to be run there?")]
    NoClusterRemote {
        cluster_remote: String,
        remote: String,
    },
    #[error("{0} is not a cluster remote.")]
    NotACluster(String),
    #[error("this repository is not a gateway for a cluster named {0}")]
    UnknownCluster(String),
}

fn open(dir: &Path) -> Result<Gateway, AdminError> {
    let repo = GitRepo::open(dir)?;
    learn_local_remote_uuids(&repo)?;
    Ok(Gateway::open(repo)?)
}

/// Git remotes on this machine (a path, or a `file://` URL) whose UUID is not in the git
/// config yet get it from their own config (`remote.NAME.annex-uuid`), as git-annex
/// reads a local remote's config whenever it lists remotes. Remotes that git-annex is
/// told to ignore, and repositories that are not (yet) git-annex repositories, are left
/// alone. Remotes behind ssh or http still need a `git annex sync` (or the UUID set by
/// hand) first.
fn learn_local_remote_uuids(repo: &GitRepo) -> Result<(), AdminError> {
    let cfg = repo.config()?;
    let base = repo
        .work_tree()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo.git_dir().to_path_buf());
    for name in cfg.remotes() {
        if cfg.remote(&name, "annex-uuid").is_some()
            || cfg.get_bool(&format!("remote.{name}.annex-ignore")) == Some(true)
        {
            continue;
        }
        let Some(url) = cfg.remote(&name, "url") else {
            continue;
        };
        let Some(path) = local_remote_path(&url) else {
            continue;
        };
        let path = base.join(path);
        let Ok(remote) = GitRepo::open(&path) else {
            continue;
        };
        let uuid = remote
            .config()
            .ok()
            .and_then(|c| c.get("annex.uuid"))
            .and_then(|u| Uuid::parse(u.trim()).ok());
        if let Some(u) = uuid {
            repo.set_config(&format!("remote.{name}.annex-uuid"), u.as_str())?;
        }
    }
    Ok(())
}

/// The path of a remote URL that names a repository on this machine, as git reads it:
/// `file://PATH`, or anything without a `scheme://` and without an scp-like `host:` before
/// its first slash.
fn local_remote_path(url: &str) -> Option<&str> {
    if let Some(p) = url.strip_prefix("file://") {
        return Some(p);
    }
    if url.contains("://") {
        return None;
    }
    match (url.find(':'), url.find('/')) {
        (Some(colon), Some(slash)) if colon < slash => None,
        (Some(_), None) => None,
        _ => Some(url),
    }
}

/// `initcluster NAME [DESCRIPTION]`: make this repository a gateway for a new cluster.
pub fn init_cluster(dir: &Path, name: &str, desc: Option<&str>) -> Result<Vec<String>, AdminError> {
    if !is_legal_remote_name(name) {
        return Err(AdminError::BadClusterName);
    }
    let gw = open(dir)?;
    if !gw.config().clusters().contains_key(name) {
        let cu = Uuid::new_cluster();
        gw.with_repo(|r| r.set_config(&format!("annex.cluster.{name}"), cu.as_str()))?;
        let desc = desc
            .map(str::to_string)
            .unwrap_or_else(|| format!("cluster {name}"));
        let rec = gw.recorder()?;
        rec.record_logs(|view, now| {
            let mut log = UuidLog::parse(&view.get_for_write(b"uuid.log")?);
            log.set(cu.clone(), escape_description(&desc), now);
            Ok(vec![(b"uuid.log".to_vec(), log.format())])
        })
        .map_err(GatewayError::from)?;
    }
    Ok(vec![format!("initcluster {name} ok")])
}

/// How git-annex names a repository in messages: its description from uuid.log with the
/// name of a remote that has its UUID in brackets after it (only "[name]" when the two
/// are the same or there is no description; the last such remote in the configuration
/// when several have it), the description alone when no remote has it, else the UUID.
fn node_description(view: &crate::gateway::GatewayView, u: &Uuid) -> String {
    let remote = view
        .remotes
        .iter()
        .rev()
        .find(|r| r.uuid.as_ref() == Some(u))
        .map(|r| r.name.as_str());
    let desc = view.facts.descriptions.get(u).filter(|d| !d.is_empty());
    match (desc, remote) {
        (Some(d), Some(r)) if d != r => format!("{d} [{r}]"),
        (_, Some(r)) => format!("[{r}]"),
        (Some(d), None) => d.clone(),
        (None, None) => u.to_string(),
    }
}

/// `updatecluster`: record each cluster's configured nodes in cluster.log, then
/// `updateproxy`.
pub fn update_cluster(dir: &Path) -> Result<Vec<String>, AdminError> {
    let gw = open(dir)?;
    let view = gw.view()?.clone();
    let mut out = Vec::new();
    let mut changes: Vec<(Uuid, BTreeSet<Uuid>)> = Vec::new();
    for (name, cu, mine, all) in view.clusters_to_record() {
        let recorded = view.facts.clusters.get(&cu).cloned().unwrap_or_default();
        if recorded == all {
            out.push(format!("No cluster node changes for cluster: {name}"));
            continue;
        }
        let mut mine = mine;
        mine.sort_by(|a, b| a.uuid.cmp(&b.uuid));
        for r in &mine {
            if let Some(u) = &r.uuid {
                if !recorded.contains(u) {
                    out.push(format!("Added node {} to cluster: {name}", r.name));
                }
            }
        }
        for n in &recorded {
            if !all.contains(n) {
                out.push(format!(
                    "Removed node {} from cluster: {name}",
                    node_description(&view, n)
                ));
            }
        }
        changes.push((cu, all));
    }
    if !changes.is_empty() {
        gw.recorder()?
            .record_logs(|v, now| {
                let mut log = ClusterLog::parse(&v.get_for_write(b"cluster.log")?);
                for (cu, nodes) in &changes {
                    log.set(cu.clone(), nodes.clone(), now);
                }
                Ok(vec![(b"cluster.log".to_vec(), log.format())])
            })
            .map_err(GatewayError::from)?;
    }
    drop(gw);
    // updateproxy sees the new cluster.log.
    out.extend(update_proxy(dir)?);
    Ok(out)
}

/// `updateproxy`: record in proxy.log what this repository proxies.
pub fn update_proxy(dir: &Path) -> Result<Vec<String>, AdminError> {
    let gw = open(dir)?;
    let view = gw.view()?;
    let (proxies, warnings) = view.proxies_to_record();
    let old = view
        .facts
        .proxies
        .get(gw.uuid())
        .cloned()
        .unwrap_or_default();
    let mut out: Vec<String> = warnings;
    if old == proxies {
        out.push("No proxy changes to record.".into());
        return Ok(out);
    }
    let all: BTreeSet<&Proxy> = old.iter().chain(proxies.iter()).collect();
    for p in all {
        match (old.contains(p), proxies.contains(p)) {
            (false, true) => out.push(format!("Started proxying for {}", p.name)),
            (true, false) => out.push(format!("Stopped proxying for {}", p.name)),
            _ => {}
        }
    }
    let me = gw.uuid().clone();
    gw.recorder()?
        .record_logs(|v, now| {
            let mut log = ProxyLog::parse(&v.get_for_write(b"proxy.log")?);
            log.set(me.clone(), proxies.clone(), now);
            Ok(vec![(b"proxy.log".to_vec(), log.format())])
        })
        .map_err(GatewayError::from)?;
    Ok(out)
}

/// `extendcluster REMOTE NAME`: make this repository another gateway of the cluster NAME
/// that remote REMOTE is a gateway for, then `updatecluster`.
pub fn extend_cluster(dir: &Path, remote: &str, name: &str) -> Result<Vec<String>, AdminError> {
    let gw = open(dir)?;
    let view = gw.view()?;
    let cluster_remote = format!("{remote}-{name}");
    let Some(cr) = view.remote(&cluster_remote) else {
        return Err(AdminError::NoClusterRemote {
            cluster_remote,
            remote: remote.to_string(),
        });
    };
    let Some(cu) = cr.uuid.clone().filter(Uuid::is_cluster) else {
        return Err(AdminError::NotACluster(cluster_remote));
    };
    if view.remote(remote).is_none() {
        return Err(AdminError::NoRemote(remote.to_string()));
    }
    gw.with_repo(|r| -> Result<(), RepoError> {
        if !gw.config().clusters().contains_key(name) {
            r.set_config(&format!("annex.cluster.{name}"), cu.as_str())?;
        }
        r.set_config(
            &format!("remote.{remote}.annex-cluster-gateway"),
            cu.as_str(),
        )
    })?;
    drop(gw);
    let mut out = vec![format!("extendcluster {name} ok")];
    out.extend(update_cluster(dir)?);
    Ok(out)
}

/// One node of a cluster, for `status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub uuid: String,
    pub kind: String,
    pub cost: f64,
    pub reachable: Option<bool>,
    pub detail: String,
    pub keys: u64,
    pub used: u64,
    pub maxsize: Option<u64>,
}

/// A cluster's status.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterStatus {
    pub name: String,
    pub uuid: String,
    pub gateway: String,
    pub nodes: Vec<NodeStatus>,
}

fn kind_text(r: &RemoteInfo) -> String {
    match &r.kind {
        RemoteKind::LocalGit(p) => format!("git repository {}", p.display()),
        RemoteKind::Ssh(u) => format!("ssh {u}"),
        RemoteKind::Http(u) => format!("p2phttp {u}"),
        RemoteKind::Special { kind, config } => match config.get("directory") {
            Some(d) => format!("{kind} {d}"),
            None => kind.clone(),
        },
        RemoteKind::Other(u) => u.clone(),
    }
}

/// Status of every cluster this repository is a gateway for (or just `only`).
pub fn cluster_status(dir: &Path, only: Option<&str>) -> Result<Vec<ClusterStatus>, AdminError> {
    let gw = open(dir)?;
    let view = gw.view()?.clone();
    if let Some(n) = only {
        if !view.my_clusters.contains_key(n) {
            return Err(AdminError::UnknownCluster(n.to_string()));
        }
    }
    // Sizes and key counts per repository from the location logs, in one streaming pass.
    let hash: BranchHash = gw.config().branch_hash();
    let mut used: BTreeMap<Uuid, (u64, u64)> = BTreeMap::new();
    let maxsizes: BTreeMap<Uuid, u64> = gw.with_repo(|repo| -> Result<_, RepoError> {
        let v = repo.view()?;
        let maxlog = MaxSizeLog::parse(&v.get(b"maxsize.log")?);
        let m: BTreeMap<Uuid, u64> = maxlog.values().map(|(u, s)| (u.clone(), *s)).collect();
        v.for_each_location_log(hash, |key, content| {
            let size = key.size().unwrap_or(0);
            for u in LocationLog::parse(content).present() {
                let e = used.entry(u).or_insert((0, 0));
                e.0 += 1;
                e.1 += size;
            }
            true
        })?;
        Ok(m)
    })?;
    let mut out = Vec::new();
    for (name, cu) in &view.my_clusters {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let nodes = view.cluster_nodes(cu, &[]);
        let mut statuses = Vec::new();
        for r in nodes {
            let uuid = r.uuid.clone().unwrap_or_else(|| cu.clone());
            let (reachable, detail) = reachability(&gw, &r);
            let (keys, bytes) = used.get(&uuid).copied().unwrap_or((0, 0));
            statuses.push(NodeStatus {
                name: r.name.clone(),
                uuid: uuid.to_string(),
                kind: kind_text(&r),
                cost: r.cost,
                reachable,
                detail,
                keys,
                used: bytes,
                maxsize: maxsizes.get(&uuid).copied().filter(|m| *m > 0),
            });
        }
        out.push(ClusterStatus {
            name: name.clone(),
            uuid: cu.to_string(),
            gateway: gw.uuid().to_string(),
            nodes: statuses,
        });
    }
    Ok(out)
}

/// Whether a node answers, as far as can be told without a transfer.
fn reachability(gw: &Gateway, r: &RemoteInfo) -> (Option<bool>, String) {
    match &r.kind {
        RemoteKind::LocalGit(_) | RemoteKind::Special { .. } => match gw.remote_node(r, &[]) {
            Ok(node) => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match rt {
                    Ok(rt) => match rt.block_on(node.timestamp()) {
                        Ok(_) => (Some(true), "ok".into()),
                        Err(e) => (Some(false), e.to_string()),
                    },
                    Err(e) => (None, e.to_string()),
                }
            }
            Err(e) => (Some(false), e.to_string()),
        },
        _ => match gw.remote_node(r, &[]) {
            Ok(_) => (None, "not checked".into()),
            Err(e) => (Some(false), e.to_string()),
        },
    }
}

/// Human-readable sizes as git-annex shows them (decimal units).
pub fn human_size(n: u64) -> String {
    const UNITS: &[&str] = &["bytes", "kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} bytes");
    }
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

/// Render a status as text lines.
pub fn render_status(s: &ClusterStatus) -> Vec<String> {
    let mut out = vec![format!("cluster {} ({})", s.name, s.uuid)];
    let width = s.nodes.iter().map(|n| n.name.len()).max().unwrap_or(4);
    for n in &s.nodes {
        let reach = match n.reachable {
            Some(true) => "up".to_string(),
            Some(false) => format!("DOWN ({})", n.detail),
            None => n.detail.clone(),
        };
        let fill = match n.maxsize {
            Some(m) => format!(
                "{} of {} ({:.0}%)",
                human_size(n.used),
                human_size(m),
                100.0 * n.used as f64 / m as f64
            ),
            None => format!("{} (no maxsize)", human_size(n.used)),
        };
        out.push(format!(
            "  {:width$}  {}  {} keys, {}  [{}; cost {}]  {}",
            n.name, n.uuid, n.keys, fill, n.kind, n.cost, reach
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::local_remote_path;

    #[test]
    fn local_remote_paths_as_git_reads_them() {
        for (url, want) in [
            ("../node1.git", Some("../node1.git")),
            ("/srv/annex", Some("/srv/annex")),
            ("node1", Some("node1")),
            ("file:///srv/annex", Some("/srv/annex")),
            ("./a:b", Some("./a:b")),
            ("host:/srv/annex", None),
            ("user@host:annex", None),
            ("ssh://host/srv/annex", None),
            ("https://host/annex.git", None),
        ] {
            assert_eq!(local_remote_path(url), want, "{url}");
        }
    }
}
