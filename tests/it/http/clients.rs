//! Real git-annex clients using annexgate-http as an `annex+http` remote: copy, get, drop,
//! move, a local drop that locks the server's copy, credentials (401/403 and what the
//! client shows), read-only and append-only access, an interrupted upload resumed, serving
//! a directory of repositories, and HTTPS.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use super::support::{
    clone_client, committed_locations, eventually, point_remote_at, request, store_credentials,
    Impl, Server,
};
use crate::harness::{pseudo_random, Repo, RepoKind, Side, TestEnv, Transport};

const C: &str = "11111111-2222-3333-4444-555555555555";

/// A server repository with one annexed file, and a client clone pointed at `server`.
fn setup(env: &TestEnv) -> (Repo<'_>, Repo<'_>) {
    let srv = env.server_repo("srv", RepoKind::NonBare);
    srv.add_files(&[("a.txt", b"content of a\n")]);
    let client = clone_client(env, &srv, "client");
    (srv, client)
}

#[test]
fn copy_get_drop_move() {
    let env = TestEnv::new(Transport::Shim);
    let (srv, client) = setup(&env);
    let server = Server::start(&env, Impl::Ours, srv.path(), &["--wideopen"], &[]);
    point_remote_at(&client, "origin", &server);

    client.annex(&["get", "--from", "origin", "a.txt"]);
    assert_eq!(
        std::fs::read(client.path().join("a.txt")).unwrap(),
        b"content of a\n"
    );

    let big = pseudo_random(3 << 20, 7);
    client.add_files(&[("b.bin", &big)]);
    let kb = client.key_of("b.bin");
    client.annex(&["copy", "--to", "origin", "b.bin"]);
    assert_eq!(srv.object_content(&kb).as_deref(), Some(&big[..]));
    // The server commits the new location to its git-annex branch while still running.
    eventually(20, "the server's git-annex branch records b.bin", || {
        committed_locations(&srv, &kb).contains(&srv.uuid().to_string())
    });
    assert_eq!(client.whereis(&["b.bin"]), ["client", "srv"]);

    client.annex(&["drop", "--from", "origin", "b.bin"]);
    assert!(srv.find_object(&kb).is_none());
    eventually(
        20,
        "the server's git-annex branch records b.bin gone",
        || !committed_locations(&srv, &kb).contains(&srv.uuid().to_string()),
    );

    client.annex(&["move", "--to", "origin", "b.bin"]);
    assert!(srv.find_object(&kb).is_some());
    assert_eq!(client.whereis(&["b.bin"]), ["srv"]);
    client.annex(&["move", "--from", "origin", "b.bin"]);
    assert!(srv.find_object(&kb).is_none());
    assert_eq!(std::fs::read(client.path().join("b.bin")).unwrap(), big);
    assert_eq!(client.whereis(&["b.bin"]), ["client"]);

    let log = server.log_text();
    for what in ["GET key", "POST put", "POST remove", "POST checkpresent"] {
        assert!(
            log.contains(what),
            "no {what} request reached the server:\n{log}"
        );
    }
    assert_eq!(server.stop(), Some(0), "a clean exit on SIGTERM");
}

#[test]
fn local_drop_locks_the_servers_copy() {
    let env = TestEnv::new(Transport::Shim);
    let (srv, client) = setup(&env);
    let server = Server::start(&env, Impl::Ours, srv.path(), &["--wideopen"], &[]);
    point_remote_at(&client, "origin", &server);
    client.annex(&["get", "a.txt"]);
    let ka = client.key_of("a.txt");
    // numcopies 1: dropping the local copy needs the server's copy locked meanwhile.
    client.annex(&["drop", "a.txt"]);
    assert!(client.find_object(&ka).is_none());
    let log = server.log_text();
    assert!(log.contains("POST lockcontent"), "{log}");
    assert!(log.contains("POST keeplocked"), "{log}");
    // The lock was released: the server's copy can be removed now.
    eventually(20, "the lock to be released", || {
        let r = request(
            server.addr(),
            "POST",
            &format!(
                "/git-annex/{}/v4/remove?key={ka}&clientuuid={C}",
                srv.uuid()
            ),
            &[],
            None,
        );
        r.json()["removed"] == true
    });
}

#[test]
fn credentials_401_and_403() {
    let env = TestEnv::new(Transport::Shim);
    let (srv, client) = setup(&env);
    let users = [
        ("GIT_ANNEX_P2PHTTP_PASSWORD_alice", "apw"),
        ("GIT_ANNEX_P2PHTTP_PASSWORD_bob", "bpw"),
        ("GIT_ANNEX_P2PHTTP_PERMISSIONS_bob", "readonly"),
    ];
    let server = Server::start(
        &env,
        Impl::Ours,
        srv.path(),
        &["--authenv-http", "--unauth-readonly"],
        &users,
    );
    point_remote_at(&client, "origin", &server);
    client.add_files(&[("c.txt", b"from the client\n")]);
    // Unauthenticated: reading works, writing asks for credentials (none to be had).
    client.annex(&["get", "--from", "origin", "a.txt"]);
    let r = client
        .try_annex(&["copy", "--to", "origin", "c.txt"])
        .failed();
    assert!(
        r.stderr.contains("Username") || r.stderr.contains("401"),
        "the client should say it needs credentials:\n{r}"
    );
    // A read-only user is refused, and the client says so.
    store_credentials(&client, &server, "bob", "bpw");
    let r = client
        .try_annex(&["copy", "--to", "origin", "c.txt"])
        .failed();
    assert!(r.stderr.contains("403 Forbidden"), "{r}");
    // A wrong password is refused too.
    store_credentials(&client, &server, "alice", "wrong");
    let r = client
        .try_annex(&["copy", "--to", "origin", "c.txt"])
        .failed();
    assert!(r.stderr.contains("403 Forbidden"), "{r}");
    // The right one works.
    store_credentials(&client, &server, "alice", "apw");
    client.annex(&["copy", "--to", "origin", "c.txt"]);
    assert!(srv.find_object(&client.key_of("c.txt")).is_some());
}

#[test]
fn credentials_without_unauthenticated_access() {
    let env = TestEnv::new(Transport::Shim);
    let (srv, client) = setup(&env);
    let users = [("GIT_ANNEX_P2PHTTP_PASSWORD_alice", "apw")];
    let server = Server::start(&env, Impl::Ours, srv.path(), &["--authenv-http"], &users);
    point_remote_at(&client, "origin", &server);
    // Every request needs a user; a wrong password gets 401 so the client may retry.
    store_credentials(&client, &server, "alice", "nope");
    let r = client
        .try_annex(&["drop", "--from", "origin", "a.txt", "--force"])
        .failed();
    assert!(r.stderr.contains("401 Unauthorized"), "{r}");
    store_credentials(&client, &server, "alice", "apw");
    client.annex(&["get", "--from", "origin", "a.txt"]);
}

#[test]
fn readonly_and_appendonly_refuse_what_they_must() {
    let env = TestEnv::new(Transport::Shim);
    let (srv, client) = setup(&env);
    client.add_files(&[("d.txt", b"new from client\n")]);
    let kd = client.key_of("d.txt");
    {
        let server = Server::start(&env, Impl::Ours, srv.path(), &["--unauth-readonly"], &[]);
        point_remote_at(&client, "origin", &server);
        client.annex(&["get", "--from", "origin", "a.txt"]);
        let r = client
            .try_annex(&["copy", "--to", "origin", "d.txt"])
            .failed();
        assert!(r.stderr.contains("403 Forbidden"), "{r}");
        assert!(srv.find_object(&kd).is_none());
        let r = client
            .try_annex(&["drop", "--from", "origin", "a.txt", "--force"])
            .failed();
        assert!(r.stderr.contains("403 Forbidden"), "{r}");
        assert!(srv.find_object(&srv.key_of("a.txt")).is_some());
    }
    {
        let server = Server::start(&env, Impl::Ours, srv.path(), &["--unauth-appendonly"], &[]);
        point_remote_at(&client, "origin", &server);
        client.annex(&["copy", "--to", "origin", "d.txt"]);
        assert!(srv.find_object(&kd).is_some());
        let r = client
            .try_annex(&["drop", "--from", "origin", "d.txt", "--force"])
            .failed();
        assert!(r.stderr.contains("403 Forbidden"), "{r}");
        assert!(srv.find_object(&kd).is_some());
    }
}

#[test]
fn interrupted_upload_resumes_with_putoffset() {
    let env = TestEnv::new(Transport::Shim);
    let (srv, client) = setup(&env);
    let server = Server::start(&env, Impl::Ours, srv.path(), &["--wideopen"], &[]);
    point_remote_at(&client, "origin", &server);
    let data = pseudo_random(4 << 20, 11);
    client.add_files(&[("big.bin", &data)]);
    let key = client.key_of("big.bin");
    // An upload that breaks off after 1 MiB: the connection just closes.
    let sent = 1 << 20;
    {
        let mut s = TcpStream::connect(server.addr()).unwrap();
        let head = format!(
            "POST /git-annex/{}/v4/put?key={key}&clientuuid={C} HTTP/1.1\r\nHost: x\r\n\
             X-git-annex-data-length: {}\r\nContent-Length: {}\r\n\r\n",
            srv.uuid(),
            data.len(),
            data.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&data[..sent]).unwrap();
        s.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    let tmp = srv.tmp_object(&key);
    // Until the server notices the client is gone the upload is in progress (its key
    // busy); then the partial data stays and putoffset reports it.
    eventually(20, "the partial upload to be kept", || {
        let r = request(
            server.addr(),
            "POST",
            &format!(
                "/git-annex/{}/v4/putoffset?key={key}&clientuuid={C}",
                srv.uuid()
            ),
            &[],
            None,
        );
        r.text() == format!("{{\"offset\":{sent}}}")
    });
    assert_eq!(std::fs::metadata(&tmp).unwrap().len(), sent as u64);
    // git-annex asks for the offset and sends only the rest.
    client.annex(&["copy", "--to", "origin", "big.bin"]);
    assert_eq!(srv.object_content(&key).as_deref(), Some(&data[..]));
    let log = server.log_text();
    assert!(
        log.contains(&format!(
            "the node wants data from {sent}, the client sends from {sent}"
        )),
        "the resumed upload should start at {sent}:\n{log}"
    );
}

/// `git init` + `git annex init` a repository at `rel` below the test's root.
fn repo_at<'e>(env: &'e TestEnv, rel: &str, name: &str) -> Repo<'e> {
    let path = env.root().join(rel);
    std::fs::create_dir_all(&path).unwrap();
    env.run(env.command(Side::Server, "git", &path).args(["init", "-q"]));
    let r = Repo::open(env, Side::Server, &path, name);
    r.annex(&["init", name]);
    Repo::open(env, Side::Server, &path, name)
}

#[test]
fn directory_serves_several_repositories() {
    let env = TestEnv::new(Transport::Shim);
    let top = env.root().join("served");
    let one = repo_at(&env, "served/one", "one");
    let two = repo_at(&env, "served/group/two", "two");
    one.add_files(&[("x.txt", b"in one\n")]);
    two.add_files(&[("y.txt", b"in two\n")]);
    let server = Server::start(
        &env,
        Impl::Ours,
        env.root(),
        &["--wideopen", "--directory", top.to_str().unwrap()],
        &[],
    );
    let c1 = clone_client(&env, &one, "c1");
    let c2 = clone_client(&env, &two, "c2");
    point_remote_at(&c1, "origin", &server);
    point_remote_at(&c2, "origin", &server);
    c1.annex(&["get", "--from", "origin", "x.txt"]);
    c2.annex(&["get", "--from", "origin", "y.txt"]);
    c2.add_files(&[("z.txt", b"to two\n")]);
    c2.annex(&["copy", "--to", "origin", "z.txt"]);
    assert!(two.find_object(&c2.key_of("z.txt")).is_some());
    assert!(one.find_object(&c2.key_of("z.txt")).is_none());
    // A repository made after the server started is found when first asked for.
    let three = repo_at(&env, "served/three", "three");
    three.add_files(&[("w.txt", b"in three\n")]);
    let k = three.key_of("w.txt");
    let r = request(
        server.addr(),
        "GET",
        &format!("/git-annex/{}/key/{k}", three.uuid()),
        &[],
        None,
    );
    assert_eq!((r.status, r.body.as_slice()), (200, &b"in three\n"[..]));
    let r = request(
        server.addr(),
        "GET",
        &format!(
            "/git-annex/{}/key/{k}",
            "00000000-aaaa-bbbb-cccc-000000000000"
        ),
        &[],
        None,
    );
    assert_eq!(r.status, 404);
    // A repository deleted from the directory is no longer served.
    std::fs::remove_dir_all(three.path()).unwrap();
    let r = request(
        server.addr(),
        "GET",
        &format!("/git-annex/{}/key/{k}", three.uuid()),
        &[],
        None,
    );
    assert_eq!(r.status, 404);
    c1.annex(&["get", "--from", "origin", "x.txt"]);
}

#[test]
fn https_with_rustls() {
    let env = TestEnv::new(Transport::Shim);
    let (srv, _client) = setup(&env);
    let pki = env.root().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    let sh = |script: &str| {
        env.run(env.command(Side::Client, "sh", &pki).args(["-ec", script]));
    };
    // A CA and a server certificate it signed (openssl CLI).
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
        -subj /CN=annexgate-test-ca 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout leaf.key -out leaf.csr -subj /CN=localhost 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > ext
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem \
        -days 2 -extfile ext 2>/dev/null");
    let users = [("GIT_ANNEX_P2PHTTP_PASSWORD_alice", "apw")];
    let cert = pki.join("leaf.pem");
    let key = pki.join("leaf.key");
    let server = Server::start(
        &env,
        Impl::Ours,
        srv.path(),
        &[
            "--authenv",
            "--unauth-readonly",
            "--certfile",
            cert.to_str().unwrap(),
            "--privatekeyfile",
            key.to_str().unwrap(),
        ],
        &users,
    );
    let ka = srv.key_of("a.txt");
    let curl = |extra: &[&str], target: &str| -> (String, String) {
        let mut c = env.command(Side::Client, "curl", &pki);
        c.args(["-s", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
            .arg(pki.join("ca.pem"))
            .args(extra)
            .arg(format!("https://127.0.0.1:{}{target}", server.port));
        let out = env.run(&mut c).stdout;
        let (body, code) = out.rsplit_once('\n').unwrap();
        (code.to_string(), body.to_string())
    };
    let u = srv.uuid();
    assert_eq!(
        curl(&[], &format!("/git-annex/{u}/key/{ka}")),
        ("200".into(), "content of a\n".into())
    );
    let remove = format!("/git-annex/{u}/v4/remove?key={ka}&clientuuid={C}");
    assert_eq!(curl(&["-X", "POST"], &remove).0, "401");
    assert_eq!(curl(&["-X", "POST", "-u", "alice:bad"], &remove).0, "403");
    assert_eq!(
        curl(&["-X", "POST", "-u", "alice:apw"], &remove),
        ("200".into(), "{\"plusuuids\":[],\"removed\":true}".into())
    );
    // Plain HTTP on a TLS port is not served.
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut buf);
    assert!(
        !buf.starts_with(b"HTTP/1.1 "),
        "answered plain HTTP over TLS port"
    );
}

/// nginx, run by the test in the foreground, proxying a loopback port to a unix socket.
struct Nginx {
    child: std::process::Child,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_nginx(env: &TestEnv, socket: &std::path::Path) -> Nginx {
    let nginx = std::path::Path::new("/usr/sbin/nginx");
    assert!(
        nginx.is_file(),
        "nginx is missing at /usr/sbin/nginx: run scripts/setup (it installs nginx-light)"
    );
    let dir = env.root().join("nginx");
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/tmp;\n\
               proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n\
               scgi_temp_path {d}/tmp;\n\
               server {{\n    listen 127.0.0.1:{port};\n    location / {{\n\
                 proxy_pass http://unix:{sock}:;\n      proxy_http_version 1.1;\n\
                 proxy_set_header Connection \"\";\n      proxy_request_buffering off;\n\
                 proxy_buffering off;\n      client_max_body_size 0;\n\
                 proxy_read_timeout 1200s;\n      proxy_send_timeout 1200s;\n    }}\n  }}\n}}\n",
            sock = socket.display()
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = std::process::Command::new(nginx)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .spawn()
            .expect("starting nginx");
        let mut n = Nginx { child, port };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = n.child.try_wait() {
                break;
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return n;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = n.child.kill();
        eprintln!(
            "nginx did not start: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
    }
    panic!("nginx did not start");
}

#[test]
fn unix_socket_behind_nginx() {
    let env = TestEnv::new(Transport::Shim);
    let (srv, client) = setup(&env);
    let socket = env.root().join("p2phttp.sock");
    // Our server on a unix socket (the harness still gives it a port; --socket wins).
    let mut c = env.command(Side::Server, super::support::annexgate_http(), srv.path());
    c.args(["--wideopen", "--socket"]).arg(&socket);
    c.env("ANNEXGATE_LOG", "debug");
    let log = env.root().join("socket-server.log");
    let out = std::fs::File::create(&log).unwrap();
    c.stdout(out.try_clone().unwrap()).stderr(out);
    let mut server = c.spawn().expect("starting annexgate-http");
    super::support::eventually(30, "the unix socket", || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "only the owner may use the socket");
    let nginx = start_nginx(&env, &socket);
    client.set_config(
        "remote.origin.annexurl",
        &format!("annex+http://127.0.0.1:{}/git-annex/", nginx.port),
    );
    client.set_config("annex.security.allowed-ip-addresses", "127.0.0.1");
    client.annex(&["get", "--from", "origin", "a.txt"]);
    let data = pseudo_random(2 << 20, 21);
    client.add_files(&[("e.bin", &data)]);
    client.annex(&["copy", "--to", "origin", "e.bin"]);
    assert_eq!(
        srv.object_content(&client.key_of("e.bin")).as_deref(),
        Some(&data[..])
    );
    // A local drop locks the server's copy through the proxy (streaming keeplocked).
    client.annex(&["drop", "a.txt"]);
    client.annex(&["drop", "--from", "origin", "e.bin"]);
    assert!(srv.find_object(&client.key_of("e.bin")).is_none());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("POST keeplocked"), "{text}");
    drop(nginx);
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(server.id() as i32, libc::SIGTERM);
    }
    let st = server.wait().unwrap();
    assert_eq!(st.code(), Some(0));
    assert!(!socket.exists(), "the socket file is removed at exit");
}
