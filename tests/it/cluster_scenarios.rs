//! git-annex's cluster tutorial, end to end with a real git-annex client: a gateway with
//! three bare-repository nodes and balanced preferred content, `copy --to gw-mycluster`,
//! `whereis` listing the nodes, `get --from`, `drop --from`, `move`, and drops that must
//! lock copies on proxied nodes.
//!
//! Each scenario runs in four set-ups and must give the same outcome in all of them:
//! the gateway served by git-annex-shell or annexgate-shell, and the cluster set up by
//! git-annex (`initcluster`/`updatecluster`) or by `annexgate cluster init/update`. The
//! reference is git-annex-shell with git-annex's own set-up. Repository UUIDs are fixed, so
//! balanced placement picks the same nodes in every run.

use crate::harness::{
    assert_same_outcome, shared_outcome, tools, Outcome, Repo, ShellImpl, Side, TestEnv, Transport,
};

/// The repositories `repo`'s location log lists for `key`, by name, as git-annex there
/// reads it (empty when none: then `whereis` fails, which is no error here).
pub(crate) fn locations(repo: &Repo<'_>, key: &str) -> Vec<String> {
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

/// Who set the cluster up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetupTool {
    GitAnnex,
    Annexgate,
}

pub(crate) const NODE_UUIDS: [&str; 3] = [
    "5a0e0001-1111-4111-8111-000000000001",
    "5a0e0002-2222-4222-8222-000000000002",
    "5a0e0003-3333-4333-8333-000000000003",
];
pub(crate) const GW_UUID: &str = "9a7e0000-0000-4000-8000-00000000000a";

/// A bare server repository with a fixed UUID.
pub(crate) fn server_repo_with_uuid<'e>(env: &'e TestEnv, name: &str, uuid: &str) -> Repo<'e> {
    let path = env.root().join(format!("{name}.git"));
    env.run(
        env.command(Side::Server, "git", env.root())
            .args(["init", "-q", "--bare"])
            .arg(&path),
    );
    env.run(
        env.command(Side::Server, "git", &path)
            .args(["config", "annex.uuid", uuid]),
    );
    env.run(
        env.command(Side::Server, "git", &path)
            .args(["annex", "init", "-q", name]),
    );
    Repo::open(env, Side::Server, &path, name)
}

/// `annexgate ARGS` on the server side, in `repo`.
pub(crate) fn annexgate(env: &TestEnv, repo: &Repo<'_>, args: &[&str]) -> String {
    env.run(
        env.command(Side::Server, &tools().annexgate, repo.path())
            .args(args),
    )
    .stdout
}

/// How the gateway reaches one of its nodes.
#[derive(Debug, Clone)]
pub(crate) enum NodeAccess {
    /// A bare repository next to the gateway, as the local path `../nodeN.git`.
    Local,
    /// Over ssh (`annexgate-test:/abs/nodeN.git`), running this program as its annex-shell
    /// (`remote.nodeN.annex-shell`): git-annex-shell, annexgate-shell or a test's script.
    Ssh(std::path::PathBuf),
}

/// A gateway `gw` with nodes node1..node3 (local bare repositories) in cluster `mycluster`,
/// set up by `tool`. Returns (gateway, nodes).
pub(crate) fn gateway_with_cluster<'e>(
    env: &'e TestEnv,
    tool: SetupTool,
) -> (Repo<'e>, Vec<Repo<'e>>) {
    gateway_with_nodes(
        env,
        tool,
        &[NodeAccess::Local, NodeAccess::Local, NodeAccess::Local],
    )
}

/// A gateway `gw` with one node per entry of `access` (node1, node2, … with the fixed
/// UUIDs) in cluster `mycluster`, set up by `tool`. Returns (gateway, nodes).
pub(crate) fn gateway_with_nodes<'e>(
    env: &'e TestEnv,
    tool: SetupTool,
    access: &[NodeAccess],
) -> (Repo<'e>, Vec<Repo<'e>>) {
    assert!(
        access.len() <= NODE_UUIDS.len(),
        "at most {} nodes",
        NODE_UUIDS.len()
    );
    let gw = server_repo_with_uuid(env, "gw", GW_UUID);
    let nodes: Vec<Repo<'e>> = (1..=access.len())
        .map(|i| server_repo_with_uuid(env, &format!("node{i}"), NODE_UUIDS[i - 1]))
        .collect();
    for ((i, n), how) in nodes.iter().enumerate().zip(access) {
        let name = format!("node{}", i + 1);
        match how {
            NodeAccess::Local => add_local_remote(&gw, &name, n),
            NodeAccess::Ssh(shell) => {
                gw.git(&["remote", "add", &name, &n.ssh_url()]);
                gw.set_config(
                    &format!("remote.{name}.annex-shell"),
                    &shell.to_string_lossy(),
                );
                gw.set_config(&format!("remote.{name}.annex-uuid"), n.uuid());
                gw.git(&["fetch", "-q", &name]);
            }
        }
        gw.set_config(&format!("remote.{name}.annex-cluster-node"), "mycluster");
    }
    let names: Vec<String> = (1..=access.len()).map(|i| format!("node{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    set_up_cluster(env, &gw, tool, &names);
    (gw, nodes)
}

/// Add the bare repository `node` (a sibling of `gw`) as `gw`'s remote `name`, reached by
/// the local path `../<dir>`, with its UUID set (annexgate wants it; git-annex would find
/// it) and its branches fetched.
pub(crate) fn add_local_remote(gw: &Repo<'_>, name: &str, node: &Repo<'_>) {
    let dir = node
        .path()
        .file_name()
        .expect("a node repository has a name");
    gw.git(&[
        "remote",
        "add",
        name,
        &format!("../{}", dir.to_string_lossy()),
    ]);
    gw.set_config(&format!("remote.{name}.annex-uuid"), node.uuid());
    gw.git(&["fetch", "-q", name]);
}

/// Make cluster `mycluster` on `gw` with `tool` from the remotes configured as its nodes
/// (`remote.NAME.annex-cluster-node`): the set-up must say it added and proxies each of
/// `nodes` and the cluster. The cluster's UUID, in git-annex's cluster format, is
/// registered as "mycluster" and returned.
pub(crate) fn set_up_cluster(
    env: &TestEnv,
    gw: &Repo<'_>,
    tool: SetupTool,
    nodes: &[&str],
) -> String {
    let out = match tool {
        SetupTool::GitAnnex => {
            gw.annex(&["initcluster", "mycluster"]);
            gw.annex(&["updatecluster"]).stdout
        }
        SetupTool::Annexgate => {
            annexgate(env, gw, &["cluster", "init", "mycluster"]);
            annexgate(env, gw, &["cluster", "update"])
        }
    };
    for n in nodes {
        assert!(
            out.contains(&format!("Added node {n} to cluster: mycluster"))
                && out.contains(&format!("Started proxying for {n}")),
            "{tool:?} set-up output:\n{out}"
        );
    }
    assert!(out.contains("Started proxying for mycluster"), "{out}");
    let cu = gw
        .git(&["config", "annex.cluster.mycluster"])
        .trim()
        .to_string();
    assert!(
        cu.starts_with("ac") && cu.as_bytes()[14] == b'8',
        "cluster UUID {cu}"
    );
    env.register_uuid(&cu, "mycluster");
    cu
}

/// The client side: gateway added as ssh remote `gw` run by `shell`, the cluster's nodes
/// balanced (the tutorial's `groupwanted balanced=...`), the gateway wanting nothing.
pub(crate) fn client_of<'e>(
    env: &'e TestEnv,
    gw: &Repo<'_>,
    shell: ShellImpl,
    files: &[(&str, Vec<u8>)],
) -> Repo<'e> {
    client_with(env, gw, shell, files, 3, Some("balanced"))
}

/// The client side: gateway added as ssh remote `gw` run by `shell`, the gateway wanting
/// nothing, and its `nodes` nodes (gw-node1 …) in group `gw-node` with `groupwanted
/// <placement>=gw-node` (`balanced`, `fullybalanced`, …), or with no preferred content
/// at all (every node wants everything) when `placement` is `None`.
pub(crate) fn client_with<'e>(
    env: &'e TestEnv,
    gw: &Repo<'_>,
    shell: ShellImpl,
    files: &[(&str, Vec<u8>)],
    nodes: usize,
    placement: Option<&str>,
) -> Repo<'e> {
    let client = env.client_repo("client");
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (*n, c.as_slice())).collect();
    client.add_files(&refs);
    client.add_ssh_remote("gw", gw, shell);
    if let Some(p) = placement {
        client.annex(&["groupwanted", "gw-node", &format!("{p}=gw-node")]);
        for i in 1..=nodes {
            client.annex(&["group", &format!("gw-node{i}"), "gw-node"]);
            client.annex(&["wanted", &format!("gw-node{i}"), "groupwanted"]);
        }
    }
    client.annex(&["wanted", "gw", "nothing"]);
    client.annex(&["sync", "--no-content", "gw"]);
    client
}

pub(crate) fn files() -> Vec<(&'static str, Vec<u8>)> {
    (1..=6)
        .map(|i| {
            let name: &'static str = Box::leak(format!("f{i}.txt").into_boxed_str());
            (
                name,
                format!("file number {i}\n").repeat(i * 10).into_bytes(),
            )
        })
        .collect()
}

/// The tutorial: copy to the cluster, whereis, get, drop, move, safe drops.
fn tutorial(t: Transport, shell: ShellImpl, tool: SetupTool) -> Outcome {
    let env = TestEnv::new(t);
    let mut out = Outcome::default();
    let (gw, _nodes) = gateway_with_cluster(&env, tool);
    let client = client_of(&env, &gw, shell, &files());

    let info = client.annex(&["info", "gw"]).stdout;
    let line = |prefix: &str| -> Vec<String> {
        let mut v: Vec<String> = info
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    out.note("gateway to cluster", line("gateway to cluster: "));
    out.note("proxying", line("proxying: "));

    let r = client.try_annex(&["copy", "--to", "gw-mycluster", "."]);
    out.exit("copy --to gw-mycluster", &r);
    for (f, _) in files() {
        let w = client.whereis(&[f]);
        // Balanced over three nodes with the gateway wanting nothing: one node each, and
        // the cluster, and the client.
        assert_eq!(w.len(), 3, "{f}: {w:?}");
        assert!(w.contains(&"mycluster".to_string()), "{f}: {w:?}");
        out.note(&format!("whereis {f} after copy"), w);
    }
    // Nothing on the gateway itself.
    for (f, _) in files() {
        assert!(
            gw.find_object(&client.key_of(f)).is_none(),
            "{f} stored on the gateway"
        );
    }

    // Dropping the local copy needs a node to lock its copy through the gateway.
    let r = client.try_annex(&["drop", "f1.txt"]);
    out.exit("drop f1 (locks a node)", &r);
    out.note("whereis f1 after drop", client.whereis(&["f1.txt"]));
    let r = client.try_annex(&["get", "--from", "gw-mycluster", "f1.txt"]);
    out.exit("get f1 --from gw-mycluster", &r);
    out.note("whereis f1 after get", client.whereis(&["f1.txt"]));
    assert_eq!(
        std::fs::read(client.path().join("f1.txt")).unwrap(),
        files()[0].1,
        "f1 content after get"
    );

    let r = client.try_annex(&["drop", "--from", "gw-mycluster", "f2.txt"]);
    out.exit("drop f2 --from gw-mycluster", &r);
    out.note("whereis f2 after drop --from", client.whereis(&["f2.txt"]));

    client.add_files(&[("moved.txt", b"moving to the cluster\n")]);
    let r = client.try_annex(&["move", "--to", "gw-mycluster", "moved.txt"]);
    out.exit("move moved.txt --to gw-mycluster", &r);
    out.note("whereis moved after move", client.whereis(&["moved.txt"]));
    let r = client.try_annex(&["move", "--from", "gw-mycluster", "moved.txt"]);
    out.exit("move moved.txt --from gw-mycluster", &r);
    out.note(
        "whereis moved after move back",
        client.whereis(&["moved.txt"]),
    );

    // numcopies 2: a local drop of a file with one node copy must fail; after a second
    // node got it (copied to that node directly, through the gateway) it must succeed,
    // locking both node copies.
    client.annex(&["numcopies", "2"]);
    let r = client.try_annex(&["drop", "f3.txt"]);
    out.exit("drop f3 with numcopies 2 and one node copy", &r);
    let holders = client.whereis(&["f3.txt"]);
    let other = (1..=3)
        .map(|i| format!("node{i}"))
        .find(|n| !holders.contains(n))
        .unwrap();
    let r = client.try_annex(&["copy", "--to", &format!("gw-{other}"), "f3.txt"]);
    out.exit("copy f3 to a second node", &r);
    let r = client.try_annex(&["drop", "f3.txt"]);
    out.exit("drop f3 with two node copies", &r);
    out.note("whereis f3 at the end", client.whereis(&["f3.txt"]));

    // The gateway's own branch knows where everything went.
    client.annex(&["sync", "--no-content", "gw"]);
    let (code, fsck) = client.fsck(&["--from", "gw-mycluster", "--fast"]);
    out.note("fsck --from gw-mycluster --fast", (code, fsck));
    out
}

fn reference(name: &str, t: Transport) -> Outcome {
    let out = shared_outcome(format!("cluster/{name}/{t:?}"), || {
        tutorial(t, ShellImpl::GitAnnexShell, SetupTool::GitAnnex)
    });
    eprintln!("{name} over {t:?}, git-annex-shell, git-annex set-up:\n{out}");
    out
}

fn compare(name: &str, t: Transport, shell: ShellImpl, tool: SetupTool) {
    let ours = tutorial(t, shell, tool);
    eprintln!("{name} over {t:?}, {shell:?}, {tool:?} set-up:\n{ours}");
    assert_same_outcome(name, &reference(name, t), &ours);
}

mod tutorial {
    use super::*;

    #[test]
    fn shim() {
        reference("tutorial", Transport::Shim);
    }
    #[test]
    fn shim_annexgate_shell() {
        compare(
            "tutorial",
            Transport::Shim,
            ShellImpl::AnnexgateShell,
            SetupTool::GitAnnex,
        );
    }
    #[test]
    fn shim_annexgate_setup() {
        compare(
            "tutorial",
            Transport::Shim,
            ShellImpl::GitAnnexShell,
            SetupTool::Annexgate,
        );
    }
    #[test]
    fn shim_annexgate_both() {
        compare(
            "tutorial",
            Transport::Shim,
            ShellImpl::AnnexgateShell,
            SetupTool::Annexgate,
        );
    }
    #[test]
    fn sshd_annexgate_shell() {
        compare(
            "tutorial",
            Transport::Sshd,
            ShellImpl::AnnexgateShell,
            SetupTool::GitAnnex,
        );
    }
}

/// Local node remotes added with plain `git remote add` (no `annex-uuid` in the gateway's
/// config, never fetched): `annexgate cluster update` finds their UUIDs in their own
/// config and adds them, as `git annex updatecluster` does.
#[test]
fn cluster_update_learns_local_node_uuids() {
    for tool in [SetupTool::GitAnnex, SetupTool::Annexgate] {
        let env = TestEnv::new(Transport::Shim);
        let gw = server_repo_with_uuid(&env, "gw", GW_UUID);
        for (i, u) in NODE_UUIDS.iter().enumerate().take(2) {
            let name = format!("node{}", i + 1);
            server_repo_with_uuid(&env, &name, u);
            gw.git(&["remote", "add", &name, &format!("../{name}.git")]);
            gw.set_config(&format!("remote.{name}.annex-cluster-node"), "mycluster");
        }
        let out = match tool {
            SetupTool::GitAnnex => {
                gw.annex(&["initcluster", "mycluster"]);
                gw.annex(&["updatecluster"]).stdout
            }
            SetupTool::Annexgate => {
                annexgate(&env, &gw, &["cluster", "init", "mycluster"]);
                annexgate(&env, &gw, &["cluster", "update"])
            }
        };
        for (i, u) in NODE_UUIDS.iter().enumerate().take(2) {
            assert!(
                out.contains(&format!("Added node node{} to cluster: mycluster", i + 1)),
                "{tool:?}:\n{out}"
            );
            assert_eq!(
                gw.git(&["config", &format!("remote.node{}.annex-uuid", i + 1)])
                    .trim(),
                *u,
                "{tool:?}"
            );
        }
    }
}

/// An upload big enough to be fanned out on the gateway's worker threads (8 MiB and
/// more) reaches a local node, a node behind ssh run by annexgate-shell and one run by
/// git-annex-shell: the ssh nodes' connections belong to the session's thread and are
/// written from the workers. Every node ends up with the exact bytes, git-annex's fsck
/// agrees, and whereis names all three.
#[test]
fn a_big_upload_fans_out_to_local_and_ssh_nodes() {
    let env = TestEnv::new(Transport::Shim);
    let access = [
        NodeAccess::Local,
        NodeAccess::Ssh(tools().annexgate_shell.clone()),
        NodeAccess::Ssh(tools().git_annex_shell.clone()),
    ];
    let (gw, nodes) = gateway_with_nodes(&env, SetupTool::Annexgate, &access);
    let big = crate::harness::pseudo_random((12 << 20) + 5, 21);
    let client = client_with(
        &env,
        &gw,
        ShellImpl::AnnexgateShell,
        &[("big.bin", big.clone())],
        3,
        None,
    );
    let r = client.try_annex(&["copy", "--to", "gw-mycluster", "big.bin"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let mut w = client.whereis(&["big.bin"]);
    w.sort();
    assert_eq!(
        w,
        ["client", "mycluster", "node1", "node2", "node3"],
        "whereis big.bin"
    );
    let key = client.key_of("big.bin");
    for n in &nodes {
        // Each node's own branch says it holds the key once the session is over (a local
        // node's by our recorder, which commits what is left when the session ends).
        assert!(
            locations(n, &key).contains(&n.name().to_string()),
            "{}'s own log: {:?}",
            n.name(),
            locations(n, &key)
        );
        let obj = n
            .find_object(&key)
            .unwrap_or_else(|| panic!("{} lacks {key}", n.name()));
        assert!(
            std::fs::read(obj).unwrap() == big,
            "{}: wrong bytes",
            n.name()
        );
        let (code, fsck) = n.fsck(&["--key", &key]);
        assert_eq!(code, Some(0), "{}: {fsck:?}", n.name());
        assert_eq!(fsck, [(key.clone(), true)], "{}", n.name());
    }
}
