//! Sending chunked content (GET): the chunk files read one after another as one stream,
//! from any offset. (Whole content is one file: [`crate::node::localfs::FileContent`].)
//!
//! Every chunk is stat'ed when the download starts; that fixes the content's length and
//! where each chunk begins. A chunk opened later must still be the file that was stat'ed
//! (else the download fails: its bytes could no longer add up), and must be unchanged
//! after it was read (else the content is reported `INVALID`).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use async_trait::async_trait;

use crate::node::localfs::{open_stamped, Stamp};
use crate::node::{Content, NodeError, Validity};

pub(super) struct ChunkedContent {
    node: String,
    /// Each chunk file and its stamp at the start.
    chunks: Vec<(PathBuf, Stamp)>,
    /// The chunk being read, and the open file once it is opened.
    idx: usize,
    file: Option<File>,
    /// Position in the current chunk.
    pos: u64,
    len: u64,
    remaining: u64,
    changed: bool,
}

impl ChunkedContent {
    pub(super) fn open(
        files: Vec<PathBuf>,
        offset: u64,
        node: String,
    ) -> Result<ChunkedContent, NodeError> {
        let mut chunks = Vec::with_capacity(files.len());
        let mut total: u64 = 0;
        for f in files {
            let m = fs::metadata(&f).map_err(|e| NodeError::io("stat", &f, e))?;
            let stamp = Stamp::of(&m);
            total = total.saturating_add(stamp.size());
            chunks.push((f, stamp));
        }
        let start = offset.min(total);
        // Find the chunk holding the first byte to send.
        let mut idx = 0;
        let mut pos = start;
        while idx < chunks.len() && pos >= chunks[idx].1.size() && pos > 0 {
            pos -= chunks[idx].1.size();
            idx += 1;
        }
        Ok(ChunkedContent {
            node,
            chunks,
            idx,
            file: None,
            pos,
            len: total - start,
            remaining: total - start,
            changed: false,
        })
    }

    fn broke(&self, what: &str) -> NodeError {
        let path = self
            .chunks
            .get(self.idx)
            .map(|c| c.0.clone())
            .unwrap_or_default();
        NodeError::io(
            "read",
            path,
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: {what}", self.node),
            ),
        )
    }

    /// Close the current chunk after its last byte was read, noting whether it changed.
    fn close_current(&mut self) {
        if let Some(f) = self.file.take() {
            let same = f
                .metadata()
                .map(|m| Stamp::of(&m) == self.chunks[self.idx].1)
                .unwrap_or(false);
            if !same {
                self.changed = true;
            }
        }
        self.idx += 1;
        self.pos = 0;
    }
}

#[async_trait]
impl Content for ChunkedContent {
    fn len(&self) -> u64 {
        self.len
    }

    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NodeError> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.remaining == 0 {
                return Ok(0);
            }
            let Some((path, stamp)) = self.chunks.get(self.idx).cloned() else {
                return Err(self.broke("content shrank while being sent"));
            };
            if self.pos >= stamp.size() {
                self.close_current();
                continue;
            }
            if self.file.is_none() {
                match open_stamped(&path)? {
                    Some((f, now)) if now == stamp => self.file = Some(f),
                    Some(_) => return Err(self.broke("a chunk changed while being sent")),
                    None => return Err(self.broke("a chunk vanished while being sent")),
                }
            }
            let file = self.file.as_ref().expect("opened above");
            let want = buf
                .len()
                .min((stamp.size() - self.pos) as usize)
                .min(self.remaining as usize);
            let n = file
                .read_at(&mut buf[..want], self.pos)
                .map_err(|e| NodeError::io("read", &path, e))?;
            if n == 0 {
                return Err(self.broke("content shrank while being sent"));
            }
            self.pos += n as u64;
            self.remaining -= n as u64;
            if self.pos >= stamp.size() {
                self.close_current();
            }
            return Ok(n);
        }
    }

    async fn validity(&mut self) -> Result<Validity, NodeError> {
        if let Some(f) = &self.file {
            let same = f
                .metadata()
                .map(|m| Stamp::of(&m) == self.chunks[self.idx].1)
                .unwrap_or(false);
            if !same {
                self.changed = true;
            }
        }
        Ok(if self.changed {
            Validity::Invalid
        } else {
            Validity::Valid
        })
    }

    async fn done(self: Box<Self>, _receiver_ok: bool) -> Result<(), NodeError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(dir: &std::path::Path, parts: &[&[u8]]) -> Vec<PathBuf> {
        parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let f = dir.join(format!("c{i}"));
                fs::write(&f, p).unwrap();
                f
            })
            .collect()
    }

    async fn drain(c: &mut ChunkedContent, step: usize) -> Result<Vec<u8>, NodeError> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; step];
        loop {
            let n = c.read(&mut buf).await?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn reads_across_chunks_from_any_offset() {
        let d = tempfile::tempdir().unwrap();
        let files = chunks(d.path(), &[b"abcd", b"efgh", b"ij"]);
        let all = b"abcdefghij";
        for off in 0..=12u64 {
            for step in [1, 3, 4, 64] {
                let mut c = ChunkedContent::open(files.clone(), off, "n".into()).unwrap();
                let from = (off as usize).min(all.len());
                assert_eq!(c.len(), (all.len() - from) as u64);
                assert_eq!(
                    drain(&mut c, step).await.unwrap(),
                    &all[from..],
                    "{off}/{step}"
                );
                assert_eq!(c.validity().await.unwrap(), Validity::Valid);
            }
        }
        // An empty single chunk (empty content).
        let e = chunks(&d.path().join(""), &[b""]);
        let mut c = ChunkedContent::open(e, 0, "n".into()).unwrap();
        assert!(c.is_empty());
        assert!(drain(&mut c, 8).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn changes_while_sending_are_noticed() {
        let d = tempfile::tempdir().unwrap();
        let files = chunks(d.path(), &[b"abcd", b"efgh", b"ij"]);
        // A chunk modified in place after it was read: INVALID.
        let mut c = ChunkedContent::open(files.clone(), 0, "n".into()).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(c.read(&mut buf).await.unwrap(), 4);
        assert_eq!(c.read(&mut buf[..2]).await.unwrap(), 2);
        fs::write(&files[1], b"EFGH").unwrap();
        let rest = drain(&mut c, 8).await.unwrap();
        assert_eq!(rest, b"GHij");
        assert_eq!(c.validity().await.unwrap(), Validity::Invalid);
        // A chunk replaced before it was opened: the download breaks.
        let files = chunks(d.path(), &[b"abcd", b"efgh", b"ij"]);
        let mut c = ChunkedContent::open(files.clone(), 0, "n".into()).unwrap();
        assert_eq!(c.read(&mut buf).await.unwrap(), 4);
        fs::remove_file(&files[2]).unwrap();
        fs::write(&files[2], b"IJKL").unwrap();
        assert!(drain(&mut c, 8).await.is_err());
    }
}
