//! The `annexgate` program's interface: `check-expression` exit statuses and messages,
//! and `placement`'s inputs (files in the work tree, locked or unlocked, relative paths,
//! keys, batch lines), outputs (text, JSON, explanations) and errors, on a small real
//! git-annex repository. Decisions themselves are compared with git-annex in
//! `placement_oracle`.

use std::fs;
use std::process::Stdio;

use serde_json::Value;

use crate::harness::{tools, Repo, RunResult, Side, TestEnv, Transport};

fn annexgate_in(
    env: &TestEnv,
    dir: &std::path::Path,
    args: &[&str],
    input: Option<&str>,
) -> RunResult {
    let mut c = env.command(Side::Client, &tools().annexgate, dir);
    c.args(args);
    if let Some(text) = input {
        let p = env.root().join("stdin.txt");
        fs::write(&p, text).unwrap();
        c.stdin(Stdio::from(fs::File::open(&p).unwrap()));
    }
    env.try_run(&mut c)
}

#[test]
fn check_expression_statuses_and_messages() {
    let env = TestEnv::new(Transport::Shim);
    let root = env.root().to_path_buf();
    let ok = annexgate_in(
        &env,
        &root,
        &[
            "check-expression",
            "include=*.txt or (largerthan=1mb and copies=2)",
        ],
        None,
    );
    assert_eq!(ok.code, Some(0), "{ok}");
    assert_eq!(
        ok.stdout,
        "include=*.txt or ( largerthan=1mb and copies=2 )\n"
    );
    assert!(ok.stderr.is_empty(), "{ok}");

    let bad_expr = "include=*.txt and foo=bar";
    let bad = annexgate_in(&env, &root, &["check-expression", bad_expr], None);
    assert_eq!(bad.code, Some(1), "{bad}");
    assert!(bad.stdout.is_empty());
    assert!(
        bad.stderr.contains("Parse failure: near \"foo=bar\""),
        "{bad}"
    );
    // The marker sits under the bad term.
    let lines: Vec<&str> = bad.stderr.lines().collect();
    let echo = lines
        .iter()
        .position(|l| l.trim_start() == bad_expr)
        .expect("the expression is shown");
    let indent = lines[echo].len() - bad_expr.len();
    let marker = lines[echo + 1];
    assert_eq!(
        marker.find('^'),
        Some(indent + bad_expr.find("foo=bar").unwrap()),
        "{bad}"
    );
    assert_eq!(marker.trim(), "^^^^^^^");

    let unstable = annexgate_in(
        &env,
        &root,
        &["check-expression", "not present or not balanced=g:2"],
        None,
    );
    assert_eq!(unstable.code, Some(0), "{unstable}");
    assert!(unstable.stderr.contains("`not present`"), "{unstable}");
    assert!(unstable.stderr.contains("`not balanced=g:2`"), "{unstable}");
    // Double negation is stable.
    let double = annexgate_in(&env, &root, &["check-expression", "not not present"], None);
    assert_eq!(double.code, Some(0));
    assert!(!double.stderr.contains("warning"), "{double}");

    let usage = annexgate_in(&env, &root, &["check-expression"], None);
    assert_eq!(usage.code, Some(2), "{usage}");
}

fn json(r: &RunResult) -> Vec<Value> {
    r.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn placement_inputs_outputs_and_errors() {
    let env = TestEnv::new(Transport::Shim);
    let repo: Repo<'_> = env.client_repo("r");
    let store = env.root().join("store");
    fs::create_dir(&store).unwrap();
    repo.annex(&[
        "initremote",
        "-q",
        "d1",
        "type=directory",
        &format!("directory={}", store.display()),
        "encryption=none",
    ]);
    let d1 = repo
        .git(&["config", "remote.d1.annex-uuid"])
        .trim()
        .to_string();
    let here = repo.uuid().to_string();
    repo.add_files(&[
        ("a.txt", b"alpha\n"),
        ("sub/b.bin", b"bravo bravo\n"),
        ("sub/c.txt", b"charlie\n"),
    ]);
    repo.write_file("plain.md", b"not annexed\n");
    repo.git(&["add", "plain.md"]);
    repo.git(&["commit", "-q", "-m", "plain"]);
    // c.txt unlocked: its work-tree file is the content, the key is in the staged pointer.
    repo.annex(&["unlock", "sub/c.txt"]);
    repo.git(&["commit", "-q", "-m", "unlock"]);
    let ka = repo.key_of("a.txt");
    let kb = repo.key_of("sub/b.bin");
    let kc = repo.key_of("sub/c.txt");
    // b.bin's content goes away here.
    repo.annex(&["drop", "--force", "-q", "sub/b.bin"]);
    repo.annex(&["wanted", "here", "present"]);
    repo.annex(&["wanted", "d1", "include=*.bin or include=sub/*"]);
    let top = repo.path().to_path_buf();

    // Files (locked, unlocked, from a subdirectory) and a key without a file.
    let r = annexgate_in(
        &env,
        &top,
        &["placement", "a.txt", "sub/b.bin", "sub/c.txt", &ka],
        None,
    );
    assert_eq!(r.code, Some(0), "{r}");
    let mut sorted = [here.clone(), d1.clone()];
    sorted.sort();
    assert_eq!(
        r.stdout,
        format!(
            "{ka} {here}\n{kb} {d1}\n{kc} {}\n{ka} {here}\n",
            sorted.join(" ")
        )
    );
    let r = annexgate_in(
        &env,
        &top.join("sub"),
        &["placement", "../a.txt", "b.bin"],
        None,
    );
    assert_eq!(r.stdout, format!("{ka} {here}\n{kb} {d1}\n"), "{r}");
    // Every annexed file under the current directory.
    let r = annexgate_in(&env, &top.join("sub"), &["placement"], None);
    assert_eq!(r.code, Some(0), "{r}");
    assert_eq!(r.stdout, format!("{kb} {d1}\n{kc} {}\n", sorted.join(" ")));
    let r = annexgate_in(&env, &top, &["placement", "--json"], None);
    let v = json(&r);
    let files: Vec<&str> = v.iter().map(|v| v["file"].as_str().unwrap()).collect();
    assert_eq!(files, ["a.txt", "sub/b.bin", "sub/c.txt"], "{r}");

    // Want-drop: here keeps what it has (a.txt, c.txt) and would drop b.bin; d1 wants
    // b.bin and c.txt, so it would drop a.txt.
    let r = annexgate_in(
        &env,
        &top,
        &[
            "placement",
            "--want-drop",
            "a.txt",
            "sub/b.bin",
            "sub/c.txt",
        ],
        None,
    );
    assert_eq!(r.stdout, format!("{ka} {d1}\n{kb} {here}\n{kc}\n"), "{r}");

    // --for by remote name, "here", UUID; an unknown name is an error.
    let r = annexgate_in(
        &env,
        &top,
        &["placement", "--for", "d1", "a.txt", "sub/b.bin"],
        None,
    );
    assert_eq!(r.stdout, format!("{ka}\n{kb} {d1}\n"), "{r}");
    let r = annexgate_in(
        &env,
        &top,
        &["placement", "--for", &here, "--for", "here", "a.txt"],
        None,
    );
    assert_eq!(r.stdout, format!("{ka} {here}\n"), "{r}");
    let r = annexgate_in(&env, &top, &["placement", "--for", "nope", "a.txt"], None);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("no repository named \"nope\""), "{r}");

    // Bad inputs: reported, the others still answered, status 1.
    let r = annexgate_in(
        &env,
        &top,
        &["placement", "plain.md", "no-such-thing", "a.txt"],
        None,
    );
    assert_eq!(r.code, Some(1), "{r}");
    assert_eq!(r.stdout, format!("{ka} {here}\n"));
    assert!(r.stderr.contains("plain.md is not an annexed file"), "{r}");
    assert!(
        r.stderr
            .contains("no-such-thing: not a file, and not a key"),
        "{r}"
    );

    // Batch: one output line per input line, an empty one for a bad line; the file name
    // given is used (here `x.bin` makes d1 want a.txt's key; with no file, d1's include
    // terms do not match).
    let input = format!("{ka} x.bin\ngarbage line\n{kb}\n{kc} sub/c.txt\n");
    let r = annexgate_in(&env, &top, &["placement", "--batch"], Some(&input));
    assert_eq!(r.code, Some(1), "{r}");
    assert_eq!(
        r.stdout,
        format!(
            "{ka} {}\n\n{kb}\n{kc} {}\n",
            sorted.join(" "),
            sorted.join(" ")
        )
    );
    assert!(r.stderr.contains("garbage: not a key"), "{r}");
    let r = annexgate_in(
        &env,
        &top,
        &["placement", "--batch", "--json"],
        Some(&input),
    );
    let v = json(&r);
    assert_eq!(v.len(), 4, "{r}");
    assert_eq!(v[0]["file"], "x.bin");
    assert_eq!(v[1]["success"], false);
    assert_eq!(v[2]["file"], Value::Null);
    assert_eq!(v[3]["want-get"].as_array().unwrap().len(), 2);
    let r = annexgate_in(&env, &top, &["placement", "--batch", "a.txt"], Some(""));
    assert_eq!(r.code, Some(2), "{r}");

    // Explanations: git-annex's line, then each term.
    let r = annexgate_in(
        &env,
        &top,
        &["placement", "--explain", "--for", "d1", "sub/b.bin"],
        None,
    );
    assert!(
        r.stdout
            .contains("matches preferred content: include=*.bin[TRUE]"),
        "{r}"
    );
    let r = annexgate_in(
        &env,
        &top,
        &[
            "placement",
            "--explain",
            "--json",
            "--for",
            "here",
            "sub/b.bin",
        ],
        None,
    );
    let v = json(&r);
    let ex = &v[0]["explain"][0];
    assert_eq!(ex["want"], "not wanted", "{r}");
    assert_eq!(ex["terms"][0]["term"], "present");
    assert_eq!(ex["terms"][0]["matched"], false);

    // Not a repository.
    let r = annexgate_in(
        &env,
        &top,
        &[
            "placement",
            "--repo",
            env.root().join("nowhere").to_str().unwrap(),
            &ka,
        ],
        None,
    );
    assert_eq!(r.code, Some(1), "{r}");
}
