//! Sending content (GET): the object file read from an offset. Whether it stayed unchanged
//! while read is judged like git-annex's inode cache: device, inode, size and mtime of the
//! path before and after must match (an unlocked or thin file can change in place; a
//! drop or re-add replaces the inode). The reading itself is
//! [`crate::node::localfs::FileContent`].

use super::paths::checked_key_file;
use super::Inner;
use crate::node::localfs::FileContent;
use crate::node::{Content, NodeError};
use crate::types::Key;

/// Open the key's content for reading from `offset`; `None` when absent.
pub(super) fn open(
    inner: &Inner,
    key: &Key,
    offset: u64,
) -> Result<Option<Box<dyn Content>>, NodeError> {
    let kf = checked_key_file(key, 0)?;
    let candidates = inner.layout.object_candidates(key, &kf);
    Ok(
        FileContent::open_first(&candidates, offset, &inner.node_name())?
            .map(|c| Box::new(c) as Box<dyn Content>),
    )
}
