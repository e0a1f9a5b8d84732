//! Clusters when things go wrong, with a real git-annex client: a node that is down, full,
//! failing mid-upload, answering garbage or hanging; a client naming a UUID the gateway does
//! not serve; a disk filling up; two gateways serving one cluster; `annexgate cluster
//! status`.
//!
//! Where git-annex's own gateway can do the same, each scenario runs against git-annex-shell
//! (the reference) and annexgate-shell on the gateway and must give the same [`Outcome`].
//! Where annexgate deliberately does better (a node's error text passed through to the
//! client, a bounded wait for a node that hangs, a clean reply when a disk fills), the test
//! asserts our behaviour and its comments say what git-annex does.
//!
//! Faulty nodes are ssh nodes of the gateway whose `annex-shell` is a small script,
//! [`FaultyShell`], that runs the real shell or misbehaves as its mode file says.

// Parts of the toolbox below serve scenarios still to come.
#![allow(dead_code, unused_imports)]

use std::fs;
use std::path::{Path, PathBuf};

use crate::cluster_scenarios::{
    client_with, gateway_with_nodes, NodeAccess, SetupTool, NODE_UUIDS,
};
use crate::harness::ssh::write_script;
use crate::harness::{
    assert_same_outcome, client_p2p_trace, pseudo_random, shared_outcome, tools, Outcome, Repo,
    RunResult, ShellImpl, TestEnv, Transport,
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
    /// The real shell, unable to write files past N bytes (a disk filling up).
    FileSizeLimit(u64),
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
  fsize:*)
    exec prlimit --fsize="${{mode#fsize:}}" -- "$real" "$@" ;;
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
            Fault::FileSizeLimit(n) => format!("fsize:{n}"),
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
fn compare(name: &str, scenario: fn(ShellImpl) -> Outcome) {
    let ours = scenario(ShellImpl::AnnexgateShell);
    eprintln!("{name} with annexgate-shell on the gateway:\n{ours}");
    assert_same_outcome(name, &reference(name, scenario), &ours);
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

/// The repositories `repo`'s location log lists for `key`, by name (empty when none: then
/// `whereis` fails, which is no error here).
fn locations(repo: &Repo<'_>, key: &str) -> Vec<String> {
    let (_, v) = repo.try_annex_json(&["whereis", "--key", key]);
    let mut names: Vec<String> = v
        .iter()
        .flat_map(|item| item["whereis"].as_array().cloned().unwrap_or_default())
        .map(|loc| repo.env().name_of(loc["uuid"].as_str().unwrap_or_default()))
        .collect();
    names.sort();
    names.dedup();
    names
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
        compare("node_cut_mid_put", node_cut_mid_put);
    }
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
