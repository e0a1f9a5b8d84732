//! Where a key's files live in a git-annex repository:
//!
//! ```text
//! GITDIR/annex/objects/<hashdir>/<keyFile>/<keyFile>        the content
//! GITDIR/annex/objects/<hashdir>/<keyFile>/<keyFile>.lck    content lock (v10)
//!                                          <keyFile>.rtm    retention timestamp
//!                                          <keyFile>.rtl    lock for writing .rtm
//! GITDIR/annex/tmp/<keyFile>                                 partial upload (resume)
//! GITDIR/annex/transfer/download/lck/lck.<keyFile>           transfer lock for receiving
//! GITDIR/annex/transfer/download/<uuid>/<keyFile>            transfer info
//! ```
//!
//! A non-bare repository puts new content under `hashdirmixed` and looks in `hashdirlower`
//! second; a bare one (or a crippled file system without symlinks) the other way round;
//! with the ObjectHashLower difference only `hashdirlower` is used.
//!
//! `keyFile` escapes `/`, so a key is always one path component; on top of that every
//! name is checked here against the file-name length limit, so no key can make a path
//! that escapes its directory or that the file system cannot hold.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::config::AnnexRepoConfig;
pub(crate) use crate::node::localfs::{checked_key_file, NAME_MAX};
use crate::types::hashdir::{
    hash_dir_lower, hash_dir_lower_one, hash_dir_mixed, hash_dir_mixed_one,
};
use crate::types::{Key, Uuid};

/// The longest suffix or prefix we add to a key file name (`.lck`, `.rtm`, `lck.`).
pub const AFFIX_MAX: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Mixed,
    Lower,
}

/// Paths of one repository.
#[derive(Debug, Clone)]
pub struct Layout {
    pub annex_dir: PathBuf,
    pub objects_dir: PathBuf,
    hashes: Vec<Hash>,
    one_level: bool,
}

impl Layout {
    pub fn new(cfg: &AnnexRepoConfig) -> Layout {
        let annex_dir = cfg.git_dir.join("annex");
        let hashes = if cfg.bare {
            vec![Hash::Lower, Hash::Mixed]
        } else if cfg.object_hash.lower_only {
            vec![Hash::Lower]
        } else if cfg.crippled && !cfg.symlinks {
            vec![Hash::Lower, Hash::Mixed]
        } else {
            vec![Hash::Mixed, Hash::Lower]
        };
        Layout {
            objects_dir: annex_dir.join("objects"),
            annex_dir,
            hashes,
            one_level: cfg.object_hash.one_level,
        }
    }

    fn hash_dir(&self, key: &Key, h: Hash) -> String {
        match (h, self.one_level) {
            (Hash::Mixed, false) => hash_dir_mixed(key),
            (Hash::Mixed, true) => hash_dir_mixed_one(key),
            (Hash::Lower, false) => hash_dir_lower(key),
            (Hash::Lower, true) => hash_dir_lower_one(key),
        }
    }

    /// Every place the key's content may be, in lookup order; the first is where new
    /// content goes.
    pub fn object_candidates(&self, key: &Key, kf: &[u8]) -> Vec<PathBuf> {
        let name = OsStr::from_bytes(kf);
        self.hashes
            .iter()
            .map(|&h| {
                self.objects_dir
                    .join(self.hash_dir(key, h))
                    .join(name)
                    .join(name)
            })
            .collect()
    }

    /// The content's path: where it is, or where it would go (git-annex's
    /// `gitAnnexLocation`).
    pub fn object_path(&self, key: &Key, kf: &[u8]) -> PathBuf {
        let cands = self.object_candidates(key, kf);
        cands
            .iter()
            .find(|p| p.exists())
            .unwrap_or(&cands[0])
            .clone()
    }

    /// Number of directories between `annex/objects` and the content file (hash levels
    /// plus the key's own directory).
    pub fn object_depth(&self) -> usize {
        if self.one_level {
            2
        } else {
            3
        }
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.annex_dir.join("tmp")
    }

    pub fn tmp_path(&self, kf: &[u8]) -> PathBuf {
        self.tmp_dir().join(OsStr::from_bytes(kf))
    }

    pub fn othertmp_dir(&self) -> PathBuf {
        self.annex_dir.join("othertmp")
    }

    pub fn othertmp_lock(&self) -> PathBuf {
        self.annex_dir.join("othertmp.lck")
    }

    pub fn download_dir(&self) -> PathBuf {
        self.annex_dir.join("transfer").join("download")
    }

    /// The lock every git-annex since 10.20240227 takes to receive a key, whoever it
    /// comes from.
    pub fn download_lock(&self, kf: &[u8]) -> PathBuf {
        self.download_dir().join("lck").join(prefixed(b"lck.", kf))
    }

    /// The per-sender lock older git-annex took (still taken by current git-annex, after
    /// the one above) and the transfer info file, for a sender whose UUID is a safe
    /// directory name.
    pub fn download_peer_paths(&self, peer: &Uuid, kf: &[u8]) -> Option<(PathBuf, PathBuf)> {
        let u = peer.as_str();
        if u.is_empty() || u == "." || u == ".." || u.contains('/') || u.len() > NAME_MAX {
            return None;
        }
        let dir = self.download_dir().join(u);
        Some((
            dir.join(prefixed(b"lck.", kf)),
            dir.join(OsStr::from_bytes(kf)),
        ))
    }
}

fn prefixed(prefix: &[u8], kf: &[u8]) -> PathBuf {
    let mut v = prefix.to_vec();
    v.extend_from_slice(kf);
    PathBuf::from(OsStr::from_bytes(&v))
}

/// `path` with `suffix` appended to its last component.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeError;

    fn cfg(bare: bool) -> AnnexRepoConfig {
        AnnexRepoConfig::new("/r/.git", bare, Uuid::parse("u").unwrap())
    }

    #[test]
    fn layouts_match_git_annex() {
        let key = Key::from_str(
            "SHA256E-s11--b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9.txt",
        )
        .unwrap();
        let kf = checked_key_file(&key, AFFIX_MAX).unwrap();
        let k = key.to_text().into_owned();
        let nb = Layout::new(&cfg(false));
        assert_eq!(
            nb.object_candidates(&key, &kf),
            vec![
                PathBuf::from(format!("/r/.git/annex/objects/mJ/76/{k}/{k}")),
                PathBuf::from(format!("/r/.git/annex/objects/d76/b9c/{k}/{k}")),
            ]
        );
        let b = Layout::new(&cfg(true));
        assert_eq!(
            b.object_candidates(&key, &kf)[0],
            PathBuf::from(format!("/r/.git/annex/objects/d76/b9c/{k}/{k}"))
        );
        let mut one = cfg(false);
        one.object_hash.one_level = true;
        one.object_hash.lower_only = true;
        let l = Layout::new(&one);
        assert_eq!(
            l.object_candidates(&key, &kf),
            vec![PathBuf::from(format!("/r/.git/annex/objects/d76/{k}/{k}"))]
        );
        assert_eq!(l.object_depth(), 2);
        assert_eq!(
            nb.download_lock(&kf),
            PathBuf::from(format!("/r/.git/annex/transfer/download/lck/lck.{k}"))
        );
        assert_eq!(
            nb.tmp_path(&kf),
            PathBuf::from(format!("/r/.git/annex/tmp/{k}"))
        );
    }

    #[test]
    fn hostile_keys_stay_one_component() {
        for k in [
            "WORM--../../../etc/passwd",
            "URL--http://x/../../y",
            "WORM--/abs",
            "WORM--..",
        ] {
            let key = Key::from_str(k).unwrap();
            let kf = checked_key_file(&key, AFFIX_MAX).unwrap();
            assert!(!kf.contains(&b'/'), "{k}");
            let l = Layout::new(&cfg(false));
            for p in l.object_candidates(&key, &kf) {
                assert!(p.starts_with("/r/.git/annex/objects/"), "{k}: {p:?}");
                assert_eq!(p.components().count(), 9, "{k}: {p:?}");
            }
            assert_eq!(
                l.tmp_path(&kf).parent().unwrap(),
                Path::new("/r/.git/annex/tmp")
            );
        }
        let long = Key::from_str(&format!("WORM--{}", "a".repeat(248))).unwrap();
        assert!(matches!(
            checked_key_file(&long, AFFIX_MAX),
            Err(NodeError::BadKey { .. })
        ));
        assert!(checked_key_file(&long, 0).is_ok());
        let l = Layout::new(&cfg(false));
        for bad in ["..", ".", "a/b", "../x"] {
            assert!(l
                .download_peer_paths(&Uuid::parse(bad).unwrap(), b"k")
                .is_none());
        }
        assert!(l
            .download_peer_paths(&Uuid::parse("abc").unwrap(), b"k")
            .is_some());
    }
}
