//! One P2P connection as the client side sees it: a byte stream to a server (the pipes of a
//! `git-annex-shell p2pstdio` process, local or behind ssh, or any stream a
//! [`P2pDialer`] makes), the client session state, and the child process with the tail
//! of what it wrote on stderr.
//!
//! Every wait is bounded: a reply (or the next piece of a DATA payload) must arrive, and
//! every write must complete, within the time given, else the connection is broken. A
//! broken connection kills its process and is never used again; its errors carry the
//! process's exit status and last stderr lines.

use std::collections::VecDeque;
use std::io;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::endpoint::{P2pEndpoint, ProcessSpec, Transport};
use crate::conn::FdStream;
use crate::node::NodeError;
use crate::proto::p2p::{decode, DecodeError, Message, MAX_LINE};
use crate::session::client::{ClientError, ClientSession, Reply};
use crate::types::Uuid;

/// Size of a connection's input buffer (a whole protocol line must fit).
const INBUF: usize = 64 * 1024;
/// How much of a child's stderr is kept for error messages.
const STDERR_TAIL: usize = 4096;
/// How long a child that lost its connection gets to exit (and finish its stderr)
/// before its exit status is given up on.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// How long a child whose connection was closed cleanly gets to exit before it is killed.
const CLOSE_GRACE: Duration = Duration::from_secs(30);

/// A byte stream to a P2P server.
pub struct DialedStream {
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    pub writer: Box<dyn AsyncWrite + Send + Unpin>,
}

/// Makes connections to a P2P server that is not a process (a socket, an in-process
/// server in tests).
#[async_trait::async_trait]
pub trait P2pDialer: Send + Sync {
    async fn dial(&self) -> io::Result<DialedStream>;
}

/// The last bytes a child wrote on stderr.
#[derive(Default)]
struct Tail {
    bytes: VecDeque<u8>,
    /// Bytes of the current, unfinished line (for logging whole lines).
    line: Vec<u8>,
}

impl Tail {
    fn push(&mut self, data: &[u8], label: &str) {
        for &b in data {
            if self.bytes.len() == STDERR_TAIL {
                self.bytes.pop_front();
            }
            self.bytes.push_back(b);
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.line);
                tracing::info!("{label}: {line}");
                self.line.clear();
            } else if self.line.len() < 1024 {
                self.line.push(b);
            }
        }
    }
    fn text(&self) -> String {
        let (a, b) = self.bytes.as_slices();
        let mut v = a.to_vec();
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).trim().replace('\n', " / ")
    }
}

struct Proc {
    child: tokio::process::Child,
    /// What to call the program in messages.
    program: String,
    ssh: bool,
    stderr: Arc<Mutex<Tail>>,
    stderr_task: Option<JoinHandle<()>>,
}

impl Proc {
    /// Wait a little for the child to end by itself, then kill it; returns how it ended
    /// and what it said on stderr.
    async fn finish(&mut self, grace: Duration) -> (Option<std::process::ExitStatus>, String) {
        let status = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(st)) => Some(st),
            _ => {
                let _ = self.child.start_kill();
                let _ = tokio::time::timeout(EXIT_GRACE, self.child.wait()).await;
                None
            }
        };
        if let Some(t) = self.stderr_task.take() {
            // stderr ends when the child (and anything it started) closes it.
            let _ = tokio::time::timeout(EXIT_GRACE, t).await;
        }
        let text = self.stderr.lock().map(|t| t.text()).unwrap_or_default();
        (status, text)
    }
}

/// How a failed connection failed, for the retry decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lost {
    /// Nothing is known to be wrong.
    No,
    /// The far side went away (end of stream, broken pipe): a reused connection may just
    /// have been closed while idle.
    Hangup,
    /// Anything else: timeout, garbage, a protocol violation.
    Fault,
}

/// One connection.
pub(crate) struct Conn {
    /// The node's name, for messages.
    label: Arc<str>,
    reader: Option<Box<dyn AsyncRead + Send + Unpin>>,
    writer: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    pub session: ClientSession,
    proc: Option<Proc>,
    /// Out of step or dead: never reuse.
    pub broken: bool,
    pub lost: Lost,
    /// Dedicated to a held content lock.
    pub locked: bool,
    /// The idle timeout for replies and writes.
    pub timeout: Duration,
}

fn spawn(spec: &ProcessSpec) -> io::Result<(DialedStream, Proc)> {
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args);
    if spec.env_clear {
        cmd.env_clear();
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    for k in &spec.env_remove {
        cmd.env_remove(k);
    }
    if let Some(d) = &spec.current_dir {
        cmd.current_dir(d);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Killing is decided by the connection (see Drop for Conn).
        .kill_on_drop(false);
    let mut child = cmd.spawn()?;
    let missing = || io::Error::other("child pipes missing");
    let stdin = child.stdin.take().ok_or_else(missing)?;
    let stdout = child.stdout.take().ok_or_else(missing)?;
    let stderr = child.stderr.take().ok_or_else(missing)?;
    // Raw descriptors driven by the reactor, with enlarged pipe buffers.
    let writer = FdStream::new(stdin.into_owned_fd()?, true)?;
    let reader = FdStream::new(stdout.into_owned_fd()?, false)?;
    let program = std::path::Path::new(&spec.program)
        .file_name()
        .unwrap_or(spec.program.as_os_str())
        .to_string_lossy()
        .into_owned();
    let tail = Arc::new(Mutex::new(Tail::default()));
    let sink = tail.clone();
    let label = format!("{program} (pid {})", child.id().unwrap_or(0));
    let stderr_task = tokio::spawn(async move {
        let mut stderr = stderr;
        let mut chunk = [0u8; 4096];
        loop {
            match stderr.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Ok(mut t) = sink.lock() {
                        t.push(&chunk[..n], &label);
                    }
                }
            }
        }
    });
    Ok((
        DialedStream {
            reader: Box::new(reader),
            writer: Box::new(writer),
        },
        Proc {
            child,
            program,
            ssh: spec.ssh,
            stderr: tail,
            stderr_task: Some(stderr_task),
        },
    ))
}

/// What a finished connection attempt tells about the far side.
pub(crate) struct Opened {
    pub conn: Conn,
    pub version: u8,
}

impl Conn {
    /// Open a connection: start the process (or dial), read the greeting, check that the
    /// server is the repository `expected`, negotiate the version (offering
    /// `max_version`), send the `BYPASS` list when there is one and the server takes it.
    pub(crate) async fn open(
        label: Arc<str>,
        endpoint: &P2pEndpoint,
        expected: &Uuid,
        max_version: u8,
        bypass: &[Uuid],
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Opened, NodeError> {
        let unreachable = |reason: String| NodeError::Unreachable {
            node: label.to_string(),
            reason,
        };
        let (stream, proc) = match &endpoint.transport {
            Transport::Process(spec) => {
                let (s, p) = spawn(spec).map_err(|e| {
                    unreachable(format!(
                        "cannot run {}: {e}",
                        spec.program.to_string_lossy()
                    ))
                })?;
                (s, Some(p))
            }
            Transport::Dial(d) => (
                d.dial()
                    .await
                    .map_err(|e| unreachable(format!("cannot connect: {e}")))?,
                None,
            ),
        };
        let mut conn = Conn {
            label,
            reader: Some(stream.reader),
            writer: Some(stream.writer),
            buf: vec![0; INBUF],
            start: 0,
            end: 0,
            session: ClientSession::new(max_version),
            proc,
            broken: false,
            lost: Lost::No,
            locked: false,
            timeout,
        };
        match conn.handshake(expected, bypass, connect_timeout).await {
            Ok(version) => Ok(Opened { conn, version }),
            Err(e) => Err(conn.connect_failed(e).await),
        }
    }

    async fn handshake(
        &mut self,
        expected: &Uuid,
        bypass: &[Uuid],
        connect_timeout: Duration,
    ) -> Result<u8, NodeError> {
        match self.reply(connect_timeout).await? {
            Ok(Reply::Greeted(u)) if &u == expected => {}
            Ok(Reply::Greeted(u)) => {
                return Err(self
                    .fail(format!("the server is repository {u}, expected {expected}"))
                    .await)
            }
            Ok(other) => return Err(self.fail(format!("unexpected greeting {other:?}")).await),
            Err(text) => return Err(self.fail(format!("greeting: ERROR {text}")).await),
        }
        let m = self.session.negotiate();
        self.send(&m).await?;
        let version = match self.reply(self.timeout).await? {
            Ok(Reply::Versioned(v)) => v,
            Ok(other) => return Err(self.fail(format!("unexpected {other:?}")).await),
            Err(text) => return Err(self.fail(format!("VERSION: ERROR {text}")).await),
        };
        if let Some(m) = self.session.bypass(bypass) {
            self.send(&m).await?;
        }
        Ok(version)
    }

    /// A failed connection attempt: ssh's exit status 255 (cannot reach the host) and a
    /// process that ended without a greeting make the node unreachable.
    async fn connect_failed(&mut self, e: NodeError) -> NodeError {
        match e {
            NodeError::Protocol { node, detail } if self.lost == Lost::Hangup => {
                NodeError::Unreachable {
                    node,
                    reason: detail,
                }
            }
            e => e,
        }
    }

    pub(crate) fn version(&self) -> u8 {
        self.session.version()
    }

    /// Whether an idle pooled connection still looks usable: its process runs and it sent
    /// nothing unasked (an end of stream shows up as readable).
    pub(crate) async fn healthy(&mut self) -> bool {
        if self.broken || self.locked || self.session.is_busy() || self.start != self.end {
            return false;
        }
        if let Some(p) = self.proc.as_mut() {
            if !matches!(p.child.try_wait(), Ok(None)) {
                return false;
            }
        }
        let Some(reader) = self.reader.as_mut() else {
            return false;
        };
        // Poll the stream once: nothing ready is the healthy answer.
        let mut probe = [0u8; 1];
        tokio::time::timeout(Duration::ZERO, reader.read(&mut probe))
            .await
            .is_err()
    }

    /// Mark the connection broken and build the error for `detail`, with how the process
    /// ended and its last stderr lines.
    pub(crate) async fn fail(&mut self, detail: impl Into<String>) -> NodeError {
        let mut detail = detail.into();
        if self.lost == Lost::No {
            self.lost = Lost::Fault;
        }
        self.broken = true;
        // Closing our ends first lets a process waiting for input exit.
        self.writer = None;
        self.reader = None;
        let mut unreachable = false;
        if let Some(p) = self.proc.as_mut() {
            let grace = if self.lost == Lost::Hangup {
                EXIT_GRACE
            } else {
                Duration::ZERO
            };
            let (status, stderr) = p.finish(grace).await;
            match status.and_then(|s| s.code()) {
                Some(code) => {
                    detail.push_str(&format!("; {} exited with status {code}", p.program));
                    unreachable = p.ssh && code == 255;
                }
                None => detail.push_str(&format!("; {} was stopped", p.program)),
            }
            if !stderr.is_empty() {
                detail.push_str(&format!(": {stderr}"));
            }
        }
        let node = self.label.to_string();
        if unreachable {
            NodeError::Unreachable {
                node,
                reason: detail,
            }
        } else {
            NodeError::Protocol { node, detail }
        }
    }

    async fn timed_out(&mut self, wait: Duration, doing: &str) -> NodeError {
        self.lost = Lost::Fault;
        let e = self.fail(format!("no answer while {doing}")).await;
        tracing::warn!("{e}");
        NodeError::Timeout {
            node: self.label.to_string(),
            secs: wait.as_secs_f64().ceil() as u64,
        }
    }

    /// Read more bytes into the buffer; an end of stream is an error.
    async fn fill(&mut self, wait: Duration) -> Result<(), NodeError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let Some(reader) = self.reader.as_mut() else {
            return Err(self.fail("connection already closed").await);
        };
        match tokio::time::timeout(wait, reader.read(&mut self.buf[self.end..])).await {
            Err(_) => Err(self.timed_out(wait, "waiting for a reply").await),
            Ok(Ok(0)) => {
                self.lost = Lost::Hangup;
                Err(self.fail("connection closed by the server").await)
            }
            Ok(Ok(n)) => {
                self.end += n;
                Ok(())
            }
            Ok(Err(e)) => {
                self.lost = Lost::Hangup;
                Err(self.fail(format!("reading from the server: {e}")).await)
            }
        }
    }

    /// The next message from the server.
    pub(crate) async fn recv(&mut self, wait: Duration) -> Result<Message, NodeError> {
        loop {
            match decode(&self.buf[self.start..self.end]) {
                Ok(Some((m, used))) => {
                    self.start += used;
                    tracing::trace!("P2P {} < {m}", self.label);
                    return Ok(m);
                }
                Ok(None) => {}
                Err(DecodeError::Unparsable { error, consumed }) => {
                    let line = &self.buf[self.start..self.start + consumed - 1];
                    let line = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
                    self.start += consumed;
                    return Err(self
                        .fail(format!("unparsable reply {line:?} ({error})"))
                        .await);
                }
                Err(DecodeError::LineTooLong) => {
                    return Err(self
                        .fail(format!("reply line longer than {} bytes", MAX_LINE - 1))
                        .await)
                }
            }
            self.fill(wait).await?;
        }
    }

    /// The next server message, as the client session reads it: `Ok(Ok(reply))`, or
    /// `Ok(Err(text))` for an `ERROR text` in place of a result (the connection stays
    /// usable). A message that does not fit breaks the connection (after git-annex's
    /// farewell `ERROR`).
    pub(crate) async fn reply(
        &mut self,
        wait: Duration,
    ) -> Result<Result<Reply, String>, NodeError> {
        let m = self.recv(wait).await?;
        match self.session.handle(m) {
            Ok(r) => Ok(Ok(r)),
            Err(ClientError::Server(text)) => Ok(Err(text)),
            Err(e) => {
                if let Some(bye) = e.farewell() {
                    let _ = self.send(&bye).await;
                }
                Err(self.fail(e.to_string()).await)
            }
        }
    }

    /// Write a message.
    pub(crate) async fn send(&mut self, m: &Message) -> Result<(), NodeError> {
        tracing::trace!("P2P {} > {m}", self.label);
        let bytes = m.to_bytes();
        self.write(&bytes).await
    }

    /// Write raw bytes (a DATA payload).
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> Result<(), NodeError> {
        let wait = self.timeout;
        let Some(w) = self.writer.as_mut() else {
            return Err(self.fail("connection already closed").await);
        };
        let r = tokio::time::timeout(wait, async {
            w.write_all(bytes).await?;
            w.flush().await
        })
        .await;
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.lost = Lost::Hangup;
                Err(self.fail(format!("writing to the server: {e}")).await)
            }
            Err(_) => Err(self.timed_out(wait, "sending").await),
        }
    }

    /// Read up to `out.len()` payload bytes (at least one); an end of stream is an error.
    pub(crate) async fn read_payload(&mut self, out: &mut [u8]) -> Result<usize, NodeError> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.start < self.end {
            let n = out.len().min(self.end - self.start);
            out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
            self.start += n;
            return Ok(n);
        }
        let wait = self.timeout;
        let Some(reader) = self.reader.as_mut() else {
            return Err(self.fail("connection already closed").await);
        };
        match tokio::time::timeout(wait, reader.read(out)).await {
            Err(_) => Err(self.timed_out(wait, "receiving DATA").await),
            Ok(Ok(0)) => {
                self.lost = Lost::Hangup;
                Err(self
                    .fail("connection closed by the server inside DATA")
                    .await)
            }
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => {
                self.lost = Lost::Hangup;
                Err(self
                    .fail(format!("reading DATA from the server: {e}"))
                    .await)
            }
        }
    }

    /// Whether the connection can serve another request.
    pub(crate) fn reusable(&self) -> bool {
        !self.broken && !self.locked && !self.session.is_busy()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Closing both pipes ends a healthy server (end of input) and one that is still
        // writing (broken pipe). A broken connection's process is killed at once.
        self.writer = None;
        self.reader = None;
        // (A connection that failed had its process stopped by `fail` already; one given
        // up early gets the grace period, so a server can keep what it received.)
        let Some(mut p) = self.proc.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move {
                    let (status, _) = p.finish(CLOSE_GRACE).await;
                    if status.is_none() {
                        tracing::debug!("{} did not exit after its connection closed", p.program);
                    }
                });
            }
            Err(_) => {
                // No runtime to wait in: the process must not outlive us unnoticed.
                let _ = p.child.start_kill();
            }
        }
    }
}
