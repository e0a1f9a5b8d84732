//! Repository sizes: the sum of the `-s` sizes of the keys each repository's location log
//! entries say it has, as git-annex computes them for `maxsize`, `info` and the balanced
//! preferred content terms.
//!
//! git-annex counts every UUID a location log lists as present (dead repositories
//! included; keys without a size count 0), starts every repository in `uuid.log` at 0,
//! and reads the branch plus the journal (its uncommitted changes). So do we, and we also
//! fold in sibling git-annex branches it has not merged yet (it merges them before
//! reading).
//!
//! Walking 100k location logs takes a while, so the sums at a branch commit are cached in
//! `GITDIR/annex/annexgate/reposizes` (see [`CACHE_FILE`]):
//!
//! ```text
//! annexgate reposizes 1
//! commit <sha of the git-annex branch commit the sums are for>
//! hash 2
//! <uuid> <bytes>
//! ...
//! ```
//!
//! When the branch has moved, the cached sums are updated from the location logs that
//! changed between the cached commit and the new tip (added UUIDs add the key's size,
//! removed ones subtract it), exactly as git-annex updates its own reposize database; when
//! there is no usable cache (none yet, unreadable, or its commit is gone) the whole branch
//! is walked, streaming. Journal entries and unmerged siblings are applied on top of the
//! committed sums on every load and never cached. A cache that cannot be written (a
//! read-only repository) only costs the next run a walk.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::branch::log::paths::{location_log_key, BranchHash};
use crate::branch::log::{LocationLog, Timestamp, UuidLog};
use crate::branch::repo::{BranchView, GitRepo, ObjectId, RepoError};
use crate::types::{Key, Uuid};

/// The cache file, relative to `GITDIR/annex`.
pub const CACHE_FILE: &str = "annexgate/reposizes";
const MAGIC: &str = "annexgate reposizes 1";

/// Errors computing repository sizes.
#[derive(Debug, thiserror::Error)]
pub enum SizesError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("cannot write the repository size cache {path}: {source}")]
    WriteCache { path: PathBuf, source: io::Error },
}

/// Running sums of key sizes per repository (signed while changes are applied, as a
/// removal may be seen before the matching addition).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SizeTally {
    sums: HashMap<Uuid, i128>,
}

impl SizeTally {
    pub fn new() -> SizeTally {
        SizeTally::default()
    }

    /// Count one location log: every UUID present gets the key's size.
    pub fn add_log(&mut self, key: &Key, log: &[u8]) {
        let size = key.size().unwrap_or(0) as i128;
        for u in LocationLog::parse(log).present() {
            *self.sums.entry(u).or_insert(0) += size;
        }
    }

    /// A location log changed from `old` to `new` (either may be empty: added or
    /// removed): UUIDs that became present gain the key's size, those no longer present
    /// lose it.
    pub fn change(&mut self, key: &Key, old: &[u8], new: &[u8]) {
        let size = key.size().unwrap_or(0) as i128;
        let before: BTreeSet<Uuid> = LocationLog::parse(old).present().into_iter().collect();
        let after: BTreeSet<Uuid> = LocationLog::parse(new).present().into_iter().collect();
        for u in after.difference(&before) {
            *self.sums.entry(u.clone()).or_insert(0) += size;
        }
        for u in before.difference(&after) {
            // git-annex only subtracts from a repository it already has a size for.
            if let Some(s) = self.sums.get_mut(u) {
                *s -= size;
            }
        }
    }

    /// Make sure every one of `uuids` has a size (0 when it has nothing).
    pub fn add_known(&mut self, uuids: impl IntoIterator<Item = Uuid>) {
        for u in uuids {
            self.sums.entry(u).or_insert(0);
        }
    }

    /// Add another tally's sums (for tallies of disjoint sets of logs).
    pub fn absorb(&mut self, other: SizeTally) {
        for (u, s) in other.sums {
            *self.sums.entry(u).or_insert(0) += s;
        }
    }

    /// The sums in bytes (a negative sum, which consistent logs never give, reads as 0).
    pub fn sizes(&self) -> HashMap<Uuid, u64> {
        self.sums
            .iter()
            .map(|(u, s)| (u.clone(), (*s).clamp(0, u64::MAX as i128) as u64))
            .collect()
    }

    pub fn get(&self, u: &Uuid) -> Option<i128> {
        self.sums.get(u).copied()
    }

    fn format(&self, commit: ObjectId, hash: BranchHash) -> String {
        let mut lines: Vec<(&Uuid, &i128)> = self.sums.iter().collect();
        lines.sort();
        let mut s = format!(
            "{MAGIC}\ncommit {commit}\nhash {}\n",
            match hash {
                BranchHash::TwoLevel => 2,
                BranchHash::OneLevel => 1,
            }
        );
        for (u, n) in lines {
            s.push_str(&format!("{} {n}\n", u.as_str()));
        }
        s
    }

    /// Parse a cache file: the commit it is for and the sums, or `None` if it is not a
    /// complete cache for this branch hash layout.
    fn parse(text: &str, hash: BranchHash) -> Option<(ObjectId, SizeTally)> {
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let commit = ObjectId::parse(lines.next()?.strip_prefix("commit ")?)?;
        let want_hash = match hash {
            BranchHash::TwoLevel => "hash 2",
            BranchHash::OneLevel => "hash 1",
        };
        if lines.next()? != want_hash {
            return None;
        }
        let mut tally = SizeTally::new();
        for l in lines {
            let (u, n) = l.split_once(' ')?;
            tally
                .sums
                .insert(Uuid::parse(u).ok()?, n.parse::<i128>().ok()?);
        }
        if !text.ends_with('\n') {
            return None;
        }
        Some((commit, tally))
    }
}

/// [`SizeTally::add_log`] for a whole branch walk: the same sums, without allocating per
/// log (UUIDs are kept as bytes until the end). Lines are read as
/// [`crate::branch::log::PresenceLog::parse`] reads them: per UUID the newest line
/// counts, the earlier line on a tie.
#[derive(Debug, Default)]
pub struct WalkTally {
    sums: HashMap<Box<[u8]>, i128>,
    lines: Vec<(usize, usize, Timestamp, u8)>,
}

impl WalkTally {
    pub fn add_log(&mut self, key: &Key, log: &[u8]) {
        let size = key.size().unwrap_or(0) as i128;
        self.lines.clear();
        let mut offset = 0usize;
        for raw in log.split(|&b| b == b'\n' || b == b'\r') {
            let start = offset;
            offset += raw.len() + 1;
            if raw.is_empty() {
                continue;
            }
            let Some((ts, used)) = Timestamp::parse_prefix(raw) else {
                continue;
            };
            let Some(rest) = raw[used..].strip_prefix(b" ") else {
                continue;
            };
            let Some(&status) = rest.first() else {
                continue;
            };
            if !matches!(status, b'1' | b'0' | b'X') || rest.get(1) != Some(&b' ') {
                continue;
            }
            let info_start = start + used + 3;
            let info_len = raw.len() - used - 3;
            // Keep the first line per info unless a later one is strictly newer.
            let info = &log[info_start..info_start + info_len];
            match self
                .lines
                .iter_mut()
                .find(|(s, l, _, _)| &log[*s..*s + *l] == info)
            {
                Some(e) if e.2 >= ts => {}
                Some(e) => *e = (info_start, info_len, ts, status),
                None => self.lines.push((info_start, info_len, ts, status)),
            }
        }
        for &(s, l, _, status) in &self.lines {
            if status != b'1' {
                continue;
            }
            let info = &log[s..s + l];
            match self.sums.get_mut(info) {
                Some(n) => *n += size,
                None => {
                    if Uuid::parse_bytes(info).is_ok() {
                        self.sums.insert(info.into(), size);
                    }
                }
            }
        }
    }

    pub fn into_tally(self) -> SizeTally {
        let mut t = SizeTally::new();
        for (u, n) in self.sums {
            if let Ok(u) = Uuid::parse_bytes(&u) {
                *t.sums.entry(u).or_insert(0) += n;
            }
        }
        t
    }
}

/// How [`repo_sizes`] got the committed sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizesSource {
    /// The cache was for the current tip.
    Cached,
    /// The cache was for an older commit; this many changed location logs were applied.
    Incremental { changed: usize },
    /// Every location log was read.
    FullWalk { logs: usize },
}

/// Repository sizes for a view, and how they were obtained.
#[derive(Debug, Clone)]
pub struct RepoSizes {
    /// Bytes per repository: every repository in `uuid.log` and every UUID a location log
    /// lists.
    pub sizes: HashMap<Uuid, u64>,
    pub source: SizesSource,
    /// Location logs whose journal or unmerged-sibling version was applied on top.
    pub overridden: usize,
}

/// The sums of every location log committed at `commit`, by a streaming walk over two
/// threads.
pub fn full_walk(
    repo: &GitRepo,
    commit: ObjectId,
    hash: BranchHash,
) -> Result<(SizeTally, usize), RepoError> {
    let parts = repo.fold_location_logs(
        commit,
        hash,
        walk_threads(),
        || (WalkTally::default(), 0usize),
        |(tally, n), key, content| {
            tally.add_log(&key, content);
            *n += 1;
        },
    )?;
    let mut tally = SizeTally::new();
    let mut logs = 0;
    for (t, n) in parts {
        tally.absorb(t.into_tally());
        logs += n;
    }
    Ok((tally, logs))
}

/// Update sums made at `from` to commit `to`, from the location logs that differ (both
/// versions of each read in bulk).
pub fn incremental(
    repo: &GitRepo,
    mut tally: SizeTally,
    from: ObjectId,
    to: ObjectId,
    hash: BranchHash,
) -> Result<(SizeTally, usize), RepoError> {
    let changed = repo.changed_location_logs(from, to, hash)?;
    let ids: Vec<ObjectId> = changed
        .iter()
        .flat_map(|(_, o, n)| o.iter().chain(n.iter()).copied())
        .collect();
    let mut blobs = repo.read_blobs(&ids, walk_threads())?.into_iter();
    let mut next = |id: &Option<ObjectId>| -> Vec<u8> {
        match id {
            Some(_) => blobs.next().unwrap_or_default(),
            None => Vec::new(),
        }
    };
    for (key, old, new) in &changed {
        let old = next(old);
        let new = next(new);
        tally.change(key, &old, &new);
    }
    Ok((tally, changed.len()))
}

pub(crate) fn walk_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(4)
}

fn cache_path(repo: &GitRepo) -> PathBuf {
    repo.annex_dir().join(CACHE_FILE)
}

fn read_cache(path: &Path, hash: BranchHash) -> Option<(ObjectId, SizeTally)> {
    let text = fs::read_to_string(path).ok()?;
    SizeTally::parse(&text, hash)
}

/// Write the cache atomically (a temp file renamed over the old one).
fn write_cache(
    path: &Path,
    tally: &SizeTally,
    commit: ObjectId,
    hash: BranchHash,
) -> Result<(), SizesError> {
    let err = |source| SizesError::WriteCache {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().expect("the cache file is in a directory");
    fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(".reposizes.{}.tmp", std::process::id()));
    let written = fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(tally.format(commit, hash).as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|_| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(())
}

/// The committed sums at the view's tip: from the cache, updated incrementally when the
/// branch moved, or walked in full; the cache is rewritten when it changed.
pub fn committed_sizes(
    repo: &GitRepo,
    tip: ObjectId,
    hash: BranchHash,
) -> Result<(SizeTally, SizesSource), SizesError> {
    let path = cache_path(repo);
    let cached = read_cache(&path, hash);
    let (tally, source) = match cached {
        Some((commit, tally)) if commit == tip => (tally, SizesSource::Cached),
        Some((commit, tally)) => match incremental(repo, tally, commit, tip, hash) {
            Ok((t, changed)) => (t, SizesSource::Incremental { changed }),
            Err(e) => {
                tracing::debug!("repository size cache at {commit} unusable ({e}); walking");
                let (t, logs) = full_walk(repo, tip, hash)?;
                (t, SizesSource::FullWalk { logs })
            }
        },
        None => {
            let (t, logs) = full_walk(repo, tip, hash)?;
            (t, SizesSource::FullWalk { logs })
        }
    };
    if source != SizesSource::Cached {
        if let Err(e) = write_cache(&path, &tally, tip, hash) {
            tracing::debug!("{e}");
        }
    }
    Ok((tally, source))
}

/// Repository sizes as git-annex would compute them from this view now: the committed
/// sums (cached), with journal entries and unmerged siblings applied, and a 0 for every
/// repository in `uuid.log` that has nothing.
pub fn repo_sizes(
    repo: &GitRepo,
    view: &BranchView<'_>,
    hash: BranchHash,
) -> Result<RepoSizes, SizesError> {
    let (mut tally, source) = committed_sizes(repo, view.tip(), hash)?;
    let overridden = view.overridden_location_logs(hash)?;
    for path in &overridden {
        let Some(key) = location_log_key(path, hash) else {
            continue;
        };
        let old = view.committed(path)?.unwrap_or_default();
        let new = view.get(path)?;
        tally.change(&key, &old, &new);
    }
    let uuids = UuidLog::parse(&view.get(b"uuid.log")?);
    tally.add_known(uuids.values().map(|(u, _)| u.clone()));
    Ok(RepoSizes {
        sizes: tally.sizes(),
        source,
        overridden: overridden.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(size: u64, n: u32) -> Key {
        Key::from_str(&format!("SHA256E-s{size}--{n:064x}")).unwrap()
    }
    const A: &str = "11111111-1111-4111-8111-111111111111";
    const B: &str = "22222222-2222-4222-8222-222222222222";
    const C: &str = "33333333-3333-4333-8333-333333333333";

    #[test]
    fn adds_and_changes() {
        let mut t = SizeTally::new();
        t.add_log(&key(10, 1), format!("1s 1 {A}\n2s 1 {B}\n").as_bytes());
        t.add_log(&key(5, 2), format!("1s 1 {A}\n1s 0 {C}\n").as_bytes());
        assert_eq!(t.get(&Uuid::parse(A).unwrap()), Some(15));
        assert_eq!(t.get(&Uuid::parse(B).unwrap()), Some(10));
        assert_eq!(t.get(&Uuid::parse(C).unwrap()), None);
        // A drops key 1, C gets it.
        t.change(
            &key(10, 1),
            format!("1s 1 {A}\n2s 1 {B}\n").as_bytes(),
            format!("3s 0 {A}\n2s 1 {B}\n3s 1 {C}\n").as_bytes(),
        );
        assert_eq!(t.get(&Uuid::parse(A).unwrap()), Some(5));
        assert_eq!(t.get(&Uuid::parse(C).unwrap()), Some(10));
        // A key without a size counts 0.
        let wormy = Key::from_str("WORM--x").unwrap();
        t.add_log(&wormy, format!("1s 1 {A}\n").as_bytes());
        assert_eq!(t.get(&Uuid::parse(A).unwrap()), Some(5));
    }

    #[test]
    fn cache_text_round_trips_and_rejects_damage() {
        let mut t = SizeTally::new();
        t.add_log(&key(7, 1), format!("1s 1 {A}\n1s 1 {B}\n").as_bytes());
        t.add_known([Uuid::parse(C).unwrap()]);
        let c = ObjectId::parse("0123456789abcdef0123456789abcdef01234567").unwrap();
        let text = t.format(c, BranchHash::TwoLevel);
        assert_eq!(
            SizeTally::parse(&text, BranchHash::TwoLevel),
            Some((c, t.clone()))
        );
        assert_eq!(SizeTally::parse(&text, BranchHash::OneLevel), None);
        assert_eq!(
            SizeTally::parse(&text[..text.len() - 3], BranchHash::TwoLevel),
            None
        );
        assert_eq!(
            SizeTally::parse(&text.replace(" 7\n", " x\n"), BranchHash::TwoLevel),
            None
        );
    }

    fn arb_log() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            (0usize..3, 1u32..5, prop_oneof![Just('1'), Just('0')]),
            0..5,
        )
        .prop_map(|v| {
            let us = [A, B, C];
            v.into_iter()
                .map(|(u, t, s)| format!("{t}s {s} {}\n", us[u]))
                .collect::<String>()
                .into_bytes()
        })
    }

    fn arb_messy_log() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            (
                0usize..4,
                0u32..4,
                prop_oneof![Just('1'), Just('0'), Just('X')]
            )
                .prop_map(|(u, t, s)| {
                    let us = [A, B, C, "not a uuid"];
                    format!("{t}.{t}s {s} {}", us[u])
                }),
            Just("garbage".to_string()),
            Just("5s 1".to_string()),
            Just("5s 7 x".to_string()),
        ];
        proptest::collection::vec(
            (line, prop_oneof![Just("\n"), Just("\r\n"), Just("\n\n")]),
            0..8,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(l, e)| l + e)
                .collect::<String>()
                .into_bytes()
        })
    }

    proptest! {
        /// The walk's allocation-free tally equals the one built on the log parser.
        #[test]
        fn walk_tally_equals_parsed_tally(
            logs in proptest::collection::vec((arb_messy_log(), 0u64..100), 0..10)
        ) {
            let mut slow = SizeTally::new();
            let mut fast = WalkTally::default();
            for (i, (log, size)) in logs.iter().enumerate() {
                slow.add_log(&key(*size, i as u32), log);
                fast.add_log(&key(*size, i as u32), log);
            }
            prop_assert_eq!(fast.into_tally(), slow);
        }

        /// Applying the changes between two states of every log to the first state's sums
        /// gives the second state's sums.
        #[test]
        fn incremental_equals_recompute(
            states in proptest::collection::vec((arb_log(), arb_log(), 0u64..1000), 1..12)
        ) {
            let mut before = SizeTally::new();
            let mut after = SizeTally::new();
            for (i, (old, new, size)) in states.iter().enumerate() {
                before.add_log(&key(*size, i as u32), old);
                after.add_log(&key(*size, i as u32), new);
            }
            let mut updated = before.clone();
            for (i, (old, new, size)) in states.iter().enumerate() {
                updated.change(&key(*size, i as u32), old, new);
            }
            // Entries at 0 may remain where a repository lost everything.
            let nonzero = |t: &SizeTally| -> HashMap<Uuid, u64> {
                t.sizes().into_iter().filter(|(_, s)| *s > 0).collect()
            };
            prop_assert_eq!(nonzero(&updated), nonzero(&after));
        }
    }
}
