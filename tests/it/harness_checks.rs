//! Checks of the harness itself: both ssh transports behave like an ssh login (command string,
//! environment, stdin, git traffic), and missing parts fail loudly.

use std::process::Stdio;
use std::time::Duration;

use crate::harness::run::run;
use crate::harness::tools::Tools;
use crate::harness::{Repo, RepoKind, ShellImpl, Side, TestEnv, Transport, SSH_HOST};

/// Runs `ssh ARGS` as the client would, returning the result.
fn ssh(env: &TestEnv, args: &[&str]) -> crate::harness::RunResult {
    let mut c = env.command(Side::Client, "ssh", env.root());
    c.args(args);
    env.try_run(&mut c)
}

fn login_environment(t: Transport) {
    let env = TestEnv::new(t);
    // git-annex's form: options after the host, the command in one word.
    let r = ssh(
        &env,
        &[
            SSH_HOST,
            "-n",
            "-T",
            "echo \"$HOME\"; command -v git-annex-shell; command -v annexgate-shell; pwd",
        ],
    )
    .ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    let server_home = env.home(Side::Server).to_string_lossy().into_owned();
    assert_eq!(lines.len(), 4, "{r}");
    assert_eq!(lines[0], server_home);
    assert!(lines[1].ends_with("/git-annex-shell"), "{r}");
    assert!(lines[2].ends_with("/annexgate-shell"), "{r}");
    assert_eq!(lines[3], server_home);
    // git's form: -o before the host; words after the host are joined with spaces.
    let r = ssh(
        &env,
        &[
            "-o",
            "SendEnv=GIT_PROTOCOL",
            SSH_HOST,
            "echo",
            "a",
            "'b  c'",
        ],
    )
    .ok();
    assert_eq!(r.stdout, "a b  c\n");
    // Server settings reach the login, and nothing of the client's environment does.
    env.set_server_env("GIT_ANNEX_SHELL_READONLY", Some("1"));
    let r = ssh(
        &env,
        &[
            SSH_HOST,
            "echo \"[$GIT_ANNEX_SHELL_READONLY][$SSH_ORIGINAL_COMMAND]\"",
        ],
    )
    .ok();
    assert_eq!(r.stdout, "[1][]\n");
    // The exit code of the remote command comes back.
    assert_eq!(ssh(&env, &[SSH_HOST, "exit 3"]).code, Some(3));
    // What ran is logged on both ends.
    let argv = env.ssh_invocations();
    assert_eq!(argv.len(), 4, "{argv:?}");
    assert_eq!(
        argv[1],
        [
            "-o",
            "SendEnv=GIT_PROTOCOL",
            SSH_HOST,
            "echo",
            "a",
            "'b  c'"
        ]
    );
    let remote = env.remote_commands();
    assert_eq!(remote.len(), 4, "{remote:?}");
    assert_eq!(remote[3], "exit 3");
}

#[test]
fn shim_login_environment() {
    login_environment(Transport::Shim);
}

#[test]
fn sshd_login_environment() {
    login_environment(Transport::Sshd);
}

#[test]
fn shim_answers_config_queries_and_refuses_unknown_options() {
    let env = TestEnv::new(Transport::Shim);
    let r = ssh(&env, &["-G", "-o", "SendEnv=GIT_PROTOCOL", SSH_HOST]).ok();
    assert!(r.stdout.contains(&format!("hostname {SSH_HOST}")), "{r}");
    let r = ssh(&env, &["-Z", SSH_HOST, "true"]);
    assert_eq!(r.code, Some(255), "{r}");
    assert!(r.stderr.contains("unsupported option -Z"), "{r}");
    let r = ssh(&env, &[SSH_HOST]);
    assert_eq!(
        r.code,
        Some(255),
        "an interactive login must be refused: {r}"
    );
}

/// `-n` gives the remote command an empty stdin; otherwise stdin passes through, and the P2P
/// cut truncates it only for p2pstdio sessions.
fn stdin_and_cut(t: Transport) {
    let env = TestEnv::new(t);
    let input = env.root().join("input");
    std::fs::write(&input, vec![b'x'; 100_000]).unwrap();
    let count = |args: &[&str]| {
        let mut c = env.command(Side::Client, "ssh", env.root());
        c.args(args)
            .stdin(Stdio::from(std::fs::File::open(&input).unwrap()));
        env.run(&mut c).stdout.trim().to_string()
    };
    assert_eq!(count(&[SSH_HOST, "wc -c"]), "100000");
    assert_eq!(count(&[SSH_HOST, "-n", "wc -c"]), "0");
    env.cut_p2p_input_after(Some(7_000));
    assert_eq!(count(&[SSH_HOST, "wc -c"]), "100000");
    assert_eq!(count(&[SSH_HOST, "wc -c # p2pstdio"]), "7000");
    env.cut_p2p_input_after(None);
    assert_eq!(count(&[SSH_HOST, "wc -c # p2pstdio"]), "100000");
}

#[test]
fn shim_stdin_and_cut() {
    stdin_and_cut(Transport::Shim);
}

#[test]
fn sshd_stdin_and_cut() {
    stdin_and_cut(Transport::Sshd);
}

/// Plain git over the transport: push to a bare server repo, clone it back.
fn git_traffic(t: Transport) {
    let env = TestEnv::new(t);
    let srv = env.server_repo("srv", RepoKind::Bare);
    let client = env.client_repo("client");
    client.add_files(&[("a.txt", b"hello\n")]);
    client.git(&["remote", "add", "srv", &srv.ssh_url()]);
    client.git(&["push", "-q", "srv", "master"]);
    let head = client.git(&["rev-parse", "master"]);
    assert_eq!(srv.git(&["rev-parse", "master"]), head);
    let mut clone = env.command(Side::Client, "git", env.root());
    clone.args(["clone", "-q", &srv.ssh_url(), "copy"]);
    env.run(&mut clone);
    let copy = Repo::open(&env, Side::Client, &env.root().join("copy"), "copy");
    assert_eq!(copy.git(&["rev-parse", "HEAD"]), head);
    assert_eq!(copy.kind(), RepoKind::NonBare);
    let cmds = env.remote_commands();
    assert!(
        cmds.iter().any(|c| c.starts_with("git-receive-pack ")),
        "{cmds:?}"
    );
    assert!(
        cmds.iter().any(|c| c.starts_with("git-upload-pack ")),
        "{cmds:?}"
    );
}

#[test]
fn shim_git_fetch_and_push() {
    git_traffic(Transport::Shim);
}

#[test]
fn sshd_git_fetch_and_push() {
    git_traffic(Transport::Sshd);
}

#[test]
#[should_panic(expected = "run scripts/setup")]
fn missing_git_annex_fails_loudly() {
    let nowhere = tempfile::tempdir().unwrap();
    Tools::locate_in(nowhere.path().to_path_buf());
}

#[test]
fn a_hanging_command_is_killed_at_the_time_limit() {
    let mut c = std::process::Command::new("sh");
    c.args(["-c", "sleep 30 & sleep 30"]);
    let r = run(&mut c, Duration::from_millis(200));
    assert!(r.timed_out, "{r}");
    assert_eq!(r.signal, Some(libc::SIGKILL), "{r}");
}

/// A server side that never answers: the client is killed at the time limit, with everything
/// it started on this machine, and the result says so.
#[test]
fn a_silent_server_is_cut_off_at_the_time_limit() {
    let env = TestEnv::new(Transport::Shim);
    let srv = env.server_repo("srv", RepoKind::Bare);
    let client = env.client_repo("client");
    client.add_files(&[("a.txt", b"hello\n")]);
    client.add_ssh_remote("srv", &srv, ShellImpl::GitAnnexShell);
    let silent = env.root().join("silent-shell");
    crate::harness::ssh::write_script(&silent, "#!/bin/sh\nexec sleep 600\n");
    client.set_config("remote.srv.annex-shell", &silent.to_string_lossy());
    env.set_timeout(Duration::from_secs(3));
    let r = client.try_annex(&["copy", "--to", "srv", "a.txt"]);
    assert!(r.timed_out, "{r}");
    let left = std::process::Command::new("pgrep")
        .args(["-f", &silent.to_string_lossy()])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "the silent shell survived: {left:?}"
    );
}
