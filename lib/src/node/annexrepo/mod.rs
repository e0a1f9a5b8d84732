//! A local git-annex repository served directly as a [`Node`]: its object store is read
//! and written the way git-annex itself does, without running git-annex and without
//! touching git (location changes go to a [`LocationSink`]).
//!
//! The format (`spec/keys-and-objects.md`): content of key K lives in
//! `GITDIR/annex/objects/<hashdir>/<keyFile>/<keyFile>`, read-only in a read-only
//! directory. Uploads are received into `annex/tmp/<keyFile>` (its size is the resume
//! offset), verified, and renamed into place. Receiving a key holds git-annex's download
//! transfer lock `annex/transfer/download/lck/lck.<keyFile>`, so annexgate and a git-annex
//! process never write one temp file at once. Content locking is git-annex's v10 scheme:
//! `<object>.lck` locked shared to keep and exclusive to remove, `<object>.rtm` holding a
//! time before which a P2P-locked copy must not be removed even if its locker died (see
//! [`crate::node::lock`] for why our locks are open-file-description locks).
//!
//! Modules: [`config`] (settings from git config), `paths` (layout), `perms` (modes),
//! `content_lock` (keep/remove locking), `transfer` (transfer locks, disk space),
//! `put` and `get` (the data paths).

pub mod config;
mod content_lock;
mod get;
mod paths;
pub(crate) mod perms;
mod put;
mod transfer;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

pub use config::{AnnexRepoConfig, ConfigError, ObjectHash, SharedRepository};

use crate::node::{Caps, Content, ContentLock, LocationSink, Node, NodeError, PutStart, Removed};
use crate::types::{AssociatedFile, Key, Uuid};

use crate::node::localfs::blocking;
use paths::{checked_key_file, Layout, AFFIX_MAX, NAME_MAX};
use perms::Perms;

/// A local git-annex repository (version 10 or later) as a node.
#[derive(Clone)]
pub struct AnnexRepo {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    cfg: AnnexRepoConfig,
    layout: Layout,
    perms: Perms,
    locations: Arc<dyn LocationSink>,
    /// Serialises our own thaw/modify/freeze of content directories, so two tasks of this
    /// process never freeze a directory under each other's feet.
    dir_mutex: Mutex<()>,
    /// Our uploads in progress: key -> bytes still to come (for the disk-space check).
    receiving: Mutex<HashMap<Key, u64>>,
    /// For unique temporary file names.
    counter: AtomicU64,
    /// Directories known to exist (see [`perms::KnownDirs`]).
    dirs: perms::KnownDirs,
    /// The listing of `annex/transfer/download` last read (see
    /// [`transfer::others_in_progress`]).
    downloads: Mutex<Option<transfer::Listing>>,
    /// When `hooks/annex-content` was last found missing (or not executable): trusted for
    /// [`HOOK_RECHECK`], so an upload after upload does not look for it again each time.
    no_hook_since: Mutex<Option<Instant>>,
}

/// How long a look that found no `hooks/annex-content` is trusted: a hook installed
/// while a session runs is run from a second later on.
const HOOK_RECHECK: Duration = Duration::from_secs(1);

impl AnnexRepo {
    /// Serve the repository `cfg` describes, reporting every content change to
    /// `locations`.
    pub fn new(cfg: AnnexRepoConfig, locations: Arc<dyn LocationSink>) -> AnnexRepo {
        let layout = Layout::new(&cfg);
        let perms = Perms {
            shared: cfg.shared,
            crippled: cfg.crippled,
        };
        AnnexRepo {
            inner: Arc::new(Inner {
                cfg,
                layout,
                perms,
                locations,
                dir_mutex: Mutex::new(()),
                receiving: Mutex::new(HashMap::new()),
                counter: AtomicU64::new(0),
                dirs: Default::default(),
                downloads: Mutex::new(None),
                no_hook_since: Mutex::new(None),
            }),
        }
    }

    pub fn config(&self) -> &AnnexRepoConfig {
        &self.inner.cfg
    }

    /// Where the key's content is, or would be stored.
    pub fn object_path(&self, key: &Key) -> Result<PathBuf, NodeError> {
        let kf = checked_key_file(key, 0)?;
        Ok(self.inner.layout.object_path(key, &kf))
    }

    /// Where a partial upload of the key is kept.
    pub fn tmp_path(&self, key: &Key) -> Result<PathBuf, NodeError> {
        let kf = checked_key_file(key, AFFIX_MAX)?;
        Ok(self.inner.layout.tmp_path(&kf))
    }

    /// Start an upload sent by the repository `peer` (recorded in git-annex's transfer
    /// info file, as git-annex-shell records the client's UUID). [`Node::put`] is this
    /// with no peer.
    pub async fn put_from(
        &self,
        key: &Key,
        af: &AssociatedFile,
        peer: Option<&Uuid>,
    ) -> Result<PutStart, NodeError> {
        put::start(&self.inner, key, af, peer).await
    }
}

impl Inner {
    fn node_name(&self) -> String {
        self.cfg.name.clone()
    }

    fn is_present(&self, key: &Key) -> Result<bool, NodeError> {
        let kf = checked_key_file(key, 0)?;
        Ok(self
            .layout
            .object_candidates(key, &kf)
            .iter()
            .any(|p| p.exists()))
    }

    fn record(&self, key: &Key, present: bool) {
        self.locations.record(key, &self.cfg.uuid, present);
    }

    /// `hooks/annex-content` if it is an executable file (a look that found none is
    /// trusted for [`HOOK_RECHECK`]).
    fn content_hook(&self) -> Option<PathBuf> {
        let mut no_hook = self.no_hook_since.lock().unwrap_or_else(|e| e.into_inner());
        if no_hook.is_some_and(|t| t.elapsed() < HOOK_RECHECK) {
            return None;
        }
        let hook = self.cfg.hooks_dir.join("annex-content");
        let executable = std::fs::metadata(&hook)
            .map(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
            .unwrap_or(false);
        *no_hook = (!executable).then(Instant::now);
        executable.then_some(hook)
    }

    /// Run `hooks/annex-content` if it exists, as git-annex-shell documents it does after
    /// content is received or removed. Its output goes to our stderr (stdout may carry a
    /// protocol); a failing hook is logged, never an error of the transfer.
    async fn run_content_hook(&self) {
        let Some(hook) = self.content_hook() else {
            return;
        };
        let cwd = self.cfg.work_tree.as_deref().unwrap_or(&self.cfg.git_dir);
        let stdout = {
            use std::os::fd::AsFd;
            std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map(std::process::Stdio::from)
                .unwrap_or_else(|_| std::process::Stdio::null())
        };
        let res = tokio::process::Command::new(&hook)
            .current_dir(cwd)
            .stdin(std::process::Stdio::null())
            .stdout(stdout)
            .status()
            .await;
        match res {
            Ok(st) if st.success() => {}
            Ok(st) => {
                tracing::warn!(hook = %hook.display(), status = %st, "annex-content hook failed")
            }
            Err(e) => {
                tracing::warn!(hook = %hook.display(), error = %e, "cannot run annex-content hook")
            }
        }
    }
}

#[async_trait]
impl Node for AnnexRepo {
    fn uuid(&self) -> &Uuid {
        &self.inner.cfg.uuid
    }

    fn name(&self) -> &str {
        &self.inner.cfg.name
    }

    fn caps(&self) -> Caps {
        Caps {
            lock: true,
            remove_before: true,
            resume: true,
        }
    }

    async fn check_present(&self, key: &Key) -> Result<bool, NodeError> {
        // A key whose file name could not exist here is simply absent.
        if crate::types::key::key_file(key).len() > NAME_MAX {
            return Ok(false);
        }
        self.inner.is_present(key)
    }

    async fn lock_content(&self, key: &Key) -> Result<Option<Box<dyn ContentLock>>, NodeError> {
        let inner = self.inner.clone();
        let key = key.clone();
        let held = blocking(move || content_lock::lock_shared(&inner, &key)).await?;
        Ok(held.map(|h| Box::new(h) as Box<dyn ContentLock>))
    }

    async fn get(
        &self,
        key: &Key,
        offset: u64,
        _af: &AssociatedFile,
    ) -> Result<Option<Box<dyn Content>>, NodeError> {
        get::open(&self.inner, key, offset)
    }

    async fn put(&self, key: &Key, af: &AssociatedFile) -> Result<PutStart, NodeError> {
        put::start(&self.inner, key, af, None).await
    }

    async fn remove(&self, key: &Key, deadline: Option<u64>) -> Result<Removed, NodeError> {
        let inner = self.inner.clone();
        let k = key.clone();
        let outcome = blocking(move || content_lock::remove(&inner, &k, deadline)).await?;
        if outcome.deleted {
            self.inner.record(key, false);
            self.inner.run_content_hook().await;
        }
        Ok(Removed {
            removed: outcome.removed,
            plus: Vec::new(),
            error: None,
        })
    }

    async fn timestamp(&self) -> Result<u64, NodeError> {
        Ok(crate::node::boottime_secs())
    }
}
