use std::path::Path;

use super::*;
use crate::branch::log::paths::{location_log_path, BranchHash};
use crate::branch::repo::GitRepo;
use crate::branch::testing::{bare_annex_repo, git};
use crate::types::Key;

fn idx_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join("objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "idx"))
        .collect();
    v.sort();
    v
}

/// A pack of objects of every kind and of sizes around the header's size steps: git
/// verifies it, reads every object back as it went in, and `git index-pack` makes an
/// index byte for byte like ours.
#[test]
fn git_reads_and_indexes_our_packs_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    git(dir, &["init", "-q", "--bare"]);
    let mut b = PackBuilder::new();
    let mut want = Vec::new();
    for (i, n) in [0usize, 1, 15, 16, 127, 128, 2047, 2048, 70_000, 300_000]
        .into_iter()
        .enumerate()
    {
        let content: Vec<u8> = (0..n).map(|j| ((j * 7 + i * 13) % 251) as u8).collect();
        let id = b.add(Kind::Blob, &content).unwrap();
        want.push((id, "blob", content));
    }
    let blob = want[1].0;
    let mut tree = b"100644 a\0".to_vec();
    tree.extend_from_slice(&blob);
    let tree_id = b.add(Kind::Tree, &tree).unwrap();
    let commit = format!(
        "tree {}\nauthor t <t@t> 1700000000 +0130\ncommitter t <t@t> 1700000000 +0130\n\nm",
        hex(&tree_id)
    );
    let commit_id = b.add(Kind::Commit, commit.as_bytes()).unwrap();
    // Adding an object again changes nothing.
    assert_eq!(b.add(Kind::Tree, &tree).unwrap(), tree_id);
    assert_eq!(b.len(), 12);
    want.push((tree_id, "tree", tree));
    want.push((commit_id, "commit", commit.into_bytes()));

    let idx = b.write(&dir.join("objects")).unwrap().unwrap();
    assert!(b.is_empty(), "the builder starts over");
    assert_eq!(b.write(&dir.join("objects")).unwrap(), None);
    assert_eq!(idx_files(dir), vec![idx.clone()]);
    let pack = idx.with_extension("pack");
    let verify = git(dir, &["verify-pack", "-v", pack.to_str().unwrap()]);
    assert!(verify.contains("ok"), "{verify}");
    assert!(!verify.contains("chain length"), "no deltas: {verify}");
    for (id, kind, content) in &want {
        let h = hex(id);
        assert_eq!(git(dir, &["cat-file", "-t", &h]), *kind);
        let out = std::process::Command::new("git")
            .args(["cat-file", kind, &h])
            .current_dir(dir)
            .output()
            .unwrap();
        assert_eq!(&out.stdout, content, "{kind} {h}");
        // Our ids are git's.
        let git_id = std::process::Command::new("git")
            .args(["hash-object", "--stdin", "-t", kind, "--literally"])
            .current_dir(dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(content)?;
                c.wait_with_output()
            })
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&git_id.stdout).trim(), h);
    }
    // git's own index of our pack is our index.
    let theirs = dir.join("theirs.idx");
    git(
        dir,
        &[
            "index-pack",
            "-o",
            theirs.to_str().unwrap(),
            pack.to_str().unwrap(),
        ],
    );
    assert_eq!(fs::read(&theirs).unwrap(), fs::read(&idx).unwrap());
    let mode = fs::metadata(&pack).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o444);
    // No temporary file is left.
    let names: Vec<String> = fs::read_dir(dir.join("objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.starts_with("pack-")), "{names:?}");
}

/// Commits of the branch (written as packs) have the trees git would make: the same
/// tree ids as libgit2's tree builder gives for the same changes, entries in git's
/// order (a file `a.b` before a directory `a`, `a-b` before `a/`), and `git fsck
/// --strict` finds nothing wrong. Each commit is one new pack, nothing loose.
#[test]
fn branch_commits_are_packs_with_gits_trees() {
    let tmp = bare_annex_repo();
    let dir = tmp.path();
    let repo = GitRepo::open(dir).unwrap();
    let key = |n: u32| Key::from_str(&format!("SHA256E-s{n}--{n:064x}.dat")).unwrap();
    let mut all: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for round in 0..3u32 {
        let mut changes: Vec<(Vec<u8>, Vec<u8>)> = (0..40)
            .map(|k| {
                (
                    location_log_path(&key(k * (round + 1)), BranchHash::TwoLevel),
                    format!(
                        "{}s 1 00000000-0000-4000-8000-00000000000{round}\n",
                        1000 + k
                    )
                    .into_bytes(),
                )
            })
            .collect();
        changes.push((b"uuid.log".to_vec(), format!("u{round}\n").into_bytes()));
        changes.push((b"a.b".to_vec(), b"x\n".to_vec()));
        changes.push((b"a-b".to_vec(), b"y\n".to_vec()));
        changes.push((format!("a/f{round}").into_bytes(), b"z\n".to_vec()));
        changes.push((b"a/b/c/d.log".to_vec(), format!("{round}\n").into_bytes()));
        let before = idx_files(dir).len();
        let loose_before = git(dir, &["count-objects"]);
        let out = repo.commit(&changes, "update").unwrap();
        assert!(out.commit.is_some());
        assert_eq!(idx_files(dir).len(), before + 1, "one new pack per commit");
        assert_eq!(git(dir, &["count-objects"]), loose_before, "nothing loose");
        all.extend(changes);
    }
    // The same changes through libgit2's tree builder give the same tree.
    let g = git2::Repository::open(dir).unwrap();
    let mut tb = git2::build::TreeUpdateBuilder::new();
    let mut last = std::collections::BTreeMap::new();
    for (p, c) in &all {
        last.insert(p.clone(), c.clone());
    }
    for (p, c) in &last {
        tb.upsert(p.clone(), g.blob(c).unwrap(), git2::FileMode::Blob);
    }
    let empty = git(dir, &["hash-object", "-t", "tree", "/dev/null"]);
    let base = g.find_tree(git2::Oid::from_str(&empty).unwrap()).unwrap();
    let theirs = tb.create_updated(&g, &base).unwrap();
    let ours = git(dir, &["rev-parse", "git-annex^{tree}"]);
    assert_eq!(ours, theirs.to_string());
    git(dir, &["fsck", "--strict", "--no-dangling"]);
    assert_eq!(git(dir, &["show", "git-annex:a/b/c/d.log"]), "2");
    assert_eq!(git(dir, &["rev-list", "--count", "git-annex"]), "4");
}

/// Many small commits do not leave as many packs: past the limit, a background
/// `git repack --geometric=2` rolls them up, and the branch stays whole.
#[test]
fn many_commits_are_rolled_up_into_fewer_packs() {
    rolled_up(false);
}

/// The same when every commit comes from a `GitRepo` of its own, as from gateway
/// sessions (a process each) that commit a few times each.
#[test]
fn commits_of_short_sessions_are_rolled_up_too() {
    rolled_up(true);
}

fn rolled_up(short_lived: bool) {
    let tmp = bare_annex_repo();
    let dir = tmp.path();
    let repo = GitRepo::open(dir).unwrap();
    let commits = 40;
    let mut most = 0;
    for n in 0..commits {
        let path = location_log_path(
            &Key::from_str(&format!("SHA256E-s{n}--{n:064x}")).unwrap(),
            BranchHash::TwoLevel,
        );
        let fresh = short_lived.then(|| GitRepo::open(dir).unwrap());
        fresh
            .as_ref()
            .unwrap_or(&repo)
            .commit(&[(path, format!("{n}s 1 u\n").into_bytes())], "update")
            .unwrap();
        most = most.max(idx_files(dir).len());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while idx_files(dir).len() >= 24 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let left = idx_files(dir).len();
    assert!(
        left < 24,
        "{left} packs left after {commits} commits (most {most})"
    );
    assert!(most > 24, "the limit was passed before rolling up ({most})");
    drop(repo);
    git(dir, &["fsck", "--strict", "--no-dangling"]);
    assert_eq!(git(dir, &["rev-list", "--count", "git-annex"]), "41");
}

/// A stored zlib stream is zlib's: it inflates back to its input at block boundaries
/// and past them, and carries the checksum zlib checks (a changed byte is refused).
#[test]
fn stored_zlib_streams_inflate_back() {
    let mut inflater = crate::branch::pack::Inflater::new();
    for n in [
        0usize, 1, 2048, 65_534, 65_535, 65_536, 131_070, 131_071, 200_001,
    ] {
        let input: Vec<u8> = (0..n).map(|j| (j * 31 % 256) as u8).collect();
        let mut out = vec![0xaa];
        stored_zlib(&input, &mut out);
        assert_eq!(out[0], 0xaa, "appended, not overwritten");
        let stream = &out[1..];
        assert_eq!(
            stream.len(),
            2 + 5 * n.div_ceil(65_535).max(1) + n + 4,
            "size {n}"
        );
        assert_eq!(
            inflater.inflate(stream, n).as_deref(),
            Some(&input[..]),
            "size {n}"
        );
        if n > 0 {
            let mut bad = stream.to_vec();
            let i = bad.len() - 5;
            bad[i] ^= 1;
            assert_eq!(inflater.inflate(&bad, n), None, "size {n}: checksum");
        }
    }
}
