//! Notice of changes to the refs a branch view reads, from the kernel (Linux inotify).
//!
//! A gateway opens a view of the git-annex branch for each request, and finding out
//! whether the branch tip, the sibling branches (`refs/**/git-annex`), `packed-refs` or
//! git-annex's lists of merged and ignored refs changed took some seventeen `stat` calls
//! a time, a tenth of a small cluster upload's gateway time. With a watch on the
//! directories those live in, one `read` that finds nothing says nothing changed: every
//! change git (or git-annex, or libgit2) makes there is a file created, renamed, written
//! or removed in one of those directories, and the kernel queues the event before the
//! call that made it returns.
//!
//! A watch that cannot be set up (no inotify, the per-user limit of inotify instances or
//! watches reached) is no error: views then check the files themselves, as before.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What changed since the last look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Changes {
    /// Nothing a view reads.
    None,
    /// Only the branch ref itself (`refs/heads/git-annex`): a commit.
    Tip,
    /// Anything else: another ref, `packed-refs`, `annex/mergedrefs` or
    /// `annex/ignoredrefs`, a directory that came or went, or events lost.
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// The repository's common directory (`packed-refs`, and `refs` and `annex` coming).
    Common,
    /// Its `annex` directory (`mergedrefs`, `ignoredrefs`).
    Annex,
    /// `refs/heads`, where the branch ref lives.
    Heads,
    /// Any other directory under `refs`.
    Refs,
}

/// A set of inotify watches on a repository's ref directories.
pub(crate) struct RefWatch {
    fd: OwnedFd,
    common_dir: PathBuf,
    annex_dir: PathBuf,
    dirs: HashMap<i32, Dir>,
}

const MASK: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_CLOSE_WRITE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

impl RefWatch {
    /// Watches on `common_dir`, `annex_dir` and every directory under `common_dir/refs`;
    /// `None` if the kernel will not give them.
    pub(crate) fn new(common_dir: &Path, annex_dir: &Path) -> Option<RefWatch> {
        // SAFETY: inotify_init1 takes flags only; a non-negative result is a new
        // descriptor we own.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            tracing::debug!(
                "no inotify for {}: {}",
                common_dir.display(),
                io::Error::last_os_error()
            );
            return None;
        }
        let mut w = RefWatch {
            // SAFETY: `fd` was just returned by inotify_init1 and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            common_dir: common_dir.to_path_buf(),
            annex_dir: annex_dir.to_path_buf(),
            dirs: HashMap::new(),
        };
        match w.arm() {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::debug!("cannot watch the refs of {}: {e}", common_dir.display());
                None
            }
        }
    }

    fn add(&mut self, path: &Path, dir: Dir) -> io::Result<bool> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: a valid descriptor and a NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), MASK) };
        if wd < 0 {
            let e = io::Error::last_os_error();
            // Gone, or not a directory: nothing to watch (its parent's watch notices it
            // coming back).
            if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) {
                return Ok(false);
            }
            return Err(e);
        }
        self.dirs.insert(wd, dir);
        Ok(true)
    }

    /// Watch every directory there is now (again: the kernel gives an existing watch's
    /// descriptor back for a directory watched already).
    pub(crate) fn arm(&mut self) -> io::Result<()> {
        let common = self.common_dir.clone();
        let annex = self.annex_dir.clone();
        self.add(&common, Dir::Common)?;
        self.add(&annex, Dir::Annex)?;
        let refs = common.join("refs");
        let mut stack = vec![refs.clone()];
        while let Some(dir) = stack.pop() {
            let kind = if dir == refs.join("heads") {
                Dir::Heads
            } else {
                Dir::Refs
            };
            if !self.add(&dir, kind)? {
                continue;
            }
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
        Ok(())
    }

    /// Read every event queued since the last call and say what they changed.
    pub(crate) fn changes(&mut self) -> io::Result<Changes> {
        // Aligned for the event header; a name is at most NAME_MAX + 1 bytes. Nearly
        // always nothing is read, so the buffer is small.
        #[repr(C, align(8))]
        struct Buf([u8; 2048]);
        let mut buf = Buf([0; 2048]);
        let mut seen = Changes::None;
        loop {
            // SAFETY: reading into a buffer of the length given, from our descriptor.
            let n =
                unsafe { libc::read(self.fd.as_raw_fd(), buf.0.as_mut_ptr().cast(), buf.0.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(seen),
                    Some(libc::EINTR) => continue,
                    _ => return Err(e),
                }
            }
            let n = n as usize;
            if n == 0 {
                return Ok(seen);
            }
            let header = std::mem::size_of::<libc::inotify_event>();
            let mut at = 0;
            while at + header <= n {
                // SAFETY: the kernel writes whole events; the header at `at` lies within
                // the `n` bytes read (checked above); read unaligned to be safe.
                let ev: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf.0.as_ptr().add(at).cast()) };
                let name_start = at + header;
                let name_end = (name_start + ev.len as usize).min(n);
                let raw = &buf.0[name_start..name_end];
                let name = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
                seen = seen.max(self.classify(&ev, name));
                at = name_start + ev.len as usize;
            }
        }
    }

    fn classify(&mut self, ev: &libc::inotify_event, name: &[u8]) -> Changes {
        if ev.mask & libc::IN_Q_OVERFLOW != 0 {
            return Changes::All;
        }
        if ev.mask & libc::IN_IGNORED != 0 {
            // The watch is gone (its directory was removed): watch afresh.
            self.dirs.remove(&ev.wd);
            return Changes::All;
        }
        if ev.mask & (libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
            return Changes::All;
        }
        let Some(dir) = self.dirs.get(&ev.wd).copied() else {
            return Changes::All;
        };
        // A lock file coming, being written or going changes no ref; the rename that
        // ends an update names the ref itself.
        if name.ends_with(b".lock") {
            return Changes::None;
        }
        match dir {
            Dir::Common => match name {
                b"packed-refs" | b"refs" | b"annex" => Changes::All,
                _ => Changes::None,
            },
            Dir::Annex => match name {
                b"mergedrefs" | b"ignoredrefs" => Changes::All,
                _ => Changes::None,
            },
            Dir::Heads if name == b"git-annex" && ev.mask & libc::IN_ISDIR == 0 => Changes::Tip,
            Dir::Heads | Dir::Refs => Changes::All,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, RefWatch) {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("refs/heads")).unwrap();
        fs::create_dir_all(d.path().join("refs/remotes/origin")).unwrap();
        fs::create_dir_all(d.path().join("annex")).unwrap();
        let w = RefWatch::new(d.path(), &d.path().join("annex")).expect("inotify");
        (d, w)
    }

    /// What git does to update a ref: write `NAME.lock`, rename it over `NAME`.
    fn update(path: &Path) {
        let lock = path.with_extension("lock");
        fs::write(&lock, "0000000000000000000000000000000000000000\n").unwrap();
        fs::rename(&lock, path).unwrap();
    }

    #[test]
    fn a_commit_to_the_branch_is_a_tip_change_and_nothing_else_is_none() {
        let (d, mut w) = setup();
        assert_eq!(w.changes().unwrap(), Changes::None);
        update(&d.path().join("refs/heads/git-annex"));
        assert_eq!(w.changes().unwrap(), Changes::Tip);
        assert_eq!(w.changes().unwrap(), Changes::None, "events are read once");
        // Files git-annex and git keep beside the refs change nothing a view reads.
        fs::write(d.path().join("annex/journal.lck"), "").unwrap();
        fs::write(d.path().join("FETCH_HEAD"), "x").unwrap();
        fs::write(d.path().join("refs/heads/master.lock"), "x").unwrap();
        assert_eq!(w.changes().unwrap(), Changes::None);
    }

    #[test]
    fn siblings_packed_refs_merged_refs_and_new_directories_are_all() {
        let (d, mut w) = setup();
        update(&d.path().join("refs/remotes/origin/git-annex"));
        assert_eq!(w.changes().unwrap(), Changes::All);
        update(&d.path().join("refs/heads/master"));
        assert_eq!(w.changes().unwrap(), Changes::All, "another branch");
        update(&d.path().join("packed-refs"));
        assert_eq!(w.changes().unwrap(), Changes::All);
        fs::write(d.path().join("annex/mergedrefs"), "x").unwrap();
        assert_eq!(w.changes().unwrap(), Changes::All);
        // A new remote's directory: All, and once watched again a ref in it is seen.
        fs::create_dir_all(d.path().join("refs/remotes/other")).unwrap();
        assert_eq!(w.changes().unwrap(), Changes::All);
        w.arm().unwrap();
        update(&d.path().join("refs/remotes/other/git-annex"));
        assert_eq!(w.changes().unwrap(), Changes::All);
        // A tip change together with another change is All.
        update(&d.path().join("refs/heads/git-annex"));
        fs::remove_file(d.path().join("refs/remotes/other/git-annex")).unwrap();
        assert_eq!(w.changes().unwrap(), Changes::All);
    }

    #[test]
    fn a_removed_refs_directory_is_all() {
        let (d, mut w) = setup();
        fs::remove_dir(d.path().join("refs/remotes/origin")).unwrap();
        assert_eq!(w.changes().unwrap(), Changes::All);
        assert_eq!(w.changes().unwrap(), Changes::None);
    }
}
