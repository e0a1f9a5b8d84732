//! The git-annex branch's log files: parse, format and merge, with no I/O.
//!
//! Every file on the branch is a set of text lines designed to be merged by union: git-annex
//! merges two versions by taking all lines of both, deduplicated and sorted bytewise
//! ([`lines::union_merge`]). Each line carries a timestamp ([`clock::Timestamp`]) so a
//! reader can pick the current value; each family has its own line layout and winner rule:
//!
//! | family | module | layout | winner |
//! |---|---|---|---|
//! | old UUID-based (`uuid.log`, `remote.log`, `trust.log`, `group.log`, ...) | [`uuidlogs`] | `UUID VALUE timestamp=T` | newest per UUID |
//! | new UUID-based (`maxsize.log`, `proxy.log`, `cluster.log`, `export.log`, `.log.rmt`, `.log.cid`) | [`uuidlogs`] | `T UUID VALUE` | newest per UUID |
//! | map logs (`config.log`, `group-preferred-content.log`, `.log.cnk`) | [`maps`], [`chunk`] | `T FIELD VALUE` | newest per field |
//! | single value (`numcopies.log`, `mincopies.log`) | [`single`] | `T VALUE` | newest, then greatest |
//! | presence (`.log`, `.log.web`, `.log.ek`) | [`presence`] | `T STATUS INFO` | newest per INFO |
//! | metadata (`.log.met`, `.log.rmet`) | [`metadata`] | `T FIELD +V -V ...` | replayed oldest first |
//!
//! Parsers skip lines they cannot read and never fail on a file. Each parsed log is a value
//! with a `merge` that equals parsing the union merge of the formatted inputs; merges are
//! commutative, associative and idempotent, and the newest line wins (property tests in
//! each module check these laws). [`paths`] maps logs to branch paths and back.

pub mod chunk;
pub mod clock;
pub mod lines;
pub mod maplog;
pub mod maps;
pub mod metadata;
pub mod paths;
pub mod presence;
pub mod single;
pub mod uuidlogs;

pub use chunk::{ChunkLog, ChunkMethod};
pub use clock::Timestamp;
pub use lines::{log_lines, union_merge, union_merge_bytes, Merged};
pub use maplog::{LogEntry, MapLog};
pub use maps::{ConfigLog, GroupPreferredContentLog};
pub use metadata::MetaDataLog;
pub use paths::{
    classify, journal_name, journal_path, key_log_path, location_log_key, location_log_path,
    BranchHash, KeyLog, LogFile,
};
pub use presence::{LocationLog, PresenceLog, Status};
pub use single::{Copies, CopiesLog};
pub use uuidlogs::{
    ClusterLog, Clusters, ContentIdLog, ExportLog, GroupLog, MaxSizeLog, OldRawLog,
    PreferredContentLog, Proxy, ProxyLog, RemoteConfig, RemoteLog, RemoteStateLog, TrustLevel,
    TrustLog, UuidLog,
};
