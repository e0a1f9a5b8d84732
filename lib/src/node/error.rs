//! Errors of nodes. One place (the session layer) maps them to the wire: P2P `ERROR text`,
//! an HTTP status, or a special remote's `TRANSFER-FAILURE`.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A file operation on the node's storage failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The node could not be reached (process would not start, connection refused).
    #[error("{node}: cannot connect: {reason}")]
    Unreachable { node: String, reason: String },
    /// The far side answered with its own error text (passed through to the client).
    #[error("{node}: {message}")]
    Remote { node: String, message: String },
    /// The far side broke the protocol (garbage, unexpected message, early EOF).
    #[error("{node}: protocol error: {detail}")]
    Protocol { node: String, detail: String },
    /// The far side did not answer in time.
    #[error("{node}: no answer within {secs} s")]
    Timeout { node: String, secs: u64 },
    /// Not enough room for the content (disk reserve, maxsize).
    #[error("{node}: not enough space: need {needed} bytes, {available} available")]
    Full {
        node: String,
        needed: u64,
        available: u64,
    },
    /// Another transfer of the same content is running (e.g. a git-annex process holds the
    /// key's transfer lock); trying again later may succeed.
    #[error("{node}: {detail}")]
    Busy { node: String, detail: String },
    /// The operation is not allowed here (read-only, append-only).
    #[error("{0}")]
    Denied(String),
    /// The node cannot do this at all.
    #[error("{node}: {what} is not supported")]
    Unsupported { node: String, what: &'static str },
    /// The data received was not the content of the key.
    #[error("verification of {key} failed: {detail}")]
    Verification { key: String, detail: String },
    /// The key cannot be stored here (e.g. a name no file system path can hold).
    #[error("bad key {key}: {detail}")]
    BadKey { key: String, detail: String },
}

impl NodeError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NodeError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Whether trying again, or another node, may succeed (fan-out and fail-over use it).
    pub fn retryable(&self) -> bool {
        match self {
            NodeError::Unreachable { .. }
            | NodeError::Busy { .. }
            | NodeError::Timeout { .. }
            | NodeError::Protocol { .. } => true,
            NodeError::Io { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::InvalidInput
            ),
            _ => false,
        }
    }
}
