//! Differential tests against the real git-annex: `git annex matchexpression` parses and
//! evaluates expressions that need no repository state, and must agree with us on every
//! one (match, no match, or the same parse error).
//!
//! The tests need git-annex: `ANNEXGATE_TOOLS` (set by scripts/test) or the workspace's
//! `.tools`. They fail, never skip, when it is missing.

use super::*;
use crate::types::{Key, Uuid};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Annex {
    _home: tempfile::TempDir,
    repo: tempfile::TempDir,
    path_var: String,
    home: PathBuf,
    magic: Option<PathBuf>,
}

fn tools_dir() -> PathBuf {
    let dir = std::env::var_os("ANNEXGATE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools"));
    let bin = dir.join("bin/git-annex");
    assert!(
        bin.exists(),
        "git-annex is needed for this test but {} does not exist; run scripts/setup or set ANNEXGATE_TOOLS",
        bin.display()
    );
    dir
}

impl Annex {
    fn new() -> Annex {
        let tools = tools_dir();
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join(".gitconfig"),
            "[user]\n\tname = annexgate test\n\temail = test@annexgate.invalid\n[init]\n\tdefaultBranch = master\n",
        )
        .unwrap();
        let path_var = format!(
            "{}:{}",
            tools.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let magic = Some(tools.join("pypi/git_annex/magic.mgc")).filter(|p| p.exists());
        let repo = tempfile::tempdir().unwrap();
        let a = Annex {
            home: home.path().to_path_buf(),
            _home: home,
            repo,
            path_var,
            magic,
        };
        a.run_ok(a.repo.path(), &["git", "init", "-q"]);
        a.run_ok(a.repo.path(), &["git", "annex", "init", "-q", "oracle"]);
        a
    }

    fn cmd(&self, dir: &Path, argv: &[&str]) -> Command {
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..])
            .current_dir(dir)
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("PATH", &self.path_var)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE");
        if let Some(m) = &self.magic {
            c.env("MAGIC", m);
        }
        c
    }

    fn run_ok(&self, dir: &Path, argv: &[&str]) -> String {
        let out = self.cmd(dir, argv).output().unwrap();
        assert!(
            out.status.success(),
            "{argv:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// git-annex's verdict on an expression for a file and key.
    fn matchexpression(&self, expr: &str, file: &str, key: &str) -> Verdict {
        let out = self
            .cmd(
                self.repo.path(),
                &[
                    "git",
                    "annex",
                    "matchexpression",
                    expr,
                    "--file",
                    file,
                    "--key",
                    key,
                ],
            )
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        match out.status.code() {
            Some(0) => Verdict::Match,
            Some(1) if err.is_empty() => Verdict::NoMatch,
            Some(1) if err.contains("failed to compile regex: ") => Verdict::Error(
                err.split("failed to compile regex: ")
                    .nth(1)
                    .unwrap()
                    .to_string(),
            ),
            Some(42) => Verdict::Error(
                err.strip_prefix("bad expression: ")
                    .unwrap_or(&err)
                    .to_string(),
            ),
            other => panic!("git annex matchexpression {expr:?}: exit {other:?}: {err}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Match,
    NoMatch,
    /// A parse error (git-annex's message) or a regex that does not compile.
    Error(String),
}

/// Our verdict, for a repository with no other state.
fn ours(expr: &str, file: &str, key: &str) -> Verdict {
    match Expr::parse(expr) {
        Err(e) => {
            if let [TermFailure {
                error: TermError::BadGlob { regex },
                ..
            }] = e.failures.as_slice()
            {
                return Verdict::Error(regex.clone());
            }
            Verdict::Error(e.to_string())
        }
        Ok(_) => {
            let me = Uuid::parse("11111111-2222-4333-8444-555555555555").unwrap();
            let e = Engine::new(Facts::default().with_preferred(&me, expr));
            let k = KeyInfo::new(Key::from_str(key).unwrap(), Vec::new());
            // matchexpression's matcher with no terms matches.
            if e.want_get(&me, &k, Some(file.as_bytes())).or(true) {
                Verdict::Match
            } else {
                Verdict::NoMatch
            }
        }
    }
}

const SHA_TXT: &str =
    "SHA256E-s1010--b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9.txt";
const MD5: &str = "MD5E-s16--5eb63bbbe01eeed093cb22bb8f5acdc3.bin";
const WORM: &str = "WORM-s3-m1700000000--a b";
const SHA1: &str = "SHA1-s0--da39a3ee5e6b4b0d3255bfef95601890afd80709";

#[test]
fn matchexpression_agrees_on_fixed_cases() {
    let annex = Annex::new();
    let cases: &[(&str, &str, &str)] = &[
        // evaluation order
        (
            "include=*.txt or include=*.bin and smallerthan=5",
            "x.txt",
            SHA_TXT,
        ),
        (
            "include=*.txt or (include=*.bin and smallerthan=5)",
            "x.txt",
            SHA_TXT,
        ),
        ("include=*.txt include=*.bin", "x.txt", SHA_TXT),
        ("not include=*.txt and include=*.txt", "x.txt", SHA_TXT),
        (
            "include=*.txt and ( include=*.bin or smallerthan=2000",
            "x.txt",
            SHA_TXT,
        ),
        ("include=*.txt ) ) or nothing", "x.txt", SHA_TXT),
        ("( include=y ( include=x or include=x ) )", "x", SHA_TXT),
        ("include=y ( include=x or include=x )", "x", SHA_TXT),
        ("include=x or", "y", SHA_TXT),
        ("include=x and or include=y", "x", SHA_TXT),
        ("not", "x", SHA_TXT),
        ("", "x", SHA_TXT),
        ("and", "x", SHA_TXT),
        ("(include=x)or(include=y)", "y", SHA_TXT),
        ("not not not include=x", "x", SHA_TXT),
        // globs
        ("include=*.mp3", "dir/x.mp3", SHA_TXT),
        ("include=*.TXT", "A.txt", SHA_TXT),
        ("include=a?c", "a/c", SHA_TXT),
        ("include=a/b", "a//b", SHA_TXT),
        ("include=a//b", "a/b", SHA_TXT),
        ("include=[[:alpha:]]", "\\", SHA_TXT),
        ("include=[[:graph:]]", "!", SHA_TXT),
        ("include=[]a]", "a]", SHA_TXT),
        ("include=[!a]", "a", SHA_TXT),
        ("include=[^a]", "b", SHA_TXT),
        ("include=a<b", "a<b", SHA_TXT),
        ("include=a'", "a", SHA_TXT),
        ("include=a>", "a", SHA_TXT),
        ("include=[abc", "x", SHA_TXT),
        ("include=[z-a]", "a", SHA_TXT),
        ("include=*[[:space:]]*", "a b", SHA_TXT),
        ("include", "", SHA_TXT),
        ("exclude=*.txt", "a.txt", SHA_TXT),
        ("exclude=archive/*", "x/archive/y", SHA_TXT),
        ("include=*/archive/*", "archive/y", SHA_TXT),
        // sizes
        ("largerthan=1kb", "x", SHA_TXT),
        ("largerthan=1KiB", "x", SHA_TXT),
        ("largerthan=1.kb", "x", SHA_TXT),
        ("largerthan=0x3f2", "x", SHA_TXT),
        ("largerthan=1009.5", "x", SHA_TXT),
        ("largerthan=1010.5", "x", SHA_TXT),
        ("smallerthan=1.01kilobytes", "x", SHA_TXT),
        ("smallerthan=1011bytes", "x", SHA_TXT),
        ("smallerthan=8kbit", "x", SHA_TXT),
        ("smallerthan=0.001MB", "x", SHA_TXT),
        ("largerthan=-1", "x", SHA1),
        ("largerthan=+5", "x", SHA_TXT),
        ("largerthan=5zz", "x", SHA_TXT),
        ("largerthan=1e400", "x", SHA_TXT),
        ("smallerthan=1e3", "x", SHA_TXT),
        // keys
        ("inbackend=SHA256E", "x", SHA_TXT),
        ("inbackend=SHA256", "x", SHA_TXT),
        ("securehash", "x", SHA_TXT),
        ("securehash", "x", MD5),
        ("securehash", "x", WORM),
        ("securehash", "x", SHA1),
        // copies and friends, with no copies anywhere
        ("copies=0", "x", SHA_TXT),
        ("copies=1", "x", SHA_TXT),
        ("copies=2abc", "x", SHA_TXT),
        ("copies=2.5", "x", SHA_TXT),
        ("copies=trusted:0", "x", SHA_TXT),
        ("copies=a:b:1", "x", SHA_TXT),
        ("copies=g:0:5", "x", SHA_TXT),
        ("copies=g:0abc", "x", SHA_TXT),
        ("copies=0abc:", "x", SHA_TXT),
        ("copies=trusted+:0x0", "x", SHA_TXT),
        ("balanced=g:1abc", "x", SHA_TXT),
        ("copies", "x", SHA_TXT),
        ("lackingcopies=1", "x", SHA_TXT),
        ("approxlackingcopies=2", "x", SHA_TXT),
        ("lackingcopies=x", "x", SHA_TXT),
        ("inallgroup=g", "x", SHA_TXT),
        ("onlyingroup=g", "x", SHA_TXT),
        ("balanced=g", "x", SHA_TXT),
        ("fullybalanced=g:2", "x", SHA_TXT),
        ("sizebalanced=g:lackingcopies", "x", SHA_TXT),
        ("balanced=g:x", "x", SHA_TXT),
        ("fullysizebalanced=g:1:2", "x", SHA_TXT),
        ("present", "x", SHA_TXT),
        ("not present", "x", SHA_TXT),
        ("include=* and not balanced=g", "x", SHA_TXT),
        ("not fullybalanced=g", "x", SHA_TXT),
        ("unused", "x", SHA_TXT),
        ("inpreferreddir", "public/x", SHA_TXT),
        ("inpreferreddir", "a/public/x", SHA_TXT),
        ("inpreferreddir", "public/a/x", SHA_TXT),
        ("metadata=tag=*", "x", SHA_TXT),
        ("metadata=-a=b", "x", SHA_TXT),
        ("metadata=a b", "x", SHA_TXT),
        ("url=http*", "x", SHA_TXT),
        ("anything", "x", SHA_TXT),
        ("nothing", "x", SHA_TXT),
        // unknown terms
        ("include=*.txt foo=bar", "x.txt", SHA_TXT),
        ("include=x foo=bar baz", "x", SHA_TXT),
        ("largerthan=1zz copies=x", "x", SHA_TXT),
        ("anything=1", "x", SHA_TXT),
        ("frob=\u{e9}", "x", SHA_TXT),
        ("in=here", "x", SHA_TXT),
        ("mimetype=text/*", "x", SHA_TXT),
    ];
    let mut mismatches = Vec::new();
    for (expr, file, key) in cases {
        let theirs = annex.matchexpression(expr, file, key);
        let mine = ours(expr, file, key);
        if theirs != mine {
            mismatches.push(format!(
                "{expr:?} file {file:?} key {key}: git-annex {theirs:?}, ours {mine:?}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// A small deterministic generator (no external randomness in tests).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.next() as usize % v.len()]
    }
}

#[test]
fn matchexpression_agrees_on_generated_expressions() {
    let annex = Annex::new();
    let terms = [
        "include=*.txt",
        "include=*/*",
        "include=?",
        "include=[a-c]*",
        "include=*[!x]",
        "include=dir/*",
        "exclude=*.bin",
        "exclude=d*",
        "largerthan=1kb",
        "largerthan=10",
        "smallerthan=1KiB",
        "smallerthan=2k",
        "copies=1",
        "lackingcopies=1",
        "approxlackingcopies=2",
        "inbackend=SHA256E",
        "securehash",
        "anything",
        "nothing",
        "present",
        "inallgroup=g",
        "onlyingroup=g",
        "inpreferreddir",
    ];
    let syntax = ["and", "or", "not", "(", ")"];
    let files = [
        "a.txt",
        "dir/b.bin",
        "c",
        "dir/sub/d.txt",
        "public/x.bin",
        "x y.txt",
    ];
    let keys = [SHA_TXT, MD5, SHA1];
    let mut rng = Lcg(0x5eed);
    let mut mismatches = Vec::new();
    for _ in 0..150 {
        let n = 1 + rng.next() as usize % 7;
        let toks: Vec<&str> = (0..n)
            .map(|_| {
                if rng.next() % 3 == 0 {
                    rng.pick(&syntax)
                } else {
                    rng.pick(&terms)
                }
            })
            .collect();
        let expr = toks.join(" ");
        let file = rng.pick(&files);
        let key = rng.pick(&keys);
        let theirs = annex.matchexpression(&expr, file, key);
        let mine = ours(&expr, file, key);
        if theirs != mine {
            mismatches.push(format!(
                "{expr:?} file {file:?} key {key}: git-annex {theirs:?}, ours {mine:?}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// `exclude=` with no file name is true (the spec said false; git-annex's source and this
/// run say true): a repository wanting `exclude=*.txt` gets a key no file uses.
#[test]
fn exclude_without_file_is_true_in_git_annex() {
    let annex = Annex::new();
    let top = tempfile::tempdir().unwrap();
    let a = top.path().join("A");
    let b = top.path().join("B");
    std::fs::create_dir(&a).unwrap();
    annex.run_ok(&a, &["git", "init", "-q"]);
    annex.run_ok(&a, &["git", "annex", "init", "-q", "A"]);
    std::fs::write(a.join("x.txt"), "content1\n").unwrap();
    annex.run_ok(&a, &["git", "annex", "add", "-q", "x.txt"]);
    annex.run_ok(&a, &["git", "commit", "-qm", "add"]);
    annex.run_ok(&a, &["git", "rm", "-q", "x.txt"]);
    annex.run_ok(&a, &["git", "commit", "-qm", "rm"]);
    annex.run_ok(
        top.path(),
        &[
            "git",
            "clone",
            "-q",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
    );
    annex.run_ok(&b, &["git", "annex", "init", "-q", "B"]);
    let key = Key::from_str(
        annex
            .run_ok(&a, &["git", "annex", "findkeys"])
            .lines()
            .next()
            .expect("A has the key"),
    )
    .unwrap();
    let b_uuid = Uuid::parse(annex.run_ok(&b, &["git", "config", "annex.uuid"]).trim()).unwrap();
    let a_uuid = Uuid::parse(annex.run_ok(&a, &["git", "config", "annex.uuid"]).trim()).unwrap();
    for expr in ["exclude=*.txt", "include=*", "exclude=*", "anything"] {
        annex.run_ok(&b, &["git", "annex", "wanted", ".", expr]);
        annex.run_ok(&b, &["git", "annex", "sync", "-q", "--content", "--all"]);
        let got = !annex
            .run_ok(&b, &["git", "annex", "findkeys", "--in", "here"])
            .trim()
            .is_empty();
        let e = Engine::new(Facts::default().with_preferred(&b_uuid, expr));
        let k = KeyInfo::new(key.clone(), vec![a_uuid.clone()]);
        let ours = e.want_get(&b_uuid, &k, None) == Want::Wanted;
        assert_eq!(got, ours, "{expr}: git-annex got it: {got}");
        annex.run_ok(&b, &["git", "annex", "drop", "-q", "--force", "--all"]);
    }
}
