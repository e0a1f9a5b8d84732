//! Locking content against removal, and removing it, with git-annex's v10 protocol.
//!
//! Files next to the object `O`: `O.lck` (the lock), `O.rtm` (retention timestamp: POSIX
//! seconds as git-annex shows them, e.g. `1795645386.274763823s`), `O.rtl` (lock held
//! while `O.rtm` is written).
//!
//! * Keep (`LOCKCONTENT`): shared lock on `O.lck`; write `O.rtm` = now + 600 s under an
//!   exclusive lock on `O.rtl`, atomically and never lowering a later value; check the
//!   lock file is still the one locked and the content still there. Unlock: drop the
//!   shared lock, try an exclusive one; if it is ours, delete `O.rtm` when it still holds
//!   our value, and delete `O.lck`.
//! * Remove: exclusive lock on `O.lck` (else someone keeps it); a future `O.rtm` refuses,
//!   a past one is deleted; then the REMOVE-BEFORE deadline; delete `O`, `O.lck` and the
//!   directories left empty.
//!
//! Two deliberate differences, both only ever keeping content longer: git-annex reads
//! `O.rtm` before taking the removal lock; we read it after, when no keeper can be writing
//! it, which closes a window where a keeper that wrote it and died in between would be
//! missed. And when our timestamp replaced an earlier one that is still in the future,
//! our unlock puts that one back instead of deleting the file, so a keeper before us that
//! died keeps the protection it promised.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::paths::{checked_key_file, with_suffix, AFFIX_MAX};
use super::{blocking, Inner};
use crate::node::lock::{FileLock, LockKind};
use crate::node::{ContentLock, NodeError};
use crate::types::Key;

/// How long a P2P content lock protects the content after its holder vanished
/// (git-annex's `p2pDefaultLockContentRetentionDuration`).
pub const RETENTION_SECS: i64 = 600;

/// A POSIX time with picosecond resolution (git-annex's `POSIXTime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PosixTime {
    picos: i128,
}

const PICOS: i128 = 1_000_000_000_000;

impl PosixTime {
    pub fn now() -> PosixTime {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        PosixTime {
            picos: d.as_secs() as i128 * PICOS + d.subsec_nanos() as i128 * 1000,
        }
    }

    pub fn plus_secs(self, secs: i64) -> PosixTime {
        PosixTime {
            picos: self.picos + secs as i128 * PICOS,
        }
    }

    #[cfg(test)]
    pub fn from_secs(secs: i64) -> PosixTime {
        PosixTime {
            picos: secs as i128 * PICOS,
        }
    }

    /// Parse the way git-annex does: `[-+]digits[.digits][s]` and nothing else.
    pub fn parse(b: &[u8]) -> Option<PosixTime> {
        let mut i = 0;
        let neg = match b.first() {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 20 {
            return None;
        }
        let secs: i128 = std::str::from_utf8(&b[start..i]).ok()?.parse().ok()?;
        let mut frac: i128 = 0;
        if i < b.len() && b[i] == b'.' {
            let fs = i + 1;
            let mut j = fs;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j == fs {
                return None;
            }
            // Picoseconds: the first 12 digits, right-padded.
            let mut digits = b[fs..j].to_vec();
            digits.truncate(12);
            while digits.len() < 12 {
                digits.push(b'0');
            }
            frac = std::str::from_utf8(&digits).ok()?.parse().ok()?;
            i = j;
        }
        if i < b.len() && b[i] == b's' {
            i += 1;
        }
        if i != b.len() {
            return None;
        }
        let picos = secs * PICOS + frac;
        Some(PosixTime {
            picos: if neg { -picos } else { picos },
        })
    }

    /// Format as git-annex shows a POSIXTime: fraction without trailing zeros, then `s`.
    pub fn format(self) -> String {
        let neg = self.picos < 0;
        let a = self.picos.abs();
        let secs = a / PICOS;
        let frac = a % PICOS;
        let mut s = if neg {
            format!("-{secs}")
        } else {
            secs.to_string()
        };
        if frac != 0 {
            let f = format!("{frac:012}");
            s.push('.');
            s.push_str(f.trim_end_matches('0'));
        }
        s.push('s');
        s
    }
}

/// Read a retention timestamp file; absent or unparsable counts as none, as in git-annex.
pub fn read_retention(rtm: &Path) -> Option<PosixTime> {
    fs::read(rtm).ok().and_then(|b| PosixTime::parse(&b))
}

/// Run `op` on files in the content directory `dir` with the directory thawed, freezing
/// it again afterwards. A permission error (another process froze the directory in
/// between) thaws again and retries a few times. Fails with `NotFound` when `dir` does not
/// exist.
pub(super) fn in_content_dir<T>(
    inner: &Inner,
    dir: &Path,
    op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    in_content_dir_made(inner, dir, false, op)
}

/// [`in_content_dir`] for a directory `dir`, which was made just now when `made`: then
/// it is not thawed first (a new directory is writable; if not, the permission error
/// thaws it and the operation is tried again).
pub(super) fn in_content_dir_made<T>(
    inner: &Inner,
    dir: &Path,
    made: bool,
    mut op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    let _g = inner.dir_mutex.lock().unwrap_or_else(|e| e.into_inner());
    if !made {
        inner.perms.thaw_dir(dir)?;
    }
    let mut tries = 0;
    let r = loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && tries < 5 => {
                tries += 1;
                let _ = inner.perms.thaw_dir(dir);
            }
            r => break r,
        }
    };
    if let Err(e) = inner.perms.freeze_dir(dir) {
        if dir.exists() {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot freeze content directory");
        }
    }
    r
}

fn remove_if_exists(p: &Path) -> io::Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Remove the directories a removed file leaves empty: its own and then the hash
/// directories above it, `depth` levels in all, stopping at the first non-empty one.
pub(super) fn clean_object_dirs(file: &Path, depth: usize) {
    let mut cur = file;
    for _ in 0..depth {
        let Some(dir) = cur.parent() else { return };
        if fs::remove_dir(dir).is_err() {
            return;
        }
        cur = dir;
    }
}

/// Write `content` to `target` atomically: into a temp file under `annex/othertmp`
/// (holding git-annex's shared lock on `othertmp.lck`, so its cleaner leaves it alone),
/// then renamed over `target`.
pub(super) fn atomic_write(inner: &Inner, target: &Path, content: &[u8]) -> io::Result<()> {
    let dir = inner.layout.othertmp_dir();
    inner
        .perms
        .create_annex_dir(&inner.cfg.git_dir, &inner.layout.annex_dir)?;
    let _othertmp_lock = FileLock::try_lock(
        &inner.layout.othertmp_lock(),
        LockKind::Shared,
        Some(inner.perms.file_create_mode()),
    )?;
    inner.perms.create_annex_dir(&inner.cfg.git_dir, &dir)?;
    let n = inner.counter.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!("annexgate.{}.{}", std::process::id(), n));
    let res = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(content)?;
        drop(f);
        inner.perms.set_annex_file_perm(&tmp);
        fs::rename(&tmp, target)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Take a lock without waiting long: git-annex holds `.rtl` only while it writes a few
/// bytes, so a lock that stays taken for seconds means something is stuck.
fn lock_briefly(path: &Path, mode: u32) -> io::Result<FileLock> {
    let start = Instant::now();
    loop {
        if let Some(l) = FileLock::try_lock(path, LockKind::Exclusive, Some(mode))? {
            return Ok(l);
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} stayed locked for 10 s", path.display()),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

struct KeyPaths {
    obj: PathBuf,
    dir: PathBuf,
    lck: PathBuf,
    rtm: PathBuf,
    rtl: PathBuf,
}

fn key_paths(inner: &Inner, key: &Key) -> Result<KeyPaths, NodeError> {
    let kf = checked_key_file(key, AFFIX_MAX)?;
    let obj = inner.layout.object_path(key, &kf);
    let dir = obj.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(KeyPaths {
        lck: with_suffix(&obj, ".lck"),
        rtm: with_suffix(&obj, ".rtm"),
        rtl: with_suffix(&obj, ".rtl"),
        obj,
        dir,
    })
}

/// A shared content lock we hold (LOCKCONTENT). Dropping it unlocks.
pub(super) struct HeldContentLock {
    inner: Arc<Inner>,
    paths: KeyPaths,
    lock: Option<FileLock>,
    retention: PosixTime,
    /// A still-running protection by someone else that our timestamp replaced.
    replaced: Option<PosixTime>,
}

/// Lock present content against removal for as long as the returned lock lives, and for
/// [`RETENTION_SECS`] after, should this process die holding it. `None` when the content
/// is absent or being removed.
pub(super) fn lock_shared(
    inner: &Arc<Inner>,
    key: &Key,
) -> Result<Option<HeldContentLock>, NodeError> {
    let p = key_paths(inner, key)?;
    if !p.obj.exists() {
        return Ok(None);
    }
    let mode = inner.perms.file_create_mode();
    let lock = match in_content_dir(inner, &p.dir, || {
        FileLock::try_lock(&p.lck, LockKind::Shared, Some(mode))
    }) {
        Ok(Some(l)) => l,
        Ok(None) => {
            tracing::debug!(key = %key, "content is being removed; cannot lock");
            return Ok(None);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(NodeError::io("lock", &p.lck, e)),
    };
    let retention = PosixTime::now().plus_secs(RETENTION_SECS);
    let replaced = match write_retention(inner, &p, retention) {
        Ok(r) => r,
        Err(e) => {
            // Without the timestamp the lock would not outlive us as promised: give it up.
            drop(lock);
            return Err(NodeError::io("write retention timestamp", &p.rtm, e));
        }
    };
    if !lock.is_sane() {
        return Ok(None);
    }
    let held = HeldContentLock {
        inner: inner.clone(),
        paths: p,
        lock: Some(lock),
        retention,
        replaced,
    };
    if !held.paths.obj.exists() {
        drop(held);
        return Ok(None);
    }
    Ok(Some(held))
}

/// Write `ts` unless a later time is there already; returns the earlier time it replaced.
fn write_retention(inner: &Inner, p: &KeyPaths, ts: PosixTime) -> io::Result<Option<PosixTime>> {
    let mode = inner.perms.file_create_mode();
    in_content_dir(inner, &p.dir, || {
        let _rtl = lock_briefly(&p.rtl, mode)?;
        let existing = read_retention(&p.rtm);
        if existing.is_some_and(|e| e >= ts) {
            return Ok(None);
        }
        atomic_write(inner, &p.rtm, ts.format().as_bytes())?;
        Ok(existing)
    })
}

impl HeldContentLock {
    fn release(&mut self) {
        let Some(shared) = self.lock.take() else {
            return;
        };
        drop(shared);
        let inner = &self.inner;
        let p = &self.paths;
        let mode = inner.perms.file_create_mode();
        let res = in_content_dir(inner, &p.dir, || {
            // Only when nobody else holds it may the lock file and our timestamp go.
            let Some(ex) = FileLock::try_lock(&p.lck, LockKind::Exclusive, Some(mode))? else {
                return Ok(());
            };
            if read_retention(&p.rtm) == Some(self.retention) {
                match self.replaced {
                    // git-annex would delete the file here, dropping the protection a
                    // locker before us (perhaps one that died) still counts on; put its
                    // time back instead.
                    Some(prev) if prev > PosixTime::now() => {
                        atomic_write(inner, &p.rtm, prev.format().as_bytes())?
                    }
                    _ => {
                        remove_if_exists(&p.rtm)?;
                        remove_if_exists(&p.rtl)?;
                    }
                }
            }
            if ex.is_sane() {
                remove_if_exists(&p.lck)?;
            }
            drop(ex);
            Ok(())
        });
        match res {
            Ok(()) => clean_object_dirs(&p.lck, inner.layout.object_depth()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(lock = %p.lck.display(), error = %e, "cannot clean up content lock")
            }
        }
    }
}

impl Drop for HeldContentLock {
    fn drop(&mut self) {
        self.release();
    }
}

#[async_trait]
impl ContentLock for HeldContentLock {
    async fn unlock(mut self: Box<Self>) -> Result<(), NodeError> {
        blocking(move || {
            self.release();
            Ok(())
        })
        .await
    }
}

/// What [`remove`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RemoveOutcome {
    /// The content is not here now (REMOVE's SUCCESS).
    pub removed: bool,
    /// We deleted it (so the location log and hook must hear of it).
    pub deleted: bool,
}

const KEPT: RemoveOutcome = RemoveOutcome {
    removed: false,
    deleted: false,
};

/// Remove the content unless something keeps it; with `deadline`, only while the boot
/// clock is still below it (REMOVE-BEFORE).
pub(super) fn remove(
    inner: &Inner,
    key: &Key,
    deadline: Option<u64>,
) -> Result<RemoveOutcome, NodeError> {
    let p = key_paths(inner, key)?;
    if !p.obj.exists() {
        return Ok(RemoveOutcome {
            removed: true,
            deleted: false,
        });
    }
    let mode = inner.perms.file_create_mode();
    let lock = match in_content_dir(inner, &p.dir, || {
        FileLock::try_lock(&p.lck, LockKind::Exclusive, Some(mode))
    }) {
        Ok(Some(l)) => l,
        Ok(None) => {
            tracing::info!(key = %key, "not removing: the content is locked");
            return Ok(KEPT);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(RemoveOutcome {
                removed: true,
                deleted: false,
            })
        }
        Err(e) => return Err(NodeError::io("lock", &p.lck, e)),
    };
    let mut guard = RemovalLock {
        inner,
        paths: &p,
        lock: Some(lock),
    };
    if !guard.lock.as_ref().is_some_and(FileLock::is_sane) {
        // Someone deleted the lock file under us: they are cleaning up a lock of their
        // own; ours protects nothing, so do not remove.
        guard.lock = None;
        return Ok(KEPT);
    }
    if let Some(ts) = read_retention(&p.rtm) {
        if PosixTime::now() <= ts {
            tracing::info!(key = %key, until = %ts.format(), "not removing: a retention timestamp keeps the content");
            return Ok(KEPT);
        }
        in_content_dir(inner, &p.dir, || {
            remove_if_exists(&p.rtm)?;
            remove_if_exists(&p.rtl)
        })
        .map_err(|e| NodeError::io("remove", &p.rtm, e))?;
    }
    if let Some(d) = deadline {
        let now = crate::node::boottime_secs();
        if now >= d {
            tracing::info!(key = %key, now, deadline = d, "not removing: REMOVE-BEFORE deadline passed");
            return Ok(KEPT);
        }
    }
    in_content_dir(inner, &p.dir, || remove_if_exists(&p.obj))
        .map_err(|e| NodeError::io("remove", &p.obj, e))?;
    drop(guard);
    Ok(RemoveOutcome {
        removed: true,
        deleted: true,
    })
}

/// The exclusive lock of a removal: on drop the lock file is deleted while still locked
/// (as git-annex does, so lockers that opened it see it is stale), then the lock is
/// released and empty directories are pruned.
struct RemovalLock<'a> {
    inner: &'a Inner,
    paths: &'a KeyPaths,
    lock: Option<FileLock>,
}

impl Drop for RemovalLock<'_> {
    fn drop(&mut self) {
        let Some(lock) = self.lock.take() else {
            return;
        };
        let p = self.paths;
        if let Err(e) = in_content_dir(self.inner, &p.dir, || remove_if_exists(&p.lck)) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(lock = %p.lck.display(), error = %e, "cannot remove lock file");
            }
        }
        drop(lock);
        clean_object_dirs(&p.lck, self.inner.layout.object_depth());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posix_times_as_git_annex_writes_them() {
        let t = PosixTime::parse(b"1795645386.274763823s").unwrap();
        assert_eq!(t.format(), "1795645386.274763823s");
        assert_eq!(
            PosixTime::parse(b"1795645386").unwrap().format(),
            "1795645386s"
        );
        assert_eq!(PosixTime::parse(b"12.5").unwrap().format(), "12.5s");
        assert_eq!(
            PosixTime::parse(b"12.5s").unwrap(),
            PosixTime::from_secs(12)
                .plus_secs(0)
                .max(PosixTime::parse(b"12.5").unwrap())
        );
        assert!(PosixTime::parse(b"12.5s").unwrap() > PosixTime::from_secs(12));
        assert!(PosixTime::parse(b"12.5s").unwrap() < PosixTime::from_secs(13));
        for bad in [&b""[..], b"s", b"12.", b"12.s", b"12x", b"12s\n", b"1.2.3"] {
            assert_eq!(
                PosixTime::parse(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let now = PosixTime::now();
        assert_eq!(PosixTime::parse(now.format().as_bytes()), Some(now));
        assert_eq!(now.plus_secs(600).picos - now.picos, 600 * PICOS);
    }
}
