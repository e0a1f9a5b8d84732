//! Tests against the real git-annex: it writes the branch, we read it (and the other way
//! round), and both must agree.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::log::paths::{location_log_path, BranchHash, GROUP_LOG, MAXSIZE_LOG};
use super::log::{
    ConfigLog, CopiesLog, GroupLog, GroupPreferredContentLog, LocationLog, MaxSizeLog,
    PreferredContentLog, RemoteLog, Status, TrustLevel, TrustLog, UuidLog,
};
use super::recorder::{Recorder, RecorderOptions};
use super::repo::{GitRepo, ObjectId, RepoError, SIDE_REF};
use crate::types::{Key, Uuid};

/// A sandbox for running git-annex: a temporary HOME with a git identity, and the tools
/// directory on PATH.
struct Annex {
    tmp: tempfile::TempDir,
    path: OsString,
    magic: Option<PathBuf>,
}

fn tools_dir() -> PathBuf {
    let dir = std::env::var_os("ANNEXGATE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools"));
    let bin = dir.join("bin/git-annex");
    assert!(
        bin.exists(),
        "git-annex is needed for this test but is not at {}: run scripts/setup, or set \
         ANNEXGATE_TOOLS to the directory holding bin/git-annex",
        bin.display()
    );
    dir
}

impl Annex {
    fn new() -> Annex {
        let tools = tools_dir();
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(
            home.join(".gitconfig"),
            "[user]\n\tname = Test\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n",
        )
        .unwrap();
        let mut path = OsString::from(tools.join("bin"));
        path.push(":");
        path.push(std::env::var_os("PATH").unwrap_or_default());
        let magic = tools.join("pypi/git_annex/magic.mgc");
        Annex {
            tmp,
            path,
            magic: magic.exists().then_some(magic),
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn run(&self, dir: &Path, prog: &str, args: &[&str]) -> std::process::Output {
        let mut c = Command::new(prog);
        c.args(args)
            .current_dir(dir)
            .env("HOME", self.tmp.path().join("home"))
            .env("PATH", &self.path)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .env_remove("GIT_ANNEX_VECTOR_CLOCK");
        if let Some(m) = &self.magic {
            c.env("MAGIC", m);
        }
        c.output()
            .unwrap_or_else(|e| panic!("cannot run {prog} {args:?}: {e}"))
    }

    fn ok(&self, dir: &Path, prog: &str, args: &[&str]) -> String {
        let out = self.run(dir, prog, args);
        assert!(
            out.status.success(),
            "{prog} {args:?} failed in {}:\n{}\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn git(&self, dir: &Path, args: &[&str]) -> String {
        self.ok(dir, "git", args)
    }

    fn annex(&self, dir: &Path, args: &[&str]) -> String {
        let mut a = vec!["annex"];
        a.extend_from_slice(args);
        self.ok(dir, "git", &a)
    }

    fn json(&self, dir: &Path, args: &[&str]) -> serde_json::Value {
        let text = self.annex(dir, args);
        serde_json::from_str(text.lines().last().unwrap_or(""))
            .unwrap_or_else(|e| panic!("git annex {args:?}: bad json {text:?}: {e}"))
    }

    /// A fresh git-annex repository.
    fn init(&self, name: &str, desc: &str) -> PathBuf {
        let d = self.dir(name);
        std::fs::create_dir_all(&d).unwrap();
        self.git(&d, &["init", "-q"]);
        self.annex(&d, &["init", desc]);
        d
    }

    /// A clone of `from` named `name`, initialised as git-annex repository `desc`, and
    /// known to `from` as its remote `name` (not fetched).
    fn clone_as_remote(&self, from: &Path, name: &str, desc: &str) -> PathBuf {
        let d = self.dir(name);
        self.git(
            self.tmp.path(),
            &["clone", "-q", from.to_str().unwrap(), d.to_str().unwrap()],
        );
        self.annex(&d, &["init", desc]);
        self.git(from, &["remote", "add", name, &format!("../{name}")]);
        d
    }

    /// Add a file and return its key.
    fn add(&self, dir: &Path, file: &str, content: &str) -> Key {
        std::fs::write(dir.join(file), content).unwrap();
        self.annex(dir, &["add", file]);
        self.git(dir, &["commit", "-qm", "add"]);
        let k = self.annex(dir, &["lookupkey", file]);
        Key::from_str(k.trim()).unwrap()
    }

    fn uuid(&self, dir: &Path) -> Uuid {
        Uuid::parse(self.git(dir, &["config", "annex.uuid"]).trim()).unwrap()
    }

    /// UUIDs `git annex whereis` lists for a key.
    fn whereis(&self, dir: &Path, key: &Key) -> BTreeSet<String> {
        // whereis exits non-zero for a key with no copies; its JSON still says so.
        let out = self.run(
            dir,
            "git",
            &["annex", "whereis", "--json", "--key", &key.to_text()],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or(""))
            .unwrap_or_else(|e| panic!("whereis: bad json {text:?}: {e}"));
        v["whereis"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["uuid"].as_str().unwrap().to_string())
            .collect()
    }
}

fn set(items: &[&Uuid]) -> BTreeSet<String> {
    items.iter().map(|u| u.to_string()).collect()
}

#[test]
fn reads_what_git_annex_wrote() {
    let a = Annex::new();
    let r = a.init("r", "repo one");
    let store = a.dir("store");
    std::fs::create_dir_all(&store).unwrap();
    a.annex(
        &r,
        &[
            "initremote",
            "dirr",
            "type=directory",
            &format!("directory={}", store.display()),
            "encryption=none",
            "chunk=1MiB",
        ],
    );
    a.annex(&r, &["describe", "dirr", "dir rem"]);
    a.annex(&r, &["untrust", "dirr"]);
    a.annex(&r, &["trust", "--force", "here"]);
    a.annex(&r, &["group", "here", "client"]);
    a.annex(&r, &["group", "here", "mygroup"]);
    a.annex(&r, &["wanted", "here", "standard or include=*.bin"]);
    a.annex(&r, &["required", "dirr", "include=foo*"]);
    a.annex(&r, &["groupwanted", "mygroup", "balanced=mygroup:2"]);
    a.annex(&r, &["numcopies", "2"]);
    a.annex(&r, &["mincopies", "1"]);
    a.annex(&r, &["maxsize", "here", "1000000"]);
    a.annex(
        &r,
        &["config", "--set", "annex.largefiles", "largerthan=1kb"],
    );

    let repo = GitRepo::open(&r).unwrap();
    let cfg = repo.config().unwrap();
    let here = cfg.annex_uuid().unwrap();
    assert_eq!(here, a.uuid(&r));
    let dirr = cfg.remote_uuid("dirr").unwrap_or_else(|| {
        // Special remotes have no git remote; find it in remote.log by name.
        let v = repo.view().unwrap();
        let l = RemoteLog::parse(&v.get(b"remote.log").unwrap());
        let found = l
            .values()
            .find(|(_, c)| c.get("name").map(String::as_str) == Some("dirr"))
            .map(|(u, _)| u.clone())
            .unwrap();
        found
    });
    let v = repo.view().unwrap();

    // Descriptions and trust, against `git annex info --json`.
    let info = a.json(&r, &["info", "--json"]);
    let descs = UuidLog::parse(&v.get(b"uuid.log").unwrap());
    let trust = TrustLog::parse(&v.get(b"trust.log").unwrap());
    for (list, level) in [
        ("trusted repositories", TrustLevel::Trusted),
        ("semitrusted repositories", TrustLevel::SemiTrusted),
        ("untrusted repositories", TrustLevel::Untrusted),
    ] {
        for e in info[list].as_array().unwrap() {
            let u = Uuid::parse(e["uuid"].as_str().unwrap()).unwrap();
            if u.as_str()
                .starts_with("00000000-0000-0000-0000-00000000000")
            {
                continue; // web, bittorrent: built in, not logged
            }
            assert_eq!(trust.level(&u), level, "trust of {u}");
            let ours = String::from_utf8(descs.get(&u).unwrap().clone()).unwrap();
            let theirs = e["description"].as_str().unwrap();
            assert!(
                theirs == ours || theirs.starts_with(&format!("{ours} [")),
                "description of {u}: {theirs:?} vs {ours:?}"
            );
        }
    }
    assert_eq!(trust.level(&here), TrustLevel::Trusted);
    assert_eq!(trust.level(&dirr), TrustLevel::Untrusted);

    // Groups, wanted, required, groupwanted.
    let groups = GroupLog::parse(&v.get(GROUP_LOG.as_bytes()).unwrap());
    let theirs: BTreeSet<String> = a
        .annex(&r, &["group", "here"])
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(groups.get(&here).unwrap(), &theirs);
    let wanted = PreferredContentLog::parse(&v.get(b"preferred-content.log").unwrap());
    assert_eq!(
        wanted.get(&here).unwrap(),
        a.annex(&r, &["wanted", "here"]).trim()
    );
    let required = PreferredContentLog::parse(&v.get(b"required-content.log").unwrap());
    assert_eq!(
        required.get(&dirr).unwrap(),
        a.annex(&r, &["required", "dirr"]).trim()
    );
    let gw = GroupPreferredContentLog::parse(&v.get(b"group-preferred-content.log").unwrap());
    assert_eq!(
        gw.get(&"mygroup".to_string()).unwrap(),
        a.annex(&r, &["groupwanted", "mygroup"]).trim()
    );

    // numcopies, mincopies, maxsize, config.
    let n = CopiesLog::parse(&v.get(b"numcopies.log").unwrap());
    assert_eq!(
        n.value().unwrap().get().to_string(),
        a.annex(&r, &["numcopies"]).trim()
    );
    let m = CopiesLog::parse(&v.get(b"mincopies.log").unwrap());
    assert_eq!(
        m.value().unwrap().get().to_string(),
        a.annex(&r, &["mincopies"]).trim()
    );
    let ms = MaxSizeLog::parse(&v.get(MAXSIZE_LOG.as_bytes()).unwrap());
    assert_eq!(ms.get(&here), Some(&1_000_000));
    let maxsize_out = a.annex(&r, &["maxsize"]);
    assert!(
        maxsize_out
            .lines()
            .any(|l| l.contains(here.as_str()) && l.contains("1 MB")),
        "{maxsize_out}"
    );
    let c = ConfigLog::parse(&v.get(b"config.log").unwrap());
    assert_eq!(
        c.settings()["annex.largefiles"],
        a.annex(&r, &["config", "--get", "annex.largefiles"]).trim()
    );

    // remote.log, as `git annex info dirr --json` describes it.
    let rl = RemoteLog::parse(&v.get(b"remote.log").unwrap());
    let rc = rl.get(&dirr).unwrap();
    let ri = a.json(&r, &["info", "dirr", "--json"]);
    assert_eq!(rc["type"], ri["type"].as_str().unwrap());
    assert_eq!(rc["encryption"], ri["encryption"].as_str().unwrap());
    assert_eq!(rc["name"], "dirr");
    assert_eq!(rc["chunk"], "1MiB");

    // Writing what we read gives back git-annex's bytes.
    for p in [
        "uuid.log",
        "trust.log",
        "group.log",
        "remote.log",
        "maxsize.log",
    ] {
        let text = v.get(p.as_bytes()).unwrap();
        let ours = match p {
            "uuid.log" => UuidLog::parse(&text).format(),
            "trust.log" => TrustLog::parse(&text).format(),
            "group.log" => GroupLog::parse(&text).format(),
            "remote.log" => RemoteLog::parse(&text).format(),
            _ => MaxSizeLog::parse(&text).format(),
        };
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&text),
            "{p}"
        );
    }
}

#[test]
fn git_config_read_and_write() {
    let a = Annex::new();
    let r = a.init("r", "r");
    let repo = GitRepo::open(&r).unwrap();
    assert!(!repo.is_bare());
    assert_eq!(
        repo.work_tree().unwrap().canonicalize().unwrap(),
        r.canonicalize().unwrap()
    );
    repo.set_config("remote.node1.url", "../n1").unwrap();
    repo.set_config(
        "remote.node1.annex-uuid",
        "b9330ac3-c381-4ace-9009-98621a4aeba7",
    )
    .unwrap();
    repo.set_config("remote.Node2.annex-proxy", "true").unwrap();
    repo.set_config(
        "annex.cluster.mycluster",
        "acb82efc-627c-8994-982b-f7149c37427b",
    )
    .unwrap();
    repo.add_config("remote.node1.fetch", "+refs/heads/a:refs/remotes/node1/a")
        .unwrap();
    repo.add_config("remote.node1.fetch", "+refs/heads/b:refs/remotes/node1/b")
        .unwrap();
    // git itself sees what we wrote.
    assert_eq!(
        a.git(&r, &["config", "--get-all", "remote.node1.fetch"]),
        "+refs/heads/a:refs/remotes/node1/a\n+refs/heads/b:refs/remotes/node1/b\n"
    );
    a.git(&r, &["config", "remote.node1.annex-cost", "150"]);
    a.git(&r, &["config", "annex.private", "yes"]);
    let cfg = repo.config().unwrap();
    assert_eq!(cfg.remotes(), ["Node2", "node1"]);
    assert_eq!(cfg.remote("node1", "annex-cost").as_deref(), Some("150"));
    assert_eq!(cfg.get_bool("remote.Node2.annex-proxy"), Some(true));
    assert_eq!(cfg.get_all("remote.node1.fetch").len(), 2);
    assert_eq!(
        cfg.remote_uuid("node1").unwrap().as_str(),
        "b9330ac3-c381-4ace-9009-98621a4aeba7"
    );
    assert_eq!(
        cfg.clusters()["mycluster"].as_str(),
        "acb82efc-627c-8994-982b-f7149c37427b"
    );
    assert!(cfg.private_uuids().contains(&a.uuid(&r)));
    assert_eq!(cfg.remote_settings("node1")["annex-cost"], "150");
    // Replacing a multi-valued key leaves one value; unsetting removes it.
    repo.set_config("remote.node1.fetch", "+refs/heads/*:refs/remotes/node1/*")
        .unwrap();
    assert_eq!(
        a.git(&r, &["config", "--get-all", "remote.node1.fetch"]),
        "+refs/heads/*:refs/remotes/node1/*\n"
    );
    repo.unset_config("remote.node1.fetch").unwrap();
    repo.unset_config("remote.node1.fetch").unwrap();
    assert!(repo.config().unwrap().get("remote.node1.fetch").is_none());

    // A bare repository.
    let b = a.dir("b.git");
    a.git(
        a.tmp.path(),
        &[
            "clone",
            "-q",
            "--bare",
            r.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
    );
    let bare = GitRepo::open(&b).unwrap();
    assert!(bare.is_bare());
    assert_eq!(
        bare.git_dir().canonicalize().unwrap(),
        b.canonicalize().unwrap()
    );
    // Found from inside a work tree's subdirectory too.
    std::fs::create_dir_all(r.join("sub/dir")).unwrap();
    let found = GitRepo::discover(r.join("sub/dir")).unwrap();
    assert_eq!(
        found.git_dir().canonicalize().unwrap(),
        r.join(".git").canonicalize().unwrap()
    );
}

#[test]
fn no_branch_is_a_clear_error() {
    let a = Annex::new();
    let d = a.dir("plain");
    std::fs::create_dir_all(&d).unwrap();
    a.git(&d, &["init", "-q"]);
    let repo = GitRepo::open(&d).unwrap();
    let e = repo.view().err().unwrap();
    assert!(matches!(e, RepoError::NoBranch { .. }), "{e}");
    assert!(e.to_string().contains("git annex init"), "{e}");
    assert!(Recorder::new(&d).is_err());
    assert!(matches!(
        GitRepo::open(a.dir("nowhere")),
        Err(RepoError::Open { .. })
    ));
}

#[test]
fn recorded_locations_agree_with_whereis_and_fsck() {
    let a = Annex::new();
    let r = a.init("r", "r");
    let store = a.dir("store");
    std::fs::create_dir_all(&store).unwrap();
    a.annex(
        &r,
        &[
            "initremote",
            "dirr",
            "type=directory",
            &format!("directory={}", store.display()),
            "encryption=none",
        ],
    );
    let here = a.uuid(&r);
    let key = a.add(&r, "f.txt", "hello world\n");
    let repo = GitRepo::open(&r).unwrap();
    let dirr = RemoteLog::parse(&repo.view().unwrap().get(b"remote.log").unwrap())
        .values()
        .next()
        .map(|(u, _)| u.clone())
        .unwrap();

    // Put the content into the directory remote ourselves, the way the remote stores it.
    let kf = String::from_utf8(crate::types::key::key_file(&key)).unwrap();
    let hd = crate::types::hashdir::hash_dir_lower(&key);
    let obj_dir = store.join(&hd).join(&kf);
    std::fs::create_dir_all(&obj_dir).unwrap();
    std::fs::write(obj_dir.join(&kf), "hello world\n").unwrap();

    let rec = Recorder::new(&r).unwrap();
    rec.record_location(&key, &dirr, true);
    // Recording what the log already says changes nothing.
    rec.record_location(&key, &here, true);
    let c = rec.flush().unwrap();
    assert!(c.is_some());
    assert_eq!(a.whereis(&r, &key), set(&[&here, &dirr]));
    a.annex(&r, &["fsck", "--from", "dirr", "--fast", "--json"]);

    // Remove the local copy behind git-annex's back and record that.
    let obj = a.annex(&r, &["contentlocation", &key.to_text()]);
    let obj = r.join(obj.trim());
    let od = obj.parent().unwrap().to_path_buf();
    let mut perm = std::fs::metadata(&od).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&od, perm).unwrap();
    std::fs::remove_file(&obj).unwrap();
    rec.record_location(&key, &here, false);
    rec.flush().unwrap();
    assert_eq!(a.whereis(&r, &key), set(&[&dirr]));
    // fsck finds the log right: nothing to fix, so it succeeds.
    let f = a.json(&r, &["fsck", "--json", "f.txt"]);
    assert_eq!(f["success"], true, "{f}");
    let tip = repo.branch_tip().unwrap();
    // Our writes are compacted and timed after git-annex's own line.
    let text = repo
        .read_at(tip, &location_log_path(&key, BranchHash::TwoLevel))
        .unwrap()
        .unwrap();
    // (git-annex may have union-merged its index version in meanwhile; the winner per
    // repository is what counts.)
    let log = LocationLog::parse(&text);
    assert_eq!(log.status(&here), Some(Status::Absent));
    assert_eq!(log.status(&dirr), Some(Status::Present));
    drop(rec);
    // git-annex keeps working with the branch afterwards.
    a.annex(&r, &["merge"]);
    assert_eq!(a.whereis(&r, &key), set(&[&dirr]));
}

/// Changes that keep coming are committed at most once per `spacing`, not once per
/// `delay`: a commit writes a pack of the branch's changed trees, so their number is what
/// a long upload costs. Nothing is left behind: the last batch is committed in its turn.
#[test]
fn recorder_spaces_its_commits() {
    let a = Annex::new();
    let r = a.init("r", "r");
    let keys: Vec<Key> = (0..40)
        .map(|i| Key::from_str(&format!("SHA256E-s{i}--{:064x}.bin", i)).unwrap())
        .collect();
    let before = crate::branch::testing::git(&r, &["rev-parse", "git-annex"]);
    let u = Uuid::parse("4fb2ea5a-b9a7-4bd7-9b2f-3bd4e1c1a7d1").unwrap();
    let rec = Recorder::with_options(
        &r,
        RecorderOptions {
            delay: std::time::Duration::from_millis(5),
            spacing: std::time::Duration::from_millis(400),
            vector_clock: None,
        },
    )
    .unwrap();
    let start = std::time::Instant::now();
    for k in &keys {
        rec.record_location(k, &u, true);
        std::thread::sleep(std::time::Duration::from_millis(15));
    }
    let took = start.elapsed();
    // Left to the background thread: the last batch too is committed, within a spacing.
    while rec.pending() > 0 {
        assert!(start.elapsed() < took + std::time::Duration::from_secs(5));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // (The batch is taken before it is committed: a flush waits for that commit to end.)
    assert_eq!(rec.flush().unwrap(), None, "the flush found changes left");
    let range = format!("{before}..git-annex");
    let commits: u64 = crate::branch::testing::git(&r, &["rev-list", "--count", &range])
        .parse()
        .unwrap();
    // 40 changes 15 ms apart (at least 600 ms) with a 5 ms delay would be about 40
    // commits; spaced, one at the start and one per 400 ms after (a slow machine only
    // makes fewer).
    let most = 2 + took.as_millis() as u64 / 400;
    assert!(
        (1..=most).contains(&commits),
        "{commits} commits in {took:?}"
    );
    let repo = GitRepo::open(&r).unwrap();
    let view = repo.view().unwrap();
    for k in &keys {
        let log = LocationLog::parse(
            &view
                .get(&location_log_path(k, BranchHash::TwoLevel))
                .unwrap(),
        );
        assert_eq!(log.present(), vec![u.clone()], "{k}");
    }
    // git-annex reads the first and the last batch alike.
    for k in [&keys[0], &keys[keys.len() - 1]] {
        assert!(a.whereis(&r, k).contains(u.as_str()), "git-annex: {k}");
    }
}

/// A recorder that commits only when told (or dropped).
fn waiting_recorder(r: &Path) -> Recorder {
    Recorder::with_options(
        r,
        RecorderOptions {
            delay: std::time::Duration::from_secs(3600),
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn recorder_commits_promptly_and_on_drop() {
    let a = Annex::new();
    let r = a.init("r", "r");
    let key = a.add(&r, "f.txt", "x\n");
    let repo = GitRepo::open(&r).unwrap();
    let before = repo.branch_tip().unwrap();
    let u = Uuid::parse("4fb2ea5a-b9a7-4bd7-9b2f-3bd4e1c1a7d1").unwrap();
    let rec = Recorder::with_options(
        &r,
        RecorderOptions {
            delay: std::time::Duration::from_millis(100),
            ..Default::default()
        },
    )
    .unwrap();
    let u2 = Uuid::parse("4fb2ea5a-b9a7-4bd7-9b2f-3bd4e1c1a7d2").unwrap();
    let committed = |before: &ObjectId| {
        let start = std::time::Instant::now();
        while repo.branch_tip().unwrap() == *before || rec.pending() > 0 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(5),
                "no commit from the background thread"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    // The second change joins the first one's batch (the thread is not woken for it)
    // and is committed with it.
    rec.record_location(&key, &u, true);
    rec.record_location(&key, &u2, true);
    committed(&before);
    let w = a.whereis(&r, &key);
    assert!(w.contains(u.as_str()) && w.contains(u2.as_str()), "{w:?}");
    // A change after that commit starts a new batch, which is committed in its turn.
    let before = repo.branch_tip().unwrap();
    rec.record_location(&key, &u2, false);
    committed(&before);
    let w = a.whereis(&r, &key);
    assert!(w.contains(u.as_str()) && !w.contains(u2.as_str()), "{w:?}");
    // On drop, queued changes are committed.
    let rec = waiting_recorder(&r);
    rec.record_location(&key, &u, false);
    assert_eq!(rec.pending(), 1);
    drop(rec);
    assert!(!a.whereis(&r, &key).contains(u.as_str()));
}

#[test]
fn queued_location_changes_are_read_before_they_commit() {
    let a = Annex::new();
    let r = a.init("r", "r");
    let key = a.add(&r, "f.txt", "x\n");
    let here = a.uuid(&r);
    let repo = GitRepo::open(&r).unwrap();
    let before = repo.branch_tip().unwrap();
    let u = Uuid::parse("4fb2ea5a-b9a7-4bd7-9b2f-3bd4e1c1a7d1").unwrap();
    let rec = waiting_recorder(&r);
    assert_eq!(rec.present_locations(&key).unwrap(), vec![here.clone()]);
    rec.record_location(&key, &u, true);
    rec.record_location(&key, &here, false);
    // Nothing committed yet, but the reader sees both changes.
    assert_eq!(repo.branch_tip().unwrap(), before);
    assert_eq!(rec.present_locations(&key).unwrap(), vec![u.clone()]);
    // A cluster is never recorded as holding content, queued or not.
    let cluster = Uuid::parse("acd2f3b0-2405-821e-8303-1c3fd7e10053").unwrap();
    assert!(cluster.is_cluster());
    rec.record_location(&key, &cluster, true);
    assert_eq!(rec.present_locations(&key).unwrap(), vec![u.clone()]);
    rec.flush().unwrap();
    assert_ne!(repo.branch_tip().unwrap(), before);
    assert_eq!(rec.present_locations(&key).unwrap(), vec![u.clone()]);
    assert_eq!(a.whereis(&r, &key), set(&[&u]));
}

#[test]
fn vector_clock_and_next_timestamp() {
    let a = Annex::new();
    let r = a.init("r", "r");
    let key = a.add(&r, "f.txt", "x\n");
    let here = a.uuid(&r);
    let repo = GitRepo::open(&r).unwrap();
    let path = location_log_path(&key, BranchHash::TwoLevel);
    let old = LocationLog::parse(&repo.view().unwrap().get(&path).unwrap());
    let old_ts = old.0.get(here.as_str().as_bytes()).unwrap().ts;
    // A clock far in the past: the new line must still win (previous + 1 s).
    let rec = Recorder::with_options(
        &r,
        RecorderOptions {
            vector_clock: Some(super::log::Timestamp::from_secs(1000)),
            ..Default::default()
        },
    )
    .unwrap();
    rec.record_location(&key, &here, false);
    rec.flush().unwrap();
    let new = LocationLog::parse(&repo.view().unwrap().get(&path).unwrap());
    let p = new.0.get(here.as_str().as_bytes()).unwrap();
    assert_eq!(p.status, Status::Absent);
    assert_eq!(
        p.ts,
        super::log::Timestamp::next(super::log::Timestamp::from_secs(1000), [old_ts])
    );
    assert!(a.whereis(&r, &key).is_empty());
}

#[test]
fn journal_entries_of_a_running_git_annex_are_kept() {
    let a = Annex::new();
    let r = a.init("r", "r");
    let key = a.add(&r, "f.txt", "hello\n");
    let here = a.uuid(&r);
    let u1 = "11111111-2222-3333-4444-555555555555";
    let u2 = Uuid::parse("22222222-2222-3333-4444-555555555555").unwrap();
    let u3 = Uuid::parse("33333333-2222-3333-4444-555555555555").unwrap();
    // git-annex leaves its changes in the journal when not committing.
    a.git(&r, &["config", "annex.alwayscommit", "false"]);
    a.annex(&r, &["setpresentkey", &key.to_text(), u1, "1"]);
    a.annex(&r, &["describe", "here", "described in journal"]);
    let repo = GitRepo::open(&r).unwrap();
    let path = location_log_path(&key, BranchHash::TwoLevel);
    let view = repo.view().unwrap();
    assert!(
        view.journalled(&path).unwrap().is_some(),
        "test needs a journal entry"
    );
    assert!(view.journalled_paths().unwrap().contains(&path));
    // Our reader sees the journal's version.
    let l = LocationLog::parse(&view.get(&path).unwrap());
    assert_eq!(l.present().len(), 2);
    let d = UuidLog::parse(&view.get(b"uuid.log").unwrap());
    assert_eq!(d.get(&here).unwrap(), b"described in journal");
    drop(view);

    let rec = Recorder::new(&r).unwrap();
    rec.record_location(&key, &u2, true);
    rec.flush().unwrap();
    // git-annex sees everything: its journal, our commit.
    let want = set(&[&here, &Uuid::parse(u1).unwrap(), &u2]);
    assert_eq!(a.whereis(&r, &key), want);
    // (because our commit was also put where git-annex merges it over its journal)
    let side = a.git(&r, &["rev-parse", "--verify", "-q", SIDE_REF]);
    assert!(!side.trim().is_empty());
    // More journal activity, then another change of ours, then git-annex commits.
    a.annex(&r, &["setpresentkey", &key.to_text(), u3.as_str(), "1"]);
    rec.record_location(&key, &u2, false);
    rec.flush().unwrap();
    a.git(&r, &["config", "annex.alwayscommit", "true"]);
    a.annex(&r, &["merge"]);
    let journal = r.join(".git/annex/journal");
    assert_eq!(
        std::fs::read_dir(&journal).map(|d| d.count()).unwrap_or(0),
        0,
        "git-annex committed its journal"
    );
    let want = set(&[&here, &Uuid::parse(u1).unwrap(), &u3]);
    assert_eq!(a.whereis(&r, &key), want);
    let tip = repo.branch_tip().unwrap();
    let text = repo.read_at(tip, &path).unwrap().unwrap();
    let l = LocationLog::parse(&text);
    assert_eq!(l.status(&u2), Some(Status::Absent));
    let d = UuidLog::parse(&repo.read_at(tip, b"uuid.log").unwrap().unwrap());
    assert_eq!(d.get(&here).unwrap(), b"described in journal");
    a.annex(&r, &["fsck", "--fast", "--json"]);
    // With the journal committed, the next commit needs no side ref, and the merged one
    // is removed.
    rec.record_location(&key, &u2, true);
    rec.flush().unwrap();
    assert!(!a
        .run(&r, "git", &["rev-parse", "--verify", "-q", SIDE_REF])
        .status
        .success());
    assert!(a.whereis(&r, &key).contains(u2.as_str()));
}

#[test]
fn unmerged_sibling_branches_are_read_and_kept() {
    let a = Annex::new();
    let ra = a.init("a", "repo a");
    let key = a.add(&ra, "f.txt", "shared\n");
    let ua = a.uuid(&ra);
    let rb = a.clone_as_remote(&ra, "b", "repo b");
    let ub = a.uuid(&rb);
    let ux = Uuid::parse("44444444-2222-3333-4444-555555555555").unwrap();
    a.annex(&rb, &["setpresentkey", &key.to_text(), ux.as_str(), "1"]);
    // setpresentkey leaves its change in the journal; have it committed in b.
    a.annex(&rb, &["merge"]);
    a.git(&ra, &["fetch", "-q", "b"]);

    let repo = GitRepo::open(&ra).unwrap();
    let view = repo.view().unwrap();
    let sibs = view.unmerged_siblings();
    assert_eq!(sibs.len(), 1, "{sibs:?}");
    assert_eq!(sibs[0].0, "refs/remotes/b/git-annex");
    let path = location_log_path(&key, BranchHash::TwoLevel);
    let l = LocationLog::parse(&view.get(&path).unwrap());
    assert_eq!(l.present().len(), 2, "{l:?}");
    let d = UuidLog::parse(&view.get(b"uuid.log").unwrap());
    assert_eq!(d.get(&ub).unwrap(), b"repo b");
    // The walk over all location logs sees the sibling's version too.
    let mut seen = Vec::new();
    view.for_each_location_log(BranchHash::TwoLevel, |k, c| {
        seen.push((k, LocationLog::parse(c).present().len()));
        true
    })
    .unwrap();
    assert_eq!(seen, [(key.clone(), 2)]);
    drop(view);

    let u3 = Uuid::parse("55555555-2222-3333-4444-555555555555").unwrap();
    let rec = Recorder::new(&ra).unwrap();
    rec.record_location(&key, &u3, true);
    rec.flush().unwrap();
    drop(rec);
    let want = set(&[&ua, &ux, &u3]);
    assert_eq!(a.whereis(&ra, &key), want);
    a.annex(&ra, &["merge"]);
    assert_eq!(a.whereis(&ra, &key), want);
    // After git-annex merged it, the sibling no longer counts as unmerged.
    assert!(repo.view().unwrap().unmerged_siblings().is_empty());
    let info = a.json(&ra, &["info", "--json"]);
    let all: Vec<&str> = info["semitrusted repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["uuid"].as_str().unwrap())
        .collect();
    assert!(
        all.contains(&ub.as_str()),
        "b's own uuid.log line kept: {all:?}"
    );
}

#[test]
fn compare_and_swap_retries_on_a_race() {
    let a = Annex::new();
    let r = a.init("r", "r");
    let k1 = a.add(&r, "one.txt", "1\n");
    let k2 = a.add(&r, "two.txt", "2\n");
    let ua = Uuid::parse("aaaaaaaa-2222-3333-4444-555555555555").unwrap();
    let ub = Uuid::parse("bbbbbbbb-2222-3333-4444-555555555555").unwrap();
    let writer_a = GitRepo::open(&r).unwrap();
    let writer_b = GitRepo::open(&r).unwrap();
    let now = super::log::Timestamp::from_secs(2_000_000_000);
    let edit = |view: &super::repo::BranchView<'_>, key: &Key, u: &Uuid| {
        let p = location_log_path(key, BranchHash::TwoLevel);
        let mut l = LocationLog::parse(&view.get_for_write(&p)?);
        l.record(u, true, now);
        Ok::<_, RepoError>(vec![(p, l.format())])
    };
    let mut calls = 0;
    let out = writer_a
        .update("writer a", |view| {
            calls += 1;
            if calls == 1 {
                // Another writer commits between our read and our ref update: the same
                // file, and another one.
                writer_b
                    .update("writer b", |vb| {
                        let mut files = edit(vb, &k1, &ub)?;
                        files.extend(edit(vb, &k2, &ub)?);
                        Ok(files)
                    })
                    .unwrap();
            }
            edit(view, &k1, &ua)
        })
        .unwrap();
    assert_eq!(out.attempts, 2);
    assert_eq!(calls, 2);
    assert!(out.commit.is_some());
    let here = a.uuid(&r);
    assert_eq!(a.whereis(&r, &k1), set(&[&here, &ua, &ub]));
    assert_eq!(a.whereis(&r, &k2), set(&[&here, &ub]));
    // The branch is a straight line: each commit on the previous tip.
    let log = a.git(&r, &["log", "--format=%s", "-3", "git-annex"]);
    assert_eq!(
        log.lines().take(2).collect::<Vec<_>>(),
        ["writer a", "writer b"]
    );
    // Writing unchanged content is no commit at all.
    let same = writer_a
        .update("noop", |view| edit(view, &k1, &ua))
        .unwrap();
    assert_eq!(same.commit, None);
}

#[test]
fn concurrent_recorders_lose_nothing() {
    let a = Annex::new();
    let r = a.init("r", "r");
    let key = a.add(&r, "f.txt", "f\n");
    let keys: Vec<Key> = (0..15)
        .map(|i| Key::from_str(&format!("SHA256E-s{i}--{:064x}.bin", i)).unwrap())
        .collect();
    let uuids: Vec<Uuid> = (0..2)
        .map(|i| {
            Uuid::parse(&format!(
                "{i}{i}{i}{i}{i}{i}{i}{i}-0000-4000-8000-000000000000"
            ))
            .unwrap()
        })
        .collect();
    std::thread::scope(|s| {
        for u in &uuids {
            let (r, keys, key) = (&r, &keys, &key);
            s.spawn(move || {
                let rec = Recorder::with_options(
                    r,
                    RecorderOptions {
                        delay: std::time::Duration::from_millis(1),
                        spacing: std::time::Duration::ZERO,
                        vector_clock: None,
                    },
                )
                .unwrap();
                for k in keys {
                    rec.record_location(k, u, true);
                    rec.record_location(key, u, true);
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                rec.flush().unwrap();
            });
        }
    });
    let repo = GitRepo::open(&r).unwrap();
    let view = repo.view().unwrap();
    let mut n = 0;
    view.for_each_location_log(BranchHash::TwoLevel, |k, c| {
        let present: BTreeSet<Uuid> = LocationLog::parse(c).present().into_iter().collect();
        for u in &uuids {
            assert!(present.contains(u), "{k}: {u} missing");
        }
        n += 1;
        true
    })
    .unwrap();
    assert_eq!(n, keys.len() + 1);
    let here = a.uuid(&r);
    assert_eq!(a.whereis(&r, &key), set(&[&here, &uuids[0], &uuids[1]]));
}

#[test]
fn walking_location_logs_and_changes() {
    let a = Annex::new();
    let r = a.init("r", "r");
    let repo = GitRepo::open(&r).unwrap();
    let first = repo.branch_tip().unwrap();
    let k1 = a.add(&r, "a.txt", "a\n");
    let k2 = a.add(&r, "b.txt", "b\n");
    a.annex(&r, &["metadata", "--set", "tag=x", "a.txt"]);
    let tip = repo.branch_tip().unwrap();
    let mut keys = BTreeSet::new();
    repo.for_each_location_log(tip, BranchHash::TwoLevel, |k, c| {
        assert_eq!(LocationLog::parse(c).present(), [a.uuid(&r)]);
        keys.insert(k);
        true
    })
    .unwrap();
    assert_eq!(keys, [k1.clone(), k2.clone()].into_iter().collect());
    // Stopping early.
    let mut count = 0;
    repo.for_each_location_log(tip, BranchHash::TwoLevel, |_, _| {
        count += 1;
        false
    })
    .unwrap();
    assert_eq!(count, 1);
    let changed = repo.changed_files(first, tip).unwrap();
    let p1 = location_log_path(&k1, BranchHash::TwoLevel);
    let p2 = location_log_path(&k2, BranchHash::TwoLevel);
    assert!(
        changed.contains(&p1) && changed.contains(&p2),
        "{changed:?}"
    );
    let met =
        super::log::paths::key_log_path(&k1, super::log::KeyLog::MetaData, BranchHash::TwoLevel);
    assert!(changed.contains(&met));
    let md = super::log::MetaDataLog::parse(&repo.read_at(tip, &met).unwrap().unwrap());
    assert_eq!(md.values_of("tag"), [b"x".to_vec()].into_iter().collect());
    assert!(repo.changed_files(tip, tip).unwrap().is_empty());
}

#[test]
fn record_logs_writes_other_logs() {
    let a = Annex::new();
    let r = a.init("r", "r");
    let here = a.uuid(&r);
    let rec = Recorder::new(&r).unwrap();
    let c = rec
        .record_logs(|view, now| {
            let mut d = UuidLog::parse(&view.get_for_write(b"uuid.log")?);
            d.set(here.clone(), b"renamed by us".to_vec(), now);
            let mut m = MaxSizeLog::parse(&view.get_for_write(MAXSIZE_LOG.as_bytes())?);
            m.set(here.clone(), 12345, now);
            Ok(vec![
                (b"uuid.log".to_vec(), d.format()),
                (MAXSIZE_LOG.as_bytes().to_vec(), m.format()),
            ])
        })
        .unwrap();
    assert!(c.is_some());
    let info = a.json(&r, &["info", "--json"]);
    let me = info["semitrusted repositories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["uuid"] == here.as_str())
        .unwrap()
        .clone();
    assert_eq!(me["description"], "renamed by us");
    let out = a.annex(&r, &["maxsize"]);
    assert!(
        out.lines()
            .any(|l| l.contains(here.as_str()) && l.contains("12 kB")),
        "{out}"
    );
    // Setting the same again: no commit.
    let again = rec
        .record_logs(|view, now| {
            let mut d = UuidLog::parse(&view.get_for_write(b"uuid.log")?);
            d.set(here.clone(), b"renamed by us".to_vec(), now);
            Ok(vec![(b"uuid.log".to_vec(), d.format())])
        })
        .unwrap();
    assert_eq!(again, None);
}

#[test]
fn one_level_branch_hash_repositories() {
    let a = Annex::new();
    let r = a.dir("r");
    std::fs::create_dir_all(&r).unwrap();
    a.git(&r, &["init", "-q"]);
    a.git(&r, &["config", "annex.tune.branchhash1", "true"]);
    a.annex(&r, &["init", "one level"]);
    let key = a.add(&r, "f.txt", "one\n");
    let repo = GitRepo::open(&r).unwrap();
    let hash = repo.config().unwrap().branch_hash();
    assert_eq!(hash, BranchHash::OneLevel);
    let tip = repo.branch_tip().unwrap();
    let mut found = Vec::new();
    repo.for_each_location_log(tip, hash, |k, _| {
        found.push(k);
        true
    })
    .unwrap();
    assert_eq!(found, std::slice::from_ref(&key));
    assert!(repo
        .read_at(tip, &location_log_path(&key, BranchHash::OneLevel))
        .unwrap()
        .is_some());
    let u = Uuid::parse("66666666-2222-3333-4444-555555555555").unwrap();
    let rec = Recorder::new(&r).unwrap();
    rec.record_location(&key, &u, true);
    rec.flush().unwrap();
    assert!(a.whereis(&r, &key).contains(u.as_str()));
}

/// A view asks, for every sibling branch, whether the branch contains it; the answer is
/// remembered and reused as the branch moves on by single-parent commits. It must stay
/// right when the branch keeps not containing the sibling, and when it comes to contain it
/// (fast-forwarded onto it, then committed on top).
#[test]
fn sibling_containment_follows_the_branch_as_it_moves() {
    let a = Annex::new();
    let ra = a.init("a", "repo a");
    let key = a.add(&ra, "f.txt", "moving\n");
    a.clone_as_remote(&ra, "b", "repo b");
    a.git(&ra, &["fetch", "-q", "b"]);

    let repo = GitRepo::open(&ra).unwrap();
    assert_eq!(repo.view().unwrap().unmerged_siblings().len(), 1);
    for i in 1..=3 {
        let u = Uuid::parse(&format!("6666666{i}-2222-3333-4444-555555555555")).unwrap();
        let rec = Recorder::new(&ra).unwrap();
        rec.record_location(&key, &u, true);
        rec.flush().unwrap();
        let sibs = repo.view().unwrap().unmerged_siblings();
        assert_eq!(sibs.len(), 1, "after our commit {i}: {sibs:?}");
    }
    let side = a
        .git(&ra, &["rev-parse", "refs/remotes/b/git-annex"])
        .trim()
        .to_string();
    a.git(&ra, &["update-ref", "refs/heads/git-annex", &side]);
    let u = Uuid::parse("77777777-2222-3333-4444-555555555555").unwrap();
    let rec = Recorder::new(&ra).unwrap();
    rec.record_location(&key, &u, true);
    rec.flush().unwrap();
    let sibs = repo.view().unwrap().unmerged_siblings();
    assert!(sibs.is_empty(), "the branch now contains b's: {sibs:?}");
}

/// A `GitRepo` kept open (as a gateway keeps it) sees sibling branches as they appear,
/// move into `packed-refs` and go away, on its next view: they are found by listing ref
/// names, loose and packed, every time.
#[test]
fn sibling_branches_are_seen_as_they_come_and_go() {
    let a = Annex::new();
    let ra = a.init("a", "repo a");
    a.add(&ra, "f.txt", "siblings\n");
    a.clone_as_remote(&ra, "b", "repo b");

    let repo = GitRepo::open(&ra).unwrap();
    let names = |repo: &GitRepo| -> Vec<String> {
        repo.view()
            .unwrap()
            .unmerged_siblings()
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    };
    assert!(names(&repo).is_empty());
    // Kept and read again, it watches its refs: what follows is seen through the watch.
    assert!(names(&repo).is_empty());
    assert!(repo.watching());
    a.git(&ra, &["fetch", "-q", "b"]);
    assert_eq!(names(&repo), vec!["refs/remotes/b/git-annex".to_string()]);
    a.git(&ra, &["pack-refs", "--all"]);
    assert!(!ra.join(".git/refs/remotes/b/git-annex").exists());
    assert_eq!(names(&repo), vec!["refs/remotes/b/git-annex".to_string()]);
    a.git(&ra, &["update-ref", "-d", "refs/remotes/b/git-annex"]);
    assert!(names(&repo).is_empty());
    // git-annex itself committing to the branch beside the kept GitRepo: seen at once.
    let before = repo.view().unwrap().tip();
    a.annex(&ra, &["describe", "here", "repo a, renamed"]);
    let tip = a.git(&ra, &["rev-parse", "refs/heads/git-annex"]);
    assert_ne!(tip.trim(), before.to_string(), "git-annex committed");
    let view = repo.view().unwrap();
    assert_eq!(view.tip().to_string(), tip.trim());
    assert!(String::from_utf8_lossy(&view.get(b"uuid.log").unwrap()).contains("renamed"));
}
