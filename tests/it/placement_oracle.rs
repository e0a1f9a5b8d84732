//! `annexgate placement` and `annexgate sizes` against the real git-annex, on one generated
//! network: an origin and six clones (one of them dead) in groups, with maxsizes (two
//! repositories full), every trust level (and a local trust override in the origin),
//! numcopies and `.gitattributes` values, and 1010 annexed files (1000 keys) of varied sizes, names and
//! backends whose content is nowhere (symlinks as `fromkey --force` makes them) but whose location logs
//! list 0–4 repositories each (`setpresentkey --batch`), plus some metadata and URLs.
//!
//! Placement: a corpus of 54 expressions (every standard group; balanced, fullybalanced,
//! sizebalanced and fullysizebalanced with `:N` and `:lackingcopies`; nested and/or/not;
//! copies, trust, lackingcopies, metadata, URLs, unstable negations) is set in rounds of
//! six, one per live repository. In each round the origin answers for every repository
//! with `git annex find --want-get-by=R` / `--want-drop-by=R` (and `--want-get` /
//! `--want-drop` for itself), and `annexgate placement --json` (and `--want-drop`) must
//! list exactly the same repositories for every file. In the balanced round each clone is synced
//! and asked for itself (`git annex find --want-get` run there, where trust overrides and
//! local content differ) against `annexgate placement --for here` run there.
//!
//! Sizes: `annexgate sizes --json` equals `git annex maxsize --json` (and the sizes
//! `git annex info` shows) on the network, after a change (the incremental path), with an
//! uncommitted journal entry, and after dropping our cache (a full walk).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{tools, Repo, RunResult, Side, TestEnv, Transport};

/// A seeded generator (so a failure reproduces).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

/// Runs `cmd` with `input` on its stdin (through a file in the test's directory).
fn run_with_input(env: &TestEnv, cmd: &mut Command, input: &[u8]) -> RunResult {
    let path = env.root().join(format!(
        "stdin-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    fs::write(&path, input).unwrap();
    cmd.stdin(Stdio::from(fs::File::open(&path).unwrap()));
    let r = env.try_run(cmd);
    let _ = fs::remove_file(&path);
    r
}

fn annex_batch(repo: &Repo<'_>, args: &[&str], input: &[u8]) -> RunResult {
    let mut c = repo.env().command(Side::Client, "git", repo.path());
    c.arg("annex").args(args);
    run_with_input(repo.env(), &mut c, input).ok()
}

fn annexgate(repo: &Repo<'_>, args: &[&str]) -> RunResult {
    let mut c = repo
        .env()
        .command(Side::Client, &tools().annexgate, repo.path());
    c.args(args);
    repo.env().try_run(&mut c)
}

fn json_lines(r: &RunResult) -> Vec<Value> {
    r.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{r}")))
        .collect()
}

/// Files git-annex lists with `find ARGS --json`.
fn find_files(repo: &Repo<'_>, args: &[&str]) -> BTreeSet<String> {
    let mut a = vec!["find"];
    a.extend_from_slice(args);
    repo.annex_json(&a)
        .iter()
        .map(|v| {
            v["file"]
                .as_str()
                .expect("find --json gives files")
                .to_string()
        })
        .collect()
}

/// file -> listed UUIDs, from `annexgate placement --json ARGS`.
fn ours(repo: &Repo<'_>, args: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let mut a = vec!["placement", "--json"];
    a.extend_from_slice(args);
    let r = annexgate(repo, &a).ok();
    let field = if args.contains(&"--want-drop") {
        "want-drop"
    } else {
        "want-get"
    };
    let mut out = BTreeMap::new();
    for v in json_lines(&r) {
        assert_eq!(v["success"], true, "{v}");
        let file = v["file"].as_str().expect("a file").to_string();
        let listed: BTreeSet<String> = v[field]
            .as_array()
            .unwrap_or_else(|| panic!("no {field} in {v}"))
            .iter()
            .map(|u| u.as_str().unwrap().to_string())
            .collect();
        out.insert(file, listed);
    }
    out
}

/// One generated key and the file it is at.
struct Item {
    key: String,
    file: String,
}

/// Keys of many backends and sizes (some without a size), at file names of many shapes.
fn generate_items(n: usize, rng: &mut Lcg) -> Vec<Item> {
    const DIRS: &[&str] = &[
        "archive",
        "archive/old",
        "public",
        "sub/public",
        "music",
        "docs",
        "deep/a/b/c",
        "photos 2024",
        "été",
        "",
        "data",
    ];
    const EXTS: &[&str] = &[".mp3", ".txt", ".bin", ".jpg", ".dat", ""];
    let mut items = Vec::with_capacity(n);
    for i in 0..n {
        let size: u64 = match rng.below(6) {
            0 => rng.below(100),
            1 => rng.below(10_000),
            2 => rng.below(1_000_000),
            3 => rng.below(60_000_000),
            4 => 1_000 * rng.below(3_000),
            _ => rng.below(5_000_000_000),
        };
        let ext = *rng.pick(EXTS);
        let hex: String = (0..4).map(|_| format!("{:016x}", rng.next())).collect();
        let key = match rng.below(10) {
            0..=5 => format!("SHA256E-s{size}--{hex}{ext}"),
            6 => format!("SHA256-s{size}--{hex}"),
            7 => format!("MD5E-s{size}--{}{ext}", &hex[..32]),
            8 => format!("WORM-s{size}-m{}--file{i}{ext}", 1_600_000_000 + i),
            // No size at all.
            _ => format!("WORM-m{}--nosize{i}{ext}", 1_600_000_000 + i),
        };
        let dir = *rng.pick(DIRS);
        let base = match rng.below(5) {
            0 => format!("f {i}{ext}"),
            1 => format!("F{i}-x{ext}"),
            _ => format!("f{i}{ext}"),
        };
        let file = if dir.is_empty() {
            base
        } else {
            format!("{dir}/{base}")
        };
        items.push(Item { key, file });
    }
    // The same key at a second name, so per-file answers can differ.
    for i in 0..10 {
        let key = items[i * 7].key.clone();
        items.push(Item {
            key,
            file: format!("archive/dup{i}.bin"),
        });
    }
    items
}

/// Commit every item as an annexed file whose content is not here (what
/// `git annex fromkey --force` makes: a symlink into `.git/annex/objects`), plus a
/// `.gitattributes`, in one `git fast-import` (fromkey takes ~5 ms a file), and check
/// the work tree out.
fn add_annex_links(repo: &Repo<'_>, items: &[Item]) {
    use annexgate::types::hashdir::hash_dir_mixed;
    let mut stream: Vec<u8> = Vec::new();
    stream.extend_from_slice(
        b"commit refs/heads/master\ncommitter t <t@annexgate.invalid> 1700000000 +0000\ndata 5\nfiles\n",
    );
    let mut inline = |path: &str, mode: &str, data: &[u8]| {
        stream
            .extend_from_slice(format!("M {mode} inline {path}\ndata {}\n", data.len()).as_bytes());
        stream.extend_from_slice(data);
        stream.push(b'\n');
    };
    for it in items {
        let key = annexgate::Key::from_str(&it.key).unwrap();
        assert!(
            !it.key.contains(['/', '%', ':', '&']),
            "key files need no escaping"
        );
        let up = "../".repeat(it.file.matches('/').count());
        let target = format!(
            ".git/annex/objects/{}{}/{}",
            hash_dir_mixed(&key),
            it.key,
            it.key
        );
        inline(&it.file, "120000", format!("{up}{target}").as_bytes());
    }
    inline(
        ".gitattributes",
        "100644",
        b"archive/** annex.numcopies=3\n*.mp3 annex.numcopies=1 annex.mincopies=1\ndocs/* annex.numcopies=4\n",
    );
    let mut c = repo.env().command(Side::Client, "git", repo.path());
    c.args(["fast-import", "--quiet"]);
    run_with_input(repo.env(), &mut c, &stream).ok();
    repo.git(&["reset", "-q", "--hard"]);
}

/// Repositories of the network, in order: origin, c1..c6.
struct Net<'e> {
    origin: Repo<'e>,
    clones: Vec<Repo<'e>>,
    /// name -> UUID, for all seven.
    uuid: BTreeMap<String, String>,
    items: Vec<Item>,
}

const CLONES: usize = 6;
/// The repository made dead.
const DEAD: &str = "c6";

impl<'e> Net<'e> {
    fn build(env: &'e TestEnv) -> Net<'e> {
        let mut rng = Lcg(20261026);
        let origin = env.client_repo("origin");
        let items = generate_items(1000, &mut rng);
        let t = std::time::Instant::now();
        add_annex_links(&origin, &items);
        eprintln!("placement_oracle: files added in {:?}", t.elapsed());

        let mut uuid = BTreeMap::new();
        uuid.insert("origin".to_string(), origin.uuid().to_string());
        // Clone and init two at a time.
        let names: Vec<String> = (1..=CLONES).map(|i| format!("c{i}")).collect();
        let clones: Vec<Repo<'e>> =
            std::thread::scope(|s| {
                let hs: Vec<_> =
                    names
                        .chunks(CLONES.div_ceil(2))
                        .map(|chunk| {
                            let origin = &origin;
                            s.spawn(move || {
                                chunk
                                    .iter()
                                    .map(|name| {
                                        let path = env.root().join(name);
                                        env.run(env.command(Side::Client, "git", env.root()).args(
                                            ["clone", "-q", &origin.path().to_string_lossy(), name],
                                        ));
                                        Repo::open(env, Side::Client, &path, name)
                                            .annex(&["init", "-q", name]);
                                        Repo::open(env, Side::Client, &path, name)
                                    })
                                    .collect::<Vec<_>>()
                            })
                        })
                        .collect();
                hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
            });
        for c in &clones {
            uuid.insert(c.name().to_string(), c.uuid().to_string());
            origin.git(&["remote", "add", c.name(), &c.path().to_string_lossy()]);
            origin.git(&["fetch", "-q", c.name()]);
            origin.set_config(&format!("remote.{}.annex-uuid", c.name()), c.uuid());
        }
        origin.annex(&["merge", "-q"]);
        eprintln!("placement_oracle: clones in {:?}", t.elapsed());
        let net = Net {
            origin,
            clones,
            uuid,
            items,
        };
        net.configure(&mut rng);
        net
    }

    fn configure(&self, rng: &mut Lcg) {
        let o = &self.origin;
        for r in ["here", "c1", "c2", "c3", "c4"] {
            o.annex(&["group", r, "nodes"]);
        }
        for r in ["c3", "c5", DEAD] {
            o.annex(&["group", r, "offsite"]);
        }
        o.annex(&["groupwanted", "nodes", "balanced=nodes:2"]);
        o.annex(&["trust", "--force", "c1"]);
        o.annex(&["untrust", "c3"]);
        o.annex(&["trust", "--force", "c5"]);
        o.annex(&["numcopies", "2"]);
        o.annex(&["mincopies", "1"]);
        // Only the origin sees c3 as trusted.
        o.set_config("remote.c3.annex-trustlevel", "trusted");

        // Locations: 0-4 repositories per key, the dead one included; some present
        // then absent.
        let names: Vec<&str> = vec!["origin", "c1", "c2", "c3", "c4", "c5", DEAD];
        let mut lines = String::new();
        let mut later = String::new();
        let mut seen = BTreeSet::new();
        for it in &self.items {
            if !seen.insert(it.key.clone()) {
                continue;
            }
            let n = [0, 1, 1, 2, 2, 3, 4][rng.below(7) as usize];
            let mut holders = BTreeSet::new();
            while holders.len() < n {
                holders.insert(*rng.pick(&names));
            }
            for h in &holders {
                lines.push_str(&format!("{} {} 1\n", it.key, self.uuid[*h]));
            }
            if rng.below(10) == 0 {
                if let Some(h) = holders.iter().next() {
                    later.push_str(&format!("{} {} 0\n", it.key, self.uuid[*h]));
                }
            }
        }
        annex_batch(o, &["setpresentkey", "--batch"], lines.as_bytes());
        annex_batch(o, &["setpresentkey", "--batch"], later.as_bytes());

        // Metadata and URLs on some keys.
        let mut md = String::new();
        let mut urls = String::new();
        for (i, it) in self.items.iter().enumerate().step_by(13) {
            let tag = ["foobar", "Foo", "bar"][i % 3];
            let v = serde_json::json!({
                "key": it.key,
                "fields": {
                    "tag": [tag],
                    "year": [(1990 + i % 40).to_string()],
                },
            });
            md.push_str(&format!("{v}\n"));
            if i % 2 == 0 {
                let host = if i % 4 == 0 {
                    "example.com"
                } else {
                    "example.org"
                };
                urls.push_str(&format!("{} https://{host}/{i}\n", it.key));
            }
        }
        annex_batch(o, &["metadata", "--batch", "--json"], md.as_bytes());
        annex_batch(o, &["registerurl", "--batch"], urls.as_bytes());

        o.annex(&["dead", DEAD]);
        // Maxsizes from the sizes git-annex computes: c2 exactly full, c3 over full, c4
        // at 0 (never gets anything new), c1 roomy.
        let sizes = annex_sizes(o);
        let size_of = |n: &str| sizes.get(&self.uuid[n]).map(|(s, _)| *s).unwrap_or(0);
        o.annex(&[
            "maxsize",
            "c1",
            &(size_of("c1") * 3 + 1_000_000).to_string(),
        ]);
        o.annex(&["maxsize", "c2", &size_of("c2").to_string()]);
        o.annex(&["maxsize", "c3", &(size_of("c3") / 2).to_string()]);
        o.annex(&["maxsize", "c4", "0"]);
        o.annex(&["maxsize", "here", &(size_of("origin") * 2).to_string()]);
    }

    /// Set each live repository's expression (and its extra groups for this round).
    fn set_round(&self, round: &Round) {
        let o = &self.origin;
        for (name, groups, expr) in round.repos.iter() {
            let r = if *name == "origin" { "here" } else { name };
            for g in *groups {
                o.annex(&["group", r, g]);
            }
            o.annex(&["wanted", r, expr]);
        }
        for (name, expr) in round.required {
            let r = if *name == "origin" { "here" } else { name };
            o.annex(&["required", r, expr]);
        }
    }

    fn unset_round(&self, round: &Round) {
        let o = &self.origin;
        for (name, groups, _) in round.repos.iter() {
            let r = if *name == "origin" { "here" } else { name };
            for g in *groups {
                o.annex(&["ungroup", r, g]);
            }
        }
        for (name, _) in round.required {
            let r = if *name == "origin" { "here" } else { name };
            o.annex(&["required", r, ""]);
        }
    }

    /// The origin's answers for every live repository against ours; returns the number of
    /// (repository, file) decisions compared and the disagreements.
    fn compare_in_origin(&self, round: &Round) -> (usize, Vec<String>) {
        let o = &self.origin;
        let live: Vec<&str> = round.repos.iter().map(|(n, _, _)| *n).collect();
        // git-annex, three finds at a time (they wait on git as much as they compute).
        let mut jobs: Vec<(String, bool, Vec<String>)> = Vec::new();
        for name in &live {
            for drop in [false, true] {
                let args = match (*name == "origin", drop) {
                    (true, false) => vec!["--want-get".to_string()],
                    (true, true) => vec!["--want-drop".to_string()],
                    (false, false) => vec![format!("--want-get-by={name}")],
                    (false, true) => vec![format!("--want-drop-by={name}")],
                };
                jobs.push((name.to_string(), drop, args));
            }
        }
        let theirs: Vec<BTreeSet<String>> = std::thread::scope(|s| {
            let per = jobs.len().div_ceil(3);
            let hs: Vec<_> = jobs
                .chunks(per)
                .map(|chunk| {
                    s.spawn(move || {
                        chunk
                            .iter()
                            .map(|(_, _, a)| {
                                let a: Vec<&str> = a.iter().map(String::as_str).collect();
                                find_files(o, &a)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let get = ours(o, &[]);
        let drop = ours(o, &["--want-drop"]);
        let files: BTreeSet<&String> = self.items.iter().map(|i| &i.file).collect();
        assert_eq!(get.len(), files.len(), "one answer per annexed file");
        let mut compared = 0;
        let mut bad = Vec::new();
        for ((name, is_drop, _), listed) in jobs.iter().zip(&theirs) {
            let u = &self.uuid[name];
            let mine = if *is_drop { &drop } else { &get };
            for f in &files {
                compared += 1;
                let ours_says = mine.get(*f).is_some_and(|s| s.contains(u));
                let git_annex_says = listed.contains(*f);
                if ours_says != git_annex_says {
                    bad.push(format!(
                        "{}: {name} {}: git-annex {git_annex_says}, annexgate {ours_says} ({})",
                        round.name,
                        if *is_drop { "want-drop" } else { "want-get" },
                        f
                    ));
                }
            }
        }
        (compared, bad)
    }

    /// Each clone, synced, asked about itself (two clones at a time).
    fn compare_in_clones(&self, round: &Round) -> (usize, Vec<String>) {
        let live: Vec<&Repo<'e>> = self.clones.iter().filter(|c| c.name() != DEAD).collect();
        let results: Vec<(usize, Vec<String>)> = std::thread::scope(|s| {
            let hs: Vec<_> = live
                .chunks(live.len().div_ceil(2))
                .map(|chunk| {
                    s.spawn(move || {
                        chunk
                            .iter()
                            .map(|c| self.compare_in_clone(c, round))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let mut compared = 0;
        let mut bad = Vec::new();
        for (n, b) in results {
            compared += n;
            bad.extend(b);
        }
        (compared, bad)
    }

    fn compare_in_clone(&self, c: &Repo<'_>, round: &Round) -> (usize, Vec<String>) {
        let mut compared = 0;
        let mut bad = Vec::new();
        c.git(&["fetch", "-q", "origin"]);
        c.annex(&["merge", "-q"]);
        let u = c.uuid().to_string();
        for drop in [false, true] {
            let flag = if drop { "--want-drop" } else { "--want-get" };
            let theirs = find_files(c, &[flag]);
            let mut args = vec!["--for", "here"];
            if drop {
                args.push("--want-drop");
            }
            let mine = ours(c, &args);
            assert_eq!(mine.len(), self.items.len(), "one answer per file");
            for (f, listed) in &mine {
                compared += 1;
                let o = listed.contains(&u);
                let t = theirs.contains(f);
                if o != t {
                    bad.push(format!(
                        "{} in {}: {flag}: git-annex {t}, annexgate {o} ({f})",
                        round.name,
                        c.name()
                    ));
                }
            }
        }
        (compared, bad)
    }
}

/// UUID -> (size, maxsize) as `git annex maxsize --json` reports them.
fn annex_sizes(repo: &Repo<'_>) -> BTreeMap<String, (u64, Option<u64>)> {
    let v = repo.annex_json(&["maxsize"]);
    let mut out = BTreeMap::new();
    for r in v[0]["repositories"].as_array().expect("repositories") {
        out.insert(
            r["uuid"].as_str().unwrap().to_string(),
            (
                r["size"]["size"].as_u64().unwrap(),
                r["size"]["maxsize"].as_u64(),
            ),
        );
    }
    out
}

/// UUID -> (size, maxsize) from `annexgate sizes --json`, and its stderr.
fn our_sizes(repo: &Repo<'_>) -> (BTreeMap<String, (u64, Option<u64>)>, String) {
    let mut c = repo
        .env()
        .command(Side::Client, &tools().annexgate, repo.path());
    c.args(["sizes", "--json"]).env("ANNEXGATE_LOG", "info");
    let r = repo.env().run(&mut c);
    let mut out = BTreeMap::new();
    for v in json_lines(&r) {
        out.insert(
            v["uuid"].as_str().unwrap().to_string(),
            (v["size"].as_u64().unwrap(), v["maxsize"].as_u64()),
        );
    }
    (out, r.stderr)
}

/// `git annex info`'s per-repository sizes (it lists the non-empty, live ones).
fn info_sizes(repo: &Repo<'_>) -> BTreeMap<String, u64> {
    let v = repo.annex_json(&["info", "--bytes"]);
    v[0]["annex sizes of repositories"]
        .as_array()
        .expect("info lists repository sizes")
        .iter()
        .map(|r| {
            (
                r["uuid"].as_str().unwrap().to_string(),
                r["size"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

fn check_sizes(repo: &Repo<'_>, expect_source: &str) {
    let theirs = annex_sizes(repo);
    let (mine, log) = our_sizes(repo);
    assert_eq!(mine, theirs, "annexgate sizes vs git annex maxsize\n{log}");
    assert!(
        log.contains(expect_source),
        "expected the sizes to come from {expect_source}: {log}"
    );
    let info = info_sizes(repo);
    let nonzero: BTreeMap<String, u64> = mine
        .iter()
        .filter(|(_, (s, _))| *s > 0)
        .map(|(u, (s, _))| (u.clone(), *s))
        .collect();
    assert_eq!(nonzero, info, "annexgate sizes vs git annex info");
}

struct Round {
    name: &'static str,
    /// (repository, extra groups for this round, wanted expression)
    repos: [(&'static str, &'static [&'static str], &'static str); 6],
    required: &'static [(&'static str, &'static str)],
}

const ROUNDS: &[Round] = &[
    Round {
        name: "standard groups 1",
        repos: [
            ("origin", &["client"], "standard"),
            ("c1", &["transfer"], "standard"),
            ("c2", &["backup"], "standard"),
            ("c3", &["incrementalbackup"], "standard"),
            ("c4", &["smallarchive"], "standard"),
            ("c5", &["archive"], "standard"),
        ],
        required: &[],
    },
    Round {
        name: "standard groups 2",
        repos: [
            ("origin", &["source"], "standard"),
            ("c1", &["manual"], "standard"),
            ("c2", &["public"], "standard"),
            ("c3", &["unwanted"], "standard"),
            ("c4", &[], "groupwanted"),
            ("c5", &["client", "archive"], "standard or copies=archive:2"),
        ],
        required: &[],
    },
    Round {
        name: "balanced",
        repos: [
            ("origin", &[], "balanced=nodes"),
            ("c1", &[], "balanced=nodes:2"),
            ("c2", &[], "fullybalanced=nodes:2"),
            ("c3", &[], "sizebalanced=nodes:3"),
            ("c4", &[], "fullysizebalanced=nodes"),
            ("c5", &[], "balanced=nodes:lackingcopies"),
        ],
        required: &[],
    },
    Round {
        name: "balanced 2",
        repos: [
            ("origin", &[], "sizebalanced=nodes:lackingcopies"),
            ("c1", &[], "fullybalanced=nodes:lackingcopies"),
            ("c2", &[], "balanced=nodes:4"),
            ("c3", &[], "balanced=offsite:1 or balanced=nodes:1"),
            (
                "c4",
                &[],
                "fullysizebalanced=nodes:2 and not copies=offsite:1",
            ),
            ("c5", &[], "balanced=offsite or present"),
        ],
        required: &[],
    },
    Round {
        name: "copies and trust",
        repos: [
            ("origin", &[], "copies=2"),
            ("c1", &[], "copies=trusted:1 and not copies=untrusted:1"),
            ("c2", &[], "copies=semitrusted+:2 or copies=nodes:3"),
            ("c3", &[], "lackingcopies=1"),
            ("c4", &[], "approxlackingcopies=2 or copies=dead:1"),
            (
                "c5",
                &[],
                "not copies=offsite:1 and (largerthan=1mb or lackingcopies=1)",
            ),
        ],
        required: &[("c2", "include=archive/*")],
    },
    Round {
        name: "files and sizes",
        repos: [
            (
                "origin",
                &[],
                "include=archive/* or (include=*.mp3 and not smallerthan=100kb)",
            ),
            (
                "c1",
                &[],
                "exclude=public/* and (largerthan=10mb or include=*.txt)",
            ),
            (
                "c2",
                &[],
                "(include=docs/* or include=deep/*) and not (copies=2 or largerthan=1gb)",
            ),
            (
                "c3",
                &[],
                "inbackend=SHA256E or inbackend=WORM and smallerthan=1kb",
            ),
            ("c4", &[], "securehash and not include=*.bin"),
            ("c5", &[], "not (include=* and exclude=music/*) or nothing"),
        ],
        required: &[],
    },
    Round {
        name: "groups, metadata, urls",
        repos: [
            ("origin", &[], "inallgroup=offsite or onlyingroup=nodes"),
            ("c1", &[], "onlyingroup=offsite"),
            ("c2", &[], "present or copies=nodes:1"),
            ("c3", &[], "not present"),
            ("c4", &[], "metadata=tag=foo* or metadata=year>=2020"),
            ("c5", &[], "url=https://example.com/* or metadata=year<1995"),
        ],
        required: &[],
    },
    Round {
        name: "mixed",
        repos: [
            ("origin", &[], "anything"),
            ("c1", &[], "nothing"),
            ("c2", &[], "present and lackingcopies=1"),
            (
                "c3",
                &[],
                "( include=*.dat or include=*.jpg ) and ( balanced=nodes:2 or copies=offsite:1 )",
            ),
            ("c4", &[], "not balanced=nodes"),
            (
                "c5",
                &[],
                "largerthan=500kb and smallerthan=50mb or include=* and approxlackingcopies=1",
            ),
        ],
        required: &[],
    },
    Round {
        name: "more",
        repos: [
            ("origin", &[], "include=*/archive/* or include=archive/*"),
            ("c1", &[], "exclude=*.mp3 exclude=*.jpg"),
            (
                "c2",
                &[],
                "sizebalanced=offsite:2 or balanced=nodes:lackingcopies",
            ),
            (
                "c3",
                &[],
                "metadata=year<2000 or (include=d*/* and copies=1)",
            ),
            ("c4", &[], "lackingcopies=2 or inpreferreddir"),
            ("c5", &[], "not not present and balanced=nodes"),
        ],
        required: &[],
    },
];

#[test]
fn placement_and_sizes_match_git_annex_on_a_network() {
    let env = TestEnv::new(Transport::Shim);
    env.set_timeout(Duration::from_secs(300));
    let t0 = std::time::Instant::now();
    let net = Net::build(&env);
    eprintln!("placement_oracle: network built in {:?}", t0.elapsed());
    let expressions: usize = ROUNDS.iter().map(|r| r.repos.len()).sum();
    assert!(
        expressions >= 50,
        "the corpus has {expressions} expressions"
    );

    // Sizes: a fresh computation, then the cache.
    let t = std::time::Instant::now();
    check_sizes(&net.origin, "FullWalk");
    check_sizes(&net.origin, "Cached");
    eprintln!("placement_oracle: sizes checked in {:?}", t.elapsed());

    let mut compared = 0;
    let mut wanted_somewhere = 0;
    let mut bad: Vec<String> = Vec::new();
    for round in ROUNDS {
        let t = std::time::Instant::now();
        net.set_round(round);
        let t_set = t.elapsed();
        let (n, b) = net.compare_in_origin(round);
        eprintln!(
            "placement_oracle: round {:?}: set in {t_set:?}, compared in {:?}",
            round.name,
            t.elapsed() - t_set
        );
        compared += n;
        bad.extend(b);
        if round.name == "balanced" {
            let t = std::time::Instant::now();
            let (n, b) = net.compare_in_clones(round);
            eprintln!("placement_oracle: clones compared in {:?}", t.elapsed());
            compared += n;
            bad.extend(b);
        }
        wanted_somewhere += ours(&net.origin, &[])
            .values()
            .filter(|s| !s.is_empty())
            .count();
        net.unset_round(round);
    }
    assert!(
        bad.is_empty(),
        "{} disagreements out of {compared} decisions; the first:\n{}",
        bad.len(),
        bad.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(compared > 100_000, "only {compared} decisions compared");
    assert!(wanted_somewhere > 1000, "too few files wanted anywhere");

    // Sizes after a change (incremental), with an uncommitted journal entry, and after
    // dropping our cache (full walk): always git-annex's numbers.
    let o = &net.origin;
    let mut moves = String::new();
    for it in net.items.iter().take(60) {
        moves.push_str(&format!("{} {} 1\n", it.key, net.uuid["c4"]));
        moves.push_str(&format!("{} {} 0\n", it.key, net.uuid["c1"]));
    }
    annex_batch(o, &["setpresentkey", "--batch"], moves.as_bytes());
    check_sizes(o, "Incremental");
    // c1 was just recorded as lacking this key, so this is a change.
    let journalled = format!("{} {} 1\n", net.items[0].key, net.uuid["c1"]);
    let mut c = env.command(Side::Client, "git", o.path());
    c.args([
        "-c",
        "annex.alwayscommit=false",
        "annex",
        "setpresentkey",
        "--batch",
    ]);
    run_with_input(&env, &mut c, journalled.as_bytes()).ok();
    assert!(
        fs::read_dir(o.git_dir().join("annex/journal"))
            .map(|d| d.count() > 0)
            .unwrap_or(false),
        "git-annex left the change in its journal"
    );
    let (with_journal, _) = our_sizes(o);
    assert_eq!(with_journal, annex_sizes(o), "with a journal entry");
    let before = with_journal;
    fs::remove_dir_all(o.git_dir().join("annex/annexgate")).unwrap();
    let (walked, log) = our_sizes(o);
    assert!(log.contains("FullWalk"), "{log}");
    assert_eq!(walked, before, "a full walk equals the incremental result");
}
