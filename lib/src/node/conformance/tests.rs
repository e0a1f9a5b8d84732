//! The suite on the local nodes. (P2pNode runs it in `node::p2p`'s tests and in tests/it.)

use std::sync::{Arc, Mutex};

use super::*;
use crate::node::annexrepo::{AnnexRepo, AnnexRepoConfig};
use crate::node::directory::{Directory, DirectoryConfig, MemoryChunkLog};
use crate::node::memory::MemNode;
use crate::node::NoLocations;
use crate::types::Uuid;

fn uuid() -> Uuid {
    Uuid::new_random()
}

async fn check(fresh: &(dyn Fn() -> Arc<dyn Node> + Sync)) -> Report {
    let report = run(fresh, &Options::default()).await;
    match report.into_result() {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn memnode_conforms() {
    let r = check(&|| Arc::new(MemNode::new(uuid(), "mem")) as Arc<dyn Node>).await;
    assert_eq!(r.passed.len(), cases().len(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annexrepo_conforms() {
    let dirs = Mutex::new(Vec::new());
    let r = check(&|| {
        let tmp = tempfile::tempdir().unwrap();
        let git_dir = tmp.path().join("repo.git");
        std::fs::create_dir(&git_dir).unwrap();
        let mut cfg = AnnexRepoConfig::new(&git_dir, true, uuid());
        cfg.disk_reserve = 0;
        dirs.lock().unwrap().push(tmp);
        Arc::new(AnnexRepo::new(cfg, Arc::new(NoLocations))) as Arc<dyn Node>
    })
    .await;
    assert_eq!(r.passed.len(), cases().len(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_conforms() {
    let dirs = Mutex::new(Vec::new());
    let r = check(&|| {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = DirectoryConfig::new(tmp.path(), uuid(), "dir");
        cfg.disk_reserve = 0;
        dirs.lock().unwrap().push(tmp);
        Arc::new(Directory::new(
            cfg,
            Arc::new(NoLocations),
            Arc::new(MemoryChunkLog::new()),
        )) as Arc<dyn Node>
    })
    .await;
    // A directory cannot lock: the lock cases are skipped, everything else passes.
    assert!(r.skipped.iter().all(|(c, _)| c.contains("lock")), "{r:?}");
    assert_eq!(r.passed.len() + r.skipped.len(), cases().len(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_directory_conforms() {
    let dirs = Mutex::new(Vec::new());
    let r = check(&|| {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = DirectoryConfig::new(tmp.path(), uuid(), "dir");
        cfg.disk_reserve = 0;
        cfg.chunk = Some(64 * 1024);
        dirs.lock().unwrap().push(tmp);
        Arc::new(Directory::new(
            cfg,
            Arc::new(NoLocations),
            Arc::new(MemoryChunkLog::new()),
        )) as Arc<dyn Node>
    })
    .await;
    assert_eq!(r.passed.len() + r.skipped.len(), cases().len(), "{r:?}");
}

/// The suite catches a node that breaks the contract.
#[tokio::test]
async fn a_node_that_forgets_locks_fails() {
    let fresh = || {
        Arc::new(MemNode::new(uuid(), "mem").with_caps(crate::node::Caps {
            lock: true,
            remove_before: true,
            resume: true,
        }))
    };
    // A node whose locks do not hold: a wrapper that hands out no-op locks.
    struct Forgetful(MemNode);
    #[async_trait::async_trait]
    impl Node for Forgetful {
        fn uuid(&self) -> &Uuid {
            self.0.uuid()
        }
        fn name(&self) -> &str {
            "forgetful"
        }
        async fn check_present(&self, key: &Key) -> Result<bool, crate::node::NodeError> {
            self.0.check_present(key).await
        }
        async fn lock_content(
            &self,
            key: &Key,
        ) -> Result<Option<Box<dyn crate::node::ContentLock>>, crate::node::NodeError> {
            let lock = self.0.lock_content(key).await?;
            // Release at once, but claim to hold it.
            if let Some(l) = lock {
                l.unlock().await?;
                struct Fake;
                #[async_trait::async_trait]
                impl crate::node::ContentLock for Fake {
                    async fn unlock(self: Box<Self>) -> Result<(), crate::node::NodeError> {
                        Ok(())
                    }
                }
                return Ok(Some(Box::new(Fake)));
            }
            Ok(None)
        }
        async fn get(
            &self,
            key: &Key,
            offset: u64,
            af: &AssociatedFile,
        ) -> Result<Option<Box<dyn crate::node::Content>>, crate::node::NodeError> {
            self.0.get(key, offset, af).await
        }
        async fn put(
            &self,
            key: &Key,
            af: &AssociatedFile,
        ) -> Result<PutStart, crate::node::NodeError> {
            self.0.put(key, af).await
        }
        async fn remove(
            &self,
            key: &Key,
            deadline: Option<u64>,
        ) -> Result<crate::node::Removed, crate::node::NodeError> {
            self.0.remove(key, deadline).await
        }
        async fn timestamp(&self) -> Result<u64, crate::node::NodeError> {
            self.0.timestamp().await
        }
    }
    let report = run(
        &|| Arc::new(Forgetful((*fresh()).clone())) as Arc<dyn Node>,
        &Options::default(),
    )
    .await;
    let failed: Vec<&str> = report.failed.iter().map(|(c, _)| *c).collect();
    assert_eq!(
        failed,
        ["lock_blocks_removal", "lock_and_remove_concurrently"],
        "{report:?}"
    );
}
