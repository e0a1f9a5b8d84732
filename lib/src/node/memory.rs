//! `MemNode`: a complete node that keeps content in memory.
//!
//! It behaves like a git-annex repository served by git-annex-shell, minus the disk:
//! uploads go to a per-key partial buffer (the "temp file"), resume from its length, are
//! verified against the key (size, and hash for hashing backends) before they become
//! content, and a failed verification throws the partial away; an upload that ends
//! unfinished keeps its partial for the next attempt. Locks block removal while held; a
//! lock dropped without `unlock` (the holder died) can leave a retention time during which
//! removal still fails, as git-annex's retention timestamp does. The clock is a counter the
//! owner sets, so `GETTIMESTAMP`/`REMOVE-BEFORE` are deterministic.
//!
//! Used by the session tests, simulations and the node conformance suite.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    Caps, Content, ContentLock, LocationSink, NoLocations, Node, NodeError, PutSink, PutStart,
    Removed, Stored, Validity,
};
use crate::types::backend::{Verdict, Verifier};
use crate::types::{AssociatedFile, Key, Uuid};

/// An in-memory node. Clones share the same store.
#[derive(Clone)]
pub struct MemNode {
    shared: Arc<Shared>,
}

struct Shared {
    uuid: Uuid,
    name: String,
    clock: AtomicU64,
    config: Config,
    locations: Arc<dyn LocationSink>,
    state: Mutex<Store>,
}

#[derive(Clone)]
struct Config {
    verify: bool,
    capacity: Option<u64>,
    retention: Option<u64>,
    caps: Caps,
}

#[derive(Default)]
struct Store {
    objects: HashMap<Key, Arc<[u8]>>,
    partial: HashMap<Key, Vec<u8>>,
    locks: HashMap<Key, usize>,
    /// Removal fails while the clock is below this (abandoned locks).
    retention: HashMap<Key, u64>,
    /// When set, every operation fails with this reason (an unreachable node).
    failing: Option<String>,
    /// Content bytes that may still move (uploads and downloads together) before the node
    /// starts failing with the reason given.
    fail_after: Option<(u64, String)>,
}

impl Store {
    fn used(&self) -> u64 {
        let objects: u64 = self.objects.values().map(|v| v.len() as u64).sum();
        let partial: u64 = self.partial.values().map(|v| v.len() as u64).sum();
        objects + partial
    }
}

impl std::fmt::Debug for MemNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemNode({} {})", self.shared.name, self.shared.uuid)
    }
}

impl MemNode {
    /// An empty node answering as `uuid`, with verification on, no size limit, no lock
    /// retention and the clock at 0.
    pub fn new(uuid: Uuid, name: impl Into<String>) -> MemNode {
        MemNode {
            shared: Arc::new(Shared {
                uuid,
                name: name.into(),
                clock: AtomicU64::new(0),
                config: Config {
                    verify: true,
                    capacity: None,
                    retention: None,
                    caps: Caps::default(),
                },
                locations: Arc::new(NoLocations),
                state: Mutex::new(Store::default()),
            }),
        }
    }

    fn rebuild(
        self,
        f: impl FnOnce(&mut Config),
        locations: Option<Arc<dyn LocationSink>>,
    ) -> Self {
        let s = &self.shared;
        let mut config = s.config.clone();
        f(&mut config);
        let store = std::mem::take(&mut *lock(&s.state));
        MemNode {
            shared: Arc::new(Shared {
                uuid: s.uuid.clone(),
                name: s.name.clone(),
                clock: AtomicU64::new(s.clock.load(Ordering::SeqCst)),
                config,
                locations: locations.unwrap_or_else(|| s.locations.clone()),
                state: Mutex::new(store),
            }),
        }
    }

    /// Report location changes (content stored / removed) here.
    pub fn with_locations(self, sink: Arc<dyn LocationSink>) -> Self {
        self.rebuild(|_| {}, Some(sink))
    }
    /// Check only sizes, not hashes (git-annex's `annex.verify=false`).
    pub fn with_verify(self, verify: bool) -> Self {
        self.rebuild(|c| c.verify = verify, None)
    }
    /// Hold at most this many bytes (content and partial uploads together).
    pub fn with_capacity(self, bytes: u64) -> Self {
        self.rebuild(|c| c.capacity = Some(bytes), None)
    }
    /// A lock dropped without unlocking keeps the content from removal for `secs` of
    /// the node's clock after it was taken (git-annex uses 600 s for P2P locks).
    pub fn with_lock_retention(self, secs: u64) -> Self {
        self.rebuild(|c| c.retention = Some(secs), None)
    }
    pub fn with_caps(self, caps: Caps) -> Self {
        self.rebuild(|c| c.caps = caps, None)
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.shared.state)
    }

    /// Put content in place directly (test set-up), unverified.
    pub fn insert(&self, key: Key, data: impl Into<Vec<u8>>) {
        let data: Vec<u8> = data.into();
        self.store().objects.insert(key, data.into());
    }
    /// Leave a partial upload, as an interrupted transfer would.
    pub fn insert_partial(&self, key: Key, data: impl Into<Vec<u8>>) {
        self.store().partial.insert(key, data.into());
    }
    /// The content of `key`, when present.
    pub fn content(&self, key: &Key) -> Option<Vec<u8>> {
        self.store().objects.get(key).map(|d| d.to_vec())
    }
    /// The partial upload kept for `key`, if any.
    pub fn partial(&self, key: &Key) -> Option<Vec<u8>> {
        self.store().partial.get(key).cloned()
    }
    /// Every key with content, sorted.
    pub fn keys(&self) -> Vec<Key> {
        let mut ks: Vec<Key> = self.store().objects.keys().cloned().collect();
        ks.sort();
        ks
    }
    /// How many locks are held on `key`.
    pub fn lock_count(&self, key: &Key) -> usize {
        self.store().locks.get(key).copied().unwrap_or(0)
    }
    /// Bytes held (content and partial uploads).
    pub fn used(&self) -> u64 {
        self.store().used()
    }
    /// Make every operation fail as if the node could not be reached (`None` heals it,
    /// and cancels a pending [`MemNode::fail_after`]).
    pub fn set_failing(&self, reason: Option<&str>) {
        let mut store = self.store();
        store.failing = reason.map(str::to_string);
        store.fail_after = None;
    }
    /// Let `bytes` more bytes of content move through the node (uploads and downloads
    /// together), then fail as [`MemNode::set_failing`] does: the transfer in progress
    /// breaks after exactly that many bytes.
    pub fn fail_after(&self, bytes: u64, reason: &str) {
        let mut store = self.store();
        if bytes == 0 {
            store.failing = Some(reason.to_string());
        } else {
            store.fail_after = Some((bytes, reason.to_string()));
        }
    }

    /// The node's clock (what `GETTIMESTAMP` answers).
    pub fn now(&self) -> u64 {
        self.shared.clock.load(Ordering::SeqCst)
    }
    pub fn set_time(&self, t: u64) {
        self.shared.clock.store(t, Ordering::SeqCst);
    }
    pub fn advance_time(&self, secs: u64) {
        self.shared.clock.fetch_add(secs, Ordering::SeqCst);
    }

    /// The error of a node that broke during a transfer ([`MemNode::fail_after`]).
    fn broken(&self) -> NodeError {
        let store = self.store();
        NodeError::Unreachable {
            node: self.shared.name.clone(),
            reason: store.failing.clone().unwrap_or_default(),
        }
    }

    fn check_reachable(&self, store: &Store) -> Result<(), NodeError> {
        match &store.failing {
            Some(reason) => Err(NodeError::Unreachable {
                node: self.shared.name.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

impl Store {
    /// How many of `want` content bytes may move now; when a [`MemNode::fail_after`]
    /// budget runs out, the node fails from then on.
    fn pass_bytes(&mut self, want: usize) -> usize {
        let Some((left, reason)) = self.fail_after.as_mut() else {
            return want;
        };
        let n = (*left).min(want as u64);
        *left -= n;
        if *left == 0 {
            self.failing = Some(std::mem::take(reason));
            self.fail_after = None;
        }
        n as usize
    }
}

fn lock(m: &Mutex<Store>) -> MutexGuard<'_, Store> {
    // A panic elsewhere while holding the lock leaves a usable store: every mutation
    // here is a single map operation.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn verification_error(key: &Key, verdict: Verdict) -> NodeError {
    let detail = match verdict {
        Verdict::Good => "ok".to_string(),
        Verdict::WrongSize { expected, got } => format!("expected {expected} bytes, got {got}"),
        Verdict::WrongHash { expected, got } => format!("expected hash {expected}, got {got}"),
    };
    NodeError::Verification {
        key: key.to_string(),
        detail,
    }
}

#[async_trait]
impl Node for MemNode {
    fn uuid(&self) -> &Uuid {
        &self.shared.uuid
    }
    fn name(&self) -> &str {
        &self.shared.name
    }
    fn caps(&self) -> Caps {
        self.shared.config.caps
    }

    async fn check_present(&self, key: &Key) -> Result<bool, NodeError> {
        let store = self.store();
        self.check_reachable(&store)?;
        Ok(store.objects.contains_key(key))
    }

    async fn lock_content(&self, key: &Key) -> Result<Option<Box<dyn ContentLock>>, NodeError> {
        let mut store = self.store();
        self.check_reachable(&store)?;
        if !self.shared.config.caps.lock || !store.objects.contains_key(key) {
            return Ok(None);
        }
        *store.locks.entry(key.clone()).or_insert(0) += 1;
        let retention = self.shared.config.retention.map(|secs| {
            let until = self.now().saturating_add(secs);
            let r = store.retention.entry(key.clone()).or_insert(0);
            *r = (*r).max(until);
            until
        });
        Ok(Some(Box::new(MemLock {
            node: self.clone(),
            key: key.clone(),
            retention,
            held: true,
        })))
    }

    async fn get(
        &self,
        key: &Key,
        offset: u64,
        _af: &AssociatedFile,
    ) -> Result<Option<Box<dyn Content>>, NodeError> {
        let store = self.store();
        self.check_reachable(&store)?;
        Ok(store.objects.get(key).map(|data| {
            let size = data.len() as u64;
            Box::new(MemContent {
                node: self.clone(),
                data: data.clone(),
                pos: offset.min(size) as usize,
            }) as Box<dyn Content>
        }))
    }

    async fn put(&self, key: &Key, _af: &AssociatedFile) -> Result<PutStart, NodeError> {
        let mut store = self.store();
        self.check_reachable(&store)?;
        if store.objects.contains_key(key) {
            return Ok(PutStart::AlreadyHave { plus: Vec::new() });
        }
        let mut have = store.partial.get(key).cloned().unwrap_or_default();
        let too_long = key.size().is_some_and(|s| have.len() as u64 > s);
        if too_long || !self.shared.config.caps.resume {
            // A partial longer than the content cannot be resumed from.
            store.partial.remove(key);
            have.clear();
        }
        let mut verifier = Verifier::new(key, self.shared.config.verify);
        verifier.update(&have);
        Ok(PutStart::Accept(Box::new(MemSink {
            node: self.clone(),
            key: key.clone(),
            offset: have.len() as u64,
            buf: Some(have),
            announced: None,
            verifier: Some(verifier),
        })))
    }

    async fn remove(&self, key: &Key, deadline: Option<u64>) -> Result<Removed, NodeError> {
        let mut store = self.store();
        self.check_reachable(&store)?;
        if !store.objects.contains_key(key) {
            // Not there: removed, as far as anyone can tell (git-annex: SUCCESS).
            return Ok(Removed {
                removed: true,
                ..Removed::default()
            });
        }
        let now = self.now();
        let locked = store.locks.get(key).copied().unwrap_or(0) > 0;
        let retained = store.retention.get(key).is_some_and(|&until| now < until);
        let late = deadline.is_some_and(|d| now >= d);
        if locked || retained || late {
            return Ok(Removed::default());
        }
        store.objects.remove(key);
        store.retention.remove(key);
        drop(store);
        self.shared.locations.record(key, &self.shared.uuid, false);
        Ok(Removed {
            removed: true,
            ..Removed::default()
        })
    }

    async fn timestamp(&self) -> Result<u64, NodeError> {
        let store = self.store();
        self.check_reachable(&store)?;
        Ok(self.now())
    }
}

struct MemLock {
    node: MemNode,
    key: Key,
    retention: Option<u64>,
    held: bool,
}

impl MemLock {
    fn release(&mut self, clean: bool) {
        if !self.held {
            return;
        }
        self.held = false;
        let mut store = self.node.store();
        if let Some(n) = store.locks.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                store.locks.remove(&self.key);
            }
        }
        // A clean unlock withdraws the retention this lock set (unless a later lock
        // extended it); an abandoned lock leaves it in force.
        if clean {
            if let Some(mine) = self.retention {
                if store.retention.get(&self.key) == Some(&mine) {
                    store.retention.remove(&self.key);
                }
            }
        }
    }
}

#[async_trait]
impl ContentLock for MemLock {
    async fn unlock(mut self: Box<Self>) -> Result<(), NodeError> {
        self.release(true);
        Ok(())
    }
}

impl Drop for MemLock {
    fn drop(&mut self) {
        self.release(false);
    }
}

struct MemContent {
    node: MemNode,
    data: Arc<[u8]>,
    pos: usize,
}

#[async_trait]
impl Content for MemContent {
    fn len(&self) -> u64 {
        (self.data.len() - self.pos) as u64
    }
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NodeError> {
        let rest = &self.data[self.pos..];
        let want = rest.len().min(buf.len());
        let n = {
            let mut store = self.node.store();
            self.node.check_reachable(&store)?;
            store.pass_bytes(want)
        };
        if n == 0 && want > 0 {
            return Err(self.node.broken());
        }
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
    async fn validity(&mut self) -> Result<Validity, NodeError> {
        // Stored content never changes in place.
        Ok(Validity::Valid)
    }
    async fn done(self: Box<Self>, _receiver_ok: bool) -> Result<(), NodeError> {
        Ok(())
    }
}

struct MemSink {
    node: MemNode,
    key: Key,
    offset: u64,
    /// The partial upload so far; `None` once handed back to the store.
    buf: Option<Vec<u8>>,
    announced: Option<u64>,
    verifier: Option<Verifier>,
}

impl MemSink {
    fn keep_partial(&mut self) {
        if let Some(buf) = self.buf.take() {
            let mut store = self.node.store();
            if buf.is_empty() {
                store.partial.remove(&self.key);
            } else {
                store.partial.insert(self.key.clone(), buf);
            }
        }
    }

    fn store_verified(&mut self, incremental: bool) -> Result<Stored, NodeError> {
        let buf = self.buf.take().unwrap_or_default();
        let verdict = match self.verifier.take() {
            Some(v) if incremental => v.finish(&self.key),
            _ => {
                // Validity unknown: check every byte again from the start.
                let mut v = Verifier::new(&self.key, self.node.shared.config.verify);
                v.update(&buf);
                v.finish(&self.key)
            }
        };
        let mut store = self.node.store();
        if verdict != Verdict::Good {
            // As git-annex: content that fails verification is deleted, partial and all.
            store.partial.remove(&self.key);
            return Err(verification_error(&self.key, verdict));
        }
        store.partial.remove(&self.key);
        store.objects.insert(self.key.clone(), buf.into());
        drop(store);
        self.node
            .shared
            .locations
            .record(&self.key, &self.node.shared.uuid, true);
        Ok(Stored {
            stored: true,
            plus: Vec::new(),
        })
    }
}

#[async_trait]
impl PutSink for MemSink {
    fn offset(&self) -> u64 {
        self.offset
    }

    async fn begin(&mut self, len: u64) -> Result<(), NodeError> {
        let store = self.node.store();
        self.node.check_reachable(&store)?;
        if let Some(cap) = self.node.shared.config.capacity {
            let available = cap.saturating_sub(store.used());
            if len > available {
                return Err(NodeError::Full {
                    node: self.node.shared.name.clone(),
                    needed: len,
                    available,
                });
            }
        }
        self.announced = Some(len);
        Ok(())
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), NodeError> {
        let (Some(buf), Some(announced)) = (self.buf.as_mut(), self.announced) else {
            return Err(NodeError::Protocol {
                node: self.node.shared.name.clone(),
                detail: "write before begin".into(),
            });
        };
        if buf.len() as u64 + data.len() as u64 > self.offset + announced {
            return Err(NodeError::Protocol {
                node: self.node.shared.name.clone(),
                detail: format!("more than the {announced} announced bytes"),
            });
        }
        let n = {
            let mut store = self.node.store();
            self.node.check_reachable(&store)?;
            store.pass_bytes(data.len())
        };
        buf.extend_from_slice(&data[..n]);
        if let Some(v) = self.verifier.as_mut() {
            v.update(&data[..n]);
        }
        if n < data.len() {
            // The node broke in the middle of this write.
            return Err(self.node.broken());
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>, validity: Validity) -> Result<Stored, NodeError> {
        let got = self.buf.as_ref().map_or(0, |b| b.len() as u64);
        let want = self.offset + self.announced.unwrap_or(0);
        if got != want {
            self.keep_partial();
            return Err(NodeError::Verification {
                key: self.key.to_string(),
                detail: format!("received {got} bytes of {want}"),
            });
        }
        self.store_verified(validity == Validity::Valid)
    }

    async fn data_present(mut self: Box<Self>) -> Result<Stored, NodeError> {
        self.keep_partial();
        let present = self.node.store().objects.contains_key(&self.key);
        Ok(Stored {
            stored: present,
            plus: Vec::new(),
        })
    }

    async fn abort(mut self: Box<Self>) {
        self.keep_partial();
    }
}

impl Drop for MemSink {
    fn drop(&mut self) {
        // Dropped without finish/abort (the driver went away): keep what arrived.
        self.keep_partial();
    }
}

#[cfg(test)]
mod tests;
