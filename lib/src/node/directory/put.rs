//! Receiving content (PUT) straight into the remote's directory.
//!
//! Bytes go to `<dir>/tmp/<keyFile>/<keyFile>` — for a chunked remote to one such temp
//! file per chunk key, each filled up to the chunk size — and are hashed as they arrive.
//! Only when every byte is in and the content matches its key are the temp directories
//! renamed into place, one per piece (git-annex's `finalizeStoreGeneric`: whatever was
//! at the destination goes, the new directory is renamed there, write bits removed), and
//! then the chunk count recorded. A failed verification deletes the temp files.
//!
//! An upload that breaks off leaves its temp files; the next upload of the key hashes
//! what they hold and asks for the rest (`PUT-FROM`), which git-annex's own proxy cannot
//! do. `DATA 0` + `INVALID` (the sender could not read the content) stores nothing and
//! keeps the partial files. While receiving a key we hold an exclusive lock on
//! `<dir>/tmp/annexgate/lck.<keyFile>`, so two uploads of one key — from this process or
//! another gateway process — never write the same temp files.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::layout::{chunk_count, is_stable};
use super::Inner;
use crate::node::localfs::{blocking, blocking_unless_small, disk_free, fsync_dir};
use crate::node::lock::{FileLock, LockKind};
use crate::node::{NodeError, PutSink, PutStart, Stored, Validity};
use crate::types::backend::{Verdict, Verifier};
use crate::types::Key;

const BUF: usize = 1 << 16;

/// How the content is laid out while stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Whole,
    Chunked(u64),
}

impl Plan {
    /// The key of piece `idx` (0-based).
    fn piece(&self, key: &Key, idx: u64) -> Key {
        match *self {
            Plan::Whole => key.clone(),
            Plan::Chunked(s) => key.chunk(s, idx + 1),
        }
    }

    /// Which piece byte `at` of the content goes to, and where in it.
    fn locate(&self, at: u64) -> (u64, u64) {
        match *self {
            Plan::Whole => (0, at),
            Plan::Chunked(s) => (at / s, at % s),
        }
    }

    /// How many pieces `total` bytes make.
    fn pieces(&self, total: u64) -> u64 {
        match *self {
            Plan::Whole => 1,
            Plan::Chunked(s) => chunk_count(total, s),
        }
    }

    /// The length of piece `idx` of `total` bytes.
    fn piece_len(&self, idx: u64, total: u64) -> u64 {
        match *self {
            Plan::Whole => total,
            Plan::Chunked(s) => total.saturating_sub(idx * s).min(s),
        }
    }
}

/// Our lock for receiving a key; released (its file deleted first, as git-annex does
/// with its lock files) when dropped.
struct UploadLock(Option<FileLock>);

impl Drop for UploadLock {
    fn drop(&mut self) {
        if let Some(l) = self.0.take() {
            let _ = fs::remove_file(l.path());
        }
    }
}

/// Our own upload in progress, counted against free space until it ends.
struct Reservation {
    inner: Arc<Inner>,
    key: Key,
}

impl Reservation {
    fn new(inner: Arc<Inner>, key: Key, bytes: u64) -> Reservation {
        inner
            .receiving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), bytes);
        Reservation { inner, key }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.inner
            .receiving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

/// git-annex's `checkDiskSpace` for the remote's directory: storing `need` more bytes
/// must leave the disk reserve free, after what our other uploads will still write.
fn check_disk_space(inner: &Inner, key: &Key, need: u64) -> Result<(), NodeError> {
    let ours: u64 = inner
        .receiving
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(k, _)| *k != key)
        .fold(0u64, |a, (_, v)| a.saturating_add(*v));
    let free = match disk_free(inner.top()) {
        Ok(f) => f,
        // git-annex goes ahead when it cannot tell.
        Err(e) => {
            tracing::debug!(error = %e, "cannot find free disk space");
            return Ok(());
        }
    };
    let available = free.saturating_sub(ours);
    let needed = need.saturating_add(inner.cfg.disk_reserve);
    if needed > available {
        return Err(NodeError::Full {
            node: inner.node_name(),
            needed,
            available,
        });
    }
    Ok(())
}

fn create_dir_once(dir: &Path) -> Result<(), NodeError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(NodeError::io("create", dir, e)),
    }
}

fn take_lock(inner: &Inner, key: &Key) -> Result<UploadLock, NodeError> {
    let path = inner.layout.upload_lock(key)?;
    create_dir_once(&inner.layout.tmp_root())?;
    create_dir_once(&inner.layout.lock_dir())?;
    let busy = || NodeError::Busy {
        node: inner.node_name(),
        detail: format!("an upload of {key} to this remote is already in progress"),
    };
    let lock = FileLock::try_lock(&path, LockKind::Exclusive, Some(0o666))
        .map_err(|e| NodeError::io("lock", &path, e))?
        .ok_or_else(busy)?;
    // The holder before us deletes the file before unlocking; a lock on that old file
    // excludes nobody.
    if !lock.is_sane() {
        return Err(busy());
    }
    Ok(UploadLock(Some(lock)))
}

/// The bytes already received into the temp files: whole pieces in a row from the
/// first, plus the partial one after them.
fn resume_offset(inner: &Inner, key: &Key, plan: Plan) -> Result<u64, NodeError> {
    let mut offset: u64 = 0;
    let mut idx: u64 = 0;
    loop {
        let (_, file) = inner.layout.tmp_dir_and_file(&plan.piece(key, idx))?;
        let len = match fs::symlink_metadata(&file) {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => {
                return Err(NodeError::io(
                    "use",
                    &file,
                    io::Error::new(io::ErrorKind::InvalidData, "not a regular file"),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(NodeError::io("stat", &file, e)),
        };
        match plan {
            Plan::Whole => {
                offset = len;
                break;
            }
            Plan::Chunked(s) => {
                if len > s {
                    // Not one of our chunks; start this one afresh.
                    let _ = fs::remove_file(&file);
                    break;
                }
                offset += len;
                if len < s || key.size().is_some_and(|size| offset >= size) {
                    break;
                }
                idx += 1;
            }
        }
    }
    // More than the content can be is not a prefix of it: start over.
    if key.size().is_some_and(|size| offset > size) {
        remove_pieces(inner, key, plan, idx + 1);
        offset = 0;
    }
    Ok(offset)
}

/// Delete the temp directories of the first `count` pieces.
fn remove_pieces(inner: &Inner, key: &Key, plan: Plan, count: u64) {
    for idx in 0..count {
        if let Ok((dir, _)) = inner.layout.tmp_dir_and_file(&plan.piece(key, idx)) {
            let _ = fs::remove_dir_all(&dir);
        }
    }
}

/// Start receiving `key`.
pub(super) async fn start(inner: &Arc<Inner>, key: &Key) -> Result<PutStart, NodeError> {
    let (len, fsync) = (key.size().unwrap_or(u64::MAX), inner.cfg.fsync);
    let inner = inner.clone();
    let key = key.clone();
    blocking_unless_small(len, fsync, move || start_blocking(inner, key)).await
}

fn start_blocking(inner: Arc<Inner>, key: Key) -> Result<PutStart, NodeError> {
    // Names every file of the upload needs must be possible.
    inner.layout.upload_lock(&key)?;
    let plan = match inner.cfg.chunk {
        Some(s) if is_stable(&key) && !key.is_chunk() => Plan::Chunked(s),
        _ => Plan::Whole,
    };
    let last = key.size().map_or(0, |size| plan.pieces(size) - 1);
    inner.layout.key_files(&plan.piece(&key, last))?;
    inner.top_accessible()?;
    if inner.check_present(&key)? {
        return Ok(PutStart::AlreadyHave { plus: Vec::new() });
    }
    let lock = take_lock(&inner, &key)?;
    let offset = resume_offset(&inner, &key, plan)?;
    let need = key.size().map_or(1, |s| s.saturating_sub(offset));
    check_disk_space(&inner, &key, need)?;
    let reservation = Reservation::new(inner.clone(), key.clone(), need);
    Ok(PutStart::Accept(Box::new(DirPutSink {
        inner,
        key,
        plan,
        offset,
        _lock: lock,
        _reservation: reservation,
        began: false,
        announced: 0,
        written: 0,
        current: None,
        syncing: VecDeque::new(),
        verifier: None,
    })))
}

/// A temp file being written.
struct Piece {
    file: File,
    path: PathBuf,
    /// Bytes in it so far.
    pos: u64,
}

struct DirPutSink {
    inner: Arc<Inner>,
    key: Key,
    plan: Plan,
    offset: u64,
    _lock: UploadLock,
    _reservation: Reservation,
    began: bool,
    announced: u64,
    written: u64,
    current: Option<Piece>,
    /// fsyncs of filled chunk files, running while later chunks arrive.
    syncing: VecDeque<(PathBuf, tokio::task::JoinHandle<io::Result<()>>)>,
    /// Hash of the whole content so far (the kept prefix included).
    verifier: Option<Verifier>,
}

/// Open the temp file of piece `idx` for writing at `pos`, dropping anything after it.
fn open_piece(
    inner: &Inner,
    key: &Key,
    plan: Plan,
    idx: u64,
    pos: u64,
) -> Result<Piece, NodeError> {
    let (dir, path) = inner.layout.tmp_dir_and_file(&plan.piece(key, idx))?;
    create_dir_once(&inner.layout.tmp_root())?;
    create_dir_once(&dir)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| NodeError::io("open", &path, e))?;
    let len = file
        .metadata()
        .map_err(|e| NodeError::io("stat", &path, e))?
        .len();
    if len < pos {
        return Err(NodeError::io(
            "resume",
            &path,
            io::Error::new(io::ErrorKind::UnexpectedEof, "partial file shrank"),
        ));
    }
    if len > pos {
        file.set_len(pos)
            .map_err(|e| NodeError::io("truncate", &path, e))?;
    }
    file.seek(SeekFrom::Start(pos))
        .map_err(|e| NodeError::io("seek", &path, e))?;
    Ok(Piece { file, path, pos })
}

/// Hash the kept prefix of an upload (the first `offset` bytes over the pieces).
fn hash_prefix(
    inner: &Inner,
    key: &Key,
    plan: Plan,
    offset: u64,
    v: &mut Verifier,
) -> Result<(), NodeError> {
    let mut buf = vec![0u8; BUF];
    let mut left = offset;
    let mut idx = 0;
    while left > 0 {
        let (_, path) = inner.layout.tmp_dir_and_file(&plan.piece(key, idx))?;
        let mut f = File::open(&path).map_err(|e| NodeError::io("open", &path, e))?;
        let mut in_piece = plan.piece_len(idx, offset);
        while in_piece > 0 {
            let want = BUF.min(in_piece as usize);
            let n = f
                .read(&mut buf[..want])
                .map_err(|e| NodeError::io("read", &path, e))?;
            if n == 0 {
                return Err(NodeError::io(
                    "resume",
                    &path,
                    io::Error::new(io::ErrorKind::UnexpectedEof, "partial file shrank"),
                ));
            }
            v.update(&buf[..n]);
            in_piece -= n as u64;
            left -= n as u64;
        }
        idx += 1;
    }
    Ok(())
}

/// Put every verified piece in place, record the chunking, report the content present.
fn finalize(inner: &Inner, key: &Key, plan: Plan, total: u64) -> Result<(), NodeError> {
    let count = plan.pieces(total);
    let _changing = inner.changes.lock().unwrap_or_else(|e| e.into_inner());
    inner.top_accessible()?;
    let mut synced: Vec<PathBuf> = Vec::new();
    for idx in 0..count {
        let piece = plan.piece(key, idx);
        let (tmp_dir, _) = inner.layout.tmp_dir_and_file(&piece)?;
        let [dest, _] = inner.layout.key_dirs(&piece)?;
        // Whatever was there goes; a failure to remove it fails the store.
        inner.remove_key_dir(&dest, false)?;
        let parent = dest.parent().map(Path::to_path_buf).unwrap_or_default();
        inner
            .perms
            .create_annex_dir(inner.top(), &parent)
            .map_err(|e| NodeError::io("create", &parent, e))?;
        fs::rename(&tmp_dir, &dest).map_err(|e| NodeError::io("move into place", &dest, e))?;
        // Best effort, as in git-annex: some file systems have no modes.
        if let Ok(entries) = fs::read_dir(&dest) {
            for e in entries.flatten() {
                let _ = inner.perms.freeze_content(&e.path());
            }
        }
        let _ = inner.perms.freeze_dir(&dest);
        // All chunks share one hash directory: sync it once, at the end.
        if inner.cfg.fsync && !synced.contains(&parent) {
            synced.push(parent);
        }
    }
    if inner.cfg.fsync {
        for d in &synced {
            fsync_dir(d);
        }
        fsync_dir(&inner.layout.tmp_root());
    }
    if let Plan::Chunked(s) = plan {
        inner
            .chunk_log
            .record_chunks(&inner.cfg.uuid, key, s, count);
    }
    inner.locations.record(key, &inner.cfg.uuid, true);
    Ok(())
}

/// At most this many chunk files are being fsynced at once (each holds a descriptor).
const SYNCS_IN_FLIGHT: usize = 8;

impl DirPutSink {
    fn node(&self) -> String {
        self.inner.node_name()
    }

    /// fsync a finished piece file while more data arrives.
    async fn sync_in_background(&mut self, piece: Piece) -> Result<(), NodeError> {
        if !self.inner.cfg.fsync {
            return Ok(());
        }
        let file = piece.file;
        let handle = tokio::task::spawn_blocking(move || file.sync_all());
        self.syncing.push_back((piece.path, handle));
        while self.syncing.len() > SYNCS_IN_FLIGHT {
            self.wait_one_sync().await?;
        }
        Ok(())
    }

    async fn wait_one_sync(&mut self) -> Result<(), NodeError> {
        let Some((path, handle)) = self.syncing.pop_front() else {
            return Ok(());
        };
        match handle.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(NodeError::io("fsync", path, e)),
            Err(e) => Err(NodeError::io(
                "fsync",
                path,
                io::Error::other(e.to_string()),
            )),
        }
    }

    fn protocol(&self, detail: String) -> NodeError {
        NodeError::Protocol {
            node: self.node(),
            detail,
        }
    }
}

#[async_trait]
impl PutSink for DirPutSink {
    fn offset(&self) -> u64 {
        self.offset
    }

    async fn begin(&mut self, len: u64) -> Result<(), NodeError> {
        if self.began {
            return Err(self.protocol("upload began twice".into()));
        }
        if self.key.size().is_none() {
            // Only now is the size known: check the space for it.
            check_disk_space(&self.inner, &self.key, len)?;
            self.inner
                .receiving
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(self.key.clone(), len);
        }
        self.announced = len;
        let (inner, key, plan, offset) =
            (self.inner.clone(), self.key.clone(), self.plan, self.offset);
        let (end, fsync) = (offset.saturating_add(len), inner.cfg.fsync);
        let (piece, verifier) = blocking_unless_small(end, fsync, move || {
            let mut v = Verifier::new(&key, true);
            hash_prefix(&inner, &key, plan, offset, &mut v)?;
            let (idx, pos) = plan.locate(offset);
            // A piece starts when its first byte comes, except the first one: empty
            // content is still one (empty) file.
            let piece = if offset == 0 || pos > 0 || plan == Plan::Whole {
                Some(open_piece(&inner, &key, plan, idx, pos)?)
            } else {
                None
            };
            Ok((piece, v))
        })
        .await?;
        self.current = piece;
        self.verifier = Some(verifier);
        self.began = true;
        Ok(())
    }

    async fn write(&mut self, mut data: &[u8]) -> Result<(), NodeError> {
        if !self.began {
            return Err(self.protocol("data before the upload began".into()));
        }
        if self.written + data.len() as u64 > self.announced {
            return Err(self.protocol(format!(
                "more data than the {} bytes announced",
                self.announced
            )));
        }
        while !data.is_empty() {
            if self.current.is_none() {
                let (idx, pos) = self.plan.locate(self.offset + self.written);
                self.current = Some(open_piece(&self.inner, &self.key, self.plan, idx, pos)?);
            }
            let piece = self.current.as_mut().expect("opened above");
            let room = match self.plan {
                Plan::Whole => data.len(),
                Plan::Chunked(s) => ((s - piece.pos) as usize).min(data.len()),
            };
            let (now, rest) = data.split_at(room);
            piece
                .file
                .write_all(now)
                .map_err(|e| NodeError::io("write", &piece.path, e))?;
            piece.pos += now.len() as u64;
            if let Some(v) = self.verifier.as_mut() {
                v.update(now);
            }
            self.written += now.len() as u64;
            if let Plan::Chunked(s) = self.plan {
                if piece.pos >= s {
                    let full = self.current.take().expect("written above");
                    self.sync_in_background(full).await?;
                }
            }
            data = rest;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>, validity: Validity) -> Result<Stored, NodeError> {
        if !self.began || self.written != self.announced {
            return Err(self.protocol(format!(
                "upload finished after {} of {} bytes",
                self.written, self.announced
            )));
        }
        if validity == Validity::Invalid && self.announced == 0 {
            // The sender could not read the content; keep what we have for a resume.
            return Ok(Stored::default());
        }
        if let Some(last) = self.current.take() {
            self.sync_in_background(last).await?;
        }
        while !self.syncing.is_empty() {
            self.wait_one_sync().await?;
        }
        // Pieces before this session's first were filled earlier and not synced yet.
        let (first_new, _) = self.plan.locate(self.offset);
        let verifier = self.verifier.take().expect("set by begin");
        let (inner, key, plan) = (self.inner.clone(), self.key.clone(), self.plan);
        let total = self.offset + self.announced;
        let fsync = inner.cfg.fsync;
        let stored = blocking_unless_small(total, fsync, move || {
            let mut verdict = verifier.finish(&key);
            let count = plan.pieces(total);
            // The temp files must hold exactly what was hashed.
            for idx in 0..count {
                if verdict != Verdict::Good {
                    break;
                }
                let (_, path) = inner.layout.tmp_dir_and_file(&plan.piece(&key, idx))?;
                let want = plan.piece_len(idx, total);
                let got = fs::symlink_metadata(&path).map(|m| m.len()).ok();
                if got != Some(want) {
                    verdict = Verdict::WrongSize {
                        expected: want,
                        got: got.unwrap_or(0),
                    };
                    break;
                }
                if inner.cfg.fsync && idx < first_new {
                    File::open(&path)
                        .and_then(|f| f.sync_all())
                        .map_err(|e| NodeError::io("fsync", &path, e))?;
                }
            }
            if verdict != Verdict::Good {
                tracing::warn!(key = %key, ?verdict, "verification of received content failed");
                // Resuming from bad bytes would fail forever.
                remove_pieces(&inner, &key, plan, count);
                return Ok(false);
            }
            finalize(&inner, &key, plan, total)?;
            Ok(true)
        })
        .await?;
        Ok(Stored {
            stored,
            plus: Vec::new(),
        })
    }

    async fn data_present(mut self: Box<Self>) -> Result<Stored, NodeError> {
        self.current.take();
        let inner = self.inner.clone();
        let key = self.key.clone();
        let present = blocking(move || {
            let present = inner.check_present(&key)?;
            if present {
                let _changing = inner.changes.lock().unwrap_or_else(|e| e.into_inner());
                inner.locations.record(&key, &inner.cfg.uuid, true);
            }
            Ok(present)
        })
        .await?;
        Ok(Stored {
            stored: present,
            plus: Vec::new(),
        })
    }

    async fn abort(mut self: Box<Self>) {
        // Keep the temp files for a resume; the lock goes with the sink.
        self.current.take();
    }
}
