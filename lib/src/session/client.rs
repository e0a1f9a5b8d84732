//! The client side of the git-annex P2P protocol, without I/O: what to send for each
//! request, and what each server reply means, as git-annex's own client reads them.
//!
//! A session starts with the server's `AUTH-SUCCESS <uuid>` (git-annex-shell sends it
//! unprompted), then [`ClientSession::negotiate`] sends `VERSION <max>` and the reply
//! fixes the version (an `ERROR` reply means a very old server: version 0). A `BYPASS`
//! list may follow (v2+, only when non-empty). Then one request at a time: call the
//! request method, send the message it returns, and pass every server message to
//! [`ClientSession::handle`], which says what it means ([`Reply`]) or why it is wrong.
//!
//! Payloads are the caller's to move: after [`Reply::Data`] read that many bytes, then (v1+)
//! hand over the `VALID`/`INVALID` that follows, then send [`ClientSession::verdict`]. After
//! [`Reply::PutFrom`] send [`ClientSession::data`], the bytes, and
//! [`ClientSession::sent`]'s validity message (v1+), then hand over the result.
//!
//! Errors follow git-annex: an `ERROR` in place of a result fails that request only
//! ([`ClientError::Server`]); anything else unexpected means the connection is out of step
//! and must be given up, after sending [`ClientError::farewell`] as git-annex does.

use crate::node::{NodeError, Removed, Stored, Validity};
use crate::proto::p2p::{Message, MAX_VERSION};
use crate::types::{AssociatedFile, Key, Uuid};

/// What a server message meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The greeting: the UUID of the repository (or cluster, or proxied node) served.
    Greeted(Uuid),
    /// The agreed protocol version.
    Versioned(u8),
    Present(bool),
    Locked(bool),
    Removed(Removed),
    Timestamp(u64),
    /// GET: this many bytes follow on the wire.
    Data(u64),
    /// GET, v1+: whether the bytes sent were unchanged while read.
    Validity(Validity),
    /// PUT: send the content from this offset.
    PutFrom(u64),
    /// PUT: not needed; the content is (also) in these repositories.
    AlreadyHave(Vec<Uuid>),
    Stored(Stored),
}

/// Why a reply is not a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server answered `ERROR <text>`: this request failed, the connection is fine.
    #[error("{0}")]
    Server(String),
    /// The server said something that does not fit: give the connection up.
    #[error("protocol error: expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
    /// The server refused authentication.
    #[error("authentication failed")]
    AuthFailed,
    /// The request needs a newer protocol than the server speaks.
    #[error("{what} needs protocol version {need}; the server speaks {have}")]
    TooOld {
        what: &'static str,
        need: u8,
        have: u8,
    },
    /// A reply came when no request was waiting for one.
    #[error("unsolicited {0} from the server")]
    Unsolicited(String),
}

impl ClientError {
    /// What git-annex sends before dropping a connection that went out of step.
    pub fn farewell(&self) -> Option<Message> {
        match self {
            // A bad greeting gets git-annex's "auth failed".
            ClientError::Unexpected {
                expected: "AUTH-SUCCESS",
                ..
            } => Some(Message::Error("auth failed".into())),
            ClientError::Unexpected { expected, .. } => {
                Some(Message::Error(format!("expected {expected}")))
            }
            _ => None,
        }
    }

    /// As a node error of the node called `node`.
    pub fn into_node_error(self, node: &str) -> NodeError {
        match self {
            ClientError::Server(message) => NodeError::Remote {
                node: node.to_string(),
                message,
            },
            ClientError::TooOld { what, .. } => NodeError::Unsupported {
                node: node.to_string(),
                what,
            },
            other => NodeError::Protocol {
                node: node.to_string(),
                detail: other.to_string(),
            },
        }
    }
}

/// What the next server message should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Greeting,
    Nothing,
    Version,
    Success,
    Lock,
    Remove,
    Timestamp,
    GetData,
    GetValidity,
    /// GET's bytes arrived; the caller owes the verdict.
    Verdict,
    PutStart,
    /// PUT-FROM arrived; the caller sends DATA (or DATA-PRESENT).
    PutData,
    /// DATA went out; the caller owes the validity.
    PutValidity,
    PutResult,
}

/// One client-side P2P session.
#[derive(Debug)]
pub struct ClientSession {
    max_version: u8,
    version: u8,
    server: Option<Uuid>,
    expect: Expect,
}

impl ClientSession {
    /// A session that will offer `max_version` (at most 4) and waits for the greeting.
    pub fn new(max_version: u8) -> ClientSession {
        ClientSession {
            max_version: max_version.min(MAX_VERSION),
            version: 0,
            server: None,
            expect: Expect::Greeting,
        }
    }

    pub fn version(&self) -> u8 {
        self.version
    }
    /// The UUID from the greeting.
    pub fn server_uuid(&self) -> Option<&Uuid> {
        self.server.as_ref()
    }
    /// Whether a request is waiting for replies (or for the caller's next step).
    pub fn is_busy(&self) -> bool {
        !matches!(self.expect, Expect::Nothing)
    }

    fn start(&mut self, expect: Expect, m: Message) -> Message {
        self.expect = expect;
        m
    }

    /// `VERSION <max>`, right after the greeting.
    pub fn negotiate(&mut self) -> Message {
        self.start(
            Expect::Version,
            Message::Version(u64::from(self.max_version)),
        )
    }

    /// `BYPASS`, when there is something to say and the server can take it.
    pub fn bypass(&self, uuids: &[Uuid]) -> Option<Message> {
        (self.version >= 2 && !uuids.is_empty()).then(|| Message::Bypass(uuids.to_vec()))
    }

    pub fn check_present(&mut self, key: Key) -> Message {
        self.start(Expect::Success, Message::CheckPresent(key))
    }

    pub fn lock(&mut self, key: Key) -> Message {
        self.start(Expect::Lock, Message::LockContent(key))
    }

    /// `UNLOCKCONTENT` (no reply).
    pub fn unlock(&mut self) -> Message {
        self.expect = Expect::Nothing;
        Message::UnlockContent
    }

    /// `REMOVE`, or with a deadline `REMOVE-BEFORE` (v3+ servers only).
    pub fn remove(&mut self, key: Key, deadline: Option<u64>) -> Result<Message, ClientError> {
        let m = match deadline {
            None => Message::Remove(key),
            Some(timestamp) => {
                self.needs("REMOVE-BEFORE", 3)?;
                Message::RemoveBefore { timestamp, key }
            }
        };
        Ok(self.start(Expect::Remove, m))
    }

    /// `GETTIMESTAMP` (v3+).
    pub fn timestamp(&mut self) -> Result<Message, ClientError> {
        self.needs("GETTIMESTAMP", 3)?;
        Ok(self.start(Expect::Timestamp, Message::GetTimestamp))
    }

    pub fn get(&mut self, key: Key, offset: u64, af: AssociatedFile) -> Message {
        self.start(Expect::GetData, Message::Get { offset, af, key })
    }

    /// After a GET's bytes (and validity): whether they were kept.
    pub fn verdict(&mut self, ok: bool) -> Message {
        self.expect = Expect::Nothing;
        if ok {
            Message::Success
        } else {
            Message::Failure
        }
    }

    pub fn put(&mut self, key: Key, af: AssociatedFile) -> Message {
        self.start(Expect::PutStart, Message::Put { af, key })
    }

    /// After `PUT-FROM`: `DATA len`; the bytes follow.
    pub fn data(&mut self, len: u64) -> Message {
        self.expect = Expect::PutValidity;
        Message::Data(len)
    }

    /// After the bytes: the validity message to send (none in v0); then the result is due.
    pub fn sent(&mut self, validity: Validity) -> Option<Message> {
        self.expect = Expect::PutResult;
        (self.version >= 1).then_some(match validity {
            Validity::Valid => Message::Valid,
            Validity::Invalid | Validity::Unknown => Message::Invalid,
        })
    }

    /// After `PUT-FROM`: `DATA-PRESENT` (v4+), the content was put in place another way.
    pub fn data_present(&mut self) -> Result<Message, ClientError> {
        self.needs("DATA-PRESENT", 4)?;
        self.expect = Expect::PutResult;
        Ok(Message::DataPresent)
    }

    fn needs(&self, what: &'static str, need: u8) -> Result<(), ClientError> {
        if self.version < need {
            Err(ClientError::TooOld {
                what,
                need,
                have: self.version,
            })
        } else {
            Ok(())
        }
    }

    fn unexpected(&mut self, expected: &'static str, got: &Message) -> ClientError {
        self.expect = Expect::Nothing;
        ClientError::Unexpected {
            expected,
            got: got.to_string(),
        }
    }

    /// What a server message means at this point.
    pub fn handle(&mut self, m: Message) -> Result<Reply, ClientError> {
        let v2 = self.version >= 2;
        let expect = std::mem::replace(&mut self.expect, Expect::Nothing);
        match (expect, m) {
            (Expect::Greeting, Message::AuthSuccess(u)) => {
                self.server = Some(u.clone());
                Ok(Reply::Greeted(u))
            }
            (Expect::Greeting, Message::AuthFailure) => Err(ClientError::AuthFailed),
            (Expect::Greeting, m) => Err(self.unexpected("AUTH-SUCCESS", &m)),
            (Expect::Version, Message::Version(v)) => {
                // A server never agrees to more than was offered.
                if v > u64::from(self.max_version) {
                    return Err(self.unexpected("VERSION", &Message::Version(v)));
                }
                self.version = v as u8;
                Ok(Reply::Versioned(self.version))
            }
            (Expect::Version, Message::Error(_)) => {
                // A server from before versions existed.
                self.version = 0;
                Ok(Reply::Versioned(0))
            }
            (Expect::Version, m) => Err(self.unexpected("VERSION", &m)),
            (Expect::Success | Expect::Lock, Message::Success) => Ok(match expect {
                Expect::Lock => Reply::Locked(true),
                _ => Reply::Present(true),
            }),
            (Expect::Success | Expect::Lock, Message::Failure) => Ok(match expect {
                Expect::Lock => Reply::Locked(false),
                _ => Reply::Present(false),
            }),
            (Expect::Success | Expect::Lock, Message::Error(e)) => Err(ClientError::Server(e)),
            (Expect::Success | Expect::Lock, m) => Err(self.unexpected("SUCCESS or FAILURE", &m)),
            (Expect::Remove, m) => self.removed(m),
            (Expect::Timestamp, Message::Timestamp(t)) => Ok(Reply::Timestamp(t)),
            (Expect::Timestamp, Message::Error(e)) => Err(ClientError::Server(e)),
            (Expect::Timestamp, m) => Err(self.unexpected("TIMESTAMP", &m)),
            (Expect::GetData, Message::Data(len)) => {
                self.expect = if self.version >= 1 {
                    Expect::GetValidity
                } else {
                    Expect::Verdict
                };
                Ok(Reply::Data(len))
            }
            (Expect::GetData, Message::Error(e)) => Err(ClientError::Server(e)),
            (Expect::GetData, m) => Err(self.unexpected("DATA", &m)),
            (Expect::GetValidity, Message::Valid) => {
                self.expect = Expect::Verdict;
                Ok(Reply::Validity(Validity::Valid))
            }
            (Expect::GetValidity, Message::Invalid) => {
                self.expect = Expect::Verdict;
                Ok(Reply::Validity(Validity::Invalid))
            }
            (Expect::GetValidity, m) => Err(self.unexpected("VALID or INVALID", &m)),
            (Expect::PutStart, Message::PutFrom(o)) => {
                self.expect = Expect::PutData;
                Ok(Reply::PutFrom(o))
            }
            (Expect::PutStart, Message::AlreadyHave) => Ok(Reply::AlreadyHave(Vec::new())),
            (Expect::PutStart, Message::AlreadyHavePlus(us)) => Ok(Reply::AlreadyHave(us)),
            (Expect::PutStart, m) => Err(self.unexpected("PUT_FROM or ALREADY_HAVE", &m)),
            (Expect::PutResult, Message::Success) => Ok(Reply::Stored(Stored {
                stored: true,
                plus: Vec::new(),
            })),
            (Expect::PutResult, Message::SuccessPlus(us)) if v2 => Ok(Reply::Stored(Stored {
                stored: true,
                plus: us,
            })),
            (Expect::PutResult, Message::Failure) => Ok(Reply::Stored(Stored::default())),
            (Expect::PutResult, Message::FailurePlus(_)) if v2 => {
                Ok(Reply::Stored(Stored::default()))
            }
            (Expect::PutResult, Message::Error(e)) => Err(ClientError::Server(e)),
            (Expect::PutResult, m) => Err(self.unexpected(
                if v2 {
                    "SUCCESS or SUCCESS-PLUS or FAILURE or FAILURE-PLUS"
                } else {
                    "SUCCESS or FAILURE"
                },
                &m,
            )),
            (e @ (Expect::Verdict | Expect::PutData | Expect::PutValidity), m) => {
                self.expect = e;
                Err(ClientError::Unsolicited(m.to_string()))
            }
            (Expect::Nothing, m) => Err(ClientError::Unsolicited(m.to_string())),
        }
    }

    fn removed(&mut self, m: Message) -> Result<Reply, ClientError> {
        let removed = |removed, plus| {
            Ok(Reply::Removed(Removed {
                removed,
                plus,
                error: None,
            }))
        };
        match (self.version >= 2, m) {
            (_, Message::Success) => removed(true, Vec::new()),
            (_, Message::Failure) => removed(false, Vec::new()),
            (true, Message::SuccessPlus(us)) => removed(true, us),
            (true, Message::FailurePlus(us)) => removed(false, us),
            (_, Message::Error(e)) => Err(ClientError::Server(e)),
            (true, m) => {
                Err(self.unexpected("SUCCESS or SUCCESS-PLUS or FAILURE or FAILURE-PLUS", &m))
            }
            (false, m) => Err(self.unexpected("SUCCESS or FAILURE", &m)),
        }
    }
}

#[cfg(test)]
mod tests;
