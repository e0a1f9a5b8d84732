//! The gateway: a git-annex repository that serves itself and, when its configuration
//! allows, the repositories and clusters it proxies for. Both front doors
//! (annexgate-shell and annexgate-http) open a [`Gateway`], [`Gateway::resolve`] the UUID
//! the client named, and get a [`Node`] for it with [`Gateway::node_for`].
//!
//! Resolution follows git-annex-shell's `--uuid` rules (spec `git-annex-shell.md` §2,
//! `clusters-and-proxies.md` §1): no UUID or the repository's own serves the repository; a
//! UUID this repository proxies for (its own `proxy.log` entry and its git config agreeing)
//! serves that node or cluster; a UUID with a known description that it does not proxy gets
//! `not configured to proxy for repository <desc>`; anything else
//! `expected repository UUID X but found UUID Y`. [`remotes`] holds that logic, pure.
//!
//! Nodes by kind of remote: the gateway itself and local git repositories are served
//! directly from their object stores ([`AnnexRepo`]; a local node's changes are recorded
//! in its own branch and in the gateway's), ssh remotes by [`P2pNode`] (each wait bounded
//! by `annexgate.node-timeout`), remotes with an `annex+http(s)` URL by [`HttpNode`]
//! (sharing one [`HttpPool`]), `directory` special remotes by [`Directory`]; location
//! changes go to the gateway's branch through one batched [`Recorder`]. A node that
//! cannot be set up at all (its repository gone) is an [`Unavailable`] member of its
//! cluster, failing each request.

pub mod remotes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::branch::log::paths::location_log_path;
use crate::branch::log::presence::LocationLog;
use crate::branch::log::uuidlogs::{
    effective_remote_configs, ClusterLog, Clusters, ProxyLog, RemoteLog, TrustLog, UuidLog,
};
use crate::branch::recorder::{RecordError, Recorder, RecorderOptions};
use crate::branch::repo::{BranchView, GitConfig, GitRepo, RepoError};
use crate::node::annexrepo::{AnnexRepo, AnnexRepoConfig};
use crate::node::cluster::{Cluster, ClusterMember, ClusterOptions, EnginePlacement, Wanting};
use crate::node::directory::{Directory, DirectoryConfig};
use crate::node::http::{
    CredentialHelper, HttpNode, HttpNodeConfig, HttpPool, HttpPoolOptions, P2pHttpUrl,
};
use crate::node::p2p::{P2pEndpoint, P2pNode, P2pNodeConfig};
use crate::node::unavailable::Unavailable;
use crate::node::{ChunkLog, LocationSink, Node, NodeError};
use crate::placement::Engine;
use crate::types::{Key, Uuid};

pub use remotes::{BranchFacts, GatewayView, RemoteInfo, RemoteKind, Resolution};

/// What a client's `--uuid` (or HTTP path UUID) selects.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The gateway repository itself.
    Local,
    /// A remote the gateway proxies for.
    Remote(Box<RemoteInfo>),
    /// A cluster the gateway is a gateway for.
    Cluster { uuid: Uuid, name: String },
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Repo(#[from] RepoError),
    #[error("Not a git-annex or gcrypt repository.")]
    NotAnnex,
    #[error("expected repository UUID {expected} but found UUID {found}")]
    UnexpectedUuid { expected: String, found: Uuid },
    #[error("expected repository UUID {expected} but found uninitialized repository")]
    Uninitialised { expected: String },
    #[error("not configured to proxy for repository {description}")]
    NotProxied { description: String },
    #[error("bad repository configuration: {0}")]
    Config(String),
    #[error("bad git config {key}={value:?}: expected {expected}")]
    BadSetting {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{0}")]
    Record(#[from] RecordError),
}

/// A gateway repository, opened once per process (shell) or per repository (http).
pub struct Gateway {
    repo: Mutex<GitRepo>,
    git_dir: PathBuf,
    config: GitConfig,
    uuid: Uuid,
    view: OnceLock<Result<GatewayView, String>>,
    recorder: Arc<LazyRecorder>,
    local: OnceLock<Arc<AnnexRepo>>,
    wanting: OnceLock<Arc<dyn Wanting>>,
    /// The HTTP client every `annex+http` node of this gateway shares (made on first use).
    http_pool: OnceLock<Result<HttpPool, String>>,
    /// Recorders of local node repositories (their own branches), by git dir.
    node_recorders: Mutex<BTreeMap<PathBuf, Arc<LazyRecorder>>>,
}

/// A repository's [`Recorder`], made when the first location change arrives: a session
/// that only reads never opens the git-annex branch or starts the recorder's thread.
struct LazyRecorder {
    git_dir: PathBuf,
    opts: RecorderOptions,
    cell: OnceLock<Result<Arc<Recorder>, String>>,
}

impl LazyRecorder {
    fn new(git_dir: &Path, opts: RecorderOptions) -> LazyRecorder {
        LazyRecorder {
            git_dir: git_dir.to_path_buf(),
            opts,
            cell: OnceLock::new(),
        }
    }

    fn get(&self) -> Result<Arc<Recorder>, GatewayError> {
        match self.cell.get_or_init(|| {
            Recorder::with_options(&self.git_dir, self.opts.clone())
                .map(Arc::new)
                .map_err(|e| e.to_string())
        }) {
            Ok(r) => Ok(Arc::clone(r)),
            Err(e) => Err(GatewayError::Config(e.clone())),
        }
    }

    /// The recorder, if something was recorded (it is started by the first change).
    fn started(&self) -> Option<&Arc<Recorder>> {
        self.cell.get().and_then(|r| r.as_ref().ok())
    }

    fn flush(&self) -> Result<(), GatewayError> {
        match self.cell.get() {
            None => Ok(()),
            Some(Ok(r)) => r.flush().map(|_| ()).map_err(GatewayError::from),
            // Changes were dropped: say so once more at the end.
            Some(Err(e)) => Err(GatewayError::Config(e.clone())),
        }
    }
}

impl LocationSink for LazyRecorder {
    fn record(&self, key: &Key, uuid: &Uuid, present: bool) {
        match self.get() {
            Ok(r) => r.record_location(key, uuid, present),
            Err(e) => tracing::error!(
                "cannot record that {uuid} {} {key}: {e}",
                if present { "has" } else { "lacks" }
            ),
        }
    }
}

impl ChunkLog for LazyRecorder {
    fn chunks(&self, remote: &Uuid, key: &Key) -> Vec<(u64, u64)> {
        match self.get() {
            Ok(r) => r.chunk_counts(remote, key),
            Err(e) => {
                tracing::error!("cannot read the chunk log of {key}: {e}");
                Vec::new()
            }
        }
    }
    fn record_chunks(&self, remote: &Uuid, key: &Key, chunk_size: u64, count: u64) {
        match self.get() {
            Ok(r) => r.record_chunk_count(key, remote, chunk_size, count),
            Err(e) => tracing::error!("cannot record chunks of {key}: {e}"),
        }
    }
}

impl Gateway {
    /// Open a git-annex repository as a gateway. It must be initialised (have a UUID).
    pub fn open(repo: GitRepo) -> Result<Gateway, GatewayError> {
        let config = repo.config()?;
        let uuid = config.annex_uuid().ok_or(GatewayError::NotAnnex)?;
        let recorder = Arc::new(LazyRecorder::new(
            repo.git_dir(),
            RecorderOptions::default(),
        ));
        Ok(Gateway {
            git_dir: repo.git_dir().to_path_buf(),
            repo: Mutex::new(repo),
            config,
            uuid,
            view: OnceLock::new(),
            recorder,
            local: OnceLock::new(),
            wanting: OnceLock::new(),
            http_pool: OnceLock::new(),
            node_recorders: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn uuid(&self) -> &Uuid {
        &self.uuid
    }

    pub fn config(&self) -> &GitConfig {
        &self.config
    }

    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    /// The gateway's remotes and proxy/cluster facts, read once from config and branch.
    pub fn view(&self) -> Result<&GatewayView, GatewayError> {
        let v = self.view.get_or_init(|| {
            let repo = self.lock_repo();
            let branch = repo.view().map_err(|e| e.to_string())?;
            let facts = load_facts(&branch).map_err(|e| e.to_string())?;
            Ok(GatewayView::new(&self.config, self.uuid.clone(), facts))
        });
        v.as_ref().map_err(|e| GatewayError::Config(e.clone()))
    }

    /// Which repository a client's UUID selects.
    pub fn resolve(&self, wanted: Option<&str>) -> Result<Target, GatewayError> {
        let Some(w) = wanted else {
            return Ok(Target::Local);
        };
        if w == self.uuid.as_str() {
            return Ok(Target::Local);
        }
        let unexpected = || GatewayError::UnexpectedUuid {
            expected: w.to_string(),
            found: self.uuid.clone(),
        };
        let Ok(wu) = Uuid::parse(w) else {
            return Err(unexpected());
        };
        match self.view()?.resolve(&wu) {
            Resolution::Local => Ok(Target::Local),
            Resolution::Remote(r) => Ok(Target::Remote(r)),
            Resolution::Cluster { uuid, name } => Ok(Target::Cluster { uuid, name }),
            Resolution::NotProxied { description } => Err(GatewayError::NotProxied { description }),
            Resolution::Unknown => Err(unexpected()),
        }
    }

    /// The UUID a target answers as (sent in `AUTH-SUCCESS`).
    pub fn target_uuid<'a>(&'a self, target: &'a Target) -> &'a Uuid {
        match target {
            Target::Local => &self.uuid,
            Target::Remote(r) => r.uuid.as_ref().unwrap_or(&self.uuid),
            Target::Cluster { uuid, .. } => uuid,
        }
    }

    /// The node serving `target`, for a session whose client sent `bypass`.
    pub fn node_for(
        self: &Arc<Self>,
        target: &Target,
        bypass: &[Uuid],
    ) -> Result<Arc<dyn Node>, NodeError> {
        let unreachable = |name: &str, e: &dyn std::fmt::Display| NodeError::Unreachable {
            node: name.to_string(),
            reason: e.to_string(),
        };
        match target {
            Target::Local => Ok(self
                .local_node()
                .map_err(|e| unreachable(self.uuid.as_str(), &e))?
                as Arc<dyn Node>),
            Target::Remote(r) => self.remote_node(r, bypass),
            Target::Cluster { uuid, name } => self.cluster_node(uuid, name, bypass),
        }
    }

    /// A cluster this gateway serves, made of its nodes for a session whose client sent
    /// `bypass` (other gateways in it are not used; this gateway's UUID is added to what
    /// the nodes are sent).
    pub fn cluster_node(
        self: &Arc<Self>,
        uuid: &Uuid,
        name: &str,
        bypass: &[Uuid],
    ) -> Result<Arc<dyn Node>, NodeError> {
        let unreachable = |e: &dyn std::fmt::Display| NodeError::Unreachable {
            node: name.to_string(),
            reason: e.to_string(),
        };
        let view = self.view().map_err(|e| unreachable(&e))?;
        let mut remotes = view.cluster_nodes(uuid, bypass);
        // git-annex's remote list order: git remotes by name, then the remotes it
        // instantiates for other proxies, then special remotes; the cluster orders them by
        // cost from there.
        remotes.sort_by(|a, b| {
            let rank = |r: &RemoteInfo| match (&r.kind, &r.proxied_by) {
                (RemoteKind::Special { .. }, _) => 2,
                (_, Some(_)) => 1,
                _ => 0,
            };
            (rank(a), &a.name).cmp(&(rank(b), &b.name))
        });
        let mut members = Vec::new();
        for r in &remotes {
            let node = match self.remote_node(r, bypass) {
                Ok(node) => node,
                // A node that cannot even be set up (its repository is gone) fails every
                // request: the others serve the session, and a removal is not reported
                // done while it may still hold the content.
                Err(e) => {
                    tracing::warn!("cluster {name}: node {} is unavailable: {e}", r.name);
                    let Some(u) = r.uuid.clone() else { continue };
                    Arc::new(Unavailable::new(u, r.name.clone(), unavailable_reason(e)))
                }
            };
            let m = ClusterMember::new(node, r.cost);
            members.push(match (&r.proxied_by, r.uuid.as_ref() == Some(uuid)) {
                (Some(g), true) => m.via_gateway(g.clone()),
                _ => m,
            });
        }
        let gw = Arc::clone(self);
        let locations = move |key: &Key| -> Vec<Uuid> {
            gw.locations(key).unwrap_or_else(|e| {
                tracing::warn!("reading the location log of {key}: {e}");
                Vec::new()
            })
        };
        let wanting = self.wanting().map_err(|e| unreachable(&e))?;
        let jobs = match self.config.get("annex.jobs").as_deref().map(str::trim) {
            Some("cpus") => std::thread::available_parallelism().ok().map(|n| n.get()),
            Some(n) => n.parse::<usize>().ok().filter(|n| *n > 0),
            None => None,
        };
        let options = ClusterOptions {
            jobs,
            ..ClusterOptions::default()
        };
        let records = Arc::clone(&self.recorder) as Arc<dyn LocationSink>;
        let cluster = Cluster::new(
            uuid.clone(),
            name,
            members,
            Arc::new(locations),
            wanting,
            records,
            options,
        )
        .map_err(|e| unreachable(&e))?;
        Ok(Arc::new(cluster))
    }

    /// Preferred content for cluster uploads: the placement engine over the facts of the
    /// gateway's branch (groups, expressions, trust, numcopies, maxsize and repository
    /// sizes), loaded once per gateway.
    fn wanting(&self) -> Result<Arc<dyn Wanting>, GatewayError> {
        if let Some(w) = self.wanting.get() {
            return Ok(Arc::clone(w));
        }
        let repo = self.lock_repo();
        let view = repo.view()?;
        let loaded = crate::placement_io::facts::load(&repo, &view, &self.config, None)
            .map_err(|e| GatewayError::Config(e.to_string()))?;
        drop(view);
        drop(repo);
        let engine = Arc::new(Engine::new(loaded.facts));
        let w: Arc<dyn Wanting> = Arc::new(EnginePlacement::locations_only(engine));
        Ok(Arc::clone(self.wanting.get_or_init(|| w)))
    }

    /// A node for one of the gateway's remotes.
    pub fn remote_node(&self, r: &RemoteInfo, bypass: &[Uuid]) -> Result<Arc<dyn Node>, NodeError> {
        let unreachable = |e: &dyn std::fmt::Display| NodeError::Unreachable {
            node: r.name.clone(),
            reason: e.to_string(),
        };
        let uuid = r
            .uuid
            .clone()
            .ok_or_else(|| unreachable(&"no annex-uuid"))?;
        match &r.kind {
            RemoteKind::LocalGit(path) => {
                let path = if path.is_relative() {
                    self.work_dir().join(path)
                } else {
                    path.clone()
                };
                let repo = GitRepo::open(&path).map_err(|e| unreachable(&e))?;
                let cfg = repo.config().map_err(|e| unreachable(&e))?;
                if cfg.annex_uuid().as_ref() != Some(&uuid) {
                    return Err(unreachable(&format!(
                        "{} is not the expected repository (UUID {})",
                        path.display(),
                        uuid
                    )));
                }
                let node_git_dir = repo.git_dir().to_path_buf();
                let acfg = AnnexRepoConfig::from_git_config(&node_git_dir, |k| cfg.get(k))
                    .map_err(|e| unreachable(&e))?;
                let own = self.node_recorder(&node_git_dir);
                let sink = Arc::new(TeeSink(vec![
                    own as Arc<dyn LocationSink>,
                    Arc::clone(&self.recorder) as Arc<dyn LocationSink>,
                ]));
                let mut acfg = acfg;
                acfg.name = r.name.clone();
                Ok(Arc::new(AnnexRepo::new(acfg, sink)))
            }
            RemoteKind::Special { kind, config } if kind == "directory" => {
                let dir = r.settings.get("annex-directory").map(PathBuf::from);
                let mut dcfg = DirectoryConfig::from_remote_config(uuid, config, dir)
                    .map_err(|e| unreachable(&e))?;
                dcfg.name = r.name.clone();
                Ok(Arc::new(Directory::new(
                    dcfg,
                    Arc::clone(&self.recorder) as Arc<dyn LocationSink>,
                    Arc::clone(&self.recorder) as Arc<dyn ChunkLog>,
                )))
            }
            RemoteKind::Special { kind, .. } => Err(NodeError::Unsupported {
                node: r.name.clone(),
                what: special_kind_name(kind),
            }),
            RemoteKind::Ssh(_) => {
                // Settings of the remote (an instantiated remote carries its proxy's), then
                // the gateway's own config.
                let prefix = format!("remote.{}.", r.name);
                let lookup = |k: &str| -> Option<String> {
                    k.strip_prefix(&prefix)
                        .and_then(|var| r.settings.get(&var.to_ascii_lowercase()).cloned())
                        .or_else(|| self.config.get(k))
                };
                let env = |k: &str| std::env::var(k).ok();
                let ep = P2pEndpoint::for_git_remote(
                    &r.name,
                    &self.uuid,
                    &uuid,
                    &self.work_dir(),
                    &lookup,
                    &env,
                )
                .map_err(|e| unreachable(&e))?;
                let mut cfg = P2pNodeConfig::new(uuid, r.name.clone(), ep);
                if let Some(t) = self.node_timeout().map_err(|e| unreachable(&e))? {
                    cfg.timeout = t;
                    cfg.connect_timeout = t;
                }
                let mut bypass: Vec<Uuid> = bypass.to_vec();
                if !bypass.contains(&self.uuid) {
                    bypass.push(self.uuid.clone());
                }
                cfg.bypass = bypass;
                cfg.locations = Arc::clone(&self.recorder) as Arc<dyn LocationSink>;
                Ok(Arc::new(P2pNode::new(cfg)))
            }
            RemoteKind::Http(annexurl) => {
                let url = P2pHttpUrl::parse(annexurl).map_err(|e| unreachable(&e))?;
                let pool = self.http_pool().map_err(|e| unreachable(&e))?;
                let mut cfg = HttpNodeConfig::new(uuid, r.name.clone(), url, self.uuid.clone());
                // Credentials are asked for the git URL when the annex URL shares its host.
                cfg.git_url = r.settings.get("url").cloned();
                let mut bypass: Vec<Uuid> = bypass.to_vec();
                if !bypass.contains(&self.uuid) {
                    bypass.push(self.uuid.clone());
                }
                cfg.bypass = bypass;
                cfg.locations = Arc::clone(&self.recorder) as Arc<dyn LocationSink>;
                Ok(Arc::new(HttpNode::new(cfg, pool)))
            }
            RemoteKind::Other(_) => Err(NodeError::Unsupported {
                node: r.name.clone(),
                what: "this kind of remote",
            }),
        }
    }

    /// The HTTP client shared by the gateway's `annex+http` nodes: connections are kept
    /// and reused across nodes and sessions; credentials come from the gateway's git
    /// config (`credential.helper`).
    pub fn http_pool(&self) -> Result<HttpPool, GatewayError> {
        let p = self.http_pool.get_or_init(|| {
            HttpPool::new(HttpPoolOptions {
                credentials: CredentialHelper::new(Some(self.git_dir.clone())),
                ..HttpPoolOptions::default()
            })
            .map_err(|e| e.to_string())
        });
        p.clone().map_err(GatewayError::Config)
    }

    /// `annexgate.node-timeout` (seconds, decimals allowed): how long a node reached over
    /// the P2P protocol may take to greet, to answer a request, or to take or hand over
    /// the next piece of content before it is given up on. `None`: the defaults.
    pub fn node_timeout(&self) -> Result<Option<Duration>, GatewayError> {
        let Some(v) = self.config.get(NODE_TIMEOUT) else {
            return Ok(None);
        };
        parse_seconds(&v)
            .map(Some)
            .ok_or_else(|| GatewayError::BadSetting {
                key: NODE_TIMEOUT,
                value: v.clone(),
                expected: "a positive number of seconds",
            })
    }

    /// The gateway repository's own object store.
    pub fn local_node(&self) -> Result<Arc<AnnexRepo>, GatewayError> {
        if let Some(n) = self.local.get() {
            return Ok(Arc::clone(n));
        }
        let cfg = AnnexRepoConfig::from_git_config(&self.git_dir, |name| self.config.get(name))
            .map_err(|e| GatewayError::Config(e.to_string()))?;
        let sink = self.location_sink()?;
        let node = Arc::new(AnnexRepo::new(cfg, sink));
        Ok(Arc::clone(self.local.get_or_init(|| node)))
    }

    /// Where location changes made through this gateway are recorded: its git-annex
    /// branch, in batches.
    pub fn location_sink(&self) -> Result<Arc<dyn LocationSink>, GatewayError> {
        Ok(Arc::clone(&self.recorder) as Arc<dyn LocationSink>)
    }

    /// The recorder of the gateway's git-annex branch, started now if it was not yet.
    pub fn recorder(&self) -> Result<Arc<Recorder>, GatewayError> {
        self.recorder.get()
    }

    /// The (lazy) recorder of a local node repository's own branch.
    fn node_recorder(&self, git_dir: &Path) -> Arc<LazyRecorder> {
        let mut m = self
            .node_recorders
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            m.entry(git_dir.to_path_buf())
                .or_insert_with(|| Arc::new(LazyRecorder::new(git_dir, RecorderOptions::node()))),
        )
    }

    /// Commit every pending location change now (the gateway's and its local nodes').
    pub fn flush(&self) -> Result<(), GatewayError> {
        let mut first_err: Option<GatewayError> = self.recorder.flush().err();
        let nodes: Vec<Arc<LazyRecorder>> = self
            .node_recorders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for r in nodes {
            if let Err(e) = r.flush() {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The repositories the gateway's branch says hold `key` (clusters not added).
    pub fn locations(&self, key: &Key) -> Result<Vec<Uuid>, GatewayError> {
        // Once this gateway records, its own queued changes count too: a request must
        // see what the one before it did, committed or not.
        if let Some(r) = self.recorder.started() {
            return Ok(r.present_locations(key)?);
        }
        let repo = self.lock_repo();
        let view = repo.view()?;
        let path = location_log_path(key, self.config.branch_hash());
        let log = LocationLog::parse(&view.get(&path)?);
        Ok(log.present())
    }

    /// The description uuid.log gives a repository, if any.
    pub fn description(&self, uuid: &Uuid) -> Option<String> {
        self.view().ok()?.facts.descriptions.get(uuid).cloned()
    }

    /// Run `f` with the gateway's git repository.
    pub fn with_repo<T>(&self, f: impl FnOnce(&GitRepo) -> T) -> T {
        f(&self.lock_repo())
    }

    fn work_dir(&self) -> PathBuf {
        let repo = self.lock_repo();
        repo.work_tree()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| repo.git_dir().to_path_buf())
    }

    fn lock_repo(&self) -> std::sync::MutexGuard<'_, GitRepo> {
        self.repo.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The git config setting for the time allowed to P2P nodes (see [`Gateway::node_timeout`]).
pub const NODE_TIMEOUT: &str = "annexgate.node-timeout";

/// A positive, finite number of seconds (`30`, `2.5`).
fn parse_seconds(v: &str) -> Option<Duration> {
    let secs: f64 = v.trim().parse().ok()?;
    (secs.is_finite() && secs > 0.0 && secs < 1e9).then(|| Duration::from_secs_f64(secs))
}

/// Why a node could not be set up, without repeating its name.
fn unavailable_reason(e: NodeError) -> String {
    match e {
        NodeError::Unreachable { reason, .. } => reason,
        other => other.to_string(),
    }
}

fn special_kind_name(kind: &str) -> &'static str {
    match kind {
        "S3" => "S3 special remotes (not yet)",
        "external" => "external special remotes (not yet)",
        _ => "this type of special remote",
    }
}

/// Read the facts the gateway's view needs from the branch.
pub fn load_facts(view: &BranchView<'_>) -> Result<BranchFacts, RepoError> {
    let trust = TrustLog::parse(&view.get(b"trust.log")?);
    let dead = trust.dead();
    let clusters = Clusters::new(&ClusterLog::parse(&view.get(b"cluster.log")?), &dead);
    let proxies = ProxyLog::parse(&view.get(b"proxy.log")?).valid_proxies();
    let remote_configs = effective_remote_configs(&RemoteLog::parse(&view.get(b"remote.log")?));
    let descriptions = UuidLog::parse(&view.get(b"uuid.log")?)
        .values()
        .map(|(u, d)| (u.clone(), String::from_utf8_lossy(d).into_owned()))
        .collect();
    Ok(BranchFacts {
        proxies,
        clusters: clusters.nodes,
        remote_configs,
        descriptions,
        dead,
    })
}

/// Reports every change to several sinks (a local node's own branch and the gateway's).
pub struct TeeSink(pub Vec<Arc<dyn LocationSink>>);

impl LocationSink for TeeSink {
    fn record(&self, key: &Key, uuid: &Uuid, present: bool) {
        for s in &self.0 {
            s.record(key, uuid, present);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session that only reads must not open the git-annex branch or start the
    /// recorder's thread (it used to, for every session, when the node was made).
    #[tokio::test]
    async fn reading_does_not_start_the_recorder() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init_bare(dir.path()).unwrap();
        let mut cfg = repo.config().unwrap();
        cfg.set_str("annex.uuid", "5b0d7f4a-0000-4000-8000-000000000001")
            .unwrap();
        cfg.set_str("annex.version", "10").unwrap();
        // No git-annex branch at all: making a Recorder would fail.
        let gw = Arc::new(Gateway::open(GitRepo::open(dir.path()).unwrap()).unwrap());
        let node = gw.node_for(&Target::Local, &[]).unwrap();
        let key = Key::from_str("SHA256E-s5--abc.txt").unwrap();
        assert!(!node.check_present(&key).await.unwrap());
        assert!(node
            .get(&key, 0, &crate::types::AssociatedFile::none())
            .await
            .unwrap()
            .is_none());
        assert!(gw.recorder.cell.get().is_none(), "recorder started");
        gw.flush().unwrap();
        // The first change tries to start it; here that fails, and flush says so.
        gw.location_sink().unwrap().record(&key, gw.uuid(), true);
        assert!(gw.recorder.cell.get().is_some());
        assert!(gw.flush().is_err());
    }

    #[test]
    fn node_timeout_values() {
        assert_eq!(parse_seconds("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_seconds(" 2.5 "), Some(Duration::from_millis(2500)));
        for bad in ["", "0", "-1", "ten", "inf", "NaN", "1e12"] {
            assert_eq!(parse_seconds(bad), None, "{bad:?}");
        }
    }
}
