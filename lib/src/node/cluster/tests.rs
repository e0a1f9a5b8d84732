//! The cluster against the real transcripts (gateway side byte for byte, and what the
//! gateway said to each node), and its choices: placement, full and failing nodes,
//! fail-over, load, removal aggregation, deadline translation, parallelism, and a mixed
//! cluster of real node kinds.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::conn::{self, ServeOptions};
use crate::node::memory::MemNode;
use crate::node::{Content, ContentLock, PutSink, Stored, Validity};
use crate::placement::{Engine, Facts};
use crate::proto::p2p::Message;
use crate::session::server::{removed_reply, End, ServerConfig, ServerMode};
use crate::session::testing::{fixture, key_of, placeholder_uuid, replay};

const HELLO: &[u8] = b"hello world\n";

fn u(name: &str) -> Uuid {
    placeholder_uuid(name)
}

fn cluster_uuid() -> Uuid {
    u("cluster")
}

fn hello() -> Key {
    key_of(HELLO, ".txt")
}

/// Bytes that are not all alike, so misplaced chunks show.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn af(name: &str) -> AssociatedFile {
    AssociatedFile::new(name)
}

fn options() -> ClusterOptions {
    ClusterOptions {
        seed: Some(7),
        clock: Arc::new(|| 700),
        ..ClusterOptions::default()
    }
}

/// `options()`, with every upload's targets on the worker threads (`parallel`) or on
/// the session's thread (the tests run on a single-threaded runtime).
fn options_parallel(parallel: bool) -> ClusterOptions {
    ClusterOptions {
        parallel_from: parallel.then_some(0),
        ..options()
    }
}

/// The threads data reached `node` on: the session's own, or the shared workers.
fn assert_written_on(f: &Fixture, node: &str, parallel: bool) {
    let writers = f.wire(node).writers;
    let on_workers = writers.iter().all(|t| t == "annexgate-fanout");
    assert!(!writers.is_empty(), "{node} got no data");
    assert_eq!(on_workers, parallel, "{node} written on {writers:?}");
}

/// A test cluster: the members, the nodes behind them and the location log.
struct Fixture {
    cluster: Cluster,
    nodes: Vec<MemNode>,
    log: Arc<MemLocations>,
    wire: Vec<Arc<Mutex<Wire>>>,
}

impl Fixture {
    /// MemNodes `names` (in the gateway's remote order), each of cost 100.
    fn new(names: &[&str]) -> Fixture {
        Fixture::with(names, |_| 100.0, Arc::new(EveryoneWants), options())
    }

    fn with(
        names: &[&str],
        cost: impl Fn(&str) -> f64,
        wanting: Arc<dyn Wanting>,
        options: ClusterOptions,
    ) -> Fixture {
        let nodes: Vec<MemNode> = names.iter().map(|n| MemNode::new(u(n), *n)).collect();
        Fixture::over(
            nodes.iter().map(|n| (n.clone(), cost(n.name()))).collect(),
            wanting,
            options,
        )
    }

    fn over(
        nodes: Vec<(MemNode, f64)>,
        wanting: Arc<dyn Wanting>,
        options: ClusterOptions,
    ) -> Fixture {
        Fixture::over_log(nodes, wanting, options, Arc::new(MemLocations::new()))
    }

    /// As `over`, with the location log given (nodes may record into it themselves).
    fn over_log(
        nodes: Vec<(MemNode, f64)>,
        wanting: Arc<dyn Wanting>,
        options: ClusterOptions,
        log: Arc<MemLocations>,
    ) -> Fixture {
        let mut wire = Vec::new();
        let members = nodes
            .iter()
            .map(|(n, cost)| {
                let w = Arc::new(Mutex::new(Wire::default()));
                wire.push(w.clone());
                ClusterMember::new(
                    Arc::new(Rec {
                        node: Arc::new(n.clone()),
                        wire: w,
                    }),
                    *cost,
                )
            })
            .collect();
        let cluster = Cluster::new(
            cluster_uuid(),
            "mycluster",
            members,
            log.clone(),
            wanting,
            log.clone(),
            options,
        )
        .unwrap();
        Fixture {
            cluster,
            nodes: nodes.into_iter().map(|(n, _)| n).collect(),
            log,
            wire,
        }
    }

    fn node(&self, name: &str) -> &MemNode {
        self.nodes.iter().find(|n| n.name() == name).unwrap()
    }

    fn wire(&self, name: &str) -> Wire {
        let i = self.nodes.iter().position(|n| n.name() == name).unwrap();
        self.wire[i].lock().unwrap().clone()
    }

    /// Put `data` on the named nodes and say so in the location log.
    fn place(&self, key: &Key, data: &[u8], names: &[&str]) {
        for n in names {
            self.node(n).insert(key.clone(), data.to_vec());
        }
        let uuids: Vec<Uuid> = names.iter().map(|n| u(n)).collect();
        self.log.set(key, &uuids);
    }

    fn arc(&self) -> Arc<dyn Node> {
        Arc::new(self.cluster.clone())
    }
}

/// Who the log lists for `key`, by name, sorted (records arrive in completion order).
fn logged(log: &MemLocations, key: &Key) -> Vec<String> {
    let mut v = names(&log.get(key));
    v.sort();
    v
}

fn names(uuids: &[Uuid]) -> Vec<String> {
    let known = ["node1", "node2", "node3", "node4", "cluster", "gw"];
    uuids
        .iter()
        .map(|x| {
            known
                .iter()
                .find(|n| &u(n) == x)
                .map_or_else(|| x.to_string(), |n| n.to_string())
        })
        .collect()
}

/// Upload `data` through a node's put interface in `chunk`-byte writes.
async fn upload(
    node: &dyn Node,
    key: &Key,
    data: &[u8],
    chunk: usize,
) -> Result<PutOutcome, NodeError> {
    match node.put(key, &af("f.bin")).await? {
        PutStart::AlreadyHave { plus } => Ok(PutOutcome::AlreadyHave(plus)),
        PutStart::Accept(mut sink) => {
            let off = sink.offset() as usize;
            sink.begin((data.len() - off) as u64).await?;
            for c in data[off..].chunks(chunk) {
                sink.write(c).await?;
            }
            Ok(PutOutcome::Stored(off, sink.finish(Validity::Valid).await?))
        }
    }
}

#[derive(Debug, PartialEq)]
enum PutOutcome {
    AlreadyHave(Vec<Uuid>),
    /// The offset the cluster asked from, and the result.
    Stored(usize, Stored),
}

async fn download(
    node: &dyn Node,
    key: &Key,
    offset: u64,
    buf: usize,
) -> Option<(Vec<u8>, Validity)> {
    let mut c = node.get(key, offset, &af("f.bin")).await.unwrap()?;
    let len = c.len() as usize;
    let mut out = Vec::new();
    let mut b = vec![0u8; buf];
    loop {
        let n = c.read(&mut b).await.unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[..n]);
    }
    assert_eq!(out.len(), len, "the download's length is what it announced");
    let v = c.validity().await.unwrap();
    c.done(true).await.unwrap();
    Some((out, v))
}

// ---- a node that writes down what a P2P connection to it would carry ----

/// The two directions of a gateway's connection to a node, as the node's calls would
/// put them on the P2P wire (after AUTH-SUCCESS/VERSION/BYPASS).
#[derive(Debug, Default, Clone)]
struct Wire {
    client: Vec<u8>,
    server: Vec<u8>,
    /// The names of the threads upload data was written on.
    writers: std::collections::BTreeSet<String>,
}

impl Wire {
    fn c(&mut self, m: Message) {
        m.encode(&mut self.client);
    }
    fn s(&mut self, m: Message) {
        m.encode(&mut self.server);
    }
}

struct Rec {
    node: Arc<dyn Node>,
    wire: Arc<Mutex<Wire>>,
}

fn ok_or_failure(ok: bool) -> Message {
    if ok {
        Message::Success
    } else {
        Message::Failure
    }
}

#[async_trait]
impl Node for Rec {
    fn uuid(&self) -> &Uuid {
        self.node.uuid()
    }
    fn name(&self) -> &str {
        self.node.name()
    }
    fn caps(&self) -> Caps {
        self.node.caps()
    }
    async fn check_present(&self, key: &Key) -> Result<bool, NodeError> {
        self.wire
            .lock()
            .unwrap()
            .c(Message::CheckPresent(key.clone()));
        let r = self.node.check_present(key).await;
        if let Ok(yes) = &r {
            self.wire.lock().unwrap().s(ok_or_failure(*yes));
        }
        r
    }
    async fn lock_content(&self, key: &Key) -> Result<Option<Box<dyn ContentLock>>, NodeError> {
        self.node.lock_content(key).await
    }
    async fn get(
        &self,
        key: &Key,
        offset: u64,
        af: &AssociatedFile,
    ) -> Result<Option<Box<dyn Content>>, NodeError> {
        self.wire.lock().unwrap().c(Message::Get {
            offset,
            af: af.clone(),
            key: key.clone(),
        });
        let c = self.node.get(key, offset, af).await?;
        Ok(c.map(|c| {
            self.wire.lock().unwrap().s(Message::Data(c.len()));
            Box::new(RecContent {
                inner: c,
                wire: self.wire.clone(),
            }) as Box<dyn Content>
        }))
    }
    async fn put(&self, key: &Key, af: &AssociatedFile) -> Result<PutStart, NodeError> {
        self.wire.lock().unwrap().c(Message::Put {
            af: af.clone(),
            key: key.clone(),
        });
        let r = self.node.put(key, af).await?;
        let mut w = self.wire.lock().unwrap();
        Ok(match r {
            PutStart::AlreadyHave { plus } => {
                w.s(Message::AlreadyHave);
                PutStart::AlreadyHave { plus }
            }
            PutStart::Accept(sink) => {
                w.s(Message::PutFrom(sink.offset()));
                PutStart::Accept(Box::new(RecSink {
                    inner: sink,
                    wire: self.wire.clone(),
                }))
            }
        })
    }
    async fn remove(&self, key: &Key, deadline: Option<u64>) -> Result<Removed, NodeError> {
        self.wire.lock().unwrap().c(match deadline {
            None => Message::Remove(key.clone()),
            Some(timestamp) => Message::RemoveBefore {
                timestamp,
                key: key.clone(),
            },
        });
        let r = self.node.remove(key, deadline).await;
        if let Ok(r) = &r {
            self.wire.lock().unwrap().s(ok_or_failure(r.removed));
        }
        r
    }
    async fn timestamp(&self) -> Result<u64, NodeError> {
        self.wire.lock().unwrap().c(Message::GetTimestamp);
        let r = self.node.timestamp().await;
        if let Ok(t) = &r {
            self.wire.lock().unwrap().s(Message::Timestamp(*t));
        }
        r
    }
}

struct RecContent {
    inner: Box<dyn Content>,
    wire: Arc<Mutex<Wire>>,
}

#[async_trait]
impl Content for RecContent {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NodeError> {
        let n = self.inner.read(buf).await?;
        self.wire
            .lock()
            .unwrap()
            .server
            .extend_from_slice(&buf[..n]);
        Ok(n)
    }
    async fn validity(&mut self) -> Result<Validity, NodeError> {
        let v = self.inner.validity().await?;
        self.wire.lock().unwrap().s(match v {
            Validity::Valid => Message::Valid,
            _ => Message::Invalid,
        });
        Ok(v)
    }
    async fn done(self: Box<Self>, receiver_ok: bool) -> Result<(), NodeError> {
        self.wire.lock().unwrap().c(ok_or_failure(receiver_ok));
        self.inner.done(receiver_ok).await
    }
}

struct RecSink {
    inner: Box<dyn PutSink>,
    wire: Arc<Mutex<Wire>>,
}

#[async_trait]
impl PutSink for RecSink {
    fn offset(&self) -> u64 {
        self.inner.offset()
    }
    async fn begin(&mut self, len: u64) -> Result<(), NodeError> {
        self.wire.lock().unwrap().c(Message::Data(len));
        self.inner.begin(len).await
    }
    async fn write(&mut self, data: &[u8]) -> Result<(), NodeError> {
        {
            let mut w = self.wire.lock().unwrap();
            w.client.extend_from_slice(data);
            let thread = std::thread::current();
            w.writers.insert(thread.name().unwrap_or("?").to_string());
        }
        self.inner.write(data).await
    }
    async fn finish(self: Box<Self>, validity: Validity) -> Result<Stored, NodeError> {
        self.wire.lock().unwrap().c(match validity {
            Validity::Valid => Message::Valid,
            _ => Message::Invalid,
        });
        let r = self.inner.finish(validity).await;
        self.wire
            .lock()
            .unwrap()
            .s(ok_or_failure(r.as_ref().is_ok_and(|s| s.stored)));
        r
    }
    async fn data_present(self: Box<Self>) -> Result<Stored, NodeError> {
        self.wire.lock().unwrap().c(Message::DataPresent);
        let r = self.inner.data_present().await;
        self.wire
            .lock()
            .unwrap()
            .s(ok_or_failure(r.as_ref().is_ok_and(|s| s.stored)));
        r
    }
    async fn abort(self: Box<Self>) {
        self.inner.abort().await
    }
}

/// Drop the first `n` lines of a connection's bytes (the handshake).
fn skip_lines(b: &[u8], n: usize) -> Vec<u8> {
    let mut rest = b;
    for _ in 0..n {
        let i = rest.iter().position(|&c| c == b'\n').unwrap();
        rest = &rest[i + 1..];
    }
    rest.to_vec()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---- the transcripts ----

/// The location log and contents before each fixture's client command.
fn transcript_fixture(file: &str) -> Fixture {
    // The gateway's remotes in git-annex's remote-list order (by name).
    let f = Fixture::new(&["node1", "node2", "node3"]);
    match file {
        "20-cluster-put.txt" => {}
        "21-cluster-get.txt" => f.place(&hello(), HELLO, &["node1"]),
        "22-cluster-drop.txt" => f.place(&hello(), HELLO, &["node1", "node2", "node3"]),
        other => panic!("no set-up for {other}"),
    }
    f
}

/// What the fixture's gateway said to each node, and the nodes' answers, are what the
/// cluster's calls on its members amount to.
fn assert_node_exchanges(file: &str, f: &Fixture) {
    let mut seen = 0;
    for ex in fixture(file) {
        let Some(name) = ex
            .repo
            .strip_suffix(".git")
            .filter(|r| r.starts_with("node"))
        else {
            continue;
        };
        seen += 1;
        let w = f.wire(name);
        // VERSION and BYPASS from the gateway; AUTH-SUCCESS and VERSION from the node.
        assert_eq!(
            text(&w.client),
            text(&skip_lines(&ex.client, 2)),
            "{}",
            ex.name
        );
        assert_eq!(
            text(&w.server),
            text(&skip_lines(&ex.server, 2)),
            "{}",
            ex.name
        );
    }
    assert!(seen > 0, "{file} has node connections");
    for (i, n) in f.nodes.iter().enumerate() {
        let contacted = fixture(file)
            .iter()
            .any(|ex| ex.repo == format!("{}.git", n.name()));
        if !contacted {
            assert!(
                f.wire[i].lock().unwrap().client.is_empty(),
                "{file}: {} was not contacted by git-annex's gateway",
                n.name()
            );
        }
    }
}

fn gateway_exchange(file: &str) -> crate::session::testing::Exchange {
    fixture(file)
        .into_iter()
        .find(|ex| ex.repo == "gw.git")
        .unwrap()
}

fn shell() -> ServerConfig {
    ServerConfig::shell(cluster_uuid(), ServerMode::ReadWrite)
}

#[tokio::test]
async fn transcripts_replay_against_a_cluster_of_mem_nodes() {
    for file in [
        "20-cluster-put.txt",
        "21-cluster-get.txt",
        "22-cluster-drop.txt",
    ] {
        let ex = gateway_exchange(file);
        assert_eq!(ex.served, cluster_uuid());
        let f = transcript_fixture(file);
        let r = replay(shell(), f.arc(), &ex.client).await;
        assert_eq!(text(&r.server), text(&ex.server), "{}", ex.name);
        assert_eq!(r.end, End::Clean, "{file}");
        assert_node_exchanges(file, &f);
        let listed = logged(&f.log, &hello());
        match file {
            "20-cluster-put.txt" => {
                for n in &f.nodes {
                    assert_eq!(n.content(&hello()).as_deref(), Some(HELLO), "{file}");
                }
                assert_eq!(listed, ["node1", "node2", "node3"]);
            }
            "21-cluster-get.txt" => assert_eq!(listed, ["node1"]),
            _ => {
                assert!(f.nodes.iter().all(|n| n.keys().is_empty()), "{file}");
                assert!(listed.is_empty(), "{file}: {listed:?}");
            }
        }
        assert_eq!(
            f.cluster.busy(),
            [0, 0, 0],
            "{file}: nothing left in flight"
        );
    }
}

/// Run one session over in-memory pipes through the real driver.
async fn serve_bytes(
    node: Arc<dyn Node>,
    client: &[u8],
    buffer: usize,
) -> (Vec<u8>, conn::ServeOutcome) {
    let (mut c_w, s_r) = tokio::io::duplex(64 * 1024);
    let (s_w, mut c_r) = tokio::io::duplex(64 * 1024);
    let mut o = ServeOptions::new(shell());
    o.buffer_size = buffer;
    let task = tokio::spawn(conn::serve(s_r, s_w, o, node));
    let client = client.to_vec();
    let writer = tokio::spawn(async move {
        c_w.write_all(&client).await.unwrap();
        c_w.shutdown().await.unwrap();
    });
    let mut out = Vec::new();
    c_r.read_to_end(&mut out).await.unwrap();
    writer.await.unwrap();
    (out, task.await.unwrap().unwrap())
}

#[tokio::test]
async fn transcripts_through_the_driver_give_the_gateways_bytes() {
    for file in [
        "20-cluster-put.txt",
        "21-cluster-get.txt",
        "22-cluster-drop.txt",
    ] {
        let ex = gateway_exchange(file);
        let f = transcript_fixture(file);
        let (out, outcome) = serve_bytes(f.arc(), &ex.client, 1).await;
        assert_eq!(text(&out), text(&ex.server), "{}", ex.name);
        assert_eq!(outcome.exit_code(), 0, "{file}");
        assert_eq!(outcome.version, 4);
        assert_node_exchanges(file, &f);
    }
}

// ---- order and construction ----

#[test]
fn members_are_used_in_git_annex_cost_order() {
    let f = Fixture::new(&["node1", "node2", "node3"]);
    let order: Vec<Uuid> = f
        .cluster
        .members()
        .iter()
        .map(|m| m.uuid().clone())
        .collect();
    assert_eq!(names(&order), ["node3", "node2", "node1"]);
    let f = Fixture::with(
        &["node1", "node2", "node3", "node4"],
        |n| {
            if n == "node2" || n == "node4" {
                50.0
            } else {
                100.1
            }
        },
        Arc::new(EveryoneWants),
        options(),
    );
    let order: Vec<Uuid> = f
        .cluster
        .members()
        .iter()
        .map(|m| m.uuid().clone())
        .collect();
    assert_eq!(names(&order), ["node4", "node2", "node3", "node1"]);
}

#[test]
fn bad_member_lists_are_refused() {
    let mk = |members: Vec<ClusterMember>, o: ClusterOptions| {
        Cluster::new(
            cluster_uuid(),
            "c",
            members,
            Arc::new(MemLocations::new()),
            Arc::new(EveryoneWants),
            Arc::new(crate::node::NoLocations),
            o,
        )
    };
    let n1: Arc<dyn Node> = Arc::new(MemNode::new(u("node1"), "node1"));
    let same: Arc<dyn Node> = Arc::new(MemNode::new(u("node1"), "again"));
    let me: Arc<dyn Node> = Arc::new(MemNode::new(cluster_uuid(), "me"));
    let e = mk(
        vec![
            ClusterMember::new(n1.clone(), 1.0),
            ClusterMember::new(same, 2.0),
        ],
        options(),
    )
    .err()
    .unwrap();
    assert!(matches!(e, ClusterError::DuplicateMember { .. }), "{e}");
    let e = mk(vec![ClusterMember::new(me.clone(), 1.0)], options())
        .err()
        .unwrap();
    assert!(matches!(e, ClusterError::SelfMember { .. }), "{e}");
    let e = mk(vec![ClusterMember::new(n1.clone(), f64::NAN)], options())
        .err()
        .unwrap();
    assert!(matches!(e, ClusterError::BadCost { .. }), "{e}");
    let o = ClusterOptions {
        jobs: Some(0),
        ..options()
    };
    assert!(matches!(
        mk(vec![], o).err().unwrap(),
        ClusterError::NoJobs { .. }
    ));
    // Another gateway's view of this cluster is a member like any other, and two
    // gateways may serve it.
    let c = mk(
        vec![
            ClusterMember::new(n1, 1.0),
            ClusterMember::new(me.clone(), 1.0).via_gateway(u("gw")),
            ClusterMember::new(me, 1.0).via_gateway(u("gw2")),
        ],
        options(),
    )
    .unwrap();
    assert_eq!(c.members().len(), 3);
    assert!(!c.caps().lock);
}

// ---- placement ----

/// Verified git-annex behaviour (spec §5): with node1 `wanted nothing`, the first PUT
/// goes to node2 and node3, a second one to node1 only, a third finds it everywhere.
#[tokio::test]
async fn unwanted_nodes_get_no_first_copy_but_a_later_one() {
    let facts = Facts::default().with_preferred(&u("node1"), "nothing");
    let engine = Arc::new(Engine::new(facts));
    let f = Fixture::with(
        &["node1", "node2", "node3"],
        |_| 100.0,
        Arc::new(EnginePlacement::locations_only(engine)),
        options(),
    );
    let key = hello();
    let c = f.arc();
    let PutOutcome::Stored(0, s) = upload(c.as_ref(), &key, HELLO, 5).await.unwrap() else {
        panic!("expected a store")
    };
    assert_eq!(names(&s.plus), ["node3", "node2"]);
    assert!(f.node("node1").content(&key).is_none());
    assert_eq!(logged(&f.log, &key), ["node2", "node3"]);

    let PutOutcome::Stored(0, s) = upload(c.as_ref(), &key, HELLO, 5).await.unwrap() else {
        panic!("expected a store")
    };
    assert_eq!(names(&s.plus), ["node1"]);
    assert_eq!(f.node("node1").content(&key).as_deref(), Some(HELLO));
    // node2 and node3 were not asked again.
    assert_eq!(
        text(&f.wire("node2").client).matches("PUT ").count(),
        1,
        "node2 got one PUT"
    );

    let r = upload(c.as_ref(), &key, HELLO, 5).await.unwrap();
    let PutOutcome::AlreadyHave(plus) = r else {
        panic!("expected ALREADY-HAVE, got {r:?}")
    };
    assert_eq!(names(&plus), ["node3", "node2", "node1"]);
}

/// A node whose preferred content wants the file gets it; the others only when nobody
/// wants it (and then all that lack it).
#[tokio::test]
async fn uploads_go_where_preferred_content_says() {
    let facts = Facts::default()
        .with_preferred(&u("node1"), "include=*.mp3")
        .with_preferred(&u("node2"), "include=*.txt")
        .with_preferred(&u("node3"), "include=*.txt");
    let engine = Arc::new(Engine::new(facts));
    let f = Fixture::with(
        &["node1", "node2", "node3"],
        |_| 100.0,
        Arc::new(EnginePlacement::locations_only(engine)),
        options(),
    );
    let c = f.arc();
    let data = pattern(1000);
    let k1 = key_of(&data, ".mp3");
    let PutStart::Accept(mut sink) = c.put(&k1, &af("song.mp3")).await.unwrap() else {
        panic!()
    };
    sink.begin(1000).await.unwrap();
    sink.write(&data).await.unwrap();
    assert_eq!(
        names(&sink.finish(Validity::Valid).await.unwrap().plus),
        ["node1"]
    );
    let k2 = key_of(&data, ".bin");
    let PutStart::Accept(mut sink) = c.put(&k2, &af("x.bin")).await.unwrap() else {
        panic!()
    };
    sink.begin(1000).await.unwrap();
    sink.write(&data).await.unwrap();
    assert_eq!(
        names(&sink.finish(Validity::Valid).await.unwrap().plus),
        ["node3", "node2", "node1"]
    );
}

/// Balanced placement with a maxsize counts what the cluster stores as it goes (git-annex's
/// gateway keeps its repository sizes up to date): node1 has room for one 600-byte key
/// and gets exactly one, however many the hash would send it; a removal frees the room.
/// node1 and node2 balanced in one group, node1 with room for 1000 bytes, both empty.
fn balanced_over_two_with_a_small_node1(
) -> Arc<EnginePlacement<fn(&Key) -> crate::placement::KeyInfo>> {
    let facts = Facts::default()
        .with_group(&u("node1"), "g")
        .with_group(&u("node2"), "g")
        .with_group_preferred("g", "balanced=g")
        .with_preferred(&u("node1"), "groupwanted")
        .with_preferred(&u("node2"), "groupwanted")
        .with_maxsize(&u("node1"), 1000)
        .with_repo_size(&u("node1"), 0)
        .with_repo_size(&u("node2"), 0);
    Arc::new(EnginePlacement::locations_only(Arc::new(Engine::new(
        facts,
    ))))
}

#[tokio::test]
async fn balanced_placement_counts_what_the_cluster_stores() {
    let placement = balanced_over_two_with_a_small_node1();
    let f = Fixture::with(&["node1", "node2"], |_| 100.0, placement.clone(), options());
    let c = f.arc();
    let mut on_node1 = Vec::new();
    for i in 0..10u8 {
        let data: Vec<u8> = pattern(600).into_iter().map(|b| b ^ i).collect();
        let key = key_of(&data, ".bin");
        let PutOutcome::Stored(0, s) = upload(c.as_ref(), &key, &data, 256).await.unwrap() else {
            panic!("expected a store")
        };
        assert_eq!(s.plus.len(), 1, "balanced over two: one copy");
        if names(&s.plus) == ["node1"] {
            on_node1.push(key);
        }
    }
    assert_eq!(
        on_node1.len(),
        1,
        "node1 holds one 600-byte key of 1000 bytes"
    );
    assert_eq!(placement.repo_size(&u("node1")), Some(600));
    assert_eq!(placement.repo_size(&u("node2")), Some(9 * 600));
    // A copy node2 held unbeknown to the log counts once the cluster learns of it.
    let data: Vec<u8> = pattern(600).into_iter().map(|b| b ^ 10).collect();
    let key = key_of(&data, ".bin");
    f.node("node2").insert(key.clone(), data.clone());
    let r = upload(c.as_ref(), &key, &data, 256).await.unwrap();
    assert_eq!(r, PutOutcome::AlreadyHave(vec![u("node2")]));
    assert_eq!(placement.repo_size(&u("node2")), Some(10 * 600));
    // A removal frees the room where the key was, and only there (the removal goes to
    // every node; node2 never had this key).
    assert!(c.remove(&on_node1[0], None).await.unwrap().removed);
    assert_eq!(placement.repo_size(&u("node1")), Some(0));
    assert_eq!(placement.repo_size(&u("node2")), Some(10 * 600));
}

/// As the gateway's local nodes do, the nodes here record into the gateway's location
/// log themselves, before the cluster hears back: the cluster must still count each
/// store once (it judges a change by what it believed when the upload began).
#[tokio::test]
async fn balanced_placement_counts_stores_the_nodes_recorded_themselves() {
    let placement = balanced_over_two_with_a_small_node1();
    let log = Arc::new(MemLocations::new());
    let nodes = ["node1", "node2"]
        .iter()
        .map(|n| {
            let node = MemNode::new(u(n), *n).with_locations(log.clone());
            (node, 100.0)
        })
        .collect();
    let f = Fixture::over_log(nodes, placement.clone(), options(), log.clone());
    let c = f.arc();
    let mut on_node1 = Vec::new();
    for i in 0..5u8 {
        let data: Vec<u8> = pattern(600).into_iter().map(|b| b ^ i).collect();
        let key = key_of(&data, ".bin");
        let PutOutcome::Stored(0, s) = upload(c.as_ref(), &key, &data, 256).await.unwrap() else {
            panic!("expected a store")
        };
        assert_eq!(logged(&log, &key), names(&s.plus));
        if names(&s.plus) == ["node1"] {
            on_node1.push(key);
        }
    }
    assert_eq!(on_node1.len(), 1, "node1 has room for one 600-byte key");
    assert_eq!(placement.repo_size(&u("node1")), Some(600));
    assert_eq!(placement.repo_size(&u("node2")), Some(4 * 600));
    assert!(c.remove(&on_node1[0], None).await.unwrap().removed);
    assert_eq!(placement.repo_size(&u("node1")), Some(0));
    assert_eq!(placement.repo_size(&u("node2")), Some(4 * 600));
}

// ---- full and failing nodes ----

#[tokio::test]
async fn a_full_node_is_left_out_and_the_reply_says_where_it_went() {
    let full = MemNode::new(u("node2"), "node2").with_capacity(5);
    let f = Fixture::over(
        vec![
            (MemNode::new(u("node1"), "node1"), 100.0),
            (full, 100.0),
            (MemNode::new(u("node3"), "node3"), 100.0),
        ],
        Arc::new(EveryoneWants),
        options(),
    );
    let key = hello();
    let ex = gateway_exchange("20-cluster-put.txt");
    let (out, outcome) = serve_bytes(f.arc(), &ex.client, 64 * 1024).await;
    assert_eq!(outcome.exit_code(), 0);
    let reply = text(&out);
    let expected = format!("SUCCESS-PLUS {} {}\n", u("node3"), u("node1"));
    assert!(reply.ends_with(&expected), "{reply}");
    assert!(f.node("node2").content(&key).is_none());
    assert_eq!(f.node("node2").used(), 0);
    assert_eq!(logged(&f.log, &key), ["node1", "node3"]);
}

/// When every target refuses before a byte moves, the members that lack the key but
/// did not want it take it instead.
#[tokio::test]
async fn when_every_wanted_node_is_full_the_others_take_it() {
    let facts = Facts::default()
        .with_preferred(&u("node2"), "nothing")
        .with_preferred(&u("node3"), "nothing");
    let engine = Arc::new(Engine::new(facts));
    let f = Fixture::over(
        vec![
            (MemNode::new(u("node1"), "node1").with_capacity(3), 100.0),
            (MemNode::new(u("node2"), "node2"), 100.0),
            (MemNode::new(u("node3"), "node3"), 100.0),
        ],
        Arc::new(EnginePlacement::locations_only(engine)),
        options(),
    );
    let key = hello();
    let PutOutcome::Stored(0, s) = upload(f.arc().as_ref(), &key, HELLO, 4).await.unwrap() else {
        panic!()
    };
    assert_eq!(names(&s.plus), ["node3", "node2"]);
    assert!(f.node("node1").content(&key).is_none());
    assert_eq!(f.node("node2").content(&key).as_deref(), Some(HELLO));
    // Nobody at all: the bytes are swallowed and the upload fails, in step.
    let g = Fixture::over(
        vec![(MemNode::new(u("node1"), "node1").with_capacity(3), 100.0)],
        Arc::new(EveryoneWants),
        options(),
    );
    let PutOutcome::Stored(0, s) = upload(g.arc().as_ref(), &key, HELLO, 4).await.unwrap() else {
        panic!()
    };
    assert!(!s.stored && s.plus.is_empty());
}

#[tokio::test]
async fn a_node_failing_mid_put_is_dropped_and_the_others_finish() {
    node_failing_mid_put(false).await;
}

#[tokio::test]
async fn a_node_failing_mid_put_is_dropped_on_the_worker_threads_too() {
    node_failing_mid_put(true).await;
}

async fn node_failing_mid_put(parallel: bool) {
    let data = pattern(3 * 1024 * 1024 + 17);
    let key = key_of(&data, ".bin");
    let f = Fixture::with(
        &["node1", "node2", "node3"],
        |_| 100.0,
        Arc::new(EveryoneWants),
        options_parallel(parallel),
    );
    f.node("node2").fail_after(1_000_000, "connection reset");
    let mut client = format!("VERSION 4\nPUT big.bin {key}\nDATA {}\n", data.len()).into_bytes();
    client.extend_from_slice(&data);
    client.extend_from_slice(b"VALID\n");
    let (out, outcome) = serve_bytes(f.arc(), &client, 256 * 1024).await;
    assert_eq!(outcome.exit_code(), 0, "{outcome:?}");
    let expected = format!(
        "AUTH-SUCCESS {}\nVERSION 4\nPUT-FROM 0\nSUCCESS-PLUS {} {}\n",
        cluster_uuid(),
        u("node3"),
        u("node1")
    );
    assert_eq!(text(&out), expected);
    for n in ["node1", "node3"] {
        assert!(
            f.node(n).content(&key).as_deref() == Some(&data[..]),
            "{n} has it all"
        );
    }
    // The broken node kept exactly what it got, for a later resume, and is not logged.
    assert_eq!(
        f.node("node2").partial(&key).map(|p| p.len()),
        Some(1_000_000)
    );
    assert!(f.node("node2").content(&key).is_none());
    assert_eq!(logged(&f.log, &key), ["node1", "node3"]);
    assert_eq!(f.cluster.busy(), [0, 0, 0]);
    for n in ["node1", "node2", "node3"] {
        assert_written_on(&f, n, parallel);
    }

    // Healed, the next upload resumes node2 only, from where it broke.
    f.node("node2").set_failing(None);
    let PutOutcome::Stored(off, s) = upload(f.arc().as_ref(), &key, &data, 100_000)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(off, 1_000_000);
    assert_eq!(names(&s.plus), ["node2"]);
    assert!(f.node("node2").content(&key).as_deref() == Some(&data[..]));
}

#[tokio::test]
async fn each_target_gets_the_bytes_from_its_own_offset() {
    targets_from_own_offsets(false).await;
}

#[tokio::test]
async fn each_target_gets_the_bytes_from_its_own_offset_on_the_worker_threads() {
    targets_from_own_offsets(true).await;
}

async fn targets_from_own_offsets(parallel: bool) {
    let data = pattern(10_000);
    let key = key_of(&data, "");
    let f = Fixture::with(
        &["node1", "node2", "node3"],
        |_| 100.0,
        Arc::new(EveryoneWants),
        options_parallel(parallel),
    );
    f.node("node1")
        .insert_partial(key.clone(), data[..7000].to_vec());
    f.node("node2")
        .insert_partial(key.clone(), data[..2500].to_vec());
    f.node("node3")
        .insert_partial(key.clone(), data[..4000].to_vec());
    let PutOutcome::Stored(off, s) = upload(f.arc().as_ref(), &key, &data, 999).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(off, 2500, "the client starts at the lowest offset");
    assert_eq!(names(&s.plus), ["node3", "node2", "node1"]);
    for n in &f.nodes {
        assert!(
            n.content(&key).as_deref() == Some(&data[..]),
            "{}",
            n.name()
        );
    }
    // Each was told how much it would get.
    assert!(text(&f.wire("node1").client).contains("DATA 3000\n"));
    assert!(text(&f.wire("node2").client).contains("DATA 7500\n"));
    assert!(text(&f.wire("node3").client).contains("DATA 6000\n"));
    for n in ["node1", "node2", "node3"] {
        assert_written_on(&f, n, parallel);
    }
}

#[tokio::test]
async fn data_present_is_asked_of_every_target() {
    let f = Fixture::new(&["node1", "node2", "node3"]);
    let key = hello();
    let PutStart::Accept(sink) = f.cluster.put(&key, &af("hello.txt")).await.unwrap() else {
        panic!()
    };
    // Meanwhile the content reached node1 and node3 by another way.
    f.node("node1").insert(key.clone(), HELLO.to_vec());
    f.node("node3").insert(key.clone(), HELLO.to_vec());
    let s = sink.data_present().await.unwrap();
    assert_eq!(names(&s.plus), ["node3", "node1"]);
    for n in ["node1", "node2", "node3"] {
        assert!(text(&f.wire(n).client).ends_with("DATA-PRESENT\n"), "{n}");
    }
    assert_eq!(logged(&f.log, &key), ["node1", "node3"]);
}

#[tokio::test]
async fn an_aborted_upload_aborts_every_target_keeping_partials() {
    aborted_upload(false).await;
}

#[tokio::test]
async fn an_aborted_upload_on_the_worker_threads_keeps_partials() {
    aborted_upload(true).await;
}

async fn aborted_upload(parallel: bool) {
    let f = Fixture::with(
        &["node1", "node2"],
        |_| 100.0,
        Arc::new(EveryoneWants),
        options_parallel(parallel),
    );
    let data = pattern(5000);
    let key = key_of(&data, "");
    let PutStart::Accept(mut sink) = f.cluster.put(&key, &af("a")).await.unwrap() else {
        panic!()
    };
    sink.begin(5000).await.unwrap();
    sink.write(&data[..1234]).await.unwrap();
    sink.abort().await;
    for n in &f.nodes {
        assert_eq!(n.partial(&key).map(|p| p.len()), Some(1234), "{}", n.name());
        assert!(n.content(&key).is_none());
    }
    assert!(f.log.get(&key).is_empty());
    assert_eq!(f.cluster.busy(), [0, 0]);
    for n in ["node1", "node2"] {
        assert_written_on(&f, n, parallel);
    }
}

#[tokio::test]
async fn an_upload_to_unreachable_nodes_is_an_error_with_their_words() {
    let f = Fixture::new(&["node1", "node2"]);
    for n in &f.nodes {
        n.set_failing(Some("no route to host"));
    }
    let e = f.cluster.put(&hello(), &af("x")).await.unwrap_err();
    assert!(e.to_string().contains("no route to host"), "{e}");
    // One reachable is enough.
    f.node("node1").set_failing(None);
    let PutOutcome::Stored(_, s) = upload(f.arc().as_ref(), &hello(), HELLO, 3).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(names(&s.plus), ["node1"]);
}

// ---- GET ----

#[tokio::test]
async fn get_fails_over_mid_transfer_to_the_next_node() {
    let data = pattern(1_000_000);
    let key = key_of(&data, ".bin");
    let f = Fixture::with(
        &["node1", "node2", "node3"],
        |n| if n == "node1" { 50.0 } else { 100.0 },
        Arc::new(EveryoneWants),
        options(),
    );
    f.place(&key, &data, &["node1", "node2", "node3"]);
    f.node("node1").fail_after(300_001, "disk on fire");
    let (got, validity) = download(f.arc().as_ref(), &key, 10, 65536).await.unwrap();
    assert!(got == data[10..], "the bytes are exact across the switch");
    assert_eq!(validity, Validity::Invalid, "the receiver must check them");
    let gets: usize = ["node2", "node3"]
        .iter()
        .map(|n| text(&f.wire(n).client).matches("GET ").count())
        .sum();
    assert_eq!(gets, 1, "one other node took over");
    let took_over = ["node2", "node3"]
        .into_iter()
        .find(|n| text(&f.wire(n).client).contains("GET 300011 "))
        .expect("continued at the offset reached");
    assert!(text(&f.wire(took_over).client).ends_with("SUCCESS\n"));
    assert_eq!(f.cluster.busy(), [0, 0, 0]);

    // Through the driver: the client sees one DATA and INVALID, nothing else.
    f.node("node1").set_failing(None);
    f.node("node1").fail_after(123_457, "disk on fire");
    let client = format!("VERSION 4\nGET 0 big.bin {key}\nSUCCESS\n").into_bytes();
    let (out, outcome) = serve_bytes(f.arc(), &client, 64 * 1024).await;
    assert_eq!(outcome.exit_code(), 0);
    let head = format!(
        "AUTH-SUCCESS {}\nVERSION 4\nDATA {}\n",
        cluster_uuid(),
        data.len()
    );
    assert!(out.starts_with(head.as_bytes()));
    assert!(out[head.len()..head.len() + data.len()] == data[..]);
    assert_eq!(&out[head.len() + data.len()..], b"INVALID\n");
}

#[tokio::test]
async fn get_from_a_healthy_node_is_valid_and_unlogged_nodes_are_not_asked() {
    let f = Fixture::new(&["node1", "node2", "node3"]);
    f.place(&hello(), HELLO, &["node2"]);
    // node3 has it too, but the log does not say so.
    f.node("node3").insert(hello(), HELLO.to_vec());
    let (got, v) = download(f.arc().as_ref(), &hello(), 6, 4).await.unwrap();
    assert_eq!(got, &HELLO[6..]);
    assert_eq!(v, Validity::Valid);
    assert!(f.wire("node3").client.is_empty() && f.wire("node1").client.is_empty());
}

#[tokio::test]
async fn get_skips_nodes_that_lack_it_or_fail_and_reports_when_none_can() {
    let f = Fixture::with(
        &["node1", "node2", "node3"],
        |n| match n {
            "node1" => 10.0,
            "node2" => 20.0,
            _ => 30.0,
        },
        Arc::new(EveryoneWants),
        options(),
    );
    f.place(&hello(), HELLO, &["node3"]);
    // The log wrongly lists node1 (it lacks it) and node2 (unreachable).
    f.log.set(&hello(), &[u("node1"), u("node2"), u("node3")]);
    f.node("node2").set_failing(Some("down"));
    let (got, v) = download(f.arc().as_ref(), &hello(), 0, 100).await.unwrap();
    assert_eq!((got.as_slice(), v), (HELLO, Validity::Valid));
    for n in ["node1", "node2", "node3"] {
        assert!(
            text(&f.wire(n).client).starts_with("GET 0 f.bin "),
            "{n} asked in cost order"
        );
    }
    assert!(f.cluster.check_present(&hello()).await.unwrap());

    // Only the unreachable one left: its error.
    f.node("node3").set_failing(Some("down too"));
    let e = f.cluster.get(&hello(), 0, &af("x")).await.err().unwrap();
    assert!(e.to_string().contains("down"), "{e}");
    // Nobody in the log: absent, and no node is asked.
    let other = key_of(b"other", "");
    assert!(f.cluster.get(&other, 0, &af("x")).await.unwrap().is_none());
    let client = format!("VERSION 1\nGET 0 x {other}\nFAILURE\n").into_bytes();
    let (out, _) = serve_bytes(f.arc(), &client, 64 * 1024).await;
    assert!(
        text(&out).ends_with("VERSION 1\nDATA 0\nINVALID\n"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn node_choice_prefers_low_cost_then_idle_nodes() {
    let f = Fixture::with(
        &["node1", "node2", "node3", "node4"],
        |n| if n == "node4" { 200.0 } else { 100.0 },
        Arc::new(EveryoneWants),
        options(),
    );
    let data = pattern(1000);
    let key = key_of(&data, "");
    f.place(&key, &data, &["node1", "node2", "node3", "node4"]);
    // Three downloads held open land on three different equal-cost nodes.
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(f.cluster.get(&key, 0, &af("a")).await.unwrap().unwrap());
    }
    // members(): node3 node2 node1 (cost 100), node4 (200).
    assert_eq!(f.cluster.busy(), [1, 1, 1, 0]);
    // A fourth still goes to a cheap node, however busy.
    open.push(f.cluster.get(&key, 0, &af("a")).await.unwrap().unwrap());
    assert_eq!(f.cluster.busy().iter().take(3).sum::<usize>(), 4);
    assert_eq!(f.cluster.busy()[3], 0);
    for c in open {
        c.done(true).await.unwrap();
    }
    assert_eq!(f.cluster.busy(), [0, 0, 0, 0]);

    // Among equally idle nodes the choice is random: over many tries, each is used.
    let mut used = std::collections::HashSet::new();
    for _ in 0..60 {
        let c = f.cluster.get(&key, 0, &af("a")).await.unwrap().unwrap();
        used.insert(f.cluster.busy().iter().position(|&b| b == 1).unwrap());
        c.done(true).await.unwrap();
    }
    assert_eq!(used.len(), 3, "{used:?}");
}

// ---- CHECKPRESENT, LOCKCONTENT ----

#[tokio::test]
async fn checkpresent_asks_a_logged_node_and_tries_the_next_on_error() {
    let f = Fixture::new(&["node1", "node2", "node3"]);
    let key = hello();
    // Nothing logged: false without asking anyone.
    for n in &f.nodes {
        n.set_failing(Some("down"));
    }
    assert!(!f.cluster.check_present(&key).await.unwrap());
    assert!(f.wire.iter().all(|w| w.lock().unwrap().client.is_empty()));
    for n in &f.nodes {
        n.set_failing(None);
    }
    f.place(&key, HELLO, &["node1", "node2"]);
    f.node("node1").set_failing(Some("down"));
    for _ in 0..10 {
        assert!(f.cluster.check_present(&key).await.unwrap());
    }
    f.node("node2").set_failing(Some("down as well"));
    let e = f.cluster.check_present(&key).await.unwrap_err();
    assert!(e.to_string().contains("down"), "{e}");
    assert!(f.wire("node3").client.is_empty());
    // A stale log: every listed node lacks it.
    f.node("node1").set_failing(None);
    f.node("node2").set_failing(None);
    f.node("node1").remove(&key, None).await.unwrap();
    f.node("node2").remove(&key, None).await.unwrap();
    assert!(!f.cluster.check_present(&key).await.unwrap());
    assert!(f.cluster.lock_content(&key).await.unwrap().is_none());
}

// ---- REMOVE ----

#[tokio::test]
async fn remove_goes_to_every_node_and_aggregates_as_git_annex() {
    let f = Fixture::new(&["node1", "node2", "node3"]);
    let key = hello();
    f.place(&key, HELLO, &["node1"]);
    // Even nodes the log says lack it are asked (git-annex verified: all three listed).
    let r = f.cluster.remove(&key, None).await.unwrap();
    assert_eq!((r.removed, r.error.clone()), (true, None));
    assert_eq!(names(&r.plus), ["node3", "node2", "node1"]);
    assert!(f.log.get(&key).is_empty());
    assert_eq!(
        removed_reply(&r, 4, &cluster_uuid()),
        Message::SuccessPlus(r.plus.clone())
    );
    assert_eq!(removed_reply(&r, 1, &cluster_uuid()), Message::Success);

    // A locked copy and an unreachable node: not removed; the list has the others, the
    // error text is the failing node's.
    f.place(&key, HELLO, &["node1", "node2", "node3"]);
    let lock = f.node("node3").lock_content(&key).await.unwrap().unwrap();
    f.node("node2")
        .set_failing(Some("ssh: connect to host node2: Connection refused"));
    let r = f.cluster.remove(&key, None).await.unwrap();
    assert!(!r.removed);
    assert_eq!(names(&r.plus), ["node1"]);
    let err = r.error.clone().unwrap();
    assert!(err.contains("Connection refused"), "{err}");
    assert_eq!(
        removed_reply(&r, 4, &cluster_uuid()),
        Message::FailurePlus(vec![u("node1")])
    );
    assert_eq!(removed_reply(&r, 1, &cluster_uuid()), Message::Error(err));
    // Logged absent: only node1; node2 and node3 stay listed.
    assert_eq!(logged(&f.log, &key), ["node2", "node3"]);
    assert!(f.node("node3").content(&key).is_some());
    drop(lock);
}

/// A node's own ERROR text passes through unchanged, and SUCCESS-PLUS/FAILURE-PLUS
/// lists of nodes that are clusters themselves are concatenated.
#[tokio::test]
async fn remove_passes_error_text_and_nested_lists_through() {
    struct Scripted {
        uuid: Uuid,
        answer: fn() -> Result<Removed, NodeError>,
    }
    #[async_trait]
    impl Node for Scripted {
        fn uuid(&self) -> &Uuid {
            &self.uuid
        }
        fn name(&self) -> &str {
            "scripted"
        }
        async fn check_present(&self, _: &Key) -> Result<bool, NodeError> {
            Ok(false)
        }
        async fn lock_content(&self, _: &Key) -> Result<Option<Box<dyn ContentLock>>, NodeError> {
            Ok(None)
        }
        async fn get(
            &self,
            _: &Key,
            _: u64,
            _: &AssociatedFile,
        ) -> Result<Option<Box<dyn Content>>, NodeError> {
            Ok(None)
        }
        async fn put(&self, _: &Key, _: &AssociatedFile) -> Result<PutStart, NodeError> {
            Ok(PutStart::AlreadyHave { plus: vec![] })
        }
        async fn remove(&self, _: &Key, _: Option<u64>) -> Result<Removed, NodeError> {
            (self.answer)()
        }
        async fn timestamp(&self) -> Result<u64, NodeError> {
            Ok(1)
        }
    }
    let log = Arc::new(MemLocations::new());
    let member = |name: &str, answer: fn() -> Result<Removed, NodeError>| {
        ClusterMember::new(
            Arc::new(Scripted {
                uuid: u(name),
                answer,
            }),
            100.0,
        )
    };
    let c = Cluster::new(
        cluster_uuid(),
        "c",
        vec![
            member("node1", || {
                Err(NodeError::Remote {
                    node: "node1".into(),
                    message: "content is locked".into(),
                })
            }),
            member("node2", || {
                Ok(Removed {
                    removed: false,
                    plus: vec![u("node4")],
                    error: None,
                })
            }),
            member("node3", || {
                Ok(Removed {
                    removed: true,
                    plus: vec![u("gw")],
                    error: None,
                })
            }),
        ],
        log.clone(),
        Arc::new(EveryoneWants),
        log.clone(),
        options(),
    )
    .unwrap();
    let key = hello();
    log.set(&key, &[u("node4"), u("gw"), u("node1")]);
    let r = c.remove(&key, None).await.unwrap();
    assert!(!r.removed);
    assert_eq!(names(&r.plus), ["node3", "gw", "node4"]);
    assert_eq!(r.error.as_deref(), Some("content is locked"));
    assert_eq!(logged(&log, &key), ["node1"]);
    // No nodes at all: FAILURE, as git-annex.
    let empty = Cluster::new(
        cluster_uuid(),
        "empty",
        vec![],
        log.clone(),
        Arc::new(EveryoneWants),
        log.clone(),
        options(),
    )
    .unwrap();
    let r = empty.remove(&key, None).await.unwrap();
    assert_eq!(removed_reply(&r, 4, &cluster_uuid()), Message::Failure);
    assert!(empty.put(&key, &af("x")).await.is_err());
    assert_eq!(empty.timestamp().await.unwrap(), 700);
}

// ---- GETTIMESTAMP / REMOVE-BEFORE ----

fn deadlines(w: &Wire) -> Vec<u64> {
    text(&w.client)
        .lines()
        .filter_map(|l| l.strip_prefix("REMOVE-BEFORE "))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn remove_before_deadlines_are_translated_to_each_nodes_clock() {
    let f = Fixture::new(&["node1", "node2", "node3"]);
    let key = hello();
    f.place(&key, HELLO, &["node1", "node2", "node3"]);
    f.node("node1").set_time(1000);
    f.node("node2").set_time(5000);
    f.node("node3").set_time(20);
    // Several nodes: the gateway's clock (700), each node's remembered.
    assert_eq!(f.cluster.timestamp().await.unwrap(), 700);
    // The client allows 30 s: 730 on the gateway's clock.
    // Meanwhile 40 s pass on node2: its deadline (5030) is behind it.
    f.node("node2").advance_time(40);
    let r = f.cluster.remove(&key, Some(730)).await.unwrap();
    assert_eq!(deadlines(&f.wire("node1")), [1030]);
    assert_eq!(deadlines(&f.wire("node2")), [5030]);
    assert_eq!(deadlines(&f.wire("node3")), [50]);
    assert!(!r.removed);
    assert_eq!(names(&r.plus), ["node3", "node1"]);
    assert!(f.node("node2").content(&key).is_some());
    // A deadline already past on the gateway's clock can never remove.
    f.place(&key, HELLO, &["node1", "node2", "node3"]);
    let r = f.cluster.remove(&key, Some(100)).await.unwrap();
    assert!(!r.removed && r.plus.is_empty(), "{r:?}");
}

#[tokio::test]
async fn remove_before_without_a_remembered_clock_asks_the_node_first() {
    let mut o = options();
    let now = Arc::new(AtomicU64::new(700));
    let n = now.clone();
    o.clock = Arc::new(move || n.load(Ordering::SeqCst));
    let f = Fixture::with(&["node1", "node2"], |_| 100.0, Arc::new(EveryoneWants), o);
    let key = hello();
    f.place(&key, HELLO, &["node1", "node2"]);
    f.node("node1").set_time(1000);
    f.node("node2").set_time(9000);
    // GETTIMESTAMP went to node1 only (node2 was down then).
    f.node("node2").set_failing(Some("down"));
    assert_eq!(f.cluster.timestamp().await.unwrap(), 700);
    f.node("node2").set_failing(None);
    now.store(710, Ordering::SeqCst);
    f.node("node2").advance_time(10);
    let r = f.cluster.remove(&key, Some(730)).await.unwrap();
    assert!(r.removed, "{r:?}");
    assert_eq!(deadlines(&f.wire("node1")), [1030]);
    // node2: asked now (9010), 20 s left on the gateway's clock.
    assert_eq!(deadlines(&f.wire("node2")), [9030]);
    assert!(text(&f.wire("node2").client).contains("GETTIMESTAMP\nREMOVE-BEFORE 9030 "));
    // Every node down: GETTIMESTAMP is an error.
    for n in &f.nodes {
        n.set_failing(Some("down"));
    }
    assert!(f.cluster.timestamp().await.is_err());
}

#[tokio::test]
async fn a_single_node_cluster_passes_its_clock_through() {
    let f = Fixture::new(&["node1"]);
    let key = hello();
    f.place(&key, HELLO, &["node1"]);
    f.node("node1").set_time(4242);
    assert_eq!(f.cluster.timestamp().await.unwrap(), 4242);
    let r = f.cluster.remove(&key, Some(4250)).await.unwrap();
    assert!(r.removed);
    assert_eq!(deadlines(&f.wire("node1")), [4250]);
    assert_eq!(
        removed_reply(&r, 4, &cluster_uuid()),
        Message::SuccessPlus(vec![u("node1")])
    );
}

// ---- parallelism ----

/// A node whose operations meet at a barrier and count how many run at once.
struct Gate {
    inner: MemNode,
    barrier: Option<Arc<tokio::sync::Barrier>>,
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
}

impl Gate {
    async fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        match &self.barrier {
            Some(b) => {
                b.wait().await;
            }
            None => {
                for _ in 0..5 {
                    tokio::task::yield_now().await;
                }
            }
        }
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Node for Gate {
    fn uuid(&self) -> &Uuid {
        self.inner.uuid()
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn check_present(&self, key: &Key) -> Result<bool, NodeError> {
        self.inner.check_present(key).await
    }
    async fn lock_content(&self, key: &Key) -> Result<Option<Box<dyn ContentLock>>, NodeError> {
        self.inner.lock_content(key).await
    }
    async fn get(
        &self,
        key: &Key,
        o: u64,
        af: &AssociatedFile,
    ) -> Result<Option<Box<dyn Content>>, NodeError> {
        self.inner.get(key, o, af).await
    }
    async fn put(&self, key: &Key, af: &AssociatedFile) -> Result<PutStart, NodeError> {
        self.enter().await;
        self.inner.put(key, af).await
    }
    async fn remove(&self, key: &Key, d: Option<u64>) -> Result<Removed, NodeError> {
        self.enter().await;
        self.inner.remove(key, d).await
    }
    async fn timestamp(&self) -> Result<u64, NodeError> {
        self.enter().await;
        self.inner.timestamp().await
    }
}

fn gated(jobs: Option<usize>, barrier: Option<usize>) -> (Cluster, Arc<AtomicUsize>) {
    let now = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let barrier = barrier.map(|n| Arc::new(tokio::sync::Barrier::new(n)));
    let members = ["node1", "node2", "node3"]
        .iter()
        .map(|n| {
            ClusterMember::new(
                Arc::new(Gate {
                    inner: MemNode::new(u(n), *n),
                    barrier: barrier.clone(),
                    now: now.clone(),
                    max: max.clone(),
                }),
                100.0,
            )
        })
        .collect();
    let log = Arc::new(MemLocations::new());
    let c = Cluster::new(
        cluster_uuid(),
        "gated",
        members,
        log.clone(),
        Arc::new(EveryoneWants),
        log,
        ClusterOptions { jobs, ..options() },
    )
    .unwrap();
    (c, max)
}

#[tokio::test]
async fn node_requests_run_in_parallel() {
    // Each operation waits until all three nodes are in it: only parallel requests
    // get through (a serial cluster would wait forever; the timeout only bounds a
    // failure).
    let (c, max) = gated(None, Some(3));
    let limit = Duration::from_secs(30);
    let (key, x) = (hello(), af("x"));
    let r = tokio::time::timeout(limit, c.remove(&key, None));
    assert!(r.await.expect("parallel REMOVE").unwrap().removed);
    let t = tokio::time::timeout(limit, c.timestamp());
    t.await.expect("parallel GETTIMESTAMP").unwrap();
    let p = tokio::time::timeout(limit, c.put(&key, &x));
    let started = p.await.expect("parallel PUT").unwrap();
    assert!(matches!(started, PutStart::Accept(_)));
    assert_eq!(max.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn jobs_limit_how_many_nodes_are_busy_at_once() {
    for jobs in [1, 2] {
        let (c, max) = gated(Some(jobs), None);
        c.remove(&hello(), None).await.unwrap();
        c.timestamp().await.unwrap();
        let PutStart::Accept(mut sink) = c.put(&hello(), &af("x")).await.unwrap() else {
            panic!()
        };
        sink.begin(HELLO.len() as u64).await.unwrap();
        sink.write(HELLO).await.unwrap();
        assert_eq!(sink.finish(Validity::Valid).await.unwrap().plus.len(), 3);
        assert_eq!(max.load(Ordering::SeqCst), jobs, "jobs={jobs}");
    }
}

/// The upload streams to all targets at once: a target's sink that waits for the
/// others to begin too only gets through when they run in parallel.
#[tokio::test]
async fn upload_data_reaches_targets_in_parallel() {
    struct MeetSink {
        inner: Box<dyn PutSink>,
        barrier: Arc<tokio::sync::Barrier>,
    }
    #[async_trait]
    impl PutSink for MeetSink {
        fn offset(&self) -> u64 {
            self.inner.offset()
        }
        async fn begin(&mut self, len: u64) -> Result<(), NodeError> {
            self.barrier.wait().await;
            self.inner.begin(len).await
        }
        async fn write(&mut self, data: &[u8]) -> Result<(), NodeError> {
            self.barrier.wait().await;
            self.inner.write(data).await
        }
        async fn finish(self: Box<Self>, v: Validity) -> Result<Stored, NodeError> {
            self.inner.finish(v).await
        }
        async fn data_present(self: Box<Self>) -> Result<Stored, NodeError> {
            self.inner.data_present().await
        }
        async fn abort(self: Box<Self>) {
            self.inner.abort().await
        }
    }
    struct Meet {
        inner: MemNode,
        barrier: Arc<tokio::sync::Barrier>,
    }
    #[async_trait]
    impl Node for Meet {
        fn uuid(&self) -> &Uuid {
            self.inner.uuid()
        }
        fn name(&self) -> &str {
            self.inner.name()
        }
        async fn check_present(&self, key: &Key) -> Result<bool, NodeError> {
            self.inner.check_present(key).await
        }
        async fn lock_content(&self, key: &Key) -> Result<Option<Box<dyn ContentLock>>, NodeError> {
            self.inner.lock_content(key).await
        }
        async fn get(
            &self,
            key: &Key,
            o: u64,
            af: &AssociatedFile,
        ) -> Result<Option<Box<dyn Content>>, NodeError> {
            self.inner.get(key, o, af).await
        }
        async fn put(&self, key: &Key, af: &AssociatedFile) -> Result<PutStart, NodeError> {
            Ok(match self.inner.put(key, af).await? {
                PutStart::Accept(s) => PutStart::Accept(Box::new(MeetSink {
                    inner: s,
                    barrier: self.barrier.clone(),
                })),
                other => other,
            })
        }
        async fn remove(&self, key: &Key, d: Option<u64>) -> Result<Removed, NodeError> {
            self.inner.remove(key, d).await
        }
        async fn timestamp(&self) -> Result<u64, NodeError> {
            self.inner.timestamp().await
        }
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    let nodes: Vec<MemNode> = ["node1", "node2", "node3"]
        .iter()
        .map(|n| MemNode::new(u(n), *n))
        .collect();
    let members = nodes
        .iter()
        .map(|n| {
            ClusterMember::new(
                Arc::new(Meet {
                    inner: n.clone(),
                    barrier: barrier.clone(),
                }),
                100.0,
            )
        })
        .collect();
    let log = Arc::new(MemLocations::new());
    let c = Cluster::new(
        cluster_uuid(),
        "meet",
        members,
        log.clone(),
        Arc::new(EveryoneWants),
        log,
        options(),
    )
    .unwrap();
    let data = pattern(200_000);
    let key = key_of(&data, "");
    let r = tokio::time::timeout(Duration::from_secs(30), upload(&c, &key, &data, 64 * 1024))
        .await
        .expect("the targets ran in parallel")
        .unwrap();
    let PutOutcome::Stored(0, s) = r else {
        panic!("{r:?}")
    };
    assert_eq!(s.plus.len(), 3);
    for n in &nodes {
        assert!(n.content(&key).as_deref() == Some(&data[..]));
    }
}

// ---- another gateway's view of the cluster ----

#[tokio::test]
async fn a_member_behind_another_gateway_gets_uploads_and_is_never_logged() {
    let log = Arc::new(MemLocations::new());
    let n1 = MemNode::new(u("node1"), "node1");
    let other = MemNode::new(cluster_uuid(), "gw-mycluster");
    let c = Cluster::new(
        cluster_uuid(),
        "mycluster",
        vec![
            ClusterMember::new(Arc::new(n1.clone()), 100.0),
            ClusterMember::new(Arc::new(other.clone()), 100.0).via_gateway(u("gw")),
        ],
        log.clone(),
        Arc::new(EveryoneWants),
        log.clone(),
        options(),
    )
    .unwrap();
    let key = hello();
    let PutOutcome::Stored(_, s) = upload(&c, &key, HELLO, 5).await.unwrap() else {
        panic!()
    };
    // As git-annex: the other gateway's answer names the cluster; never logged.
    assert_eq!(names(&s.plus), ["cluster", "node1"]);
    assert_eq!(logged(&log, &key), ["node1"]);
    // Downloads and CHECKPRESENT never pick it (the log cannot list it).
    n1.set_failing(Some("down"));
    assert!(c.check_present(&key).await.is_err());
    assert!(c.get(&key, 0, &af("x")).await.is_err());
    n1.set_failing(None);
    // A second upload goes to it again (it is always "missing"), not to node1.
    let r = upload(&c, &key, HELLO, 5).await.unwrap();
    assert_eq!(r, PutOutcome::AlreadyHave(vec![]));
    // REMOVE: its SUCCESS names the cluster, which is not logged absent either.
    let r = c.remove(&key, None).await.unwrap();
    assert_eq!(names(&r.plus), ["cluster", "node1"]);
    assert!(log.get(&key).is_empty());
}

// ---- a mixed cluster of real node kinds ----

/// A bare git-annex repository made by the real git-annex.
fn annex_repo(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, Uuid) {
    let bin = crate::session::testing::tools_bin();
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join(".gitconfig"),
        "[user]\n\tname = annexgate test\n\temail = test@annexgate.invalid\n",
    )
    .unwrap();
    let git_dir = dir.join(name);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |args: &[&str], cwd: &std::path::Path| {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .current_dir(cwd)
            .env("HOME", &home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("PATH", &path)
            .env_remove("GIT_DIR")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(
        &["git", "init", "-q", "--bare", git_dir.to_str().unwrap()],
        dir,
    );
    run(&["git", "annex", "init", "-q", name], &git_dir);
    let uuid = Uuid::parse(run(&["git", "config", "annex.uuid"], &git_dir).trim()).unwrap();
    (git_dir, uuid)
}

fn fsck_key(dir: &std::path::Path, git_dir: &std::path::Path, key: &Key) -> String {
    let bin = crate::session::testing::tools_bin();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("git")
        .args(["annex", "fsck", "--key", &key.to_string()])
        .current_dir(git_dir)
        .env("HOME", dir.join("home"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("PATH", &path)
        .env_remove("GIT_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fsck: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_mixed_cluster_of_annex_repo_directory_and_memory() {
    use crate::node::annexrepo::{AnnexRepo, AnnexRepoConfig};
    use crate::node::directory::{Directory, DirectoryConfig, MemoryChunkLog};
    let tmp = tempfile::tempdir().unwrap();
    let (git_dir, repo_uuid) = annex_repo(tmp.path(), "repo");
    let mut cfg = AnnexRepoConfig::new(&git_dir, true, repo_uuid.clone());
    cfg.disk_reserve = 0;
    let repo = AnnexRepo::new(cfg, Arc::new(crate::node::NoLocations));
    let dir_path = tmp.path().join("dirremote");
    std::fs::create_dir(&dir_path).unwrap();
    let mut dcfg = DirectoryConfig::new(&dir_path, u("node2"), "dirremote");
    dcfg.disk_reserve = 0;
    let dir = Directory::new(
        dcfg,
        Arc::new(crate::node::NoLocations),
        Arc::new(MemoryChunkLog::new()),
    );
    let mem = MemNode::new(u("node3"), "mem");
    let log = Arc::new(MemLocations::new());
    let c = Cluster::new(
        cluster_uuid(),
        "mixed",
        vec![
            ClusterMember::new(Arc::new(repo.clone()), 100.0),
            ClusterMember::new(Arc::new(dir.clone()), 200.0),
            ClusterMember::new(Arc::new(mem.clone()), 300.0),
        ],
        log.clone(),
        Arc::new(EveryoneWants),
        log.clone(),
        options(),
    )
    .unwrap();
    let data = pattern(2 * 1024 * 1024 + 3);
    let key = key_of(&data, ".bin");
    let mut client = format!("VERSION 4\nPUT big.bin {key}\nDATA {}\n", data.len()).into_bytes();
    client.extend_from_slice(&data);
    client.extend_from_slice(
        format!("VALID\nGET 1000 big.bin {key}\nSUCCESS\nREMOVE {key}\n").as_bytes(),
    );
    let node: Arc<dyn Node> = Arc::new(c.clone());
    // Stop before REMOVE to look at the stored copies first.
    let cut = client.len() - format!("REMOVE {key}\n").len();
    let (out, outcome) = serve_bytes(node.clone(), &client[..cut], 256 * 1024).await;
    assert_eq!(outcome.exit_code(), 0);
    let stored = format!(
        "AUTH-SUCCESS {}\nVERSION 4\nPUT-FROM 0\nSUCCESS-PLUS {} {} {}\nDATA {}\n",
        cluster_uuid(),
        repo_uuid,
        u("node2"),
        u("node3"),
        data.len() - 1000
    );
    assert!(
        out.starts_with(stored.as_bytes()),
        "{}",
        text(&out[..200.min(out.len())])
    );
    assert!(out[stored.len()..stored.len() + data.len() - 1000] == data[1000..]);
    assert_eq!(&out[stored.len() + data.len() - 1000..], b"VALID\n");
    // The repository's copy is what git-annex itself accepts.
    let fsck = fsck_key(tmp.path(), &git_dir, &key);
    assert!(fsck.contains("ok"), "{fsck}");
    assert!(std::fs::read(dir.object_path(&key).unwrap()).unwrap() == data);
    assert!(mem.content(&key).as_deref() == Some(&data[..]));
    let mut want = vec![repo_uuid.clone(), u("node2"), u("node3")];
    want.sort();
    let mut got = log.get(&key);
    got.sort();
    assert_eq!(got, want);

    let (out, _) = serve_bytes(node, format!("VERSION 4\nREMOVE {key}\n").as_bytes(), 65536).await;
    assert!(text(&out).ends_with(&format!(
        "SUCCESS-PLUS {} {} {}\n",
        repo_uuid,
        u("node2"),
        u("node3")
    )));
    assert!(!repo.object_path(&key).unwrap().exists());
    assert!(!dir.object_path(&key).unwrap().exists());
    assert!(mem.keys().is_empty());
    assert!(log.get(&key).is_empty());
}

/// Local repositories leave hashing to the cluster (one hash, not one per node): a
/// fresh upload is offered and taken, a resumed one is not, corrupt bytes sent as `VALID`
/// are still refused by every node, and good ones are stored where git-annex accepts them.
#[tokio::test]
async fn local_repositories_share_the_clusters_hash_and_still_refuse_bad_bytes() {
    shared_hash_refuses_bad_bytes(false).await;
}

/// As above, with the hash and the writes on the worker threads.
#[tokio::test]
async fn the_shared_hash_on_the_worker_threads_still_refuses_bad_bytes() {
    shared_hash_refuses_bad_bytes(true).await;
}

async fn shared_hash_refuses_bad_bytes(parallel: bool) {
    use crate::node::annexrepo::{AnnexRepo, AnnexRepoConfig};
    let tmp = tempfile::tempdir().unwrap();
    let data = pattern(1024 * 1024 + 5);
    let key = key_of(&data, ".bin");
    let mut repos = Vec::new();
    for name in ["r1", "r2"] {
        let (git_dir, uuid) = annex_repo(tmp.path(), name);
        let mut cfg = AnnexRepoConfig::new(&git_dir, true, uuid);
        cfg.disk_reserve = 0;
        repos.push((
            git_dir,
            AnnexRepo::new(cfg, Arc::new(crate::node::NoLocations)),
        ));
    }

    // The offer, straight to a node: taken for a fresh upload, declined for a resume.
    let PutStart::Accept(mut sink) = repos[0].1.put(&key, &af("f.bin")).await.unwrap() else {
        panic!("r1 has it already")
    };
    assert!(sink.take_upstream_verification());
    sink.abort().await;
    let PutStart::Accept(mut sink) = repos[0].1.put(&key, &af("f.bin")).await.unwrap() else {
        panic!("r1 has it already")
    };
    sink.begin(data.len() as u64).await.unwrap();
    sink.write(&data[..1000]).await.unwrap();
    sink.abort().await;
    let PutStart::Accept(mut sink) = repos[0].1.put(&key, &af("f.bin")).await.unwrap() else {
        panic!("r1 has it already")
    };
    assert_eq!(sink.offset(), 1000);
    assert!(!sink.take_upstream_verification());
    sink.abort().await;

    let log = Arc::new(MemLocations::new());
    let c = Cluster::new(
        cluster_uuid(),
        "local",
        repos
            .iter()
            .map(|(_, r)| ClusterMember::new(Arc::new(r.clone()), 100.0))
            .collect(),
        log.clone(),
        Arc::new(EveryoneWants),
        log.clone(),
        options_parallel(parallel),
    )
    .unwrap();
    // r1 resumes (hashes its own bytes), r2 starts fresh (the cluster hashes for it).
    let mut bad = data.clone();
    bad[500_000] ^= 1;
    let r = upload(&c, &key, &bad, 64 * 1024).await.unwrap();
    assert_eq!(
        r,
        PutOutcome::Stored(0, Stored::default()),
        "corrupt bytes must be refused"
    );
    for (git_dir, repo) in &repos {
        assert!(!repo.object_path(&key).unwrap().exists(), "{git_dir:?}");
    }
    assert!(log.get(&key).is_empty());

    let PutOutcome::Stored(0, s) = upload(&c, &key, &data, 64 * 1024).await.unwrap() else {
        panic!("not stored from 0")
    };
    assert_eq!(s.plus.len(), 2, "{s:?}");
    for (git_dir, repo) in &repos {
        assert!(std::fs::read(repo.object_path(&key).unwrap()).unwrap() == data);
        let fsck = fsck_key(tmp.path(), git_dir, &key);
        assert!(fsck.contains("ok"), "{fsck}");
    }
}

// ---- the cluster's own notion of locations ----

/// The location view may show the cluster's records late (the recorder batches): the
/// cluster bridges the gap with what it did itself, and lets the view speak again once
/// it agrees.
/// A cluster `name` of two in-memory nodes (`node1`, `node2`) that want everything, with
/// the location view and record sink given.
fn two_node_cluster(
    name: &str,
    view: Arc<dyn LocationView>,
    records: Arc<dyn LocationSink>,
    options: ClusterOptions,
) -> (Cluster, Vec<MemNode>) {
    let nodes: Vec<MemNode> = ["node1", "node2"]
        .iter()
        .map(|n| MemNode::new(u(n), *n))
        .collect();
    let c = Cluster::new(
        cluster_uuid(),
        name,
        nodes
            .iter()
            .map(|n| ClusterMember::new(Arc::new(n.clone()), 100.0))
            .collect(),
        view,
        Arc::new(EveryoneWants),
        records,
        options,
    )
    .unwrap();
    (c, nodes)
}

#[tokio::test]
async fn the_cluster_remembers_its_changes_until_the_log_shows_them() {
    let now = Arc::new(AtomicU64::new(1000));
    let n = now.clone();
    let view = Arc::new(MemLocations::new());
    let records = Arc::new(MemLocations::new());
    let (c, nodes) = two_node_cluster(
        "lagging",
        view.clone(),
        records.clone(),
        ClusterOptions {
            clock: Arc::new(move || n.load(Ordering::SeqCst)),
            ..options()
        },
    );
    let key = hello();
    let PutOutcome::Stored(_, s) = upload(&c, &key, HELLO, 5).await.unwrap() else {
        panic!()
    };
    assert_eq!(s.plus.len(), 2);
    assert_eq!(logged(&records, &key), ["node1", "node2"]);
    assert!(view.get(&key).is_empty(), "the view lags");
    // Still, the cluster knows where it put the key.
    assert!(c.check_present(&key).await.unwrap());
    assert_eq!(
        upload(&c, &key, HELLO, 5).await.unwrap(),
        PutOutcome::AlreadyHave(vec![u("node2"), u("node1")])
    );
    // The view catches up; later changes made by others show through.
    view.set(&key, &[u("node1"), u("node2")]);
    assert!(c.check_present(&key).await.unwrap());
    view.set(&key, &[]);
    assert!(!c.check_present(&key).await.unwrap());
    assert!(c.get(&key, 0, &af("x")).await.unwrap().is_none());

    // A member that lacks what the log says is passed over for a while, then asked
    // again.
    view.set(&key, &[u("node1")]);
    nodes[0].remove(&key, None).await.unwrap();
    assert!(!c.check_present(&key).await.unwrap());
    nodes[0].insert(key.clone(), HELLO.to_vec());
    assert!(
        !c.check_present(&key).await.unwrap(),
        "within the minute: not asked"
    );
    now.fetch_add(61, Ordering::SeqCst);
    assert!(c.check_present(&key).await.unwrap());
}

/// An upload right after CHECKPRESENT of the same key uses the location view's answer
/// to it once more (the client's CHECKPRESENT-then-PUT pair reads the log once); any
/// other question, and an upload after a while, reads the view afresh.
#[tokio::test]
async fn an_upload_after_checkpresent_reads_the_location_view_once() {
    let asked = Arc::new(AtomicU64::new(0));
    let a = asked.clone();
    let view = move |_: &Key| {
        a.fetch_add(1, Ordering::SeqCst);
        Vec::new()
    };
    let (c, _) = two_node_cluster(
        "counted",
        Arc::new(view),
        Arc::new(MemLocations::new()),
        options(),
    );
    let key = hello();
    assert!(!c.check_present(&key).await.unwrap());
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    let PutOutcome::Stored(_, s) = upload(&c, &key, HELLO, 5).await.unwrap() else {
        panic!()
    };
    assert_eq!(s.plus.len(), 2);
    assert_eq!(asked.load(Ordering::SeqCst), 1, "the PUT reused the answer");
    // Used once only: the next question of either kind reads the view.
    assert!(c.check_present(&key).await.unwrap(), "the overlay knows");
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    let other = key_of(b"other\n", ".txt");
    let _ = upload(&c, &other, b"other\n", 5).await.unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 3, "another key: read afresh");
    assert!(c.check_present(&other).await.unwrap());
    assert_eq!(asked.load(Ordering::SeqCst), 4);
    std::thread::sleep(VIEW_REUSE + Duration::from_millis(10));
    let _ = upload(&c, &other, b"other\n", 5).await.unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 5, "too old: read afresh");
}
