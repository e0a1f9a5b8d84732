//! The settings of a `directory` special remote, read from its remote.log config the way
//! git-annex reads them.
//!
//! A remote.log line holds `key=value` fields (already unescaped here), e.g.
//! `chunk=1MiB encryption=none name=d type=directory timestamp=1795651713s`. git-annex does
//! not store the directory's path there (`initremote` moves `directory=` into the git
//! config of the repository that ran it, as `remote.<name>.annex-directory`, so each host
//! can mount it elsewhere); that git config value, when given, wins over a `directory=`
//! field. `chunk=SIZE` (git-annex's size syntax, e.g. `1MiB`) makes new content go in
//! chunks of that many bytes; `chunk=0` means no chunks.
//!
//! Refused, with an error saying why: encrypted remotes (only `encryption=none` is
//! implemented), the old `chunksize=` chunking, and export/import remotes (their content
//! lives in a file tree, not by key).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::node::annexrepo::config::{parse_size, DEFAULT_DISK_RESERVE};
use crate::types::Uuid;

/// Everything [`super::Directory`] needs to know about the remote it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryConfig {
    /// The directory holding the remote's content (must exist when content is used).
    pub dir: PathBuf,
    /// The special remote's UUID: what location changes are recorded under.
    pub uuid: Uuid,
    /// A name for messages: the remote's `name=`, or its UUID.
    pub name: String,
    /// `chunk=`: new content is stored in chunks of this many bytes.
    pub chunk: Option<u64>,
    /// Free space that must remain in the directory's file system after storing content
    /// (git-annex applies the storing repository's `annex.diskreserve`; set it from the
    /// gateway's). Defaults to git-annex's 100 MB.
    pub disk_reserve: u64,
    /// fsync stored content and its directories before reporting success (git-annex does
    /// not; a gateway that tells clients "stored" should mean it). Default true.
    pub fsync: bool,
}

/// Why a remote.log config does not describe a directory remote we can serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("special remote {uuid} has type {found:?}, not directory")]
    WrongType { uuid: Uuid, found: Option<String> },
    #[error("directory special remote {name}: no directory configured (set git config remote.{name}.annex-directory, as `git annex enableremote {name} directory=PATH` does)")]
    NoDirectory { name: String },
    #[error("directory special remote {name}: directory {path:?} is not an absolute path")]
    RelativeDirectory { name: String, path: PathBuf },
    #[error("directory special remote {name}: encryption={encryption} is not supported (only encryption=none)")]
    Encrypted { name: String, encryption: String },
    #[error("directory special remote {name}: the old chunksize={value} chunking is not supported; use a remote with chunk=")]
    LegacyChunks { name: String, value: String },
    #[error("directory special remote {name}: bad configuration chunk={value}")]
    BadChunk { name: String, value: String },
    #[error("directory special remote {name}: {field}=yes remotes keep a file tree, not content by key; not supported")]
    TreeRemote { name: String, field: &'static str },
    #[error("directory special remote {name}: bad sameas-uuid {value:?}")]
    BadSameas { name: String, value: String },
    #[error("directory special remote {name}: a sameas remote's config needs the fields it inherits (encryption=, chunk=) merged in from remote {parent}")]
    SameasUnmerged { name: String, parent: String },
}

/// git-annex's yes/no config values.
fn is_yes(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "yes" | "true")
}

impl DirectoryConfig {
    /// A config with defaults: no chunks, git-annex's disk reserve, fsync on.
    pub fn new(dir: impl Into<PathBuf>, uuid: Uuid, name: impl Into<String>) -> DirectoryConfig {
        DirectoryConfig {
            dir: dir.into(),
            uuid,
            name: name.into(),
            chunk: None,
            disk_reserve: DEFAULT_DISK_RESERVE,
            fsync: true,
        }
    }

    /// Build the config of special remote `uuid` from its remote.log fields (values
    /// unescaped) and the git config `remote.<name>.annex-directory` of the gateway
    /// repository (`git_dir_override`), which wins over a `directory=` field. For a
    /// `--sameas` remote, pass its fields merged with those it inherits from its parent
    /// (git-annex's `addSameasInherited`: `encryption`, `chunk`, …); the node then
    /// answers as the parent's UUID, under which git-annex tracks the content.
    pub fn from_remote_config(
        uuid: Uuid,
        fields: &BTreeMap<String, String>,
        git_dir_override: Option<PathBuf>,
    ) -> Result<DirectoryConfig, ConfigError> {
        let get = |k: &str| fields.get(k).map(String::as_str);
        if get("type") != Some("directory") {
            return Err(ConfigError::WrongType {
                uuid,
                found: get("type").map(str::to_string),
            });
        }
        let name = get("name")
            .or_else(|| get("sameas-name"))
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| uuid.to_string());
        // A `--sameas` remote is another way to reach the data store of `sameas-uuid`:
        // content (and its chunk log) is recorded under that UUID.
        let uuid = match get("sameas-uuid") {
            None => uuid,
            Some(v) => {
                let parent = Uuid::parse(v).map_err(|_| ConfigError::BadSameas {
                    name: name.clone(),
                    value: v.to_string(),
                })?;
                if get("encryption").is_none() {
                    return Err(ConfigError::SameasUnmerged {
                        name,
                        parent: v.to_string(),
                    });
                }
                parent
            }
        };
        let encryption = get("encryption").unwrap_or("none");
        if encryption != "none" {
            return Err(ConfigError::Encrypted {
                name,
                encryption: encryption.to_string(),
            });
        }
        // A cipher without an encryption= field is a damaged encrypted config.
        if get("cipher").is_some() || get("cipherkeys").is_some() || get("pubkeys").is_some() {
            return Err(ConfigError::Encrypted {
                name,
                encryption: "(cipher present)".into(),
            });
        }
        for field in ["exporttree", "importtree"] {
            if get(field).is_some_and(is_yes) {
                return Err(ConfigError::TreeRemote { name, field });
            }
        }
        if let Some(v) = get("chunksize") {
            return Err(ConfigError::LegacyChunks {
                name,
                value: v.to_string(),
            });
        }
        let chunk = match get("chunk") {
            None => None,
            Some(v) => {
                let bad = || ConfigError::BadChunk {
                    name: name.clone(),
                    value: v.to_string(),
                };
                // git-annex refuses negative sizes here (parse_size makes them 0).
                if v.trim_start().starts_with('-') {
                    return Err(bad());
                }
                match parse_size(v).ok_or_else(bad)? {
                    0 => None,
                    n => Some(n),
                }
            }
        };
        let dir = git_dir_override
            .filter(|p| !p.as_os_str().is_empty())
            .or_else(|| {
                get("directory")
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
            })
            .ok_or_else(|| ConfigError::NoDirectory { name: name.clone() })?;
        if !dir.is_absolute() {
            return Err(ConfigError::RelativeDirectory { name, path: dir });
        }
        let mut cfg = DirectoryConfig::new(dir, uuid, name);
        cfg.chunk = chunk;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(line: &str) -> BTreeMap<String, String> {
        line.split(' ')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn uuid() -> Uuid {
        Uuid::parse("f3b815e0-6a5e-4d5a-8b4f-4af997953348").unwrap()
    }

    #[test]
    fn reads_what_initremote_writes() {
        // remote.log and git config as `git annex initremote c type=directory
        // directory=/srv/c encryption=none chunk=1KiB` wrote them.
        let f = fields("chunk=1KiB encryption=none name=c type=directory timestamp=1795651713s");
        let cfg =
            DirectoryConfig::from_remote_config(uuid(), &f, Some(PathBuf::from("/srv/c"))).unwrap();
        assert_eq!(cfg.dir, PathBuf::from("/srv/c"));
        assert_eq!(cfg.name, "c");
        assert_eq!(cfg.chunk, Some(1024));
        assert_eq!(cfg.uuid, uuid());
        assert_eq!(cfg.disk_reserve, DEFAULT_DISK_RESERVE);

        let f = fields("chunk=1MiB directory=/old encryption=none name=d type=directory");
        let cfg = DirectoryConfig::from_remote_config(uuid(), &f, None).unwrap();
        assert_eq!(cfg.dir, PathBuf::from("/old"));
        assert_eq!(cfg.chunk, Some(1 << 20));
        let cfg =
            DirectoryConfig::from_remote_config(uuid(), &f, Some(PathBuf::from("/new"))).unwrap();
        assert_eq!(cfg.dir, PathBuf::from("/new"), "git config wins");

        for (chunk, want) in [
            ("0", None),
            ("2kb", Some(2000)),
            ("10 MB", Some(10_000_000)),
            ("1GiB", Some(1 << 30)),
        ] {
            let mut f = fields("encryption=none type=directory directory=/x");
            f.insert("chunk".into(), chunk.into());
            let cfg = DirectoryConfig::from_remote_config(uuid(), &f, None).unwrap();
            assert_eq!(cfg.chunk, want, "{chunk}");
            assert_eq!(cfg.name, uuid().to_string());
        }
    }

    #[test]
    fn refuses_what_it_cannot_serve() {
        let cases = [
            (
                "encryption=shared type=directory directory=/x name=e",
                "Encrypted",
            ),
            (
                "encryption=none cipher=abc type=directory directory=/x",
                "Encrypted",
            ),
            ("encryption=none type=rsync directory=/x", "WrongType"),
            ("encryption=none directory=/x", "WrongType"),
            ("encryption=none type=directory name=n", "NoDirectory"),
            (
                "encryption=none type=directory directory=rel",
                "RelativeDirectory",
            ),
            (
                "encryption=none type=directory directory=/x chunksize=1MiB",
                "LegacyChunks",
            ),
            (
                "encryption=none type=directory directory=/x chunk=lots",
                "BadChunk",
            ),
            (
                "encryption=none type=directory directory=/x chunk=-5",
                "BadChunk",
            ),
            (
                "encryption=none type=directory directory=/x exporttree=yes",
                "TreeRemote",
            ),
        ];
        for (line, want) in cases {
            let err =
                DirectoryConfig::from_remote_config(uuid(), &fields(line), None).expect_err(line);
            assert!(format!("{err:?}").starts_with(want), "{line}: {err:?}");
            assert!(!err.to_string().is_empty());
        }
        let e = DirectoryConfig::from_remote_config(
            uuid(),
            &fields("encryption=hybrid type=directory directory=/x name=e"),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("encryption=hybrid"), "{e}");
        let e = DirectoryConfig::from_remote_config(
            uuid(),
            &fields("type=directory directory=/x sameas-name=s sameas-uuid=p1"),
            None,
        )
        .unwrap_err();
        assert!(matches!(e, ConfigError::SameasUnmerged { .. }), "{e:?}");
    }

    #[test]
    fn a_sameas_remote_answers_as_its_parent() {
        let f = fields(
            "type=directory directory=/x sameas-name=s sameas-uuid=p1 encryption=none chunk=1KiB",
        );
        let cfg = DirectoryConfig::from_remote_config(uuid(), &f, None).unwrap();
        assert_eq!(cfg.uuid.as_str(), "p1");
        assert_eq!(cfg.name, "s");
        assert_eq!(cfg.chunk, Some(1024));
    }
}
