//! `P2pNode` as a gateway uses it: reaching a node repository over ssh (the shim and the real
//! sshd) with `git-annex-shell` or `annexgate-shell` on the far side, built from the
//! gateway's git config exactly as git-annex builds its own ssh command (the argv is compared
//! with the one git-annex ran), then held to the node conformance suite.

use std::collections::HashMap;
use std::ffi::OsString;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annexgate::node::conformance::{self, Options};
use annexgate::node::p2p::{P2pEndpoint, P2pNode, P2pNodeConfig};
use annexgate::node::Node;
use annexgate::{Key, Uuid};

use crate::harness::{Repo, RepoKind, ShellImpl, Side, TestEnv, Transport};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// `git config --list` of a repository, as a lookup.
fn git_config(repo: &Repo<'_>) -> HashMap<String, String> {
    repo.git(&["config", "--list"])
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The environment the client side's commands get (PATH with the test's ssh first, HOME...).
fn client_env(env: &TestEnv) -> Vec<(OsString, OsString)> {
    let probe: Command = env.command(Side::Client, "true", env.root());
    probe
        .get_envs()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned())))
        .collect()
}

/// The endpoint of the gateway's remote `remote`, with `url` in place of its configured
/// url when given.
fn endpoint(
    env: &TestEnv,
    gw: &Repo<'_>,
    remote: &str,
    node_uuid: &Uuid,
    url: Option<&str>,
) -> P2pEndpoint {
    let config = git_config(gw);
    let vars: HashMap<String, String> = client_env(env)
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let url_key = format!("remote.{remote}.url");
    let lookup = |k: &str| match (k == url_key, url) {
        (true, Some(u)) => Some(u.to_string()),
        _ => config.get(k).cloned(),
    };
    let gw_uuid = Uuid::parse(gw.uuid()).unwrap();
    let mut ep = P2pEndpoint::for_git_remote(
        remote,
        &gw_uuid,
        node_uuid,
        gw.path(),
        &lookup,
        &|k: &str| vars.get(k).cloned(),
    )
    .expect("an ssh endpoint");
    let p = ep.process_mut().expect("a process endpoint");
    p.env_clear = true;
    p.env = client_env(env);
    ep
}

fn node_for(ep: P2pEndpoint, uuid: &Uuid, gw: &Repo<'_>) -> P2pNode {
    let mut cfg = P2pNodeConfig::new(uuid.clone(), "node", ep);
    cfg.bypass = vec![Uuid::parse(gw.uuid()).unwrap()];
    cfg.timeout = Duration::from_secs(30);
    P2pNode::new(cfg)
}

fn p2pstdio_invocations(env: &TestEnv) -> Vec<Vec<String>> {
    env.ssh_invocations()
        .into_iter()
        .filter(|a| a.iter().any(|w| w.contains("'p2pstdio'")))
        .collect()
}

/// Over the ssh shim with `shell` on the far side: our ssh argv is git-annex's, the node
/// sees what git-annex stored, and fresh copies of the node pass the conformance suite.
fn ssh_node_conforms(shell: ShellImpl) {
    let env = TestEnv::new(Transport::Shim);
    let gw = env.client_repo("gw");
    let node = env.server_repo("node", RepoKind::Bare);
    gw.add_ssh_remote("node", &node, shell);
    gw.add_files(&[("a.txt", b"stored by git-annex\n")]);
    gw.annex(&["copy", "--to", "node", "a.txt"]);
    let before = p2pstdio_invocations(&env);
    let theirs = before
        .last()
        .expect("git-annex ran p2pstdio over ssh")
        .clone();
    assert!(theirs.contains(&"-T".to_string()), "{theirs:?}");

    let node_uuid = Uuid::parse(node.uuid()).unwrap();
    let key = Key::from_str(&gw.key_of("a.txt")).unwrap();
    let rt = runtime();
    let p2p = node_for(
        endpoint(&env, &gw, "node", &node_uuid, None),
        &node_uuid,
        &gw,
    );
    rt.block_on(async {
        assert!(p2p.check_present(&key).await.unwrap(), "{shell:?}");
        let (data, _) = conformance::fetch(&p2p, &key, 0).await.unwrap().unwrap();
        assert_eq!(data, b"stored by git-annex\n");
    });
    assert_eq!(p2p.connections_opened(), 1);
    drop(p2p);
    let ours = p2pstdio_invocations(&env);
    assert_eq!(ours.len(), before.len() + 1, "one ssh connection of ours");
    assert_eq!(
        ours.last().unwrap(),
        &theirs,
        "our ssh command differs from git-annex's"
    );

    // Fresh nodes: copies of the node repository (same UUID), each at its own path.
    let copies = Mutex::new(0);
    let fresh = || {
        let mut n = copies.lock().unwrap();
        *n += 1;
        let dir = env.root().join(format!("copy{n}.git"));
        let st = Command::new("cp")
            .arg("-a")
            .arg(node.path())
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success());
        let url = format!("{}:{}", crate::harness::SSH_HOST, dir.display());
        let ep = endpoint(&env, &gw, "node", &node_uuid, Some(&url));
        Arc::new(node_for(ep, &node_uuid, &gw)) as Arc<dyn Node>
    };
    let report = rt.block_on(conformance::run(&fresh, &Options::default()));
    let report = match report.into_result() {
        Ok(r) => r,
        Err(e) => panic!("{shell:?} over ssh: {e}"),
    };
    assert_eq!(
        report.passed.len(),
        conformance::cases().len(),
        "{report:?}"
    );
}

#[test]
fn ssh_node_conforms_with_git_annex_shell() {
    ssh_node_conforms(ShellImpl::GitAnnexShell);
}

#[test]
fn ssh_node_conforms_with_annexgate_shell() {
    ssh_node_conforms(ShellImpl::AnnexgateShell);
}

/// The real OpenSSH client and server: a store, a read, a lock and a removal, and what
/// the node repository holds afterwards (as git-annex sees it).
#[test]
fn ssh_node_over_real_sshd() {
    let env = TestEnv::new(Transport::Sshd);
    let gw = env.client_repo("gw");
    let node = env.server_repo("node", RepoKind::Bare);
    gw.add_ssh_remote("node", &node, ShellImpl::AnnexgateShell);
    let node_uuid = Uuid::parse(node.uuid()).unwrap();
    let p2p = node_for(
        endpoint(&env, &gw, "node", &node_uuid, None),
        &node_uuid,
        &gw,
    );
    let data = conformance::test_data(2 * 1024 * 1024 + 3, 9);
    let key = conformance::key_for(&data);
    let rt = runtime();
    rt.block_on(async {
        conformance::store(&p2p, &key, &data).await.unwrap();
        let (got, _) = conformance::fetch(&p2p, &key, 1000).await.unwrap().unwrap();
        assert!(got == data[1000..], "read back other bytes");
        let lock = p2p.lock_content(&key).await.unwrap().expect("locked");
        lock.unlock().await.unwrap();
    });
    // git-annex on the node finds the content intact.
    let obj = node
        .find_object(&key.to_string())
        .expect("the object is in the node repository");
    assert_eq!(std::fs::read(&obj).unwrap(), data);
    let r = node.try_annex(&["fsck", "--key", &key.to_string()]);
    assert!(r.success(), "{r}");
    rt.block_on(async {
        assert!(p2p.remove(&key, None).await.unwrap().removed);
        assert!(!p2p.check_present(&key).await.unwrap());
    });
    assert!(node.find_object(&key.to_string()).is_none());
}
