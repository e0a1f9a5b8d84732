//! The gateway: a git-annex repository that serves itself and, when its configuration
//! allows, the repositories and clusters it proxies for. Both front doors
//! (annexgate-shell and annexgate-http) open a [`Gateway`], [`Gateway::resolve`] the UUID
//! the client named, and get a [`Node`] for it.
//!
//! Resolution follows git-annex-shell's `--uuid` rules (spec `git-annex-shell.md` §2):
//! no UUID or the repository's own serves the repository; a UUID this repository proxies
//! for (its own `proxy.log` entry and its git config agreeing) serves that node or
//! cluster; a UUID with a known description that it does not proxy gets
//! `not configured to proxy for repository <desc>`; anything else
//! `expected repository UUID X but found UUID Y`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use crate::branch::log::uuidlogs::UuidLog;
use crate::branch::recorder::{RecordError, Recorder};
use crate::branch::repo::{GitConfig, GitRepo, RepoError};
use crate::node::annexrepo::{AnnexRepo, AnnexRepoConfig};
use crate::node::{LocationSink, Node, NodeError};
use crate::types::{Key, Uuid};

/// What a client's `--uuid` (or HTTP path UUID) selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The gateway repository itself.
    Local,
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
    #[error("{0}")]
    Record(#[from] RecordError),
}

/// A gateway repository, opened once per process (shell) or per repository (http).
pub struct Gateway {
    repo: Mutex<GitRepo>,
    config: GitConfig,
    uuid: Uuid,
    recorder: Arc<LazyRecorder>,
    local: OnceLock<Arc<AnnexRepo>>,
}

/// The gateway's [`Recorder`], made when the first location change arrives: a session
/// that only reads never opens the git-annex branch or starts the recorder's thread.
struct LazyRecorder {
    git_dir: PathBuf,
    cell: OnceLock<Result<Arc<Recorder>, String>>,
}

impl LazyRecorder {
    fn get(&self) -> Result<Arc<Recorder>, GatewayError> {
        match self.cell.get_or_init(|| {
            Recorder::new(&self.git_dir)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        }) {
            Ok(r) => Ok(Arc::clone(r)),
            Err(e) => Err(GatewayError::Config(e.clone())),
        }
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

impl Gateway {
    /// Open a git-annex repository as a gateway. It must be initialised (have a UUID).
    pub fn open(repo: GitRepo) -> Result<Gateway, GatewayError> {
        let config = repo.config()?;
        let uuid = config.annex_uuid().ok_or(GatewayError::NotAnnex)?;
        let recorder = Arc::new(LazyRecorder {
            git_dir: repo.git_dir().to_path_buf(),
            cell: OnceLock::new(),
        });
        Ok(Gateway {
            repo: Mutex::new(repo),
            config,
            uuid,
            recorder,
            local: OnceLock::new(),
        })
    }

    pub fn uuid(&self) -> &Uuid {
        &self.uuid
    }

    pub fn config(&self) -> &GitConfig {
        &self.config
    }

    /// Which repository a client's UUID selects.
    pub fn resolve(&self, wanted: Option<&str>) -> Result<Target, GatewayError> {
        let Some(w) = wanted else {
            return Ok(Target::Local);
        };
        if w == self.uuid.as_str() {
            return Ok(Target::Local);
        }
        match self.description(w) {
            Some(description) => Err(GatewayError::NotProxied { description }),
            None => Err(GatewayError::UnexpectedUuid {
                expected: w.to_string(),
                found: self.uuid.clone(),
            }),
        }
    }

    /// The UUID a target answers as (sent in `AUTH-SUCCESS`).
    pub fn target_uuid(&self, target: &Target) -> &Uuid {
        match target {
            Target::Local => &self.uuid,
        }
    }

    /// The node serving `target`, for a session whose client sent `bypass`.
    pub fn node_for(&self, target: &Target, _bypass: &[Uuid]) -> Result<Arc<dyn Node>, NodeError> {
        match target {
            Target::Local => Ok(self.local_node().map_err(|e| NodeError::Unreachable {
                node: self.uuid.to_string(),
                reason: e.to_string(),
            })? as Arc<dyn Node>),
        }
    }

    /// The gateway repository's own object store.
    pub fn local_node(&self) -> Result<Arc<AnnexRepo>, GatewayError> {
        if let Some(n) = self.local.get() {
            return Ok(Arc::clone(n));
        }
        let git_dir = self.lock_repo().git_dir().to_path_buf();
        let cfg = AnnexRepoConfig::from_git_config(&git_dir, |name| self.config.get(name))
            .map_err(|e| GatewayError::Config(e.to_string()))?;
        let sink = self.location_sink()?;
        let node = Arc::new(AnnexRepo::new(cfg, sink));
        Ok(Arc::clone(self.local.get_or_init(|| node)))
    }

    /// Where location changes made through this gateway are recorded: its git-annex
    /// branch, in batches (the recorder starts with the first change).
    pub fn location_sink(&self) -> Result<Arc<dyn LocationSink>, GatewayError> {
        Ok(Arc::clone(&self.recorder) as Arc<dyn LocationSink>)
    }

    /// The recorder of the gateway's git-annex branch, started now if it was not yet.
    pub fn recorder(&self) -> Result<Arc<Recorder>, GatewayError> {
        self.recorder.get()
    }

    /// Commit every pending location change now.
    pub fn flush(&self) -> Result<(), GatewayError> {
        self.recorder.flush()
    }

    /// The description uuid.log gives a repository, if any.
    pub fn description(&self, uuid: &str) -> Option<String> {
        let u = Uuid::parse(uuid).ok()?;
        let repo = self.lock_repo();
        let view = repo.view().ok()?;
        let log = UuidLog::parse(&view.get(b"uuid.log").ok()?);
        log.get(&u).map(|d| String::from_utf8_lossy(d).into_owned())
    }

    fn lock_repo(&self) -> std::sync::MutexGuard<'_, GitRepo> {
        self.repo.lock().unwrap_or_else(|p| p.into_inner())
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
        let gw = Gateway::open(GitRepo::open(dir.path()).unwrap()).unwrap();
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
}
