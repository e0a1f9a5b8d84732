//! The git side of the git-annex branch: the only module that talks to git (through
//! libgit2).
//!
//! * Opening a repository (bare or not) and reading/writing its git config.
//! * Reading branch files the way git-annex reads them: the file at `refs/heads/git-annex`,
//!   replaced by git-annex's uncommitted journal entry for it if there is one
//!   (`annex/journal/`, names escaped by [`journal_name`]), and union-merged with the same
//!   file on every sibling branch git-annex has not merged yet (any ref named
//!   `…/git-annex`: `refs/remotes/*/git-annex`, `refs/heads/synced/git-annex`, …; minus
//!   those listed in `annex/ignoredrefs` or `annex/mergedrefs`, and those already contained
//!   in the branch).
//! * Walking every location log of a commit, and listing the files two commits differ in.
//! * Committing: new file contents go into a commit on top of `refs/heads/git-annex`, and
//!   the ref moves only if it still points where the commit was built (compare-and-swap);
//!   on a race everything is rebuilt from the new tip. The journal and index of git-annex
//!   are never written. While moving the ref we hold git-annex's journal lock
//!   (`annex/journal.lck`), so git-annex is not in the middle of a change; if git-annex has
//!   an uncommitted journal entry for a file we changed, git-annex would later stage that
//!   entry over our version, so the same tree is also committed to the side ref
//!   [`SIDE_REF`], which git-annex merges (by union) like any sibling branch.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use git2::{ErrorCode, ObjectType, Oid, Repository};

use super::log::paths::{journal_name, journal_path, location_log_key, BranchHash};
use super::log::union_merge_bytes;
use super::pack::{Kind as PackKind, PackReader, Packs};
use super::packwrite::{object_id, PackBuilder};
use super::watch::{Changes, RefWatch};
use crate::types::{Key, Uuid};

/// The git-annex branch.
pub const BRANCH_REF: &str = "refs/heads/git-annex";
/// Where commits that git-annex must merge (rather than fast-forward over) are put.
pub const SIDE_REF: &str = "refs/annexgate/git-annex";

/// How many times a commit is rebuilt when the branch moves underneath it.
const MAX_ATTEMPTS: u32 = 50;
/// How long to wait for git-annex's journal lock.
const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors of the git layer.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("cannot open a git repository at {path}: {source}")]
    Open { path: PathBuf, source: git2::Error },
    #[error("{path} has no git-annex branch ({BRANCH_REF}); run `git annex init` there first")]
    NoBranch { path: PathBuf },
    #[error("git failed while {what}: {source}")]
    Git {
        what: &'static str,
        source: git2::Error,
    },
    #[error("git config {key}: {source}")]
    Config { key: String, source: git2::Error },
    #[error("cannot access {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot write the new git-annex branch objects: {source}")]
    WritePack { source: io::Error },
    #[error("not a valid branch file path: {path:?}")]
    BadPath { path: String },
    #[error("the git-annex branch kept moving; gave up after {attempts} attempts")]
    TooManyRaces { attempts: u32 },
    #[error("timed out after {secs}s waiting for git-annex's journal lock {path}")]
    LockTimeout { path: PathBuf, secs: u64 },
}

fn git(what: &'static str) -> impl FnOnce(git2::Error) -> RepoError {
    move |source| RepoError::Git { what, source }
}
fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RepoError + '_ {
    move |source| RepoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A git object name (commit, tree or blob).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(Oid);

impl ObjectId {
    pub fn parse(hex: &str) -> Option<ObjectId> {
        Oid::from_str(hex).ok().map(ObjectId)
    }
}
impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.0)
    }
}

/// A git repository with git-annex's branch.
pub struct GitRepo {
    repo: Repository,
    git_dir: PathBuf,
    common_dir: PathBuf,
    work_tree: Option<PathBuf>,
    /// For each sibling branch commit compared with the branch: the branch commit it was
    /// last compared with, and whether that commit contains it (see [`Self::contains`]).
    contains_cache: std::sync::Mutex<std::collections::HashMap<Oid, (Oid, bool)>>,
    /// The `…/git-annex` names in `packed-refs` as last read, with that file's stat.
    packed_siblings: std::sync::Mutex<Option<(FileStamp, Vec<String>)>>,
    /// Packs this `GitRepo` wrote since it last counted them, and the `git repack` it
    /// started, if any (see [`Self::pack_written`]).
    packs_written: std::sync::Mutex<(usize, Option<std::process::Child>)>,
    /// When the object database was last opened afresh, and the pack directory's stat
    /// then (see [`Self::renew_odb`]).
    odb_opened: std::sync::Mutex<(Instant, FileStamp)>,
    /// The git config as last read, and when (see [`Self::recent_config`]).
    config_cache: std::sync::Mutex<Option<(Instant, std::sync::Arc<GitConfig>)>>,
    /// Whether that config names private repositories (asked by every view), with the
    /// config it was worked out from.
    private_known: std::sync::Mutex<Option<(std::sync::Arc<GitConfig>, bool)>>,
    /// Refs and ref listings as last read, with the stat of the files they came from
    /// (see [`RefCache`]).
    ref_cache: std::sync::Mutex<RefCache>,
    /// The kernel's notice of ref changes, and the refs a view read under it (see
    /// [`super::watch`]).
    ref_watch: std::sync::Mutex<WatchState>,
}

/// Whether a [`GitRepo`] watches its refs (see [`super::watch`]), and what a view read
/// while watching.
enum WatchState {
    /// Not tried yet: after this many views. A repository opened for one look never
    /// sets up watches.
    Untried(u8),
    /// Refused by the kernel, or failed: views check the files themselves.
    Off,
    On {
        watch: RefWatch,
        known: Option<WatchedRefs>,
    },
}

impl Default for WatchState {
    fn default() -> Self {
        WatchState::Untried(0)
    }
}

/// The refs a view reads (kept, under a watch, while it reports no change since).
#[derive(Clone)]
struct WatchedRefs {
    at: Instant,
    tip: ObjectId,
    /// Every sibling branch ref and the commit it names.
    named: Vec<(String, Oid)>,
    /// The commits of `annex/ignoredrefs` and `annex/mergedrefs`.
    skip: HashSet<Oid>,
    /// The siblings not merged into `tip`.
    unmerged: Vec<(String, ObjectId)>,
}

/// What a view needs of the refs, remembered between views: every request of a gateway
/// opens a view, and reading the branch tip, the sibling branches and git-annex's lists of
/// merged and ignored refs afresh was some 70 system calls a time. A remembered reading
/// is used again while the files it came from stat the same (git replaces a ref file by
/// renaming a new one over it: another inode; a directory gets a new modification time
/// when an entry is added, removed or renamed in it), and for at most [`REFS_TRUST`]:
/// with the coarse timestamps of older kernels two changes within one clock tick could
/// stat alike, so nothing is trusted longer than that. (git-annex itself reads the
/// sibling branches once per process.)
#[derive(Default)]
struct RefCache {
    /// Ref name -> the stat of its loose file and of `packed-refs`, when read, and the
    /// object it names (`None`: no such ref).
    refs: HashMap<String, (FileStamp, FileStamp, Instant, Option<Oid>)>,
    /// The loose sibling branch names, with the stat of every directory listed for them.
    loose_siblings: Option<(Vec<(PathBuf, FileStamp)>, Instant, Vec<String>)>,
    /// The commits in `annex/ignoredrefs` and `annex/mergedrefs`, with those files' stat.
    skip: Option<([FileStamp; 2], Instant, HashSet<Oid>)>,
}

/// The longest a remembered reading of refs is used (see [`RefCache`]).
const REFS_TRUST: Duration = Duration::from_secs(1);

/// How many packs a `GitRepo` writes between counting the packs (see
/// [`GitRepo::pack_written`]).
const PACK_CHECK_EVERY: usize = 8;
/// Above how many packs a background `git repack --geometric=2` is started.
const PACK_LIMIT: usize = 24;

/// How often at most a `GitRepo` opens its object database afresh (see
/// [`GitRepo::renew_odb`]).
const ODB_AGE: Duration = Duration::from_secs(1);

/// How long a git config read for a branch view is used (changes made through this
/// `GitRepo` are seen at once; changes by other programs within this time).
const CONFIG_AGE: Duration = Duration::from_secs(1);

/// How many single-parent commits [`GitRepo::contains`] follows back from the branch tip
/// to reach a commit it already compared a sibling with.
const CONTAINS_WALK: usize = 64;

impl Drop for GitRepo {
    fn drop(&mut self) {
        // A repack still running is waited for elsewhere, so it does not stay a zombie.
        let child = self
            .packs_written
            .get_mut()
            .map(|st| st.1.take())
            .unwrap_or_else(|p| p.into_inner().1.take());
        if let Some(mut child) = child {
            if let Ok(None) = child.try_wait() {
                let _ = std::thread::Builder::new()
                    .name("annexgate-repack".into())
                    .spawn(move || child.wait());
            }
        }
    }
}

impl fmt::Debug for GitRepo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitRepo")
            .field("git_dir", &self.git_dir)
            .finish()
    }
}

impl GitRepo {
    /// Open the repository at `path`: a work tree, its `.git`, or a bare repository.
    pub fn open(path: impl AsRef<Path>) -> Result<GitRepo, RepoError> {
        let path = path.as_ref();
        let repo = Repository::open(path).map_err(|source| RepoError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(GitRepo::from_repo(repo))
    }

    /// Find the repository containing `path` (searching parent directories).
    pub fn discover(path: impl AsRef<Path>) -> Result<GitRepo, RepoError> {
        let path = path.as_ref();
        let repo = Repository::discover(path).map_err(|source| RepoError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(GitRepo::from_repo(repo))
    }

    fn from_repo(repo: Repository) -> GitRepo {
        let git_dir = repo.path().to_path_buf();
        let common_dir = repo.commondir().to_path_buf();
        let work_tree = repo.workdir().map(Path::to_path_buf);
        GitRepo {
            repo,
            git_dir,
            common_dir,
            work_tree,
            contains_cache: Default::default(),
            packed_siblings: Default::default(),
            packs_written: Default::default(),
            odb_opened: std::sync::Mutex::new((Instant::now(), FileStamp(None))),
            config_cache: Default::default(),
            ref_cache: Default::default(),
            ref_watch: Default::default(),
            private_known: Default::default(),
        }
    }

    /// Whether the config (as [`Self::recent_config`] has it) names private repositories.
    fn private_known(&self) -> Result<bool, RepoError> {
        let cfg = self.recent_config()?;
        let mut known = self.private_known.lock().unwrap_or_else(|p| p.into_inner());
        match known.as_ref() {
            Some((c, k)) if std::sync::Arc::ptr_eq(c, &cfg) => Ok(*k),
            _ => {
                let k = !cfg.private_uuids().is_empty();
                *known = Some((cfg, k));
                Ok(k)
            }
        }
    }

    fn ref_cache(&self) -> std::sync::MutexGuard<'_, RefCache> {
        self.ref_cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The object ref `name` names (`None`: no such ref), remembered while its loose file
    /// and `packed-refs` (stat as `packed`) stay as they were (see [`RefCache`]).
    fn ref_target(&self, name: &str, packed: FileStamp) -> Result<Option<Oid>, git2::Error> {
        let loose = FileStamp::of(&self.common_dir.join(name));
        if let Some((l, p, at, oid)) = self.ref_cache().refs.get(name) {
            if *l == loose && *p == packed && at.elapsed() < REFS_TRUST {
                return Ok(*oid);
            }
        }
        let at = Instant::now();
        let oid = match self.repo.refname_to_id(name) {
            Ok(oid) => Some(oid),
            Err(e) if e.code() == ErrorCode::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut cache = self.ref_cache();
        if cache.refs.len() > 4096 {
            cache.refs.clear();
        }
        cache
            .refs
            .insert(name.to_string(), (loose, packed, at, oid));
        Ok(oid)
    }

    /// The branch tip as a view reads it: [`Self::branch_tip`], remembered (see
    /// [`RefCache`]).
    fn view_tip(&self, packed: FileStamp) -> Result<ObjectId, RepoError> {
        match self.ref_target(BRANCH_REF, packed) {
            Ok(Some(oid)) => Ok(ObjectId(oid)),
            Ok(None) => Err(RepoError::NoBranch {
                path: self.git_dir.clone(),
            }),
            Err(source) => Err(RepoError::Git {
                what: "resolving refs/heads/git-annex",
                source,
            }),
        }
    }

    /// Forget what was read of ref `name` (after it could not be updated from the value
    /// read: somebody else moved it).
    fn forget_ref(&self, name: &str) {
        self.ref_cache().refs.remove(name);
        if let WatchState::On { known, .. } = &mut *self.watch_state() {
            *known = None;
        }
    }

    fn watch_state(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.ref_watch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether commit `tip` has `side` among its ancestors (`graph_descendant_of`), cheaply
    /// when asked again after the branch moved on. A branch view asks this for every
    /// sibling branch, and a full answer walks the branch's whole history when the sibling
    /// is not in it; a gateway opens a view per request while its recorder adds commits.
    /// So each answer is remembered, and for a later tip the single-parent commits back
    /// from it (the recorder's and git-annex's own commits are such) are followed to the
    /// remembered commit: the ancestors of `tip` are then those commits plus the
    /// remembered commit's ancestors. A merge on the way, or a commit farther than
    /// [`CONTAINS_WALK`], falls back to the full answer.
    fn contains(&self, tip: Oid, side: Oid) -> Result<bool, git2::Error> {
        let known = self
            .contains_cache
            .lock()
            .ok()
            .and_then(|c| c.get(&side).copied());
        let mut answer = None;
        if let Some((known_tip, known_answer)) = known {
            let mut c = tip;
            for _ in 0..CONTAINS_WALK {
                if c == side && c != tip {
                    answer = Some(true);
                    break;
                }
                if c == known_tip {
                    answer = Some(known_answer);
                    break;
                }
                let commit = self.repo.find_commit(c)?;
                if commit.parent_count() != 1 {
                    break;
                }
                c = commit.parent_id(0)?;
            }
        }
        let answer = match answer {
            Some(a) => a,
            None => self.repo.graph_descendant_of(tip, side)?,
        };
        if let Ok(mut cache) = self.contains_cache.lock() {
            cache.insert(side, (tip, answer));
        }
        Ok(answer)
    }

    /// The git directory (`.git`, or the repository itself when bare).
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }
    /// The top of the work tree, if the repository has one.
    pub fn work_tree(&self) -> Option<&Path> {
        self.work_tree.as_deref()
    }
    pub fn is_bare(&self) -> bool {
        self.work_tree.is_none()
    }
    /// `GITDIR/annex` (of the main repository for linked work trees).
    pub fn annex_dir(&self) -> PathBuf {
        self.common_dir.join("annex")
    }

    // ---------------------------------------------------------------- git config

    /// A consistent snapshot of the repository's git config (all levels).
    pub fn config(&self) -> Result<GitConfig, RepoError> {
        let mut cfg = self.repo.config().map_err(git("reading git config"))?;
        let snap = cfg.snapshot().map_err(git("reading git config"))?;
        Ok(GitConfig::from_git2(&snap))
    }

    /// The git config, read again only if the last read is older than [`CONFIG_AGE`] or
    /// this `GitRepo` changed it since: for what every request reads (a branch view asks
    /// whether private repositories are configured), where a full read would cost more
    /// than the request.
    pub fn recent_config(&self) -> Result<std::sync::Arc<GitConfig>, RepoError> {
        let mut cache = self.config_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, cfg)) = cache.as_ref() {
            if at.elapsed() < CONFIG_AGE {
                return Ok(cfg.clone());
            }
        }
        let cfg = std::sync::Arc::new(self.config()?);
        *cache = Some((Instant::now(), cfg.clone()));
        Ok(cfg)
    }

    fn forget_config(&self) {
        *self.config_cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn local_config(&self) -> Result<git2::Config, RepoError> {
        self.repo
            .config()
            .and_then(|c| c.open_level(git2::ConfigLevel::Local))
            .map_err(git("opening the repository's git config"))
    }

    /// Set `key` to `value` in the repository's own config (replacing all values).
    pub fn set_config(&self, key: &str, value: &str) -> Result<(), RepoError> {
        self.forget_config();
        self.unset_config(key)?;
        let mut c = self.local_config()?;
        c.set_str(key, value).map_err(|source| RepoError::Config {
            key: key.to_string(),
            source,
        })
    }

    /// Add one more value to a multi-valued key.
    pub fn add_config(&self, key: &str, value: &str) -> Result<(), RepoError> {
        self.forget_config();
        let mut c = self.local_config()?;
        // A regex that matches no existing value makes libgit2 append.
        c.set_multivar(key, "^$^", value)
            .map_err(|source| RepoError::Config {
                key: key.to_string(),
                source,
            })
    }

    /// Remove every value of `key` from the repository's own config (no error if unset).
    pub fn unset_config(&self, key: &str) -> Result<(), RepoError> {
        self.forget_config();
        let mut c = self.local_config()?;
        match c.remove_multivar(key, ".*") {
            Ok(()) => Ok(()),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(()),
            Err(source) => Err(RepoError::Config {
                key: key.to_string(),
                source,
            }),
        }
    }

    // ---------------------------------------------------------------- reading the branch

    /// The commit `refs/heads/git-annex` points at.
    pub fn branch_tip(&self) -> Result<ObjectId, RepoError> {
        match self.repo.refname_to_id(BRANCH_REF) {
            Ok(oid) => Ok(ObjectId(oid)),
            Err(e) if e.code() == ErrorCode::NotFound => Err(RepoError::NoBranch {
                path: self.git_dir.clone(),
            }),
            Err(source) => Err(RepoError::Git {
                what: "resolving refs/heads/git-annex",
                source,
            }),
        }
    }

    /// Open the object database afresh if the pack directory changed and the last
    /// opening is older than [`ODB_AGE`]. libgit2 adds new packs as it finds them but
    /// keeps every pack it ever opened mapped, also after a repack deleted it; with a
    /// pack per branch commit and the repacks that roll them up, a long-running process
    /// would keep growing. Objects already read stay in the repository's cache.
    fn renew_odb(&self) {
        let mut st = self.odb_opened.lock().unwrap_or_else(|p| p.into_inner());
        if st.0.elapsed() < ODB_AGE {
            return;
        }
        let objects = self.common_dir.join("objects");
        let stamp = FileStamp::of(&objects.join("pack"));
        let unchanged = st.1 == stamp && stamp.is_some();
        *st = (Instant::now(), stamp);
        if unchanged {
            return;
        }
        let Some(path) = objects.to_str() else {
            return;
        };
        // Only reading goes through libgit2 (new objects are written as packs by
        // `packwrite`), so the read-only backends of an "alternate" serve: the loose and
        // pack backends of the directory, and its own alternates.
        let fresh = git2::Odb::new().and_then(|odb| {
            odb.add_disk_alternate(path)?;
            self.repo.set_odb(&odb)
        });
        if let Err(e) = fresh {
            tracing::debug!(
                "cannot reopen the object database of {}: {e}",
                self.git_dir.display()
            );
        }
    }

    /// A view of the branch as git-annex would read it now.
    pub fn view(&self) -> Result<BranchView<'_>, RepoError> {
        self.renew_odb();
        let (tip, siblings) = self.view_refs()?;
        let tip_commit = self
            .repo
            .find_commit(tip.0)
            .map_err(git("reading the git-annex branch"))?;
        let tip_tree = tip_commit
            .tree()
            .map_err(git("reading the git-annex branch"))?;
        let mut sibling_trees = Vec::new();
        for (name, oid) in &siblings {
            let tree = self
                .repo
                .find_commit(oid.0)
                .and_then(|c| c.tree())
                .map_err(git("reading a sibling git-annex branch"))?;
            sibling_trees.push((name.clone(), *oid, tree));
        }
        let private_known = self.private_known()?;
        let annex = self.annex_dir();
        Ok(BranchView {
            repo: self,
            tip,
            tip_tree,
            siblings: sibling_trees,
            journal: annex.join("journal"),
            private_journal: private_known.then(|| annex.join("journal-private")),
            trees: Default::default(),
        })
    }

    /// The branch tip and the unmerged sibling branches, for a view: as read before if
    /// the watch on the refs (see [`super::watch`]) saw no change since (for at most
    /// [`REFS_TRUST`]), only the tip read again if only the branch moved; otherwise from
    /// the files, each checked by its stat (see [`RefCache`]).
    fn view_refs(&self) -> Result<(ObjectId, Vec<(String, ObjectId)>), RepoError> {
        let mut st = self.watch_state();
        if let WatchState::Untried(n) = &mut *st {
            *n += 1;
            if *n >= 2 {
                *st = match RefWatch::new(&self.common_dir, &self.annex_dir()) {
                    Some(watch) => WatchState::On { watch, known: None },
                    None => WatchState::Off,
                };
            }
        }
        let WatchState::On { watch, known } = &mut *st else {
            drop(st);
            let k = self.read_refs()?;
            return Ok((k.tip, k.unmerged));
        };
        let changes = match watch.changes() {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("watching the refs of {}: {e}", self.git_dir.display());
                *st = WatchState::Off;
                drop(st);
                return self.view_refs();
            }
        };
        let fresh = known.as_ref().is_some_and(|k| k.at.elapsed() < REFS_TRUST);
        match (changes, known.as_mut()) {
            (Changes::None, Some(k)) if fresh => return Ok((k.tip, k.unmerged.clone())),
            (Changes::Tip, Some(k)) if fresh => {
                let tip = self.view_tip(self.packed_stamp())?;
                if tip != k.tip {
                    k.unmerged = self.unmerged_from(tip.0, &k.named, &k.skip)?;
                    k.tip = tip;
                }
                return Ok((k.tip, k.unmerged.clone()));
            }
            _ => {}
        }
        // Read afresh. Directories that came since are watched first, so a change made
        // while reading is noticed next time.
        *known = None;
        if let Err(e) = watch.arm() {
            tracing::debug!("watching the refs of {}: {e}", self.git_dir.display());
            *st = WatchState::Off;
            drop(st);
            return self.view_refs();
        }
        let k = self.read_refs()?;
        let out = (k.tip, k.unmerged.clone());
        *known = Some(k);
        Ok(out)
    }

    fn packed_stamp(&self) -> FileStamp {
        FileStamp::of(&self.common_dir.join("packed-refs"))
    }

    /// The refs a view reads, from the files (each checked by its stat, see
    /// [`RefCache`]).
    fn read_refs(&self) -> Result<WatchedRefs, RepoError> {
        let at = Instant::now();
        let packed = self.packed_stamp();
        let tip = self.view_tip(packed)?;
        let (named, skip) = self.sibling_refs(packed)?;
        let unmerged = self.unmerged_from(tip.0, &named, &skip)?;
        Ok(WatchedRefs {
            at,
            tip,
            named,
            skip,
            unmerged,
        })
    }

    /// Whether this repository's views are told of ref changes by a watch, with a
    /// reading of the refs kept under it.
    #[cfg(test)]
    pub(crate) fn watching(&self) -> bool {
        matches!(*self.watch_state(), WatchState::On { known: Some(_), .. })
    }

    /// The sibling git-annex branches as git-annex determines them: refs whose name ends
    /// in `/git-annex` with the commit each names, and the commits in
    /// `annex/ignoredrefs` and `annex/mergedrefs`.
    fn sibling_refs(
        &self,
        packed: FileStamp,
    ) -> Result<(Vec<(String, Oid)>, HashSet<Oid>), RepoError> {
        let skip = self.skipped_refs()?;
        let mut named: Vec<(String, Oid)> = Vec::new();
        for name in self.sibling_names(packed)? {
            // Gone since the listing, or not naming a commit: skipped.
            let Ok(Some(oid)) = self.ref_target(&name, packed) else {
                continue;
            };
            if self.repo.find_commit(oid).is_err() {
                continue;
            }
            named.push((name, oid));
        }
        Ok((named, skip))
    }

    /// Of the sibling branches `named`, those not merged into the branch at `tip`: one
    /// per commit, minus the commits in `skip` and those `tip` contains.
    fn unmerged_from(
        &self,
        tip: Oid,
        named: &[(String, Oid)],
        skip: &HashSet<Oid>,
    ) -> Result<Vec<(String, ObjectId)>, RepoError> {
        let mut seen: HashSet<Oid> = HashSet::new();
        let mut out = Vec::new();
        for (name, oid) in named {
            let oid = *oid;
            if oid == tip || skip.contains(&oid) || !seen.insert(oid) {
                continue;
            }
            let contained = self
                .contains(tip, oid)
                .map_err(git("comparing git-annex branches"))?;
            if !contained {
                out.push((name.clone(), ObjectId(oid)));
            }
        }
        Ok(out)
    }

    /// The commits listed in `annex/ignoredrefs` and `annex/mergedrefs` (remembered while
    /// the two files stat the same, see [`RefCache`]).
    fn skipped_refs(&self) -> Result<HashSet<Oid>, RepoError> {
        let annex = self.annex_dir();
        let files = [annex.join("ignoredrefs"), annex.join("mergedrefs")];
        let stamps = [FileStamp::of(&files[0]), FileStamp::of(&files[1])];
        if let Some((s, at, skip)) = &self.ref_cache().skip {
            if *s == stamps && at.elapsed() < REFS_TRUST {
                return Ok(skip.clone());
            }
        }
        let at = Instant::now();
        let mut skip: HashSet<Oid> = HashSet::new();
        for p in &files {
            match fs::read(p) {
                Ok(text) => {
                    for line in text.split(|&b| b == b'\n') {
                        let first = line.split(|&b| b == b'\t' || b == b' ').next();
                        if let Some(oid) = first
                            .and_then(|s| std::str::from_utf8(s).ok())
                            .and_then(|s| Oid::from_str(s.trim()).ok())
                        {
                            skip.insert(oid);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(p)(e)),
            }
        }
        self.ref_cache().skip = Some((stamps, at, skip.clone()));
        Ok(skip)
    }

    /// The names of the refs that are sibling git-annex branches (`…/git-annex` other than
    /// the branch itself), sorted, without reading every ref: the loose ones by listing
    /// the directories under `refs/` (names only), the packed ones from `packed-refs`,
    /// parsed again only when that file changed. (libgit2's ref iterator opens and reads
    /// every loose ref; that was a tenth of a gateway request's time.)
    fn sibling_names(&self, packed_stamp: FileStamp) -> Result<Vec<String>, RepoError> {
        let mut names: BTreeSet<String> = self.loose_sibling_names()?.into_iter().collect();
        let packed = self.common_dir.join("packed-refs");
        let stamp = packed_stamp;
        let mut cache = self
            .packed_siblings
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let fresh = matches!(cache.as_ref(), Some((s, _)) if stamp.is_some() && *s == stamp);
        if !fresh {
            let mut found = Vec::new();
            match fs::read(&packed) {
                Ok(text) => {
                    for line in text.split(|&b| b == b'\n') {
                        // "<oid> <name>"; "# pack-refs…" and "^<oid>" (peeled) lines skipped.
                        let Some(name) = line.splitn(2, |&b| b == b' ').nth(1) else {
                            continue;
                        };
                        if line.first() == Some(&b'#') || line.first() == Some(&b'^') {
                            continue;
                        }
                        if let Ok(name) = std::str::from_utf8(name) {
                            if name.ends_with("/git-annex") && name != BRANCH_REF {
                                found.push(name.to_string());
                            }
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&packed)(e)),
            }
            *cache = Some((stamp, found));
        }
        if let Some((_, found)) = cache.as_ref() {
            names.extend(found.iter().cloned());
        }
        Ok(names.into_iter().collect())
    }

    /// The loose refs named `…/git-annex` (other than the branch), found by listing the
    /// directories under `refs/` (names only); the listing is remembered while every
    /// directory in it stats the same (see [`RefCache`]).
    fn loose_sibling_names(&self) -> Result<Vec<String>, RepoError> {
        if let Some((dirs, at, names)) = &self.ref_cache().loose_siblings {
            if at.elapsed() < REFS_TRUST && dirs.iter().all(|(d, s)| FileStamp::of(d) == *s) {
                return Ok(names.clone());
            }
        }
        let at = Instant::now();
        let mut names = Vec::new();
        let mut listed = Vec::new();
        let mut dirs = vec![(self.common_dir.join("refs"), String::from("refs"))];
        while let Some((dir, name)) = dirs.pop() {
            // Stat before listing: a change made while listing shows next time.
            listed.push((dir.clone(), FileStamp::of(&dir)));
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io_err(&dir))?;
                let Some(file) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let full = format!("{name}/{file}");
                match entry.file_type() {
                    Ok(t) if t.is_dir() => dirs.push((entry.path(), full)),
                    Ok(_) if file == "git-annex" && full != BRANCH_REF => names.push(full),
                    _ => {}
                }
            }
        }
        self.ref_cache().loose_siblings = Some((listed, at, names.clone()));
        Ok(names)
    }

    /// A file as committed at `commit` (no journal, no siblings); `None` if absent.
    pub fn read_at(&self, commit: ObjectId, path: &[u8]) -> Result<Option<Vec<u8>>, RepoError> {
        let tree = self
            .repo
            .find_commit(commit.0)
            .and_then(|c| c.tree())
            .map_err(git("reading a commit"))?;
        read_tree_file(&self.repo, &tree, path)
    }

    /// Call `f` with the key and content of every location log in `commit`'s tree, in
    /// tree order, streaming (one blob in memory at a time). `f` returns false to stop.
    pub fn for_each_location_log(
        &self,
        commit: ObjectId,
        hash: BranchHash,
        mut f: impl FnMut(Key, &[u8]) -> bool,
    ) -> Result<(), RepoError> {
        let tree = self
            .repo
            .find_commit(commit.0)
            .and_then(|c| c.tree())
            .map_err(git("reading a commit"))?;
        walk_location_logs(&self.repo, &tree, hash, &mut |key, _path, oid| {
            let blob = self.repo.find_blob(oid).map_err(git("reading a log"))?;
            Ok(f(key, blob.content()))
        })
        .map(|_| ())
    }

    /// Fold over every location log in `commit`'s tree, split over `threads` threads
    /// (each with its own handle on the repository). Each thread starts from `init()`
    /// and calls `step` with each key and log content; the threads' results are
    /// returned. This is the fast path for reading a whole branch (100k logs) at once:
    /// objects are read raw (no libgit2 object parsing or caching), one tree level at a
    /// time, each level in object-id order, which keeps the pack index lookups of
    /// neighbouring reads in the same pages.
    pub fn fold_location_logs<T: Send>(
        &self,
        commit: ObjectId,
        hash: BranchHash,
        threads: usize,
        init: impl Fn() -> T + Sync,
        step: impl Fn(&mut T, Key, &[u8]) + Sync,
    ) -> Result<Vec<T>, RepoError> {
        let root = self
            .repo
            .find_commit(commit.0)
            .map_err(git("reading a commit"))?
            .tree_id();
        let threads = threads.max(1);
        let path = self.repo.path().to_path_buf();
        let packs = self.open_packs();
        let packs = packs.as_ref();
        // Directories to read at the current level: (path with trailing '/', id).
        let mut dirs: Vec<Placed<(Vec<u8>, Oid)>> =
            vec![(position(packs, root), (Vec::new(), root))];
        for _ in 1..hash.depth() {
            let parts = in_parallel(&path, packs, threads, &dirs, |objs, chunk| {
                let mut sub = Vec::new();
                for (at, (prefix, id)) in chunk {
                    let tree = objs.read_placed(*at, *id, ObjectType::Tree)?;
                    for (mode, name, oid) in RawTree::new(&tree) {
                        let oid = oid?;
                        if mode == b"40000" {
                            let mut p = prefix.clone();
                            p.extend_from_slice(name);
                            p.push(b'/');
                            sub.push((position(packs, oid), (p, oid)));
                        }
                    }
                }
                Ok(sub)
            })?;
            dirs = parts.into_iter().flatten().collect();
            sort_placed(&mut dirs, |a| a.1);
        }
        // The last directory level lists the logs.
        let parts = in_parallel(&path, packs, threads, &dirs, |objs, chunk| {
            let mut logs = Vec::new();
            for (at, (prefix, id)) in chunk {
                let tree = objs.read_placed(*at, *id, ObjectType::Tree)?;
                for (mode, name, oid) in RawTree::new(&tree) {
                    let oid = oid?;
                    if mode != b"40000" && mode != b"160000" && name.ends_with(b".log") {
                        let mut p = prefix.clone();
                        p.extend_from_slice(name);
                        if let Some(key) = location_log_key(&p, hash) {
                            logs.push((position(packs, oid), (key, oid)));
                        }
                    }
                }
            }
            Ok(logs)
        })?;
        let mut placed: Vec<Placed<(Key, Oid)>> = parts.into_iter().flatten().collect();
        sort_placed(&mut placed, |a| a.1);
        in_parallel(&path, packs, threads, &placed, |objs, chunk| {
            let mut acc = init();
            for (at, (key, id)) in chunk {
                let blob = objs.read_placed(*at, *id, ObjectType::Blob)?;
                step(&mut acc, key.clone(), &blob);
            }
            Ok(acc)
        })
    }

    /// Many blobs at once, in the order asked: read in object-id order over `threads`
    /// threads (see [`GitRepo::fold_location_logs`]). A missing object or one that is not
    /// a blob is an error.
    pub fn read_blobs(&self, ids: &[ObjectId], threads: usize) -> Result<Vec<Vec<u8>>, RepoError> {
        let order: Vec<(Oid, usize)> = ids.iter().enumerate().map(|(i, id)| (id.0, i)).collect();
        let packs = self.open_packs();
        let order = by_position(packs.as_ref(), order, |a| a.0);
        let path = self.repo.path().to_path_buf();
        let parts = in_parallel(
            &path,
            packs.as_ref(),
            threads.max(1),
            &order,
            |objs, chunk| {
                let mut out = Vec::with_capacity(chunk.len());
                for (at, (id, i)) in chunk {
                    out.push((*i, objs.read_placed(*at, *id, ObjectType::Blob)?));
                }
                Ok(out)
            },
        )?;
        let mut result: Vec<Vec<u8>> = vec![Vec::new(); ids.len()];
        for (i, data) in parts.into_iter().flatten() {
            result[i] = data;
        }
        Ok(result)
    }

    /// The location logs that differ between two commits, with their blob at each side
    /// (`None` where absent), reading trees raw and only where the two commits differ.
    pub fn changed_location_logs(
        &self,
        from: ObjectId,
        to: ObjectId,
        hash: BranchHash,
    ) -> Result<Vec<(Key, Option<ObjectId>, Option<ObjectId>)>, RepoError> {
        let root = |c: ObjectId| -> Result<Oid, RepoError> {
            Ok(self
                .repo
                .find_commit(c.0)
                .map_err(git("reading a commit"))?
                .tree_id())
        };
        let (a, b) = (root(from)?, root(to)?);
        self.with_objects(|objs| {
            let mut out = Vec::new();
            diff_raw(
                objs,
                Some(a),
                Some(b),
                hash,
                hash.depth(),
                &mut Vec::new(),
                &mut out,
            )?;
            Ok(out)
        })
    }

    /// This repository's packs, for our own reader (none if they cannot be read: then
    /// libgit2 reads everything).
    fn open_packs(&self) -> Option<Packs> {
        Packs::open(&self.common_dir.join("objects"))
            .map_err(|e| tracing::debug!("{e}; reading through libgit2 only"))
            .ok()
    }

    /// Run `f` with a reader of this repository's objects (packs first, then libgit2).
    fn with_objects<T>(
        &self,
        f: impl FnOnce(&mut Objects<'_>) -> Result<T, RepoError>,
    ) -> Result<T, RepoError> {
        let packs = self.open_packs();
        let odb = self
            .repo
            .odb()
            .map_err(git("opening the object database"))?;
        let mut objects = Objects {
            odb,
            pack: packs.as_ref().map(Packs::reader),
        };
        f(&mut objects)
    }

    /// The files that differ between two commits of the branch (added, changed or removed).
    pub fn changed_files(&self, from: ObjectId, to: ObjectId) -> Result<Vec<Vec<u8>>, RepoError> {
        let tree = |c: ObjectId| {
            self.repo
                .find_commit(c.0)
                .and_then(|c| c.tree())
                .map_err(git("reading a commit"))
        };
        let (a, b) = (tree(from)?, tree(to)?);
        let mut opts = git2::DiffOptions::new();
        opts.skip_binary_check(true);
        let diff = self
            .repo
            .diff_tree_to_tree(Some(&a), Some(&b), Some(&mut opts))
            .map_err(git("comparing commits"))?;
        let mut out = Vec::with_capacity(diff.deltas().len());
        for d in diff.deltas() {
            let file = if d.new_file().exists() {
                d.new_file()
            } else {
                d.old_file()
            };
            if let Some(p) = file.path_bytes() {
                out.push(p.to_vec());
            }
        }
        Ok(out)
    }

    /// A summary of what decides how this repository serves as a gateway: its git config
    /// files, the journal directory, and the top-level logs (`uuid.log`, `group.log`,
    /// preferred content, `maxsize.log`, `proxy.log`, `cluster.log`, ...) of every
    /// git-annex branch ref. Location logs live in subdirectories, so recording locations
    /// leaves it as it is. Two equal values: none of that changed in between.
    pub fn setup_fingerprint(&self) -> Result<u64, RepoError> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for p in [
            self.common_dir.join("config"),
            self.git_dir.join("config"),
            self.annex_dir().join("journal"),
        ] {
            match fs::metadata(&p) {
                Ok(m) => (m.len(), m.modified().ok()).hash(&mut h),
                Err(e) if e.kind() == io::ErrorKind::NotFound => 0u8.hash(&mut h),
                Err(e) => return Err(io_err(&p)(e)),
            }
        }
        let mut tops: Vec<(Vec<u8>, Oid)> = Vec::new();
        let refs = self.repo.references().map_err(git("listing refs"))?;
        for r in refs {
            let r = r.map_err(git("listing refs"))?;
            let name = r.name_bytes();
            if name != BRANCH_REF.as_bytes() && !name.ends_with(b"/git-annex") {
                continue;
            }
            let Ok(tree) = r.peel_to_tree() else {
                continue;
            };
            for e in tree.iter() {
                if e.kind() == Some(git2::ObjectType::Blob) {
                    tops.push((e.name_bytes().to_vec(), e.id()));
                }
            }
        }
        tops.sort();
        tops.dedup();
        tops.hash(&mut h);
        Ok(h.finish())
    }

    // ---------------------------------------------------------------- work tree files

    /// The entries of the git index (stage 0 only), in index order: what `git ls-files`
    /// lists. Empty for a bare repository.
    pub fn index_entries(&self) -> Result<Vec<IndexEntry>, RepoError> {
        if self.is_bare() {
            return Ok(Vec::new());
        }
        let index = self.repo.index().map_err(git("reading the git index"))?;
        let mut out = Vec::with_capacity(index.len());
        for e in index.iter() {
            // Stage bits are 12-13 of the flags.
            if (e.flags >> 12) & 3 != 0 {
                continue;
            }
            out.push(IndexEntry {
                path: e.path,
                mode: e.mode,
                id: ObjectId(e.id),
                size: e.file_size,
            });
        }
        Ok(out)
    }

    /// A blob's content.
    pub fn blob(&self, id: ObjectId) -> Result<Vec<u8>, RepoError> {
        let blob = self.repo.find_blob(id.0).map_err(git("reading a blob"))?;
        Ok(blob.content().to_vec())
    }

    // ---------------------------------------------------------------- committing

    /// Commit new contents for some files on top of the branch (compare-and-swap, retried
    /// on races with the same contents).
    pub fn commit(
        &self,
        changes: &[(Vec<u8>, Vec<u8>)],
        message: &str,
    ) -> Result<CommitOutcome, RepoError> {
        self.update(message, |_| Ok(changes.to_vec()))
    }

    /// Compute changes from the current branch and commit them: `edit` sees a fresh view
    /// of the branch on every attempt and returns (path, new content) pairs; files whose
    /// content is unchanged are left alone. The ref moves only if it still points at the
    /// commit the changes were built on; otherwise `edit` runs again on the new tip.
    pub fn update<F>(&self, message: &str, mut edit: F) -> Result<CommitOutcome, RepoError>
    where
        F: FnMut(&BranchView<'_>) -> Result<Vec<(Vec<u8>, Vec<u8>)>, RepoError>,
    {
        for attempt in 1..=MAX_ATTEMPTS {
            let view = self.view()?;
            let changes = edit(&view)?;
            // The new objects (log blobs, the trees above them, the commit) go into one
            // new pack (see `packwrite`).
            let mut pack = PackBuilder::new();
            let mut tree_changes = BTreeMap::new();
            let mut changed: Vec<Vec<u8>> = Vec::new();
            // The last content given for a path counts.
            let changes: BTreeMap<Vec<u8>, Vec<u8>> = changes.into_iter().collect();
            for (path, content) in &changes {
                check_path(path)?;
                let raw = object_id(PackKind::Blob, content);
                let id = Oid::from_bytes(&raw).map_err(git("hashing a log file"))?;
                if view.tip_tree_entry(path)? == Some(id) {
                    continue;
                }
                let id = pack
                    .add_hashed(PackKind::Blob, raw, content)
                    .map_err(|e| RepoError::WritePack { source: e })?;
                insert_tree_change(&mut tree_changes, path, id)?;
                changed.push(path.clone());
            }
            if changed.is_empty() {
                return Ok(CommitOutcome {
                    commit: None,
                    attempts: attempt,
                    side_ref: false,
                    files: 0,
                });
            }
            let tree_id = write_tree(&self.repo, Some(&view.tip_tree), &tree_changes, &mut pack)?;
            let sig = self.signature()?;
            let commit_body = commit_object(&tree_id, &view.tip.0, &sig, message);
            let new = pack
                .add(PackKind::Commit, &commit_body)
                .map_err(|e| RepoError::WritePack { source: e })?;
            let new = Oid::from_bytes(&new).map_err(git("committing to the git-annex branch"))?;
            pack.write(&self.common_dir.join("objects"))
                .map_err(|e| RepoError::WritePack { source: e })?;
            self.pack_written();

            let _lock = JournalLock::acquire(&self.annex_dir())?;
            let journal = view.journal.clone();
            let conflicts = changed.iter().any(|p| {
                journal
                    .join(std::ffi::OsStr::from_bytes(&journal_name(p)))
                    .exists()
            });
            match self
                .repo
                .reference_matching(BRANCH_REF, new, true, view.tip.0, message)
            {
                Ok(_) => {}
                Err(e) if e.code() == ErrorCode::Modified || e.code() == ErrorCode::Locked => {
                    tracing::debug!(attempt, "git-annex branch moved while committing; retrying");
                    self.forget_ref(BRANCH_REF);
                    std::thread::sleep(Duration::from_millis(attempt as u64 * 5));
                    continue;
                }
                Err(source) => {
                    return Err(RepoError::Git {
                        what: "updating refs/heads/git-annex",
                        source,
                    })
                }
            }
            if !conflicts {
                self.drop_merged_side_ref(new);
            } else {
                let side_msg = format!("{message} (for git-annex to merge over its journal)");
                let body = commit_object(&tree_id, &view.tip.0, &sig, &side_msg);
                let side = pack
                    .add(PackKind::Commit, &body)
                    .map_err(|e| RepoError::WritePack { source: e })?;
                pack.write(&self.common_dir.join("objects"))
                    .map_err(|e| RepoError::WritePack { source: e })?;
                let side = Oid::from_bytes(&side).map_err(git("committing to the side ref"))?;
                self.repo
                    .reference(SIDE_REF, side, true, &side_msg)
                    .map_err(git("updating the side ref"))?;
                tracing::debug!(
                    "git-annex has uncommitted journal entries for files we changed; \
                     also committed to {SIDE_REF}"
                );
            }
            return Ok(CommitOutcome {
                commit: Some(ObjectId(new)),
                attempts: attempt,
                side_ref: conflicts,
                files: changed.len(),
            });
        }
        Err(RepoError::TooManyRaces {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Keep the number of packs down: every commit adds one, and every object lookup
    /// that misses looks through all of them. At the first pack written here and every
    /// [`PACK_CHECK_EVERY`] after, the pack directory is counted, and above [`PACK_LIMIT`] packs a
    /// `git repack --geometric=2 -d` is started in the background (one at a time): it
    /// rolls the small packs (and loose objects) into one, leaving big packs alone, so
    /// its cost stays proportional to what was added since. git's own limit before
    /// `git gc --auto` repacks is 50 packs.
    fn pack_written(&self) {
        let mut st = self.packs_written.lock().unwrap_or_else(|p| p.into_inner());
        st.0 += 1;
        if let Some(child) = st.1.as_mut() {
            match child.try_wait() {
                Ok(None) => return,
                Ok(Some(status)) if !status.success() => {
                    tracing::debug!(
                        "git repack in {} ended with {status}",
                        self.git_dir.display()
                    );
                }
                _ => {}
            }
            st.1 = None;
        }
        // Counted at this `GitRepo`'s first pack and every few after: a gateway session
        // (one process) may write only a few, while the packs of all sessions add up.
        if st.0 % PACK_CHECK_EVERY != 1 {
            return;
        }
        let dir = self.common_dir.join("objects").join("pack");
        let count = fs::read_dir(&dir)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().as_bytes().ends_with(b".idx"))
                })
                .count()
            })
            .unwrap_or(0);
        if count <= PACK_LIMIT {
            return;
        }
        let spawned = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&self.common_dir)
            // One thread for the delta search: it runs beside the requests being served.
            .args(["-c", "pack.threads=1"])
            .args(["repack", "--geometric=2", "-d", "-l", "-q"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => {
                tracing::debug!(
                    packs = count,
                    "started git repack in {}",
                    self.git_dir.display()
                );
                st.1 = Some(child);
            }
            Err(e) => tracing::warn!("cannot start git repack in {}: {e}", self.git_dir.display()),
        }
    }

    /// Delete [`SIDE_REF`] once git-annex has merged it (it is then part of the branch),
    /// so readers stop folding it in. Best effort.
    fn drop_merged_side_ref(&self, tip: Oid) {
        let Ok(side) = self.repo.refname_to_id(SIDE_REF) else {
            return;
        };
        if side == tip || self.repo.graph_descendant_of(tip, side).unwrap_or(false) {
            if let Ok(mut r) = self.repo.find_reference(SIDE_REF) {
                if let Err(e) = r.delete() {
                    tracing::debug!("could not delete merged {SIDE_REF}: {e}");
                }
            }
        }
    }

    fn signature(&self) -> Result<git2::Signature<'static>, RepoError> {
        let cfg = self.recent_config()?;
        let name = cfg.get("user.name").unwrap_or_else(|| "annexgate".into());
        let email = cfg
            .get("user.email")
            .unwrap_or_else(|| "annexgate@localhost".into());
        git2::Signature::now(&name, &email).map_err(git("making a commit signature"))
    }
}

/// One file of the git index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Path from the top of the work tree, `/`-separated.
    pub path: Vec<u8>,
    /// git's file mode (`0o120000` for a symlink, `0o100644`/`0o100755` for a file).
    pub mode: u32,
    pub id: ObjectId,
    /// The size recorded when the file was staged.
    pub size: u32,
}

/// What [`GitRepo::update`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    /// The new branch commit, or `None` when nothing needed changing.
    pub commit: Option<ObjectId>,
    /// Attempts made (1 unless the branch moved meanwhile).
    pub attempts: u32,
    /// The tree was also committed to [`SIDE_REF`] (git-annex had journal entries for
    /// changed files).
    pub side_ref: bool,
    /// Files changed.
    pub files: usize,
}

/// Changes under one tree, by entry name: a new blob, or changes under a subtree.
enum TreeChange {
    Blob([u8; 20]),
    Dir(BTreeMap<Vec<u8>, TreeChange>),
}

/// Add "`path` is now blob `id`" to `changes` (a path checked by [`check_path`]).
fn insert_tree_change(
    changes: &mut BTreeMap<Vec<u8>, TreeChange>,
    path: &[u8],
    id: [u8; 20],
) -> Result<(), RepoError> {
    match path.iter().position(|&b| b == b'/') {
        None => {
            changes.insert(path.to_vec(), TreeChange::Blob(id));
            Ok(())
        }
        Some(i) => {
            let dir = changes
                .entry(path[..i].to_vec())
                .or_insert_with(|| TreeChange::Dir(BTreeMap::new()));
            if let TreeChange::Blob(_) = dir {
                *dir = TreeChange::Dir(BTreeMap::new());
            }
            match dir {
                TreeChange::Dir(sub) => insert_tree_change(sub, &path[i + 1..], id),
                TreeChange::Blob(_) => unreachable!("replaced by a directory above"),
            }
        }
    }
}

const TREE_MODE: i32 = 0o040000;
const BLOB_MODE: i32 = 0o100644;

/// Write the tree `base` (none: empty) with `changes` applied, and every changed tree
/// under it, into `pack`; the new tree's id. Unchanged subtrees are not read.
fn write_tree(
    repo: &Repository,
    base: Option<&git2::Tree<'_>>,
    changes: &BTreeMap<Vec<u8>, TreeChange>,
    pack: &mut PackBuilder,
) -> Result<[u8; 20], RepoError> {
    // The changed entries, in git's order.
    let mut new: Vec<(&[u8], i32, [u8; 20])> = Vec::with_capacity(changes.len());
    for (name, change) in changes {
        match change {
            TreeChange::Blob(id) => new.push((name, BLOB_MODE, *id)),
            TreeChange::Dir(sub) => {
                let old = match base.and_then(|t| t.get_name_bytes(name)) {
                    Some(e) if e.filemode_raw() == TREE_MODE => Some(
                        repo.find_tree(e.id())
                            .map_err(git("reading the git-annex branch"))?,
                    ),
                    _ => None,
                };
                new.push((name, TREE_MODE, write_tree(repo, old.as_ref(), sub, pack)?));
            }
        }
    }
    new.sort_by(|a, b| tree_order(a.0, a.1 == TREE_MODE, b.0, b.1 == TREE_MODE));
    // Merged with the base's entries (already in git's order), those changed left out.
    let base_len = base.map_or(0, |t| t.len());
    let mut body = Vec::with_capacity((base_len + new.len()) * 48);
    let mut next = new.iter().peekable();
    let mut last: Option<(Vec<u8>, bool)> = None;
    for e in base.iter().flat_map(|t| t.iter()) {
        let name = e.name_bytes();
        if changes.contains_key(name) {
            continue;
        }
        let (mode, dir) = (e.filemode_raw(), e.filemode_raw() == TREE_MODE);
        if let Some((prev, prev_dir)) = &last {
            if tree_order(prev, *prev_dir, name, dir) != std::cmp::Ordering::Less {
                // Not in git's order (not a tree git wrote): sort it all instead.
                return write_tree_sorted(base, &new, changes, pack);
            }
        }
        last = Some((name.to_vec(), dir));
        while let Some((n, m, id)) =
            next.next_if(|(n, m, _)| tree_order(n, *m == TREE_MODE, name, dir).is_lt())
        {
            push_tree_entry(&mut body, n, *m, id);
        }
        push_tree_entry(&mut body, name, mode, e.id().as_bytes());
    }
    for (n, m, id) in next {
        push_tree_entry(&mut body, n, *m, id);
    }
    pack.add(PackKind::Tree, &body)
        .map_err(|e| RepoError::WritePack { source: e })
}

/// [`write_tree`] for a base tree whose entries are not in git's order: everything sorted.
fn write_tree_sorted(
    base: Option<&git2::Tree<'_>>,
    new: &[(&[u8], i32, [u8; 20])],
    changes: &BTreeMap<Vec<u8>, TreeChange>,
    pack: &mut PackBuilder,
) -> Result<[u8; 20], RepoError> {
    let mut list: Vec<(Vec<u8>, i32, [u8; 20])> = Vec::new();
    for e in base.iter().flat_map(|t| t.iter()) {
        if !changes.contains_key(e.name_bytes()) {
            let mut id = [0u8; 20];
            id.copy_from_slice(e.id().as_bytes());
            list.push((e.name_bytes().to_vec(), e.filemode_raw(), id));
        }
    }
    list.extend(new.iter().map(|(n, m, id)| (n.to_vec(), *m, *id)));
    list.sort_by(|a, b| tree_order(&a.0, a.1 == TREE_MODE, &b.0, b.1 == TREE_MODE));
    list.dedup_by(|a, b| a.0 == b.0);
    let mut body = Vec::with_capacity(list.len() * 48);
    for (name, mode, id) in &list {
        push_tree_entry(&mut body, name, *mode, id);
    }
    pack.add(PackKind::Tree, &body)
        .map_err(|e| RepoError::WritePack { source: e })
}

/// One tree entry as git writes it: the mode in octal, a space, the name, a NUL, the id.
fn push_tree_entry(body: &mut Vec<u8>, name: &[u8], mode: i32, id: &[u8]) {
    let mut digits = [0u8; 11];
    let mut i = digits.len();
    let mut m = mode as u32;
    loop {
        i -= 1;
        digits[i] = b'0' + (m & 7) as u8;
        m >>= 3;
        if m == 0 {
            break;
        }
    }
    body.extend_from_slice(&digits[i..]);
    body.push(b' ');
    body.extend_from_slice(name);
    body.push(0);
    body.extend_from_slice(id);
}

/// git's order of tree entries: by name, a directory's name as if it ended in `/`.
fn tree_order(a: &[u8], a_dir: bool, b: &[u8], b_dir: bool) -> std::cmp::Ordering {
    let n = a.len().min(b.len());
    match a[..n].cmp(&b[..n]) {
        std::cmp::Ordering::Equal => {}
        other => return other,
    }
    let next = |name: &[u8], dir: bool| match name.get(n) {
        Some(&c) => c,
        None if dir => b'/',
        None => 0,
    };
    next(a, a_dir).cmp(&next(b, b_dir))
}

/// A commit object's content, as libgit2 writes it (the message as given).
fn commit_object(
    tree: &[u8; 20],
    parent: &Oid,
    sig: &git2::Signature<'_>,
    message: &str,
) -> Vec<u8> {
    let when = sig.when();
    let off = when.offset_minutes();
    let person = format!(
        "{} <{}> {} {}{:02}{:02}",
        String::from_utf8_lossy(sig.name_bytes()),
        String::from_utf8_lossy(sig.email_bytes()),
        when.seconds(),
        if off < 0 { '-' } else { '+' },
        off.abs() / 60,
        off.abs() % 60
    );
    let mut tree_hex = String::with_capacity(40);
    for b in tree {
        tree_hex.push_str(&format!("{b:02x}"));
    }
    format!("tree {tree_hex}\nparent {parent}\nauthor {person}\ncommitter {person}\n\n{message}")
        .into_bytes()
}

fn check_path(path: &[u8]) -> Result<(), RepoError> {
    let bad = path.is_empty()
        || path.contains(&0)
        || path.contains(&b'\n')
        || path
            .split(|&b| b == b'/')
            .any(|c| c.is_empty() || c == b"." || c == b".." || c == b".git");
    if bad {
        return Err(RepoError::BadPath {
            path: String::from_utf8_lossy(path).into_owned(),
        });
    }
    Ok(())
}

/// A branch path's directory (empty at the top) and file name.
fn split_path(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&path[..0], path),
    }
}

fn tree_entry_oid(tree: &git2::Tree<'_>, path: &[u8]) -> Result<Option<Oid>, RepoError> {
    match tree.get_path(Path::new(std::ffi::OsStr::from_bytes(path))) {
        Ok(e) if e.kind() == Some(ObjectType::Blob) => Ok(Some(e.id())),
        Ok(_) => Ok(None),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(source) => Err(RepoError::Git {
            what: "looking up a branch file",
            source,
        }),
    }
}

fn read_tree_file(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    path: &[u8],
) -> Result<Option<Vec<u8>>, RepoError> {
    match tree_entry_oid(tree, path)? {
        None => Ok(None),
        Some(oid) => {
            let blob = repo.find_blob(oid).map_err(git("reading a branch file"))?;
            Ok(Some(blob.content().to_vec()))
        }
    }
}

/// Walk the location logs of a tree: blobs at `depth` whose name ends in `.log` and names
/// a key. The callback gets (key, path, blob id) and returns false to stop.
fn walk_location_logs(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    hash: BranchHash,
    f: &mut dyn FnMut(Key, &[u8], Oid) -> Result<bool, RepoError>,
) -> Result<bool, RepoError> {
    let mut prefix = Vec::new();
    walk_rec(repo, tree, hash, hash.depth(), &mut prefix, f)
}

fn walk_rec(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    hash: BranchHash,
    depth: usize,
    prefix: &mut Vec<u8>,
    f: &mut dyn FnMut(Key, &[u8], Oid) -> Result<bool, RepoError>,
) -> Result<bool, RepoError> {
    for entry in tree.iter() {
        let name = entry.name_bytes();
        let len = prefix.len();
        prefix.extend_from_slice(name);
        let go_on = if depth > 1 {
            if entry.kind() == Some(ObjectType::Tree) {
                let sub = repo
                    .find_tree(entry.id())
                    .map_err(git("reading the branch tree"))?;
                prefix.push(b'/');
                walk_rec(repo, &sub, hash, depth - 1, prefix, f)?
            } else {
                true
            }
        } else if entry.kind() == Some(ObjectType::Blob) && name.ends_with(b".log") {
            match location_log_key(prefix, hash) {
                Some(key) => f(key, prefix, entry.id())?,
                None => true,
            }
        } else {
            true
        };
        prefix.truncate(len);
        if !go_on {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Read an object of the expected kind straight from the object database.
fn read_raw<'o>(
    odb: &'o git2::Odb<'_>,
    id: Oid,
    kind: ObjectType,
) -> Result<git2::OdbObject<'o>, RepoError> {
    let obj = odb.read(id).map_err(git("reading the branch"))?;
    if obj.kind() != kind {
        return Err(RepoError::Git {
            what: "reading the branch",
            source: git2::Error::from_str(&format!(
                "object {id} is a {}, not a {kind}",
                obj.kind()
            )),
        });
    }
    Ok(obj)
}

/// The entries of a raw tree object: `MODE SP NAME NUL <20-byte id>`, repeated.
struct RawTree<'a> {
    rest: &'a [u8],
}

impl<'a> RawTree<'a> {
    fn new(data: &'a [u8]) -> RawTree<'a> {
        RawTree { rest: data }
    }
}

impl<'a> Iterator for RawTree<'a> {
    type Item = (&'a [u8], &'a [u8], Result<Oid, RepoError>);
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let bad = || RepoError::Git {
            what: "reading the branch",
            source: git2::Error::from_str("malformed tree object"),
        };
        let Some(sp) = self.rest.iter().position(|&b| b == b' ') else {
            self.rest = &[];
            return Some((&[], &[], Err(bad())));
        };
        let Some(nul) = self.rest[sp..].iter().position(|&b| b == 0).map(|n| sp + n) else {
            self.rest = &[];
            return Some((&[], &[], Err(bad())));
        };
        if self.rest.len() < nul + 21 {
            self.rest = &[];
            return Some((&[], &[], Err(bad())));
        }
        let mode = &self.rest[..sp];
        let name = &self.rest[sp + 1..nul];
        let id = Oid::from_bytes(&self.rest[nul + 1..nul + 21]).map_err(|_| bad());
        self.rest = &self.rest[nul + 21..];
        Some((mode, name, id))
    }
}

/// Where bulk reads get objects: the packs (our reader), else libgit2 (loose objects,
/// alternates, anything our reader does not handle).
struct Objects<'a> {
    odb: git2::Odb<'a>,
    pack: Option<PackReader<'a>>,
}

impl Objects<'_> {
    fn read(&mut self, id: Oid, kind: ObjectType) -> Result<Vec<u8>, RepoError> {
        self.read_placed(None, id, kind)
    }

    /// Read `id`, at `at` in the packs when [`by_position`] found it there (so the pack
    /// index is not searched a second time).
    fn read_placed(
        &mut self,
        at: Option<(usize, u64)>,
        id: Oid,
        kind: ObjectType,
    ) -> Result<Vec<u8>, RepoError> {
        if let (Some(r), Ok(raw)) = (self.pack.as_mut(), <[u8; 20]>::try_from(id.as_bytes())) {
            let found = match at {
                Some((p, off)) => r.read_positioned(p, off).map(Some),
                None => r.read(&raw),
            };
            match found {
                Ok(Some((k, data))) => {
                    let want = match kind {
                        ObjectType::Tree => PackKind::Tree,
                        ObjectType::Commit => PackKind::Commit,
                        ObjectType::Tag => PackKind::Tag,
                        _ => PackKind::Blob,
                    };
                    if k != want {
                        return Err(RepoError::Git {
                            what: "reading the branch",
                            source: git2::Error::from_str(&format!("object {id} is not a {kind}")),
                        });
                    }
                    return Ok(data);
                }
                Ok(None) => {}
                Err(e) => tracing::debug!("{e}; reading {id} through libgit2"),
            }
        }
        Ok(read_raw(&self.odb, id, kind)?.data().to_vec())
    }
}

/// Compare two trees (either may be absent) down to the location logs' depth, adding
/// every location log whose blob differs.
fn diff_raw(
    objs: &mut Objects<'_>,
    a: Option<Oid>,
    b: Option<Oid>,
    hash: BranchHash,
    depth: usize,
    prefix: &mut Vec<u8>,
    out: &mut Vec<(Key, Option<ObjectId>, Option<ObjectId>)>,
) -> Result<(), RepoError> {
    if a == b {
        return Ok(());
    }
    let read =
        |objs: &mut Objects<'_>, t: Option<Oid>| -> Result<Vec<(Vec<u8>, bool, Oid)>, RepoError> {
            let Some(t) = t else {
                return Ok(Vec::new());
            };
            let data = objs.read(t, ObjectType::Tree)?;
            RawTree::new(&data)
                .map(|(mode, name, id)| Ok((name.to_vec(), mode == b"40000", id?)))
                .collect()
        };
    let old = read(objs, a)?;
    let new = read(objs, b)?;
    let mut old_by_name: HashMap<Vec<u8>, (bool, Oid)> =
        old.into_iter().map(|(n, t, id)| (n, (t, id))).collect();
    let mut pairs: Vec<(Vec<u8>, Option<(bool, Oid)>, Option<(bool, Oid)>)> = Vec::new();
    for (name, is_tree, id) in new {
        let before = old_by_name.remove(&name);
        pairs.push((name, before, Some((is_tree, id))));
    }
    for (name, before) in old_by_name {
        pairs.push((name, Some(before), None));
    }
    for (name, before, after) in pairs {
        let len = prefix.len();
        prefix.extend_from_slice(&name);
        if depth > 1 {
            let sub = |x: Option<(bool, Oid)>| x.filter(|(t, _)| *t).map(|(_, id)| id);
            let (sa, sb) = (sub(before), sub(after));
            if sa.is_some() || sb.is_some() {
                prefix.push(b'/');
                diff_raw(objs, sa, sb, hash, depth - 1, prefix, out)?;
            }
        } else if name.ends_with(b".log") {
            let blob = |x: Option<(bool, Oid)>| x.filter(|(t, _)| !*t).map(|(_, id)| ObjectId(id));
            let (ba, bb) = (blob(before), blob(after));
            if ba != bb {
                if let Some(key) = location_log_key(prefix, hash) {
                    out.push((key, ba, bb));
                }
            }
        }
        prefix.truncate(len);
    }
    Ok(())
}

/// An object to read, with where it lies in the packs (when it does).
type Placed<T> = (Option<(usize, u64)>, T);

/// Where `id` lies in the packs.
fn position(packs: Option<&Packs>, id: Oid) -> Option<(usize, u64)> {
    packs
        .zip(<[u8; 20]>::try_from(id.as_bytes()).ok())
        .and_then(|(p, raw)| p.position(&raw))
}

/// Sort objects to read in the order they lie in the packs (objects not in a pack last,
/// by id): reads then go forward through the pack, and a delta's base is mostly read
/// just before it (and kept by the reader).
fn sort_placed<T>(items: &mut [Placed<T>], id: impl Fn(&T) -> Oid) {
    items.sort_unstable_by(|(a, x), (b, y)| {
        let a = a.unwrap_or((usize::MAX, u64::MAX));
        let b = b.unwrap_or((usize::MAX, u64::MAX));
        a.cmp(&b).then_with(|| id(x).cmp(&id(y)))
    });
}

/// `items` with their places in the packs, in pack order (see [`sort_placed`]); the
/// read itself then need not search the pack index again.
fn by_position<T>(packs: Option<&Packs>, items: Vec<T>, id: impl Fn(&T) -> Oid) -> Vec<Placed<T>> {
    let mut placed: Vec<Placed<T>> = items
        .into_iter()
        .map(|t| (position(packs, id(&t)), t))
        .collect();
    sort_placed(&mut placed, id);
    placed
}

/// Run `work` over `items` cut into contiguous chunks, on `threads` threads that each
/// take the next chunk left until none is (so a thread that drew cheap objects does not
/// wait idle for one that drew long delta chains); each thread has its own handle on the
/// repository at `path` (and a reader of its packs). Results in chunk order.
fn in_parallel<I: Sync, R: Send>(
    path: &Path,
    packs: Option<&Packs>,
    threads: usize,
    items: &[I],
    work: impl Fn(&mut Objects<'_>, &[I]) -> Result<R, RepoError> + Sync,
) -> Result<Vec<R>, RepoError> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let threads = threads.max(1);
    // Chunks big enough to keep reads going forward through the pack, small enough
    // to even out the threads' shares.
    let chunks = if threads == 1 { 1 } else { threads * 8 };
    let per = items.len().div_ceil(chunks).max(1);
    let pieces: Vec<&[I]> = items.chunks(per).collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let per_thread: Vec<Result<Vec<(usize, R)>, RepoError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.min(pieces.len().max(1)))
            .map(|_| {
                let (work, pieces, next, failed) = (&work, &pieces, &next, &failed);
                scope.spawn(move || {
                    let repo = Repository::open(path).map_err(|source| RepoError::Open {
                        path: path.to_path_buf(),
                        source,
                    })?;
                    let odb = repo.odb().map_err(git("opening the object database"))?;
                    let mut objects = Objects {
                        odb,
                        pack: packs.map(Packs::reader),
                    };
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= pieces.len() || failed.load(Ordering::Relaxed) {
                            return Ok(done);
                        }
                        match work(&mut objects, pieces[i]) {
                            Ok(r) => done.push((i, r)),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a reading thread panicked"))
            .collect()
    });
    let mut all = Vec::with_capacity(pieces.len());
    for r in per_thread {
        all.extend(r?);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, r)| r).collect())
}

/// What `stat` says of a file (`None`: absent), to tell whether it changed since it was
/// read. A file git rewrites (by renaming a new one over it) gets a new inode; the size
/// and modification time catch an edit in place.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct FileStamp(Option<(u64, u64, i64, i64)>);

impl FileStamp {
    fn of(path: &Path) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp(
            fs::metadata(path)
                .ok()
                .map(|m| (m.ino(), m.size(), m.mtime(), m.mtime_nsec())),
        )
    }
    fn is_some(&self) -> bool {
        self.0.is_some()
    }
}

/// Process-wide libgit2 settings for the serving programs (annexgate-shell,
/// annexgate-http), which read the branch on every request and commit to it in batches:
/// objects are not re-hashed on every read (git itself does not; `git fsck` does), the
/// objects a new tree or commit names are not looked up again (they were just written,
/// or read from the branch), and trees up to 512 KiB stay in libgit2's object cache (the
/// branch's root tree is 30-130 KiB; the default limit of 4 KiB made every request
/// re-read and inflate it), the whole cache capped at 4 MiB; pack files are mapped a
/// window at a time. Call before any thread is started.
pub fn tune_for_serving() {
    git2::opts::strict_hash_verification(false);
    git2::opts::strict_object_creation(false);
    // SAFETY: called at the start of main, before the programs start any thread; the
    // arguments are the ones these options take (an object type and a size_t; a ssize_t).
    unsafe {
        if let Err(e) = git2::opts::set_cache_object_limit(ObjectType::Tree, 512 * 1024) {
            tracing::debug!("cannot raise libgit2's tree cache limit: {e}");
        }
        libgit2_sys::git_libgit2_opts(
            libgit2_sys::GIT_OPT_SET_CACHE_MAX_SIZE as libc::c_int,
            (4 * 1024 * 1024) as libc::ssize_t,
        );
        // Packs are read through windows of 128 KiB, at most 16 MiB mapped at once (the
        // least recently used are unmapped): reads of trees all over a big pack would
        // otherwise leave all of it mapped and resident (libgit2 maps up to 1 GiB). The
        // limit is for the whole process, whose sessions read the branches of the gateway
        // and of every local node (their recorders): at 4 MiB, a cluster of three nodes
        // with a few MiB of packs each spent a tenth of its time unmapping and mapping
        // windows again. Only the pages read count towards the resident size.
        if let Err(e) = git2::opts::set_mwindow_size(128 * 1024) {
            tracing::debug!("cannot set libgit2's pack window size: {e}");
        }
        if let Err(e) = git2::opts::set_mwindow_mapped_limit(16 * 1024 * 1024) {
            tracing::debug!("cannot set libgit2's pack mapping limit: {e}");
        }
    }
}

/// Process-wide libgit2 settings for a program that reads a lot of the branch: objects
/// are not re-hashed on every read (git itself does not do that either; `git fsck`
/// does), and libgit2's object cache is off (walks read each object once; readers that
/// revisit trees keep them themselves).
pub fn tune_for_bulk_reads() {
    git2::opts::strict_hash_verification(false);
    git2::opts::enable_caching(false);
}

/// Remove a partly appended last line (git-annex appends to journal files without
/// atomicity and ignores an unfinished line).
fn discard_incomplete_append(mut v: Vec<u8>) -> Vec<u8> {
    if !v.is_empty() && v.last() != Some(&b'\n') {
        let keep = v.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        v.truncate(keep);
    }
    v
}

/// The git-annex branch as git-annex would read it at one moment.
pub struct BranchView<'r> {
    repo: &'r GitRepo,
    tip: ObjectId,
    tip_tree: git2::Tree<'r>,
    siblings: Vec<(String, ObjectId, git2::Tree<'r>)>,
    journal: PathBuf,
    private_journal: Option<PathBuf>,
    /// Directory path (no trailing slash) -> its tree at the tip; `None` when absent.
    trees: std::cell::RefCell<HashMap<Vec<u8>, Option<git2::Tree<'r>>>>,
}

impl<'r> BranchView<'r> {
    /// The commit of `refs/heads/git-annex` this view was made from.
    pub fn tip(&self) -> ObjectId {
        self.tip
    }

    /// Sibling branches whose changes are folded in (not yet merged by git-annex).
    pub fn unmerged_siblings(&self) -> Vec<(String, ObjectId)> {
        self.siblings
            .iter()
            .map(|(n, o, _)| (n.clone(), *o))
            .collect()
    }

    fn tip_tree_entry(&self, path: &[u8]) -> Result<Option<Oid>, RepoError> {
        let (dir, name) = split_path(path);
        let Some(tree) = self.dir_tree(dir)? else {
            return Ok(None);
        };
        let id = match tree.get_name_bytes(name) {
            Some(e) if e.kind() == Some(ObjectType::Blob) => Some(e.id()),
            _ => None,
        };
        Ok(id)
    }

    /// The tree of directory `dir` at the tip, remembered for the view's life (a commit
    /// of many changes, or a reader of many files, looks into the same few directories).
    fn dir_tree(&self, dir: &[u8]) -> Result<Option<git2::Tree<'r>>, RepoError> {
        if dir.is_empty() {
            return Ok(Some(self.tip_tree.clone()));
        }
        if let Some(t) = self.trees.borrow().get(dir) {
            return Ok(t.clone());
        }
        let (parent, name) = split_path(dir);
        let tree = match self.dir_tree(parent)? {
            None => None,
            Some(p) => match p.get_name_bytes(name) {
                Some(e) if e.kind() == Some(ObjectType::Tree) => Some(
                    self.repo
                        .repo
                        .find_tree(e.id())
                        .map_err(git("reading the branch tree"))?,
                ),
                _ => None,
            },
        };
        self.trees.borrow_mut().insert(dir.to_vec(), tree.clone());
        Ok(tree)
    }

    /// The file as committed at the tip.
    pub fn committed(&self, path: &[u8]) -> Result<Option<Vec<u8>>, RepoError> {
        let Some(id) = self.tip_tree_entry(path)? else {
            return Ok(None);
        };
        let blob = self
            .repo
            .repo
            .find_blob(id)
            .map_err(git("reading a branch file"))?;
        Ok(Some(blob.content().to_vec()))
    }

    fn journal_file(dir: &Path, path: &[u8]) -> Result<Option<Vec<u8>>, RepoError> {
        let p = dir.join(std::ffi::OsStr::from_bytes(&journal_name(path)));
        match fs::read(&p) {
            Ok(v) => Ok(Some(discard_incomplete_append(v))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => Ok(None),
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    /// git-annex's uncommitted journal entry for a file, if any.
    pub fn journalled(&self, path: &[u8]) -> Result<Option<Vec<u8>>, RepoError> {
        Self::journal_file(&self.journal, path)
    }

    fn content(&self, path: &[u8], private: bool) -> Result<Vec<u8>, RepoError> {
        let base = match self.journalled(path)? {
            Some(j) => Some(j),
            None => self.committed(path)?,
        };
        let mut versions: Vec<Vec<u8>> = Vec::new();
        if let Some(b) = base {
            versions.push(b);
        }
        if private {
            if let Some(dir) = &self.private_journal {
                if let Some(p) = Self::journal_file(dir, path)? {
                    versions.push(p);
                }
            }
        }
        for (_, _, tree) in &self.siblings {
            if let Some(v) = read_tree_file(&self.repo.repo, tree, path)? {
                versions.push(v);
            }
        }
        Ok(match versions.len() {
            0 => Vec::new(),
            1 => versions.pop().expect("one"),
            _ => {
                let refs: Vec<&[u8]> = versions.iter().map(Vec::as_slice).collect();
                union_merge_bytes(&refs)
            }
        })
    }

    /// The current content of a branch file, as git-annex reads it: the journal entry if
    /// any, else the branch, union-merged with unmerged siblings (and git-annex's private
    /// journal, when private repositories are configured). Empty if the file is nowhere.
    pub fn get(&self, path: &[u8]) -> Result<Vec<u8>, RepoError> {
        self.content(path, true)
    }

    /// Like [`BranchView::get`] but without the private journal: the basis for content
    /// that will be committed (private information must not reach the branch).
    pub fn get_for_write(&self, path: &[u8]) -> Result<Vec<u8>, RepoError> {
        self.content(path, false)
    }

    /// Branch paths git-annex has uncommitted journal entries for.
    pub fn journalled_paths(&self) -> Result<Vec<Vec<u8>>, RepoError> {
        let mut out = Vec::new();
        for dir in std::iter::once(&self.journal).chain(self.private_journal.iter()) {
            let rd = match fs::read_dir(dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(dir)(e)),
            };
            for ent in rd {
                let ent = ent.map_err(io_err(dir))?;
                out.push(journal_path(ent.file_name().as_bytes()));
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Location-log paths whose content in this view may differ from the tip's blob:
    /// those git-annex has journal entries for, and those an unmerged sibling branch
    /// changed. Everything else reads exactly as committed at [`BranchView::tip`].
    pub fn overridden_location_logs(
        &self,
        hash: BranchHash,
    ) -> Result<BTreeSet<Vec<u8>>, RepoError> {
        let mut overridden: BTreeSet<Vec<u8>> = self
            .journalled_paths()?
            .into_iter()
            .filter(|p| location_log_key(p, hash).is_some())
            .collect();
        for (_, _, tree) in &self.siblings {
            let diff = self
                .repo
                .repo
                .diff_tree_to_tree(Some(&self.tip_tree), Some(tree), None)
                .map_err(git("comparing git-annex branches"))?;
            for d in diff.deltas() {
                if let Some(p) = d.new_file().path_bytes() {
                    if location_log_key(p, hash).is_some() {
                        overridden.insert(p.to_vec());
                    }
                }
            }
        }
        Ok(overridden)
    }

    /// A reader for many files of this view (e.g. one location log per key over a whole
    /// batch): the same contents as [`BranchView::get`], faster, because it lists the
    /// journal once (entries git-annex journals later are not seen) and keeps the
    /// branch's directory trees it has read.
    pub fn reader(&self) -> Result<BranchReader<'_, 'r>, RepoError> {
        let mut journalled = HashSet::new();
        for p in self.journalled_paths()? {
            journalled.insert(p);
        }
        Ok(BranchReader {
            view: self,
            journalled,
        })
    }

    /// Every location log as git-annex would read it now: the tip's, with journal entries
    /// and unmerged siblings folded in, plus logs that exist only there. `f` gets the key
    /// and content and returns false to stop. Streams the tip's tree.
    pub fn for_each_location_log(
        &self,
        hash: BranchHash,
        mut f: impl FnMut(Key, &[u8]) -> bool,
    ) -> Result<(), RepoError> {
        let overridden = self.overridden_location_logs(hash)?;
        let mut stopped = false;
        let repo = &self.repo.repo;
        walk_location_logs(repo, &self.tip_tree, hash, &mut |key, path, oid| {
            if overridden.contains(path) {
                return Ok(true);
            }
            let blob = repo.find_blob(oid).map_err(git("reading a log"))?;
            let go_on = f(key, blob.content());
            stopped = !go_on;
            Ok(go_on)
        })?;
        if stopped {
            return Ok(());
        }
        for p in &overridden {
            let Some(key) = location_log_key(p, hash) else {
                continue;
            };
            let content = self.get(p)?;
            if !f(key, &content) {
                break;
            }
        }
        Ok(())
    }
}

/// Repeated reads of one [`BranchView`] (see [`BranchView::reader`]).
pub struct BranchReader<'v, 'r> {
    view: &'v BranchView<'r>,
    journalled: HashSet<Vec<u8>>,
}

impl fmt::Debug for BranchReader<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BranchReader")
            .field("tip", &self.view.tip)
            .field("journalled", &self.journalled.len())
            .finish()
    }
}

impl<'r> BranchReader<'_, 'r> {
    /// The view this reader reads.
    pub fn view(&self) -> &BranchView<'r> {
        self.view
    }

    /// The file as committed at the tip.
    pub fn committed(&self, path: &[u8]) -> Result<Option<Vec<u8>>, RepoError> {
        self.view.committed(path)
    }

    /// The current content of a branch file, as [`BranchView::get`] reads it.
    pub fn get(&self, path: &[u8]) -> Result<Vec<u8>, RepoError> {
        // `journalled` lists the private journal's entries too.
        let simple = !self.journalled.contains(path) && self.view.siblings.is_empty();
        if simple {
            return Ok(self.committed(path)?.unwrap_or_default());
        }
        self.view.get(path)
    }
}

/// git-annex's journal lock, held (as an exclusive `fcntl` lock on `annex/journal.lck`)
/// while we move the branch ref. Released on drop.
struct JournalLock {
    _file: Option<fs::File>,
}

impl JournalLock {
    fn acquire(annex_dir: &Path) -> Result<JournalLock, RepoError> {
        if !annex_dir.is_dir() {
            return Ok(JournalLock { _file: None });
        }
        let path = annex_dir.join("journal.lck");
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        let start = Instant::now();
        let mut wait = Duration::from_millis(2);
        loop {
            match try_lock(&file) {
                Ok(true) => return Ok(JournalLock { _file: Some(file) }),
                Ok(false) => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
            if start.elapsed() > LOCK_TIMEOUT {
                return Err(RepoError::LockTimeout {
                    path,
                    secs: LOCK_TIMEOUT.as_secs(),
                });
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_millis(50));
        }
    }
}

/// Try an exclusive whole-file write lock. Uses open-file-description locks on Linux (they
/// conflict with git-annex's process-owned `fcntl` locks, and also between our own
/// threads); plain `fcntl` locks elsewhere.
fn try_lock(file: &fs::File) -> io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: a zeroed flock is a valid value; we fill the fields we need.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as _;
    fl.l_whence = libc::SEEK_SET as _;
    fl.l_start = 0;
    fl.l_len = 0;
    #[cfg(target_os = "linux")]
    let cmd = libc::F_OFD_SETLK;
    #[cfg(not(target_os = "linux"))]
    let cmd = libc::F_SETLK;
    // SAFETY: fcntl with a valid fd and a pointer to our flock.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) | Some(libc::EINTR) => Ok(false),
        _ => Err(err),
    }
}

/// A snapshot of git config (all levels, the repository's own winning): plain data, so it
/// can be shared between threads.
#[derive(Clone, Default)]
pub struct GitConfig {
    /// (normalised name, value) in config order; a key given without `=` has no value.
    entries: Vec<(String, Option<String>)>,
}

impl fmt::Debug for GitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GitConfig({} entries)", self.entries.len())
    }
}

/// git's key normalisation: section and variable names are case-insensitive, a
/// subsection (the middle part) is not.
fn normalise_key(key: &str) -> String {
    match (key.find('.'), key.rfind('.')) {
        (Some(first), Some(last)) if first != last => format!(
            "{}{}{}",
            key[..first].to_ascii_lowercase(),
            &key[first..last],
            key[last..].to_ascii_lowercase()
        ),
        _ => key.to_ascii_lowercase(),
    }
}

/// git's boolean values.
pub fn parse_git_bool(v: Option<&str>) -> Option<bool> {
    match v.map(|s| s.trim().to_ascii_lowercase()) {
        None => Some(true),
        Some(s) => match s.as_str() {
            "true" | "yes" | "on" | "1" => Some(true),
            "false" | "no" | "off" | "0" | "" => Some(false),
            other => other.parse::<i64>().ok().map(|n| n != 0),
        },
    }
}

impl GitConfig {
    fn from_git2(cfg: &git2::Config) -> GitConfig {
        let mut entries = Vec::new();
        if let Ok(mut it) = cfg.entries(None) {
            while let Some(Ok(e)) = it.next() {
                if let Some(name) = e.name() {
                    // A key written without `=` has no value (a boolean true); asking
                    // git2 for its value would panic.
                    let value = if e.has_value() {
                        Some(String::from_utf8_lossy(e.value_bytes()).into_owned())
                    } else {
                        None
                    };
                    entries.push((normalise_key(name), value));
                }
            }
        }
        GitConfig { entries }
    }

    /// A config made of `(key, value)` pairs, for tests and for callers with their own
    /// source of settings.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> GitConfig {
        GitConfig {
            entries: pairs
                .into_iter()
                .map(|(k, v)| (normalise_key(k), Some(v.to_string())))
                .collect(),
        }
    }

    /// The value of a key (the last one, for multi-valued keys).
    pub fn get(&self, key: &str) -> Option<String> {
        let k = normalise_key(key);
        self.entries
            .iter()
            .rev()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone().unwrap_or_default())
    }

    /// Every value of a multi-valued key, in config order.
    pub fn get_all(&self, key: &str) -> Vec<String> {
        let k = normalise_key(key);
        self.entries
            .iter()
            .filter(|(n, _)| *n == k)
            .map(|(_, v)| v.clone().unwrap_or_default())
            .collect()
    }

    /// A boolean key by git's rules (`true`/`yes`/`on`/`1`, a key with no value, ...);
    /// `None` when unset or not a boolean.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        let k = normalise_key(key);
        let (_, v) = self.entries.iter().rev().find(|(n, _)| *n == k)?;
        parse_git_bool(v.as_deref())
    }

    /// The names of every configured remote (`remote.<name>.*`), sorted.
    pub fn remotes(&self) -> Vec<String> {
        let mut names = BTreeSet::new();
        for (name, _) in &self.entries {
            if let Some(rest) = name.strip_prefix("remote.") {
                if let Some(dot) = rest.rfind('.') {
                    names.insert(rest[..dot].to_string());
                }
            }
        }
        names.into_iter().collect()
    }

    /// `remote.<remote>.<var>`.
    pub fn remote(&self, remote: &str, var: &str) -> Option<String> {
        self.get(&format!("remote.{remote}.{var}"))
    }

    /// Every `remote.<remote>.*` setting (variable names lower-cased by git).
    pub fn remote_settings(&self, remote: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let prefix = format!("remote.{remote}.");
        for (name, value) in &self.entries {
            if let Some(var) = name.strip_prefix(&prefix) {
                if !var.contains('.') {
                    out.insert(var.to_string(), value.clone().unwrap_or_default());
                }
            }
        }
        out
    }

    /// Every `(name, value)` whose name starts with `prefix` (normalised names).
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| n.starts_with(prefix))
            .map(|(n, v)| (n.as_str(), v.as_deref().unwrap_or("")))
    }

    /// This repository's UUID (`annex.uuid`).
    pub fn annex_uuid(&self) -> Option<Uuid> {
        self.get("annex.uuid").and_then(|s| Uuid::parse(&s).ok())
    }

    /// A remote's UUID (`remote.<r>.annex-uuid`).
    pub fn remote_uuid(&self, remote: &str) -> Option<Uuid> {
        self.remote(remote, "annex-uuid")
            .and_then(|s| Uuid::parse(&s).ok())
    }

    /// The branch hash layout (`annex.tune.branchhash1`).
    pub fn branch_hash(&self) -> BranchHash {
        if self.get_bool("annex.tune.branchhash1") == Some(true) {
            BranchHash::OneLevel
        } else {
            BranchHash::TwoLevel
        }
    }

    /// UUIDs configured private: this repository's with `annex.private`, and remotes' with
    /// `remote.<r>.annex-private`. Their information never goes to the branch.
    pub fn private_uuids(&self) -> BTreeSet<Uuid> {
        let mut out = BTreeSet::new();
        if self.get_bool("annex.private") == Some(true) {
            if let Some(u) = self.annex_uuid() {
                out.insert(u);
            }
        }
        for r in self.remotes() {
            if self.get_bool(&format!("remote.{r}.annex-private")) == Some(true) {
                if let Some(u) = self.remote_uuid(&r) {
                    out.insert(u);
                }
            }
        }
        out
    }

    /// Cluster names and UUIDs this repository is a gateway for (`annex.cluster.<name>`).
    pub fn clusters(&self) -> BTreeMap<String, Uuid> {
        let mut out = BTreeMap::new();
        for (name, value) in self.with_prefix("annex.cluster.") {
            if let (Some(n), Ok(u)) = (name.strip_prefix("annex.cluster."), Uuid::parse(value)) {
                out.insert(n.to_string(), u);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_appends_are_discarded() {
        assert_eq!(discard_incomplete_append(b"a\nb\npart".to_vec()), b"a\nb\n");
        assert_eq!(discard_incomplete_append(b"a\n".to_vec()), b"a\n");
        assert_eq!(discard_incomplete_append(b"part".to_vec()), b"");
        assert_eq!(discard_incomplete_append(Vec::new()), b"");
    }

    #[test]
    fn branch_paths_are_checked() {
        for ok in [&b"uuid.log"[..], b"d76/b9c/K.log", b"remote/web/x.log"] {
            assert!(check_path(ok).is_ok());
        }
        for bad in [
            &b""[..],
            b"/a",
            b"a//b",
            b"a/",
            b"../x",
            b"a/./b",
            b"a\0b",
            b"a\nb",
            b".git/x",
        ] {
            assert!(
                matches!(check_path(bad), Err(RepoError::BadPath { .. })),
                "{bad:?}"
            );
        }
    }

    /// A base tree git would not write (entries out of order) still gives a tree in git's
    /// order, with the changes applied: the same as libgit2's builder makes of the same
    /// entries. Modes are written as git writes them.
    #[test]
    fn trees_out_of_order_are_sorted_when_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let g = Repository::init_bare(tmp.path()).unwrap();
        let blob = |c: &str| {
            let mut id = [0u8; 20];
            id.copy_from_slice(g.blob(c.as_bytes()).unwrap().as_bytes());
            id
        };
        let (b1, b2, b3) = (blob("1\n"), blob("2\n"), blob("3\n"));
        let mut raw = Vec::new();
        for (name, id) in [(&b"zz"[..], b1), (b"aa", b2), (b"mm", b3)] {
            push_tree_entry(&mut raw, name, BLOB_MODE, &id);
        }
        let odb = g.odb().unwrap();
        let base_id = odb.write(ObjectType::Tree, &raw).unwrap();
        let base = g.find_tree(base_id).unwrap();
        let mut changes = BTreeMap::new();
        changes.insert(b"mm".to_vec(), TreeChange::Blob(b1));
        changes.insert(b"bb".to_vec(), TreeChange::Blob(b2));
        let mut pack = PackBuilder::new();
        let ours = write_tree(&g, Some(&base), &changes, &mut pack).unwrap();
        pack.write(&tmp.path().join("objects")).unwrap();
        let ours = g.find_tree(Oid::from_bytes(&ours).unwrap()).unwrap();
        let names: Vec<Vec<u8>> = ours.iter().map(|e| e.name_bytes().to_vec()).collect();
        assert_eq!(names, [&b"aa"[..], b"bb", b"mm", b"zz"].map(<[u8]>::to_vec));
        let mut tb = git2::build::TreeUpdateBuilder::new();
        for (n, id) in [("aa", b2), ("bb", b2), ("mm", b1), ("zz", b1)] {
            tb.upsert(n, Oid::from_bytes(&id).unwrap(), git2::FileMode::Blob);
        }
        let empty = g.treebuilder(None).unwrap().write().unwrap();
        let theirs = tb.create_updated(&g, &g.find_tree(empty).unwrap()).unwrap();
        assert_eq!(ours.id(), theirs);
        let mut e = Vec::new();
        push_tree_entry(&mut e, b"d", TREE_MODE, &[7u8; 20]);
        assert!(e.starts_with(b"40000 d\0"));
        e.clear();
        push_tree_entry(&mut e, b"x", 0o100755, &[7u8; 20]);
        assert!(e.starts_with(b"100755 x\0"));
    }

    /// What a view reads of the refs is remembered while their files stat the same, and for
    /// at most [`REFS_TRUST`]: a ref rewritten in place with its old size and time (what
    /// coarse timestamps could make of two quick changes) is seen once that period is
    /// over; a ref replaced the way git does it (a new file renamed over the old) is seen
    /// at once.
    #[test]
    fn remembered_refs_are_read_again_when_changed_or_old() {
        use crate::branch::testing::{bare_annex_repo, git};
        use std::io::Write as _;
        let tmp = bare_annex_repo();
        let dir = tmp.path();
        let first = git(dir, &["rev-parse", "git-annex"]);
        let tree = git(dir, &["rev-parse", "git-annex^{tree}"]);
        let second = git(dir, &["commit-tree", &tree, "-p", &first, "-m", "two"]);
        let third = git(dir, &["commit-tree", &tree, "-p", &second, "-m", "three"]);
        let repo = GitRepo::open(dir).unwrap();
        let tip = |repo: &GitRepo| repo.view().unwrap().tip().to_string();
        assert_eq!(tip(&repo), first);
        // git's way: seen at the next view.
        git(dir, &["update-ref", "refs/heads/git-annex", &second]);
        assert_eq!(tip(&repo), second);
        // In place, same inode, size and modification time: not told apart by stat...
        let file = dir.join("refs/heads/git-annex");
        let mtime = fs::metadata(&file).unwrap().modified().unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .and_then(|mut f| {
                f.write_all(format!("{third}\n").as_bytes())?;
                f.set_modified(mtime)
            })
            .unwrap();
        assert_eq!(
            tip(&repo),
            second,
            "remembered while the file stats the same"
        );
        // ...but not trusted for longer than a second.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(tip(&repo), third);
    }

    /// Under the watch on the refs, every kind of change git makes is seen at the next
    /// view: a sibling branch in a new remote's directory, one listed in mergedrefs, refs
    /// packed, a sibling removed, and the branch moved.
    #[test]
    fn a_watched_repository_sees_every_ref_change_at_the_next_view() {
        use crate::branch::testing::{bare_annex_repo, git};
        let tmp = bare_annex_repo();
        let dir = tmp.path();
        let first = git(dir, &["rev-parse", "git-annex"]);
        let tree = git(dir, &["rev-parse", "git-annex^{tree}"]);
        // A sibling not merged: a root commit of its own.
        let other = git(dir, &["commit-tree", &tree, "-m", "elsewhere"]);
        let second = git(dir, &["commit-tree", &tree, "-p", &first, "-m", "two"]);
        let repo = GitRepo::open(dir).unwrap();
        let siblings = |repo: &GitRepo| {
            let v = repo.view().unwrap();
            let names: Vec<String> = v.unmerged_siblings().into_iter().map(|s| s.0).collect();
            (v.tip().to_string(), names)
        };
        for _ in 0..3 {
            assert_eq!(siblings(&repo), (first.clone(), vec![]));
        }
        assert!(repo.watching(), "watching after two views");
        git(dir, &["update-ref", "refs/remotes/new/git-annex", &other]);
        let new = vec!["refs/remotes/new/git-annex".to_string()];
        assert_eq!(siblings(&repo), (first.clone(), new.clone()));
        git(dir, &["update-ref", "refs/heads/git-annex", &second]);
        assert_eq!(siblings(&repo), (second.clone(), new.clone()), "tip moved");
        git(dir, &["pack-refs", "--all"]);
        assert_eq!(siblings(&repo), (second.clone(), new.clone()), "packed");
        // (The annex directory comes now, under the watch.)
        fs::create_dir_all(dir.join("annex")).unwrap();
        fs::write(dir.join("annex/mergedrefs"), format!("{other}\trefs/x\n")).unwrap();
        assert_eq!(
            siblings(&repo),
            (second.clone(), vec![]),
            "listed as merged"
        );
        fs::remove_file(dir.join("annex/mergedrefs")).unwrap();
        assert_eq!(siblings(&repo), (second.clone(), new.clone()));
        git(dir, &["update-ref", "-d", "refs/remotes/new/git-annex"]);
        assert_eq!(siblings(&repo), (second.clone(), vec![]), "removed");
        git(dir, &["update-ref", "refs/heads/git-annex", &first]);
        assert_eq!(siblings(&repo), (first.clone(), vec![]), "moved back");
    }

    #[test]
    fn object_ids() {
        let hex = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(ObjectId::parse(hex).unwrap().to_string(), hex);
        assert!(ObjectId::parse("xyz").is_none());
    }
}

#[cfg(test)]
mod config_order_tests {
    use super::*;

    /// The repository's own setting must win over the global one, and a multi-valued key
    /// lists values from the lowest level to the highest, as `git config --get-all` does.
    #[test]
    fn local_level_wins_over_global() {
        let dir = tempfile::tempdir().unwrap();
        let global = dir.path().join("global");
        let local = dir.path().join("local");
        std::fs::write(
            &global,
            "[annex]\n\tfoo = global\n\tmulti = g\n[remote \"R\"]\n\turl = g\n",
        )
        .unwrap();
        std::fs::write(&local, "[annex]\n\tfoo = local\n\tmulti = l\n\tflag\n").unwrap();
        let mut cfg = git2::Config::new().unwrap();
        cfg.add_file(&global, git2::ConfigLevel::Global, false)
            .unwrap();
        cfg.add_file(&local, git2::ConfigLevel::Local, false)
            .unwrap();
        let snap = GitConfig::from_git2(&cfg.snapshot().unwrap());
        assert_eq!(snap.get("annex.foo").as_deref(), Some("local"));
        assert_eq!(snap.get("ANNEX.FOO").as_deref(), Some("local"));
        assert_eq!(snap.get_all("annex.multi"), vec!["g", "l"]);
        assert_eq!(snap.get_bool("annex.flag"), Some(true));
        assert_eq!(snap.remote("R", "url").as_deref(), Some("g"));
        assert_eq!(
            snap.remote("r", "url"),
            None,
            "subsections are case-sensitive"
        );
        assert_eq!(snap.remotes(), vec!["R".to_string()]);
    }
}
