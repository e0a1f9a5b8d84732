use std::sync::Arc;

use super::*;
use crate::node::memory::MemNode;
use crate::node::Node;
use crate::session::testing::{fixture, key_of, placeholder_uuid, replay, Oracle, TestCluster};

const HELLO: &[u8] = b"hello world";
const HELLO_NL: &[u8] = b"hello world\n";

fn uuid(s: &str) -> Uuid {
    Uuid::parse(s).unwrap()
}

fn shell(uuid: &Uuid) -> ServerConfig {
    ServerConfig::shell(uuid.clone(), ServerMode::ReadWrite)
}

fn mem(uuid: &Uuid) -> MemNode {
    MemNode::new(uuid.clone(), "mem")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---- the real transcripts ----

/// How a fixture connection's server starts out.
enum Setup {
    /// A plain repository with the UUID the connection announced; `hello world\n`
    /// present or not; clock at `time`.
    Plain { present: bool, time: u64 },
    /// The test cluster over nodes (in this order), `hello world\n` present on some.
    Cluster {
        nodes: &'static [(&'static str, bool)],
    },
}

fn setup_for(file: &str, repo: &str) -> Setup {
    let present = !matches!(
        file,
        "10-plain-put.txt" | "20-cluster-put.txt" | "30-node-put.txt"
    );
    match (file, repo) {
        ("20-cluster-put.txt", "gw.git") => Setup::Cluster {
            nodes: &[("node3", false), ("node2", false), ("node1", false)],
        },
        ("21-cluster-get.txt", "gw.git") => Setup::Cluster {
            nodes: &[("node3", false), ("node2", false), ("node1", true)],
        },
        ("22-cluster-drop.txt", "gw.git") => Setup::Cluster {
            nodes: &[("node3", true), ("node2", true), ("node1", true)],
        },
        _ => Setup::Plain {
            present,
            time: 3377,
        },
    }
}

fn build(setup: &Setup, served: &Uuid) -> (Arc<dyn Node>, Vec<MemNode>) {
    let key = key_of(HELLO_NL, ".txt");
    match setup {
        Setup::Plain { present, time } => {
            let n = mem(served);
            n.set_time(*time);
            if *present {
                n.insert(key, HELLO_NL.to_vec());
            }
            (Arc::new(n.clone()), vec![n])
        }
        Setup::Cluster { nodes } => {
            let nodes: Vec<MemNode> = nodes
                .iter()
                .map(|(name, present)| {
                    let n = mem(&placeholder_uuid(name));
                    if *present {
                        n.insert(key.clone(), HELLO_NL.to_vec());
                    }
                    n
                })
                .collect();
            let c = TestCluster {
                uuid: served.clone(),
                nodes: nodes.clone(),
            };
            (Arc::new(c), nodes)
        }
    }
}

const FIXTURES: &[&str] = &[
    "10-plain-put.txt",
    "11-plain-get.txt",
    "12-plain-drop.txt",
    "20-cluster-put.txt",
    "21-cluster-get.txt",
    "22-cluster-drop.txt",
    "30-node-put.txt",
    "31-node-drop.txt",
    "40-local-drop-locks-cluster.txt",
    "41-node-drop-locking-others.txt",
];

/// Every connection in the fixtures (the plain repositories, the proxied-node sessions
/// of the gateway replayed against a plain node with the same UUID, each node's own
/// session, and the cluster sessions against the test cluster) gives exactly the bytes
/// git-annex's server gave.
#[tokio::test]
async fn fixture_transcripts_replay_byte_for_byte() {
    let mut count = 0;
    for file in FIXTURES {
        for ex in fixture(file) {
            let setup = setup_for(file, &ex.repo);
            let (node, _) = build(&setup, &ex.served);
            let r = replay(shell(&ex.served), node, &ex.client).await;
            assert_eq!(text(&r.server), text(&ex.server), "{}", ex.name);
            assert_eq!(r.end, End::Clean, "{}", ex.name);
            count += 1;
        }
    }
    // 10-12: 1 each; 20-22: gateway + 3/1/3 nodes; 30, 31, 40: gateway + node;
    // 41: two gateway connections + two nodes.
    assert_eq!(count, 3 + 4 + 2 + 4 + 2 + 2 + 2 + 4);
}

/// The uploads in the fixtures leave the content where it belongs.
#[tokio::test]
async fn fixture_uploads_store_the_content() {
    let key = key_of(HELLO_NL, ".txt");
    for ex in fixture("20-cluster-put.txt") {
        let setup = setup_for("20-cluster-put.txt", &ex.repo);
        let (node, mems) = build(&setup, &ex.served);
        replay(shell(&ex.served), node, &ex.client).await;
        for m in mems {
            assert_eq!(m.content(&key).as_deref(), Some(HELLO_NL), "{}", ex.name);
        }
    }
}

/// The spec's transcripts (p2p-protocol.md §7), as sessions: client lines `C>`, server
/// lines `S>`, payload lines `C= `/`S= ` (bytes without newline).
fn script(lines: &str) -> (Vec<u8>, Vec<u8>) {
    let (mut c, mut s) = (Vec::new(), Vec::new());
    for l in lines.lines().map(str::trim_start).filter(|l| !l.is_empty()) {
        let (dir, rest) = l.split_at(3);
        let buf = if dir.starts_with('C') { &mut c } else { &mut s };
        buf.extend_from_slice(rest.as_bytes());
        if dir.ends_with("> ") {
            buf.push(b'\n');
        }
    }
    (c, s)
}

fn spec_k() -> Key {
    key_of(HELLO, ".txt")
}

const SPEC_UUID: &str = "de2c220a-31f0-4f79-a0cf-2ae34a0559b9";

#[tokio::test]
async fn spec_transcripts_replay_byte_for_byte() {
    let k = spec_k();
    assert_eq!(
        k.to_string(),
        "SHA256E-s11--b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9.txt"
    );
    let absent = key_of(b"foo", ".bin");
    let u = uuid(SPEC_UUID);

    // Startup and PUT.
    let n = mem(&u);
    let (c, s) = script(&format!(
        "S> AUTH-SUCCESS {SPEC_UUID}
         C> VERSION 4
         S> VERSION 4
         C> BYPASS 11111111-1111-1111-1111-111111111111
         C> CHECKPRESENT {k}
         S> FAILURE
         C> PUT hello%%world.txt {k}
         S> PUT-FROM 0
         C> DATA 11
         C= hello world
         C> VALID
         S> SUCCESS
         C> CHECKPRESENT {k}
         S> SUCCESS
         C> PUT x {k}
         S> ALREADY-HAVE"
    ));
    let r = replay(shell(&u), Arc::new(n.clone()), &c).await;
    assert_eq!(text(&r.server), text(&s));
    assert_eq!(n.content(&k).as_deref(), Some(HELLO));
    assert_eq!(
        r.created,
        Some((4, vec![uuid("11111111-1111-1111-1111-111111111111")]))
    );

    // GET: full, resumed, absent.
    let (c, s) = script(&format!(
        "S> AUTH-SUCCESS {SPEC_UUID}
         C> VERSION 4
         S> VERSION 4
         C> GET 0 hello.txt {k}
         S> DATA 11
         S= hello world
         S> VALID
         C> SUCCESS
         C> GET 6 hello.txt {k}
         S> DATA 5
         S= world
         S> VALID
         C> SUCCESS
         C> GET 0 foo.bin {absent}
         S> DATA 0
         S> INVALID
         C> FAILURE"
    ));
    let r = replay(shell(&u), Arc::new(n.clone()), &c).await;
    assert_eq!(text(&r.server), text(&s));

    // Lock, time-bounded removal, DATA-PRESENT.
    n.set_time(998);
    let (c, s) = script(&format!(
        "S> AUTH-SUCCESS {SPEC_UUID}
         C> VERSION 4
         S> VERSION 4
         C> LOCKCONTENT {k}
         S> SUCCESS
         C> UNLOCKCONTENT
         C> GETTIMESTAMP
         S> TIMESTAMP 998
         C> REMOVE-BEFORE 993 {k}
         S> FAILURE
         C> REMOVE-BEFORE 1598 {k}
         S> SUCCESS
         C> REMOVE {k}
         S> SUCCESS
         C> PUT  {k}
         S> PUT-FROM 0
         C> DATA-PRESENT
         S> FAILURE"
    ));
    let r = replay(shell(&u), Arc::new(n.clone()), &c).await;
    assert_eq!(text(&r.server), text(&s));
    assert!(n.content(&k).is_none());

    // A v0 client resuming an interrupted upload.
    n.insert_partial(k.clone(), b"hello ".to_vec());
    let (c, s) = script(&format!(
        "S> AUTH-SUCCESS {SPEC_UUID}
         C> PUT hello.txt {k}
         S> PUT-FROM 6
         C> DATA 5
         C= world
         S> SUCCESS
         C> GET 0 hello.txt {k}
         S> DATA 11
         S= hello world
         C> SUCCESS"
    ));
    let r = replay(shell(&u), Arc::new(n.clone()), &c).await;
    assert_eq!(text(&r.server), text(&s));
    assert_eq!(r.created, Some((0, vec![])));

    // The cluster.
    let k1 = key_of(b"cluster!!", ".txt");
    let cu = "acb82efc-627c-8994-982b-f7149c37427b";
    let ns = [
        "72e8e007-25ba-4852-ad74-ad6e65919798",
        "350e264d-a98e-4449-affe-9cdb92de9916",
        "b9330ac3-c381-4ace-9009-98621a4aeba7",
    ];
    let nodes: Vec<MemNode> = ns.iter().map(|u| mem(&uuid(u))).collect();
    let cluster = TestCluster {
        uuid: uuid(cu),
        nodes: nodes.clone(),
    };
    let all = ns.join(" ");
    let (c, s) = script(&format!(
        "S> AUTH-SUCCESS {cu}
         C> VERSION 4
         S> VERSION 4
         C> BYPASS
         C> CHECKPRESENT {k1}
         S> FAILURE
         C> PUT one.txt {k1}
         S> PUT-FROM 0
         C> DATA 9
         C= cluster!!
         C> VALID
         S> SUCCESS-PLUS {all}
         C> PUT one.txt {k1}
         S> ALREADY-HAVE-PLUS {all}
         C> LOCKCONTENT {k1}
         S> FAILURE
         C> REMOVE {k1}
         S> SUCCESS-PLUS {all}"
    ));
    let r = replay(shell(&uuid(cu)), Arc::new(cluster), &c).await;
    assert_eq!(text(&r.server), text(&s));
    for n in nodes {
        assert!(n.content(&k1).is_none());
    }
}

// ---- differential tests against the real git-annex-shell ----

/// `hello world` (11 bytes) is present in both servers; `hello world\n` is not.
async fn differential(
    base: &Oracle,
    name: &str,
    script: &[u8],
    mode: ServerMode,
    oracle_env: &[(&str, &str)],
) {
    let k = spec_k();
    let oracle = base.fork();
    let (want, want_code) = oracle.run(script, oracle_env);
    let n = mem(&oracle.uuid);
    n.insert(k, HELLO.to_vec());
    let r = replay(
        ServerConfig::shell(oracle.uuid.clone(), mode),
        Arc::new(n),
        script,
    )
    .await;
    assert_eq!(text(&r.server), text(&want), "{name}: server bytes");
    let code = match r.end {
        End::Clean => 0,
        End::Failed(_) => 1,
    };
    assert_eq!(code, want_code, "{name}: exit status ({:?})", r.end);
}

fn b(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Scripts of client input, run through git-annex-shell p2pstdio 10.20261026 and
/// through our session: the replies and the exit status must be identical.
#[tokio::test]
async fn same_answers_as_git_annex_shell() {
    let k = spec_k().to_string();
    let k2 = key_of(HELLO_NL, ".txt").to_string();
    let k = k.as_str();
    let k2 = k2.as_str();
    let rw = ServerMode::ReadWrite;
    let cases: Vec<(&str, Vec<u8>, ServerMode, Vec<(&str, &str)>)> = vec![
        (
            "version parsing and empty/unknown lines",
            b"VERSION 4abc\nVERSION  3\nVERSION 0x2\nVERSION 4.5\nVERSION (1)\nVERSION\n\
              GETTIMESTAMP x\nGETTIMESTAMP  \n\nUNLOCKCONTENT\nVERSION 99999999999999999999\n\
              FROB\nversion 4\n"
                .to_vec(),
            rw,
            vec![],
        ),
        (
            "GET and the client's verdict, v4",
            format!(
                "VERSION 4\nGET 0 x {k}\nCHECKPRESENT {k}\nGET 0 x {k}\nERROR foo\n\
                 CHECKPRESENT {k}\nGET 0 x {k}\nxyz\nGET 0 x {k}\nSUCCESS-PLUS a b\n\
                 GET 6 x {k}\nFAILURE-PLUS\nGET 11 x {k}\nSUCCESS\nGET 99 x {k}\nSUCCESS\n\
                 GET 0 x {k2}\nFAILURE\nGET 0  {k}\nSUCCESS\n"
            )
            .into_bytes(),
            rw,
            vec![],
        ),
        (
            "GET and the client's verdict, v1",
            format!(
                "VERSION 1\nGET 0 x {k}\nCHECKPRESENT {k}\nGET 0 x {k}\nSUCCESS-PLUS a\n\
                 GET 0 x {k2}\nSUCCESS\n"
            )
            .into_bytes(),
            rw,
            vec![],
        ),
        (
            "GET, v0",
            format!("GET 3 x {k}\nSUCCESS\nGET 11 x {k}\nSUCCESS\nGET 0 x {k2}\nFAILURE\n")
                .into_bytes(),
            rw,
            vec![],
        ),
        (
            "LOCKCONTENT followed by other messages",
            format!(
                "VERSION 4\nLOCKCONTENT {k}\nCHECKPRESENT {k}\nLOCKCONTENT {k}\nERROR x\n\
                 LOCKCONTENT {k}\nfoo\nUNLOCKCONTENT\nLOCKCONTENT {k2}\nLOCKCONTENT {k}\n\
                 UNLOCKCONTENT\nUNLOCKCONTENT\n"
            )
            .into_bytes(),
            rw,
            vec![],
        ),
        (
            "PUT answered by other messages, v3",
            format!(
                "VERSION 3\nPUT x {k}\nDATA-PRESENT\nPUT x {k2}\nERROR nope\nPUT x {k2}\nfoo\n\
                 PUT x {k2}\nCHECKPRESENT {k}\nBYPASS\nBYPASS a b\nDATA 3\nCHECKPRESENT {k2}\n"
            )
            .into_bytes(),
            rw,
            vec![],
        ),
        (
            "PUT with something else where VALID belongs",
            b(&[
                format!("VERSION 4\nPUT x {k2}\nDATA 12\n").as_bytes(),
                HELLO_NL,
                format!("CHECKPRESENT {k}\nCHECKPRESENT {k2}\n").as_bytes(),
            ]),
            rw,
            vec![],
        ),
        (
            "PUT of wrong bytes, then again",
            b(&[
                format!("VERSION 4\nPUT x {k2}\nDATA 12\n").as_bytes(),
                b"hello worlD\n",
                format!("VALID\nCHECKPRESENT {k2}\nPUT x {k2}\nDATA 12\n").as_bytes(),
                b"HELLO WORLD\n",
                format!("INVALID\nPUT x {k2}\nERROR bye\n").as_bytes(),
            ]),
            rw,
            vec![],
        ),
        (
            "DATA whose length cannot be the key's",
            b(&[
                format!("VERSION 4\nPUT x {k2}\nDATA 5\n").as_bytes(),
                b"hello",
                format!("VALID\nPUT x {k2}\nDATA 13\n").as_bytes(),
                b"hello world\n!",
                format!("VALID\nPUT x {k2}\nDATA 0\nVALID\nCHECKPRESENT {k2}\n").as_bytes(),
            ]),
            rw,
            vec![],
        ),
        (
            "a v0 upload and removal",
            b(&[
                format!("PUT x {k2}\nDATA 12\n").as_bytes(),
                HELLO_NL,
                format!("CHECKPRESENT {k2}\nREMOVE {k2}\nCHECKPRESENT {k2}\n").as_bytes(),
            ]),
            rw,
            vec![],
        ),
        (
            "DATA 0 and INVALID: the sender could not read",
            format!("VERSION 4\nPUT x {k2}\nDATA 0\nINVALID\nPUT x {k2}\nDATA-PRESENT\n")
                .into_bytes(),
            rw,
            vec![],
        ),
        (
            "read-only",
            format!(
                "VERSION 4\nPUT x {k}\nREMOVE {k}\nREMOVE-BEFORE 5 {k}\nCHECKPRESENT {k}\n\
                 CONNECT git-receive-pack\nCHECKPRESENT {k}\n"
            )
            .into_bytes(),
            ServerMode::ReadOnly,
            vec![("GIT_ANNEX_SHELL_READONLY", "1")],
        ),
        (
            "append-only",
            format!(
                "VERSION 4\nPUT x {k2}\nDATA 0\nINVALID\nREMOVE {k}\nREMOVE-BEFORE 5 {k}\n\
                 CONNECT git-receive-pack\nCHECKPRESENT {k}\n"
            )
            .into_bytes(),
            ServerMode::AppendOnly,
            vec![("GIT_ANNEX_SHELL_APPENDONLY", "1")],
        ),
        (
            "CONNECT ends the session",
            format!("VERSION 4\nCONNECT git-upload-pack\nCHECKPRESENT {k}\n").into_bytes(),
            rw,
            vec![],
        ),
        (
            "NOTIFYCHANGE ends the session",
            format!("VERSION 4\nNOTIFYCHANGE\nCHECKPRESENT {k}\n").into_bytes(),
            rw,
            vec![],
        ),
        (
            "messages a server never takes",
            format!(
                "VERSION 4\nCONNECT foo\nCONNECTDONE 0\nCHANGED a b\nAUTH-SUCCESS x\n\
                 AUTH-FAILURE\nSUCCESS\nFAILURE\nVALID\nTIMESTAMP 5\nALREADY-HAVE\nPUT-FROM 3\n\
                 DATA-PRESENT\nAUTH 11111111-2222-3333-4444-555555555555 abc\nPUT-FROM\n\
                 CHECKPRESENT {k}\n"
            )
            .into_bytes(),
            rw,
            vec![],
        ),
        (
            "the client gives up",
            format!("VERSION 4\nCHECKPRESENT {k}\nERROR bye\nCHECKPRESENT {k}\n").into_bytes(),
            rw,
            vec![],
        ),
        (
            "a line over the limit",
            b(&[b"VERSION 4\n", &vec![b'X'; 32768], b"\nCHECKPRESENT x\n"]),
            rw,
            vec![],
        ),
        (
            "the longest line allowed",
            b(&[
                b"VERSION 4\n",
                &vec![b'X'; 32767],
                b"\n",
                &vec![b'Y'; 32766],
                b"\r\n",
            ]),
            rw,
            vec![],
        ),
        (
            "the client vanishes inside DATA",
            b(&[
                format!("VERSION 4\nPUT x {k2}\nDATA 12\n").as_bytes(),
                b"hello",
            ]),
            rw,
            vec![],
        ),
        (
            "the client vanishes after DATA, before VALID",
            b(&[
                format!("VERSION 4\nPUT x {k2}\nDATA 12\n").as_bytes(),
                HELLO_NL,
            ]),
            rw,
            vec![],
        ),
        (
            "removal, with and without a deadline",
            format!(
                "VERSION 4\nREMOVE-BEFORE 0 {k}\nCHECKPRESENT {k}\nREMOVE {k}\nREMOVE {k}\n\
                 CHECKPRESENT {k}\nREMOVE-BEFORE 99999999999 {k2}\n"
            )
            .into_bytes(),
            rw,
            vec![],
        ),
        (
            "keys and files that look like paths",
            format!(
                "VERSION 4\nCHECKPRESENT SHA256E-s1--a/../../b\nCHECKPRESENT ../../etc/passwd\n\
                 CHECKPRESENT notakey\nCHECKPRESENT \nGET x y {k}\nGET 0 /abs {k}\n\
                 PUT /abs {k}\nGET 0 ../x {k}\nSUCCESS\nREMOVE WORM-s1--../../x\n\
                 LOCKCONTENT SHA256E-s1--a/b\nGET 0 x WORM-s1--/etc/passwd\nFAILURE\n"
            )
            .into_bytes(),
            rw,
            vec![],
        ),
        (
            "whitespace variants",
            format!(
                "VERSION 4\nCHECKPRESENT\t{k}\nCHECKPRESENT {k} \nCHECKPRESENT  {k}\n\
                 GET\t0\t\t{k}\nSUCCESS\r\nSUCCESS-PLUS  \nBYPASS \n"
            )
            .into_bytes(),
            rw,
            vec![],
        ),
    ];
    let base = Oracle::new(&[(&spec_k(), HELLO)]);
    for (name, input, mode, env) in &cases {
        differential(&base, name, input, *mode, env).await;
    }
}

// ---- what git-annex-shell cannot show ----

fn drain(s: &mut ServerSession) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

fn sent(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(m) => Some(m.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_node_is_made_once_when_the_first_request_needs_it() {
    let u = uuid(SPEC_UUID);
    let k = spec_k();
    let mut s = ServerSession::new(shell(&u));
    assert_eq!(sent(&drain(&mut s)), [format!("AUTH-SUCCESS {SPEC_UUID}")]);
    s.handle(Input::Message(Message::Version(9)));
    assert_eq!(sent(&drain(&mut s)), ["VERSION 4"]);
    let bypass = vec![uuid("aaaa"), uuid("bbbb")];
    s.handle(Input::Message(Message::Bypass(bypass.clone())));
    assert!(drain(&mut s).is_empty(), "BYPASS gets no reply");
    assert_eq!(s.bypass(), &bypass[..]);
    s.handle(Input::Message(Message::CheckPresent(k.clone())));
    let a = drain(&mut s);
    assert!(matches!(
        &a[..],
        [Action::CreateNode { version: 4, bypass: b }] if *b == bypass
    ));
    s.handle(Input::NodeCreated(Ok(())));
    assert!(matches!(
        &drain(&mut s)[..],
        [Action::Call(Call::CheckPresent(_))]
    ));
    s.handle(Input::Reply(Ok(Reply::Present(true))));
    assert_eq!(sent(&drain(&mut s)), ["SUCCESS"]);
    // Later requests use the same node; a late BYPASS changes nothing.
    s.handle(Input::Message(Message::Bypass(vec![uuid("cccc")])));
    s.handle(Input::Message(Message::GetTimestamp));
    assert!(matches!(
        &drain(&mut s)[..],
        [Action::Call(Call::Timestamp)]
    ));
    assert_eq!(s.bypass(), &bypass[..]);
}

#[test]
fn bypass_counts_only_right_after_version_2_or_later() {
    let u = uuid(SPEC_UUID);
    for (version, first, want) in [
        (Some(1), "BYPASS x", vec![]),
        (None, "BYPASS x", vec![]),
        (Some(2), "BYPASS x", vec![uuid("x")]),
        (Some(4), "BYPASS", vec![]),
    ] {
        let mut s = ServerSession::new(shell(&u));
        if let Some(v) = version {
            s.handle(Input::Message(Message::Version(v)));
        }
        s.handle(Input::Message(
            crate::proto::p2p::parse_line(first.as_bytes()).unwrap(),
        ));
        s.handle(Input::Message(Message::GetTimestamp));
        let a = drain(&mut s);
        let created = a.iter().find_map(|a| match a {
            Action::CreateNode { bypass, .. } => Some(bypass.clone()),
            _ => None,
        });
        assert_eq!(created, Some(want), "version {version:?}, {first}");
    }
    // VERSION, another message, then BYPASS: ignored.
    let mut s = ServerSession::new(shell(&u));
    s.handle(Input::Message(Message::Version(4)));
    s.handle(Input::Message(Message::Success));
    s.handle(Input::Message(Message::Bypass(vec![uuid("x")])));
    assert!(s.bypass().is_empty());
}

#[tokio::test]
async fn a_node_that_cannot_be_made_answers_error_every_time() {
    let u = uuid(SPEC_UUID);
    let k = spec_k();
    let mut s = ServerSession::new(shell(&u));
    drain(&mut s);
    s.handle(Input::Message(Message::CheckPresent(k.clone())));
    drain(&mut s);
    s.handle(Input::NodeCreated(Err(NodeError::Unreachable {
        node: "node1".into(),
        reason: "ssh: connection refused".into(),
    })));
    let a = drain(&mut s);
    assert_eq!(
        sent(&a),
        ["ERROR node1: cannot connect: ssh: connection refused"]
    );
    assert!(a
        .iter()
        .any(|a| matches!(a, Action::Refused(Refusal::NodeUnavailable(_)))));
    s.handle(Input::Message(Message::Get {
        offset: 0,
        af: AssociatedFile::none(),
        key: k,
    }));
    let a = drain(&mut s);
    assert!(
        !a.iter().any(|a| matches!(a, Action::CreateNode { .. })),
        "not retried"
    );
    assert_eq!(
        sent(&a),
        ["ERROR node1: cannot connect: ssh: connection refused"]
    );
}

#[tokio::test]
async fn node_errors_become_error_replies_and_the_connection_stays() {
    let u = uuid(SPEC_UUID);
    let k = spec_k();
    let n = mem(&u);
    n.insert(k.clone(), HELLO.to_vec());
    n.set_failing(Some("disk on fire"));
    let client = format!(
        "VERSION 4\nCHECKPRESENT {k}\nREMOVE {k}\nGETTIMESTAMP\nGET 0 x {k}\nPUT x {k}\n\
         LOCKCONTENT {k}\n"
    );
    let r = replay(shell(&u), Arc::new(n.clone()), client.as_bytes()).await;
    let e = "ERROR mem: cannot connect: disk on fire";
    assert_eq!(
        text(&r.server),
        format!("AUTH-SUCCESS {SPEC_UUID}\nVERSION 4\n{e}\n{e}\n{e}\n{e}\n{e}\nFAILURE\n")
    );
    assert_eq!(r.end, End::Clean);
    assert_eq!(
        r.refusals
            .iter()
            .filter(|r| matches!(r, Refusal::NodeFailed { .. }))
            .count(),
        6
    );
}

#[test]
fn removal_replies_follow_the_cluster_rule() {
    let c = uuid("acb82efc-627c-8994-982b-f7149c37427b");
    let (a, b2) = (uuid("aaaa"), uuid("bbbb"));
    let r = |removed, plus: Vec<Uuid>, error: Option<&str>| Removed {
        removed,
        plus,
        error: error.map(str::to_string),
    };
    let cases = [
        (r(true, vec![], None), 4, "SUCCESS"),
        (
            r(true, vec![a.clone(), b2.clone()], None),
            4,
            "SUCCESS-PLUS aaaa bbbb",
        ),
        (r(true, vec![a.clone(), b2.clone()], None), 1, "SUCCESS"),
        (r(true, vec![c.clone()], None), 4, "SUCCESS"),
        (r(false, vec![], None), 4, "FAILURE"),
        (
            r(false, vec![], Some("node2: locked")),
            4,
            "ERROR node2: locked",
        ),
        (
            r(false, vec![a.clone()], Some("node2: locked")),
            1,
            "ERROR node2: locked",
        ),
        (r(false, vec![a.clone()], Some("x")), 2, "FAILURE-PLUS aaaa"),
        (r(false, vec![a.clone()], None), 3, "FAILURE-PLUS aaaa"),
        (r(false, vec![c.clone(), c.clone()], None), 4, "FAILURE"),
    ];
    for (removed, version, want) in cases {
        assert_eq!(
            removed_reply(&removed, version, &c).to_string(),
            want,
            "{removed:?} v{version}"
        );
    }
    let s = |stored, plus: Vec<Uuid>| Stored { stored, plus };
    assert_eq!(stored_reply(&s(true, vec![]), 4).to_string(), "SUCCESS");
    assert_eq!(
        stored_reply(&s(true, vec![a.clone()]), 4).to_string(),
        "SUCCESS-PLUS aaaa"
    );
    assert_eq!(
        stored_reply(&s(true, vec![a.clone()]), 1).to_string(),
        "SUCCESS"
    );
    assert_eq!(
        stored_reply(&s(false, vec![a.clone()]), 4).to_string(),
        "FAILURE"
    );
    assert_eq!(
        already_have_reply(std::slice::from_ref(&a), 2).to_string(),
        "ALREADY-HAVE-PLUS aaaa"
    );
    assert_eq!(
        already_have_reply(std::slice::from_ref(&a), 1).to_string(),
        "ALREADY-HAVE"
    );
    assert_eq!(already_have_reply(&[], 4).to_string(), "ALREADY-HAVE");
}

#[test]
fn wire_errors_pass_remote_text_through_on_one_line() {
    let e = NodeError::Remote {
        node: "node1".into(),
        message: "proxied special remote reports: boom".into(),
    };
    assert_eq!(wire_error(&e), "proxied special remote reports: boom");
    let e = NodeError::Denied("not\nallowed".into());
    assert_eq!(wire_error(&e), "not allowed");
}

#[tokio::test]
async fn data_that_cannot_fit_the_key_is_discarded_and_the_partial_kept() {
    let u = uuid(SPEC_UUID);
    let k = spec_k();
    let n = mem(&u);
    n.insert_partial(k.clone(), b"hello ".to_vec());
    // PUT-FROM 6; DATA 6 would make 12 bytes of an 11-byte key.
    let client = b(&[
        format!("VERSION 4\nPUT x {k}\nDATA 6\n").as_bytes(),
        b"WORLD!",
        b"VALID\n",
    ]);
    let r = replay(shell(&u), Arc::new(n.clone()), &client).await;
    assert_eq!(
        text(&r.server),
        format!("AUTH-SUCCESS {SPEC_UUID}\nVERSION 4\nPUT-FROM 6\nFAILURE\n")
    );
    assert_eq!(
        n.partial(&k).as_deref(),
        Some(&b"hello "[..]),
        "partial untouched"
    );
    assert!(n.content(&k).is_none());
    assert!(r.refusals.iter().any(|r| matches!(
        r,
        Refusal::DataLength {
            offset: 6,
            len: 6,
            size: 11,
            ..
        }
    )));
    // And the resume still works afterwards.
    let client = b(&[
        format!("VERSION 4\nPUT x {k}\nDATA 5\n").as_bytes(),
        b"worldVALID\n",
    ]);
    let r = replay(shell(&u), Arc::new(n.clone()), &client).await;
    assert!(text(&r.server).ends_with("PUT-FROM 6\nSUCCESS\n"));
    assert_eq!(n.content(&k).as_deref(), Some(HELLO));
}

#[tokio::test]
async fn a_client_vanishing_mid_data_leaves_a_resumable_partial() {
    let u = uuid(SPEC_UUID);
    let k = spec_k();
    let n = mem(&u);
    let client = b(&[
        format!("VERSION 4\nPUT x {k}\nDATA 11\n").as_bytes(),
        b"hello ",
    ]);
    let r = replay(shell(&u), Arc::new(n.clone()), &client).await;
    assert!(text(&r.server).ends_with("PUT-FROM 0\nFAILURE\n"));
    assert!(matches!(
        r.end,
        End::Failed(Fatal::ClientVanished {
            moved: 6,
            len: 11,
            ..
        })
    ));
    assert_eq!(n.partial(&k).as_deref(), Some(&b"hello "[..]));
    assert!(n.content(&k).is_none());
}

#[tokio::test]
async fn a_lock_is_held_until_unlockcontent_or_the_end() {
    let u = uuid(SPEC_UUID);
    let k = spec_k();
    let n = mem(&u);
    n.insert(k.clone(), HELLO.to_vec());
    let mut s = ServerSession::new(shell(&u));
    let mut held = crate::conn::Held {
        node: Some(Arc::new(n.clone())),
        ..Default::default()
    };
    s.handle(Input::NodeCreated(Ok(()))); // ignored: not waiting for one
    assert!(s.is_closed(), "a driver bug closes the session");

    let mut s = ServerSession::new(shell(&u));
    drain(&mut s);
    s.handle(Input::Message(Message::LockContent(k.clone())));
    drain(&mut s);
    s.handle(Input::NodeCreated(Ok(())));
    let Some(Action::Call(c)) = s.poll_action() else {
        panic!()
    };
    let r = crate::conn::run_call(&mut held, c).await;
    s.handle(Input::Reply(r));
    assert_eq!(sent(&drain(&mut s)), ["SUCCESS"]);
    assert_eq!(n.lock_count(&k), 1);
    // The client hangs up while holding the lock: released.
    s.handle(Input::Eof);
    let a = drain(&mut s);
    assert!(matches!(
        &a[..],
        [Action::Release(Release::Unlock), Action::Close(End::Clean)]
    ));
    crate::conn::release(&mut held, Release::Unlock).await;
    assert_eq!(n.lock_count(&k), 0);
}

#[tokio::test]
async fn auth_with_tokens() {
    let u = uuid(SPEC_UUID);
    let n = mem(&u);
    let config = ServerConfig {
        auth: AuthMode::Tokens(vec![AuthToken::parse(b"s3cret").unwrap()]),
        ..shell(&u)
    };
    let client = "VERSION 4\nfoo\nAUTH 1111 wrong\nAUTH 1111 S3CRET\nAUTH 1111 s3cret\nVERSION 4\n"
        .to_string();
    let r = replay(config, Arc::new(n), client.as_bytes()).await;
    assert_eq!(
        text(&r.server),
        format!(
            "ERROR unexpected command\nERROR unknown command\nAUTH-FAILURE\n\
             AUTH-SUCCESS {SPEC_UUID}\nERROR unexpected command\nVERSION 4\n"
        )
    );
    assert!(r
        .refusals
        .iter()
        .any(|r| matches!(r, Refusal::BadAuth { .. })));
}

#[tokio::test]
async fn refusing_git_requests_without_exiting() {
    let u = uuid(SPEC_UUID);
    let config = ServerConfig {
        git_requests: GitRequests::Refuse,
        ..shell(&u)
    };
    let r = replay(
        config.clone(),
        Arc::new(mem(&u)),
        b"CONNECT git-upload-pack\nVERSION 1\n",
    )
    .await;
    assert!(text(&r.server).ends_with("\nCONNECTDONE 1\n"));
    assert_eq!(r.end, End::Clean);
    let r = replay(config, Arc::new(mem(&u)), b"NOTIFYCHANGE\nVERSION 1\n").await;
    assert!(text(&r.server).ends_with("\nERROR protocol error\n"));
    assert_eq!(r.end, End::Failed(Fatal::ProtocolError));
}

#[tokio::test]
async fn a_lower_max_version_is_honoured() {
    let u = uuid(SPEC_UUID);
    let k = spec_k();
    let n = mem(&u);
    let config = ServerConfig {
        max_version: 1,
        ..shell(&u)
    };
    let client = b(&[
        format!("VERSION 4\nPUT x {k}\nDATA 11\n").as_bytes(),
        b"hello worldVALID\n",
    ]);
    let r = replay(config, Arc::new(n.clone()), &client).await;
    assert!(text(&r.server).ends_with("\nVERSION 1\nPUT-FROM 0\nSUCCESS\n"));
}

#[test]
fn server_mode_from_the_environment() {
    use std::ffi::OsStr;
    let on = Some(OsStr::new("1"));
    let empty = Some(OsStr::new(""));
    assert_eq!(
        ServerMode::from_env_values(None, None),
        ServerMode::ReadWrite
    );
    assert_eq!(ServerMode::from_env_values(on, None), ServerMode::ReadOnly);
    assert_eq!(ServerMode::from_env_values(on, on), ServerMode::ReadOnly);
    assert_eq!(
        ServerMode::from_env_values(None, on),
        ServerMode::AppendOnly
    );
    assert_eq!(
        ServerMode::from_env_values(empty, empty),
        ServerMode::ReadWrite
    );
}

// ---- any client input gives a well-formed server stream ----

mod fuzz {
    use super::*;
    use crate::proto::p2p::decode;
    use proptest::prelude::*;

    fn piece() -> impl Strategy<Value = Vec<u8>> {
        let k = spec_k().to_string();
        let k2 = key_of(HELLO_NL, ".txt").to_string();
        let keys = prop::sample::select(vec![k, k2, "WORM-s1--../x".to_string()]);
        prop_oneof![
            (0u64..7).prop_map(|v| format!("VERSION {v}\n").into_bytes()),
            Just(b"BYPASS a b\n".to_vec()),
            keys.clone()
                .prop_map(|k| format!("CHECKPRESENT {k}\n").into_bytes()),
            keys.clone()
                .prop_map(|k| format!("LOCKCONTENT {k}\n").into_bytes()),
            Just(b"UNLOCKCONTENT\n".to_vec()),
            keys.clone()
                .prop_map(|k| format!("REMOVE {k}\n").into_bytes()),
            (0u64..2000, keys.clone())
                .prop_map(|(t, k)| format!("REMOVE-BEFORE {t} {k}\n").into_bytes()),
            Just(b"GETTIMESTAMP\n".to_vec()),
            (0u64..14, keys.clone()).prop_map(|(o, k)| format!("GET {o} x {k}\n").into_bytes()),
            keys.prop_map(|k| format!("PUT x {k}\n").into_bytes()),
            (0usize..14, any::<bool>()).prop_map(|(n, right)| {
                let mut v = format!("DATA {n}\n").into_bytes();
                v.extend_from_slice(if right {
                    &b"hello world\n\n\n"[..n]
                } else {
                    &b"xxxxxxxxxxxxxx"[..n]
                });
                v
            }),
            Just(b"DATA-PRESENT\n".to_vec()),
            Just(b"VALID\n".to_vec()),
            Just(b"INVALID\n".to_vec()),
            Just(b"SUCCESS\n".to_vec()),
            Just(b"FAILURE\n".to_vec()),
            Just(b"SUCCESS-PLUS a\n".to_vec()),
            Just(b"ERROR giving up\n".to_vec()),
            Just(b"AUTH a b\n".to_vec()),
            Just(b"garbage \x00\xff\n".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..20),
        ]
    }

    /// The server's bytes parse as server messages, DATA payloads included, and nothing
    /// is left half-written.
    fn well_formed(mut out: &[u8]) -> Result<(), String> {
        while !out.is_empty() {
            let (m, used) = decode(out)
                .map_err(|e| format!("{e}"))?
                .ok_or_else(|| format!("incomplete line {:?}", text(out)))?;
            out = &out[used..];
            if let Message::Data(n) = m {
                if (out.len() as u64) < n {
                    return Err("short DATA".into());
                }
                out = &out[n as usize..];
            }
            let server_side = matches!(
                m,
                Message::AuthSuccess(_)
                    | Message::Version(_)
                    | Message::Success
                    | Message::SuccessPlus(_)
                    | Message::Failure
                    | Message::FailurePlus(_)
                    | Message::AlreadyHave
                    | Message::AlreadyHavePlus(_)
                    | Message::PutFrom(_)
                    | Message::Data(_)
                    | Message::Valid
                    | Message::Invalid
                    | Message::Timestamp(_)
                    | Message::Error(_)
            );
            if !server_side {
                return Err(format!("a server never sends {m}"));
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn random_clients_get_well_formed_answers(pieces in proptest::collection::vec(piece(), 0..25)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let u = uuid(SPEC_UUID);
            let n = mem(&u);
            n.insert(spec_k(), HELLO.to_vec());
            let r = rt.block_on(replay(shell(&u), Arc::new(n.clone()), &pieces.concat()));
            prop_assert!(well_formed(&r.server).is_ok(), "{:?}: {}", well_formed(&r.server), text(&r.server));
            // Locks never outlive the session; content present is always the right content.
            prop_assert_eq!(n.lock_count(&spec_k()), 0);
            for k in n.keys() {
                let data = n.content(&k).unwrap();
                if k == spec_k() {
                    prop_assert_eq!(&data[..], HELLO);
                } else if k == key_of(HELLO_NL, ".txt") {
                    prop_assert_eq!(&data[..], HELLO_NL);
                }
            }
        }
    }
}
