//! The open objects of a P2P node: a download streaming the server's `DATA`, an upload
//! streaming into the server's `DATA`, and a held content lock. Each owns the connection
//! it runs on until it is finished.

use async_trait::async_trait;

use super::Lease;
use crate::node::{Content, ContentLock, NodeError, PutSink, Stored, Validity};
use crate::session::client::Reply;
use crate::types::Key;

/// Leftover download bytes read and thrown away (to keep the connection) when a download
/// is closed early; more than this and the connection is closed instead.
const DRAIN_MAX: u64 = 1024 * 1024;

/// A GET in progress: `len` bytes follow on the connection.
pub(crate) struct P2pContent {
    lease: Lease,
    len: u64,
    remaining: u64,
    validity: Option<Validity>,
}

impl P2pContent {
    pub(crate) fn new(lease: Lease, len: u64) -> P2pContent {
        P2pContent {
            lease,
            len,
            remaining: len,
            validity: None,
        }
    }

    async fn drain(&mut self) -> Result<(), NodeError> {
        let mut scratch = vec![0u8; 64 * 1024];
        while self.remaining > 0 {
            let want = scratch.len().min(self.remaining as usize);
            let n = self.lease.conn().read_payload(&mut scratch[..want]).await?;
            self.remaining -= n as u64;
        }
        Ok(())
    }
}

#[async_trait]
impl Content for P2pContent {
    fn len(&self) -> u64 {
        self.len
    }

    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NodeError> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.lease.conn().read_payload(&mut buf[..want]).await?;
        self.remaining -= n as u64;
        Ok(n)
    }

    async fn validity(&mut self) -> Result<Validity, NodeError> {
        if let Some(v) = self.validity {
            return Ok(v);
        }
        if self.remaining > 0 {
            let left = self.remaining;
            return Err(self
                .lease
                .conn()
                .fail(format!("validity asked with {left} bytes of DATA unread"))
                .await);
        }
        let v = if self.lease.version() == 0 {
            Validity::Unknown
        } else {
            let wait = self.lease.conn().timeout;
            match self.lease.conn().reply(wait).await? {
                Ok(Reply::Validity(v)) => v,
                Ok(other) => {
                    return Err(self
                        .lease
                        .conn()
                        .fail(format!("expected VALID or INVALID, got {other:?}"))
                        .await)
                }
                Err(text) => {
                    // The client session never takes ERROR here; keep the words anyway.
                    return Err(self
                        .lease
                        .conn()
                        .fail(format!("expected VALID or INVALID, got ERROR {text}"))
                        .await);
                }
            }
        };
        self.validity = Some(v);
        Ok(v)
    }

    async fn done(mut self: Box<Self>, receiver_ok: bool) -> Result<(), NodeError> {
        if self.remaining > DRAIN_MAX {
            // Closing is cheaper than reading the rest; the connection goes.
            self.lease.conn().broken = true;
            return Ok(());
        }
        self.drain().await?;
        if self.validity.is_none() {
            self.validity().await?;
        }
        let m = self.lease.conn().session.verdict(receiver_ok);
        self.lease.conn().send(&m).await
    }
}

/// A PUT the server accepted (`PUT-FROM offset`).
pub(crate) struct P2pSink {
    lease: Lease,
    key: Key,
    offset: u64,
    announced: Option<u64>,
    sent: u64,
}

impl P2pSink {
    pub(crate) fn new(lease: Lease, key: Key, offset: u64) -> P2pSink {
        P2pSink {
            lease,
            key,
            offset,
            announced: None,
            sent: 0,
        }
    }

    /// Read the upload's result.
    async fn result(&mut self, bytes: u64) -> Result<Stored, NodeError> {
        let wait = self.lease.shared.patience(Some(bytes));
        match self.lease.conn().reply(wait).await? {
            Ok(Reply::Stored(s)) => Ok(s),
            Ok(other) => Err(self
                .lease
                .conn()
                .fail(format!("unexpected reply to DATA: {other:?}"))
                .await),
            Err(text) => Err(self.lease.shared.remote_error(text)),
        }
    }

    fn record(&self, s: &Stored) {
        if s.stored {
            self.lease.shared.record(&self.key, true, &s.plus, true);
        }
    }

    /// End the exchange without data: `DATA 0` and (v1+) `INVALID`, which no server
    /// stores unless the partial it already has is the whole, verified content.
    async fn send_nothing(&mut self) -> Result<Stored, NodeError> {
        let conn = self.lease.conn();
        let m = conn.session.data(0);
        conn.send(&m).await?;
        if let Some(m) = conn.session.sent(Validity::Invalid) {
            conn.send(&m).await?;
        }
        self.announced = Some(0);
        self.result(0).await
    }
}

#[async_trait]
impl PutSink for P2pSink {
    fn offset(&self) -> u64 {
        self.offset
    }

    async fn begin(&mut self, len: u64) -> Result<(), NodeError> {
        if self.announced.is_some() {
            return Err(self.lease.conn().fail("DATA announced twice").await);
        }
        let conn = self.lease.conn();
        let m = conn.session.data(len);
        conn.send(&m).await?;
        self.announced = Some(len);
        Ok(())
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), NodeError> {
        let Some(announced) = self.announced else {
            return Err(self.lease.conn().fail("data before DATA").await);
        };
        if self.sent + data.len() as u64 > announced {
            return Err(self
                .lease
                .conn()
                .fail(format!("more than the {announced} bytes announced"))
                .await);
        }
        self.lease.conn().write(data).await?;
        self.sent += data.len() as u64;
        Ok(())
    }

    async fn finish(mut self: Box<Self>, validity: Validity) -> Result<Stored, NodeError> {
        let announced = self.announced.unwrap_or(0);
        if self.announced.is_none() || self.sent != announced {
            // The byte stream cannot be put back in step: the server sees the end of
            // its input and keeps what arrived for a resume.
            let sent = self.sent;
            return Err(self
                .lease
                .conn()
                .fail(format!("upload ended after {sent} of {announced} bytes"))
                .await);
        }
        let conn = self.lease.conn();
        if let Some(m) = conn.session.sent(validity) {
            conn.send(&m).await?;
        }
        let s = self.result(self.offset + announced).await?;
        self.record(&s);
        Ok(s)
    }

    async fn data_present(mut self: Box<Self>) -> Result<Stored, NodeError> {
        if self.announced.is_some() {
            return Err(self.lease.conn().fail("DATA-PRESENT after DATA").await);
        }
        let s = if self.lease.version() >= 4 {
            let name = self.lease.shared.cfg.name.clone();
            let conn = self.lease.conn();
            let m = conn
                .session
                .data_present()
                .map_err(|e| e.into_node_error(&name))?;
            conn.send(&m).await?;
            self.result(self.key.size().unwrap_or(0)).await?
        } else {
            // No DATA-PRESENT before v4: close the upload empty, then ask.
            self.send_nothing().await?;
            let wait = self.lease.conn().timeout;
            let conn = self.lease.conn();
            let m = conn.session.check_present(self.key.clone());
            conn.send(&m).await?;
            match conn.reply(wait).await? {
                Ok(Reply::Present(p)) => Stored {
                    stored: p,
                    plus: Vec::new(),
                },
                Ok(other) => {
                    return Err(conn
                        .fail(format!("unexpected reply to CHECKPRESENT: {other:?}"))
                        .await)
                }
                Err(text) => return Err(self.lease.shared.remote_error(text)),
            }
        };
        self.record(&s);
        Ok(s)
    }

    async fn abort(mut self: Box<Self>) {
        let cannot_complete = self.key.size().is_some_and(|s| self.offset < s);
        if self.announced.is_none() && cannot_complete {
            // Nothing sent yet: end the exchange empty and keep the connection.
            if let Err(e) = self.send_nothing().await {
                tracing::debug!("ending an aborted upload: {e}");
            }
        } else {
            // Mid-DATA (or an empty DATA could complete the content): close.
            self.lease.conn().broken = true;
        }
    }
}

/// A lock held by the server on a dedicated connection.
pub(crate) struct P2pLock {
    lease: Option<Lease>,
}

impl P2pLock {
    pub(crate) fn new(lease: Lease) -> P2pLock {
        P2pLock { lease: Some(lease) }
    }
}

async fn release(mut lease: Lease) -> Result<(), NodeError> {
    let conn = lease.conn();
    let m = conn.session.unlock();
    conn.send(&m).await?;
    conn.locked = false;
    Ok(())
}

#[async_trait]
impl ContentLock for P2pLock {
    async fn unlock(mut self: Box<Self>) -> Result<(), NodeError> {
        match self.lease.take() {
            Some(lease) => release(lease).await,
            None => Ok(()),
        }
    }
}

impl Drop for P2pLock {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move {
                    if let Err(e) = release(lease).await {
                        tracing::warn!("releasing a dropped content lock: {e}");
                    }
                });
            }
            // No runtime: the connection is closed (it is locked, so the lease will not
            // pool it), and the server drops the lock when its input ends.
            Err(_) => drop(lease),
        }
    }
}
