//! Batching location changes into the git-annex branch.
//!
//! A [`Recorder`] takes location changes (key, repository UUID, present or not) from any
//! thread and commits them to `refs/heads/git-annex` in batches: shortly after a change (a
//! background thread it owns commits [`RecorderOptions::delay`] after the first change of
//! a batch, and at least [`RecorderOptions::spacing`] after its previous commit), on
//! [`Recorder::flush`], and when dropped. Every commit writes a pack holding the branch's
//! changed trees (the top one lists every hash directory, tens of KiB in a big
//! repository), and the packs must later be repacked, so during a long stream of changes
//! the spacing, not the number of changes, decides how much that costs.
//!
//! For each key it reads the location log as git-annex would (branch, git-annex's journal,
//! unmerged sibling branches), leaves it alone if every change is already what the log
//! says, and otherwise writes the log compacted with new lines timed by the next-timestamp
//! rule (starting from `GIT_ANNEX_VECTOR_CLOCK` when set, as git-annex does). Changes
//! that fail to commit stay queued and are retried; errors are logged and returned by
//! `flush`, never panics.
//!
//! Cluster UUIDs are never written to location logs, and UUIDs configured private are not
//! written to the branch at all (git-annex keeps those in its private journal).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::log::chunk::{ChunkLog as ChunkLogFile, ChunkMethod};
use super::log::paths::{key_log_path, location_log_path, BranchHash, KeyLog};
use super::log::{LocationLog, Timestamp};
use super::repo::{BranchView, GitRepo, ObjectId, RepoError};
use crate::node::{ChunkLog, LocationSink};
use crate::types::{Key, Uuid};

/// Errors of the recorder.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("could not record {changes} location change(s) in the git-annex branch: {source}")]
    Commit { changes: usize, source: RepoError },
    #[error("could not update the git-annex branch: {source}")]
    Update { source: RepoError },
    #[error("cannot open the repository for recording: {source}")]
    Open { source: RepoError },
    #[error("the recorder's background thread could not be started: {source}")]
    Thread { source: std::io::Error },
}

/// Settings of a [`Recorder`].
#[derive(Debug, Clone)]
pub struct RecorderOptions {
    /// How long after the first change of a batch the background thread commits it.
    pub delay: Duration,
    /// The least time between two commits of the background thread (a flush commits at
    /// once): changes arriving faster than this are committed together.
    pub spacing: Duration,
    /// A fixed candidate time for new lines (like `GIT_ANNEX_VECTOR_CLOCK`); `None` reads
    /// that variable, falling back to the current time.
    pub vector_clock: Option<Timestamp>,
}

impl Default for RecorderOptions {
    fn default() -> Self {
        RecorderOptions {
            delay: Duration::from_millis(300),
            spacing: Duration::from_secs(1),
            vector_clock: None,
        }
    }
}

impl RecorderOptions {
    /// For the own branch of a repository the gateway stores into as a node. Clients learn
    /// where content is from the gateway's branch (committed with the default pacing), so
    /// these commits may wait seconds: until then the node's own log under-reports what
    /// it holds, which is safe, and a session commits what is left when it ends.
    pub fn node() -> RecorderOptions {
        RecorderOptions {
            delay: Duration::from_secs(2),
            spacing: Duration::from_secs(2),
            vector_clock: None,
        }
    }
}

/// Queued changes: location changes, and chunk-log changes of special remotes
/// (`(remote, chunk size)` -> chunk count) that go into the same commits.
#[derive(Default)]
struct Batch {
    locations: BTreeMap<Key, BTreeMap<Uuid, bool>>,
    chunks: BTreeMap<Key, BTreeMap<(Uuid, u64), u64>>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.locations.is_empty() && self.chunks.is_empty()
    }
    fn len(&self) -> usize {
        self.locations.values().map(|m| m.len()).sum::<usize>()
            + self.chunks.values().map(|m| m.len()).sum::<usize>()
    }
    /// Put back changes of a failed batch, unless newer ones arrived meanwhile.
    fn restore(&mut self, old: Batch) {
        for (key, m) in old.locations {
            let e = self.locations.entry(key).or_default();
            for (u, p) in m {
                e.entry(u).or_insert(p);
            }
        }
        for (key, m) in old.chunks {
            let e = self.chunks.entry(key).or_default();
            for (f, n) in m {
                e.entry(f).or_insert(n);
            }
        }
    }
}

struct State {
    pending: Batch,
    first_pending: Option<Instant>,
    retry_at: Option<Instant>,
    /// When the last batch was committed (or failed to commit).
    last_commit: Option<Instant>,
    failures: u32,
    shutdown: bool,
}

struct Shared {
    /// The repository, also serialising commits (a batch is taken from `state` only while
    /// this is held, so batches commit in the order they were taken).
    repo: Mutex<GitRepo>,
    state: Mutex<State>,
    wake: Condvar,
    delay: Duration,
    spacing: Duration,
    vector_clock: Option<Timestamp>,
    hash: BranchHash,
    private: BTreeSet<Uuid>,
    path: PathBuf,
}

/// Records location changes into the git-annex branch of one repository.
pub struct Recorder {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("repo", &self.shared.path)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not stop recording: the data is still consistent (every
    // update under these locks is a plain insert or take).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Recorder {
    /// A recorder for the repository at `path` (which must have a git-annex branch).
    pub fn new(path: impl AsRef<Path>) -> Result<Recorder, RecordError> {
        Recorder::with_options(path, RecorderOptions::default())
    }

    pub fn with_options(
        path: impl AsRef<Path>,
        opts: RecorderOptions,
    ) -> Result<Recorder, RecordError> {
        let path = path.as_ref().to_path_buf();
        let repo = GitRepo::open(&path).map_err(|source| RecordError::Open { source })?;
        repo.branch_tip()
            .map_err(|source| RecordError::Open { source })?;
        let cfg = repo
            .config()
            .map_err(|source| RecordError::Open { source })?;
        let vector_clock = opts.vector_clock.or_else(|| {
            std::env::var_os("GIT_ANNEX_VECTOR_CLOCK").and_then(|v| {
                use std::os::unix::ffi::OsStrExt;
                Timestamp::parse(v.as_bytes())
            })
        });
        let shared = Arc::new(Shared {
            hash: cfg.branch_hash(),
            private: cfg.private_uuids(),
            repo: Mutex::new(repo),
            state: Mutex::new(State {
                pending: Batch::default(),
                first_pending: None,
                retry_at: None,
                last_commit: None,
                failures: 0,
                shutdown: false,
            }),
            wake: Condvar::new(),
            delay: opts.delay,
            spacing: opts.spacing,
            vector_clock,
            path,
        });
        let s2 = Arc::clone(&shared);
        let worker = std::thread::Builder::new()
            .name("annexgate-recorder".into())
            .spawn(move || s2.run())
            .map_err(|source| RecordError::Thread { source })?;
        Ok(Recorder {
            shared,
            worker: Some(worker),
        })
    }

    /// Queue a location change.
    pub fn record_location(&self, key: &Key, uuid: &Uuid, present: bool) {
        if self.shared.private.contains(uuid) {
            tracing::debug!(%uuid, "not recording a location of a private repository in the branch");
            return;
        }
        let mut st = lock(&self.shared.state);
        st.pending
            .locations
            .entry(key.clone())
            .or_default()
            .insert(uuid.clone(), present);
        self.started_batch(st);
    }

    /// After queueing a change: a batch that starts with it gets its clock started and
    /// the background thread woken to time it; later changes join the batch without
    /// waking anybody (a wake-up per change was two context switches per file stored).
    fn started_batch(&self, mut st: MutexGuard<'_, State>) {
        if st.first_pending.is_some() {
            return;
        }
        st.first_pending = Some(Instant::now());
        drop(st);
        self.shared.wake.notify_all();
    }

    /// Number of changes waiting to be committed.
    pub fn pending(&self) -> usize {
        lock(&self.shared.state).pending.len()
    }

    /// Queue a chunk-log change: special remote `remote` holds `count` chunks of
    /// `chunk_size` bytes of `key` (0: removed). Committed with the location changes.
    pub fn record_chunk_count(&self, key: &Key, remote: &Uuid, chunk_size: u64, count: u64) {
        if self.shared.private.contains(remote) {
            return;
        }
        let mut st = lock(&self.shared.state);
        st.pending
            .chunks
            .entry(key.non_chunk())
            .or_default()
            .insert((remote.clone(), chunk_size), count);
        self.started_batch(st);
    }

    /// The repositories holding `key` as its location log says, with the changes queued
    /// here applied: what the branch will say once they are committed. Readers in the
    /// same process use this, so a change is seen at once, not only after the batch
    /// commits. (The branch is read under the commit lock, so no batch is half-way.)
    pub fn present_locations(&self, key: &Key) -> Result<Vec<Uuid>, RepoError> {
        let repo = lock(&self.shared.repo);
        let path = location_log_path(key, self.shared.hash);
        let mut log = LocationLog::parse(&repo.view()?.get(&path)?);
        let st = lock(&self.shared.state);
        if let Some(changes) = st.pending.locations.get(key) {
            // Applied as the commit will apply them (cluster UUIDs are never recorded).
            let now = self.shared.candidate();
            for (uuid, has) in changes {
                log.record(uuid, *has, now);
            }
        }
        Ok(log.present())
    }

    /// The chunkings of `key` recorded for `remote` with a count above 0 (`(chunk size,
    /// count)`), from the branch as git-annex reads it, with queued changes applied.
    pub fn chunk_counts(&self, remote: &Uuid, key: &Key) -> Vec<(u64, u64)> {
        let key = key.non_chunk();
        let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
        {
            let repo = lock(&self.shared.repo);
            let path = key_log_path(&key, KeyLog::Chunk, self.shared.hash);
            match repo.view().and_then(|v| v.get(&path)) {
                Ok(content) => {
                    for (method, n) in ChunkLogFile::parse(&content).chunkings(remote) {
                        if let ChunkMethod::FixedSize(size) = method {
                            counts.insert(size, n);
                        }
                    }
                }
                Err(e) => tracing::warn!("cannot read the chunk log of {key}: {e}"),
            }
        }
        let st = lock(&self.shared.state);
        if let Some(m) = st.pending.chunks.get(&key) {
            for ((u, size), n) in m {
                if u == remote {
                    counts.insert(*size, *n);
                }
            }
        }
        counts.into_iter().filter(|(_, n)| *n > 0).collect()
    }

    /// Commit everything queued now. `Ok` means every change recorded so far is in the
    /// branch (or needed no change).
    pub fn flush(&self) -> Result<Option<ObjectId>, RecordError> {
        self.shared.commit_pending()
    }

    /// Change other logs of the branch (uuid.log, proxy.log, cluster.log, maxsize.log...):
    /// `edit` gets a view of the branch as git-annex reads it (without private
    /// information) and the candidate timestamp for new lines, and returns the files to
    /// write. Runs now, in this thread, with compare-and-swap retries (so `edit` may run
    /// more than once); returns the new commit, or `None` if nothing changed.
    pub fn record_logs<F>(&self, mut edit: F) -> Result<Option<ObjectId>, RecordError>
    where
        F: FnMut(&BranchView<'_>, Timestamp) -> Result<Vec<(Vec<u8>, Vec<u8>)>, RepoError>,
    {
        let repo = lock(&self.shared.repo);
        let now = self.shared.candidate();
        let out = repo
            .update("update", |view| edit(view, now))
            .map_err(|source| RecordError::Update { source })?;
        Ok(out.commit)
    }
}

impl LocationSink for Recorder {
    fn record(&self, key: &Key, uuid: &Uuid, present: bool) {
        self.record_location(key, uuid, present)
    }
}

impl ChunkLog for Recorder {
    fn chunks(&self, remote: &Uuid, key: &Key) -> Vec<(u64, u64)> {
        self.chunk_counts(remote, key)
    }
    fn record_chunks(&self, remote: &Uuid, key: &Key, chunk_size: u64, count: u64) {
        self.record_chunk_count(key, remote, chunk_size, count)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        lock(&self.shared.state).shutdown = true;
        self.shared.wake.notify_all();
        if let Some(w) = self.worker.take() {
            if w.join().is_err() {
                tracing::error!("the location recorder's thread panicked");
            }
        }
        if let Err(e) = self.shared.commit_pending() {
            tracing::error!("{e}");
        }
    }
}

impl Shared {
    fn candidate(&self) -> Timestamp {
        self.vector_clock.unwrap_or_else(|| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            Timestamp::from_secs(now)
        })
    }

    /// The background thread: commit each batch `delay` after its first change.
    fn run(&self) {
        loop {
            {
                let mut st = lock(&self.state);
                loop {
                    if st.shutdown {
                        return;
                    }
                    let now = Instant::now();
                    let due = st.first_pending.map(|first| {
                        let at = first + self.delay;
                        let at = st.last_commit.map_or(at, |l| at.max(l + self.spacing));
                        st.retry_at.map_or(at, |r| r.max(at))
                    });
                    match due {
                        Some(at) if at <= now => break,
                        Some(at) => {
                            st = self
                                .wake
                                .wait_timeout(st, at - now)
                                .unwrap_or_else(|p| p.into_inner())
                                .0;
                        }
                        None => {
                            st = self.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                        }
                    }
                }
            }
            if let Err(e) = self.commit_pending() {
                tracing::error!("{e}; will retry");
            }
        }
    }

    /// Take the queued changes and commit them; on failure put them back (unless newer
    /// changes for the same key and UUID arrived meanwhile).
    fn commit_pending(&self) -> Result<Option<ObjectId>, RecordError> {
        let repo = lock(&self.repo);
        let batch = {
            let mut st = lock(&self.state);
            st.first_pending = None;
            if !st.pending.is_empty() {
                st.last_commit = Some(Instant::now());
            }
            std::mem::take(&mut st.pending)
        };
        if batch.is_empty() {
            return Ok(None);
        }
        let changes = batch.len();
        match self.commit_batch(&repo, &batch) {
            Ok(c) => {
                let mut st = lock(&self.state);
                st.failures = 0;
                st.retry_at = None;
                if let Some(c) = c {
                    tracing::debug!(commit = %c, changes, "recorded location changes");
                }
                Ok(c)
            }
            Err(source) => {
                let mut st = lock(&self.state);
                st.pending.restore(batch);
                st.first_pending.get_or_insert_with(Instant::now);
                st.failures = st.failures.saturating_add(1);
                let backoff = Duration::from_millis(500) * 2u32.pow(st.failures.min(6));
                st.retry_at = Some(Instant::now() + backoff);
                Err(RecordError::Commit { changes, source })
            }
        }
    }

    fn commit_batch(&self, repo: &GitRepo, batch: &Batch) -> Result<Option<ObjectId>, RepoError> {
        let now = self.candidate();
        let n = batch.len();
        let message = format!("update (annexgate: {n} change(s))");
        let out = repo.update(&message, |view| {
            let mut files = Vec::new();
            for (key, changes) in &batch.chunks {
                let path = key_log_path(key, KeyLog::Chunk, self.hash);
                let mut log = ChunkLogFile::parse(&view.get_for_write(&path)?);
                let mut changed = false;
                for ((uuid, size), count) in changes {
                    changed |= log.set((uuid.clone(), ChunkMethod::FixedSize(*size)), *count, now);
                }
                if changed {
                    files.push((path, log.format()));
                }
            }
            for (key, changes) in &batch.locations {
                let path = location_log_path(key, self.hash);
                let mut log = LocationLog::parse(&view.get_for_write(&path)?);
                let mut changed = false;
                for (uuid, present) in changes {
                    changed |= log.record(uuid, *present, now);
                }
                if changed {
                    files.push((path, log.format()));
                }
            }
            Ok(files)
        })?;
        Ok(out.commit)
    }
}
