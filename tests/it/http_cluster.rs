//! git-annex's cluster tutorial over p2phttp: a real git-annex client whose gateway remote
//! has an `annex+http` URL, served by `git annex p2phttp` (the reference) or by
//! annexgate-http, the gateway proxying a cluster of three local nodes (no preferred
//! content: every node wants everything; the gateway does not place by preferred content
//! yet). Copy, get, drop and move go through `gwt-mycluster`; local drops
//! lock node copies through the gateway over HTTP (lockcontent + keeplocked). Both runs
//! must give the same outcome.

use crate::cluster_scenarios::{gateway_with_cluster, SetupTool};
use crate::harness::{assert_same_outcome, shared_outcome, Outcome, Repo, TestEnv, Transport};
use crate::http::support::{Impl, Server};

fn files() -> Vec<(String, Vec<u8>)> {
    (1..=6)
        .map(|i| {
            (
                format!("f{i}.txt"),
                format!("http file number {i}\n").repeat(i * 7).into_bytes(),
            )
        })
        .collect()
}

/// The client: a repository with the gateway as remote `gwt` (git over its path, annex
/// traffic over `annex+http`).
fn client_of<'e>(env: &'e TestEnv, gw: &Repo<'_>, server: &Server) -> Repo<'e> {
    let client = env.client_repo("client");
    let fs = files();
    let refs: Vec<(&str, &[u8])> = fs.iter().map(|(n, c)| (n.as_str(), c.as_slice())).collect();
    client.add_files(&refs);
    client.git(&["remote", "add", "gwt", &gw.path().to_string_lossy()]);
    client.set_config("remote.gwt.annexurl", &server.annex_url());
    client.set_config("annex.security.allowed-ip-addresses", "127.0.0.1");
    client.annex(&["sync", "--no-content", "gwt"]);
    client.annex(&["wanted", "gwt", "nothing"]);
    client.annex(&["sync", "--no-content", "gwt"]);
    client
}

fn tutorial(which: Impl) -> Outcome {
    let env = TestEnv::new(Transport::Shim);
    let mut out = Outcome::default();
    let (gw, nodes) = gateway_with_cluster(&env, SetupTool::GitAnnex);
    let server = Server::start(&env, which, gw.path(), &["--wideopen"], &[]);
    let client = client_of(&env, &gw, &server);
    let fs = files();

    let r = client.try_annex(&["copy", "--to", "gwt-mycluster", "."]);
    out.exit("copy --to gwt-mycluster", &r);
    for (f, _) in &fs {
        let w = client.whereis(&[f]);
        assert!(w.contains(&"mycluster".to_string()), "{which:?} {f}: {w:?}");
        out.note(&format!("whereis {f} after copy"), w);
    }
    let on_nodes = |key: &str| -> Vec<String> {
        nodes
            .iter()
            .filter(|n| n.find_object(key).is_some())
            .map(|n| n.name().to_string())
            .collect()
    };
    for (f, _) in &fs {
        out.note(&format!("{f} on the nodes"), on_nodes(&client.key_of(f)));
        assert!(gw.find_object(&client.key_of(f)).is_none());
    }

    // A local drop must lock a node's copy through the gateway.
    let r = client.try_annex(&["drop", "f1.txt"]);
    out.exit("drop f1 (locks a node over http)", &r);
    if which == Impl::Ours {
        let log = server.log_text();
        assert!(
            log.contains("lockcontent") && log.contains(": released"),
            "no lock was taken and released over http:\n{log}"
        );
    }
    let r = client.try_annex(&["get", "--from", "gwt-mycluster", "f1.txt"]);
    out.exit("get f1 --from gwt-mycluster", &r);
    out.note(
        "f1 content after get",
        std::fs::read(client.path().join("f1.txt")).unwrap() == fs[0].1,
    );

    let r = client.try_annex(&["drop", "--from", "gwt-mycluster", "f2.txt"]);
    out.exit("drop f2 --from gwt-mycluster", &r);
    out.note("whereis f2 after drop --from", client.whereis(&["f2.txt"]));
    out.note("f2 on the nodes", on_nodes(&client.key_of("f2.txt")));

    client.add_files(&[("moved.txt", b"moving over http\n")]);
    let r = client.try_annex(&["move", "--to", "gwt-mycluster", "moved.txt"]);
    out.exit("move --to gwt-mycluster", &r);
    out.note("whereis moved after move", client.whereis(&["moved.txt"]));
    let r = client.try_annex(&["move", "--from", "gwt-mycluster", "moved.txt"]);
    out.exit("move --from gwt-mycluster", &r);
    out.note(
        "whereis moved after move back",
        client.whereis(&["moved.txt"]),
    );

    // numcopies 2: one node copy is not enough; with a second (copied to that node
    // directly through the gateway) the local drop locks both over http.
    for n in ["gwt-node1", "gwt-node2"] {
        let r = client.try_annex(&["drop", "--from", n, "f3.txt"]);
        out.exit(&format!("drop f3 --from {n}"), &r);
    }
    out.note("whereis f3 on one node", client.whereis(&["f3.txt"]));
    client.annex(&["numcopies", "2"]);
    let r = client.try_annex(&["drop", "f3.txt"]);
    out.exit("drop f3 with numcopies 2 and one node copy", &r);
    let r = client.try_annex(&["copy", "--to", "gwt-node1", "f3.txt"]);
    out.exit("copy f3 to a second node", &r);
    let r = client.try_annex(&["drop", "f3.txt"]);
    out.exit("drop f3 with two node copies", &r);
    out.note("whereis f3 at the end", client.whereis(&["f3.txt"]));
    out.note("f3 on the nodes", on_nodes(&client.key_of("f3.txt")));

    let (code, fsck) = client.fsck(&["--from", "gwt-mycluster", "--fast"]);
    out.note("fsck --from gwt-mycluster --fast", (code, fsck));
    drop(server);
    out
}

fn reference() -> Outcome {
    let out = shared_outcome("http-cluster/tutorial".into(), || tutorial(Impl::GitAnnex));
    eprintln!("cluster tutorial over git annex p2phttp:\n{out}");
    out
}

#[test]
fn tutorial_over_git_annex_p2phttp() {
    let out = reference();
    // The reference itself must be a working tutorial.
    for f in out.facts() {
        assert!(!f.starts_with("copy --to") || f.ends_with("Some(0)"), "{f}");
    }
}

#[test]
fn tutorial_over_annexgate_http() {
    let ours = tutorial(Impl::Ours);
    eprintln!("cluster tutorial over annexgate-http:\n{ours}");
    assert_same_outcome("cluster tutorial over p2phttp", &reference(), &ours);
}
