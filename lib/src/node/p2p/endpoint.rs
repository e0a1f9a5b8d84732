//! Where a P2P node's connections go, and how git-annex would start them.
//!
//! git-annex reaches a git remote's repository through `git-annex-shell p2pstdio`:
//!
//! * a local path remote: `git-annex-shell p2pstdio <absolute path> <MYUUID>` run directly
//!   (no `--uuid`; `remote.<r>.annex-shell` is not consulted);
//! * an ssh remote (`ssh://[user@]host[:port]/path`, `git+ssh://`, `ssh+git://`, or
//!   scp-style `[user@]host:path`): `ssh HOST [ssh-options] [-p PORT] -T COMMAND` where
//!   COMMAND is one string for the remote shell:
//!   `<annex-shell> 'p2pstdio' '<path>' '<MYUUID>' --uuid <THEIRUUID>` — the program name
//!   as configured (unquoted), each parameter in single quotes, `--uuid` and the UUID bare.
//!   The path is the URL's path, percent-decoded; scp-style paths that are relative or
//!   start with `~` become `/~/path` or `/~user/path` (git-annex-shell expands them on the
//!   far side).
//!
//! Settings read as git-annex reads them: `remote.<r>.annex-shell` (else `annex.shell`,
//! else `git-annex-shell`), `remote.<r>.annex-ssh-options` (else `annex.ssh-options`, split
//! on whitespace). `GIT_SSH_COMMAND` / `GIT_SSH` replace ssh only when
//! `GIT_ANNEX_USE_GIT_SSH=1`; they then get git's parameters
//! (`HOST [-p PORT] COMMAND`), and a `GIT_SSH_COMMAND` containing whitespace runs through
//! `sh -c` with those parameters quoted. git-annex's ssh connection caching
//! (`annex.sshcaching`, control sockets under `.git/annex/ssh/`) is not reproduced: a
//! node keeps its connections open and reuses them instead; a control socket can be asked
//! for explicitly ([`SshSettings::control_socket`]) or through the ssh options.

use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::wire::P2pDialer;
use crate::types::Uuid;

/// Why a remote's location or settings give no P2P endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("remote {remote} has no url (remote.{remote}.url)")]
    NoUrl { remote: String },
    #[error("bad ssh url {url:?}: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("rejecting ssh hostname that starts with '-': {host}")]
    DashHost { host: String },
    #[error("remote {remote} ({url}) is not reached through git-annex-shell")]
    NotShell { remote: String, url: String },
}

/// A process to run; its stdin and stdout carry the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProcessSpec {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// Variables set for the child (after `env_clear`, if set).
    pub env: Vec<(OsString, OsString)>,
    pub env_remove: Vec<OsString>,
    /// Start from an empty environment.
    pub env_clear: bool,
    pub current_dir: Option<PathBuf>,
    /// The process is an ssh client (its exit status 255 means the host was not reached).
    pub ssh: bool,
}

impl ProcessSpec {
    pub fn new(program: impl Into<OsString>, args: Vec<OsString>) -> ProcessSpec {
        ProcessSpec {
            program: program.into(),
            args,
            env: Vec::new(),
            env_remove: Vec::new(),
            env_clear: false,
            current_dir: None,
            ssh: false,
        }
    }
}

/// How connections are made.
#[derive(Clone)]
pub enum Transport {
    Process(ProcessSpec),
    Dial(Arc<dyn P2pDialer>),
}

/// How to open a connection to a P2P server. Two endpoints are equal when they would
/// start the same process (or use the same dialer), so they can key a connection pool.
#[derive(Clone)]
pub struct P2pEndpoint {
    /// Describes the endpoint in messages (a command line or URL).
    pub label: String,
    pub transport: Transport,
}

impl std::fmt::Debug for P2pEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "P2pEndpoint({})", self.label)
    }
}

impl PartialEq for P2pEndpoint {
    fn eq(&self, other: &Self) -> bool {
        match (&self.transport, &other.transport) {
            (Transport::Process(a), Transport::Process(b)) => a == b,
            (Transport::Dial(a), Transport::Dial(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}
impl Eq for P2pEndpoint {}

impl Hash for P2pEndpoint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match &self.transport {
            Transport::Process(p) => p.hash(state),
            Transport::Dial(d) => (Arc::as_ptr(d) as *const () as usize).hash(state),
        }
    }
}

/// Settings of an ssh remote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshSettings {
    /// The program run on the far side (`annex-shell`); default `git-annex-shell`.
    pub shell: Option<String>,
    /// Extra ssh options (`annex-ssh-options`).
    pub ssh_options: Vec<String>,
    /// `GIT_SSH_COMMAND` / `GIT_SSH`, when `GIT_ANNEX_USE_GIT_SSH=1` lets git-annex use them.
    pub git_ssh: Option<GitSsh>,
    /// Share one ssh connection through this control socket
    /// (`-S <path> -o ControlMaster=auto -o ControlPersist=yes`).
    pub control_socket: Option<PathBuf>,
    /// The ssh program when `git_ssh` is not set; default `ssh` from PATH.
    pub ssh_program: Option<OsString>,
}

/// A user-chosen ssh command, used as git uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitSsh {
    /// `GIT_SSH_COMMAND`: a shell command when it contains whitespace, else a program.
    Command(String),
    /// `GIT_SSH`: a program.
    Program(String),
}

impl SshSettings {
    /// The settings git-annex would use for remote `remote`: `config` answers git config
    /// names (`remote.<r>.annex-shell`, ...), `env` environment variables.
    pub fn from_config(
        remote: &str,
        config: &dyn Fn(&str) -> Option<String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> SshSettings {
        let get = |field: &str| {
            config(&format!("remote.{remote}.annex-{field}"))
                .or_else(|| config(&format!("annex.{field}")))
        };
        let git_ssh = if env("GIT_ANNEX_USE_GIT_SSH").as_deref() == Some("1") {
            env("GIT_SSH_COMMAND")
                .map(GitSsh::Command)
                .or_else(|| env("GIT_SSH").map(GitSsh::Program))
        } else {
            None
        };
        SshSettings {
            shell: get("shell"),
            ssh_options: get("ssh-options")
                .map(|s| s.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
            git_ssh,
            control_socket: None,
            ssh_program: None,
        }
    }
}

/// An ssh remote's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// `host` or `user@host`, as ssh gets it.
    pub host: String,
    pub port: Option<u16>,
    /// The repository path as git-annex-shell gets it (`/~/...` for home-relative).
    pub path: String,
}

/// What a remote's url names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteLocation {
    Ssh(SshTarget),
    /// A local path (relative paths are relative to the repository's top).
    Path(String),
    /// Some other URL (http, annex+http, a git remote helper, ...).
    Other(String),
}

/// git-annex's shell quoting: always single quotes, a `'` written as `'"'"'`.
pub fn shell_escape(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Characters that may appear unescaped in a URI (RFC 3986 reserved and unreserved).
fn uri_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c)
}

fn has_scheme(s: &str) -> bool {
    match s.find(':') {
        Some(i) if i > 0 => {
            let scheme = &s[..i];
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        _ => false,
    }
}

impl RemoteLocation {
    /// Classify a remote url the way git-annex does: scp-style `host:path` first (a `:`,
    /// no `//`, no `::` before any `[`), then URLs, else a path.
    pub fn parse(url: &str) -> Result<RemoteLocation, EndpointError> {
        let before_bracket = url.split('[').next().unwrap_or("");
        if url.contains(':') && !url.contains("//") && !before_bracket.contains("::") {
            return scp_style(url).map(RemoteLocation::Ssh);
        }
        if has_scheme(url) {
            let scheme = &url[..url.find(':').unwrap_or(0)];
            return match scheme.to_ascii_lowercase().as_str() {
                "ssh" | "git+ssh" | "ssh+git" => ssh_url(url).map(RemoteLocation::Ssh),
                "file" => Ok(RemoteLocation::Path(percent_decode(
                    url.strip_prefix("file://").unwrap_or(&url[5..]),
                ))),
                _ => Ok(RemoteLocation::Other(url.to_string())),
            };
        }
        Ok(RemoteLocation::Path(url.to_string()))
    }
}

fn check_host(host: &str, url: &str) -> Result<(), EndpointError> {
    if host.is_empty() {
        return Err(EndpointError::BadUrl {
            url: url.to_string(),
            reason: "no host",
        });
    }
    if host.starts_with('-') {
        return Err(EndpointError::DashHost {
            host: host.to_string(),
        });
    }
    Ok(())
}

/// `[user@]host:dir` (an IPv6 host in brackets).
fn scp_style(url: &str) -> Result<SshTarget, EndpointError> {
    let (host, dir) = if url.starts_with('[') {
        match url.find(']') {
            Some(i) => {
                let rest = &url[i + 1..];
                (&url[..=i], rest.strip_prefix(':').unwrap_or(rest))
            }
            None => (url, ""),
        }
    } else {
        match url.split_once(':') {
            Some((h, d)) => (h, d),
            None => (url, ""),
        }
    };
    check_host(host, url)?;
    let path = if dir.is_empty() {
        "/~/".to_string()
    } else if dir.starts_with('/') {
        dir.to_string()
    } else if dir.starts_with('~') {
        format!("/{dir}")
    } else {
        format!("/~/{dir}")
    };
    Ok(SshTarget {
        host: host.to_string(),
        port: None,
        path,
    })
}

/// `ssh://[user@]host[:port]/path` (and the `git+ssh`, `ssh+git` spellings).
fn ssh_url(url: &str) -> Result<SshTarget, EndpointError> {
    let bad = |reason| EndpointError::BadUrl {
        url: url.to_string(),
        reason,
    };
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or_else(|| bad("no // after the scheme"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (&authority[..=i], &authority[i + 1..]),
        None => ("", authority),
    };
    // A port follows the last ':' outside an IPv6 literal.
    let (host, port) = match hostport.rfind(':') {
        Some(i) if !hostport[i..].contains(']') => (&hostport[..i], Some(&hostport[i + 1..])),
        _ => (hostport, None),
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(p.parse::<u16>().map_err(|_| bad("bad port"))?),
    };
    let host = format!("{}{host}", percent_decode(userinfo));
    check_host(&host, url)?;
    // git-annex decodes the path unless the url only parsed after escaping (it held
    // characters no URI may contain), in which case the decoding undoes the escaping.
    let path = if url.chars().all(uri_char) {
        percent_decode(path)
    } else {
        path.to_string()
    };
    if path.is_empty() {
        return Err(bad("no path"));
    }
    Ok(SshTarget { host, port, path })
}

impl P2pEndpoint {
    /// Run `program` with `args`.
    pub fn command(program: impl Into<OsString>, args: Vec<OsString>) -> P2pEndpoint {
        let spec = ProcessSpec::new(program, args);
        P2pEndpoint {
            label: describe(&spec),
            transport: Transport::Process(spec),
        }
    }

    /// Connections made by `dialer`.
    pub fn dial(label: impl Into<String>, dialer: Arc<dyn P2pDialer>) -> P2pEndpoint {
        P2pEndpoint {
            label: label.into(),
            transport: Transport::Dial(dialer),
        }
    }

    /// A local repository: `<shell> p2pstdio <dir> <my_uuid>` (git-annex runs
    /// `git-annex-shell`; annexgate may run its own shell).
    pub fn local(shell: impl Into<OsString>, dir: &Path, my_uuid: &Uuid) -> P2pEndpoint {
        P2pEndpoint::command(
            shell,
            vec![
                "p2pstdio".into(),
                dir.as_os_str().to_owned(),
                my_uuid.as_str().into(),
            ],
        )
    }

    /// A repository behind ssh, as git-annex reaches it.
    pub fn ssh(
        target: &SshTarget,
        my_uuid: &Uuid,
        their_uuid: &Uuid,
        settings: &SshSettings,
    ) -> P2pEndpoint {
        let shell = settings.shell.as_deref().unwrap_or("git-annex-shell");
        let remote_cmd = [
            shell.to_string(),
            shell_escape("p2pstdio"),
            shell_escape(&target.path),
            shell_escape(my_uuid.as_str()),
            "--uuid".to_string(),
            their_uuid.as_str().to_string(),
        ]
        .join(" ");
        let mut spec = match &settings.git_ssh {
            Some(g) => {
                // git's parameters to GIT_SSH: host, [-p port], command.
                let mut ps = vec![target.host.clone()];
                if let Some(p) = target.port {
                    ps.push("-p".into());
                    ps.push(p.to_string());
                }
                ps.push(remote_cmd);
                match g {
                    GitSsh::Command(c) if c.chars().any(char::is_whitespace) => {
                        let quoted: Vec<String> = ps.iter().map(|p| shell_escape(p)).collect();
                        ProcessSpec::new(
                            "sh",
                            vec!["-c".into(), format!("{c} {}", quoted.join(" ")).into()],
                        )
                    }
                    GitSsh::Command(c) | GitSsh::Program(c) => {
                        ProcessSpec::new(c, ps.into_iter().map(OsString::from).collect())
                    }
                }
            }
            None => {
                let mut args: Vec<OsString> = vec![target.host.clone().into()];
                if let Some(sock) = &settings.control_socket {
                    args.push("-S".into());
                    args.push(sock.as_os_str().to_owned());
                    for o in ["-o", "ControlMaster=auto", "-o", "ControlPersist=yes"] {
                        args.push(o.into());
                    }
                }
                args.extend(settings.ssh_options.iter().map(OsString::from));
                if let Some(p) = target.port {
                    args.push("-p".into());
                    args.push(p.to_string().into());
                }
                args.push("-T".into());
                args.push(remote_cmd.into());
                let program = settings
                    .ssh_program
                    .clone()
                    .unwrap_or_else(|| OsString::from("ssh"));
                ProcessSpec::new(program, args)
            }
        };
        spec.ssh = true;
        P2pEndpoint {
            label: describe(&spec),
            transport: Transport::Process(spec),
        }
    }

    /// The endpoint git-annex would use for git remote `remote`, whose UUID is
    /// `their_uuid`, talking as repository `my_uuid`. `repo_top` is the repository's top
    /// directory (relative path remotes are relative to it); `config` answers git config
    /// names, `env` environment variables (`HOME`, `GIT_SSH`, ...).
    pub fn for_git_remote(
        remote: &str,
        my_uuid: &Uuid,
        their_uuid: &Uuid,
        repo_top: &Path,
        config: &dyn Fn(&str) -> Option<String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<P2pEndpoint, EndpointError> {
        let url = config(&format!("remote.{remote}.url"))
            .filter(|u| !u.is_empty())
            .ok_or_else(|| EndpointError::NoUrl {
                remote: remote.to_string(),
            })?;
        match RemoteLocation::parse(&url)? {
            RemoteLocation::Ssh(target) => Ok(P2pEndpoint::ssh(
                &target,
                my_uuid,
                their_uuid,
                &SshSettings::from_config(remote, config, env),
            )),
            RemoteLocation::Path(p) => {
                let dir = expand_tilde(&p, env("HOME").as_deref());
                let dir = if dir.is_absolute() {
                    dir
                } else {
                    repo_top.join(dir)
                };
                Ok(P2pEndpoint::local("git-annex-shell", &dir, my_uuid))
            }
            RemoteLocation::Other(u) => Err(EndpointError::NotShell {
                remote: remote.to_string(),
                url: u,
            }),
        }
    }

    /// The process spec, when connections are processes.
    pub fn process_mut(&mut self) -> Option<&mut ProcessSpec> {
        match &mut self.transport {
            Transport::Process(p) => Some(p),
            Transport::Dial(_) => None,
        }
    }

    /// Set a variable in the child's environment.
    pub fn with_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        if let Some(p) = self.process_mut() {
            p.env.push((key.into(), value.into()));
        }
        self
    }
}

/// `~` and `~/x` with the given home (`~user` forms stay as they are).
fn expand_tilde(p: &str, home: Option<&str>) -> PathBuf {
    match (p.strip_prefix('~'), home) {
        (Some(""), Some(h)) => PathBuf::from(h),
        (Some(rest), Some(h)) if rest.starts_with('/') => {
            Path::new(h).join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(p),
    }
}

fn describe(spec: &ProcessSpec) -> String {
    let mut s = spec.program.to_string_lossy().into_owned();
    for a in &spec.args {
        s.push(' ');
        let a = a.to_string_lossy();
        if a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@".contains(c))
            && !a.is_empty()
        {
            s.push_str(&a);
        } else {
            s.push_str(&shell_escape(&a));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "11111111-1111-1111-1111-111111111111";
    const THEM: &str = "b9330ac3-c381-4ace-9009-98621a4aeba7";

    fn uuids() -> (Uuid, Uuid) {
        (Uuid::parse(ME).unwrap(), Uuid::parse(THEM).unwrap())
    }

    fn ssh(url: &str) -> SshTarget {
        match RemoteLocation::parse(url).unwrap() {
            RemoteLocation::Ssh(t) => t,
            other => panic!("{url}: {other:?}"),
        }
    }

    fn args(e: &P2pEndpoint) -> (String, Vec<String>) {
        match &e.transport {
            Transport::Process(p) => (
                p.program.to_string_lossy().into_owned(),
                p.args
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect(),
            ),
            Transport::Dial(_) => panic!("not a process"),
        }
    }

    #[test]
    fn locations_parse_as_git_annex_reads_them() {
        let t = |url: &str, host: &str, port: Option<u16>, path: &str| {
            assert_eq!(
                ssh(url),
                SshTarget {
                    host: host.into(),
                    port,
                    path: path.into()
                },
                "{url}"
            );
        };
        t("host:repo", "host", None, "/~/repo");
        t("host:", "host", None, "/~/");
        t("me@host:/srv/repo.git", "me@host", None, "/srv/repo.git");
        t("host:~/r", "host", None, "/~/r");
        t("host:~joe/r", "host", None, "/~joe/r");
        t("[::1]:r", "[::1]", None, "/~/r");
        t("ssh://host/~/r", "host", None, "/~/r");
        t(
            "ssh://me@host:2222/srv/a%20b",
            "me@host",
            Some(2222),
            "/srv/a b",
        );
        t("git+ssh://host/x", "host", None, "/x");
        t("ssh+git://h:/x", "h", None, "/x");
        t("ssh://[::1]:22/x", "[::1]", Some(22), "/x");
        t("ssh://host/with space%20", "host", None, "/with space%20");
        assert_eq!(
            RemoteLocation::parse("/srv/node1.git").unwrap(),
            RemoteLocation::Path("/srv/node1.git".into())
        );
        assert_eq!(
            RemoteLocation::parse("../n").unwrap(),
            RemoteLocation::Path("../n".into())
        );
        assert_eq!(
            RemoteLocation::parse("file:///srv/a%20b").unwrap(),
            RemoteLocation::Path("/srv/a b".into())
        );
        assert!(matches!(
            RemoteLocation::parse("annex+http://h/git-annex").unwrap(),
            RemoteLocation::Other(_)
        ));
        assert!(matches!(
            RemoteLocation::parse("-oProxyCommand=x:y"),
            Err(EndpointError::DashHost { .. })
        ));
        assert!(matches!(
            RemoteLocation::parse("ssh://h:99999/x"),
            Err(EndpointError::BadUrl { .. })
        ));
    }

    #[test]
    fn ssh_argv_is_git_annexs() {
        let (me, them) = uuids();
        let e = P2pEndpoint::ssh(
            &ssh("ssh://me@host:2222/~/it's"),
            &me,
            &them,
            &SshSettings {
                ssh_options: vec!["-oBatchMode=yes".into(), "-4".into()],
                ..SshSettings::default()
            },
        );
        let (prog, a) = args(&e);
        assert_eq!(prog, "ssh");
        assert_eq!(
            a,
            [
                "me@host",
                "-oBatchMode=yes",
                "-4",
                "-p",
                "2222",
                "-T",
                &format!("git-annex-shell 'p2pstdio' '/~/it'\"'\"'s' '{ME}' --uuid {THEM}"),
            ]
        );
    }

    #[test]
    fn config_and_environment_choose_the_command() {
        let (me, them) = uuids();
        let cfg = |k: &str| match k {
            "remote.n1.url" => Some("localhost:/t/node1.git".to_string()),
            "remote.n1.annex-shell" => Some("/opt/annexgate-shell".to_string()),
            "annex.ssh-options" => Some("-F  /cfg".to_string()),
            _ => None,
        };
        let env = |k: &str| match k {
            "GIT_ANNEX_USE_GIT_SSH" => Some("1".to_string()),
            "GIT_SSH_COMMAND" => Some("ssh -q".to_string()),
            _ => None,
        };
        let e =
            P2pEndpoint::for_git_remote("n1", &me, &them, Path::new("/gw"), &cfg, &env).unwrap();
        let (prog, a) = args(&e);
        assert_eq!(prog, "sh");
        assert_eq!(
            a[1],
            format!(
                "ssh -q 'localhost' '/opt/annexgate-shell '\"'\"'p2pstdio'\"'\"' \
                 '\"'\"'/t/node1.git'\"'\"' '\"'\"'{ME}'\"'\"' --uuid {THEM}'"
            )
        );
        // Without GIT_ANNEX_USE_GIT_SSH, GIT_SSH is ignored and ssh-options apply.
        let env2 = |k: &str| (k == "GIT_SSH").then(|| "/bin/myssh".to_string());
        let e =
            P2pEndpoint::for_git_remote("n1", &me, &them, Path::new("/gw"), &cfg, &env2).unwrap();
        let (prog, a) = args(&e);
        assert_eq!(prog, "ssh");
        assert_eq!(a[..4], ["localhost", "-F", "/cfg", "-T"]);
        // GIT_SSH: git's parameters, nothing else.
        let env3 = |k: &str| match k {
            "GIT_ANNEX_USE_GIT_SSH" => Some("1".to_string()),
            "GIT_SSH" => Some("/bin/myssh".to_string()),
            _ => None,
        };
        let cfg_port = |k: &str| match k {
            "remote.n1.url" => Some("ssh://h:2200/r".to_string()),
            _ => None,
        };
        let e = P2pEndpoint::for_git_remote("n1", &me, &them, Path::new("/gw"), &cfg_port, &env3)
            .unwrap();
        let (prog, a) = args(&e);
        assert_eq!(prog, "/bin/myssh");
        assert_eq!(
            a,
            [
                "h",
                "-p",
                "2200",
                &format!("git-annex-shell 'p2pstdio' '/r' '{ME}' --uuid {THEM}")
            ]
        );
        // A local path: git-annex-shell directly, no --uuid.
        let cfg_local = |k: &str| (k == "remote.n1.url").then(|| "../node1".to_string());
        let e =
            P2pEndpoint::for_git_remote("n1", &me, &them, Path::new("/gw"), &cfg_local, &|_| None)
                .unwrap();
        let (prog, a) = args(&e);
        assert_eq!(prog, "git-annex-shell");
        assert_eq!(a, ["p2pstdio", "/gw/../node1", ME]);
        assert!(matches!(
            P2pEndpoint::for_git_remote("n2", &me, &them, Path::new("/"), &cfg, &|_| None),
            Err(EndpointError::NoUrl { .. })
        ));
    }

    #[test]
    fn endpoints_compare_by_what_they_start() {
        let (me, them) = uuids();
        let a = P2pEndpoint::ssh(&ssh("h:r"), &me, &them, &SshSettings::default());
        let b = P2pEndpoint::ssh(&ssh("h:r"), &me, &them, &SshSettings::default());
        let c = P2pEndpoint::ssh(&ssh("h:s"), &me, &them, &SshSettings::default());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(
            a.label.starts_with("ssh h -T 'git-annex-shell "),
            "{}",
            a.label
        );
    }
}
