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
//! All watches of a process share one inotify instance. A watch that cannot be set up (no
//! inotify, the per-user limit of inotify instances or watches reached) is no error: views
//! then check the files themselves, as before.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

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

/// The process's one inotify instance, shared by every [`RefWatch`]: a user has 128
/// instances in all (by default), and a gateway serving many repositories, or many
/// gateway sessions at once, must not take them from the user's other programs.
struct Shared {
    fd: OwnedFd,
    /// Watch descriptor -> the watches using it (the kernel gives one descriptor per
    /// directory and instance, so two repositories' watches of a directory share it).
    wds: HashMap<i32, Vec<(u64, Dir)>>,
    /// What each watch has not been told yet.
    pending: HashMap<u64, Changes>,
    next_id: u64,
}

/// `None` inside: the kernel gave no instance (views check by stat).
static SHARED: Mutex<Option<Option<Shared>>> = Mutex::new(None);

fn shared() -> MutexGuard<'static, Option<Option<Shared>>> {
    SHARED.lock().unwrap_or_else(|p| p.into_inner())
}

/// A watch on one repository's ref directories.
pub(crate) struct RefWatch {
    id: u64,
    common_dir: PathBuf,
    annex_dir: PathBuf,
}

const MASK: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_CLOSE_WRITE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

impl Shared {
    fn open() -> Option<Shared> {
        // SAFETY: inotify_init1 takes flags only; a non-negative result is a new
        // descriptor we own.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            tracing::debug!("no inotify: {}", io::Error::last_os_error());
            return None;
        }
        Some(Shared {
            // SAFETY: `fd` was just returned by inotify_init1 and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            wds: HashMap::new(),
            pending: HashMap::new(),
            next_id: 0,
        })
    }

    fn add(&mut self, id: u64, path: &Path, dir: Dir) -> io::Result<bool> {
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
        let users = self.wds.entry(wd).or_default();
        users.retain(|(i, _)| *i != id);
        users.push((id, dir));
        Ok(true)
    }

    /// Stop watching for `id`; directories nobody watches any more are let go.
    fn remove(&mut self, id: u64) {
        self.pending.remove(&id);
        let fd = self.fd.as_raw_fd();
        self.wds.retain(|&wd, users| {
            users.retain(|(i, _)| *i != id);
            if users.is_empty() {
                // SAFETY: removing a watch descriptor of our own instance.
                unsafe { libc::inotify_rm_watch(fd, wd) };
                false
            } else {
                true
            }
        });
    }

    /// Read every queued event and add what it means to each watch's pending changes.
    fn drain(&mut self) -> io::Result<()> {
        // Aligned for the event header; a name is at most NAME_MAX + 1 bytes. Nearly
        // always nothing is read, so the buffer is small.
        #[repr(C, align(8))]
        struct Buf([u8; 2048]);
        let mut buf = Buf([0; 2048]);
        loop {
            // SAFETY: reading into a buffer of the length given, from our descriptor.
            let n =
                unsafe { libc::read(self.fd.as_raw_fd(), buf.0.as_mut_ptr().cast(), buf.0.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(()),
                    Some(libc::EINTR) => continue,
                    _ => return Err(e),
                }
            }
            let n = n as usize;
            if n == 0 {
                return Ok(());
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
                self.note(&ev, name);
                at = name_start + ev.len as usize;
            }
        }
    }

    fn note(&mut self, ev: &libc::inotify_event, name: &[u8]) {
        fn all(ids: Vec<u64>, pending: &mut HashMap<u64, Changes>) {
            for id in ids {
                if let Some(p) = pending.get_mut(&id) {
                    *p = Changes::All;
                }
            }
        }
        if ev.mask & libc::IN_Q_OVERFLOW != 0 {
            // Events were lost: everybody reads afresh.
            let ids = self.pending.keys().copied().collect();
            return all(ids, &mut self.pending);
        }
        if ev.mask & libc::IN_IGNORED != 0 {
            // The watch is gone (its directory was removed, or we let it go): its users
            // read afresh and watch again.
            if let Some(users) = self.wds.remove(&ev.wd) {
                all(users.into_iter().map(|u| u.0).collect(), &mut self.pending);
            }
            return;
        }
        let Some(users) = self.wds.get(&ev.wd) else {
            return;
        };
        for &(id, dir) in users {
            let c = classify(dir, ev.mask, name);
            if let Some(p) = self.pending.get_mut(&id) {
                *p = (*p).max(c);
            }
        }
    }
}

/// What an event on directory `dir` about entry `name` changes for a view.
fn classify(dir: Dir, mask: u32, name: &[u8]) -> Changes {
    if mask & (libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
        return Changes::All;
    }
    // A lock file coming, being written or going changes no ref; the rename that ends an
    // update names the ref itself.
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
        Dir::Heads if name == b"git-annex" && mask & libc::IN_ISDIR == 0 => Changes::Tip,
        Dir::Heads | Dir::Refs => Changes::All,
    }
}

impl RefWatch {
    /// Watches on `common_dir`, `annex_dir` and every directory under `common_dir/refs`;
    /// `None` if the kernel will not give them.
    pub(crate) fn new(common_dir: &Path, annex_dir: &Path) -> Option<RefWatch> {
        let id = {
            let mut g = shared();
            let sh = g.get_or_insert_with(Shared::open).as_mut()?;
            let id = sh.next_id;
            sh.next_id += 1;
            sh.pending.insert(id, Changes::None);
            id
        };
        let mut w = RefWatch {
            id,
            common_dir: common_dir.to_path_buf(),
            annex_dir: annex_dir.to_path_buf(),
        };
        match w.arm() {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::debug!("cannot watch the refs of {}: {e}", common_dir.display());
                None
            }
        }
    }

    /// Watch every directory there is now (again: the kernel gives an existing watch's
    /// descriptor back for a directory watched already).
    pub(crate) fn arm(&mut self) -> io::Result<()> {
        let mut g = shared();
        let Some(Some(sh)) = g.as_mut() else {
            return Err(io::Error::other("no inotify instance"));
        };
        sh.add(self.id, &self.common_dir, Dir::Common)?;
        sh.add(self.id, &self.annex_dir, Dir::Annex)?;
        let refs = self.common_dir.join("refs");
        let mut stack = vec![refs.clone()];
        while let Some(dir) = stack.pop() {
            let kind = if dir == refs.join("heads") {
                Dir::Heads
            } else {
                Dir::Refs
            };
            if !sh.add(self.id, &dir, kind)? {
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

    /// What changed since the last call (every event queued so far is read).
    pub(crate) fn changes(&mut self) -> io::Result<Changes> {
        let mut g = shared();
        let Some(Some(sh)) = g.as_mut() else {
            return Err(io::Error::other("no inotify instance"));
        };
        sh.drain()?;
        Ok(sh
            .pending
            .insert(self.id, Changes::None)
            .unwrap_or(Changes::All))
    }
}

impl Drop for RefWatch {
    fn drop(&mut self) {
        if let Some(Some(sh)) = shared().as_mut() {
            sh.remove(self.id);
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

    /// Two watches of one repository (a gateway's and its recorder's) share the kernel's
    /// watches: each is told of every change once, and one ending leaves the other
    /// watching.
    #[test]
    fn two_watches_of_one_repository_are_each_told() {
        let (d, mut a) = setup();
        let mut b = RefWatch::new(d.path(), &d.path().join("annex")).unwrap();
        update(&d.path().join("refs/heads/git-annex"));
        assert_eq!(a.changes().unwrap(), Changes::Tip);
        assert_eq!(b.changes().unwrap(), Changes::Tip);
        assert_eq!(a.changes().unwrap(), Changes::None);
        drop(a);
        update(&d.path().join("refs/remotes/origin/git-annex"));
        assert_eq!(b.changes().unwrap(), Changes::All);
        update(&d.path().join("refs/heads/git-annex"));
        assert_eq!(b.changes().unwrap(), Changes::Tip);
    }

    #[test]
    fn a_removed_refs_directory_is_all() {
        let (d, mut w) = setup();
        fs::remove_dir(d.path().join("refs/remotes/origin")).unwrap();
        assert_eq!(w.changes().unwrap(), Changes::All);
        assert_eq!(w.changes().unwrap(), Changes::None);
    }
}
