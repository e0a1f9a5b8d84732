//! p2phttp: git-annex's P2P protocol over HTTP, server side (`annexgate-http`, a drop-in
//! for `git annex p2phttp`).
//!
//! The wire format (spec `p2phttp.md`): each P2P request is one HTTP request to
//! `/git-annex/{server uuid}/{v0..v4}/{endpoint}` with its arguments in the query string
//! (`key`, `clientuuid`, `bypass`, `associatedfile`, `offset`, `timestamp`, `lockid`;
//! any value may be sent as `[base64url]`). Content comes back from
//! `GET …/key/{key}` as the raw bytes with `X-git-annex-data-length`, one byte short when
//! it changed while being sent; uploads are `POST …/put` bodies of that announced length.
//! Other answers are small JSON objects (`{"present":true}`,
//! `{"plusuuids":[…],"stored":true}`, …; the `plusuuids` field from v2 on). Locks are
//! `lockcontent` (returns a lock id) then `keeplocked` (a streaming request body of
//! `{"unlock":false}` lines, released by `{"unlock":true}`, the body's end or a dropped
//! connection). Authentication is HTTP Basic against users from the environment.
//!
//! One protocol logic: every request runs as a P2P exchange against the same
//! [`crate::session::server::ServerSession`] that serves ssh clients (design choice (a),
//! as git-annex's own HTTP server speaks P2P to its repository in-process). The session
//! decides modes and refusals, version rules, the REMOVE/PUT replies and what a short
//! upload means; this module only translates between HTTP and the session's messages and
//! moves the bytes, streaming both ways through bounded buffers (no temp files, no
//! whole-object buffering).
//!
//! Parts: [`route`] (paths, parameters and git-annex's exact errors; pure), [`auth`] (the
//! permission decision table; pure), `exchange` (driving a session for one request),
//! `server` (listeners, repositories, handlers, locks, branch commits).

pub mod auth;
mod body;
mod exchange;
pub mod route;
mod server;

pub use server::{
    find_repos, main, start, HttpOptions, HttpServerError, Listening, Running, LOCK_RETENTION,
};
