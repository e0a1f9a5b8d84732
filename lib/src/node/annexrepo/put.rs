//! Receiving content (PUT): into `annex/tmp/<keyFile>` from the offset a partial earlier
//! upload left, verified, then renamed into the object store and frozen.
//!
//! Verification follows git-annex (`P2P/Annex.hs`, `getViaTmp`): with `VALID` the bytes
//! are hashed as they arrive (a resumed upload hashes the kept prefix first) and that
//! hash decides; with `INVALID` or no validity (protocol v0) the whole file is re-read and
//! verified, even when `annex.verify` is false; so is a resumed upload without an
//! incremental hash. `DATA 0` + `INVALID` means the sender could not read the content:
//! nothing is stored and the partial file stays. A failed verification deletes the temp
//! file (resuming from bad bytes would fail forever).
//!
//! Durability follows git-annex unless `annexgate.fsync` is set: received content is not
//! fsynced (the page cache holds it until the kernel writes it back, as for git-annex's
//! own objects; a power loss can lose what was acknowledged, and `git annex fsck` finds
//! it). With `annexgate.fsync`, writeback starts every few MiB while the data arrives, the
//! file's data is fsynced before the rename and the directory after it, so `SUCCESS`
//! means on disk. Measured here: about 10 ms per small object (one journal commit), and
//! little for big ones, whose writeback overlaps the transfer.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::content_lock::in_content_dir_made;
use super::paths::{checked_key_file, AFFIX_MAX};
use super::transfer::{check_disk_space, lock_download, TransferLock};
use super::Inner;
use crate::node::localfs::{blocking_unless_small, fsync_dir, verify_file};
use crate::node::{NodeError, PutSink, PutStart, Stored, Validity};
use crate::types::backend::{is_secure_hash, is_verifiable, Verdict, Verifier};
use crate::types::{AssociatedFile, Key, Uuid};

const CHUNK: usize = 1 << 16;
/// With `annexgate.fsync`, writeback of received data is started every this many bytes,
/// so the fsync at the end waits only for the tail.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Start receiving `key`.
pub(super) async fn start(
    inner: &Arc<Inner>,
    key: &Key,
    af: &AssociatedFile,
    peer: Option<&Uuid>,
) -> Result<PutStart, NodeError> {
    let kf = checked_key_file(key, AFFIX_MAX)?;
    if inner.cfg.secure_hashes_only && !is_secure_hash(key) {
        return Err(NodeError::Denied(format!(
            "annex.securehashesonly blocked transfer of {} key",
            key.variety_str()
        )));
    }
    if inner.is_present(key)? {
        return Ok(PutStart::AlreadyHave { plus: Vec::new() });
    }
    let Some(transfer) = lock_download(inner, key, af, peer)? else {
        return Err(NodeError::Busy {
            node: inner.node_name(),
            detail: format!(
                "transfer of {key} already in progress, or unable to take transfer lock"
            ),
        });
    };
    let tmp = inner.layout.tmp_path(&kf);
    let (existed, offset) = match fs::symlink_metadata(&tmp) {
        Ok(m) if m.is_file() => (true, m.len()),
        Ok(_) => {
            return Err(NodeError::io(
                "use",
                &tmp,
                io::Error::new(io::ErrorKind::InvalidData, "not a regular file"),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => (false, 0),
        Err(e) => return Err(NodeError::io("stat", &tmp, e)),
    };
    // A partial file bigger than the content cannot be resumed from; start over. (One
    // exactly as big may be complete: the sender then sends nothing and it is verified.)
    let offset = match key.size() {
        Some(s) if offset > s => {
            fs::remove_file(&tmp).map_err(|e| NodeError::io("remove", &tmp, e))?;
            0
        }
        _ => offset,
    };
    let need = key.size().unwrap_or(1).saturating_sub(offset);
    check_disk_space(inner, key, need)?;
    let reservation = Reservation::new(inner.clone(), key.clone(), need);
    Ok(PutStart::Accept(Box::new(AnnexPutSink {
        inner: inner.clone(),
        key: key.clone(),
        tmp,
        offset,
        resuming: existed,
        transfer: Some(transfer),
        _reservation: reservation,
        file: None,
        announced: 0,
        written: 0,
        unsynced_from: offset,
        verifier: None,
        upstream_verified: false,
    })))
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

struct AnnexPutSink {
    inner: Arc<Inner>,
    key: Key,
    tmp: PathBuf,
    offset: u64,
    /// The temp file existed before (git-annex then trusts only an incremental hash).
    resuming: bool,
    transfer: Option<TransferLock>,
    _reservation: Reservation,
    file: Option<File>,
    announced: u64,
    written: u64,
    /// With fsync on: where in the temp file the data not yet sent to writeback starts.
    unsynced_from: u64,
    /// Incremental hash of the whole temp file (prefix included), when annex.verify is on
    /// and the key's backend can be verified.
    verifier: Option<Verifier>,
    /// The sender hashes the bytes and vouches for them with `Validity::Valid` (see
    /// [`PutSink::take_upstream_verification`]).
    upstream_verified: bool,
}

impl AnnexPutSink {
    fn node(&self) -> String {
        self.inner.node_name()
    }
}

/// Open the temp file for writing at `offset`, and hash what it already holds.
fn open_tmp(
    inner: &Inner,
    tmp: &Path,
    offset: u64,
    mut verifier: Option<Verifier>,
) -> Result<(File, Option<Verifier>), NodeError> {
    let dir = inner.layout.tmp_dir();
    let ensure_dir = || {
        inner
            .dirs
            .ensure(&inner.perms, &inner.cfg.git_dir, &dir)
            .map_err(|e| NodeError::io("create", &dir, e))
    };
    ensure_dir()?;
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            // From the start: whatever the file holds goes (with no look at it first).
            .truncate(offset == 0)
            .mode(inner.perms.file_create_mode())
            .open(tmp)
    };
    let first = match open() {
        // The temp directory was removed since we knew it: make it again.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            inner.dirs.forget(&dir);
            ensure_dir()?;
            open()
        }
        r => r,
    };
    let mut file = match first {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied && tmp.exists() => {
            // A partial file left read-only: make it writable again.
            inner
                .perms
                .thaw_content(tmp)
                .map_err(|e| NodeError::io("thaw", tmp, e))?;
            open()
        }
        r => r,
    }
    .map_err(|e| NodeError::io("open", tmp, e))?;
    let len = if offset == 0 {
        0
    } else {
        file.metadata()
            .map_err(|e| NodeError::io("stat", tmp, e))?
            .len()
    };
    if len < offset {
        return Err(NodeError::io(
            "resume",
            tmp,
            io::Error::new(io::ErrorKind::UnexpectedEof, "partial file shrank"),
        ));
    }
    if len > offset {
        file.set_len(offset)
            .map_err(|e| NodeError::io("truncate", tmp, e))?;
    }
    inner.perms.set_annex_file_perm(tmp);
    if let Some(v) = verifier.as_mut() {
        let mut buf = vec![0u8; CHUNK];
        let mut pos = 0u64;
        while pos < offset {
            let want = CHUNK.min((offset - pos) as usize);
            let n = file
                .read_at(&mut buf[..want], pos)
                .map_err(|e| NodeError::io("read", tmp, e))?;
            if n == 0 {
                break;
            }
            v.update(&buf[..n]);
            pos += n as u64;
        }
    }
    // A file just opened is at 0 already (reading the prefix used `read_at`).
    if offset > 0 {
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| NodeError::io("seek", tmp, e))?;
    }
    Ok((file, verifier))
}

/// Move verified content from the temp file into the object store, freezing it there
/// unless `frozen` (done through the open file already).
fn move_into_place(inner: &Inner, key: &Key, tmp: &Path, frozen: bool) -> Result<(), NodeError> {
    let kf = checked_key_file(key, AFFIX_MAX)?;
    let cands = inner.layout.object_candidates(key, &kf);
    let dest = &cands[0];
    let keydir = dest.parent().map(Path::to_path_buf).unwrap_or_default();
    let made = inner
        .dirs
        .make(&inner.perms, &inner.cfg.git_dir, &keydir)
        .map_err(|e| NodeError::io("create", &keydir, e))?;
    // A key directory made just now holds nothing; one that was there may hold the
    // content already (another route put it in place since the upload began), and so may
    // the other layout's. (The other layout was looked at when the upload began, and
    // git-annex puts new content only in the first.)
    if !made && cands.iter().any(|p| p.exists()) {
        // Keep the original. (git-annex, having stored the key, may have removed our temp
        // file already, as it cleans up a stored key's temp file.)
        match fs::remove_file(tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(NodeError::io("remove", tmp, e))
            }
            _ => return Ok(()),
        }
    }
    in_content_dir_made(inner, &keydir, made, || {
        fs::rename(tmp, dest)?;
        if frozen {
            Ok(())
        } else {
            inner.perms.freeze_content(dest)
        }
    })
    .map_err(|e| NodeError::io("move into place", dest, e))?;
    if inner.cfg.fsync {
        fsync_dir(&keydir);
    }
    Ok(())
}

/// Ask the kernel to start writing `len` bytes from `from` to disk, without waiting: by
/// the time the upload ends most of it is on disk and the final fsync is short.
fn start_writeback(file: &File, from: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(from), Ok(len)) = (libc::off64_t::try_from(from), libc::off64_t::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range on a descriptor we own; it only schedules writeback.
    let rc =
        unsafe { libc::sync_file_range(file.as_raw_fd(), from, len, libc::SYNC_FILE_RANGE_WRITE) };
    if rc != 0 {
        // Not fatal: the fsync at the end does it all.
        tracing::debug!("sync_file_range: {}", io::Error::last_os_error());
    }
}

#[async_trait]
impl PutSink for AnnexPutSink {
    fn offset(&self) -> u64 {
        self.offset
    }

    async fn begin(&mut self, len: u64) -> Result<(), NodeError> {
        if self.file.is_some() {
            return Err(NodeError::Protocol {
                node: self.node(),
                detail: "upload began twice".into(),
            });
        }
        self.announced = len;
        let verifier =
            (self.inner.cfg.verify && is_verifiable(&self.key) && !self.upstream_verified)
                .then(|| Verifier::new(&self.key, true));
        let inner = self.inner.clone();
        let tmp = self.tmp.clone();
        let offset = self.offset;
        let (end, fsync) = (offset.saturating_add(len), inner.cfg.fsync);
        let (file, verifier) =
            blocking_unless_small(end, fsync, move || open_tmp(&inner, &tmp, offset, verifier))
                .await?;
        self.file = Some(file);
        self.verifier = verifier;
        Ok(())
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), NodeError> {
        if self.written + data.len() as u64 > self.announced {
            return Err(NodeError::Protocol {
                node: self.node(),
                detail: format!("more data than the {} bytes announced", self.announced),
            });
        }
        let Some(file) = self.file.as_mut() else {
            return Err(NodeError::Protocol {
                node: self.node(),
                detail: "data before the upload began".into(),
            });
        };
        file.write_all(data)
            .map_err(|e| NodeError::io("write", &self.tmp, e))?;
        if let Some(v) = self.verifier.as_mut() {
            v.update(data);
        }
        self.written += data.len() as u64;
        if self.inner.cfg.fsync {
            let end = self.offset + self.written;
            if end - self.unsynced_from >= WRITEBACK_EVERY {
                start_writeback(file, self.unsynced_from, end - self.unsynced_from);
                self.unsynced_from = end;
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>, validity: Validity) -> Result<Stored, NodeError> {
        if self.file.is_none() || self.written != self.announced {
            return Err(NodeError::Protocol {
                node: self.node(),
                detail: format!(
                    "upload finished after {} of {} bytes",
                    self.written, self.announced
                ),
            });
        }
        if validity == Validity::Invalid && self.announced == 0 {
            // The sender could not read the content; keep what we have for a resume.
            return Ok(Stored::default());
        }
        let file = self.file.take().expect("checked above");
        let verifier = self.verifier.take();
        let inner = self.inner.clone();
        let key = self.key.clone();
        let tmp = self.tmp.clone();
        let expected_len = self.offset + self.announced;
        let resuming = self.resuming;
        let upstream_verified = self.upstream_verified;
        let fsync = inner.cfg.fsync;
        let ok = blocking_unless_small(expected_len, fsync, move || {
            let meta = file
                .metadata()
                .map_err(|e| NodeError::io("stat", &tmp, e))?;
            let real_len = meta.len();
            if inner.cfg.fsync {
                file.sync_data()
                    .map_err(|e| NodeError::io("fsync", &tmp, e))?;
            }
            let verdict = if real_len != expected_len {
                Verdict::WrongSize {
                    expected: expected_len,
                    got: real_len,
                }
            } else {
                match (validity, verifier) {
                    (Validity::Valid, Some(v)) => v.finish(&key),
                    // The sender hashed every byte from offset 0 and found them good;
                    // the size was checked above.
                    (Validity::Valid, None) if upstream_verified => Verdict::Good,
                    // No incremental hash: a resumed prefix is unknown, so hash it all.
                    (Validity::Valid, None) if resuming => verify_file(&tmp, &key, true)?,
                    (Validity::Valid, None) => verify_file(&tmp, &key, inner.cfg.verify)?,
                    (Validity::Invalid | Validity::Unknown, _) => verify_file(&tmp, &key, true)?,
                }
            };
            if verdict != Verdict::Good {
                drop(file);
                tracing::warn!(key = %key, ?verdict, "verification of received content failed");
                let _ = fs::remove_file(&tmp);
                return Ok(false);
            }
            {
                use std::os::unix::fs::PermissionsExt;
                inner
                    .perms
                    .freeze_open(&file, meta.permissions().mode())
                    .map_err(|e| NodeError::io("freeze", &tmp, e))?;
            }
            drop(file);
            move_into_place(&inner, &key, &tmp, true)?;
            Ok(true)
        })
        .await?;
        // Release the transfer lock before telling anyone: the content is in place.
        self.transfer.take();
        if !ok {
            return Ok(Stored::default());
        }
        self.inner.record(&self.key, true);
        self.inner.run_content_hook().await;
        Ok(Stored {
            stored: true,
            plus: Vec::new(),
        })
    }

    async fn data_present(mut self: Box<Self>) -> Result<Stored, NodeError> {
        self.file.take();
        self.transfer.take();
        let present = self.inner.is_present(&self.key)?;
        if present {
            self.inner.record(&self.key, true);
        }
        Ok(Stored {
            stored: present,
            plus: Vec::new(),
        })
    }

    async fn abort(mut self: Box<Self>) {
        // Keep the partial temp file for a resume; locks go with the sink.
        self.file.take();
        self.transfer.take();
    }

    fn take_upstream_verification(&mut self) -> bool {
        // Only before `begin`, for a fresh upload (a kept prefix was never seen by the
        // sender's hash), and only when this node would hash the bytes itself.
        self.upstream_verified = self.file.is_none()
            && self.offset == 0
            && self.inner.cfg.verify
            && is_verifiable(&self.key);
        self.upstream_verified
    }
}
