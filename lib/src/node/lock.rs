//! Whole-file record locks compatible with git-annex's.
//!
//! git-annex locks its lock files (content `.lck`, retention `.rtl`, transfer `lck.*`) with
//! POSIX `fcntl` record locks over the whole file (start 0, length 0): a read lock on a file
//! opened read-only for "shared", a write lock on a file opened read-write for "exclusive",
//! never `flock`. We take the same locks as Linux *open file description* locks
//! (`F_OFD_SETLK`): the kernel makes them conflict with classic `fcntl` locks of other
//! processes (so git-annex and annexgate exclude each other), and — unlike classic locks,
//! which a process never conflicts with itself on — two descriptors opened separately in
//! our own process conflict too, so one long-running server can serve many clients safely.
//!
//! A lock lives as long as its [`FileLock`]: dropping it closes the descriptor, which
//! releases the lock. Descriptors are opened close-on-exec, so hooks and other children
//! never inherit a lock.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Which kind of lock to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// A read lock: any number may be held at once; excludes exclusive locks.
    Shared,
    /// A write lock: excludes every other lock.
    Exclusive,
}

/// A held lock on a file.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
    kind: LockKind,
}

/// What [`lock_status`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockStatus {
    /// The lock file does not exist.
    NoFile,
    /// Nobody holds a lock that would conflict with a shared lock.
    Unlocked,
    /// Someone holds an exclusive lock; `pid` is known for classic `fcntl` locks only.
    Locked { pid: Option<i32> },
}

fn flock_struct(kind: libc::c_short) -> libc::flock {
    // SAFETY: flock is a plain C struct; all-zero is a valid value for every field.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0;
    // OFD locks require l_pid to be 0 on input.
    fl.l_pid = 0;
    fl
}

fn lock_type(kind: LockKind) -> libc::c_short {
    match kind {
        LockKind::Shared => libc::F_RDLCK as libc::c_short,
        LockKind::Exclusive => libc::F_WRLCK as libc::c_short,
    }
}

fn open_for(path: &Path, kind: LockKind, create_mode: Option<u32>) -> io::Result<File> {
    let mut oo = OpenOptions::new();
    match kind {
        LockKind::Shared => oo.read(true),
        LockKind::Exclusive => oo.read(true).write(true),
    };
    if let Some(mode) = create_mode {
        // A shared lock file is opened read-only, as git-annex does; O_CREAT still works
        // with O_RDONLY on Linux, but std refuses `create` without write access, so ask
        // for it through the raw flags.
        oo.custom_flags(libc::O_CREAT);
        oo.mode(mode);
    }
    // std opens with O_CLOEXEC.
    oo.open(path)
}

fn set_lock(file: &File, kind: libc::c_short, wait: bool) -> io::Result<bool> {
    let fl = flock_struct(kind);
    let cmd = if wait {
        libc::F_OFD_SETLKW
    } else {
        libc::F_OFD_SETLK
    };
    loop {
        // SAFETY: fcntl with a valid descriptor and a pointer to a flock we own.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &fl as *const libc::flock) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) | Some(libc::EACCES) if !wait => return Ok(false),
            _ => return Err(err),
        }
    }
}

impl FileLock {
    /// Try to take a lock without waiting. `Ok(None)` when another holder conflicts.
    /// With `create_mode` the lock file is created (with that mode, before the umask) if it
    /// does not exist; without, a missing file is an error (`NotFound`).
    pub fn try_lock(
        path: &Path,
        kind: LockKind,
        create_mode: Option<u32>,
    ) -> io::Result<Option<FileLock>> {
        let file = open_for(path, kind, create_mode)?;
        if set_lock(&file, lock_type(kind), false)? {
            Ok(Some(FileLock {
                file,
                path: path.to_path_buf(),
                kind,
            }))
        } else {
            Ok(None)
        }
    }

    /// Take a lock, waiting as long as it takes. Blocks the thread: call from blocking
    /// contexts only.
    pub fn lock_wait(path: &Path, kind: LockKind, create_mode: Option<u32>) -> io::Result<Self> {
        let file = open_for(path, kind, create_mode)?;
        set_lock(&file, lock_type(kind), true)?;
        Ok(FileLock {
            file,
            path: path.to_path_buf(),
            kind,
        })
    }

    /// Whether the lock file at the path is still the file we locked (git-annex's
    /// `checkSaneLock`): a lock on a file that was deleted and recreated protects nothing.
    pub fn is_sane(&self) -> bool {
        let Ok(on_disk) = std::fs::metadata(&self.path) else {
            return false;
        };
        let Ok(ours) = self.file.metadata() else {
            return false;
        };
        on_disk.dev() == ours.dev() && on_disk.ino() == ours.ino()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn kind(&self) -> LockKind {
        self.kind
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Whether someone holds an exclusive lock on the file (git-annex's `getLockStatus`,
/// which asks with a read lock). Takes no lock itself.
pub fn lock_status(path: &Path) -> io::Result<LockStatus> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LockStatus::NoFile),
        Err(e) => return Err(e),
    };
    let mut fl = flock_struct(libc::F_RDLCK as libc::c_short);
    // SAFETY: fcntl with a valid descriptor and a pointer to a flock we own.
    let rc = unsafe {
        libc::fcntl(
            file.as_raw_fd(),
            libc::F_OFD_GETLK,
            &mut fl as *mut libc::flock,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if fl.l_type == libc::F_UNLCK as libc::c_short {
        Ok(LockStatus::Unlocked)
    } else {
        Ok(LockStatus::Locked {
            pid: (fl.l_pid > 0).then_some(fl.l_pid),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_descriptors_in_one_process_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lck");
        let ex = FileLock::try_lock(&p, LockKind::Exclusive, Some(0o666))
            .unwrap()
            .expect("first exclusive lock");
        assert!(ex.is_sane());
        assert!(FileLock::try_lock(&p, LockKind::Shared, None)
            .unwrap()
            .is_none());
        assert!(FileLock::try_lock(&p, LockKind::Exclusive, None)
            .unwrap()
            .is_none());
        assert_eq!(lock_status(&p).unwrap(), LockStatus::Locked { pid: None });
        drop(ex);
        assert_eq!(lock_status(&p).unwrap(), LockStatus::Unlocked);
        let s1 = FileLock::try_lock(&p, LockKind::Shared, None)
            .unwrap()
            .unwrap();
        let s2 = FileLock::try_lock(&p, LockKind::Shared, None)
            .unwrap()
            .unwrap();
        assert!(FileLock::try_lock(&p, LockKind::Exclusive, None)
            .unwrap()
            .is_none());
        // A shared lock is not reported as "locked" (git-annex asks with a read lock).
        assert_eq!(lock_status(&p).unwrap(), LockStatus::Unlocked);
        drop(s1);
        drop(s2);
        assert!(FileLock::try_lock(&p, LockKind::Exclusive, None)
            .unwrap()
            .is_some());
    }

    #[test]
    fn missing_file_without_create_mode_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("absent.lck");
        let e = FileLock::try_lock(&p, LockKind::Shared, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(!p.exists());
        assert_eq!(lock_status(&p).unwrap(), LockStatus::NoFile);
        // A shared lock may create the file though it opens it read-only.
        let l = FileLock::try_lock(&p, LockKind::Shared, Some(0o644))
            .unwrap()
            .unwrap();
        assert!(p.exists());
        assert_eq!(l.kind(), LockKind::Shared);
    }

    #[test]
    fn a_replaced_lock_file_is_not_sane() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.lck");
        let l = FileLock::try_lock(&p, LockKind::Exclusive, Some(0o644))
            .unwrap()
            .unwrap();
        std::fs::remove_file(&p).unwrap();
        assert!(!l.is_sane());
        std::fs::write(&p, b"").unwrap();
        assert!(!l.is_sane());
    }

    #[test]
    fn conflicts_with_a_classic_fcntl_lock_of_another_process() {
        // The cross-process check against git-annex itself lives in the AnnexRepo
        // tests; here a classic F_GETLK (what git-annex's getLockStatus uses) must see
        // our OFD lock as a conflicting write lock.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.lck");
        let _l = FileLock::try_lock(&p, LockKind::Exclusive, Some(0o644))
            .unwrap()
            .unwrap();
        // A classic F_GETLK from this process sees the OFD lock as conflicting.
        let f = File::open(&p).unwrap();
        let mut fl = flock_struct(libc::F_RDLCK as libc::c_short);
        // SAFETY: as above.
        let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut fl as *mut libc::flock) };
        assert_eq!(rc, 0);
        assert_eq!(fl.l_type, libc::F_WRLCK as libc::c_short);
    }
}
