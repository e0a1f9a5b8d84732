//! An in-memory [`ChunkLog`], for tests and for serving a remote without a git-annex
//! branch at hand. It keeps the latest count per (remote, key, chunk size), as the
//! branch's chunk log does after a merge.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::node::ChunkLog;
use crate::types::{Key, Uuid};

#[derive(Debug, Default)]
pub struct MemoryChunkLog {
    entries: Mutex<BTreeMap<(Uuid, Key, u64), u64>>,
}

impl MemoryChunkLog {
    pub fn new() -> MemoryChunkLog {
        MemoryChunkLog::default()
    }
}

impl ChunkLog for MemoryChunkLog {
    fn chunks(&self, remote: &Uuid, key: &Key) -> Vec<(u64, u64)> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|((u, k, _), _)| u == remote && k == key)
            .map(|((_, _, size), count)| (*size, *count))
            .collect()
    }

    fn record_chunks(&self, remote: &Uuid, key: &Key, chunk_size: u64, count: u64) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((remote.clone(), key.clone(), chunk_size), count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_count_per_chunk_size() {
        let log = MemoryChunkLog::new();
        let u = Uuid::parse("u1").unwrap();
        let v = Uuid::parse("u2").unwrap();
        let k = Key::from_str("WORM-s5-m1--a").unwrap();
        assert!(log.chunks(&u, &k).is_empty());
        log.record_chunks(&u, &k, 1024, 3);
        log.record_chunks(&u, &k, 512, 5);
        log.record_chunks(&v, &k, 1024, 1);
        log.record_chunks(&u, &k, 1024, 0);
        assert_eq!(log.chunks(&u, &k), vec![(512, 5), (1024, 0)]);
        assert_eq!(log.chunks(&v, &k), vec![(1024, 1)]);
    }
}
