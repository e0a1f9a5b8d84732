//! One test's world: a temp dir with a client HOME and a server HOME, the `ssh` of the chosen
//! transport first on PATH, and helpers to run git and git-annex on either side.
//!
//! Layout of the temp dir:
//! ```text
//! home/         the client's HOME (.gitconfig: identity, annex.sshcaching=false)
//! server-home/  the server account's HOME (where ssh logins start)
//! bin/ssh       the shim or the real-ssh wrapper
//! ssh/          remote entry script, argv.log, remote.log, server.env, cut-after, keys
//! <repo name>/  repositories made by client_repo / server_repo
//! ```

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use super::run::{default_timeout, run, RunResult};
use super::ssh::{
    entry_script, key_option_quote, real_ssh_wrapper, setup_sshd_client, sh_quote, shim_script,
    stop_ssh_master, write_script, RemoteLogin, SshFiles, Transport,
};
use super::tools::{tools, Tools};

/// Which program the client runs on the server side of its ssh remotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShellImpl {
    /// The real `git-annex-shell` (the reference).
    GitAnnexShell,
    /// Ours.
    AnnexgateShell,
}

impl ShellImpl {
    /// The absolute path set as `remote.NAME.annex-shell`.
    pub fn program(self) -> &'static Path {
        match self {
            ShellImpl::GitAnnexShell => &tools().git_annex_shell,
            ShellImpl::AnnexgateShell => &tools().annexgate_shell,
        }
    }
}

/// What an ssh login on the server side runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerLogin {
    /// The test's remote entry, which runs the client's command with `sh -c` in the server
    /// environment (HOME, PATH with git-annex and our programs, `server.env`).
    Entry,
    /// The remote entry, ending as a login shell would be started: `SHELL -c COMMAND`
    /// (with the server-only PATH, see below). Both transports.
    LoginShell(PathBuf),
    /// Real sshd only: the key's authorized_keys line forces this command (it may use
    /// `$SSH_ORIGINAL_COMMAND`) with `environment=` options giving the server's HOME and
    /// the server-only PATH; no remote entry (so no `remote.log`, no `server.env`, no
    /// cutting); `extra_env` adds more `environment=` settings.
    ForcedCommand {
        command: String,
        extra_env: Vec<(String, String)>,
    },
}

/// Which account a command runs as: the client user or the server's login account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// One test's temp dir, homes, PATH and ssh set-up. Dropping it removes everything (set
/// `ANNEXGATE_KEEP_TEST_DIRS=1` to keep the directory for a look after a failure).
pub struct TestEnv {
    dir: tempfile::TempDir,
    transport: Transport,
    client_home: PathBuf,
    server_home: PathBuf,
    ssh: SshFiles,
    path_var: String,
    timeout: Mutex<Duration>,
    server_env: Mutex<BTreeMap<String, String>>,
    /// uuid -> the name a repo was created with, to name locations in outcomes.
    names: Mutex<BTreeMap<String, String>>,
}

const GITCONFIG: &str = "[user]\n\tname = annexgate test\n\temail = test@annexgate.invalid\n\
[init]\n\tdefaultBranch = master\n[advice]\n\tdetachedHead = false\n";

impl TestEnv {
    /// A fresh environment using `transport` for ssh remotes.
    pub fn new(transport: Transport) -> TestEnv {
        TestEnv::with_login(transport, ServerLogin::Entry)
    }

    /// A fresh environment whose ssh logins run `login` on the server side.
    ///
    /// With [`ServerLogin::LoginShell`] and [`ServerLogin::ForcedCommand`] the login gets a
    /// server-only PATH: the system's, without git-annex or our programs, behind a `trap/`
    /// directory whose `git-annex` and `git-annex-shell` only log that they were run (see
    /// [`TestEnv::git_annex_ran_on_server`]) and fail: what the login does, the login's
    /// own program must do.
    pub fn with_login(transport: Transport, login: ServerLogin) -> TestEnv {
        let t: &Tools = tools();
        let dir = tempfile::Builder::new()
            .prefix("annexgate-it-")
            .tempdir()
            .expect("creating the test's temp dir");
        let root = dir.path().to_path_buf();
        let client_home = root.join("home");
        let server_home = root.join("server-home");
        let bin = root.join("bin");
        let ssh = SshFiles {
            dir: root.join("ssh"),
        };
        for d in [&client_home, &server_home, &bin, &ssh.dir] {
            fs::create_dir_all(d).expect("creating the test's directories");
        }
        // Client: no ssh connection caching (it would leave ssh masters running).
        fs::write(
            client_home.join(".gitconfig"),
            format!("{GITCONFIG}[annex]\n\tsshcaching = false\n"),
        )
        .expect("writing the client's .gitconfig");
        fs::write(server_home.join(".gitconfig"), GITCONFIG)
            .expect("writing the server's .gitconfig");

        // Both sides: our ssh first (the server side may reach further nodes by ssh), then our
        // programs, then git-annex, then the system.
        let path_var = format!(
            "{}:{}:{}:{}",
            bin.display(),
            t.our_bin.display(),
            t.annex_bin.display(),
            t.system_path
        );
        let user = std::env::var("USER").unwrap_or_else(|_| "root".to_string());
        let server_path = server_only_path(&root, &ssh, t);
        let (login_path, shell) = match &login {
            ServerLogin::Entry => (path_var.as_str(), None),
            ServerLogin::LoginShell(p) => (server_path.as_str(), Some(p.as_path())),
            ServerLogin::ForcedCommand { .. } => (server_path.as_str(), None),
        };
        let remote = RemoteLogin {
            home: &server_home,
            path: login_path,
            magic: t.magic.as_deref(),
            user: &user,
            shell,
        };
        write_script(&ssh.entry(), &entry_script(&ssh, &remote));
        let key_options = match &login {
            ServerLogin::ForcedCommand { command, extra_env } => {
                assert_eq!(
                    transport,
                    Transport::Sshd,
                    "a forced command needs the real sshd"
                );
                let home = server_home.to_string_lossy().into_owned();
                let mut vars: Vec<(String, String)> = vec![
                    ("HOME".into(), home),
                    ("PATH".into(), server_path.clone()),
                    ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
                    ("LANG".into(), "C.UTF-8".into()),
                ];
                vars.extend(extra_env.iter().cloned());
                let mut o: Vec<String> = vars
                    .iter()
                    .map(|(k, v)| format!("environment={}", key_option_quote(&format!("{k}={v}"))))
                    .collect();
                o.push(format!("command={}", key_option_quote(command)));
                Some(o.join(","))
            }
            _ => None,
        };
        match transport {
            Transport::Shim => write_script(&bin.join("ssh"), &shim_script(&ssh)),
            Transport::Sshd => {
                setup_sshd_client(&ssh, key_options.as_deref());
                write_script(&bin.join("ssh"), &real_ssh_wrapper(&ssh));
            }
        }
        let mut dir = dir;
        if std::env::var_os("ANNEXGATE_KEEP_TEST_DIRS").is_some() {
            dir.disable_cleanup(true);
            eprintln!("test dir kept: {}", root.display());
        }
        TestEnv {
            dir,
            transport,
            client_home,
            server_home,
            ssh,
            path_var,
            timeout: Mutex::new(default_timeout()),
            server_env: Mutex::new(BTreeMap::new()),
            names: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Changes the time limit for each later command of this environment.
    pub fn set_timeout(&self, limit: Duration) {
        *self.timeout.lock().unwrap() = limit;
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    pub fn home(&self, side: Side) -> &Path {
        match side {
            Side::Client => &self.client_home,
            Side::Server => &self.server_home,
        }
    }

    /// A command with the side's environment (and nothing else from this process), in `cwd`.
    pub fn command(&self, side: Side, program: impl AsRef<OsStr>, cwd: &Path) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("HOME", self.home(side))
            .env("PATH", &self.path_var)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("LANG", "C.UTF-8")
            .env(
                "USER",
                std::env::var("USER").unwrap_or_else(|_| "root".into()),
            )
            .current_dir(cwd);
        if let Some(m) = &tools().magic {
            c.env("MAGIC", m);
        }
        if let Ok(tmp) = std::env::var("TMPDIR") {
            c.env("TMPDIR", tmp);
        }
        if side == Side::Server {
            // The server's local runs see the same settings its ssh logins get.
            for (k, v) in self.server_env.lock().unwrap().iter() {
                c.env(k, v);
            }
        }
        c
    }

    /// Runs a command to completion (time-limited); the caller judges the result.
    pub fn try_run(&self, cmd: &mut Command) -> RunResult {
        let limit = *self.timeout.lock().unwrap();
        run(cmd, limit)
    }

    /// Runs a command and panics (showing both outputs) unless it exits 0.
    #[track_caller]
    pub fn run(&self, cmd: &mut Command) -> RunResult {
        self.try_run(cmd).ok()
    }

    /// Remembers which repo a UUID belongs to, for [`TestEnv::name_of`].
    pub fn register_uuid(&self, uuid: &str, name: &str) {
        self.names
            .lock()
            .unwrap()
            .insert(uuid.to_string(), name.to_string());
    }

    /// The name a repo was created with, or `uuid:<uuid>` for a stranger.
    pub fn name_of(&self, uuid: &str) -> String {
        self.names
            .lock()
            .unwrap()
            .get(uuid)
            .cloned()
            .unwrap_or_else(|| format!("uuid:{uuid}"))
    }

    /// Sets (or with `None` removes) a variable in every later server-side login and local
    /// server command, e.g. `GIT_ANNEX_SHELL_READONLY`.
    pub fn set_server_env(&self, key: &str, value: Option<&str>) {
        let mut vars = self.server_env.lock().unwrap();
        match value {
            Some(v) => vars.insert(key.to_string(), v.to_string()),
            None => vars.remove(key),
        };
        let text: String = vars
            .iter()
            .map(|(k, v)| format!("export {k}={}\n", sh_quote(v)))
            .collect();
        fs::write(self.ssh.server_env(), text).expect("writing server.env");
    }

    /// From now on (until called with `None`), the server side of every P2P session
    /// (`p2pstdio`) reads only the first `bytes` the client sends, then sees end of input: a
    /// connection lost mid-transfer.
    pub fn cut_p2p_input_after(&self, bytes: Option<u64>) {
        let path = self.ssh.cut_after();
        match bytes {
            Some(n) => fs::write(&path, format!("{n}\n")).expect("writing cut-after"),
            None => {
                let _ = fs::remove_file(&path);
            }
        }
    }

    /// Every `ssh` the client side ran so far, as argv (without the program name).
    pub fn ssh_invocations(&self) -> Vec<Vec<String>> {
        fs::read_to_string(self.ssh.argv_log())
            .unwrap_or_default()
            .lines()
            .map(|l| {
                l.strip_suffix('\u{1f}')
                    .unwrap_or(l)
                    .split('\u{1f}')
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    }

    /// What ran `git-annex` or `git-annex-shell` from the server-only PATH (see
    /// [`TestEnv::with_login`]): one line per run, with its arguments.
    pub fn git_annex_ran_on_server(&self) -> Vec<String> {
        fs::read_to_string(self.ssh.dir.join("trap.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Every command run on the server side through ssh so far.
    pub fn remote_commands(&self) -> Vec<String> {
        fs::read_to_string(self.ssh.remote_log())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// The PATH of a login that must do without git-annex: `<root>/trap` (stand-ins for
/// `git-annex` and `git-annex-shell` that log and fail), then the system's PATH without
/// the directories holding git-annex or our programs.
fn server_only_path(root: &Path, ssh: &SshFiles, t: &Tools) -> String {
    let trap = root.join("trap");
    fs::create_dir_all(&trap).expect("creating the trap directory");
    let log = sh_quote(&ssh.dir.join("trap.log").to_string_lossy());
    for name in ["git-annex", "git-annex-shell"] {
        write_script(
            &trap.join(name),
            &format!(
                "#!/bin/sh\n# A login that must not need git-annex ran {name} (generated).\n\
                 echo \"{name} $*\" >> {log}\necho \"{name} is not available here\" >&2\nexit 1\n"
            ),
        );
    }
    let mut dirs = vec![trap.to_string_lossy().into_owned()];
    for d in t.system_path.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(d);
        let has = |n: &str| p.join(n).exists();
        if !has("git-annex") && !has("git-annex-shell") && !has("annexgate-shell") {
            dirs.push(d.to_string());
        }
    }
    dirs.join(":")
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if self.transport == Transport::Sshd {
            stop_ssh_master(&self.ssh);
        }
    }
}
