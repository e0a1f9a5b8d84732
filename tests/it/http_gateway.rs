//! A gateway whose nodes include `annex+http` remotes (something git-annex itself cannot
//! proxy), end to end with the real git-annex client: the gateway (a bare repository
//! served by annexgate-shell over ssh) has a cluster of a p2phttp node (annexgate-http
//! serving another repository) and a local node, set up by git-annex's own
//! `initcluster`/`updatecluster`; the client copies, gets, drops and locks through
//! `gw-mycluster` and `gw-httpnode`, and every repository's logs say where content is.

use crate::cluster_scenarios::{add_local_remote, set_up_cluster, SetupTool};
use crate::harness::{Repo, RepoKind, ShellImpl, TestEnv, Transport};
use crate::http::support::{committed_locations, eventually, Impl, Server};

struct World<'e> {
    client: Repo<'e>,
    gw: Repo<'e>,
    httpnode: Repo<'e>,
    lnode: Repo<'e>,
    _server: Server,
}

/// `gw` with cluster `mycluster` = {httpnode (annex+http), lnode (local)}, and a client
/// with `gw` as ssh remote run by annexgate-shell, holding `files`.
fn world<'e>(env: &'e TestEnv, files: &[(&str, &[u8])], server_args: &[&str]) -> World<'e> {
    let httpnode = env.server_repo("httpnode", RepoKind::Bare);
    let lnode = env.server_repo("lnode", RepoKind::Bare);
    let server = Server::start(env, Impl::Ours, httpnode.path(), server_args, &[]);
    let gw = env.server_repo("gw", RepoKind::Bare);
    // The http node's git URL is its path (git fetches it); annex traffic goes to its
    // annexurl, which is what makes it an annex+http remote.
    gw.git(&[
        "remote",
        "add",
        "httpnode",
        &httpnode.path().to_string_lossy(),
    ]);
    gw.set_config("remote.httpnode.annexurl", &server.annex_url());
    gw.set_config("remote.httpnode.annex-uuid", httpnode.uuid());
    gw.set_config("remote.httpnode.annex-cluster-node", "mycluster");
    add_local_remote(&gw, "lnode", &lnode);
    gw.set_config("remote.lnode.annex-cluster-node", "mycluster");
    set_up_cluster(env, &gw, SetupTool::GitAnnex, &["httpnode", "lnode"]);

    let client = env.client_repo("client");
    client.add_files(files);
    client.add_ssh_remote("gw", &gw, ShellImpl::AnnexgateShell);
    World {
        client,
        gw,
        httpnode,
        lnode,
        _server: server,
    }
}

fn has(repo: &Repo<'_>, key: &str) -> bool {
    repo.find_object(key).is_some()
}

#[test]
fn cluster_with_an_http_node() {
    let env = TestEnv::new(Transport::Shim);
    let big = crate::harness::pseudo_random(3 << 20, 11);
    let w = world(
        &env,
        &[
            ("f1.txt", b"first file\n"),
            ("f2.bin", &big),
            ("f3.txt", b"third file\n"),
        ],
        &["--wideopen"],
    );
    let c = &w.client;
    let (k1, k2) = (c.key_of("f1.txt"), c.key_of("f2.bin"));
    // Copy to the cluster: both nodes get it, and everyone's logs say so.
    c.annex(&["copy", "--to", "gw-mycluster", "f1.txt", "f2.bin"]);
    for k in [&k1, &k2] {
        assert!(
            has(&w.httpnode, k) && has(&w.lnode, k),
            "{k} not on both nodes"
        );
        assert!(!has(&w.gw, k), "{k} stored on the gateway itself");
    }
    assert_eq!(w.httpnode.object_content(&k2).as_deref(), Some(&big[..]));
    assert_eq!(
        c.whereis(&["f1.txt"]),
        ["client", "httpnode", "lnode", "mycluster"]
    );
    // The http node's server records its own copy in its branch; the gateway records
    // both nodes in its own.
    eventually(20, "httpnode's branch records f1", || {
        committed_locations(&w.httpnode, &k1).contains(&w.httpnode.uuid().to_string())
    });
    eventually(20, "the gateway's branch records f1 on both nodes", || {
        let l = committed_locations(&w.gw, &k1);
        l.contains(&w.httpnode.uuid().to_string()) && l.contains(&w.lnode.uuid().to_string())
    });

    // Get from the cluster when only the http node has it.
    c.annex(&["drop", "--from", "gw-lnode", "f2.bin"]);
    assert!(!has(&w.lnode, &k2) && has(&w.httpnode, &k2));
    c.annex(&["drop", "--force", "f2.bin"]);
    c.annex(&["get", "--from", "gw-mycluster", "f2.bin"]);
    assert_eq!(std::fs::read(c.path().join("f2.bin")).unwrap(), big);

    // A local drop with the only other copy on the http node: git-annex locks it there
    // through the gateway (lockcontent + keeplocked over HTTP).
    let r = c.annex(&["drop", "f2.bin"]);
    assert!(
        r.stderr.contains("gw-httpnode") || r.stdout.contains("gw-httpnode"),
        "{r}"
    );
    assert!(!has(&w.client, &k2) && has(&w.httpnode, &k2));

    // Drop from the cluster: gone from every node, and from the http node's log.
    c.annex(&["drop", "--from", "gw-mycluster", "f1.txt"]);
    assert!(!has(&w.httpnode, &k1) && !has(&w.lnode, &k1));
    assert_eq!(c.whereis(&["f1.txt"]), ["client"]);
    eventually(20, "httpnode's branch records f1 gone", || {
        !committed_locations(&w.httpnode, &k1).contains(&w.httpnode.uuid().to_string())
    });
    eventually(20, "the gateway's branch records f1 gone", || {
        let l = committed_locations(&w.gw, &k1);
        !l.contains(&w.httpnode.uuid().to_string()) && !l.contains(&w.lnode.uuid().to_string())
    });
    // What the client learnt agrees with what the nodes hold.
    let (code, fsck) = c.fsck(&["--from", "gw-mycluster", "--fast", "f2.bin"]);
    assert_eq!(code, Some(0), "{fsck:?}");
}

#[test]
fn gateway_proxies_a_single_http_remote() {
    let env = TestEnv::new(Transport::Shim);
    let w = world(&env, &[("a.txt", b"for the http node\n")], &["--wideopen"]);
    let c = &w.client;
    let k = c.key_of("a.txt");
    c.annex(&["copy", "--to", "gw-httpnode", "a.txt"]);
    assert!(has(&w.httpnode, &k) && !has(&w.lnode, &k));
    // git-annex lists the cluster of a node that has the content too.
    assert_eq!(c.whereis(&["a.txt"]), ["client", "httpnode", "mycluster"]);
    let r = c.try_annex(&["drop", "--from", "gw-httpnode", "a.txt", "--numcopies", "2"]);
    assert!(!r.success(), "dropped below numcopies: {r}");
    c.annex(&["move", "--from", "gw-httpnode", "a.txt"]);
    assert!(!has(&w.httpnode, &k));
    assert_eq!(c.whereis(&["a.txt"]), ["client"]);
    c.annex(&["move", "--to", "gw-httpnode", "a.txt"]);
    assert_eq!(c.whereis(&["a.txt"]), ["httpnode", "mycluster"]);
    c.annex(&["get", "--from", "gw-httpnode", "a.txt"]);
    assert_eq!(
        std::fs::read(c.path().join("a.txt")).unwrap(),
        b"for the http node\n"
    );
    c.annex(&["drop", "--from", "gw-httpnode", "a.txt"]);
    assert!(!has(&w.httpnode, &k));
    eventually(20, "httpnode's branch records a.txt gone", || {
        !committed_locations(&w.httpnode, &k).contains(&w.httpnode.uuid().to_string())
    });
}

/// The http node refuses the gateway (no credentials for it): the client sees the
/// server's refusal through the gateway, and nothing is recorded anywhere.
#[test]
fn an_http_node_that_refuses_the_gateway() {
    let env = TestEnv::new(Transport::Shim);
    let w = world(&env, &[("a.txt", b"not welcome\n")], &["--authenv-http"]);
    let c = &w.client;
    let k = c.key_of("a.txt");
    let r = c.try_annex(&["copy", "--to", "gw-httpnode", "a.txt"]);
    assert!(!r.success(), "{r}");
    assert!(
        r.stderr.contains("authentication failed: 401 Unauthorized"),
        "the reason reaches the client: {r}"
    );
    assert!(!has(&w.httpnode, &k));
    assert_eq!(c.whereis(&["a.txt"]), ["client"]);
    assert!(!committed_locations(&w.gw, &k).contains(&w.httpnode.uuid().to_string()));
}
