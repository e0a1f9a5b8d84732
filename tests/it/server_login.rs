//! annexgate-shell on the server side, for every client: as the ssh forced command of the
//! account's key (`command="annexgate-shell -c \"$SSH_ORIGINAL_COMMAND\""`, or plain
//! `command="annexgate-shell"`, which reads `SSH_ORIGINAL_COMMAND`) with a real sshd, and
//! as the account's login shell (`annexgate-shell -c COMMAND`). The clients are plain: they
//! do not set `remote.NAME.annex-shell`, so they send `git-annex-shell ...` and
//! `git-upload-pack`/`git-receive-pack` command lines, and annexgate-shell must serve the
//! first and hand the others to git-shell. The server login has no git-annex on its PATH
//! (stand-ins that log and fail), so everything that works was done by annexgate-shell.

use std::fs;

use crate::harness::{
    client_p2p_trace, pseudo_random, Repo, RepoKind, ServerLogin, ShellImpl, Side, TestEnv,
    Transport, SSH_HOST,
};

fn annexgate_shell() -> String {
    ShellImpl::AnnexgateShell
        .program()
        .to_string_lossy()
        .into_owned()
}

/// The forced command as the README shows it.
fn forced_with_argument() -> ServerLogin {
    ServerLogin::ForcedCommand {
        command: format!("{} -c \"$SSH_ORIGINAL_COMMAND\"", annexgate_shell()),
        extra_env: Vec::new(),
    }
}

/// `git clone` of `srv` over ssh (git-upload-pack), then `git annex init NAME`.
fn clone<'e>(env: &'e TestEnv, srv: &Repo<'_>, name: &str) -> Repo<'e> {
    let mut c = env.command(Side::Client, "git", env.root());
    env.run(c.args(["clone", "-q", &srv.ssh_url(), name]));
    let path = env.root().join(name);
    let mut c = env.command(Side::Client, "git", &path);
    env.run(c.args(["annex", "init", "-q", name]));
    Repo::open(env, Side::Client, &path, name)
}

/// Plain git and git-annex work through the login: push, first contact, copy, whereis,
/// clone, get, drop, fetch.
fn plain_clients_work(env: &TestEnv) {
    let srv = env.server_repo("srv", RepoKind::Bare);
    let client = env.client_repo("client");
    let big = pseudo_random(200_000, 7);
    client.add_files(&[("small.txt", b"through the gateway\n"), ("big.bin", &big)]);
    client.git(&["remote", "add", "srv", &srv.ssh_url()]);
    // git-receive-pack, through git-shell.
    client.git(&["push", "-q", "srv", "master"]);
    assert_eq!(
        srv.git(&["rev-parse", "master"]),
        client.git(&["rev-parse", "master"])
    );
    // First contact (configlist), then fetch and push of the git-annex branch.
    client.annex(&["sync", "--no-content", "srv"]);
    assert_eq!(
        client.git(&["config", "remote.srv.annex-uuid"]).trim(),
        srv.uuid()
    );
    assert!(client
        .try_git(&["config", "remote.srv.annex-shell"])
        .stdout
        .is_empty());

    // Content, over p2pstdio.
    let r = client.annex(&["copy", "--to", "srv", "--debug", "."]);
    let trace = client_p2p_trace(&r.stderr);
    assert!(trace.iter().any(|m| m.starts_with("> PUT ")), "{trace:?}");
    for f in ["small.txt", "big.bin"] {
        assert_eq!(client.whereis(&[f]), ["client", "srv"]);
        assert!(srv.find_object(&client.key_of(f)).is_some(), "srv has {f}");
    }

    // git-upload-pack: a clone, which then gets the content from srv.
    let c2 = clone(env, &srv, "client2");
    c2.annex(&["get", "--from", "origin", "."]);
    assert_eq!(fs::read(c2.path().join("big.bin")).unwrap(), big);
    assert_eq!(
        fs::read(c2.path().join("small.txt")).unwrap(),
        b"through the gateway\n"
    );
    c2.annex(&["sync", "--no-content", "origin"]);

    // Drop from srv (the other copies are locked or verified), then fetch sees it.
    client.annex(&["drop", "--from", "srv", "small.txt"]);
    assert!(srv.find_object(&client.key_of("small.txt")).is_none());
    c2.git(&["fetch", "-q", "origin"]);
    c2.annex(&["merge"]);
    assert_eq!(c2.whereis(&["small.txt"]), ["client", "client2"]);
    assert_eq!(c2.whereis(&["big.bin"]), ["client", "client2", "srv"]);

    assert!(
        env.git_annex_ran_on_server().is_empty(),
        "the login ran git-annex: {:?}",
        env.git_annex_ran_on_server()
    );
    login_is_annexgate_shell(env);
}

/// What shows that the login is annexgate-shell with the server-only PATH: any other
/// command goes to git-shell (which refuses it), and the one thing that needs git-annex
/// (initialising on first contact, `autoinit=1`) finds only the stand-in.
fn login_is_annexgate_shell(env: &TestEnv) {
    let mut ssh = env.command(Side::Client, "ssh", env.root());
    let r = env.try_run(ssh.args([SSH_HOST, "echo hello"]));
    assert!(
        !r.success() && r.stdout.is_empty() && r.stderr.contains("unrecognized command"),
        "{r}"
    );
    let mut init = env.command(Side::Server, "git", env.root());
    env.run(init.args(["init", "-q", "--bare", "uninit.git"]));
    let p = env.root().join("uninit.git");
    let mut ssh = env.command(Side::Client, "ssh", env.root());
    let cmd = format!(
        "git-annex-shell 'configlist' '{}' -- autoinit=1 --",
        p.display()
    );
    let r = env.run(ssh.args([SSH_HOST, &cmd]));
    assert_eq!(r.stdout, "annex.uuid=\ncore.gcrypt-id=\n", "{r}");
    let ran = env.git_annex_ran_on_server();
    assert_eq!(ran, ["git-annex init"], "{r}");
}

#[test]
fn forced_command_with_ssh_original_command_argument() {
    let env = TestEnv::with_login(Transport::Sshd, forced_with_argument());
    plain_clients_work(&env);
}

#[test]
fn forced_command_alone_reads_ssh_original_command() {
    let env = TestEnv::with_login(
        Transport::Sshd,
        ServerLogin::ForcedCommand {
            command: annexgate_shell(),
            extra_env: Vec::new(),
        },
    );
    plain_clients_work(&env);
}

#[test]
fn login_shell_over_sshd() {
    let login = ServerLogin::LoginShell(ShellImpl::AnnexgateShell.program().to_path_buf());
    let env = TestEnv::with_login(Transport::Sshd, login);
    plain_clients_work(&env);
    // Every login went through the entry, then annexgate-shell -c.
    let cmds = env.remote_commands();
    assert!(
        cmds.iter()
            .any(|c| c.starts_with("git-annex-shell 'p2pstdio'")),
        "{cmds:?}"
    );
    assert!(
        cmds.iter().any(|c| c.starts_with("git-upload-pack ")),
        "{cmds:?}"
    );
    assert!(
        cmds.iter().any(|c| c.starts_with("git-receive-pack ")),
        "{cmds:?}"
    );
}

#[test]
fn login_shell_over_shim() {
    let login = ServerLogin::LoginShell(ShellImpl::AnnexgateShell.program().to_path_buf());
    let env = TestEnv::with_login(Transport::Shim, login);
    plain_clients_work(&env);
}

/// Both ways at once: a client whose `remote.NAME.annex-shell` is annexgate-shell (by
/// path) talking to an account whose login shell is annexgate-shell. The command string
/// then names annexgate-shell, which used to be handed to git-shell and refused.
#[test]
fn login_shell_with_client_configured_annex_shell() {
    let login = ServerLogin::LoginShell(ShellImpl::AnnexgateShell.program().to_path_buf());
    let env = TestEnv::with_login(Transport::Shim, login);
    let srv = env.server_repo("srv", RepoKind::Bare);
    let client = env.client_repo("client");
    client.add_files(&[("a.txt", b"both ways\n")]);
    client.add_ssh_remote("srv", &srv, ShellImpl::AnnexgateShell);
    client.annex(&["copy", "--to", "srv", "a.txt"]);
    assert_eq!(client.whereis(&["a.txt"]), ["client", "srv"]);
    let cmds = env.remote_commands();
    assert!(
        cmds.iter()
            .any(|c| c.contains("/annexgate-shell 'p2pstdio'")),
        "{cmds:?}"
    );
}

/// The restrictions set where administrators set them: in the key's authorized_keys line.
#[test]
fn forced_command_with_readonly_environment() {
    let env = TestEnv::with_login(
        Transport::Sshd,
        ServerLogin::ForcedCommand {
            command: format!("{} -c \"$SSH_ORIGINAL_COMMAND\"", annexgate_shell()),
            extra_env: vec![("GIT_ANNEX_SHELL_READONLY".into(), "1".into())],
        },
    );
    let srv = env.server_repo("srv", RepoKind::Bare);
    // Content the server already has, put there locally.
    let seed = env.client_repo("seed");
    seed.add_files(&[("a.txt", b"read me\n")]);
    seed.git(&["remote", "add", "srv", &srv.path().to_string_lossy()]);
    seed.annex(&["sync", "-q", "--content", "srv"]);
    let key = seed.key_of("a.txt");
    assert!(srv.find_object(&key).is_some());

    // Reading works: clone and get.
    let reader = clone(&env, &srv, "reader");
    reader.annex(&["get", "--from", "origin", "a.txt"]);
    assert_eq!(fs::read(reader.path().join("a.txt")).unwrap(), b"read me\n");
    // Annex writes do not: no upload, no removal. (git's own commands still pass to
    // git-shell, as with git-annex-shell: GIT_ANNEX_SHELL_LIMITED is what stops those.)
    reader.add_files(&[("b.txt", b"refused\n")]);
    reader.git(&["push", "-q", "origin", "master:pushed"]);
    assert_eq!(
        srv.git(&["rev-parse", "pushed"]),
        reader.git(&["rev-parse", "master"])
    );
    let r = reader
        .try_annex(&["copy", "--to", "origin", "b.txt"])
        .failed();
    assert!(
        r.stderr
            .contains("PUT refused: this repository is read-only"),
        "{r}"
    );
    assert!(srv.find_object(&reader.key_of("b.txt")).is_none());
    let r = reader
        .try_annex(&["drop", "--from", "origin", "--force", "a.txt"])
        .failed();
    assert!(
        r.stderr
            .contains("this repository is read-only; write access denied"),
        "{r}"
    );
    assert!(srv.find_object(&key).is_some());
    assert!(env.git_annex_ran_on_server().is_empty());
}
