//! Load and faults: 64 concurrent clients (raw HTTP, plus real git-annex clients) with no
//! deadlock and no lost location; clients that vanish in the middle of a download, an
//! upload or a held lock; a client that stops reading does not hold up the others.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::support::{
    clone_client, committed_locations, eventually, point_remote_at, read_response, request, Impl,
    Server,
};
use crate::harness::{pseudo_random, RepoKind, TestEnv, Transport};

const C: &str = "11111111-2222-3333-4444-555555555555";

/// The key git-annex gives `data` (asked of git-annex itself).
fn key_for(env: &TestEnv, repo: &crate::harness::Repo<'_>, name: &str, data: &[u8]) -> String {
    let p = env.root().join(name);
    std::fs::write(&p, data).unwrap();
    repo.annex(&["calckey", p.to_str().unwrap()])
        .stdout
        .trim()
        .to_string()
}

#[test]
fn sixty_four_concurrent_clients() {
    let env = TestEnv::new(Transport::Shim);
    let srv = env.server_repo("srv", RepoKind::NonBare);
    srv.add_files(&[("seed.txt", b"seed\n")]);
    let clients = 64;
    let items: Vec<(String, Vec<u8>)> = (0..clients)
        .map(|i| {
            let data = pseudo_random(16_384 + i * 4099, 1000 + i as u64);
            (key_for(&env, &srv, &format!("item{i}"), &data), data)
        })
        .collect();
    // A few real git-annex clients work alongside.
    let annex_clients: Vec<_> = (0..3)
        .map(|i| {
            let c = clone_client(&env, &srv, &format!("gc{i}"));
            c.add_files(&[(
                &format!("g{i}.bin") as &str,
                &pseudo_random(200_000, 50 + i) as &[u8],
            )]);
            c
        })
        .collect();
    let server = Server::start(
        &env,
        Impl::Ours,
        srv.path(),
        &["--wideopen", "-J", "16"],
        &[],
    );
    for c in &annex_clients {
        point_remote_at(c, "origin", &server);
    }
    let addr = server.addr();
    let u = srv.uuid().to_string();
    let failures = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for (i, (key, data)) in items.iter().enumerate() {
            let u = &u;
            let failures = failures.clone();
            scope.spawn(move || {
                let check = |ok: bool, what: &str| {
                    if !ok {
                        eprintln!("client {i}: {what} failed");
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                };
                let len = data.len().to_string();
                let r = request(
                    addr,
                    "POST",
                    &format!("/git-annex/{u}/v4/put?key={key}&clientuuid={C}"),
                    &[("X-git-annex-data-length", &len)],
                    Some(data),
                );
                check(r.text() == "{\"plusuuids\":[],\"stored\":true}", "put");
                let r = request(
                    addr,
                    "GET",
                    &format!("/git-annex/{u}/v3/key/{key}?clientuuid={C}"),
                    &[],
                    None,
                );
                check(r.body == *data, "get");
                let r = request(
                    addr,
                    "POST",
                    &format!("/git-annex/{u}/v4/checkpresent?key={key}&clientuuid={C}"),
                    &[],
                    None,
                );
                check(r.text() == "{\"present\":true}", "checkpresent");
                if i % 4 == 0 {
                    let r = request(
                        addr,
                        "POST",
                        &format!("/git-annex/{u}/v4/remove?key={key}&clientuuid={C}"),
                        &[],
                        None,
                    );
                    check(r.text() == "{\"plusuuids\":[],\"removed\":true}", "remove");
                }
            });
        }
        for (i, c) in annex_clients.iter().enumerate() {
            scope.spawn(move || {
                let f = format!("g{i}.bin");
                c.annex(&["copy", "--to", "origin", &f]);
                c.annex(&["get", "--from", "origin", "seed.txt"]);
                c.annex(&["drop", "seed.txt"]);
            });
        }
    });
    assert_eq!(failures.load(Ordering::SeqCst), 0, "{}", server.log_text());
    // Every change is in the git-annex branch once the server stopped (and no lock or
    // transfer was left behind to block it).
    assert_eq!(server.stop(), Some(0));
    let me = srv.uuid().to_string();
    for (i, (key, _)) in items.iter().enumerate() {
        let present = committed_locations(&srv, key).contains(&me);
        assert_eq!(present, i % 4 != 0, "location of item {i} ({key})");
        assert_eq!(srv.find_object(key).is_some(), i % 4 != 0);
    }
    for (i, c) in annex_clients.iter().enumerate() {
        let k = c.key_of(&format!("g{i}.bin"));
        assert!(committed_locations(&srv, &k).contains(&me), "g{i}.bin");
    }
}

#[test]
fn vanishing_clients_release_what_they_held() {
    let env = TestEnv::new(Transport::Shim);
    let srv = env.server_repo("srv", RepoKind::NonBare);
    let big = pseudo_random(8 << 20, 5);
    srv.add_files(&[("big.bin", &big)]);
    let kbig = srv.key_of("big.bin");
    let server = Server::start(&env, Impl::Ours, srv.path(), &["--wideopen"], &[]);
    let u = srv.uuid().to_string();
    let addr = server.addr();

    // A download dropped after a little.
    for _ in 0..5 {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /git-annex/{u}/v4/key/{kbig}?clientuuid={C} HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .unwrap();
        let mut buf = vec![0u8; 100_000];
        s.read_exact(&mut buf).unwrap();
    }

    // A held lock whose keeplocked connection drops: released.
    let r = request(
        addr,
        "POST",
        &format!("/git-annex/{u}/v4/lockcontent?key={kbig}&clientuuid={C}"),
        &[],
        None,
    );
    let id = r.json()["lockid"].as_str().expect("locked").to_string();
    {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "POST /git-annex/{u}/v4/keeplocked?lockid={id}&clientuuid={C} HTTP/1.1\r\nHost: x\r\n\
             Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n\
             11\r\n{{\"unlock\":false}}\n\r\n"
        )
        .unwrap();
        s.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        // While the lock is held, the content cannot be removed.
        let r = request(
            addr,
            "POST",
            &format!("/git-annex/{u}/v4/remove?key={kbig}&clientuuid={C}"),
            &[],
            None,
        );
        assert_eq!(r.text(), "{\"plusuuids\":[],\"removed\":false}");
    }
    // Polling with removals only: taking another lock meanwhile would leave its later
    // retention time behind (git-annex's rule, which only ever keeps content longer).
    eventually(20, "the lock of a vanished client to be released", || {
        let r = request(
            addr,
            "POST",
            &format!("/git-annex/{u}/v4/remove?key={kbig}&clientuuid={C}"),
            &[],
            None,
        );
        r.text() == "{\"plusuuids\":[],\"removed\":true}"
    });

    // An upload that breaks off: its partial data stays for a resume, and no transfer
    // lock is left (the next upload of the key goes through).
    let sent = 3 << 20;
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "POST /git-annex/{u}/v4/put?key={kbig}&clientuuid={C} HTTP/1.1\r\nHost: x\r\n\
             X-git-annex-data-length: {n}\r\nContent-Length: {n}\r\n\r\n",
            n = big.len()
        )
        .unwrap();
        s.write_all(&big[..sent]).unwrap();
    }
    eventually(20, "the partial upload to be kept", || {
        let r = request(
            addr,
            "POST",
            &format!("/git-annex/{u}/v4/putoffset?key={kbig}&clientuuid={C}"),
            &[],
            None,
        );
        r.text() == format!("{{\"offset\":{sent}}}")
    });
    let rest = (big.len() - sent).to_string();
    let r = request(
        addr,
        "POST",
        &format!("/git-annex/{u}/v4/put?key={kbig}&clientuuid={C}&offset={sent}"),
        &[("X-git-annex-data-length", &rest)],
        Some(&big[sent..]),
    );
    assert_eq!(
        r.text(),
        "{\"plusuuids\":[],\"stored\":true}",
        "{}",
        server.log_text()
    );
    assert_eq!(srv.object_content(&kbig).as_deref(), Some(&big[..]));
}

#[test]
fn a_slow_client_does_not_stall_others() {
    let env = TestEnv::new(Transport::Shim);
    let srv = env.server_repo("srv", RepoKind::NonBare);
    let big = pseudo_random(32 << 20, 9);
    srv.add_files(&[("big.bin", &big), ("small.txt", b"small\n")]);
    let (kbig, ksmall) = (srv.key_of("big.bin"), srv.key_of("small.txt"));
    // Few job slots, so a stalled request holding one would show.
    let server = Server::start(
        &env,
        Impl::Ours,
        srv.path(),
        &["--wideopen", "-J", "2"],
        &[],
    );
    let u = srv.uuid().to_string();
    let addr = server.addr();
    // The slow client asks for 32 MiB and does not read.
    let mut slow = TcpStream::connect(addr).unwrap();
    write!(slow, "GET /git-annex/{u}/v4/key/{kbig}?clientuuid={C} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // Others are served meanwhile (with one job slot left).
    for _ in 0..30 {
        let r = request(
            addr,
            "GET",
            &format!("/git-annex/{u}/key/{ksmall}"),
            &[],
            None,
        );
        assert_eq!(r.body, b"small\n");
        let r = request(
            addr,
            "POST",
            &format!("/git-annex/{u}/v4/checkpresent?key={kbig}&clientuuid={C}"),
            &[],
            None,
        );
        assert_eq!(r.text(), "{\"present\":true}");
    }
    // The slow client still gets all of its content, intact.
    slow.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let r = read_response(&mut BufReader::new(slow), false);
    assert_eq!(r.header("x-git-annex-data-length"), Some("33554432"));
    assert!(r.body == big, "the slow download arrived damaged");
}

/// git-annex's own server once stopped answering when clients were interrupted in the
/// middle of downloads while others downloaded too (its bug "p2phttp can get stuck with
/// interrupted clients"). Interrupt one client's `get` again and again while another gets
/// everything; then the interrupted one must finish too.
#[test]
fn interrupted_git_annex_clients_do_not_stick_the_server() {
    let env = TestEnv::new(Transport::Shim);
    let srv = env.server_repo("srv", RepoKind::NonBare);
    let files: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| (format!("f{i}.bin"), pseudo_random(3 << 20, 70 + i)))
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    srv.add_files(&refs);
    let server = Server::start(
        &env,
        Impl::Ours,
        srv.path(),
        &["--wideopen", "-J", "2"],
        &[],
    );
    let a = clone_client(&env, &srv, "a");
    let b = clone_client(&env, &srv, "b");
    point_remote_at(&a, "origin", &server);
    point_remote_at(&b, "origin", &server);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for round in 0..5u64 {
                let mut c = env.command(crate::harness::Side::Client, "git", a.path());
                c.args(["annex", "get", "--from", "origin", "-J2", "."])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
                let mut child = c.spawn().unwrap();
                std::thread::sleep(Duration::from_millis(150 + 100 * round));
                // SAFETY: kill(2) on our own child.
                unsafe {
                    libc::kill(child.id() as i32, libc::SIGINT);
                }
                let _ = child.wait();
                // Drop what arrived, so the next round downloads again.
                let _ = a.try_annex(&["drop", "--force", "."]);
            }
        });
        scope.spawn(|| {
            b.annex(&["get", "--from", "origin", "-J2", "."]);
        });
    });
    a.annex(&["get", "--from", "origin", "."]);
    for (name, data) in &files {
        assert_eq!(
            &std::fs::read(a.path().join(name)).unwrap(),
            data,
            "{name} in a"
        );
        assert_eq!(
            &std::fs::read(b.path().join(name)).unwrap(),
            data,
            "{name} in b"
        );
    }
}

/// A lock whose client never starts `keeplocked` expires (git-annex: after 600 s; here
/// shortened); once `keeplocked` runs, it lasts as long as that request.
#[test]
fn locks_expire_unless_kept() {
    let env = TestEnv::new(Transport::Shim);
    let srv = env.server_repo("srv", RepoKind::NonBare);
    srv.add_files(&[("a.txt", b"locked content\n")]);
    let k = srv.key_of("a.txt");
    let server = Server::start(
        &env,
        Impl::Ours,
        srv.path(),
        &["--wideopen", "--lock-retention", "2"],
        &[],
    );
    let (addr, u) = (server.addr(), srv.uuid().to_string());
    let lock = || {
        let r = request(
            addr,
            "POST",
            &format!("/git-annex/{u}/v4/lockcontent?key={k}&clientuuid={C}"),
            &[],
            None,
        );
        r.json()["lockid"].as_str().expect("locked").to_string()
    };
    let remove = || {
        request(
            addr,
            "POST",
            &format!(
                "/git-annex/{u}/v4/remove-before?key={k}&clientuuid={C}&timestamp=99999999999"
            ),
            &[],
            None,
        )
        .json()["removed"]
            == true
    };
    // Not kept: removal is refused at first, allowed once the lock expired.
    let _id = lock();
    assert!(!remove(), "a locked copy must not be removed");
    eventually(20, "an unkept lock to expire", remove);
    // Restore the content, lock it, and keep it locked past the expiry.
    let data = b"locked content\n";
    let r = request(
        addr,
        "POST",
        &format!("/git-annex/{u}/v4/put?key={k}&clientuuid={C}"),
        &[("X-git-annex-data-length", "15")],
        Some(data),
    );
    assert_eq!(r.json()["stored"], true);
    let id = lock();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /git-annex/{u}/v4/keeplocked?lockid={id} HTTP/1.1\r\nHost: x\r\n\
         Transfer-Encoding: chunked\r\n\r\n11\r\n{{\"unlock\":false}}\n\r\n"
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert!(!remove(), "a kept lock must outlive the expiry");
    write!(s, "10\r\n{{\"unlock\":true}}\n\r\n0\r\n\r\n").unwrap();
    let r = read_response(&mut BufReader::new(s), false);
    assert_eq!(r.text(), "{\"locked\":false}");
    assert!(remove());
}
