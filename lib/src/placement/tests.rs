//! Engine tests: the verified examples of `spec/preferred-content.md`, every standard
//! group on hand-made facts, and the laws placement must keep (property tests).

// Expected values are written as arrays of clones for readability.
#![allow(clippy::cloned_ref_to_slice_refs)]

use super::*;
use crate::types::{Key, Uuid};
use proptest::prelude::*;

fn u(s: &str) -> Uuid {
    Uuid::parse(s).unwrap()
}

fn repo(n: u32) -> Uuid {
    u(&format!("00000000-0000-4000-8000-{n:012}"))
}

fn key(size: u64, name: &str) -> Key {
    Key::from_str(&format!(
        "SHA256E-s{size}--{:064x}.{name}",
        size as u128 * 7919 + name.len() as u128
    ))
    .unwrap()
}

fn info(k: &Key, locs: &[&Uuid]) -> KeyInfo {
    KeyInfo::new(k.clone(), locs.iter().map(|x| (*x).clone()).collect())
}

const B1: &str = "ad24d0d7-b9ee-4b96-b029-746b1c075a51";
const B2: &str = "ed402f23-fb08-4f97-b0ab-67eeb4b3621a";
const B3: &str = "33ef313c-a4ce-4b3d-843a-bf86a7405cce";
const F1: &str =
    "SHA256E-s1000--c2e686823489ced2017f6059b8b239318b6364f6dcd835d0a519105a1eadd6e4.dat";

fn three(expr: &str) -> (Facts, [Uuid; 3]) {
    let bs = [u(B1), u(B2), u(B3)];
    let mut f = Facts::default();
    for b in &bs {
        f = f.with_group(b, "g").with_preferred(b, expr);
    }
    (f, bs)
}

fn wanters(e: &Engine, bs: &[Uuid], k: &KeyInfo, file: Option<&[u8]>) -> Vec<Uuid> {
    bs.iter()
        .filter(|b| e.want_get(b, k, file) == Want::Wanted)
        .cloned()
        .collect()
}

#[test]
fn spec_7_6_balanced_worked_example() {
    let f1 = Key::from_str(F1).unwrap();
    let k = info(&f1, &[]);
    let (facts, [b1, b2, b3]) = three("balanced=g");
    let e = Engine::new(facts.clone());
    assert_eq!(
        wanters(
            &e,
            &[b1.clone(), b2.clone(), b3.clone()],
            &k,
            Some(b"f1.dat")
        ),
        [b1.clone()]
    );

    let (facts2, _) = three("balanced=g:2");
    let e2 = Engine::new(facts2);
    assert_eq!(
        wanters(
            &e2,
            &[b1.clone(), b2.clone(), b3.clone()],
            &k,
            Some(b"f1.dat")
        ),
        [b1.clone(), b2.clone()]
    );

    // b2 full: maxsize 5000 with 5000 bytes stored.
    let full = facts
        .clone()
        .with_maxsize(&b2, 5000)
        .with_repo_size(&b2, 5000)
        .with_repo_size(&b1, 0)
        .with_repo_size(&b3, 0);
    let e3 = Engine::new(full.clone());
    assert_eq!(
        wanters(
            &e3,
            &[b1.clone(), b2.clone(), b3.clone()],
            &k,
            Some(b"f1.dat")
        ),
        [b3.clone()]
    );

    // A key stored in b2 (its location log says so) but evaluated in b2 itself, whose
    // local content is gone: nobody wants it (b2's present is false, the others see a
    // copy in the group).
    let mut full_local = full;
    full_local.local = Some(b2.clone());
    let e4 = Engine::new(full_local);
    let mut k2 = info(&key(100, "x"), &[&b2]);
    k2.present_here = Some(false);
    assert!(wanters(&e4, &[b1.clone(), b2.clone(), b3.clone()], &k2, None).is_empty());
    // With the content really there, b2 keeps wanting it.
    k2.present_here = Some(true);
    assert_eq!(wanters(&e4, &[b1, b2.clone(), b3], &k2, None), [b2]);
}

#[test]
fn spec_7_6_fullysizebalanced_example() {
    let (facts, [b1, b2, b3]) = three("fullysizebalanced=g");
    let facts = facts
        .with_maxsize(&b1, 100000)
        .with_repo_size(&b1, 12000)
        .with_maxsize(&b2, 5000)
        .with_repo_size(&b2, 5000)
        .with_maxsize(&b3, 50000)
        .with_repo_size(&b3, 0);
    let e = Engine::new(facts);
    let all = [b1.clone(), b2.clone(), b3.clone()];
    let f12 = info(&key(12000, "f12"), &[&b1]);
    assert_eq!(wanters(&e, &all, &f12, Some(b"f12.dat")), [b1.clone()]);
    let f5 = info(&key(5000, "f5"), &[&b2]);
    assert_eq!(wanters(&e, &all, &f5, Some(b"f5.dat")), [b2.clone()]);
    for n in 0..20 {
        let fresh = info(&key(100 + n, "new"), &[]);
        assert_eq!(wanters(&e, &all, &fresh, None), [b3.clone()], "key {n}");
    }
    // sizebalanced adds present: b1 keeps f5? No: f5 is not present in b1, the group
    // has a copy (copies=g:1), so only b2 (present) wants it.
    let (facts, _) = three("sizebalanced=g");
    let facts = facts
        .with_maxsize(&b1, 100000)
        .with_repo_size(&b1, 12000)
        .with_maxsize(&b2, 5000)
        .with_repo_size(&b2, 5000)
        .with_maxsize(&b3, 50000);
    let e = Engine::new(facts);
    assert_eq!(wanters(&e, &all, &f5, None), [b2]);
    // A repository without maxsize never wants anything under sizebalanced.
    let (facts, _) = three("fullysizebalanced=g");
    let e = Engine::new(facts);
    assert!(wanters(&e, &all, &info(&key(1, "a"), &[]), None).is_empty());
}

#[test]
fn maxsize_zero_never_gets_new_content() {
    // Verified: with b1 and b2 at maxsize 0, balanced=g made b3 want every key.
    let (facts, [b1, b2, b3]) = three("balanced=g");
    let facts = facts
        .with_maxsize(&b1, 0)
        .with_maxsize(&b2, 0)
        .with_repo_size(&b1, 0)
        .with_repo_size(&b2, 0)
        .with_repo_size(&b3, 0);
    let e = Engine::new(facts);
    let all = [b1, b2, b3.clone()];
    for n in 1..30 {
        let k = info(&key(n * 10, "k"), &[]);
        assert_eq!(wanters(&e, &all, &k, None), [b3.clone()]);
    }
}

#[test]
fn balanced_lackingcopies_and_rebalance() {
    let (mut facts, [b1, b2, b3]) = three("balanced=g:lackingcopies");
    facts.numcopies = Some(2);
    let all = [b1.clone(), b2.clone(), b3.clone()];
    let e = Engine::new(facts.clone());
    let k0 = info(&key(10, "a"), &[]);
    // No copies: 2 lacking -> two pickers want it.
    assert_eq!(wanters(&e, &all, &k0, None).len(), 2);
    // One copy elsewhere (an outside repo): one more wanted.
    let other = repo(99);
    let k1 = info(&key(10, "a"), &[&other]);
    assert_eq!(wanters(&e, &all, &k1, None).len(), 1);
    // Two copies: nobody needs to get it; the holders keep it (present).
    let k2 = info(&key(10, "a"), &[&other, &b3]);
    assert_eq!(wanters(&e, &all, &k2, None), [b3.clone()]);
    // For the count, copies inside the group do not count (git-annex 10.20261026):
    // numcopies 2, one copy outside and one in b3 -> one pick (b1 for this key).
    let (mut ff, _) = three("fullybalanced=g:lackingcopies");
    ff.numcopies = Some(2);
    let ef = Engine::new(ff);
    let f1 = Key::from_str(F1).unwrap();
    assert_eq!(
        wanters(&ef, &all, &info(&f1, &[&other, &b3]), None),
        [b1.clone()]
    );
    assert!(wanters(&ef, &all, &info(&f1, &[&other, &repo(98)]), None).is_empty());
    // With --rebalance, only the picks want it, present or not.
    let (mut f3, _) = three("balanced=g");
    f3.rebalance = true;
    let e3 = Engine::new(f3);
    let k = info(&f1, &[&b3]);
    assert_eq!(wanters(&e3, &all, &k, None), [b1]);
}

#[test]
fn rebalance_sizebalances_when_too_full() {
    // With --rebalance and n > members that are not too full, candidates are chosen by
    // free space.
    let (mut facts, [b1, b2, b3]) = three("fullybalanced=g:2");
    facts.rebalance = true;
    let facts = facts
        .with_maxsize(&b1, 1000)
        .with_repo_size(&b1, 950) // too full (>= 90%)
        .with_maxsize(&b2, 1000)
        .with_repo_size(&b2, 100)
        .with_maxsize(&b3, 1000)
        .with_repo_size(&b3, 920); // too full
    let e = Engine::new(facts);
    let k = info(&key(10, "z"), &[]);
    // Two of three are too full, so n=2 > 3-2: the two with most free space (b2 0.9,
    // b3 0.08; b1 0.05) are the candidates, and both are picked.
    let w = wanters(&e, &[b1, b2.clone(), b3.clone()], &k, None);
    assert_eq!(w, [b2, b3]);
}

fn standard_facts(group: &str) -> (Facts, Uuid) {
    let me = repo(1);
    let f = Facts::default()
        .with_group(&me, group)
        .with_preferred(&me, "standard");
    (f, me)
}

#[test]
fn standard_groups_on_hand_made_facts() {
    let arch = repo(50);
    let bk = repo(51);
    let c1 = repo(60);
    let c2 = repo(61);
    let other = repo(70);
    let add = |f: Facts| {
        f.with_group(&arch, "archive")
            .with_group(&bk, "backup")
            .with_group(&c1, "client")
            .with_group(&c2, "client")
    };
    let ask = |group: &str, locs: &[&Uuid], file: Option<&str>| -> Want {
        let (f, me) = standard_facts(group);
        let e = Engine::new(add(f));
        let k = info(&key(10, "k"), locs);
        e.want_get(&me, &k, file.map(str::as_bytes))
    };
    use Want::*;
    // client: everything outside archive dirs; archive dirs only until archived.
    assert_eq!(ask("client", &[&other], Some("x")), Wanted);
    assert_eq!(
        ask("client", &[&other, &arch], Some("archive/x")),
        NotWanted
    );
    assert_eq!(ask("client", &[&other], Some("archive/x")), Wanted);
    assert_eq!(ask("client", &[&other], Some("a/archive/x")), Wanted);
    // ... and anything lacking copies (approxlackingcopies=1), even without a file.
    assert_eq!(ask("client", &[], None), Wanted);
    assert_eq!(ask("client", &[&other], None), NotWanted);
    // transfer: not once every client has it (2 copies in clients).
    assert_eq!(ask("transfer", &[&other], Some("x")), Wanted);
    assert_eq!(ask("transfer", &[&c1, &c2], Some("x")), NotWanted);
    assert_eq!(ask("transfer", &[&c1], Some("x")), Wanted);
    // backup: anything.
    assert_eq!(ask("backup", &[&other], None), Wanted);
    // incrementalbackup: only what no backup has.
    assert_eq!(ask("incrementalbackup", &[&other], None), Wanted);
    assert_eq!(ask("incrementalbackup", &[&bk], None), NotWanted);
    // smallarchive: archive dirs, until archived.
    assert_eq!(ask("smallarchive", &[&other], Some("archive/x")), Wanted);
    assert_eq!(ask("smallarchive", &[&other], Some("x")), NotWanted);
    assert_eq!(
        ask("smallarchive", &[&other, &arch], Some("archive/x")),
        NotWanted
    );
    // archive: until some archive has it.
    assert_eq!(ask("archive", &[&other], Some("x")), Wanted);
    assert_eq!(ask("archive", &[&other, &arch], Some("x")), NotWanted);
    // source: only while it is the only copy.
    assert_eq!(ask("source", &[], Some("x")), Wanted);
    assert_eq!(ask("source", &[&other], Some("x")), NotWanted);
    // manual: only what is present (and client would want).
    assert_eq!(ask("manual", &[&other], Some("x")), NotWanted);
    assert_eq!(ask("manual", &[&other, &repo(1)], Some("x")), Wanted);
    // public: files in the preferred directory.
    assert_eq!(ask("public", &[], Some("public/x")), Wanted);
    assert_eq!(ask("public", &[], Some("x")), NotWanted);
    // unwanted: never.
    assert_eq!(ask("unwanted", &[], Some("x")), NotWanted);

    // Source drops once another copy exists (want-drop: NP = itself).
    let (f, me) = standard_facts("source");
    let e = Engine::new(f);
    assert_eq!(
        e.still_wants(&me, &info(&key(1, "s"), &[&me]), None),
        Wanted
    );
    assert_eq!(
        e.still_wants(&me, &info(&key(1, "s"), &[&me, &other]), None),
        NotWanted
    );

    // Two standard groups: standard is `present`.
    let me = repo(1);
    let f = Facts::default()
        .with_group(&me, "client")
        .with_group(&me, "backup")
        .with_preferred(&me, "standard");
    let e = Engine::new(f);
    assert_eq!(
        e.want_get(&me, &info(&key(1, "a"), &[]), Some(b"x")),
        NotWanted
    );
    assert_eq!(
        e.want_get(&me, &info(&key(1, "a"), &[&me]), Some(b"x")),
        Wanted
    );

    // A custom preferreddir.
    let (mut f, me) = standard_facts("public");
    f.preferreddir.insert(me.clone(), "www".into());
    let e = Engine::new(f);
    assert_eq!(
        e.want_get(&me, &info(&key(1, "a"), &[]), Some(b"www/a")),
        Wanted
    );
    assert_eq!(
        e.want_get(&me, &info(&key(1, "a"), &[]), Some(b"public/a")),
        NotWanted
    );
}

#[test]
fn every_standard_expression_evaluates_deterministically() {
    for sg in StandardGroup::ALL {
        let (f, me) = standard_facts(sg.name());
        let e = Engine::new(f);
        let rule = e.wanted_rule(&me).unwrap();
        assert!(rule.error.is_none(), "{}", sg.name());
        assert!(rule.unstable.is_empty(), "{}", sg.name());
        let k = info(&key(5, "q"), &[&repo(3)]);
        for file in [None, Some(&b"archive/q"[..]), Some(b"q")] {
            assert_eq!(e.want_get(&me, &k, file), e.want_get(&me, &k, file));
        }
    }
}

#[test]
fn groupwanted_expansion() {
    let me = repo(1);
    let other = repo(2);
    let k = |locs: &[&Uuid]| info(&key(3, "g"), locs);
    let base = Facts::default()
        .with_group(&me, "g")
        .with_group_preferred("g", "include=*.txt or standard")
        .with_preferred(&me, "groupwanted");
    // groupwanted -> the group's expression; inside it, standard expands (no standard
    // group here, so present).
    let e = Engine::new(base.clone());
    assert_eq!(e.want_get(&me, &k(&[]), Some(b"a.txt")), Want::Wanted);
    assert_eq!(e.want_get(&me, &k(&[]), Some(b"a.bin")), Want::NotWanted);
    assert_eq!(e.want_get(&me, &k(&[&me]), Some(b"a.bin")), Want::Wanted);
    // With a standard group too, standard inside groupwanted is that group's expression.
    let e = Engine::new(base.clone().with_group(&me, "backup"));
    assert_eq!(e.want_get(&me, &k(&[&other]), Some(b"a.bin")), Want::Wanted);
    // groupwanted inside groupwanted is present.
    let e = Engine::new(
        Facts::default()
            .with_group(&me, "g")
            .with_group_preferred("g", "groupwanted")
            .with_preferred(&me, "groupwanted"),
    );
    assert_eq!(e.want_get(&me, &k(&[]), None), Want::NotWanted);
    assert_eq!(e.want_get(&me, &k(&[&me]), None), Want::Wanted);
    // Two groups with expressions: groupwanted is present.
    let e = Engine::new(
        base.clone()
            .with_group(&me, "h")
            .with_group_preferred("h", "anything"),
    );
    assert_eq!(e.want_get(&me, &k(&[]), Some(b"a.txt")), Want::NotWanted);
    // The group expression does not parse: the whole expression falls back to present.
    let e = Engine::new(
        Facts::default()
            .with_group(&me, "g")
            .with_group_preferred("g", "frob")
            .with_preferred(&me, "anything and groupwanted"),
    );
    let rule = e.wanted_rule(&me).unwrap();
    assert_eq!(
        rule.error.as_ref().unwrap().to_string(),
        "Parse failure: near \"frob\""
    );
    assert_eq!(e.want_get(&me, &k(&[]), None), Want::NotWanted);
    assert_eq!(e.want_get(&me, &k(&[&me]), None), Want::Wanted);
}

#[test]
fn unparsable_is_present_and_empty_is_not_configured() {
    let me = repo(1);
    let e = Engine::new(Facts::default().with_preferred(&me, "include=*.txt foo=bar"));
    let rule = e.wanted_rule(&me).unwrap();
    assert_eq!(
        rule.error.as_ref().unwrap().to_string(),
        "Parse failure: near \"foo=bar\""
    );
    assert_eq!(
        e.want_get(&me, &info(&key(1, "a"), &[]), Some(b"a.txt")),
        Want::NotWanted
    );
    assert_eq!(
        e.want_get(&me, &info(&key(1, "a"), &[&me]), Some(b"a.txt")),
        Want::Wanted
    );
    let ex = e.explain(&me, &info(&key(1, "a"), &[]), Some(b"a.txt"), &[]);
    assert!(ex.details().contains("does not parse"), "{}", ex.details());

    for empty in ["", "  ", "and", "( )"] {
        let e = Engine::new(Facts::default().with_preferred(&me, empty));
        assert_eq!(
            e.want_get(&me, &info(&key(1, "a"), &[]), None),
            Want::NotConfigured
        );
    }
    let e = Engine::new(Facts::default());
    assert_eq!(
        e.want_get(&me, &info(&key(1, "a"), &[]), None),
        Want::NotConfigured
    );
    assert!(Want::NotConfigured.or(true));
    assert!(!Want::NotConfigured.or(false));
}

#[test]
fn wanted_is_preferred_or_required() {
    let me = repo(1);
    let facts = Facts::default()
        .with_preferred(&me, "include=*.txt")
        .with_required(&me, "include=*.bin");
    let e = Engine::new(facts);
    let k = info(&key(1, "a"), &[]);
    assert_eq!(e.want_get(&me, &k, Some(b"a.txt")), Want::Wanted);
    assert_eq!(e.want_get(&me, &k, Some(b"a.bin")), Want::Wanted);
    assert_eq!(e.want_get(&me, &k, Some(b"a.doc")), Want::NotWanted);
    assert_eq!(e.requires(&me, &k, Some(b"a.bin"), &[]), Want::Wanted);
    assert_eq!(e.requires(&me, &k, Some(b"a.txt"), &[]), Want::NotWanted);
    // Only required set: wanted is the required expression.
    let e = Engine::new(Facts::default().with_required(&me, "include=*.bin"));
    assert_eq!(e.want_get(&me, &k, Some(b"a.bin")), Want::Wanted);
    // An unparsable required expression makes both present.
    let e = Engine::new(
        Facts::default()
            .with_preferred(&me, "anything")
            .with_required(&me, "bogus"),
    );
    assert_eq!(e.want_get(&me, &k, Some(b"a")), Want::NotWanted);
    assert_eq!(e.requires(&me, &k, Some(b"a"), &[]), Want::NotWanted);
}

#[test]
fn unstable_negation_makes_expression_never_match() {
    let me = repo(1);
    let e = Engine::new(Facts::default().with_preferred(&me, "include=* or not present"));
    let k = info(&key(1, "a"), &[]);
    assert_eq!(e.want_get(&me, &k, Some(b"x")), Want::NotWanted);
    let ex = e.explain(&me, &k, Some(b"x"), &[]);
    assert!(ex.matched);
    assert_eq!(
        ex.describe().unwrap(),
        "matches preferred content: include=*[TRUE], but that expression is not stable due to negated use of present, so will not be used"
    );
    // Double negation is fine.
    let e = Engine::new(Facts::default().with_preferred(&me, "not not present"));
    assert_eq!(
        e.want_get(&me, &info(&key(1, "a"), &[&me]), None),
        Want::Wanted
    );
    // `not standard` is unstable when the standard expression uses present (manual).
    let e = Engine::new(
        Facts::default()
            .with_group(&me, "manual")
            .with_preferred(&me, "not standard"),
    );
    assert_eq!(e.wanted_rule(&me).unwrap().unstable, ["standard"]);
    let e = Engine::new(
        Facts::default()
            .with_group(&me, "archive")
            .with_preferred(&me, "not standard"),
    );
    assert!(e.wanted_rule(&me).unwrap().unstable.is_empty());
    // Without a standard group, standard is present: unstable under not.
    let e = Engine::new(Facts::default().with_preferred(&me, "not standard"));
    assert_eq!(e.wanted_rule(&me).unwrap().unstable, ["standard"]);
    // balanced and sizebalanced are unstable, the fully variants are not.
    let e = Engine::new(Facts::default().with_preferred(
        &me,
        "not balanced=g and not fullybalanced=g or not sizebalanced=h",
    ));
    assert_eq!(
        e.wanted_rule(&me).unwrap().unstable,
        ["sizebalanced=h", "balanced=g"]
    );
}

#[test]
fn explain_matches_git_annex_text() {
    let me = repo(1);
    let e = Engine::new(
        Facts::default().with_preferred(&me, "include=x or include=y and not largerthan=5"),
    );
    let k = info(&Key::from_str("WORM-s3--x").unwrap(), &[]);
    let ex = e.explain(&me, &k, Some(b"x"), &[]);
    assert_eq!(
        ex.describe().unwrap(),
        "matches preferred content: ( include=x[TRUE] ) and not largerthan=5[FALSE]"
    );
    assert_eq!(ex.want, Want::Wanted);
    assert!(ex
        .details()
        .contains("largerthan=5: false — key size 3, limit 5"));
    let e = Engine::new(Facts::default().with_preferred(&me, "lackingcopies=1"));
    let ex = e.explain(&me, &k, Some(b"x"), &[]);
    assert_eq!(
        ex.describe().unwrap(),
        "matches preferred content: lackingcopies[TRUE]"
    );
}

#[test]
fn copies_trust_groups_and_assume_not_present() {
    let me = repo(1);
    let (t, s, un, dead) = (repo(2), repo(3), repo(4), repo(5));
    let facts = Facts::default()
        .with_trust(&t, TrustLevel::Trusted)
        .with_trust(&un, TrustLevel::Untrusted)
        .with_trust(&dead, TrustLevel::Dead)
        .with_group(&s, "g")
        .with_group(&un, "g");
    let locs = [&t, &s, &un, &dead, &me];
    let check = |expr: &str, np: &[Uuid]| {
        let e = Engine::new(facts.clone().with_preferred(&me, expr));
        e.wants(&me, &info(&key(1, "c"), &locs), None, np)
    };
    use Want::*;
    // Dead repositories are never counted.
    assert_eq!(check("copies=4", &[]), Wanted);
    assert_eq!(check("copies=5", &[]), NotWanted);
    assert_eq!(check("copies=4", &[me.clone()]), NotWanted);
    assert_eq!(check("copies=trusted:1", &[]), Wanted);
    assert_eq!(check("copies=trusted:2", &[]), NotWanted);
    assert_eq!(check("copies=semitrusted+:3", &[]), Wanted);
    assert_eq!(check("copies=semitrusted+:4", &[]), NotWanted);
    assert_eq!(check("copies=untrusted:1", &[]), Wanted);
    assert_eq!(check("copies=dead:1", &[]), NotWanted);
    assert_eq!(check("copies=g:2", &[]), Wanted);
    assert_eq!(check("copies=g:2", &[s.clone()]), NotWanted);
    // lackingcopies ignores untrusted copies.
    let mut f = facts.clone();
    f.numcopies = Some(4);
    let e = Engine::new(f.with_preferred(&me, "lackingcopies=1"));
    assert_eq!(e.wants(&me, &info(&key(1, "c"), &locs), None, &[]), Wanted);
    assert_eq!(
        e.wants(
            &me,
            &info(&key(1, "c"), &[&t, &s, &me, &repo(9)]),
            None,
            &[]
        ),
        NotWanted
    );
    // inallgroup / onlyingroup.
    assert_eq!(check("inallgroup=g", &[]), Wanted);
    assert_eq!(check("inallgroup=g", &[s.clone()]), NotWanted);
    assert_eq!(check("inallgroup=nosuch", &[]), Wanted);
    assert_eq!(check("onlyingroup=g", &[]), NotWanted);
    assert_eq!(check("onlyingroup=nosuch", &[]), NotWanted);
    let e = Engine::new(facts.clone().with_preferred(&me, "onlyingroup=g"));
    assert_eq!(
        e.wants(&me, &info(&key(1, "c"), &[&s, &dead]), None, &[]),
        Wanted
    );
    assert_eq!(
        e.wants(&me, &info(&key(1, "c"), &[&s]), None, &[s.clone()]),
        NotWanted
    );
}

#[test]
fn lackingcopies_uses_gitattributes_unless_approx() {
    let me = repo(1);
    let other = repo(2);
    let facts = Facts {
        numcopies: Some(1),
        ..Default::default()
    };
    let mut k = info(&key(1, "n"), &[&other]);
    k.numcopies_attr = Some("3".into());
    let e = Engine::new(facts.clone().with_preferred(&me, "lackingcopies=1"));
    assert_eq!(e.want_get(&me, &k, Some(b"f")), Want::Wanted);
    // Without a file, the branch value is used.
    assert_eq!(e.want_get(&me, &k, None), Want::NotWanted);
    let e = Engine::new(facts.with_preferred(&me, "approxlackingcopies=1"));
    assert_eq!(e.want_get(&me, &k, Some(b"f")), Want::NotWanted);
}

#[test]
fn clusters_are_present_but_never_copies() {
    let me = repo(1);
    let n1 = repo(2);
    let n2 = repo(3);
    let cl = u("ac000000-0000-8000-8000-0000000000c1");
    let mut facts = Facts::default()
        .with_preferred(&cl, "present")
        .with_preferred(&me, "copies=2")
        .with_trust(&n2, TrustLevel::Dead);
    facts
        .clusters
        .insert(cl.clone(), [n1.clone(), n2.clone()].into());
    let e = Engine::new(facts);
    assert_eq!(
        e.want_get(&cl, &info(&key(1, "c"), &[&n1]), None),
        Want::Wanted
    );
    // A dead node does not make the cluster present.
    assert_eq!(
        e.want_get(&cl, &info(&key(1, "c"), &[&n2]), None),
        Want::NotWanted
    );
    // n1 plus the cluster: still one copy.
    assert_eq!(
        e.want_get(&me, &info(&key(1, "c"), &[&n1]), None),
        Want::NotWanted
    );
    assert_eq!(
        e.logged_locations(&info(&key(1, "c"), &[&n1])),
        [cl.clone(), n1.clone()]
    );
    // Dropping from the cluster drops from its nodes.
    let d = e.drop_check(&info(&key(1, "c"), &[&n1, &me]), None, &[cl]);
    assert_eq!(d.remaining, [me]);
}

#[test]
fn key_terms() {
    let me = repo(1);
    let check = |expr: &str, k: &KeyInfo, file: Option<&[u8]>| {
        Engine::new(Facts::default().with_preferred(&me, expr)).want_get(&me, k, file)
    };
    use Want::*;
    let sha = info(&key(2000, "bin"), &[]);
    let worm = info(&Key::from_str("WORM-m1--x").unwrap(), &[]);
    assert_eq!(check("largerthan=1kb", &sha, None), Wanted);
    assert_eq!(check("largerthan=2kb", &sha, None), NotWanted);
    assert_eq!(check("smallerthan=2001", &sha, None), Wanted);
    // No size: smallerthan is true, largerthan false.
    assert_eq!(check("smallerthan=1", &worm, None), Wanted);
    assert_eq!(check("largerthan=0", &worm, None), NotWanted);
    assert_eq!(check("inbackend=SHA256E", &sha, None), Wanted);
    assert_eq!(check("inbackend=SHA256", &sha, None), NotWanted);
    assert_eq!(check("securehash", &sha, None), Wanted);
    assert_eq!(check("securehash", &worm, None), NotWanted);
    let md5 = info(
        &Key::from_str("MD5E-s1--5eb63bbbe01eeed093cb22bb8f5acdc3.x").unwrap(),
        &[],
    );
    assert_eq!(check("securehash", &md5, None), NotWanted);
    let mut vurl = info(&Key::from_str("VURL--http://x/y").unwrap(), &[]);
    assert_eq!(check("securehash", &vurl, None), Wanted);
    vurl.equivalent_keys = vec![md5.key.clone()];
    assert_eq!(check("securehash", &vurl, None), NotWanted);
    // include/exclude without a file: include false, exclude true (verified with
    // git-annex: an unassociated key is wanted by `exclude=*.txt`).
    assert_eq!(check("include=*", &sha, None), NotWanted);
    assert_eq!(check("exclude=*", &sha, None), Wanted);
    assert_eq!(check("exclude=*.txt", &sha, Some(b"a.txt")), NotWanted);
    // unused: only without a file.
    let mut unused = sha.clone();
    unused.unused = true;
    assert_eq!(check("unused", &unused, None), Wanted);
    assert_eq!(check("unused", &unused, Some(b"f")), NotWanted);
    // metadata: field names case-insensitive, values case-insensitive globs.
    let mut m = sha.clone();
    m.metadata = vec![
        ("Author".into(), b"Joey Hess".to_vec()),
        ("year".into(), b"1999".to_vec()),
    ];
    assert_eq!(check("metadata=author=joey*", &m, None), Wanted);
    assert_eq!(check("metadata=author=bob", &m, None), NotWanted);
    assert_eq!(check("metadata=year<2000", &m, None), Wanted);
    assert_eq!(check("metadata=year>=2000", &m, None), NotWanted);
    assert_eq!(check("metadata=tag=*", &m, None), NotWanted);
    // url: downloader prefixes are removed, case-sensitive.
    let mut w = sha;
    w.urls = vec!["yt:https://example.com/v".into(), ":pylog:KEY".into()];
    assert_eq!(check("url=https://example.com/*", &w, None), Wanted);
    assert_eq!(check("url=pylog:*", &w, None), Wanted);
    assert_eq!(check("url=HTTPS://*", &w, None), NotWanted);
}

#[test]
fn plan_store_like_a_cluster_gateway() {
    let (a, b, c) = (repo(1), repo(2), repo(3));
    let facts = Facts::default()
        .with_preferred(&a, "include=*.txt")
        .with_preferred(&b, "include=*.bin");
    let e = Engine::new(facts);
    let cands = [a.clone(), b.clone(), c.clone()];
    let k = info(&key(1, "p"), &[]);
    // c has no expression: wanted when unconfigured counts as wanting.
    let p = e.plan_store(&k, Some(b"x.txt"), &cands, true);
    assert_eq!(p.targets, [a.clone(), c.clone()]);
    assert_eq!(p.fallback, StoreFallback::None);
    let p = e.plan_store(&k, Some(b"x.doc"), &cands, false);
    assert_eq!(p.targets, cands.to_vec());
    assert_eq!(p.fallback, StoreFallback::AllLacking);
    // Nodes that already have it are skipped.
    let k2 = info(&key(1, "p"), &[&a]);
    let p = e.plan_store(&k2, Some(b"x.txt"), &cands, false);
    assert_eq!(p.already_have, [a.clone()]);
    assert_eq!(p.targets, [b.clone(), c.clone()]);
    assert_eq!(p.fallback, StoreFallback::AllLacking);
    let k3 = info(&key(1, "p"), &[&a, &b, &c]);
    let p = e.plan_store(&k3, None, &cands, true);
    assert_eq!(p.fallback, StoreFallback::All);
    assert_eq!(p.targets, cands.to_vec());
}

#[test]
fn drop_check_counts_only_safe_copies() {
    let (a, b, c, d) = (repo(1), repo(2), repo(3), repo(4));
    let mut facts = Facts::default()
        .with_trust(&c, TrustLevel::Untrusted)
        .with_trust(&d, TrustLevel::Dead)
        .with_required(&b, "include=*.keep");
    facts.numcopies = Some(2);
    let e = Engine::new(facts);
    let k = info(&key(1, "d"), &[&a, &b, &c, &d]);
    let r = e.drop_check(&k, Some(b"f"), &[a.clone()]);
    assert_eq!(r.remaining, [b.clone()]);
    assert!(!r.allowed());
    let mut k2 = info(&key(1, "d"), &[&a, &b, &repo(5)]);
    assert!(e.drop_check(&k2, Some(b"f"), &[a.clone()]).allowed());
    // .gitattributes numcopies raises the bar.
    k2.numcopies_attr = Some("3".into());
    assert!(!e.drop_check(&k2, Some(b"f"), &[a.clone()]).allowed());
    // Required content blocks the drop.
    let r = e.drop_check(
        &info(&key(1, "d"), &[&a, &b, &repo(5), &repo(6)]),
        Some(b"x.keep"),
        &[b.clone()],
    );
    assert!(r.enough_copies());
    assert_eq!(r.required_by, [b]);
    assert!(!r.allowed());
}

#[test]
fn plan_drop_stops_at_numcopies() {
    let holders: Vec<Uuid> = (1..=5).map(repo).collect();
    let mut facts = Facts::default();
    for h in &holders {
        facts = facts.with_preferred(h, "nothing");
    }
    facts.numcopies = Some(2);
    let e = Engine::new(facts);
    let refs: Vec<&Uuid> = holders.iter().collect();
    let k = info(&key(1, "pd"), &refs);
    let drop = e.plan_drop(&k, None, &holders, true);
    assert_eq!(drop, holders[..3].to_vec());
}

#[test]
fn long_expressions_do_not_overflow() {
    let me = repo(1);
    let check = |text: &str, file: Option<&[u8]>, want: Want| {
        let e = Engine::new(Facts::default().with_preferred(&me, text));
        let rule = e.wanted_rule(&me).unwrap();
        assert!(rule.error.is_none(), "{:?}", rule.error);
        let k = info(&key(1, "a"), &[]);
        assert_eq!(e.want_get(&me, &k, file), want);
        let ex = e.explain(&me, &k, file, &[]);
        assert_eq!(ex.want, want);
        assert!(ex.describe().is_some());
        let parsed = Expr::parse(text).unwrap();
        let printed = parsed.to_string();
        assert_eq!(Expr::parse(&printed).unwrap().tree(), parsed.tree());
    };
    // A flat chain at the token limit.
    let flat = vec!["include=a"; expr::MAX_TOKENS / 2].join(" or ");
    check(&flat, Some(b"b"), Want::NotWanted);
    check(&flat, Some(b"a"), Want::Wanted);
    let flat_and = vec!["exclude=a"; expr::MAX_TOKENS / 2].join(" and ");
    check(&flat_and, Some(b"b"), Want::Wanted);
    // Nesting at the limit: parentheses, runs of `not`, both.
    let n = expr::MAX_NESTING;
    check(&format!("{}anything", "( ".repeat(n)), None, Want::Wanted);
    check(&format!("{}anything", "not ".repeat(n)), None, Want::Wanted);
    let nested = format!(
        "{}include=b{}",
        "include=b or ( not ".repeat(n / 2),
        " )".repeat(n / 2)
    );
    check(&nested, Some(b"b"), Want::Wanted);
    // Right-nested chains inside groups.
    let right = format!(
        "{}anything{}",
        "anything and ( ".repeat(n - 1),
        " )".repeat(n - 1)
    );
    check(&right, None, Want::Wanted);
    // Beyond the limits.
    let too_long = vec!["anything"; expr::MAX_TOKENS + 1].join(" ");
    assert!(matches!(
        Expr::parse(&too_long).unwrap_err().failures[0].error,
        TermError::TooLong { .. }
    ));
    let too_deep = format!("{}anything", "not ".repeat(n + 1));
    assert!(matches!(
        Expr::parse(&too_deep).unwrap_err().failures[0].error,
        TermError::TooDeep { .. }
    ));
}

// ---- properties ----

const ATOMS: &[&str] = &[
    "anything",
    "nothing",
    "include=*.txt",
    "exclude=a*",
    "largerthan=1kb",
    "smallerthan=10",
    "copies=1",
    "copies=g:2",
    "copies=trusted+:1",
    "lackingcopies=1",
    "approxlackingcopies=1",
    "inbackend=SHA256E",
    "securehash",
    "metadata=tag=x*",
    "url=http*",
    "present",
    "inallgroup=g",
    "onlyingroup=g",
    "inpreferreddir",
    "balanced=g",
    "fullybalanced=g:2",
    "sizebalanced=g:lackingcopies",
    "fullysizebalanced=g",
    "unused",
];
const SYNTAX: &[&str] = &["and", "or", "not", "(", ")"];

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(ATOMS).prop_map(String::from),
        2 => proptest::sample::select(SYNTAX).prop_map(String::from),
    ]
}

fn expression() -> impl Strategy<Value = String> {
    proptest::collection::vec(token(), 0..24).prop_map(|v| v.join(" "))
}

proptest! {
    #[test]
    fn parse_format_round_trip(text in expression()) {
        let e = Expr::parse(&text).unwrap();
        let printed = e.to_string();
        let again = Expr::parse(&printed).unwrap();
        prop_assert_eq!(again.tree(), e.tree(), "{:?} printed as {:?}", text, printed);
        // Printing is stable.
        prop_assert_eq!(again.to_string(), printed);
    }

    #[test]
    fn evaluation_is_deterministic(
        text in expression(),
        locs in proptest::collection::vec(0u32..6, 0..5),
        size in 0u64..3000,
        with_file in any::<bool>(),
    ) {
        let members: Vec<Uuid> = (0..6).map(repo).collect();
        let mut facts = Facts::default().with_trust(&members[5], TrustLevel::Untrusted);
        for m in &members[..4] {
            facts = facts.with_group(m, "g").with_preferred(m, &text);
        }
        facts.numcopies = Some(2);
        let facts = facts.with_maxsize(&members[0], 5000).with_repo_size(&members[0], 100);
        let e1 = Engine::new(facts.clone());
        let e2 = Engine::new(facts);
        let locs: Vec<&Uuid> = locs.iter().map(|i| &members[*i as usize]).collect();
        let k = info(&key(size, "t"), &locs);
        let file = with_file.then_some(&b"dir/a.txt"[..]);
        for m in &members[..4] {
            let a = e1.want_get(m, &k, file);
            prop_assert_eq!(a, e1.want_get(m, &k, file));
            prop_assert_eq!(a, e2.want_get(m, &k, file));
            let ex = e1.explain(m, &k, file, &[]);
            prop_assert_eq!(ex.want, a);
            let d = e1.still_wants(m, &k, file);
            prop_assert_eq!(d, e2.still_wants(m, &k, file));
        }
    }

    #[test]
    fn balanced_picks_are_stable_and_within_candidates(
        n_members in 1usize..12,
        subset in proptest::collection::vec(any::<bool>(), 12),
        n in -1i64..6,
        keyn in 0u64..1000,
        seed in any::<u64>(),
    ) {
        let members: Vec<Uuid> = (0..n_members as u32).map(|i| repo(i + 100)).collect();
        let picker = balanced::Picker::new(members.iter());
        let mut cands: Vec<&Uuid> = members.iter().zip(&subset).filter(|(_, s)| **s).map(|(m, _)| m).collect();
        let k = key(keyn, "b");
        let picks = picker.pick(&cands, &k, n);
        for p in &picks {
            prop_assert!(cands.contains(p));
        }
        prop_assert_eq!(picks.len() as i64, n.max(0).min(cands.len() as i64));
        // Any order of the candidates gives the same picks.
        let mut s = seed;
        for i in (1..cands.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            cands.swap(i, (s >> 33) as usize % (i + 1));
        }
        prop_assert_eq!(picker.pick(&cands, &k, n), picks);
        // The picker keyed by the same members in another order is the same.
        let mut rev = members.clone();
        rev.reverse();
        prop_assert_eq!(balanced::Picker::new(rev.iter()).digest(&k), picker.digest(&k));
    }

    #[test]
    fn dropping_never_goes_below_numcopies(
        locs in proptest::collection::vec(0u32..8, 0..8),
        trust in proptest::collection::vec(0u8..4, 8),
        numcopies in 1i64..4,
        k in 1i64..4,
        holder in 0u32..8,
    ) {
        let repos: Vec<Uuid> = (0..8).map(repo).collect();
        let mut facts = Facts::default();
        for (r, t) in repos.iter().zip(&trust) {
            let level = [TrustLevel::Dead, TrustLevel::Untrusted, TrustLevel::SemiTrusted, TrustLevel::Trusted][*t as usize];
            facts = facts.with_trust(r, level);
        }
        facts.numcopies = Some(numcopies);
        let me = &repos[holder as usize];
        let facts = facts.with_preferred(me, &format!("not copies={k}"));
        let e = Engine::new(facts.clone());
        let mut locs: Vec<&Uuid> = locs.iter().map(|i| &repos[*i as usize]).collect();
        locs.push(me);
        let ki = info(&key(1, "nc"), &locs);
        // `not copies=K` keeps the content until K other live copies exist.
        if e.still_wants(me, &ki, None) == Want::NotWanted {
            let others = locs.iter().filter(|u| **u != me && facts.trust_of(u) != TrustLevel::Dead).collect::<std::collections::HashSet<_>>().len() as i64;
            prop_assert!(others >= k);
        }
        // The drop check never lets the count of safe copies fall below numcopies.
        let d = e.drop_check(&ki, None, std::slice::from_ref(me));
        if d.allowed() {
            let safe = locs.iter()
                .filter(|u| **u != me && matches!(facts.trust_of(u), TrustLevel::Trusted | TrustLevel::SemiTrusted))
                .collect::<std::collections::HashSet<_>>().len() as i64;
            prop_assert!(safe >= numcopies);
        }
        // Nor does a planned drop from all holders.
        let holders: Vec<Uuid> = locs.iter().map(|u| (*u).clone()).collect();
        let planned = e.plan_drop(&ki, None, &holders, false);
        let left = locs.iter()
            .filter(|u| !planned.contains(u) && matches!(facts.trust_of(u), TrustLevel::Trusted | TrustLevel::SemiTrusted))
            .collect::<std::collections::HashSet<_>>().len() as i64;
        let before = locs.iter()
            .filter(|u| matches!(facts.trust_of(u), TrustLevel::Trusted | TrustLevel::SemiTrusted))
            .collect::<std::collections::HashSet<_>>().len() as i64;
        prop_assert!(planned.is_empty() || left >= numcopies);
        prop_assert!(left <= before);
    }
}
