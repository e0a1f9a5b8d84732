//! Test support for the server session and its driver: the real git-annex transcripts in
//! `tests/fixtures/transcripts` split into single connections, a small cluster made of
//! [`MemNode`]s (for the `-PLUS` replies), and a direct replay driver.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::conn::{release, run_call, Held};
use crate::node::memory::MemNode;
use crate::node::{
    Content, ContentLock, Node, NodeError, PutSink, PutStart, Removed, Stored, Validity,
};
use crate::proto::p2p::{decode, DecodeError};
use crate::session::server::{Action, DataDest, End, Input, Refusal, ServerConfig, ServerSession};
use crate::types::backend::{hash_hex, HashKind};
use crate::types::{AssociatedFile, Key, Uuid};

/// One connection's bytes, both ways, from a transcript.
#[derive(Debug, Clone)]
pub(crate) struct Exchange {
    /// `file [repo] #n` for messages.
    pub name: String,
    pub repo: String,
    /// The UUID announced in AUTH-SUCCESS.
    pub served: Uuid,
    pub client: Vec<u8>,
    pub server: Vec<u8>,
}

/// The UUID a transcript placeholder `<uuid:NAME>` stands for in these tests.
pub(crate) fn placeholder_uuid(name: &str) -> Uuid {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    Uuid::parse(&format!(
        "{:08x}-0000-4000-8000-{:012x}",
        h >> 32,
        h & 0xffff_ffff_ffff
    ))
    .unwrap()
}

fn substitute(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("<uuid:") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 6..];
        let end = after.find('>').expect("closed placeholder");
        out.push_str(placeholder_uuid(&after[..end]).as_str());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Python's `repr` of bytes (`b'hello world\n'`) back to bytes.
fn py_bytes(repr: &str) -> Vec<u8> {
    let body = repr
        .strip_prefix("b'")
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| repr.strip_prefix("b\"").and_then(|r| r.strip_suffix('"')))
        .expect("a bytes literal");
    let b = body.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let (byte, used) = match b[i + 1] {
                b'n' => (b'\n', 2),
                b't' => (b'\t', 2),
                b'r' => (b'\r', 2),
                b'\\' => (b'\\', 2),
                b'\'' => (b'\'', 2),
                b'"' => (b'"', 2),
                b'x' => (
                    u8::from_str_radix(std::str::from_utf8(&b[i + 2..i + 4]).unwrap(), 16).unwrap(),
                    4,
                ),
                other => panic!("escape \\{}", other as char),
            };
            out.push(byte);
            i += used;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

struct Line {
    repo: String,
    dir: String,
    text: String,
}

fn parse_lines(text: &str) -> Vec<Line> {
    let mut lines = Vec::new();
    for raw in text.lines() {
        let Some(open) = raw.find('[') else { continue };
        if raw.starts_with('#') {
            continue;
        }
        let Some(close) = raw[open..].find(']') else {
            continue;
        };
        let repo = raw[open + 1..open + close].to_string();
        let rest = &raw[open + close + 1..];
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        let (dir, text) = match rest.find(' ') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        if dir != "C>" && dir != "S>" {
            continue;
        }
        lines.push(Line {
            repo,
            dir: dir.to_string(),
            text: substitute(text),
        });
    }
    lines
}

/// Split a transcript into its connections (each `S> AUTH-SUCCESS` opens one). Where a
/// repository has several open at once (a gateway serving two proxied nodes), a line
/// goes to the connection relaying to the repository whose next (client line) or
/// previous (server line) line has the same text.
pub(crate) fn exchanges(file: &str, text: &str) -> Vec<Exchange> {
    let lines = parse_lines(text);
    let mut done: Vec<Exchange> = Vec::new();
    // Per repo: connections still open, in opening order.
    let mut open: HashMap<String, Vec<Exchange>> = HashMap::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let served_of = |open: &HashMap<String, Vec<Exchange>>, repo: &str| {
        open.get(repo)
            .and_then(|v| v.last())
            .map(|e| e.served.clone())
    };
    for (i, l) in lines.iter().enumerate() {
        if l.dir == "S>" && l.text.starts_with("AUTH-SUCCESS ") {
            let n = counts.entry(l.repo.clone()).or_insert(0);
            *n += 1;
            open.entry(l.repo.clone()).or_default().push(Exchange {
                name: format!("{file} [{}] #{n}", l.repo),
                repo: l.repo.clone(),
                served: Uuid::parse(&l.text["AUTH-SUCCESS ".len()..]).unwrap(),
                client: Vec::new(),
                server: Vec::new(),
            });
        }
        let conns = open.get(&l.repo).map_or(0, |v| v.len());
        if conns == 0 {
            continue;
        }
        let idx = if conns == 1 || l.text == "<EOF>" {
            0
        } else {
            // Find the relayed twin of this line in another repository.
            let twin = if l.dir == "C>" {
                lines[i + 1..]
                    .iter()
                    .find(|o| o.repo != l.repo && o.dir == "C>" && o.text == l.text)
            } else {
                lines[..i]
                    .iter()
                    .rev()
                    .find(|o| o.repo != l.repo && o.dir == "S>" && o.text == l.text)
            };
            let target = twin.and_then(|t| served_of(&open, &t.repo));
            let v = &open[&l.repo];
            target
                .and_then(|u| v.iter().position(|e| e.served == u))
                .unwrap_or(v.len() - 1)
        };
        let conn = &mut open.get_mut(&l.repo).unwrap()[idx];
        let buf = if l.dir == "C>" {
            &mut conn.client
        } else {
            &mut conn.server
        };
        if l.text == "<EOF>" {
            if l.dir == "S>" {
                let e = open.get_mut(&l.repo).unwrap().remove(idx);
                done.push(e);
            }
        } else if let Some(p) = l.text.trim_start().strip_prefix("<payload ") {
            let repr = &p[p.find(": ").expect("payload repr") + 2..p.len() - 1];
            buf.extend_from_slice(&py_bytes(repr));
        } else {
            buf.extend_from_slice(l.text.as_bytes());
            buf.push(b'\n');
        }
    }
    for (_, v) in open {
        done.extend(v);
    }
    done
}

/// Every single-connection exchange of a fixture file.
pub(crate) fn fixture(file: &str) -> Vec<Exchange> {
    let path = format!(
        "{}/../tests/fixtures/transcripts/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    exchanges(file, &text)
}

/// The SHA256E key of `data` with extension `ext`.
pub(crate) fn key_of(data: &[u8], ext: &str) -> Key {
    Key::from_str(&format!(
        "SHA256E-s{}--{}{ext}",
        data.len(),
        hash_hex(HashKind::Sha2_256, data)
    ))
    .unwrap()
}

// ---- a small cluster, for the -PLUS replies ----

/// A node made of [`MemNode`]s, with git-annex's cluster replies (clusters-and-proxies.md
/// §5) in their simplest form: PUT to every node lacking the content, REMOVE from all,
/// GET from the first that has it, LOCKCONTENT always refused.
pub(crate) struct TestCluster {
    pub uuid: Uuid,
    pub nodes: Vec<MemNode>,
}

#[async_trait]
impl Node for TestCluster {
    fn uuid(&self) -> &Uuid {
        &self.uuid
    }
    fn name(&self) -> &str {
        "test cluster"
    }
    async fn check_present(&self, key: &Key) -> Result<bool, NodeError> {
        for n in &self.nodes {
            if n.check_present(key).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
    async fn lock_content(&self, _key: &Key) -> Result<Option<Box<dyn ContentLock>>, NodeError> {
        Ok(None)
    }
    async fn get(
        &self,
        key: &Key,
        offset: u64,
        af: &AssociatedFile,
    ) -> Result<Option<Box<dyn Content>>, NodeError> {
        for n in &self.nodes {
            if let Some(c) = n.get(key, offset, af).await? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
    async fn put(&self, key: &Key, af: &AssociatedFile) -> Result<PutStart, NodeError> {
        let mut sinks = Vec::new();
        let mut have = Vec::new();
        for n in &self.nodes {
            match n.put(key, af).await? {
                PutStart::AlreadyHave { .. } => have.push(n.uuid().clone()),
                PutStart::Accept(s) => sinks.push((n.uuid().clone(), s)),
            }
        }
        if sinks.is_empty() {
            return Ok(PutStart::AlreadyHave { plus: have });
        }
        Ok(PutStart::Accept(Box::new(FanSink { sinks })))
    }
    async fn remove(&self, key: &Key, deadline: Option<u64>) -> Result<Removed, NodeError> {
        let mut all = true;
        let mut plus = Vec::new();
        for n in &self.nodes {
            let r = n.remove(key, deadline).await?;
            if r.removed {
                plus.push(n.uuid().clone());
            } else {
                all = false;
            }
        }
        Ok(Removed {
            removed: all,
            plus,
            error: None,
        })
    }
    async fn timestamp(&self) -> Result<u64, NodeError> {
        self.nodes[0].timestamp().await
    }
}

struct FanSink {
    sinks: Vec<(Uuid, Box<dyn PutSink>)>,
}

#[async_trait]
impl PutSink for FanSink {
    fn offset(&self) -> u64 {
        self.sinks
            .iter()
            .map(|(_, s)| s.offset())
            .min()
            .unwrap_or(0)
    }
    async fn begin(&mut self, len: u64) -> Result<(), NodeError> {
        for (_, s) in &mut self.sinks {
            s.begin(len).await?;
        }
        Ok(())
    }
    async fn write(&mut self, data: &[u8]) -> Result<(), NodeError> {
        for (_, s) in &mut self.sinks {
            s.write(data).await?;
        }
        Ok(())
    }
    async fn finish(self: Box<Self>, validity: Validity) -> Result<Stored, NodeError> {
        let mut plus = Vec::new();
        for (u, s) in self.sinks {
            if s.finish(validity).await.is_ok_and(|r| r.stored) {
                plus.push(u);
            }
        }
        Ok(Stored {
            stored: !plus.is_empty(),
            plus,
        })
    }
    async fn data_present(self: Box<Self>) -> Result<Stored, NodeError> {
        let mut plus = Vec::new();
        for (u, s) in self.sinks {
            if s.data_present().await.is_ok_and(|r| r.stored) {
                plus.push(u);
            }
        }
        Ok(Stored {
            stored: !plus.is_empty(),
            plus,
        })
    }
    async fn abort(self: Box<Self>) {
        for (_, s) in self.sinks {
            s.abort().await;
        }
    }
}

// ---- a direct replay driver ----

/// What a replay produced.
#[derive(Debug)]
pub(crate) struct Replay {
    pub server: Vec<u8>,
    pub end: End,
    pub refusals: Vec<Refusal>,
    /// (version, bypass) the node was created with, if it was.
    pub created: Option<(u8, Vec<Uuid>)>,
}

/// Run a session over the client's bytes (all sent up front, then EOF) against `node`,
/// moving DATA through the same node calls the real driver uses.
pub(crate) async fn replay(config: ServerConfig, node: Arc<dyn Node>, client: &[u8]) -> Replay {
    let mut s = ServerSession::new(config);
    let mut held = Held::default();
    let mut out = Vec::new();
    let mut refusals = Vec::new();
    let mut created = None;
    let mut pos = 0usize;
    let end = 'session: loop {
        while let Some(a) = s.poll_action() {
            match a {
                Action::Send(m) => m.encode(&mut out),
                Action::Refused(r) => refusals.push(r),
                Action::CreateNode { version, bypass } => {
                    assert!(created.is_none(), "the node is made once");
                    created = Some((version, bypass));
                    held.node = Some(node.clone());
                    s.handle(Input::NodeCreated(Ok(())));
                }
                Action::Call(c) => {
                    let r = run_call(&mut held, c).await;
                    s.handle(Input::Reply(r));
                }
                Action::Release(r) => release(&mut held, r).await,
                Action::Receive { len, dest } => {
                    if dest == DataDest::Sink {
                        if let Err(e) = held.sink.as_mut().unwrap().begin(len).await {
                            s.handle(Input::TransferFailed(e));
                            continue;
                        }
                    }
                    let avail = (len as usize).min(client.len() - pos);
                    if avail > 0 {
                        if dest == DataDest::Sink {
                            let sink = held.sink.as_mut().unwrap();
                            if let Err(e) = sink.write(&client[pos..pos + avail]).await {
                                s.handle(Input::TransferFailed(e));
                                continue;
                            }
                        }
                        pos += avail;
                        s.handle(Input::Moved(avail as u64));
                    }
                    if (avail as u64) < len {
                        s.handle(Input::Eof);
                    }
                }
                Action::Transmit { len } => {
                    let content = held.content.as_mut().unwrap();
                    let mut left = len;
                    let mut buf = [0u8; 7];
                    while left > 0 {
                        let want = buf.len().min(left as usize);
                        match content.read(&mut buf[..want]).await {
                            Ok(0) => {
                                s.handle(Input::TransferFailed(NodeError::Protocol {
                                    node: "test".into(),
                                    detail: "short".into(),
                                }));
                                break;
                            }
                            Ok(n) => {
                                out.extend_from_slice(&buf[..n]);
                                left -= n as u64;
                                s.handle(Input::Moved(n as u64));
                            }
                            Err(e) => {
                                s.handle(Input::TransferFailed(e));
                                break;
                            }
                        }
                    }
                }
                Action::Close(end) => break 'session end,
            }
        }
        let input = match decode(&client[pos..]) {
            Ok(Some((m, used))) => {
                pos += used;
                Input::Message(m)
            }
            Ok(None) => Input::Eof,
            Err(DecodeError::Unparsable { error, consumed }) => {
                pos += consumed;
                Input::Unparsable(error)
            }
            Err(DecodeError::LineTooLong) => Input::LineTooLong,
        };
        s.handle(input);
    };
    held.release_all().await;
    Replay {
        server: out,
        end,
        refusals,
        created,
    }
}

// ---- the real git-annex-shell as the oracle ----

/// Where the real git-annex lives: `$ANNEXGATE_TOOLS/bin`, else `<workspace>/.tools/bin`.
/// Fails the test, clearly, when it is missing.
pub(crate) fn tools_bin() -> std::path::PathBuf {
    let tools = std::env::var_os("ANNEXGATE_TOOLS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools"));
    let bin = tools.join("bin");
    assert!(
        bin.join("git-annex-shell").exists(),
        "the real git-annex is needed as the oracle but {} has no git-annex-shell; \
         run scripts/setup or set ANNEXGATE_TOOLS",
        bin.display()
    );
    bin
}

/// A throw-away bare git-annex repository served by the real git-annex-shell.
pub(crate) struct Oracle {
    dir: tempfile::TempDir,
    pub uuid: Uuid,
}

impl Oracle {
    fn command(&self, program: &str) -> std::process::Command {
        let bin = tools_bin();
        let mut c = std::process::Command::new(bin.join(program));
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![bin.clone()];
        paths.extend(std::env::split_paths(&path));
        c.env("PATH", std::env::join_paths(paths).unwrap())
            .env("HOME", self.dir.path().join("home"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("GIT_ANNEX_SHELL_READONLY")
            .env_remove("GIT_ANNEX_SHELL_APPENDONLY")
            .current_dir(self.dir.path().join("repo"));
        let magic = bin.join("../pypi/git_annex/magic.mgc");
        if magic.exists() {
            c.env("MAGIC", magic);
        }
        c
    }

    /// A new repository whose content is `present`.
    pub(crate) fn new(present: &[(&Key, &[u8])]) -> Oracle {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(
            home.join(".gitconfig"),
            "[user]\n\tname = annexgate test\n\temail = test@annexgate.invalid\n",
        )
        .unwrap();
        let mut o = Oracle {
            dir,
            uuid: Uuid::parse("00000000-0000-0000-0000-000000000000").unwrap(),
        };
        let st = std::process::Command::new("git")
            .args(["init", "-q", "--bare"])
            .arg(o.dir.path().join("repo"))
            .env("HOME", &home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .status()
            .unwrap();
        assert!(st.success(), "git init failed");
        let out = o
            .command("git-annex")
            .args(["init", "-q", "oracle"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git annex init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = std::process::Command::new("git")
            .args(["config", "annex.uuid"])
            .current_dir(o.dir.path().join("repo"))
            .env("HOME", &home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap();
        o.uuid = Uuid::parse(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
        for (key, data) in present {
            let mut script = format!("VERSION 4\nPUT  {key}\nDATA {}\n", data.len()).into_bytes();
            script.extend_from_slice(data);
            script.extend_from_slice(b"VALID\n");
            let (out, code) = o.run(&script, &[]);
            assert_eq!(code, 0);
            assert!(
                out.ends_with(b"SUCCESS\n"),
                "storing {key} in the oracle repo failed"
            );
        }
        o
    }

    /// A copy of this repository (same UUID, same content), quicker than a new one.
    pub(crate) fn fork(&self) -> Oracle {
        let dir = tempfile::tempdir().unwrap();
        for part in ["home", "repo"] {
            let st = std::process::Command::new("cp")
                .arg("-a")
                .arg(self.dir.path().join(part))
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(st.success(), "copying the oracle repository failed");
        }
        Oracle {
            dir,
            uuid: self.uuid.clone(),
        }
    }

    fn p2pstdio(&self, env: &[(&str, &str)]) -> std::process::Child {
        let mut c = self.command("git-annex-shell");
        c.arg("p2pstdio")
            .arg(self.dir.path().join("repo"))
            .arg("11111111-2222-3333-4444-555555555555")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        c.spawn().unwrap()
    }

    /// `git-annex-shell p2pstdio` on this repository, stdin and stdout piped.
    pub(crate) fn spawn(&self) -> std::process::Child {
        self.p2pstdio(&[])
    }

    /// Feed `input` to `git-annex-shell p2pstdio` and return its stdout and exit code.
    pub(crate) fn run(&self, input: &[u8], env: &[(&str, &str)]) -> (Vec<u8>, i32) {
        use std::io::Write;
        let mut child = self.p2pstdio(env);
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            // The server may stop reading early (NOTIFYCHANGE, too long a line).
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        let _ = writer.join();
        (out.stdout, out.status.code().unwrap_or(-1))
    }
}
