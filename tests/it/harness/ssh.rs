//! The two ways a test client reaches its server repositories "over ssh".
//!
//! git and git-annex run `ssh [options] HOST [options] COMMAND...` (the program `ssh` from PATH),
//! and expect the remote login shell to run COMMAND (the remaining words joined by spaces) with
//! stdin/stdout connected to them. git-annex passes e.g.
//! `ssh annexgate-test -T "git-annex-shell 'p2pstdio' '/path' 'UUID' --uuid UUID"`; git passes
//! `ssh -o SendEnv=GIT_PROTOCOL annexgate-test "git-upload-pack '/path'"`.
//!
//! * [`Transport::Shim`]: an `ssh` script first on PATH parses that argv the way OpenSSH does
//!   (options before and after the host) and runs the command on this machine.
//! * [`Transport::Sshd`]: an `ssh` script that runs the real OpenSSH client with a private
//!   config (`-F`), against one real `sshd` on 127.0.0.1 shared by the whole test run. The
//!   client shares one connection per test environment (ControlMaster), as git-annex itself
//!   does with `annex.sshcaching`: every command is still its own ssh session on the server,
//!   but the key exchange happens once. The master is stopped when the environment is dropped
//!   (and ends by itself 60 s after its last session in any case).
//!
//! Either way the command ends in the test's *remote entry* script, which is what a login on
//! the server would be: a clean environment (server HOME, a PATH with git-annex and our
//! programs, `server.env` settings such as `GIT_ANNEX_SHELL_READONLY`), the command logged to
//! `remote.log`, then `sh -c COMMAND`. sshd runs it as a forced command (`command=` in
//! authorized_keys, the client's command in `SSH_ORIGINAL_COMMAND`), the shim execs it directly
//! with the same variable. The entry can also cut a P2P session's input after N bytes (to
//! interrupt a transfer, see `TestEnv::cut_p2p_input_after`).
//!
//! Two other server-side forms exist for tests of a program as the account's own login
//! (`TestEnv::with_login`): the entry can end by starting a login shell (`SHELL -c
//! COMMAND`, as sshd does), and with the real sshd a key can get an authorized_keys line of
//! the test's own (`environment=` options, which this sshd accepts for a fixed list of
//! variables, and a `command=` that replaces the entry).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};

use super::tools::openssh;

/// How the client's `ssh` reaches the server side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A local stand-in for ssh: fast, no network.
    Shim,
    /// The real OpenSSH client and server on 127.0.0.1.
    Sshd,
}

/// The host name test remotes use (`annexgate-test:/path` or `ssh://annexgate-test/path`).
/// Both transports accept any host name and treat it as this machine.
pub const SSH_HOST: &str = "annexgate-test";

/// Quotes a value for an authorized_keys option (`"..."`, with `"` written `\"`).
pub fn key_option_quote(s: &str) -> String {
    assert!(!s.contains('\n'), "no newline in an authorized_keys option");
    format!("\"{}\"", s.replace('"', "\\\""))
}

/// Quotes a string for a POSIX shell: `'...'`, with `'` written as `'\''`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Writes an executable script.
pub fn write_script(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Files one test environment's ssh set-up lives in (all inside `dir`).
pub struct SshFiles {
    pub dir: PathBuf,
}

impl SshFiles {
    /// The far side of a login: see the module docs.
    pub fn entry(&self) -> PathBuf {
        self.dir.join("remote-entry")
    }
    /// One line per client `ssh` run: its argv, words separated by 0x1f.
    pub fn argv_log(&self) -> PathBuf {
        self.dir.join("argv.log")
    }
    /// One line per command run on the server side.
    pub fn remote_log(&self) -> PathBuf {
        self.dir.join("remote.log")
    }
    /// Shell `export` lines sourced by the remote entry.
    pub fn server_env(&self) -> PathBuf {
        self.dir.join("server.env")
    }
    /// When present: a byte count after which a P2P session's input is cut.
    pub fn cut_after(&self) -> PathBuf {
        self.dir.join("cut-after")
    }
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }
    pub fn client_config(&self) -> PathBuf {
        self.dir.join("config")
    }
    /// The real ssh client's connection-sharing socket (one master per test environment).
    pub fn mux_socket(&self) -> PathBuf {
        self.dir.join("mux")
    }
}

/// Ends the test environment's shared ssh connection, if one was made.
pub fn stop_ssh_master(files: &SshFiles) {
    if !files.mux_socket().exists() {
        return;
    }
    let _ = Command::new(openssh("ssh"))
        .arg("-F")
        .arg(files.client_config())
        .args(["-O", "exit", SSH_HOST])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The settings a login on the server side gets.
pub struct RemoteLogin<'a> {
    pub home: &'a Path,
    pub path: &'a str,
    pub magic: Option<&'a Path>,
    pub user: &'a str,
    /// The program run as `SHELL -c COMMAND` at the end, as sshd starts the account's
    /// login shell; `sh` when `None`.
    pub shell: Option<&'a Path>,
}

/// The remote entry script (see the module docs).
pub fn entry_script(files: &SshFiles, login: &RemoteLogin<'_>) -> String {
    let q = |p: &Path| sh_quote(&p.to_string_lossy());
    let entry = q(&files.entry());
    let mut s = String::new();
    s.push_str("#!/bin/sh\n");
    s.push_str("# The server side of one ssh login in an annexgate test (generated).\n");
    s.push_str("# Stage 1: restart with nothing but the client's command and GIT_PROTOCOL.\n");
    s.push_str("if [ \"$ANNEXGATE_ENTRY_STAGE\" != 2 ]; then\n");
    s.push_str(&format!(
        "  exec env -i ANNEXGATE_ENTRY_STAGE=2 \"SSH_ORIGINAL_COMMAND=$SSH_ORIGINAL_COMMAND\" \
         ${{GIT_PROTOCOL:+\"GIT_PROTOCOL=$GIT_PROTOCOL\"}} {entry}\n"
    ));
    s.push_str("fi\n");
    s.push_str("unset ANNEXGATE_ENTRY_STAGE\n");
    s.push_str("cmd=$SSH_ORIGINAL_COMMAND\nunset SSH_ORIGINAL_COMMAND\n");
    s.push_str(&format!(
        "export HOME={} PATH={} USER={user} LOGNAME={user} GIT_CONFIG_NOSYSTEM=1 LANG=C.UTF-8\n",
        q(login.home),
        sh_quote(login.path),
        user = sh_quote(login.user),
    ));
    if let Some(m) = login.magic {
        s.push_str(&format!("export MAGIC={}\n", q(m)));
    }
    // Log settings of the test run reach our programs on the server side too.
    for var in ["ANNEXGATE_LOG", "RUST_BACKTRACE"] {
        if let Ok(v) = std::env::var(var) {
            s.push_str(&format!("export {var}={}\n", sh_quote(&v)));
        }
    }
    let env_file = q(&files.server_env());
    s.push_str(&format!("if [ -f {env_file} ]; then . {env_file}; fi\n"));
    s.push_str(&format!(
        "printf '%s\\n' \"$cmd\" >> {}\n",
        q(&files.remote_log())
    ));
    s.push_str("cd \"$HOME\" || exit 255\n");
    let shell = login.shell.map(q).unwrap_or_else(|| "sh".to_string());
    let cut = q(&files.cut_after());
    s.push_str(&format!("if [ -f {cut} ]; then\n  case $cmd in\n"));
    s.push_str(&format!(
        "    *p2pstdio*) n=$(cat {cut})\n      \
         {} \"$n\" | {shell} -c \"$cmd\"\n      \
         exit $? ;;\n",
        PASS_FIRST_BYTES
    ));
    s.push_str("  esac\nfi\n");
    s.push_str(&format!("exec {shell} -c \"$cmd\"\n"));
    s
}

/// A shell command that copies the first N bytes (its argument) of its input to its output
/// as they arrive, then ends both: a connection cut after N bytes. (`dd count_bytes`
/// counts short reads as blocks, and `head -c` holds its output back until it is done, so
/// neither cuts an interactive stream at the right byte.) perl is part of every Debian.
pub const PASS_FIRST_BYTES: &str = "perl -e 'my $n = shift; while ($n > 0) { my $r = \
     sysread(STDIN, my $b, $n < 65536 ? $n : 65536); last unless $r; \
     syswrite(STDOUT, $b) or last; $n -= $r }'";

/// Shell lines that append the script's argv to the argv log as one line.
fn argv_logger(files: &SshFiles) -> String {
    format!(
        "line=$(printf '%s\\037' \"$@\")\nprintf '%s\\n' \"$line\" >> {}\n",
        sh_quote(&files.argv_log().to_string_lossy())
    )
}

/// The `ssh` stand-in for [`Transport::Shim`].
pub fn shim_script(files: &SshFiles) -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         # A stand-in for ssh in an annexgate test (generated): parses OpenSSH's argv and runs\n\
         # the command on this machine through the test's remote entry.\n",
    );
    s.push_str(&argv_logger(files));
    s.push_str(
        r#"host= gflag= nflag= ctl=
while [ $# -gt 0 ]; do
  case $1 in
    --) shift
        if [ -z "$host" ] && [ $# -gt 0 ]; then host=$1; shift; fi
        break ;;
    -G) gflag=1; shift ;;
    -n) nflag=1; shift ;;
    -V) echo "OpenSSH_annexgate_test_shim" >&2; exit 0 ;;
    -O) ctl=$2; shift 2 ;;
    -[46AaCfgKkMNqsTtvXxYy]) shift ;;
    -[BbcDEeFIiJLlmopQRSWw])
        if [ $# -lt 2 ]; then echo "ssh shim: option $1 needs a value" >&2; exit 255; fi
        shift 2 ;;
    -[BbcDEeFIiJLlmopQRSWw]?*) shift ;;
    -[46AaCfGgKkMNnqsTtvXxYy]*)
        case $1 in *G*) gflag=1 ;; esac
        case $1 in *n*) nflag=1 ;; esac
        shift ;;
    -*) echo "ssh shim: unsupported option $1" >&2; exit 255 ;;
    *) if [ -z "$host" ]; then host=$1; shift; else break; fi ;;
  esac
done
if [ -z "$host" ]; then echo "ssh shim: no host given" >&2; exit 255; fi
if [ -n "$gflag" ]; then
  printf 'host %s\nhostname %s\nport 22\n' "$host" "$host"
  exit 0
fi
if [ -n "$ctl" ]; then echo "ssh shim: no control master (-O $ctl)" >&2; exit 255; fi
if [ $# -eq 0 ]; then echo "ssh shim: no remote command (no interactive logins)" >&2; exit 255; fi
if [ -n "$nflag" ]; then exec </dev/null; fi
SSH_ORIGINAL_COMMAND="$*"
export SSH_ORIGINAL_COMMAND
"#,
    );
    s.push_str(&format!(
        "exec {}\n",
        sh_quote(&files.entry().to_string_lossy())
    ));
    s
}

/// The `ssh` wrapper for [`Transport::Sshd`]: the real client with the test's config.
pub fn real_ssh_wrapper(files: &SshFiles) -> String {
    let mut s = String::from(
        "#!/bin/sh\n# The real ssh with an annexgate test's private config (generated).\n",
    );
    s.push_str(&argv_logger(files));
    s.push_str(&format!(
        "exec {} -F {} \"$@\"\n",
        sh_quote(&openssh("ssh").to_string_lossy()),
        sh_quote(&files.client_config().to_string_lossy())
    ));
    s
}

/// Makes the client key and config for one test environment and authorises the key on the
/// shared sshd: with the environment's remote entry as its forced command, or with
/// `key_options` (an authorized_keys options field, e.g. `environment="A=b",command="..."`).
pub fn setup_sshd_client(files: &SshFiles, key_options: Option<&str>) {
    let server = SshServer::shared();
    keygen(&files.client_key());
    let pubkey = fs::read_to_string(files.client_key().with_extension("pub"))
        .expect("ssh-keygen wrote the public key");
    match key_options {
        None => server.authorize(&files.entry(), pubkey.trim()),
        Some(options) => server.authorize_with_options(options, pubkey.trim()),
    }
    let known = files.dir.join("known_hosts");
    let config = format!(
        "Host *\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  HostKeyAlias {alias}\n  \
         IdentityFile {key}\n  IdentitiesOnly yes\n  IdentityAgent none\n  \
         StrictHostKeyChecking no\n  UserKnownHostsFile {known}\n  \
         GlobalKnownHostsFile /dev/null\n  BatchMode yes\n  LogLevel ERROR\n  \
         ControlMaster auto\n  ControlPath {mux}\n  ControlPersist 60\n  ConnectTimeout 30\n",
        port = server.port,
        user = server.user,
        alias = SSH_HOST,
        key = files.client_key().display(),
        known = known.display(),
        mux = files.mux_socket().display(),
    );
    fs::write(files.client_config(), config).expect("writing the ssh client config");
}

fn keygen(path: &Path) {
    let out = Command::new(openssh("ssh-keygen"))
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "annexgate-test",
            "-f",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("running ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn current_user() -> String {
    let out = Command::new("id")
        .arg("-un")
        .output()
        .expect("running id -un");
    let user = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!user.is_empty(), "id -un printed no user name");
    user
}

/// A real OpenSSH server on 127.0.0.1 with its own host key, config and authorized_keys.
///
/// Logins are by key only, and every key has a forced command (the test's remote entry), so a
/// login can only ever run a test's own entry script. The server lives in a temp dir and is
/// stopped on drop; [`SshServer::shared`] gives the one the whole test run uses.
pub struct SshServer {
    pub port: u16,
    /// The account tests log in as: the one running the tests.
    pub user: String,
    pub dir: PathBuf,
    authorized_keys: Mutex<fs::File>,
    child: Option<Child>,
    /// Removes `dir` on drop (None for the shared server, cleaned up at exit).
    _tempdir: Option<tempfile::TempDir>,
}

static SHARED_PID_AND_DIR: OnceLock<(i32, PathBuf)> = OnceLock::new();

extern "C" fn stop_shared_sshd() {
    if let Some((pid, dir)) = SHARED_PID_AND_DIR.get() {
        // SAFETY: kill(2) on the pid of the sshd this process started.
        unsafe {
            libc::kill(*pid, libc::SIGTERM);
        }
        let _ = fs::remove_dir_all(dir);
    }
}

impl SshServer {
    /// The sshd shared by every test of this run, started on first use. It is started from a
    /// thread that never ends, with a parent-death signal, so it dies with the test binary even
    /// if the binary is killed; a normal exit stops it and removes its directory.
    pub fn shared() -> &'static SshServer {
        static SHARED: OnceLock<SshServer> = OnceLock::new();
        SHARED.get_or_init(|| {
            let (tx, rx) = mpsc::channel();
            std::thread::Builder::new()
                .name("sshd-parent".into())
                .spawn(move || {
                    let mut server = SshServer::start();
                    // Keep the directory past the TempDir: removed by the exit hook.
                    if let Some(t) = server._tempdir.take() {
                        let _ = t.keep();
                    }
                    let _ = tx.send(server);
                    loop {
                        std::thread::park();
                    }
                })
                .expect("spawning the sshd parent thread");
            let server = rx
                .recv()
                .expect("the shared sshd failed to start (see the panic above)");
            let pid = server.child.as_ref().map(|c| c.id() as i32).unwrap_or(0);
            if SHARED_PID_AND_DIR.set((pid, server.dir.clone())).is_ok() {
                // SAFETY: registers a plain extern "C" function with no captured state.
                unsafe {
                    libc::atexit(stop_shared_sshd);
                }
            }
            server
        })
    }

    /// Starts a private sshd (stopped when dropped). Panics with sshd's own words on failure.
    pub fn start() -> SshServer {
        let sshd = openssh("sshd");
        let tempdir = tempfile::Builder::new()
            .prefix("annexgate-sshd-")
            .tempdir()
            .expect("creating the sshd directory");
        let dir = tempdir.path().to_path_buf();
        let host_key = dir.join("host_ed25519");
        keygen(&host_key);
        let keys_path = dir.join("authorized_keys");
        let keys = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&keys_path)
            .expect("creating authorized_keys");
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // sshd's privilege separation directory; a container may not have it.
            let _ = fs::create_dir_all("/run/sshd");
        }
        let user = current_user();
        let mut last_error = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let config = dir.join("sshd_config");
            fs::write(&config, sshd_config(&dir, port, &host_key, &keys_path))
                .expect("writing sshd_config");
            let mut cmd = Command::new(&sshd);
            cmd.arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", sshd.display()));
            let mut stderr = BufReader::new(child.stderr.take().expect("stderr is piped"));
            let ready = format!("Server listening on 127.0.0.1 port {port}");
            let mut seen = String::new();
            let mut line = String::new();
            let listening = loop {
                line.clear();
                match stderr.read_line(&mut line) {
                    Ok(0) | Err(_) => break false,
                    Ok(_) => {
                        seen.push_str(&line);
                        if line.contains(&ready) {
                            break true;
                        }
                    }
                }
            };
            if listening {
                let log_path = dir.join("sshd.log");
                std::thread::spawn(move || {
                    if let Ok(mut log) = fs::File::create(log_path) {
                        let _ = log.write_all(seen.as_bytes());
                        let _ = std::io::copy(&mut stderr, &mut log);
                    }
                });
                return SshServer {
                    port,
                    user,
                    dir,
                    authorized_keys: Mutex::new(keys),
                    child: Some(child),
                    _tempdir: Some(tempdir),
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_error = seen;
            if !last_error.contains("Address already in use") {
                break;
            }
        }
        panic!(
            "sshd ({}) did not start listening on 127.0.0.1; it said:\n{last_error}\n\
             (scripts/setup installs openssh-server)",
            sshd.display()
        );
    }

    /// Lets `pubkey` log in; the login runs `entry` whatever command the client asked for
    /// (that command is in SSH_ORIGINAL_COMMAND).
    pub fn authorize(&self, entry: &Path, pubkey: &str) {
        let entry = entry.to_string_lossy();
        assert!(
            !entry.contains('"') && !pubkey.contains('\n'),
            "unusable authorized key or entry path"
        );
        let line = format!("command=\"{entry}\",restrict {pubkey}\n");
        let mut f = self
            .authorized_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // One write per line, so sshd never sees half of someone else's key.
        f.write_all(line.as_bytes())
            .and_then(|()| f.flush())
            .expect("appending to authorized_keys");
    }

    /// Lets `pubkey` log in with an authorized_keys options field of the test's own (which
    /// must force a command: no test may get a plain login). `restrict` is added.
    pub fn authorize_with_options(&self, options: &str, pubkey: &str) {
        assert!(
            options.contains("command=\"") && !options.contains('\n') && !pubkey.contains('\n'),
            "authorized_keys options must force a command: {options}"
        );
        let line = format!("{options},restrict {pubkey}\n");
        let mut f = self
            .authorized_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f.write_all(line.as_bytes())
            .and_then(|()| f.flush())
            .expect("appending to authorized_keys");
    }

    /// sshd's log so far (connections, authentication failures), for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid; SIGTERM lets sshd remove its pid file.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    l.local_addr().expect("the bound address").port()
}

fn sshd_config(dir: &Path, port: u16, host_key: &Path, keys: &Path) -> String {
    format!(
        "# sshd for the annexgate tests (generated): loopback only, keys with forced commands.\n\
         ListenAddress 127.0.0.1:{port}\n\
         HostKey {host_key}\n\
         PidFile {pid}\n\
         AuthorizedKeysFile {keys}\n\
         AuthorizedPrincipalsFile none\n\
         StrictModes no\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         HostbasedAuthentication no\n\
         PermitRootLogin forced-commands-only\n\
         UsePAM no\n\
         AcceptEnv GIT_PROTOCOL\n\
         PermitUserEnvironment HOME,PATH,LANG,GIT_CONFIG_NOSYSTEM,ANNEXGATE_LOG,RUST_BACKTRACE,GIT_ANNEX_SHELL_*\n\
         AllowTcpForwarding no\n\
         AllowAgentForwarding no\n\
         X11Forwarding no\n\
         PermitTTY no\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         UseDNS no\n\
         MaxStartups 200\n\
         MaxSessions 50\n\
         LoginGraceTime 60\n\
         LogLevel INFO\n",
        host_key = host_key.display(),
        pid = dir.join("sshd.pid").display(),
        keys = keys.display(),
    )
}
