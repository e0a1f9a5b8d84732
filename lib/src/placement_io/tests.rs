//! Loading facts and sizes from hand-made git-annex branches (plain git; the comparisons
//! with git-annex itself are in the integration tests, `tests/it/placement_oracle.rs`).

use std::collections::HashMap;
use std::path::PathBuf;

use super::sizes::{committed_sizes, full_walk, repo_sizes, SizesSource, CACHE_FILE};
use super::*;
use crate::branch::log::paths::{journal_name, location_log_path, BranchHash};
use crate::branch::repo::{GitRepo, ObjectId};
use crate::branch::testing::{empty_annex_branch, git, git_env};
use crate::placement::{Engine, KeyFacts, TrustLevel, Want};
use crate::types::{Key, Uuid};

const A: &str = "aaaaaaaa-1111-4111-8111-111111111111";
const B: &str = "bbbbbbbb-2222-4222-8222-222222222222";
const C: &str = "cccccccc-3333-4333-8333-333333333333";
const D: &str = "dddddddd-4444-4444-8444-444444444444";
const CLUSTER: &str = "ac123456-1111-8111-8111-111111111111";

fn u(s: &str) -> Uuid {
    Uuid::parse(s).unwrap()
}

fn key(size: u64, n: u32) -> Key {
    Key::from_str(&format!("SHA256E-s{size}--{n:064x}.dat")).unwrap()
}

/// A repository with an empty git-annex branch, made with plain git.
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("r");
        std::fs::create_dir(&dir).unwrap();
        git(&dir, &["init", "-q"]);
        git(&dir, &["config", "annex.uuid", A]);
        git(&dir, &["config", "annex.version", "10"]);
        empty_annex_branch(&dir);
        Fixture { _tmp: tmp, dir }
    }

    fn repo(&self) -> GitRepo {
        GitRepo::open(&self.dir).unwrap()
    }

    fn commit(&self, files: &[(Vec<u8>, String)]) -> ObjectId {
        let changes: Vec<(Vec<u8>, Vec<u8>)> = files
            .iter()
            .map(|(p, c)| (p.clone(), c.clone().into_bytes()))
            .collect();
        self.repo()
            .commit(&changes, "test")
            .unwrap()
            .commit
            .expect("something changed")
    }

    fn loc(k: &Key, lines: &[(&str, char)]) -> (Vec<u8>, String) {
        let text: String = lines
            .iter()
            .enumerate()
            .map(|(i, (u, s))| format!("{}s {s} {u}\n", 1000 + i))
            .collect();
        (location_log_path(k, BranchHash::TwoLevel), text)
    }

    /// Commit the removal of a file from the branch (with plain git).
    fn remove(&self, path: &[u8]) -> ObjectId {
        let index = self.dir.join(".git/tmp-index");
        let run = |args: &[&str]| git_env(&self.dir, args, &[("GIT_INDEX_FILE", &index)]);
        let p = std::str::from_utf8(path).unwrap();
        run(&["read-tree", "refs/heads/git-annex"]);
        run(&["rm", "--cached", "-q", p]);
        let tree = run(&["write-tree"]);
        let c = run(&[
            "commit-tree",
            &tree,
            "-p",
            "refs/heads/git-annex",
            "-m",
            "rm",
        ]);
        run(&["update-ref", "refs/heads/git-annex", &c]);
        std::fs::remove_file(&index).unwrap();
        ObjectId::parse(&c).unwrap()
    }

    fn sizes(&self) -> (HashMap<Uuid, u64>, SizesSource) {
        let repo = self.repo();
        let view = repo.view().unwrap();
        let s = repo_sizes(&repo, &view, BranchHash::TwoLevel).unwrap();
        (s.sizes, s.source)
    }

    fn drop_cache(&self) {
        std::fs::remove_file(self.dir.join(".git/annex").join(CACHE_FILE)).unwrap();
    }
}

fn sizes_of(pairs: &[(&str, u64)]) -> HashMap<Uuid, u64> {
    pairs.iter().map(|(s, n)| (u(s), *n)).collect()
}

#[test]
fn facts_from_the_branch_and_config() {
    let f = Fixture::new();
    f.commit(&[
        (
            b"uuid.log".to_vec(),
            format!("{A} origin timestamp=1s\n{B} bee timestamp=1s\n{C} sea timestamp=1s\n"),
        ),
        (
            b"trust.log".to_vec(),
            format!("{B} 0 timestamp=1s\n{C} 1 timestamp=1s\n{D} X timestamp=1s\n"),
        ),
        (
            b"group.log".to_vec(),
            format!("{A} nodes timestamp=1s\n{B} nodes backup timestamp=1s\n{D} timestamp=1s\n"),
        ),
        (
            b"preferred-content.log".to_vec(),
            format!("{A} balanced=nodes timestamp=1s\n{B} standard timestamp=1s\n"),
        ),
        (
            b"required-content.log".to_vec(),
            format!("{C} include=*.iso timestamp=1s\n"),
        ),
        (
            b"group-preferred-content.log".to_vec(),
            "1s nodes balanced=nodes:2\n".into(),
        ),
        (b"numcopies.log".to_vec(), "1s 3\n".into()),
        (b"mincopies.log".to_vec(), "1s 2\n".into()),
        (b"maxsize.log".to_vec(), format!("1s {A} 5000\n1s {B} 0\n")),
        (
            b"remote.log".to_vec(),
            format!("{C} name=exp type=directory exporttree=yes preferreddir=pub timestamp=1s\n"),
        ),
        (b"cluster.log".to_vec(), format!("1s {CLUSTER} {A} {B}\n")),
    ]);
    git(&f.dir, &["config", "remote.bee.annex-uuid", B]);
    git(
        &f.dir,
        &["config", "remote.bee.annex-trustlevel", "trusted"],
    );
    git(&f.dir, &["config", "remote.sea.annex-uuid", C]);
    git(&f.dir, &["config", "remote.dee.annex-uuid", D]);
    git(&f.dir, &["config", "remote.dee.annex-proxied-by", A]);
    git(&f.dir, &["config", "annex.fullybalancedthreshhold", "50"]);

    let p = Placement::open(&f.dir, None).unwrap();
    let view = p.repo.view().unwrap();
    let ctx = p.context(&view).unwrap();
    let facts = &ctx.loaded.facts;
    assert_eq!(facts.local, Some(u(A)));
    // The log says untrusted, the remote's config says trusted.
    assert_eq!(facts.trust_of(&u(B)), TrustLevel::Trusted);
    // An export remote without versioning is at most untrusted, even if trusted.
    assert_eq!(facts.trust_of(&u(C)), TrustLevel::Untrusted);
    // Dead stays dead under the proxy cap.
    assert_eq!(facts.trust_of(&u(D)), TrustLevel::Dead);
    assert_eq!(facts.groups[&u(B)].len(), 2);
    assert!(
        !facts.groups.contains_key(&u(D)),
        "an empty group set is no groups"
    );
    assert_eq!(facts.preferred[&u(A)], "balanced=nodes");
    assert_eq!(facts.required[&u(C)], "include=*.iso");
    assert_eq!(facts.group_preferred["nodes"], "balanced=nodes:2");
    assert_eq!((facts.numcopies, facts.mincopies), (Some(3), Some(2)));
    assert_eq!(facts.maxsize[&u(A)], 5000);
    assert_eq!(facts.maxsize[&u(B)], 0);
    assert_eq!(facts.preferreddir[&u(C)], "pub");
    assert_eq!(facts.clusters[&u(CLUSTER)].len(), 2);
    assert!((facts.fullybalanced_threshold - 0.5).abs() < 1e-9);
    // Balanced terms and maxsizes: sizes were computed (every uuid.log entry at 0).
    assert_eq!(facts.repo_sizes.get(&u(C)), Some(&0));
    // Asked about: configured and not dead.
    assert_eq!(ctx.repositories, vec![u(A), u(B), u(C)]);
    // Names.
    let names = &ctx.loaded.names;
    assert_eq!(names.resolve("bee"), Some(u(B)));
    assert_eq!(names.resolve("here"), Some(u(A)));
    assert_eq!(names.resolve("sea"), Some(u(C)));
    assert_eq!(names.resolve("origin"), Some(u(A)), "by description");
    assert_eq!(names.resolve(D), Some(u(D)));
    assert_eq!(names.resolve("nobody"), None);
    assert_eq!(names.label(&u(B)).as_deref(), Some("bee"));

    // The deprecated git config numcopies counts when the log has none.
    let g = Fixture::new();
    g.commit(&[(b"uuid.log".to_vec(), format!("{A} x timestamp=1s\n"))]);
    git(&g.dir, &["config", "annex.numcopies", "4"]);
    let p = Placement::open(&g.dir, None).unwrap();
    let view = p.repo.view().unwrap();
    let ctx = p.context(&view).unwrap();
    assert_eq!(ctx.loaded.facts.numcopies, Some(4));
    assert!(
        ctx.loaded.sizes.is_none(),
        "no balanced term: no sizes needed"
    );
}

#[test]
fn sizes_full_incremental_journal_siblings_and_bad_caches() {
    let f = Fixture::new();
    let (k1, k2, k3, k4) = (key(100, 1), key(20, 2), key(3, 3), key(7, 4));
    let nosize = Key::from_str("WORM-m1--nosize").unwrap();
    f.commit(&[
        (
            b"uuid.log".to_vec(),
            format!("{A} a timestamp=1s\n{D} d timestamp=1s\n"),
        ),
        Fixture::loc(&k1, &[(A, '1'), (B, '1')]),
        Fixture::loc(&k2, &[(A, '1'), (C, '0')]),
        Fixture::loc(&k3, &[(B, 'X')]),
        Fixture::loc(&nosize, &[(C, '1')]),
    ]);
    let (s, src) = f.sizes();
    assert!(matches!(src, SizesSource::FullWalk { logs: 4 }), "{src:?}");
    assert_eq!(s, sizes_of(&[(A, 120), (B, 100), (C, 0), (D, 0)]));
    let (_, src) = f.sizes();
    assert_eq!(src, SizesSource::Cached);

    // Changes: k1 leaves A, k2 arrives at C, k4 is new, k3's log goes away.
    f.commit(&[
        Fixture::loc(&k1, &[(A, '0'), (B, '1')]),
        Fixture::loc(&k2, &[(A, '1'), (C, '1')]),
        Fixture::loc(&k4, &[(D, '1')]),
    ]);
    let tip = f.remove(&Fixture::loc(&k3, &[]).0);
    let repo = f.repo();
    let (s, src) = f.sizes();
    assert_eq!(src, SizesSource::Incremental { changed: 4 });
    let expect = sizes_of(&[(A, 20), (B, 100), (C, 20), (D, 7)]);
    assert_eq!(s, expect);
    f.drop_cache();
    let (s2, src) = f.sizes();
    assert!(matches!(src, SizesSource::FullWalk { .. }));
    assert_eq!(s2, expect, "incremental equals a full walk");
    let (walked, _) = full_walk(&repo, tip, BranchHash::TwoLevel).unwrap();
    assert_eq!(walked.sizes().get(&u(A)), Some(&20));

    // A journal entry (git-annex's uncommitted change) counts, and is not cached.
    let journal = f.dir.join(".git/annex/journal");
    std::fs::create_dir_all(&journal).unwrap();
    let (path, _) = Fixture::loc(&k4, &[]);
    std::fs::write(
        journal.join(std::str::from_utf8(&journal_name(&path)).unwrap()),
        format!("5000s 1 {D}\n5000s 1 {B}\n"),
    )
    .unwrap();
    let (s, src) = f.sizes();
    assert_eq!(src, SizesSource::Cached);
    assert_eq!(s[&u(B)], 107);
    std::fs::remove_dir_all(&journal).unwrap();
    assert_eq!(f.sizes().0[&u(B)], 100);

    // An unmerged sibling branch counts too.
    let side = f.commit(&[Fixture::loc(&k4, &[(D, '1'), (A, '1')])]);
    git(
        &f.dir,
        &[
            "update-ref",
            "refs/remotes/other/git-annex",
            &side.to_string(),
        ],
    );
    git(
        &f.dir,
        &["update-ref", "refs/heads/git-annex", &tip.to_string()],
    );
    let (s, _) = f.sizes();
    assert_eq!(s[&u(A)], 27, "k4 at A on the sibling");

    // A damaged cache, or one for a commit that no longer exists: a full walk.
    let cache = f.dir.join(".git/annex").join(CACHE_FILE);
    std::fs::write(&cache, "annexgate reposizes 1\ncommit nonsense\n").unwrap();
    assert!(matches!(f.sizes().1, SizesSource::FullWalk { .. }));
    let text = std::fs::read_to_string(&cache).unwrap();
    let gone = text.replacen(
        &tip.to_string(),
        "1234567890123456789012345678901234567890",
        1,
    );
    std::fs::write(&cache, gone).unwrap();
    let (s, src) = f.sizes();
    assert!(matches!(src, SizesSource::FullWalk { .. }), "{src:?}");
    assert_eq!(s[&u(A)], 27);
    let (t, src) = committed_sizes(&repo, tip, BranchHash::TwoLevel).unwrap();
    assert_eq!(src, SizesSource::Cached);
    assert_eq!(t.sizes().get(&u(A)), Some(&20));
}

#[test]
fn bulk_reads_equal_per_key_reads() {
    let f = Fixture::new();
    let mut files = vec![(b"uuid.log".to_vec(), format!("{A} a timestamp=1s\n"))];
    let keys: Vec<Key> = (0..300).map(|i| key(i as u64 * 10, i)).collect();
    let us = [A, B, C, D];
    for (i, k) in keys.iter().enumerate() {
        if i % 7 == 0 {
            continue; // no log at all
        }
        let holders: Vec<(&str, char)> = us
            .iter()
            .enumerate()
            .filter(|(j, _)| (i >> j) & 1 == 1)
            .map(|(_, u)| (*u, if i % 5 == 0 { '0' } else { '1' }))
            .collect();
        files.push(Fixture::loc(k, &holders));
    }
    f.commit(&files);
    // A journal entry overrides one committed log.
    let journal = f.dir.join(".git/annex/journal");
    std::fs::create_dir_all(&journal).unwrap();
    let (path, _) = Fixture::loc(&keys[1], &[]);
    std::fs::write(
        journal.join(std::str::from_utf8(&journal_name(&path)).unwrap()),
        format!("9000s 1 {D}\n"),
    )
    .unwrap();

    let p = Placement::open(&f.dir, Some(false)).unwrap();
    let view = p.repo.view().unwrap();
    let ctx = p.context(&view).unwrap();
    let one_by_one = ctx.key_reader().unwrap();
    let bulk = ctx
        .key_reader()
        .unwrap()
        .with_index(ctx.location_index().unwrap());
    for k in &keys {
        let mut a = one_by_one.key(k.clone()).unwrap().locations().to_vec();
        let mut b = bulk.key(k.clone()).unwrap().locations().to_vec();
        a.sort();
        b.sort();
        assert_eq!(a, b, "{}", k.to_text());
    }
    assert!(bulk
        .key(keys[1].clone())
        .unwrap()
        .locations()
        .contains(&u(D)));
    // Any number of threads walks the same logs.
    let repo = f.repo();
    let count = |threads| {
        repo.fold_location_logs(
            view.tip(),
            BranchHash::TwoLevel,
            threads,
            || 0usize,
            |n, _, _| *n += 1,
        )
        .unwrap()
        .into_iter()
        .sum::<usize>()
    };
    assert_eq!(count(1), keys.len() - keys.len().div_ceil(7));
    assert_eq!(count(3), count(1));
    assert_eq!(count(64), count(1));
}

#[test]
fn key_facts_from_the_branch() {
    let f = Fixture::new();
    let k = key(10, 1);
    let ek = |kind: &str| {
        crate::branch::log::paths::key_log_path(
            &k,
            match kind {
                "met" => crate::branch::log::KeyLog::MetaData,
                _ => crate::branch::log::KeyLog::Url,
            },
            BranchHash::TwoLevel,
        )
    };
    f.commit(&[
        (b"uuid.log".to_vec(), format!("{A} a timestamp=1s\n")),
        (
            b"preferred-content.log".to_vec(),
            format!("{A} metadata=tag=foo* and url=https://x/* and present timestamp=1s\n"),
        ),
        Fixture::loc(&k, &[(A, '1')]),
        (ek("met"), "1s tag +foobar\n".into()),
        (ek("web"), "1s 1 https://x/y\n".into()),
    ]);
    std::fs::create_dir_all(f.dir.join(".git/annex")).unwrap();
    std::fs::write(
        f.dir.join(".git/annex/unused"),
        format!("1 {} 1s\n", k.to_text()),
    )
    .unwrap();
    let p = Placement::open(&f.dir, Some(false)).unwrap();
    let view = p.repo.view().unwrap();
    let ctx = p.context(&view).unwrap();
    let reader = ctx.key_reader().unwrap();
    let kf = reader.key(k.clone()).unwrap();
    assert!(kf.metadata_any(&mut |f, v| f == "tag" && v == b"foobar"));
    assert!(kf.url_any(&mut |u| u == "https://x/y"));
    assert!(kf.is_unused());
    // The location log says A has it, but A is this repository and its object file is
    // not there: `present` is false, as git-annex decides it here.
    assert_eq!(kf.present_here(), Some(false));
    let engine = Engine::new(ctx.loaded.facts.clone());
    assert_eq!(engine.want_get(&u(A), &kf, None), Want::NotWanted);
    let obj = f
        .dir
        .join(".git/annex/objects")
        .join(crate::types::hashdir::hash_dir_mixed(&k));
    let name = k.to_text().into_owned();
    std::fs::create_dir_all(obj.join(&name)).unwrap();
    std::fs::write(obj.join(&name).join(&name), b"0123456789").unwrap();
    let reader = ctx.key_reader().unwrap();
    let kf = reader.key(k.clone()).unwrap();
    assert_eq!(kf.present_here(), Some(true));
    assert_eq!(engine.want_get(&u(A), &kf, None), Want::Wanted);
    assert!(reader.take_error().is_none());
}
