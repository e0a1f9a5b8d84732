//! The git-annex P2P protocol, line serialisation (protocol versions 0 to 4).
//!
//! Every message is one line: a command word, then its parameters, separated by single
//! spaces, ended by `\n` (a `\r` right before the `\n` is dropped when reading). The reader
//! splits off the command word at the first whitespace byte; a message with N parameters
//! splits off parameters 1..N-1 the same way, and parameter N is the whole rest of the
//! line, so only the last parameter may hold spaces (a key, an error text). List messages
//! (`SUCCESS-PLUS`, `FAILURE-PLUS`, `ALREADY-HAVE-PLUS`, `BYPASS`, `CHANGED`) split their
//! rest on runs of whitespace and may be empty. `DATA <n>` is followed by exactly `n` raw
//! bytes and no newline; [`decode`] returns only the length, the caller moves the payload.
//!
//! A line of 32768 bytes or more without a newline is fatal ([`DecodeError::LineTooLong`]);
//! a complete line that does not parse is not ([`DecodeError::Unparsable`]: git-annex
//! answers `ERROR unknown command` and goes on).
//!
//! Numbers are read the way git-annex reads them (Haskell's `reads`, keeping the first
//! parse): leading whitespace and balanced parentheses are allowed, `0x`/`0o` prefixes
//! select hexadecimal/octal, anything after the number is ignored (`VERSION 4abc` is
//! `VERSION 4`), but a fraction or exponent makes the field unparsable (`VERSION 4.5`).
//! Values too large for `u64` saturate (git-annex has unbounded integers; for every field
//! here the saturated value leads to the same reply). Negative numbers are refused as
//! unparsable (git-annex would accept `VERSION -1`, and misbehave on a negative offset).
//!
//! Whitespace is ASCII whitespace. (git-annex decodes lines with the locale's encoding,
//! so under a UTF-8 locale it also splits at Unicode spaces such as U+00A0; no conforming
//! client puts those in a field other than the last, because it escapes them.)

use std::fmt;

use crate::types::af::AfError;
use crate::types::key::KeyError;
use crate::types::{AssociatedFile, Key, Uuid};

/// A reader fails once this many bytes arrive without a newline; so the longest
/// acceptable line has `MAX_LINE - 1` bytes before its `\n`.
pub const MAX_LINE: usize = 32768;

/// The highest protocol version this implementation speaks.
pub const MAX_VERSION: u8 = 4;

/// A git service that `CONNECT` tunnels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    UploadPack,
    ReceivePack,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::UploadPack => "git-upload-pack",
            Service::ReceivePack => "git-receive-pack",
        }
    }
    fn parse(s: &[u8]) -> Option<Service> {
        match s {
            b"git-upload-pack" => Some(Service::UploadPack),
            b"git-receive-pack" => Some(Service::ReceivePack),
            _ => None,
        }
    }
}

/// An authentication token: ASCII letters and digits, kept lower-cased (tokens compare
/// case-insensitively). May be empty.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AuthToken(String);

impl AuthToken {
    /// Parse a token as git-annex does: lower-case it, refuse any other character.
    pub fn parse(s: &[u8]) -> Option<AuthToken> {
        if s.iter().all(|b| b.is_ascii_alphanumeric()) {
            Some(AuthToken(String::from_utf8_lossy(s).to_ascii_lowercase()))
        } else {
            None
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Compare without an early exit on the first differing byte.
    pub fn matches(&self, other: &AuthToken) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print a secret into logs.
        f.write_str("AuthToken(<hidden>)")
    }
}

/// One P2P protocol message, either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `AUTH <uuid> <token>`: the connecting peer's UUID and its token.
    Auth {
        uuid: Uuid,
        token: AuthToken,
    },
    /// `AUTH-SUCCESS <uuid>`: the UUID of the repository being served.
    AuthSuccess(Uuid),
    AuthFailure,
    /// `VERSION <n>`.
    Version(u64),
    /// `CONNECT <service>`.
    Connect(Service),
    /// `CONNECTDONE <exitcode>`.
    ConnectDone(i64),
    NotifyChange,
    /// `CHANGED <ref>...`.
    Changed(Vec<String>),
    CheckPresent(Key),
    LockContent(Key),
    UnlockContent,
    Remove(Key),
    /// `REMOVE-BEFORE <timestamp> <key>`.
    RemoveBefore {
        timestamp: u64,
        key: Key,
    },
    GetTimestamp,
    /// `GET <offset> <af> <key>`.
    Get {
        offset: u64,
        af: AssociatedFile,
        key: Key,
    },
    /// `PUT <af> <key>`.
    Put {
        af: AssociatedFile,
        key: Key,
    },
    /// `PUT-FROM <offset>`.
    PutFrom(u64),
    AlreadyHave,
    AlreadyHavePlus(Vec<Uuid>),
    Success,
    SuccessPlus(Vec<Uuid>),
    Failure,
    FailurePlus(Vec<Uuid>),
    /// `BYPASS <uuid>...`.
    Bypass(Vec<Uuid>),
    /// `DATA <len>`; the payload follows on the wire and is not part of the value.
    Data(u64),
    DataPresent,
    Valid,
    Invalid,
    /// `TIMESTAMP <n>`.
    Timestamp(u64),
    /// `ERROR <text>`.
    Error(String),
}

/// Why a complete line is not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty line")]
    Empty,
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("{command}: unexpected parameters")]
    ExtraParameters { command: &'static str },
    #[error("{command}: bad number {text:?}")]
    BadNumber { command: &'static str, text: String },
    #[error("{command}: bad key: {error}")]
    BadKey {
        command: &'static str,
        error: KeyError,
    },
    #[error("{command}: bad repository UUID {text:?}")]
    BadUuid { command: &'static str, text: String },
    #[error("{command}: bad associated file: {error}")]
    BadAssociatedFile {
        command: &'static str,
        error: AfError,
    },
    #[error("AUTH: token may hold only letters and digits")]
    BadToken,
    #[error("CONNECT: unknown service {0:?}")]
    BadService(String),
}

/// Why [`decode`] could not return a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A complete line that is not a message; skip `consumed` bytes and go on
    /// (git-annex answers `ERROR unknown command`).
    #[error("line does not parse ({error})")]
    Unparsable { error: ParseError, consumed: usize },
    /// No newline within the first [`MAX_LINE`] bytes: fatal for the connection.
    #[error("protocol line longer than {} bytes", MAX_LINE - 1)]
    LineTooLong,
}

impl DecodeError {
    /// Whether the connection cannot go on.
    pub fn is_fatal(&self) -> bool {
        matches!(self, DecodeError::LineTooLong)
    }
}

/// Decode the next message at the start of `buf`: `Ok(Some((message, consumed)))`, or
/// `Ok(None)` when more bytes are needed. For `DATA n` the `n` payload bytes start right
/// after `consumed` and are the caller's to move.
pub fn decode(buf: &[u8]) -> Result<Option<(Message, usize)>, DecodeError> {
    let window = &buf[..buf.len().min(MAX_LINE)];
    match window.iter().position(|&b| b == b'\n') {
        Some(pos) => {
            let line = &buf[..pos];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            match parse_line(line) {
                Ok(m) => Ok(Some((m, pos + 1))),
                Err(error) => Err(DecodeError::Unparsable {
                    error,
                    consumed: pos + 1,
                }),
            }
        }
        None if buf.len() >= MAX_LINE => Err(DecodeError::LineTooLong),
        None => Ok(None),
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Split at the first whitespace byte, dropping that one byte.
fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|&b| is_space(b)) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[]),
    }
}

fn words(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|&b| is_space(b)).filter(|w| !w.is_empty())
}

fn lossy(s: &[u8]) -> String {
    String::from_utf8_lossy(s).into_owned()
}

/// Parse one line (without its `\n`) into a message.
pub fn parse_line(line: &[u8]) -> Result<Message, ParseError> {
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    let (cmd, rest) = split_word(line);
    let command: &'static str = match COMMANDS.iter().find(|c| c.as_bytes() == cmd) {
        Some(c) => c,
        None => {
            let mut text = lossy(&cmd[..cmd.len().min(40)]);
            if cmd.len() > 40 {
                text.push('…');
            }
            return Err(ParseError::UnknownCommand(text));
        }
    };
    let p = Params { command, rest };
    Ok(match command {
        "AUTH" => {
            let (u, t) = split_word(rest);
            Message::Auth {
                uuid: p.uuid(u)?,
                token: AuthToken::parse(t).ok_or(ParseError::BadToken)?,
            }
        }
        "AUTH-SUCCESS" => Message::AuthSuccess(p.uuid(rest)?),
        "AUTH-FAILURE" => p.none(Message::AuthFailure)?,
        "VERSION" => Message::Version(p.number(rest)?),
        "CONNECT" => Message::Connect(
            Service::parse(rest).ok_or_else(|| ParseError::BadService(lossy(rest)))?,
        ),
        "CONNECTDONE" => Message::ConnectDone(p.exit_code(rest)?),
        "NOTIFYCHANGE" => p.none(Message::NotifyChange)?,
        "CHANGED" => Message::Changed(words(rest).map(lossy).collect()),
        "CHECKPRESENT" => Message::CheckPresent(p.key(rest)?),
        "LOCKCONTENT" => Message::LockContent(p.key(rest)?),
        "UNLOCKCONTENT" => p.none(Message::UnlockContent)?,
        "REMOVE" => Message::Remove(p.key(rest)?),
        "REMOVE-BEFORE" => {
            let (ts, k) = split_word(rest);
            Message::RemoveBefore {
                timestamp: p.number(ts)?,
                key: p.key(k)?,
            }
        }
        "GETTIMESTAMP" => p.none(Message::GetTimestamp)?,
        "GET" => {
            let (o, r) = split_word(rest);
            let (af, k) = split_word(r);
            Message::Get {
                offset: p.number(o)?,
                af: p.af(af)?,
                key: p.key(k)?,
            }
        }
        "PUT" => {
            let (af, k) = split_word(rest);
            Message::Put {
                af: p.af(af)?,
                key: p.key(k)?,
            }
        }
        "PUT-FROM" => Message::PutFrom(p.number(rest)?),
        "ALREADY-HAVE" => p.none(Message::AlreadyHave)?,
        "ALREADY-HAVE-PLUS" => Message::AlreadyHavePlus(p.uuids()?),
        "SUCCESS" => p.none(Message::Success)?,
        "SUCCESS-PLUS" => Message::SuccessPlus(p.uuids()?),
        "FAILURE" => p.none(Message::Failure)?,
        "FAILURE-PLUS" => Message::FailurePlus(p.uuids()?),
        "BYPASS" => Message::Bypass(p.uuids()?),
        "DATA" => Message::Data(p.number(rest)?),
        "DATA-PRESENT" => p.none(Message::DataPresent)?,
        "VALID" => p.none(Message::Valid)?,
        "INVALID" => p.none(Message::Invalid)?,
        "TIMESTAMP" => Message::Timestamp(p.number(rest)?),
        "ERROR" => Message::Error(lossy(rest)),
        // (COMMANDS and the arms above list the same names; should they ever differ,
        // the line is simply not understood.)
        other => return Err(ParseError::UnknownCommand(other.to_string())),
    })
}

const COMMANDS: &[&str] = &[
    "AUTH",
    "AUTH-SUCCESS",
    "AUTH-FAILURE",
    "VERSION",
    "CONNECT",
    "CONNECTDONE",
    "NOTIFYCHANGE",
    "CHANGED",
    "CHECKPRESENT",
    "LOCKCONTENT",
    "UNLOCKCONTENT",
    "REMOVE",
    "REMOVE-BEFORE",
    "GETTIMESTAMP",
    "GET",
    "PUT",
    "PUT-FROM",
    "ALREADY-HAVE",
    "ALREADY-HAVE-PLUS",
    "SUCCESS",
    "SUCCESS-PLUS",
    "FAILURE",
    "FAILURE-PLUS",
    "BYPASS",
    "DATA",
    "DATA-PRESENT",
    "VALID",
    "INVALID",
    "TIMESTAMP",
    "ERROR",
];

struct Params<'a> {
    command: &'static str,
    rest: &'a [u8],
}

impl Params<'_> {
    fn none(&self, m: Message) -> Result<Message, ParseError> {
        if self.rest.is_empty() {
            Ok(m)
        } else {
            Err(ParseError::ExtraParameters {
                command: self.command,
            })
        }
    }
    fn number(&self, s: &[u8]) -> Result<u64, ParseError> {
        match read_integer(s) {
            Some((false, n, _)) | Some((true, n @ 0, _)) => Ok(n),
            _ => Err(ParseError::BadNumber {
                command: self.command,
                text: lossy(s),
            }),
        }
    }
    fn exit_code(&self, s: &[u8]) -> Result<i64, ParseError> {
        let bad = || ParseError::BadNumber {
            command: self.command,
            text: lossy(s),
        };
        // git-annex reads an exit code strictly: nothing but whitespace may follow.
        let (neg, n, rest) = read_integer(s).ok_or_else(bad)?;
        if !rest.iter().all(|&b| is_space(b)) {
            return Err(bad());
        }
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        Ok(if neg { -n } else { n })
    }
    fn key(&self, s: &[u8]) -> Result<Key, ParseError> {
        Key::parse(s).map_err(|error| ParseError::BadKey {
            command: self.command,
            error,
        })
    }
    fn uuid(&self, s: &[u8]) -> Result<Uuid, ParseError> {
        Uuid::parse_bytes(s).map_err(|_| ParseError::BadUuid {
            command: self.command,
            text: lossy(s),
        })
    }
    fn uuids(&self) -> Result<Vec<Uuid>, ParseError> {
        words(self.rest).map(|w| self.uuid(w)).collect()
    }
    fn af(&self, s: &[u8]) -> Result<AssociatedFile, ParseError> {
        AssociatedFile::decode(s).map_err(|error| ParseError::BadAssociatedFile {
            command: self.command,
            error,
        })
    }
}

/// Haskell's `reads` for an `Integer`, first result: `(negative, magnitude, rest)`.
/// The magnitude saturates at `u64::MAX`.
fn read_integer(s: &[u8]) -> Option<(bool, u64, &[u8])> {
    let skip = |mut i: usize| {
        while i < s.len() && is_space(s[i]) {
            i += 1;
        }
        i
    };
    let mut i = skip(0);
    let mut parens = 0usize;
    while s.get(i) == Some(&b'(') {
        parens += 1;
        i = skip(i + 1);
    }
    let negative = s.get(i) == Some(&b'-');
    if negative {
        i = skip(i + 1);
    }
    let (n, mut i) = lex_number(s, i)?;
    for _ in 0..parens {
        i = skip(i);
        if s.get(i) != Some(&b')') {
            return None;
        }
        i += 1;
    }
    Some((negative, n, &s[i..]))
}

/// One Haskell number lexeme at `i`, as an integer: decimal, `0x` hex or `0o` octal.
/// A decimal with a fraction or exponent is a fractional lexeme: no integer.
fn lex_number(s: &[u8], i: usize) -> Option<(u64, usize)> {
    let at = |j: usize| s.get(j).copied().unwrap_or(0);
    let digits = |start: usize, radix: u32| -> (u64, usize) {
        let mut j = start;
        let mut n: u64 = 0;
        // `at` gives 0 past the end, which is no digit in any radix.
        while let Some(d) = (at(j) as char).to_digit(radix) {
            n = n
                .checked_mul(u64::from(radix))
                .and_then(|n| n.checked_add(u64::from(d)))
                .unwrap_or(u64::MAX);
            j += 1;
        }
        (n, j)
    };
    if at(i) == b'0' && matches!(at(i + 1), b'x' | b'X') && at(i + 2).is_ascii_hexdigit() {
        return Some(digits(i + 2, 16));
    }
    if at(i) == b'0' && matches!(at(i + 1), b'o' | b'O') && (b'0'..=b'7').contains(&at(i + 2)) {
        return Some(digits(i + 2, 8));
    }
    if !at(i).is_ascii_digit() {
        return None;
    }
    let (n, j) = digits(i, 10);
    if at(j) == b'.' && at(j + 1).is_ascii_digit() {
        return None;
    }
    if matches!(at(j), b'e' | b'E')
        && (at(j + 1).is_ascii_digit()
            || (matches!(at(j + 1), b'+' | b'-') && at(j + 2).is_ascii_digit()))
    {
        return None;
    }
    Some((n, j))
}

impl Message {
    /// The command word.
    pub fn command(&self) -> &'static str {
        match self {
            Message::Auth { .. } => "AUTH",
            Message::AuthSuccess(_) => "AUTH-SUCCESS",
            Message::AuthFailure => "AUTH-FAILURE",
            Message::Version(_) => "VERSION",
            Message::Connect(_) => "CONNECT",
            Message::ConnectDone(_) => "CONNECTDONE",
            Message::NotifyChange => "NOTIFYCHANGE",
            Message::Changed(_) => "CHANGED",
            Message::CheckPresent(_) => "CHECKPRESENT",
            Message::LockContent(_) => "LOCKCONTENT",
            Message::UnlockContent => "UNLOCKCONTENT",
            Message::Remove(_) => "REMOVE",
            Message::RemoveBefore { .. } => "REMOVE-BEFORE",
            Message::GetTimestamp => "GETTIMESTAMP",
            Message::Get { .. } => "GET",
            Message::Put { .. } => "PUT",
            Message::PutFrom(_) => "PUT-FROM",
            Message::AlreadyHave => "ALREADY-HAVE",
            Message::AlreadyHavePlus(_) => "ALREADY-HAVE-PLUS",
            Message::Success => "SUCCESS",
            Message::SuccessPlus(_) => "SUCCESS-PLUS",
            Message::Failure => "FAILURE",
            Message::FailurePlus(_) => "FAILURE-PLUS",
            Message::Bypass(_) => "BYPASS",
            Message::Data(_) => "DATA",
            Message::DataPresent => "DATA-PRESENT",
            Message::Valid => "VALID",
            Message::Invalid => "INVALID",
            Message::Timestamp(_) => "TIMESTAMP",
            Message::Error(_) => "ERROR",
        }
    }

    /// Append the message's line, `\n` included, exactly as git-annex writes it: the
    /// command word and each parameter joined by one space (so an empty associated file
    /// gives `PUT  KEY`, and `ERROR` with an empty text `ERROR `). Newlines inside an
    /// error text or ref name are written as spaces: they would end the line.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.command().as_bytes());
        let param = |out: &mut Vec<u8>, p: &[u8]| {
            out.push(b' ');
            out.extend_from_slice(p);
        };
        let num = |n: &dyn fmt::Display| n.to_string().into_bytes();
        match self {
            Message::Auth { uuid, token } => {
                param(out, uuid.as_str().as_bytes());
                param(out, token.as_str().as_bytes());
            }
            Message::AuthSuccess(u) => param(out, u.as_str().as_bytes()),
            Message::Version(n)
            | Message::PutFrom(n)
            | Message::Data(n)
            | Message::Timestamp(n) => param(out, &num(n)),
            Message::Connect(s) => param(out, s.as_str().as_bytes()),
            Message::ConnectDone(c) => param(out, &num(c)),
            Message::Changed(refs) => {
                // One parameter holding the space-joined refs: `CHANGED ` when empty.
                param(out, &single_line(&refs.join(" ")));
            }
            Message::CheckPresent(k) | Message::LockContent(k) | Message::Remove(k) => {
                param(out, k.as_bytes())
            }
            Message::RemoveBefore { timestamp, key } => {
                param(out, &num(timestamp));
                param(out, key.as_bytes());
            }
            Message::Get { offset, af, key } => {
                param(out, &num(offset));
                param(out, &af.encode());
                param(out, key.as_bytes());
            }
            Message::Put { af, key } => {
                param(out, &af.encode());
                param(out, key.as_bytes());
            }
            Message::AlreadyHavePlus(us)
            | Message::SuccessPlus(us)
            | Message::FailurePlus(us)
            | Message::Bypass(us) => {
                // A list: each item its own parameter, nothing at all when empty.
                for u in us {
                    param(out, u.as_str().as_bytes());
                }
            }
            Message::Error(text) => param(out, &single_line(text)),
            Message::AuthFailure
            | Message::NotifyChange
            | Message::UnlockContent
            | Message::GetTimestamp
            | Message::AlreadyHave
            | Message::Success
            | Message::Failure
            | Message::DataPresent
            | Message::Valid
            | Message::Invalid => {}
        }
        out.push(b'\n');
    }

    /// The message's line, `\n` included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        self.encode(&mut v);
        v
    }
}

fn single_line(s: &str) -> Vec<u8> {
    s.bytes()
        .map(|b| if b == b'\n' { b' ' } else { b })
        .collect()
}

impl fmt::Display for Message {
    /// The line without its newline (lossy for non-UTF-8 keys).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.to_bytes();
        f.write_str(&String::from_utf8_lossy(&b[..b.len() - 1]))
    }
}

#[cfg(test)]
mod tests;
