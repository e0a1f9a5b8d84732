//! `HttpNode`: a repository reached over p2phttp, as its client — a `git annex p2phttp`
//! or `annexgate-http` server behind an `annex+http(s)://` URL. A gateway uses it for
//! remotes with such an annex URL, so it can proxy them and build clusters of them.
//!
//! The protocol (spec `p2phttp.md`): each operation is one HTTP request to
//! `{base}/git-annex/{node uuid}/v{n}/{endpoint}` with `clientuuid` (the gateway's UUID)
//! and `bypass` in the query: `POST checkpresent` → `{"present":…}`; `GET key/{key}`
//! streams the content, `X-git-annex-data-length` announcing its length and a body one
//! byte short meaning "changed while sent" (P2P `INVALID`); `POST putoffset` (v1+) gives
//! the resume point or `alreadyhave`, then `POST put` streams the upload with the length in
//! `X-git-annex-data-length` (and `data-present=true` on v4 for content put in place out
//! of band); `POST remove` / `remove-before` / `gettimestamp` (the last two v3+);
//! `POST lockcontent` gives a lock id that `POST keeplocked` holds for as long as its
//! streaming request body stays open, released by `{"unlock":true}`.
//!
//! Versions, as git-annex's client does it: a request goes at the highest version first
//! and again one version lower when the server answers `404` (a server that lacks the
//! route). We also step down on `400 bad version`, which is how a git-annex server older
//! than v4 answers v4 requests (git-annex's own client gives up there). The version a
//! server answered at is kept (in the node and in its [`HttpPool`]) so later requests
//! start there. Below v3 there is no `gettimestamp`/`remove-before`: the node's clock is
//! this machine's and a removal deadline is checked here before a plain `remove` (as
//! git-annex and [`crate::node::p2p::P2pNode`] do); below v1 there is no `putoffset`
//! (uploads start at 0); below v4 `data-present` is answered with `checkpresent`.
//!
//! Credentials: on a `401` the node asks `git credential fill` (for the remote's git URL
//! when the annex URL is on the same host, else for the annex URL, see [`url`]), retries
//! with HTTP Basic auth, and tells git `approve` when the credential worked or `reject`
//! when the server answered `401` to it. A credential that worked is kept in the pool for
//! every later request to that URL.
//!
//! Errors: transport failures before an answer are [`NodeError::Unreachable`]; a wait
//! longer than the node's timeout (for an answer or for the next bytes of a body) is
//! [`NodeError::Timeout`]; `401`/`403` are [`NodeError::Denied`] with "authentication
//! failed"; any other status is [`NodeError::Remote`] with the status and the server's
//! own words (a failed removal is reported in [`Removed::error`] instead, as P2P nodes
//! do).
//!
//! Runs inside a tokio runtime with I/O and time enabled. Building a node:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use annexgate::node::http::{HttpNode, HttpNodeConfig, HttpPool, HttpPoolOptions, P2pHttpUrl};
//! # use annexgate::types::Uuid;
//! # fn f(gw: Uuid, node: Uuid) -> Result<(), Box<dyn std::error::Error>> {
//! let pool = HttpPool::new(HttpPoolOptions::default())?; // one per gateway
//! let url = P2pHttpUrl::parse("annex+http://node1.example.org/git-annex")?;
//! let mut cfg = HttpNodeConfig::new(node, "node1", url, gw.clone());
//! cfg.bypass = vec![gw]; // the gateway's own UUID joins the client's bypass list
//! let node = HttpNode::new(cfg, pool);
//! # Ok(()) }
//! ```

pub mod credential;
pub mod pool;
mod transfer;
pub mod url;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{ACCEPT, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub use credential::{Credential, CredentialError, CredentialHelper};
pub use pool::{HttpPool, HttpPoolOptions, PoolError};
pub use url::{P2pHttpUrl, UrlError};

use crate::node::{
    boottime_secs, Caps, Content, ContentLock, LocationSink, NoLocations, Node, NodeError,
    PutStart, Removed,
};
use crate::types::{AssociatedFile, Key, Uuid};
use transfer::{HttpContent, HttpLock, HttpSink};

/// The highest p2phttp version.
pub const MAX_VERSION: u8 = 4;

/// A server that takes longer than the timeout plus this many bytes per second of the
/// content to check an upload is given up on.
const SLOW_RATE: u64 = 16 * 1024 * 1024;

/// The longest error body passed on.
const MAX_ERROR_TEXT: usize = 2000;

const JSON_ACCEPT: &str = "application/json;charset=utf-8,application/json";

/// Everything an [`HttpNode`] needs besides its [`HttpPool`].
#[derive(Clone)]
pub struct HttpNodeConfig {
    /// The node's UUID (the server serves it: the repository, a remote it proxies, or a
    /// cluster it is a gateway for).
    pub uuid: Uuid,
    /// A name for messages (the remote's name).
    pub name: String,
    pub url: P2pHttpUrl,
    /// The remote's git URL (`remote.<name>.url`), which decides where credentials are
    /// asked for.
    pub git_url: Option<String>,
    /// Sent as `clientuuid`: the gateway's UUID.
    pub client_uuid: Uuid,
    /// Sent as `bypass` on every request.
    pub bypass: Vec<Uuid>,
    /// The highest version tried (at most 4).
    pub max_version: u8,
    /// How long any one answer, or the next bytes of a body, may take. Default 60 s.
    pub timeout: Duration,
    /// How often a held lock's `keeplocked` request sends `{"unlock":false}`, so that
    /// proxies in between do not take the quiet request body for a dead one. Default 30 s.
    pub keepalive: Duration,
    /// Where content changes the node reports are recorded.
    pub locations: Arc<dyn LocationSink>,
}

impl HttpNodeConfig {
    pub fn new(
        uuid: Uuid,
        name: impl Into<String>,
        url: P2pHttpUrl,
        client_uuid: Uuid,
    ) -> HttpNodeConfig {
        HttpNodeConfig {
            uuid,
            name: name.into(),
            url,
            git_url: None,
            client_uuid,
            bypass: Vec::new(),
            max_version: MAX_VERSION,
            timeout: Duration::from_secs(60),
            keepalive: Duration::from_secs(30),
            locations: Arc::new(NoLocations),
        }
    }
}

impl std::fmt::Debug for HttpNodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpNodeConfig")
            .field("uuid", &self.uuid)
            .field("name", &self.name)
            .field("url", &self.url.original)
            .field("client_uuid", &self.client_uuid)
            .field("bypass", &self.bypass)
            .field("max_version", &self.max_version)
            .finish_non_exhaustive()
    }
}

/// A node behind a p2phttp server. Clones share their state.
#[derive(Clone)]
pub struct HttpNode {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    cfg: HttpNodeConfig,
    pool: HttpPool,
    base: String,
    credential_url: String,
    /// The version requests start at.
    version: AtomicU8,
    /// Whether a server answer fixed `version`.
    known: AtomicBool,
    /// The server lacks `gettimestamp`/`remove-before` (it is older than v3).
    no_clock: AtomicBool,
    requests: AtomicU64,
}

/// The API's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Key,
    CheckPresent,
    Remove,
    RemoveBefore,
    GetTimestamp,
    Put,
    PutOffset,
    LockContent,
    KeepLocked,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Key => "key",
            Endpoint::CheckPresent => "checkpresent",
            Endpoint::Remove => "remove",
            Endpoint::RemoveBefore => "remove-before",
            Endpoint::GetTimestamp => "gettimestamp",
            Endpoint::Put => "put",
            Endpoint::PutOffset => "putoffset",
            Endpoint::LockContent => "lockcontent",
            Endpoint::KeepLocked => "keeplocked",
        }
    }
    /// The lowest version that has the endpoint.
    fn min_version(self) -> u8 {
        match self {
            Endpoint::PutOffset => 1,
            Endpoint::RemoveBefore | Endpoint::GetTimestamp => 3,
            _ => 0,
        }
    }
}

/// Whose clock `timestamp` and removal deadlines use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clock {
    /// The server's (`gettimestamp`, `remove-before`).
    Remote,
    /// This machine's (servers below v3).
    Local,
}

/// The answer to a request that may step down through versions.
pub(crate) enum Answer {
    /// A `2xx` answer at this version.
    Ok(u8, reqwest::Response),
    /// No version the endpoint has was served (every one answered `404` or
    /// `400 bad version`); the last status line.
    NoVersion(String),
}

/// `"<code> <reason>"`.
fn status_line(s: StatusCode) -> String {
    format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""))
        .trim_end()
        .to_string()
}

/// An error's text with its causes (reqwest's own text names only the outer layer).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

impl Shared {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn version(&self) -> u8 {
        self.version.load(Ordering::SeqCst)
    }

    fn clock(&self) -> Clock {
        if self.no_clock.load(Ordering::SeqCst)
            || (self.known.load(Ordering::SeqCst) && self.version() < 3)
        {
            Clock::Local
        } else {
            Clock::Remote
        }
    }

    /// The server answered at `v`.
    fn learned(&self, v: u8) {
        let before = self.version.swap(v, Ordering::SeqCst);
        self.known.store(true, Ordering::SeqCst);
        if before != v {
            tracing::debug!("{}: the server speaks p2phttp v{v}", self.name());
            self.pool.set_version(&self.base, &self.cfg.uuid, v);
        }
    }

    /// Time allowed for an answer that may need work proportional to `bytes`.
    fn patience(&self, bytes: Option<u64>) -> Duration {
        self.cfg.timeout + Duration::from_secs(bytes.unwrap_or(0) / SLOW_RATE)
    }

    fn timeout_error(&self) -> NodeError {
        NodeError::Timeout {
            node: self.cfg.name.clone(),
            secs: self.cfg.timeout.as_secs(),
        }
    }

    /// A transport error: before an answer it means the server could not be reached.
    fn transport_error(&self, e: &reqwest::Error, before_answer: bool) -> NodeError {
        let reason = error_chain(e);
        if e.is_timeout() {
            self.timeout_error()
        } else if before_answer && (e.is_connect() || e.is_request()) {
            NodeError::Unreachable {
                node: self.cfg.name.clone(),
                reason: format!("{}: {reason}", self.base),
            }
        } else {
            NodeError::Protocol {
                node: self.cfg.name.clone(),
                detail: format!("connection to {} lost: {reason}", self.base),
            }
        }
    }

    fn protocol_error(&self, detail: impl Into<String>) -> NodeError {
        NodeError::Protocol {
            node: self.cfg.name.clone(),
            detail: detail.into(),
        }
    }

    /// The error for a non-2xx answer with body `text`.
    fn status_error(&self, status: StatusCode, text: &str) -> NodeError {
        let line = status_line(status);
        let with_text = if text.trim().is_empty() {
            line
        } else {
            format!("{line}: {}", text.trim())
        };
        match status.as_u16() {
            401 | 403 => NodeError::Denied(format!(
                "{}: authentication failed: {with_text}",
                self.cfg.name
            )),
            _ => NodeError::Remote {
                node: self.cfg.name.clone(),
                message: with_text,
            },
        }
    }

    /// A request at version `v` (no body; POSTs send an empty one).
    fn request(
        &self,
        ep: Endpoint,
        v: u8,
        key: Option<&Key>,
        extra: &[(&str, &[u8])],
    ) -> reqwest::RequestBuilder {
        let (method, url) = match ep {
            Endpoint::Key => {
                let k = key.map(Key::as_bytes).unwrap_or_default();
                (
                    Method::GET,
                    self.cfg
                        .url
                        .endpoint(self.cfg.uuid.as_str(), Some(v), &[b"key", k]),
                )
            }
            _ => (
                Method::POST,
                self.cfg
                    .url
                    .endpoint(self.cfg.uuid.as_str(), Some(v), &[ep.name().as_bytes()]),
            ),
        };
        let mut pairs: Vec<(&str, &[u8])> = Vec::new();
        if let (Some(k), true) = (key, ep != Endpoint::Key) {
            pairs.push(("key", k.as_bytes()));
        }
        pairs.push(("clientuuid", self.cfg.client_uuid.as_str().as_bytes()));
        for b in &self.cfg.bypass {
            pairs.push(("bypass", b.as_str().as_bytes()));
        }
        pairs.extend_from_slice(extra);
        let url = format!("{url}?{}", url::query(&pairs));
        let accept = if ep == Endpoint::Key {
            "application/octet-stream"
        } else {
            JSON_ACCEPT
        };
        let rb = self
            .pool
            .client()
            .request(method.clone(), url)
            .header(ACCEPT, accept);
        if method == Method::POST {
            rb.body(Vec::<u8>::new())
        } else {
            rb
        }
    }

    /// Add the credential kept for this node's URL, if any.
    fn authorize(
        &self,
        rb: reqwest::RequestBuilder,
        cred: Option<&Credential>,
    ) -> reqwest::RequestBuilder {
        match cred.and_then(Credential::basic) {
            Some((u, p)) => rb.basic_auth(u, Some(p)),
            None => rb,
        }
    }

    /// The body of an answer as text (bounded in time and length).
    async fn text(&self, resp: reqwest::Response) -> String {
        match tokio::time::timeout(self.cfg.timeout, resp.bytes()).await {
            Ok(Ok(b)) => {
                let n = b.len().min(MAX_ERROR_TEXT);
                String::from_utf8_lossy(&b[..n]).into_owned()
            }
            _ => String::new(),
        }
    }

    /// Send the request `make` builds, starting at the node's version and stepping down
    /// on `404`/`400 bad version`, with credentials asked for on `401`.
    async fn call(
        &self,
        ep: Endpoint,
        make: &(dyn Fn(u8) -> reqwest::RequestBuilder + Send + Sync),
    ) -> Result<Answer, NodeError> {
        let mut v = self.version();
        if v < ep.min_version() {
            return Ok(Answer::NoVersion(format!(
                "the server speaks p2phttp v{v}, {} needs v{}",
                ep.name(),
                ep.min_version()
            )));
        }
        let mut cred = self.pool.credential(&self.credential_url);
        let mut fresh = false;
        loop {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let rb = self.authorize(make(v), cred.as_ref());
            let resp = match tokio::time::timeout(self.cfg.timeout, rb.send()).await {
                Err(_) => return Err(self.timeout_error()),
                Ok(Err(e)) => return Err(self.transport_error(&e, true)),
                Ok(Ok(r)) => r,
            };
            let status = resp.status();
            if status.is_success() {
                if fresh {
                    if let Some(c) = &cred {
                        self.pool.helper().approve(c).await;
                        self.pool.remember(&self.credential_url, c.clone());
                    }
                }
                self.learned(v);
                return Ok(Answer::Ok(v, resp));
            }
            match status.as_u16() {
                404 => {
                    if v > ep.min_version() {
                        tracing::debug!(
                            "{}: {} v{v}: 404, trying v{}",
                            self.name(),
                            ep.name(),
                            v - 1
                        );
                        v -= 1;
                        continue;
                    }
                    return Ok(Answer::NoVersion(status_line(status)));
                }
                400 => {
                    let text = self.text(resp).await;
                    if text.trim() != "bad version" {
                        return Err(self.status_error(status, &text));
                    }
                    if v > ep.min_version() {
                        tracing::debug!(
                            "{}: {} v{v}: bad version, trying v{}",
                            self.name(),
                            ep.name(),
                            v - 1
                        );
                        v -= 1;
                        continue;
                    }
                    return Ok(Answer::NoVersion(format!(
                        "{}: bad version",
                        status_line(status)
                    )));
                }
                401 => {
                    let challenges: Vec<String> = resp
                        .headers()
                        .get_all(WWW_AUTHENTICATE)
                        .iter()
                        .filter_map(|h| h.to_str().ok().map(str::to_string))
                        .collect();
                    let text = self.text(resp).await;
                    if let Some(c) = cred.take() {
                        // The server refused this credential: git's helpers forget it.
                        self.pool.helper().reject(&c).await;
                        self.pool.forget(&self.credential_url, &c);
                        return Err(self.status_error(status, &text));
                    }
                    let _one_at_a_time = self.pool.filling().await;
                    if let Some(c) = self.pool.credential(&self.credential_url) {
                        // Another request got one meanwhile.
                        cred = Some(c);
                        continue;
                    }
                    match self
                        .pool
                        .helper()
                        .fill(&self.credential_url, &challenges)
                        .await
                    {
                        Ok(c) => {
                            tracing::debug!(
                                "{}: using credentials for {}",
                                self.name(),
                                self.credential_url
                            );
                            cred = Some(c);
                            fresh = true;
                        }
                        Err(e) => {
                            return Err(NodeError::Denied(format!(
                                "{}: authentication failed: {} and no credentials for {} ({e})",
                                self.cfg.name,
                                status_line(status),
                                self.credential_url
                            )))
                        }
                    }
                }
                _ => {
                    let text = self.text(resp).await;
                    return Err(self.status_error(status, &text));
                }
            }
        }
    }

    /// [`Shared::call`] for a simple request, requiring an answer.
    async fn call_simple(
        &self,
        ep: Endpoint,
        key: Option<&Key>,
        extra: &[(&str, &[u8])],
    ) -> Result<(u8, reqwest::Response), NodeError> {
        let make = |v: u8| self.request(ep, v, key, extra);
        match self.call(ep, &make).await? {
            Answer::Ok(v, r) => Ok((v, r)),
            Answer::NoVersion(line) => Err(NodeError::Remote {
                node: self.cfg.name.clone(),
                message: format!(
                    "{line} (the server at {} does not serve {} for repository {})",
                    self.base,
                    ep.name(),
                    self.cfg.uuid
                ),
            }),
        }
    }

    /// A JSON answer.
    async fn json(&self, resp: reqwest::Response, bytes: Option<u64>) -> Result<Value, NodeError> {
        let body = match tokio::time::timeout(self.patience(bytes), resp.bytes()).await {
            Err(_) => return Err(self.timeout_error()),
            Ok(Err(e)) => return Err(self.transport_error(&e, false)),
            Ok(Ok(b)) => b,
        };
        serde_json::from_slice(&body).map_err(|e| {
            self.protocol_error(format!(
                "not a JSON answer ({e}): {:?}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        })
    }

    fn field_bool(&self, v: &Value, name: &str) -> Result<bool, NodeError> {
        v.get(name)
            .and_then(Value::as_bool)
            .ok_or_else(|| self.protocol_error(format!("answer {v} lacks \"{name}\"")))
    }

    /// `plusuuids` (absent below v2).
    fn plus(&self, v: &Value) -> Result<Vec<Uuid>, NodeError> {
        let Some(list) = v.get("plusuuids") else {
            return Ok(Vec::new());
        };
        let list = list
            .as_array()
            .ok_or_else(|| self.protocol_error(format!("bad plusuuids in {v}")))?;
        list.iter()
            .map(|u| {
                u.as_str()
                    .and_then(|s| {
                        crate::http::route::decode_bytes(s)
                            .ok()
                            .and_then(|b| Uuid::parse_bytes(&b).ok())
                    })
                    .ok_or_else(|| self.protocol_error(format!("bad UUID {u} in plusuuids")))
            })
            .collect()
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

    /// The credential to send on requests that cannot be retried (streaming bodies).
    fn kept_credential(&self) -> Option<Credential> {
        self.pool.credential(&self.credential_url)
    }

    /// Add the headers of an authorised request that cannot be retried.
    fn with_kept_auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.kept_credential() {
            Some(c) => self.authorize(rb, Some(&c)),
            None => rb,
        }
    }
}

impl HttpNode {
    pub fn new(cfg: HttpNodeConfig, pool: HttpPool) -> HttpNode {
        let base = cfg.url.base();
        let max = cfg.max_version.min(MAX_VERSION);
        let cached = pool.version(&base, &cfg.uuid);
        let credential_url = cfg.url.credential_url(cfg.git_url.as_deref());
        HttpNode {
            shared: Arc::new(Shared {
                version: AtomicU8::new(cached.map_or(max, |c| c.min(max))),
                known: AtomicBool::new(cached.is_some()),
                no_clock: AtomicBool::new(false),
                cfg,
                pool,
                base,
                credential_url,
                requests: AtomicU64::new(0),
            }),
        }
    }

    pub fn config(&self) -> &HttpNodeConfig {
        &self.shared.cfg
    }

    /// The version the server answered at, once it answered.
    pub fn version(&self) -> Option<u8> {
        self.shared
            .known
            .load(Ordering::SeqCst)
            .then(|| self.shared.version())
    }

    /// HTTP requests sent so far (retries at lower versions and with credentials
    /// included).
    pub fn requests_sent(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Where credentials are asked for.
    pub fn credential_url(&self) -> &str {
        &self.shared.credential_url
    }

    async fn remove_now(&self, key: &Key, deadline: Option<u64>) -> Result<Removed, NodeError> {
        let s = &self.shared;
        let answer = match deadline {
            Some(d) => {
                let t = d.to_string();
                let extra: [(&str, &[u8]); 1] = [("timestamp", t.as_bytes())];
                let make = |v: u8| s.request(Endpoint::RemoveBefore, v, Some(key), &extra);
                s.call(Endpoint::RemoveBefore, &make).await
            }
            None => {
                let make = |v: u8| s.request(Endpoint::Remove, v, Some(key), &[]);
                s.call(Endpoint::Remove, &make).await
            }
        };
        let resp = match answer {
            Ok(Answer::Ok(_, r)) => r,
            Ok(Answer::NoVersion(line)) if deadline.is_some() => {
                // No remove-before: the server is older than v3; use our clock.
                tracing::debug!(
                    "{}: no remove-before ({line}); using the local clock",
                    s.name()
                );
                s.no_clock.store(true, Ordering::SeqCst);
                return self.remove(key, deadline).await;
            }
            Ok(Answer::NoVersion(line)) => {
                return Ok(Removed {
                    error: Some(format!("{}: {line}", s.name())),
                    ..Removed::default()
                })
            }
            Err(NodeError::Remote { message, .. }) => {
                return Ok(Removed {
                    error: Some(message),
                    ..Removed::default()
                })
            }
            Err(e) => return Err(e),
        };
        let v = s.json(resp, None).await?;
        let removed = s.field_bool(&v, "removed")?;
        let plus = s.plus(&v)?;
        s.record(key, removed, &plus, false);
        Ok(Removed {
            removed,
            plus,
            error: None,
        })
    }
}

#[async_trait]
impl Node for HttpNode {
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
            // v0 has no putoffset to tell a resume point.
            resume: self.version() != Some(0),
        }
    }

    async fn check_present(&self, key: &Key) -> Result<bool, NodeError> {
        let s = &self.shared;
        let (_, resp) = s
            .call_simple(Endpoint::CheckPresent, Some(key), &[])
            .await?;
        let v = s.json(resp, None).await?;
        s.field_bool(&v, "present")
    }

    async fn lock_content(&self, key: &Key) -> Result<Option<Box<dyn ContentLock>>, NodeError> {
        let s = &self.shared;
        let (version, resp) = s.call_simple(Endpoint::LockContent, Some(key), &[]).await?;
        let v = s.json(resp, None).await?;
        if !s.field_bool(&v, "locked")? {
            return Ok(None);
        }
        let lockid = v
            .get("lockid")
            .and_then(Value::as_str)
            .ok_or_else(|| s.protocol_error(format!("locked without a lockid: {v}")))?
            .to_string();
        let lock = HttpLock::hold(self.shared.clone(), version, key.clone(), lockid).await?;
        Ok(Some(Box::new(lock)))
    }

    async fn get(
        &self,
        key: &Key,
        offset: u64,
        af: &AssociatedFile,
    ) -> Result<Option<Box<dyn Content>>, NodeError> {
        let s = &self.shared;
        let off = offset.to_string();
        let mut extra: Vec<(&str, &[u8])> = Vec::new();
        if let Some(p) = af.path() {
            extra.push(("associatedfile", p));
        }
        if offset > 0 {
            extra.push(("offset", off.as_bytes()));
        }
        let (_, resp) = s.call_simple(Endpoint::Key, Some(key), &extra).await?;
        let len = resp
            .headers()
            .get("x-git-annex-data-length")
            .and_then(|h| h.to_str().ok())
            .and_then(|t| t.trim().parse::<u64>().ok())
            .ok_or_else(|| s.protocol_error("content without an X-git-annex-data-length header"))?;
        let content = HttpContent::new(s.clone(), resp, len);
        if len > 0 {
            return Ok(Some(Box::new(content)));
        }
        // No bytes: absent content, or content that ends at or before the offset (the
        // server answers both the same way). A present key always has bytes before its
        // size.
        Box::new(content).done(true).await?;
        if key.size().is_some_and(|size| offset < size) || !self.check_present(key).await? {
            return Ok(None);
        }
        Ok(Some(Box::new(HttpContent::empty(s.clone()))))
    }

    async fn put(&self, key: &Key, af: &AssociatedFile) -> Result<PutStart, NodeError> {
        let s = &self.shared;
        let make = |v: u8| s.request(Endpoint::PutOffset, v, Some(key), &[]);
        let (version, offset) = match s.call(Endpoint::PutOffset, &make).await? {
            Answer::Ok(v, resp) => {
                let j = s.json(resp, None).await?;
                if j.get("alreadyhave").and_then(Value::as_bool) == Some(true) {
                    return Ok(PutStart::AlreadyHave { plus: s.plus(&j)? });
                }
                let offset = j
                    .get("offset")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| s.protocol_error(format!("bad putoffset answer {j}")))?;
                (v, offset)
            }
            // v0 has no putoffset: an upload starts at 0 (as git-annex's client does
            // once v1 failed too).
            Answer::NoVersion(line) => {
                tracing::debug!("{}: no putoffset ({line}); uploading at v0", s.name());
                // Nor can it say it has the content already: ask first.
                if self.check_present(key).await? {
                    return Ok(PutStart::AlreadyHave { plus: Vec::new() });
                }
                (0, 0)
            }
        };
        Ok(PutStart::Accept(Box::new(HttpSink::new(
            s.clone(),
            version,
            key.clone(),
            af.clone(),
            offset,
        ))))
    }

    async fn remove(&self, key: &Key, deadline: Option<u64>) -> Result<Removed, NodeError> {
        let s = &self.shared;
        match (deadline, s.clock()) {
            (Some(d), Clock::Local) => {
                // git-annex's rule for servers below v3: too late now, no removal.
                if boottime_secs() >= d {
                    return Ok(Removed::default());
                }
                self.remove_now(key, None).await
            }
            (d, _) => self.remove_now(key, d).await,
        }
    }

    async fn timestamp(&self) -> Result<u64, NodeError> {
        let s = &self.shared;
        if s.clock() == Clock::Local {
            return Ok(boottime_secs());
        }
        let make = |v: u8| s.request(Endpoint::GetTimestamp, v, None, &[]);
        match s.call(Endpoint::GetTimestamp, &make).await? {
            Answer::Ok(_, resp) => {
                let j = s.json(resp, None).await?;
                j.get("timestamp")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| s.protocol_error(format!("bad gettimestamp answer {j}")))
            }
            Answer::NoVersion(line) => {
                tracing::debug!(
                    "{}: no gettimestamp ({line}); using the local clock",
                    s.name()
                );
                s.no_clock.store(true, Ordering::SeqCst);
                Ok(boottime_secs())
            }
        }
    }
}

impl std::fmt::Debug for HttpNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpNode")
            .field("cfg", &self.shared.cfg)
            .field("version", &self.version())
            .finish()
    }
}
