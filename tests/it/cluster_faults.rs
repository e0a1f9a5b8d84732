//! Clusters when things go wrong, with a real git-annex client: a node that is down, full,
//! failing mid-upload, answering garbage or hanging; a client naming a UUID the gateway does
//! not serve; a disk filling up; two gateways serving one cluster; `annexgate cluster
//! status`.
//!
//! Where git-annex's own gateway can do the same, each scenario runs against git-annex-shell
//! (the reference) and annexgate-shell on the gateway and must give the same [`Outcome`].
//! Where annexgate deliberately does better (a node's error text passed through to the
//! client, a bounded wait for a node that hangs), the test asserts our behaviour and its
//! comments say what git-annex does.
//!
//! Faulty nodes are ssh nodes of the gateway whose `annex-shell` is a small script,
//! [`FaultyShell`], that runs the real shell or misbehaves as its mode file says.

use std::fs;
use std::path::{Path, PathBuf};

use crate::cluster_scenarios::{
    client_with, gateway_with_nodes, locations, NodeAccess, SetupTool, NODE_UUIDS,
};
use crate::harness::ssh::write_script;
use crate::harness::{
    assert_same_outcome, client_p2p_trace, pseudo_random, random_files, shared_outcome, tools,
    Outcome, Repo, RunResult, ShellImpl, TestEnv, Transport,
};

/// How a [`FaultyShell`] behaves on its next runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Runs the real shell.
    None,
    /// Fails as ssh does when the host cannot be reached (exit 255).
    Down,
    /// Greets and agrees a version, then answers every request with a line that is not
    /// the P2P protocol.
    Garbage,
    /// Greets and agrees a version, then reads requests and never answers.
    Hang,
    /// Reads what it is sent and never says a word, not even a greeting.
    Mute,
    /// Answers every request with `ERROR` and its own text.
    Error,
    /// The real shell, seeing only the first N bytes the gateway sends (a connection cut).
    CutAfter(u64),
    /// The real shell, of whose output the gateway sees only the first N bytes (a
    /// connection cut while the node sends).
    CutOutputAfter(u64),
}

/// The text a faulty node says on stderr and in its `ERROR` replies.
const NODE_COMPLAINT: &str = "node disk controller is on fire";

/// An annex-shell stand-in for one node: a script that does what its mode file says.
struct FaultyShell {
    script: PathBuf,
    mode: PathBuf,
}

impl FaultyShell {
    /// A script in the test's directory for the node `uuid`, running `real` when not
    /// misbehaving.
    fn new(env: &TestEnv, name: &str, uuid: &str, real: &Path) -> FaultyShell {
        let script = env.root().join(format!("{name}-annex-shell"));
        let mode = env.root().join(format!("{name}-fault"));
        let q = |p: &Path| crate::harness::ssh::sh_quote(&p.to_string_lossy());
        let text = format!(
            r#"#!/bin/sh
# annex-shell of a test node (generated): the real shell, or a fault the mode file names.
real={real}
mode=$(cat {mode} 2>/dev/null)
greet() {{
  printf 'AUTH-SUCCESS %s\n' {uuid}
  while read -r cmd rest; do
    case $cmd in
      VERSION) echo "VERSION 4" ; return ;;
      *) echo "ERROR expected VERSION" ;;
    esac
  done
}}
case $mode in
  down)
    echo "ssh: connect to host {name}.example port 22: Connection refused" >&2
    exit 255 ;;
  garbage)
    greet
    while read -r cmd rest; do
      case $cmd in
        BYPASS) ;;
        *) echo "$cmd? never heard of it, have some noise: @#%&!"
           echo "{complaint}" >&2 ;;
      esac
    done ;;
  hang)
    greet
    while read -r line; do :; done ;;
  mute)
    while read -r line; do :; done ;;
  error)
    greet
    while read -r cmd rest; do
      case $cmd in
        BYPASS) ;;
        *) echo "ERROR {complaint}" ;;
      esac
    done ;;
  cut:*)
    {pass_first} "${{mode#cut:}}" | "$real" "$@"
    exit $? ;;
  cutout:*)
    # The node goes away once the bytes are out (whatever the real shell does then).
    "$real" "$@" | {{ {pass_first} "${{mode#cutout:}}"; kill -9 $$; }}
    exit 1 ;;
  *)
    exec "$real" "$@" ;;
esac
"#,
            real = q(real),
            mode = q(&mode),
            uuid = uuid,
            name = name,
            complaint = NODE_COMPLAINT,
            pass_first = crate::harness::ssh::PASS_FIRST_BYTES,
        );
        write_script(&script, &text);
        FaultyShell { script, mode }
    }

    fn set(&self, fault: Fault) {
        let text = match fault {
            Fault::None => String::new(),
            Fault::Down => "down".into(),
            Fault::Garbage => "garbage".into(),
            Fault::Hang => "hang".into(),
            Fault::Mute => "mute".into(),
            Fault::Error => "error".into(),
            Fault::CutAfter(n) => format!("cut:{n}"),
            Fault::CutOutputAfter(n) => format!("cutout:{n}"),
        };
        fs::write(&self.mode, text).expect("writing a fault mode");
    }

    fn access(&self) -> NodeAccess {
        NodeAccess::Ssh(self.script.clone())
    }
}

/// Small files, one line repeated.
fn small_files(n: usize) -> Vec<(&'static str, Vec<u8>)> {
    (1..=n)
        .map(|i| {
            let name: &'static str = Box::leak(format!("f{i}.txt").into_boxed_str());
            (name, format!("fault file {i}\n").repeat(i * 7).into_bytes())
        })
        .collect()
}

/// The scenario against git-annex-shell on the gateway, once per test run.
fn reference(name: &str, scenario: fn(ShellImpl) -> Outcome) -> Outcome {
    let out = shared_outcome(format!("cluster_faults/{name}"), || {
        scenario(ShellImpl::GitAnnexShell)
    });
    eprintln!("{name} with git-annex-shell on the gateway:\n{out}");
    out
}

/// The scenario against annexgate-shell on the gateway; same outcome as the reference.
fn compare(name: &str, scenario: fn(ShellImpl) -> Outcome) -> Outcome {
    let ours = scenario(ShellImpl::AnnexgateShell);
    eprintln!("{name} with annexgate-shell on the gateway:\n{ours}");
    assert_same_outcome(name, &reference(name, scenario), &ours);
    ours
}

// (Commands traced with `--debug` also take `--debugfilter=P2P.IO`: with a filter, git-annex
// does not pass `--debug` on to the gateway's shell, whose own connections to the nodes
// would otherwise show up in the client's trace.)

/// The UUIDs a `SUCCESS-PLUS` in the client's trace listed, by repo name, sorted.
fn success_plus(env: &TestEnv, r: &RunResult) -> Vec<Vec<String>> {
    client_p2p_trace(&r.stderr)
        .iter()
        .filter_map(|m| m.strip_prefix("< SUCCESS-PLUS"))
        .map(|rest| {
            let mut v: Vec<String> = rest.split_whitespace().map(|u| env.name_of(u)).collect();
            v.sort();
            v
        })
        .collect()
}

// ---- a node that is down ----
//
// git-annex's gateway cannot serve the cluster at all while one node cannot be reached:
// git-annex-shell fails the whole session ("Unable to connect to remote", the client's
// copy fails for every file, verified with a local node moved away and with an ssh node
// whose host refuses connections). annexgate serves the cluster with the nodes it can
// reach, tells the user which node is missing and why, and treats the missing node as a
// node whose every request failed: uploads land on the others, downloads come from the
// others, and a removal is not reported as done while that node may still hold a copy.

/// node2 down: its repository moved away (`local`) or its ssh host unreachable.
fn node_down(local: bool) {
    let env = TestEnv::new(Transport::Shim);
    let faulty = FaultyShell::new(&env, "node2", NODE_UUIDS[1], &tools().git_annex_shell);
    let access = if local {
        [NodeAccess::Local, NodeAccess::Local, NodeAccess::Local]
    } else {
        [NodeAccess::Local, faulty.access(), NodeAccess::Local]
    };
    let (gw, nodes) = gateway_with_nodes(&env, SetupTool::GitAnnex, &access);
    let files = small_files(3);
    let client = client_with(&env, &gw, ShellImpl::AnnexgateShell, &files, 3, None);
    let all = ["client", "mycluster", "node1", "node2", "node3"];
    client.annex(&["copy", "--to", "gw-mycluster", "f1.txt"]);
    assert_eq!(client.whereis(&["f1.txt"]), all);

    let moved = env.root().join("node2-moved-away.git");
    if local {
        fs::rename(nodes[1].path(), &moved).unwrap();
    } else {
        faulty.set(Fault::Down);
    }
    let r = client.annex(&[
        "copy",
        "--to",
        "gw-mycluster",
        "--debug",
        "--debugfilter=P2P.IO",
        ".",
    ]);
    assert_eq!(
        success_plus(&env, &r),
        [["node1", "node3"], ["node1", "node3"]],
        "{r}"
    );
    // The user is told which node is missing, and why.
    let why = if local {
        "No such file"
    } else {
        "Connection refused"
    };
    assert!(
        r.stderr.contains("node2") && r.stderr.contains(why),
        "no word about node2 being down:\n{r}"
    );
    let some = ["client", "mycluster", "node1", "node3"];
    for f in ["f2.txt", "f3.txt"] {
        assert_eq!(client.whereis(&[f]), some, "{f}");
    }
    // A local drop locks a copy on a node that is up; a download comes from one.
    client.annex(&["drop", "f2.txt"]);
    client.annex(&["get", "--from", "gw-mycluster", "f2.txt"]);
    assert_eq!(fs::read(client.path().join("f2.txt")).unwrap(), files[1].1);

    // node2 may hold f1: removing f1 from the cluster is not done while it is down.
    let r = client
        .try_annex(&["drop", "--from", "gw-mycluster", "f1.txt"])
        .failed();
    assert!(r.stderr.contains("node2"), "{r}");
    assert_eq!(
        client.whereis(&["f1.txt"]),
        ["client", "mycluster", "node2"],
        "the nodes that were up dropped f1, node2 still counts"
    );
    // The gateway's branch says the same.
    client.annex(&["sync", "--no-content", "gw"]);
    assert_eq!(
        client.whereis(&["f1.txt"]),
        ["client", "mycluster", "node2"]
    );
    assert_eq!(client.whereis(&["f3.txt"]), some);

    // Back up: the removal completes.
    if local {
        fs::rename(&moved, nodes[1].path()).unwrap();
    } else {
        faulty.set(Fault::None);
    }
    client.annex(&["drop", "--from", "gw-mycluster", "f1.txt"]);
    assert_eq!(client.whereis(&["f1.txt"]), ["client"]);
    assert!(nodes[1].find_object(&client.key_of("f1.txt")).is_none());
}

mod down {
    #[test]
    fn local_node_gone_counts_as_failed_not_as_absent() {
        super::node_down(true);
    }
    #[test]
    fn ssh_node_unreachable() {
        super::node_down(false);
    }
}

// ---- a node failing in the middle of an upload ----

/// node3 (over ssh, served by git-annex-shell) loses its connection 100 kB into a 300 kB
/// upload to the cluster: the upload succeeds on node1 and node2, `SUCCESS-PLUS` names
/// exactly those, nobody records node3 as holding the key, and node3 keeps its partial
/// file, from which a later upload resumes.
fn node_cut_mid_put(shell: ShellImpl) -> Outcome {
    let env = TestEnv::new(Transport::Shim);
    let mut out = Outcome::default();
    let faulty = FaultyShell::new(&env, "node3", NODE_UUIDS[2], &tools().git_annex_shell);
    let access = [NodeAccess::Local, NodeAccess::Local, faulty.access()];
    let (gw, nodes) = gateway_with_nodes(&env, SetupTool::GitAnnex, &access);
    let big = pseudo_random(300_000, 7);
    let files = vec![("big.bin", big.clone())];
    let client = client_with(&env, &gw, shell, &files, 3, None);
    let key = client.key_of("big.bin");
    client.set_config("annex.forward-retry", "0");

    faulty.set(Fault::CutAfter(100_000));
    let r = client.try_annex(&[
        "copy",
        "--to",
        "gw-mycluster",
        "--debug",
        "--debugfilter=P2P.IO",
        "big.bin",
    ]);
    out.exit("copy --to gw-mycluster with node3 cut", &r);
    out.note("SUCCESS-PLUS", success_plus(&env, &r));
    out.note("whereis", client.whereis(&["big.bin"]));
    for n in &nodes {
        out.note(
            &format!("{} has the object", n.name()),
            n.object_content(&key).as_deref() == Some(big.as_slice()),
        );
    }
    let partial = fs::metadata(nodes[2].tmp_object(&key))
        .map(|m| m.len())
        .unwrap_or(0);
    out.note(
        "node3 kept part of the upload",
        partial > 0 && partial < big.len() as u64,
    );
    // node3's own branch does not claim the key (git-annex-shell there records what it
    // stores), nor does the gateway's.
    out.note("node3's own log", locations(&nodes[2], &key));
    client.annex(&["sync", "--no-content", "gw"]);
    out.note("whereis after sync with gw", client.whereis(&["big.bin"]));

    faulty.set(Fault::None);
    let r = client.try_annex(&[
        "copy",
        "--to",
        "gw-node3",
        "--debug",
        "--debugfilter=P2P.IO",
        "big.bin",
    ]);
    out.exit("copy --to gw-node3 after the cut", &r);
    let offsets: Vec<u64> = client_p2p_trace(&r.stderr)
        .iter()
        .filter_map(|m| m.strip_prefix("< PUT-FROM ")?.trim().parse().ok())
        .collect();
    out.note(
        "resumed from the kept part",
        offsets == [partial] && partial > 0,
    );
    out.note(
        "node3 has the object",
        nodes[2].object_content(&key).as_deref() == Some(big.as_slice()),
    );
    out.note("whereis at the end", client.whereis(&["big.bin"]));
    out
}

mod mid_put {
    use super::*;

    #[test]
    fn node_connection_cut() {
        let ours = compare("node_cut_mid_put", node_cut_mid_put);
        // Beyond matching git-annex's gateway: the outcome itself is the one wanted.
        let facts = ours.facts();
        for want in [
            "copy --to gw-mycluster with node3 cut: Some(0)",
            r#"SUCCESS-PLUS: [["node1", "node2"]]"#,
            r#"whereis: ["client", "mycluster", "node1", "node2"]"#,
            "node1 has the object: true",
            "node2 has the object: true",
            "node3 has the object: false",
            "node3 kept part of the upload: true",
        ] {
            assert!(facts.iter().any(|f| f == want), "no {want:?} in:\n{ours}");
        }
    }
}

// ---- a node failing in the middle of a download ----

/// node3 (over ssh, the cheapest node) holds the key with node1; its connection breaks
/// 100 kB into sending a 300 kB object. The gateway continues the download from node1 at
/// the offset reached, so the client's one `GET` succeeds, with the right content, and
/// it never starts over. (git-annex's gateway fails that download, and the client has
/// to try again.)
#[test]
fn download_continues_from_another_node_when_one_breaks_midway() {
    let env = TestEnv::new(Transport::Shim);
    let faulty = FaultyShell::new(&env, "node3", NODE_UUIDS[2], &tools().git_annex_shell);
    let access = [NodeAccess::Local, NodeAccess::Local, faulty.access()];
    let (gw, nodes) = gateway_with_nodes(&env, SetupTool::GitAnnex, &access);
    let big = pseudo_random(300_000, 11);
    let files = vec![("big.bin", big.clone())];
    let client = client_with(&env, &gw, ShellImpl::AnnexgateShell, &files, 3, None);
    let key = client.key_of("big.bin");
    client.annex(&["copy", "--to", "gw-node1", "big.bin"]);
    client.annex(&["copy", "--to", "gw-node3", "big.bin"]);
    assert!(nodes[1].object_content(&key).is_none());
    // The gateway prefers node3.
    gw.set_config("remote.node3.annex-cost", "10");
    client.annex(&["drop", "--force", "big.bin"]);

    faulty.set(Fault::CutOutputAfter(100_000));
    let r = client.try_annex(&[
        "get",
        "--from",
        "gw-mycluster",
        "--debug",
        "--debugfilter=P2P.IO",
        "big.bin",
    ]);
    assert_eq!(r.code, Some(0), "get failed:\n{}", r.stderr);
    assert_eq!(
        fs::read(client.path().join("big.bin")).unwrap(),
        big,
        "content after get"
    );
    let trace = client_p2p_trace(&r.stderr);
    let gets: Vec<&String> = trace.iter().filter(|m| m.starts_with("> GET ")).collect();
    assert_eq!(gets.len(), 1, "the client asked more than once: {trace:?}");
    assert!(
        gets[0].starts_with("> GET 0 "),
        "the client did not start at 0: {trace:?}"
    );
    // node3 really was asked first and broke midway (else this test shows nothing);
    // the gateway says so on stderr, which reaches the client.
    assert!(
        r.stderr.contains("from node3 broke at byte"),
        "the gateway did not report node3's failure:\n{}",
        r.stderr
    );
}

// ---- a node answering garbage, its own errors, or nothing ----

/// A gateway with node1, node2 (local) and node3 (ssh, `faulty`), every node wanting
/// everything, and a client holding `files` of which f1.txt is on all three nodes.
fn with_faulty_node3<'e>(
    env: &'e TestEnv,
    shell: ShellImpl,
    faulty: &FaultyShell,
    files: &[(&str, Vec<u8>)],
) -> (Repo<'e>, Vec<Repo<'e>>, Repo<'e>) {
    let access = [NodeAccess::Local, NodeAccess::Local, faulty.access()];
    let (gw, nodes) = gateway_with_nodes(env, SetupTool::GitAnnex, &access);
    let client = client_with(env, &gw, shell, files, 3, None);
    client.annex(&["copy", "--to", "gw-mycluster", "f1.txt"]);
    assert_eq!(
        client.whereis(&["f1.txt"]),
        ["client", "mycluster", "node1", "node2", "node3"]
    );
    (gw, nodes, client)
}

/// The `ERROR` texts the client received.
fn errors_received(r: &RunResult) -> Vec<String> {
    client_p2p_trace(&r.stderr)
        .iter()
        .filter_map(|m| m.strip_prefix("< ERROR "))
        .map(str::to_string)
        .collect()
}

/// node3 misbehaves (`fault`: garbage or its own ERROR replies) after f1 reached every
/// node: an upload lands on node1 and node2, removals from the cluster and from node3
/// fail without claiming node3 lost anything, and nothing is recorded for node3.
fn node_misbehaves(shell: ShellImpl, fault: Fault) -> Outcome {
    let env = TestEnv::new(Transport::Shim);
    let mut out = Outcome::default();
    let faulty = FaultyShell::new(&env, "node3", NODE_UUIDS[2], &tools().git_annex_shell);
    let files = small_files(2);
    let (_gw, nodes, client) = with_faulty_node3(&env, shell, &faulty, &files);
    faulty.set(fault);

    let r = client.try_annex(&[
        "copy",
        "--to",
        "gw-mycluster",
        "--debug",
        "--debugfilter=P2P.IO",
        "f2.txt",
    ]);
    out.exit("copy f2 --to gw-mycluster", &r);
    out.note("SUCCESS-PLUS", success_plus(&env, &r));
    out.note("whereis f2", client.whereis(&["f2.txt"]));
    if shell == ShellImpl::AnnexgateShell {
        assert!(r.stderr.contains("node3"), "no word about node3:\n{r}");
    }

    let r = client.try_annex(&["drop", "--from", "gw-mycluster", "f1.txt"]);
    out.exit("drop f1 --from gw-mycluster", &r);
    out.note(
        "whereis f1 after drop --from cluster",
        client.whereis(&["f1.txt"]),
    );

    let r = client.try_annex(&[
        "drop",
        "--from",
        "gw-node3",
        "--debug",
        "--debugfilter=P2P.IO",
        "f1.txt",
    ]);
    out.exit("drop f1 --from gw-node3", &r);
    out.note(
        "whereis f1 after drop --from node3",
        client.whereis(&["f1.txt"]),
    );
    if shell == ShellImpl::AnnexgateShell {
        // The node's own words reach the client: in the ERROR reply, which git-annex
        // shows as the reason the drop failed.
        let errors = errors_received(&r);
        assert!(
            errors.iter().any(|e| e.contains(NODE_COMPLAINT)),
            "node3's text not passed through: {errors:?}\n{r}"
        );
        assert!(
            r.stdout.contains(NODE_COMPLAINT)
                || r.stderr
                    .lines()
                    .any(|l| l.trim_start().starts_with(&errors[0])),
            "{r}"
        );
    }
    out.note(
        "node3 has f1",
        nodes[2].find_object(&client.key_of("f1.txt")).is_some(),
    );
    out.note(
        "node3 has f2",
        nodes[2].find_object(&client.key_of("f2.txt")).is_some(),
    );
    client.annex(&["sync", "--no-content", "gw"]);
    out.note("whereis f1 after sync", client.whereis(&["f1.txt"]));
    out.note("whereis f2 after sync", client.whereis(&["f2.txt"]));
    out
}

fn node_garbage(shell: ShellImpl) -> Outcome {
    node_misbehaves(shell, Fault::Garbage)
}

fn node_error(shell: ShellImpl) -> Outcome {
    // (This is the same outcome as for garbage; see the test for git-annex's.)
    node_misbehaves(shell, Fault::Error)
}

mod misbehaving {
    use super::*;

    #[test]
    fn node_answers_garbage() {
        compare("node_garbage", node_garbage);
    }
    /// git-annex's gateway fails the whole upload when one node answers PUT with ERROR
    /// (the client's copy fails, nothing is stored anywhere); annexgate stores on the
    /// others, as when a node answers garbage, where git-annex's gateway does too.
    #[test]
    fn node_answers_errors() {
        let ours = node_error(ShellImpl::AnnexgateShell);
        eprintln!("node_error with annexgate-shell on the gateway:\n{ours}");
        assert_same_outcome(
            "node_error",
            &reference("node_garbage", node_garbage),
            &ours,
        );
    }
}

/// node3 stops answering after f1 reached every node, on a gateway with
/// `annexgate.node-timeout` 2: an upload still lands on node1 and node2, a removal through
/// the cluster or from node3 fails with node3's timeout as the reason, a node that never
/// even greets is given up on just the same, all within a bounded time, and nothing is
/// recorded for node3. (git-annex's gateway has no such limit: its client waits for as
/// long as the node does.)
#[test]
fn node_that_hangs_is_given_up_after_the_node_timeout() {
    let env = TestEnv::new(Transport::Shim);
    let faulty = FaultyShell::new(&env, "node3", NODE_UUIDS[2], &tools().git_annex_shell);
    let files = small_files(3);
    let (gw, nodes, client) = with_faulty_node3(&env, ShellImpl::AnnexgateShell, &faulty, &files);
    gw.set_config("annexgate.node-timeout", "2");
    let limit = std::time::Duration::from_secs(30);
    let timed = |args: &[&str]| {
        let start = std::time::Instant::now();
        let r = client.try_annex(args);
        let took = start.elapsed();
        assert!(took < limit, "{args:?} took {took:?}\n{r}");
        r
    };

    faulty.set(Fault::Hang);
    let r = timed(&[
        "copy",
        "--to",
        "gw-mycluster",
        "--debug",
        "--debugfilter=P2P.IO",
        "f2.txt",
    ])
    .ok();
    assert_eq!(success_plus(&env, &r), [["node1", "node2"]]);
    assert!(r.stderr.contains("node3: no answer within 2 s"), "{r}");
    assert_eq!(
        client.whereis(&["f2.txt"]),
        ["client", "mycluster", "node1", "node2"]
    );

    let r = timed(&[
        "drop",
        "--from",
        "gw-node3",
        "--debug",
        "--debugfilter=P2P.IO",
        "f1.txt",
    ])
    .failed();
    assert_eq!(errors_received(&r), ["node3: no answer within 2 s"], "{r}");
    let r = timed(&["drop", "--from", "gw-mycluster", "f1.txt"]).failed();
    assert!(r.stderr.contains("node3: no answer within 2 s"), "{r}");
    assert_eq!(
        client.whereis(&["f1.txt"]),
        ["client", "mycluster", "node3"]
    );

    faulty.set(Fault::Mute);
    let r = timed(&[
        "copy",
        "--to",
        "gw-mycluster",
        "--debug",
        "--debugfilter=P2P.IO",
        "f3.txt",
    ])
    .ok();
    assert_eq!(success_plus(&env, &r), [["node1", "node2"]]);
    assert!(r.stderr.contains("node3: no answer within 2 s"), "{r}");

    client.annex(&["sync", "--no-content", "gw"]);
    assert_eq!(
        client.whereis(&["f1.txt"]),
        ["client", "mycluster", "node3"]
    );
    for f in ["f2.txt", "f3.txt"] {
        assert_eq!(
            client.whereis(&[f]),
            ["client", "mycluster", "node1", "node2"]
        );
        assert!(nodes[2].find_object(&client.key_of(f)).is_none());
    }
}

// ---- a client naming a UUID the gateway does not serve ----

/// What the gateway's shell says to `p2pstdio` for each kind of UUID a client might name,
/// run directly and through a git-annex client: the exit code, what it printed (its own
/// name and the test's directory taken out) and what the client showed.
fn bad_uuids(shell: ShellImpl) -> Outcome {
    let env = TestEnv::new(Transport::Shim);
    let mut out = Outcome::default();
    let (gw, _nodes) = gateway_with_nodes(&env, SetupTool::GitAnnex, &[NodeAccess::Local]);
    // A remote the gateway knows (with a description) but does not proxy.
    let other = crate::cluster_scenarios::server_repo_with_uuid(
        &env,
        "other",
        "07e40000-1111-4111-8111-0000000000e4",
    );
    gw.git(&["remote", "add", "other", "../other.git"]);
    gw.git(&["fetch", "-q", "other"]);
    gw.annex(&["sync", "--no-content", "other"]);
    let files = small_files(1);
    let client = client_with(&env, &gw, shell, &files, 1, None);
    client.annex(&["describe", "here", "the client"]);
    client.annex(&["sync", "--no-content", "gw"]);
    let cluster = gw
        .git(&["config", "annex.cluster.mycluster"])
        .trim()
        .to_string();
    let root = env.root().to_string_lossy().into_owned();
    let program = shell
        .program()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let clean = |s: &str| -> String {
        s.replace(&root, "<root>")
            .replace(&cluster, "<cluster>")
            .replace(&format!("{program}:"), "<shell>:")
            .trim()
            .to_string()
    };
    let cases: [(&str, &str); 6] = [
        ("unknown", "0e0e0e0e-0000-4000-8000-000000000000"),
        (
            "unknown cluster-like",
            "ac0e0e0e-0000-8000-8000-000000000000",
        ),
        ("known, not proxied (the client)", client.uuid()),
        ("known remote, not proxied", other.uuid()),
        ("not a UUID", "not-a-uuid"),
        ("the cluster", &cluster),
    ];
    for (what, uuid) in cases {
        let mut cmd = env.command(crate::harness::Side::Server, shell.program(), env.root());
        cmd.args([
            "p2pstdio",
            &gw.path().to_string_lossy(),
            client.uuid(),
            "--uuid",
            uuid,
        ]);
        let r = env.try_run(&mut cmd);
        out.note(
            &format!("p2pstdio --uuid <{what}>"),
            (r.code, clean(&r.stdout), clean(&r.stderr)),
        );
    }
    for (what, uuid) in [
        ("unknown", cases[0].1),
        ("known, not proxied", other.uuid()),
    ] {
        let name = format!("bogus{}", what.len());
        client.git(&["remote", "add", &name, &gw.ssh_url()]);
        client.set_config(&format!("remote.{name}.annex-uuid"), uuid);
        client.set_config(
            &format!("remote.{name}.annex-shell"),
            &shell.program().to_string_lossy(),
        );
        let r = client.try_annex(&["copy", "--to", &name, "f1.txt"]);
        let said: Vec<String> = r
            .stderr
            .lines()
            .filter(|l| !l.contains("sshcaching") && !l.contains("concurrency"))
            .map(clean)
            .filter(|l| !l.is_empty())
            .collect();
        out.note(
            &format!("copy --to a remote with UUID <{what}>"),
            (r.code, said),
        );
    }
    out
}

#[test]
fn client_naming_a_uuid_the_gateway_does_not_serve() {
    compare("bad_uuids", bad_uuids);
}

// ---- a full node ----

/// Twelve 400-byte files to a balanced cluster whose node1 has room for two of them
/// (`git annex maxsize`), in one `copy` (the gateway must count what it stores as it
/// goes) and then one more file in a second session: where each file lands, as git-annex's
/// gateway decides it.
fn full_node(shell: ShellImpl, placement: &str) -> Outcome {
    let env = TestEnv::new(Transport::Shim);
    let mut out = Outcome::default();
    let (gw, _nodes) = gateway_with_nodes(
        &env,
        SetupTool::GitAnnex,
        &[NodeAccess::Local, NodeAccess::Local, NodeAccess::Local],
    );
    let files = random_files(|i| format!("g{i:02}.bin"), 13, 400, 100);
    let client = client_with(&env, &gw, shell, &files, 3, Some(placement));
    client.annex(&["maxsize", "gw-node1", "900"]);
    client.annex(&["sync", "--no-content", "gw"]);
    let (first, last) = files.split_at(12);
    let names: Vec<&str> = first.iter().map(|(n, _)| *n).collect();
    let mut args = vec!["copy", "--to", "gw-mycluster"];
    args.extend(&names);
    let r = client.try_annex(&args);
    out.exit("copy twelve files --to gw-mycluster", &r);
    let r = client.try_annex(&[
        "copy",
        "--to",
        "gw-mycluster",
        "--debug",
        "--debugfilter=P2P.IO",
        last[0].0,
    ]);
    out.exit("copy one more", &r);
    let plus = success_plus(&env, &r);
    out.note("SUCCESS-PLUS of the one more", &plus);
    assert_eq!(plus.len(), 1, "{r}");
    assert!(!plus[0].contains(&"node1".to_string()), "{r}");
    assert_eq!(
        client.whereis(&[last[0].0])[2..],
        plus[0][..],
        "SUCCESS-PLUS names where it landed"
    );
    for (f, _) in &files {
        out.note(&format!("whereis {f}"), client.whereis(&[f]));
    }
    client.annex(&["sync", "--no-content", "gw"]);
    let on_node1 = files
        .iter()
        .filter(|(f, _)| client.whereis(&[f]).contains(&"node1".to_string()))
        .count();
    out.note("files on node1", on_node1);
    assert_eq!(on_node1, 2, "node1 has room for two files");
    out
}

fn full_node_balanced(shell: ShellImpl) -> Outcome {
    full_node(shell, "balanced")
}

fn full_node_fullybalanced(shell: ShellImpl) -> Outcome {
    full_node(shell, "fullybalanced")
}

mod full {
    use super::*;

    #[test]
    fn balanced_counts_what_it_stores() {
        compare("full_node_balanced", full_node_balanced);
    }
    #[test]
    fn fullybalanced_counts_what_it_stores() {
        compare("full_node_fullybalanced", full_node_fullybalanced);
    }
}

// ---- two gateways for one cluster ----

/// The second gateway's fixed UUID.
const GW2_UUID: &str = "9a7e0000-0000-4000-8000-00000000002b";

/// `gw` (node1, node2) and `gw2` (node3) serving one cluster, `mycluster`, each having
/// extended it to the other (`git annex extendcluster` for the reference,
/// `annexgate cluster extend` with annexgate-shell), each reaching the other over ssh run by
/// `shell`. Returns (gw, gw2, nodes).
fn two_gateways<'e>(env: &'e TestEnv, shell: ShellImpl) -> (Repo<'e>, Repo<'e>, Vec<Repo<'e>>) {
    let tool = match shell {
        ShellImpl::GitAnnexShell => SetupTool::GitAnnex,
        ShellImpl::AnnexgateShell => SetupTool::Annexgate,
    };
    let (gw, mut nodes) = gateway_with_nodes(env, tool, &[NodeAccess::Local, NodeAccess::Local]);
    let gw2 = crate::cluster_scenarios::server_repo_with_uuid(env, "gw2", GW2_UUID);
    let node3 = crate::cluster_scenarios::server_repo_with_uuid(env, "node3", NODE_UUIDS[2]);
    let setup = |repo: &Repo<'_>, args: &[&str]| -> String {
        match tool {
            SetupTool::GitAnnex => repo.annex(args).stdout,
            SetupTool::Annexgate => {
                let step = match args[0] {
                    "extendcluster" => "extend",
                    "updatecluster" => "update",
                    other => panic!("no such set-up step {other}"),
                };
                let mut a = vec!["cluster", step];
                a.extend(&args[1..]);
                crate::cluster_scenarios::annexgate(env, repo, &a)
            }
        }
    };
    // gw2 joins gw's cluster, with node3 of its own.
    gw2.add_ssh_remote("gw", &gw, shell);
    let out = setup(&gw2, &["extendcluster", "gw", "mycluster"]);
    assert!(out.contains("mycluster"), "extendcluster on gw2:\n{out}");
    gw2.git(&["remote", "add", "node3", "../node3.git"]);
    gw2.set_config("remote.node3.annex-uuid", node3.uuid());
    gw2.set_config("remote.node3.annex-cluster-node", "mycluster");
    gw2.git(&["fetch", "-q", "node3"]);
    let out = setup(&gw2, &["updatecluster"]);
    assert!(
        out.contains("Added node node3 to cluster: mycluster"),
        "{out}"
    );
    // gw does the same for gw2.
    gw.add_ssh_remote("gw2", &gw2, shell);
    setup(&gw, &["extendcluster", "gw2", "mycluster"]);
    setup(&gw, &["updatecluster"]);
    gw2.annex(&["sync", "--no-content", "gw"]);
    setup(&gw2, &["updatecluster"]);
    nodes.push(node3);
    (gw, gw2, nodes)
}

/// A client with both gateways as remotes: copies through one and sees, gets, drops through
/// the other; each upload reaches the other gateway's nodes through it, once (each gateway
/// passes itself on in `BYPASS`, so the other does not send it back: no cycle).
fn two_gateways_one_cluster(shell: ShellImpl) -> Outcome {
    let env = TestEnv::new(Transport::Shim);
    env.set_timeout(std::time::Duration::from_secs(120));
    let mut out = Outcome::default();
    let (gw, gw2, nodes) = two_gateways(&env, shell);
    let cu = gw
        .git(&["config", "annex.cluster.mycluster"])
        .trim()
        .to_string();
    assert_eq!(
        gw2.git(&["config", "annex.cluster.mycluster"]).trim(),
        cu,
        "one cluster UUID"
    );
    for (g, other) in [(&gw, "gw2"), (&gw2, "gw")] {
        out.note(
            &format!("{} cluster-gateway {other}", g.name()),
            g.git(&["config", &format!("remote.{other}.annex-cluster-gateway")])
                .trim()
                == cu,
        );
    }
    let files = small_files(3);
    let client = client_with(&env, &gw, shell, &files, 3, None);
    client.add_ssh_remote("gw2", &gw2, shell);
    client.annex(&["sync", "--no-content", "gw", "gw2"]);
    let remotes: Vec<String> = client
        .git(&["remote"])
        .lines()
        .map(str::to_string)
        .collect();
    out.note("git remotes", remotes);
    let r = client.annex(&["info", "gw2"]);
    out.note(
        "info gw2 names the gateway",
        r.stdout.contains("gateway to cluster: gw2-mycluster"),
    );

    for (via, f) in [("gw", "f1.txt"), ("gw2", "f2.txt")] {
        let before = env.remote_commands().len();
        let r = client.try_annex(&[
            "copy",
            "--to",
            &format!("{via}-mycluster"),
            "--debug",
            "--debugfilter=P2P.IO",
            f,
        ]);
        out.exit(&format!("copy {f} --to {via}-mycluster"), &r);
        let plus = success_plus(&env, &r);
        out.note(&format!("SUCCESS-PLUS via {via}"), &plus);
        // Each node once; the cluster's UUID too, as the other gateway's node that
        // stored it (git-annex's gateway lists it the same way).
        assert_eq!(plus, [["mycluster", "node1", "node2", "node3"]], "{r}");
        out.note(&format!("whereis {f}"), client.whereis(&[f]));
        // The P2P sessions the copy opened: the client's with `via`, and `via`'s with the
        // other gateway, which (bypassing `via`) does not open one back.
        let sessions: Vec<String> = env.remote_commands()[before..]
            .iter()
            .filter_map(|c| {
                let words: Vec<&str> = c.split_whitespace().map(|w| w.trim_matches('\'')).collect();
                let at = words.iter().position(|w| *w == "p2pstdio")?;
                let repo = Path::new(words.get(at + 1)?).file_stem()?.to_string_lossy();
                Some(format!("{} -> {repo}", env.name_of(words.get(at + 2)?)))
            })
            .collect();
        let other = if via == "gw" { "gw2" } else { "gw" };
        assert_eq!(
            sessions,
            [format!("client -> {via}"), format!("{via} -> {other}")],
            "{r}"
        );
        out.note(&format!("P2P sessions copying {f}"), sessions);
    }
    for n in &nodes {
        for f in ["f1.txt", "f2.txt"] {
            out.note(
                &format!("{} has {f}", n.name()),
                n.find_object(&client.key_of(f)).is_some(),
            );
        }
    }
    // Both gateways recorded where each file went (each learnt it from the other's answer
    // or its own nodes').
    for (g, name) in [(&gw, "gw"), (&gw2, "gw2")] {
        for f in ["f1.txt", "f2.txt"] {
            out.note(
                &format!("{name}'s own log for {f}"),
                locations(g, &client.key_of(f)),
            );
        }
    }

    // Seen and got through the other gateway.
    client.annex(&["drop", "f1.txt"]);
    let r = client.try_annex(&["get", "--from", "gw2-mycluster", "f1.txt"]);
    out.exit("get f1 --from gw2-mycluster", &r);
    out.note(
        "f1 content after get",
        fs::read(client.path().join("f1.txt")).ok() == Some(files[0].1.clone()),
    );
    let r = client.try_annex(&["drop", "--from", "gw2-mycluster", "f2.txt"]);
    out.exit("drop f2 --from gw2-mycluster", &r);
    out.note("whereis f2 after drop", client.whereis(&["f2.txt"]));
    for n in &nodes {
        out.note(
            &format!("{} has f2 after drop", n.name()),
            n.find_object(&client.key_of("f2.txt")).is_some(),
        );
    }
    out
}

#[test]
fn two_gateways_for_one_cluster() {
    compare("two_gateways_one_cluster", two_gateways_one_cluster);
}

// ---- a disk that fills during an upload ----

/// A tmpfs of a given size mounted on a directory while this lives, owned by the user
/// running the tests (as root directly, else through `sudo -n`, as scripts/setup does).
struct Tmpfs(PathBuf);

/// `cmd` run as root: directly when the tests are, else through non-interactive sudo.
fn as_root(cmd: &str) -> std::process::Command {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        std::process::Command::new(cmd)
    } else {
        let mut c = std::process::Command::new("sudo");
        c.args(["-n", cmd]);
        c
    }
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).expect("creating a mount point");
        // SAFETY: getuid/getgid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let r = as_root("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},uid={uid},gid={gid},mode=0755"))
            .arg("tmpfs")
            .arg(dir)
            .output()
            .expect("running mount");
        assert!(
            r.status.success(),
            "cannot mount a {size} tmpfs on {} (this test needs root, or sudo without a \
             password): {}",
            dir.display(),
            String::from_utf8_lossy(&r.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }

    /// Bytes still free.
    fn free(&self) -> u64 {
        let r = std::process::Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.0)
            .output()
            .expect("running df");
        String::from_utf8_lossy(&r.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df's answer")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = as_root("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fill what is left of `disk` with a file in `dir` (on it).
fn fill_up(dir: &Path) -> u64 {
    use std::io::Write;
    let mut f = fs::File::create(dir.join("filler")).expect("creating the filler");
    let chunk = vec![0u8; 16 * 1024];
    let mut written = 0u64;
    while let Ok(n) = f.write(&chunk) {
        if n == 0 {
            break;
        }
        written += n as u64;
    }
    written
}

/// node3 is a local repository on a 2 MB tmpfs. First a 3 MB file goes to the cluster:
/// node3 refuses it before any data moves (it cannot keep `annex.diskreserve` free).
/// Then, with node3's disk reserve at 0, a 1.2 MB file that fits goes to the cluster at a
/// limited rate, and the disk is filled up while node3 receives it. Both times the upload
/// lands on node1 and node2, `SUCCESS-PLUS` names just those, node3 shows no object, and
/// neither the gateway's log nor node3's own claims node3 has it: as with git-annex's
/// gateway, and annexgate also tells the user why node3 failed.
fn disk_fills(shell: ShellImpl) -> Outcome {
    let env = TestEnv::new(Transport::Shim);
    let mut out = Outcome::default();
    // (Declared after `env`: unmounted before the test's directory goes.)
    let disk = Tmpfs::mount(&env.root().join("node3.git"), "2m");
    let (gw, nodes) = gateway_with_nodes(
        &env,
        SetupTool::GitAnnex,
        &[NodeAccess::Local, NodeAccess::Local, NodeAccess::Local],
    );
    let big = pseudo_random(3_000_000, 11);
    let mid = pseudo_random(1_200_000, 12);
    let files = vec![("big.bin", big.clone()), ("mid.bin", mid.clone())];
    let client = client_with(&env, &gw, shell, &files, 3, None);
    client.set_config("annex.forward-retry", "0");
    assert!(disk.free() < big.len() as u64, "{} free", disk.free());

    let copy = |f: &str| {
        client.try_annex(&[
            "copy",
            "--to",
            "gw-mycluster",
            "--debug",
            "--debugfilter=P2P.IO",
            f,
        ])
    };
    let check = |out: &mut Outcome, f: &str, data: &[u8], r: &RunResult| {
        let key = client.key_of(f);
        out.exit(&format!("copy {f} --to gw-mycluster"), r);
        out.note(&format!("SUCCESS-PLUS for {f}"), success_plus(&env, r));
        out.note(&format!("whereis {f}"), client.whereis(&[f]));
        for n in &nodes {
            out.note(
                &format!("{} has {f}", n.name()),
                n.object_content(&key).as_deref() == Some(data),
            );
        }
        out.note(
            &format!("node3 shows no object for {f}"),
            nodes[2].find_object(&key).is_none(),
        );
        out.note(
            &format!("node3's own log for {f}"),
            locations(&nodes[2], &key),
        );
    };

    let r = copy("big.bin");
    check(&mut out, "big.bin", &big, &r);
    if shell == ShellImpl::AnnexgateShell {
        assert!(
            r.stderr.contains("node3: not enough space"),
            "no word about node3's disk:
{r}"
        );
    }

    nodes[2].set_config("annex.diskreserve", "0");
    client.set_config("remote.gw.annex-bwlimit", "400KiB");
    let tmp = nodes[2].tmp_object(&client.key_of("mid.bin"));
    let r = std::thread::scope(|s| {
        let copying = s.spawn(|| copy("mid.bin"));
        // Once node3 has part of the file, the disk fills up.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0) < 100_000 {
            assert!(
                std::time::Instant::now() < deadline && !copying.is_finished(),
                "node3 never started receiving mid.bin"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let filled = fill_up(disk.0.as_path());
        assert!(filled > 0, "nothing left to fill");
        copying.join().expect("the copy thread")
    });
    check(&mut out, "mid.bin", &mid, &r);
    out.note(
        "node3 received part of mid.bin",
        fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0) > 0,
    );
    if shell == ShellImpl::AnnexgateShell {
        assert!(
            r.stderr.contains("node3") && r.stderr.contains("No space left"),
            "no word about node3's disk:
{r}"
        );
    }
    client.annex(&["sync", "--no-content", "gw"]);
    for f in ["big.bin", "mid.bin"] {
        out.note(
            &format!("whereis {f} after sync with gw"),
            client.whereis(&[f]),
        );
    }
    out
}

mod disk_full {
    use super::*;

    #[test]
    fn node_disk_fills_during_upload() {
        compare("disk_fills", disk_fills);
    }
}

// ---- `annexgate cluster status` ----

/// After a balanced copy of nine 400-byte files with node1's maxsize at 900 bytes, and with
/// node2's repository gone: `annexgate cluster status` (JSON and text) lists the three
/// nodes with their UUIDs, node2 down and the others up, and per node the keys and bytes
/// the gateway's branch says it holds (as the client's `whereis` sees them after syncing
/// with the gateway) and node1's maxsize.
#[test]
fn cluster_status_after_a_copy_with_a_node_down() {
    let env = TestEnv::new(Transport::Shim);
    let (gw, nodes) = gateway_with_nodes(
        &env,
        SetupTool::Annexgate,
        &[NodeAccess::Local, NodeAccess::Local, NodeAccess::Local],
    );
    let files = random_files(|i| format!("s{i}.bin"), 9, 400, 300);
    let client = client_with(
        &env,
        &gw,
        ShellImpl::AnnexgateShell,
        &files,
        3,
        Some("balanced"),
    );
    client.annex(&["maxsize", "gw-node1", "900"]);
    client.annex(&["sync", "--no-content", "gw"]);
    client.annex(&["copy", "--to", "gw-mycluster", "."]);
    client.annex(&["sync", "--no-content", "gw"]);
    // What the gateway's branch says, as the client sees it.
    let held: Vec<(u64, u64)> = ["node1", "node2", "node3"]
        .iter()
        .map(|n| {
            let k = files
                .iter()
                .filter(|(f, _)| client.whereis(&[f]).contains(&n.to_string()))
                .count() as u64;
            (k, k * 400)
        })
        .collect();
    assert_eq!(held.iter().map(|h| h.0).sum::<u64>(), 9, "{held:?}");
    assert!(held[0].1 <= 900, "node1 over its maxsize: {held:?}");
    fs::rename(nodes[1].path(), env.root().join("node2-gone.git")).unwrap();

    let cu = gw
        .git(&["config", "annex.cluster.mycluster"])
        .trim()
        .to_string();
    let json = crate::cluster_scenarios::annexgate(&env, &gw, &["cluster", "status", "--json"]);
    let statuses: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(statuses.len(), 1, "{json}");
    let s = &statuses[0];
    assert_eq!(s["name"], "mycluster");
    assert_eq!(s["uuid"], cu.as_str());
    assert_eq!(s["gateway"], gw.uuid());
    let listed = s["nodes"].as_array().expect("nodes");
    let mut names: Vec<&str> = listed.iter().map(|n| n["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["node1", "node2", "node3"], "{json}");
    for (i, name) in ["node1", "node2", "node3"].iter().enumerate() {
        let n = listed.iter().find(|n| n["name"] == *name).unwrap();
        assert_eq!(n["uuid"], NODE_UUIDS[i], "{json}");
        assert_eq!(n["keys"], held[i].0, "{name}: {json}");
        assert_eq!(n["used"], held[i].1, "{name}: {json}");
        let max = if i == 0 {
            serde_json::json!(900)
        } else {
            serde_json::Value::Null
        };
        assert_eq!(n["maxsize"], max, "{name}: {json}");
        assert_eq!(n["reachable"], i != 1, "{name}: {json}");
    }
    let node2 = listed.iter().find(|n| n["name"] == "node2").unwrap();
    assert!(
        node2["detail"].as_str().unwrap().contains("node2"),
        "why node2 is down: {json}"
    );

    let text = crate::cluster_scenarios::annexgate(&env, &gw, &["cluster", "status"]);
    assert!(
        text.starts_with(&format!("cluster mycluster ({cu})\n")),
        "{text}"
    );
    let line = |name: &str| -> &str {
        text.lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{text}"))
    };
    // Sizes as git-annex shows them: decimal units, one decimal from a kB on.
    let human = |n: u64| {
        if n < 1000 {
            format!("{n} bytes")
        } else {
            format!("{:.1} kB", n as f64 / 1000.0)
        }
    };
    let pct = (100.0 * held[0].1 as f64 / 900.0).round();
    assert!(
        line("node1").contains(&format!(
            "{} keys, {} of 900 bytes ({pct}%)",
            held[0].0,
            human(held[0].1)
        )),
        "{text}"
    );
    assert!(line("node1").ends_with(" up"), "{text}");
    assert!(line("node2").contains("  DOWN ("), "{text}");
    assert!(
        line("node3").contains(&format!(
            "{} keys, {} (no maxsize)",
            held[2].0,
            human(held[2].1)
        )),
        "{text}"
    );
    assert!(line("node3").ends_with(" up"), "{text}");
}
