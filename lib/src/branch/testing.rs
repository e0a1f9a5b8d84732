//! Test helpers shared by the branch and placement tests.

use std::path::Path;
use std::process::Command;

/// Run plain git (no system config, a fixed identity) in `dir`; its trimmed stdout.
/// Panics with git's stderr when it fails.
pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    git_env(dir, args, &[])
}

/// [`git`] with more environment variables (e.g. `GIT_INDEX_FILE`).
pub(crate) fn git_env(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Give the repository at `dir` a git-annex branch of one commit with an empty tree
/// (what `git annex init` starts from, without git-annex).
pub(crate) fn empty_annex_branch(dir: &Path) {
    let tree = git(dir, &["hash-object", "-t", "tree", "-w", "/dev/null"]);
    let commit = git(dir, &["commit-tree", &tree, "-m", "branch created"]);
    git(dir, &["update-ref", "refs/heads/git-annex", &commit]);
}

/// A fresh bare repository with an empty git-annex branch ([`empty_annex_branch`]),
/// removed when the returned directory is dropped.
pub(crate) fn bare_annex_repo() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    git(tmp.path(), &["init", "-q", "--bare"]);
    empty_annex_branch(tmp.path());
    tmp
}
