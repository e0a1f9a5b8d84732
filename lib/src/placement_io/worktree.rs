//! Annexed files of a work tree and their keys.
//!
//! An annexed file is either a symlink whose target contains `annex/objects/` (a locked
//! file; the key is the target's last component, a key file name) or, unlocked, a small
//! file whose content starts with `/annex/objects/` (a pointer file; the key is the last
//! component of its first line). [`resolve_file`] reads the file in the work tree, and,
//! when the work tree has no such file, its staged version in the git index: what
//! `git annex lookupkey` answers for a locked or unlocked file (it also consults its keys
//! database for unlocked files whose content replaced the pointer; we then read the
//! staged pointer from the index, which is the same key).
//! [`annexed_files`] lists every annexed file in the index under a directory, like
//! `git annex find`, with the keys as staged.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use crate::branch::repo::{GitRepo, IndexEntry, RepoError};
use crate::types::key::file_key;
use crate::types::Key;

/// Pointer files are at most this long (git-annex's limit).
const MAX_POINTER: u64 = 32 * 1024;

/// Errors resolving files.
#[derive(Debug, thiserror::Error)]
pub enum WorktreeError {
    #[error("{path}: the repository is bare: give keys, not files")]
    Bare { path: PathBuf },
    #[error("{path} is outside the repository's work tree {top}")]
    Outside { path: PathBuf, top: PathBuf },
    #[error("{path} is not an annexed file")]
    NotAnnexed { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// The key an annex symlink target or pointer names, if it is one.
pub fn key_of_link(target: &[u8]) -> Option<Key> {
    let first = target.split(|&b| b == b'\n').next()?;
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    let is_link = first.starts_with(b"/annex/objects/")
        || first.starts_with(b"annex/objects/")
        || first.windows(15).any(|w| w == b"/annex/objects/");
    if !is_link {
        return None;
    }
    let name = first.rsplit(|&b| b == b'/').next()?;
    file_key(name).ok()
}

/// The path of `path` (absolute, or relative to `cwd`) from the top of `top`,
/// `/`-separated, without resolving symlinks in the last component.
pub fn relative_to_top(top: &Path, cwd: &Path, path: &Path) -> Result<Vec<u8>, WorktreeError> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    // Normalise `.` and `..` lexically; the directory part may also contain symlinks, so
    // canonicalise the parent when it exists.
    let mut norm = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                norm.pop();
            }
            Component::CurDir => {}
            other => norm.push(other.as_os_str()),
        }
    }
    let canon_top = fs::canonicalize(top).unwrap_or_else(|_| top.to_path_buf());
    let canon = match (norm.parent(), norm.file_name()) {
        (Some(dir), Some(name)) => fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or_else(|_| norm.clone()),
        _ => norm.clone(),
    };
    let rel = canon
        .strip_prefix(&canon_top)
        .or_else(|_| norm.strip_prefix(top))
        .map_err(|_| WorktreeError::Outside {
            path: path.to_path_buf(),
            top: top.to_path_buf(),
        })?;
    let bytes = rel.as_os_str().as_bytes().to_vec();
    if bytes.is_empty() {
        return Err(WorktreeError::NotAnnexed {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// The key of a file in the work tree (`rel` from the top), or `None` if the file in the
/// work tree is not annexed. `Err` only for unreadable files.
fn work_tree_key(top: &Path, rel: &[u8]) -> Result<Option<Key>, WorktreeError> {
    let p = top.join(std::ffi::OsStr::from_bytes(rel));
    let io = |source| WorktreeError::Io {
        path: p.clone(),
        source,
    };
    let meta = match fs::symlink_metadata(&p) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    if meta.file_type().is_symlink() {
        let target = fs::read_link(&p).map_err(io)?;
        return Ok(key_of_link(&target.into_os_string().into_vec()));
    }
    if meta.is_file() && meta.len() <= MAX_POINTER {
        let mut head = Vec::new();
        fs::File::open(&p)
            .and_then(|f| f.take(MAX_POINTER).read_to_end(&mut head))
            .map_err(io)?;
        if head.starts_with(b"/annex/objects/") {
            return Ok(key_of_link(&head));
        }
    }
    Ok(None)
}

fn staged_key(repo: &GitRepo, e: &IndexEntry) -> Result<Option<Key>, WorktreeError> {
    let link = e.mode & 0o170000 == 0o120000;
    let small_file = e.mode & 0o170000 == 0o100000 && u64::from(e.size) <= MAX_POINTER;
    if !link && !small_file {
        return Ok(None);
    }
    let content = repo.blob(e.id)?;
    if !link && !content.starts_with(b"/annex/objects/") {
        return Ok(None);
    }
    Ok(key_of_link(&content))
}

/// Resolves files to keys, with the index read at most once.
pub struct Resolver<'g> {
    repo: &'g GitRepo,
    top: PathBuf,
    index: Option<HashMap<Vec<u8>, IndexEntry>>,
}

impl<'g> Resolver<'g> {
    pub fn new(repo: &'g GitRepo) -> Resolver<'g> {
        Resolver {
            repo,
            top: repo.work_tree().map(Path::to_path_buf).unwrap_or_default(),
            index: None,
        }
    }

    /// The key of `path` (relative to `cwd` or absolute) and its path from the top.
    pub fn resolve(&mut self, cwd: &Path, path: &Path) -> Result<(Key, Vec<u8>), WorktreeError> {
        if self.repo.is_bare() {
            return Err(WorktreeError::Bare {
                path: path.to_path_buf(),
            });
        }
        let rel = relative_to_top(&self.top, cwd, path)?;
        if let Some(k) = work_tree_key(&self.top, &rel)? {
            return Ok((k, rel));
        }
        if self.index.is_none() {
            let entries = self.repo.index_entries()?;
            self.index = Some(entries.into_iter().map(|e| (e.path.clone(), e)).collect());
        }
        let staged = match self.index.as_ref().and_then(|m| m.get(&rel)) {
            Some(e) => staged_key(self.repo, e)?,
            None => None,
        };
        match staged {
            Some(k) => Ok((k, rel)),
            None => Err(WorktreeError::NotAnnexed {
                path: path.to_path_buf(),
            }),
        }
    }
}

/// Every annexed file in the index whose path starts with the directory `under` (from
/// the top; empty for all), with its key, in index order, read from the staged symlink
/// or pointer (one object read per file; the work tree is not looked at, so a file
/// changed and not yet staged counts as staged).
pub fn annexed_files(repo: &GitRepo, under: &[u8]) -> Result<Vec<(Key, Vec<u8>)>, WorktreeError> {
    let candidates: Vec<IndexEntry> = repo
        .index_entries()?
        .into_iter()
        .filter(|e| {
            under.is_empty()
                || (e.path.starts_with(under)
                    && (under.ends_with(b"/") || e.path.get(under.len()) == Some(&b'/')))
        })
        .filter(|e| {
            let link = e.mode & 0o170000 == 0o120000;
            let small_file = e.mode & 0o170000 == 0o100000 && u64::from(e.size) <= MAX_POINTER;
            link || small_file
        })
        .collect();
    let ids: Vec<_> = candidates.iter().map(|e| e.id).collect();
    let contents = repo.read_blobs(&ids, walk_threads())?;
    let mut out = Vec::new();
    for (e, content) in candidates.into_iter().zip(contents) {
        let link = e.mode & 0o170000 == 0o120000;
        if !link && !content.starts_with(b"/annex/objects/") {
            continue;
        }
        if let Some(k) = key_of_link(&content) {
            out.push((k, e.path));
        }
    }
    Ok(out)
}

/// Threads for bulk reads: the machine's cores, at most 4.
pub fn walk_threads() -> usize {
    super::sizes::walk_threads()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_pointers() {
        let k = "SHA256E-s3--2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae.bin";
        let link = format!("../.git/annex/objects/zG/96/{k}/{k}");
        assert_eq!(key_of_link(link.as_bytes()).unwrap().to_text(), k);
        let ptr = format!("/annex/objects/{k}\n");
        assert_eq!(key_of_link(ptr.as_bytes()).unwrap().to_text(), k);
        // Escaped key file names are unescaped.
        let w = "WORM-s1-m1--a&cb%c";
        let got = key_of_link(format!("/annex/objects/{w}").as_bytes()).unwrap();
        assert_eq!(got.to_text(), "WORM-s1-m1--a:b/c");
        assert!(key_of_link(b"some/other/target").is_none());
        assert!(key_of_link(b"").is_none());
    }

    #[test]
    fn relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path();
        std::fs::create_dir_all(top.join("a/b")).unwrap();
        let rel = |cwd: &Path, p: &str| relative_to_top(top, cwd, Path::new(p));
        assert_eq!(rel(top, "x").unwrap(), b"x");
        assert_eq!(rel(&top.join("a/b"), "../y").unwrap(), b"a/y");
        assert_eq!(rel(&top.join("a"), "./b/z").unwrap(), b"a/b/z");
        assert!(matches!(
            rel(top, "../outside"),
            Err(WorktreeError::Outside { .. })
        ));
        assert!(rel(top, ".").is_err());
    }
}
