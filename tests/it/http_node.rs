//! `HttpNode` as a gateway uses it: a repository behind a p2phttp server (`annexgate-http`
//! or the real `git annex p2phttp`) on 127.0.0.1, held to the node conformance suite;
//! servers that speak older protocol versions; credentials from a real git credential
//! helper; and what git-annex itself finds in the node repositories afterwards.

use std::ffi::OsString;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use annexgate::node::conformance::{self, Options};
use annexgate::node::http::{
    CredentialHelper, HttpNode, HttpNodeConfig, HttpPool, HttpPoolOptions, P2pHttpUrl,
};
use annexgate::node::{Node, NodeError, PutStart, Validity};
use annexgate::{AssociatedFile, Key, Uuid};

use crate::harness::{Repo, RepoKind, Side, TestEnv, Transport};
use crate::http::support::{Impl, Server};

pub const GW: &str = "9a7e0000-0000-4000-8000-0000000000bb";

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A pool whose `git credential` runs see the test's client HOME (and nothing of this
/// machine's git config).
pub fn pool_for(env: &TestEnv, git_dir: Option<&std::path::Path>) -> HttpPool {
    let mut helper = CredentialHelper::new(git_dir.map(|p| p.to_path_buf()));
    helper.env = vec![
        (
            OsString::from("HOME"),
            env.home(Side::Client).as_os_str().to_owned(),
        ),
        (OsString::from("GIT_CONFIG_NOSYSTEM"), OsString::from("1")),
    ];
    HttpPool::new(HttpPoolOptions {
        credentials: helper,
        ..HttpPoolOptions::default()
    })
    .expect("an HTTP pool")
}

pub fn node_at(server: &Server, uuid: &str, pool: &HttpPool) -> HttpNode {
    let url = P2pHttpUrl::parse(&server.annex_url()).unwrap();
    let mut cfg = HttpNodeConfig::new(
        Uuid::parse(uuid).unwrap(),
        "httpnode",
        url,
        Uuid::parse(GW).unwrap(),
    );
    cfg.bypass = vec![Uuid::parse(GW).unwrap()];
    cfg.timeout = Duration::from_secs(30);
    HttpNode::new(cfg, pool.clone())
}

/// `count` empty bare repositories below `<root>/served`, for a `--directory` server.
fn served_repos<'e>(env: &'e TestEnv, count: usize) -> Vec<Repo<'e>> {
    (0..count)
        .map(|i| env.server_repo(&format!("served/n{i}"), RepoKind::Bare))
        .collect()
}

/// The conformance suite against `which`, each case on its own repository.
fn conforms(which: Impl, extra_args: &[&str], expect_version: u8) {
    let env = TestEnv::new(Transport::Shim);
    let repos = served_repos(&env, conformance::cases().len());
    let dir = env.root().join("served");
    let mut args = vec!["--wideopen", "--directory", dir.to_str().unwrap()];
    args.extend_from_slice(extra_args);
    let server = Server::start(&env, which, env.root(), &args, &[]);
    let pool = pool_for(&env, None);
    let next = AtomicUsize::new(0);
    let nodes = std::sync::Mutex::new(Vec::new());
    let fresh = || {
        let i = next.fetch_add(1, Ordering::SeqCst);
        let n = node_at(&server, repos[i].uuid(), &pool);
        nodes.lock().unwrap().push(n.clone());
        Arc::new(n) as Arc<dyn Node>
    };
    let rt = runtime();
    let mut skip = vec![("invalid_upload_leaves_nothing", INVALID_KEEPS_PARTIAL)];
    if expect_version == 0 {
        skip.push((
            "resume_after_abort",
            "v0 has no putoffset: uploads start at 0",
        ));
    }
    let options = Options {
        skip,
        ..Options::default()
    };
    let report = rt.block_on(conformance::run(&fresh, &options));
    let report = match report.into_result() {
        Ok(r) => r,
        Err(e) => panic!(
            "{which:?} {extra_args:?}: {e}\nserver log:\n{}",
            server.log_text()
        ),
    };
    assert_eq!(
        report.passed.len(),
        conformance::cases().len() - options.skip.len(),
        "{report:?}"
    );
    // Every node that had an answer beyond "no timestamps" found the server's version.
    let versions: Vec<Option<u8>> = nodes
        .lock()
        .unwrap()
        .iter()
        .map(HttpNode::version)
        .collect();
    assert!(
        versions
            .iter()
            .all(|v| v.is_none() || *v == Some(expect_version))
            && versions.iter().filter(|v| v.is_some()).count() >= versions.len() - 1,
        "{which:?} {extra_args:?}: {versions:?}"
    );
}

/// Why the strict form of the invalid-upload case cannot hold over p2phttp (checked in its
/// own form by [`invalid_upload_is_never_stored`]).
const INVALID_KEEPS_PARTIAL: &str = "p2phttp says INVALID with a body one byte short, which \
    servers keep as a partial upload for a resume";

#[test]
fn http_node_conforms_with_annexgate_http() {
    conforms(Impl::Ours, &[], 4);
}

#[test]
fn http_node_conforms_with_git_annex_p2phttp() {
    conforms(Impl::GitAnnex, &[], 4);
}

/// Servers with only older API versions (as git-annex before v4 answers: `400 bad
/// version` where older routes exist, `404` where none does): the node steps down and
/// still keeps the whole contract, emulating what the version lacks.
#[test]
fn http_node_conforms_with_older_servers() {
    for v in [3u8, 2, 1, 0] {
        conforms(Impl::Ours, &["--max-version", &v.to_string()], v);
    }
}

/// One repository over HTTP: the store is what git-annex finds in the node afterwards,
/// the gateway's UUID reaches the server as `clientuuid`, and idle connections are reused.
#[test]
fn http_node_stores_what_git_annex_finds() {
    let env = TestEnv::new(Transport::Shim);
    let node = env.server_repo("node", RepoKind::Bare);
    let server = Server::start(&env, Impl::GitAnnex, node.path(), &["--wideopen"], &[]);
    let pool = pool_for(&env, None);
    let http = node_at(&server, node.uuid(), &pool);
    let data = conformance::test_data(2 * 1024 * 1024 + 3, 9);
    let key = conformance::key_for(&data);
    let rt = runtime();
    rt.block_on(async {
        conformance::store(&http, &key, &data).await.unwrap();
        let (got, _) = conformance::fetch(&http, &key, 1000)
            .await
            .unwrap()
            .unwrap();
        assert!(got == data[1000..], "read back other bytes");
        let lock = http.lock_content(&key).await.unwrap().expect("locked");
        // While locked, git-annex in the node cannot drop it.
        let r = node.try_annex(&["drop", "--force", "--key", &key.to_string()]);
        assert!(!r.success(), "dropped a locked key: {r}");
        lock.unlock().await.unwrap();
    });
    let obj = node
        .find_object(&key.to_string())
        .expect("the object is in the node repository");
    assert_eq!(std::fs::read(&obj).unwrap(), data);
    let r = node.try_annex(&["fsck", "--key", &key.to_string()]);
    assert!(r.success(), "{r}");
    rt.block_on(async {
        assert!(http.remove(&key, None).await.unwrap().removed);
        assert!(!http.check_present(&key).await.unwrap());
        let missing = Key::from_str(&conformance::key_for(b"nothing").to_string()).unwrap();
        assert!(!http.check_present(&missing).await.unwrap());
    });
    assert!(node.find_object(&key.to_string()).is_none());
    assert_eq!(http.version(), Some(4));
}

/// Faults a real server produces: nobody listening, an unknown repository.
#[test]
fn http_node_unreachable_and_unknown() {
    let env = TestEnv::new(Transport::Shim);
    let node = env.server_repo("node", RepoKind::Bare);
    let server = Server::start(&env, Impl::Ours, node.path(), &["--wideopen"], &[]);
    let pool = pool_for(&env, None);
    let rt = runtime();
    let key = conformance::key_for(b"x");
    // A UUID the server does not serve: 404 at every version.
    let other = node_at(&server, "00000000-1111-4222-8333-444444444444", &pool);
    let e = rt.block_on(other.check_present(&key)).unwrap_err();
    assert!(
        matches!(&e, NodeError::Remote { message, .. } if message.starts_with("404 Not Found")),
        "{e}"
    );
    assert_eq!(other.requests_sent(), 5, "v4 down to v0");
    assert_eq!(other.version(), None);
    // Nobody listening.
    let port = server.port;
    drop(server);
    let http = node_at_port(port, node.uuid(), &pool);
    let e = rt.block_on(http.check_present(&key)).unwrap_err();
    assert!(matches!(e, NodeError::Unreachable { .. }), "{e}");
    assert!(e.retryable());
    assert!(e.to_string().contains("cannot connect"), "{e}");
}

fn node_at_port(port: u16, uuid: &str, pool: &HttpPool) -> HttpNode {
    let url = P2pHttpUrl::parse(&format!("annex+http://127.0.0.1:{port}/git-annex/")).unwrap();
    let cfg = HttpNodeConfig::new(
        Uuid::parse(uuid).unwrap(),
        "httpnode",
        url,
        Uuid::parse(GW).unwrap(),
    );
    HttpNode::new(cfg, pool.clone())
}

/// An upload marked invalid goes one byte short (git-annex's signal): neither server
/// stores it; both keep the bytes as a partial upload, so the next upload resumes there,
/// fails verification (which discards the partial), and the one after succeeds.
#[test]
fn invalid_upload_is_never_stored() {
    for which in [Impl::Ours, Impl::GitAnnex] {
        let env = TestEnv::new(Transport::Shim);
        let node = env.server_repo("node", RepoKind::Bare);
        let server = Server::start(&env, which, node.path(), &["--wideopen"], &[]);
        let pool = pool_for(&env, None);
        let http = node_at(&server, node.uuid(), &pool);
        let data = conformance::test_data(20_000, 5);
        let key = conformance::key_for(&data);
        let mut wrong = data.clone();
        wrong[12_345] ^= 0x55;
        let rt = runtime();
        rt.block_on(async {
            let r = conformance::store_chunked(&http, &key, &wrong, Validity::Invalid, 7000).await;
            assert!(
                !r.is_ok_and(|s| s.stored),
                "{which:?}: stored invalid bytes"
            );
            assert!(!http.check_present(&key).await.unwrap());
            assert!(conformance::fetch(&http, &key, 0).await.unwrap().is_none());
            let mut attempts = Vec::new();
            for _ in 0..3 {
                let offset = match http.put(&key, &AssociatedFile::none()).await.unwrap() {
                    PutStart::Accept(s) => {
                        let o = s.offset();
                        s.abort().await;
                        o
                    }
                    PutStart::AlreadyHave { .. } => break,
                };
                let r = conformance::store_chunked(&http, &key, &data, Validity::Valid, 7000).await;
                attempts.push((offset, r.map(|s| s.stored)));
            }
            assert_eq!(
                attempts.first().map(|a| a.0),
                Some(19_999),
                "{which:?}: {attempts:?}"
            );
            assert!(
                attempts.iter().any(|a| a.1 == Ok(true)),
                "{which:?}: never stored: {attempts:?}"
            );
            let (got, _) = conformance::fetch(&http, &key, 0).await.unwrap().unwrap();
            assert!(got == data, "{which:?}: other bytes stored");
        });
        let r = node.try_annex(&["fsck", "--key", &key.to_string()]);
        assert!(r.success(), "{which:?}: {r}");
    }
}

/// A credential store file for the client side's git, as `credential.helper` of `repo`.
fn use_credential_store(repo: &Repo<'_>, lines: &[String]) -> std::path::PathBuf {
    let file = repo.git_dir().join("test-credentials");
    std::fs::write(&file, lines.concat()).unwrap();
    repo.set_config(
        "credential.helper",
        &format!("store --file={}", file.display()),
    );
    file
}

/// Credentials from a real `git credential` helper (`store`) in the gateway repository,
/// against annexgate-http with users from its environment: asked for on a 401 for the
/// annex URL (or the git URL on the same host), approved when they work, rejected when
/// the server answers 401 to them, kept when it answers 403 (a user without the right).
#[test]
fn credentials_from_git_credential_helpers() {
    let env = TestEnv::new(Transport::Shim);
    let node = env.server_repo("node", RepoKind::Bare);
    let gw = env.client_repo("gw");
    let users = [
        ("GIT_ANNEX_P2PHTTP_PASSWORD_alice", "secret"),
        ("GIT_ANNEX_P2PHTTP_PASSWORD_bob", "bobpw"),
        ("GIT_ANNEX_P2PHTTP_PERMISSIONS_bob", "readonly"),
    ];
    let rt = runtime();
    let data = conformance::test_data(100_000, 3);
    let key = conformance::key_for(&data);

    // Only authenticated users.
    let server = Server::start(&env, Impl::Ours, node.path(), &["--authenv-http"], &users);
    let port = server.port;
    let annex_line =
        |u: &str, p: &str| format!("annex+http://{u}:{p}@127.0.0.1%3a{port}/git-annex\n");
    // (a) Nothing stored: refused, with the reason.
    use_credential_store(&gw, &[]);
    let n = node_at(&server, node.uuid(), &pool_for(&env, Some(&gw.git_dir())));
    let e = rt.block_on(n.check_present(&key)).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, NodeError::Denied(_)), "{text}");
    assert!(
        text.contains("authentication failed: 401 Unauthorized")
            && text.contains(&format!(
                "no credentials for annex+http://127.0.0.1:{port}/git-annex/"
            )),
        "{text}"
    );
    // (b) The stored credential for the annex URL is used and approved.
    let file = use_credential_store(&gw, &[annex_line("alice", "secret")]);
    let pool = pool_for(&env, Some(&gw.git_dir()));
    let n = node_at(&server, node.uuid(), &pool);
    rt.block_on(async {
        conformance::store(&n, &key, &data).await.unwrap();
        let (got, _) = conformance::fetch(&n, &key, 0).await.unwrap().unwrap();
        assert!(got == data);
        let lock = n.lock_content(&key).await.unwrap().expect("locked");
        lock.unlock().await.unwrap();
    });
    assert!(node.find_object(&key.to_string()).is_some());
    let sent = n.requests_sent();
    // Another node of the same gateway reuses the credential without a 401 first.
    let n2 = node_at(&server, node.uuid(), &pool);
    assert!(rt.block_on(n2.check_present(&key)).unwrap());
    assert_eq!(n2.requests_sent(), 1);
    // putoffset (401), putoffset with the credential, GET, lockcontent (the put and
    // keeplocked bodies stream; they are not counted).
    assert_eq!(sent, 4);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        annex_line("alice", "secret"),
        "approved and kept"
    );
    // (c) A wrong password: the server answers 401 again, git's store forgets it.
    use_credential_store(&gw, &[annex_line("alice", "wrong")]);
    let n = node_at(&server, node.uuid(), &pool_for(&env, Some(&gw.git_dir())));
    let e = rt.block_on(n.check_present(&key)).unwrap_err();
    assert!(
        e.to_string()
            .contains("authentication failed: 401 Unauthorized"),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "", "rejected");
    // (d) The git URL on the same host decides where credentials are asked for.
    use_credential_store(&gw, &[format!("http://alice:secret@127.0.0.1%3a{port}\n")]);
    let mut cfg = node_at(&server, node.uuid(), &pool).config().clone();
    cfg.git_url = Some(format!("http://127.0.0.1:{port}/node.git"));
    let n = HttpNode::new(cfg, pool_for(&env, Some(&gw.git_dir())));
    assert_eq!(
        n.credential_url(),
        format!("http://127.0.0.1:{port}/node.git")
    );
    assert!(rt.block_on(n.check_present(&key)).unwrap());
    drop(server);

    // Reading needs no credentials; bob may read but not remove.
    let server = Server::start(
        &env,
        Impl::Ours,
        node.path(),
        &["--authenv-http", "--unauth-readonly"],
        &users,
    );
    let port = server.port;
    let bob = format!("annex+http://bob:bobpw@127.0.0.1%3a{port}/git-annex\n");
    let file = use_credential_store(&gw, std::slice::from_ref(&bob));
    let n = node_at(&server, node.uuid(), &pool_for(&env, Some(&gw.git_dir())));
    rt.block_on(async {
        assert!(n.check_present(&key).await.unwrap());
        assert_eq!(n.requests_sent(), 1, "no credentials needed to read");
        let r = n.remove(&key, None).await;
        let e = r.expect_err("bob may not remove");
        assert!(
            matches!(&e, NodeError::Denied(t) if t.contains("authentication failed: 403 Forbidden")),
            "{e}"
        );
    });
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        bob,
        "a 403 does not make git forget a credential"
    );
    assert!(node.find_object(&key.to_string()).is_some());
}

/// A server that answers every request `404` and records each request line's target.
struct Recorder {
    port: u16,
    targets: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Recorder {
    fn start() -> Recorder {
        use std::io::{BufRead, BufReader, Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let targets: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let t = targets.clone();
        std::thread::spawn(move || {
            for sock in l.incoming() {
                let Ok(sock) = sock else { return };
                let t = t.clone();
                std::thread::spawn(move || {
                    let mut w = sock.try_clone().unwrap();
                    let mut r = BufReader::new(sock);
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut len = 0usize;
                        loop {
                            let mut h = String::new();
                            if r.read_line(&mut h).unwrap_or(0) == 0 {
                                return;
                            }
                            if h.trim().is_empty() {
                                break;
                            }
                            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; len];
                        let _ = r.read_exact(&mut body);
                        if let Some(target) = line.split_whitespace().nth(1) {
                            t.lock().unwrap().push(target.to_string());
                        }
                        if w.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Recorder { port, targets }
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.targets.lock().unwrap())
    }
}

/// What the real git-annex client requests for an annex URL, compared with what an
/// HttpNode requests for the same URL: the base path (`/git-annex` dropped, any other
/// prefix kept; one deliberate difference for a path of just `/`), the query, and the
/// version steps on 404 (v4 down to v0).
#[test]
fn request_targets_match_git_annex() {
    let env = TestEnv::new(Transport::Shim);
    let srv = env.server_repo("srv", RepoKind::Bare);
    let client = env.client_repo("client");
    client.add_files(&[("f.txt", b"probe\n")]);
    client.git(&["remote", "add", "origin", &srv.path().to_string_lossy()]);
    client.set_config("annex.security.allowed-ip-addresses", "127.0.0.1");
    let key = Key::from_str(&client.key_of("f.txt")).unwrap();
    let rec = Recorder::start();
    let pool = pool_for(&env, None);
    let rt = runtime();
    let p = rec.port;
    for url in [
        format!("annex+http://127.0.0.1:{p}/git-annex/"),
        format!("annex+http://127.0.0.1:{p}/"),
        format!("annex+http://127.0.0.1:{p}"),
        format!("annex+http://127.0.0.1:{p}/p2p/git-annex/"),
    ] {
        client.set_config("remote.origin.annexurl", &url);
        let r = client.try_annex(&["copy", "--to", "origin", "f.txt"]);
        assert!(!r.success(), "{url}: {r}");
        let theirs = rec.take();
        let cfg = HttpNodeConfig::new(
            Uuid::parse(srv.uuid()).unwrap(),
            "origin",
            P2pHttpUrl::parse(&url).unwrap(),
            Uuid::parse(client.uuid()).unwrap(),
        );
        let n = HttpNode::new(cfg, pool.clone());
        let e = rt.block_on(n.check_present(&key)).unwrap_err();
        assert!(e.to_string().contains("404 Not Found"), "{e}");
        let ours = rec.take();
        assert_eq!(ours.len(), 5, "{ours:?}");
        if url.ends_with(&format!(":{p}/")) {
            // git-annex keeps the lone `/` of the path and sends `//git-annex/…`, which
            // its own server answers 404 (checked by hand with `git annex p2phttp`); we
            // send what the URL means.
            let doubled: Vec<String> = ours.iter().map(|t| format!("/{t}")).collect();
            assert_eq!(theirs, doubled, "{url}");
        } else {
            assert_eq!(theirs, ours, "{url}");
        }
    }
}

/// HTTPS (rustls on both sides): annexgate-http with a certificate from a test CA and
/// `--authenv` (users over HTTPS only); the node trusts the CA, authenticates with the
/// stored credential and works; a pool without the CA cannot connect, and says why.
#[test]
fn https_with_a_private_ca() {
    let env = TestEnv::new(Transport::Shim);
    let node = env.server_repo("node", RepoKind::Bare);
    let gw = env.client_repo("gw");
    let pki = env.root().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    env.run(env.command(Side::Client, "sh", &pki).args([
        "-ec",
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
         -subj /CN=annexgate-test-ca 2>/dev/null
         openssl req -newkey rsa:2048 -nodes -keyout leaf.key -out leaf.csr -subj /CN=localhost 2>/dev/null
         printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > ext
         openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem \
         -days 2 -extfile ext 2>/dev/null",
    ]));
    let (cert, key_file) = (pki.join("leaf.pem"), pki.join("leaf.key"));
    let server = Server::start(
        &env,
        Impl::Ours,
        node.path(),
        &[
            "--authenv",
            "--certfile",
            cert.to_str().unwrap(),
            "--privatekeyfile",
            key_file.to_str().unwrap(),
        ],
        &[("GIT_ANNEX_P2PHTTP_PASSWORD_alice", "apw")],
    );
    let port = server.port;
    let url = format!("annex+https://127.0.0.1:{port}/git-annex/");
    use_credential_store(
        &gw,
        &[format!(
            "annex+https://alice:apw@127.0.0.1%3a{port}/git-annex\n"
        )],
    );
    let make = |roots: Vec<Vec<u8>>| {
        let mut helper = CredentialHelper::new(Some(gw.git_dir()));
        helper.env = vec![
            (
                OsString::from("HOME"),
                env.home(Side::Client).as_os_str().to_owned(),
            ),
            (OsString::from("GIT_CONFIG_NOSYSTEM"), OsString::from("1")),
        ];
        let pool = HttpPool::new(HttpPoolOptions {
            credentials: helper,
            extra_roots_pem: roots,
            ..HttpPoolOptions::default()
        })
        .unwrap();
        let cfg = HttpNodeConfig::new(
            Uuid::parse(node.uuid()).unwrap(),
            "tlsnode",
            P2pHttpUrl::parse(&url).unwrap(),
            Uuid::parse(GW).unwrap(),
        );
        HttpNode::new(cfg, pool)
    };
    let rt = runtime();
    let data = conformance::test_data(300_000, 8);
    let key = conformance::key_for(&data);
    let n = make(vec![std::fs::read(pki.join("ca.pem")).unwrap()]);
    rt.block_on(async {
        conformance::store(&n, &key, &data).await.unwrap();
        let (got, v) = conformance::fetch(&n, &key, 7).await.unwrap().unwrap();
        assert!(got == data[7..] && v == Validity::Valid);
        let lock = n.lock_content(&key).await.unwrap().expect("locked");
        lock.unlock().await.unwrap();
        assert!(n.remove(&key, None).await.unwrap().removed);
    });
    let untrusting = make(Vec::new());
    let e = rt.block_on(untrusting.check_present(&key)).unwrap_err();
    assert!(matches!(e, NodeError::Unreachable { .. }), "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
}

/// A lock held across several keep-alive lines keeps the content on both servers, and
/// is released by the unlock line.
#[test]
fn locks_survive_keepalive_lines() {
    for which in [Impl::Ours, Impl::GitAnnex] {
        let env = TestEnv::new(Transport::Shim);
        let node = env.server_repo("node", RepoKind::Bare);
        let server = Server::start(&env, which, node.path(), &["--wideopen"], &[]);
        let pool = pool_for(&env, None);
        let mut cfg = node_at(&server, node.uuid(), &pool).config().clone();
        cfg.keepalive = Duration::from_millis(150);
        let http = HttpNode::new(cfg, pool.clone());
        let data = conformance::test_data(5000, 12);
        let key = conformance::key_for(&data);
        let rt = runtime();
        rt.block_on(async {
            conformance::store(&http, &key, &data).await.unwrap();
            let lock = http.lock_content(&key).await.unwrap().expect("locked");
            tokio::time::sleep(Duration::from_millis(700)).await;
            let other = node_at(&server, node.uuid(), &pool);
            if let Ok(r) = other.remove(&key, None).await {
                assert!(!r.removed, "{which:?}: removed while locked");
            }
            assert!(other.check_present(&key).await.unwrap(), "{which:?}");
            lock.unlock().await.unwrap();
            let mut removed = false;
            for _ in 0..50 {
                if other.remove(&key, None).await.is_ok_and(|r| r.removed) {
                    removed = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(removed, "{which:?}: still locked after unlock");
        });
    }
}
