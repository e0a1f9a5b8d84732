//! AnnexRepo against the real git-annex (the oracle): repositories made by `git annex init`,
//! content stored by us checked by `git annex fsck`, content stored by git-annex read by
//! us, and locking checked across processes in both directions.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::content_lock::PosixTime;
use super::*;
use crate::node::{LocationSink, Node, NodeError, PutStart, Stored, Validity};
use crate::types::backend::{hash_hex, HashKind};

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, bool)>>);

impl LocationSink for Recorder {
    fn record(&self, key: &Key, _uuid: &Uuid, present: bool) {
        self.0
            .lock()
            .unwrap()
            .push((key.to_text().into_owned(), present));
    }
}

impl Recorder {
    fn events(&self) -> Vec<(String, bool)> {
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

struct Sandbox {
    tmp: tempfile::TempDir,
    tools: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let tools = tools_dir();
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::write(
            home.join(".gitconfig"),
            "[user]\n\tname = annexgate test\n\temail = test@annexgate.invalid\n[init]\n\tdefaultBranch = main\n",
        )
        .unwrap();
        Sandbox { tmp, tools }
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
            .env_remove("GIT_WORK_TREE");
        let magic = self.tools.join("pypi/git_annex/magic.mgc");
        if magic.exists() {
            c.env("MAGIC", magic);
        }
        c
    }

    fn output(&self, dir: &Path, prog: &str, args: &[&str]) -> Output {
        self.cmd(prog, dir)
            .args(args)
            .stdin(Stdio::null())
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

    /// A fresh git-annex repository; returns its git dir.
    fn repo(&self, name: &str, bare: bool) -> PathBuf {
        let top = self.tmp.path().join(name);
        if bare {
            self.run(
                self.tmp.path(),
                "git",
                &["init", "-q", "--bare", top.to_str().unwrap()],
            );
            self.run(&top, "git", &["annex", "init", "-q", name]);
            top
        } else {
            self.run(
                self.tmp.path(),
                "git",
                &["init", "-q", top.to_str().unwrap()],
            );
            self.run(&top, "git", &["annex", "init", "-q", name]);
            top.join(".git")
        }
    }

    /// Where to run git commands for a repository: its work tree, or the bare git dir.
    fn top(&self, git_dir: &Path) -> PathBuf {
        if git_dir.file_name() == Some(std::ffi::OsStr::new(".git")) {
            git_dir.parent().unwrap().to_path_buf()
        } else {
            git_dir.to_path_buf()
        }
    }

    /// Run git in the repository.
    fn git(&self, git_dir: &Path, args: &[&str]) -> String {
        self.run(&self.top(git_dir), "git", args)
    }

    fn config(&self, git_dir: &Path) -> AnnexRepoConfig {
        let list = self.run(git_dir, "git", &["config", "--list"]);
        let map: HashMap<String, String> = list
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AnnexRepoConfig::from_git_config(git_dir, |k| map.get(k).cloned()).unwrap()
    }

    fn open(&self, git_dir: &Path) -> (AnnexRepo, Arc<Recorder>) {
        self.open_with(git_dir, |_| {})
    }

    fn open_with(
        &self,
        git_dir: &Path,
        tweak: impl FnOnce(&mut AnnexRepoConfig),
    ) -> (AnnexRepo, Arc<Recorder>) {
        let mut cfg = self.config(git_dir);
        tweak(&mut cfg);
        let rec = Arc::new(Recorder::default());
        (AnnexRepo::new(cfg, rec.clone()), rec)
    }
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

/// Upload `data` through the node's put interface, from whatever offset it asks for.
async fn put_bytes(
    node: &AnnexRepo,
    key: &Key,
    data: &[u8],
    validity: Validity,
) -> Result<Stored, NodeError> {
    match node.put(key, &AssociatedFile::new("f.txt")).await? {
        PutStart::AlreadyHave { .. } => panic!("unexpected ALREADY-HAVE for {key}"),
        PutStart::Accept(mut sink) => {
            let off = sink.offset() as usize;
            sink.begin((data.len() - off) as u64).await?;
            for chunk in data[off..].chunks(5) {
                sink.write(chunk).await?;
            }
            sink.finish(validity).await
        }
    }
}

async fn read_all(node: &AnnexRepo, key: &Key, offset: u64) -> Option<(Vec<u8>, Validity)> {
    let mut c = node
        .get(key, offset, &AssociatedFile::none())
        .await
        .unwrap()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 7];
    loop {
        let n = c.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(out.len() as u64, c.len());
    let v = c.validity().await.unwrap();
    c.done(true).await.unwrap();
    Some((out, v))
}

fn set_present(sb: &Sandbox, git_dir: &Path, node: &AnnexRepo, key: &Key) {
    sb.git(
        git_dir,
        &[
            "annex",
            "setpresentkey",
            &key.to_text(),
            node.uuid().as_str(),
            "1",
        ],
    );
}

#[tokio::test]
async fn stored_content_passes_git_annex_fsck_in_bare_and_non_bare_repos() {
    let sb = Sandbox::new();
    for bare in [false, true] {
        let gd = sb.repo(if bare { "b.git" } else { "nb" }, bare);
        let (node, rec) = sb.open(&gd);
        let data = b"stored by annexgate\n";
        let key = sha256e(data, ".txt");
        let st = put_bytes(&node, &key, data, Validity::Valid).await.unwrap();
        assert!(st.stored);
        assert_eq!(rec.events(), vec![(key.to_text().into_owned(), true)]);
        assert!(node.check_present(&key).await.unwrap());

        // Exactly where git-annex looks for it.
        let loc = sb.git(&gd, &["annex", "contentlocation", &key.to_text()]);
        let top = if bare {
            gd.clone()
        } else {
            gd.parent().unwrap().to_path_buf()
        };
        let obj = node.object_path(&key).unwrap();
        assert_eq!(
            std::fs::canonicalize(top.join(loc.trim())).unwrap(),
            std::fs::canonicalize(&obj).unwrap()
        );
        assert_eq!(mode(&obj), 0o444, "object mode");
        assert_eq!(mode(obj.parent().unwrap()), 0o555, "object directory mode");
        assert!(!node.tmp_path(&key).unwrap().exists());
        assert!(!gd
            .join("annex/transfer/download/lck")
            .read_dir()
            .unwrap()
            .any(|_| true));

        set_present(&sb, &gd, &node, &key);
        sb.git(&gd, &["annex", "fsck", "--fast", "--key", &key.to_text()]);
        sb.git(&gd, &["annex", "fsck", "--key", &key.to_text()]);

        // A second upload is refused as already present.
        assert!(matches!(
            node.put(&key, &AssociatedFile::none()).await.unwrap(),
            PutStart::AlreadyHave { .. }
        ));
    }
}

#[tokio::test]
async fn reads_what_git_annex_stored() {
    let sb = Sandbox::new();
    let gd = sb.repo("nb", false);
    let top = gd.parent().unwrap().to_path_buf();
    let data = b"0123456789 written by git-annex\n";
    std::fs::write(top.join("f.txt"), data).unwrap();
    sb.run(&top, "git", &["annex", "add", "-q", "f.txt"]);
    let key = Key::from_str(sb.run(&top, "git", &["annex", "lookupkey", "f.txt"]).trim()).unwrap();
    let (node, _) = sb.open(&gd);
    assert!(node.check_present(&key).await.unwrap());
    let (all, v) = read_all(&node, &key, 0).await.unwrap();
    assert_eq!(all, data);
    assert_eq!(v, Validity::Valid);
    let (tail, _) = read_all(&node, &key, 10).await.unwrap();
    assert_eq!(tail, &data[10..]);
    let (none, v) = read_all(&node, &key, 1000).await.unwrap();
    assert!(none.is_empty());
    assert_eq!(v, Validity::Valid);
    // Zero-copy senders get the file and the position.
    let mut c = node
        .get(&key, 4, &AssociatedFile::none())
        .await
        .unwrap()
        .unwrap();
    let (f, pos) = c.local_file().unwrap();
    assert_eq!(pos, 4);
    let mut b = [0u8; 3];
    std::os::unix::fs::FileExt::read_at(f, &mut b, pos).unwrap();
    assert_eq!(&b, b"456");
    c.advance(3);
    let mut rest = vec![0u8; 64];
    let n = c.read(&mut rest).await.unwrap();
    assert_eq!(&rest[..n], &data[7..7 + n]);

    // In a bare repository too (content put there by `git annex setkey`).
    let bgd = sb.repo("b.git", true);
    let src = sb.tmp.path().join("src.bin");
    std::fs::write(&src, b"bare content").unwrap();
    let bkey = sha256e(b"bare content", ".bin");
    sb.git(
        &bgd,
        &["annex", "setkey", &bkey.to_text(), src.to_str().unwrap()],
    );
    let (bnode, _) = sb.open(&bgd);
    assert_eq!(read_all(&bnode, &bkey, 0).await.unwrap().0, b"bare content");

    // Absent content.
    let absent = sha256e(b"nope", "");
    assert!(!node.check_present(&absent).await.unwrap());
    assert!(node
        .get(&absent, 0, &AssociatedFile::none())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn content_replaced_while_read_is_invalid() {
    let sb = Sandbox::new();
    let gd = sb.repo("nb", false);
    let (node, _) = sb.open(&gd);
    let data = b"original content";
    let key = sha256e(data, "");
    assert!(
        put_bytes(&node, &key, data, Validity::Valid)
            .await
            .unwrap()
            .stored
    );
    let mut c = node
        .get(&key, 0, &AssociatedFile::none())
        .await
        .unwrap()
        .unwrap();
    let mut buf = [0u8; 64];
    let _ = c.read(&mut buf).await.unwrap();
    // Replace the object (as an unlocked file being modified would).
    let obj = node.object_path(&key).unwrap();
    let dir = obj.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_file(&obj).unwrap();
    std::fs::write(&obj, b"other content!!!").unwrap();
    assert_eq!(c.validity().await.unwrap(), Validity::Invalid);
}

#[tokio::test]
async fn resumes_from_a_partial_temp_file() {
    let sb = Sandbox::new();
    let gd = sb.repo("nb", false);
    let (node, rec) = sb.open(&gd);
    let data = b"hello resumable world\n";
    let key = sha256e(data, ".txt");

    // An upload broken after 6 bytes keeps them.
    let PutStart::Accept(mut sink) = node.put(&key, &AssociatedFile::none()).await.unwrap() else {
        panic!("expected to accept")
    };
    assert_eq!(sink.offset(), 0);
    sink.begin(data.len() as u64).await.unwrap();
    sink.write(&data[..6]).await.unwrap();
    sink.abort().await;
    let tmp = node.tmp_path(&key).unwrap();
    assert_eq!(std::fs::read(&tmp).unwrap(), &data[..6]);
    assert!(!node.check_present(&key).await.unwrap());

    // The next upload starts at 6 and hashes the kept prefix.
    let PutStart::Accept(mut sink) = node.put(&key, &AssociatedFile::none()).await.unwrap() else {
        panic!("expected to accept")
    };
    assert_eq!(sink.offset(), 6);
    sink.begin((data.len() - 6) as u64).await.unwrap();
    sink.write(&data[6..]).await.unwrap();
    assert!(sink.finish(Validity::Valid).await.unwrap().stored);
    assert!(!tmp.exists());
    assert_eq!(rec.events().len(), 1);
    set_present(&sb, &gd, &node, &key);
    sb.git(&gd, &["annex", "fsck", "--key", &key.to_text()]);

    // A partial file git-annex left (e.g. a broken `git annex get`) is resumed too, and a
    // wrong prefix is caught even with VALID.
    let data2 = b"second object, resumed from a bad prefix";
    let key2 = sha256e(data2, "");
    let tmp2 = node.tmp_path(&key2).unwrap();
    std::fs::write(&tmp2, b"XXXXXXXX").unwrap();
    let st = put_bytes(&node, &key2, data2, Validity::Valid)
        .await
        .unwrap();
    assert!(!st.stored);
    assert!(
        !tmp2.exists(),
        "a temp file that failed verification is deleted"
    );
    assert!(!node.check_present(&key2).await.unwrap());
    std::fs::write(&tmp2, &data2[..8]).unwrap();
    assert!(
        put_bytes(&node, &key2, data2, Validity::Valid)
            .await
            .unwrap()
            .stored
    );
}

/// A key with no size cannot bound what a client announces: resuming one with the largest
/// length there is neither overflows nor loses the kept prefix.
#[tokio::test]
async fn a_resumed_sizeless_key_takes_any_announced_length() {
    let sb = Sandbox::new();
    let gd = sb.repo("nb", false);
    let (node, _rec) = sb.open(&gd);
    let key = Key::from_str("WORM-m1--sizeless").unwrap();
    assert_eq!(key.size(), None);
    let tmp = node.tmp_path(&key).unwrap();
    std::fs::create_dir_all(tmp.parent().unwrap()).unwrap();
    std::fs::write(&tmp, b"abc").unwrap();
    let PutStart::Accept(mut sink) = node.put(&key, &AssociatedFile::none()).await.unwrap() else {
        panic!("expected to accept")
    };
    assert_eq!(sink.offset(), 3);
    sink.begin(u64::MAX).await.unwrap();
    sink.write(b"def").await.unwrap();
    // The client stops short: nothing is stored, the bytes so far are kept.
    assert!(sink.finish(Validity::Valid).await.is_err());
    assert_eq!(std::fs::read(&tmp).unwrap(), b"abcdef");
    assert!(!node.check_present(&key).await.unwrap());
}

#[tokio::test]
async fn verification_failures_leave_nothing_visible() {
    let sb = Sandbox::new();
    let gd = sb.repo("nb", false);
    let (node, rec) = sb.open(&gd);
    let data = b"the right content";
    let key = sha256e(data, "");
    let wrong = b"the wrong content";
    assert_eq!(wrong.len(), data.len());
    for validity in [Validity::Valid, Validity::Invalid, Validity::Unknown] {
        let st = put_bytes(&node, &key, wrong, validity).await.unwrap();
        assert!(!st.stored, "{validity:?}");
        assert!(!node.tmp_path(&key).unwrap().exists(), "{validity:?}");
        assert!(!node.check_present(&key).await.unwrap());
    }
    // Too short is a wrong size.
    let PutStart::Accept(mut sink) = node.put(&key, &AssociatedFile::none()).await.unwrap() else {
        panic!()
    };
    sink.begin(3).await.unwrap();
    sink.write(b"the").await.unwrap();
    assert!(!sink.finish(Validity::Valid).await.unwrap().stored);
    assert!(rec.events().is_empty());
    // More than announced is refused.
    let PutStart::Accept(mut sink) = node.put(&key, &AssociatedFile::none()).await.unwrap() else {
        panic!()
    };
    sink.begin(2).await.unwrap();
    assert!(sink.write(b"abc").await.is_err());
    sink.abort().await;
    std::fs::remove_file(node.tmp_path(&key).unwrap()).ok();

    // DATA 0 + INVALID: the sender could not read it; a partial file stays for later.
    std::fs::write(node.tmp_path(&key).unwrap(), &data[..4]).unwrap();
    let PutStart::Accept(mut sink) = node.put(&key, &AssociatedFile::none()).await.unwrap() else {
        panic!()
    };
    assert_eq!(sink.offset(), 4);
    sink.begin(0).await.unwrap();
    assert!(!sink.finish(Validity::Invalid).await.unwrap().stored);
    assert_eq!(
        std::fs::read(node.tmp_path(&key).unwrap()).unwrap(),
        &data[..4]
    );

    // Correct bytes marked INVALID are re-verified and accepted.
    assert!(
        put_bytes(&node, &key, data, Validity::Invalid)
            .await
            .unwrap()
            .stored
    );
    assert_eq!(rec.events(), vec![(key.to_text().into_owned(), true)]);

    // annex.verify=false checks the size only.
    let gd2 = sb.repo("noverify", false);
    sb.git(&gd2, &["config", "annex.verify", "false"]);
    let (nv, _) = sb.open(&gd2);
    assert!(!nv.config().verify);
    let k2 = sha256e(b"abc", "");
    assert!(
        !put_bytes(&nv, &k2, b"abcd", Validity::Valid)
            .await
            .unwrap()
            .stored
    );
    assert!(
        put_bytes(&nv, &k2, b"xyz", Validity::Valid)
            .await
            .unwrap()
            .stored
    );
}

#[tokio::test]
async fn our_content_lock_blocks_git_annex_drop_until_unlocked() {
    let sb = Sandbox::new();
    let gd = sb.repo("nb", false);
    let top = gd.parent().unwrap().to_path_buf();
    std::fs::write(top.join("f.txt"), b"keep me\n").unwrap();
    sb.run(&top, "git", &["annex", "add", "-q", "f.txt"]);
    let key = Key::from_str(sb.run(&top, "git", &["annex", "lookupkey", "f.txt"]).trim()).unwrap();
    let (node, _) = sb.open(&gd);
    let obj = node.object_path(&key).unwrap();

    let lock = node
        .lock_content(&key)
        .await
        .unwrap()
        .expect("present content locks");
    let rtm = super::paths::with_suffix(&obj, ".rtm");
    let ts = PosixTime::parse(&std::fs::read(&rtm).unwrap()).expect("git-annex's format");
    assert!(ts > PosixTime::now().plus_secs(590));
    let o = sb.output(&top, "git", &["annex", "drop", "--force", "f.txt"]);
    assert!(!o.status.success(), "drop must fail while we hold the lock");
    assert!(obj.exists());
    // Our own removal in this same process is refused too (open-file-description locks).
    let r = node.remove(&key, None).await.unwrap();
    assert!(!r.removed);
    assert!(obj.exists());

    lock.unlock().await.unwrap();
    for suffix in [".lck", ".rtm", ".rtl"] {
        assert!(
            !super::paths::with_suffix(&obj, suffix).exists(),
            "{suffix} left behind"
        );
    }
    assert_eq!(mode(obj.parent().unwrap()), 0o555);
    sb.run(&top, "git", &["annex", "drop", "--force", "f.txt"]);
    assert!(!obj.exists());

    // Dropping the lock object unlocks as well.
    std::fs::write(top.join("g.txt"), b"keep me too\n").unwrap();
    sb.run(&top, "git", &["annex", "add", "-q", "g.txt"]);
    let k2 = Key::from_str(sb.run(&top, "git", &["annex", "lookupkey", "g.txt"]).trim()).unwrap();
    let l2 = node.lock_content(&k2).await.unwrap().unwrap();
    drop(l2);
    sb.run(&top, "git", &["annex", "drop", "--force", "g.txt"]);
    // Absent content cannot be locked.
    assert!(node.lock_content(&k2).await.unwrap().is_none());
}

/// `git-annex-shell p2pstdio` driven line by line.
struct Shell {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Shell {
    fn start(sb: &Sandbox, git_dir: &Path) -> Shell {
        let mut child = sb
            .cmd("git-annex-shell", git_dir)
            .args([
                "p2pstdio",
                git_dir.to_str().unwrap(),
                "00000000-1111-2222-3333-444444444444",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("git-annex-shell");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut s = Shell {
            stdin: child.stdin.take(),
            child,
            lines: rx,
        };
        assert!(s.line().starts_with("AUTH-SUCCESS "));
        s.send(b"VERSION 4\n");
        assert_eq!(s.line(), "VERSION 4");
        s
    }

    fn send(&mut self, b: &[u8]) {
        let w = self.stdin.as_mut().unwrap();
        w.write_all(b).unwrap();
        w.flush().unwrap();
    }

    #[track_caller]
    fn line(&mut self) -> String {
        self.try_line().expect("git-annex-shell answered")
    }

    /// The next line, or None when git-annex-shell hung up.
    fn try_line(&mut self) -> Option<String> {
        match self.lines.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => Some(l),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => None,
            Err(e) => panic!("git-annex-shell did not answer: {e}"),
        }
    }

    fn close(mut self) {
        self.stdin.take();
        let _ = self.child.wait();
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test]
async fn git_annex_content_lock_blocks_our_remove() {
    let sb = Sandbox::new();
    let gd = sb.repo("b.git", true);
    let (node, rec) = sb.open(&gd);
    let data = b"locked by git-annex";
    let key = sha256e(data, "");
    assert!(
        put_bytes(&node, &key, data, Validity::Valid)
            .await
            .unwrap()
            .stored
    );

    let mut shell = Shell::start(&sb, &gd);
    shell.send(format!("LOCKCONTENT {key}\n").as_bytes());
    assert_eq!(shell.line(), "SUCCESS");
    let r = node.remove(&key, None).await.unwrap();
    assert!(
        !r.removed,
        "removal must fail while git-annex holds the lock"
    );
    assert!(node.check_present(&key).await.unwrap());
    // Our own shared lock coexists with git-annex's.
    shell.send(b"UNLOCKCONTENT\n");
    shell.close();
    let obj = node.object_path(&key).unwrap();
    assert!(!super::paths::with_suffix(&obj, ".rtm").exists());
    let r = node.remove(&key, None).await.unwrap();
    assert!(r.removed);
    assert!(!node.check_present(&key).await.unwrap());
    assert!(!obj.exists());
    assert!(
        !obj.parent().unwrap().exists(),
        "empty key directory pruned"
    );
    assert_eq!(
        rec.events().last(),
        Some(&(key.to_text().into_owned(), false))
    );
    // Removing absent content succeeds.
    assert!(node.remove(&key, None).await.unwrap().removed);

    // A git-annex process that dies holding the lock leaves a retention timestamp that
    // still protects the content.
    assert!(
        put_bytes(&node, &key, data, Validity::Valid)
            .await
            .unwrap()
            .stored
    );
    let mut shell = Shell::start(&sb, &gd);
    shell.send(format!("LOCKCONTENT {key}\n").as_bytes());
    assert_eq!(shell.line(), "SUCCESS");
    // Our own shared lock coexists with git-annex's.
    let ours = node
        .lock_content(&key)
        .await
        .unwrap()
        .expect("shared locks coexist");
    drop(shell); // killed
    drop(ours);
    assert!(!node.remove(&key, None).await.unwrap().removed);
    assert!(node.check_present(&key).await.unwrap());
}

fn write_rtm(obj: &Path, ts: PosixTime) {
    let dir = obj.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(super::paths::with_suffix(obj, ".rtm"), ts.format()).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
}

#[tokio::test]
async fn retention_timestamps_and_remove_before() {
    let sb = Sandbox::new();
    let gd = sb.repo("nb", false);
    let (node, rec) = sb.open(&gd);
    let data = b"retained";
    let key = sha256e(data, "");
    assert!(
        put_bytes(&node, &key, data, Validity::Valid)
            .await
            .unwrap()
            .stored
    );
    let obj = node.object_path(&key).unwrap();

    write_rtm(&obj, PosixTime::now().plus_secs(100));
    assert!(
        !node.remove(&key, None).await.unwrap().removed,
        "future .rtm"
    );
    assert!(obj.exists());
    // git-annex agrees.
    let top = gd.parent().unwrap();
    let o = sb.output(top, "git", &["annex", "dropkey", "--force", &key.to_text()]);
    assert!(!o.status.success());

    write_rtm(&obj, PosixTime::now().plus_secs(-5));
    // A deadline already passed refuses (REMOVE-BEFORE).
    let now = node.timestamp().await.unwrap();
    assert!(now > 0);
    assert!(!node.remove(&key, Some(now)).await.unwrap().removed);
    assert!(obj.exists());
    assert!(rec.events().iter().all(|(_, p)| *p));
    // A future deadline and an expired .rtm remove, and clean up after themselves.
    assert!(node.remove(&key, Some(now + 60)).await.unwrap().removed);
    assert!(!obj.exists());
    assert!(!super::paths::with_suffix(&obj, ".rtm").exists());
    assert!(!obj.parent().unwrap().exists());
    assert_eq!(
        rec.events().last(),
        Some(&(key.to_text().into_owned(), false))
    );
}

#[tokio::test]
async fn disk_reserve_refuses_uploads() {
    let sb = Sandbox::new();
    let gd = sb.repo("nb", false);
    sb.git(&gd, &["config", "annex.diskreserve", "1000 TB"]);
    let (node, _) = sb.open(&gd);
    assert_eq!(node.config().disk_reserve, 1_000_000_000_000_000);
    let key = sha256e(b"small", "");
    match node.put(&key, &AssociatedFile::none()).await {
        Err(NodeError::Full {
            needed, available, ..
        }) => assert!(needed > available),
        other => panic!("expected Full, got {other:?}"),
    }
    // Nothing left behind, and the transfer lock is free again.
    assert!(!node.tmp_path(&key).unwrap().exists());
    let (ok, _) = sb.open_with(&gd, |c| c.disk_reserve = 0);
    assert!(
        put_bytes(&ok, &key, b"small", Validity::Valid)
            .await
            .unwrap()
            .stored
    );
}

#[tokio::test]
async fn transfer_locks_exclude_git_annex_both_ways() {
    let sb = Sandbox::new();
    let gd = sb.repo("b.git", true);
    let (node, _) = sb.open(&gd);
    let data = b"contended content";
    let key = sha256e(data, ".txt");

    // git-annex-shell receiving the key (stalled mid-data) holds the download lock.
    let mut shell = Shell::start(&sb, &gd);
    shell.send(format!("PUT f.txt {key}\n").as_bytes());
    assert_eq!(shell.line(), "PUT-FROM 0");
    shell.send(format!("DATA {}\n", data.len()).as_bytes());
    shell.send(&data[..4]);
    // Wait until it really holds the lock.
    let lck = gd
        .join("annex/transfer/download/lck")
        .join(format!("lck.{key}"));
    for _ in 0..200 {
        if matches!(
            crate::node::lock::lock_status(&lck),
            Ok(crate::node::lock::LockStatus::Locked { .. })
        ) {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    match node.put(&key, &AssociatedFile::none()).await {
        Err(NodeError::Busy { .. }) => {}
        other => panic!("expected Busy, got {other:?}"),
    }
    drop(shell);

    // And the other way round: while we receive it, git-annex refuses to.
    let PutStart::Accept(mut sink) = node
        .put_from(
            &key,
            &AssociatedFile::new("f.txt"),
            Some(&Uuid::parse("peer-uuid").unwrap()),
        )
        .await
        .unwrap()
    else {
        panic!("expected to accept")
    };
    let info = gd
        .join("annex/transfer/download/peer-uuid")
        .join(key.to_text().as_ref());
    let info_text = std::fs::read_to_string(&info).unwrap();
    assert!(info_text.ends_with("\nf.txt\n"), "{info_text:?}");
    let off = sink.offset() as usize;
    let mut shell = Shell::start(&sb, &gd);
    shell.send(format!("PUT f.txt {key}\n").as_bytes());
    let from = shell.line();
    assert!(from.starts_with("PUT-FROM "), "{from}");
    let goff: usize = from["PUT-FROM ".len()..].parse().unwrap();
    shell.send(format!("DATA {}\n", data.len() - goff).as_bytes());
    shell.send(&data[goff..]);
    shell.send(b"VALID\n");
    // git-annex gives up on the connection ("transfer already in progress") or fails.
    let answer = shell.try_line();
    assert_ne!(
        answer.as_deref(),
        Some("SUCCESS"),
        "git-annex must not store while we hold the lock"
    );
    drop(shell);
    sink.begin((data.len() - off) as u64).await.unwrap();
    sink.write(&data[off..]).await.unwrap();
    assert!(sink.finish(Validity::Valid).await.unwrap().stored);
    assert!(!info.exists(), "transfer info removed after the transfer");
    assert!(
        !lck.exists(),
        "transfer lock file removed after the transfer"
    );
    set_present(&sb, &gd, &node, &key);
    sb.git(&gd, &["annex", "fsck", "--key", &key.to_text()]);
}

#[tokio::test]
async fn hostile_keys_stay_inside_the_store() {
    let sb = Sandbox::new();
    let gd = sb.repo("nb", false);
    let (node, _) = sb.open(&gd);
    let objects = gd.join("annex/objects");
    for name in ["../../../../escape", "/etc/passwd", "..", "a/../../b%c&d:e"] {
        let key = Key::from_str(&format!("WORM-s3-m1--{name}")).unwrap();
        assert!(
            put_bytes(&node, &key, b"abc", Validity::Valid)
                .await
                .unwrap()
                .stored,
            "{name}"
        );
        let obj = node.object_path(&key).unwrap();
        assert!(obj.starts_with(&objects), "{name}: {obj:?}");
        assert_eq!(
            obj.strip_prefix(&objects).unwrap().components().count(),
            4,
            "{name}"
        );
        assert_eq!(read_all(&node, &key, 0).await.unwrap().0, b"abc");
        // git-annex finds it at the same place.
        let loc = sb.run(
            gd.parent().unwrap(),
            "git",
            &["annex", "contentlocation", &key.to_text()],
        );
        assert_eq!(
            std::fs::canonicalize(gd.parent().unwrap().join(loc.trim())).unwrap(),
            std::fs::canonicalize(&obj).unwrap()
        );
        assert!(node.remove(&key, None).await.unwrap().removed);
    }
    assert!(!sb.tmp.path().join("escape").exists());
    assert!(!gd.join("b%c&d:e").exists());

    // A name too long for a file name is refused as a bad key, not an I/O error.
    let long = Key::from_str(&format!("WORM-s3-m1--{}", "x".repeat(300))).unwrap();
    assert!(matches!(
        node.put(&long, &AssociatedFile::none()).await,
        Err(NodeError::BadKey { .. })
    ));
    assert!(matches!(
        node.lock_content(&long).await,
        Err(NodeError::BadKey { .. })
    ));
    assert!(matches!(
        node.remove(&long, None).await,
        Err(NodeError::BadKey { .. })
    ));
    assert!(!node.check_present(&long).await.unwrap());
    assert!(matches!(
        node.get(&long, 0, &AssociatedFile::none()).await,
        Err(NodeError::BadKey { .. })
    ));
}

#[tokio::test]
async fn annex_content_hook_runs_after_changes() {
    let sb = Sandbox::new();
    let gd = sb.repo("b.git", true);
    let marker = sb.tmp.path().join("hook-ran");
    let hook = gd.join("hooks/annex-content");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\necho \"$PWD\" >> '{}'\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (node, _) = sb.open(&gd);
    let key = sha256e(b"hooked", "");
    assert!(
        put_bytes(&node, &key, b"hooked", Validity::Valid)
            .await
            .unwrap()
            .stored
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 1);
    assert!(node.remove(&key, None).await.unwrap().removed);
    let runs = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(runs.lines().count(), 2);
    assert_eq!(
        std::fs::canonicalize(runs.lines().next().unwrap()).unwrap(),
        std::fs::canonicalize(&gd).unwrap()
    );
    // A failed verification is no content change.
    let _ = put_bytes(&node, &key, b"hookeX", Validity::Valid)
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 2);
}

/// A node that found no hook looks again after a while: a hook installed while a session
/// runs is run for the changes after that.
#[tokio::test]
async fn annex_content_hook_installed_later_is_found() {
    let sb = Sandbox::new();
    let gd = sb.repo("b.git", true);
    let (node, _) = sb.open(&gd);
    let key = sha256e(b"before the hook", "");
    assert!(
        put_bytes(&node, &key, b"before the hook", Validity::Valid)
            .await
            .unwrap()
            .stored
    );
    let marker = sb.tmp.path().join("hook-ran");
    let hook = gd.join("hooks/annex-content");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\necho ran >> '{}'\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::thread::sleep(super::HOOK_RECHECK + Duration::from_millis(100));
    let key = sha256e(b"after the hook", "");
    assert!(
        put_bytes(&node, &key, b"after the hook", Validity::Valid)
            .await
            .unwrap()
            .stored
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 1);
}

#[tokio::test]
async fn one_upload_per_key_in_this_process_too() {
    let sb = Sandbox::new();
    let gd = sb.repo("nb", false);
    let (node, _) = sb.open(&gd);
    let data = b"only once at a time";
    let key = sha256e(data, "");
    let PutStart::Accept(first) = node.put(&key, &AssociatedFile::none()).await.unwrap() else {
        panic!("expected to accept")
    };
    assert!(matches!(
        node.put(&key, &AssociatedFile::none()).await,
        Err(NodeError::Busy { .. })
    ));
    // A second AnnexRepo on the same repository (another server task) is excluded too.
    let (other, _) = sb.open(&gd);
    assert!(matches!(
        other.put(&key, &AssociatedFile::none()).await,
        Err(NodeError::Busy { .. })
    ));
    first.abort().await;
    assert!(
        put_bytes(&other, &key, data, Validity::Valid)
            .await
            .unwrap()
            .stored
    );
}

/// The directories a node remembers making (the temp and lock directories, hash
/// directories) can be removed by git-annex or by hand between uploads: the next upload
/// makes them again and stores the content where git-annex finds it.
#[tokio::test]
async fn directories_removed_between_uploads_are_made_again() {
    let sb = Sandbox::new();
    let gd = sb.repo("b.git", true);
    let (node, _) = sb.open(&gd);
    let data = b"made twice\n";
    let key = sha256e(data, ".txt");
    assert!(
        put_bytes(&node, &key, data, Validity::Valid)
            .await
            .unwrap()
            .stored
    );
    set_present(&sb, &gd, &node, &key);
    // git-annex drops it (removing the emptied hash directories), and the temp and
    // lock directories go too.
    sb.git(&gd, &["annex", "drop", "--force", "--key", &key.to_text()]);
    let obj = node.object_path(&key).unwrap();
    assert!(
        !obj.parent().unwrap().parent().unwrap().exists(),
        "hash directory removed"
    );
    std::fs::remove_dir_all(gd.join("annex/tmp")).unwrap();
    std::fs::remove_dir_all(gd.join("annex/transfer/download/lck")).unwrap();
    assert!(
        put_bytes(&node, &key, data, Validity::Valid)
            .await
            .unwrap()
            .stored
    );
    assert_eq!(std::fs::read(&obj).unwrap(), data);
    assert_eq!(mode(&obj), 0o444, "frozen");
    assert_eq!(mode(obj.parent().unwrap()), 0o555);
    set_present(&sb, &gd, &node, &key);
    sb.git(&gd, &["annex", "fsck", "--key", &key.to_text()]);
}

/// Content git-annex puts in place while an upload of the same key is under way is kept:
/// the upload ends without replacing it (its key directory existed, so it is looked in),
/// though git-annex removed the upload's temp file as it stored the key.
#[tokio::test]
async fn content_stored_meanwhile_is_kept() {
    let sb = Sandbox::new();
    let gd = sb.repo("b.git", true);
    let (node, _) = sb.open(&gd);
    let data = b"stored twice\n";
    let key = sha256e(data, ".txt");
    let PutStart::Accept(mut sink) = node.put(&key, &AssociatedFile::new("f.txt")).await.unwrap()
    else {
        panic!("ALREADY-HAVE before anything was stored");
    };
    sink.begin(data.len() as u64).await.unwrap();
    sink.write(data).await.unwrap();
    let other = sb.tmp.path().join("other.txt");
    std::fs::write(&other, data).unwrap();
    sb.git(
        &gd,
        &["annex", "setkey", &key.to_text(), other.to_str().unwrap()],
    );
    let obj = node.object_path(&key).unwrap();
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let theirs = ino(&obj);
    let stored = sink.finish(Validity::Valid).await.unwrap();
    assert!(stored.stored);
    assert_eq!(ino(&obj), theirs, "git-annex's copy was replaced");
    assert_eq!(std::fs::read(&obj).unwrap(), data);
    let left: Vec<_> = std::fs::read_dir(gd.join("annex/tmp")).unwrap().collect();
    assert!(left.is_empty(), "temp file left: {left:?}");
    sb.git(&gd, &["annex", "fsck", "--key", &key.to_text()]);
}

#[tokio::test]
async fn downloads_in_progress_count_against_free_space() {
    let sb = Sandbox::new();
    let gd = sb.repo("nb", false);
    let free = crate::node::localfs::disk_free(&gd.join("annex")).unwrap();
    assert!(free > 1000, "test needs some free space");
    let (node, _) = sb.open_with(&gd, |c| c.disk_reserve = free / 2);
    let key = sha256e(b"x", "");
    let PutStart::Accept(sink) = node.put(&key, &AssociatedFile::none()).await.unwrap() else {
        panic!("expected to accept")
    };
    sink.abort().await;

    // Another process receives a key as big as the free space: its transfer info file is
    // there and its download lock is held.
    let big = Key::from_str(&format!("WORM-s{free}-m1--big")).unwrap();
    let peer_dir = gd.join("annex/transfer/download/some-peer");
    std::fs::create_dir_all(&peer_dir).unwrap();
    std::fs::write(peer_dir.join(big.to_text().as_ref()), "1795651149.2s\n\n").unwrap();
    let lck_dir = gd.join("annex/transfer/download/lck");
    std::fs::create_dir_all(&lck_dir).unwrap();
    let held = crate::node::lock::FileLock::try_lock(
        &lck_dir.join(format!("lck.{big}")),
        crate::node::lock::LockKind::Exclusive,
        Some(0o644),
    )
    .unwrap()
    .unwrap();
    assert!(matches!(
        node.put(&key, &AssociatedFile::none()).await,
        Err(NodeError::Full { .. })
    ));
    // Once it has finished (lock released), the space is there again.
    drop(held);
    assert!(matches!(
        node.put(&key, &AssociatedFile::none()).await,
        Ok(PutStart::Accept(_))
    ));
}

/// `annexgate.fsync`: an upload bigger than the writeback step goes through the durable
/// path (writeback started while it arrives, fsync before the rename) and is stored whole;
/// without the setting (git-annex's behaviour) it is stored all the same.
#[tokio::test]
async fn durable_uploads_with_annexgate_fsync() {
    let sb = Sandbox::new();
    let gd = sb.repo("b.git", true);
    assert!(!sb.config(&gd).fsync, "off unless configured");
    sb.git(&gd, &["config", "annexgate.fsync", "true"]);
    let (node, rec) = sb.open(&gd);
    assert!(node.config().fsync);
    let data: Vec<u8> = (0..(20u32 << 20) + 12345)
        .map(|i| (i % 251) as u8)
        .collect();
    let key = sha256e(&data, ".bin");
    let PutStart::Accept(mut sink) = node.put(&key, &AssociatedFile::none()).await.unwrap() else {
        panic!("the key is not there yet")
    };
    sink.begin(data.len() as u64).await.unwrap();
    for chunk in data.chunks(256 * 1024) {
        sink.write(chunk).await.unwrap();
    }
    assert!(sink.finish(Validity::Valid).await.unwrap().stored);
    assert_eq!(rec.events(), vec![(key.to_text().into_owned(), true)]);
    let obj = node.object_path(&key).unwrap();
    assert!(std::fs::read(&obj).unwrap() == data);
    assert!(!node.tmp_path(&key).unwrap().exists());
}
