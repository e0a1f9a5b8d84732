use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::node::memory::MemNode;
use crate::node::{Content, ContentLock, PutSink, PutStart, Removed, Stored, Validity};
use crate::session::server::{Fatal, ServerMode};
use crate::session::testing::{fixture, key_of};
use crate::types::backend::Verifier;
use crate::types::key::key_file;
use crate::types::{AssociatedFile, Key};

const U: &str = "de2c220a-31f0-4f79-a0cf-2ae34a0559b9";

fn uuid() -> Uuid {
    Uuid::parse(U).unwrap()
}

fn options() -> ServeOptions {
    ServeOptions::new(ServerConfig::shell(uuid(), ServerMode::ReadWrite))
}

/// Bytes that are not all alike, so misplaced chunks show.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

// ---- a client over in-memory pipes ----

struct Client {
    to_server: DuplexStream,
    from_server: DuplexStream,
    buf: Vec<u8>,
}

impl Client {
    async fn send(&mut self, bytes: &[u8]) {
        self.to_server.write_all(bytes).await.unwrap();
    }
    async fn line(&mut self, l: &str) {
        self.send(format!("{l}\n").as_bytes()).await;
    }
    async fn fill(&mut self, want: usize) -> bool {
        while self.buf.len() < want {
            let mut chunk = vec![0u8; 64 * 1024];
            let n = self.from_server.read(&mut chunk).await.unwrap();
            if n == 0 {
                return false;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        true
    }
    /// The next line from the server, without its newline.
    async fn reply(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let l: Vec<u8> = self.buf.drain(..=i).collect();
                return String::from_utf8_lossy(&l[..i]).into_owned();
            }
            let have = self.buf.len();
            if !self.fill(have + 1).await {
                panic!(
                    "server closed; pending {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }
    async fn expect(&mut self, l: &str) {
        assert_eq!(self.reply().await, l);
    }
    async fn bytes(&mut self, n: usize) -> Vec<u8> {
        assert!(self.fill(n).await, "server closed inside DATA");
        self.buf.drain(..n).collect()
    }
    /// Everything until the server closes.
    async fn rest(mut self) -> Vec<u8> {
        drop(self.to_server);
        self.from_server.read_to_end(&mut self.buf).await.unwrap();
        self.buf
    }
}

fn start<F: NodeFactory + 'static>(
    options: ServeOptions,
    factory: F,
) -> (
    Client,
    tokio::task::JoinHandle<Result<ServeOutcome, ConnError>>,
) {
    let (c_w, s_r) = tokio::io::duplex(64 * 1024);
    let (s_w, c_r) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(serve(s_r, s_w, options, factory));
    (
        Client {
            to_server: c_w,
            from_server: c_r,
            buf: Vec::new(),
        },
        task,
    )
}

fn mem() -> MemNode {
    MemNode::new(uuid(), "mem")
}

fn node(n: &MemNode) -> Arc<dyn Node> {
    Arc::new(n.clone())
}

// ---- the transcripts, through the real driver ----

#[tokio::test]
async fn plain_transcripts_through_the_driver() {
    let hello = b"hello world\n";
    let key = key_of(hello, ".txt");
    for (file, present) in [
        ("10-plain-put.txt", false),
        ("11-plain-get.txt", true),
        ("12-plain-drop.txt", true),
        ("30-node-put.txt", false),
        ("31-node-drop.txt", true),
        ("40-local-drop-locks-cluster.txt", true),
        ("41-node-drop-locking-others.txt", true),
    ] {
        for ex in fixture(file) {
            let n = MemNode::new(ex.served.clone(), "mem");
            n.set_time(3377);
            if present {
                n.insert(key.clone(), hello.to_vec());
            }
            // Small buffers, to exercise refills.
            let mut o = ServeOptions::new(ServerConfig::shell(
                ex.served.clone(),
                ServerMode::ReadWrite,
            ));
            o.buffer_size = 1;
            let (mut c, task) = start(o, node(&n));
            c.send(&ex.client).await;
            let out = c.rest().await;
            let outcome = task.await.unwrap().unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&ex.server),
                "{}",
                ex.name
            );
            assert_eq!(outcome.exit_code(), 0, "{}", ex.name);
            if file == "10-plain-put.txt" {
                assert_eq!(n.content(&key).as_deref(), Some(&hello[..]));
            }
        }
    }
}

// ---- end to end ----

#[tokio::test]
async fn put_and_get_a_large_object_in_chunks() {
    let data = pattern(3 * 1024 * 1024 + 17);
    let key = key_of(&data, ".bin");
    let n = mem();
    let (mut c, task) = start(options(), node(&n));
    c.expect(&format!("AUTH-SUCCESS {U}")).await;
    c.line("VERSION 4").await;
    c.expect("VERSION 4").await;
    c.line(&format!("PUT big.bin {key}")).await;
    c.expect("PUT-FROM 0").await;
    c.line(&format!("DATA {}", data.len())).await;
    for chunk in data.chunks(100_000) {
        c.send(chunk).await;
    }
    c.line("VALID").await;
    c.expect("SUCCESS").await;
    assert_eq!(n.content(&key).as_deref(), Some(&data[..]));

    c.line(&format!("GET 1000 big.bin {key}")).await;
    c.expect(&format!("DATA {}", data.len() - 1000)).await;
    let got = c.bytes(data.len() - 1000).await;
    assert!(got == data[1000..], "GET returned other bytes");
    c.expect("VALID").await;
    c.line("SUCCESS").await;
    c.line("GETTIMESTAMP").await;
    c.expect("TIMESTAMP 0").await;
    assert!(c.rest().await.is_empty());
    let outcome = task.await.unwrap().unwrap();
    assert_eq!(outcome.exit_code(), 0);
    assert_eq!(outcome.version, 4);
}

#[tokio::test]
async fn an_interrupted_upload_resumes_in_a_new_session() {
    let data = pattern(1024 * 1024);
    let key = key_of(&data, "");
    let n = mem();
    let (mut c, task) = start(options(), node(&n));
    c.expect(&format!("AUTH-SUCCESS {U}")).await;
    c.line("VERSION 4").await;
    c.expect("VERSION 4").await;
    c.line(&format!("PUT  {key}")).await;
    c.expect("PUT-FROM 0").await;
    c.line(&format!("DATA {}", data.len())).await;
    c.send(&data[..300_000]).await;
    // The client goes away mid-DATA.
    let tail = c.rest().await;
    assert_eq!(tail, b"FAILURE\n");
    let outcome = task.await.unwrap().unwrap();
    assert!(matches!(
        outcome.end,
        End::Failed(Fatal::ClientVanished { moved: 300_000, .. })
    ));
    assert_eq!(outcome.exit_code(), 1);
    assert!(outcome.message().unwrap().contains("300000 of 1048576"));
    assert_eq!(n.partial(&key).map(|p| p.len()), Some(300_000));
    assert!(n.content(&key).is_none());

    let (mut c, task) = start(options(), node(&n));
    c.expect(&format!("AUTH-SUCCESS {U}")).await;
    c.line("VERSION 4").await;
    c.expect("VERSION 4").await;
    c.line(&format!("PUT  {key}")).await;
    c.expect("PUT-FROM 300000").await;
    c.line(&format!("DATA {}", data.len() - 300_000)).await;
    c.send(&data[300_000..]).await;
    c.line("VALID").await;
    c.expect("SUCCESS").await;
    drop(c);
    assert_eq!(task.await.unwrap().unwrap().exit_code(), 0);
    assert_eq!(n.content(&key).as_deref(), Some(&data[..]));
}

#[tokio::test]
async fn a_lock_blocks_removal_from_another_session() {
    let key = key_of(b"locked", "");
    let n = mem();
    n.insert(key.clone(), b"locked".to_vec());
    let (mut a, ta) = start(options(), node(&n));
    let (mut b, tb) = start(options(), node(&n));
    for c in [&mut a, &mut b] {
        c.expect(&format!("AUTH-SUCCESS {U}")).await;
        c.line("VERSION 4").await;
        c.expect("VERSION 4").await;
    }
    a.line(&format!("LOCKCONTENT {key}")).await;
    a.expect("SUCCESS").await;
    b.line(&format!("REMOVE {key}")).await;
    b.expect("FAILURE").await;
    a.line("UNLOCKCONTENT").await;
    // No reply to UNLOCKCONTENT; a request after it shows it was taken.
    a.line(&format!("CHECKPRESENT {key}")).await;
    a.expect("SUCCESS").await;
    b.line(&format!("REMOVE {key}")).await;
    b.expect("SUCCESS").await;
    // A lock held when the client hangs up is released.
    n.insert(key.clone(), b"locked".to_vec());
    a.line(&format!("LOCKCONTENT {key}")).await;
    a.expect("SUCCESS").await;
    assert_eq!(n.lock_count(&key), 1);
    assert!(a.rest().await.is_empty());
    ta.await.unwrap().unwrap();
    assert_eq!(n.lock_count(&key), 0);
    b.line(&format!("REMOVE {key}")).await;
    b.expect("SUCCESS").await;
    drop(b);
    tb.await.unwrap().unwrap();
}

#[tokio::test]
async fn remove_before_against_the_node_clock() {
    let key = key_of(b"x", "");
    let n = mem();
    n.insert(key.clone(), b"x".to_vec());
    n.set_time(998);
    let (mut c, task) = start(options(), node(&n));
    c.expect(&format!("AUTH-SUCCESS {U}")).await;
    c.line("VERSION 3").await;
    c.expect("VERSION 3").await;
    c.line("GETTIMESTAMP").await;
    c.expect("TIMESTAMP 998").await;
    c.line(&format!("REMOVE-BEFORE 993 {key}")).await;
    c.expect("FAILURE").await;
    c.line(&format!("CHECKPRESENT {key}")).await;
    c.expect("SUCCESS").await;
    c.line(&format!("REMOVE-BEFORE 1598 {key}")).await;
    c.expect("SUCCESS").await;
    c.line(&format!("CHECKPRESENT {key}")).await;
    c.expect("FAILURE").await;
    drop(c);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn malformed_and_unknown_lines_keep_the_connection() {
    let (mut c, task) = start(options(), node(&mem()));
    c.expect(&format!("AUTH-SUCCESS {U}")).await;
    c.send(
        b"HELLO there\n\nCHECKPRESENT not-a-key\nGET x y z\nVERSION 4.5\nDATA 3\nabc\nVERSION 2\n",
    )
    .await;
    for _ in 0..5 {
        c.expect("ERROR unknown command").await;
    }
    c.expect("ERROR unexpected command").await; // DATA outside an upload
    c.expect("ERROR unknown command").await; // its payload, read as a line
    c.expect("VERSION 2").await;
    drop(c);
    assert_eq!(task.await.unwrap().unwrap().exit_code(), 0);
}

#[tokio::test]
async fn an_over_long_line_ends_the_session_with_a_reason() {
    let (mut c, task) = start(options(), node(&mem()));
    c.expect(&format!("AUTH-SUCCESS {U}")).await;
    // Never send a newline: the server must give up on its own.
    c.send(&vec![b'A'; 40_000]).await;
    let outcome = task.await.unwrap().unwrap();
    assert_eq!(outcome.exit_code(), 1);
    assert_eq!(outcome.end, End::Failed(Fatal::LineTooLong));
    assert!(outcome
        .message()
        .unwrap()
        .contains("longer than 32767 bytes"));
    assert!(c.rest().await.is_empty());
}

#[tokio::test]
async fn data_of_the_wrong_length_is_refused_without_touching_the_node() {
    let data = b"hello world\n";
    let key = key_of(data, ".txt");
    let n = mem();
    let (mut c, task) = start(options(), node(&n));
    c.expect(&format!("AUTH-SUCCESS {U}")).await;
    c.line("VERSION 4").await;
    c.expect("VERSION 4").await;
    for len in [5usize, 13, 100_000] {
        c.line(&format!("PUT  {key}")).await;
        c.expect("PUT-FROM 0").await;
        c.line(&format!("DATA {len}")).await;
        c.send(&vec![b'z'; len]).await;
        c.line("VALID").await;
        c.expect("FAILURE").await;
        assert!(n.partial(&key).is_none() && n.content(&key).is_none());
    }
    // The stream is still in step.
    c.line(&format!("CHECKPRESENT {key}")).await;
    c.expect("FAILURE").await;
    drop(c);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_factory_gets_the_version_and_bypass_and_is_called_once() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let n = mem();
    let factory = {
        let calls = calls.clone();
        let n = n.clone();
        FnFactory(move |version: u8, bypass: Vec<Uuid>| {
            calls.lock().unwrap().push((version, bypass));
            let node: Arc<dyn Node> = Arc::new(n.clone());
            async move { Ok::<_, NodeError>(node) }
        })
    };
    let (mut c, task) = start(options(), factory);
    c.expect(&format!("AUTH-SUCCESS {U}")).await;
    c.line("VERSION 3").await;
    c.expect("VERSION 3").await;
    c.line("BYPASS aaaa bbbb").await;
    c.line("GETTIMESTAMP").await;
    c.expect("TIMESTAMP 0").await;
    c.line("GETTIMESTAMP").await;
    c.expect("TIMESTAMP 0").await;
    drop(c);
    let outcome = task.await.unwrap().unwrap();
    let want = vec![Uuid::parse("aaaa").unwrap(), Uuid::parse("bbbb").unwrap()];
    assert_eq!(*calls.lock().unwrap(), vec![(3, want.clone())]);
    assert_eq!(outcome.bypass, want);
}

#[tokio::test]
async fn connect_ends_the_session_like_git_annex_shell() {
    let (mut c, task) = start(options(), node(&mem()));
    c.expect(&format!("AUTH-SUCCESS {U}")).await;
    c.line("CONNECT git-upload-pack").await;
    let outcome = task.await.unwrap().unwrap();
    assert_eq!(outcome.exit_code(), 1);
    assert_eq!(
        outcome.message().as_deref(),
        Some("relaying to git not supported on this connection")
    );
    assert!(c.rest().await.is_empty());
}

// ---- a file-backed node: zero-copy and key names ----

/// Stores content as files named by `key_file` in one directory.
struct FileNode {
    uuid: Uuid,
    dir: PathBuf,
    reads: Arc<AtomicU64>,
    advanced: Arc<AtomicU64>,
}

impl FileNode {
    fn new(dir: &Path) -> FileNode {
        std::fs::create_dir_all(dir.join("objects")).unwrap();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        FileNode {
            uuid: uuid(),
            dir: dir.to_path_buf(),
            reads: Arc::default(),
            advanced: Arc::default(),
        }
    }
    fn object(&self, key: &Key) -> PathBuf {
        let name = std::ffi::OsString::from(String::from_utf8(key_file(key)).unwrap());
        self.dir.join("objects").join(name)
    }
    fn tmp(&self, key: &Key) -> PathBuf {
        let name = std::ffi::OsString::from(String::from_utf8(key_file(key)).unwrap());
        self.dir.join("tmp").join(name)
    }
}

fn io_err(e: std::io::Error) -> NodeError {
    NodeError::io("test file", "", e)
}

struct FileContent {
    file: std::fs::File,
    pos: u64,
    len: u64,
    reads: Arc<AtomicU64>,
    advanced: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl Content for FileContent {
    fn len(&self) -> u64 {
        self.len
    }
    fn local_file(&self) -> Option<(&std::fs::File, u64)> {
        Some((&self.file, self.pos))
    }
    fn advance(&mut self, n: u64) {
        self.pos += n;
        self.advanced.fetch_add(n, Ordering::SeqCst);
    }
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NodeError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.file.seek(SeekFrom::Start(self.pos)).map_err(io_err)?;
        let n = self.file.read(buf).map_err(io_err)?;
        self.pos += n as u64;
        Ok(n)
    }
    async fn validity(&mut self) -> Result<Validity, NodeError> {
        Ok(Validity::Valid)
    }
    async fn done(self: Box<Self>, _ok: bool) -> Result<(), NodeError> {
        Ok(())
    }
}

struct FileSink {
    key: Key,
    tmp: PathBuf,
    object: PathBuf,
    file: std::fs::File,
    offset: u64,
}

#[async_trait::async_trait]
impl PutSink for FileSink {
    fn offset(&self) -> u64 {
        self.offset
    }
    async fn begin(&mut self, _len: u64) -> Result<(), NodeError> {
        Ok(())
    }
    async fn write(&mut self, data: &[u8]) -> Result<(), NodeError> {
        self.file.write_all(data).map_err(io_err)
    }
    async fn finish(self: Box<Self>, _v: Validity) -> Result<Stored, NodeError> {
        let data = std::fs::read(&self.tmp).map_err(io_err)?;
        let mut v = Verifier::new(&self.key, true);
        v.update(&data);
        if v.finish(&self.key) != crate::types::backend::Verdict::Good {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(NodeError::Verification {
                key: self.key.to_string(),
                detail: "mismatch".into(),
            });
        }
        std::fs::rename(&self.tmp, &self.object).map_err(io_err)?;
        Ok(Stored {
            stored: true,
            plus: vec![],
        })
    }
    async fn data_present(self: Box<Self>) -> Result<Stored, NodeError> {
        Ok(Stored {
            stored: self.object.exists(),
            plus: vec![],
        })
    }
    async fn abort(self: Box<Self>) {}
}

#[async_trait::async_trait]
impl Node for FileNode {
    fn uuid(&self) -> &Uuid {
        &self.uuid
    }
    fn name(&self) -> &str {
        "files"
    }
    async fn check_present(&self, key: &Key) -> Result<bool, NodeError> {
        Ok(self.object(key).exists())
    }
    async fn lock_content(&self, _key: &Key) -> Result<Option<Box<dyn ContentLock>>, NodeError> {
        Ok(None)
    }
    async fn get(
        &self,
        key: &Key,
        offset: u64,
        _af: &AssociatedFile,
    ) -> Result<Option<Box<dyn Content>>, NodeError> {
        let Ok(file) = std::fs::File::open(self.object(key)) else {
            return Ok(None);
        };
        let size = file.metadata().map_err(io_err)?.len();
        Ok(Some(Box::new(FileContent {
            file,
            pos: offset.min(size),
            len: size.saturating_sub(offset),
            reads: self.reads.clone(),
            advanced: self.advanced.clone(),
        })))
    }
    async fn put(&self, key: &Key, _af: &AssociatedFile) -> Result<PutStart, NodeError> {
        if self.object(key).exists() {
            return Ok(PutStart::AlreadyHave { plus: vec![] });
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.tmp(key))
            .map_err(io_err)?;
        let offset = file.metadata().map_err(io_err)?.len();
        Ok(PutStart::Accept(Box::new(FileSink {
            key: key.clone(),
            tmp: self.tmp(key),
            object: self.object(key),
            file,
            offset,
        })))
    }
    async fn remove(&self, key: &Key, _deadline: Option<u64>) -> Result<Removed, NodeError> {
        let _ = std::fs::remove_file(self.object(key));
        Ok(Removed {
            removed: true,
            ..Default::default()
        })
    }
    async fn timestamp(&self) -> Result<u64, NodeError> {
        Ok(0)
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn keys_that_look_like_paths_stay_single_file_names() {
    let top = tempfile::tempdir().unwrap();
    let store = top.path().join("store");
    let fnode = Arc::new(FileNode::new(&store));
    let (mut c, task) = start(options(), fnode.clone() as Arc<dyn Node>);
    c.expect(&format!("AUTH-SUCCESS {U}")).await;
    c.line("VERSION 4").await;
    c.expect("VERSION 4").await;
    let names = ["../../escape", "a/b/c", "..", "/etc/x", "%2F..%2F"];
    for name in names {
        let key = Key::from_str(&format!("WORM-s3--{name}")).unwrap();
        c.line(&format!("PUT ../x {key}")).await;
        // (an associated file is information only; ../x is relative, so it parses)
        c.expect("PUT-FROM 0").await;
        c.line("DATA 3").await;
        c.send(b"abcVALID\n").await;
        c.expect("SUCCESS").await;
        c.line(&format!("GET 0 x {key}")).await;
        c.expect("DATA 3").await;
        assert_eq!(c.bytes(3).await, b"abc");
        c.expect("VALID").await;
        c.line("SUCCESS").await;
    }
    drop(c);
    task.await.unwrap().unwrap();
    let files = files_under(top.path());
    assert_eq!(files.len(), names.len(), "{files:?}");
    for f in files {
        assert_eq!(
            f.parent().unwrap(),
            store.join("objects"),
            "{}",
            f.display()
        );
    }
}

async fn get_over_fds(
    input: OwnedFd,
    output: OwnedFd,
    mut client_in: std::fs::File,
    mut client_out: std::fs::File,
) {
    let data = pattern(5 * 1024 * 1024 + 3);
    let key = key_of(&data, ".bin");
    let dir = tempfile::tempdir().unwrap();
    let fnode = Arc::new(FileNode::new(dir.path()));
    std::fs::write(fnode.object(&key), &data).unwrap();
    let reads = fnode.reads.clone();
    let advanced = fnode.advanced.clone();
    let server = tokio::spawn(serve_fds(input, output, options(), fnode as Arc<dyn Node>));
    let want_len = data.len() - 10;
    let reader = std::thread::spawn(move || {
        writeln!(client_in, "VERSION 4\nGET 10 x {key}").unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let header_and_data =
            format!("AUTH-SUCCESS {U}\nVERSION 4\nDATA {want_len}\n").len() + want_len;
        while got.len() < header_and_data + "VALID\n".len() {
            let n = client_out.read(&mut buf).unwrap();
            assert!(n > 0, "server closed early");
            got.extend_from_slice(&buf[..n]);
        }
        client_in.write_all(b"SUCCESS\n").unwrap();
        drop(client_in);
        got
    });
    let got = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    let outcome = server.await.unwrap().unwrap();
    assert_eq!(outcome.exit_code(), 0);
    let head = format!("AUTH-SUCCESS {U}\nVERSION 4\nDATA {want_len}\n");
    assert!(got.starts_with(head.as_bytes()));
    assert!(
        got[head.len()..head.len() + want_len] == data[10..],
        "payload differs"
    );
    assert_eq!(&got[head.len() + want_len..], b"VALID\n");
    // Every byte went by sendfile: the content was never read into memory.
    assert_eq!(reads.load(Ordering::SeqCst), 0);
    assert_eq!(advanced.load(Ordering::SeqCst), want_len as u64);
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

#[tokio::test]
async fn zero_copy_get_into_a_pipe() {
    let (server_in, client_in) = pipe();
    let (client_out, server_out) = pipe();
    get_over_fds(server_in.into(), server_out.into(), client_in, client_out).await;
}

#[tokio::test]
async fn zero_copy_get_into_a_socket() {
    let (server, client) = std::os::unix::net::UnixStream::pair().unwrap();
    let server_w = server.try_clone().unwrap();
    let client_w = client.try_clone().unwrap();
    let to_file = |s: std::os::unix::net::UnixStream| std::fs::File::from(OwnedFd::from(s));
    get_over_fds(
        server.into(),
        server_w.into(),
        to_file(client_w),
        to_file(client),
    )
    .await;
}

#[tokio::test]
async fn a_regular_file_as_input_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let data = b"hello world";
    let key = key_of(data, ".txt");
    let script = dir.path().join("in");
    let mut input = format!("VERSION 4\nPUT x {key}\nDATA 11\n").into_bytes();
    input.extend_from_slice(data);
    input.extend_from_slice(format!("VALID\nGET 0 x {key}\nSUCCESS\n").as_bytes());
    std::fs::write(&script, &input).unwrap();
    let out_path = dir.path().join("out");
    let i = std::fs::File::open(&script).unwrap();
    let o = std::fs::File::create(&out_path).unwrap();
    let n = mem();
    let outcome = serve_fds(i.into(), o.into(), options(), node(&n))
        .await
        .unwrap();
    assert_eq!(outcome.exit_code(), 0);
    assert_eq!(
        std::fs::read_to_string(&out_path).unwrap(),
        format!("AUTH-SUCCESS {U}\nVERSION 4\nPUT-FROM 0\nSUCCESS\nDATA 11\nhello worldVALID\n")
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_a_clean_end() {
    let data = pattern(8 * 1024 * 1024);
    let key = key_of(&data, "");
    let n = mem();
    n.insert(key.clone(), data);
    let (mut c, task) = start(options(), node(&n));
    c.expect(&format!("AUTH-SUCCESS {U}")).await;
    c.line(&format!("GET 0 x {key}")).await;
    c.expect(&format!("DATA {}", 8 * 1024 * 1024)).await;
    let _ = c.bytes(1000).await;
    drop(c); // both directions gone mid-transfer
    let outcome = task.await.unwrap().unwrap();
    assert_eq!(outcome.exit_code(), 0);
}
