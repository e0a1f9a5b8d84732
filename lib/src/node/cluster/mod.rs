//! `Cluster`: a node made of nodes, as a git-annex gateway serves a cluster
//! (spec `clusters-and-proxies.md` §5).
//!
//! A cluster has its own UUID (`ac…-…-8…`) and a set of members: repositories, special
//! remotes, or the same cluster as served by another gateway. The P2P operations map
//! onto the members like this:
//!
//! * **PUT** fans out. `missing` = members the location log does not list as holding
//!   the key; `wanted` = those of them whose preferred content wants it (a member with
//!   none wants everything); the targets are `wanted`, else `missing`, else every
//!   member. Every target is asked at once; if all say ALREADY-HAVE the client hears
//!   ALREADY-HAVE(-PLUS). Otherwise the client is asked for the content from the lowest
//!   offset any target wants, and the bytes, read once from the client, go to every
//!   target from its own offset, without a temporary file. A target that fails is
//!   dropped (its upload aborted) while the others go on. The reply lists every member
//!   that stored the key (and whatever those report in turn), each recorded present.
//! * **GET** and **CHECKPRESENT** go to a member the location log says has the key:
//!   lowest cost first, then the least busy (requests in flight from this cluster), at
//!   random among equals. A member that fails, or turns out to lack the key, hands over
//!   to the next; a download that breaks midway continues from the next member at the
//!   same offset, unnoticed by the client (then reported INVALID, so the client checks
//!   every byte itself).
//! * **REMOVE** / **REMOVE-BEFORE** go to every member, whatever the log says; the
//!   results are combined as git-annex does ([`Removed`]): ok only if every member was,
//!   the list of every repository the content left, the first member's error text.
//! * **GETTIMESTAMP** with one member is that member's clock; with several it is the
//!   gateway's own clock `L0`, and each member's answer `Ti` is remembered, so that a
//!   later `REMOVE-BEFORE ts` reaches member i as `Ti + (ts - L0)`.
//! * **LOCKCONTENT** always fails: clients lock copies on individual members.
//!
//! Where git-annex's cluster code is not the model: a failed member's error text is
//! passed through (git-annex answers FAILURE, or ends the session); when every target
//! refuses the upload before any byte arrives (a full disk), the other members lacking
//! the key are tried; a member whose GET or CHECKPRESENT fails is replaced by the next;
//! node choice is load-aware; `REMOVE-BEFORE` to a member without a remembered `Ti` asks
//! it for its clock first instead of passing the deadline through untranslated; a
//! member answering ALREADY-HAVE is recorded as holding the key (git-annex only lists
//! it, and only when every target said so); an upload that no member can take is read
//! to its end and answered FAILURE, keeping the session in step; a cluster without
//! members answers a PUT with an error, not ALREADY-HAVE. Every member request runs in
//! a task of its own and records its location change as soon as it is made, so a
//! client that hangs up midway leaves no stale location behind.
//!
//! The cluster's own UUID is never recorded in a location log and never counts as a
//! copy; it may appear in reply lists (a member that is this cluster behind another
//! gateway answers with it), as in git-annex.
//!
//! How a gateway builds one (here over in-memory nodes, with an in-memory location log
//! that is both the view and the sink):
//!
//! ```
//! use std::sync::Arc;
//! use annexgate::node::cluster::{Cluster, ClusterMember, ClusterOptions, EveryoneWants, MemLocations};
//! use annexgate::node::memory::MemNode;
//! use annexgate::node::{Node, PutStart, Validity};
//! use annexgate::{AssociatedFile, Key, Uuid};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let n1 = MemNode::new(Uuid::new_random(), "node1");
//! let n2 = MemNode::new(Uuid::new_random(), "node2");
//! let log = Arc::new(MemLocations::new());
//! let cluster = Cluster::new(
//!     Uuid::new_cluster(),
//!     "mycluster",
//!     vec![
//!         ClusterMember::new(Arc::new(n1.clone()), 100.0),
//!         ClusterMember::new(Arc::new(n2.clone()), 100.0),
//!     ],
//!     log.clone(),              // where the location log says keys are
//!     Arc::new(EveryoneWants),  // preferred content (or EnginePlacement)
//!     log.clone(),              // where location changes are recorded
//!     ClusterOptions::default(),
//! )
//! .unwrap();
//!
//! let key = Key::from_str("WORM-s5--greeting").unwrap();
//! let PutStart::Accept(mut sink) = cluster.put(&key, &AssociatedFile::new("greeting")).await.unwrap()
//! else { unreachable!() };
//! sink.begin(5).await.unwrap();
//! sink.write(b"hello").await.unwrap();
//! let stored = sink.finish(Validity::Valid).await.unwrap();
//! // Both nodes have it, in git-annex's order (equal costs: last given first).
//! assert_eq!(stored.plus, vec![n2.uuid().clone(), n1.uuid().clone()]);
//! assert_eq!(n1.content(&key).as_deref(), Some(&b"hello"[..]));
//! assert!(cluster.check_present(&key).await.unwrap());
//! # });
//! ```
//!
//! Modules: `put` (the fan-out upload), `get` (the fail-over download), `facts` (what
//! the gateway supplies: location views, preferred content, an in-memory log).

mod facts;
mod get;
mod put;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Semaphore;

pub use facts::{EnginePlacement, EveryoneWants, LocationView, MemLocations, Wanting};

use super::{Caps, Content, ContentLock, LocationSink, Node, NodeError, PutStart, Removed};
use crate::types::{AssociatedFile, Key, Uuid};

/// One member of a cluster, as the gateway's configuration describes it.
#[derive(Clone)]
pub struct ClusterMember {
    node: Arc<dyn Node>,
    cost: f64,
    gateway: Option<Uuid>,
}

impl std::fmt::Debug for ClusterMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClusterMember({} {} cost {}",
            self.node.name(),
            self.node.uuid(),
            self.cost
        )?;
        if let Some(g) = &self.gateway {
            write!(f, " via gateway {g}")?;
        }
        write!(f, ")")
    }
}

impl ClusterMember {
    /// A member reached through `node` (which answers as the member's UUID), with the
    /// remote's cost (`remote.<name>.annex-cost`; lower is tried first).
    pub fn new(node: Arc<dyn Node>, cost: f64) -> ClusterMember {
        ClusterMember {
            node,
            cost,
            gateway: None,
        }
    }
    /// This member is the cluster itself as served by another gateway, `gateway` (its
    /// UUID). Such a member's UUID is the cluster's; the location log never lists it,
    /// so it never serves GET or CHECKPRESENT and is always asked to store uploads, as
    /// in git-annex.
    pub fn via_gateway(mut self, gateway: Uuid) -> ClusterMember {
        self.gateway = Some(gateway);
        self
    }
    pub fn uuid(&self) -> &Uuid {
        self.node.uuid()
    }
    pub fn node(&self) -> &Arc<dyn Node> {
        &self.node
    }
    pub fn cost(&self) -> f64 {
        self.cost
    }
    /// The other gateway this member is reached through, if it is one.
    pub fn gateway(&self) -> Option<&Uuid> {
        self.gateway.as_ref()
    }
}

/// How a cluster runs its members.
#[derive(Clone)]
pub struct ClusterOptions {
    /// At most this many member requests at once (git-annex's `annex.jobs`); `None`:
    /// every member at once.
    pub jobs: Option<usize>,
    /// The gateway's monotonic clock in seconds (for GETTIMESTAMP with several members).
    pub clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// Seed for the random choice among equally good members; `None` seeds from the
    /// system's randomness.
    pub seed: Option<u64>,
    /// Upload chunks queued for each target before the slowest one holds back the
    /// client (backpressure).
    pub queue_chunks: usize,
    /// An upload of a key at least this big (by its size field) whose session runs on a
    /// single-threaded runtime has its targets' writes and the cluster's hash done on
    /// worker threads, in parallel (see `put`); `None`: never.
    pub parallel_from: Option<u64>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            jobs: None,
            clock: Arc::new(super::boottime_secs),
            seed: None,
            queue_chunks: 4,
            parallel_from: Some(put::PARALLEL_FROM),
        }
    }
}

impl std::fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("jobs", &self.jobs)
            .field("seed", &self.seed)
            .field("parallel_from", &self.parallel_from)
            .field("queue_chunks", &self.queue_chunks)
            .finish_non_exhaustive()
    }
}

/// Why a cluster cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster {cluster}: {uuid} is a member twice")]
    DuplicateMember { cluster: String, uuid: Uuid },
    #[error("cluster {cluster}: member {name} answers as the cluster's own UUID but is not another gateway's view of it")]
    SelfMember { cluster: String, name: String },
    #[error("cluster {cluster}: member {name} has cost {cost}, not a number")]
    BadCost {
        cluster: String,
        name: String,
        cost: f64,
    },
    #[error("cluster {cluster}: annex.jobs must be at least 1")]
    NoJobs { cluster: String },
}

/// A cluster as one [`Node`]. Cheap to clone (clones share state).
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    uuid: Uuid,
    name: String,
    members: Vec<Member>,
    locations: Arc<dyn LocationView>,
    wanting: Arc<dyn Wanting>,
    records: Arc<dyn LocationSink>,
    options: ClusterOptions,
    /// What this cluster itself changed or learned, ahead of the location view (which
    /// may see the records only later).
    overlay: Mutex<Overlay>,
    /// The location view's answer for the last key asked, and when (see
    /// [`Inner::present_for_put`]).
    last_viewed: Mutex<Option<(Key, Instant, Vec<Uuid>)>>,
    rng: Mutex<u64>,
    /// The last multi-member GETTIMESTAMP: `L0` and each member's `Ti`.
    stamps: Mutex<Option<Stamps>>,
}

struct Member {
    m: ClusterMember,
    busy: Arc<AtomicUsize>,
}

#[derive(Debug, Clone)]
struct Stamps {
    local: u64,
    members: Vec<Option<u64>>,
}

/// Per key: what this cluster itself did or saw at members, ahead of the location view.
#[derive(Default)]
struct Overlay {
    keys: HashMap<Key, HashMap<Uuid, Fact>>,
}

#[derive(Debug, Clone, Copy)]
struct Fact {
    has: bool,
    /// Recorded through the location sink (dropped once the view agrees), or only
    /// seen (a member lacking what the log says it has).
    recorded: bool,
    /// Forgotten at this time of the gateway's clock.
    until: u64,
}

/// Past this many keys the overlay starts afresh.
const OVERLAY_KEYS: usize = 4096;
/// How long the location view's answer for a key is used again by an upload of it (see
/// [`Inner::present_for_put`]).
const VIEW_REUSE: Duration = Duration::from_millis(50);
/// How long a recorded change may wait for the location view to show it.
const RECORDED_SECS: u64 = 3600;
/// How long a member's "I lack it" overrides the location log.
const SEEN_SECS: u64 = 60;

/// Counts a request in flight at a member while alive.
pub(crate) struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(counter: &Arc<AtomicUsize>) -> Busy {
        counter.fetch_add(1, Ordering::SeqCst);
        Busy(counter.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its data consistent; a panic elsewhere does not
    // poison the cluster.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The text a member's failure contributes to a combined reply: the far side's own
/// words when it sent some, else the error's description.
fn error_text(e: &NodeError) -> String {
    match e {
        NodeError::Remote { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// `t + (ts - l)` without overflow, clamped to the clock's range.
fn translate(t: u64, ts: u64, l: u64) -> u64 {
    let v = i128::from(t) + i128::from(ts) - i128::from(l);
    v.clamp(0, i128::from(u64::MAX)) as u64
}

impl Cluster {
    /// A cluster answering as `uuid`.
    ///
    /// `members` come in the order git-annex lists the gateway's remotes (git remotes by
    /// name, then special remotes); they are used in git-annex's order: by cost, lowest
    /// first, and among equal costs in reverse (git-annex's `byCost`), which is the
    /// order of the UUIDs in the cluster's replies. `locations` says which repositories
    /// the gateway's location log lists for a key; `wanting` which members' preferred
    /// content wants it; every location change the cluster makes is reported to
    /// `records` (never under the cluster's own UUID).
    pub fn new(
        uuid: Uuid,
        name: impl Into<String>,
        members: Vec<ClusterMember>,
        locations: Arc<dyn LocationView>,
        wanting: Arc<dyn Wanting>,
        records: Arc<dyn LocationSink>,
        options: ClusterOptions,
    ) -> Result<Cluster, ClusterError> {
        let name = name.into();
        if options.jobs == Some(0) {
            return Err(ClusterError::NoJobs { cluster: name });
        }
        let mut seen = HashSet::new();
        for m in &members {
            if !m.cost.is_finite() {
                return Err(ClusterError::BadCost {
                    cluster: name,
                    name: m.node.name().to_string(),
                    cost: m.cost,
                });
            }
            if m.uuid() == &uuid {
                if m.gateway.is_none() {
                    return Err(ClusterError::SelfMember {
                        cluster: name,
                        name: m.node.name().to_string(),
                    });
                }
            } else if !seen.insert(m.uuid().clone()) {
                return Err(ClusterError::DuplicateMember {
                    cluster: name,
                    uuid: m.uuid().clone(),
                });
            }
        }
        let members = git_annex_order(members)
            .into_iter()
            .map(|m| Member {
                m,
                busy: Arc::new(AtomicUsize::new(0)),
            })
            .collect();
        let seed = options.seed.unwrap_or_else(|| {
            let r = uuid::Uuid::new_v4().as_u128();
            (r as u64) ^ ((r >> 64) as u64)
        });
        Ok(Cluster {
            inner: Arc::new(Inner {
                uuid,
                name,
                members,
                locations,
                wanting,
                records,
                options,
                overlay: Mutex::new(Overlay::default()),
                last_viewed: Mutex::new(None),
                // xorshift needs a non-zero state.
                rng: Mutex::new(seed | 1),
                stamps: Mutex::new(None),
            }),
        })
    }

    /// The members, in the order the cluster uses them.
    pub fn members(&self) -> Vec<ClusterMember> {
        self.inner.members.iter().map(|m| m.m.clone()).collect()
    }

    /// Requests in flight at each member (in [`Cluster::members`] order).
    pub fn busy(&self) -> Vec<usize> {
        self.inner
            .members
            .iter()
            .map(|m| m.busy.load(Ordering::SeqCst))
            .collect()
    }
}

/// git-annex's `byCost`: ascending cost, and members of equal cost in reverse of the
/// order given.
fn git_annex_order(members: Vec<ClusterMember>) -> Vec<ClusterMember> {
    let mut v: Vec<(usize, ClusterMember)> = members.into_iter().enumerate().collect();
    v.sort_by(|(ia, a), (ib, b)| a.cost.total_cmp(&b.cost).then(ib.cmp(ia)));
    v.into_iter().map(|(_, m)| m).collect()
}

impl Inner {
    fn member_name(&self, i: usize) -> &str {
        self.members[i].m.node.name()
    }

    /// Repositories believed to hold `key`: the location view with this cluster's own
    /// changes applied, the cluster's UUID left out.
    fn present(&self, key: &Key) -> Vec<Uuid> {
        let viewed = self.locations.present(key);
        *lock(&self.last_viewed) = Some((key.clone(), Instant::now(), viewed.clone()));
        self.with_overlay(key, viewed)
    }

    /// [`Self::present`] for an upload: a client asks CHECKPRESENT and sends PUT for the
    /// same key a moment later, so the location view's answer to the CHECKPRESENT is
    /// used once more if it is younger than [`VIEW_REUSE`] (this cluster's own changes
    /// since are in the overlay, applied on top either way).
    fn present_for_put(&self, key: &Key) -> Vec<Uuid> {
        let reused = match lock(&self.last_viewed).take() {
            Some((k, at, uuids)) if &k == key && at.elapsed() < VIEW_REUSE => Some(uuids),
            _ => None,
        };
        match reused {
            Some(viewed) => self.with_overlay(key, viewed),
            None => self.present(key),
        }
    }

    /// `present`, the location view's answer for `key`, with this cluster's own changes
    /// applied, the cluster's UUID left out.
    fn with_overlay(&self, key: &Key, mut present: Vec<Uuid>) -> Vec<Uuid> {
        present.retain(|u| u != &self.uuid);
        let now = (self.options.clock)();
        let mut o = lock(&self.overlay);
        let Some(changes) = o.keys.get_mut(key) else {
            return present;
        };
        // A recorded change the view shows now needs no bridging any more.
        changes.retain(|u, f| f.until > now && !(f.recorded && present.contains(u) == f.has));
        present.retain(|u| changes.get(u).is_none_or(|f| f.has));
        let mut added: Vec<&Uuid> = changes
            .iter()
            .filter(|(u, f)| f.has && !present.contains(u))
            .map(|(u, _)| u)
            .collect();
        added.sort();
        present.extend(added.into_iter().cloned());
        if changes.is_empty() {
            o.keys.remove(key);
        }
        present
    }

    /// Members (indices, in order) believed to hold `key`.
    fn holders(&self, key: &Key) -> Vec<usize> {
        let present: HashSet<Uuid> = self.present(key).into_iter().collect();
        (0..self.members.len())
            .filter(|&i| {
                let u = self.members[i].m.uuid();
                u != &self.uuid && present.contains(u)
            })
            .collect()
    }

    fn remember(&self, key: &Key, uuid: &Uuid, fact: Fact) {
        let mut o = lock(&self.overlay);
        if o.keys.len() >= OVERLAY_KEYS && !o.keys.contains_key(key) {
            o.keys.clear();
        }
        o.keys
            .entry(key.clone())
            .or_default()
            .insert(uuid.clone(), fact);
    }

    /// A member turned out to lack `key` though the log says otherwise: leave it out
    /// of GET and CHECKPRESENT choices for a while, without recording anything.
    fn seen_lacking(&self, key: &Key, uuid: &Uuid) {
        if uuid == &self.uuid {
            return;
        }
        let until = (self.options.clock)().saturating_add(SEEN_SECS);
        let fact = Fact {
            has: false,
            recorded: false,
            until,
        };
        self.remember(key, uuid, fact);
    }

    /// Record a location change (and bridge it until the view shows it); preferred
    /// content hears of it when it changes what was believed before the operation
    /// began (`before`: the holders then). The view itself may show the change already
    /// (a local node records into the gateway's branch too), so it cannot tell.
    fn record(&self, key: &Key, uuid: &Uuid, has: bool, before: &HashSet<Uuid>) {
        if uuid == &self.uuid {
            return;
        }
        if before.contains(uuid) != has {
            self.wanting.changed(key, uuid, has);
        }
        let until = (self.options.clock)().saturating_add(RECORDED_SECS);
        let fact = Fact {
            has,
            recorded: true,
            until,
        };
        self.remember(key, uuid, fact);
        self.records.record(key, uuid, has);
    }

    fn random(&self, below: usize) -> usize {
        let mut s = lock(&self.rng);
        let mut x = *s;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *s = x;
        (x % below as u64) as usize
    }

    /// Of `candidates` (member indices in order), the one to ask: lowest cost, then
    /// fewest requests in flight, then at random.
    fn choose(&self, candidates: &[usize]) -> Option<usize> {
        let lowest = candidates
            .iter()
            .map(|&i| self.members[i].m.cost)
            .min_by(f64::total_cmp)?;
        let cheapest: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| self.members[i].m.cost == lowest)
            .collect();
        let load = |i: usize| self.members[i].busy.load(Ordering::SeqCst);
        let least = cheapest.iter().map(|&i| load(i)).min()?;
        let idle: Vec<usize> = cheapest.into_iter().filter(|&i| load(i) == least).collect();
        Some(idle[self.random(idle.len())])
    }

    fn busy(&self, i: usize) -> Busy {
        Busy::new(&self.members[i].busy)
    }

    fn semaphore(&self) -> Option<Arc<Semaphore>> {
        self.options.jobs.map(|j| Arc::new(Semaphore::new(j)))
    }

    /// Run `f` for each member in `which`, at most `jobs` at once, each counted busy
    /// while it runs; the results come back in the order of `which`. Each request runs
    /// in a task of its own and is carried through (and its location changes recorded)
    /// even if the caller stops waiting.
    async fn fan_out<R, F, Fut>(&self, which: &[usize], f: F) -> Vec<Result<R, NodeError>>
    where
        F: Fn(usize, Arc<dyn Node>) -> Fut,
        Fut: Future<Output = Result<R, NodeError>> + Send + 'static,
        R: Send + 'static,
    {
        let sem = self.semaphore();
        let tasks: Vec<_> = which
            .iter()
            .map(|&i| {
                let fut = f(i, self.members[i].m.node.clone());
                let sem = sem.clone();
                let counter = self.members[i].busy.clone();
                tokio::spawn(async move {
                    let _permit = match &sem {
                        Some(s) => s.clone().acquire_owned().await.ok(),
                        None => None,
                    };
                    let _busy = Busy::new(&counter);
                    fut.await
                })
            })
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for (task, &i) in tasks.into_iter().zip(which) {
            out.push(match task.await {
                Ok(r) => r,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => Err(NodeError::Protocol {
                    node: self.member_name(i).to_string(),
                    detail: format!("request task ended: {e}"),
                }),
            });
        }
        out
    }

    /// The deadline for member `i` of a client's `REMOVE-BEFORE ts`.
    fn deadline_plan(&self, i: usize, ts: u64) -> Deadline {
        if self.members.len() <= 1 {
            return Deadline::Fixed(ts);
        }
        match lock(&self.stamps).as_ref() {
            Some(st) => match st.members.get(i).copied().flatten() {
                Some(t) => Deadline::Fixed(translate(t, ts, st.local)),
                None => Deadline::AskFirst(ts),
            },
            None => Deadline::AskFirst(ts),
        }
    }
}

/// How a member's REMOVE-BEFORE deadline is worked out.
#[derive(Debug, Clone, Copy)]
enum Deadline {
    Fixed(u64),
    /// No remembered clock reading for the member: ask it now, then translate the
    /// client's deadline (in the gateway's clock) into the member's.
    AskFirst(u64),
}

#[async_trait]
impl Node for Cluster {
    fn uuid(&self) -> &Uuid {
        &self.inner.uuid
    }
    fn name(&self) -> &str {
        &self.inner.name
    }
    fn caps(&self) -> Caps {
        Caps {
            lock: false,
            remove_before: true,
            resume: true,
        }
    }

    async fn check_present(&self, key: &Key) -> Result<bool, NodeError> {
        let inner = &self.inner;
        let mut left = inner.holders(key);
        let mut first_error = None;
        while let Some(i) = inner.choose(&left) {
            left.retain(|&j| j != i);
            let r = {
                let _busy = inner.busy(i);
                inner.members[i].m.node.check_present(key).await
            };
            match r {
                Ok(true) => return Ok(true),
                Ok(false) => {
                    tracing::info!(
                        "cluster {}: {} lacks {key}, unlike the location log says",
                        inner.name,
                        inner.member_name(i)
                    );
                    inner.seen_lacking(key, inner.members[i].m.uuid());
                }
                Err(e) => {
                    tracing::warn!("cluster {}: CHECKPRESENT {key}: {e}", inner.name);
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(false),
        }
    }

    async fn lock_content(&self, _key: &Key) -> Result<Option<Box<dyn ContentLock>>, NodeError> {
        // As git-annex: a cluster is never locked as a whole.
        Ok(None)
    }

    async fn get(
        &self,
        key: &Key,
        offset: u64,
        af: &AssociatedFile,
    ) -> Result<Option<Box<dyn Content>>, NodeError> {
        get::start(self.inner.clone(), key, offset, af).await
    }

    async fn put(&self, key: &Key, af: &AssociatedFile) -> Result<PutStart, NodeError> {
        put::start(self.inner.clone(), key, af).await
    }

    async fn remove(&self, key: &Key, deadline: Option<u64>) -> Result<Removed, NodeError> {
        let inner = &self.inner;
        let all: Vec<usize> = (0..inner.members.len()).collect();
        if all.is_empty() {
            return Ok(Removed::default());
        }
        let plans: Vec<Option<Deadline>> = all
            .iter()
            .map(|&i| deadline.map(|ts| inner.deadline_plan(i, ts)))
            .collect();
        let before: Arc<HashSet<Uuid>> = Arc::new(inner.present(key).into_iter().collect());
        let results = inner
            .fan_out(&all, |i, node| {
                let key = key.clone();
                let plan = plans[i];
                let inner = self.inner.clone();
                let before = before.clone();
                async move {
                    let deadline = match plan {
                        None => None,
                        Some(Deadline::Fixed(d)) => Some(d),
                        Some(Deadline::AskFirst(ts)) => {
                            let t = node.timestamp().await?;
                            Some(translate(t, ts, (inner.options.clock)()))
                        }
                    };
                    let r = node.remove(&key, deadline).await?;
                    // Recorded at once, so a caller that stops waiting leaves no lie.
                    if r.removed {
                        inner.record(&key, node.uuid(), false, &before);
                    }
                    for u in &r.plus {
                        inner.record(&key, u, false, &before);
                    }
                    Ok(r)
                }
            })
            .await;
        let mut ok = true;
        let mut plus = Vec::new();
        let mut error = None;
        for (&i, r) in all.iter().zip(results) {
            let member = inner.members[i].m.uuid();
            match r {
                Ok(r) => {
                    if r.removed {
                        plus.push(member.clone());
                    } else {
                        ok = false;
                        if let Some(text) = r.error {
                            error.get_or_insert(text);
                        }
                    }
                    plus.extend(r.plus);
                }
                Err(e) => {
                    tracing::warn!(
                        "cluster {}: REMOVE {key} from {}: {e}",
                        inner.name,
                        inner.member_name(i)
                    );
                    ok = false;
                    error.get_or_insert_with(|| error_text(&e));
                }
            }
        }
        Ok(Removed {
            removed: ok,
            plus,
            error,
        })
    }

    async fn timestamp(&self) -> Result<u64, NodeError> {
        let inner = &self.inner;
        match inner.members.len() {
            0 => {
                *lock(&inner.stamps) = None;
                Ok((inner.options.clock)())
            }
            1 => {
                *lock(&inner.stamps) = None;
                let _busy = inner.busy(0);
                inner.members[0].m.node.timestamp().await
            }
            n => {
                let all: Vec<usize> = (0..n).collect();
                let results = inner
                    .fan_out(&all, |_, node| async move { node.timestamp().await })
                    .await;
                // Read our clock after the members': a slow answer then shortens the
                // time a deadline allows, never lengthens it.
                let local = (inner.options.clock)();
                let mut first_error = None;
                let members: Vec<Option<u64>> = results
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| match r {
                        Ok(t) => Some(t),
                        Err(e) => {
                            tracing::warn!(
                                "cluster {}: GETTIMESTAMP from {}: {e}",
                                inner.name,
                                inner.member_name(i)
                            );
                            first_error.get_or_insert(e);
                            None
                        }
                    })
                    .collect();
                if members.iter().all(Option::is_none) {
                    *lock(&inner.stamps) = None;
                    return Err(first_error.unwrap_or_else(|| NodeError::Unreachable {
                        node: inner.name.clone(),
                        reason: "no member answered".into(),
                    }));
                }
                *lock(&inner.stamps) = Some(Stamps { local, members });
                Ok(local)
            }
        }
    }
}
