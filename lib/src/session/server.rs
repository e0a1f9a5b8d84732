//! The server side of the git-annex P2P protocol, as a state machine without I/O.
//!
//! The protocol (spec `p2p-protocol.md`): the server may first have to see `AUTH` (or, as
//! git-annex-shell does, announces `AUTH-SUCCESS <uuid>` at once); the client may send
//! `VERSION n` (answered `VERSION min(n, 4)`; a client that never does speaks v0) and,
//! from v2, a `BYPASS` list right after; then requests follow one at a time: CHECKPRESENT,
//! LOCKCONTENT (the next message must be UNLOCKCONTENT), REMOVE, REMOVE-BEFORE,
//! GETTIMESTAMP, GET (DATA + payload, VALID/INVALID from v1, then the client's verdict),
//! PUT (ALREADY-HAVE or PUT-FROM, the client's DATA + payload, VALID/INVALID from v1 or
//! DATA-PRESENT from v4, then the server's SUCCESS/FAILURE). Replies are git-annex's, byte
//! for byte, bad input included (`ERROR unknown command`, `ERROR unexpected command`,
//! `ERROR expected UNLOCKCONTENT`, …).
//!
//! How it is driven (quinn-proto style): feed [`Input`]s to [`ServerSession::handle`] and
//! carry out the [`Action`]s that [`ServerSession::poll_action`] hands out, in order, until
//! it has none; then read the next client message. Actions that produce a result
//! ([`Action::CreateNode`], [`Action::Call`], [`Action::Receive`], [`Action::Transmit`])
//! are always the last of their batch; their result is the next input. The driver holds
//! the node and the open transfer objects (the download being sent, the upload sink, the
//! content lock); the session says what to do with them.
//!
//! The node is created lazily, when the first request needs it, so that the negotiated
//! version and the client's `BYPASS` list are known ([`Action::CreateNode`]).
//!
//! Choices where git-annex's behaviour is not the model:
//! * `DATA n` after `PUT-FROM o` where `o + n` differs from the key's size (`-s`) cannot
//!   make the key's content. git-annex writes the bytes and then fails verification; we
//!   read and discard the payload without passing it to the node (the partial upload
//!   kept for resuming stays as it was), read the client's VALID/INVALID, and answer
//!   `FAILURE`. The connection stays in step, nothing partial becomes visible.
//! * A node error is answered `ERROR <text>` (for CHECKPRESENT, REMOVE, GETTIMESTAMP,
//!   GET, PUT) where git-annex's own server would drop the connection; a failed lock is
//!   `FAILURE` as in git-annex; a failure to store after all data arrived is `FAILURE`.
//!   A node failing in the middle of moving DATA ends the connection (nothing else keeps
//!   the byte stream in step).

use std::collections::VecDeque;
use std::ffi::OsStr;

use crate::node::{NodeError, Removed, Stored, Validity};
use crate::proto::p2p::{AuthToken, Message, ParseError, Service, MAX_VERSION};
use crate::types::{AssociatedFile, Key, Uuid};

/// What the server lets clients do (git-annex-shell's environment, p2phttp's auth).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMode {
    ReadWrite,
    /// Store, but never remove (`GIT_ANNEX_SHELL_APPENDONLY`).
    AppendOnly,
    /// Only read (`GIT_ANNEX_SHELL_READONLY`).
    ReadOnly,
}

impl ServerMode {
    /// The mode git-annex-shell takes from the values of `GIT_ANNEX_SHELL_READONLY` and
    /// `GIT_ANNEX_SHELL_APPENDONLY`; an empty value counts as unset, read-only wins.
    pub fn from_env_values(readonly: Option<&OsStr>, appendonly: Option<&OsStr>) -> ServerMode {
        let set = |v: Option<&OsStr>| v.is_some_and(|v| !v.is_empty());
        if set(readonly) {
            ServerMode::ReadOnly
        } else if set(appendonly) {
            ServerMode::AppendOnly
        } else {
            ServerMode::ReadWrite
        }
    }
}

/// How the client gets authenticated.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// The transport authenticated the client (ssh): `AUTH-SUCCESS` goes out at once and
    /// a client's `AUTH` is an unexpected command.
    PreAuthenticated,
    /// The client must send `AUTH <uuid> <token>` with one of these tokens first.
    Tokens(Vec<AuthToken>),
}

/// What to do with `CONNECT` (git tunnelling) and `NOTIFYCHANGE`, which need a git
/// repository attached to the connection; this session serves only content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitRequests {
    /// As git-annex-shell p2pstdio: the session ends, exit status 1, with "relaying to
    /// git not supported on this connection" / "change notification not available"
    /// (after the read-only check for `CONNECT git-receive-pack`).
    ShellExit,
    /// As git-annex's proxy for special remotes: `CONNECT` gets `CONNECTDONE 1`, and
    /// `NOTIFYCHANGE` gets `ERROR protocol error`; either way the session ends.
    Refuse,
}

/// Everything a server session needs to know up front.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The UUID being served (sent in `AUTH-SUCCESS`): a repository, proxied node or
    /// cluster.
    pub uuid: Uuid,
    pub mode: ServerMode,
    pub auth: AuthMode,
    /// Highest version to agree to (at most [`MAX_VERSION`]).
    pub max_version: u8,
    pub git_requests: GitRequests,
}

impl ServerConfig {
    /// git-annex-shell p2pstdio's settings: pre-authenticated, v4, exit on CONNECT.
    pub fn shell(uuid: Uuid, mode: ServerMode) -> ServerConfig {
        ServerConfig {
            uuid,
            mode,
            auth: AuthMode::PreAuthenticated,
            max_version: MAX_VERSION,
            git_requests: GitRequests::ShellExit,
        }
    }
}

/// A node operation the session asks the driver to run; its result comes back as
/// [`Input::Reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// [`Reply::Present`].
    CheckPresent(Key),
    /// Lock and keep the lock; [`Reply::Locked`].
    Lock(Key),
    /// [`Reply::Removed`].
    Remove { key: Key, deadline: Option<u64> },
    /// [`Reply::Timestamp`].
    Timestamp,
    /// Open a download and keep it; [`Reply::Content`].
    Get {
        key: Key,
        offset: u64,
        af: AssociatedFile,
    },
    /// Start an upload and keep the sink; [`Reply::Put`].
    Put { key: Key, af: AssociatedFile },
    /// Ask the open download whether its bytes stayed unchanged; [`Reply::Validity`].
    Validity,
    /// Every byte reached the open sink: finish it (consumes it); [`Reply::Stored`].
    Finish(Validity),
    /// `DATA-PRESENT`: ask the open sink (consumes it); [`Reply::Stored`].
    DataPresent,
}

/// The result of a [`Call`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Present(bool),
    Locked(bool),
    Removed(Removed),
    Timestamp(u64),
    /// The download's length, `None` when the content is absent.
    Content(Option<u64>),
    Put(PutReply),
    Validity(Validity),
    Stored(Stored),
}

/// How a node answered a PUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutReply {
    AlreadyHave {
        plus: Vec<Uuid>,
    },
    /// The sink is open and wants the content from `offset` on.
    Accept {
        offset: u64,
    },
}

/// Give up a held transfer object; no result is fed back (the driver logs failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    Unlock,
    /// End the open upload unfinished, keeping what a resume can use.
    AbortSink,
    /// Close the open download with the client's verdict.
    ContentDone {
        receiver_ok: bool,
    },
}

/// Where received DATA bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDest {
    /// The open sink (the driver calls its `begin(len)` first).
    Sink,
    /// Nowhere: the bytes are read and dropped.
    Discard,
}

/// What the driver must do next.
#[derive(Debug)]
pub enum Action {
    /// Write this message.
    Send(Message),
    /// Create the node; answer [`Input::NodeCreated`].
    CreateNode {
        version: u8,
        bypass: Vec<Uuid>,
    },
    /// Run a node operation; answer [`Input::Reply`].
    Call(Call),
    Release(Release),
    /// Move the next `len` bytes from the client to `dest`; report them with
    /// [`Input::Moved`] (in as many pieces as convenient), or [`Input::Eof`] /
    /// [`Input::TransferFailed`] if that cannot be done. Nothing is reported for `len` 0.
    Receive {
        len: u64,
        dest: DataDest,
    },
    /// Move the next `len` bytes of the open download to the client; report as above.
    Transmit {
        len: u64,
    },
    /// Something was refused or went wrong; the driver logs the reason (stderr).
    Refused(Refusal),
    /// The session is over.
    Close(End),
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The client hung up or gave up (git-annex-shell exits 0).
    Clean,
    /// The protocol failed (git-annex-shell exits 1 and prints the reason).
    Failed(Fatal),
}

/// Why a session failed. The texts of the first three are git-annex's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fatal {
    #[error("relaying to git not supported on this connection")]
    ConnectUnsupported,
    #[error("change notification not available")]
    NotifyUnsupported,
    #[error("protocol error")]
    ProtocolError,
    #[error("protocol error: client sent a line longer than {} bytes", crate::proto::p2p::MAX_LINE - 1)]
    LineTooLong,
    #[error("client disconnected after {moved} of {len} bytes of DATA for {key}")]
    ClientVanished { key: String, moved: u64, len: u64 },
    #[error("transfer of {key} failed: {error}")]
    Transfer { key: String, error: String },
    #[error("internal error: {0}")]
    Internal(String),
}

/// A refused request or a noteworthy failure: the reason the driver logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unparsable line from client ({0}); answered ERROR unknown command")]
    Unparsable(ParseError),
    #[error("unexpected {command} from client {state}; answered ERROR unexpected command")]
    Unexpected {
        command: &'static str,
        state: &'static str,
    },
    #[error("client sent {got} where {expected} was due")]
    OutOfStep { got: String, expected: &'static str },
    #[error("{request} refused: this repository is read-only")]
    ReadOnly { request: &'static str },
    #[error("{request} refused: this repository is append-only")]
    AppendOnly { request: &'static str },
    #[error(
        "DATA {len} from offset {offset} cannot be the content of {key} ({size} bytes); \
         payload discarded, answering FAILURE"
    )]
    DataLength {
        key: String,
        offset: u64,
        len: u64,
        size: u64,
    },
    #[error("AUTH from {uuid} with a wrong token")]
    BadAuth { uuid: String },
    #[error("client reported an error: {0}")]
    ClientError(String),
    #[error("node unavailable: {0}")]
    NodeUnavailable(String),
    #[error("{request} failed: {error}")]
    NodeFailed {
        request: &'static str,
        error: String,
    },
    #[error("storing {key} failed: {error}")]
    StoreFailed { key: String, error: String },
    #[error("the sender could not read the content of {key} (DATA 0, INVALID)")]
    SenderFailed { key: String },
}

/// What arrived for the session.
#[derive(Debug)]
pub enum Input {
    /// A decoded client message (for `DATA n`, the payload is still unread).
    Message(Message),
    /// A complete client line that does not parse.
    Unparsable(ParseError),
    /// A client line over the length limit (fatal).
    LineTooLong,
    /// The client closed its side.
    Eof,
    NodeCreated(Result<(), NodeError>),
    Reply(Result<Reply, NodeError>),
    /// `n` bytes of the current [`Action::Receive`]/[`Action::Transmit`] were moved.
    Moved(u64),
    /// The node side of the current transfer failed (sink or content error).
    TransferFailed(NodeError),
}

/// The text of `ERROR <text>` for a node error: the far side's own text when a remote
/// node sent one, else the error's description. This is the one place node errors meet
/// the P2P wire.
pub fn wire_error(e: &NodeError) -> String {
    let text = match e {
        NodeError::Remote { message, .. } => message.clone(),
        NodeError::Denied(text) => text.clone(),
        other => other.to_string(),
    };
    text.replace(['\n', '\r'], " ")
}

/// The reply to a REMOVE: git-annex's cluster aggregation rule (clusters-and-proxies.md
/// §5), which covers a plain node too. "Plain" replies (SUCCESS/FAILURE/ERROR) go to
/// clients below v2 and whenever the list of repositories is empty or holds only the
/// served UUID; otherwise the -PLUS forms carry the list.
pub fn removed_reply(r: &Removed, version: u8, served: &Uuid) -> Message {
    let plain = version < 2 || r.plus.iter().all(|u| u == served);
    match (r.removed, plain) {
        (true, true) => Message::Success,
        (true, false) => Message::SuccessPlus(r.plus.clone()),
        (false, true) => match &r.error {
            Some(text) => Message::Error(text.replace(['\n', '\r'], " ")),
            None => Message::Failure,
        },
        (false, false) => Message::FailurePlus(r.plus.clone()),
    }
}

/// The reply after an upload: `SUCCESS-PLUS` needs a v2+ client and a list.
pub fn stored_reply(s: &Stored, version: u8) -> Message {
    match (s.stored, version >= 2 && !s.plus.is_empty()) {
        (true, true) => Message::SuccessPlus(s.plus.clone()),
        (true, false) => Message::Success,
        (false, _) => Message::Failure,
    }
}

/// The reply when the node has the content already.
pub fn already_have_reply(plus: &[Uuid], version: u8) -> Message {
    if version >= 2 && !plus.is_empty() {
        Message::AlreadyHavePlus(plus.to_vec())
    } else {
        Message::AlreadyHave
    }
}

const READ_ONLY: &str = "this repository is read-only; write access denied";
const APPEND_ONLY: &str = "this repository is append-only; removal denied";

/// A request that needs the node.
#[derive(Debug)]
enum Request {
    CheckPresent(Key),
    Lock(Key),
    Remove {
        key: Key,
        deadline: Option<u64>,
    },
    Timestamp,
    Get {
        key: Key,
        offset: u64,
        af: AssociatedFile,
    },
    Put {
        key: Key,
        af: AssociatedFile,
    },
}

/// What a pending [`Call`] is for.
#[derive(Debug)]
enum Pending {
    CheckPresent,
    Lock,
    Remove,
    Timestamp,
    Get { key: Key },
    Put { key: Key },
    Validity,
    Finish { key: Key, then_close: bool },
    DataPresent { key: Key },
}

#[derive(Debug)]
enum NodeState {
    Absent,
    Ready,
    /// Creating it failed: every request gets this error text.
    Failed(String),
}

#[derive(Debug)]
enum State {
    Unauthenticated,
    Idle,
    AwaitNode(Request),
    AwaitReply(Pending),
    /// LOCKCONTENT succeeded; the next message must be UNLOCKCONTENT.
    Locked,
    /// `PUT-FROM offset` was sent; DATA (or DATA-PRESENT) is due.
    PutAwaitData {
        key: Key,
        offset: u64,
    },
    Receiving {
        key: Key,
        len: u64,
        moved: u64,
        discard: bool,
    },
    /// All DATA arrived; VALID/INVALID is due (v1+).
    PutAwaitValidity {
        key: Key,
        len: u64,
        discard: bool,
    },
    Sending {
        key: Key,
        len: u64,
        moved: u64,
    },
    /// GET's data went out; the client's SUCCESS/FAILURE is due.
    GetAwaitVerdict {
        open: bool,
    },
    Closed,
}

/// One server-side P2P session. See the module docs for how to drive it.
#[derive(Debug)]
pub struct ServerSession {
    config: ServerConfig,
    version: u8,
    bypass: Vec<Uuid>,
    client_uuid: Option<Uuid>,
    node: NodeState,
    expect_bypass: bool,
    state: State,
    actions: VecDeque<Action>,
}

impl ServerSession {
    /// A new session; with [`AuthMode::PreAuthenticated`] its first action sends
    /// `AUTH-SUCCESS`.
    pub fn new(config: ServerConfig) -> ServerSession {
        let mut s = ServerSession {
            version: 0,
            bypass: Vec::new(),
            client_uuid: None,
            node: NodeState::Absent,
            expect_bypass: false,
            state: State::Unauthenticated,
            actions: VecDeque::new(),
            config,
        };
        s.config.max_version = s.config.max_version.min(MAX_VERSION);
        if matches!(s.config.auth, AuthMode::PreAuthenticated) {
            s.send(Message::AuthSuccess(s.config.uuid.clone()));
            s.state = State::Idle;
        }
        s
    }

    /// The protocol version in use (0 until the client sends VERSION).
    pub fn version(&self) -> u8 {
        self.version
    }
    /// The client's `BYPASS` list (sent right after VERSION, v2+).
    pub fn bypass(&self) -> &[Uuid] {
        &self.bypass
    }
    /// The client's UUID from `AUTH`, when it authenticated in the session.
    pub fn client_uuid(&self) -> Option<&Uuid> {
        self.client_uuid.as_ref()
    }
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The next thing to do, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Take in what arrived.
    pub fn handle(&mut self, input: Input) {
        let state = std::mem::replace(&mut self.state, State::Idle);
        match (state, input) {
            (State::Closed, _) => self.state = State::Closed,
            (state, Input::LineTooLong) => {
                self.release_held(&state);
                self.close(End::Failed(Fatal::LineTooLong));
            }
            (State::Unauthenticated, input) => self.unauthenticated(input),
            (State::Idle, Input::Message(m)) => self.request(m),
            (State::Idle, Input::Unparsable(e)) => self.unknown_command(e),
            (State::Idle, Input::Eof) => self.close(End::Clean),
            (State::AwaitNode(req), Input::NodeCreated(r)) => self.node_created(req, r),
            (State::AwaitReply(p), Input::Reply(r)) => self.reply(p, r),
            (State::Locked, input) => self.locked(input),
            (State::PutAwaitData { key, offset }, input) => self.put_await_data(key, offset, input),
            (
                State::Receiving {
                    key,
                    len,
                    moved,
                    discard,
                },
                input,
            ) => self.receiving(key, len, moved, discard, input),
            (State::PutAwaitValidity { key, len, discard }, input) => {
                self.put_await_validity(key, len, discard, input)
            }
            (State::Sending { key, len, moved }, input) => self.sending(key, len, moved, input),
            (State::GetAwaitVerdict { open }, input) => self.get_await_verdict(open, input),
            (state, input) => {
                let detail = format!("input {input:?} does not fit state {state:?}");
                self.release_held(&state);
                self.close(End::Failed(Fatal::Internal(detail)));
            }
        }
    }

    // ---- helpers ----

    fn send(&mut self, m: Message) {
        self.actions.push_back(Action::Send(m));
    }
    fn refuse(&mut self, r: Refusal) {
        self.actions.push_back(Action::Refused(r));
    }
    fn close(&mut self, end: End) {
        self.actions.push_back(Action::Close(end));
        self.state = State::Closed;
    }
    fn error(&mut self, text: impl Into<String>) {
        self.send(Message::Error(text.into()));
    }
    fn unknown_command(&mut self, e: ParseError) {
        self.error("unknown command");
        self.refuse(Refusal::Unparsable(e));
    }
    fn unexpected(&mut self, m: &Message, state: &'static str) {
        self.error("unexpected command");
        self.refuse(Refusal::Unexpected {
            command: m.command(),
            state,
        });
    }
    fn call(&mut self, c: Call, p: Pending) {
        self.actions.push_back(Action::Call(c));
        self.state = State::AwaitReply(p);
    }

    /// Let go of whatever the driver holds for the current state.
    fn release_held(&mut self, state: &State) {
        let r = match state {
            State::Locked => Release::Unlock,
            State::PutAwaitData { .. }
            | State::Receiving { discard: false, .. }
            | State::PutAwaitValidity { discard: false, .. } => Release::AbortSink,
            State::Sending { .. } | State::GetAwaitVerdict { open: true } => {
                Release::ContentDone { receiver_ok: false }
            }
            State::AwaitReply(Pending::Finish { .. } | Pending::DataPresent { .. }) => {
                // The sink went to the node with the call; nothing left to release.
                return;
            }
            _ => return,
        };
        self.actions.push_back(Action::Release(r));
    }

    // ---- states ----

    fn unauthenticated(&mut self, input: Input) {
        self.state = State::Unauthenticated;
        match input {
            Input::Message(Message::Auth { uuid, token }) => {
                let ok = match &self.config.auth {
                    AuthMode::Tokens(ts) => ts.iter().any(|t| t.matches(&token)),
                    AuthMode::PreAuthenticated => true,
                };
                if ok {
                    self.send(Message::AuthSuccess(self.config.uuid.clone()));
                    self.client_uuid = Some(uuid);
                    self.state = State::Idle;
                } else {
                    self.send(Message::AuthFailure);
                    self.refuse(Refusal::BadAuth {
                        uuid: uuid.to_string(),
                    });
                }
            }
            Input::Message(Message::Error(text)) => {
                self.refuse(Refusal::ClientError(text));
                self.close(End::Clean);
            }
            Input::Message(m) => self.unexpected(&m, "before AUTH"),
            Input::Unparsable(e) => self.unknown_command(e),
            Input::Eof => self.close(End::Clean),
            other => self.close(End::Failed(Fatal::Internal(format!(
                "input {other:?} before AUTH"
            )))),
        }
    }

    fn request(&mut self, m: Message) {
        let expecting_bypass = std::mem::take(&mut self.expect_bypass);
        match m {
            Message::Version(n) => {
                let v = n.min(u64::from(self.config.max_version)) as u8;
                self.version = v;
                self.send(Message::Version(u64::from(v)));
                self.expect_bypass = v >= 2 && matches!(self.node, NodeState::Absent);
            }
            Message::Bypass(list) => {
                // Only meaningful right after VERSION, before the node exists; elsewhere
                // ignored, as git-annex does. Never a reply.
                if expecting_bypass {
                    self.bypass = list;
                }
            }
            Message::Error(text) => {
                self.refuse(Refusal::ClientError(text));
                self.close(End::Clean);
            }
            Message::CheckPresent(key) => self.need_node(Request::CheckPresent(key)),
            Message::LockContent(key) => self.need_node(Request::Lock(key)),
            Message::GetTimestamp => self.need_node(Request::Timestamp),
            Message::Get { offset, af, key } => self.need_node(Request::Get { key, offset, af }),
            Message::Remove(key) => {
                if self.may_remove("REMOVE") {
                    self.need_node(Request::Remove {
                        key,
                        deadline: None,
                    })
                }
            }
            Message::RemoveBefore { timestamp, key } => {
                if self.may_remove("REMOVE-BEFORE") {
                    self.need_node(Request::Remove {
                        key,
                        deadline: Some(timestamp),
                    })
                }
            }
            Message::Put { af, key } => {
                if self.config.mode == ServerMode::ReadOnly {
                    self.error(READ_ONLY);
                    self.refuse(Refusal::ReadOnly { request: "PUT" });
                } else {
                    self.need_node(Request::Put { key, af })
                }
            }
            Message::Connect(service) => {
                if service == Service::ReceivePack && self.config.mode != ServerMode::ReadWrite {
                    // git-annex refuses receive-pack in append-only mode too (it could
                    // rewrite refs), with the read-only text; the session then ends.
                    self.error(READ_ONLY);
                    self.refuse(Refusal::ReadOnly {
                        request: "CONNECT git-receive-pack",
                    });
                    self.close(End::Clean);
                } else {
                    match self.config.git_requests {
                        GitRequests::ShellExit => {
                            self.close(End::Failed(Fatal::ConnectUnsupported))
                        }
                        GitRequests::Refuse => {
                            self.send(Message::ConnectDone(1));
                            self.close(End::Clean);
                        }
                    }
                }
            }
            Message::NotifyChange => match self.config.git_requests {
                GitRequests::ShellExit => self.close(End::Failed(Fatal::NotifyUnsupported)),
                GitRequests::Refuse => {
                    self.error("protocol error");
                    self.close(End::Failed(Fatal::ProtocolError));
                }
            },
            other => self.unexpected(&other, "between requests"),
        }
    }

    fn may_remove(&mut self, request: &'static str) -> bool {
        match self.config.mode {
            ServerMode::ReadWrite => true,
            ServerMode::AppendOnly => {
                self.error(APPEND_ONLY);
                self.refuse(Refusal::AppendOnly { request });
                false
            }
            ServerMode::ReadOnly => {
                self.error(READ_ONLY);
                self.refuse(Refusal::ReadOnly { request });
                false
            }
        }
    }

    fn need_node(&mut self, req: Request) {
        match &self.node {
            NodeState::Ready => self.issue(req),
            NodeState::Failed(text) => {
                let text = text.clone();
                self.refuse(Refusal::NodeUnavailable(text.clone()));
                self.error(text);
            }
            NodeState::Absent => {
                self.actions.push_back(Action::CreateNode {
                    version: self.version,
                    bypass: self.bypass.clone(),
                });
                self.state = State::AwaitNode(req);
            }
        }
    }

    fn node_created(&mut self, req: Request, r: Result<(), NodeError>) {
        match r {
            Ok(()) => {
                self.node = NodeState::Ready;
                self.issue(req);
            }
            Err(e) => {
                let text = wire_error(&e);
                self.refuse(Refusal::NodeUnavailable(e.to_string()));
                self.error(text.clone());
                self.node = NodeState::Failed(text);
            }
        }
    }

    fn issue(&mut self, req: Request) {
        match req {
            Request::CheckPresent(k) => self.call(Call::CheckPresent(k), Pending::CheckPresent),
            Request::Lock(k) => self.call(Call::Lock(k), Pending::Lock),
            Request::Remove { key, deadline } => {
                self.call(Call::Remove { key, deadline }, Pending::Remove)
            }
            Request::Timestamp => self.call(Call::Timestamp, Pending::Timestamp),
            Request::Get { key, offset, af } => self.call(
                Call::Get {
                    key: key.clone(),
                    offset,
                    af,
                },
                Pending::Get { key },
            ),
            Request::Put { key, af } => self.call(
                Call::Put {
                    key: key.clone(),
                    af,
                },
                Pending::Put { key },
            ),
        }
    }

    fn node_failed(&mut self, request: &'static str, e: &NodeError) {
        self.refuse(Refusal::NodeFailed {
            request,
            error: e.to_string(),
        });
    }

    fn reply(&mut self, p: Pending, r: Result<Reply, NodeError>) {
        let v = self.version;
        match (p, r) {
            (Pending::CheckPresent, Ok(Reply::Present(yes))) => self.send(if yes {
                Message::Success
            } else {
                Message::Failure
            }),
            (Pending::Lock, Ok(Reply::Locked(true))) => {
                self.send(Message::Success);
                self.state = State::Locked;
            }
            (Pending::Lock, Ok(Reply::Locked(false))) => self.send(Message::Failure),
            (Pending::Lock, Err(e)) => {
                // As git-annex: a lock that cannot be taken is a plain FAILURE.
                self.node_failed("LOCKCONTENT", &e);
                self.send(Message::Failure);
            }
            (Pending::Remove, Ok(Reply::Removed(r))) => {
                let m = removed_reply(&r, v, &self.config.uuid);
                if let (Message::Error(_), Some(text)) = (&m, &r.error) {
                    self.refuse(Refusal::NodeFailed {
                        request: "REMOVE",
                        error: text.clone(),
                    });
                }
                self.send(m);
            }
            (Pending::Timestamp, Ok(Reply::Timestamp(t))) => self.send(Message::Timestamp(t)),
            (Pending::Get { .. }, Ok(Reply::Content(None))) => {
                // Absent: no bytes, and (v1+) INVALID; the client still answers.
                self.send(Message::Data(0));
                if v >= 1 {
                    self.send(Message::Invalid);
                }
                self.state = State::GetAwaitVerdict { open: false };
            }
            (Pending::Get { key }, Ok(Reply::Content(Some(len)))) => {
                self.send(Message::Data(len));
                if len > 0 {
                    self.actions.push_back(Action::Transmit { len });
                    self.state = State::Sending { key, len, moved: 0 };
                } else {
                    self.sent_all();
                }
            }
            (Pending::Validity, Ok(Reply::Validity(validity))) => {
                self.send(match validity {
                    Validity::Valid => Message::Valid,
                    Validity::Invalid | Validity::Unknown => Message::Invalid,
                });
                self.state = State::GetAwaitVerdict { open: true };
            }
            (Pending::Validity, Err(e)) => {
                // Cannot vouch for the bytes: say so, the client re-verifies.
                self.node_failed("GET", &e);
                self.send(Message::Invalid);
                self.state = State::GetAwaitVerdict { open: true };
            }
            (Pending::Put { .. }, Ok(Reply::Put(PutReply::AlreadyHave { plus }))) => {
                self.send(already_have_reply(&plus, v))
            }
            (Pending::Put { key }, Ok(Reply::Put(PutReply::Accept { offset }))) => {
                self.send(Message::PutFrom(offset));
                self.state = State::PutAwaitData { key, offset };
            }
            (Pending::Finish { key, then_close }, r) => {
                self.stored(key, r);
                if then_close {
                    self.close(End::Clean);
                }
            }
            (Pending::DataPresent { key }, r) => self.stored(key, r),
            (
                p @ (Pending::CheckPresent
                | Pending::Remove
                | Pending::Timestamp
                | Pending::Get { .. }
                | Pending::Put { .. }),
                Err(e),
            ) => {
                let request = match p {
                    Pending::CheckPresent => "CHECKPRESENT",
                    Pending::Remove => "REMOVE",
                    Pending::Timestamp => "GETTIMESTAMP",
                    Pending::Get { .. } => "GET",
                    _ => "PUT",
                };
                self.node_failed(request, &e);
                self.error(wire_error(&e));
            }
            (p, Ok(r)) => {
                let state = State::AwaitReply(p);
                let detail = format!("reply {r:?} does not fit {state:?}");
                self.close(End::Failed(Fatal::Internal(detail)));
            }
        }
    }

    fn stored(&mut self, key: Key, r: Result<Reply, NodeError>) {
        match r {
            Ok(Reply::Stored(s)) => self.send(stored_reply(&s, self.version)),
            Ok(other) => {
                let detail = format!("reply {other:?} to a finished upload");
                self.close(End::Failed(Fatal::Internal(detail)));
            }
            Err(e) => {
                self.refuse(Refusal::StoreFailed {
                    key: key.to_string(),
                    error: e.to_string(),
                });
                self.send(Message::Failure);
            }
        }
    }

    fn locked(&mut self, input: Input) {
        match input {
            Input::Message(Message::UnlockContent) => {
                self.actions.push_back(Action::Release(Release::Unlock));
            }
            Input::Message(_) | Input::Unparsable(_) => {
                // git-annex: the message is dropped, the lock released.
                let got = match &input {
                    Input::Message(m) => m.command().to_string(),
                    _ => "an unparsable line".to_string(),
                };
                self.error("expected UNLOCKCONTENT");
                self.actions.push_back(Action::Release(Release::Unlock));
                self.refuse(Refusal::OutOfStep {
                    got,
                    expected: "UNLOCKCONTENT",
                });
            }
            Input::Eof => {
                self.actions.push_back(Action::Release(Release::Unlock));
                self.close(End::Clean);
            }
            other => {
                self.actions.push_back(Action::Release(Release::Unlock));
                self.close(End::Failed(Fatal::Internal(format!(
                    "input {other:?} while locked"
                ))));
            }
        }
    }

    fn put_await_data(&mut self, key: Key, offset: u64, input: Input) {
        match input {
            Input::Message(Message::Data(len)) => {
                let fits = match key.size() {
                    Some(size) => offset.checked_add(len) == Some(size),
                    None => true,
                };
                if !fits {
                    self.refuse(Refusal::DataLength {
                        key: key.to_string(),
                        offset,
                        len,
                        size: key.size().unwrap_or(0),
                    });
                    self.actions.push_back(Action::Release(Release::AbortSink));
                }
                let dest = if fits {
                    DataDest::Sink
                } else {
                    DataDest::Discard
                };
                if fits || len > 0 {
                    self.actions.push_back(Action::Receive { len, dest });
                }
                if len == 0 {
                    self.received_all(key, len, !fits);
                } else {
                    self.state = State::Receiving {
                        key,
                        len,
                        moved: 0,
                        discard: !fits,
                    };
                }
            }
            Input::Message(Message::DataPresent) if self.version >= 4 => {
                self.call(Call::DataPresent, Pending::DataPresent { key });
            }
            Input::Message(Message::Error(text)) => {
                // The client gave up on this upload; no reply.
                self.actions.push_back(Action::Release(Release::AbortSink));
                self.refuse(Refusal::ClientError(text));
            }
            Input::Message(_) | Input::Unparsable(_) => {
                let got = match &input {
                    Input::Message(m) => m.command().to_string(),
                    _ => "an unparsable line".to_string(),
                };
                self.error("expected DATA");
                self.actions.push_back(Action::Release(Release::AbortSink));
                self.refuse(Refusal::OutOfStep {
                    got,
                    expected: "DATA",
                });
            }
            Input::Eof => {
                self.actions.push_back(Action::Release(Release::AbortSink));
                self.close(End::Clean);
            }
            other => {
                self.actions.push_back(Action::Release(Release::AbortSink));
                self.close(End::Failed(Fatal::Internal(format!(
                    "input {other:?} while waiting for DATA"
                ))));
            }
        }
    }

    fn receiving(&mut self, key: Key, len: u64, moved: u64, discard: bool, input: Input) {
        match input {
            Input::Moved(n) => {
                let moved = moved.saturating_add(n);
                if moved > len {
                    if !discard {
                        self.actions.push_back(Action::Release(Release::AbortSink));
                    }
                    self.close(End::Failed(Fatal::Internal(format!(
                        "moved {moved} of {len} DATA bytes"
                    ))));
                } else if moved == len {
                    self.received_all(key, len, discard);
                } else {
                    self.state = State::Receiving {
                        key,
                        len,
                        moved,
                        discard,
                    };
                }
            }
            Input::Eof => {
                // The client vanished mid-DATA. The sink keeps what arrived, for a
                // resume; git-annex answers FAILURE (in case anyone still listens) and
                // exits 1.
                if !discard {
                    self.actions.push_back(Action::Release(Release::AbortSink));
                }
                self.send(Message::Failure);
                self.close(End::Failed(Fatal::ClientVanished {
                    key: key.to_string(),
                    moved,
                    len,
                }));
            }
            Input::TransferFailed(e) => {
                if !discard {
                    self.actions.push_back(Action::Release(Release::AbortSink));
                }
                self.close(End::Failed(Fatal::Transfer {
                    key: key.to_string(),
                    error: e.to_string(),
                }));
            }
            other => {
                if !discard {
                    self.actions.push_back(Action::Release(Release::AbortSink));
                }
                self.close(End::Failed(Fatal::Internal(format!(
                    "input {other:?} while receiving DATA"
                ))));
            }
        }
    }

    fn received_all(&mut self, key: Key, len: u64, discard: bool) {
        if self.version >= 1 {
            self.state = State::PutAwaitValidity { key, len, discard };
        } else if discard {
            self.send(Message::Failure);
        } else {
            // v0 sends no VALID/INVALID: the node verifies everything.
            self.call(
                Call::Finish(Validity::Unknown),
                Pending::Finish {
                    key,
                    then_close: false,
                },
            );
        }
    }

    fn put_await_validity(&mut self, key: Key, len: u64, discard: bool, input: Input) {
        let validity = match input {
            Input::Message(Message::Valid) => Validity::Valid,
            Input::Message(Message::Invalid) => Validity::Invalid,
            Input::Message(_) | Input::Unparsable(_) => {
                // git-annex answers this, then verifies the content itself.
                let got = match &input {
                    Input::Message(m) => m.command().to_string(),
                    _ => "an unparsable line".to_string(),
                };
                self.error("expected VALID or INVALID");
                self.refuse(Refusal::OutOfStep {
                    got,
                    expected: "VALID or INVALID",
                });
                Validity::Unknown
            }
            Input::Eof => {
                if discard {
                    self.close(End::Clean);
                } else {
                    // Every byte arrived; git-annex verifies and keeps the content.
                    self.call(
                        Call::Finish(Validity::Unknown),
                        Pending::Finish {
                            key,
                            then_close: true,
                        },
                    );
                }
                return;
            }
            other => {
                if !discard {
                    self.actions.push_back(Action::Release(Release::AbortSink));
                }
                self.close(End::Failed(Fatal::Internal(format!(
                    "input {other:?} while waiting for VALID"
                ))));
                return;
            }
        };
        if discard {
            self.send(Message::Failure);
        } else if len == 0 && validity == Validity::Invalid {
            // DATA 0 + INVALID: the sender could not read its content.
            self.actions.push_back(Action::Release(Release::AbortSink));
            self.refuse(Refusal::SenderFailed {
                key: key.to_string(),
            });
            self.send(Message::Failure);
        } else {
            self.call(
                Call::Finish(validity),
                Pending::Finish {
                    key,
                    then_close: false,
                },
            );
        }
    }

    fn sending(&mut self, key: Key, len: u64, moved: u64, input: Input) {
        match input {
            Input::Moved(n) => {
                let moved = moved.saturating_add(n);
                if moved > len {
                    self.actions
                        .push_back(Action::Release(Release::ContentDone { receiver_ok: false }));
                    self.close(End::Failed(Fatal::Internal(format!(
                        "moved {moved} of {len} DATA bytes"
                    ))));
                } else if moved == len {
                    self.sent_all();
                } else {
                    self.state = State::Sending { key, len, moved };
                }
            }
            Input::TransferFailed(e) => {
                // Fewer bytes than announced: only closing keeps the client from
                // reading garbage (git-annex: "short data write").
                self.actions
                    .push_back(Action::Release(Release::ContentDone { receiver_ok: false }));
                self.close(End::Failed(Fatal::Transfer {
                    key: key.to_string(),
                    error: e.to_string(),
                }));
            }
            other => {
                self.actions
                    .push_back(Action::Release(Release::ContentDone { receiver_ok: false }));
                self.close(End::Failed(Fatal::Internal(format!(
                    "input {other:?} while sending DATA"
                ))));
            }
        }
    }

    fn sent_all(&mut self) {
        if self.version >= 1 {
            self.call(Call::Validity, Pending::Validity);
        } else {
            self.state = State::GetAwaitVerdict { open: true };
        }
    }

    fn get_await_verdict(&mut self, open: bool, input: Input) {
        let v2 = self.version >= 2;
        let ok = match input {
            Input::Message(Message::Success) => true,
            Input::Message(Message::SuccessPlus(_)) if v2 => true,
            Input::Message(Message::Failure) => false,
            Input::Message(Message::FailurePlus(_)) if v2 => false,
            Input::Message(Message::Error(text)) => {
                self.refuse(Refusal::ClientError(text));
                false
            }
            Input::Message(_) | Input::Unparsable(_) => {
                let got = match &input {
                    Input::Message(m) => m.command().to_string(),
                    _ => "an unparsable line".to_string(),
                };
                let expected = if v2 {
                    "SUCCESS or SUCCESS-PLUS or FAILURE or FAILURE-PLUS"
                } else {
                    "SUCCESS or FAILURE"
                };
                self.error(format!("expected {expected}"));
                self.refuse(Refusal::OutOfStep { got, expected });
                false
            }
            Input::Eof => {
                if open {
                    self.actions
                        .push_back(Action::Release(Release::ContentDone { receiver_ok: false }));
                }
                self.close(End::Clean);
                return;
            }
            other => {
                if open {
                    self.actions
                        .push_back(Action::Release(Release::ContentDone { receiver_ok: false }));
                }
                self.close(End::Failed(Fatal::Internal(format!(
                    "input {other:?} while waiting for the GET verdict"
                ))));
                return;
            }
        };
        if open {
            self.actions
                .push_back(Action::Release(Release::ContentDone { receiver_ok: ok }));
        }
    }
}

#[cfg(test)]
mod tests;
