//! Bad input, at the program level: the real `annexgate-shell` (and, where the comparison
//! means something, the real `git-annex-shell`) run as git-annex runs them —
//! `p2pstdio DIR CLIENTUUID` with crafted bytes on stdin, or another command line with a
//! restricting environment — and judged by what a client and an administrator see: the
//! exact protocol reply on stdout, a clear line on stderr, the exit status, and the
//! repository afterwards (no object, no stray temp file, no location-log change).
//!
//! Where both shells are run, stdout must be byte-identical once the repository UUID and
//! `TIMESTAMP` values are masked, the exit status equal, and for command-line errors the
//! message after the program name too. Our deliberate differences are asserted as such
//! (they are listed in the spec notes of `session::server` and in the README).

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::harness::{Repo, RepoKind, RunResult, ShellImpl, Side, TestEnv, Transport};

/// The client UUID the crafted sessions claim.
const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
/// SHA256E key of the 5 bytes `hello`.
const HELLO: &str =
    "SHA256E-s5--2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824.txt";

const BOTH: [ShellImpl; 2] = [ShellImpl::GitAnnexShell, ShellImpl::AnnexgateShell];

/// A pipe whose write end a thread fills with `input` and closes.
fn stdin_pipe(input: Vec<u8>) -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into the array we own.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are fresh and owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    std::thread::spawn(move || {
        let mut w = fs::File::from(write);
        // The server may stop reading early (a line too long): a broken pipe is expected.
        let _ = w.write_all(&input);
    });
    Stdio::from(read)
}

/// Runs `shell ARGS` on the server side (its HOME and PATH), with `vars` set and `input`
/// on stdin.
fn run_shell(
    env: &TestEnv,
    shell: ShellImpl,
    args: &[&str],
    vars: &[(&str, &str)],
    input: &[u8],
) -> RunResult {
    let mut c = env.command(Side::Server, shell.program(), env.home(Side::Server));
    c.args(args).stdin(stdin_pipe(input.to_vec()));
    for (k, v) in vars {
        c.env(k, v);
    }
    env.try_run(&mut c)
}

/// `p2pstdio` on `repo` with `input` as the client's bytes.
fn p2p(repo: &Repo<'_>, shell: ShellImpl, input: &[u8]) -> RunResult {
    let dir = repo.path().to_string_lossy().into_owned();
    run_shell(repo.env(), shell, &["p2pstdio", &dir, CLIENT], &[], input)
}

/// stdout with the repository's UUID and timestamps masked, so two repositories (and two
/// runs) compare.
fn masked(r: &RunResult, repo: &Repo<'_>) -> String {
    r.stdout
        .replace(repo.uuid(), "<uuid>")
        .lines()
        .map(|l| match l.strip_prefix("TIMESTAMP ") {
            Some(t) if t.bytes().all(|b| b.is_ascii_digit()) => "TIMESTAMP <t>\n".to_string(),
            _ => format!("{l}\n"),
        })
        .collect()
}

/// The program's own message: stderr's `git-annex-shell: ` / `annexgate-shell: ` lines
/// without the prefix (our log lines have no such prefix).
fn shell_messages(r: &RunResult) -> Vec<String> {
    r.stderr
        .lines()
        .filter_map(|l| {
            l.strip_prefix("git-annex-shell: ")
                .or_else(|| l.strip_prefix("annexgate-shell: "))
        })
        .map(str::to_string)
        .collect()
}

/// Every file under the repository's `annex/objects` and `annex/tmp`, relative to the git dir.
fn content_files(repo: &Repo<'_>) -> BTreeSet<PathBuf> {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<PathBuf>) {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, base, out);
            } else {
                out.insert(p.strip_prefix(base).unwrap().to_path_buf());
            }
        }
    }
    let git = repo.git_dir();
    let mut out = BTreeSet::new();
    for d in ["annex/objects", "annex/tmp"] {
        walk(&git.join(d), &git, &mut out);
    }
    out
}

/// Whether the repository's own location log (branch or journal) says it has `key`.
fn logged_present(repo: &Repo<'_>, key: &str) -> bool {
    // (whereis exits 1 for a key with no copies; its JSON says so all the same)
    let (r, items) = repo.try_annex_json(&["whereis", "--key", key]);
    assert_eq!(items.len(), 1, "{r}");
    items[0]["whereis"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|loc| loc["uuid"] == repo.uuid())
}

/// One fresh bare server repository per shell, so each run starts from the same state.
fn servers(env: &TestEnv) -> Vec<(ShellImpl, Repo<'_>)> {
    BOTH.iter()
        .map(|&s| {
            let name = match s {
                ShellImpl::GitAnnexShell => "ref",
                ShellImpl::AnnexgateShell => "ours",
            };
            (s, env.server_repo(name, RepoKind::Bare))
        })
        .collect()
}

fn ours(r: &RunResult) -> bool {
    r.cmdline.contains("annexgate-shell")
}

#[test]
fn malformed_and_unknown_lines_get_error_and_the_session_goes_on() {
    let env = TestEnv::new(Transport::Shim);
    let input = format!(
        "VERSION 4\nFOO bar\n\nCHECKPRESENT\nCHECKPRESENT not-a-key\nGET x y z\nVALID\n\
         CHECKPRESENT {HELLO}\nGETTIMESTAMP\n"
    );
    let expected = "AUTH-SUCCESS <uuid>\nVERSION 4\nERROR unknown command\nERROR unknown command\n\
                    ERROR unknown command\nERROR unknown command\nERROR unknown command\n\
                    ERROR unexpected command\nFAILURE\nTIMESTAMP <t>\n";
    for (shell, repo) in servers(&env) {
        let before = content_files(&repo);
        let r = p2p(&repo, shell, input.as_bytes());
        assert_eq!(masked(&r, &repo), expected, "{shell:?}: {r}");
        assert_eq!(r.code, Some(0), "{r}");
        if ours(&r) {
            assert!(
                r.stderr.contains("unknown command \"FOO\"")
                    && r.stderr
                        .contains("unexpected VALID from client between requests"),
                "stderr names what was wrong: {r}"
            );
        }
        assert_eq!(content_files(&repo), before, "{shell:?}");
    }
}

#[test]
fn over_long_line_is_bounded() {
    let env = TestEnv::new(Transport::Shim);
    for (shell, repo) in servers(&env) {
        // The longest line allowed: 32767 bytes, then the newline.
        let longest = format!(
            "VERSION 4\nCHECKPRESENT {}\nGETTIMESTAMP\n",
            "A".repeat(32754)
        );
        assert_eq!(longest.lines().nth(1).unwrap().len(), 32767);
        let r = p2p(&repo, shell, longest.as_bytes());
        assert_eq!(
            masked(&r, &repo),
            "AUTH-SUCCESS <uuid>\nVERSION 4\nERROR unknown command\nTIMESTAMP <t>\n",
            "{shell:?}: {r}"
        );
        assert_eq!(r.code, Some(0), "{r}");

        // One byte more, and far more: the session ends at the limit, without reading on.
        for len in [32768, 4 << 20] {
            let input = format!("VERSION 4\n{}\nGETTIMESTAMP\n", "B".repeat(len));
            let r = p2p(&repo, shell, input.as_bytes());
            assert_eq!(
                masked(&r, &repo),
                "AUTH-SUCCESS <uuid>\nVERSION 4\n",
                "{shell:?}: {r}"
            );
            assert_eq!(r.code, Some(1), "{r}");
            if ours(&r) {
                assert_eq!(
                    shell_messages(&r),
                    ["protocol error: client sent a line longer than 32767 bytes"],
                    "{r}"
                );
            } else {
                assert!(r.stderr.contains("protocol error"), "{r}");
            }
        }
        assert!(content_files(&repo).is_empty(), "{shell:?}");
    }
}

#[test]
fn wrong_data_lengths_get_failure_and_store_nothing() {
    let env = TestEnv::new(Transport::Shim);
    for (shell, repo) in servers(&env) {
        // Fewer bytes than the key's size, then more; then the right bytes to show the
        // session is still in step.
        let input = format!(
            "VERSION 4\nPUT f {HELLO}\nDATA 3\nhelVALID\nPUT f {HELLO}\nDATA 7\nhello!!VALID\n\
             CHECKPRESENT {HELLO}\nGETTIMESTAMP\nPUT f {HELLO}\nDATA 5\nhelloVALID\n"
        );
        let r = p2p(&repo, shell, input.as_bytes());
        assert_eq!(
            masked(&r, &repo),
            "AUTH-SUCCESS <uuid>\nVERSION 4\nPUT-FROM 0\nFAILURE\nPUT-FROM 0\nFAILURE\nFAILURE\n\
             TIMESTAMP <t>\nPUT-FROM 0\nSUCCESS\n",
            "{shell:?}: {r}"
        );
        assert_eq!(r.code, Some(0), "{r}");
        if ours(&r) {
            assert!(
                r.stderr
                    .contains("DATA 3 from offset 0 cannot be the content of")
                    && r.stderr.contains("DATA 7 from offset 0 cannot be"),
                "{r}"
            );
        }
        // Only the good upload became an object; no partial file is left.
        let files = content_files(&repo);
        assert_eq!(files.len(), 1, "{shell:?}: {files:?}");
        let obj = repo.find_object(HELLO).expect("the good upload is stored");
        assert_eq!(fs::read(obj).unwrap(), b"hello");
        assert!(logged_present(&repo, HELLO));
    }
}

#[test]
fn client_vanishing_mid_data_leaves_only_a_resumable_temp_file() {
    let env = TestEnv::new(Transport::Shim);
    for (shell, repo) in servers(&env) {
        let input = format!("VERSION 4\nPUT f {HELLO}\nDATA 5\nhe");
        let r = p2p(&repo, shell, input.as_bytes());
        assert_eq!(
            masked(&r, &repo),
            "AUTH-SUCCESS <uuid>\nVERSION 4\nPUT-FROM 0\nFAILURE\n",
            "{shell:?}: {r}"
        );
        assert_eq!(r.code, Some(1), "{r}");
        if ours(&r) {
            assert_eq!(
                shell_messages(&r),
                [format!(
                    "client disconnected after 2 of 5 bytes of DATA for {HELLO}"
                )],
                "{r}"
            );
        }
        // No object, no location; the part that arrived waits in annex/tmp for a resume.
        assert!(repo.find_object(HELLO).is_none());
        assert!(!logged_present(&repo, HELLO));
        assert_eq!(fs::read(repo.tmp_object(HELLO)).unwrap(), b"he");

        // The next session resumes from there.
        let input = format!("VERSION 4\nPUT f {HELLO}\nDATA 3\nlloVALID\n");
        let r = p2p(&repo, shell, input.as_bytes());
        assert_eq!(
            masked(&r, &repo),
            "AUTH-SUCCESS <uuid>\nVERSION 4\nPUT-FROM 2\nSUCCESS\n",
            "{shell:?}: {r}"
        );
        assert_eq!(
            fs::read(repo.find_object(HELLO).unwrap()).unwrap(),
            b"hello"
        );
        assert!(!repo.tmp_object(HELLO).exists());
        assert!(logged_present(&repo, HELLO));
    }
}

#[test]
fn client_vanishing_before_data_or_verdict() {
    let env = TestEnv::new(Transport::Shim);
    for (shell, repo) in servers(&env) {
        // After PUT-FROM, before DATA: a clean end, nothing stored.
        let r = p2p(
            &repo,
            shell,
            format!("VERSION 4\nPUT f {HELLO}\n").as_bytes(),
        );
        assert_eq!(
            masked(&r, &repo),
            "AUTH-SUCCESS <uuid>\nVERSION 4\nPUT-FROM 0\n",
            "{shell:?}: {r}"
        );
        assert_eq!(r.code, Some(0), "{r}");
        assert!(repo.find_object(HELLO).is_none());
        assert!(!logged_present(&repo, HELLO));
        if ours(&r) {
            assert!(
                !repo.tmp_object(HELLO).exists(),
                "no temp file for an upload that never began"
            );
        }
    }
}

#[test]
fn keys_with_slash_or_dotdot_stay_inside_the_object_store() {
    let env = TestEnv::new(Transport::Shim);
    let keys = [
        "WORM-s5--../../../escaped",
        "WORM-s5--a/b",
        "WORM-s5--..",
        "SHA256E-s5--../../hooks/annex-content",
    ];
    for (shell, repo) in servers(&env) {
        let hooks_before = fs::read_dir(repo.git_dir().join("hooks")).unwrap().count();
        let mut input = String::from("VERSION 4\n");
        let mut expected = String::from("AUTH-SUCCESS <uuid>\nVERSION 4\n");
        for k in keys {
            input.push_str(&format!(
                "PUT f {k}\nDATA 5\nhelloVALID\nCHECKPRESENT {k}\n"
            ));
            // WORM keys take any content; the SHA256E one does not verify.
            let ok = k.starts_with("WORM");
            expected.push_str(if ok {
                "PUT-FROM 0\nSUCCESS\nSUCCESS\n"
            } else {
                "PUT-FROM 0\nFAILURE\nFAILURE\n"
            });
        }
        let r = p2p(&repo, shell, input.as_bytes());
        assert_eq!(masked(&r, &repo), expected, "{shell:?}: {r}");
        assert_eq!(r.code, Some(0), "{r}");
        // Each stored key is one file, named with `/` escaped as `%`, two levels of hash
        // directories down in annex/objects; nothing appeared anywhere else.
        let files = content_files(&repo);
        assert_eq!(files.len(), 3, "{shell:?}: {files:?}");
        for f in &files {
            let parts: Vec<_> = f.components().collect();
            assert_eq!(parts.len(), 6, "{f:?}");
            assert!(f.starts_with("annex/objects"), "{f:?}");
            let name = f.file_name().unwrap().to_string_lossy();
            assert!(
                name.starts_with("WORM-s5--") && !name.contains('/'),
                "{f:?}"
            );
        }
        assert!(repo.find_object("WORM-s5--../../../escaped").is_some());
        assert!(!env.root().join("escaped").exists());
        assert!(!repo.path().join("../escaped").exists());
        assert_eq!(
            fs::read_dir(repo.git_dir().join("hooks")).unwrap().count(),
            hooks_before,
            "nothing written into hooks/"
        );
    }
}

#[test]
fn keys_that_cannot_be_file_names() {
    let env = TestEnv::new(Transport::Shim);
    let repo = env.server_repo("srv", RepoKind::Bare);
    let long = format!("WORM-s5--{}", "x".repeat(300));
    // A NUL in a key: git-annex-shell's session dies on it; ours answers the line as
    // unparsable and goes on. A key too long for a file name: ERROR with the reason.
    let input = format!(
        "VERSION 4\nCHECKPRESENT WORM-s5--a\0b\nPUT f {long}\nCHECKPRESENT {long}\nGETTIMESTAMP\n"
    );
    let r = p2p(&repo, ShellImpl::AnnexgateShell, input.as_bytes());
    let out = masked(&r, &repo);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{r}");
    assert_eq!(lines[2], "ERROR unknown command");
    assert!(
        lines[3].starts_with("ERROR bad key WORM-s5--xxx")
            && lines[3].contains("its file name would be")
            && lines[3].ends_with("bytes; file names can have at most 255 here"),
        "{}",
        lines[3]
    );
    assert_eq!(lines[4], "FAILURE");
    assert_eq!(lines[5], "TIMESTAMP <t>");
    assert_eq!(r.code, Some(0), "{r}");
    assert!(
        r.stderr.contains("key contains a newline or NUL byte"),
        "{r}"
    );
    assert!(content_files(&repo).is_empty());
}

/// Runs a command line under both shells (each on its own copy of the set-up) and
/// requires the same stdout, exit status and message; returns our run.
fn same_refusal(
    env: &TestEnv,
    args: &dyn Fn(ShellImpl) -> Vec<String>,
    vars: &[(&str, &str)],
    message: &str,
) -> RunResult {
    let mut runs = Vec::new();
    for shell in BOTH {
        let a = args(shell);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let r = run_shell(env, shell, &a, vars, b"");
        assert_eq!(r.code, Some(1), "{r}");
        assert_eq!(r.stdout, "", "nothing on stdout: {r}");
        assert_eq!(shell_messages(&r), [message], "{shell:?}: {r}");
        runs.push(r);
    }
    runs.pop().unwrap()
}

#[test]
fn repository_outside_the_allowed_directory_is_refused() {
    let env = TestEnv::new(Transport::Shim);
    let home = env.home(Side::Server).to_path_buf();
    let allowed = env.server_repo("allowed", RepoKind::Bare);
    let other = env.server_repo("other", RepoKind::Bare);
    // Repositories inside the server's HOME, reachable as ~/x and /~/x.
    let mut init = env.command(Side::Server, "git", &home);
    env.run(init.args(["init", "-q", "--bare", "inhome.git"]));
    let mut init = env.command(Side::Server, "git", &home.join("inhome.git"));
    env.run(init.args(["annex", "init", "-q", "inhome"]));
    let inhome = Repo::open(&env, Side::Server, &home.join("inhome.git"), "inhome");
    assert!(!inhome.uuid().is_empty());

    let a = allowed.path().to_string_lossy().into_owned();
    let o = other.path().to_string_lossy().into_owned();
    let dir_var = [("GIT_ANNEX_SHELL_DIRECTORY", a.as_str())];
    let msg = format!("Only allowed to access {a} not {o}");
    // Every command that names a repository, git's included; `..` does not get out.
    let escape = format!("{a}/../other.git");
    for args in [
        vec!["p2pstdio", &o, CLIENT],
        vec!["configlist", &o],
        vec!["inannex", &o, HELLO],
        vec!["p2pstdio", &escape, CLIENT],
    ] {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        same_refusal(&env, &|_| args.clone(), &dir_var, &msg);
    }
    let upload = format!("git-upload-pack '{o}'");
    same_refusal(&env, &|_| vec!["-c".into(), upload.clone()], &dir_var, &msg);
    // The allowed one works, under any spelling.
    for spelling in [a.clone(), format!("{a}/"), format!("{o}/../allowed.git")] {
        let r = run_shell(
            &env,
            ShellImpl::AnnexgateShell,
            &["configlist", &spelling],
            &dir_var,
            b"",
        );
        assert_eq!(
            r.stdout,
            format!("annex.uuid={}\ncore.gcrypt-id=\n", allowed.uuid()),
            "{r}"
        );
    }

    // `~/` and `/~/` forms resolve against HOME, on either side.
    let abs = home.join("inhome.git").to_string_lossy().into_owned();
    for (allowed_as, asked_as) in [
        ("~/inhome.git", "/~/inhome.git"),
        ("~/inhome.git", abs.as_str()),
        (abs.as_str(), "~/inhome.git"),
        (abs.as_str(), "inhome.git"),
    ] {
        for shell in BOTH {
            let r = run_shell(
                &env,
                shell,
                &["configlist", asked_as],
                &[("GIT_ANNEX_SHELL_DIRECTORY", allowed_as)],
                b"",
            );
            assert_eq!(
                r.stdout,
                format!("annex.uuid={}\ncore.gcrypt-id=\n", inhome.uuid()),
                "{shell:?} allowed {allowed_as}, asked {asked_as}: {r}"
            );
        }
    }
    // Under HOME, the message names paths as `~/...`, as git-annex-shell does.
    let home_s = home.to_string_lossy().into_owned();
    same_refusal(
        &env,
        &|_| vec!["configlist".into(), "/~/inhome.git".into()],
        &[("GIT_ANNEX_SHELL_DIRECTORY", home_s.as_str())],
        "Only allowed to access ~/ not ~/inhome.git",
    );
}

#[test]
fn limited_refuses_git_commands() {
    let env = TestEnv::new(Transport::Shim);
    let srv = env.server_repo("srv", RepoKind::Bare);
    let p = srv.path().to_string_lossy().into_owned();
    let limited = [("GIT_ANNEX_SHELL_LIMITED", "1")];
    for args in [
        vec!["-c".to_string(), format!("git-upload-pack '{p}'")],
        vec!["-c".to_string(), format!("git-receive-pack '{p}'")],
        vec!["git-upload-pack".to_string(), p.clone()],
    ] {
        same_refusal(
            &env,
            &|_| args.clone(),
            &limited,
            "Action blocked by GIT_ANNEX_SHELL_LIMITED",
        );
    }
    // The annex commands still work.
    let r = run_shell(
        &env,
        ShellImpl::AnnexgateShell,
        &["configlist", &p],
        &limited,
        b"",
    );
    assert_eq!(r.code, Some(0), "{r}");
    // And without the variable, git's commands go to git-shell (which serves the refs).
    let r = run_shell(
        &env,
        ShellImpl::AnnexgateShell,
        &["-c", &format!("git-upload-pack '{p}'")],
        &[],
        b"0000",
    );
    assert_eq!(r.code, Some(0), "{r}");
    assert!(r.stdout.contains("refs/heads/git-annex"), "{r}");
}

#[test]
fn readonly_and_appendonly_refuse_the_right_commands() {
    let env = TestEnv::new(Transport::Shim);
    let srv = env.server_repo("srv", RepoKind::Bare);
    let p = srv.path().to_string_lossy().into_owned();
    let ro = [("GIT_ANNEX_SHELL_READONLY", "1")];
    let ao = [("GIT_ANNEX_SHELL_APPENDONLY", "1")];
    for (vars, name, refused, allowed) in [
        (
            &ro,
            "GIT_ANNEX_SHELL_READONLY",
            vec!["dropkey", "recvkey", "gcryptsetup"],
            vec!["configlist", "inannex"],
        ),
        (
            &ao,
            "GIT_ANNEX_SHELL_APPENDONLY",
            vec!["dropkey", "gcryptsetup"],
            vec!["configlist", "inannex"],
        ),
    ] {
        for cmd in refused {
            let args = vec![cmd.to_string(), p.clone(), "--force".into(), HELLO.into()];
            same_refusal(
                &env,
                &|_| args.clone(),
                vars,
                &format!("Action blocked by {name}"),
            );
        }
        for cmd in allowed {
            for shell in BOTH {
                let args: &[&str] = if cmd == "inannex" {
                    &[cmd, &p, HELLO]
                } else {
                    &[cmd, &p]
                };
                let r = run_shell(&env, shell, args, vars, b"");
                // configlist: 0; inannex of an absent key: 1; neither is a refusal.
                assert!(shell_messages(&r).is_empty(), "{shell:?} {cmd}: {r}");
                assert_eq!(r.code, Some(if cmd == "inannex" { 1 } else { 0 }), "{r}");
            }
        }
    }
    // Inside p2pstdio: read-only refuses PUT and REMOVE, append-only refuses REMOVE, each
    // with git-annex's text, and the session goes on.
    let servers = servers(&env);
    for (shell, repo) in &servers {
        let dir = repo.path().to_string_lossy().into_owned();
        let input = format!("VERSION 4\nPUT f {HELLO}\nDATA 5\nhelloVALID\n");
        let r = run_shell(
            &env,
            *shell,
            &["p2pstdio", &dir, CLIENT],
            &[],
            input.as_bytes(),
        );
        assert!(r.stdout.ends_with("SUCCESS\n"), "{r}");
        let input = format!("VERSION 4\nPUT f WORM-s1--x\nREMOVE {HELLO}\nCHECKPRESENT {HELLO}\n");
        let r = run_shell(
            &env,
            *shell,
            &["p2pstdio", &dir, CLIENT],
            &ro,
            input.as_bytes(),
        );
        assert_eq!(
            masked(&r, repo),
            "AUTH-SUCCESS <uuid>\nVERSION 4\n\
             ERROR this repository is read-only; write access denied\n\
             ERROR this repository is read-only; write access denied\nSUCCESS\n",
            "{shell:?}: {r}"
        );
        let input = format!("VERSION 4\nREMOVE {HELLO}\nCHECKPRESENT {HELLO}\n");
        let r = run_shell(
            &env,
            *shell,
            &["p2pstdio", &dir, CLIENT],
            &ao,
            input.as_bytes(),
        );
        assert_eq!(
            masked(&r, repo),
            "AUTH-SUCCESS <uuid>\nVERSION 4\n\
             ERROR this repository is append-only; removal denied\nSUCCESS\n",
            "{shell:?}: {r}"
        );
        assert!(repo.find_object(HELLO).is_some());
        assert!(repo.find_object("WORM-s1--x").is_none());
    }
}

#[test]
fn configlist_of_an_uninitialised_repository() {
    let env = TestEnv::new(Transport::Shim);
    let root = env.root().to_path_buf();
    let plain = |name: &str| {
        let mut c = env.command(Side::Server, "git", &root);
        env.run(c.args(["init", "-q", "--bare", name]));
        root.join(name).to_string_lossy().into_owned()
    };
    for shell in BOTH {
        let tag = format!("{shell:?}");
        // A plain git repository: an empty UUID, no initialisation.
        let p = plain(&format!("plain-{tag}.git"));
        let r = run_shell(&env, shell, &["configlist", &p], &[], b"");
        assert_eq!(r.stdout, "annex.uuid=\ncore.gcrypt-id=\n", "{r}");
        assert_eq!(r.code, Some(0), "{r}");
        assert!(
            !Path::new(&p).join("annex").exists(),
            "{shell:?} initialised it"
        );
        // With --uuid: the client expects a repository that is not there.
        let msg = format!("expected repository UUID {CLIENT} but found uninitialized repository");
        for args in [
            vec!["configlist", &p, "--uuid", CLIENT],
            vec!["configlist", &p, "--uuid", CLIENT, "--", "autoinit=1", "--"],
            vec!["p2pstdio", &p, CLIENT, "--uuid", CLIENT],
            vec!["inannex", &p, HELLO, "--uuid", CLIENT],
        ] {
            let r = run_shell(&env, shell, &args, &[], b"");
            assert_eq!((r.code, r.stdout.as_str()), (Some(1), ""), "{r}");
            assert_eq!(
                shell_messages(&r),
                [msg.as_str()],
                "{shell:?} {args:?}: {r}"
            );
        }
        assert!(
            !Path::new(&p).join("annex").exists(),
            "{shell:?} initialised it"
        );
        // p2pstdio without --uuid: not a git-annex repository.
        let r = run_shell(&env, shell, &["p2pstdio", &p, CLIENT], &[], b"VERSION 4\n");
        assert_eq!((r.code, r.stdout.as_str()), (Some(1), ""), "{r}");
        assert_eq!(
            shell_messages(&r),
            ["Not a git-annex or gcrypt repository."],
            "{r}"
        );
        // autoinit=1 initialises (with git-annex) and answers the new UUID.
        let r = run_shell(
            &env,
            shell,
            &["configlist", &p, "--", "autoinit=1", "--"],
            &[],
            b"",
        );
        let uuid = Repo::open(&env, Side::Server, Path::new(&p), &tag)
            .uuid()
            .to_string();
        assert!(!uuid.is_empty(), "{shell:?} did not initialise: {r}");
        assert_eq!(
            r.stdout,
            format!("annex.uuid={uuid}\ncore.gcrypt-id=\n"),
            "{r}"
        );
        // Not under GIT_ANNEX_SHELL_READONLY.
        let p = plain(&format!("ro-{tag}.git"));
        let r = run_shell(
            &env,
            shell,
            &["configlist", &p, "--", "autoinit=1", "--"],
            &[("GIT_ANNEX_SHELL_READONLY", "1")],
            b"",
        );
        assert_eq!(r.code, Some(1), "{r}");
        assert_eq!(
            shell_messages(&r),
            ["Action blocked by GIT_ANNEX_SHELL_READONLY"],
            "{r}"
        );
        assert!(!Path::new(&p).join("annex").exists());
    }
}

#[test]
fn uuid_mismatch_is_refused_with_git_annex_text() {
    let env = TestEnv::new(Transport::Shim);
    let srv = env.server_repo("srv", RepoKind::Bare);
    let p = srv.path().to_string_lossy().into_owned();
    let other = "99999999-8888-7777-6666-555555555555";
    let msg = format!(
        "expected repository UUID {other} but found UUID {}",
        srv.uuid()
    );
    for args in [
        vec!["configlist", &p, "--uuid", other],
        vec!["p2pstdio", &p, CLIENT, "--uuid", other],
        vec!["inannex", &p, HELLO, "--uuid", other],
        vec!["dropkey", &p, "--force", HELLO, "--uuid", other],
    ] {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        same_refusal(&env, &|_| args.clone(), &[], &msg);
    }
    // Not a UUID at all.
    let args: Vec<String> = ["p2pstdio", &p, CLIENT, "--uuid", "not a uuid"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    same_refusal(
        &env,
        &|_| args.clone(),
        &[],
        &format!(
            "expected repository UUID not a uuid but found UUID {}",
            srv.uuid()
        ),
    );
    // Missing client UUID, missing --uuid value.
    let args: Vec<String> = vec!["p2pstdio".into(), p.clone()];
    same_refusal(&env, &|_| args.clone(), &[], "missing UUID parameter");
    let r = run_shell(
        &env,
        ShellImpl::AnnexgateShell,
        &["p2pstdio", &p, CLIENT, "--uuid"],
        &[],
        b"",
    );
    assert_eq!((r.code, r.stdout.as_str()), (Some(1), ""), "{r}");
    assert_eq!(shell_messages(&r), ["option --uuid needs a value"], "{r}");
    // The right one is served.
    let r = run_shell(
        &env,
        ShellImpl::AnnexgateShell,
        &["p2pstdio", &p, CLIENT, "--uuid", srv.uuid()],
        &[],
        b"VERSION 1\n",
    );
    assert_eq!(
        r.stdout,
        format!("AUTH-SUCCESS {}\nVERSION 1\n", srv.uuid())
    );
}

#[test]
fn inannex_and_dropkey_force() {
    let env = TestEnv::new(Transport::Shim);
    for (shell, repo) in servers(&env) {
        let p = repo.path().to_string_lossy().into_owned();
        let r = p2p(
            &repo,
            shell,
            format!("VERSION 4\nPUT f {HELLO}\nDATA 5\nhelloVALID\n").as_bytes(),
        );
        assert!(r.stdout.ends_with("SUCCESS\n"), "{r}");
        let absent = "WORM-s1--absent";
        let code = |args: &[&str]| {
            let r = run_shell(&env, shell, args, &[], b"");
            assert_eq!(r.stdout, "", "{r}");
            (r.code, shell_messages(&r))
        };
        assert_eq!(code(&["inannex", &p, HELLO]), (Some(0), vec![]));
        assert_eq!(code(&["inannex", &p, HELLO, absent]), (Some(1), vec![]));
        assert_eq!(code(&["inannex", &p, absent, HELLO]), (Some(1), vec![]));
        let (c, m) = code(&["inannex", &p, "not-a-key"]);
        assert_eq!(c, Some(1));
        assert!(
            m.len() == 1 && m[0].starts_with("bad key"),
            "{shell:?}: {m:?}"
        );
        // dropkey without --force: refused, content kept.
        assert_eq!(
            code(&["dropkey", &p, HELLO]),
            (
                Some(1),
                vec![
                    "dropkey can cause data loss; use --force if you're sure you want to do this"
                        .to_string()
                ]
            )
        );
        assert!(repo.find_object(HELLO).is_some());
        assert!(logged_present(&repo, HELLO));
        // With --force: gone, and the location log says so.
        assert_eq!(code(&["dropkey", &p, "--force", HELLO]), (Some(0), vec![]));
        assert!(repo.find_object(HELLO).is_none(), "{shell:?}");
        assert!(!logged_present(&repo, HELLO), "{shell:?}");
        assert_eq!(code(&["inannex", &p, HELLO]), (Some(1), vec![]));
        // Dropping what is not there succeeds.
        assert_eq!(code(&["dropkey", &p, "--force", absent]), (Some(0), vec![]));
    }
}
