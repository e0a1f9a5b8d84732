//! Repositories in a test: clients (non-bare, `git annex init`), servers (bare or not) that
//! clients reach as ssh remotes, and what tests ask of them (files, keys, locations, objects).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::env::{ShellImpl, Side, TestEnv};
use super::run::RunResult;
use super::ssh::SSH_HOST;

/// Bare or with a work tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    Bare,
    NonBare,
}

/// A git-annex repository inside a [`TestEnv`].
pub struct Repo<'e> {
    env: &'e TestEnv,
    side: Side,
    name: String,
    path: PathBuf,
    kind: RepoKind,
    uuid: String,
}

impl TestEnv {
    /// A non-bare client repository `<root>/<name>`, `git annex init <name>`.
    pub fn client_repo(&self, name: &str) -> Repo<'_> {
        Repo::create(self, Side::Client, name, RepoKind::NonBare)
    }

    /// A server repository `<root>/<name>` (`<name>.git` when bare), made by the server
    /// account and `git annex init <name>`; clients reach it with [`Repo::add_ssh_remote`].
    pub fn server_repo(&self, name: &str, kind: RepoKind) -> Repo<'_> {
        Repo::create(self, Side::Server, name, kind)
    }
}

impl<'e> Repo<'e> {
    /// A handle on an existing repository at `path` (e.g. made by `git clone`), used as
    /// `side`. Its git-annex UUID, if it has one, names it in locations after `name`.
    pub fn open(env: &'e TestEnv, side: Side, path: &Path, name: &str) -> Repo<'e> {
        let mut repo = Repo {
            env,
            side,
            name: name.to_string(),
            path: path.to_path_buf(),
            kind: RepoKind::NonBare,
            uuid: String::new(),
        };
        if repo.git(&["rev-parse", "--is-bare-repository"]).trim() == "true" {
            repo.kind = RepoKind::Bare;
        }
        let uuid = repo
            .try_git(&["config", "annex.uuid"])
            .stdout
            .trim()
            .to_string();
        if !uuid.is_empty() {
            env.register_uuid(&uuid, name);
        }
        repo.uuid = uuid;
        repo
    }

    fn create(env: &'e TestEnv, side: Side, name: &str, kind: RepoKind) -> Repo<'e> {
        let dir_name = match kind {
            RepoKind::Bare => format!("{name}.git"),
            RepoKind::NonBare => name.to_string(),
        };
        let path = env.root().join(dir_name);
        let mut init = env.command(side, "git", env.root());
        init.args(["init", "-q"]);
        if kind == RepoKind::Bare {
            init.arg("--bare");
        }
        env.run(init.arg(&path));
        let mut repo = Repo {
            env,
            side,
            name: name.to_string(),
            path,
            kind,
            uuid: String::new(),
        };
        repo.annex(&["init", name]);
        repo.uuid = repo.git(&["config", "annex.uuid"]).trim().to_string();
        assert!(!repo.uuid.is_empty(), "git annex init gave {name} no UUID");
        env.register_uuid(&repo.uuid, name);
        repo
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn kind(&self) -> RepoKind {
        self.kind
    }
    /// The git-annex UUID (empty for a repo opened before `git annex init`).
    pub fn uuid(&self) -> &str {
        &self.uuid
    }
    pub fn env(&self) -> &'e TestEnv {
        self.env
    }

    /// The git dir: the repo itself when bare, else `.git`.
    pub fn git_dir(&self) -> PathBuf {
        match self.kind {
            RepoKind::Bare => self.path.clone(),
            RepoKind::NonBare => self.path.join(".git"),
        }
    }

    /// The URL a client uses for this repo over ssh: `annexgate-test:/abs/path`.
    pub fn ssh_url(&self) -> String {
        format!("{SSH_HOST}:{}", self.path.display())
    }

    fn cmd(&self, program: &str, args: &[&str]) -> std::process::Command {
        let mut c = self.env.command(self.side, program, &self.path);
        c.args(args);
        c
    }

    /// `git ARGS` in this repo; panics on failure; returns stdout.
    #[track_caller]
    pub fn git(&self, args: &[&str]) -> String {
        self.env.run(&mut self.cmd("git", args)).stdout
    }

    pub fn try_git(&self, args: &[&str]) -> RunResult {
        self.env.try_run(&mut self.cmd("git", args))
    }

    /// `git annex ARGS` in this repo; panics (with both outputs) on failure.
    #[track_caller]
    pub fn annex(&self, args: &[&str]) -> RunResult {
        self.try_annex(args).ok()
    }

    pub fn try_annex(&self, args: &[&str]) -> RunResult {
        let mut c = self.cmd("git", &["annex"]);
        c.args(args);
        self.env.try_run(&mut c)
    }

    /// `git annex ARGS --json`, parsed (one object per output line); panics on failure.
    #[track_caller]
    pub fn annex_json(&self, args: &[&str]) -> Vec<Value> {
        let (r, v) = self.try_annex_json(args);
        r.ok();
        v
    }

    /// `git annex ARGS --json`: the run and its parsed objects, whatever the exit code.
    pub fn try_annex_json(&self, args: &[&str]) -> (RunResult, Vec<Value>) {
        let mut a = args.to_vec();
        a.push("--json");
        let r = self.try_annex(&a);
        let v = parse_json_lines(&r);
        (r, v)
    }

    /// Sets a git config value in this repo.
    pub fn set_config(&self, key: &str, value: &str) {
        self.git(&["config", key, value]);
    }

    /// Writes a file into the work tree (creating directories).
    pub fn write_file(&self, rel: &str, content: &[u8]) {
        assert_eq!(
            self.kind,
            RepoKind::NonBare,
            "{} has no work tree",
            self.name
        );
        let p = self.path.join(rel);
        if let Some(d) = p.parent() {
            fs::create_dir_all(d).expect("creating directories in the work tree");
        }
        fs::write(&p, content).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
    }

    /// Writes the files, `git annex add`s them and commits.
    pub fn add_files(&self, files: &[(&str, &[u8])]) {
        let mut names = vec!["add", "--quiet"];
        for (rel, content) in files {
            self.write_file(rel, content);
            names.push(rel);
        }
        self.annex(&names);
        self.git(&["commit", "-q", "-m", "add files"]);
    }

    /// The annex key of a work tree file.
    pub fn key_of(&self, file: &str) -> String {
        let k = self.annex(&["lookupkey", file]).stdout.trim().to_string();
        assert!(!k.is_empty(), "{file} has no key in {}", self.name);
        k
    }

    /// The repositories `whereis` says hold `file` (or a key, with `--key`), by the names
    /// they were created with, sorted.
    pub fn whereis(&self, file_or_key_args: &[&str]) -> Vec<String> {
        let mut args = vec!["whereis"];
        args.extend_from_slice(file_or_key_args);
        let v = self.annex_json(&args);
        let mut names = BTreeSet::new();
        for item in &v {
            for loc in item["whereis"].as_array().into_iter().flatten() {
                let uuid = loc["uuid"].as_str().unwrap_or_default();
                names.insert(self.env.name_of(uuid));
            }
        }
        names.into_iter().collect()
    }

    /// `fsck ARGS --json` as (file or key, success) pairs, sorted, and the exit code.
    pub fn fsck(&self, args: &[&str]) -> (Option<i32>, Vec<(String, bool)>) {
        let mut a = vec!["fsck"];
        a.extend_from_slice(args);
        let (r, v) = self.try_annex_json(&a);
        let mut items: Vec<(String, bool)> = v
            .iter()
            .filter(|o| o["command"] == "fsck")
            .map(|o| {
                let what = o["file"]
                    .as_str()
                    .or_else(|| o["key"].as_str())
                    .unwrap_or_default()
                    .to_string();
                (what, o["success"].as_bool().unwrap_or(false))
            })
            .collect();
        items.sort();
        (r.code, items)
    }

    /// Where the object file for `key` is, if this repo has it (either hash layout).
    pub fn find_object(&self, key: &str) -> Option<PathBuf> {
        let file = key_file(key);
        let objects = self.git_dir().join("annex/objects");
        for a in fs::read_dir(&objects).ok()?.flatten() {
            for b in fs::read_dir(a.path()).ok()?.flatten() {
                let p = b.path().join(&file).join(&file);
                if p.is_file() {
                    return Some(p);
                }
            }
        }
        None
    }

    /// The object's content, if present.
    pub fn object_content(&self, key: &str) -> Option<Vec<u8>> {
        self.find_object(key)
            .map(|p| fs::read(p).expect("reading an object"))
    }

    /// Where a partially received object waits (`annex/tmp/<keyfile>`).
    pub fn tmp_object(&self, key: &str) -> PathBuf {
        self.git_dir().join("annex/tmp").join(key_file(key))
    }

    /// Adds `server` as ssh remote `name`, running `shell` on the far side, and makes first
    /// contact (`git annex sync --no-content NAME`: configlist, fetch, push). Panics unless
    /// the client learnt the server's UUID.
    #[track_caller]
    pub fn add_ssh_remote(&self, name: &str, server: &Repo<'_>, shell: ShellImpl) {
        self.git(&["remote", "add", name, &server.ssh_url()]);
        self.set_config(
            &format!("remote.{name}.annex-shell"),
            &shell.program().to_string_lossy(),
        );
        let r = self.try_annex(&["sync", "--no-content", name]);
        let learnt = self
            .try_git(&["config", &format!("remote.{name}.annex-uuid")])
            .stdout
            .trim()
            .to_string();
        assert!(
            learnt == server.uuid() && r.success(),
            "first contact with {name} ({shell:?}) failed: the client learnt UUID {learnt:?}, \
             the server has {:?}\n{r}",
            server.uuid()
        );
    }
}

/// A key as a file name (git-annex's escaping: `&`->`&a`, `%`->`&s`, `:`->`&c`, `/`->`%`).
pub fn key_file(key: &str) -> String {
    key.replace('&', "&a")
        .replace('%', "&s")
        .replace(':', "&c")
        .replace('/', "%")
}

/// Parses git-annex `--json` output (one object per line); panics on a line that is not JSON.
pub fn parse_json_lines(r: &RunResult) -> Vec<Value> {
    r.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\nfrom {r}"))
        })
        .collect()
}

/// `len` bytes that look random (so no transport can compress them), the same for a seed.
/// Files `name(1)`..`name(n)` of `len` pseudo-random bytes each (file i from seed
/// `seed + i`), for `Repo::add_files`.
pub fn random_files(
    name: impl Fn(u64) -> String,
    n: u64,
    len: usize,
    seed: u64,
) -> Vec<(&'static str, Vec<u8>)> {
    (1..=n)
        .map(|i| {
            let name: &'static str = Box::leak(name(i).into_boxed_str());
            (name, pseudo_random(len, seed + i))
        })
        .collect()
}

pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The P2P messages the client side sent (`> MSG`) and received (`< MSG`), in order, from the
/// stderr of a git-annex command run with `--debug`. The server's own debug lines (git-annex
/// passes `--debug` on to git-annex-shell) carry no connection tag and are left out.
pub fn client_p2p_trace(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains("(P2P.IO)") && l.contains(" connection "))
        .filter_map(|l| {
            let i = l.find("] P2P ")?;
            Some(l[i + 6..].to_string())
        })
        .collect()
}
