//! The settings of a local git-annex repository that shape its object store, and how to
//! read them from git config values (`annex.*`, `core.*`) the way git-annex does.

use std::path::{Path, PathBuf};

use crate::types::Uuid;

/// git-annex's default `annex.diskreserve`: 100 megabytes.
pub const DEFAULT_DISK_RESERVE: u64 = 100_000_000;

/// `core.sharedRepository`, as git-annex interprets it for file and directory modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SharedRepository {
    /// Unset, `umask`, `false`: modes follow the umask.
    #[default]
    UnShared,
    /// `group`, `true`, `1`: the group may read and write.
    Group,
    /// `all`, `world`, `everybody`, `2`: everybody may read, the group may write.
    All,
    /// An octal mode such as `0660`: files get exactly this mode.
    Umask(u32),
}

impl SharedRepository {
    /// Parse a `core.sharedRepository` value.
    pub fn parse(v: &str) -> SharedRepository {
        match v.to_ascii_lowercase().as_str() {
            "1" | "group" | "true" => SharedRepository::Group,
            "2" | "all" | "world" | "everybody" => SharedRepository::All,
            "" | "0" | "false" | "umask" => SharedRepository::UnShared,
            other => {
                // Haskell's readOct: the longest prefix of octal digits.
                let digits: String = other
                    .chars()
                    .take_while(|c| ('0'..='7').contains(c))
                    .collect();
                match u32::from_str_radix(&digits, 8) {
                    Ok(m) if !digits.is_empty() => SharedRepository::Umask(m & 0o7777),
                    _ => SharedRepository::UnShared,
                }
            }
        }
    }
}

/// Which hash directories the object store uses (the `ObjectHashLower` and
/// `OneLevelObjectHash` repository differences, set by `annex.tune.*` at init).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ObjectHash {
    /// `annex.tune.objecthashlower`: only `hashdirlower`, even in a non-bare repository.
    pub lower_only: bool,
    /// `annex.tune.objecthash1`: one directory level instead of two.
    pub one_level: bool,
}

/// Everything [`super::AnnexRepo`] needs to know about the repository it serves.
#[derive(Debug, Clone)]
pub struct AnnexRepoConfig {
    /// The git directory: `.git` of a non-bare repository, the repository of a bare one.
    pub git_dir: PathBuf,
    /// The top of the work tree (None for a bare repository); hooks run there.
    pub work_tree: Option<PathBuf>,
    pub bare: bool,
    /// `annex.uuid`.
    pub uuid: Uuid,
    /// A name for messages (a path or remote name).
    pub name: String,
    /// `annex.verify` (default true): hash received content. When false, only the size is
    /// checked, except where git-annex also insists on hashing (resumed or INVALID data).
    pub verify: bool,
    /// `annex.diskreserve` in bytes: free space that must remain after storing content.
    pub disk_reserve: u64,
    pub object_hash: ObjectHash,
    /// `annex.crippledfilesystem`: no file modes; new content in the bare layout unless
    /// `core.symlinks` works.
    pub crippled: bool,
    /// `core.symlinks` (default true).
    pub symlinks: bool,
    pub shared: SharedRepository,
    /// `annex.securehashesonly`: refuse content of keys without a secure hash.
    pub secure_hashes_only: bool,
    /// Where hooks live: `core.hooksPath` or `GITDIR/hooks`.
    pub hooks_dir: PathBuf,
    /// `annexgate.fsync` (default false): make received content durable (its data, then
    /// the rename into the object store) before reporting success. git-annex itself does
    /// not fsync objects: after a power loss, content it acknowledged may be missing or,
    /// on file systems that delay allocation, present but short until `git annex fsck`
    /// finds it. With this set, a big upload is written back while it arrives, so the
    /// final wait is short; each small upload costs about one journal commit.
    pub fsync: bool,
}

/// Why git config values do not describe a repository AnnexRepo can serve.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{git_dir}: not a git-annex repository (annex.uuid is not set)")]
    NoUuid { git_dir: PathBuf },
    #[error("{git_dir}: bad annex.uuid {value:?}")]
    BadUuid { git_dir: PathBuf, value: String },
    #[error("{git_dir}: annex.version {version:?} is not supported (version 10 or later is needed; run `git annex upgrade`)")]
    Version { git_dir: PathBuf, version: String },
    #[error("{git_dir}: annex.pidlock is set; pid locking is not supported, so content locks could not be shared with git-annex safely")]
    PidLock { git_dir: PathBuf },
}

/// git's boolean values, as git-annex reads them (`isTrueFalse`).
pub fn git_bool(v: &str) -> Option<bool> {
    let l = v.trim().to_ascii_lowercase();
    match l.as_str() {
        "yes" | "on" | "true" | "1" => Some(true),
        "no" | "off" | "false" | "0" | "" => Some(false),
        s if s.bytes().all(|b| b.is_ascii_digit() || b == b'-') => Some(true),
        _ => None,
    }
}

impl AnnexRepoConfig {
    /// A config with git-annex's defaults for everything but the location and UUID.
    pub fn new(git_dir: impl Into<PathBuf>, bare: bool, uuid: Uuid) -> AnnexRepoConfig {
        let git_dir = git_dir.into();
        let work_tree = if bare {
            None
        } else {
            git_dir.parent().map(Path::to_path_buf)
        };
        AnnexRepoConfig {
            name: work_tree
                .as_deref()
                .unwrap_or(&git_dir)
                .display()
                .to_string(),
            hooks_dir: git_dir.join("hooks"),
            git_dir,
            work_tree,
            bare,
            uuid,
            verify: true,
            disk_reserve: DEFAULT_DISK_RESERVE,
            object_hash: ObjectHash::default(),
            crippled: false,
            symlinks: true,
            shared: SharedRepository::UnShared,
            secure_hashes_only: false,
            fsync: false,
        }
    }

    /// Fill a config from the repository's git config. `lookup` answers a config name in
    /// the lower-case form `git config --list` prints (`annex.uuid`, `core.bare`,
    /// `core.sharedrepository`, `core.hookspath`, ...) with its value.
    pub fn from_git_config(
        git_dir: &Path,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<AnnexRepoConfig, ConfigError> {
        let get_bool = |name: &str, default: bool| -> bool {
            lookup(name).and_then(|v| git_bool(&v)).unwrap_or(default)
        };
        let uuid_text = lookup("annex.uuid").unwrap_or_default();
        if uuid_text.trim().is_empty() {
            return Err(ConfigError::NoUuid {
                git_dir: git_dir.to_path_buf(),
            });
        }
        let uuid = Uuid::parse(uuid_text.trim()).map_err(|_| ConfigError::BadUuid {
            git_dir: git_dir.to_path_buf(),
            value: uuid_text.clone(),
        })?;
        let version = lookup("annex.version").unwrap_or_default();
        match version.trim().parse::<u32>() {
            Ok(v) if v >= 10 => {}
            _ => {
                return Err(ConfigError::Version {
                    git_dir: git_dir.to_path_buf(),
                    version,
                })
            }
        }
        if get_bool("annex.pidlock", false) {
            return Err(ConfigError::PidLock {
                git_dir: git_dir.to_path_buf(),
            });
        }
        let bare = get_bool("core.bare", false);
        let mut cfg = AnnexRepoConfig::new(git_dir, bare, uuid);
        if !bare {
            if let Some(wt) = lookup("core.worktree").filter(|s| !s.is_empty()) {
                let wt = PathBuf::from(wt);
                cfg.work_tree = Some(if wt.is_absolute() {
                    wt
                } else {
                    git_dir.join(wt)
                });
            }
        }
        cfg.verify = get_bool("annex.verify", true);
        cfg.disk_reserve = lookup("annex.diskreserve")
            .and_then(|v| parse_size(&v))
            .unwrap_or(DEFAULT_DISK_RESERVE);
        cfg.object_hash = ObjectHash {
            lower_only: get_bool("annex.tune.objecthashlower", false),
            one_level: get_bool("annex.tune.objecthash1", false),
        };
        cfg.crippled = get_bool("annex.crippledfilesystem", false);
        cfg.symlinks = get_bool("core.symlinks", true);
        cfg.shared = lookup("core.sharedrepository")
            .map(|v| SharedRepository::parse(&v))
            .unwrap_or_default();
        cfg.secure_hashes_only = get_bool("annex.securehashesonly", false);
        cfg.fsync = get_bool("annexgate.fsync", false);
        if let Some(hp) = lookup("core.hookspath").filter(|s| !s.is_empty()) {
            let hp = PathBuf::from(hp);
            // git resolves a relative hooksPath from where hooks run: the top of the work
            // tree, or the git directory of a bare repository.
            cfg.hooks_dir = if hp.is_absolute() {
                hp
            } else {
                cfg.work_tree.as_deref().unwrap_or(git_dir).join(hp)
            };
        }
        Ok(cfg)
    }
}

struct Unit {
    size: f64,
    abbrev: &'static str,
    name: &'static str,
}

const fn u(size: f64, abbrev: &'static str, name: &'static str) -> Unit {
    Unit { size, abbrev, name }
}

/// git-annex's data units (storage, then committee, then bandwidth), in its search order.
const DATA_UNITS: &[Unit] = &[
    u(1e30, "QB", "quettabyte"),
    u(1e27, "RB", "ronnabyte"),
    u(1e24, "YB", "yottabyte"),
    u(1e21, "ZB", "zettabyte"),
    u(1e18, "EB", "exabyte"),
    u(1e15, "PB", "petabyte"),
    u(1e12, "TB", "terabyte"),
    u(1e9, "GB", "gigabyte"),
    u(1e6, "MB", "megabyte"),
    u(1e3, "kB", "kilobyte"),
    u(1.0, "B", "byte"),
    u(1208925819614629174706176.0, "YiB", "yobibyte"),
    u(1180591620717411303424.0, "ZiB", "zebibyte"),
    u(1152921504606846976.0, "EiB", "exbibyte"),
    u(1125899906842624.0, "PiB", "pebibyte"),
    u(1099511627776.0, "TiB", "tebibyte"),
    u(1073741824.0, "GiB", "gibibyte"),
    u(1048576.0, "MiB", "mebibyte"),
    u(1024.0, "KiB", "kibibyte"),
    u(1.0, "B", "byte"),
    u(1e24 / 8.0, "Ybit", "yottabit"),
    u(1e21 / 8.0, "Zbit", "zettabit"),
    u(1e18 / 8.0, "Ebit", "exabit"),
    u(1e15 / 8.0, "Pbit", "petabit"),
    u(1e12 / 8.0, "Tbit", "terabit"),
    u(1e9 / 8.0, "Gbit", "gigabit"),
    u(1e6 / 8.0, "Mbit", "megabit"),
    u(1e3 / 8.0, "kbit", "kilobit"),
];

/// Parse a size the way git-annex's `readSize dataUnits` does: a decimal number, optional
/// spaces, then an optional unit word (abbreviation or name, singular or plural, any case;
/// `m` and `mb` both mean megabytes). No unit means bytes. Negative sizes count as 0.
pub fn parse_size(input: &str) -> Option<u64> {
    let s = input.trim_start();
    let (number, rest) = split_number(s)?;
    let rest = rest.trim_start();
    let unit: String = rest.chars().take_while(|c| c.is_alphabetic()).collect();
    let mult = if unit.is_empty() {
        1.0
    } else {
        let v = unit.to_lowercase();
        DATA_UNITS
            .iter()
            .find(|u| {
                let a = u.abbrev.to_lowercase();
                let n = u.name.to_lowercase();
                a == v || n == v || format!("{n}s") == v || a == format!("{v}b")
            })?
            .size
    };
    let bytes = (number * mult).round_ties_even();
    if bytes.is_nan() || bytes <= 0.0 {
        Some(0)
    } else if bytes >= u64::MAX as f64 {
        Some(u64::MAX)
    } else {
        Some(bytes as u64)
    }
}

/// The longest prefix of `s` that Haskell's `reads :: Double` accepts: `-`? digits
/// (`.` digits)? (`e` `-+`? digits)?.
fn split_number(s: &str) -> Option<(f64, &str)> {
    let b = s.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == int_start {
        return None;
    }
    if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'-' || b[j] == b'+') {
            j += 1;
        }
        let exp_start = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_start {
            i = j;
        }
    }
    let n: f64 = s[..i].parse().ok()?;
    Some((n, &s[i..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn sizes_like_git_annex_reads_them() {
        for (text, want) in [
            ("100", Some(100)),
            ("100 megabytes", Some(100_000_000)),
            ("100mb", Some(100_000_000)),
            ("100m", Some(100_000_000)),
            ("1GB", Some(1_000_000_000)),
            ("1 GiB", Some(1 << 30)),
            ("0.5tb", Some(500_000_000_000)),
            ("2 kilobytes", Some(2000)),
            ("3k", Some(3000)),
            ("1 byte", Some(1)),
            ("7 bytes", Some(7)),
            ("8 Mbit", Some(1_000_000)),
            ("1e3", Some(1000)),
            ("  42 B", Some(42)),
            ("-5", Some(0)),
            ("10 parsecs", None),
            ("lots", None),
            ("", None),
        ] {
            assert_eq!(parse_size(text), want, "{text:?}");
        }
        assert_eq!(parse_size("1000 TB"), Some(1_000_000_000_000_000));
    }

    #[test]
    fn shared_repository_values() {
        assert_eq!(SharedRepository::parse("group"), SharedRepository::Group);
        assert_eq!(SharedRepository::parse("TRUE"), SharedRepository::Group);
        assert_eq!(SharedRepository::parse("world"), SharedRepository::All);
        assert_eq!(SharedRepository::parse("2"), SharedRepository::All);
        assert_eq!(SharedRepository::parse("umask"), SharedRepository::UnShared);
        assert_eq!(
            SharedRepository::parse("0660"),
            SharedRepository::Umask(0o660)
        );
        assert_eq!(SharedRepository::parse("bogus"), SharedRepository::UnShared);
    }

    #[test]
    fn from_git_config_reads_what_git_annex_reads() {
        let vals: HashMap<&str, &str> = [
            ("annex.uuid", "5b0d7f4a-0000-4000-8000-000000000001"),
            ("annex.version", "10"),
            ("core.bare", "true"),
            ("annex.verify", "false"),
            ("annex.diskreserve", "1 GB"),
            ("annex.tune.objecthash1", "true"),
            ("core.sharedrepository", "group"),
            ("core.hookspath", "myhooks"),
            ("annexgate.fsync", "true"),
        ]
        .into_iter()
        .collect();
        let cfg = AnnexRepoConfig::from_git_config(Path::new("/srv/r.git"), |k| {
            vals.get(k).map(|v| v.to_string())
        })
        .unwrap();
        assert!(cfg.bare);
        assert!(cfg.work_tree.is_none());
        assert!(!cfg.verify);
        assert_eq!(cfg.disk_reserve, 1_000_000_000);
        assert!(cfg.object_hash.one_level);
        assert!(!cfg.object_hash.lower_only);
        assert_eq!(cfg.shared, SharedRepository::Group);
        assert_eq!(cfg.hooks_dir, Path::new("/srv/r.git/myhooks"));
        assert!(cfg.fsync);
        assert_eq!(cfg.uuid.as_str(), "5b0d7f4a-0000-4000-8000-000000000001");

        let nonbare = AnnexRepoConfig::from_git_config(Path::new("/w/.git"), |k| match k {
            "annex.uuid" => Some("u1".into()),
            "annex.version" => Some("10".into()),
            "annex.diskreserve" => Some("nonsense".into()),
            _ => None,
        })
        .unwrap();
        assert!(!nonbare.bare);
        assert_eq!(nonbare.work_tree.as_deref(), Some(Path::new("/w")));
        assert!(nonbare.verify);
        assert_eq!(nonbare.disk_reserve, DEFAULT_DISK_RESERVE);
        assert_eq!(nonbare.hooks_dir, Path::new("/w/.git/hooks"));
        assert!(!nonbare.fsync, "git-annex's behaviour unless asked");
    }

    #[test]
    fn from_git_config_refuses_what_it_cannot_serve_safely() {
        let p = Path::new("/r");
        assert!(matches!(
            AnnexRepoConfig::from_git_config(p, |_| None),
            Err(ConfigError::NoUuid { .. })
        ));
        assert!(matches!(
            AnnexRepoConfig::from_git_config(p, |k| match k {
                "annex.uuid" => Some("u".into()),
                "annex.version" => Some("8".into()),
                _ => None,
            }),
            Err(ConfigError::Version { .. })
        ));
        assert!(matches!(
            AnnexRepoConfig::from_git_config(p, |k| match k {
                "annex.uuid" => Some("u".into()),
                "annex.version" => Some("10".into()),
                "annex.pidlock" => Some("true".into()),
                _ => None,
            }),
            Err(ConfigError::PidLock { .. })
        ));
    }
}
