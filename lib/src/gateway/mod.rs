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

use std::sync::{Arc, Mutex, OnceLock};

use crate::branch::log::uuidlogs::UuidLog;
use crate::branch::recorder::{RecordError, Recorder};
use crate::branch::repo::{GitConfig, GitRepo, RepoError};
use crate::node::annexrepo::{AnnexRepo, AnnexRepoConfig};
use crate::node::{LocationSink, Node, NodeError};
use crate::types::Uuid;

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
    recorder: OnceLock<Result<Arc<Recorder>, String>>,
    local: OnceLock<Arc<AnnexRepo>>,
}

impl Gateway {
    /// Open a git-annex repository as a gateway. It must be initialised (have a UUID).
    pub fn open(repo: GitRepo) -> Result<Gateway, GatewayError> {
        let config = repo.config()?;
        let uuid = config.annex_uuid().ok_or(GatewayError::NotAnnex)?;
        Ok(Gateway {
            repo: Mutex::new(repo),
            config,
            uuid,
            recorder: OnceLock::new(),
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
    /// branch, in batches.
    pub fn location_sink(&self) -> Result<Arc<dyn LocationSink>, GatewayError> {
        Ok(self.recorder()? as Arc<dyn LocationSink>)
    }

    fn recorder(&self) -> Result<Arc<Recorder>, GatewayError> {
        let path = self.lock_repo().git_dir().to_path_buf();
        match self.recorder.get_or_init(|| {
            Recorder::new(&path)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        }) {
            Ok(r) => Ok(Arc::clone(r)),
            Err(e) => Err(GatewayError::Config(e.clone())),
        }
    }

    /// Commit every pending location change now.
    pub fn flush(&self) -> Result<(), GatewayError> {
        if let Some(Ok(r)) = self.recorder.get() {
            r.flush()?;
        }
        Ok(())
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
