//! The async I/O driver: runs a [`ServerSession`] over a byte stream against a node.
//!
//! It reads client lines and decodes them ([`crate::proto::p2p::decode`]), feeds them to
//! the session, and carries out the session's actions: writing replies, calling the
//! node, moving DATA payloads between the stream and the node. Payloads stream through
//! bounded buffers (never a whole object in memory); reading the next chunk overlaps with
//! handing the previous one on. A GET of content that is a local file
//! ([`crate::node::Content::local_file`]) goes out with `sendfile` when the output is a
//! raw descriptor (pipe or socket).
//!
//! The node is made lazily by a [`NodeFactory`], once, when the first request needs it,
//! with the negotiated protocol version and the client's `BYPASS` list. For a plain
//! repository the node itself is the factory (`Arc<dyn Node>` implements it).
//!
//! How annexgate-shell uses it:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use annexgate::conn::{self, ServeOptions};
//! # use annexgate::session::server::{ServerConfig, ServerMode};
//! # async fn run(node: Arc<dyn annexgate::node::Node>) -> i32 {
//! let mode = conn::server_mode_from_env();
//! let options = ServeOptions::new(ServerConfig::shell(node.uuid().clone(), mode));
//! match conn::serve_stdio(options, node).await {
//!     Ok(outcome) => {
//!         if let Some(message) = outcome.message() {
//!             eprintln!("annexgate-shell: {message}");
//!         }
//!         outcome.exit_code()
//!     }
//!     Err(e) => {
//!         eprintln!("annexgate-shell: {e}");
//!         1
//!     }
//! }
//! # }
//! ```
//!
//! Everything here must run inside a tokio runtime with I/O enabled (a current-thread
//! runtime is enough: one session is one sequential conversation). A node's `PutSink`
//! that does heavy work in `write` (hashing) should hand it to another thread if it wants
//! reading the next chunk from the client to overlap with it.
//!
//! A client that hangs up (EOF, broken pipe) ends the session cleanly (exit status 0);
//! a protocol failure ends it with status 1 and a message, as git-annex-shell does.
//! Logs go through `tracing` only.

mod driver;
pub mod fd;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::AsyncRead;

pub use fd::{FdStream, Output, Plain};

use crate::node::{Node, NodeError};
use crate::session::server::{End, ServerConfig, ServerMode};
use crate::types::Uuid;

// Also used by the p2phttp server, which runs the same session per HTTP request.
pub(crate) use driver::{release, run_call, Held};

/// Makes the node a session serves, once the client's version and bypass list are known.
#[async_trait]
pub trait NodeFactory: Send {
    async fn create(&mut self, version: u8, bypass: &[Uuid]) -> Result<Arc<dyn Node>, NodeError>;
}

/// A ready node serves as its own factory.
#[async_trait]
impl NodeFactory for Arc<dyn Node> {
    async fn create(&mut self, _version: u8, _bypass: &[Uuid]) -> Result<Arc<dyn Node>, NodeError> {
        Ok(self.clone())
    }
}

/// A factory from a closure returning a future.
pub struct FnFactory<F>(pub F);

#[async_trait]
impl<F, Fut> NodeFactory for FnFactory<F>
where
    F: FnMut(u8, Vec<Uuid>) -> Fut + Send,
    Fut: std::future::Future<Output = Result<Arc<dyn Node>, NodeError>> + Send,
{
    async fn create(&mut self, version: u8, bypass: &[Uuid]) -> Result<Arc<dyn Node>, NodeError> {
        (self.0)(version, bypass.to_vec()).await
    }
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub config: ServerConfig,
    /// Size of each I/O buffer (two for reading, two for writing payloads); at least
    /// 64 KiB. Default 256 KiB.
    pub buffer_size: usize,
}

impl ServeOptions {
    pub fn new(config: ServerConfig) -> ServeOptions {
        ServeOptions {
            config,
            buffer_size: 256 * 1024,
        }
    }
}

/// How a served session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOutcome {
    pub end: End,
    /// The protocol version the session ended with.
    pub version: u8,
    /// The client's BYPASS list.
    pub bypass: Vec<Uuid>,
    /// The client's UUID, when it authenticated with AUTH.
    pub client_uuid: Option<Uuid>,
}

impl ServeOutcome {
    /// git-annex-shell's exit status for this end: 0 clean, 1 failed.
    pub fn exit_code(&self) -> i32 {
        match self.end {
            End::Clean => 0,
            End::Failed(_) => 1,
        }
    }
    /// What to print on stderr, for a failed session.
    pub fn message(&self) -> Option<String> {
        match &self.end {
            End::Clean => None,
            End::Failed(f) => Some(f.to_string()),
        }
    }
}

/// Failures of the driver itself (not of the protocol).
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The server mode git-annex-shell derives from `GIT_ANNEX_SHELL_READONLY` and
/// `GIT_ANNEX_SHELL_APPENDONLY` in this process's environment.
pub fn server_mode_from_env() -> ServerMode {
    ServerMode::from_env_values(
        std::env::var_os("GIT_ANNEX_SHELL_READONLY").as_deref(),
        std::env::var_os("GIT_ANNEX_SHELL_APPENDONLY").as_deref(),
    )
}

/// Serve one session over `reader`/`writer` until it ends.
pub async fn serve<R, W, F>(
    reader: R,
    writer: W,
    options: ServeOptions,
    factory: F,
) -> Result<ServeOutcome, ConnError>
where
    R: AsyncRead + Unpin + Send,
    W: Output,
    F: NodeFactory,
{
    driver::Driver::new(reader, writer, options, factory)
        .run()
        .await
}

/// Serve one session over two owned descriptors (pipes, sockets, files).
pub async fn serve_fds<F: NodeFactory>(
    input: std::os::fd::OwnedFd,
    output: std::os::fd::OwnedFd,
    options: ServeOptions,
    factory: F,
) -> Result<ServeOutcome, ConnError> {
    let reader = FdStream::new(input, false).map_err(|source| ConnError::Io {
        op: "set up the input descriptor",
        source,
    })?;
    let writer = FdStream::new(output, true).map_err(|source| ConnError::Io {
        op: "set up the output descriptor",
        source,
    })?;
    serve(reader, writer, options, factory).await
}

/// Serve one session on this process's stdin and stdout (annexgate-shell p2pstdio).
/// Takes the descriptors over first ([`fd::take_stdio`]): afterwards fd 0 reads
/// `/dev/null` and fd 1 writes to stderr, so stray output cannot corrupt the protocol.
pub async fn serve_stdio<F: NodeFactory>(
    options: ServeOptions,
    factory: F,
) -> Result<ServeOutcome, ConnError> {
    let (input, output) = fd::take_stdio().map_err(|source| ConnError::Io {
        op: "take over stdin/stdout",
        source,
    })?;
    serve_fds(input, output, options, factory).await
}

#[cfg(test)]
mod tests;
