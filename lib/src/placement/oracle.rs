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

    /// The verdict and git-annex's `--explain` line (without its brackets), if any.
    fn matchexpression_explained(
        &self,
        expr: &str,
        file: &str,
        key: &str,
    ) -> (Verdict, Option<String>) {
        let out = self
            .cmd(
                self.repo.path(),
                &[
                    "git",
                    "annex",
                    "matchexpression",
                    "--explain",
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
        let explained = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("[ ").and_then(|l| l.strip_suffix(" ]")))
            .map(str::to_string);
        let verdict = match out.status.code() {
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
        };
        (verdict, explained)
    }
}

/// Our `--explain` line for the same question.
fn our_explanation(expr: &str, file: &str, key: &str) -> Option<String> {
    Expr::parse(expr).ok()?;
    let me = Uuid::parse("11111111-2222-4333-8444-555555555555").unwrap();
    let e = Engine::new(Facts::default().with_preferred(&me, expr));
    let k = KeyInfo::new(Key::from_str(key).unwrap(), Vec::new());
    let mut ex = e.explain(&me, &k, Some(file.as_bytes()), &[]);
    ex.matcher = "provided expression";
    ex.describe()
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
        let (theirs, explained) = annex.matchexpression_explained(expr, file, key);
        let mine = ours(expr, file, key);
        if theirs != mine {
            mismatches.push(format!(
                "{expr:?} file {file:?} key {key}: git-annex {theirs:?}, ours {mine:?}"
            ));
        }
        let my_explanation = our_explanation(expr, file, key);
        if explained != my_explanation {
            mismatches.push(format!(
                "{expr:?} file {file:?}: git-annex explains {explained:?}, we {my_explanation:?}"
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
        let (theirs, explained) = annex.matchexpression_explained(&expr, file, key);
        let mine = ours(&expr, file, key);
        if theirs != mine {
            mismatches.push(format!(
                "{expr:?} file {file:?} key {key}: git-annex {theirs:?}, ours {mine:?}"
            ));
        }
        let my_explanation = our_explanation(&expr, file, key);
        if explained != my_explanation {
            mismatches.push(format!(
                "{expr:?} file {file:?}: git-annex explains {explained:?}, we {my_explanation:?}"
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

/// One configuration step, applied both to a real repository and to our facts.
#[derive(Debug, Clone)]
enum Setup {
    Group(usize, &'static str),
    Wanted(usize, &'static str),
    Required(usize, &'static str),
    GroupWanted(&'static str, &'static str),
    Trust(usize, TrustLevel),
    NumCopies(i64),
    MaxSize(usize, u64),
    /// File index present in remote index.
    Present(usize, usize),
    /// Drop the local copy of a file.
    DropHere(usize),
    /// `git annex metadata -s FIELD=VALUE` on a file.
    Metadata(usize, &'static str, &'static str),
    /// `git annex registerurl` for a file's key.
    Url(usize, &'static str),
    /// `annex.numcopies` for one file in `.gitattributes`.
    NumCopiesAttr(usize, &'static str),
    /// Evaluate with `--rebalance`.
    Rebalance,
}

/// A repository with `remotes` directory special remotes and files of the given sizes,
/// configured by `steps`; then every remote's `find --want-get-by` and
/// `--want-drop-by` must equal our engine's answers.
fn scenario(remotes: usize, sizes: &[u64], steps: &[Setup]) -> usize {
    let annex = Annex::new();
    let top = annex.repo.path().to_path_buf();
    let stores = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    let mut uuids = Vec::new();
    for i in 0..remotes {
        let name = format!("r{i}");
        let dir = stores.path().join(&name);
        std::fs::create_dir(&dir).unwrap();
        annex.run_ok(
            &top,
            &[
                "git",
                "annex",
                "initremote",
                "-q",
                &name,
                "type=directory",
                &format!("directory={}", dir.display()),
                "encryption=none",
            ],
        );
        let u = annex.run_ok(
            &top,
            &["git", "config", &format!("remote.{name}.annex-uuid")],
        );
        uuids.push(Uuid::parse(u.trim()).unwrap());
        names.push(name);
    }
    let me = Uuid::parse(annex.run_ok(&top, &["git", "config", "annex.uuid"]).trim()).unwrap();
    let files: Vec<String> = (0..sizes.len()).map(|i| format!("f{i}.dat")).collect();
    for (i, (f, size)) in files.iter().zip(sizes).enumerate() {
        // Distinct content per file even at equal sizes.
        let mut content = vec![b'a' + (i % 26) as u8; *size as usize];
        if let Some(first) = content.first_mut() {
            *first = i as u8;
        }
        std::fs::write(top.join(f), content).unwrap();
    }
    annex.run_ok(&top, &["git", "annex", "add", "-q", "."]);
    annex.run_ok(&top, &["git", "commit", "-qm", "files"]);
    let keys: Vec<Key> = files
        .iter()
        .map(|f| {
            Key::from_str(annex.run_ok(&top, &["git", "annex", "lookupkey", f]).trim()).unwrap()
        })
        .collect();
    let mut facts = Facts {
        local: Some(me.clone()),
        ..Default::default()
    };
    let mut locations: Vec<Vec<Uuid>> = keys.iter().map(|_| vec![me.clone()]).collect();
    let mut here: Vec<bool> = vec![true; keys.len()];
    let mut metadata: Vec<Vec<(String, Vec<u8>)>> = vec![Vec::new(); keys.len()];
    let mut urls: Vec<Vec<String>> = vec![Vec::new(); keys.len()];
    let mut attrs: Vec<Option<String>> = vec![None; keys.len()];
    let mut rebalance = false;
    for step in steps {
        let run = |args: &[&str]| {
            let mut v = vec!["git", "annex"];
            v.extend_from_slice(args);
            annex.run_ok(&top, &v);
        };
        match step {
            Setup::Group(r, g) => {
                run(&["group", &names[*r], g]);
                facts = facts.with_group(&uuids[*r], g);
            }
            Setup::Wanted(r, e) => {
                run(&["wanted", &names[*r], e]);
                facts = facts.with_preferred(&uuids[*r], e);
            }
            Setup::Required(r, e) => {
                run(&["required", &names[*r], e]);
                facts = facts.with_required(&uuids[*r], e);
            }
            Setup::GroupWanted(g, e) => {
                run(&["groupwanted", g, e]);
                facts = facts.with_group_preferred(g, e);
            }
            Setup::Trust(r, t) => {
                let cmd = match t {
                    TrustLevel::Trusted => "trust",
                    TrustLevel::SemiTrusted => "semitrust",
                    TrustLevel::Untrusted => "untrust",
                    TrustLevel::Dead => "dead",
                };
                run(&[cmd, "--force", &names[*r]]);
                facts = facts.with_trust(&uuids[*r], *t);
                if *t == TrustLevel::Dead {
                    // `git annex dead` also takes the repository out of its groups.
                    facts.groups.remove(&uuids[*r]);
                }
            }
            Setup::NumCopies(n) => {
                run(&["numcopies", &n.to_string()]);
                facts.numcopies = Some(*n);
            }
            Setup::MaxSize(r, n) => {
                run(&["maxsize", &names[*r], &n.to_string()]);
                facts = facts.with_maxsize(&uuids[*r], *n);
            }
            Setup::Present(f, r) => {
                run(&[
                    "setpresentkey",
                    keys[*f].to_text().as_ref(),
                    uuids[*r].as_str(),
                    "1",
                ]);
                locations[*f].push(uuids[*r].clone());
            }
            Setup::DropHere(f) => {
                run(&["drop", "--force", "-q", &files[*f]]);
                locations[*f].retain(|u| *u != me);
                here[*f] = false;
            }
            Setup::Metadata(f, field, value) => {
                run(&[
                    "metadata",
                    "-q",
                    "-s",
                    &format!("{field}={value}"),
                    &files[*f],
                ]);
                metadata[*f].push((field.to_string(), value.as_bytes().to_vec()));
            }
            Setup::Url(f, url) => {
                run(&["registerurl", keys[*f].to_text().as_ref(), url]);
                urls[*f].push(url.to_string());
            }
            Setup::NumCopiesAttr(f, n) => {
                let path = top.join(".gitattributes");
                let mut text = std::fs::read_to_string(&path).unwrap_or_default();
                text.push_str(&format!("{} annex.numcopies={n}\n", files[*f]));
                std::fs::write(&path, text).unwrap();
                annex.run_ok(&top, &["git", "add", ".gitattributes"]);
                annex.run_ok(&top, &["git", "commit", "-qm", "attrs"]);
                attrs[*f] = Some(n.to_string());
            }
            Setup::Rebalance => {
                rebalance = true;
                facts.rebalance = true;
            }
        }
    }
    // Repository sizes: every known repository, from the location logs.
    for u in uuids.iter().chain(std::iter::once(&me)) {
        let size: u64 = keys
            .iter()
            .zip(&locations)
            .filter(|(_, l)| l.contains(u))
            .map(|(k, _)| k.size().unwrap_or(0))
            .sum();
        facts = facts.with_repo_size(u, size);
    }
    let engine = Engine::new(facts);
    let infos: Vec<KeyInfo> = (0..keys.len())
        .map(|i| {
            let mut ki = KeyInfo::new(keys[i].clone(), locations[i].clone());
            ki.present_here = Some(here[i]);
            ki.metadata = metadata[i].clone();
            ki.urls = urls[i].clone();
            ki.numcopies_attr = attrs[i].clone();
            ki
        })
        .collect();
    let mut mismatches = Vec::new();
    let mut listed_get = 0;
    for (r, name) in names.iter().enumerate() {
        for (flag, drop) in [("--want-get-by", false), ("--want-drop-by", true)] {
            let by = format!("{flag}={name}");
            let mut argv = vec!["git", "annex", "find", by.as_str()];
            if rebalance {
                argv.push("--rebalance");
            }
            let listed = annex.run_ok(&top, &argv);
            let mut theirs: Vec<&str> = listed.lines().collect();
            theirs.sort();
            let mut mine: Vec<&str> = files
                .iter()
                .zip(&infos)
                .filter(|(f, k)| {
                    let file = Some(f.as_bytes());
                    if drop {
                        // git-annex's wantDrop default for unconfigured is "may drop".
                        !engine.still_wants(&uuids[r], *k, file).or(false)
                    } else {
                        engine.want_get(&uuids[r], *k, file).or(false)
                    }
                })
                .map(|(f, _)| f.as_str())
                .collect();
            mine.sort();
            if !drop {
                listed_get += theirs.len();
            }
            if theirs != mine {
                mismatches.push(format!(
                    "{name} {flag}: git-annex {theirs:?}, ours {mine:?}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{steps:?}\n{}",
        mismatches.join("\n")
    );
    listed_get
}

#[test]
fn balanced_partition_matches_git_annex() {
    use Setup::*;
    let sizes: Vec<u64> = (1..=14).map(|i| i * 100).collect();
    let wanted = scenario(
        3,
        &sizes,
        &[
            Group(0, "g"),
            Group(1, "g"),
            Group(2, "g"),
            GroupWanted("g", "balanced=g:2"),
            Wanted(0, "groupwanted"),
            Wanted(1, "groupwanted"),
            Wanted(2, "groupwanted"),
            Present(0, 0),
            Present(1, 1),
            Present(1, 2),
            Present(5, 2),
            MaxSize(1, 1200),
            MaxSize(2, 0),
        ],
    );
    assert!(wanted > 0, "some files must be wanted");
}

#[test]
fn size_balanced_matches_git_annex() {
    use Setup::*;
    let sizes: Vec<u64> = (1..=12).map(|i| i * 250).collect();
    let wanted = scenario(
        3,
        &sizes,
        &[
            Group(0, "g"),
            Group(1, "g"),
            Group(2, "g"),
            Wanted(0, "sizebalanced=g"),
            Wanted(1, "fullysizebalanced=g:2"),
            Wanted(2, "sizebalanced=g:lackingcopies"),
            NumCopies(2),
            MaxSize(0, 20000),
            MaxSize(1, 6000),
            MaxSize(2, 9000),
            Present(2, 1),
            Present(3, 0),
            Present(4, 2),
            Present(4, 1),
        ],
    );
    assert!(wanted > 0, "some files must be wanted");
}

#[test]
fn copies_trust_and_standard_groups_match_git_annex() {
    use Setup::*;
    let sizes: Vec<u64> = (1..=10).map(|i| i * 10).collect();
    let wanted = scenario(
        4,
        &sizes,
        &[
            Group(0, "client"),
            Group(1, "archive"),
            Group(2, "backup"),
            Group(3, "transfer"),
            Wanted(0, "standard"),
            Wanted(1, "standard"),
            Wanted(
                2,
                "copies=trusted+:2 or lackingcopies=1 and not copies=archive:1",
            ),
            Wanted(3, "standard"),
            Required(2, "largerthan=85"),
            Trust(1, TrustLevel::Trusted),
            Trust(2, TrustLevel::Untrusted),
            NumCopies(2),
            Present(0, 1),
            Present(1, 0),
            Present(1, 3),
            Present(2, 2),
            Present(3, 1),
            Present(3, 2),
            Present(4, 0),
            DropHere(4),
            DropHere(5),
            Present(6, 1),
            DropHere(6),
        ],
    );
    assert!(wanted > 0, "some files must be wanted");
}

#[test]
fn dead_repositories_and_groups_match_git_annex() {
    use Setup::*;
    let sizes: Vec<u64> = (1..=8).map(|i| i * 1000).collect();
    let wanted = scenario(
        3,
        &sizes,
        &[
            Group(0, "g"),
            Group(1, "g"),
            Group(2, "g"),
            Wanted(0, "inallgroup=g or onlyingroup=g"),
            Wanted(1, "balanced=g"),
            Wanted(2, "not copies=g:1 and approxlackingcopies=1"),
            Trust(2, TrustLevel::Dead),
            NumCopies(3),
            Present(0, 0),
            Present(0, 1),
            Present(0, 2),
            Present(1, 2),
            DropHere(1),
            Present(2, 0),
            DropHere(2),
            Present(3, 1),
        ],
    );
    assert!(wanted > 0, "some files must be wanted");
}

/// Seeded random configurations: groups, trust, numcopies, maxsizes, locations and
/// expressions drawn from a pool covering every state-dependent term.
#[test]
fn random_configurations_match_git_annex() {
    use Setup::*;
    const EXPRS: &[&str] = &[
        "standard",
        "groupwanted",
        "balanced=g",
        "balanced=g:2",
        "sizebalanced=g",
        "fullybalanced=g:lackingcopies",
        "fullysizebalanced=h:2",
        "copies=g:2",
        "not copies=2",
        "lackingcopies=1",
        "approxlackingcopies=2",
        "inallgroup=g",
        "onlyingroup=h",
        "include=f1* or largerthan=500",
        "present and copies=trusted:1",
        "copies=untrusted:1 or nothing",
        "exclude=f2* and (balanced=h or copies=semitrusted+:3)",
        "not present",
        "present or smallerthan=300",
    ];
    const GROUPS: &[&str] = &["g", "h", "client", "archive", "backup", "incrementalbackup"];
    let mut total = 0;
    for seed in [1u64, 7, 1234] {
        let mut rng = Lcg(seed);
        let remotes = 3 + rng.next() as usize % 2;
        let nfiles = 8;
        let sizes: Vec<u64> = (0..nfiles).map(|_| 50 + rng.next() % 900).collect();
        let mut steps = vec![GroupWanted("g", "balanced=g or lackingcopies=1")];
        for r in 0..remotes {
            for _ in 0..1 + rng.next() % 2 {
                steps.push(Group(r, rng.pick(GROUPS)));
            }
            steps.push(Wanted(r, rng.pick(EXPRS)));
            if rng.next() % 3 == 0 {
                steps.push(MaxSize(r, rng.next() % 4000));
            }
            if rng.next() % 3 == 0 {
                let t = [TrustLevel::Trusted, TrustLevel::Untrusted, TrustLevel::Dead]
                    [rng.next() as usize % 3];
                steps.push(Trust(r, t));
            }
        }
        steps.push(NumCopies(1 + (rng.next() % 3) as i64));
        for f in 0..nfiles {
            for r in 0..remotes {
                if rng.next() % 3 == 0 {
                    steps.push(Present(f, r));
                }
            }
            if rng.next() % 4 == 0 {
                steps.push(DropHere(f));
            }
        }
        total += scenario(remotes, &sizes, &steps);
    }
    assert!(total > 0);
}

#[test]
fn metadata_urls_attributes_match_git_annex() {
    use Setup::*;
    let sizes: Vec<u64> = (1..=8).map(|i| i * 10).collect();
    let wanted = scenario(
        3,
        &sizes,
        &[
            Wanted(0, "metadata=tag=Foo* or url=https://example.com/*"),
            Wanted(1, "metadata=year<2000 or metadata=year>=2020"),
            Wanted(2, "lackingcopies=2 and not approxlackingcopies=2"),
            NumCopies(2),
            Metadata(0, "tag", "foobar"),
            Metadata(1, "Tag", "fOo"),
            Metadata(2, "tag", "bar"),
            Metadata(3, "year", "1999"),
            Metadata(4, "year", "2020"),
            Metadata(5, "year", "abc"),
            Url(6, "https://example.com/a"),
            Url(7, "http://example.com/b"),
            NumCopiesAttr(2, "4"),
            NumCopiesAttr(3, "1"),
            Present(4, 0),
        ],
    );
    assert!(wanted > 0);
}

#[test]
fn rebalance_matches_git_annex() {
    use Setup::*;
    let sizes: Vec<u64> = (1..=12).map(|i| i * 100).collect();
    let wanted = scenario(
        3,
        &sizes,
        &[
            Group(0, "g"),
            Group(1, "g"),
            Group(2, "g"),
            Wanted(0, "balanced=g"),
            Wanted(1, "balanced=g:2"),
            Wanted(2, "sizebalanced=g:2"),
            // r0 (600 of 650) and r1 (1200 of 1300) are over the 90% threshold, so
            // `balanced=g:2` chooses its candidates by free space.
            MaxSize(0, 650),
            MaxSize(1, 1300),
            MaxSize(2, 8000),
            Present(0, 0),
            Present(1, 0),
            Present(2, 0),
            Present(3, 1),
            Present(4, 2),
            Present(5, 2),
            Present(6, 2),
            Present(7, 1),
            Rebalance,
        ],
    );
    assert!(wanted > 0);
}
