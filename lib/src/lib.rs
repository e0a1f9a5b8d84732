//! annexgate: a gateway for git-annex clusters.
//!
//! ```text
//!  git-annex client ─ ssh ─► annexgate-shell ─┐
//!  git-annex client ─ http ─► annexgate-http ─┼─► proto (bytes <-> messages, pure)
//!  git-annex (external) ─► git-annex-remote-proxy ┘        │
//!                                                   session (state machines, pure)
//!                                                          │
//!                                                   conn (the async I/O driver)
//!                                                          │
//!                                   ┌──────────── node::Cluster (impl Node) ◄── placement (pure)
//!                                   ▼                                               ▲
//!      node::{AnnexRepo, P2p (ssh/stdio), Http (p2phttp), Directory, S3, External}  │
//!                                   │                                        branch::log (pure)
//!                                   ▼                                               ▲
//!                          branch::repo (the only git code) ────────────────────────┘
//! ```
//!
//! Which modules may do I/O: `conn`, `node`, `branch::repo`, `shell` (process set-up),
//! `http` (the p2phttp server; its `route` and `auth` parts are pure), `gateway` (opens
//! repositories and builds nodes), `admin` (cluster set-up), `placement_io` (placement facts
//! from a repository: branch, config, work tree, `git check-attr`, the repository size
//! cache), `cli` (the `annexgate` program's commands) and `logging`. `types`, `proto`,
//! `session`, `placement` and `branch::log` are pure: no files,
//! sockets, clocks or processes, so they are tested by replaying recorded exchanges.

pub mod admin;
pub mod branch;
pub mod cli;
pub mod conn;
pub mod gateway;
pub mod http;
pub mod logging;
pub mod node;
pub mod placement;
pub mod placement_io;
pub mod proto;
pub mod session;
pub mod shell;
pub mod types;

pub use types::{AssociatedFile, Key, Uuid};
