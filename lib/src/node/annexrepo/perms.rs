//! File and directory modes in the object store, as git-annex sets them.
//!
//! Content is "frozen": the object file loses its write bits (0444 under the usual umask)
//! and so does its `<keyFile>` directory (0555), so nothing deletes it by accident. To
//! add or remove a file in that directory it is "thawed" (owner write bit back) and
//! frozen again afterwards. `core.sharedRepository` changes the modes so that a group can
//! share the repository; on a crippled file system modes are left alone.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::config::SharedRepository;

const WRITE: u32 = 0o222;
const READ: u32 = 0o444;
const EXEC: u32 = 0o111;

#[derive(Debug, Clone, Copy)]
pub struct Perms {
    pub shared: SharedRepository,
    pub crippled: bool,
}

fn mode_of(p: &Path) -> io::Result<u32> {
    Ok(fs::metadata(p)?.permissions().mode() & 0o7777)
}

fn set_mode(p: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
}

fn modify(p: &Path, f: impl FnOnce(u32) -> u32) -> io::Result<()> {
    let old = mode_of(p)?;
    let new = f(old);
    if new != old {
        set_mode(p, new)?;
    }
    Ok(())
}

/// The directory mode that goes with a shared file mode: execute where readable, and
/// set-group-id when the group may read or write (as git does).
pub fn umask_shared_directory(n: u32) -> u32 {
    let mut m = n;
    if n & 0o400 != 0 {
        m |= 0o100;
    }
    if n & 0o040 != 0 {
        m |= 0o010;
    }
    if n & 0o004 != 0 {
        m |= 0o001;
    }
    if n & 0o060 != 0 {
        m |= 0o2000;
    }
    m
}

impl Perms {
    /// Mode to create lock and temp files with (before the umask).
    pub fn file_create_mode(&self) -> u32 {
        match self.shared {
            SharedRepository::Umask(n) => n,
            _ => 0o666,
        }
    }

    /// Adjust a file created in the annex (not content) for a shared repository.
    pub fn set_annex_file_perm(&self, p: &Path) {
        if self.crippled {
            return;
        }
        let _ = match self.shared {
            SharedRepository::UnShared => Ok(()),
            SharedRepository::Group => modify(p, |m| m | 0o060),
            SharedRepository::All => modify(p, |m| m | READ | 0o220),
            SharedRepository::Umask(n) => set_mode(p, n),
        };
    }

    /// Adjust a directory created in the annex for a shared repository.
    pub fn set_annex_dir_perm(&self, p: &Path) {
        if self.crippled {
            return;
        }
        let _ = match self.shared {
            SharedRepository::UnShared => Ok(()),
            SharedRepository::Group => modify(p, |m| m | 0o060 | 0o110),
            SharedRepository::All => modify(p, |m| m | READ | 0o220 | EXEC),
            SharedRepository::Umask(n) => set_mode(p, umask_shared_directory(n)),
        };
    }

    /// The mode freezing gives content whose mode is `m` (`None`: modes are left alone).
    fn frozen_mode(&self, m: u32) -> Option<u32> {
        if self.crippled {
            return None;
        }
        Some(match self.shared {
            SharedRepository::UnShared => (m | 0o400) & !WRITE,
            SharedRepository::Group => (m | 0o440) & !WRITE,
            SharedRepository::All => (m | READ) & !WRITE,
            SharedRepository::Umask(n) => n & !WRITE,
        })
    }

    /// Freeze content through its open file, whose mode is `mode` now (as
    /// [`Self::freeze_content`] does by path): received content is frozen before it is
    /// renamed into place, with no path looked up twice.
    pub fn freeze_open(&self, file: &fs::File, mode: u32) -> io::Result<()> {
        let mode = mode & 0o7777;
        let Some(new) = self.frozen_mode(mode) else {
            return Ok(());
        };
        if new == mode {
            return Ok(());
        }
        let r = file.set_permissions(fs::Permissions::from_mode(new));
        match self.shared {
            SharedRepository::UnShared => r,
            // As by path: in a shared repository failing to change the mode is no error.
            _ => Ok(()),
        }
    }

    /// Make an object file read-only (git-annex's `freezeContent`).
    pub fn freeze_content(&self, p: &Path) -> io::Result<()> {
        if self.crippled {
            return Ok(());
        }
        let r = modify(p, |m| self.frozen_mode(m).unwrap_or(m));
        match self.shared {
            SharedRepository::UnShared => r,
            // In a shared repository the file may belong to someone else; failing to
            // change its mode is not an error there.
            _ => Ok(()),
        }
    }

    /// Give a file its owner write bit back (a partial upload left read-only).
    pub fn thaw_content(&self, p: &Path) -> io::Result<()> {
        match self.shared {
            SharedRepository::UnShared => modify(p, |m| m | 0o200),
            SharedRepository::Group | SharedRepository::All => {
                let _ = modify(p, |m| m | 0o660);
                Ok(())
            }
            SharedRepository::Umask(n) => {
                let _ = set_mode(p, n);
                Ok(())
            }
        }
    }

    /// Stop writes to a content directory (`freezeContentDir`).
    pub fn freeze_dir(&self, dir: &Path) -> io::Result<()> {
        if self.crippled {
            return Ok(());
        }
        match self.shared {
            SharedRepository::UnShared => modify(dir, |m| m & !WRITE),
            // The group must be able to delete content without thawing first.
            SharedRepository::Group | SharedRepository::All => {
                let _ = modify(dir, |m| m | 0o660);
                Ok(())
            }
            SharedRepository::Umask(n) => {
                let _ = set_mode(dir, umask_shared_directory(n & !0o200));
                Ok(())
            }
        }
    }

    /// Allow writes to a content directory (`thawContentDir`). Fails when the directory
    /// does not exist.
    pub fn thaw_dir(&self, dir: &Path) -> io::Result<()> {
        let r = match self.shared {
            SharedRepository::Umask(n) => set_mode(dir, umask_shared_directory(n)),
            _ => modify(dir, |m| m | 0o200),
        };
        match r {
            // A crippled file system may not do modes at all; only a missing directory
            // matters there.
            Err(e) if self.crippled && e.kind() != io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    /// Create `dir` and any missing parents up to `top` (which must exist), giving each
    /// new directory the annex directory mode (git-annex's `createAnnexDirectory`).
    pub fn create_annex_dir(&self, top: &Path, dir: &Path) -> io::Result<()> {
        let outside = || {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} does not exist", dir.display()),
            )
        };
        if !dir.starts_with(top) {
            return if dir.is_dir() { Ok(()) } else { Err(outside()) };
        }
        // Made at once when its parent exists (a new key's directory, the common case):
        // one system call, not a stat of every level first.
        match fs::create_dir(dir) {
            Ok(()) => {
                self.set_annex_dir_perm(dir);
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if dir == top {
            return Err(outside());
        }
        if let Some(parent) = dir.parent() {
            self.create_annex_dir(top, parent)?;
        }
        match fs::create_dir(dir) {
            Ok(()) => self.set_annex_dir_perm(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

/// Directories of one repository known to exist, so that creating a path under them
/// does not try (and fail) to make every level again: a new key's directory is two
/// hash levels deep, and the second level is nearly always new (4096 x 4096 of them),
/// so making it top-down from a known first level takes two `mkdir`s where trying the
/// key's directory first and climbing up took five. Fixed directories (`annex/tmp`,
/// the transfer lock directory) are not made again at all once known. A known directory
/// can go (git-annex removes emptied hash directories when it drops): whoever finds it
/// missing calls [`KnownDirs::forget`] and makes it again.
#[derive(Default)]
pub struct KnownDirs {
    known: std::sync::Mutex<std::collections::HashSet<std::path::PathBuf>>,
}

/// How many directories a [`KnownDirs`] remembers before it starts over.
const KNOWN_DIRS_MAX: usize = 16384;

impl KnownDirs {
    fn set(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<std::path::PathBuf>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, dirs: impl IntoIterator<Item = std::path::PathBuf>) {
        let mut set = self.set();
        for d in dirs {
            if set.len() >= KNOWN_DIRS_MAX {
                set.clear();
            }
            set.insert(d);
        }
    }

    /// Forget `dir` and everything under it (it was found missing).
    pub fn forget(&self, dir: &Path) {
        self.set().retain(|d| !d.starts_with(dir));
    }

    /// Make sure directory `dir` (under `top`, which exists) exists, as
    /// [`Perms::create_annex_dir`] does; nothing is done when it is known to exist. A
    /// caller that then finds it missing calls [`Self::forget`] and this again.
    pub fn ensure(&self, perms: &Perms, top: &Path, dir: &Path) -> io::Result<()> {
        if self.set().contains(dir) {
            return Ok(());
        }
        perms.create_annex_dir(top, dir)?;
        self.remember([dir.to_path_buf()]);
        Ok(())
    }

    /// Make directory `dir` (under `top`, which exists) and its missing parents, top-down
    /// from the nearest parent known to exist; `dir` itself is not remembered (a key's
    /// directory goes with its content). Returns whether `dir` was made now (or found
    /// missing and then made, by us or by somebody at the same time).
    pub fn make(&self, perms: &Perms, top: &Path, dir: &Path) -> io::Result<bool> {
        if !dir.starts_with(top) || dir == top {
            perms.create_annex_dir(top, dir)?;
            return Ok(false);
        }
        // The levels below the nearest known parent (or `top`), nearest first.
        let mut below: Vec<&Path> = Vec::new();
        {
            let set = self.set();
            let mut cur = dir.parent();
            while let Some(p) = cur {
                if p == top || !p.starts_with(top) || set.contains(p) {
                    break;
                }
                below.push(p);
                cur = p.parent();
            }
        }
        let mut made_any = Vec::new();
        for p in below.iter().rev() {
            match fs::create_dir(p) {
                Ok(()) => perms.set_annex_dir_perm(p),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // A parent thought to exist went: forget it, and climb from `dir`.
                    if let Some(parent) = p.parent() {
                        self.forget(parent);
                    }
                    perms.create_annex_dir(top, dir)?;
                    return Ok(true);
                }
                Err(e) => return Err(e),
            }
            // `dir`'s parent is not kept: a key's second hash level is nearly always
            // new, and keeping all of them would grow with the repository.
            if Some(*p) != dir.parent() {
                made_any.push(p.to_path_buf());
            }
        }
        self.remember(made_any);
        match fs::create_dir(dir) {
            Ok(()) => {
                perms.set_annex_dir_perm(dir);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = dir.parent() {
                    self.forget(parent);
                }
                perms.create_annex_dir(top, dir)?;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unshared() -> Perms {
        Perms {
            shared: SharedRepository::UnShared,
            crippled: false,
        }
    }

    #[test]
    fn freeze_and_thaw_unshared() {
        let d = tempfile::tempdir().unwrap();
        let p = unshared();
        let kd = d.path().join("a/b/k");
        p.create_annex_dir(d.path(), &kd).unwrap();
        let f = kd.join("k");
        fs::write(&f, b"x").unwrap();
        set_mode(&f, 0o644).unwrap();
        set_mode(&kd, 0o755).unwrap();
        p.freeze_content(&f).unwrap();
        p.freeze_dir(&kd).unwrap();
        assert_eq!(mode_of(&f).unwrap(), 0o444);
        assert_eq!(mode_of(&kd).unwrap(), 0o555);
        p.thaw_dir(&kd).unwrap();
        assert_eq!(mode_of(&kd).unwrap(), 0o755);
        assert!(p.thaw_dir(&d.path().join("nope")).is_err());
        assert!(p
            .create_annex_dir(&d.path().join("x"), &d.path().join("y/z"))
            .is_err());
    }

    #[test]
    fn known_directories_are_made_top_down_and_again_when_gone() {
        let d = tempfile::tempdir().unwrap();
        let p = unshared();
        let k = KnownDirs::default();
        let top = d.path();
        assert!(k.make(&p, top, &top.join("objects/a/b/k1")).unwrap());
        assert!(top.join("objects/a/b/k1").is_dir());
        assert!(
            !k.make(&p, top, &top.join("objects/a/b/k1")).unwrap(),
            "exists"
        );
        assert!(k.set().contains(&top.join("objects/a")));
        assert!(
            !k.set().contains(&top.join("objects/a/b")),
            "nor their parents"
        );
        assert!(
            !k.set().contains(&top.join("objects/a/b/k1")),
            "key dirs not kept"
        );
        // Known parents removed behind our back (as git-annex does when it drops).
        fs::remove_dir_all(top.join("objects/a")).unwrap();
        assert!(k.make(&p, top, &top.join("objects/a/b/k2")).unwrap());
        assert!(top.join("objects/a/b/k2").is_dir());
        fs::remove_dir_all(top.join("objects")).unwrap();
        assert!(k.make(&p, top, &top.join("objects/a/c/k3")).unwrap());
        // ensure: nothing done once known; made again after forget.
        k.ensure(&p, top, &top.join("tmp")).unwrap();
        fs::remove_dir(top.join("tmp")).unwrap();
        k.ensure(&p, top, &top.join("tmp")).unwrap();
        assert!(!top.join("tmp").exists(), "known, so not looked at");
        k.forget(&top.join("tmp"));
        k.ensure(&p, top, &top.join("tmp")).unwrap();
        assert!(top.join("tmp").is_dir());
        // Outside `top`: only checked.
        assert!(k.make(&p, &top.join("x"), &top.join("y/z")).is_err());
    }

    /// Freezing received content through its open file gives the mode freezing it by
    /// path gives, in every kind of shared repository; crippled, modes stay.
    #[test]
    fn freezing_an_open_file_is_freezing_by_path() {
        let d = tempfile::tempdir().unwrap();
        let kinds = [
            SharedRepository::UnShared,
            SharedRepository::Group,
            SharedRepository::All,
            SharedRepository::Umask(0o640),
        ];
        for (i, shared) in kinds.into_iter().enumerate() {
            for crippled in [false, true] {
                let p = Perms { shared, crippled };
                for start in [0o644, 0o600, 0o666] {
                    let by_path = d.path().join(format!("p{i}{crippled}{start:o}"));
                    let by_fd = d.path().join(format!("f{i}{crippled}{start:o}"));
                    for f in [&by_path, &by_fd] {
                        fs::write(f, b"x").unwrap();
                        set_mode(f, start).unwrap();
                    }
                    p.freeze_content(&by_path).unwrap();
                    let file = fs::OpenOptions::new().read(true).open(&by_fd).unwrap();
                    p.freeze_open(&file, start).unwrap();
                    let got = mode_of(&by_fd).unwrap();
                    assert_eq!(got, mode_of(&by_path).unwrap(), "{shared:?} {start:o}");
                    if crippled {
                        assert_eq!(got, start);
                    } else {
                        assert_eq!(got & WRITE, 0, "{shared:?} {start:o}: {got:o}");
                    }
                }
            }
        }
    }

    #[test]
    fn shared_directory_modes() {
        assert_eq!(umask_shared_directory(0o660), 0o2770);
        assert_eq!(umask_shared_directory(0o644), 0o2755);
        assert_eq!(umask_shared_directory(0o600), 0o700);
    }
}
