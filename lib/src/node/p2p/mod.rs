//! `P2pNode`: a repository reached over the git-annex P2P protocol, as its client — a
//! `git-annex-shell p2pstdio` (or `annexgate-shell`) process run locally or over ssh, or
//! any byte stream to a P2P server. This is how a gateway talks to the nodes it proxies.
//!
//! The protocol (spec `p2p-protocol.md`): the server greets with `AUTH-SUCCESS <uuid>`
//! (checked against the node's UUID), the client offers `VERSION 4` and the server's answer
//! fixes the version, then (v2+, when non-empty) the client sends its `BYPASS` list; then
//! requests go one at a time (CHECKPRESENT, LOCKCONTENT/UNLOCKCONTENT, REMOVE,
//! REMOVE-BEFORE, GETTIMESTAMP, GET with its `DATA` payload, validity and verdict, PUT
//! with `PUT-FROM`, `DATA` and validity or `DATA-PRESENT`). [`crate::session::client`]
//! says what to send and what replies mean; this module moves the bytes.
//!
//! Connections are opened on first use and kept: a finished operation returns its
//! connection to the node's pool, the next one takes it (after checking it is still
//! alive) or opens another, so concurrent operations — a held lock and a removal on the
//! same node — each have their own. A held lock owns its connection until it is released;
//! a broken connection (timeout, garbage, a dead process) is killed, never reused.
//! [`P2pNodes`] shares nodes, and so their connections, between sessions (keyed by
//! endpoint, UUID, bypass list and version), for a server that handles many requests.
//!
//! Adapting to older servers: below v3 there is no `GETTIMESTAMP`/`REMOVE-BEFORE`, so the
//! node's clock is this machine's ([`crate::node::boottime_secs`]) and a deadline is
//! checked here before a plain `REMOVE` (what git-annex does); below v2 no `BYPASS` and no
//! `-PLUS` replies; v0 has no `VALID`/`INVALID` (downloads report [`Validity::Unknown`]);
//! below v4 `DATA-PRESENT` is answered by ending the upload empty and asking
//! `CHECKPRESENT`. The clock is chosen by the first connection's version.
//!
//! Errors: an `ERROR` reply is the far side's own words ([`NodeError::Remote`], or
//! [`Removed::error`] for a removal); every wait is bounded by the idle timeout
//! ([`NodeError::Timeout`]); a process that dies or talks nonsense gives
//! [`NodeError::Protocol`] with its exit status and last stderr lines, or
//! [`NodeError::Unreachable`] when it ended before greeting (ssh exit status 255).
//!
//! Everything here runs inside a tokio runtime with I/O and time enabled (replies are
//! awaited with timeouts; child processes are reaped by tasks).
//!
//! Building a node for a gateway's ssh remote:
//!
//! ```no_run
//! # use std::path::Path;
//! # use std::sync::Arc;
//! # use annexgate::node::p2p::{P2pEndpoint, P2pNode, P2pNodeConfig};
//! # use annexgate::types::Uuid;
//! # fn f(config: &dyn Fn(&str) -> Option<String>, gw: Uuid, node: Uuid) -> Result<(), Box<dyn std::error::Error>> {
//! let env = |k: &str| std::env::var(k).ok();
//! let endpoint = P2pEndpoint::for_git_remote("node1", &gw, &node, Path::new("/srv/gw"), config, &env)?;
//! let mut cfg = P2pNodeConfig::new(node, "node1", endpoint);
//! cfg.bypass = vec![gw.clone()]; // the gateway's own UUID joins the client's bypass list
//! let node = P2pNode::new(cfg);
//! # Ok(()) }
//! ```

mod endpoint;
mod transfer;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use async_trait::async_trait;

pub use endpoint::{
    shell_escape, EndpointError, GitSsh, P2pEndpoint, ProcessSpec, RemoteLocation, SshSettings,
    SshTarget, Transport,
};
pub use wire::{DialedStream, P2pDialer};

use crate::node::{
    boottime_secs, Caps, Content, ContentLock, LocationSink, NoLocations, Node, NodeError,
    PutStart, Removed, Validity,
};
use crate::proto::p2p::{Message, MAX_VERSION};
use crate::session::client::{ClientError, ClientSession, Reply};
use crate::types::{AssociatedFile, Key, Uuid};
use transfer::{P2pContent, P2pLock, P2pSink};
use wire::{Conn, Lost};

/// A server that takes longer than the idle timeout plus this many bytes per second of
/// the content to prepare a download or check an upload is given up on.
const SLOW_RATE: u64 = 16 * 1024 * 1024;

/// Everything a [`P2pNode`] needs.
#[derive(Clone)]
pub struct P2pNodeConfig {
    /// The node's UUID: the server's greeting must name it.
    pub uuid: Uuid,
    /// A name for messages (the remote's name).
    pub name: String,
    pub endpoint: P2pEndpoint,
    /// Sent as `BYPASS` on every connection (v2+).
    pub bypass: Vec<Uuid>,
    /// The highest version offered (at most 4).
    pub max_version: u8,
    /// How long any one reply, payload read or write may take. Default 60 s.
    pub timeout: Duration,
    /// How long a new connection may take to greet (ssh login included). Default 120 s.
    pub connect_timeout: Duration,
    /// Idle connections kept for reuse. Default 4.
    pub max_idle: usize,
    /// Where content changes the node reports are recorded.
    pub locations: Arc<dyn LocationSink>,
}

impl P2pNodeConfig {
    pub fn new(uuid: Uuid, name: impl Into<String>, endpoint: P2pEndpoint) -> P2pNodeConfig {
        P2pNodeConfig {
            uuid,
            name: name.into(),
            endpoint,
            bypass: Vec::new(),
            max_version: MAX_VERSION,
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(120),
            max_idle: 4,
            locations: Arc::new(NoLocations),
        }
    }
}

impl std::fmt::Debug for P2pNodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P2pNodeConfig")
            .field("uuid", &self.uuid)
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("bypass", &self.bypass)
            .field("max_version", &self.max_version)
            .finish_non_exhaustive()
    }
}

/// A node behind a P2P connection. Clones share connections.
#[derive(Clone)]
pub struct P2pNode {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    cfg: P2pNodeConfig,
    label: Arc<str>,
    idle: Mutex<Vec<Conn>>,
    /// The version the first connection agreed (decides which clock the node has).
    version: OnceLock<u8>,
    opened: AtomicU64,
}

/// Whose clock `timestamp` and removal deadlines use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clock {
    /// The server's (`GETTIMESTAMP`, `REMOVE-BEFORE`).
    Remote,
    /// This machine's (servers below v3).
    Local,
}

/// A connection on loan to one operation; dropping it returns the connection to the pool
/// when it is in step, and closes it otherwise.
pub(crate) struct Lease {
    shared: Arc<Shared>,
    conn: Option<Conn>,
    /// Taken from the pool (it may have died while idle).
    reused: bool,
}

impl Lease {
    pub(crate) fn conn(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("a lease holds its connection until dropped")
    }
    pub(crate) fn version(&self) -> u8 {
        self.conn.as_ref().map_or(0, Conn::version)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.shared.put_back(c);
        }
    }
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn put_back(&self, conn: Conn) {
        if conn.reusable() {
            let mut idle = guard(&self.idle);
            if idle.len() < self.cfg.max_idle {
                idle.push(conn);
            }
        }
        // Anything not kept is closed by Conn's drop.
    }

    fn clock(&self) -> Clock {
        match self.version.get() {
            Some(v) if *v < 3 => Clock::Local,
            _ => Clock::Remote,
        }
    }

    /// Time allowed for a reply that may need work proportional to `bytes`.
    fn patience(&self, bytes: Option<u64>) -> Duration {
        self.cfg.timeout + Duration::from_secs(bytes.unwrap_or(0) / SLOW_RATE)
    }

    fn remote_error(&self, message: String) -> NodeError {
        NodeError::Remote {
            node: self.cfg.name.clone(),
            message,
        }
    }

    /// Record what a store or removal changed (never a cluster's own UUID: git-annex
    /// does not log clusters as locations).
    fn record(&self, key: &Key, own: bool, plus: &[Uuid], present: bool) {
        if own && !self.cfg.uuid.is_cluster() {
            self.cfg.locations.record(key, &self.cfg.uuid, present);
        }
        for u in plus {
            if *u != self.cfg.uuid && !u.is_cluster() {
                self.cfg.locations.record(key, u, present);
            }
        }
    }
}

/// The request's reply did not fit the request (cannot happen with a well-behaved client
/// session; kept as an error rather than a panic).
async fn unexpected(lease: &mut Lease, what: &str, reply: Reply) -> NodeError {
    lease
        .conn()
        .fail(format!("unexpected reply to {what}: {reply:?}"))
        .await
}

impl P2pNode {
    pub fn new(cfg: P2pNodeConfig) -> P2pNode {
        let label: Arc<str> = Arc::from(cfg.name.as_str());
        P2pNode {
            shared: Arc::new(Shared {
                cfg,
                label,
                idle: Mutex::new(Vec::new()),
                version: OnceLock::new(),
                opened: AtomicU64::new(0),
            }),
        }
    }

    pub fn config(&self) -> &P2pNodeConfig {
        &self.shared.cfg
    }

    /// The protocol version of the first connection, once one was made.
    pub fn version(&self) -> Option<u8> {
        self.shared.version.get().copied()
    }

    /// How many connections were opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.shared.opened.load(Ordering::SeqCst)
    }

    /// How many connections wait in the pool.
    pub fn idle_connections(&self) -> usize {
        guard(&self.shared.idle).len()
    }

    /// Close every idle connection (their processes see the end of input and exit).
    pub fn close_idle(&self) {
        let conns = std::mem::take(&mut *guard(&self.shared.idle));
        drop(conns);
    }

    /// Open a connection now (e.g. to learn the version, or to fail early).
    pub async fn connect(&self) -> Result<(), NodeError> {
        let lease = self.lease().await?;
        drop(lease);
        Ok(())
    }

    async fn lease(&self) -> Result<Lease, NodeError> {
        loop {
            let pooled = guard(&self.shared.idle).pop();
            let Some(mut conn) = pooled else { break };
            if conn.healthy().await {
                return Ok(Lease {
                    shared: self.shared.clone(),
                    conn: Some(conn),
                    reused: true,
                });
            }
            tracing::debug!("{}: dropping a dead idle connection", self.shared.label);
        }
        self.fresh().await
    }

    async fn fresh(&self) -> Result<Lease, NodeError> {
        let s = &self.shared;
        let opened = Conn::open(
            s.label.clone(),
            &s.cfg.endpoint,
            &s.cfg.uuid,
            s.cfg.max_version,
            &s.cfg.bypass,
            s.cfg.timeout,
            s.cfg.connect_timeout,
        )
        .await?;
        s.opened.fetch_add(1, Ordering::SeqCst);
        let first = *s.version.get_or_init(|| opened.version);
        if first != opened.version {
            tracing::warn!(
                "{}: this connection speaks protocol version {}, the first spoke {first}",
                s.label,
                opened.version
            );
        }
        tracing::debug!(
            "{}: connected ({}), protocol version {}",
            s.label,
            s.cfg.endpoint.label,
            opened.version
        );
        Ok(Lease {
            shared: s.clone(),
            conn: Some(opened.conn),
            reused: false,
        })
    }

    /// Send the request `make` builds and read its first reply. A reused connection that
    /// turns out to have been closed while idle is replaced once by a fresh one.
    async fn request(
        &self,
        mut lease: Lease,
        make: &mut (dyn FnMut(&mut ClientSession) -> Result<Message, ClientError> + Send),
        wait: Duration,
    ) -> Result<(Lease, Result<Reply, String>), NodeError> {
        loop {
            let m = make(&mut lease.conn().session)
                .map_err(|e| e.into_node_error(&self.shared.cfg.name))?;
            let r = match lease.conn().send(&m).await {
                Ok(()) => lease.conn().reply(wait).await,
                Err(e) => Err(e),
            };
            match r {
                Ok(reply) => return Ok((lease, reply)),
                Err(e) if lease.reused && lease.conn().lost == Lost::Hangup => {
                    tracing::debug!(
                        "{}: idle connection was lost ({e}); reconnecting",
                        self.shared.label
                    );
                    lease = self.fresh().await?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[async_trait]
impl Node for P2pNode {
    fn uuid(&self) -> &Uuid {
        &self.shared.cfg.uuid
    }

    fn name(&self) -> &str {
        &self.shared.cfg.name
    }

    fn caps(&self) -> Caps {
        Caps {
            // A cluster never locks (its nodes are locked one by one instead).
            lock: !self.shared.cfg.uuid.is_cluster(),
            remove_before: self.shared.clock() == Clock::Remote,
            resume: true,
        }
    }

    async fn check_present(&self, key: &Key) -> Result<bool, NodeError> {
        let lease = self.lease().await?;
        let mut make = |s: &mut ClientSession| Ok(s.check_present(key.clone()));
        let (mut lease, r) = self
            .request(lease, &mut make, self.shared.cfg.timeout)
            .await?;
        match r {
            Ok(Reply::Present(p)) => Ok(p),
            Ok(other) => Err(unexpected(&mut lease, "CHECKPRESENT", other).await),
            Err(text) => Err(self.shared.remote_error(text)),
        }
    }

    async fn lock_content(&self, key: &Key) -> Result<Option<Box<dyn ContentLock>>, NodeError> {
        let lease = self.lease().await?;
        let mut make = |s: &mut ClientSession| Ok(s.lock(key.clone()));
        let (mut lease, r) = self
            .request(lease, &mut make, self.shared.cfg.timeout)
            .await?;
        match r {
            Ok(Reply::Locked(true)) => {
                lease.conn().locked = true;
                Ok(Some(Box::new(P2pLock::new(lease))))
            }
            Ok(Reply::Locked(false)) => Ok(None),
            Ok(other) => Err(unexpected(&mut lease, "LOCKCONTENT", other).await),
            Err(text) => Err(self.shared.remote_error(text)),
        }
    }

    async fn get(
        &self,
        key: &Key,
        offset: u64,
        af: &AssociatedFile,
    ) -> Result<Option<Box<dyn Content>>, NodeError> {
        let lease = self.lease().await?;
        let mut make = |s: &mut ClientSession| Ok(s.get(key.clone(), offset, af.clone()));
        let wait = self.shared.patience(key.size());
        let (mut lease, r) = self.request(lease, &mut make, wait).await?;
        let len = match r {
            Ok(Reply::Data(len)) => len,
            Ok(other) => return Err(unexpected(&mut lease, "GET", other).await),
            Err(text) => return Err(self.shared.remote_error(text)),
        };
        let mut content = P2pContent::new(lease, len);
        if len > 0 {
            return Ok(Some(Box::new(content)));
        }
        // No bytes: content that ends before the offset, or no content at all (which
        // v1+ servers mark INVALID; v0 ones cannot tell, the key's size decides).
        let validity = content.validity().await?;
        let absent = match validity {
            Validity::Invalid => true,
            Validity::Valid => false,
            Validity::Unknown => key.size().is_none_or(|size| offset < size),
        };
        if absent {
            Box::new(content).done(false).await?;
            Ok(None)
        } else {
            Ok(Some(Box::new(content)))
        }
    }

    async fn put(&self, key: &Key, af: &AssociatedFile) -> Result<PutStart, NodeError> {
        let lease = self.lease().await?;
        let mut make = |s: &mut ClientSession| Ok(s.put(key.clone(), af.clone()));
        let (mut lease, r) = self
            .request(lease, &mut make, self.shared.cfg.timeout)
            .await?;
        match r {
            Ok(Reply::AlreadyHave(plus)) => Ok(PutStart::AlreadyHave { plus }),
            Ok(Reply::PutFrom(offset)) => Ok(PutStart::Accept(Box::new(P2pSink::new(
                lease,
                key.clone(),
                offset,
            )))),
            Ok(other) => Err(unexpected(&mut lease, "PUT", other).await),
            Err(text) => Err(self.shared.remote_error(text)),
        }
    }

    async fn remove(&self, key: &Key, deadline: Option<u64>) -> Result<Removed, NodeError> {
        let lease = self.lease().await?;
        let clock = self.shared.clock();
        if let Some(d) = deadline {
            match clock {
                // git-annex's own rule for servers below v3: too late now, no removal.
                Clock::Local if boottime_secs() >= d => return Ok(Removed::default()),
                Clock::Remote if lease.version() < 3 => {
                    return Ok(Removed {
                        error: Some(format!(
                            "{}: cannot remove before a deadline over protocol version {}",
                            self.shared.cfg.name,
                            lease.version()
                        )),
                        ..Removed::default()
                    })
                }
                _ => {}
            }
        }
        let remote_deadline = deadline.filter(|_| clock == Clock::Remote);
        let mut make = |s: &mut ClientSession| s.remove(key.clone(), remote_deadline);
        let (mut lease, r) = self
            .request(lease, &mut make, self.shared.cfg.timeout)
            .await?;
        match r {
            Ok(Reply::Removed(r)) => {
                self.shared.record(key, r.removed, &r.plus, false);
                Ok(r)
            }
            Ok(other) => Err(unexpected(&mut lease, "REMOVE", other).await),
            Err(text) => Ok(Removed {
                removed: false,
                plus: Vec::new(),
                error: Some(text),
            }),
        }
    }

    async fn timestamp(&self) -> Result<u64, NodeError> {
        let lease = self.lease().await?;
        if self.shared.clock() == Clock::Local {
            return Ok(boottime_secs());
        }
        let mut make = |s: &mut ClientSession| s.timestamp();
        let (mut lease, r) = self
            .request(lease, &mut make, self.shared.cfg.timeout)
            .await?;
        match r {
            Ok(Reply::Timestamp(t)) => Ok(t),
            Ok(other) => Err(unexpected(&mut lease, "GETTIMESTAMP", other).await),
            Err(text) => Err(self.shared.remote_error(text)),
        }
    }
}

/// Identifies nodes that can share connections.
#[derive(Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    endpoint: P2pEndpoint,
    uuid: Uuid,
    bypass: Vec<Uuid>,
    max_version: u8,
}

/// Nodes shared between sessions: asking twice for the same endpoint, UUID, bypass list
/// and version gives the same node, and so the same pool of connections (a p2phttp
/// server keeps connections to proxied nodes across requests this way).
#[derive(Default)]
pub struct P2pNodes {
    nodes: Mutex<HashMap<PoolKey, P2pNode>>,
}

impl P2pNodes {
    pub fn new() -> P2pNodes {
        P2pNodes::default()
    }

    /// The node for `cfg`, made on first request (later requests' other settings, such as
    /// timeouts, are ignored).
    pub fn get(&self, cfg: P2pNodeConfig) -> P2pNode {
        let mut bypass = cfg.bypass.clone();
        bypass.sort();
        bypass.dedup();
        let key = PoolKey {
            endpoint: cfg.endpoint.clone(),
            uuid: cfg.uuid.clone(),
            bypass,
            max_version: cfg.max_version.min(MAX_VERSION),
        };
        guard(&self.nodes)
            .entry(key)
            .or_insert_with(|| P2pNode::new(cfg))
            .clone()
    }

    /// Close every pooled idle connection of every node.
    pub fn close_idle(&self) {
        for n in guard(&self.nodes).values() {
            n.close_idle();
        }
    }
}
