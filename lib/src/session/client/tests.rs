use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;

use super::*;
use crate::node::memory::MemNode;
use crate::proto::p2p::{decode, parse_line};
use crate::session::testing::{fixture, key_of, tools_bin, Oracle};

/// The messages of one direction of an exchange, payloads attached to their DATA.
fn messages(mut b: &[u8]) -> VecDeque<(Message, Vec<u8>)> {
    let mut out = VecDeque::new();
    while !b.is_empty() {
        let (m, used) = decode(b).unwrap().expect("complete lines");
        b = &b[used..];
        let payload = match m {
            Message::Data(n) => {
                let (p, rest) = b.split_at(n as usize);
                b = rest;
                p.to_vec()
            }
            _ => Vec::new(),
        };
        out.push_back((m, payload));
    }
    out
}

use std::collections::VecDeque;

/// Walk an exchange from git-annex's side: for every message the real client sent, the
/// session must produce the same message from the corresponding request, and must read
/// every server reply without complaint. Returns the replies.
fn walk(ex: &crate::session::testing::Exchange) -> Vec<Reply> {
    let mut cs = messages(&ex.client);
    let mut ss = messages(&ex.server);
    let mut s = ClientSession::new(4);
    let mut replies = Vec::new();
    let mut next_reply = |s: &mut ClientSession, ss: &mut VecDeque<(Message, Vec<u8>)>| {
        let (m, payload) = ss.pop_front().expect("a server reply");
        let r = s.handle(m).unwrap_or_else(|e| panic!("{}: {e}", ex.name));
        replies.push(r.clone());
        (r, payload)
    };
    assert_eq!(
        next_reply(&mut s, &mut ss).0,
        Reply::Greeted(ex.served.clone())
    );
    while let Some((m, _)) = cs.pop_front() {
        let sent = match m.clone() {
            Message::Version(_) => {
                let sent = s.negotiate();
                next_reply(&mut s, &mut ss);
                sent
            }
            Message::Bypass(us) => s.bypass(&us).expect("a non-empty BYPASS"),
            Message::CheckPresent(k) => {
                let sent = s.check_present(k);
                next_reply(&mut s, &mut ss);
                sent
            }
            Message::LockContent(k) => {
                let sent = s.lock(k);
                next_reply(&mut s, &mut ss);
                sent
            }
            Message::UnlockContent => s.unlock(),
            Message::Remove(k) => {
                let sent = s.remove(k, None).unwrap();
                next_reply(&mut s, &mut ss);
                sent
            }
            Message::RemoveBefore { timestamp, key } => {
                let sent = s.remove(key, Some(timestamp)).unwrap();
                next_reply(&mut s, &mut ss);
                sent
            }
            Message::GetTimestamp => {
                let sent = s.timestamp().unwrap();
                next_reply(&mut s, &mut ss);
                sent
            }
            Message::Get { offset, af, key } => {
                let sent = s.get(key, offset, af);
                assert_eq!(sent, m, "{}", ex.name);
                let (Reply::Data(n), payload) = next_reply(&mut s, &mut ss) else {
                    panic!("{}: no DATA", ex.name)
                };
                assert_eq!(payload.len() as u64, n);
                if s.version() >= 1 {
                    next_reply(&mut s, &mut ss);
                }
                let (verdict, _) = cs.pop_front().unwrap();
                assert_eq!(
                    s.verdict(verdict == Message::Success),
                    verdict,
                    "{}",
                    ex.name
                );
                continue;
            }
            Message::Put { af, key } => {
                let sent = s.put(key, af);
                assert_eq!(sent, m, "{}", ex.name);
                if let (Reply::PutFrom(_), _) = next_reply(&mut s, &mut ss) {
                    let (data, payload) = cs.pop_front().unwrap();
                    assert_eq!(s.data(payload.len() as u64), data);
                    if s.version() >= 1 {
                        let (v, _) = cs.pop_front().unwrap();
                        let validity = if v == Message::Valid {
                            Validity::Valid
                        } else {
                            Validity::Invalid
                        };
                        assert_eq!(s.sent(validity), Some(v), "{}", ex.name);
                    } else {
                        assert_eq!(s.sent(Validity::Unknown), None);
                    }
                    next_reply(&mut s, &mut ss);
                }
                continue;
            }
            other => panic!("{}: client sent {other}", ex.name),
        };
        assert_eq!(sent, m, "{}", ex.name);
    }
    assert!(ss.is_empty(), "{}: unread server messages {ss:?}", ex.name);
    replies
}

#[test]
fn git_annex_client_side_of_every_fixture() {
    let mut n = 0;
    for file in [
        "10-plain-put.txt",
        "11-plain-get.txt",
        "12-plain-drop.txt",
        "20-cluster-put.txt",
        "21-cluster-get.txt",
        "22-cluster-drop.txt",
        "30-node-put.txt",
        "31-node-drop.txt",
        "40-local-drop-locks-cluster.txt",
        "41-node-drop-locking-others.txt",
    ] {
        for ex in fixture(file) {
            let replies = walk(&ex);
            n += 1;
            if file == "20-cluster-put.txt" && ex.repo == "gw.git" {
                let Some(Reply::Stored(s)) = replies.last() else {
                    panic!("{replies:?}")
                };
                assert!(s.stored && s.plus.len() == 3);
            }
            if file == "41-node-drop-locking-others.txt"
                && replies.contains(&Reply::Timestamp(3377))
            {
                assert_eq!(
                    replies.last(),
                    Some(&Reply::Removed(Removed {
                        removed: true,
                        ..Default::default()
                    }))
                );
            }
        }
    }
    assert_eq!(n, 23);
}

#[test]
fn replies_out_of_step_are_protocol_errors_with_git_annex_farewells() {
    let k = key_of(b"x", "");
    let mut s = ClientSession::new(4);
    let e = s.handle(Message::Version(4)).unwrap_err();
    assert_eq!(e.farewell(), Some(Message::Error("auth failed".into())));
    assert_eq!(
        ClientSession::new(4).handle(Message::AuthFailure),
        Err(ClientError::AuthFailed)
    );

    let mut s = ClientSession::new(4);
    s.handle(parse_line(b"AUTH-SUCCESS u").unwrap()).unwrap();
    s.negotiate();
    assert_eq!(s.handle(Message::Version(3)), Ok(Reply::Versioned(3)));
    s.put(k.clone(), AssociatedFile::none());
    let e = s.handle(Message::Success).unwrap_err();
    assert_eq!(
        e.farewell(),
        Some(Message::Error("expected PUT_FROM or ALREADY_HAVE".into()))
    );
    s.check_present(k.clone());
    assert_eq!(
        s.handle(Message::Error("boom".into())),
        Err(ClientError::Server("boom".into()))
    );
    assert_eq!(
        s.handle(Message::Success),
        Err(ClientError::Unsolicited("SUCCESS".into()))
    );
    s.remove(k.clone(), None).unwrap();
    let e = s.handle(Message::Timestamp(1)).unwrap_err();
    assert_eq!(
        e.farewell(),
        Some(Message::Error(
            "expected SUCCESS or SUCCESS-PLUS or FAILURE or FAILURE-PLUS".into()
        ))
    );
    assert!(matches!(
        e.clone().into_node_error("n1"),
        NodeError::Protocol { .. }
    ));
    assert!(matches!(
        ClientError::Server("x".into()).into_node_error("n1"),
        NodeError::Remote { message, .. } if message == "x"
    ));
    // Versions gate requests.
    let mut s = ClientSession::new(4);
    s.handle(parse_line(b"AUTH-SUCCESS u").unwrap()).unwrap();
    s.negotiate();
    assert_eq!(
        s.handle(Message::Error("unknown command".into())),
        Ok(Reply::Versioned(0))
    );
    assert!(matches!(
        s.timestamp(),
        Err(ClientError::TooOld { need: 3, .. })
    ));
    assert!(matches!(
        s.remove(k, Some(5)),
        Err(ClientError::TooOld { .. })
    ));
    assert_eq!(s.bypass(&[Uuid::parse("x").unwrap()]), None);
    // A server agreeing to more than offered is out of step.
    let mut s = ClientSession::new(2);
    s.handle(parse_line(b"AUTH-SUCCESS u").unwrap()).unwrap();
    s.negotiate();
    assert!(s.handle(Message::Version(4)).is_err());
}

// ---- against live servers ----

/// A blocking client connection over two pipes.
struct Wire {
    r: BufReader<std::fs::File>,
    w: std::fs::File,
}

impl Wire {
    fn send(&mut self, m: &Message) {
        self.w.write_all(&m.to_bytes()).unwrap();
    }
    fn recv(&mut self) -> Message {
        let mut line = Vec::new();
        self.r.read_until(b'\n', &mut line).unwrap();
        assert!(line.ends_with(b"\n"), "server closed");
        decode(&line).unwrap().unwrap().0
    }
    fn bytes(&mut self, n: u64) -> Vec<u8> {
        let mut b = vec![0; n as usize];
        self.r.read_exact(&mut b).unwrap();
        b
    }
    fn ask(&mut self, s: &mut ClientSession, m: Message) -> Result<Reply, ClientError> {
        self.send(&m);
        let reply = self.recv();
        s.handle(reply)
    }
}

/// A conversation covering every request, checked as it goes. Returns the served UUID.
fn converse(wire: &mut Wire, max_version: u8) -> Uuid {
    let data = b"hello world";
    let k = key_of(data, ".txt");
    let absent = key_of(b"nothing here", "");
    let mut s = ClientSession::new(max_version);
    let m = wire.recv();
    let Ok(Reply::Greeted(served)) = s.handle(m) else {
        panic!("no greeting")
    };
    let v = s.negotiate();
    assert_eq!(wire.ask(&mut s, v), Ok(Reply::Versioned(max_version)));
    if let Some(m) = s.bypass(&[Uuid::parse("11111111-1111-1111-1111-111111111111").unwrap()]) {
        wire.send(&m);
    }
    let m = s.check_present(k.clone());
    assert_eq!(wire.ask(&mut s, m), Ok(Reply::Present(false)));

    let m = s.put(k.clone(), AssociatedFile::new("hello world.txt"));
    assert_eq!(wire.ask(&mut s, m), Ok(Reply::PutFrom(0)));
    let m = s.data(data.len() as u64);
    wire.send(&m);
    wire.w.write_all(data).unwrap();
    if let Some(m) = s.sent(Validity::Valid) {
        wire.send(&m);
    }
    let r = wire.recv();
    assert_eq!(
        s.handle(r),
        Ok(Reply::Stored(Stored {
            stored: true,
            plus: vec![]
        }))
    );
    let m = s.put(k.clone(), AssociatedFile::none());
    assert_eq!(wire.ask(&mut s, m), Ok(Reply::AlreadyHave(vec![])));

    let m = s.get(k.clone(), 6, AssociatedFile::new("x"));
    assert_eq!(wire.ask(&mut s, m), Ok(Reply::Data(5)));
    assert_eq!(wire.bytes(5), b"world");
    if s.version() >= 1 {
        let r = wire.recv();
        assert_eq!(s.handle(r), Ok(Reply::Validity(Validity::Valid)));
    }
    let m = s.verdict(true);
    wire.send(&m);

    let m = s.get(absent.clone(), 0, AssociatedFile::none());
    assert_eq!(wire.ask(&mut s, m), Ok(Reply::Data(0)));
    if s.version() >= 1 {
        let r = wire.recv();
        assert_eq!(s.handle(r), Ok(Reply::Validity(Validity::Invalid)));
    }
    let m = s.verdict(false);
    wire.send(&m);

    let m = s.lock(k.clone());
    assert_eq!(wire.ask(&mut s, m), Ok(Reply::Locked(true)));
    let m = s.unlock();
    wire.send(&m);
    let m = s.lock(absent.clone());
    assert_eq!(wire.ask(&mut s, m), Ok(Reply::Locked(false)));

    let not = Reply::Removed(Removed::default());
    let yes = Reply::Removed(Removed {
        removed: true,
        ..Default::default()
    });
    if s.version() >= 3 {
        let m = s.timestamp().unwrap();
        let Ok(Reply::Timestamp(now)) = wire.ask(&mut s, m) else {
            panic!("no timestamp")
        };
        let m = s.remove(k.clone(), Some(now.saturating_sub(1))).unwrap();
        assert_eq!(wire.ask(&mut s, m), Ok(not.clone()));
        let m = s.check_present(k.clone());
        assert_eq!(wire.ask(&mut s, m), Ok(Reply::Present(true)));
        let m = s.remove(k.clone(), Some(now + 600)).unwrap();
        assert_eq!(wire.ask(&mut s, m), Ok(yes.clone()));
    }
    let m = s.remove(k.clone(), None).unwrap();
    assert_eq!(wire.ask(&mut s, m), Ok(yes));
    let m = s.check_present(k);
    assert_eq!(wire.ask(&mut s, m), Ok(Reply::Present(false)));
    served
}

#[test]
fn talks_to_the_real_git_annex_shell() {
    let _ = tools_bin();
    for v in [4u8, 2, 1, 0] {
        let oracle = Oracle::new(&[]);
        let mut child = oracle.spawn();
        let mut wire = Wire {
            r: BufReader::new(std::os::fd::OwnedFd::from(child.stdout.take().unwrap()).into()),
            w: std::os::fd::OwnedFd::from(child.stdin.take().unwrap()).into(),
        };
        let served = converse(&mut wire, v);
        assert_eq!(served, oracle.uuid);
        drop(wire);
        assert!(child.wait().unwrap().success(), "version {v}");
    }
}

fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array with two new descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    use std::os::fd::FromRawFd;
    // SAFETY: fresh descriptors, owned here.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

#[test]
fn talks_to_our_own_server() {
    use crate::conn::{serve_fds, ServeOptions};
    use crate::session::server::{ServerConfig, ServerMode};
    for v in [4u8, 2, 1, 0] {
        let u = Uuid::parse("de2c220a-31f0-4f79-a0cf-2ae34a0559b9").unwrap();
        let node: Arc<dyn crate::node::Node> = Arc::new(MemNode::new(u.clone(), "mem"));
        let (server_in, client_w) = pipe();
        let (client_r, server_out) = pipe();
        let options = ServeOptions::new(ServerConfig::shell(u.clone(), ServerMode::ReadWrite));
        let server = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(serve_fds(
                server_in.into(),
                server_out.into(),
                options,
                node,
            ))
        });
        let mut wire = Wire {
            r: BufReader::new(client_r),
            w: client_w,
        };
        assert_eq!(converse(&mut wire, v), u);
        drop(wire);
        let outcome = server.join().unwrap().unwrap();
        assert_eq!(outcome.exit_code(), 0);
        assert_eq!(outcome.version, v);
    }
}
