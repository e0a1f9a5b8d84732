//! Nodes: whatever stores content by key. One small trait serves every front door
//! (annexgate-shell, annexgate-http, git-annex-remote-proxy) and every kind of storage
//! (a local git-annex repository, a repository behind ssh or p2phttp, a directory, S3, an
//! external special remote) — and a cluster is a node made of nodes.
//!
//! The trait speaks in the P2P protocol's operations, but semantically: no versions, no
//! wire messages. Each implementation adapts to what its far side can do (e.g. a P2P node
//! whose server speaks v2 emulates REMOVE-BEFORE on the gateway's clock).
//!
//! Data moves through two small streaming interfaces, [`Content`] for GET and
//! [`PutSink`] for PUT, so a front door never buffers a whole object, and a local file can
//! go out with `sendfile`/`splice`.

pub mod annexrepo;
pub mod cluster;
pub mod conformance;
pub mod directory;
pub mod error;
pub mod http;
pub(crate) mod localfs;
pub mod lock;
pub mod memory;
pub mod p2p;
pub mod unavailable;

use async_trait::async_trait;

pub use error::NodeError;

use crate::types::{AssociatedFile, Key, Uuid};

/// Outcome of a removal. `removed` is true also when the content was not there.
/// `plus` lists further repositories the content was removed from (clusters, proxies),
/// the node's own UUID excluded unless it is itself in the list git-annex expects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Removed {
    pub removed: bool,
    pub plus: Vec<Uuid>,
    /// A node's own error text, when one node of several failed (clusters pass the first
    /// one through, as `ERROR <text>` to clients that cannot take `FAILURE-PLUS`).
    pub error: Option<String>,
}

/// Outcome of storing content.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stored {
    pub stored: bool,
    /// Repositories that now hold the content, for `SUCCESS-PLUS`. Empty for a plain node
    /// (then `SUCCESS` means "stored in the node the client addressed").
    pub plus: Vec<Uuid>,
}

/// Whether data sent was unchanged while it was read (P2P `VALID` / `INVALID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Valid,
    Invalid,
    /// Protocol v0: no validity message; the receiver must verify everything itself.
    Unknown,
}

/// The start of an upload.
pub enum PutStart {
    /// The node has the content already (`ALREADY-HAVE` / `ALREADY-HAVE-PLUS plus`).
    AlreadyHave { plus: Vec<Uuid> },
    /// Send the content from `sink.offset()` on.
    Accept(Box<dyn PutSink>),
}

impl std::fmt::Debug for PutStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PutStart::AlreadyHave { plus } => write!(f, "AlreadyHave({plus:?})"),
            PutStart::Accept(s) => write!(f, "Accept(offset {})", s.offset()),
        }
    }
}

/// Receives one upload. The calls come in this order: [`PutSink::begin`] once with the
/// number of bytes that follow, [`PutSink::write`] with those bytes in order, then one of
/// [`PutSink::finish`] (all bytes arrived), [`PutSink::data_present`] (instead of data:
/// the content was put in place out of band) or [`PutSink::abort`] (the sender vanished
/// or sent garbage). Nothing a sink receives may become visible as content until
/// `finish` has verified it.
#[async_trait]
pub trait PutSink: Send {
    /// Byte offset the node wants the content from (`PUT-FROM`): the size of a partial
    /// earlier upload it kept.
    fn offset(&self) -> u64;
    /// `len` bytes follow (`DATA len`).
    async fn begin(&mut self, len: u64) -> Result<(), NodeError>;
    async fn write(&mut self, data: &[u8]) -> Result<(), NodeError>;
    /// Every announced byte was written; `validity` is what the sender said of it.
    async fn finish(self: Box<Self>, validity: Validity) -> Result<Stored, NodeError>;
    /// `DATA-PRESENT`: check whether the content is in place now.
    async fn data_present(self: Box<Self>) -> Result<Stored, NodeError>;
    /// The upload ends unfinished; keep what resuming can use, make nothing visible.
    async fn abort(self: Box<Self>);
    /// Offered before [`PutSink::begin`] by a caller that hashes every byte of the content
    /// itself, from offset 0 (a cluster handing one upload to several nodes): it then calls
    /// `finish` with [`Validity::Valid`] only when that hash matched the key, and with
    /// [`Validity::Invalid`] when it did not. A sink that takes the offer (returns true)
    /// need not hash the bytes again; one that would not hash them anyway, or that resumes
    /// a partial upload the caller never saw, declines.
    fn take_upstream_verification(&mut self) -> bool {
        false
    }
}

/// A download in progress: `len()` bytes from the requested offset.
#[async_trait]
pub trait Content: Send {
    /// Bytes that will be sent (`DATA len`): size - offset, or 0.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// For zero-copy senders: the local file the bytes come from and the offset of the
    /// first byte. A caller that uses it must then call [`Content::advance`] for the bytes
    /// it moved itself.
    fn local_file(&self) -> Option<(&std::fs::File, u64)> {
        None
    }
    /// Record `n` bytes moved through [`Content::local_file`].
    fn advance(&mut self, _n: u64) {}
    /// Read the next bytes into `buf`; 0 at the end. Errors mean the transfer broke.
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NodeError>;
    /// After the last byte: whether the content stayed unchanged while read.
    async fn validity(&mut self) -> Result<Validity, NodeError>;
    /// The receiver's verdict (`SUCCESS`/`FAILURE` after a GET); closes the transfer.
    async fn done(self: Box<Self>, receiver_ok: bool) -> Result<(), NodeError>;
}

/// A held content lock (`LOCKCONTENT`); dropping or [`ContentLock::unlock`]ing releases it.
#[async_trait]
pub trait ContentLock: Send {
    async fn unlock(self: Box<Self>) -> Result<(), NodeError>;
}

/// What a node can do beyond the required operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// LOCKCONTENT can succeed (clusters and special remotes: never).
    pub lock: bool,
    /// REMOVE-BEFORE is honoured on the node's own clock (else emulated or refused).
    pub remove_before: bool,
    /// A partial upload can be resumed (PUT-FROM > 0).
    pub resume: bool,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            lock: true,
            remove_before: true,
            resume: true,
        }
    }
}

/// Storage that keeps content by key.
#[async_trait]
pub trait Node: Send + Sync {
    /// The UUID this node answers as (for a cluster, the cluster UUID).
    fn uuid(&self) -> &Uuid;
    /// A human name for messages: a remote name or a path.
    fn name(&self) -> &str;
    fn caps(&self) -> Caps {
        Caps::default()
    }

    /// Whether the whole content is present.
    async fn check_present(&self, key: &Key) -> Result<bool, NodeError>;

    /// Lock the content against removal; `None` when absent or not lockable.
    async fn lock_content(&self, key: &Key) -> Result<Option<Box<dyn ContentLock>>, NodeError>;

    /// Start a download from `offset`; `None` when the content is absent.
    async fn get(
        &self,
        key: &Key,
        offset: u64,
        af: &AssociatedFile,
    ) -> Result<Option<Box<dyn Content>>, NodeError>;

    /// Start an upload.
    async fn put(&self, key: &Key, af: &AssociatedFile) -> Result<PutStart, NodeError>;

    /// Remove the content; with `deadline`, only while the node's monotonic clock (as
    /// [`Node::timestamp`] reports it) is still below it.
    async fn remove(&self, key: &Key, deadline: Option<u64>) -> Result<Removed, NodeError>;

    /// The node's monotonic clock in seconds (`GETTIMESTAMP`).
    async fn timestamp(&self) -> Result<u64, NodeError>;
}

/// Seconds of this machine's monotonic clock that counts suspend (Linux `CLOCK_BOOTTIME`),
/// the clock git-annex uses for `GETTIMESTAMP`.
pub fn boottime_secs() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64
}

/// Where a node reports location changes it made (the gateway's git-annex branch, batched
/// by `branch::recorder`). Implemented outside the node layer so nodes stay unaware of git.
pub trait LocationSink: Send + Sync {
    /// `uuid` now has (`present`) or lacks the content of `key`.
    fn record(&self, key: &Key, uuid: &Uuid, present: bool);
}

/// A sink that records nothing (tests, read-only use).
pub struct NoLocations;
impl LocationSink for NoLocations {
    fn record(&self, _key: &Key, _uuid: &Uuid, _present: bool) {}
}

/// The chunk log of the git-annex branch (`KEY.log.cnk`), as special remotes that store
/// content in chunks need it: which chunkings of a key a remote holds. Implemented by the
/// branch writer; nodes stay unaware of git.
pub trait ChunkLog: Send + Sync {
    /// Chunkings recorded for `key` at special remote `remote`: (chunk size, chunk count);
    /// count 0 = removed.
    fn chunks(&self, remote: &Uuid, key: &Key) -> Vec<(u64, u64)>;
    /// Record that `remote` holds `key` in `count` chunks of `chunk_size` bytes (0: no
    /// longer holds that chunking).
    fn record_chunks(&self, remote: &Uuid, key: &Key, chunk_size: u64, count: u64);
}
