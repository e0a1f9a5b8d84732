//! The loop that runs a server session over a reader, a writer and a node.

use std::future::poll_fn;
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::{ConnError, NodeFactory, Output, ServeOptions, ServeOutcome};
use crate::node::{Content, ContentLock, Node, NodeError, PutSink, PutStart};
use crate::proto::p2p::{decode, DecodeError, MAX_LINE};
use crate::session::server::{
    Action, Call, DataDest, End, Input, PutReply, Refusal, Release, Reply, ServerSession,
};

/// GETs at least this long go out with `sendfile` when they can.
const ZERO_COPY_MIN: u64 = 64 * 1024;
/// The most one `sendfile` call is asked to move.
const SEND_FILE_CHUNK: u64 = 1 << 30;

/// What the driver holds on the session's behalf.
#[derive(Default)]
pub(crate) struct Held {
    pub node: Option<Arc<dyn Node>>,
    pub content: Option<Box<dyn Content>>,
    pub sink: Option<Box<dyn PutSink>>,
    pub lock: Option<Box<dyn ContentLock>>,
}

fn missing(what: &str) -> NodeError {
    NodeError::Protocol {
        node: "session".into(),
        detail: format!("no {what} is open"),
    }
}

/// Run one node operation for the session, keeping what it opens.
pub(crate) async fn run_call(held: &mut Held, call: Call) -> Result<Reply, NodeError> {
    let node = || held.node.clone().ok_or_else(|| missing("node"));
    match call {
        Call::CheckPresent(key) => node()?.check_present(&key).await.map(Reply::Present),
        Call::Lock(key) => {
            let lock = node()?.lock_content(&key).await?;
            let locked = lock.is_some();
            held.lock = lock;
            Ok(Reply::Locked(locked))
        }
        Call::Remove { key, deadline } => node()?.remove(&key, deadline).await.map(Reply::Removed),
        Call::Timestamp => node()?.timestamp().await.map(Reply::Timestamp),
        Call::Get { key, offset, af } => {
            let content = node()?.get(&key, offset, &af).await?;
            let len = content.as_ref().map(|c| c.len());
            held.content = content;
            Ok(Reply::Content(len))
        }
        Call::Put { key, af } => match node()?.put(&key, &af).await? {
            PutStart::AlreadyHave { plus } => Ok(Reply::Put(PutReply::AlreadyHave { plus })),
            PutStart::Accept(sink) => {
                let offset = sink.offset();
                held.sink = Some(sink);
                Ok(Reply::Put(PutReply::Accept { offset }))
            }
        },
        Call::Validity => {
            let content = held.content.as_mut().ok_or_else(|| missing("download"))?;
            content.validity().await.map(Reply::Validity)
        }
        Call::Finish(validity) => {
            let sink = held.sink.take().ok_or_else(|| missing("upload"))?;
            sink.finish(validity).await.map(Reply::Stored)
        }
        Call::DataPresent => {
            let sink = held.sink.take().ok_or_else(|| missing("upload"))?;
            sink.data_present().await.map(Reply::Stored)
        }
    }
}

/// Give up a held object as the session says.
pub(crate) async fn release(held: &mut Held, r: Release) {
    match r {
        Release::Unlock => {
            if let Some(lock) = held.lock.take() {
                if let Err(e) = lock.unlock().await {
                    tracing::warn!("releasing a content lock: {e}");
                }
            }
        }
        Release::AbortSink => {
            if let Some(sink) = held.sink.take() {
                sink.abort().await;
            }
        }
        Release::ContentDone { receiver_ok } => {
            if let Some(content) = held.content.take() {
                if let Err(e) = content.done(receiver_ok).await {
                    tracing::warn!("closing a download: {e}");
                }
            }
        }
    }
}

impl Held {
    /// At the end of a session: let go of everything still open.
    pub(crate) async fn release_all(&mut self) {
        release(self, Release::AbortSink).await;
        release(self, Release::Unlock).await;
        release(self, Release::ContentDone { receiver_ok: false }).await;
    }
}

/// Why the loop stopped early.
enum Stop {
    /// The client is gone (broken pipe, reset): a clean end.
    ClientGone,
    Io(ConnError),
}

fn client_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::WriteZero
    )
}

fn write_failed(e: io::Error) -> Stop {
    if client_gone(&e) {
        tracing::debug!("client gone while writing: {e}");
        Stop::ClientGone
    } else {
        Stop::Io(ConnError::Io {
            op: "write to the client",
            source: e,
        })
    }
}

pub(crate) struct Driver<R, W, F> {
    reader: R,
    writer: W,
    factory: F,
    session: ServerSession,
    held: Held,
    buffer_size: usize,
    /// Client bytes read but not yet used: `inbuf[start..end]`.
    inbuf: Vec<u8>,
    start: usize,
    end: usize,
    client_eof: bool,
    /// Replies not yet written.
    outbuf: Vec<u8>,
    /// Payload buffers, made on first use.
    spare: Vec<u8>,
    spare2: Vec<u8>,
}

impl<R, W, F> Driver<R, W, F>
where
    R: AsyncRead + Unpin + Send,
    W: Output,
    F: NodeFactory,
{
    pub(crate) fn new(reader: R, writer: W, options: ServeOptions, factory: F) -> Self {
        // A whole protocol line must fit in the input buffer.
        let buffer_size = options.buffer_size.max(64 * 1024).max(MAX_LINE + 1);
        Driver {
            reader,
            writer,
            factory,
            session: ServerSession::new(options.config),
            held: Held::default(),
            buffer_size,
            inbuf: vec![0; buffer_size],
            start: 0,
            end: 0,
            client_eof: false,
            outbuf: Vec::with_capacity(4096),
            spare: Vec::new(),
            spare2: Vec::new(),
        }
    }

    pub(crate) async fn run(mut self) -> Result<ServeOutcome, ConnError> {
        let r = self.serve().await;
        self.held.release_all().await;
        let end = match r {
            Ok(end) => end,
            Err(Stop::ClientGone) => End::Clean,
            Err(Stop::Io(e)) => return Err(e),
        };
        Ok(ServeOutcome {
            end,
            version: self.session.version(),
            bypass: self.session.bypass().to_vec(),
            client_uuid: self.session.client_uuid().cloned(),
        })
    }

    async fn serve(&mut self) -> Result<End, Stop> {
        loop {
            while let Some(action) = self.session.poll_action() {
                match action {
                    Action::Send(m) => {
                        tracing::trace!("P2P > {m}");
                        m.encode(&mut self.outbuf);
                        if self.outbuf.len() >= self.buffer_size {
                            self.flush().await?;
                        }
                    }
                    Action::Refused(r) => match r {
                        Refusal::ClientError(_) => tracing::info!("{r}"),
                        r => tracing::warn!("{r}"),
                    },
                    Action::CreateNode { version, bypass } => {
                        self.flush().await?;
                        let r = self.factory.create(version, &bypass).await;
                        let r = r.map(|node| self.held.node = Some(node));
                        self.session.handle(Input::NodeCreated(r));
                    }
                    Action::Call(call) => {
                        // Replies go out before a node call that may take a while; the
                        // validity check after a download is quick, so a small download's
                        // DATA, bytes and VALID leave in one write.
                        if !matches!(call, Call::Validity) {
                            self.flush().await?;
                        }
                        let r = run_call(&mut self.held, call).await;
                        self.session.handle(Input::Reply(r));
                    }
                    Action::Release(r) => release(&mut self.held, r).await,
                    Action::Receive { len, dest } => self.receive(len, dest).await?,
                    Action::Transmit { len } => self.transmit(len).await?,
                    Action::Close(end) => {
                        if let End::Failed(f) = &end {
                            tracing::error!("session failed: {f}");
                        }
                        match self.flush().await {
                            Ok(()) | Err(Stop::ClientGone) => {}
                            Err(e) => return Err(e),
                        }
                        return Ok(end);
                    }
                }
            }
            let input = self.next_input().await?;
            self.session.handle(input);
        }
    }

    async fn flush(&mut self) -> Result<(), Stop> {
        if self.outbuf.is_empty() {
            return Ok(());
        }
        let r = self.writer.write_all(&self.outbuf).await;
        self.outbuf.clear();
        r.map_err(write_failed)?;
        self.writer.flush().await.map_err(write_failed)
    }

    /// Read from the client into `buf`; 0 at the end (errors count as the end).
    async fn read_client(reader: &mut R, buf: &mut [u8]) -> usize {
        loop {
            match reader.read(buf).await {
                Ok(n) => return n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if !client_gone(&e) {
                        tracing::warn!("reading from the client: {e}");
                    }
                    return 0;
                }
            }
        }
    }

    async fn next_input(&mut self) -> Result<Input, Stop> {
        loop {
            match decode(&self.inbuf[self.start..self.end]) {
                Ok(Some((m, used))) => {
                    self.start += used;
                    tracing::trace!("P2P < {m}");
                    return Ok(Input::Message(m));
                }
                Err(DecodeError::Unparsable { error, consumed }) => {
                    self.start += consumed;
                    return Ok(Input::Unparsable(error));
                }
                Err(DecodeError::LineTooLong) => return Ok(Input::LineTooLong),
                Ok(None) => {}
            }
            if self.client_eof {
                return Ok(Input::Eof);
            }
            self.flush().await?;
            if self.start > 0 {
                self.inbuf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = Self::read_client(&mut self.reader, &mut self.inbuf[self.end..]).await;
            if n == 0 {
                self.client_eof = true;
            }
            self.end += n;
        }
    }

    /// Move `len` DATA bytes from the client to the sink (or nowhere).
    async fn receive(&mut self, len: u64, dest: DataDest) -> Result<(), Stop> {
        let to_sink = dest == DataDest::Sink;
        if to_sink {
            let r = match self.held.sink.as_mut() {
                Some(sink) => sink.begin(len).await,
                None => Err(missing("upload")),
            };
            if let Err(e) = r {
                self.session.handle(Input::TransferFailed(e));
                return Ok(());
            }
        }
        let mut remaining = len;
        // First what is already buffered.
        let take = remaining.min((self.end - self.start) as u64) as usize;
        if take > 0 {
            if let Some(sink) = self.held.sink.as_mut().filter(|_| to_sink) {
                if let Err(e) = sink.write(&self.inbuf[self.start..self.start + take]).await {
                    self.session.handle(Input::TransferFailed(e));
                    return Ok(());
                }
            }
            self.start += take;
            remaining -= take as u64;
            self.session.handle(Input::Moved(take as u64));
        }
        if remaining == 0 {
            return Ok(());
        }
        if self.client_eof {
            self.session.handle(Input::Eof);
            return Ok(());
        }
        self.flush().await?;
        // Then straight from the client: read the next chunk while the sink takes the
        // last one. The input buffer is empty now, so it serves as one of the two.
        self.start = 0;
        self.end = 0;
        let mut cur = std::mem::take(&mut self.inbuf);
        let mut next = std::mem::take(&mut self.spare);
        next.resize(self.buffer_size, 0);
        let cap = cur.len() as u64;
        let outcome = {
            let reader = &mut self.reader;
            let session = &mut self.session;
            let mut sink = self.held.sink.as_mut().filter(|_| to_sink);
            let want = remaining.min(cap) as usize;
            let mut have = Self::read_client(reader, &mut cur[..want]).await;
            remaining -= have as u64;
            loop {
                if have == 0 {
                    break Some(Input::Eof);
                }
                let want = remaining.min(cap) as usize;
                let write = async {
                    match sink.as_mut() {
                        Some(s) => s.write(&cur[..have]).await,
                        None => Ok(()),
                    }
                };
                let read = async {
                    if want == 0 {
                        0
                    } else {
                        Self::read_client(reader, &mut next[..want]).await
                    }
                };
                let (written, got) = tokio::join!(write, read);
                if let Err(e) = written {
                    break Some(Input::TransferFailed(e));
                }
                session.handle(Input::Moved(have as u64));
                remaining -= got as u64;
                if want == 0 {
                    break None;
                }
                std::mem::swap(&mut cur, &mut next);
                have = got;
            }
        };
        self.inbuf = cur;
        self.spare = next;
        if self.inbuf.len() < self.buffer_size {
            // (the two buffers may have swapped; both are buffer_size long)
            self.inbuf.resize(self.buffer_size, 0);
        }
        if let Some(input) = outcome {
            if matches!(input, Input::Eof) {
                self.client_eof = true;
            }
            self.session.handle(input);
        }
        Ok(())
    }

    /// Move `len` bytes of the open download to the client.
    async fn transmit(&mut self, len: u64) -> Result<(), Stop> {
        let mut moved = 0u64;
        if len >= ZERO_COPY_MIN && self.writer.can_send_file() {
            let local = self
                .held
                .content
                .as_ref()
                .and_then(|c| c.local_file())
                .and_then(|(f, off)| f.try_clone().ok().map(|f| (f, off)));
            if let Some((file, offset)) = local {
                self.flush().await?;
                while moved < len {
                    let chunk = (len - moved).min(SEND_FILE_CHUNK) as usize;
                    let r = poll_fn(|cx| {
                        self.writer
                            .poll_send_file(cx, file.as_fd(), offset + moved, chunk)
                    })
                    .await;
                    match r {
                        Ok(0) => {
                            let e = short_content(moved, len);
                            self.session.handle(Input::TransferFailed(e));
                            return Ok(());
                        }
                        Ok(n) => {
                            moved += n as u64;
                            if let Some(c) = self.held.content.as_mut() {
                                c.advance(n as u64);
                            }
                            self.session.handle(Input::Moved(n as u64));
                        }
                        Err(e) if moved == 0 && !client_gone(&e) => {
                            // sendfile cannot do this pair; copy instead.
                            tracing::debug!("sendfile unavailable ({e}); copying");
                            break;
                        }
                        Err(e) => return Err(write_failed(e)),
                    }
                }
                if moved == len {
                    return Ok(());
                }
            }
        }
        self.copy_out(len - moved).await
    }

    /// Transmit by reading the content into buffers.
    async fn copy_out(&mut self, len: u64) -> Result<(), Stop> {
        let small = len < self.buffer_size as u64;
        if !small {
            self.flush().await?;
        }
        let Some(content) = self.held.content.as_mut() else {
            self.session
                .handle(Input::TransferFailed(missing("download")));
            return Ok(());
        };
        if small {
            // Small: into the reply buffer, so header, bytes and VALID leave together.
            let at = self.outbuf.len();
            self.outbuf.resize(at + len as usize, 0);
            let mut got = 0usize;
            while got < len as usize {
                match content.read(&mut self.outbuf[at + got..]).await {
                    Ok(0) => {
                        self.outbuf.truncate(at);
                        self.session
                            .handle(Input::TransferFailed(short_content(got as u64, len)));
                        return Ok(());
                    }
                    Ok(n) => got += n,
                    Err(e) => {
                        self.outbuf.truncate(at);
                        self.session.handle(Input::TransferFailed(e));
                        return Ok(());
                    }
                }
            }
            self.session.handle(Input::Moved(len));
            return Ok(());
        }
        // Large: read the next chunk while the previous one is written.
        let mut cur = std::mem::take(&mut self.spare);
        let mut next = std::mem::take(&mut self.spare2);
        cur.resize(self.buffer_size, 0);
        next.resize(self.buffer_size, 0);
        let cap = cur.len() as u64;
        let mut remaining = len;
        let result: Result<Option<NodeError>, Stop> = async {
            let writer = &mut self.writer;
            let session = &mut self.session;
            let want = remaining.min(cap) as usize;
            let mut have = match read_full(content.as_mut(), &mut cur[..want]).await {
                Ok(n) => n,
                Err(e) => return Ok(Some(e)),
            };
            loop {
                if have == 0 {
                    return Ok(Some(short_content(len - remaining, len)));
                }
                remaining -= have as u64;
                let want = remaining.min(cap) as usize;
                let write = writer.write_all(&cur[..have]);
                let read = async {
                    if want == 0 {
                        Ok(0)
                    } else {
                        read_full(content.as_mut(), &mut next[..want]).await
                    }
                };
                let (written, got) = tokio::join!(write, read);
                written.map_err(write_failed)?;
                session.handle(Input::Moved(have as u64));
                if want == 0 {
                    return Ok(None);
                }
                match got {
                    Ok(n) => have = n,
                    Err(e) => return Ok(Some(e)),
                }
                std::mem::swap(&mut cur, &mut next);
            }
        }
        .await;
        self.spare = cur;
        self.spare2 = next;
        if let Some(e) = result? {
            self.session.handle(Input::TransferFailed(e));
        }
        self.writer.flush().await.map_err(write_failed)
    }
}

/// Fill `buf` from the content unless it ends first; returns how much was read.
async fn read_full(content: &mut dyn Content, buf: &mut [u8]) -> Result<usize, NodeError> {
    let mut got = 0;
    while got < buf.len() {
        match content.read(&mut buf[got..]).await? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

fn short_content(moved: u64, len: u64) -> NodeError {
    NodeError::Io {
        op: "read content",
        path: Default::default(),
        source: io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("content ended after {moved} of {len} bytes"),
        ),
    }
}
