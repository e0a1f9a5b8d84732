//! Cluster set-ups the tutorial does not cover, with a real git-annex client through
//! annexgate-shell: directory special remotes as nodes (chunked and not) beside a repository
//! node, what a client that only fetches from the gateway learns, that a repository node's
//! upload leaves no temp file on the gateway, a proxied remote that is no cluster node
//! (`annexgate proxy update` on its own), the set-up's records against git-annex's, and a
//! gateway login with no git-annex at all.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::cluster_scenarios::{
    add_local_remote, annexgate, client_with, gateway_with_cluster, locations,
    server_repo_with_uuid, set_up_cluster, SetupTool, GW_UUID, NODE_UUIDS,
};
use crate::harness::{pseudo_random, Repo, ServerLogin, ShellImpl, TestEnv, Transport};

/// Files under `dir`, recursively (none when it does not exist).
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A client repository `name` with `files`, the gateway as ssh remote `gw` run by
/// annexgate-shell, and the proxied special remotes `verify` (gw-nodeN) confirmed as safe:
/// git-annex 10.20261026 will not push to a remote whose branch names special remotes the
/// user has not confirmed (`git annex verifyremote`). Confirming also sets
/// `remote.gw-nodeN.annex-verified`, and git-annex hides a proxied remote with any
/// `remote.NAME.*` setting, so that goes again; the confirmation is kept in the log.
fn verified_client<'e>(
    env: &'e TestEnv,
    gw: &Repo<'_>,
    name: &str,
    files: &[(&str, &[u8])],
    verify: &[&str],
) -> Repo<'e> {
    let client = env.client_repo(name);
    if !files.is_empty() {
        client.add_files(files);
    }
    client.git(&["remote", "add", "gw", &gw.ssh_url()]);
    client.set_config(
        "remote.gw.annex-shell",
        &ShellImpl::AnnexgateShell.program().to_string_lossy(),
    );
    client.annex(&["sync", "--no-content", "--no-push", "gw"]);
    for remote in verify {
        let (_, out) = {
            let r = client.try_annex(&["verifyremote", remote]);
            (r.code, format!("{}{}", r.stdout, r.stderr))
        };
        let id = out
            .split("--safe ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("verifyremote {remote} asked nothing:\n{out}"))
            .to_string();
        client.annex(&["verifyremote", remote, "--safe", &id]);
        client.git(&["config", "--remove-section", &format!("remote.{remote}")]);
    }
    let r = client.try_annex(&["sync", "--no-content", "gw"]);
    assert_eq!(
        r.code,
        Some(0),
        "{name}'s first sync with the gateway: {r:?}"
    );
    client
}

/// `repo`'s location log for `key`, read again until it lists every name in `want` (the
/// gateway commits shortly after the client's session ends) or 20 s have passed.
fn locations_eventually(repo: &Repo<'_>, key: &str, want: &[&str], sync_with: &str) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        repo.annex(&["sync", "--no-content", sync_with]);
        let got = locations(repo, key);
        if want.iter().all(|w| got.iter().any(|g| g == w)) || Instant::now() > until {
            return got;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A cluster of two directory special remotes (one chunked in 1 MiB pieces) and a bare
/// repository, set up by `annexgate cluster`: a 3 MiB upload through annexgate-shell lands
/// on all three; git-annex on the gateway reads it back from each directory remote (the
/// chunked one through the chunk log our recorder wrote) and its fsck agrees; the client
/// gets it back through the gateway from the chunked node and from the cluster; and a
/// second client that only fetches the gateway's git-annex branch sees the three nodes.
#[test]
fn directory_nodes_chunked_and_not_beside_a_repository_node() {
    let env = TestEnv::new(Transport::Shim);
    let gw = server_repo_with_uuid(&env, "gw", GW_UUID);
    let mut dir_uuids = Vec::new();
    for (name, extra) in [("node1", None), ("node2", Some("chunk=1MiB"))] {
        let dir = env.root().join(format!("{name}-dir"));
        fs::create_dir_all(&dir).unwrap();
        let d = format!("directory={}", dir.display());
        let mut args = vec!["initremote", name, "type=directory", &d, "encryption=none"];
        args.extend(extra);
        gw.annex(&args);
        let u = gw
            .git(&["config", &format!("remote.{name}.annex-uuid")])
            .trim()
            .to_string();
        env.register_uuid(&u, name);
        dir_uuids.push(u);
    }
    let node3 = server_repo_with_uuid(&env, "node3", NODE_UUIDS[2]);
    add_local_remote(&gw, "node3", &node3);
    for i in 1..=3 {
        gw.set_config(&format!("remote.node{i}.annex-cluster-node"), "mycluster");
    }
    set_up_cluster(
        &env,
        &gw,
        SetupTool::Annexgate,
        &["node1", "node2", "node3"],
    );

    let big = pseudo_random((3 << 20) + 7, 33);
    let client = verified_client(
        &env,
        &gw,
        "client",
        &[("big.bin", &big)],
        &["gw-node1", "gw-node2"],
    );
    let r = client.try_annex(&["copy", "--to", "gw-mycluster", "big.bin"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let key = client.key_of("big.bin");
    assert_eq!(
        client.whereis(&["big.bin"]),
        ["client", "mycluster", "node1", "node2", "node3"],
        "whereis big.bin"
    );

    // A client that never talked to the nodes learns where the content is from the
    // gateway's git-annex branch alone: the first client pushed nothing after its copy,
    // and nothing else on the gateway has looked at the nodes yet (`fsck --from` below
    // records what it finds).
    let fresh = verified_client(&env, &gw, "fresh", &[], &["gw-node1", "gw-node2"]);
    let got = locations_eventually(&fresh, &key, &["node1", "node2", "node3"], "gw");
    for n in ["node1", "node2", "node3"] {
        assert!(
            got.iter().any(|g| g == n),
            "fresh client's whereis: {got:?}"
        );
    }
    assert!(
        !got.iter().any(|g| g == "gw"),
        "the gateway holds no copy: {got:?}"
    );

    // On disk: node1 has the whole object, node2 four chunks, node3 the object.
    let whole: Vec<_> = files_under(&env.root().join("node1-dir"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|f| f.to_string_lossy() == key))
        .collect();
    assert_eq!(whole.len(), 1, "node1's directory: {whole:?}");
    assert!(fs::read(&whole[0]).unwrap() == big, "node1: wrong bytes");
    let chunks: Vec<_> = files_under(&env.root().join("node2-dir"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|f| f.to_string_lossy().contains("-S1048576-C"))
        })
        .collect();
    assert_eq!(chunks.len(), 4, "node2's chunks: {chunks:?}");
    assert!(
        fs::read(node3.find_object(&key).expect("node3 has the key")).unwrap() == big,
        "node3: wrong bytes"
    );

    // The gateway's branch has node2's chunk log for the key, in git-annex's format
    // ("<time>s <uuid>:<chunk size> <count>"), committed shortly after the session.
    let until = Instant::now() + Duration::from_secs(20);
    let cnk = loop {
        let listed = gw.git(&["ls-tree", "-r", "--name-only", "git-annex"]);
        let path = listed
            .lines()
            .find(|l| l.ends_with(&format!("/{key}.log.cnk")))
            .map(str::to_string);
        if let Some(p) = path {
            break gw.git(&["cat-file", "-p", &format!("git-annex:{p}")]);
        }
        assert!(
            Instant::now() < until,
            "no chunk log for {key} in:\n{listed}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let node2 = &dir_uuids[1];
    assert!(
        cnk.lines()
            .any(|l| l.split_once(' ').map(|(_, rest)| rest)
                == Some(&format!("{node2}:1048576 4"))),
        "chunk log of {key}:\n{cnk}"
    );
    // git-annex on the gateway reads the content back from each node and checks it.
    for node in ["node1", "node2", "node3"] {
        let (code, items) = gw.fsck(&["--from", node, "--key", &key]);
        assert_eq!(code, Some(0), "fsck --from {node}: {items:?}");
        assert_eq!(items, [(key.clone(), true)], "fsck --from {node}");
    }

    // Back through the gateway: from the chunked node, then from the cluster.
    for from in ["gw-node2", "gw-mycluster"] {
        client.annex(&["drop", "--force", "big.bin"]);
        let r = client.try_annex(&["get", "--from", from, "big.bin"]);
        assert_eq!(r.code, Some(0), "get --from {from}: {r:?}");
        assert!(
            fs::read(client.path().join("big.bin")).unwrap() == big,
            "big.bin got from {from}: wrong bytes"
        );
    }
}

/// Uploads to repository nodes stream from the client to the nodes: the gateway writes no
/// temp file. Its `annex/tmp` is made a plain file here, so any file the gateway tried to
/// make under it would fail the upload (as one into the gateway's own repository does);
/// the cluster copy still succeeds, to every node.
#[test]
fn a_cluster_upload_to_repository_nodes_makes_no_temp_file_on_the_gateway() {
    let env = TestEnv::new(Transport::Shim);
    let (gw, nodes) = gateway_with_cluster(&env, SetupTool::Annexgate);
    let tmp = gw.git_dir().join("annex/tmp");
    if tmp.is_dir() {
        fs::remove_dir_all(&tmp).unwrap();
    }
    fs::write(&tmp, b"not a directory\n").unwrap();
    let small = b"small file through the cluster\n".to_vec();
    let big = pseudo_random((9 << 20) + 3, 5);
    let client = client_with(
        &env,
        &gw,
        ShellImpl::AnnexgateShell,
        &[("small.txt", small.clone()), ("big.bin", big.clone())],
        3,
        None,
    );
    let r = client.try_annex(&["copy", "--to", "gw-mycluster", "small.txt", "big.bin"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    for (file, bytes) in [("small.txt", &small), ("big.bin", &big)] {
        let key = client.key_of(file);
        for n in &nodes {
            let obj = n
                .find_object(&key)
                .unwrap_or_else(|| panic!("{} lacks {file}", n.name()));
            assert!(fs::read(obj).unwrap() == *bytes, "{}: {file}", n.name());
        }
    }
    assert!(tmp.is_file(), "annex/tmp is still the plain file");
    // The trap works: an upload into the gateway's own repository, which does go through
    // a temp file, fails.
    let r = client.try_annex(&["copy", "--to", "gw", "small.txt"]);
    assert_ne!(r.code, Some(0), "an upload into the gateway itself: {r:?}");
    assert!(
        files_under(&gw.git_dir().join("annex/othertmp")).is_empty(),
        "no temp file in annex/othertmp either"
    );
}

/// A remote that is proxied but is no cluster node: `annexgate proxy update` starts
/// proxying for it as `git annex updateproxy` would (git-annex then finds nothing to
/// change), a client reaches it as gw-node1 through annexgate-shell, and clearing
/// `annex-proxy` stops it again.
#[test]
fn proxy_update_proxies_a_remote_that_is_no_cluster_node() {
    let env = TestEnv::new(Transport::Shim);
    let gw = server_repo_with_uuid(&env, "gw", GW_UUID);
    let node1 = server_repo_with_uuid(&env, "node1", NODE_UUIDS[0]);
    add_local_remote(&gw, "node1", &node1);
    gw.set_config("remote.node1.annex-proxy", "true");
    // git-annex reads our proxy log as what it would have written itself.
    let git_annex_agrees = || {
        let again = gw.annex(&["updateproxy"]).stdout;
        assert!(
            !again.contains("proxying"),
            "git-annex's updateproxy after ours changed something:\n{again}"
        );
    };
    let out = annexgate(&env, &gw, &["proxy", "update"]);
    assert!(out.contains("Started proxying for node1"), "{out}");
    git_annex_agrees();

    let text = b"proxied, not clustered\n".to_vec();
    let client = client_with(
        &env,
        &gw,
        ShellImpl::AnnexgateShell,
        &[("p.txt", text.clone())],
        0,
        None,
    );
    let r = client.try_annex(&["copy", "--to", "gw-node1", "p.txt"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let key = client.key_of("p.txt");
    assert!(
        fs::read(node1.find_object(&key).expect("node1 has p.txt")).unwrap() == text,
        "node1: wrong bytes"
    );
    assert_eq!(client.whereis(&["p.txt"]), ["client", "node1"]);

    gw.git(&["config", "--unset", "remote.node1.annex-proxy"]);
    let out = annexgate(&env, &gw, &["proxy", "update"]);
    assert!(out.contains("Stopped proxying for node1"), "{out}");
    git_annex_agrees();
}

/// `annexgate cluster init/update` and `annexgate proxy update` write what git-annex's
/// `initcluster`/`updatecluster`/`updateproxy` write, byte for byte once the UUIDs that
/// differ by nature (each gateway's, each new cluster's), the gateways' own names and the
/// timestamps are masked:
/// the same output, the same git config, and the same uuid.log, cluster.log and
/// proxy.log in the git-annex branch; and again after a node leaves the cluster and a
/// proxied remote stops being proxied.
#[test]
fn cluster_and_proxy_set_up_write_what_git_annex_writes() {
    let env = TestEnv::new(Transport::Shim);
    let nodes: Vec<Repo<'_>> = (1..=2)
        .map(|i| server_repo_with_uuid(&env, &format!("node{i}"), NODE_UUIDS[i - 1]))
        .collect();
    let gws = [
        server_repo_with_uuid(&env, "gwa", GW_UUID),
        server_repo_with_uuid(&env, "gwb", "9a7e0000-0000-4000-8000-00000000000b"),
    ];
    for gw in &gws {
        // node2's remote is "n2": git-annex names a node that leaves by its description
        // and remote name ("node2 [n2]")
        for (name, n) in ["node1", "n2"].into_iter().zip(&nodes) {
            add_local_remote(gw, name, n);
            gw.set_config(&format!("remote.{name}.annex-cluster-node"), "mycluster");
        }
        // node1 once more under another name, proxied on its own
        add_local_remote(gw, "single", &nodes[0]);
        gw.set_config("remote.single.annex-proxy", "true");
    }
    let (ga, ag) = (&gws[0], &gws[1]);
    // What each gateway's set-up says and records, with the differing UUIDs and the
    // timestamps masked.
    let state = |gw: &Repo<'_>, out: &str| -> String {
        let mut s = format!("output:\n{out}\nconfig:\n");
        let cfg = gw.try_git(&[
            "config",
            "--get-regexp",
            r"^annex\.cluster\.|^remote\..*\.annex-(uuid|cluster-node|cluster-gateway|proxy)$",
        ]);
        s.push_str(&cfg.stdout);
        for log in ["uuid.log", "cluster.log", "proxy.log"] {
            let r = gw.try_git(&["cat-file", "-p", &format!("git-annex:{log}")]);
            s.push_str(&format!("{log}:\n{}", r.stdout));
        }
        let cu = gw
            .try_git(&["config", "annex.cluster.mycluster"])
            .stdout
            .trim()
            .to_string();
        // (git-annex's "(recording state in git...)" is a progress note, not a result)
        let mut masked = s
            .replace("(recording state in git...)\n", "")
            .replace(gw.uuid(), "GATEWAY")
            .replace(
                &format!(" {} timestamp=", gw.name()),
                " GATEWAY-NAME timestamp=",
            );
        if !cu.is_empty() {
            masked = masked.replace(&cu, "CLUSTER");
        }
        masked
            .split([' ', '\n'])
            .map(|w| {
                let t = w.strip_prefix("timestamp=").unwrap_or(w);
                let digits = t.trim_end_matches('s');
                if t.ends_with('s')
                    && !digits.is_empty()
                    && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
                {
                    if w.starts_with("timestamp=") {
                        "timestamp=T".to_string()
                    } else {
                        "T".to_string()
                    }
                } else {
                    w.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };

    let a = format!(
        "{}{}{}",
        ga.annex(&["initcluster", "mycluster"]).stdout,
        ga.annex(&["updatecluster"]).stdout,
        ga.annex(&["updateproxy"]).stdout
    );
    let b = format!(
        "{}{}{}",
        annexgate(&env, ag, &["cluster", "init", "mycluster"]),
        annexgate(&env, ag, &["cluster", "update"]),
        annexgate(&env, ag, &["proxy", "update"])
    );
    let (sa, sb) = (state(ga, &a), state(ag, &b));
    assert!(sa.contains("Started proxying for single"), "{sa}");
    assert!(sa.contains("cluster.log: T CLUSTER"), "{sa}");
    assert_eq!(sb, sa, "set-up: annexgate (left) and git-annex (right)");

    // node2 leaves the cluster, `single` stops being proxied.
    for gw in &gws {
        gw.git(&["config", "--unset", "remote.n2.annex-cluster-node"]);
        gw.git(&["config", "--unset", "remote.single.annex-proxy"]);
    }
    let a = format!(
        "{}{}",
        ga.annex(&["updatecluster"]).stdout,
        ga.annex(&["updateproxy"]).stdout
    );
    let b = format!(
        "{}{}",
        annexgate(&env, ag, &["cluster", "update"]),
        annexgate(&env, ag, &["proxy", "update"])
    );
    let (sa, sb) = (state(ga, &a), state(ag, &b));
    assert!(sa.contains("Stopped proxying for single"), "{sa}");
    assert!(sa.contains("Removed node node2 [n2] from cluster"), "{sa}");
    assert_eq!(sb, sa, "update: annexgate (left) and git-annex (right)");
}

/// A gateway account whose login shell is annexgate-shell and whose PATH has no git-annex
/// (stand-ins that log and fail): a plain client (no `annex-shell` setting) uses the
/// cluster of three local repository nodes and the gateway's own repository beside it —
/// copies to both, whereis, gets back from each, drops from a node — and nothing on the
/// gateway ran git-annex or git-annex-shell: the nodes are served in-process.
#[test]
fn a_cluster_gateway_login_runs_no_git_annex() {
    let login = ServerLogin::LoginShell(ShellImpl::AnnexgateShell.program().to_path_buf());
    let env = TestEnv::with_login(Transport::Shim, login);
    let (gw, nodes) = gateway_with_cluster(&env, SetupTool::Annexgate);
    let client = env.client_repo("client");
    let big = pseudo_random(300_000, 9);
    client.add_files(&[
        ("big.bin", &big),
        ("own.txt", b"kept by the gateway itself\n"),
    ]);
    client.git(&["remote", "add", "gw", &gw.ssh_url()]);
    client.annex(&["sync", "--no-content", "gw"]);
    client.annex(&["copy", "--to", "gw-mycluster", "big.bin"]);
    client.annex(&["copy", "--to", "gw", "own.txt"]);
    assert_eq!(
        client.whereis(&["big.bin"]),
        ["client", "mycluster", "node1", "node2", "node3"]
    );
    assert_eq!(client.whereis(&["own.txt"]), ["client", "gw"]);
    let key = client.key_of("big.bin");
    for n in &nodes {
        assert!(n.find_object(&key).is_some(), "{} has big.bin", n.name());
    }
    assert!(
        gw.find_object(&key).is_none(),
        "the gateway keeps no copy of big.bin"
    );
    assert!(gw.find_object(&client.key_of("own.txt")).is_some());

    client.annex(&["drop", "--force", "big.bin", "own.txt"]);
    client.annex(&["get", "--from", "gw-mycluster", "big.bin"]);
    client.annex(&["get", "--from", "gw", "own.txt"]);
    assert!(fs::read(client.path().join("big.bin")).unwrap() == big);
    assert_eq!(
        fs::read(client.path().join("own.txt")).unwrap(),
        b"kept by the gateway itself\n"
    );
    client.annex(&["drop", "--from", "gw-node1", "big.bin"]);
    assert!(
        nodes[0].find_object(&key).is_none(),
        "node1 dropped big.bin"
    );
    assert_eq!(
        client.whereis(&["big.bin"]),
        ["client", "mycluster", "node2", "node3"]
    );
    assert!(
        env.git_annex_ran_on_server().is_empty(),
        "the gateway's login ran git-annex: {:?}",
        env.git_annex_ran_on_server()
    );
}
