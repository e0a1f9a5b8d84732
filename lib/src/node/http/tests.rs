//! HttpNode against scripted servers on 127.0.0.1: what goes on the wire (paths, query,
//! headers, a put body one byte short for INVALID), version fallback, and the faults a
//! real server rarely shows on demand (error texts, slow answers, bodies of the wrong
//! length, missing headers, refused credentials). The integration tests run it against
//! annexgate-http and `git annex p2phttp`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::*;
use crate::http::route::{parse_query, path_segments};
use crate::node::conformance::{fetch, key_for, store_chunked, test_data};
use crate::node::{PutStart, Validity};

const NODE: &str = "aaaaaaaa-1111-4222-8333-444444444444";
const GW: &str = "bbbbbbbb-1111-4222-8333-444444444444";

/// A request as the scripted server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Decoded path segments.
    path: Vec<String>,
    query: Vec<(String, Option<String>)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }
    fn version(&self) -> &str {
        &self.path[2]
    }
}

/// What the server answers.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    delay: Duration,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
        delay: Duration::ZERO,
    }
}

type Script = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

struct Scripted {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_body(r: &mut BufReader<tokio::net::TcpStream>, head: &Seen) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    if head
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).await.ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 {
                let mut end = String::new();
                r.read_line(&mut end).await.ok()?;
                return Some(body);
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).await.ok()?;
            body.extend_from_slice(&chunk[..n]);
        }
    }
    let len: usize = head
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    body.resize(len, 0);
    r.read_exact(&mut body).await.ok()?;
    Some(body)
}

async fn scripted(script: Script) -> Scripted {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = l.accept().await else {
                return;
            };
            let (script, log) = (script.clone(), log.clone());
            tokio::spawn(async move {
                let mut r = BufReader::new(sock);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or("").to_string();
                    let target = parts.next().unwrap_or("").to_string();
                    let mut headers = Vec::new();
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            headers.push((k.trim().to_string(), v.trim().to_string()));
                        }
                    }
                    let (p, q) = target.split_once('?').unwrap_or((&target, ""));
                    let mut seen = Seen {
                        method,
                        path: path_segments(p),
                        query: parse_query(q),
                        headers,
                        body: Vec::new(),
                    };
                    let Some(body) = read_body(&mut r, &seen).await else {
                        return;
                    };
                    seen.body = body;
                    log.lock().unwrap().push(seen.clone());
                    let rep = script(&seen);
                    tokio::time::sleep(rep.delay).await;
                    let mut out = format!(
                        "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
                        rep.status,
                        rep.body.len()
                    );
                    for (k, v) in &rep.headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    let w = r.get_mut();
                    if w.write_all(out.as_bytes()).await.is_err()
                        || w.write_all(&rep.body).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Scripted { port, seen, task }
}

fn node(port: u16, timeout: Duration) -> HttpNode {
    let url = P2pHttpUrl::parse(&format!("annex+http://127.0.0.1:{port}/git-annex")).unwrap();
    let mut cfg = HttpNodeConfig::new(
        Uuid::parse(NODE).unwrap(),
        "scripted",
        url,
        Uuid::parse(GW).unwrap(),
    );
    cfg.bypass = vec![Uuid::parse(GW).unwrap()];
    cfg.timeout = timeout;
    let pool = HttpPool::new(HttpPoolOptions {
        credentials: CredentialHelper {
            git: Some("/nonexistent/git".into()),
            ..CredentialHelper::default()
        },
        ..HttpPoolOptions::default()
    })
    .unwrap();
    HttpNode::new(cfg, pool)
}

#[tokio::test]
async fn requests_carry_what_git_annex_sends() {
    let data = test_data(10_000, 1);
    let key = key_for(&data);
    let srv = scripted(Arc::new(|s: &Seen| match s.path[3].as_str() {
        "putoffset" => reply(200, r#"{"offset":0}"#),
        "put" => reply(200, r#"{"plusuuids":[],"stored":true}"#),
        _ => reply(200, r#"{"present":true}"#),
    }))
    .await;
    let n = node(srv.port, Duration::from_secs(10));
    assert!(n.check_present(&key).await.unwrap());
    // Marked invalid: the body goes one byte short.
    let s = store_chunked(&n, &key, &data, Validity::Invalid, 3000)
        .await
        .unwrap();
    assert!(s.stored);
    let seen = srv.seen.lock().unwrap().clone();
    let names: Vec<&str> = seen.iter().map(|s| s.path[3].as_str()).collect();
    assert_eq!(names, ["checkpresent", "putoffset", "put"]);
    for s in &seen {
        assert_eq!(s.method, "POST");
        assert_eq!(
            (s.path[0].as_str(), s.path[1].as_str()),
            ("git-annex", NODE)
        );
        assert_eq!(s.version(), "v4");
        assert_eq!(s.param("clientuuid"), Some(GW));
        assert_eq!(s.param("bypass"), Some(GW));
        assert_eq!(s.param("key"), Some(key.to_string().as_str()));
        assert_eq!(
            s.header("accept"),
            Some("application/json;charset=utf-8,application/json")
        );
    }
    let put = &seen[2];
    assert_eq!(put.header("x-git-annex-data-length"), Some("10000"));
    assert_eq!(put.param("offset"), Some("0"));
    assert_eq!(put.body, &data[..9999], "one byte short");
}

#[tokio::test]
async fn versions_step_down_on_404_and_bad_version_and_stay_down() {
    let srv = scripted(Arc::new(|s: &Seen| match s.version() {
        "v4" => reply(404, ""),
        "v3" => reply(400, "bad version"),
        _ => reply(200, r#"{"present":false}"#),
    }))
    .await;
    let n = node(srv.port, Duration::from_secs(10));
    let key = key_for(b"x");
    assert!(!n.check_present(&key).await.unwrap());
    assert!(!n.check_present(&key).await.unwrap());
    let versions: Vec<String> = srv
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.version().to_string())
        .collect();
    assert_eq!(versions, ["v4", "v3", "v2", "v2"]);
    assert_eq!(n.version(), Some(2));
    // Below v3 the node's clock is this machine's: no gettimestamp request.
    let before = n.requests_sent();
    let t = n.timestamp().await.unwrap();
    assert!(t.abs_diff(boottime_secs()) <= 1);
    assert_eq!(n.requests_sent(), before);
    assert!(!n.caps().remove_before);
}

#[tokio::test]
async fn server_errors_pass_through_with_their_words() {
    let srv = scripted(Arc::new(|s: &Seen| match s.path[3].as_str() {
        "checkpresent" => reply(500, "the disk is on fire"),
        "remove" => reply(500, "content is locked"),
        "lockcontent" => reply(400, "Query parameter key is required"),
        _ => reply(503, ""),
    }))
    .await;
    let n = node(srv.port, Duration::from_secs(10));
    let key = key_for(b"x");
    let e = n.check_present(&key).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "scripted: 500 Internal Server Error: the disk is on fire"
    );
    assert!(!e.retryable());
    let r = n.remove(&key, None).await.unwrap();
    assert!(!r.removed);
    assert_eq!(
        r.error.as_deref(),
        Some("500 Internal Server Error: content is locked")
    );
    let e = n.lock_content(&key).await.err().unwrap();
    assert!(
        e.to_string()
            .contains("400 Bad Request: Query parameter key"),
        "{e}"
    );
    let e = n.timestamp().await.unwrap_err();
    assert_eq!(e.to_string(), "scripted: 503 Service Unavailable");
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let srv = scripted(Arc::new(|_: &Seen| Reply {
        delay: Duration::from_secs(5),
        ..reply(200, r#"{"present":true}"#)
    }))
    .await;
    let n = node(srv.port, Duration::from_millis(300));
    let started = std::time::Instant::now();
    let e = n.check_present(&key_for(b"x")).await.unwrap_err();
    assert!(matches!(e, NodeError::Timeout { .. }), "{e}");
    assert!(e.retryable());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn download_lengths_decide_validity() {
    let data = test_data(5000, 2);
    let key = key_for(&data);
    let body = Arc::new(Mutex::new(data.clone()));
    let b = body.clone();
    let srv = scripted(Arc::new(move |s: &Seen| {
        if s.path[3] != "key" {
            return reply(200, r#"{"present":true}"#);
        }
        Reply {
            status: 200,
            headers: vec![("X-git-annex-data-length", "5000".into())],
            body: b.lock().unwrap().clone(),
            delay: Duration::ZERO,
        }
    }))
    .await;
    let n = node(srv.port, Duration::from_secs(10));
    let (got, v) = fetch(&n, &key, 0).await.unwrap().unwrap();
    assert_eq!((got == data, v), (true, Validity::Valid));
    // One byte short: the content changed while sent.
    body.lock().unwrap().pop();
    let (got, v) = fetch(&n, &key, 0).await.unwrap().unwrap();
    assert_eq!((got.len(), v), (5000, Validity::Invalid));
    // Longer than announced.
    body.lock().unwrap().extend_from_slice(b"xy");
    let (got, v) = fetch(&n, &key, 0).await.unwrap().unwrap();
    assert_eq!((got.len(), v), (5000, Validity::Invalid));
    let seen = srv.seen.lock().unwrap().clone();
    let g = seen.iter().find(|s| s.method == "GET").unwrap();
    assert_eq!(g.path[3], "key");
    assert_eq!(g.path[4], key.to_string());
    assert_eq!(g.header("accept"), Some("application/octet-stream"));
    assert_eq!(g.param("associatedfile"), Some("conformance/file.bin"));
    assert_eq!(g.param("offset"), None, "no offset param from 0");
}

#[tokio::test]
async fn empty_answers_mean_absent_unless_the_key_says_otherwise() {
    let present = Arc::new(Mutex::new(false));
    let p = present.clone();
    let srv = scripted(Arc::new(move |s: &Seen| {
        if s.path[3] == "checkpresent" {
            return reply(200, &format!(r#"{{"present":{}}}"#, p.lock().unwrap()));
        }
        Reply {
            headers: vec![("X-git-annex-data-length", "0".into())],
            ..reply(200, "")
        }
    }))
    .await;
    let n = node(srv.port, Duration::from_secs(10));
    let key = key_for(&test_data(100, 3));
    // Before the key's end: absent without asking.
    assert!(fetch(&n, &key, 10).await.unwrap().is_none());
    assert_eq!(srv.seen.lock().unwrap().len(), 1);
    // At the end: the server is asked.
    assert!(fetch(&n, &key, 100).await.unwrap().is_none());
    *present.lock().unwrap() = true;
    let (got, v) = fetch(&n, &key, 100).await.unwrap().unwrap();
    assert_eq!((got.len(), v), (0, Validity::Valid));
}

#[tokio::test]
async fn a_download_without_its_length_is_a_protocol_error() {
    let srv = scripted(Arc::new(|_: &Seen| reply(200, "data"))).await;
    let n = node(srv.port, Duration::from_secs(10));
    let e = n
        .get(&key_for(b"data"), 0, &AssociatedFile::none())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, NodeError::Protocol { .. }), "{e}");
    assert!(e.to_string().contains("X-git-annex-data-length"), "{e}");
}

#[tokio::test]
async fn refused_without_credentials() {
    let srv = scripted(Arc::new(|s: &Seen| {
        if s.header("authorization").is_some() {
            return reply(403, "");
        }
        Reply {
            headers: vec![(
                "WWW-Authenticate",
                crate::http::route::AUTH_CHALLENGE.to_string(),
            )],
            ..reply(401, "")
        }
    }))
    .await;
    let n = node(srv.port, Duration::from_secs(10));
    let e = n.check_present(&key_for(b"x")).await.unwrap_err();
    assert!(matches!(e, NodeError::Denied(_)), "{e}");
    let text = e.to_string();
    assert!(
        text.starts_with("scripted: authentication failed: 401 Unauthorized")
            && text.contains("no credentials for annex+http://127.0.0.1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_refused_upload_says_why() {
    let srv = scripted(Arc::new(|s: &Seen| match s.path[3].as_str() {
        "putoffset" => reply(200, r#"{"offset":0}"#),
        _ => reply(500, "no room on the node"),
    }))
    .await;
    let n = node(srv.port, Duration::from_secs(10));
    let data = test_data(50_000, 4);
    let key = key_for(&data);
    let PutStart::Accept(mut sink) = n.put(&key, &AssociatedFile::none()).await.unwrap() else {
        panic!("AlreadyHave")
    };
    sink.begin(data.len() as u64).await.unwrap();
    for c in data.chunks(10_000) {
        sink.write(c).await.unwrap();
    }
    let e = sink.finish(Validity::Valid).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "scripted: 500 Internal Server Error: no room on the node"
    );
    // The credentials seen: none were asked for.
    assert!(srv
        .seen
        .lock()
        .unwrap()
        .iter()
        .all(|s| s.header("authorization").is_none()));
}

#[tokio::test]
async fn a_held_lock_sends_keepalive_lines_then_unlock() {
    let srv = scripted(Arc::new(|s: &Seen| match s.path[3].as_str() {
        "lockcontent" => reply(200, r#"{"locked":true,"lockid":"l-1"}"#),
        _ => reply(200, r#"{"locked":false}"#),
    }))
    .await;
    let mut n = node(srv.port, Duration::from_secs(10));
    let mut cfg = n.config().clone();
    cfg.keepalive = Duration::from_millis(100);
    n = HttpNode::new(cfg, n.shared.pool.clone());
    let key = key_for(b"locked");
    let lock = n.lock_content(&key).await.unwrap().expect("locked");
    tokio::time::sleep(Duration::from_millis(450)).await;
    lock.unlock().await.unwrap();
    let seen = srv.seen.lock().unwrap().clone();
    let kl = seen.iter().find(|s| s.path[3] == "keeplocked").unwrap();
    assert_eq!(kl.param("lockid"), Some("l-1"));
    assert_eq!(kl.param("clientuuid"), Some(GW));
    assert_eq!(kl.header("keep-alive"), Some("timeout=1200"));
    assert_eq!(
        kl.header("content-type"),
        Some("application/json;charset=utf-8")
    );
    let body = String::from_utf8(kl.body.clone()).unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert!(lines.len() >= 4, "{body:?}");
    let (last, rest) = lines.split_last().unwrap();
    assert_eq!(*last, r#"{"unlock":true}"#);
    assert!(rest.iter().all(|l| *l == r#"{"unlock":false}"#), "{body:?}");
}
