//! P2pNode against servers of every protocol version (our server session over in-memory
//! streams, limited to v0..v4), the real `git-annex-shell p2pstdio`, replays of the
//! gateway-to-node connections git-annex made, and servers that misbehave (scripts).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::conn::{self, ServeOptions, ServeOutcome};
use crate::node::conformance::{self, fetch, key_for, store, test_data, Options};
use crate::node::memory::MemNode;
use crate::node::{PutSink, PutStart, Stored};
use crate::proto::p2p::decode;
use crate::session::server::{ServerConfig, ServerMode};
use crate::session::testing::{fixture, placeholder_uuid, tools_bin};

const ME: &str = "11111111-2222-3333-4444-555555555555";

fn me() -> Uuid {
    Uuid::parse(ME).unwrap()
}

// ---- our server session, in process ----

/// Serves each connection with `conn::serve` (a server limited to `max_version`) in front
/// of one shared MemNode.
struct InProcess {
    /// What the servers serve.
    target: Arc<dyn Node>,
    /// The store behind it, for inspection.
    node: MemNode,
    max_version: u8,
    outcomes: Arc<Mutex<Vec<ServeOutcome>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    dials: AtomicUsize,
}

impl InProcess {
    fn new(node: MemNode, max_version: u8) -> Arc<InProcess> {
        InProcess::serving(Arc::new(node.clone()), node, max_version)
    }
    fn serving(target: Arc<dyn Node>, node: MemNode, max_version: u8) -> Arc<InProcess> {
        Arc::new(InProcess {
            target,
            node,
            max_version,
            outcomes: Arc::default(),
            tasks: Mutex::default(),
            dials: AtomicUsize::new(0),
        })
    }
    /// Kill every server (their streams end).
    fn kill_servers(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

#[async_trait]
impl P2pDialer for InProcess {
    async fn dial(&self) -> io::Result<DialedStream> {
        self.dials.fetch_add(1, Ordering::SeqCst);
        let (c, s) = tokio::io::duplex(256 * 1024);
        let (sr, sw) = tokio::io::split(s);
        let mut cfg = ServerConfig::shell(self.target.uuid().clone(), ServerMode::ReadWrite);
        cfg.max_version = self.max_version;
        let node = self.target.clone();
        let outcomes = self.outcomes.clone();
        let task = tokio::spawn(async move {
            if let Ok(o) = conn::serve(sr, sw, ServeOptions::new(cfg), node).await {
                outcomes.lock().unwrap().push(o);
            }
        });
        self.tasks.lock().unwrap().push(task);
        let (cr, cw) = tokio::io::split(c);
        Ok(DialedStream {
            reader: Box::new(cr),
            writer: Box::new(cw),
        })
    }
}

fn in_process_node(server: &Arc<InProcess>) -> P2pNode {
    let mut cfg = P2pNodeConfig::new(
        server.target.uuid().clone(),
        "mem-p2p",
        P2pEndpoint::dial("in-process", server.clone()),
    );
    cfg.bypass = vec![me()];
    cfg.timeout = Duration::from_secs(10);
    P2pNode::new(cfg)
}

fn mem() -> MemNode {
    MemNode::new(Uuid::new_random(), "mem")
}

#[tokio::test]
async fn conforms_over_every_protocol_version() {
    for v in 0..=4u8 {
        let servers = Mutex::new(Vec::new());
        let fresh = || {
            let server = InProcess::new(mem(), v);
            servers.lock().unwrap().push(server.clone());
            Arc::new(in_process_node(&server)) as Arc<dyn Node>
        };
        let report = conformance::run(&fresh, &Options::default()).await;
        let report = match report.into_result() {
            Ok(r) => r,
            Err(e) => panic!("over protocol version {v}: {e}"),
        };
        assert_eq!(
            report.passed.len(),
            conformance::cases().len(),
            "{report:?}"
        );
        // Every server agreed to exactly v, and got the bypass list only from v2 on.
        for s in servers.lock().unwrap().iter() {
            for o in s.outcomes.lock().unwrap().iter() {
                assert_eq!(o.version, v);
                let want: &[Uuid] = if v >= 2 { &[me()] } else { &[] };
                assert_eq!(o.bypass, want, "v{v}");
            }
        }
    }
}

#[tokio::test]
async fn below_v3_the_clock_is_the_gateways() {
    for v in [0u8, 2, 3] {
        let server = InProcess::new(mem(), v);
        server.node.set_time(7);
        let node = in_process_node(&server);
        let data = test_data(100, 1);
        let key = key_for(&data);
        store(&node, &key, &data).await.unwrap();
        assert_eq!(node.version(), Some(v));
        assert_eq!(node.caps().remove_before, v >= 3);
        let t = node.timestamp().await.unwrap();
        if v >= 3 {
            assert_eq!(t, 7, "v{v}: the server's clock");
        } else {
            let local = boottime_secs();
            assert!(t <= local && local - t <= 2, "v{v}: {t} vs {local}");
        }
        // A deadline already passed on the node's clock: nothing is removed.
        let r = node.remove(&key, Some(t)).await.unwrap();
        assert!(!r.removed && r.error.is_none(), "{r:?}");
        assert!(server.node.content(&key).is_some());
        let r = node.remove(&key, Some(t + 100)).await.unwrap();
        assert!(r.removed);
        assert!(server.node.content(&key).is_none());
    }
}

#[tokio::test]
async fn connections_are_reused_and_a_lock_gets_its_own() {
    let server = InProcess::new(mem(), 4);
    let node = in_process_node(&server);
    let data = test_data(5000, 2);
    let key = key_for(&data);
    for _ in 0..3 {
        assert!(!node.check_present(&key).await.unwrap());
    }
    store(&node, &key, &data).await.unwrap();
    fetch(&node, &key, 10).await.unwrap().unwrap();
    node.timestamp().await.unwrap();
    assert_eq!(node.connections_opened(), 1);
    assert_eq!(node.idle_connections(), 1);

    let lock = node.lock_content(&key).await.unwrap().unwrap();
    assert_eq!(server.node.lock_count(&key), 1);
    // The lock holds its connection; a removal needs (and gets) another.
    let r = node.remove(&key, None).await.unwrap();
    assert!(!r.removed);
    assert_eq!(node.connections_opened(), 2);
    lock.unlock().await.unwrap();
    // UNLOCKCONTENT has no reply: the next request on that connection is answered only
    // after the server handled it.
    assert_eq!(node.idle_connections(), 2);
    assert!(node.remove(&key, None).await.unwrap().removed);
    assert!(node.remove(&key, None).await.unwrap().removed);
    assert_eq!(server.node.lock_count(&key), 0);
    assert_eq!(node.connections_opened(), 2);
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(10), "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_dropped_lock_is_released() {
    let server = InProcess::new(mem(), 4);
    let node = in_process_node(&server);
    let data = test_data(500, 3);
    let key = key_for(&data);
    store(&node, &key, &data).await.unwrap();

    // Dropped inside the runtime: UNLOCKCONTENT goes out, the connection is kept.
    let lock = node.lock_content(&key).await.unwrap().unwrap();
    assert_eq!(server.node.lock_count(&key), 1);
    drop(lock);
    eventually("the dropped lock is released", || {
        server.node.lock_count(&key) == 0
    })
    .await;
    eventually("its connection goes back to the pool", || {
        node.idle_connections() == 1
    })
    .await;

    // Dropped where no runtime runs: the connection closes, which releases the lock.
    let lock = node.lock_content(&key).await.unwrap().unwrap();
    assert_eq!(server.node.lock_count(&key), 1);
    std::thread::spawn(move || drop(lock)).join().unwrap();
    eventually("the lock of a closed connection is released", || {
        server.node.lock_count(&key) == 0
    })
    .await;
    assert!(node.remove(&key, None).await.unwrap().removed);
}

#[tokio::test]
async fn a_dead_idle_connection_is_replaced() {
    let server = InProcess::new(mem(), 4);
    let node = in_process_node(&server);
    let key = key_for(b"x");
    assert!(!node.check_present(&key).await.unwrap());
    server.kill_servers();
    tokio::task::yield_now().await;
    assert!(!node.check_present(&key).await.unwrap());
    assert_eq!(node.connections_opened(), 2);
    assert_eq!(server.dials.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn remote_errors_pass_through_in_the_nodes_words() {
    let server = InProcess::new(mem(), 4);
    let node = in_process_node(&server);
    let key = key_for(b"y");
    assert!(!node.check_present(&key).await.unwrap());
    server.node.set_failing(Some("the disk caught fire"));
    let e = node.check_present(&key).await.unwrap_err();
    match &e {
        NodeError::Remote { node, message } => {
            assert_eq!(node, "mem-p2p");
            assert!(message.contains("the disk caught fire"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let r = node.remove(&key, None).await.unwrap();
    assert!(!r.removed);
    assert!(
        r.error
            .as_deref()
            .unwrap_or("")
            .contains("the disk caught fire"),
        "{r:?}"
    );
    let e = node
        .get(&key, 0, &AssociatedFile::none())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, NodeError::Remote { .. }), "{e:?}");
    // ERROR keeps the connection in step.
    server.node.set_failing(None);
    assert!(!node.check_present(&key).await.unwrap());
    assert_eq!(node.connections_opened(), 1);
}

#[derive(Default)]
struct Log(Mutex<Vec<(String, bool)>>);
impl LocationSink for Log {
    fn record(&self, _key: &Key, uuid: &Uuid, present: bool) {
        self.0.lock().unwrap().push((uuid.to_string(), present));
    }
}

#[tokio::test]
async fn stores_and_removals_are_recorded() {
    let server = InProcess::new(mem(), 4);
    let log = Arc::new(Log::default());
    let mut cfg = in_process_node(&server).config().clone();
    cfg.locations = log.clone();
    let node = P2pNode::new(cfg);
    let data = test_data(300, 4);
    let key = key_for(&data);
    store(&node, &key, &data).await.unwrap();
    assert!(node.remove(&key, None).await.unwrap().removed);
    let u = server.node.uuid().to_string();
    assert_eq!(*log.0.lock().unwrap(), [(u.clone(), true), (u, false)]);
}

#[tokio::test]
async fn data_present_is_asked_by_checkpresent_below_v4() {
    for v in [1u8, 3, 4] {
        let server = InProcess::new(mem(), v);
        let node = in_process_node(&server);
        let data = test_data(800, 5);
        let key = key_for(&data);
        let PutStart::Accept(sink) = node.put(&key, &AssociatedFile::none()).await.unwrap() else {
            panic!("v{v}: AlreadyHave")
        };
        // The content arrives out of band while the upload is open.
        server.node.insert(key.clone(), data.clone());
        let s = sink.data_present().await.unwrap();
        assert_eq!(
            s,
            Stored {
                stored: true,
                plus: vec![]
            },
            "v{v}"
        );
        assert_eq!(node.connections_opened(), 1);
    }
}

#[tokio::test]
async fn an_aborted_upload_keeps_its_partial_and_the_connection() {
    let server = InProcess::new(mem(), 4);
    let node = in_process_node(&server);
    let data = test_data(10_000, 6);
    let key = key_for(&data);
    // Aborted before any DATA: the exchange ends empty, the connection stays.
    let PutStart::Accept(sink) = node.put(&key, &AssociatedFile::none()).await.unwrap() else {
        panic!()
    };
    sink.abort().await;
    assert_eq!(node.idle_connections(), 1);
    // Aborted mid-DATA: the connection goes, the server keeps what arrived.
    let PutStart::Accept(mut sink) = node.put(&key, &AssociatedFile::none()).await.unwrap() else {
        panic!()
    };
    sink.begin(10_000).await.unwrap();
    sink.write(&data[..4000]).await.unwrap();
    sink.abort().await;
    eventually("the partial upload is kept", || {
        server.node.partial(&key).map(|p| p.len()) == Some(4000)
    })
    .await;
    let PutStart::Accept(sink) = node.put(&key, &AssociatedFile::none()).await.unwrap() else {
        panic!()
    };
    assert_eq!(sink.offset(), 4000);
    sink.abort().await;
    assert_eq!(node.connections_opened(), 2);
}

#[tokio::test]
async fn cluster_replies_pass_through_and_clusters_are_not_logged() {
    let members = [mem(), mem()];
    let uuids: Vec<Uuid> = members.iter().map(|m| m.uuid().clone()).collect();
    let cluster = Arc::new(crate::session::testing::TestCluster {
        uuid: Uuid::new_cluster(),
        nodes: members.to_vec(),
    });
    let server = InProcess::serving(cluster, members[0].clone(), 4);
    let log = Arc::new(Log::default());
    let mut cfg = in_process_node(&server).config().clone();
    cfg.locations = log.clone();
    let node = P2pNode::new(cfg);
    assert!(!node.caps().lock, "a cluster cannot lock");
    let data = test_data(1000, 7);
    let key = key_for(&data);
    let s = conformance::store_chunked(&node, &key, &data, Validity::Valid, 300)
        .await
        .unwrap();
    assert_eq!(
        s,
        Stored {
            stored: true,
            plus: uuids.clone()
        }
    );
    match node.put(&key, &AssociatedFile::none()).await.unwrap() {
        PutStart::AlreadyHave { plus } => assert_eq!(plus, uuids),
        other => panic!("{other:?}"),
    }
    assert!(node.lock_content(&key).await.unwrap().is_none());
    let r = node.remove(&key, None).await.unwrap();
    assert_eq!(
        r,
        Removed {
            removed: true,
            plus: uuids.clone(),
            error: None
        }
    );
    let mut want: Vec<(String, bool)> = uuids.iter().map(|u| (u.to_string(), true)).collect();
    want.extend(uuids.iter().map(|u| (u.to_string(), false)));
    assert_eq!(*log.0.lock().unwrap(), want);
}

#[tokio::test]
async fn a_connection_lost_on_reuse_is_retried_once() {
    // Each server answers one request, then reads the next and leaves without answering:
    // the pooled connection looks alive until it is used.
    let u = Uuid::new_random();
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count");
    let script = format!(
        "echo x >> '{}'; {GREET} read r; echo FAILURE; read r; exit 0",
        count.display()
    );
    let node = script_node(&script, &u, Duration::from_secs(5));
    let key = key_for(b"r");
    assert!(!node.check_present(&key).await.unwrap());
    assert!(!node.check_present(&key).await.unwrap());
    assert_eq!(node.connections_opened(), 2);
    assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 2);
    // A fresh connection that is lost is not retried.
    let node = script_node(
        &format!("{GREET} read r; exit 0"),
        &u,
        Duration::from_secs(5),
    );
    let e = node.check_present(&key).await.unwrap_err();
    assert!(matches!(e, NodeError::Protocol { .. }), "{e:?}");
    assert_eq!(node.connections_opened(), 1);
}

#[tokio::test]
async fn nodes_are_shared_by_endpoint_uuid_bypass_and_version() {
    let server = InProcess::new(mem(), 4);
    let nodes = P2pNodes::new();
    let cfg = in_process_node(&server).config().clone();
    let a = nodes.get(cfg.clone());
    a.connect().await.unwrap();
    let b = nodes.get(cfg.clone());
    b.check_present(&key_for(b"z")).await.unwrap();
    assert_eq!(b.connections_opened(), 1, "b uses a's connection");
    let mut other = cfg.clone();
    other.bypass = vec![];
    let c = nodes.get(other);
    assert_eq!(c.connections_opened(), 0);
    let mut other = cfg;
    other.max_version = 2;
    assert_eq!(nodes.get(other).connections_opened(), 0);
}

// ---- the gateway-to-node connections git-annex made ----

/// A server that answers from a recorded exchange: after each client message it sends
/// the recorded server messages that message calls for.
struct Scripted {
    server: Vec<u8>,
    seen: Arc<Mutex<Vec<u8>>>,
    dials: AtomicUsize,
}

/// How many server messages answer a client message (DATA counts as one with its payload).
fn answers(m: &Message, version: u8) -> usize {
    match m {
        Message::Version(_)
        | Message::CheckPresent(_)
        | Message::LockContent(_)
        | Message::Remove(_)
        | Message::RemoveBefore { .. }
        | Message::GetTimestamp
        | Message::Put { .. }
        | Message::Valid
        | Message::Invalid
        | Message::DataPresent => 1,
        Message::Get { .. } if version >= 1 => 2,
        Message::Get { .. } => 1,
        Message::Data(_) if version == 0 => 1,
        _ => 0,
    }
}

/// Split the recorded server bytes into messages, each with its payload.
fn server_messages(mut b: &[u8]) -> Vec<(Message, Vec<u8>)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (m, used) = decode(b).unwrap().unwrap();
        b = &b[used..];
        let mut payload = Vec::new();
        if let Message::Data(n) = m {
            payload = b[..n as usize].to_vec();
            b = &b[n as usize..];
        }
        out.push((m, payload));
    }
    out
}

#[async_trait]
impl P2pDialer for Scripted {
    async fn dial(&self) -> io::Result<DialedStream> {
        assert_eq!(
            self.dials.fetch_add(1, Ordering::SeqCst),
            0,
            "one connection"
        );
        let (c, mut s) = tokio::io::duplex(64 * 1024);
        let mut replies = server_messages(&self.server).into_iter();
        let seen = self.seen.clone();
        tokio::spawn(async move {
            fn bytes((m, p): (Message, Vec<u8>)) -> Vec<u8> {
                let mut b = m.to_bytes();
                b.extend_from_slice(&p);
                b
            }
            // The greeting.
            let first = replies.next().unwrap();
            s.write_all(&bytes(first)).await.unwrap();
            let mut buf = Vec::new();
            let mut version = 0u8;
            let mut chunk = [0u8; 4096];
            loop {
                // Decode every complete client message (with its payload).
                while let Ok(Some((m, used))) = decode(&buf) {
                    let extra = match m {
                        Message::Data(n) => n as usize,
                        _ => 0,
                    };
                    if buf.len() < used + extra {
                        break;
                    }
                    seen.lock().unwrap().extend_from_slice(&buf[..used + extra]);
                    buf.drain(..used + extra);
                    for _ in 0..answers(&m, version) {
                        let Some(r) = replies.next() else { break };
                        if let Message::Version(v) = r.0 {
                            version = v as u8;
                        }
                        s.write_all(&bytes(r)).await.unwrap();
                    }
                }
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        });
        let (cr, cw) = tokio::io::split(c);
        Ok(DialedStream {
            reader: Box::new(cr),
            writer: Box::new(cw),
        })
    }
}

/// Do what the recorded client did, through a P2pNode.
async fn drive(node: &P2pNode, mut b: &[u8]) {
    let mut lock = None;
    let mut sink: Option<Box<dyn PutSink>> = None;
    let mut content: Option<Box<dyn Content>> = None;
    while !b.is_empty() {
        let (m, used) = decode(b).unwrap().unwrap();
        b = &b[used..];
        match m {
            Message::Version(_) | Message::Bypass(_) => {}
            Message::CheckPresent(k) => {
                node.check_present(&k).await.unwrap();
            }
            Message::LockContent(k) => lock = node.lock_content(&k).await.unwrap(),
            Message::UnlockContent => lock.take().unwrap().unlock().await.unwrap(),
            Message::GetTimestamp => {
                node.timestamp().await.unwrap();
            }
            Message::Remove(k) => {
                node.remove(&k, None).await.unwrap();
            }
            Message::RemoveBefore { timestamp, key } => {
                node.remove(&key, Some(timestamp)).await.unwrap();
            }
            Message::Put { af, key } => match node.put(&key, &af).await.unwrap() {
                PutStart::Accept(s) => sink = Some(s),
                PutStart::AlreadyHave { .. } => {}
            },
            Message::Data(n) => {
                let s = sink.as_mut().unwrap();
                s.begin(n).await.unwrap();
                s.write(&b[..n as usize]).await.unwrap();
                b = &b[n as usize..];
            }
            Message::Valid => {
                sink.take().unwrap().finish(Validity::Valid).await.unwrap();
            }
            Message::Get { offset, af, key } => {
                let mut c = node.get(&key, offset, &af).await.unwrap().unwrap();
                let mut buf = vec![0u8; c.len() as usize];
                let mut got = 0;
                while got < buf.len() {
                    got += c.read(&mut buf[got..]).await.unwrap();
                }
                c.validity().await.unwrap();
                content = Some(c);
            }
            Message::Success | Message::Failure => {
                let ok = m == Message::Success;
                content.take().unwrap().done(ok).await.unwrap();
            }
            other => panic!("unexpected client message {other}"),
        }
    }
}

#[tokio::test]
async fn gateway_to_node_connections_match_git_annexs() {
    let mut replayed = 0;
    for file in [
        "20-cluster-put.txt",
        "21-cluster-get.txt",
        "22-cluster-drop.txt",
        "30-node-put.txt",
        "31-node-drop.txt",
        "40-local-drop-locks-cluster.txt",
        "41-node-drop-locking-others.txt",
    ] {
        for ex in fixture(file) {
            if !ex.repo.starts_with("node") {
                continue;
            }
            let seen = Arc::new(Mutex::new(Vec::new()));
            let dialer = Arc::new(Scripted {
                server: ex.server.clone(),
                seen: seen.clone(),
                dials: AtomicUsize::new(0),
            });
            let mut cfg = P2pNodeConfig::new(
                ex.served.clone(),
                ex.repo.clone(),
                P2pEndpoint::dial("scripted", dialer),
            );
            // A cluster gateway passes its own UUID on; a single proxied node gets the
            // client's (empty) list.
            if String::from_utf8_lossy(&ex.client).contains("BYPASS") {
                cfg.bypass = vec![placeholder_uuid("gw")];
            }
            cfg.timeout = Duration::from_secs(5);
            let node = P2pNode::new(cfg);
            drive(&node, &ex.client).await;
            node.close_idle();
            drop(node);
            eventually(&ex.name, || seen.lock().unwrap().len() >= ex.client.len()).await;
            assert_eq!(
                String::from_utf8_lossy(&seen.lock().unwrap()),
                String::from_utf8_lossy(&ex.client),
                "{}",
                ex.name
            );
            replayed += 1;
        }
    }
    assert!(replayed >= 10, "only {replayed} node connections replayed");
}

// ---- servers that misbehave ----

fn script_node(script: &str, uuid: &Uuid, timeout: Duration) -> P2pNode {
    let script = script.replace("UUID", uuid.as_str());
    let mut cfg = P2pNodeConfig::new(
        uuid.clone(),
        "scripted",
        P2pEndpoint::command("sh", vec!["-c".into(), script.into()]),
    );
    cfg.timeout = timeout;
    cfg.connect_timeout = timeout;
    P2pNode::new(cfg)
}

const GREET: &str = "echo AUTH-SUCCESS UUID; read v; echo VERSION 4; ";

#[tokio::test]
async fn a_hanging_server_times_out_and_is_killed() {
    let u = Uuid::new_random();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!(
        "echo $$ > '{}'; {GREET} read request; exec sleep 60",
        pidfile.display()
    );
    let node = script_node(&script, &u, Duration::from_millis(300));
    let start = Instant::now();
    let e = node.check_present(&key_for(b"a")).await.unwrap_err();
    assert!(matches!(e, NodeError::Timeout { secs: 1, .. }), "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(node.idle_connections(), 0);
    // The process is gone.
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eventually("the hanging server was killed", || unsafe {
        libc::kill(pid, 0) != 0
    })
    .await;

    // One that never greets hits the connect timeout.
    let node = script_node("exec sleep 60", &u, Duration::from_millis(300));
    let e = node.connect().await.unwrap_err();
    assert!(matches!(e, NodeError::Timeout { .. }), "{e:?}");
}

#[tokio::test]
async fn garbage_is_a_protocol_error_with_the_words() {
    let u = Uuid::new_random();
    let node = script_node(
        &format!("{GREET} read request; echo 'HELLO THERE'; echo 'oh no' >&2; sleep 5"),
        &u,
        Duration::from_secs(5),
    );
    let e = node.check_present(&key_for(b"a")).await.unwrap_err();
    match &e {
        NodeError::Protocol { detail, .. } => {
            assert!(detail.contains("HELLO THERE"), "{detail}");
            assert!(detail.contains("oh no"), "stderr is shown: {detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(node.idle_connections(), 0);
    // A reply that parses but does not fit the request.
    let node = script_node(
        &format!("{GREET} read request; echo 'PUT-FROM 3'; sleep 5"),
        &u,
        Duration::from_secs(5),
    );
    let e = node.check_present(&key_for(b"a")).await.unwrap_err();
    assert!(
        matches!(&e, NodeError::Protocol { detail, .. } if detail.contains("expected SUCCESS or FAILURE")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_server_dying_inside_data_is_reported_with_its_stderr() {
    let u = Uuid::new_random();
    let node = script_node(
        &format!("{GREET} read request; printf 'DATA 100\\nabc'; echo 'disk exploded' >&2; exit 3"),
        &u,
        Duration::from_secs(5),
    );
    let mut c = node
        .get(&key_for(&[0; 100]), 0, &AssociatedFile::none())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.len(), 100);
    let mut buf = [0u8; 200];
    let mut got = Vec::new();
    let e = loop {
        match c.read(&mut buf).await {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(got, b"abc");
    match &e {
        NodeError::Protocol { detail, .. } => {
            assert!(detail.contains("inside DATA"), "{detail}");
            assert!(detail.contains("exited with status 3"), "{detail}");
            assert!(detail.contains("disk exploded"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unreachable_servers() {
    let u = Uuid::new_random();
    let mut cfg = P2pNodeConfig::new(
        u.clone(),
        "missing",
        P2pEndpoint::command("/nonexistent/git-annex-shell", vec![]),
    );
    cfg.timeout = Duration::from_secs(5);
    let e = P2pNode::new(cfg).connect().await.unwrap_err();
    assert!(
        matches!(&e, NodeError::Unreachable { reason, .. } if reason.contains("/nonexistent/git-annex-shell")),
        "{e:?}"
    );
    // An ssh that cannot reach its host (exit status 255).
    let mut ep = P2pEndpoint::command(
        "sh",
        vec![
            "-c".into(),
            "echo 'ssh: connect to host nowhere port 22: Connection refused' >&2; exit 255".into(),
        ],
    );
    ep.process_mut().unwrap().ssh = true;
    let e = P2pNode::new(P2pNodeConfig::new(u.clone(), "far", ep))
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(&e, NodeError::Unreachable { reason, .. } if reason.contains("Connection refused")),
        "{e:?}"
    );
    // The wrong repository: named in the error, connection not used.
    let other = Uuid::new_random();
    let node = script_node(
        &format!("echo AUTH-SUCCESS {other}; sleep 5"),
        &u,
        Duration::from_secs(5),
    );
    let e = node.connect().await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(other.as_str()) && text.contains(u.as_str()),
        "{text}"
    );
}

#[tokio::test]
async fn a_server_without_versions_is_v0() {
    let u = Uuid::new_random();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    let script = format!(
        "echo AUTH-SUCCESS UUID; read v; echo 'ERROR unknown command'; \
         read r; echo SUCCESS; cat > '{}'",
        input.display()
    );
    let mut node = script_node(&script, &u, Duration::from_secs(5));
    let mut cfg = node.config().clone();
    cfg.bypass = vec![me()];
    node = P2pNode::new(cfg);
    assert!(node.check_present(&key_for(b"q")).await.unwrap());
    assert_eq!(node.version(), Some(0));
    assert!(!node.caps().remove_before);
    node.close_idle();
    eventually("the script saw its input end", || input.exists()).await;
    // No BYPASS was sent to a v0 server (the script's `read r` took CHECKPRESENT).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(std::fs::read_to_string(&input).unwrap(), "");
}

// ---- the real git-annex-shell ----

/// A bare repository made by `git annex init`, copied for each fresh node.
struct RealRepos {
    template: tempfile::TempDir,
    uuid: Uuid,
    copies: Mutex<Vec<tempfile::TempDir>>,
}

fn git_env(cmd: &mut std::process::Command, home: &Path) {
    let bin = tools_bin();
    let mut paths = vec![bin.clone()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    cmd.env("PATH", std::env::join_paths(paths).unwrap())
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_DIR");
    let magic = bin.join("../pypi/git_annex/magic.mgc");
    if magic.exists() {
        cmd.env("MAGIC", magic);
    }
}

impl RealRepos {
    fn new() -> RealRepos {
        let template = tempfile::tempdir().unwrap();
        let home = template.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::write(
            home.join(".gitconfig"),
            "[user]\n\tname = annexgate test\n\temail = test@annexgate.invalid\n",
        )
        .unwrap();
        let repo = template.path().join("node.git");
        let run = |args: &[&str], dir: &Path| {
            let mut c = std::process::Command::new(args[0]);
            c.args(&args[1..]).current_dir(dir);
            git_env(&mut c, &home);
            let out = c.output().unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        run(
            &["git", "init", "-q", "--bare", repo.to_str().unwrap()],
            template.path(),
        );
        run(&["git-annex", "init", "-q", "node"], &repo);
        let uuid = Uuid::parse(run(&["git", "config", "annex.uuid"], &repo).trim()).unwrap();
        RealRepos {
            template,
            uuid,
            copies: Mutex::new(Vec::new()),
        }
    }

    fn endpoint(&self, top: &Path) -> P2pEndpoint {
        let shell: PathBuf = tools_bin().join("git-annex-shell");
        let mut ep = P2pEndpoint::local(shell, &top.join("node.git"), &me());
        let mut probe = std::process::Command::new("true");
        git_env(&mut probe, &top.join("home"));
        let p = ep.process_mut().unwrap();
        for (k, v) in probe.get_envs() {
            match v {
                Some(v) => p.env.push((k.to_owned(), v.to_owned())),
                None => p.env_remove.push(k.to_owned()),
            }
        }
        ep
    }

    fn fresh(&self) -> P2pNode {
        let copy = tempfile::tempdir().unwrap();
        for part in ["home", "node.git"] {
            let st = std::process::Command::new("cp")
                .arg("-a")
                .arg(self.template.path().join(part))
                .arg(copy.path())
                .status()
                .unwrap();
            assert!(st.success());
        }
        let mut cfg = P2pNodeConfig::new(self.uuid.clone(), "node", self.endpoint(copy.path()));
        cfg.bypass = vec![me()];
        cfg.timeout = Duration::from_secs(30);
        self.copies.lock().unwrap().push(copy);
        P2pNode::new(cfg)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_against_git_annex_shell() {
    let repos = RealRepos::new();
    let report = conformance::run(
        &|| Arc::new(repos.fresh()) as Arc<dyn Node>,
        &Options::default(),
    )
    .await;
    let report = match report.into_result() {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        report.passed.len(),
        conformance::cases().len(),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_annex_shell_speaks_v4_and_errors_come_through() {
    let repos = RealRepos::new();
    let node = repos.fresh();
    node.connect().await.unwrap();
    assert_eq!(node.version(), Some(4));
    // A node that is not the repository the endpoint reaches.
    let mut cfg = node.config().clone();
    cfg.uuid = Uuid::new_random();
    let e = P2pNode::new(cfg).connect().await.unwrap_err();
    assert!(e.to_string().contains(repos.uuid.as_str()), "{e}");
    // A repository path that is not one: git-annex-shell's own words.
    let mut cfg = node.config().clone();
    let p = cfg.endpoint.process_mut().unwrap();
    p.args[1] = "/nonexistent/repo".into();
    let e = P2pNode::new(cfg).connect().await.unwrap_err();
    assert!(matches!(e, NodeError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains("exited with status 1"), "{e}");
}
