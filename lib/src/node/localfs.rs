//! Pieces shared by nodes whose content lives in files on this machine (a local git-annex
//! repository, a `directory` special remote): key file names that are safe path
//! components, blocking file work off the async threads, free space, and sending one
//! content file from an offset with a change check.
//!
//! A sent file counts as unchanged while read when its device, inode, size and mtime are
//! the same before and after (git-annex's inode-cache test): content replaced by a rename
//! gets a new inode, content modified in place a new mtime or size.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::node::{Content, NodeError, Validity};
use crate::types::backend::{Verdict, Verifier};
use crate::types::key::key_file;
use crate::types::Key;

/// The longest file name Linux file systems hold.
pub(crate) const NAME_MAX: usize = 255;

/// A key's escaped file name, checked to be one component the file system can hold with
/// `extra` more bytes added.
pub(crate) fn checked_key_file(key: &Key, extra: usize) -> Result<Vec<u8>, NodeError> {
    let kf = key_file(key);
    let bad = |detail: String| NodeError::BadKey {
        key: key.to_text().into_owned(),
        detail,
    };
    if kf.is_empty() || kf == b"." || kf == b".." {
        return Err(bad("the key cannot be a file name".into()));
    }
    if kf.iter().any(|&b| b == b'/' || b == 0) {
        return Err(bad("the key's file name contains '/' or NUL".into()));
    }
    if kf.len() + extra > NAME_MAX {
        return Err(bad(format!(
            "its file name would be {} bytes; file names can have at most {} here",
            kf.len() + extra,
            NAME_MAX
        )));
    }
    Ok(kf)
}

/// Run blocking file work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
) -> Result<T, NodeError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(NodeError::io(
            "run blocking task",
            PathBuf::new(),
            io::Error::other(e.to_string()),
        )),
    }
}

/// The largest upload whose file work (`blocking_unless_small`) is done in place.
const INLINE_MAX: u64 = 256 * 1024;

/// `blocking`, except for the file work of an upload of at most `INLINE_MAX` bytes (`len`)
/// with no fsync asked for (`fsync`: that may wait for a disk), which runs here and now:
/// opening, renaming and freezing a small file take a few microseconds, a hand-off to the
/// blocking pool and back tens of them (two thread wake-ups), which for an upload of small
/// files was a good part of the gateway's time per file.
pub(crate) async fn blocking_unless_small<T: Send + 'static>(
    len: u64,
    fsync: bool,
    f: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
) -> Result<T, NodeError> {
    if len <= INLINE_MAX && !fsync {
        f()
    } else {
        blocking(f).await
    }
}

/// Free bytes for unprivileged users on the file system holding `path` (statvfs).
pub(crate) fn disk_free(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: statvfs is plain old data; zeroed is a valid initial value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path; st is ours to write.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// fsync a directory, so a rename or new entry in it survives a crash. Best effort.
pub(crate) fn fsync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Check a whole file against its key: its size, and its hash when `hash` is set and the
/// key's backend has one (only then is the file read).
pub(crate) fn verify_file(path: &Path, key: &Key, hash: bool) -> Result<Verdict, NodeError> {
    let mut v = Verifier::new(key, hash);
    if !v.hashes() {
        let len = fs::metadata(path)
            .map_err(|e| NodeError::io("stat", path, e))?
            .len();
        return Ok(match key.size() {
            Some(expected) if expected != len => Verdict::WrongSize { expected, got: len },
            _ => Verdict::Good,
        });
    }
    let mut f = File::open(path).map_err(|e| NodeError::io("open", path, e))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| NodeError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        v.update(&buf[..n]);
    }
    Ok(v.finish(key))
}

/// What identifies a file's content for the change check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    pub(crate) fn of(m: &fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        }
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Whether `path` still holds the file this stamp was taken of, unchanged.
    pub(crate) fn still_at(&self, path: &Path) -> bool {
        fs::metadata(path)
            .map(|m| Stamp::of(&m) == *self)
            .unwrap_or(false)
    }
}

/// Open a file for sending, making sure the opened file is the one `stat` saw. `None`
/// when it does not exist.
pub(crate) fn open_stamped(path: &Path) -> Result<Option<(File, Stamp)>, NodeError> {
    let before = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(NodeError::io("stat", path, e)),
    };
    let file = match File::open(path) {
        Ok(f) => f,
        // Removed between stat and open.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(NodeError::io("open", path, e)),
    };
    let opened = file
        .metadata()
        .map_err(|e| NodeError::io("stat", path, e))?;
    let stamp = Stamp::of(&before);
    if Stamp::of(&opened) != stamp {
        // Replaced between stat and open; the next GET will see the new one.
        return Err(NodeError::io(
            "open",
            path,
            io::Error::other("content changed while being opened"),
        ));
    }
    Ok(Some((file, stamp)))
}

/// One content file sent from an offset.
pub(crate) struct FileContent {
    file: File,
    path: PathBuf,
    node: String,
    pos: u64,
    end: u64,
    len: u64,
    stamp: Stamp,
}

impl FileContent {
    /// Send the first of `candidates` that exists, from `offset`; `None` when none does.
    pub(crate) fn open_first(
        candidates: &[PathBuf],
        offset: u64,
        node: &str,
    ) -> Result<Option<FileContent>, NodeError> {
        for path in candidates {
            let Some((file, stamp)) = open_stamped(path)? else {
                continue;
            };
            let size = stamp.size;
            let start = offset.min(size);
            return Ok(Some(FileContent {
                file,
                path: path.clone(),
                node: node.to_string(),
                pos: start,
                end: size,
                len: size - start,
                stamp,
            }));
        }
        Ok(None)
    }
}

#[async_trait]
impl Content for FileContent {
    fn len(&self) -> u64 {
        self.len
    }

    fn local_file(&self) -> Option<(&File, u64)> {
        Some((&self.file, self.pos))
    }

    fn advance(&mut self, n: u64) {
        self.pos = (self.pos + n).min(self.end);
    }

    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NodeError> {
        if self.pos >= self.end || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min((self.end - self.pos) as usize);
        let n = self
            .file
            .read_at(&mut buf[..want], self.pos)
            .map_err(|e| NodeError::io("read", &self.path, e))?;
        if n == 0 {
            return Err(NodeError::Io {
                op: "read",
                path: self.path.clone(),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{}: content shrank while being sent", self.node),
                ),
            });
        }
        self.pos += n as u64;
        Ok(n)
    }

    async fn validity(&mut self) -> Result<Validity, NodeError> {
        Ok(if self.stamp.still_at(&self.path) {
            Validity::Valid
        } else {
            Validity::Invalid
        })
    }

    async fn done(self: Box<Self>, _receiver_ok: bool) -> Result<(), NodeError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_names_are_checked() {
        let long = Key::from_str(&format!("WORM--{}", "a".repeat(248))).unwrap();
        assert!(matches!(
            checked_key_file(&long, 4),
            Err(NodeError::BadKey { .. })
        ));
        assert!(checked_key_file(&long, 0).is_ok());
        let k = Key::from_str("WORM--../../x").unwrap();
        assert!(!checked_key_file(&k, 0).unwrap().contains(&b'/'));
    }

    #[tokio::test]
    async fn file_content_from_an_offset_and_change_check() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        fs::write(&p, b"0123456789").unwrap();
        let missing = d.path().join("nope");
        let mut c = FileContent::open_first(&[missing.clone(), p.clone()], 4, "n")
            .unwrap()
            .unwrap();
        assert_eq!(c.len(), 6);
        assert_eq!(c.local_file().unwrap().1, 4);
        let mut buf = [0u8; 16];
        let n = c.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"456789");
        assert_eq!(c.read(&mut buf).await.unwrap(), 0);
        assert_eq!(c.validity().await.unwrap(), Validity::Valid);
        fs::write(&p, b"changed!!!!").unwrap();
        assert_eq!(c.validity().await.unwrap(), Validity::Invalid);
        assert!(FileContent::open_first(&[missing], 0, "n")
            .unwrap()
            .is_none());
    }
}
