//! A cluster download: from one member at a time, failing over to the next member that
//! holds the key, at the offset reached, when one breaks.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Busy, Inner};
use crate::node::{Content, NodeError, Validity};
use crate::types::{AssociatedFile, Key};

/// Open the download from the best member holding `key`.
pub(super) async fn start(
    inner: Arc<Inner>,
    key: &Key,
    offset: u64,
    af: &AssociatedFile,
) -> Result<Option<Box<dyn Content>>, super::NodeError> {
    let mut left = inner.holders(key);
    let mut first_error = None;
    match open_next(&inner, key, offset, af, &mut left, None, &mut first_error).await {
        Some((member, content, busy)) => {
            let len = content.len();
            Ok(Some(Box::new(ClusterContent {
                inner,
                key: key.clone(),
                af: af.clone(),
                left,
                member,
                content,
                _busy: busy,
                pos: offset,
                end: offset.saturating_add(len),
                len,
                validity: Validity::Valid,
            })))
        }
        None => match first_error {
            Some(e) => Err(e),
            None => Ok(None),
        },
    }
}

/// Open the download at `pos` on the best of the members in `left` (removing every one
/// tried). With `len`, the member must offer exactly that many bytes from `pos` (a
/// replacement for a broken member). Errors go to `first_error`.
async fn open_next(
    inner: &Inner,
    key: &Key,
    pos: u64,
    af: &AssociatedFile,
    left: &mut Vec<usize>,
    len: Option<u64>,
    first_error: &mut Option<NodeError>,
) -> Option<(usize, Box<dyn Content>, Busy)> {
    while let Some(i) = inner.choose(left) {
        left.retain(|&j| j != i);
        let busy = inner.busy(i);
        match inner.members[i].m.node.get(key, pos, af).await {
            Ok(Some(c)) => match len {
                Some(want) if c.len() != want => {
                    tracing::warn!(
                        "cluster {}: {} offers {} bytes of {key} from {pos}, not {want}; skipped",
                        inner.name,
                        inner.member_name(i),
                        c.len()
                    );
                    if let Err(e) = c.done(false).await {
                        tracing::debug!("closing a skipped download: {e}");
                    }
                }
                _ => return Some((i, c, busy)),
            },
            Ok(None) => {
                tracing::info!(
                    "cluster {}: {} lacks {key}, unlike the location log says",
                    inner.name,
                    inner.member_name(i)
                );
                inner.seen_lacking(key, inner.members[i].m.uuid());
            }
            Err(e) => {
                tracing::warn!(
                    "cluster {}: GET {key} from {}: {e}",
                    inner.name,
                    inner.member_name(i)
                );
                first_error.get_or_insert(e);
            }
        }
    }
    None
}

struct ClusterContent {
    inner: Arc<Inner>,
    key: Key,
    af: AssociatedFile,
    /// Members holding the key not tried yet.
    left: Vec<usize>,
    member: usize,
    content: Box<dyn Content>,
    _busy: Busy,
    /// Offset of the next byte, and of the end.
    pos: u64,
    end: u64,
    len: u64,
    /// What the segments so far said of their bytes.
    validity: Validity,
}

impl ClusterContent {
    /// The current member broke with `e`: go on from the next one, or give up with `e`.
    async fn fail_over(&mut self, e: NodeError) -> Result<(), NodeError> {
        let inner = self.inner.clone();
        tracing::warn!(
            "cluster {}: download of {} from {} broke at byte {}: {e}",
            inner.name,
            self.key,
            inner.member_name(self.member),
            self.pos
        );
        let mut ignored = None;
        let want = self.end - self.pos;
        let next = open_next(
            &inner,
            &self.key,
            self.pos,
            &self.af,
            &mut self.left,
            Some(want),
            &mut ignored,
        )
        .await;
        let Some((member, content, busy)) = next else {
            return Err(e);
        };
        tracing::info!(
            "cluster {}: download of {} continues from {}",
            inner.name,
            self.key,
            inner.member_name(member)
        );
        let old = std::mem::replace(&mut self.content, content);
        if let Err(e) = old.done(false).await {
            tracing::debug!("closing a broken download: {e}");
        }
        self.member = member;
        self._busy = busy;
        // The broken member never vouched for the bytes it sent: the receiver must
        // check them all.
        self.validity = Validity::Invalid;
        Ok(())
    }
}

#[async_trait]
impl Content for ClusterContent {
    fn len(&self) -> u64 {
        self.len
    }

    fn local_file(&self) -> Option<(&std::fs::File, u64)> {
        // Zero-copy from a local member; such a member cannot break midway in a way a
        // fail-over could mend (a short file is a changed file).
        self.content.local_file()
    }

    fn advance(&mut self, n: u64) {
        self.content.advance(n);
        self.pos = self.pos.saturating_add(n).min(self.end);
    }

    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NodeError> {
        let room = (self.end - self.pos).min(buf.len() as u64) as usize;
        if room == 0 {
            return Ok(0);
        }
        loop {
            let e = match self.content.read(&mut buf[..room]).await {
                Ok(0) => NodeError::Protocol {
                    node: self.inner.member_name(self.member).to_string(),
                    detail: format!(
                        "content of {} ended at byte {} of {}",
                        self.key, self.pos, self.end
                    ),
                },
                Ok(n) => {
                    self.pos += n as u64;
                    return Ok(n);
                }
                Err(e) => e,
            };
            self.fail_over(e).await?;
        }
    }

    async fn validity(&mut self) -> Result<Validity, NodeError> {
        let last = self.content.validity().await?;
        Ok(match (self.validity, last) {
            (Validity::Invalid, _) | (_, Validity::Invalid) => Validity::Invalid,
            (Validity::Unknown, _) | (_, Validity::Unknown) => Validity::Unknown,
            _ => Validity::Valid,
        })
    }

    async fn done(self: Box<Self>, receiver_ok: bool) -> Result<(), NodeError> {
        self.content.done(receiver_ok).await
    }
}
