//! `.gitattributes` values of files (`annex.numcopies`, `annex.mincopies`), asked of git
//! itself: one long-running `git check-attr -z --stdin annex.numcopies annex.mincopies`
//! per repository, as git-annex does, so every rule of git's attribute lookup
//! (`.gitattributes` in each directory, `info/attributes`, `core.attributesFile`, macros,
//! negation, `!attr`) is git's own.
//!
//! The exchange: we write `PATH NUL`; git answers, for each attribute in the order asked,
//! `PATH NUL ATTR NUL VALUE NUL`, VALUE being the attribute's value, `set`, `unset` or
//! `unspecified`. git flushes after each path when its output is a pipe.

use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

const ATTRS: [&str; 2] = ["annex.numcopies", "annex.mincopies"];

/// Errors talking to `git check-attr`.
#[derive(Debug, thiserror::Error)]
pub enum AttrError {
    #[error("cannot run git check-attr in {dir}: {source}")]
    Spawn { dir: PathBuf, source: io::Error },
    #[error("git check-attr: {source}")]
    Io { source: io::Error },
    #[error("git check-attr answered {got:?} where {expected:?} was expected")]
    Protocol { expected: String, got: String },
    #[error("file names with a NUL byte cannot be looked up: {file:?}")]
    BadName { file: String },
}

/// The annex attributes of one file (`None` = unspecified; other values are as git
/// gives them, including `set` and `unset`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnexAttrs {
    pub numcopies: Option<String>,
    pub mincopies: Option<String>,
}

/// A running `git check-attr`.
pub struct CheckAttr {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl std::fmt::Debug for CheckAttr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckAttr")
            .field("pid", &self.child.id())
            .finish()
    }
}

impl CheckAttr {
    /// Start `git check-attr` in the work tree `dir` (paths are then relative to it).
    pub fn start(dir: &Path) -> Result<CheckAttr, AttrError> {
        let mut child = Command::new("git")
            .arg("check-attr")
            .arg("-z")
            .arg("--stdin")
            .args(ATTRS)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| AttrError::Spawn {
                dir: dir.to_path_buf(),
                source,
            })?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        Ok(CheckAttr {
            child,
            stdin: Some(stdin),
            stdout,
        })
    }

    fn field(&mut self) -> Result<Vec<u8>, AttrError> {
        let mut buf = Vec::new();
        let n = self
            .stdout
            .read_until(0, &mut buf)
            .map_err(|source| AttrError::Io { source })?;
        if n == 0 || buf.last() != Some(&0) {
            return Err(AttrError::Io {
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "git check-attr exited early"),
            });
        }
        buf.pop();
        Ok(buf)
    }

    /// The attributes of `file` (relative to the work tree top, `/`-separated).
    pub fn get(&mut self, file: &[u8]) -> Result<AnnexAttrs, AttrError> {
        if file.contains(&0) {
            return Err(AttrError::BadName {
                file: String::from_utf8_lossy(file).into_owned(),
            });
        }
        let stdin = self.stdin.as_mut().ok_or_else(|| AttrError::Io {
            source: io::Error::new(io::ErrorKind::BrokenPipe, "git check-attr is closed"),
        })?;
        let mut req = Vec::with_capacity(file.len() + 1);
        req.extend_from_slice(file);
        req.push(0);
        stdin
            .write_all(&req)
            .and_then(|_| stdin.flush())
            .map_err(|source| AttrError::Io { source })?;
        let mut out = AnnexAttrs::default();
        for attr in ATTRS {
            let path = self.field()?;
            let name = self.field()?;
            let value = self.field()?;
            if name != attr.as_bytes() {
                return Err(AttrError::Protocol {
                    expected: attr.to_string(),
                    got: String::from_utf8_lossy(&name).into_owned(),
                });
            }
            if path != file {
                return Err(AttrError::Protocol {
                    expected: String::from_utf8_lossy(file).into_owned(),
                    got: String::from_utf8_lossy(&path).into_owned(),
                });
            }
            let v = (value != b"unspecified").then(|| String::from_utf8_lossy(&value).into_owned());
            match attr {
                "annex.numcopies" => out.numcopies = v,
                _ => out.mincopies = v,
            }
        }
        Ok(out)
    }
}

impl Drop for CheckAttr {
    fn drop(&mut self) {
        // Closing its input ends git check-attr.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_values_from_gitattributes() {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("git")
            .args(["init", "-q"])
            .current_dir(dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir.path())
            .status()
            .unwrap();
        assert!(ok.success());
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(
            dir.path().join(".gitattributes"),
            "*.bin annex.numcopies=3\nsub/* annex.mincopies=2 annex.numcopies\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("sub/.gitattributes"),
            "x.bin -annex.numcopies\n",
        )
        .unwrap();
        let mut ca = CheckAttr::start(dir.path()).unwrap();
        assert_eq!(
            ca.get(b"a.bin").unwrap(),
            AnnexAttrs {
                numcopies: Some("3".into()),
                mincopies: None
            }
        );
        assert_eq!(ca.get(b"a.txt").unwrap(), AnnexAttrs::default());
        assert_eq!(
            ca.get(b"sub/y.txt").unwrap(),
            AnnexAttrs {
                numcopies: Some("set".into()),
                mincopies: Some("2".into())
            }
        );
        assert_eq!(
            ca.get(b"sub/x.bin").unwrap().numcopies.as_deref(),
            Some("unset")
        );
        // Names with spaces and non-ASCII bytes pass through unchanged.
        assert_eq!(
            ca.get("d é/f g.bin".as_bytes())
                .unwrap()
                .numcopies
                .as_deref(),
            Some("3")
        );
        assert!(matches!(ca.get(b"a\0b"), Err(AttrError::BadName { .. })));
    }
}
