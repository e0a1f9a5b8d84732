//! `Unavailable`: a node that cannot be reached at all (its repository is gone, its
//! remote is misconfigured). Every request fails with the reason it could not be set up.
//!
//! A gateway puts one in a cluster in place of a member it cannot build, so the cluster
//! treats that member as failing rather than as absent: uploads go to the others, reads
//! come from the others, and a removal is not reported done while the member may still
//! hold the content.

use async_trait::async_trait;

use super::{Caps, Content, ContentLock, Node, NodeError, PutStart, Removed};
use crate::types::{AssociatedFile, Key, Uuid};

/// A node whose every request fails with [`NodeError::Unreachable`].
#[derive(Debug, Clone)]
pub struct Unavailable {
    uuid: Uuid,
    name: String,
    reason: String,
}

impl Unavailable {
    /// The node `name` (answering as `uuid`) is unusable because of `reason`.
    pub fn new(uuid: Uuid, name: impl Into<String>, reason: impl Into<String>) -> Unavailable {
        Unavailable {
            uuid,
            name: name.into(),
            reason: reason.into(),
        }
    }

    fn error(&self) -> NodeError {
        NodeError::Unreachable {
            node: self.name.clone(),
            reason: self.reason.clone(),
        }
    }
}

#[async_trait]
impl Node for Unavailable {
    fn uuid(&self) -> &Uuid {
        &self.uuid
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn caps(&self) -> Caps {
        Caps {
            lock: false,
            remove_before: false,
            resume: false,
        }
    }
    async fn check_present(&self, _key: &Key) -> Result<bool, NodeError> {
        Err(self.error())
    }
    async fn lock_content(&self, _key: &Key) -> Result<Option<Box<dyn ContentLock>>, NodeError> {
        Err(self.error())
    }
    async fn get(
        &self,
        _key: &Key,
        _offset: u64,
        _af: &AssociatedFile,
    ) -> Result<Option<Box<dyn Content>>, NodeError> {
        Err(self.error())
    }
    async fn put(&self, _key: &Key, _af: &AssociatedFile) -> Result<PutStart, NodeError> {
        Err(self.error())
    }
    async fn remove(&self, _key: &Key, _deadline: Option<u64>) -> Result<Removed, NodeError> {
        Err(self.error())
    }
    async fn timestamp(&self) -> Result<u64, NodeError> {
        Err(self.error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_request_fails_with_the_reason() {
        let n = Unavailable::new(Uuid::new_random(), "node2", "its repository is gone");
        let key = Key::from_str("WORM-s1--x").unwrap();
        let af = AssociatedFile::new("x");
        let text = |e: NodeError| e.to_string();
        assert_eq!(
            text(n.check_present(&key).await.unwrap_err()),
            "node2: cannot connect: its repository is gone"
        );
        assert!(n.put(&key, &af).await.is_err());
        assert!(n.get(&key, 0, &af).await.is_err());
        assert!(n.remove(&key, None).await.is_err());
        assert!(n.timestamp().await.is_err());
        assert!(n.lock_content(&key).await.is_err());
        assert!(!n.caps().lock);
    }
}
