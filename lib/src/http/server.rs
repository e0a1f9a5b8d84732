//! The p2phttp server: listeners (TCP, unix socket, TLS), the repositories served, and one
//! handler per endpoint. Each handler routes ([`super::route`]), finds the repository for
//! the UUID in the path (404), asks the [`AuthPolicy`] (401/403), gets the node from the
//! repository's [`Gateway`] (502 when that fails), and runs the request as a P2P exchange
//! ([`super::exchange`]), mapping what the session answers to git-annex's JSON.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

use super::auth::{ActionClass, AuthPolicy, Decision};
use super::body::{next_data, RespBody};
use super::exchange::{Exchange, Pause};
use super::route::{self, Call, HttpError, RequestParts, Routed, AUTH_CHALLENGE};
use crate::branch::repo::GitRepo;
use crate::gateway::{Gateway, Target};
use crate::node::NodeError;
use crate::proto::p2p::Message;
use crate::session::server::{wire_error, DataDest, Input};
use crate::types::{Key, Uuid};

/// How long a content lock lasts when `keeplocked` never comes (git-annex: 600 s).
pub const LOCK_RETENTION: Duration = Duration::from_secs(600);

/// Everything the server needs to know (the command line of `annexgate-http`).
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// TCP port (`--port`, default 9417); 0 picks a free one.
    pub port: u16,
    /// Address or host name to listen on (`--bind`); `None`: every address.
    pub bind: Option<String>,
    /// Listen on this unix socket instead of TCP (`--socket`).
    pub socket: Option<PathBuf>,
    /// HTTPS: certificate (`--certfile`), its chain (`--chainfile`, repeatable) and key
    /// (`--privatekeyfile`), all PEM.
    pub certfile: Option<PathBuf>,
    pub chainfiles: Vec<PathBuf>,
    pub privatekeyfile: Option<PathBuf>,
    pub auth: AuthPolicy,
    /// Requests that may work on repositories at once (`--jobs`); more wait their turn.
    pub jobs: usize,
    /// Content locks that may be held at once (`--lockedfiles`, default 100).
    pub lockedfiles: usize,
    /// Idle proxy connections to keep, parallel node accesses per request (passed on to
    /// proxying when the gateway does it).
    pub proxyconnections: usize,
    pub clusterjobs: usize,
    /// Worker threads of the runtime (`--cpus`); `None`: one per CPU.
    pub threads: Option<usize>,
    /// Serve every git-annex repository found below these (`--directory`).
    pub directories: Vec<PathBuf>,
    /// Without `directories`: the repository to serve (default: the one the process
    /// runs in).
    pub repository: Option<PathBuf>,
    /// How long a lock lasts before `keeplocked` (tests shorten it).
    pub lock_retention: Duration,
    /// Commit location changes to the git-annex branch after this much idle time.
    pub commit_idle: Duration,
    /// Serve only the API routes up to this protocol version, as an older server would
    /// (tests of clients' version fallback). Default 4.
    pub max_version: u8,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            port: 9417,
            bind: None,
            socket: None,
            certfile: None,
            chainfiles: Vec::new(),
            privatekeyfile: None,
            auth: AuthPolicy::default(),
            jobs: 64,
            lockedfiles: 100,
            proxyconnections: 1,
            clusterjobs: 1,
            threads: None,
            directories: Vec::new(),
            repository: None,
            lock_retention: LOCK_RETENTION,
            commit_idle: Duration::from_secs(1),
            max_version: 4,
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum HttpServerError {
    #[error("You must use both --certfile and --privatekeyfile options to enable HTTPS.")]
    HalfTls,
    #[error("Use the --directory option to specify which git-annex repositories to serve.")]
    NotAnnex,
    #[error("--jobs must be at least 1")]
    Jobs,
    #[error("cannot open the repository {path}: {detail}")]
    Repo { path: PathBuf, detail: String },
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad TLS material in {path}: {detail}")]
    Tls { path: PathBuf, detail: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot resolve the bind address {addr}: {source}")]
    Resolve {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(std::io::Error),
}

// ---------------------------------------------------------------------------------------
// Repositories

/// How often a served repository is looked at for a changed set-up (remotes, clusters,
/// placement facts): at most once per this interval, on a request for it.
const SETUP_CHECK: Duration = Duration::from_secs(1);

/// One served repository.
struct Repo {
    path: PathBuf,
    /// The gateway serving it, opened anew when its set-up changes.
    gw: RwLock<Arc<Gateway>>,
    /// When the set-up was last looked at, and what it was then
    /// ([`GitRepo::setup_fingerprint`]).
    setup: Mutex<(Instant, u64)>,
    locks: Mutex<HashMap<String, LockEntry>>,
    /// Requests changing locations in progress, and whether any ran since the last
    /// commit; the committer task waits on `wake`.
    changing: AtomicUsize,
    dirty: AtomicBool,
    wake: tokio::sync::Notify,
}

struct LockEntry {
    release: oneshot::Sender<()>,
    kept: Arc<AtomicBool>,
    holder: tokio::task::JoinHandle<()>,
}

/// Marks a request that may change locations; dropping it lets the committer run.
struct ChangeGuard(Arc<Repo>);

impl Drop for ChangeGuard {
    fn drop(&mut self) {
        self.0.changing.fetch_sub(1, Ordering::SeqCst);
        self.0.wake.notify_one();
    }
}

impl Repo {
    fn open(path: &Path) -> Result<Repo, HttpServerError> {
        let repo = GitRepo::open(path).map_err(|e| HttpServerError::Repo {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let git_dir = repo.git_dir().to_path_buf();
        let fingerprint = repo.setup_fingerprint().unwrap_or(0);
        let gw = Gateway::open(repo).map_err(|e| HttpServerError::Repo {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        Ok(Repo {
            path: std::fs::canonicalize(&git_dir).unwrap_or(git_dir),
            gw: RwLock::new(Arc::new(gw)),
            setup: Mutex::new((Instant::now(), fingerprint)),
            locks: Mutex::new(HashMap::new()),
            changing: AtomicUsize::new(0),
            dirty: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// The gateway now serving this repository.
    fn gw(&self) -> Arc<Gateway> {
        Arc::clone(&self.gw.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether the set-up is due to be looked at again.
    fn setup_check_due(&self) -> bool {
        self.setup
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .elapsed()
            >= SETUP_CHECK
    }

    /// Look at the repository's set-up (blocking git I/O); if it changed since the last
    /// look, serve it with a new gateway, so that new nodes and clusters, changed
    /// preferred content or maxsize take effect without a restart. Requests already
    /// running finish on the old gateway, whose recorded locations are committed as
    /// usual. Returns whether the gateway was replaced.
    fn refresh_setup(&self) -> bool {
        let mut setup = self.setup.lock().unwrap_or_else(|p| p.into_inner());
        if setup.0.elapsed() < SETUP_CHECK {
            return false;
        }
        setup.0 = Instant::now();
        let old = self.gw();
        let now = match old.with_repo(GitRepo::setup_fingerprint) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("looking at the set-up of {}: {e}", self.path.display());
                return false;
            }
        };
        if now == setup.1 {
            return false;
        }
        let new = GitRepo::open(&self.path)
            .map_err(|e| e.to_string())
            .and_then(|r| Gateway::open(r).map_err(|e| e.to_string()));
        match new {
            Ok(gw) => {
                tracing::info!(
                    "the set-up of {} changed; serving it with what it is now",
                    self.path.display()
                );
                *self.gw.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(gw);
                setup.1 = now;
                if let Err(e) = old.flush() {
                    tracing::error!(
                        "recording locations in the git-annex branch of {} failed: {e}",
                        self.path.display()
                    );
                }
                true
            }
            Err(e) => {
                tracing::warn!("reopening {}: {e}", self.path.display());
                false
            }
        }
    }

    fn begin_change(self: &Arc<Repo>) -> ChangeGuard {
        self.changing.fetch_add(1, Ordering::SeqCst);
        self.dirty.store(true, Ordering::SeqCst);
        ChangeGuard(self.clone())
    }

    /// Commit pending location changes once no changing request has run for `idle`.
    async fn committer(self: Arc<Repo>, idle: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
            loop {
                tokio::time::sleep(idle).await;
                if self.changing.load(Ordering::SeqCst) == 0 {
                    break;
                }
            }
            if self.dirty.swap(false, Ordering::SeqCst) {
                self.flush().await;
            }
        }
    }

    async fn flush(&self) {
        let gw = self.gw();
        match tokio::task::spawn_blocking(move || gw.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(
                "recording locations in the git-annex branch of {} failed: {e}",
                self.path.display()
            ),
            Err(e) => tracing::error!("flush task failed: {e}"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LockEntry>> {
        self.locks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `keeplocked` started: the lock no longer expires.
    fn keep(&self, lockid: &str) {
        if let Some(e) = self.lock().get(lockid) {
            e.kept.store(true, Ordering::SeqCst);
        }
    }

    /// Release a lock and wait until it is released; unknown ids are ignored.
    async fn drop_lock(&self, lockid: &str) {
        let entry = self.lock().remove(lockid);
        if let Some(e) = entry {
            let _ = e.release.send(());
            let _ = e.holder.await;
        }
    }

    async fn drop_all_locks(&self) {
        let ids: Vec<String> = self.lock().keys().cloned().collect();
        for id in ids {
            self.drop_lock(&id).await;
        }
    }
}

#[derive(Default)]
struct Repos {
    list: Vec<Arc<Repo>>,
    by_uuid: HashMap<String, (Arc<Repo>, Target)>,
}

/// The state every connection shares.
struct Shared {
    opts: HttpOptions,
    repos: RwLock<Repos>,
    rescan: tokio::sync::Mutex<()>,
    jobs: Arc<Semaphore>,
    locked_files: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    committers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Shared {
    fn repos(&self) -> std::sync::RwLockReadGuard<'_, Repos> {
        self.repos.read().unwrap_or_else(|p| p.into_inner())
    }

    fn add_repo(self: &Arc<Self>, repo: Repo) -> Arc<Repo> {
        let repo = Arc::new(repo);
        tracing::info!(
            "serving {} as {}",
            repo.path.display(),
            repo.gw().uuid().as_str()
        );
        let task = tokio::spawn(
            repo.clone()
                .committer(self.opts.commit_idle, self.shutdown.clone()),
        );
        self.committers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
        let mut repos = self.repos.write().unwrap_or_else(|p| p.into_inner());
        repos
            .by_uuid
            .insert(repo.gw().uuid().to_string(), (repo.clone(), Target::Local));
        repos.list.push(repo.clone());
        repo
    }

    /// The repository serving `uuid`, and what it serves it as.
    async fn lookup(self: &Arc<Self>, uuid: &str) -> Option<(Arc<Repo>, Target)> {
        let cached = self.repos().by_uuid.get(uuid).cloned();
        if let Some(hit) = cached {
            if hit.0.path.exists() || self.opts.directories.is_empty() {
                if !self.refresh(&hit.0).await {
                    return Some(hit);
                }
            } else {
                // A repository deleted from a served directory is no longer served.
                self.forget(&hit.0);
            }
        }
        let list = self.repos().list.clone();
        for repo in &list {
            self.refresh(repo).await;
        }
        if let Some(hit) = resolve_in(&list, uuid).await {
            self.cache(uuid, &hit);
            return Some(hit);
        }
        if self.opts.directories.is_empty() {
            return None;
        }
        // An unknown UUID: look for repositories added since the last scan.
        let _one_at_a_time = self.rescan.lock().await;
        if let Some(hit) = self.repos().by_uuid.get(uuid).cloned() {
            return Some(hit);
        }
        let known: Vec<PathBuf> = self.repos().list.iter().map(|r| r.path.clone()).collect();
        let dirs = self.opts.directories.clone();
        let found = tokio::task::spawn_blocking(move || {
            find_repos(&dirs)
                .into_iter()
                .filter_map(|p| match Repo::open(&p) {
                    Ok(r) if !known.contains(&r.path) => Some(r),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::debug!("not serving {}: {e}", p.display());
                        None
                    }
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let new: Vec<Arc<Repo>> = found.into_iter().map(|r| self.add_repo(r)).collect();
        tracing::debug!(
            "rescanned for repositories, now serving {} of them",
            self.repos().list.len()
        );
        let hit = resolve_in(&new, uuid).await;
        if let Some(h) = &hit {
            self.cache(uuid, h);
        }
        hit
    }

    /// Serve `repo` anew if its set-up changed (looked at no more than once per
    /// [`SETUP_CHECK`]); what was resolved through its old gateway is forgotten.
    async fn refresh(&self, repo: &Arc<Repo>) -> bool {
        if !repo.setup_check_due() {
            return false;
        }
        let r = Arc::clone(repo);
        let changed = tokio::task::spawn_blocking(move || r.refresh_setup())
            .await
            .unwrap_or(false);
        if changed {
            let mut repos = self.repos.write().unwrap_or_else(|p| p.into_inner());
            repos
                .by_uuid
                .retain(|_, (r, t)| !Arc::ptr_eq(r, repo) || *t == Target::Local);
        }
        changed
    }

    fn forget(&self, repo: &Arc<Repo>) {
        tracing::info!("{} is gone; no longer serving it", repo.path.display());
        let mut repos = self.repos.write().unwrap_or_else(|p| p.into_inner());
        repos.list.retain(|r| !Arc::ptr_eq(r, repo));
        repos.by_uuid.retain(|_, (r, _)| !Arc::ptr_eq(r, repo));
    }

    fn cache(&self, uuid: &str, hit: &(Arc<Repo>, Target)) {
        self.repos
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .by_uuid
            .insert(uuid.to_string(), hit.clone());
    }
}

/// Ask each repository's gateway whether it serves `uuid` (itself, or as a proxy).
async fn resolve_in(list: &[Arc<Repo>], uuid: &str) -> Option<(Arc<Repo>, Target)> {
    for repo in list {
        if repo.gw().uuid().as_str() == uuid {
            return Some((repo.clone(), Target::Local));
        }
    }
    if Uuid::parse(uuid).is_err() {
        return None;
    }
    for repo in list {
        let gw = repo.gw();
        let u = uuid.to_string();
        let r = tokio::task::spawn_blocking(move || gw.resolve(Some(&u))).await;
        if let Ok(Ok(target)) = r {
            return Some((repo.clone(), target));
        }
    }
    None
}

/// Every git repository below `dirs` (not the directories themselves), without following
/// symbolic links and without looking inside repositories.
pub fn find_repos(dirs: &[PathBuf]) -> Vec<PathBuf> {
    fn is_repo(p: &Path) -> bool {
        p.join(".git").exists()
            || (p.join("HEAD").is_file() && p.join("objects").is_dir() && p.join("refs").is_dir())
    }
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_symlink() || !ft.is_dir() {
                continue;
            }
            if is_repo(&p) {
                out.push(p);
            } else {
                walk(&p, out);
            }
        }
    }
    let mut out = Vec::new();
    for d in dirs {
        walk(d, &mut out);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Responses

fn error_response(e: HttpError) -> Response<RespBody> {
    let mut r = Response::new(RespBody::bytes(e.body.into_bytes()));
    *r.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if e.www_authenticate {
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static(AUTH_CHALLENGE));
    }
    r
}

fn json_response(v: serde_json::Value) -> Response<RespBody> {
    let mut r = Response::new(RespBody::bytes(v.to_string().into_bytes()));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    r
}

fn server_error(text: impl Into<String>) -> Response<RespBody> {
    error_response(HttpError::new(500, text))
}

fn uuid_list(l: &[Uuid]) -> serde_json::Value {
    serde_json::Value::Array(l.iter().map(|u| json!(u.as_str())).collect())
}

/// The last result-like message the session sent.
fn result_of(out: &[Message]) -> Option<&Message> {
    out.iter().rev().find(|m| {
        matches!(
            m,
            Message::Success
                | Message::SuccessPlus(_)
                | Message::Failure
                | Message::FailurePlus(_)
                | Message::Error(_)
                | Message::Timestamp(_)
                | Message::AlreadyHave
                | Message::AlreadyHavePlus(_)
                | Message::PutFrom(_)
        )
    })
}

/// A SUCCESS/FAILURE-like result as (ok, repositories), or the session's error text.
fn outcome(out: &[Message]) -> Result<(bool, Vec<Uuid>), String> {
    match result_of(out) {
        Some(Message::Success) => Ok((true, Vec::new())),
        Some(Message::SuccessPlus(l)) => Ok((true, l.clone())),
        Some(Message::Failure) => Ok((false, Vec::new())),
        Some(Message::FailurePlus(l)) => Ok((false, l.clone())),
        Some(Message::Error(t)) => Err(t.clone()),
        other => Err(format!("protocol error: unexpected {other:?}")),
    }
}

fn with_plus(field: &str, ok: bool, plus: &[Uuid], version: u8) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert(field.to_string(), json!(ok));
    if version >= 2 {
        m.insert("plusuuids".to_string(), uuid_list(plus));
    }
    serde_json::Value::Object(m)
}

// ---------------------------------------------------------------------------------------
// Handlers

async fn handle(shared: Arc<Shared>, secure: bool, req: Request<Incoming>) -> Response<RespBody> {
    let (parts, body) = req.into_parts();
    let routed = {
        let header = |name: &str| parts.headers.get(name).map(HeaderValue::as_bytes);
        let rp = RequestParts {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            header: &header,
        };
        route::route_limited(&rp, shared.opts.max_version)
    };
    let routed = match routed {
        Ok(r) => r,
        Err(e) => return error_response(e),
    };
    tracing::debug!(
        "{} {} v{:?} for {}",
        parts.method,
        routed.call.name(),
        routed.version,
        routed.server
    );
    let Some((repo, target)) = shared.lookup(&routed.server).await else {
        return error_response(HttpError::not_found());
    };
    let class = match routed.call {
        Call::Get { .. } | Call::CheckPresent { .. } | Call::GetTimestamp => ActionClass::Read,
        Call::Put { .. } | Call::PutOffset { .. } => ActionClass::Write,
        Call::Remove { .. } | Call::RemoveBefore { .. } => ActionClass::Remove,
        Call::LockContent { .. } | Call::KeepLocked { .. } => ActionClass::Lock,
    };
    let mode = match shared.opts.auth.decide(secure, routed.auth.as_ref(), class) {
        Decision::Allow(m) => m,
        Decision::Unauthorized => return error_response(HttpError::unauthorized()),
        Decision::Forbidden => return error_response(HttpError::forbidden()),
    };
    if let Call::KeepLocked { lockid } = &routed.call {
        return keep_locked(&shared, &repo, lockid, body).await;
    }
    let bypass: Vec<Uuid> = routed
        .bypass
        .iter()
        .filter_map(|b| Uuid::parse(b).ok())
        .collect();
    let node = {
        let gw = repo.gw();
        let (t, b) = (target.clone(), bypass.clone());
        match tokio::task::spawn_blocking(move || gw.node_for(&t, &b)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return error_response(HttpError::new(502, wire_error(&e))),
            Err(e) => return server_error(e.to_string()),
        }
    };
    let served = repo.gw().target_uuid(&target).clone();
    let version = routed.version.unwrap_or(0);
    let start = || Exchange::start(served.clone(), mode, version, bypass.clone(), node.clone());
    if let Call::LockContent { key } = &routed.call {
        return lock_content(&shared, &repo, start().await, key.clone()).await;
    }
    let Ok(permit) = shared.jobs.clone().acquire_owned().await else {
        return server_error("shutting down");
    };
    let ex = start().await;
    match routed.call.clone() {
        Call::Get { key, af, offset } => get(ex, &routed, key, af, offset, permit).await,
        Call::CheckPresent { key } => {
            let mut ex = ex;
            let (out, _) = ex.send(Message::CheckPresent(key)).await;
            match outcome(&out) {
                Ok((present, _)) => json_response(json!({ "present": present })),
                Err(t) => server_error(t),
            }
        }
        Call::Remove { key } => {
            let _change = repo.begin_change();
            remove(ex, Message::Remove(key), version).await
        }
        Call::RemoveBefore { key, timestamp } => {
            let _change = repo.begin_change();
            let timestamp = u64::try_from(timestamp.max(0)).unwrap_or(u64::MAX);
            remove(ex, Message::RemoveBefore { timestamp, key }, version).await
        }
        Call::GetTimestamp => {
            let mut ex = ex;
            let (out, _) = ex.send(Message::GetTimestamp).await;
            match result_of(&out) {
                Some(Message::Timestamp(t)) => json_response(json!({ "timestamp": t })),
                Some(Message::Error(t)) => server_error(t.clone()),
                other => server_error(format!("protocol error: unexpected {other:?}")),
            }
        }
        Call::PutOffset { key } => put_offset(ex, key, version).await,
        Call::Put {
            key,
            af,
            offset,
            data_length,
            data_present,
        } => {
            let _change = repo.begin_change();
            let r = put(
                ex,
                key,
                af,
                offset,
                data_length,
                data_present && version >= 4,
                body,
                version,
            )
            .await;
            drop(permit);
            r
        }
        Call::LockContent { .. } | Call::KeepLocked { .. } => {
            unreachable!("handled above")
        }
    }
}

async fn remove(mut ex: Exchange, m: Message, version: u8) -> Response<RespBody> {
    let (out, _) = ex.send(m).await;
    match outcome(&out) {
        Ok((removed, plus)) => json_response(with_plus("removed", removed, &plus, version)),
        Err(t) => server_error(t),
    }
}

async fn put_offset(mut ex: Exchange, key: Key, version: u8) -> Response<RespBody> {
    let (out, _) = ex
        .send(Message::Put {
            af: Default::default(),
            key,
        })
        .await;
    let already = |plus: &[Uuid]| {
        let mut m = serde_json::Map::new();
        m.insert("alreadyhave".into(), json!(true));
        if version >= 2 {
            m.insert("plusuuids".into(), uuid_list(plus));
        }
        json_response(serde_json::Value::Object(m))
    };
    match result_of(&out) {
        Some(Message::PutFrom(n)) => {
            let n = *n;
            // Only the offset was wanted: give up the upload (the partial data stays).
            ex.send(Message::Error("only the offset was wanted".into()))
                .await;
            json_response(json!({ "offset": n }))
        }
        Some(Message::AlreadyHave) => already(&[]),
        Some(Message::AlreadyHavePlus(l)) => already(l),
        Some(Message::Error(t)) => server_error(t.clone()),
        other => server_error(format!("protocol error: unexpected {other:?}")),
    }
}

/// Read size of one piece of content sent in a GET response.
const CHUNK: usize = 128 * 1024;

async fn get(
    mut ex: Exchange,
    routed: &Routed,
    key: Key,
    af: crate::types::AssociatedFile,
    offset: u64,
    permit: OwnedSemaphorePermit,
) -> Response<RespBody> {
    let version = routed.version.unwrap_or(0);
    let (out, pause) = ex.send(Message::Get { offset, af, key }).await;
    let len = match out.iter().find_map(|m| match m {
        Message::Data(n) => Some(*n),
        _ => None,
    }) {
        Some(n) => n,
        None => {
            return match result_of(&out) {
                Some(Message::Error(t)) => server_error(t.clone()),
                other => server_error(format!("protocol error: unexpected {other:?}")),
            }
        }
    };
    let resp = |body| {
        let mut r = Response::new(body);
        let h = r.headers_mut();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert("X-git-annex-data-length", HeaderValue::from(len));
        r
    };
    match pause {
        Pause::Transmit { len } if !routed.head => {
            let (tx, rx) = mpsc::channel(2);
            tokio::spawn(stream_content(ex, len, version, tx, permit));
            resp(RespBody::Stream(rx))
        }
        Pause::Transmit { .. } => {
            ex.abandon().await;
            resp(RespBody::empty())
        }
        Pause::Input => {
            // Nothing to send (absent, or nothing from this offset).
            let present = !out.contains(&Message::Invalid) || len > 0;
            ex.send(if present {
                Message::Success
            } else {
                Message::Failure
            })
            .await;
            resp(RespBody::empty())
        }
        other => {
            tracing::warn!("GET ended unexpectedly: {other:?}");
            ex.abandon().await;
            server_error("protocol error")
        }
    }
}

/// Send the open download's `len` bytes into `tx`. From v1 the last byte is held back
/// until the session knows whether the content stayed unchanged; when it did not, the
/// body ends one byte short, which is how git-annex tells an HTTP client `INVALID`.
async fn stream_content(
    mut ex: Exchange,
    len: u64,
    version: u8,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    _permit: OwnedSemaphorePermit,
) {
    let mut moved = 0u64;
    let mut last_out = Vec::new();
    let mut held_back: Option<Bytes> = None;
    while moved < len {
        let want = (len - moved).min(CHUNK as u64) as usize;
        let mut buf = vec![0u8; want];
        let read = match ex.held().content.as_mut() {
            Some(c) => c.read(&mut buf).await,
            None => Ok(0),
        };
        let n = match read {
            Ok(0) => {
                let e = NodeError::io(
                    "read content",
                    PathBuf::new(),
                    std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("content ended after {moved} of {len} bytes"),
                    ),
                );
                fail_stream(ex, &tx, e).await;
                return;
            }
            Ok(n) => n,
            Err(e) => {
                fail_stream(ex, &tx, e).await;
                return;
            }
        };
        buf.truncate(n);
        moved += n as u64;
        let mut piece = Bytes::from(buf);
        if moved == len && version >= 1 {
            held_back = Some(piece.split_off(piece.len() - 1));
        }
        if !piece.is_empty() && tx.send(Ok(piece)).await.is_err() {
            tracing::debug!("client went away during a download");
            ex.abandon().await;
            return;
        }
        let (out, _) = ex.input(Input::Moved(n as u64)).await;
        last_out = out;
    }
    if let Some(last) = held_back {
        if last_out.contains(&Message::Valid) && tx.send(Ok(last)).await.is_err() {
            ex.abandon().await;
            return;
        }
    }
    // The receiving side (the HTTP client) gets no say; git-annex's server counts a
    // finished send as success too.
    ex.send(Message::Success).await;
}

async fn fail_stream(ex: Exchange, tx: &mpsc::Sender<Result<Bytes, std::io::Error>>, e: NodeError) {
    tracing::warn!("sending content failed: {e}");
    let text = e.to_string();
    let mut ex = ex;
    ex.input(Input::TransferFailed(e)).await;
    ex.abandon().await;
    let _ = tx.send(Err(std::io::Error::other(text))).await;
}

/// An upload: `PUT`, then DATA from the request body (skipping what the node already has
/// when the client's offset is behind), VALID when the body had exactly the announced
/// length, else INVALID (the node then verifies everything). A body that ends early is a
/// vanished client: the node keeps what arrived for a resume.
#[allow(clippy::too_many_arguments)]
async fn put(
    mut ex: Exchange,
    key: Key,
    af: crate::types::AssociatedFile,
    client_offset: u64,
    data_length: i128,
    data_present: bool,
    mut body: Incoming,
    version: u8,
) -> Response<RespBody> {
    let stored = |r: Result<(bool, Vec<Uuid>), String>| match r {
        Ok((ok, plus)) => json_response(with_plus("stored", ok, &plus, version)),
        Err(t) => server_error(t),
    };
    let (out, _) = ex.send(Message::Put { af, key }).await;
    let server_offset = match result_of(&out) {
        Some(Message::AlreadyHave) => return stored(Ok((true, Vec::new()))),
        Some(Message::AlreadyHavePlus(l)) => return stored(Ok((true, l.clone()))),
        Some(Message::PutFrom(n)) => *n,
        Some(Message::Error(t)) => return server_error(t.clone()),
        other => return server_error(format!("protocol error: unexpected {other:?}")),
    };
    if data_present {
        let (out, _) = ex.send(Message::DataPresent).await;
        return stored(outcome(&out));
    }
    let Ok(len) = u64::try_from(data_length) else {
        ex.send(Message::Error("negative data length".into())).await;
        return stored(Ok((false, Vec::new())));
    };
    tracing::debug!(
        "put: the node wants data from {server_offset}, the client sends from {client_offset}"
    );
    let (skip, data_len, force_invalid) = if server_offset >= client_offset {
        let skip = server_offset - client_offset;
        (skip, len.saturating_sub(skip), false)
    } else {
        (0, len, true)
    };
    let (mut out, pause) = ex.send(Message::Data(data_len)).await;
    let mut pending = Bytes::new();
    match pause {
        Pause::Receive { len: want, dest } => {
            let to_sink = dest == DataDest::Sink;
            if to_sink {
                let begun = match ex.held().sink.as_mut() {
                    Some(s) => s.begin(want).await,
                    None => Ok(()),
                };
                if let Err(e) = begun {
                    let text = e.to_string();
                    ex.input(Input::TransferFailed(e)).await;
                    ex.abandon().await;
                    return server_error(text);
                }
            }
            if want == 0 {
                out = ex.run().await.0;
            }
            let mut to_skip = skip;
            let mut moved = 0u64;
            while moved < want {
                if pending.is_empty() {
                    match next_data(&mut body).await {
                        Ok(Some(d)) => pending = d,
                        Ok(None) | Err(_) => {
                            // The body ended short: the client is gone or lied.
                            let (o, _) = ex.input(Input::Eof).await;
                            ex.abandon().await;
                            return stored(outcome(&o).or(Ok((false, Vec::new()))));
                        }
                    }
                }
                if to_skip > 0 {
                    let n = (to_skip).min(pending.len() as u64) as usize;
                    let _ = pending.split_to(n);
                    to_skip -= n as u64;
                    continue;
                }
                let n = (want - moved).min(pending.len() as u64) as usize;
                let piece = pending.split_to(n);
                if to_sink {
                    let w = match ex.held().sink.as_mut() {
                        Some(s) => s.write(&piece).await,
                        None => Ok(()),
                    };
                    if let Err(e) = w {
                        let text = e.to_string();
                        ex.input(Input::TransferFailed(e)).await;
                        ex.abandon().await;
                        return server_error(text);
                    }
                }
                moved += n as u64;
                out = ex.input(Input::Moved(n as u64)).await.0;
            }
        }
        Pause::Input => {}
        Pause::Transmit { .. } | Pause::Closed => {
            ex.abandon().await;
            return stored(outcome(&out));
        }
    }
    if version >= 1 {
        // Exactly the announced length? Anything more (or a broken body) is INVALID.
        let exact =
            !force_invalid && pending.is_empty() && matches!(next_data(&mut body).await, Ok(None));
        let validity = if exact {
            Message::Valid
        } else {
            Message::Invalid
        };
        out = ex.send(validity).await.0;
    }
    stored(outcome(&out))
}

async fn lock_content(
    shared: &Arc<Shared>,
    repo: &Arc<Repo>,
    mut ex: Exchange,
    key: Key,
) -> Response<RespBody> {
    let Ok(permit) = shared.locked_files.clone().try_acquire_owned() else {
        tracing::warn!("--lockedfiles limit reached; refusing to lock {key}");
        return json_response(json!({ "locked": false }));
    };
    let (out, _) = ex.send(Message::LockContent(key)).await;
    if result_of(&out) != Some(&Message::Success) {
        return json_response(json!({ "locked": false }));
    }
    let lockid = uuid::Uuid::new_v4().hyphenated().to_string();
    let (release_tx, release_rx) = oneshot::channel();
    let kept = Arc::new(AtomicBool::new(false));
    // Hold the entry's lock while starting the holder so an early expiry finds it.
    let mut locks = repo.lock();
    let holder = tokio::spawn(hold_lock(
        ex,
        release_rx,
        kept.clone(),
        shared.opts.lock_retention,
        Arc::downgrade(repo),
        lockid.clone(),
        permit,
    ));
    locks.insert(
        lockid.clone(),
        LockEntry {
            release: release_tx,
            kept,
            holder,
        },
    );
    drop(locks);
    json_response(json!({ "locked": true, "lockid": lockid }))
}

/// Keep a content lock until released, or until it expires unless `keeplocked` began.
async fn hold_lock(
    mut ex: Exchange,
    release: oneshot::Receiver<()>,
    kept: Arc<AtomicBool>,
    retention: Duration,
    repo: Weak<Repo>,
    lockid: String,
    _permit: OwnedSemaphorePermit,
) {
    tokio::pin!(release);
    tokio::select! {
        _ = &mut release => {}
        _ = tokio::time::sleep(retention) => {
            if kept.load(Ordering::SeqCst) {
                let _ = (&mut release).await;
            } else {
                tracing::info!("content lock {lockid} expired");
                if let Some(r) = repo.upgrade() {
                    r.lock().remove(&lockid);
                }
            }
        }
    }
    ex.send(Message::UnlockContent).await;
}

/// `keeplocked`: hold the lock while the request body lasts; `{"unlock":true}`, the end
/// of the body or a broken connection release it.
async fn keep_locked(
    shared: &Arc<Shared>,
    repo: &Arc<Repo>,
    lockid: &str,
    mut body: Incoming,
) -> Response<RespBody> {
    repo.keep(lockid);
    let mut shutdown = shared.shutdown.clone();
    let mut buf: Vec<u8> = Vec::new();
    'read: loop {
        let next = tokio::select! {
            d = next_data(&mut body) => d,
            _ = shutdown.changed() => break 'read,
        };
        match next {
            Ok(Some(d)) => {
                buf.extend_from_slice(&d);
                while let Some(i) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    match unlock_request(&line) {
                        Some(false) => {}
                        Some(true) => break 'read,
                        None => {
                            tracing::debug!("keeplocked {lockid}: not an unlock request");
                            break 'read;
                        }
                    }
                }
                if buf.len() > 64 * 1024 {
                    break 'read;
                }
            }
            Ok(None) => {
                tracing::debug!("keeplocked {lockid}: the request body ended");
                break 'read;
            }
            Err(e) => {
                tracing::debug!("keeplocked {lockid}: body broke off: {}", e.0);
                break 'read;
            }
        }
    }
    tracing::debug!("keeplocked {lockid}: releasing");
    repo.drop_lock(lockid).await;
    tracing::debug!("keeplocked {lockid}: released");
    json_response(json!({ "locked": false }))
}

/// `{"unlock":bool}` (blank lines are keep-alives too).
fn unlock_request(line: &[u8]) -> Option<bool> {
    #[derive(serde::Deserialize)]
    struct Unlock {
        unlock: bool,
    }
    let text = std::str::from_utf8(line).ok()?.trim();
    if text.is_empty() {
        return Some(false);
    }
    serde_json::from_str::<Unlock>(text).ok().map(|u| u.unlock)
}

// ---------------------------------------------------------------------------------------
// Listening and serving

/// Where the server listens, once bound.
#[derive(Debug, Clone)]
pub enum Listening {
    Tcp(Vec<SocketAddr>),
    Unix(PathBuf),
}

impl std::fmt::Display for Listening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listening::Tcp(addrs) => {
                let s: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                write!(f, "{}", s.join(" "))
            }
            Listening::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

fn load_tls(opts: &HttpOptions) -> Result<Option<tokio_rustls::TlsAcceptor>, HttpServerError> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, keyfile) = match (&opts.certfile, &opts.privatekeyfile) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        _ => return Err(HttpServerError::HalfTls),
    };
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|source| HttpServerError::ReadFile {
            path: p.clone(),
            source,
        })
    };
    let tls_err = |p: &PathBuf, d: String| HttpServerError::Tls {
        path: p.clone(),
        detail: d,
    };
    let mut chain = Vec::new();
    for p in std::iter::once(cert).chain(opts.chainfiles.iter()) {
        let data = read(p)?;
        let certs: Result<Vec<CertificateDer<'static>>, _> =
            CertificateDer::pem_slice_iter(&data).collect();
        let certs = certs.map_err(|e| tls_err(p, e.to_string()))?;
        if certs.is_empty() {
            return Err(tls_err(p, "no certificate found".into()));
        }
        chain.extend(certs);
    }
    let key = PrivateKeyDer::from_pem_slice(&read(keyfile)?)
        .map_err(|e| tls_err(keyfile, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| tls_err(cert, e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}

async fn bind(opts: &HttpOptions) -> Result<(Vec<Listener>, Listening), HttpServerError> {
    if let Some(path) = &opts.socket {
        // A socket file nobody listens on is stale (a previous run crashed).
        if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
            let _ = std::fs::remove_file(path);
        }
        let l = tokio::net::UnixListener::bind(path).map_err(|source| HttpServerError::Listen {
            addr: path.display().to_string(),
            source,
        })?;
        // Only this user may connect (as git-annex does).
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        return Ok((vec![Listener::Unix(l)], Listening::Unix(path.clone())));
    }
    let addrs: Vec<SocketAddr> = match &opts.bind {
        None => vec![SocketAddr::from(([0u16; 8], opts.port))],
        Some(host) => {
            let host_port = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]:{}", opts.port)
            } else {
                format!("{host}:{}", opts.port)
            };
            let found = tokio::net::lookup_host(host_port.as_str())
                .await
                .map_err(|source| HttpServerError::Resolve {
                    addr: host.clone(),
                    source,
                })?
                .collect();
            found
        }
    };
    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    for addr in addrs {
        let l = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) if opts.bind.is_none() => {
                // No IPv6 here: every IPv4 address instead.
                tracing::debug!("cannot listen on {addr} ({e}); trying IPv4");
                let v4 = SocketAddr::from(([0, 0, 0, 0], opts.port));
                tokio::net::TcpListener::bind(v4).await.map_err(|source| {
                    HttpServerError::Listen {
                        addr: v4.to_string(),
                        source,
                    }
                })?
            }
            Err(source) => {
                return Err(HttpServerError::Listen {
                    addr: addr.to_string(),
                    source,
                })
            }
        };
        if let Ok(a) = l.local_addr() {
            bound.push(a);
        }
        listeners.push(Listener::Tcp(l));
    }
    Ok((listeners, Listening::Tcp(bound)))
}

/// Counts live connections, so shutdown can wait for them.
#[derive(Default)]
struct Conns {
    live: AtomicUsize,
    idle: tokio::sync::Notify,
}

struct ConnGuard(Arc<Conns>);
impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

async fn serve_conn<S>(shared: Arc<Shared>, stream: S, secure: bool, guard: ConnGuard)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _guard = guard;
    let svc = {
        let shared = shared.clone();
        hyper::service::service_fn(move |req| {
            let shared = shared.clone();
            async move {
                // Each request runs as its own task: when a client vanishes, hyper drops
                // this future, but the handler still finishes what it started (it sees the
                // request body break off, releases locks, keeps partial uploads).
                let r = match tokio::spawn(handle(shared, secure, req)).await {
                    Ok(r) => r,
                    Err(e) => server_error(format!("request handler failed: {e}")),
                };
                Ok::<_, Infallible>(r)
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(60))
        .title_case_headers(true)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let mut shutdown = shared.shutdown.clone();
    let mut closing = *shutdown.borrow();
    if closing {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            c = shutdown.changed(), if !closing => {
                if c.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
                closing = true;
            }
        }
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: Listener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    conns: Arc<Conns>,
) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            a = accept(&listener) => a,
            _ = shutdown.changed() => return,
        };
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors and the like: do not spin.
                tracing::warn!("accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        conns.live.fetch_add(1, Ordering::SeqCst);
        let guard = ConnGuard(conns.clone());
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match (stream, tls) {
                (Accepted::Tcp(s), None) => {
                    let _ = s.set_nodelay(true);
                    serve_conn(shared, s, false, guard).await
                }
                (Accepted::Unix(s), None) => serve_conn(shared, s, false, guard).await,
                (Accepted::Tcp(s), Some(acc)) => {
                    let _ = s.set_nodelay(true);
                    match tokio::time::timeout(Duration::from_secs(30), acc.accept(s)).await {
                        Ok(Ok(t)) => serve_conn(shared, t, true, guard).await,
                        Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
                (Accepted::Unix(s), Some(acc)) => {
                    match tokio::time::timeout(Duration::from_secs(30), acc.accept(s)).await {
                        Ok(Ok(t)) => serve_conn(shared, t, true, guard).await,
                        Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(l: &Listener) -> std::io::Result<Accepted> {
    match l {
        Listener::Tcp(l) => l.accept().await.map(|(s, _)| Accepted::Tcp(s)),
        Listener::Unix(l) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
    }
}

/// Open the repositories to serve (the one given or the one we run in, or everything
/// below the `--directory` folders).
fn initial_repos(opts: &HttpOptions) -> Result<Vec<Repo>, HttpServerError> {
    if !opts.directories.is_empty() {
        return Ok(find_repos(&opts.directories)
            .into_iter()
            .filter_map(|p| match Repo::open(&p) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::debug!("not serving {}: {e}", p.display());
                    None
                }
            })
            .collect());
    }
    let here = match &opts.repository {
        Some(p) => GitRepo::open(p),
        None => GitRepo::discover("."),
    }
    .map_err(|e| HttpServerError::Repo {
        path: opts
            .repository
            .clone()
            .unwrap_or_else(|| PathBuf::from(".")),
        detail: e.to_string(),
    })?;
    let config = here.config().map_err(|e| HttpServerError::Repo {
        path: here.git_dir().to_path_buf(),
        detail: e.to_string(),
    })?;
    if config.annex_uuid().is_none() {
        return Err(HttpServerError::NotAnnex);
    }
    Ok(vec![Repo::open(here.git_dir())?])
}

/// A running server: where it listens, and how to stop it.
pub struct Running {
    pub listening: Listening,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stop: finish requests in flight (a few seconds at most), release every lock,
    /// commit the location changes, remove the unix socket.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.done.await;
    }

    /// Wait until the server stops by itself (it does not; for `main`).
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// Bind and start serving (inside a tokio runtime with I/O and timers).
pub async fn start(opts: HttpOptions) -> Result<Running, HttpServerError> {
    if opts.jobs == 0 {
        return Err(HttpServerError::Jobs);
    }
    let tls = load_tls(&opts)?;
    let repos = {
        let o = opts.clone();
        tokio::task::spawn_blocking(move || initial_repos(&o))
            .await
            .map_err(|e| HttpServerError::Runtime(std::io::Error::other(e.to_string())))??
    };
    let (listeners, listening) = bind(&opts).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        jobs: Arc::new(Semaphore::new(opts.jobs)),
        locked_files: Arc::new(Semaphore::new(opts.lockedfiles)),
        opts,
        repos: RwLock::new(Repos::default()),
        rescan: tokio::sync::Mutex::new(()),
        shutdown: stop_rx,
        committers: Mutex::new(Vec::new()),
    });
    for r in repos {
        shared.add_repo(r);
    }
    let conns = Arc::new(Conns::default());
    let accepters: Vec<_> = listeners
        .into_iter()
        .map(|l| tokio::spawn(accept_loop(shared.clone(), l, tls.clone(), conns.clone())))
        .collect();
    let socket = match &listening {
        Listening::Unix(p) => Some(p.clone()),
        Listening::Tcp(_) => None,
    };
    let done = tokio::spawn(async move {
        let mut stop = shared.shutdown.clone();
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                break;
            }
        }
        for a in accepters {
            let _ = a.await;
        }
        let list = shared.repos().list.clone();
        for r in &list {
            r.drop_all_locks().await;
        }
        // Requests in flight get a few seconds to finish.
        let wait_idle = async {
            while conns.live.load(Ordering::SeqCst) > 0 {
                let idle = conns.idle.notified();
                if conns.live.load(Ordering::SeqCst) == 0 {
                    break;
                }
                idle.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), wait_idle)
            .await
            .is_err()
        {
            tracing::warn!("stopping with requests still in progress");
        }
        let committers: Vec<_> = shared
            .committers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for c in committers {
            let _ = c.await;
        }
        for r in &list {
            r.flush().await;
        }
        if let Some(p) = socket {
            let _ = std::fs::remove_file(p);
        }
    });
    Ok(Running {
        listening,
        stop: stop_tx,
        done,
    })
}

/// Run the server until SIGINT or SIGTERM; returns the exit status. Errors go to stderr.
pub fn main(opts: HttpOptions) -> i32 {
    crate::branch::repo::tune_for_serving();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = opts.threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("annexgate-http: {}", HttpServerError::Runtime(e));
            return 1;
        }
    };
    runtime.block_on(async move {
        let running = match start(opts).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("annexgate-http: {e}");
                return 1;
            }
        };
        eprintln!("annexgate-http: listening on {}", running.listening);
        let signals = async {
            use tokio::signal::unix::{signal, SignalKind};
            match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(mut i), Ok(mut t)) => {
                    tokio::select! {
                        _ = i.recv() => {}
                        _ = t.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        signals.await;
        tracing::info!("stopping");
        running.stop().await;
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{Content, ContentLock, PutStart, Removed, Validity};
    use crate::session::server::ServerMode;
    use crate::types::AssociatedFile;
    use async_trait::async_trait;

    /// A node whose content "changes while being read" when `valid` is false.
    struct Flaky {
        uuid: Uuid,
        data: Vec<u8>,
        valid: bool,
    }

    struct Bytes_ {
        data: Vec<u8>,
        pos: usize,
        valid: bool,
    }

    #[async_trait]
    impl Content for Bytes_ {
        fn len(&self) -> u64 {
            self.data.len() as u64
        }
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NodeError> {
            let n = buf.len().min(self.data.len() - self.pos).min(3);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
        async fn validity(&mut self) -> Result<Validity, NodeError> {
            Ok(if self.valid {
                Validity::Valid
            } else {
                Validity::Invalid
            })
        }
        async fn done(self: Box<Self>, _ok: bool) -> Result<(), NodeError> {
            Ok(())
        }
    }

    #[async_trait]
    impl Node for Flaky {
        fn uuid(&self) -> &Uuid {
            &self.uuid
        }
        fn name(&self) -> &str {
            "flaky"
        }
        async fn check_present(&self, _key: &Key) -> Result<bool, NodeError> {
            Ok(true)
        }
        async fn lock_content(
            &self,
            _key: &Key,
        ) -> Result<Option<Box<dyn ContentLock>>, NodeError> {
            Ok(None)
        }
        async fn get(
            &self,
            _key: &Key,
            _offset: u64,
            _af: &AssociatedFile,
        ) -> Result<Option<Box<dyn Content>>, NodeError> {
            Ok(Some(Box::new(Bytes_ {
                data: self.data.clone(),
                pos: 0,
                valid: self.valid,
            })))
        }
        async fn put(&self, _key: &Key, _af: &AssociatedFile) -> Result<PutStart, NodeError> {
            Ok(PutStart::AlreadyHave { plus: vec![] })
        }
        async fn remove(&self, _key: &Key, _d: Option<u64>) -> Result<Removed, NodeError> {
            Ok(Removed::default())
        }
        async fn timestamp(&self) -> Result<u64, NodeError> {
            Ok(1)
        }
    }

    use crate::node::Node;

    async fn download(valid: bool, version: u8) -> (u64, Vec<u8>) {
        let uuid = Uuid::parse("aaaaaaaa-0000-0000-0000-000000000000").unwrap();
        let node: Arc<dyn Node> = Arc::new(Flaky {
            uuid: uuid.clone(),
            data: b"hello world".to_vec(),
            valid,
        });
        let mut ex = Exchange::start(uuid, ServerMode::ReadOnly, version, vec![], node).await;
        let key = Key::from_str("SHA256E-s11--x").unwrap();
        let (out, pause) = ex
            .send(Message::Get {
                offset: 0,
                af: AssociatedFile::none(),
                key,
            })
            .await;
        assert_eq!(out, vec![Message::Data(11)]);
        let Pause::Transmit { len } = pause else {
            panic!("expected a transfer, got {pause:?}")
        };
        let (tx, mut rx) = mpsc::channel(2);
        let permit = Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap();
        tokio::spawn(stream_content(ex, len, version, tx, permit));
        let mut got = Vec::new();
        while let Some(piece) = rx.recv().await {
            got.extend_from_slice(&piece.unwrap());
        }
        (len, got)
    }

    #[tokio::test]
    async fn changed_content_ends_one_byte_short() {
        assert_eq!(download(true, 4).await, (11, b"hello world".to_vec()));
        assert_eq!(download(false, 4).await, (11, b"hello worl".to_vec()));
        assert_eq!(download(false, 1).await, (11, b"hello worl".to_vec()));
        // v0 (and the unversioned GET) has no validity: everything is sent.
        assert_eq!(download(false, 0).await, (11, b"hello world".to_vec()));
    }

    #[test]
    fn unlock_requests() {
        assert_eq!(unlock_request(b"{\"unlock\":true}\n"), Some(true));
        assert_eq!(unlock_request(b"{\"unlock\":false}"), Some(false));
        assert_eq!(unlock_request(b"\n"), Some(false));
        assert_eq!(unlock_request(b"garbage\n"), None);
    }

    #[test]
    fn finds_repositories_without_following_links() {
        let d = tempfile::tempdir().unwrap();
        let mk = |p: &str| std::fs::create_dir_all(d.path().join(p)).unwrap();
        mk("a/.git");
        mk("deep/er/b/.git");
        mk("a/inner/.git"); // inside a repository: not looked for
        mk("bare.git/objects");
        mk("bare.git/refs");
        std::fs::write(d.path().join("bare.git/HEAD"), "ref: refs/heads/master\n").unwrap();
        mk("plain/dir");
        std::os::unix::fs::symlink(d.path().join("a"), d.path().join("link")).unwrap();
        let found: Vec<String> = find_repos(&[d.path().to_path_buf()])
            .iter()
            .map(|p| p.strip_prefix(d.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(found, ["a", "bare.git", "deep/er/b"]);
    }
}
