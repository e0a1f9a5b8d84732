//! git-annex's `directory` special remote as a [`Node`]: content kept by key in a plain
//! directory (often a mounted drive), in exactly git-annex's layout, so git-annex
//! configured with the same remote sees the same content.
//!
//! The format (`spec/keys-and-objects.md` §4, see [`layout`] for the paths): key K lives
//! in `<dir>/<hashdirlower(K)>/<keyFile(K)>/<keyFile(K)>`, file and directory without
//! write bits; readers also look under `hashdirmixed`. A remote with `chunk=SIZE` stores
//! stable keys as chunk keys `K-S<SIZE>-C<n>` laid out the same way, and the chunk log
//! (`KEY.log.cnk`, through [`ChunkLog`]) records `SIZE` and the chunk count. A key counts
//! as present when its whole file exists, or every chunk of a recorded chunking (or of the
//! chunking the current `chunk=` would make, which is then recorded).
//!
//! Beyond what git-annex does when it proxies a special remote, uploads stream straight
//! into the remote's own `<dir>/tmp/<keyFile>/` while being hashed, become visible only
//! once the whole content verified (renamed into place like git-annex's
//! `finalizeStoreGeneric`), and are resumable: a broken upload stays in `tmp/` and the
//! next one continues from its end (`PUT-FROM`). Free space is checked against
//! `annex.diskreserve` before data is accepted.
//!
//! A directory has no locks and no clock: content cannot be locked (as with every special
//! remote in git-annex), and `REMOVE-BEFORE` deadlines are compared with this machine's
//! [`crate::node::boottime_secs`], which is also what [`Node::timestamp`] answers. A
//! missing directory (an unmounted drive) makes checks and removals fail rather than
//! claim absence.

pub mod chunklog;
pub mod config;
mod get;
mod layout;
mod put;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

pub use chunklog::MemoryChunkLog;
pub use config::{ConfigError, DirectoryConfig};

use crate::node::annexrepo::config::SharedRepository;
use crate::node::annexrepo::perms::Perms;
use crate::node::localfs::{blocking, FileContent};
use crate::node::{
    Caps, ChunkLog, Content, ContentLock, LocationSink, Node, NodeError, PutStart, Removed,
};
use crate::types::{AssociatedFile, Key, Uuid};

use layout::{chunk_count, chunkings, Chunking, Layout};

/// A `directory` special remote as a node.
#[derive(Clone)]
pub struct Directory {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    cfg: DirectoryConfig,
    layout: Layout,
    perms: Perms,
    locations: Arc<dyn LocationSink>,
    chunk_log: Arc<dyn ChunkLog>,
    /// Our uploads in progress: key -> bytes still to come (for the disk-space check).
    receiving: Mutex<HashMap<Key, u64>>,
    /// Held while content is put in place or removed together with the report of it, so
    /// reports of one key reach the sinks in the order the changes happened.
    changes: Mutex<()>,
}

impl Directory {
    /// Serve the remote `cfg` describes. Content changes are reported to `locations`
    /// (under the remote's UUID), chunkings read from and recorded in `chunk_log`.
    pub fn new(
        cfg: DirectoryConfig,
        locations: Arc<dyn LocationSink>,
        chunk_log: Arc<dyn ChunkLog>,
    ) -> Directory {
        let layout = Layout::new(&cfg.dir);
        Directory {
            inner: Arc::new(Inner {
                layout,
                // git-annex's preventWrite/allowWrite: write bits off and back on.
                perms: Perms {
                    shared: SharedRepository::UnShared,
                    crippled: false,
                },
                cfg,
                locations,
                chunk_log,
                receiving: Mutex::new(HashMap::new()),
                changes: Mutex::new(()),
            }),
        }
    }

    pub fn config(&self) -> &DirectoryConfig {
        &self.inner.cfg
    }

    /// Where the key's whole content is, or would be stored (its lower-hash location, or
    /// the mixed-hash one where old git-annex versions left it).
    pub fn object_path(&self, key: &Key) -> Result<PathBuf, NodeError> {
        let [lower, mixed] = self.inner.layout.key_files(key)?;
        Ok(if !lower.exists() && mixed.exists() {
            mixed
        } else {
            lower
        })
    }

    /// Where an upload of the key (or of one chunk key) is assembled.
    pub fn tmp_path(&self, key: &Key) -> Result<PathBuf, NodeError> {
        Ok(self.inner.layout.tmp_dir_and_file(key)?.1)
    }
}

/// The place where a key's content was found.
struct Found {
    chunking: Chunking,
    /// The file of every piece, in order.
    files: Vec<PathBuf>,
}

impl Inner {
    fn node_name(&self) -> String {
        self.cfg.name.clone()
    }

    fn top(&self) -> &Path {
        &self.layout.top
    }

    /// Fail unless the remote's directory is there (git-annex: "directory … is not
    /// accessible"); a missing one most likely is a drive that is not mounted.
    fn top_accessible(&self) -> Result<(), NodeError> {
        let top = self.top();
        match fs::metadata(top) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(NodeError::io(
                "use remote directory",
                top,
                io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            )),
            Err(e) => Err(NodeError::io(
                "use remote directory",
                top,
                io::Error::new(
                    e.kind(),
                    format!("directory is not accessible (not mounted?): {e}"),
                ),
            )),
        }
    }

    fn chunkings(&self, key: &Key) -> Vec<Chunking> {
        let recorded = self.chunk_log.chunks(&self.cfg.uuid, key);
        chunkings(key, self.cfg.chunk, &recorded)
    }

    /// The content file of one piece, if it exists in either hash location.
    fn piece_file(&self, piece: &Key) -> Result<Option<PathBuf>, NodeError> {
        let Ok(files) = self.layout.key_files(piece) else {
            // No file can have this name, so it is not here.
            return Ok(None);
        };
        for f in files {
            match fs::metadata(&f) {
                Ok(m) if m.is_file() => return Ok(Some(f)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if e.kind() == io::ErrorKind::NotADirectory => {}
                Err(e) => return Err(NodeError::io("stat", &f, e)),
            }
        }
        Ok(None)
    }

    /// Every piece of a chunking, if all are present.
    fn locate(&self, key: &Key, ch: Chunking) -> Result<Option<Vec<PathBuf>>, NodeError> {
        let mut files = Vec::new();
        for piece in ch.pieces(key) {
            match self.piece_file(&piece)? {
                Some(f) => files.push(f),
                None => return Ok(None),
            }
        }
        Ok(Some(files))
    }

    /// Where the key's whole content is, in the first complete way of storing it.
    fn find(&self, key: &Key) -> Result<Option<Found>, NodeError> {
        for chunking in self.chunkings(key) {
            if let Some(files) = self.locate(key, chunking)? {
                return Ok(Some(Found { chunking, files }));
            }
        }
        self.top_accessible()?;
        Ok(None)
    }

    /// git-annex's presence rule; a chunking found by guessing gets recorded, so a later
    /// change of `chunk=` does not lose it.
    fn check_present(&self, key: &Key) -> Result<bool, NodeError> {
        match self.find(key)? {
            Some(Found {
                chunking:
                    Chunking::Fixed {
                        size,
                        count,
                        speculative: true,
                    },
                ..
            }) => {
                self.chunk_log
                    .record_chunks(&self.cfg.uuid, key, size, count);
                Ok(true)
            }
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }

    /// Delete one key (or chunk key) directory and prune its empty parents, as git-annex's
    /// `removeDirGeneric`. Returns whether there was something to delete.
    fn remove_key_dir(&self, dir: &Path, prune: bool) -> Result<bool, NodeError> {
        let top = self.top();
        match fs::symlink_metadata(dir) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => return Ok(false),
            Err(e) => return Err(NodeError::io("stat", dir, e)),
        }
        let _ = self.perms.thaw_dir(dir);
        if let Err(e) = fs::remove_dir_all(dir) {
            // Gone meanwhile is fine; anything else (or the top gone) is not.
            if !(top.is_dir() && fs::symlink_metadata(dir).is_err()) {
                return Err(NodeError::io("remove", dir, e));
            }
        }
        if prune {
            let mut p = dir.parent();
            while let Some(d) = p {
                if d == top || !d.starts_with(top) || fs::remove_dir(d).is_err() {
                    break;
                }
                p = d.parent();
            }
        }
        Ok(true)
    }

    /// Remove every stored form of the key: whole, each recorded chunking, the chunking
    /// the current setting would make; record removed chunkings in the chunk log.
    fn remove(&self, key: &Key, deadline: Option<u64>) -> Result<Removed, NodeError> {
        self.top_accessible()?;
        let recorded = self.chunk_log.chunks(&self.cfg.uuid, key);
        let mut all = chunkings(key, self.cfg.chunk, &recorded);
        // Recorded chunkings that do not fit the key's size are not content, but their
        // chunks are still ours to remove.
        for &(size, count) in &recorded {
            if size == 0 || count == 0 || key.is_chunk() {
                continue;
            }
            let count = key
                .size()
                .map_or(count, |s| count.min(chunk_count(s, size)));
            let c = Chunking::Fixed {
                size,
                count,
                speculative: false,
            };
            if !all.iter().any(
                |x| matches!(x, Chunking::Fixed { size: s, speculative: false, .. } if *s == size),
            ) {
                all.push(c);
            }
        }
        if let Some(d) = deadline {
            let now = crate::node::boottime_secs();
            if now >= d {
                tracing::info!(key = %key, now, deadline = d, "not removing: REMOVE-BEFORE deadline passed");
                return Ok(Removed {
                    removed: false,
                    plus: Vec::new(),
                    error: None,
                });
            }
        }
        let _changing = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let mut deleted = false;
        for chunking in all {
            let mut deleted_here = false;
            for piece in chunking.pieces(key) {
                let Ok(dirs) = self.layout.key_dirs(&piece) else {
                    continue;
                };
                for d in dirs {
                    deleted_here |= self.remove_key_dir(&d, true)?;
                }
            }
            deleted |= deleted_here;
            if let Chunking::Fixed {
                size, speculative, ..
            } = chunking
            {
                if !speculative || deleted_here {
                    self.chunk_log.record_chunks(&self.cfg.uuid, key, size, 0);
                }
            }
        }
        if deleted {
            self.locations.record(key, &self.cfg.uuid, false);
        }
        Ok(Removed {
            removed: true,
            plus: Vec::new(),
            error: None,
        })
    }
}

#[async_trait]
impl Node for Directory {
    fn uuid(&self) -> &Uuid {
        &self.inner.cfg.uuid
    }

    fn name(&self) -> &str {
        &self.inner.cfg.name
    }

    fn caps(&self) -> Caps {
        Caps {
            lock: false,
            remove_before: true,
            resume: true,
        }
    }

    async fn check_present(&self, key: &Key) -> Result<bool, NodeError> {
        let inner = self.inner.clone();
        let key = key.clone();
        blocking(move || inner.check_present(&key)).await
    }

    async fn lock_content(&self, _key: &Key) -> Result<Option<Box<dyn ContentLock>>, NodeError> {
        // A directory cannot hold a lock other processes would honour.
        Ok(None)
    }

    async fn get(
        &self,
        key: &Key,
        offset: u64,
        _af: &AssociatedFile,
    ) -> Result<Option<Box<dyn Content>>, NodeError> {
        let inner = self.inner.clone();
        let key = key.clone();
        blocking(move || {
            let Some(found) = inner.find(&key)? else {
                return Ok(None);
            };
            let name = inner.node_name();
            Ok(match found.chunking {
                Chunking::Whole => FileContent::open_first(&found.files, offset, &name)?
                    .map(|c| Box::new(c) as Box<dyn Content>),
                Chunking::Fixed { .. } => Some(Box::new(get::ChunkedContent::open(
                    found.files,
                    offset,
                    name,
                )?) as Box<dyn Content>),
            })
        })
        .await
    }

    async fn put(&self, key: &Key, _af: &AssociatedFile) -> Result<PutStart, NodeError> {
        put::start(&self.inner, key).await
    }

    async fn remove(&self, key: &Key, deadline: Option<u64>) -> Result<Removed, NodeError> {
        let inner = self.inner.clone();
        let key = key.clone();
        blocking(move || inner.remove(&key, deadline)).await
    }

    async fn timestamp(&self) -> Result<u64, NodeError> {
        Ok(crate::node::boottime_secs())
    }
}
