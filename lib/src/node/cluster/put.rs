//! A cluster upload: the targets are chosen (clusters-and-proxies.md §5), each gets its
//! own upload, and the client's bytes are read once and handed to all of them.
//!
//! Each target's upload runs in a task of its own that owns the member's sink and takes
//! commands from a short queue: `begin`, chunks of data (shared, never copied per
//! target, cut to start at the target's own offset), then `finish`, `data_present` or
//! `abort`. A full queue holds the client back (the slowest target sets the pace); a
//! target whose sink fails aborts it and leaves, and the others go on.
//!
//! On a single-threaded runtime (an `annexgate-shell` session) the targets of a big
//! upload and its hash run on a small shared pool of worker threads instead, so that
//! writing three copies and hashing overlap rather than queue behind each other; small
//! uploads stay on the session's thread, where handing work between threads would cost
//! more than it saves.
//!
//! Nodes that would each hash the bytes (local repositories with annex.verify) may leave
//! that to the cluster instead, which then hashes them once as they pass and tells every
//! target `VALID` only when the hash matched the key (`INVALID` otherwise, which makes
//! each node check its copy itself and reject it).

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::runtime::{Handle, Runtime, RuntimeFlavor};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::{Busy, Inner};
use crate::node::{NodeError, PutSink, PutStart, Stored, Validity};
use crate::types::backend::{is_verifiable, Verdict, Verifier};
use crate::types::{AssociatedFile, Key, Uuid};

/// The size from which an upload's targets run in parallel (`ClusterOptions::parallel_from`):
/// below it a file is written in about the time a thread takes to wake.
pub(super) const PARALLEL_FROM: u64 = 8 << 20;

/// Where an upload's tasks run: the session's runtime, or for a big upload on a
/// single-threaded one, a pool of worker threads shared by the process (made on first
/// use). Tasks there may use the session's I/O objects: the session's thread drives
/// them while it waits for the upload.
fn spawner(inner: &Inner, key: &Key) -> Handle {
    let here = Handle::current();
    let big = match (inner.options.parallel_from, key.size()) {
        (Some(from), Some(size)) => size >= from,
        _ => false,
    };
    if !big || here.runtime_flavor() != RuntimeFlavor::CurrentThread {
        return here;
    }
    static POOL: OnceLock<Option<Runtime>> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
        match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("annexgate-fanout")
            .enable_all()
            .build()
        {
            Ok(rt) => Some(rt),
            Err(e) => {
                tracing::warn!("no worker threads for cluster uploads ({e}); uploading on one");
                None
            }
        }
    });
    match pool {
        Some(rt) => rt.handle().clone(),
        None => here,
    }
}

/// Start a cluster upload of `key`.
pub(super) async fn start(
    inner: Arc<Inner>,
    key: &Key,
    af: &AssociatedFile,
) -> Result<PutStart, NodeError> {
    if inner.members.is_empty() {
        return Err(NodeError::Unreachable {
            node: inner.name.clone(),
            reason: "the cluster has no nodes".into(),
        });
    }
    let present = inner.present_for_put(key);
    let before: Arc<HashSet<Uuid>> = Arc::new(present.iter().cloned().collect());
    let (targets, fallback) = choose_targets(&inner, key, af, &present, &before);
    tracing::debug!(
        "cluster {}: PUT {key} to {:?}",
        inner.name,
        targets
            .iter()
            .map(|&i| inner.member_name(i))
            .collect::<Vec<_>>()
    );
    let opened = open(&inner, key, af, &targets, &before).await;
    let mut have = Vec::new();
    let mut any_have = false;
    let mut accepted = Vec::new();
    let mut first_error = None;
    for (i, r) in opened {
        match r {
            Opened::Have(uuids) => {
                any_have = true;
                have.extend(uuids);
            }
            Opened::Accepted(sink) => accepted.push((i, sink)),
            Opened::Failed(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if accepted.is_empty() {
        if !any_have {
            return Err(first_error.unwrap_or_else(|| NodeError::Unreachable {
                node: inner.name.clone(),
                reason: "no node answered".into(),
            }));
        }
        return Ok(PutStart::AlreadyHave { plus: have });
    }
    let offset = accepted.iter().map(|(_, s)| s.offset()).min().unwrap_or(0);
    // One hash here instead of one per node, for the nodes that let us.
    let mut hash_here = false;
    if offset == 0 && is_verifiable(key) {
        for (_, sink) in accepted.iter_mut() {
            if sink.take_upstream_verification() {
                hash_here = true;
            }
        }
    }
    let rt = spawner(&inner, key);
    let hasher = hash_here.then(|| Hasher::spawn(&rt, key, inner.options.queue_chunks));
    let sem = inner.semaphore();
    let targets = accepted
        .into_iter()
        .map(|(i, sink)| Target::spawn(&rt, &inner, key, i, sink, sem.clone(), &before))
        .collect();
    Ok(PutStart::Accept(Box::new(ClusterSink {
        inner,
        before,
        key: key.clone(),
        af: af.clone(),
        offset,
        targets,
        fallback,
        sem,
        rt,
        stored: Vec::new(),
        pos: None,
        hasher,
    })))
}

/// The members to upload to (in order), and the other members lacking the key (for
/// when every target refuses).
fn choose_targets(
    inner: &Inner,
    key: &Key,
    af: &AssociatedFile,
    present: &[Uuid],
    have: &HashSet<Uuid>,
) -> (Vec<usize>, Vec<usize>) {
    let all: Vec<usize> = (0..inner.members.len()).collect();
    let missing: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&i| !have.contains(inner.members[i].m.uuid()))
        .collect();
    let missing_uuids: Vec<Uuid> = missing
        .iter()
        .map(|&i| inner.members[i].m.uuid().clone())
        .collect();
    let wanting: HashSet<Uuid> = inner
        .wanting
        .wanting(key, af, present, &missing_uuids)
        .into_iter()
        .collect();
    let wanted: Vec<usize> = missing
        .iter()
        .copied()
        .filter(|&i| wanting.contains(inner.members[i].m.uuid()))
        .collect();
    let targets = if !wanted.is_empty() {
        wanted
    } else if !missing.is_empty() {
        missing.clone()
    } else {
        all
    };
    let fallback = missing
        .into_iter()
        .filter(|i| !targets.contains(i))
        .collect();
    (targets, fallback)
}

enum Opened {
    /// ALREADY-HAVE: the UUIDs to report (the member's and its own list).
    Have(Vec<Uuid>),
    Accepted(Box<dyn PutSink>),
    Failed(NodeError),
}

/// Ask every member in `which` to take the upload; a member that has the key already is
/// recorded as holding it (`before`: the holders when the upload began).
async fn open(
    inner: &Inner,
    key: &Key,
    af: &AssociatedFile,
    which: &[usize],
    before: &HashSet<Uuid>,
) -> Vec<(usize, Opened)> {
    let results = inner
        .fan_out(which, |_, node| {
            let key = key.clone();
            let af = af.clone();
            async move { node.put(&key, &af).await }
        })
        .await;
    which
        .iter()
        .zip(results)
        .map(|(&i, r)| {
            let opened = match r {
                Ok(PutStart::AlreadyHave { plus }) => {
                    let mut uuids = vec![inner.members[i].m.uuid().clone()];
                    uuids.extend(plus);
                    uuids.retain(|u| u != &inner.uuid);
                    for u in &uuids {
                        inner.record(key, u, true, before);
                    }
                    Opened::Have(uuids)
                }
                Ok(PutStart::Accept(sink)) => Opened::Accepted(sink),
                Err(e) => {
                    tracing::warn!(
                        "cluster {}: PUT {key} to {}: {e}",
                        inner.name,
                        inner.member_name(i)
                    );
                    Opened::Failed(e)
                }
            };
            (i, opened)
        })
        .collect()
}

enum Cmd {
    Begin(u64, oneshot::Sender<Result<(), NodeError>>),
    Data(Bytes),
    Finish(Validity),
    DataPresent,
    Abort,
}

/// How a target's upload ended.
enum Outcome {
    Stored(Stored),
    Failed(NodeError),
    /// Its failure was already reported (to `begin`).
    Reported,
    Aborted,
}

/// One target's upload, running in its own task.
struct Target {
    member: usize,
    offset: u64,
    /// `None` once the task is known to have stopped taking commands.
    tx: Option<mpsc::Sender<Cmd>>,
    task: JoinHandle<Outcome>,
}

impl Target {
    fn spawn(
        rt: &Handle,
        inner: &Arc<Inner>,
        key: &Key,
        member: usize,
        sink: Box<dyn PutSink>,
        sem: Option<Arc<Semaphore>>,
        before: &Arc<HashSet<Uuid>>,
    ) -> Target {
        let (tx, rx) = mpsc::channel(inner.options.queue_chunks.max(1));
        let offset = sink.offset();
        let done = Done {
            inner: inner.clone(),
            key: key.clone(),
            member,
            before: before.clone(),
            _busy: inner.busy(member),
        };
        let task = rt.spawn(work(sink, rx, sem, done));
        Target {
            member,
            offset,
            tx: Some(tx),
            task,
        }
    }

    /// Hand the target a command; false if it has stopped.
    async fn send(&mut self, cmd: Cmd) -> bool {
        let Some(tx) = &self.tx else { return false };
        if tx.send(cmd).await.is_err() {
            self.tx = None;
            return false;
        }
        true
    }

    async fn outcome(self) -> Outcome {
        drop(self.tx);
        match self.task.await {
            Ok(o) => o,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Outcome::Failed(NodeError::Protocol {
                node: "cluster".into(),
                detail: format!("upload task ended: {e}"),
            }),
        }
    }
}

async fn permit(sem: &Option<Arc<Semaphore>>) -> Option<OwnedSemaphorePermit> {
    match sem {
        Some(s) => s.clone().acquire_owned().await.ok(),
        None => None,
    }
}

/// What a target's task needs to know to record its result.
struct Done {
    inner: Arc<Inner>,
    key: Key,
    member: usize,
    /// The holders when the upload began.
    before: Arc<HashSet<Uuid>>,
    _busy: Busy,
}

impl Done {
    /// The sink's final word; a store is recorded at once (the member and whatever it
    /// lists), so it is logged even if nobody waits for the reply any more.
    fn stored(&self, r: Result<Stored, NodeError>) -> Outcome {
        match r {
            Ok(s) => {
                if s.stored {
                    let uuid = self.inner.members[self.member].m.uuid();
                    self.inner.record(&self.key, uuid, true, &self.before);
                    for u in &s.plus {
                        self.inner.record(&self.key, u, true, &self.before);
                    }
                }
                Outcome::Stored(s)
            }
            Err(e) => Outcome::Failed(e),
        }
    }
}

/// The task that owns one target's sink.
async fn work(
    mut sink: Box<dyn PutSink>,
    mut rx: mpsc::Receiver<Cmd>,
    sem: Option<Arc<Semaphore>>,
    done: Done,
) -> Outcome {
    while let Some(cmd) = rx.recv().await {
        let _permit = permit(&sem).await;
        match cmd {
            Cmd::Begin(len, reply) => {
                if let Err(e) = sink.begin(len).await {
                    sink.abort().await;
                    if let Err(Err(e)) = reply.send(Err(e)) {
                        return Outcome::Failed(e);
                    }
                    return Outcome::Reported;
                }
                if reply.send(Ok(())).is_err() {
                    // Nobody waits for this upload any more.
                    sink.abort().await;
                    return Outcome::Aborted;
                }
            }
            Cmd::Data(b) => {
                if let Err(e) = sink.write(&b).await {
                    sink.abort().await;
                    return Outcome::Failed(e);
                }
            }
            Cmd::Finish(v) => return done.stored(sink.finish(v).await),
            Cmd::DataPresent => return done.stored(sink.data_present().await),
            Cmd::Abort => {
                sink.abort().await;
                return Outcome::Aborted;
            }
        }
    }
    // The cluster's sink went away without a word: keep what a resume can use.
    sink.abort().await;
    Outcome::Aborted
}

/// The sink the client's upload goes to.
struct ClusterSink {
    inner: Arc<Inner>,
    /// The holders when the upload began.
    before: Arc<HashSet<Uuid>>,
    key: Key,
    af: AssociatedFile,
    /// Where the client starts (the lowest offset any target asked for).
    offset: u64,
    targets: Vec<Target>,
    /// Members lacking the key that were not targets.
    fallback: Vec<usize>,
    sem: Option<Arc<Semaphore>>,
    /// Where the targets' tasks run.
    rt: Handle,
    /// Repositories found holding the key during the upload (fallback members that
    /// had it already).
    stored: Vec<Uuid>,
    /// The absolute offset of the next byte, once `begin` announced them.
    pos: Option<(u64, u64)>,
    /// The hash of every byte from offset 0, when some target left verifying to us.
    hasher: Option<Hasher>,
}

/// The cluster's hash of an upload, taken in a task of its own so that it runs beside
/// the targets' writes rather than before them.
struct Hasher {
    tx: mpsc::Sender<Bytes>,
    task: JoinHandle<Verdict>,
}

impl Hasher {
    fn spawn(rt: &Handle, key: &Key, queue: usize) -> Hasher {
        let (tx, mut rx) = mpsc::channel::<Bytes>(queue.max(1));
        let key = key.clone();
        let task = rt.spawn(async move {
            let mut v = Verifier::new(&key, true);
            while let Some(b) = rx.recv().await {
                v.update(&b);
            }
            v.finish(&key)
        });
        Hasher { tx, task }
    }

    /// The verdict on every byte handed over; `None` when the task did not see them all
    /// (it was cancelled: the runtime is going away).
    async fn verdict(self) -> Option<Verdict> {
        drop(self.tx);
        match self.task.await {
            Ok(v) => Some(v),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => None,
        }
    }
}

impl ClusterSink {
    /// Tell the targets how many bytes each will get; returns the targets that took
    /// the news.
    async fn begin_targets(&self, mut targets: Vec<Target>, total: u64) -> Vec<Target> {
        let mut replies = Vec::with_capacity(targets.len());
        for t in &mut targets {
            let (reply, rx) = oneshot::channel();
            let len = total.saturating_sub(t.offset);
            replies.push(if t.send(Cmd::Begin(len, reply)).await {
                Some(rx)
            } else {
                None
            });
        }
        let mut live = Vec::new();
        let mut dead = Vec::new();
        for (t, rx) in targets.into_iter().zip(replies) {
            let r = match rx {
                Some(rx) => rx.await.ok(),
                None => None,
            };
            match r {
                Some(Ok(())) => live.push(t),
                Some(Err(e)) => {
                    tracing::warn!(
                        "cluster {}: {} refuses {} bytes of {}: {e}",
                        self.inner.name,
                        self.inner.member_name(t.member),
                        total.saturating_sub(t.offset),
                        self.key
                    );
                    dead.push(t);
                }
                None => dead.push(t),
            }
        }
        for t in dead {
            self.report(t.member, t.outcome().await);
        }
        live
    }

    /// Every target refused before any byte moved: try the members that lack the key
    /// but were not asked (those whose partial upload is no further along than the
    /// client's offset).
    async fn fall_back(&mut self, total: u64) {
        let which = std::mem::take(&mut self.fallback);
        if which.is_empty() {
            return;
        }
        tracing::info!(
            "cluster {}: every target refused {}; trying {:?}",
            self.inner.name,
            self.key,
            which
                .iter()
                .map(|&i| self.inner.member_name(i))
                .collect::<Vec<_>>()
        );
        let opened = open(&self.inner, &self.key, &self.af, &which, &self.before).await;
        let mut targets = Vec::new();
        for (i, r) in opened {
            match r {
                Opened::Have(uuids) => self.stored.extend(uuids),
                Opened::Accepted(sink) if sink.offset() >= self.offset => {
                    let t = Target::spawn(
                        &self.rt,
                        &self.inner,
                        &self.key,
                        i,
                        sink,
                        self.sem.clone(),
                        &self.before,
                    );
                    targets.push(t);
                }
                Opened::Accepted(sink) => {
                    // It would need bytes before the client's offset.
                    sink.abort().await;
                }
                Opened::Failed(_) => {}
            }
        }
        self.targets = self.begin_targets(targets, total).await;
    }

    fn report(&self, member: usize, outcome: Outcome) -> Option<Stored> {
        let name = self.inner.member_name(member);
        match outcome {
            Outcome::Stored(s) if s.stored => return Some(s),
            Outcome::Stored(_) => tracing::warn!(
                "cluster {}: {name} did not store {}",
                self.inner.name,
                self.key
            ),
            Outcome::Failed(e) => tracing::warn!(
                "cluster {}: upload of {} to {name} failed: {e}",
                self.inner.name,
                self.key
            ),
            Outcome::Reported | Outcome::Aborted => {}
        }
        None
    }

    /// Send every target `cmd` and gather where the content is now.
    async fn conclude(mut self, cmd: impl Fn() -> Cmd) -> Stored {
        let mut targets = std::mem::take(&mut self.targets);
        for t in &mut targets {
            t.send(cmd()).await;
        }
        let mut plus = std::mem::take(&mut self.stored);
        for t in targets {
            let member = t.member;
            if let Some(s) = self.report(member, t.outcome().await) {
                let mut uuids = vec![self.inner.members[member].m.uuid().clone()];
                uuids.extend(s.plus);
                plus.extend(uuids);
            }
        }
        // (Each target recorded its own store; fallback members that had the key
        // already were recorded when they said so.)
        Stored {
            stored: !plus.is_empty(),
            plus,
        }
    }
}

#[async_trait]
impl PutSink for ClusterSink {
    fn offset(&self) -> u64 {
        self.offset
    }

    async fn begin(&mut self, len: u64) -> Result<(), NodeError> {
        let total = self.offset.saturating_add(len);
        self.pos = Some((self.offset, total));
        let targets = std::mem::take(&mut self.targets);
        self.targets = self.begin_targets(targets, total).await;
        if self.targets.is_empty() {
            self.fall_back(total).await;
        }
        if self.targets.is_empty() {
            // Nobody takes the bytes; they are read and dropped so the client stays
            // in step, and the upload ends as a FAILURE.
            tracing::warn!(
                "cluster {}: no node takes {}; discarding the upload",
                self.inner.name,
                self.key
            );
        }
        Ok(())
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), NodeError> {
        let Some((start, total)) = self.pos else {
            return Err(NodeError::Protocol {
                node: self.inner.name.clone(),
                detail: "write before begin".into(),
            });
        };
        let end = start.saturating_add(data.len() as u64);
        self.pos = Some((end, total));
        // One copy of the chunk, shared by the hash and every target that still needs
        // some of it.
        let mut chunk: Option<Bytes> = None;
        if let Some(h) = self.hasher.as_ref() {
            let c = chunk.get_or_insert_with(|| Bytes::copy_from_slice(data));
            // (A send fails only if the task is gone; its verdict then says so.)
            let _ = h.tx.send(c.clone()).await;
        }
        for t in &mut self.targets {
            if t.tx.is_none() || t.offset >= end {
                continue;
            }
            let chunk = chunk.get_or_insert_with(|| Bytes::copy_from_slice(data));
            let from = t.offset.saturating_sub(start) as usize;
            t.send(Cmd::Data(chunk.slice(from..))).await;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>, validity: Validity) -> Result<Stored, NodeError> {
        let validity = match (validity, self.hasher.take()) {
            (Validity::Valid, Some(h)) => match h.verdict().await {
                Some(Verdict::Good) => Validity::Valid,
                // Unknown or bad: every node checks its own copy.
                bad => {
                    tracing::warn!(
                        "cluster {}: received content of {} does not match it: {bad:?}",
                        self.inner.name,
                        self.key
                    );
                    Validity::Invalid
                }
            },
            (v, _) => v,
        };
        Ok(self.conclude(|| Cmd::Finish(validity)).await)
    }

    async fn data_present(self: Box<Self>) -> Result<Stored, NodeError> {
        Ok(self.conclude(|| Cmd::DataPresent).await)
    }

    async fn abort(mut self: Box<Self>) {
        let mut targets = std::mem::take(&mut self.targets);
        for t in &mut targets {
            t.send(Cmd::Abort).await;
        }
        for t in targets {
            let member = t.member;
            self.report(member, t.outcome().await);
        }
    }
}
