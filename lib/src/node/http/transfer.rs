//! The open objects of an HTTP node: a download streaming a response body, an upload
//! streaming a request body, and a lock held by a `keeplocked` request whose body stays
//! open.
//!
//! Bodies are signalled the p2phttp way: a download body shorter (or longer) than its
//! `X-git-annex-data-length` means the content changed while sent; an upload marked
//! invalid is sent one byte short, so the last chunk is held back until the sender says
//! what it was.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{HeaderValue, CONNECTION, CONTENT_TYPE};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Endpoint, Shared};
use crate::node::{Content, ContentLock, NodeError, PutSink, Stored, Validity};
use crate::types::{AssociatedFile, Key};

/// Leftover download bytes read and thrown away (to keep the connection) when a download
/// is closed early; more than this and the connection is closed instead.
const DRAIN_MAX: u64 = 1024 * 1024;

/// Chunks of an upload queued ahead of the connection.
const QUEUE: usize = 4;

/// A request body fed through a channel. The first chunk taken tells `first` (the
/// request is then on a connection, its head sent).
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
    first: Option<oneshot::Sender<()>>,
}

impl futures_core::Stream for ChannelBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(b)) => {
                if let Some(f) = self.first.take() {
                    let _ = f.send(());
                }
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A request whose body streams from a channel, sent by its own task; the task ends
/// with the answer's status and body.
struct Streaming {
    tx: Option<mpsc::Sender<Bytes>>,
    task: JoinHandle<Result<(reqwest::StatusCode, Bytes), reqwest::Error>>,
}

fn start_streaming(rb: reqwest::RequestBuilder, first: Option<oneshot::Sender<()>>) -> Streaming {
    let (tx, rx) = mpsc::channel(QUEUE);
    let body = reqwest::Body::wrap_stream(ChannelBody { rx, first });
    let rb = rb.body(body);
    let task = tokio::spawn(async move {
        let resp = rb.send().await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        Ok((status, body))
    });
    Streaming { tx: Some(tx), task }
}

impl Streaming {
    /// The answer, once the body is closed (waiting at most `wait`).
    async fn answer(
        &mut self,
        shared: &Shared,
        wait: std::time::Duration,
    ) -> Result<(reqwest::StatusCode, Bytes), NodeError> {
        self.tx = None;
        match tokio::time::timeout(wait, &mut self.task).await {
            Err(_) => {
                self.task.abort();
                Err(NodeError::Timeout {
                    node: shared.cfg.name.clone(),
                    secs: wait.as_secs(),
                })
            }
            Ok(Err(e)) => Err(shared.protocol_error(format!("request task failed: {e}"))),
            Ok(Ok(Err(e))) => Err(shared.transport_error(&e, false)),
            Ok(Ok(Ok(a))) => Ok(a),
        }
    }
}

// ---- downloads ----

/// A GET in progress: `len` bytes announced.
pub(crate) struct HttpContent {
    shared: Arc<Shared>,
    resp: Option<reqwest::Response>,
    len: u64,
    /// Bytes handed to the reader (padding included).
    delivered: u64,
    /// Bytes the body had.
    received: u64,
    pending: Bytes,
    ended: bool,
}

impl HttpContent {
    pub(crate) fn new(shared: Arc<Shared>, resp: reqwest::Response, len: u64) -> HttpContent {
        HttpContent {
            shared,
            resp: Some(resp),
            len,
            delivered: 0,
            received: 0,
            pending: Bytes::new(),
            ended: false,
        }
    }

    /// Present content with no bytes from the offset.
    pub(crate) fn empty(shared: Arc<Shared>) -> HttpContent {
        HttpContent {
            shared,
            resp: None,
            len: 0,
            delivered: 0,
            received: 0,
            pending: Bytes::new(),
            ended: true,
        }
    }

    /// The next piece of the body into `pending`, or the end.
    async fn next_chunk(&mut self) -> Result<(), NodeError> {
        let Some(resp) = self.resp.as_mut() else {
            self.ended = true;
            return Ok(());
        };
        match tokio::time::timeout(self.shared.cfg.timeout, resp.chunk()).await {
            Err(_) => Err(self.shared.timeout_error()),
            Ok(Err(e)) => Err(self.shared.transport_error(&e, false)),
            Ok(Ok(None)) => {
                self.ended = true;
                self.resp = None;
                Ok(())
            }
            Ok(Ok(Some(c))) => {
                self.received += c.len() as u64;
                self.pending = c;
                Ok(())
            }
        }
    }
}

#[async_trait]
impl Content for HttpContent {
    fn len(&self) -> u64 {
        self.len
    }

    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NodeError> {
        loop {
            let left = self.len - self.delivered;
            if left == 0 || buf.is_empty() {
                return Ok(0);
            }
            let room = buf.len().min(left.min(usize::MAX as u64) as usize);
            if !self.pending.is_empty() {
                let n = room.min(self.pending.len());
                buf[..n].copy_from_slice(&self.pending[..n]);
                let _ = self.pending.split_to(n);
                self.delivered += n as u64;
                return Ok(n);
            }
            if self.ended {
                // The body ended short: the server says the content changed while it
                // was sent. The announced length is made up with zeros, and the
                // download reports itself invalid.
                buf[..room].fill(0);
                self.delivered += room as u64;
                return Ok(room);
            }
            self.next_chunk().await?;
        }
    }

    async fn validity(&mut self) -> Result<Validity, NodeError> {
        if self.delivered < self.len {
            return Err(self.shared.protocol_error(format!(
                "validity asked with {} of {} bytes unread",
                self.len - self.delivered,
                self.len
            )));
        }
        // Whatever follows the announced bytes counts too.
        while !self.ended && self.pending.is_empty() {
            self.next_chunk().await?;
        }
        Ok(if self.received == self.len && self.pending.is_empty() {
            Validity::Valid
        } else {
            Validity::Invalid
        })
    }

    async fn done(mut self: Box<Self>, _receiver_ok: bool) -> Result<(), NodeError> {
        // Read what is left when it is little, so the connection can be reused; else
        // dropping the response closes it.
        if self.len - self.delivered + self.pending.len() as u64 <= DRAIN_MAX {
            self.pending = Bytes::new();
            let mut drained = 0u64;
            while !self.ended && drained <= DRAIN_MAX {
                if self.next_chunk().await.is_err() {
                    break;
                }
                drained += self.pending.len() as u64;
                self.pending = Bytes::new();
            }
        }
        Ok(())
    }
}

// ---- uploads ----

enum SinkState {
    /// Nothing sent yet.
    Idle,
    /// The put request is under way.
    Sending {
        req: Streaming,
        announced: u64,
        sent: u64,
        /// The last chunk written, not yet sent (an invalid upload is sent one byte
        /// short).
        held: Option<Bytes>,
    },
    Closed,
}

/// An upload the server offered (`putoffset`).
pub(crate) struct HttpSink {
    shared: Arc<Shared>,
    version: u8,
    key: Key,
    af: AssociatedFile,
    offset: u64,
    state: SinkState,
}

impl HttpSink {
    pub(crate) fn new(
        shared: Arc<Shared>,
        version: u8,
        key: Key,
        af: AssociatedFile,
        offset: u64,
    ) -> HttpSink {
        HttpSink {
            shared,
            version,
            key,
            af,
            offset,
            state: SinkState::Idle,
        }
    }

    fn put_request(&self, len: u64, data_present: bool) -> reqwest::RequestBuilder {
        let off = self.offset.to_string();
        let mut extra: Vec<(&str, &[u8])> = Vec::new();
        if data_present {
            extra.push(("data-present", b"true"));
        }
        if let Some(p) = self.af.path() {
            extra.push(("associatedfile", p));
        }
        extra.push(("offset", off.as_bytes()));
        self.shared
            .request(Endpoint::Put, self.version, Some(&self.key), &extra)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header("X-git-annex-data-length", len.to_string())
    }

    /// Send a chunk, noticing a request that ended early.
    async fn send(&mut self, b: Bytes) -> Result<(), NodeError> {
        let SinkState::Sending { req, .. } = &mut self.state else {
            return Err(self.shared.protocol_error("upload data before its start"));
        };
        let Some(tx) = req.tx.as_ref() else {
            return Err(self.shared.protocol_error("upload data after its end"));
        };
        match tokio::time::timeout(self.shared.cfg.timeout, tx.send(b)).await {
            Err(_) => Err(self.shared.timeout_error()),
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => {
                // The request ended before its body did: its answer says why.
                let wait = self.shared.cfg.timeout;
                let shared = self.shared.clone();
                let (status, body) = req.answer(&shared, wait).await?;
                self.state = SinkState::Closed;
                Err(shared.status_error(status, &String::from_utf8_lossy(&body)))
            }
        }
    }

    /// The put's JSON answer.
    fn stored(&self, status: reqwest::StatusCode, body: &[u8]) -> Result<Stored, NodeError> {
        let s = &self.shared;
        if !status.is_success() {
            return Err(s.status_error(status, &String::from_utf8_lossy(body)));
        }
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            s.protocol_error(format!(
                "not a JSON answer to put ({e}): {:?}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        })?;
        let stored = s.field_bool(&v, "stored")?;
        let plus = s.plus(&v)?;
        if stored {
            s.record(&self.key, true, &plus, true);
        }
        Ok(Stored { stored, plus })
    }
}

#[async_trait]
impl PutSink for HttpSink {
    fn offset(&self) -> u64 {
        self.offset
    }

    async fn begin(&mut self, len: u64) -> Result<(), NodeError> {
        if !matches!(self.state, SinkState::Idle) {
            return Err(self.shared.protocol_error("upload begun twice"));
        }
        let rb = self.shared.with_kept_auth(self.put_request(len, false));
        self.state = SinkState::Sending {
            req: start_streaming(rb, None),
            announced: len,
            sent: 0,
            held: None,
        };
        Ok(())
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), NodeError> {
        let SinkState::Sending {
            announced,
            sent,
            held,
            ..
        } = &mut self.state
        else {
            return Err(self.shared.protocol_error("upload data before its start"));
        };
        if *sent + data.len() as u64 > *announced {
            return Err(self
                .shared
                .protocol_error(format!("more than the {announced} bytes announced")));
        }
        if data.is_empty() {
            return Ok(());
        }
        *sent += data.len() as u64;
        let previous = held.replace(Bytes::copy_from_slice(data));
        if let Some(p) = previous {
            self.send(p).await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>, validity: Validity) -> Result<Stored, NodeError> {
        let SinkState::Sending {
            announced,
            sent,
            held,
            ..
        } = &mut self.state
        else {
            return Err(self
                .shared
                .protocol_error("upload finished before its start"));
        };
        let (announced, sent) = (*announced, *sent);
        let held = held.take();
        if sent != announced {
            let e = self
                .shared
                .protocol_error(format!("upload ended after {sent} of {announced} bytes"));
            self.abort_inner(held).await;
            return Err(e);
        }
        if let Some(mut last) = held {
            if validity == Validity::Invalid {
                // One byte short tells the server the data is not to be trusted.
                last.truncate(last.len() - 1);
            }
            if !last.is_empty() {
                self.send(last).await?;
            }
        }
        let wait = self.shared.patience(Some(self.offset + announced));
        let shared = self.shared.clone();
        let SinkState::Sending { req, .. } = &mut self.state else {
            return Err(shared.protocol_error("upload closed early"));
        };
        let (status, body) = req.answer(&shared, wait).await?;
        self.state = SinkState::Closed;
        self.stored(status, &body)
    }

    async fn data_present(mut self: Box<Self>) -> Result<Stored, NodeError> {
        if !matches!(self.state, SinkState::Idle) {
            return Err(self.shared.protocol_error("data-present after data"));
        }
        self.state = SinkState::Closed;
        let s = self.shared.clone();
        if self.version < 4 {
            // No data-present before v4: ask whether the content is there now.
            let (_, resp) = s
                .call_simple(Endpoint::CheckPresent, Some(&self.key), &[])
                .await?;
            let j = s.json(resp, None).await?;
            let present = s.field_bool(&j, "present")?;
            if present {
                s.record(&self.key, true, &[], true);
            }
            return Ok(Stored {
                stored: present,
                plus: Vec::new(),
            });
        }
        let this = &*self;
        let make = |_v: u8| this.put_request(0, true);
        match s.call(Endpoint::Put, &make).await? {
            super::Answer::Ok(_, resp) => {
                let status = resp.status();
                let body =
                    match tokio::time::timeout(s.patience(self.key.size()), resp.bytes()).await {
                        Err(_) => return Err(s.timeout_error()),
                        Ok(Err(e)) => return Err(s.transport_error(&e, false)),
                        Ok(Ok(b)) => b,
                    };
                self.stored(status, &body)
            }
            super::Answer::NoVersion(line) => Err(NodeError::Remote {
                node: s.cfg.name.clone(),
                message: format!("put: {line}"),
            }),
        }
    }

    async fn abort(mut self: Box<Self>) {
        let held = match &mut self.state {
            SinkState::Sending { held, .. } => held.take(),
            _ => return,
        };
        self.abort_inner(held).await;
    }
}

impl HttpSink {
    /// End an upload early: every byte written goes out (the server keeps them for a
    /// resume), then the body ends short of its announced length, which the server takes
    /// as an unfinished upload.
    async fn abort_inner(&mut self, held: Option<Bytes>) {
        if let Some(b) = held {
            if self.send(b).await.is_err() {
                self.state = SinkState::Closed;
                return;
            }
        }
        let wait = self.shared.cfg.timeout;
        let shared = self.shared.clone();
        if let SinkState::Sending { req, .. } = &mut self.state {
            match req.answer(&shared, wait).await {
                Ok((status, body)) => tracing::debug!(
                    "{}: aborted upload answered {status}: {}",
                    shared.name(),
                    String::from_utf8_lossy(&body)
                ),
                Err(e) => tracing::debug!("{}: aborted upload: {e}", shared.name()),
            }
        }
        self.state = SinkState::Closed;
    }
}

// ---- locks ----

const KEEP_LOCKED: &[u8] = b"{\"unlock\":false}\n";
const UNLOCK: &[u8] = b"{\"unlock\":true}\n";

/// A content lock held by an open `keeplocked` request.
pub(crate) struct HttpLock {
    shared: Arc<Shared>,
    req: Option<Streaming>,
    /// Sends the keep-alive lines while the lock is held.
    keepalive: Option<JoinHandle<()>>,
}

/// Send `{"unlock":false}` every `every` while the body is open (the task holds only a
/// weak handle, so it never keeps the body open by itself).
fn keep_alive(tx: &mpsc::Sender<Bytes>, every: std::time::Duration) -> JoinHandle<()> {
    let weak = tx.downgrade();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(tx) = weak.upgrade() else { return };
            if tx.send(Bytes::from_static(KEEP_LOCKED)).await.is_err() {
                return;
            }
        }
    })
}

impl HttpLock {
    /// Start `keeplocked` for `lockid` and wait until the request is on its way.
    pub(crate) async fn hold(
        shared: Arc<Shared>,
        version: u8,
        key: Key,
        lockid: String,
    ) -> Result<HttpLock, NodeError> {
        let rb = shared
            .request(
                Endpoint::KeepLocked,
                version,
                None,
                &[("lockid", lockid.as_bytes())],
            )
            .header(CONTENT_TYPE, "application/json;charset=utf-8")
            .header(CONNECTION, HeaderValue::from_static("Keep-Alive"))
            .header("Keep-Alive", "timeout=1200");
        let rb = shared.with_kept_auth(rb);
        let (first_tx, first_rx) = oneshot::channel();
        let mut req = start_streaming(rb, Some(first_tx));
        if let Some(tx) = &req.tx {
            // The queue is empty: this cannot wait.
            let _ = tx.try_send(Bytes::from_static(KEEP_LOCKED));
        }
        match tokio::time::timeout(shared.cfg.timeout, first_rx).await {
            Ok(Ok(())) => {
                tracing::debug!("{}: holding a lock on {key}", shared.name());
                let keepalive = req
                    .tx
                    .as_ref()
                    .map(|tx| keep_alive(tx, shared.cfg.keepalive));
                Ok(HttpLock {
                    shared,
                    req: Some(req),
                    keepalive,
                })
            }
            // The body was dropped unread: the request failed.
            Ok(Err(_)) => Err(failed_lock(&shared, &mut req).await),
            Err(_) => {
                req.task.abort();
                Err(shared.timeout_error())
            }
        }
    }
}

/// Why a keeplocked request ended before holding the lock.
async fn failed_lock(shared: &Shared, req: &mut Streaming) -> NodeError {
    match req.answer(shared, shared.cfg.timeout).await {
        Ok((status, body)) if !status.is_success() => {
            shared.status_error(status, &String::from_utf8_lossy(&body))
        }
        Ok((_, body)) => shared.protocol_error(format!(
            "keeplocked ended at once: {}",
            String::from_utf8_lossy(&body)
        )),
        Err(e) => e,
    }
}

/// Send the unlock line, close the body and read the answer.
async fn release(shared: Arc<Shared>, mut req: Streaming) -> Result<(), NodeError> {
    if let Some(tx) = &req.tx {
        let _ = tokio::time::timeout(shared.cfg.timeout, tx.send(Bytes::from_static(UNLOCK))).await;
    }
    let (status, body) = req.answer(&shared, shared.cfg.timeout).await?;
    if !status.is_success() {
        return Err(shared.status_error(status, &String::from_utf8_lossy(&body)));
    }
    Ok(())
}

#[async_trait]
impl ContentLock for HttpLock {
    async fn unlock(mut self: Box<Self>) -> Result<(), NodeError> {
        if let Some(k) = self.keepalive.take() {
            k.abort();
        }
        match self.req.take() {
            Some(req) => release(self.shared.clone(), req).await,
            None => Ok(()),
        }
    }
}

impl Drop for HttpLock {
    fn drop(&mut self) {
        if let Some(k) = self.keepalive.take() {
            k.abort();
        }
        let Some(req) = self.req.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                let shared = self.shared.clone();
                h.spawn(async move {
                    if let Err(e) = release(shared, req).await {
                        tracing::warn!("releasing a dropped content lock: {e}");
                    }
                });
            }
            // No runtime: dropping the channel ends the body, which releases the lock.
            Err(_) => drop(req),
        }
    }
}
