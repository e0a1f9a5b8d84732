//! What a cluster learns from its gateway: which repositories the location log lists
//! for a key ([`LocationView`]) and which members' preferred content wants a key
//! ([`Wanting`]). The gateway implements them over its git-annex branch; closures do
//! too. [`MemLocations`] is an in-memory location log for tests and simulations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::lock;
use crate::node::LocationSink;
use crate::placement::{Engine, KeyInfo};
use crate::types::{AssociatedFile, Key, Uuid};

/// The gateway's location log, read.
pub trait LocationView: Send + Sync {
    /// The repositories the location log lists as holding `key` (any repositories; the
    /// cluster looks only at its members).
    fn present(&self, key: &Key) -> Vec<Uuid>;
}

impl<F> LocationView for F
where
    F: Fn(&Key) -> Vec<Uuid> + Send + Sync,
{
    fn present(&self, key: &Key) -> Vec<Uuid> {
        self(key)
    }
}

/// Preferred content, as a cluster upload needs it.
pub trait Wanting: Send + Sync {
    /// Those of `candidates` whose preferred content wants `key` with associated file
    /// `af`; a repository without preferred content wants everything. `present` is
    /// every repository believed to hold the key now (the location log with the
    /// cluster's own changes applied).
    fn wanting(
        &self,
        key: &Key,
        af: &AssociatedFile,
        present: &[Uuid],
        candidates: &[Uuid],
    ) -> Vec<Uuid>;
}

impl<F> Wanting for F
where
    F: Fn(&Key, &AssociatedFile, &[Uuid], &[Uuid]) -> Vec<Uuid> + Send + Sync,
{
    fn wanting(
        &self,
        key: &Key,
        af: &AssociatedFile,
        present: &[Uuid],
        candidates: &[Uuid],
    ) -> Vec<Uuid> {
        self(key, af, present, candidates)
    }
}

/// Every member wants everything (no preferred content anywhere).
#[derive(Debug, Clone, Copy, Default)]
pub struct EveryoneWants;

impl Wanting for EveryoneWants {
    fn wanting(&self, _: &Key, _: &AssociatedFile, _: &[Uuid], candidates: &[Uuid]) -> Vec<Uuid> {
        candidates.to_vec()
    }
}

/// Preferred content decided by a [`placement::Engine`](crate::placement::Engine), as
/// its `plan_store` does: a candidate wants the key when its expression matches (or it
/// has none). `facts` gives the key's other facts (metadata, URLs, `.gitattributes`);
/// its locations are replaced by what the cluster believes.
pub struct EnginePlacement<F> {
    engine: Arc<Engine>,
    facts: F,
}

impl<F> EnginePlacement<F>
where
    F: Fn(&Key) -> KeyInfo + Send + Sync,
{
    pub fn new(engine: Arc<Engine>, facts: F) -> Self {
        EnginePlacement { engine, facts }
    }
}

impl EnginePlacement<fn(&Key) -> KeyInfo> {
    /// An engine over keys of which nothing is known but where they are.
    pub fn locations_only(engine: Arc<Engine>) -> Self {
        fn bare(key: &Key) -> KeyInfo {
            KeyInfo::new(key.clone(), Vec::new())
        }
        EnginePlacement {
            engine,
            facts: bare,
        }
    }
}

impl<F> Wanting for EnginePlacement<F>
where
    F: Fn(&Key) -> KeyInfo + Send + Sync,
{
    fn wanting(
        &self,
        key: &Key,
        af: &AssociatedFile,
        present: &[Uuid],
        candidates: &[Uuid],
    ) -> Vec<Uuid> {
        let mut info = (self.facts)(key);
        info.locations = present.to_vec();
        let plan = self.engine.plan_store(&info, af.path(), candidates, true);
        match plan.fallback {
            crate::placement::StoreFallback::None => plan.targets,
            // Nobody wants it (the cluster falls back on its own).
            _ => Vec::new(),
        }
    }
}

/// An in-memory location log: a [`LocationView`] that is also the [`LocationSink`] the
/// cluster records into.
#[derive(Debug, Default)]
pub struct MemLocations {
    keys: Mutex<HashMap<Key, Vec<Uuid>>>,
}

impl MemLocations {
    pub fn new() -> MemLocations {
        MemLocations::default()
    }
    /// Say that exactly `uuids` hold `key`.
    pub fn set(&self, key: &Key, uuids: &[Uuid]) {
        lock(&self.keys).insert(key.clone(), uuids.to_vec());
    }
    /// Who holds `key`, in the order they were recorded.
    pub fn get(&self, key: &Key) -> Vec<Uuid> {
        lock(&self.keys).get(key).cloned().unwrap_or_default()
    }
}

impl LocationView for MemLocations {
    fn present(&self, key: &Key) -> Vec<Uuid> {
        self.get(key)
    }
}

impl LocationSink for MemLocations {
    fn record(&self, key: &Key, uuid: &Uuid, present: bool) {
        let mut keys = lock(&self.keys);
        let v = keys.entry(key.clone()).or_default();
        v.retain(|u| u != uuid);
        if present {
            v.push(uuid.clone());
        }
    }
}
