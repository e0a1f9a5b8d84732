//! Where a directory special remote keeps a key, and which ways of storing it to look for.
//!
//! ```text
//! <dir>/<hashdirlower(K)>/<keyFile(K)>/<keyFile(K)>   content (new content goes here)
//! <dir>/<hashdirmixed(K)>/<keyFile(K)>/<keyFile(K)>   where old git-annex versions put it
//! <dir>/tmp/<keyFile(K)>/<keyFile(K)>                 an upload in progress
//! <dir>/tmp/annexgate/lck.<keyFile(K)>                our lock for uploading K
//! ```
//!
//! A chunked key is stored as its chunk keys `K-S<size>-C<n>` (n from 1), each in the
//! layout above; the hash directories are those of K itself, so all chunks share them.
//! The lock directory's name has no `--`, so no key's file name can collide with it.
//!
//! A key may be held in several ways at once: whole, and in chunks of one or more sizes
//! (the chunk log records the counts). [`chunkings`] lists the ways to look for, in
//! git-annex's order of likelihood (`Remote/Helper/Chunked.hs`, `chunkKeys`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::node::localfs::checked_key_file;
use crate::node::NodeError;
use crate::types::hashdir::{hash_dir_lower, hash_dir_mixed};
use crate::types::Key;

/// Bytes the lock file name adds to a key file name (`lck.`).
pub(super) const LOCK_AFFIX: usize = 4;

/// One way a key can be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunking {
    /// The whole content in one file named after the key.
    Whole,
    /// `count` chunks of `size` bytes (the last one shorter). `speculative`: not in the
    /// chunk log, guessed from the remote's current `chunk=` setting and the key's size.
    Fixed {
        size: u64,
        count: u64,
        speculative: bool,
    },
}

impl Chunking {
    /// The keys whose files hold the content, in order.
    pub(super) fn pieces<'a>(&self, key: &'a Key) -> Box<dyn Iterator<Item = Key> + 'a> {
        match *self {
            Chunking::Whole => Box::new(std::iter::once(key.clone())),
            Chunking::Fixed { size, count, .. } => {
                Box::new((1..=count).map(move |n| key.chunk(size, n)))
            }
        }
    }
}

/// The number of chunks of `chunk_size` bytes that hold `size` bytes (at least one: empty
/// content is one empty chunk, as git-annex stores it).
pub(super) fn chunk_count(size: u64, chunk_size: u64) -> u64 {
    size.div_ceil(chunk_size).max(1)
}

/// Whether git-annex stores this key's content in chunks on a chunked remote: only keys
/// whose content can never differ (git-annex's `isStableKey`): hash backends, WORM and
/// the git-remote-annex keys. URL keys and external backends' keys go whole.
pub(super) fn is_stable(key: &Key) -> bool {
    crate::types::backend::is_verifiable(key)
        || matches!(key.variety(), b"WORM" | b"GITBUNDLE" | b"GITMANIFEST")
}

/// The ways to look for `key` on a remote configured with `configured` chunks, given the
/// chunkings the chunk log records (`(size, count)`; count 0 = removed), most likely
/// first.
///
/// As git-annex: a remote without chunks is looked at whole first, then in the recorded
/// chunkings; a chunked remote in the recorded chunkings, then whole, then — when the
/// key's size is known and the log lacks it — in the chunking its current setting would
/// have made. Beyond git-annex, a recorded chunking that cannot hold the key's known
/// size (a damaged log) is left out, since its chunks could not make up the content;
/// chunk keys themselves are only looked at whole.
pub(super) fn chunkings(
    key: &Key,
    configured: Option<u64>,
    recorded: &[(u64, u64)],
) -> Vec<Chunking> {
    if key.is_chunk() {
        return vec![Chunking::Whole];
    }
    let mut rec: Vec<Chunking> = Vec::new();
    for &(size, count) in recorded {
        if size == 0 || count == 0 {
            continue;
        }
        if key.size().is_some_and(|s| chunk_count(s, size) != count) {
            continue;
        }
        let c = Chunking::Fixed {
            size,
            count,
            speculative: false,
        };
        if !rec.contains(&c) {
            rec.push(c);
        }
    }
    let mut out = Vec::new();
    match configured {
        None => {
            out.push(Chunking::Whole);
            out.extend(rec);
        }
        Some(size) => {
            out.extend(rec.iter().copied());
            out.push(Chunking::Whole);
            if let Some(ks) = key.size() {
                let count = chunk_count(ks, size);
                let logged = rec.iter().any(|c| {
                    matches!(c, Chunking::Fixed { size: s, count: n, .. } if *s == size && *n == count)
                });
                if !logged {
                    out.push(Chunking::Fixed {
                        size,
                        count,
                        speculative: true,
                    });
                }
            }
        }
    }
    out
}

/// Paths of one directory remote.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub(super) top: PathBuf,
}

impl Layout {
    pub(super) fn new(top: &Path) -> Layout {
        Layout {
            top: top.to_path_buf(),
        }
    }

    /// The key's directories: where new content goes (lower hash) first, then where old
    /// git-annex versions put it (mixed hash).
    pub(super) fn key_dirs(&self, key: &Key) -> Result<[PathBuf; 2], NodeError> {
        let kf = checked_key_file(key, 0)?;
        let name = OsStr::from_bytes(&kf);
        Ok([
            self.top.join(hash_dir_lower(key)).join(name),
            self.top.join(hash_dir_mixed(key)).join(name),
        ])
    }

    /// The places the key's content file may be, in lookup order.
    pub(super) fn key_files(&self, key: &Key) -> Result<[PathBuf; 2], NodeError> {
        let kf = checked_key_file(key, 0)?;
        let name = OsStr::from_bytes(&kf);
        let [a, b] = self.key_dirs(key)?;
        Ok([a.join(name), b.join(name)])
    }

    pub(super) fn tmp_root(&self) -> PathBuf {
        self.top.join("tmp")
    }

    /// The temporary directory an upload of `key` (or of one chunk key) is assembled in,
    /// and the file in it.
    pub(super) fn tmp_dir_and_file(&self, key: &Key) -> Result<(PathBuf, PathBuf), NodeError> {
        let kf = checked_key_file(key, 0)?;
        let name = OsStr::from_bytes(&kf);
        let dir = self.tmp_root().join(name);
        let file = dir.join(name);
        Ok((dir, file))
    }

    pub(super) fn lock_dir(&self) -> PathBuf {
        self.tmp_root().join("annexgate")
    }

    /// The lock a process of ours holds while receiving `key`.
    pub(super) fn upload_lock(&self, key: &Key) -> Result<PathBuf, NodeError> {
        let kf = checked_key_file(key, LOCK_AFFIX)?;
        let mut name = b"lck.".to_vec();
        name.extend_from_slice(&kf);
        Ok(self.lock_dir().join(OsStr::from_bytes(&name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::from_str(s).unwrap()
    }

    const K: &str =
        "SHA256E-s2500--a65d0da09a182a95b418784291b5f80e9bcafb76a320aca381da1eab2fc1e780";

    #[test]
    fn paths_are_git_annexs() {
        // Seen in a directory remote filled by `git annex copy --to`.
        let l = Layout::new(Path::new("/s"));
        let k = key(K);
        let [lower, mixed] = l.key_files(&k).unwrap();
        assert_eq!(lower, PathBuf::from(format!("/s/f0d/a54/{K}/{K}")));
        assert!(mixed.starts_with("/s/") && mixed.ends_with(format!("{K}/{K}")));
        assert_ne!(lower, mixed);
        let c = k.chunk(1024, 3);
        let ck = c.to_text().into_owned();
        assert_eq!(
            ck,
            "SHA256E-s2500-S1024-C3--a65d0da09a182a95b418784291b5f80e9bcafb76a320aca381da1eab2fc1e780"
        );
        assert_eq!(
            l.key_files(&c).unwrap()[0],
            PathBuf::from(format!("/s/f0d/a54/{ck}/{ck}"))
        );
        assert_eq!(
            l.tmp_dir_and_file(&k).unwrap(),
            (
                PathBuf::from(format!("/s/tmp/{K}")),
                PathBuf::from(format!("/s/tmp/{K}/{K}"))
            )
        );
        assert_eq!(
            l.upload_lock(&k).unwrap(),
            PathBuf::from(format!("/s/tmp/annexgate/lck.{K}"))
        );
    }

    #[test]
    fn hostile_keys_stay_inside() {
        let l = Layout::new(Path::new("/s"));
        for k in [
            "WORM--../../../etc/passwd",
            "URL--http://x/../../y",
            "WORM--/abs",
            "WORM--..",
        ] {
            let k = key(k);
            for p in l.key_files(&k).unwrap() {
                assert!(p.starts_with("/s/"), "{p:?}");
                assert_eq!(p.components().count(), 6, "{p:?}");
            }
            let (d, f) = l.tmp_dir_and_file(&k).unwrap();
            assert_eq!(d.parent().unwrap(), Path::new("/s/tmp"));
            assert_eq!(f.parent().unwrap(), d);
        }
        let long = key(&format!("WORM--{}", "a".repeat(248)));
        assert!(l.key_files(&long).is_ok());
        assert!(matches!(
            l.upload_lock(&long),
            Err(NodeError::BadKey { .. })
        ));
        let longer = key(&format!("WORM--{}", "a".repeat(250)));
        assert!(matches!(
            l.key_files(&longer),
            Err(NodeError::BadKey { .. })
        ));
    }

    #[test]
    fn chunkings_in_git_annexs_order() {
        let k = key(K);
        let fixed = |size, count, speculative| Chunking::Fixed {
            size,
            count,
            speculative,
        };
        assert_eq!(chunkings(&k, None, &[]), vec![Chunking::Whole]);
        assert_eq!(
            chunkings(&k, None, &[(1024, 3), (1000, 0)]),
            vec![Chunking::Whole, fixed(1024, 3, false)]
        );
        assert_eq!(
            chunkings(&k, Some(1024), &[]),
            vec![Chunking::Whole, fixed(1024, 3, true)]
        );
        assert_eq!(
            chunkings(&k, Some(1024), &[(1024, 3)]),
            vec![fixed(1024, 3, false), Chunking::Whole]
        );
        assert_eq!(
            chunkings(&k, Some(2048), &[(1024, 3)]),
            vec![fixed(1024, 3, false), Chunking::Whole, fixed(2048, 2, true)]
        );
        // A count that cannot hold 2500 bytes, a zero size: left out.
        assert_eq!(
            chunkings(&k, None, &[(1024, 2), (0, 5)]),
            vec![Chunking::Whole]
        );
        // Without a size nothing can be guessed; recorded counts are taken as they are.
        let url = key("URL--http://x/y");
        assert_eq!(
            chunkings(&url, Some(1024), &[(10, 7)]),
            vec![fixed(10, 7, false), Chunking::Whole]
        );
        assert_eq!(
            chunkings(&k.chunk(1024, 1), Some(1024), &[(1024, 3)]),
            vec![Chunking::Whole]
        );
        let pieces: Vec<Key> = fixed(1024, 3, false).pieces(&k).collect();
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[2].chunk_offset(), Some(2048));
        assert_eq!(chunk_count(0, 1024), 1);
        assert_eq!(chunk_count(1024, 1024), 1);
        assert_eq!(chunk_count(1025, 1024), 2);
        assert!(is_stable(&k));
        assert!(is_stable(&key("WORM-s1-m1--x")));
        assert!(!is_stable(&url));
        assert!(!is_stable(&key("XFOO-s1--x")));
    }
}
