//! Directory against the real git-annex (the oracle): remotes made by `git annex
//! initremote type=directory`, content stored by git-annex read by us (whole and chunked,
//! from any offset), content stored by us accepted by `git annex fsck --from` and
//! `git annex get --from`, removals seen by `git annex checkpresentkey`; then resume,
//! verification failures, disk reserve, hostile keys and an unmounted directory.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use super::*;
use crate::node::{LocationSink, Node, NodeError, PutStart, Stored, Validity};
use crate::types::backend::{hash_hex, HashKind};
use crate::types::hashdir::hash_dir_lower;

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, String, bool)>>);

impl LocationSink for Recorder {
    fn record(&self, key: &Key, uuid: &Uuid, present: bool) {
        self.0
            .lock()
            .unwrap()
            .push((key.to_text().into_owned(), uuid.to_string(), present));
    }
}

impl Recorder {
    fn events(&self) -> Vec<(String, String, bool)> {
        self.0.lock().unwrap().clone()
    }
}

fn tools_dir() -> PathBuf {
    let tools = std::env::var_os("ANNEXGATE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools"));
    assert!(
        tools.join("bin/git-annex").exists(),
        "git-annex is missing from {}: run scripts/setup or set ANNEXGATE_TOOLS",
        tools.display()
    );
    tools
}

/// A git-annex repository `r` with two directory special remotes: `d` (whole files) and
/// `c` (`chunk=1KiB`).
struct Fx {
    tmp: tempfile::TempDir,
    tools: PathBuf,
    repo: PathBuf,
    d_dir: PathBuf,
    c_dir: PathBuf,
}

struct Opened {
    node: Directory,
    rec: Arc<Recorder>,
    log: Arc<MemoryChunkLog>,
    uuid: Uuid,
}

impl Fx {
    fn new() -> Fx {
        let tools = tools_dir();
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::write(
            home.join(".gitconfig"),
            "[user]\n\tname = annexgate test\n\temail = test@annexgate.invalid\n[init]\n\tdefaultBranch = main\n",
        )
        .unwrap();
        let repo = tmp.path().join("r");
        let d_dir = tmp.path().join("store-d");
        let c_dir = tmp.path().join("store-c");
        std::fs::create_dir(&d_dir).unwrap();
        std::fs::create_dir(&c_dir).unwrap();
        let fx = Fx {
            tmp,
            tools,
            repo,
            d_dir,
            c_dir,
        };
        fx.run(
            fx.tmp.path(),
            "git",
            &["init", "-q", fx.repo.to_str().unwrap()],
        );
        fx.git(&["annex", "init", "-q", "r"]);
        let d = format!("directory={}", fx.d_dir.display());
        let c = format!("directory={}", fx.c_dir.display());
        fx.git(&[
            "annex",
            "initremote",
            "-q",
            "d",
            "type=directory",
            &d,
            "encryption=none",
        ]);
        fx.git(&[
            "annex",
            "initremote",
            "-q",
            "c",
            "type=directory",
            &c,
            "encryption=none",
            "chunk=1KiB",
        ]);
        fx
    }

    fn cmd(&self, prog: &str, dir: &Path) -> Command {
        let mut c = Command::new(prog);
        let path = format!(
            "{}:{}",
            self.tools.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.current_dir(dir)
            .env("HOME", self.tmp.path().join("home"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("PATH", path)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .stdin(Stdio::null());
        let magic = self.tools.join("pypi/git_annex/magic.mgc");
        if magic.exists() {
            c.env("MAGIC", magic);
        }
        c
    }

    fn output(&self, dir: &Path, prog: &str, args: &[&str]) -> Output {
        self.cmd(prog, dir)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"))
    }

    fn run(&self, dir: &Path, prog: &str, args: &[&str]) -> String {
        let o = self.output(dir, prog, args);
        assert!(
            o.status.success(),
            "{prog} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    fn git(&self, args: &[&str]) -> String {
        self.run(&self.repo, "git", args)
    }

    fn git_status(&self, args: &[&str]) -> Output {
        self.output(&self.repo, "git", args)
    }

    /// Add a file to the annex; its key.
    fn add(&self, name: &str, data: &[u8]) -> Key {
        std::fs::write(self.repo.join(name), data).unwrap();
        self.git(&["annex", "add", "-q", name]);
        self.git(&["commit", "-q", "-m", name]);
        Key::from_str(self.git(&["annex", "lookupkey", name]).trim()).unwrap()
    }

    fn uuid_of(&self, remote: &str) -> Uuid {
        Uuid::parse(
            self.git(&["config", &format!("remote.{remote}.annex-uuid")])
                .trim(),
        )
        .unwrap()
    }

    /// A git-annex branch file, or "" when it does not exist.
    fn branch_file(&self, path: &str) -> String {
        let o = self.git_status(&["cat-file", "-p", &format!("git-annex:{path}")]);
        String::from_utf8(o.stdout).unwrap()
    }

    fn chunk_log_path(key: &Key) -> String {
        format!("{}{}.log.cnk", hash_dir_lower(key), key)
    }

    /// Open remote `remote` as git-annex configured it: its remote.log fields and the
    /// `remote.<name>.annex-directory` git config; the chunk log of `keys` loaded from the
    /// git-annex branch.
    fn open(
        &self,
        remote: &str,
        keys: &[&Key],
        tweak: impl FnOnce(&mut DirectoryConfig),
    ) -> Opened {
        let uuid = self.uuid_of(remote);
        let remote_log = self.branch_file("remote.log");
        let line = remote_log
            .lines()
            .find(|l| l.starts_with(uuid.as_str()))
            .expect("remote.log line");
        let fields: BTreeMap<String, String> = line
            .split(' ')
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let dir = self.git(&["config", &format!("remote.{remote}.annex-directory")]);
        let mut cfg = DirectoryConfig::from_remote_config(
            uuid.clone(),
            &fields,
            Some(PathBuf::from(dir.trim())),
        )
        .unwrap();
        cfg.disk_reserve = 0;
        tweak(&mut cfg);
        let log = Arc::new(MemoryChunkLog::new());
        for key in keys {
            for l in self.branch_file(&Fx::chunk_log_path(key)).lines() {
                // `T UUID:SIZE COUNT`
                let mut parts = l.split(' ');
                let _t = parts.next();
                let (u, size) = parts.next().unwrap().split_once(':').unwrap();
                let count: u64 = parts.next().unwrap().parse().unwrap();
                log.record_chunks(&Uuid::parse(u).unwrap(), key, size.parse().unwrap(), count);
            }
        }
        let rec = Arc::new(Recorder::default());
        Opened {
            node: Directory::new(cfg, rec.clone(), log.clone()),
            rec,
            log,
            uuid,
        }
    }

    /// Tell git-annex what annexgate's branch writer would: `uuid` has `key`, stored in
    /// these chunkings. Committed to a sibling branch `gw/git-annex`, which git-annex
    /// merges as it merges a pushed branch.
    fn tell_git_annex(&self, key: &Key, uuid: &Uuid, chunks: &[(u64, u64)]) {
        self.git(&[
            "annex",
            "setpresentkey",
            &key.to_string(),
            uuid.as_str(),
            "1",
        ]);
        if chunks.is_empty() {
            return;
        }
        let path = Fx::chunk_log_path(key);
        let mut text = self.branch_file(&path);
        for (size, count) in chunks {
            // The chunk log's line format: `T UUID:SIZE COUNT`, T after every other line.
            text.push_str(&format!("1999999999s {uuid}:{size} {count}\n"));
        }
        let idx = self.tmp.path().join("gw-index");
        let env_git = |args: &[&str], stdin: Option<&str>| -> String {
            let mut c = self.cmd("git", &self.repo);
            c.env("GIT_INDEX_FILE", &idx).args(args);
            if stdin.is_some() {
                c.stdin(Stdio::piped());
            }
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child = c.spawn().unwrap();
            if let Some(s) = stdin {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
            }
            let o = child.wait_with_output().unwrap();
            assert!(
                o.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8(o.stdout).unwrap().trim().to_string()
        };
        env_git(&["read-tree", "git-annex"], None);
        let blob = env_git(&["hash-object", "-w", "--stdin"], Some(&text));
        env_git(
            &[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("100644,{blob},{path}"),
            ],
            None,
        );
        let tree = env_git(&["write-tree"], None);
        let commit = env_git(
            &["commit-tree", &tree, "-p", "git-annex", "-m", "chunk log"],
            None,
        );
        env_git(&["update-ref", "refs/remotes/gw/git-annex", &commit], None);
    }

    /// git-annex's own presence check of `key` on `remote`.
    fn git_annex_sees(&self, key: &Key, remote: &str) -> bool {
        let o = self.git_status(&["annex", "checkpresentkey", &key.to_string(), remote]);
        match o.status.code() {
            Some(0) => true,
            Some(1) => false,
            _ => panic!(
                "checkpresentkey failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
        }
    }
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn sha256e(data: &[u8], ext: &str) -> Key {
    Key::from_str(&format!(
        "SHA256E-s{}--{}{}",
        data.len(),
        hash_hex(HashKind::Sha2_256, data),
        ext
    ))
    .unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

async fn read_all(node: &Directory, key: &Key, offset: u64) -> Option<(Vec<u8>, Validity)> {
    let mut c = node
        .get(key, offset, &AssociatedFile::none())
        .await
        .unwrap()?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 700];
    loop {
        let n = c.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(out.len() as u64, c.len(), "len() matches the bytes sent");
    let v = c.validity().await.unwrap();
    c.done(true).await.unwrap();
    Some((out, v))
}

/// Upload `data` from whatever offset the node asks, in pieces of `step` bytes.
async fn put_bytes(
    node: &Directory,
    key: &Key,
    data: &[u8],
    validity: Validity,
) -> Result<Stored, NodeError> {
    match node.put(key, &AssociatedFile::new("f")).await? {
        PutStart::AlreadyHave { .. } => panic!("unexpected ALREADY-HAVE for {key}"),
        PutStart::Accept(mut sink) => {
            let off = sink.offset() as usize;
            sink.begin((data.len() - off) as u64).await?;
            for piece in data[off..].chunks(333) {
                sink.write(piece).await?;
            }
            sink.finish(validity).await
        }
    }
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn reads_what_git_annex_stored_whole_and_chunked() {
    let fx = Fx::new();
    let big = data(2500, 1);
    let kb = fx.add("big.bin", &big);
    let ke = fx.add("empty", b"");
    let exact = data(2048, 2);
    let kx = fx.add("exact.bin", &exact);
    fx.git(&["annex", "copy", "-q", "--to", "d", "."]);
    fx.git(&["annex", "copy", "-q", "--to", "c", "."]);

    let d = fx.open("d", &[], |_| {});
    assert_eq!(d.node.config().chunk, None);
    let c = fx.open("c", &[&kb, &ke, &kx], |_| {});
    assert_eq!(c.node.config().chunk, Some(1024));
    assert_eq!(c.log.chunks(&c.uuid, &kb), vec![(1024, 3)]);

    for o in [&d, &c] {
        for (k, bytes) in [(&kb, &big[..]), (&ke, &b""[..]), (&kx, &exact[..])] {
            assert!(o.node.check_present(k).await.unwrap(), "{k}");
            for off in [0u64, 1, 700, 1023, 1024, 1025, 2047, 2048, 2499, 2500, 9999] {
                let (got, v) = read_all(&o.node, k, off).await.unwrap();
                let from = (off as usize).min(bytes.len());
                assert_eq!(got, &bytes[from..], "{k} from {off}");
                assert_eq!(v, Validity::Valid);
            }
        }
        let absent = sha256e(b"never stored", "");
        assert!(!o.node.check_present(&absent).await.unwrap());
        assert!(read_all(&o.node, &absent, 0).await.is_none());
    }
    // Whole files can go out zero-copy; chunked content cannot.
    let whole = d
        .node
        .get(&kb, 5, &AssociatedFile::none())
        .await
        .unwrap()
        .unwrap();
    let (f, at) = whole.local_file().expect("a local file");
    assert_eq!(at, 5);
    assert_eq!(f.metadata().unwrap().len(), 2500);
    let chunked = c
        .node
        .get(&kb, 5, &AssociatedFile::none())
        .await
        .unwrap()
        .unwrap();
    assert!(chunked.local_file().is_none());
    assert_eq!(chunked.len(), 2495);

    // Without the chunk log, the chunks the current setting makes are found by guessing
    // (as git-annex does), and then recorded.
    let guess = fx.open("c", &[], |_| {});
    assert!(guess.log.chunks(&guess.uuid, &kb).is_empty());
    assert!(guess.node.check_present(&kb).await.unwrap());
    assert_eq!(guess.log.chunks(&guess.uuid, &kb), vec![(1024, 3)]);
    // A different chunk size in the log does not make git-annex's chunks vanish either.
    let other = fx.open("c", &[], |cfg| cfg.chunk = Some(4096));
    assert!(!other.node.check_present(&kb).await.unwrap());
    other.log.record_chunks(&other.uuid, &kb, 1024, 3);
    assert!(other.node.check_present(&kb).await.unwrap());
    assert_eq!(read_all(&other.node, &kb, 3).await.unwrap().0, &big[3..]);
    // Nothing was reported: reading changes nothing.
    assert!(c.rec.events().is_empty() && d.rec.events().is_empty());
}

#[tokio::test]
async fn git_annex_accepts_what_we_store() {
    let fx = Fx::new();
    let big = data(2500, 3);
    let kb = fx.add("big.bin", &big);
    let small = b"hello world\n".to_vec();
    let ks = fx.add("small.txt", &small);
    let ke = fx.add("empty", b"");
    fx.git(&["annex", "drop", "-q", "--force", "."]);

    // Whole files in d.
    let d = fx.open("d", &[], |_| {});
    for (k, bytes) in [(&kb, &big), (&ks, &small), (&ke, &Vec::new())] {
        let st = put_bytes(&d.node, k, bytes, Validity::Valid).await.unwrap();
        assert!(st.stored, "{k}");
        let obj = d.node.object_path(k).unwrap();
        assert!(obj.starts_with(fx.d_dir.join(hash_dir_lower(k))), "{obj:?}");
        assert_eq!(std::fs::read(&obj).unwrap(), *bytes);
        assert_eq!(mode(&obj) & 0o222, 0, "content is read-only");
        assert_eq!(mode(obj.parent().unwrap()) & 0o222, 0, "its directory too");
        fx.tell_git_annex(k, &d.uuid, &[]);
        assert!(fx.git_annex_sees(k, "d"));
    }
    assert_eq!(
        d.rec.events(),
        [&kb, &ks, &ke]
            .iter()
            .map(|k| (k.to_string(), d.uuid.to_string(), true))
            .collect::<Vec<_>>()
    );
    // Nothing but the content (and the empty temp area) is left behind.
    let left: Vec<String> = files_under(&fx.d_dir)
        .into_iter()
        .filter(|f| !f.starts_with("tmp/"))
        .collect();
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(files_under(&fx.d_dir.join("tmp")).is_empty());
    fx.git(&["annex", "fsck", "-q", "--from", "d", "."]);
    fx.git(&["annex", "get", "-q", "--from", "d", "."]);
    assert_eq!(std::fs::read(fx.repo.join("big.bin")).unwrap(), big);
    assert_eq!(std::fs::read(fx.repo.join("small.txt")).unwrap(), small);
    fx.git(&["annex", "drop", "-q", "--force", "."]);

    // Chunked, with a chunk size git-annex's setting (1KiB) would not guess: git-annex
    // can only find the chunks through the chunk log we recorded.
    let c = fx.open("c", &[], |cfg| cfg.chunk = Some(700));
    for (k, bytes) in [(&kb, &big), (&ks, &small), (&ke, &Vec::new())] {
        let st = put_bytes(&c.node, k, bytes, Validity::Valid).await.unwrap();
        assert!(st.stored, "{k}");
        let rec = c.log.chunks(&c.uuid, k);
        let count = bytes.len().div_ceil(700).max(1) as u64;
        assert_eq!(rec, vec![(700, count)], "{k}");
        for n in 1..=count {
            let ck = k.chunk(700, n);
            let p = fx
                .c_dir
                .join(hash_dir_lower(k))
                .join(ck.to_string())
                .join(ck.to_string());
            let from = (n as usize - 1) * 700;
            let to = (from + 700).min(bytes.len());
            assert_eq!(std::fs::read(&p).unwrap(), &bytes[from..to], "{p:?}");
        }
        assert!(!fx.git_annex_sees(k, "c"), "no chunk log yet: {k}");
        fx.tell_git_annex(k, &c.uuid, &rec);
        assert!(fx.git_annex_sees(k, "c"), "{k}");
    }
    fx.git(&["annex", "fsck", "-q", "--from", "c", "."]);
    fx.git(&["annex", "get", "-q", "--from", "c", "."]);
    assert_eq!(std::fs::read(fx.repo.join("big.bin")).unwrap(), big);
    assert_eq!(std::fs::read(fx.repo.join("empty")).unwrap(), b"");
    // And we read back our own chunks from any offset.
    for off in [0, 699, 700, 1400, 2499, 2500] {
        assert_eq!(
            read_all(&c.node, &kb, off).await.unwrap().0,
            &big[off as usize..]
        );
    }
    // A second upload of present content is refused as ALREADY-HAVE.
    assert!(matches!(
        c.node.put(&kb, &AssociatedFile::none()).await.unwrap(),
        PutStart::AlreadyHave { .. }
    ));
}

#[tokio::test]
async fn removal_is_seen_by_git_annex() {
    let fx = Fx::new();
    let big = data(2500, 4);
    let kb = fx.add("big.bin", &big);
    let ks = fx.add("small.txt", b"small\n");
    fx.git(&["annex", "copy", "-q", "--to", "d", "."]);
    fx.git(&["annex", "copy", "-q", "--to", "c", "."]);
    for (remote, dir) in [("d", &fx.d_dir), ("c", &fx.c_dir)] {
        let o = fx.open(remote, &[&kb, &ks], |_| {});
        for k in [&kb, &ks] {
            assert!(fx.git_annex_sees(k, remote));
            let r = o.node.remove(k, None).await.unwrap();
            assert!(r.removed);
            assert!(!o.node.check_present(k).await.unwrap());
            assert!(!fx.git_annex_sees(k, remote), "{remote} {k}");
            // Removing what is absent succeeds too, and reports nothing new.
            assert!(o.node.remove(k, None).await.unwrap().removed);
        }
        assert_eq!(
            o.rec.events(),
            vec![
                (kb.to_string(), o.uuid.to_string(), false),
                (ks.to_string(), o.uuid.to_string(), false)
            ]
        );
        // Empty hash directories are pruned; the remote's directory stays.
        let mut left: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec!["tmp".to_string()], "{remote}");
        if remote == "c" {
            assert_eq!(o.log.chunks(&o.uuid, &kb), vec![(1024, 0)]);
        }
        // git-annex's fsck agrees: it finds the content gone (and fixes its log).
        let out = fx.git_status(&["annex", "fsck", "--fast", "--from", remote, "."]);
        assert!(!out.status.success());
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("not present") || text.contains("fixing location log"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn resumes_a_broken_upload_whole_and_chunked() {
    let fx = Fx::new();
    let big = data(3000, 5);
    let kb = fx.add("big.bin", &big);
    fx.git(&["annex", "drop", "-q", "--force", "."]);
    for (remote, cut) in [("d", 1234usize), ("c", 2100usize)] {
        let o = fx.open(remote, &[], |_| {});
        let PutStart::Accept(mut sink) = o.node.put(&kb, &AssociatedFile::none()).await.unwrap()
        else {
            panic!("accept expected")
        };
        assert_eq!(sink.offset(), 0);
        sink.begin(big.len() as u64).await.unwrap();
        sink.write(&big[..cut]).await.unwrap();
        // While it runs, another upload of the key is refused as busy.
        let busy = o.node.put(&kb, &AssociatedFile::none()).await.unwrap_err();
        assert!(matches!(busy, NodeError::Busy { .. }), "{busy:?}");
        sink.abort().await;
        assert!(!o.node.check_present(&kb).await.unwrap());
        assert!(!fx.git_annex_sees(&kb, remote));
        // The next upload continues where the first broke off.
        let PutStart::Accept(mut sink) = o.node.put(&kb, &AssociatedFile::none()).await.unwrap()
        else {
            panic!("accept expected")
        };
        assert_eq!(sink.offset(), cut as u64, "{remote}");
        // DATA 0 + INVALID: the sender could not read; nothing stored, partial kept.
        sink.begin(0).await.unwrap();
        assert!(!sink.finish(Validity::Invalid).await.unwrap().stored);
        let st = put_bytes(&o.node, &kb, &big, Validity::Valid)
            .await
            .unwrap();
        assert!(st.stored);
        assert!(o.node.check_present(&kb).await.unwrap());
        let chunks = o.log.chunks(&o.uuid, &kb);
        if remote == "c" {
            assert_eq!(chunks, vec![(1024, 3)]);
        }
        fx.tell_git_annex(&kb, &o.uuid, &chunks);
        fx.git(&["annex", "fsck", "-q", "--from", remote, "big.bin"]);
        assert!(files_under(&o.node.config().dir.join("tmp")).is_empty());
    }
}

#[tokio::test]
async fn bad_content_never_becomes_visible() {
    let fx = Fx::new();
    let good = data(2500, 6);
    let key = sha256e(&good, ".bin");
    let mut bad = good.clone();
    bad[2000] ^= 1;
    for remote in ["d", "c"] {
        let o = fx.open(remote, &[], |_| {});
        for v in [Validity::Valid, Validity::Invalid, Validity::Unknown] {
            let st = put_bytes(&o.node, &key, &bad, v).await.unwrap();
            assert!(!st.stored, "{remote} {v:?}");
            assert!(!o.node.check_present(&key).await.unwrap());
            // Nothing visible, nothing kept to resume from.
            let dir = &o.node.config().dir;
            let files = files_under(dir);
            assert!(files.is_empty(), "{remote}: {files:?}");
        }
        // A resumed upload whose kept prefix is wrong fails as a whole, then succeeds.
        let PutStart::Accept(mut sink) = o.node.put(&key, &AssociatedFile::none()).await.unwrap()
        else {
            panic!()
        };
        sink.begin(2500).await.unwrap();
        sink.write(&bad[..2100]).await.unwrap();
        sink.abort().await;
        let st = put_bytes(&o.node, &key, &good, Validity::Valid)
            .await
            .unwrap();
        assert!(!st.stored, "the kept bytes were wrong");
        let st = put_bytes(&o.node, &key, &good, Validity::Valid)
            .await
            .unwrap();
        assert!(st.stored);
        assert!(o
            .log
            .chunks(&o.uuid, &key)
            .iter()
            .all(|c| remote == "c" && *c == (1024, 3)));
        assert_eq!(o.rec.events().len(), 1);
        // Too much data is a protocol error.
        let k2 = sha256e(b"abc", "");
        let PutStart::Accept(mut sink) = o.node.put(&k2, &AssociatedFile::none()).await.unwrap()
        else {
            panic!()
        };
        sink.begin(3).await.unwrap();
        assert!(matches!(
            sink.write(b"abcd").await,
            Err(NodeError::Protocol { .. })
        ));
        sink.abort().await;
    }
}

#[tokio::test]
async fn refuses_without_the_disk_reserve() {
    let fx = Fx::new();
    let o = fx.open("d", &[], |cfg| cfg.disk_reserve = u64::MAX / 4);
    let key = sha256e(b"some content", "");
    let err = o.node.put(&key, &AssociatedFile::none()).await.unwrap_err();
    match err {
        NodeError::Full {
            needed, available, ..
        } => {
            assert!(needed > available);
            assert_eq!(needed, u64::MAX / 4 + 12);
        }
        e => panic!("expected Full, got {e:?}"),
    }
    assert!(files_under(&fx.d_dir).is_empty());
    // With the default reserve on a roomy disk, the same upload goes through.
    let o = fx.open("d", &[], |cfg| cfg.disk_reserve = 1000);
    assert!(
        put_bytes(&o.node, &key, b"some content", Validity::Valid)
            .await
            .unwrap()
            .stored
    );
}

#[tokio::test]
async fn hostile_keys_stay_inside_and_deadlines_hold() {
    let fx = Fx::new();
    for remote in ["d", "c"] {
        let o = fx.open(remote, &[], |_| {});
        let dir = o.node.config().dir.clone();
        for name in ["../../../escape", "/abs/path", ".."] {
            let bytes = b"evil".to_vec();
            let key = Key::from_str(&format!("WORM-s4-m1--{name}")).unwrap();
            let st = put_bytes(&o.node, &key, &bytes, Validity::Valid)
                .await
                .unwrap();
            assert!(st.stored);
            // In the chunked remote the one chunk is the file.
            let probe = if remote == "c" {
                key.chunk(1024, 1)
            } else {
                key.clone()
            };
            let p = o.node.object_path(&probe).unwrap();
            assert!(p.starts_with(&dir), "{p:?}");
            assert!(p.exists());
            assert_eq!(read_all(&o.node, &key, 0).await.unwrap().0, bytes);
            assert!(o.node.remove(&key, None).await.unwrap().removed);
            assert!(!p.exists());
        }
        assert!(!fx.tmp.path().join("escape").exists());
        let long = Key::from_str(&format!("WORM-s1-m1--{}", "x".repeat(250))).unwrap();
        assert!(matches!(
            o.node.put(&long, &AssociatedFile::none()).await,
            Err(NodeError::BadKey { .. })
        ));
        assert!(!o.node.check_present(&long).await.unwrap());
        assert!(o.node.remove(&long, None).await.unwrap().removed);

        // REMOVE-BEFORE on this machine's clock: a past deadline keeps the content.
        let key = sha256e(b"keep me", "");
        assert!(
            put_bytes(&o.node, &key, b"keep me", Validity::Valid)
                .await
                .unwrap()
                .stored
        );
        let now = o.node.timestamp().await.unwrap();
        assert!(now > 0);
        let r = o.node.remove(&key, Some(now)).await.unwrap();
        assert!(!r.removed);
        assert!(o.node.check_present(&key).await.unwrap());
        assert!(o.node.remove(&key, Some(now + 600)).await.unwrap().removed);
        assert!(!o.node.check_present(&key).await.unwrap());
        assert!(o.node.lock_content(&key).await.unwrap().is_none());
        assert_eq!(
            o.node.caps(),
            crate::node::Caps {
                lock: false,
                remove_before: true,
                resume: true
            }
        );
    }
}

#[tokio::test]
async fn a_missing_directory_is_an_error_not_absence() {
    let fx = Fx::new();
    let big = data(1500, 7);
    let kb = fx.add("big.bin", &big);
    fx.git(&["annex", "copy", "-q", "--to", "c", "."]);
    let o = fx.open("c", &[&kb], |_| {});
    assert!(o.node.check_present(&kb).await.unwrap());
    let absent = sha256e(b"absent", "");
    // The drive is unmounted.
    let away = fx.tmp.path().join("unmounted");
    std::fs::rename(&fx.c_dir, &away).unwrap();
    for k in [&kb, &absent] {
        assert!(o.node.check_present(k).await.is_err(), "{k}");
        assert!(o.node.remove(k, None).await.is_err(), "{k}");
        assert!(
            o.node.get(k, 0, &AssociatedFile::none()).await.is_err(),
            "{k}"
        );
        assert!(o.node.put(k, &AssociatedFile::none()).await.is_err(), "{k}");
    }
    assert!(!fx.c_dir.exists(), "nothing recreated the mount point");
    assert!(o.rec.events().is_empty());
    assert_eq!(o.log.chunks(&o.uuid, &kb), vec![(1024, 2)]);
    // Mounted again, all is as before.
    std::fs::rename(&away, &fx.c_dir).unwrap();
    assert!(o.node.check_present(&kb).await.unwrap());
    assert!(!o.node.check_present(&absent).await.unwrap());
}

/// A directory remote without git-annex around (for what needs no oracle).
fn plain(
    chunk: Option<u64>,
) -> (
    tempfile::TempDir,
    Directory,
    Arc<Recorder>,
    Arc<MemoryChunkLog>,
) {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = DirectoryConfig::new(tmp.path(), Uuid::parse("dir-uuid").unwrap(), "plain");
    cfg.chunk = chunk;
    cfg.disk_reserve = 0;
    let rec = Arc::new(Recorder::default());
    let log = Arc::new(MemoryChunkLog::new());
    let node = Directory::new(cfg, rec.clone(), log.clone());
    (tmp, node, rec, log)
}

#[tokio::test]
async fn unstable_keys_go_whole_and_data_present_is_checked() {
    let (tmp, node, rec, log) = plain(Some(4));
    // URL keys may change content: never chunked, as git-annex does.
    let url = Key::from_str("URL--http://example.com/a").unwrap();
    let st = put_bytes(&node, &url, b"0123456789", Validity::Valid)
        .await
        .unwrap();
    assert!(st.stored);
    assert!(node.object_path(&url).unwrap().exists());
    assert!(log.chunks(node.uuid(), &url).is_empty());
    // A hashed key is chunked: 10 bytes in chunks of 4.
    let data = b"0123456789";
    let key = sha256e(data, "");
    assert!(
        put_bytes(&node, &key, data, Validity::Valid)
            .await
            .unwrap()
            .stored
    );
    assert_eq!(log.chunks(node.uuid(), &key), vec![(4, 3)]);
    let third = node.object_path(&key.chunk(4, 3)).unwrap();
    assert_eq!(std::fs::read(third).unwrap(), b"89");
    // DATA-PRESENT: the content was put in place some other way.
    let other = b"placed out of band";
    let k2 = sha256e(other, "");
    let PutStart::Accept(sink) = node.put(&k2, &AssociatedFile::none()).await.unwrap() else {
        panic!()
    };
    let dir = tmp.path().join(hash_dir_lower(&k2)).join(k2.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(k2.to_string()), other).unwrap();
    assert!(sink.data_present().await.unwrap().stored);
    let PutStart::Accept(sink) = node
        .put(&sha256e(b"nowhere", ""), &AssociatedFile::none())
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(!sink.data_present().await.unwrap().stored);
    assert_eq!(
        rec.events().iter().map(|e| e.2).collect::<Vec<_>>(),
        vec![true, true, true]
    );
}
