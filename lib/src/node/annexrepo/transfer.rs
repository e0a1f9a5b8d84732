//! git-annex's transfer locks for receiving a key, and the free-space check before it.
//!
//! Receiving key K (a "download" in git-annex's terms, whoever sends it) holds an exclusive
//! lock on `annex/transfer/download/lck/lck.<keyFile>` — the lock every git-annex since
//! 10.20240227 takes for any download of K, so two receivers of one key never write its
//! temp file at once. When the sender's UUID is known we also take the per-sender lock
//! `annex/transfer/download/<uuid>/lck.<keyFile>` that git-annex takes second, and write
//! the transfer info file `annex/transfer/download/<uuid>/<keyFile>` (start time, then
//! the associated file), which git-annex reads to show transfers and to count the space
//! that downloads in progress will still take.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::content_lock::PosixTime;
use super::paths::checked_key_file;
use super::{Inner, AFFIX_MAX};
use crate::node::localfs::disk_free;
use crate::node::lock::{lock_status, FileLock, LockKind, LockStatus};
use crate::node::NodeError;
use crate::types::key::file_key;
use crate::types::{AssociatedFile, Key, Uuid};

/// Held transfer locks; dropping releases them and removes their files.
#[derive(Debug)]
pub(super) struct TransferLock {
    main: Option<FileLock>,
    peer: Option<FileLock>,
    info: Option<PathBuf>,
}

impl Drop for TransferLock {
    fn drop(&mut self) {
        // git-annex's order: info file, lock files (while still locked), then unlock.
        if let Some(info) = &self.info {
            let _ = fs::remove_file(info);
        }
        if let Some(l) = &self.main {
            let _ = fs::remove_file(l.path());
        }
        if let Some(l) = &self.peer {
            let _ = fs::remove_file(l.path());
        }
        self.peer.take();
        self.main.take();
    }
}

fn take(path: &Path, inner: &Inner) -> io::Result<Option<FileLock>> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    inner.dirs.ensure(&inner.perms, &inner.cfg.git_dir, dir)?;
    let lock = || {
        FileLock::try_lock(
            path,
            LockKind::Exclusive,
            Some(inner.perms.file_create_mode()),
        )
    };
    let taken = match lock() {
        // The lock directory was removed since we knew it: make it again.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            inner.dirs.forget(dir);
            inner.dirs.ensure(&inner.perms, &inner.cfg.git_dir, dir)?;
            lock()
        }
        r => r,
    };
    let Some(l) = taken? else {
        return Ok(None);
    };
    // The holder before us deletes the file before unlocking; if we opened the old one,
    // our lock is on a file nobody else will see.
    if l.is_sane() {
        inner.perms.set_annex_file_perm(path);
        Ok(Some(l))
    } else {
        Ok(None)
    }
}

/// Take the locks for receiving `key`; `None` when another transfer of it is running.
pub(super) fn lock_download(
    inner: &Inner,
    key: &Key,
    af: &AssociatedFile,
    peer: Option<&Uuid>,
) -> Result<Option<TransferLock>, NodeError> {
    let kf = checked_key_file(key, AFFIX_MAX)?;
    let main_path = inner.layout.download_lock(&kf);
    let Some(main) = take(&main_path, inner).map_err(|e| NodeError::io("lock", &main_path, e))?
    else {
        return Ok(None);
    };
    let mut tl = TransferLock {
        main: Some(main),
        peer: None,
        info: None,
    };
    let Some(peer) = peer else {
        return Ok(Some(tl));
    };
    let Some((peer_lock, info)) = inner.layout.download_peer_paths(peer, &kf) else {
        tracing::warn!(peer = %peer, "sender UUID is not a safe file name; no transfer info recorded");
        return Ok(Some(tl));
    };
    match take(&peer_lock, inner).map_err(|e| NodeError::io("lock", &peer_lock, e))? {
        Some(l) => tl.peer = Some(l),
        None => return Ok(None),
    }
    let mut text = PosixTime::now().format();
    text.push('\n');
    if let Some(f) = af.path() {
        text.push_str(&String::from_utf8_lossy(f));
    }
    text.push('\n');
    // Informational only: a failure to write it does not stop the transfer.
    match fs::write(&info, text) {
        Ok(()) => {
            inner.perms.set_annex_file_perm(&info);
            tl.info = Some(info);
        }
        Err(e) => tracing::warn!(file = %info.display(), error = %e, "cannot write transfer info"),
    }
    Ok(Some(tl))
}

/// Bytes that downloads into this repository by other processes still have to write:
/// every transfer info file under `annex/transfer/download/*/` whose key's download lock
/// is held, counted as the key's size minus the bytes the file says are done. Keys in
/// `skip` (ours, counted separately) are left out.
pub(super) fn others_in_progress(inner: &Inner, skip: &dyn Fn(&Key) -> bool) -> u64 {
    let dl = inner.layout.download_dir();
    let mut total: u64 = 0;
    for d in sender_dirs(inner, &dl) {
        let Ok(files) = fs::read_dir(&d) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name();
            let name = name.as_bytes();
            if name.starts_with(b"lck.") {
                continue;
            }
            let Ok(key) = file_key(name) else { continue };
            if skip(&key) {
                continue;
            }
            let Some(size) = key.size() else { continue };
            let lck = dl
                .join("lck")
                .join(OsStr::from_bytes(&[b"lck.", name].concat()));
            if !matches!(lock_status(&lck), Ok(LockStatus::Locked { .. })) {
                continue;
            }
            let done = fs::read(f.path())
                .ok()
                .and_then(|b| {
                    let line = b.split(|&c| c == b'\n').next()?.to_vec();
                    let text = String::from_utf8(line).ok()?;
                    text.split(' ').nth(1)?.parse::<u64>().ok()
                })
                .unwrap_or(0);
            total = total.saturating_add(size.saturating_sub(done));
        }
    }
    total
}

/// A listing of `annex/transfer/download`: its sender directories, with the directory's
/// stat and the time it was read.
pub(super) struct Listing {
    stamp: (u64, i64, i64),
    read_at: SystemTime,
    dirs: Vec<PathBuf>,
}

/// How much older than the listing a directory's modification time must be for the
/// listing to be used again: file systems stamp times from a clock that ticks coarsely,
/// so an entry added just after the listing, in the same tick, would not change it.
const LISTING_SETTLED: Duration = Duration::from_millis(50);

/// The per-sender directories under `dl` (every entry but `lck`), listed again only when
/// `dl` itself changed: an upload asks this for every key, and the directory nearly never
/// changes (our own locks live in `lck`).
fn sender_dirs(inner: &Inner, dl: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::metadata(dl) else {
        return Vec::new();
    };
    let stamp = (meta.ino(), meta.mtime(), meta.mtime_nsec());
    let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let mut cache = inner.downloads.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = cache.as_ref() {
        let settled = mtime + LISTING_SETTLED <= l.read_at;
        if l.stamp == stamp && settled {
            return l.dirs.clone();
        }
    }
    let read_at = SystemTime::now();
    let Ok(entries) = fs::read_dir(dl) else {
        *cache = None;
        return Vec::new();
    };
    let dirs: Vec<PathBuf> = entries
        .flatten()
        .filter(|d| d.file_name() != "lck")
        .map(|d| d.path())
        .collect();
    *cache = Some(Listing {
        stamp,
        read_at,
        dirs: dirs.clone(),
    });
    dirs
}

/// git-annex's `checkDiskSpace`: storing `need` more bytes must leave `annex.diskreserve`
/// free, after what other downloads in progress will still take.
pub(super) fn check_disk_space(inner: &Inner, key: &Key, need: u64) -> Result<(), NodeError> {
    let ours: u64 = {
        let r = inner.receiving.lock().unwrap_or_else(|e| e.into_inner());
        r.iter()
            .filter(|(k, _)| *k != key)
            .map(|(_, v)| *v)
            .fold(0u64, |a, b| a.saturating_add(b))
    };
    let skip = |k: &Key| {
        k == key
            || inner
                .receiving
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(k)
    };
    let others = others_in_progress(inner, &skip);
    let free = match disk_free(&inner.layout.annex_dir) {
        Ok(f) => f,
        // git-annex goes ahead when it cannot tell.
        Err(e) => {
            tracing::debug!(error = %e, "cannot find free disk space");
            return Ok(());
        }
    };
    let committed = ours.saturating_add(others);
    let available = free.saturating_sub(committed);
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
