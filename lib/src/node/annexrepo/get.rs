//! Sending content (GET): the object file read from an offset. Whether it stayed unchanged
//! while read is judged like git-annex's inode cache: device, inode, size and mtime of the
//! path before and after must match (an unlocked or thin file can change in place; a
//! drop or re-add replaces the inode).

use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;

use async_trait::async_trait;

use super::paths::checked_key_file;
use super::Inner;
use crate::node::{Content, NodeError, Validity};
use crate::types::Key;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    fn of(m: &fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        }
    }
}

pub(super) struct ObjectContent {
    file: File,
    path: PathBuf,
    node: String,
    pos: u64,
    end: u64,
    len: u64,
    stamp: Stamp,
}

/// Open the key's content for reading from `offset`; `None` when absent.
pub(super) fn open(
    inner: &Inner,
    key: &Key,
    offset: u64,
) -> Result<Option<Box<dyn Content>>, NodeError> {
    let kf = checked_key_file(key, 0)?;
    for path in inner.layout.object_candidates(key, &kf) {
        let before = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(NodeError::io("stat", &path, e)),
        };
        let file = match File::open(&path) {
            Ok(f) => f,
            // Removed between stat and open: look further, then report absent.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(NodeError::io("open", &path, e)),
        };
        let opened = file
            .metadata()
            .map_err(|e| NodeError::io("stat", &path, e))?;
        let stamp = Stamp::of(&before);
        if Stamp::of(&opened) != stamp {
            // Replaced between stat and open; the next GET will see the new one.
            return Err(NodeError::io(
                "open",
                &path,
                std::io::Error::other("content changed while being opened"),
            ));
        }
        let size = stamp.size;
        let start = offset.min(size);
        return Ok(Some(Box::new(ObjectContent {
            file,
            path,
            node: inner.node_name(),
            pos: start,
            end: size,
            len: size - start,
            stamp,
        })));
    }
    Ok(None)
}

#[async_trait]
impl Content for ObjectContent {
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
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{}: content shrank while being sent", self.node),
                ),
            });
        }
        self.pos += n as u64;
        Ok(n)
    }

    async fn validity(&mut self) -> Result<Validity, NodeError> {
        let same = fs::metadata(&self.path)
            .map(|m| Stamp::of(&m) == self.stamp)
            .unwrap_or(false);
        Ok(if same {
            Validity::Valid
        } else {
            Validity::Invalid
        })
    }

    async fn done(self: Box<Self>, _receiver_ok: bool) -> Result<(), NodeError> {
        Ok(())
    }
}
