//! Credentials from git's credential helpers, asked for the way git-annex's p2phttp client
//! asks (`git credential fill|approve|reject`).
//!
//! The exchange with `git credential` is lines of `name=value` ended by an empty line.
//! A request names the `url` (and the server's `WWW-Authenticate` challenges as
//! `wwwauth[]`); git answers with the credential's fields (`protocol`, `host`, `path`,
//! `username`, `password`, …), which are handed back unchanged to `approve` once they
//! worked or to `reject` when the server refused them. Prompting is turned off
//! (`GIT_TERMINAL_PROMPT=0`): a gateway has nobody at a terminal, so without a helper that
//! knows the URL, `fill` fails and the request fails with the server's refusal.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// How long `git credential` may take (a helper may ask a keyring or an agent).
const HELPER_TIMEOUT: Duration = Duration::from_secs(60);

/// Why no credential came.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot run git credential {action}: {source}")]
    Spawn {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("git credential {action} failed: {detail}")]
    Failed {
        action: &'static str,
        detail: String,
    },
    #[error("git credential {action} did not finish within {secs} s")]
    Timeout { action: &'static str, secs: u64 },
    #[error("git credential fill gave no username and password")]
    Incomplete,
}

/// A credential as `git credential fill` gave it: its fields in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    fields: Vec<(String, String)>,
}

impl Credential {
    /// Parse `git credential` output.
    pub fn parse(text: &str) -> Credential {
        Credential {
            fields: text
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| match l.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (l.to_string(), String::new()),
                })
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Username and password, when both are there.
    pub fn basic(&self) -> Option<(&str, &str)> {
        Some((self.get("username")?, self.get("password")?))
    }

    fn format(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.fields {
            s.push_str(k);
            s.push('=');
            s.push_str(v);
            s.push('\n');
        }
        s.push('\n');
        s
    }
}

/// Runs `git credential` in one repository (whose config names the helpers).
#[derive(Debug, Clone, Default)]
pub struct CredentialHelper {
    /// `--git-dir` for git; `None`: only the user's and system config count.
    pub git_dir: Option<PathBuf>,
    /// The `git` program (default `git` from PATH).
    pub git: Option<PathBuf>,
    /// Environment variables set for git (e.g. another `HOME`).
    pub env: Vec<(OsString, OsString)>,
}

impl CredentialHelper {
    pub fn new(git_dir: Option<PathBuf>) -> CredentialHelper {
        CredentialHelper {
            git_dir,
            ..CredentialHelper::default()
        }
    }

    /// Ask for a credential for `url`; `challenges` are the server's `WWW-Authenticate`
    /// values.
    pub async fn fill(
        &self,
        url: &str,
        challenges: &[String],
    ) -> Result<Credential, CredentialError> {
        let mut fields = vec![("url".to_string(), url.to_string())];
        fields.extend(
            challenges
                .iter()
                .map(|c| ("wwwauth[]".to_string(), c.clone())),
        );
        let out = self.run("fill", &Credential { fields }).await?;
        let c = Credential::parse(&out);
        if c.basic().is_none() {
            return Err(CredentialError::Incomplete);
        }
        Ok(c)
    }

    /// The credential worked: let helpers store it.
    pub async fn approve(&self, c: &Credential) {
        if let Err(e) = self.run("approve", c).await {
            tracing::warn!("{e}");
        }
    }

    /// The server refused the credential: let helpers forget it.
    pub async fn reject(&self, c: &Credential) {
        if let Err(e) = self.run("reject", c).await {
            tracing::warn!("{e}");
        }
    }

    async fn run(
        &self,
        action: &'static str,
        input: &Credential,
    ) -> Result<String, CredentialError> {
        let git = self.git.clone().unwrap_or_else(|| PathBuf::from("git"));
        let mut cmd = tokio::process::Command::new(git);
        if let Some(d) = &self.git_dir {
            cmd.arg("--git-dir").arg(d);
        }
        cmd.args(["credential", action])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|source| CredentialError::Spawn { action, source })?;
        let text = input.format();
        let work = async move {
            if let Some(mut stdin) = child.stdin.take() {
                // A helper that exits without reading is not an error of ours.
                let _ = stdin.write_all(text.as_bytes()).await;
                drop(stdin);
            }
            child.wait_with_output().await
        };
        let out = tokio::time::timeout(HELPER_TIMEOUT, work)
            .await
            .map_err(|_| CredentialError::Timeout {
                action,
                secs: HELPER_TIMEOUT.as_secs(),
            })?
            .map_err(|source| CredentialError::Spawn { action, source })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().rev().find(|l| !l.trim().is_empty());
            return Err(CredentialError::Failed {
                action,
                detail: match last {
                    Some(l) => l.trim().to_string(),
                    None => out.status.to_string(),
                },
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_in_order() {
        let c = Credential::parse("protocol=annex+http\nhost=127.0.0.1:9\npath=git-annex\nusername=alice\npassword=a=b\n\n");
        assert_eq!(c.basic(), Some(("alice", "a=b")));
        assert_eq!(c.get("protocol"), Some("annex+http"));
        assert_eq!(
            c.format(),
            "protocol=annex+http\nhost=127.0.0.1:9\npath=git-annex\nusername=alice\npassword=a=b\n\n"
        );
        assert_eq!(Credential::parse("username=bob\n").basic(), None);
    }
}
