//! annexgate-shell: a drop-in for git-annex-shell.
//!
//! It parses the command lines git-annex sends ([`args`]), applies git-annex-shell's
//! environment restrictions (`GIT_ANNEX_SHELL_READONLY`, `_APPENDONLY`, `_LIMITED`,
//! `_DIRECTORY`), and runs the command: `configlist` prints the repository's UUID,
//! `p2pstdio` serves the P2P protocol on stdio for the repository (or, through the
//! [`crate::gateway`], a proxied node or a cluster), `inannex`/`dropkey` answer the legacy
//! gcrypt-era commands, and anything else is handed to `git-shell -c` as git-annex-shell
//! does, so `git-upload-pack`/`git-receive-pack` work when annexgate-shell is an ssh forced
//! command or login shell.
//!
//! Messages go to stderr prefixed `annexgate-shell:`; stdout carries only the protocol
//! (or configlist's two lines).

pub mod args;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use args::{Builtin, BuiltinCall, Invocation};

use crate::branch::recorder::Recorder;
use crate::branch::repo::GitRepo;
use crate::conn::{self, ServeOptions};
use crate::gateway::{Gateway, GatewayError, Target};
use crate::node::annexrepo::AnnexRepo;
use crate::node::{LocationSink, Node};
use crate::session::server::{ServerConfig, ServerMode};
use crate::types::{Key, Uuid};

/// Why a shell command failed; printed as `annexgate-shell: <message>`, exit status 1.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error(transparent)]
    Args(#[from] args::ArgsError),
    #[error("Action blocked by {0}")]
    Blocked(&'static str),
    #[error("Only allowed to access {allowed} not {requested}")]
    DirectoryNotAllowed { allowed: String, requested: String },
    #[error("Only allowed to access {0} and could not determine directory from command line")]
    DirectoryUnknown(String),
    #[error("failed to read git config of git repository on {dir}; perhaps this repository is not set up correctly or has moved ({detail})")]
    NotARepo { dir: String, detail: String },
    #[error("Not a git-annex or gcrypt repository.")]
    NotAnnex,
    #[error("missing UUID parameter")]
    MissingUuid,
    #[error("Cannot proxy {0} command.")]
    NotProxyable(&'static str),
    #[error("{0} is only used by git-remote-gcrypt remotes, which annexgate-shell does not serve; use git-annex-shell for those")]
    Gcrypt(&'static str),
    #[error("change notification is not available from annexgate-shell")]
    NotifyChanges,
    #[error("bad key: {0}")]
    BadKey(String),
    #[error("dropkey can cause data loss; use --force if you're sure you want to do this")]
    DropKeyNeedsForce,
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("{0}")]
    Node(#[from] crate::node::NodeError),
    #[error("git-annex init failed: {0}")]
    Init(String),
    #[error("git-shell failed")]
    GitShell,
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Session(String),
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(std::io::Error),
}

/// The environment git-annex-shell looks at, read once.
#[derive(Debug, Clone, Default)]
pub struct ShellEnv {
    pub readonly: bool,
    pub appendonly: bool,
    pub limited: bool,
    pub directory: Option<String>,
    pub home: Option<PathBuf>,
    /// `SSH_ORIGINAL_COMMAND`, for use as a forced command with no arguments.
    pub ssh_original_command: Option<String>,
}

impl ShellEnv {
    pub fn from_process() -> ShellEnv {
        let set = |v: &str| std::env::var_os(v).is_some_and(|x| !x.is_empty());
        ShellEnv {
            readonly: set("GIT_ANNEX_SHELL_READONLY"),
            appendonly: set("GIT_ANNEX_SHELL_APPENDONLY"),
            limited: set("GIT_ANNEX_SHELL_LIMITED"),
            directory: std::env::var("GIT_ANNEX_SHELL_DIRECTORY")
                .ok()
                .filter(|d| !d.is_empty()),
            home: std::env::var_os("HOME").map(PathBuf::from),
            ssh_original_command: std::env::var("SSH_ORIGINAL_COMMAND").ok(),
        }
    }

    fn mode(&self) -> ServerMode {
        if self.readonly {
            ServerMode::ReadOnly
        } else if self.appendonly {
            ServerMode::AppendOnly
        } else {
            ServerMode::ReadWrite
        }
    }
}

/// Run annexgate-shell with `argv` (program name excluded); returns the exit status.
pub fn main(argv: Vec<String>) -> i32 {
    crate::branch::repo::tune_for_serving();
    let env = ShellEnv::from_process();
    match run(argv, &env) {
        Ok(code) => code,
        Err(e) => {
            tracing::debug!("failed: {e:?}");
            eprintln!("annexgate-shell: {e}");
            1
        }
    }
}

/// Dispatch one invocation.
pub fn run(mut argv: Vec<String>, env: &ShellEnv) -> Result<i32, ShellError> {
    // As an ssh forced command without arguments, serve what the client asked for.
    if argv.is_empty() {
        if let Some(cmd) = &env.ssh_original_command {
            argv = vec!["-c".into(), cmd.clone()];
        }
    }
    match args::parse(&argv)? {
        Invocation::Builtin(cmd, call) => builtin(cmd, call, env),
        Invocation::External(words) => external(words, env),
    }
}

fn builtin(cmd: Builtin, call: BuiltinCall, env: &ShellEnv) -> Result<i32, ShellError> {
    if !cmd.read_only_ok() && env.readonly {
        return Err(ShellError::Blocked("GIT_ANNEX_SHELL_READONLY"));
    }
    if !cmd.append_only_ok() && env.appendonly {
        return Err(ShellError::Blocked("GIT_ANNEX_SHELL_APPENDONLY"));
    }
    check_directory(env, Some(&call.dir))?;
    if call.debug && std::env::var_os("ANNEXGATE_LOG").is_none() {
        tracing::debug!("--debug given");
    }
    let dir = repo_path(&call.dir, env.home.as_deref());
    match cmd {
        Builtin::ConfigList => configlist(&dir, &call, env),
        Builtin::P2pStdio => p2pstdio(&dir, &call, env),
        Builtin::InAnnex => inannex(&dir, &call),
        Builtin::DropKey => dropkey(&dir, &call),
        Builtin::NotifyChanges => {
            open_annex(&dir, &call, cmd)?;
            Err(ShellError::NotifyChanges)
        }
        Builtin::SendKey => Err(ShellError::Gcrypt("sendkey")),
        Builtin::RecvKey => Err(ShellError::Gcrypt("recvkey")),
        Builtin::GcryptSetup => Err(ShellError::Gcrypt("gcryptsetup")),
    }
}

/// `GIT_ANNEX_SHELL_DIRECTORY`: refuse any repository outside the allowed directory.
fn check_directory(env: &ShellEnv, dir: Option<&str>) -> Result<(), ShellError> {
    let Some(allowed) = &env.directory else {
        return Ok(());
    };
    let Some(dir) = dir else {
        return Err(ShellError::DirectoryUnknown(allowed.clone()));
    };
    if allowed == dir {
        return Ok(());
    }
    let home = env.home.as_deref();
    if canonical_dir(allowed, home) == canonical_dir(dir, home) {
        Ok(())
    } else {
        // Named as git-annex-shell names them: made absolute, and under the home
        // directory written `~/...`.
        Err(ShellError::DirectoryNotAllowed {
            allowed: home_relative(&normalise(&repo_path(allowed, home)), home),
            requested: home_relative(&normalise(&repo_path(dir, home)), home),
        })
    }
}

/// `p` for messages: `~/rest` when it is inside `home`, else as it is.
fn home_relative(p: &Path, home: Option<&Path>) -> String {
    let home = home.map(normalise);
    match home.as_deref().and_then(|h| p.strip_prefix(h).ok()) {
        Some(rest) if home.as_deref() != Some(Path::new("/")) => {
            format!("~/{}", rest.display())
        }
        _ => p.display().to_string(),
    }
}

/// A directory as given on a command line, made absolute and normalised (`~` expanded,
/// `.`/`..` resolved lexically, trailing slashes dropped), symlinks resolved when it exists.
fn canonical_dir(d: &str, home: Option<&Path>) -> PathBuf {
    let p = repo_path(d, home);
    let lexical = normalise(&p);
    std::fs::canonicalize(&lexical).unwrap_or(lexical)
}

fn normalise(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The repository path git-annex-shell would use: `~/`, `/~/` and `~user/` expanded, then
/// relative paths taken from the home directory.
pub fn repo_path(dir: &str, home: Option<&Path>) -> PathBuf {
    let home_dir = || {
        home.map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"))
    };
    let expanded: PathBuf = if let Some(rest) = dir.strip_prefix("/~/") {
        home_dir().join(rest)
    } else if dir == "/~" || dir == "~" {
        home_dir()
    } else if let Some(rest) = dir.strip_prefix("~/") {
        home_dir().join(rest)
    } else if let Some(user_rest) = dir.strip_prefix("/~").or_else(|| dir.strip_prefix('~')) {
        let (user, rest) = user_rest.split_once('/').unwrap_or((user_rest, ""));
        match user_home(user) {
            Some(h) => h.join(rest),
            None => PathBuf::from(dir),
        }
    } else {
        PathBuf::from(dir)
    };
    if expanded.is_absolute() {
        expanded
    } else {
        home_dir().join(expanded)
    }
}

fn user_home(user: &str) -> Option<PathBuf> {
    use std::ffi::{CStr, CString};
    let name = CString::new(user).ok()?;
    let mut buf = vec![0u8; 16384];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r writes into the buffers we own and sets result to &pwd or null.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_dir.is_null() {
        return None;
    }
    // SAFETY: pw_dir points into buf, NUL-terminated, valid while buf lives.
    let dir = unsafe { CStr::from_ptr(pwd.pw_dir) };
    Some(PathBuf::from(dir.to_string_lossy().into_owned()))
}

/// Open the git repository at `dir` as git-annex does (also `dir.git` when `dir` does not
/// exist).
fn open_repo(dir: &Path) -> Result<GitRepo, ShellError> {
    match GitRepo::open(dir) {
        Ok(r) => Ok(r),
        Err(e) => {
            let s = dir.as_os_str().to_string_lossy();
            if !dir.exists() && !s.ends_with('/') {
                let mut alt = OsString::from(dir.as_os_str());
                alt.push(".git");
                if let Ok(r) = GitRepo::open(PathBuf::from(alt)) {
                    return Ok(r);
                }
            }
            Err(ShellError::NotARepo {
                dir: dir.display().to_string(),
                detail: e.to_string(),
            })
        }
    }
}

/// Open a git-annex repository as a gateway, checking `--uuid` the way git-annex-shell
/// does; commands other than p2pstdio refuse a proxied target.
fn open_annex(
    dir: &Path,
    call: &BuiltinCall,
    cmd: Builtin,
) -> Result<(Gateway, Target), ShellError> {
    let repo = open_repo(dir)?;
    expect_initialised(&repo, call)?;
    let gw = Gateway::open(repo)?;
    let target = gw.resolve(call.uuid.as_deref())?;
    if !matches!(target, Target::Local) && !cmd.proxyable() {
        return Err(ShellError::NotProxyable(cmd.name()));
    }
    Ok((gw, target))
}

/// git-annex-shell checks `--uuid` before anything else: a repository without a UUID
/// cannot be the one the client expects (and is not initialised on the way).
fn expect_initialised(repo: &GitRepo, call: &BuiltinCall) -> Result<(), ShellError> {
    let Some(expected) = call.uuid.as_deref() else {
        return Ok(());
    };
    let initialised = repo.config().ok().and_then(|c| c.annex_uuid()).is_some();
    if initialised {
        Ok(())
    } else {
        Err(ShellError::Gateway(GatewayError::Uninitialised {
            expected: expected.to_string(),
        }))
    }
}

fn configlist(dir: &Path, call: &BuiltinCall, env: &ShellEnv) -> Result<i32, ShellError> {
    let repo = open_repo(dir)?;
    expect_initialised(&repo, call)?;
    let cfg = repo.config().map_err(|e| ShellError::NotARepo {
        dir: dir.display().to_string(),
        detail: e.to_string(),
    })?;
    let mut uuid = cfg.annex_uuid();
    if uuid.is_none() {
        // git-annex initialises on first contact when a git-annex branch was pushed, or
        // when the client asks with autoinit=1.
        let has_branch = repo.branch_tip().is_ok() || has_sibling_branch(&repo);
        if has_branch || call.field("autoinit").is_some() {
            if env.readonly {
                return Err(ShellError::Blocked("GIT_ANNEX_SHELL_READONLY"));
            }
            if let Some(u) = autoinit(&repo)? {
                uuid = Some(u);
            }
        }
    }
    if let (Some(expected), Some(u)) = (call.uuid.as_deref(), uuid.as_ref()) {
        if expected != u.as_str() {
            // Only p2pstdio may proxy; configlist names its own repository or fails.
            let gw = Gateway::open(repo)?;
            if gw.resolve(Some(expected))? != Target::Local {
                return Err(ShellError::NotProxyable("configlist"));
            }
        }
    }
    let gcrypt = cfg.get("core.gcrypt-id").unwrap_or_default();
    let out = format!(
        "annex.uuid={}\ncore.gcrypt-id={}\n",
        uuid.as_ref().map(Uuid::as_str).unwrap_or(""),
        gcrypt
    );
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    Ok(0)
}

fn has_sibling_branch(repo: &GitRepo) -> bool {
    repo.view()
        .map(|v| !v.unmerged_siblings().is_empty())
        .unwrap_or(false)
}

/// Initialise the repository with git-annex itself (`git annex init`), which must then be
/// on PATH; without it the repository stays uninitialised and configlist prints no UUID.
fn autoinit(repo: &GitRepo) -> Result<Option<Uuid>, ShellError> {
    let dir = repo
        .work_tree()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo.git_dir().to_path_buf());
    let out = std::process::Command::new("git")
        .arg("annex")
        .arg("init")
        .current_dir(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let repo = GitRepo::open(&dir).map_err(|e| ShellError::Init(e.to_string()))?;
            Ok(repo.config().ok().and_then(|c| c.annex_uuid()))
        }
        Ok(o) => {
            tracing::warn!(
                "git annex init in {} failed: {}",
                dir.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            );
            Ok(None)
        }
        Err(e) => {
            tracing::warn!("cannot run git annex init: {e}");
            Ok(None)
        }
    }
}

fn p2pstdio(dir: &Path, call: &BuiltinCall, env: &ShellEnv) -> Result<i32, ShellError> {
    let [_client] = call.params.as_slice() else {
        return Err(ShellError::MissingUuid);
    };
    let (gw, target) = open_annex(dir, call, Builtin::P2pStdio)?;
    let mode = env.mode();
    let served = gw.target_uuid(&target).clone();
    let options = ServeOptions::new(ServerConfig::shell(served, mode));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ShellError::Runtime)?;
    let gw = Arc::new(gw);
    let factory = {
        let gw = Arc::clone(&gw);
        conn::FnFactory(move |_version: u8, bypass: Vec<Uuid>| {
            let gw = Arc::clone(&gw);
            let target = target.clone();
            async move { gw.node_for(&target, &bypass) }
        })
    };
    let outcome = runtime.block_on(conn::serve_stdio(options, factory));
    let flushed = gw.flush();
    drop(runtime);
    if let Err(e) = flushed {
        eprintln!("annexgate-shell: recording locations in the git-annex branch failed: {e}");
    }
    match outcome {
        Ok(o) => {
            if let Some(m) = o.message() {
                eprintln!("annexgate-shell: {m}");
            }
            Ok(o.exit_code())
        }
        Err(e) => Err(ShellError::Session(e.to_string())),
    }
}

/// The gateway repository's own node, for the legacy key commands.
fn local_node(
    dir: &Path,
    call: &BuiltinCall,
    cmd: Builtin,
) -> Result<(Gateway, Arc<AnnexRepo>), ShellError> {
    let (gw, _target) = open_annex(dir, call, cmd)?;
    let node = gw.local_node()?;
    Ok((gw, node))
}

/// `inannex KEY...`: exit 0 when every key is present, 1 when one is not, 100 when it
/// cannot tell.
fn inannex(dir: &Path, call: &BuiltinCall) -> Result<i32, ShellError> {
    let (_gw, node) = local_node(dir, call, Builtin::InAnnex)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ShellError::Runtime)?;
    for k in &call.params {
        let key = Key::from_str(k).map_err(|_| ShellError::BadKey(k.clone()))?;
        match rt.block_on(node.check_present(&key)) {
            Ok(true) => {}
            Ok(false) => return Ok(1),
            Err(e) => {
                eprintln!("annexgate-shell: {e}");
                return Ok(100);
            }
        }
    }
    Ok(0)
}

/// `dropkey --force KEY...`: remove content (under git-annex's removal lock) and record it.
fn dropkey(dir: &Path, call: &BuiltinCall) -> Result<i32, ShellError> {
    // As git-annex-shell: the repository and --uuid are checked first.
    let (gw, node) = local_node(dir, call, Builtin::DropKey)?;
    if !call.force {
        return Err(ShellError::DropKeyNeedsForce);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ShellError::Runtime)?;
    let mut code = 0;
    for k in &call.params {
        let key = Key::from_str(k).map_err(|_| ShellError::BadKey(k.clone()))?;
        match rt.block_on(node.remove(&key, None)) {
            Ok(r) if r.removed => {}
            Ok(_) => {
                eprintln!("annexgate-shell: dropkey {k}: content is locked");
                code = 1;
            }
            Err(e) => {
                eprintln!("annexgate-shell: dropkey {k}: {e}");
                code = 1;
            }
        }
    }
    gw.flush().map_err(|e| ShellError::Session(e.to_string()))?;
    Ok(code)
}

/// Anything that is not a built-in goes to `git-shell -c`, as git-annex-shell does.
fn external(words: Vec<String>, env: &ShellEnv) -> Result<i32, ShellError> {
    // git's commands take the repository as their last parameter.
    let last = words
        .last()
        .and_then(|w| args::shell_unescape(w).last().cloned());
    check_directory(env, last.as_deref())?;
    if env.limited {
        return Err(ShellError::Blocked("GIT_ANNEX_SHELL_LIMITED"));
    }
    let command = if words.len() == 1 {
        words[0].clone()
    } else {
        words
            .iter()
            .map(|w| args::shell_quote(w))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let status = std::process::Command::new("git-shell")
        .arg("-c")
        .arg(&command)
        .status()
        .map_err(|source| ShellError::Spawn {
            program: "git-shell".into(),
            source,
        })?;
    if status.success() {
        Ok(0)
    } else {
        Err(ShellError::GitShell)
    }
}

/// Where the gateway records location changes: its own git-annex branch.
pub fn recorder_sink(rec: &Arc<Recorder>) -> Arc<dyn LocationSink> {
    Arc::clone(rec) as Arc<dyn LocationSink>
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_paths_like_git_annex() {
        let home = Path::new("/home/u");
        assert_eq!(
            repo_path("/srv/r.git", Some(home)),
            PathBuf::from("/srv/r.git")
        );
        assert_eq!(
            repo_path("/~/r.git", Some(home)),
            PathBuf::from("/home/u/r.git")
        );
        assert_eq!(
            repo_path("~/r.git", Some(home)),
            PathBuf::from("/home/u/r.git")
        );
        assert_eq!(
            repo_path("r.git", Some(home)),
            PathBuf::from("/home/u/r.git")
        );
        assert_eq!(repo_path("/~root/r", Some(home)), PathBuf::from("/root/r"));
        assert_eq!(repo_path("~root/r", Some(home)), PathBuf::from("/root/r"));
        assert_eq!(
            repo_path("~nosuchuser-xyz/r", Some(home)),
            PathBuf::from("/home/u/~nosuchuser-xyz/r")
        );
    }

    #[test]
    fn directory_restriction() {
        let env = ShellEnv {
            directory: Some("/srv/annex".into()),
            home: Some("/home/u".into()),
            ..Default::default()
        };
        assert!(check_directory(&env, Some("/srv/annex")).is_ok());
        assert!(check_directory(&env, Some("/srv/annex/")).is_ok());
        assert!(check_directory(&env, Some("/srv/annex/../annex")).is_ok());
        let e = check_directory(&env, Some("/srv/other")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Only allowed to access /srv/annex not /srv/other"
        );
        assert!(check_directory(&env, Some("/srv/annex/../other")).is_err());
        assert!(matches!(
            check_directory(&env, None),
            Err(ShellError::DirectoryUnknown(_))
        ));
        let open = ShellEnv::default();
        assert!(check_directory(&open, Some("/anything")).is_ok());
    }

    /// The refusal named paths under HOME absolutely; git-annex-shell writes them `~/...`
    /// (and administrators compare the two shells' logs).
    #[test]
    fn directory_refusal_names_home_paths_like_git_annex() {
        let env = ShellEnv {
            directory: Some("/srv/annex".into()),
            home: Some("/home/u".into()),
            ..Default::default()
        };
        // Paths under the home directory are named `~/...`, as git-annex-shell does.
        let e = check_directory(&env, Some("/~/r.git")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Only allowed to access /srv/annex not ~/r.git"
        );
        let home = ShellEnv {
            directory: Some("/home/u".into()),
            ..env.clone()
        };
        let e = check_directory(&home, Some("r.git")).unwrap_err();
        assert_eq!(e.to_string(), "Only allowed to access ~/ not ~/r.git");
    }

    /// git-annex-shell checks `--uuid` first: an uninitialised repository is not the one
    /// the client expects, and configlist must not initialise it on the way (it did, then
    /// failed; or, without git-annex on PATH, answered an empty UUID with status 0).
    #[test]
    fn uuid_on_uninitialised_repository_is_refused_before_autoinit() {
        let dir = tempfile::tempdir().unwrap();
        git2::Repository::init_bare(dir.path()).unwrap();
        let p = dir.path().to_str().unwrap();
        let want = "11111111-2222-3333-4444-555555555555";
        let env = ShellEnv::default();
        let calls: [&[&str]; 4] = [
            &["configlist", p, "--uuid", want],
            &["configlist", p, "--uuid", want, "--", "autoinit=1", "--"],
            &["p2pstdio", p, want, "--uuid", want],
            &["dropkey", p, "SHA1-s1--x", "--uuid", want],
        ];
        for args in calls {
            let argv = args.iter().map(|s| s.to_string()).collect();
            let e = run(argv, &env).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("expected repository UUID {want} but found uninitialized repository"),
                "{args:?}"
            );
        }
        let cfg = GitRepo::open(dir.path()).unwrap().config().unwrap();
        assert!(cfg.annex_uuid().is_none(), "initialised on the way");
    }

    #[test]
    fn modes_block_commands_before_touching_the_repository() {
        let env = ShellEnv {
            readonly: true,
            ..Default::default()
        };
        let r = run(
            vec!["dropkey".into(), "/nonexistent".into(), "K".into()],
            &env,
        );
        assert_eq!(
            r.unwrap_err().to_string(),
            "Action blocked by GIT_ANNEX_SHELL_READONLY"
        );
        let env = ShellEnv {
            appendonly: true,
            ..Default::default()
        };
        let r = run(
            vec!["dropkey".into(), "/nonexistent".into(), "K".into()],
            &env,
        );
        assert_eq!(
            r.unwrap_err().to_string(),
            "Action blocked by GIT_ANNEX_SHELL_APPENDONLY"
        );
        let env = ShellEnv {
            limited: true,
            ..Default::default()
        };
        let r = run(vec!["git-upload-pack".into(), "/x".into()], &env);
        assert_eq!(
            r.unwrap_err().to_string(),
            "Action blocked by GIT_ANNEX_SHELL_LIMITED"
        );
    }
}
