//! Per-key facts from the branch: a [`KeyFacts`] whose location log is read when the key
//! is looked up, and whose metadata (`.log.met`), URLs (`.log.web`), equivalent keys
//! (`.log.ek`), `.gitattributes` values and local content are read only if an expression
//! asks for them.
//!
//! The engine's questions cannot fail, so a read error during evaluation is kept and
//! reported by [`KeyReader::take_error`] after the decision; callers must check it and
//! not use a decision made while one occurred.

use std::cell::{OnceCell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::attrs::{AnnexAttrs, AttrError, CheckAttr};
use crate::branch::log::metadata::MetaDataLog;
use crate::branch::log::paths::{key_log_path, location_log_key, BranchHash, KeyLog};
use crate::branch::log::presence::{current_urls, equivalent_keys};
use crate::branch::log::{LocationLog, PresenceLog};
use crate::branch::repo::{BranchReader, BranchView, GitConfig, GitRepo, RepoError};
use crate::placement::KeyFacts;
use crate::types::hashdir::{
    hash_dir_lower, hash_dir_lower_one, hash_dir_mixed, hash_dir_mixed_one,
};
use crate::types::key::key_file;
use crate::types::{Key, Uuid};

/// Errors reading per-key facts.
#[derive(Debug, thiserror::Error)]
pub enum KeyFactsError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Attr(#[from] AttrError),
}

/// Where the local repository keeps object files, to answer `present` for it.
#[derive(Debug, Clone)]
pub struct LocalObjects {
    objects: PathBuf,
    lower_only: bool,
    one_level: bool,
    /// The first-level hash directories that exist (listed once): a key whose
    /// directories are missing is absent without a `stat`.
    top_dirs: OnceCell<HashSet<Vec<u8>>>,
}

impl LocalObjects {
    /// From the repository's annex directory and config (`annex.tune.objecthashlower`,
    /// `annex.tune.objecthash1`).
    pub fn new(annex_dir: &Path, cfg: &GitConfig) -> LocalObjects {
        LocalObjects {
            objects: annex_dir.join("objects"),
            lower_only: cfg.get_bool("annex.tune.objecthashlower") == Some(true),
            one_level: cfg.get_bool("annex.tune.objecthash1") == Some(true),
            top_dirs: OnceCell::new(),
        }
    }

    /// Whether the object file of `key` exists (under either hash directory layout).
    pub fn has(&self, key: &Key) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let tops = self.top_dirs.get_or_init(|| {
            fs::read_dir(&self.objects)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.file_name().as_bytes().to_vec())
                        .collect()
                })
                .unwrap_or_default()
        });
        if tops.is_empty() {
            return false;
        }
        let kf = key_file(key);
        let name = std::ffi::OsStr::from_bytes(&kf);
        let mut dirs = Vec::with_capacity(2);
        match (self.lower_only, self.one_level) {
            (true, false) => dirs.push(hash_dir_lower(key)),
            (true, true) => dirs.push(hash_dir_lower_one(key)),
            (false, false) => {
                dirs.push(hash_dir_mixed(key));
                dirs.push(hash_dir_lower(key));
            }
            (false, true) => {
                dirs.push(hash_dir_mixed_one(key));
                dirs.push(hash_dir_lower_one(key));
            }
        }
        dirs.iter().any(|d| {
            let top = d.split('/').next().unwrap_or_default();
            tops.contains(top.as_bytes())
                && fs::symlink_metadata(self.objects.join(d).join(name).join(name))
                    .is_ok_and(|m| m.is_file())
        })
    }
}

/// Every key's logged locations, read in one walk of the branch: faster than one lookup
/// per key when most keys are asked about (the walk reads the logs in object order over
/// several threads). The same content as per-key reads of the view: the tip's logs with
/// journal entries and unmerged siblings applied.
#[derive(Debug, Default)]
pub struct LocationIndex {
    by_key: HashMap<Key, Vec<Uuid>>,
}

impl LocationIndex {
    pub fn load(
        repo: &GitRepo,
        view: &BranchView<'_>,
        hash: BranchHash,
        threads: usize,
    ) -> Result<LocationIndex, RepoError> {
        let parts = repo.fold_location_logs(
            view.tip(),
            hash,
            threads,
            Vec::new,
            |acc: &mut Vec<(Key, Vec<Uuid>)>, key, content| {
                let present = LocationLog::parse(content).present();
                if !present.is_empty() {
                    acc.push((key, present));
                }
            },
        )?;
        let mut by_key: HashMap<Key, Vec<Uuid>> =
            HashMap::with_capacity(parts.iter().map(Vec::len).sum());
        for part in parts {
            by_key.extend(part);
        }
        for path in view.overridden_location_logs(hash)? {
            if let Some(key) = location_log_key(&path, hash) {
                let present = LocationLog::parse(&view.get(&path)?).present();
                by_key.insert(key, present);
            }
        }
        Ok(LocationIndex { by_key })
    }

    /// The logged locations of a key (empty when it has no location log).
    pub fn get(&self, key: &Key) -> &[Uuid] {
        self.by_key.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// Reads per-key facts from one view of the branch.
pub struct KeyReader<'v, 'r> {
    reader: BranchReader<'v, 'r>,
    index: Option<LocationIndex>,
    hash: BranchHash,
    local: Option<LocalObjects>,
    work_tree: Option<PathBuf>,
    annex_dir: PathBuf,
    attrs: RefCell<Option<CheckAttr>>,
    attr_cache: RefCell<HashMap<Vec<u8>, AnnexAttrs>>,
    unused: OnceCell<HashSet<Key>>,
    error: RefCell<Option<KeyFactsError>>,
}

impl std::fmt::Debug for KeyReader<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyReader")
            .field("reader", &self.reader)
            .finish()
    }
}

impl<'v, 'r> KeyReader<'v, 'r> {
    /// `local`: how to check the local repository's own content (`None` answers `present`
    /// from the location log); `work_tree`: where `git check-attr` runs (`None`: no
    /// `.gitattributes` values, as in a bare repository).
    pub fn new(
        reader: BranchReader<'v, 'r>,
        hash: BranchHash,
        annex_dir: PathBuf,
        local: Option<LocalObjects>,
        work_tree: Option<PathBuf>,
    ) -> KeyReader<'v, 'r> {
        KeyReader {
            reader,
            index: None,
            hash,
            local,
            work_tree,
            annex_dir,
            attrs: RefCell::new(None),
            attr_cache: RefCell::new(HashMap::new()),
            unused: OnceCell::new(),
            error: RefCell::new(None),
        }
    }

    /// Answer location questions from `index` instead of reading each key's log.
    pub fn with_index(mut self, index: LocationIndex) -> Self {
        self.index = Some(index);
        self
    }

    /// The facts of one key; its location log is read now.
    pub fn key(&self, key: Key) -> Result<BranchKey<'_, 'v, 'r>, KeyFactsError> {
        let locations = match &self.index {
            Some(idx) => idx.get(&key).to_vec(),
            None => {
                let log = self
                    .reader
                    .get(&key_log_path(&key, KeyLog::Location, self.hash))?;
                LocationLog::parse(&log).present()
            }
        };
        Ok(BranchKey {
            r: self,
            key,
            locations,
            metadata: OnceCell::new(),
            urls: OnceCell::new(),
        })
    }

    /// An error met while answering a lazy question since the last call, if any.
    pub fn take_error(&self) -> Option<KeyFactsError> {
        self.error.borrow_mut().take()
    }

    fn note<T: Default>(&self, r: Result<T, KeyFactsError>) -> T {
        match r {
            Ok(v) => v,
            Err(e) => {
                let mut slot = self.error.borrow_mut();
                if slot.is_none() {
                    *slot = Some(e);
                }
                T::default()
            }
        }
    }

    fn read_log(&self, key: &Key, kind: KeyLog) -> Result<Vec<u8>, KeyFactsError> {
        Ok(self.reader.get(&key_log_path(key, kind, self.hash))?)
    }

    fn attrs(&self, file: &[u8]) -> AnnexAttrs {
        if let Some(a) = self.attr_cache.borrow().get(file) {
            return a.clone();
        }
        let Some(top) = &self.work_tree else {
            return AnnexAttrs::default();
        };
        let got = (|| {
            let mut slot = self.attrs.borrow_mut();
            if slot.is_none() {
                *slot = Some(CheckAttr::start(top)?);
            }
            let ca = slot.as_mut().expect("started");
            ca.get(file)
        })();
        match got {
            Ok(a) => {
                self.attr_cache
                    .borrow_mut()
                    .insert(file.to_vec(), a.clone());
                a
            }
            Err(e) => {
                // A broken check-attr is not retried for every key.
                self.attrs.borrow_mut().take();
                self.note::<()>(Err(e.into()));
                AnnexAttrs::default()
            }
        }
    }

    /// `GITDIR/annex/unused`: lines `N KEY [TIMESTAMP]` written by `git annex unused`.
    fn unused_keys(&self) -> &HashSet<Key> {
        self.unused.get_or_init(|| {
            let text = fs::read(self.annex_dir.join("unused")).unwrap_or_default();
            text.split(|&b| b == b'\n')
                .filter_map(|l| {
                    let rest = &l[l.iter().position(|&b| b == b' ')? + 1..];
                    let k = match rest.iter().rposition(|&b| b == b' ') {
                        Some(i) => &rest[..i],
                        None => rest,
                    };
                    Key::parse(k).ok()
                })
                .collect()
        })
    }
}

/// One key's facts (see [`KeyReader::key`]).
pub struct BranchKey<'k, 'v, 'r> {
    r: &'k KeyReader<'v, 'r>,
    key: Key,
    locations: Vec<Uuid>,
    metadata: OnceCell<Vec<(String, Vec<u8>)>>,
    urls: OnceCell<Vec<String>>,
}

impl BranchKey<'_, '_, '_> {
    pub fn locations(&self) -> &[Uuid] {
        &self.locations
    }
}

impl KeyFacts for BranchKey<'_, '_, '_> {
    fn key(&self) -> &Key {
        &self.key
    }

    fn locations(&self) -> &[Uuid] {
        &self.locations
    }

    fn present_here(&self) -> Option<bool> {
        self.r.local.as_ref().map(|l| l.has(&self.key))
    }

    fn metadata_any(&self, pred: &mut dyn FnMut(&str, &[u8]) -> bool) -> bool {
        let md = self.metadata.get_or_init(|| {
            let log = self.r.note(self.r.read_log(&self.key, KeyLog::MetaData));
            MetaDataLog::parse(&log)
                .current()
                .into_iter()
                .flat_map(|(f, vs)| {
                    let name = f.as_str().to_string();
                    vs.into_iter().map(move |v| (name.clone(), v))
                })
                .collect()
        });
        md.iter().any(|(f, v)| pred(f, v))
    }

    fn url_any(&self, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        let urls = self.urls.get_or_init(|| {
            let log = self.r.note(self.r.read_log(&self.key, KeyLog::Url));
            current_urls(&PresenceLog::parse(&log))
        });
        urls.iter().any(|u| pred(u))
    }

    fn numcopies_attr(&self, file: &[u8]) -> Option<String> {
        self.r.attrs(file).numcopies
    }

    fn mincopies_attr(&self, file: &[u8]) -> Option<String> {
        self.r.attrs(file).mincopies
    }

    fn is_unused(&self) -> bool {
        self.r.unused_keys().contains(&self.key)
    }

    fn equivalent_keys(&self) -> Vec<Key> {
        let log = self
            .r
            .note(self.r.read_log(&self.key, KeyLog::EquivalentKeys));
        equivalent_keys(&PresenceLog::parse(&log))
    }
}
