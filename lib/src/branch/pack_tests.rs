//! Tests of the pack reader: against libgit2 on packs git wrote (offset and reference
//! deltas), through `GitRepo`'s bulk reads on a branch that mixes packed and loose
//! objects, and on damaged or hand-made packs (errors, never panics).

use super::*;
use crate::branch::log::paths::{location_log_key, location_log_path, BranchHash};
use crate::branch::repo::{GitRepo, ObjectId};
use crate::branch::testing::{empty_annex_branch, git};
use crate::types::Key;

fn raw(hex: &str) -> [u8; 20] {
    let v: Vec<u8> = (0..20)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

fn kind_of(k: git2::ObjectType) -> Kind {
    match k {
        git2::ObjectType::Commit => Kind::Commit,
        git2::ObjectType::Tree => Kind::Tree,
        git2::ObjectType::Tag => Kind::Tag,
        _ => Kind::Blob,
    }
}

/// A repository of similar files changed over several commits (so packing them makes
/// deltas), then repacked into one pack with offset or reference deltas.
fn packed_repo(ref_deltas: bool) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    git(dir, &["init", "-q"]);
    let mut text = String::new();
    for round in 0..8 {
        for i in 0..30 {
            text.push_str(&format!(
                "line {i} of round {round}: {}\n",
                "x".repeat(i * 3)
            ));
            std::fs::write(dir.join(format!("f{}", i % 6)), &text).unwrap();
        }
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", &format!("round {round}")]);
    }
    git(dir, &["tag", "-a", "-m", "a tag", "v1"]);
    repack(dir, ref_deltas);
    tmp
}

/// Repack everything into one pack, with reference deltas or offset deltas.
fn repack(dir: &Path, ref_deltas: bool) {
    let ofs = if ref_deltas { "false" } else { "true" };
    git(
        dir,
        &[
            "-c",
            &format!("repack.useDeltaBaseOffset={ofs}"),
            "repack",
            "-a",
            "-d",
            "-f",
            "-q",
            "--depth=20",
        ],
    );
}

/// Every object id in the repository, with libgit2's reading of it.
fn all_objects(dir: &Path) -> Vec<([u8; 20], Kind, Vec<u8>)> {
    let repo = git2::Repository::open(dir).unwrap();
    let odb = repo.odb().unwrap();
    git(
        dir,
        &[
            "cat-file",
            "--batch-all-objects",
            "--batch-check=%(objectname)",
        ],
    )
    .lines()
    .map(|hex| {
        let o = odb.read(git2::Oid::from_str(hex).unwrap()).unwrap();
        (raw(hex), kind_of(o.kind()), o.data().to_vec())
    })
    .collect()
}

/// How many offset and reference deltas the packs hold (by the type in each entry's
/// first byte).
fn delta_counts(packs: &Packs) -> (usize, usize) {
    let (mut ofs, mut refs) = (0, 0);
    for p in &packs.packs {
        for i in 0..p.count {
            match (p.pack.bytes()[p.offset_at(i) as usize] >> 4) & 7 {
                6 => ofs += 1,
                7 => refs += 1,
                _ => {}
            }
        }
    }
    (ofs, refs)
}

fn reads_as_libgit2(ref_deltas: bool) {
    let tmp = packed_repo(ref_deltas);
    let packs = Packs::open(&tmp.path().join(".git/objects")).unwrap();
    assert_eq!(packs.packs.len(), 1);
    let (ofs, refs) = delta_counts(&packs);
    if ref_deltas {
        assert!(
            refs > 10 && ofs == 0,
            "{ofs} offset, {refs} reference deltas"
        );
    } else {
        assert!(
            ofs > 10 && refs == 0,
            "{ofs} offset, {refs} reference deltas"
        );
    }
    let objects = all_objects(tmp.path());
    assert!(objects.len() > 50, "{} objects", objects.len());
    let mut r = packs.reader();
    for (id, kind, data) in &objects {
        let (k, d) = r.read(id).unwrap().expect("in the pack");
        assert_eq!((k, &d), (*kind, data));
    }
    // A fresh reader (no delta bases kept) reads the same, in reverse order.
    let mut r = packs.reader();
    for (id, kind, data) in objects.iter().rev() {
        assert_eq!(r.read(id).unwrap(), Some((*kind, data.clone())));
    }
    assert_eq!(r.read(&[0u8; 20]).unwrap(), None);
    assert_eq!(r.read(&[0xffu8; 20]).unwrap(), None);
}

#[test]
fn offset_deltas_read_as_libgit2_reads_them() {
    reads_as_libgit2(false);
}

#[test]
fn reference_deltas_read_as_libgit2_reads_them() {
    reads_as_libgit2(true);
}

#[test]
fn no_pack_directory_means_no_packs() {
    let tmp = tempfile::tempdir().unwrap();
    let packs = Packs::open(tmp.path()).unwrap();
    assert!(packs.is_empty());
    assert_eq!(packs.reader().read(&[1u8; 20]).unwrap(), None);
    // An index without its pack, or not an index at all, is skipped.
    std::fs::create_dir(tmp.path().join("pack")).unwrap();
    std::fs::write(tmp.path().join("pack/pack-a.idx"), b"not an index").unwrap();
    let real = packed_repo(false);
    let idx = std::fs::read_dir(real.path().join(".git/objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "idx"))
        .unwrap();
    std::fs::copy(&idx, tmp.path().join("pack/pack-b.idx")).unwrap();
    assert!(Packs::open(tmp.path()).unwrap().is_empty());
}

/// The branch's bulk reads (which read packs themselves, and loose objects through
/// libgit2) give what libgit2's per-object reads give.
fn bulk_reads(ref_deltas: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    git(dir, &["init", "-q"]);
    git(
        dir,
        &[
            "config",
            "annex.uuid",
            "00000000-0000-4000-8000-0000000000aa",
        ],
    );
    git(dir, &["config", "annex.version", "10"]);
    empty_annex_branch(dir);
    let repo = GitRepo::open(dir).unwrap();
    let key = |n: u32| Key::from_str(&format!("SHA256E-s{n}--{n:064x}.dat")).unwrap();
    let uuid = |n: u32| format!("{n:08x}-0000-4000-8000-000000000000");
    let log = |k: u32, round: u32| -> (Vec<u8>, Vec<u8>) {
        let text: String = (0..=round.min(4))
            .map(|r| format!("{}s 1 {}\n", 1000 + r, uuid(k % 7 + r)))
            .collect();
        (
            location_log_path(&key(k), BranchHash::TwoLevel),
            text.into_bytes(),
        )
    };
    let mut commits = Vec::new();
    for round in 0..4 {
        let changes: Vec<_> = (0..300)
            .filter(|k| round == 0 || k % (round + 1) == 0)
            .map(|k| log(k, round))
            .collect();
        commits.push(repo.commit(&changes, "test").unwrap().commit.unwrap());
    }
    repack(dir, ref_deltas);
    // Then a commit of ours (its objects in a pack of their own, written by us), and
    // one with loose objects (as git-annex writes them): changed and new logs.
    let changes: Vec<_> = (250..400).map(|k| log(k, 5)).collect();
    commits.push(repo.commit(&changes, "test").unwrap().commit.unwrap());
    let changes: Vec<_> = (380..450).map(|k| log(k, 6)).collect();
    commits.push(loose_commit(dir, &changes));
    let packs = Packs::open(&dir.join(".git/objects")).unwrap();
    let (o, r) = delta_counts(&packs);
    assert!(o + r > 10, "deltas in the pack: {o} offset, {r} reference");
    assert!(
        !git(dir, &["count-objects"]).starts_with("0 objects"),
        "some objects are loose"
    );
    let pack_count = std::fs::read_dir(dir.join(".git/objects/pack"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "idx")
        })
        .count();
    assert_eq!(pack_count, 2, "git's pack and ours");

    let repo = GitRepo::open(dir).unwrap();
    for &c in &commits {
        let mut slow = Vec::new();
        repo.for_each_location_log(c, BranchHash::TwoLevel, |k, d| {
            slow.push((k.to_text().into_owned(), d.to_vec()));
            true
        })
        .unwrap();
        for threads in [1, 3] {
            let mut fast: Vec<(String, Vec<u8>)> = repo
                .fold_location_logs(c, BranchHash::TwoLevel, threads, Vec::new, |v, k, d| {
                    v.push((k.to_text().into_owned(), d.to_vec()))
                })
                .unwrap()
                .into_iter()
                .flatten()
                .collect();
            fast.sort();
            slow.sort();
            assert_eq!(fast, slow);
        }
    }
    // Blobs by id, in any order, duplicates included.
    let g = git2::Repository::open(dir).unwrap();
    let ids: Vec<String> = git(dir, &["ls-tree", "-r", "--object-only", "git-annex"])
        .lines()
        .chain(git(dir, &["ls-tree", "-r", "--object-only", "git-annex~2"]).lines())
        .map(str::to_string)
        .collect();
    assert!(ids.len() > 500);
    let blobs = repo
        .read_blobs(
            &ids.iter()
                .map(|h| ObjectId::parse(h).unwrap())
                .collect::<Vec<_>>(),
            3,
        )
        .unwrap();
    for (h, b) in ids.iter().zip(&blobs) {
        let want = g.find_blob(git2::Oid::from_str(h).unwrap()).unwrap();
        assert_eq!(b.as_slice(), want.content());
    }
    // The logs changed between two commits, with both sides' blobs.
    for (from, to) in [(0, 4), (1, 3), (4, 0), (2, 2)] {
        let (a, b) = (commits[from], commits[to]);
        let mut got: Vec<(String, Vec<u8>, Vec<u8>)> = repo
            .changed_location_logs(a, b, BranchHash::TwoLevel)
            .unwrap()
            .into_iter()
            .map(|(k, x, y)| {
                let read = |id: Option<ObjectId>| {
                    id.map(|i| repo.read_blobs(&[i], 1).unwrap().remove(0))
                        .unwrap_or_default()
                };
                (k.to_text().into_owned(), read(x), read(y))
            })
            .collect();
        let mut want: Vec<(String, Vec<u8>, Vec<u8>)> = repo
            .changed_files(a, b)
            .unwrap()
            .into_iter()
            .map(|p| {
                let k = location_log_key(&p, BranchHash::TwoLevel).unwrap();
                let old = repo.read_at(a, &p).unwrap().unwrap_or_default();
                let new = repo.read_at(b, &p).unwrap().unwrap_or_default();
                (k.to_text().into_owned(), old, new)
            })
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{from} -> {to}");
        assert_eq!(got.is_empty(), from == to);
    }
}

/// Commit `changes` on the git-annex branch as loose objects (libgit2's own writing,
/// as git and git-annex write them); the new commit.
fn loose_commit(dir: &std::path::Path, changes: &[(Vec<u8>, Vec<u8>)]) -> ObjectId {
    let g = git2::Repository::open(dir).unwrap();
    let tip = g
        .find_reference("refs/heads/git-annex")
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let mut b = git2::build::TreeUpdateBuilder::new();
    for (path, content) in changes {
        b.upsert(path.clone(), g.blob(content).unwrap(), git2::FileMode::Blob);
    }
    let tree = g
        .find_tree(b.create_updated(&g, &tip.tree().unwrap()).unwrap())
        .unwrap();
    let sig = git2::Signature::now("t", "t@t").unwrap();
    let c = g
        .commit(
            Some("refs/heads/git-annex"),
            &sig,
            &sig,
            "loose",
            &tree,
            &[&tip],
        )
        .unwrap();
    ObjectId::parse(&c.to_string()).unwrap()
}

#[test]
fn bulk_reads_over_offset_deltas_and_loose_objects() {
    bulk_reads(false);
}

#[test]
fn bulk_reads_over_reference_deltas_and_loose_objects() {
    bulk_reads(true);
}

/// Copy a repository's pack files into `objects/pack` under a new directory, letting
/// `change` alter the pack's bytes and the index's bytes first.
fn damaged_copy(
    pack_dir: &Path,
    change: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>),
) -> tempfile::TempDir {
    let find = |ext: &str| {
        std::fs::read_dir(pack_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == ext))
            .unwrap()
    };
    let mut pack = std::fs::read(find("pack")).unwrap();
    let mut idx = std::fs::read(find("idx")).unwrap();
    change(&mut pack, &mut idx);
    let out = tempfile::tempdir().unwrap();
    std::fs::create_dir(out.path().join("pack")).unwrap();
    std::fs::write(out.path().join("pack/pack-x.pack"), pack).unwrap();
    std::fs::write(out.path().join("pack/pack-x.idx"), idx).unwrap();
    out
}

/// Damage anywhere in a pack or its index gives errors or nothing, never a panic; a
/// truncated pack never gives wrong data, and damage inside an object's zlib data is
/// caught.
#[test]
fn damaged_packs_give_errors() {
    for ref_deltas in [false, true] {
        let tmp = packed_repo(ref_deltas);
        let objects = all_objects(tmp.path());
        let pack_dir = tmp.path().join(".git/objects/pack");
        let len = {
            let d = damaged_copy(&pack_dir, |_, _| {});
            std::fs::metadata(d.path().join("pack/pack-x.pack"))
                .unwrap()
                .len() as usize
        };
        let read_all = |d: &tempfile::TempDir| {
            let packs = Packs::open(d.path()).unwrap();
            let mut r = packs.reader();
            objects
                .iter()
                .map(|(id, kind, data)| match r.read(id) {
                    Ok(Some((k, got))) => Some(k == *kind && got == *data),
                    Ok(None) | Err(_) => None,
                })
                .collect::<Vec<_>>()
        };
        // Truncated: whatever is read is right, and something cannot be read.
        for cut in (0..len).step_by(len / 37 + 1).chain([len - 1, len - 20]) {
            let d = damaged_copy(&pack_dir, |p, _| p.truncate(cut));
            let got = read_all(&d);
            assert!(got.iter().all(|g| *g != Some(false)), "cut at {cut}");
            assert!(got.iter().any(|g| g.is_none()), "cut at {cut}");
        }
        // One byte changed anywhere in the pack: no panic; some reads fail.
        let mut failed = 0;
        for at in (12..len - 20).step_by(len / 200 + 1) {
            let d = damaged_copy(&pack_dir, |p, _| p[at] ^= 0x5a);
            failed += read_all(&d).iter().filter(|g| g.is_none()).count();
        }
        assert!(failed > 0);
        // In the index too (fan-out, ids, offsets): no panic.
        let idx_len = std::fs::read_dir(&pack_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "idx"))
            .map(|p| std::fs::metadata(p).unwrap().len() as usize)
            .unwrap();
        for at in (0..idx_len).step_by(idx_len / 150 + 1) {
            for v in [0x00, 0x80, 0xff] {
                let d = damaged_copy(&pack_dir, |_, i| i[at] = v);
                let _ = read_all(&d);
            }
        }
    }
}

/// A pack and index made by hand from raw entries (the object ids are made up; the
/// reader never hashes objects).
fn hand_made(entries: &[([u8; 20], Vec<u8>)]) -> (tempfile::TempDir, Packs) {
    let mut pack = b"PACK".to_vec();
    pack.extend_from_slice(&2u32.to_be_bytes());
    pack.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    let mut offsets = Vec::new();
    for (id, e) in entries {
        offsets.push((*id, pack.len() as u32));
        pack.extend_from_slice(e);
    }
    pack.extend_from_slice(&[0u8; 20]);
    offsets.sort();
    let mut idx = vec![0xff, b't', b'O', b'c', 0, 0, 0, 2];
    for b in 0..256usize {
        let n = offsets
            .iter()
            .filter(|(id, _)| (id[0] as usize) <= b)
            .count() as u32;
        idx.extend_from_slice(&n.to_be_bytes());
    }
    for (id, _) in &offsets {
        idx.extend_from_slice(id);
    }
    for _ in &offsets {
        idx.extend_from_slice(&[0u8; 4]);
    }
    for (_, o) in &offsets {
        idx.extend_from_slice(&o.to_be_bytes());
    }
    idx.extend_from_slice(&[0u8; 40]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pack")).unwrap();
    std::fs::write(dir.path().join("pack/pack-h.pack"), pack).unwrap();
    std::fs::write(dir.path().join("pack/pack-h.idx"), idx).unwrap();
    let packs = Packs::open(dir.path()).unwrap();
    assert_eq!(packs.packs.len(), 1);
    (dir, packs)
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; data.len() + 64];
    let mut len = out.len() as libz_sys::uLongf;
    // SAFETY: compress2 writes at most `len` bytes into `out` and reads `data`.
    let rc = unsafe {
        libz_sys::compress2(
            out.as_mut_ptr(),
            &mut len,
            data.as_ptr(),
            data.len() as libz_sys::uLong,
            6,
        )
    };
    assert_eq!(rc, libz_sys::Z_OK);
    out.truncate(len as usize);
    out
}

/// An entry header: type and size.
fn header(ty: u8, mut size: u64) -> Vec<u8> {
    let mut h = vec![(ty << 4) | (size & 15) as u8];
    size >>= 4;
    while size > 0 {
        *h.last_mut().unwrap() |= 0x80;
        h.push((size & 0x7f) as u8);
        size >>= 7;
    }
    h
}

#[test]
fn hand_made_packs() {
    let id = |n: u8| [n; 20];
    let blob = |data: &[u8]| [header(3, data.len() as u64), zlib(data)].concat();
    let ref_delta = |base: u8, delta: &[u8]| {
        [
            header(7, delta.len() as u64),
            id(base).to_vec(),
            zlib(delta),
        ]
        .concat()
    };
    // 1: a blob; 2: a reference delta on it; 3 and 4: deltas based on each other;
    // 5: a huge size; 6: unknown type; 7: a delta on a missing base; 8: bad zlib;
    // 9: a size that does not match the data; 10: an offset delta on itself.
    let delta = [5u8, 3, 0x80 | 0x10, 3];
    let (_d, packs) = hand_made(&[
        (id(1), blob(b"hello")),
        (id(2), ref_delta(1, &delta)),
        (id(3), ref_delta(4, &delta)),
        (id(4), ref_delta(3, &delta)),
        (id(5), [header(3, 1 << 50), zlib(b"x")].concat()),
        (id(6), [header(5, 1), zlib(b"x")].concat()),
        (id(7), ref_delta(99, &delta)),
        (id(8), [header(3, 5), b"not zlib at all".to_vec()].concat()),
        (id(9), [header(3, 4), zlib(b"hello")].concat()),
        (id(10), [header(6, 2), vec![0], zlib(b"ab")].concat()),
    ]);
    let mut r = packs.reader();
    assert_eq!(
        r.read(&id(1)).unwrap(),
        Some((Kind::Blob, b"hello".to_vec()))
    );
    assert_eq!(r.read(&id(2)).unwrap(), Some((Kind::Blob, b"hel".to_vec())));
    let damage = |r: &mut PackReader<'_>, n: u8| match r.read(&id(n)) {
        Err(PackError::Damaged { what, .. }) => what,
        other => panic!("{n}: {other:?}"),
    };
    assert_eq!(damage(&mut r, 3), "delta chain too long");
    assert_eq!(damage(&mut r, 5), "size larger than its data can hold");
    assert_eq!(damage(&mut r, 6), "unknown object type");
    assert_eq!(damage(&mut r, 7), "delta base is not in a pack");
    assert_eq!(damage(&mut r, 8), "bad zlib data");
    assert_eq!(damage(&mut r, 9), "bad zlib data");
    assert_eq!(damage(&mut r, 10), "delta based on itself");
    // A position that no pack has is an error, never a panic.
    assert!(matches!(
        r.read_positioned(7, 12),
        Err(PackError::NoSuchPack { pack: 7 })
    ));
    assert!(matches!(
        r.read_positioned(0, 3),
        Err(PackError::Damaged {
            what: "offset inside the pack header",
            ..
        })
    ));
    assert!(matches!(
        r.read_positioned(0, u64::MAX),
        Err(PackError::Damaged { .. })
    ));
    // The reader is still good after errors.
    assert_eq!(r.read(&id(2)).unwrap(), Some((Kind::Blob, b"hel".to_vec())));
    let at = packs.position(&id(2)).unwrap();
    assert_eq!(
        r.read_positioned(at.0, at.1).unwrap(),
        (Kind::Blob, b"hel".to_vec())
    );
}

#[test]
fn deltas() {
    let base = b"hello, world; hello again".to_vec();
    // sizes 25 -> 12; copy 5 bytes from 0, insert ", x", copy 4 from 7
    let mut d = vec![25, 12];
    d.extend_from_slice(&[0x80 | 0x10, 5]);
    d.extend_from_slice(&[3, b',', b' ', b'x']);
    d.extend_from_slice(&[0x80 | 0x01 | 0x10, 7, 4]);
    assert_eq!(apply_delta(&base, &d).unwrap(), b"hello, xworl");
    // Wrong base size, a zero command, a copy past the base, a result longer or shorter
    // than announced, a huge announced size: rejected.
    assert!(apply_delta(b"short", &d).is_none());
    assert!(apply_delta(&base, &[25, 1, 0]).is_none());
    assert!(apply_delta(&base, &[25, 10, 0x80 | 0x01 | 0x10, 20, 10]).is_none());
    assert!(apply_delta(&base, &[25, 2, 3, b'a', b'b', b'c']).is_none());
    assert!(apply_delta(&base, &[25, 4, 3, b'a', b'b', b'c']).is_none());
    assert!(apply_delta(&base, &[25, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, b'a']).is_none());
    // A copy of size 0 means 0x10000 bytes.
    let big = vec![7u8; 0x10000];
    assert_eq!(
        apply_delta(&big, &[0x80, 0x80, 4, 0x80, 0x80, 4, 0x80]).unwrap(),
        big
    );
}

/// The index search guesses where an id lies in its fan-out bucket: with big buckets,
/// ids spread evenly or bunched at one end, every id present is found at its offset and
/// ids next to them (absent) are not found.
#[test]
fn index_search_finds_every_id_in_big_and_skewed_buckets() {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut ids: Vec<[u8; 20]> = Vec::new();
    for i in 0..6000u32 {
        let mut id = [0u8; 20];
        for chunk in id.chunks_mut(8) {
            let r = next().to_be_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        match i % 3 {
            // Bucket 0x42, spread evenly.
            0 => id[0] = 0x42,
            // Bucket 0x43, all bunched in the lowest 1/256 of it.
            1 => {
                id[0] = 0x43;
                id[1] = 0;
            }
            // Anywhere.
            _ => {}
        }
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    let blob = [header(3, 1), zlib(b"x")].concat();
    let entries: Vec<([u8; 20], Vec<u8>)> = ids.iter().map(|id| (*id, blob.clone())).collect();
    let (_d, packs) = hand_made(&entries);
    // hand_made stores entries in the given order: entry i starts at 12 + i * len.
    for (i, id) in ids.iter().enumerate() {
        let want = 12 + (i * blob.len()) as u64;
        assert_eq!(packs.position(id), Some((0, want)), "{i}");
        let mut near = *id;
        near[19] ^= 1;
        if ids.binary_search(&near).is_err() {
            assert_eq!(packs.position(&near), None, "{i}");
        }
    }
}
