//! Where the real parts live: the git-annex installation made by `scripts/setup`, OpenSSH, and
//! our own programs as cargo built them for this test binary.
//!
//! Nothing here is optional: a missing part panics with a message saying how to get it, so a
//! machine without git-annex or sshd fails the suite instead of skipping tests.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The programs and files the harness runs. Found once per test binary run.
#[derive(Debug)]
pub struct Tools {
    /// `$ANNEXGATE_TOOLS`, or `<workspace>/.tools`.
    pub root: PathBuf,
    /// The directory holding `git-annex` and `git-annex-shell` (put on PATH).
    pub annex_bin: PathBuf,
    pub git_annex: PathBuf,
    pub git_annex_shell: PathBuf,
    /// libmagic's database shipped with the git-annex wheel (git-annex reads `$MAGIC`).
    pub magic: Option<PathBuf>,
    /// The directory with our programs (`annexgate-shell`, `annexgate`).
    pub our_bin: PathBuf,
    pub annexgate_shell: PathBuf,
    pub annexgate: PathBuf,
    /// The PATH this process was started with (git, sh, coreutils come from it).
    pub system_path: String,
}

/// The tools, located on first use. Panics (with what to do) when git-annex is missing.
pub fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(Tools::locate)
}

/// Panics with a message pointing at `scripts/setup` unless `path` is an executable file.
fn require_exe(path: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    let ok = std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false);
    assert!(
        ok,
        "{what} not found at {} — run scripts/setup (it installs git-annex into .tools/ and \
         Debian's openssh-server), or set ANNEXGATE_TOOLS to a directory made by it",
        path.display()
    );
}

impl Tools {
    fn locate() -> Tools {
        let root = match std::env::var_os("ANNEXGATE_TOOLS") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools"),
        };
        Tools::locate_in(root)
    }

    /// The tools under an installation directory made by `scripts/setup`; panics (saying to
    /// run it) when git-annex is not there.
    pub fn locate_in(root: PathBuf) -> Tools {
        let annex_bin = root.join("bin");
        let git_annex = annex_bin.join("git-annex");
        let git_annex_shell = annex_bin.join("git-annex-shell");
        require_exe(&git_annex, "git-annex");
        require_exe(&git_annex_shell, "git-annex-shell");
        let magic = magic_db(&root, &git_annex);
        let annexgate_shell = PathBuf::from(env!("CARGO_BIN_EXE_annexgate-shell"));
        let annexgate = PathBuf::from(env!("CARGO_BIN_EXE_annexgate"));
        let our_bin = annexgate_shell
            .parent()
            .expect("cargo's binary path has a parent")
            .to_path_buf();
        let system_path = std::env::var("PATH")
            .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".to_string());
        Tools {
            root,
            annex_bin,
            git_annex,
            git_annex_shell,
            magic,
            our_bin,
            annexgate_shell,
            annexgate,
            system_path,
        }
    }
}

/// `MAGIC` as `scripts/setup` wrote it into `env.sh`, else next to the real git-annex binary.
fn magic_db(root: &Path, git_annex: &Path) -> Option<PathBuf> {
    if let Ok(text) = std::fs::read_to_string(root.join("env.sh")) {
        for line in text.lines() {
            if let Some(v) = line.trim().strip_prefix("export MAGIC=") {
                let p = PathBuf::from(v.trim_matches('"'));
                if p.is_file() {
                    return Some(p);
                }
            }
        }
    }
    let real = std::fs::canonicalize(git_annex).ok()?;
    let p = real.parent()?.join("magic.mgc");
    p.is_file().then_some(p)
}

/// An OpenSSH program (`ssh`, `sshd`, `ssh-keygen`), from the usual places. Panics with a
/// pointer at `scripts/setup` when it is missing.
pub fn openssh(name: &str) -> PathBuf {
    let dirs: &[&str] = if name == "sshd" {
        &["/usr/sbin", "/usr/local/sbin"]
    } else {
        &["/usr/bin", "/usr/local/bin"]
    };
    let path = dirs
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| Path::new(dirs[0]).join(name));
    require_exe(&path, &format!("OpenSSH's {name}"));
    path
}
