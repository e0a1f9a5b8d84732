//! Request routing for the p2phttp API, without I/O: a request's method, path, query and
//! headers in, a typed request or git-annex's exact error response out.
//!
//! The API (spec `p2phttp.md` §4) has one route per endpoint and protocol version:
//! `/git-annex/{U}/{v0..v4}/{endpoint}` (`key/{K}` for content), plus the unversioned
//! `/git-annex/{U}/key/{K}`. git-annex's server is built with servant, and clients see
//! servant's way of failing, so this module reproduces it:
//!
//! * Every route whose path shape fits (same number of segments, literal segments equal;
//!   one trailing empty segment is ignored) is tried in the API's order. Within a route
//!   the checks run in servant's order: captures (server UUID, version, key), method,
//!   `Accept`, query parameters, headers.
//! * A failing capture, method or `Accept` check only rules the route out; when every
//!   route is ruled out the "best" of their errors wins, by servant's priority
//!   404 < 405 < 401 < 415 < 406 < other < 400, the earliest route on ties. That is why
//!   `POST …/v4/nosuch` is `404` but `GET …/v4/checkpresent` is `400 bad version` (the
//!   v3 route's version capture failed, which beats the v4 route's 405).
//! * A failing parameter or header check ends routing at once with that `400`.
//!
//! Values in captures and parameters are percent-decoded (`+` is a space in the query),
//! taken as UTF-8, and when written `[...]` decoded from base64url (padding required).
//! Numbers are read as Haskell's `read` does for integers (surrounding blanks allowed).

use crate::types::{AssociatedFile, Key};

/// An HTTP error response as git-annex's server gives it: a status, a plain-text body
/// (often empty), and for `401` the `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {body}")]
pub struct HttpError {
    pub status: u16,
    pub body: String,
    pub www_authenticate: bool,
}

impl HttpError {
    pub fn new(status: u16, body: impl Into<String>) -> HttpError {
        HttpError {
            status,
            body: body.into(),
            www_authenticate: false,
        }
    }
    pub fn not_found() -> HttpError {
        HttpError::new(404, "")
    }
    /// `401` with `WWW-Authenticate: Basic realm="git-annex", charset="UTF-8"`.
    pub fn unauthorized() -> HttpError {
        HttpError {
            status: 401,
            body: String::new(),
            www_authenticate: true,
        }
    }
    pub fn forbidden() -> HttpError {
        HttpError::new(403, "")
    }
}

/// The `WWW-Authenticate` value of a `401`.
pub const AUTH_CHALLENGE: &str = "Basic realm=\"git-annex\", charset=\"UTF-8\"";

/// Credentials from an `Authorization: Basic` header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BasicAuth {
    pub user: Vec<u8>,
    pub password: Vec<u8>,
}

/// What a request asks for, with its own parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Content from `offset` (`GET …/key/K`; the unversioned form has offset 0, no file).
    Get {
        key: Key,
        af: AssociatedFile,
        offset: u64,
    },
    CheckPresent {
        key: Key,
    },
    Remove {
        key: Key,
    },
    /// `timestamp` as sent; a negative one can never be in the future.
    RemoveBefore {
        key: Key,
        timestamp: i128,
    },
    GetTimestamp,
    /// `data_length` is the `X-git-annex-data-length` header as sent (may be negative).
    Put {
        key: Key,
        af: AssociatedFile,
        offset: u64,
        data_length: i128,
        data_present: bool,
    },
    PutOffset {
        key: Key,
    },
    LockContent {
        key: Key,
    },
    KeepLocked {
        lockid: String,
    },
}

impl Call {
    /// The endpoint's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Get { .. } => "key",
            Call::CheckPresent { .. } => "checkpresent",
            Call::Remove { .. } => "remove",
            Call::RemoveBefore { .. } => "remove-before",
            Call::GetTimestamp => "gettimestamp",
            Call::Put { .. } => "put",
            Call::PutOffset { .. } => "putoffset",
            Call::LockContent { .. } => "lockcontent",
            Call::KeepLocked { .. } => "keeplocked",
        }
    }
}

/// A request that passed routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// The server UUID from the path (decoded; never empty).
    pub server: String,
    /// The protocol version; `None` for the unversioned key GET (served as v0).
    pub version: Option<u8>,
    pub call: Call,
    /// `clientuuid` (the unversioned GET and keeplocked may omit it).
    pub client: Option<String>,
    /// `bypass` values, in order.
    pub bypass: Vec<String>,
    pub auth: Option<BasicAuth>,
    /// A `HEAD` request (only for content): answer with the headers alone.
    pub head: bool,
}

/// One HTTP request as routing needs it.
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The path as sent, still percent-encoded, without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// Header lookup by (case-insensitive) name.
    pub header: &'a dyn Fn(&str) -> Option<&'a [u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Key,
    CheckPresent,
    Remove,
    RemoveBefore,
    GetTimestamp,
    Put,
    PutOffset,
    LockContent,
    KeepLocked,
    GenericKey,
}

impl Endpoint {
    fn literal(self) -> &'static str {
        match self {
            Endpoint::Key | Endpoint::GenericKey => "key",
            Endpoint::CheckPresent => "checkpresent",
            Endpoint::Remove => "remove",
            Endpoint::RemoveBefore => "remove-before",
            Endpoint::GetTimestamp => "gettimestamp",
            Endpoint::Put => "put",
            Endpoint::PutOffset => "putoffset",
            Endpoint::LockContent => "lockcontent",
            Endpoint::KeepLocked => "keeplocked",
        }
    }
    fn is_get(self) -> bool {
        matches!(self, Endpoint::Key | Endpoint::GenericKey)
    }
}

/// The API's routes in git-annex's order (which decides ties between errors).
const ROUTES: &[(Endpoint, Option<u8>)] = &[
    (Endpoint::Key, Some(4)),
    (Endpoint::Key, Some(3)),
    (Endpoint::Key, Some(2)),
    (Endpoint::Key, Some(1)),
    (Endpoint::Key, Some(0)),
    (Endpoint::CheckPresent, Some(4)),
    (Endpoint::CheckPresent, Some(3)),
    (Endpoint::CheckPresent, Some(2)),
    (Endpoint::CheckPresent, Some(1)),
    (Endpoint::CheckPresent, Some(0)),
    (Endpoint::Remove, Some(4)),
    (Endpoint::Remove, Some(3)),
    (Endpoint::Remove, Some(2)),
    (Endpoint::Remove, Some(1)),
    (Endpoint::Remove, Some(0)),
    (Endpoint::RemoveBefore, Some(4)),
    (Endpoint::RemoveBefore, Some(3)),
    (Endpoint::GetTimestamp, Some(4)),
    (Endpoint::GetTimestamp, Some(3)),
    (Endpoint::Put, Some(4)),
    (Endpoint::Put, Some(3)),
    (Endpoint::Put, Some(2)),
    (Endpoint::Put, Some(1)),
    (Endpoint::Put, Some(0)),
    (Endpoint::PutOffset, Some(4)),
    (Endpoint::PutOffset, Some(3)),
    (Endpoint::PutOffset, Some(2)),
    (Endpoint::PutOffset, Some(1)),
    (Endpoint::LockContent, Some(4)),
    (Endpoint::LockContent, Some(3)),
    (Endpoint::LockContent, Some(2)),
    (Endpoint::LockContent, Some(1)),
    (Endpoint::LockContent, Some(0)),
    (Endpoint::KeepLocked, Some(4)),
    (Endpoint::KeepLocked, Some(3)),
    (Endpoint::KeepLocked, Some(2)),
    (Endpoint::KeepLocked, Some(1)),
    (Endpoint::KeepLocked, Some(0)),
    (Endpoint::GenericKey, None),
];

/// servant's preference among the errors of routes that did not apply.
fn priority(status: u16) -> u8 {
    match status {
        404 => 0,
        405 => 1,
        401 => 2,
        415 => 3,
        406 => 4,
        400 => 6,
        _ => 5,
    }
}

/// Route a request.
pub fn route(req: &RequestParts<'_>) -> Result<Routed, HttpError> {
    route_limited(req, 4)
}

/// Route a request as a server that has only the routes up to protocol version
/// `max_version` would (a git-annex older than the API's newest version answers newer
/// requests `400 bad version` where older routes of the endpoint exist, else `404`).
pub fn route_limited(req: &RequestParts<'_>, max_version: u8) -> Result<Routed, HttpError> {
    let mut segs = path_segments(req.path);
    if segs.len() > 1 && segs.last().is_some_and(|s| s.is_empty()) {
        segs.pop();
    }
    let query = parse_query(req.query.unwrap_or(""));
    let mut best: Option<HttpError> = None;
    for &(ep, version) in ROUTES {
        if version.is_some_and(|v| v > max_version) || !shape_fits(&segs, ep, version) {
            continue;
        }
        match try_route(req, &segs, &query, ep, version) {
            Ok(r) => return Ok(r),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Next(e)) => {
                best = Some(match best {
                    Some(b) if priority(e.status) <= priority(b.status) => b,
                    _ => e,
                });
            }
        }
    }
    Err(best.unwrap_or_else(HttpError::not_found))
}

enum Failure {
    /// This route does not apply; try the others.
    Next(HttpError),
    /// Stop routing with this error.
    Fatal(HttpError),
}

fn shape_fits(segs: &[String], ep: Endpoint, version: Option<u8>) -> bool {
    if segs.first().map(String::as_str) != Some("git-annex") {
        return false;
    }
    match (ep, version) {
        (Endpoint::GenericKey, _) => segs.len() == 4 && segs[2] == "key",
        (Endpoint::Key, Some(_)) => segs.len() == 5 && segs[3] == "key",
        (ep, Some(_)) => segs.len() == 4 && segs[3] == ep.literal(),
        _ => false,
    }
}

fn try_route(
    req: &RequestParts<'_>,
    segs: &[String],
    query: &[(String, Option<String>)],
    ep: Endpoint,
    version: Option<u8>,
) -> Result<Routed, Failure> {
    let next = |body: &str| Failure::Next(HttpError::new(400, body));
    // Captures: server UUID, version, key.
    let server = decode_uuid(&segs[1]).map_err(|e| next(&e))?;
    let key_capture = match (ep, version) {
        (Endpoint::GenericKey, _) => Some(&segs[3]),
        (_, Some(v)) => {
            if segs[2] != format!("v{v}") {
                return Err(next("bad version"));
            }
            (ep == Endpoint::Key).then(|| &segs[4])
        }
        _ => None,
    };
    let captured_key = match key_capture {
        Some(k) => Some(decode_key(k).map_err(|e| next(&e))?),
        None => None,
    };
    // Method.
    let head = req.method == "HEAD";
    let method_ok = if ep.is_get() {
        req.method == "GET" || head
    } else {
        req.method == "POST"
    };
    if !method_ok {
        return Err(Failure::Next(HttpError::new(405, "")));
    }
    // Accept.
    let offered: &[&str] = if ep.is_get() {
        &["application/octet-stream"]
    } else {
        &["application/json;charset=utf-8", "application/json"]
    };
    if let Some(accept) = (req.header)("accept") {
        if !accepts(accept, offered) {
            return Err(Failure::Next(HttpError::new(406, "")));
        }
    }
    // Query parameters, in the API's declaration order.
    let q = Params(query);
    let fatal = Failure::Fatal;
    let data_present = if ep == Endpoint::Put && version == Some(4) {
        q.optional("data-present", parse_bool).map_err(fatal)?
    } else {
        None
    };
    let key_param = match ep {
        Endpoint::CheckPresent
        | Endpoint::Remove
        | Endpoint::RemoveBefore
        | Endpoint::Put
        | Endpoint::PutOffset
        | Endpoint::LockContent => Some(q.required("key", decode_key).map_err(fatal)?),
        _ => None,
    };
    let lockid = if ep == Endpoint::KeepLocked {
        Some(q.required("lockid", decode_uuid).map_err(fatal)?)
    } else {
        None
    };
    let client = if matches!(ep, Endpoint::GenericKey | Endpoint::KeepLocked) {
        q.optional("clientuuid", decode_uuid).map_err(fatal)?
    } else {
        Some(q.required("clientuuid", decode_uuid).map_err(fatal)?)
    };
    let bypass = q.all("bypass", decode_uuid).map_err(fatal)?;
    let timestamp = if ep == Endpoint::RemoveBefore {
        Some(
            q.required("timestamp", |v| {
                parse_integer(v).ok_or_else(|| "timestamp parse error".to_string())
            })
            .map_err(fatal)?,
        )
    } else {
        None
    };
    let (af, offset) = if matches!(ep, Endpoint::Key | Endpoint::Put) {
        let af = q
            .optional("associatedfile", decode_bytes)
            .map_err(fatal)?
            .map(AssociatedFile::new)
            .unwrap_or_default();
        let offset = q.optional("offset", parse_offset).map_err(fatal)?;
        (af, offset.unwrap_or(0))
    } else {
        (AssociatedFile::none(), 0)
    };
    // Headers.
    let data_length = if ep == Endpoint::Put {
        const H: &str = "X-git-annex-data-length";
        match (req.header)(H) {
            None => {
                return Err(fatal(HttpError::new(
                    400,
                    format!("Header {H} is required"),
                )))
            }
            Some(v) => Some(
                std::str::from_utf8(v)
                    .ok()
                    .and_then(parse_integer)
                    .ok_or_else(|| {
                        fatal(HttpError::new(
                            400,
                            format!("Error parsing header {H} failed: {H} parse error"),
                        ))
                    })?,
            ),
        }
    } else {
        None
    };
    let auth = match (req.header)("authorization") {
        None => None,
        Some(v) => Some(parse_basic_auth(v).ok_or_else(|| {
            fatal(HttpError::new(
                400,
                "Error parsing header Authorization failed: invalid basic auth header",
            ))
        })?),
    };

    let key = || {
        captured_key
            .clone()
            .or_else(|| key_param.clone())
            .expect("every endpoint that needs a key parsed one")
    };
    let call = match ep {
        Endpoint::Key | Endpoint::GenericKey => Call::Get {
            key: key(),
            af,
            offset,
        },
        Endpoint::CheckPresent => Call::CheckPresent { key: key() },
        Endpoint::Remove => Call::Remove { key: key() },
        Endpoint::RemoveBefore => Call::RemoveBefore {
            key: key(),
            timestamp: timestamp.unwrap_or(0),
        },
        Endpoint::GetTimestamp => Call::GetTimestamp,
        Endpoint::Put => Call::Put {
            key: key(),
            af,
            offset,
            data_length: data_length.unwrap_or(0),
            data_present: data_present == Some(true),
        },
        Endpoint::PutOffset => Call::PutOffset { key: key() },
        Endpoint::LockContent => Call::LockContent { key: key() },
        Endpoint::KeepLocked => Call::KeepLocked {
            lockid: lockid.unwrap_or_default(),
        },
    };
    Ok(Routed {
        server,
        version,
        call,
        client,
        bypass,
        auth,
        head: head && ep.is_get(),
    })
}

/// Query parameters: the first occurrence of a name counts; a name without `=` has no
/// value (absent for single parameters, skipped in lists).
struct Params<'a>(&'a [(String, Option<String>)]);

impl Params<'_> {
    fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }
    fn required<T>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, HttpError> {
        match self.first(name) {
            None => Err(HttpError::new(
                400,
                format!("Query parameter {name} is required"),
            )),
            Some(v) => parse(v).map_err(|e| {
                HttpError::new(
                    400,
                    format!("Error parsing query parameter {name} failed: {e}"),
                )
            }),
        }
    }
    fn optional<T>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, HttpError> {
        match self.first(name) {
            None => Ok(None),
            Some(v) => parse(v).map(Some).map_err(|e| {
                HttpError::new(
                    400,
                    format!("Error parsing query parameter {name} failed: {e}"),
                )
            }),
        }
    }
    fn all<T>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, HttpError> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .filter_map(|(_, v)| v.as_deref())
            .map(|v| {
                parse(v).map_err(|e| {
                    HttpError::new(
                        400,
                        format!("Error parsing query parameter(s) {name} failed: {e}"),
                    )
                })
            })
            .collect()
    }
}

/// Path segments, percent-decoded (as UTF-8, invalid sequences replaced).
pub fn path_segments(path: &str) -> Vec<String> {
    let p = path.strip_prefix('/').unwrap_or(path);
    if p.is_empty() {
        return Vec::new();
    }
    p.split('/')
        .map(|s| String::from_utf8_lossy(&percent_decode(s.as_bytes(), false)).into_owned())
        .collect()
}

/// The query string as (name, value) pairs, split on `&` and `;`, percent-decoded with
/// `+` as a space; empty pieces dropped.
pub fn parse_query(q: &str) -> Vec<(String, Option<String>)> {
    q.split(['&', ';'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let text =
                |s: &str| String::from_utf8_lossy(&percent_decode(s.as_bytes(), true)).into_owned();
            match p.split_once('=') {
                Some((k, v)) => (text(k), Some(text(v))),
                None => (text(p), None),
            }
        })
        .collect()
}

/// Percent-decoding; a `%` not followed by two hex digits stays as it is.
pub fn percent_decode(s: &[u8], plus_is_space: bool) -> Vec<u8> {
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => match (
                s.get(i + 1).and_then(|&b| hex(b)),
                s.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// A value as the API carries it: text, or `[base64url]` for any bytes.
pub fn decode_bytes(v: &str) -> Result<Vec<u8>, String> {
    match v.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        Some(inner) => base64_decode(inner.as_bytes(), false)
            .ok_or_else(|| "unable to base64 decode [] wrapped value".to_string()),
        None => Ok(v.as_bytes().to_vec()),
    }
}

/// The form a client sends a value in: as it is when it is UTF-8 and not itself
/// bracketed, else `[base64url]`.
pub fn encode_value(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if !(s.starts_with('[') && s.ends_with(']')) => s.to_string(),
        _ => format!("[{}]", base64_encode(b)),
    }
}

fn decode_uuid(v: &str) -> Result<String, String> {
    let b = decode_bytes(v)?;
    if b.is_empty() {
        return Err("empty UUID".into());
    }
    Ok(String::from_utf8_lossy(&b).into_owned())
}

fn decode_key(v: &str) -> Result<Key, String> {
    let b = decode_bytes(v)?;
    Key::parse(&b).map_err(|_| "key parse error".to_string())
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("could not parse: `{v}'")),
    }
}

fn parse_offset(v: &str) -> Result<u64, String> {
    // git-annex reads any integer; a negative offset makes its server announce more
    // bytes than it sends. We refuse it instead.
    parse_integer(v)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| "offset parse error".to_string())
}

/// An integer as Haskell's `read` takes it: blanks around, an optional `-`, digits.
pub fn parse_integer(v: &str) -> Option<i128> {
    let t = v.trim_matches(|c: char| c.is_ascii_whitespace());
    let (neg, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i128 = digits.parse().ok()?;
    Some(if neg { -n } else { n })
}

/// `Basic <base64(user:password)>`. git-annex's own client encodes with the base64url
/// alphabet, other clients with the standard one; both are accepted.
pub fn parse_basic_auth(v: &[u8]) -> Option<BasicAuth> {
    let split = v
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let (scheme, rest) = v.split_at(split);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let rest: Vec<u8> = rest
        .iter()
        .copied()
        .skip_while(|b| b.is_ascii_whitespace())
        .collect();
    let decoded = base64_decode(&rest, true)?;
    if decoded.is_empty() {
        return None;
    }
    let (user, password) = match decoded.iter().position(|&b| b == b':') {
        Some(i) => (decoded[..i].to_vec(), decoded[i + 1..].to_vec()),
        None => (decoded, Vec::new()),
    };
    Some(BasicAuth { user, password })
}

/// Whether an `Accept` header admits one of the offered media types.
pub fn accepts(header: &[u8], offered: &[&str]) -> bool {
    let Ok(text) = std::str::from_utf8(header) else {
        return false;
    };
    if text.trim().is_empty() {
        return true;
    }
    let parse = |s: &str| -> (String, String, Vec<(String, String)>) {
        let mut parts = s.split(';');
        let mt = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let (t, st) = mt.split_once('/').unwrap_or((mt.as_str(), ""));
        let params = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| {
                (
                    k.trim().to_ascii_lowercase(),
                    v.trim().trim_matches('"').to_ascii_lowercase(),
                )
            })
            .collect();
        (t.to_string(), st.to_string(), params)
    };
    let offers: Vec<_> = offered.iter().map(|o| parse(o)).collect();
    text.split(',').any(|range| {
        let (t, st, params) = parse(range);
        let q_zero = params
            .iter()
            .any(|(k, v)| k == "q" && v.parse::<f32>().map(|q| q <= 0.0).unwrap_or(false));
        if q_zero || t.is_empty() {
            return false;
        }
        offers.iter().any(|(ot, ost, oparams)| {
            (t == "*" || &t == ot)
                && (st == "*" || &st == ost)
                && params
                    .iter()
                    .filter(|(k, _)| k != "q")
                    .all(|p| oparams.contains(p))
        })
    })
}

const B64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url with `=` padding.
pub fn base64_encode(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                out.push(B64_URL[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Strict base64 decoding: the length a multiple of 4, `=` only as padding at the end.
/// The base64url alphabet, and with `standard_too` also `+` and `/`.
pub fn base64_decode(s: &[u8], standard_too: bool) -> Option<Vec<u8>> {
    if s.len() % 4 != 0 {
        return None;
    }
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            b'+' if standard_too => 62,
            b'/' if standard_too => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let quads = s.len() / 4;
    for (qi, q) in s.chunks(4).enumerate() {
        let last = qi + 1 == quads;
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut v = 0u32;
        for &c in &q[..4 - pad] {
            v = (v << 6) | val(c)?;
        }
        v <<= 6 * pad as u32;
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests;
