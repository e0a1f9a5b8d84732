//! `annexgate placement`: for each key, the repositories that want it, as git-annex decides
//! it in each of them.
//!
//! ```text
//! annexgate placement [--repo DIR] [--json] [--explain] [--want-drop] [--for REPO]... [KEY|FILE ...]
//! annexgate placement --batch ...          (stdin lines: KEY [FILE])
//! ```
//!
//! * Inputs: each argument that names an existing path is a file (resolved to its key
//!   through its annex symlink or pointer file, in the work tree or else as staged; see
//!   [`crate::placement_io::worktree`]); any other argument must be a key, and is
//!   decided without a file name. With no arguments and no `--batch`, every annexed file
//!   under the current directory (like `git annex find`). `--batch` reads lines `KEY` or
//!   `KEY FILE` (the file name, from the top of the work tree, may contain spaces; it is
//!   used as given, not looked up) and answers each line as soon as it is read.
//! * Output, one line per input: `KEY UUID UUID ...`, the UUIDs sorted. Default:
//!   repositories that would get the key (`git annex find --want-get` run in each);
//!   `--want-drop`: repositories that would drop it if they had it (`--want-drop`).
//!   An input that fails is reported on stderr; in batch mode its output line is empty,
//!   so lines stay paired. `--json`: one object per line instead.
//! * Which repositories: every one with a preferred or required content expression, minus
//!   dead ones, or those named by `--for` (a remote name, `here`, a UUID or a
//!   description). A repository without an expression never wants to get anything and
//!   always "wants" to drop (git-annex's defaults for `--want-get`/`--want-drop`).
//! * `--explain`: after each line, per repository, git-annex's own explanation
//!   (`matches preferred content: ...[TRUE]`) and what each term looked at.
//! * Decided as git-annex in each repository would, from this repository's view of the
//!   branch: `present` of this repository is its real content; of the others, their
//!   location log entries. Trust overrides are this repository's git config.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{report, Io};
use crate::placement::{Engine, Event, Explanation, Want};
use crate::placement_io::worktree::{annexed_files, Resolver, WorktreeError};
use crate::placement_io::{KeyFactsError, KeyReader, Placement};
use crate::types::key::KeyError;
use crate::types::{Key, Uuid};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The repository (default: the one containing the current directory).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Explain each repository's decision.
    #[arg(long)]
    pub explain: bool,
    /// Read `KEY [FILE]` lines from stdin.
    #[arg(long)]
    pub batch: bool,
    /// List the repositories that would drop the key instead.
    #[arg(long)]
    pub want_drop: bool,
    /// Only these repositories (repeatable).
    #[arg(long = "for", value_name = "REPO")]
    pub only: Vec<String>,
    /// Keys or files.
    #[arg(value_name = "KEY|FILE")]
    pub items: Vec<PathBuf>,
}

const CMD: &str = "placement";

/// Why one input got no answer.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    File(#[from] WorktreeError),
    #[error("{text}: not a file, and not a key ({source})")]
    NotFileOrKey { text: String, source: KeyError },
    #[error("{text}: not a key ({source})")]
    BadKey { text: String, source: KeyError },
    #[error("{key}: {source}")]
    Facts { key: String, source: KeyFactsError },
}
/// From this many keys on, every location log is read in one walk of the branch instead
/// of one lookup per key.
const BULK: usize = 5000;

/// One decision's outcome for the output.
struct Answer {
    key: Key,
    file: Option<Vec<u8>>,
    listed: Vec<Uuid>,
    explained: Vec<Explanation>,
}

struct Decider<'a, 'v, 'r> {
    engine: &'a Engine,
    keys: &'a KeyReader<'v, 'r>,
    repos: &'a [Uuid],
    drop: bool,
    explain: bool,
}

impl Decider<'_, '_, '_> {
    fn decide(&self, key: Key, file: Option<Vec<u8>>) -> Result<Answer, InputError> {
        let facts_error = |source| InputError::Facts {
            key: key.to_text().into_owned(),
            source,
        };
        let kf = self.keys.key(key.clone()).map_err(facts_error)?;
        let f = file.as_deref();
        let mut listed = Vec::new();
        let mut explained = Vec::new();
        for u in self.repos {
            let np: &[Uuid] = if self.drop {
                std::slice::from_ref(u)
            } else {
                &[]
            };
            let want = if self.explain {
                let ex = self.engine.explain(u, &kf, f, np);
                let w = ex.want;
                explained.push(ex);
                w
            } else {
                self.engine.wants(u, &kf, f, np)
            };
            // git-annex's --want-get treats "not configured" as not wanted; --want-drop
            // as droppable.
            let yes = if self.drop {
                !want.or(false)
            } else {
                want.or(false)
            };
            if yes {
                listed.push(u.clone());
            }
        }
        if let Some(e) = self.keys.take_error() {
            return Err(facts_error(e));
        }
        listed.sort();
        Ok(Answer {
            key,
            file,
            listed,
            explained,
        })
    }
}

fn want_name(w: Want) -> &'static str {
    match w {
        Want::Wanted => "wanted",
        Want::NotWanted => "not wanted",
        Want::NotConfigured => "not configured",
    }
}

struct Printer<'n> {
    json: bool,
    drop: bool,
    names: &'n crate::placement_io::RepoNames,
}

impl Printer<'_> {
    fn answer(&self, a: &Answer, out: &mut Vec<u8>) {
        if self.json {
            let mut v = json!({
                "key": a.key.to_text(),
                "file": a.file.as_ref().map(|f| String::from_utf8_lossy(f).into_owned()),
                (if self.drop { "want-drop" } else { "want-get" }):
                    a.listed.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
                "success": true,
            });
            if !a.explained.is_empty() {
                v["explain"] =
                    Value::Array(a.explained.iter().map(|e| self.explain_json(e)).collect());
            }
            out.extend_from_slice(v.to_string().as_bytes());
            out.push(b'\n');
            return;
        }
        out.extend_from_slice(a.key.as_bytes());
        for u in &a.listed {
            out.push(b' ');
            out.extend_from_slice(u.as_str().as_bytes());
        }
        out.push(b'\n');
        for e in &a.explained {
            let label = self
                .names
                .label(&e.repo)
                .map(|l| format!(" ({l})"))
                .unwrap_or_default();
            let _ = writeln!(out, "  {}{label}: {}", e.repo.as_str(), want_name(e.want));
            for line in e.details().lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }

    fn explain_json(&self, e: &Explanation) -> Value {
        let terms: Vec<Value> = e
            .events
            .iter()
            .filter_map(|ev| match ev {
                Event::Op { desc, matched, why } => {
                    Some(json!({"term": desc, "matched": matched, "why": why}))
                }
                _ => None,
            })
            .collect();
        json!({
            "uuid": e.repo.as_str(),
            "name": self.names.label(&e.repo),
            "want": want_name(e.want),
            "expression": e.expression,
            "explanation": e.describe(),
            "terms": terms,
            "unstable": e.unstable,
            "parse-error": e.error.as_ref().map(|p| p.to_string()),
        })
    }

    fn failure(&self, input: &str, msg: &str, out: &mut Vec<u8>) {
        if self.json {
            let v = json!({"input": input, "success": false, "error": msg});
            out.extend_from_slice(v.to_string().as_bytes());
        }
        out.push(b'\n');
    }
}

pub fn run(args: &Args, io: &mut Io<'_>) -> i32 {
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            report(io, CMD, &format!("cannot find the current directory: {e}"));
            return 1;
        }
    };
    let start = args.repo.clone().unwrap_or_else(|| cwd.clone());
    let p = match Placement::open(&start, None) {
        Ok(p) => p,
        Err(e) => {
            report(io, CMD, &e);
            return 1;
        }
    };
    let view = match p.repo.view() {
        Ok(v) => v,
        Err(e) => {
            report(io, CMD, &e);
            return 1;
        }
    };
    let ctx = match p.context(&view) {
        Ok(c) => c,
        Err(e) => {
            report(io, CMD, &e);
            return 1;
        }
    };
    let repos: Vec<Uuid> = if args.only.is_empty() {
        ctx.repositories.clone()
    } else {
        let mut v = Vec::new();
        for name in &args.only {
            match ctx.loaded.names.resolve(name) {
                Some(u) => v.push(u),
                None => {
                    report(io, CMD, &format!("there is no repository named {name:?}"));
                    return 1;
                }
            }
        }
        v.sort();
        v.dedup();
        v
    };
    // Every annexed file under the current directory: many keys, read in bulk.
    let all_files = if !args.batch && args.items.is_empty() {
        let under = match p.repo.work_tree() {
            Some(top) => dir_under(top, &cwd),
            None => Vec::new(),
        };
        match annexed_files(&p.repo, &under) {
            Ok(f) => Some(f),
            Err(e) => {
                report(io, CMD, &e);
                return 1;
            }
        }
    } else {
        None
    };
    let mut keys = match ctx.key_reader() {
        Ok(k) => k,
        Err(e) => {
            report(io, CMD, &e);
            return 1;
        }
    };
    if all_files.as_ref().is_some_and(|f| f.len() >= BULK) {
        match ctx.location_index() {
            Ok(idx) => keys = keys.with_index(idx),
            Err(e) => {
                report(io, CMD, &e);
                return 1;
            }
        }
    }
    let engine = Engine::new(ctx.loaded.facts.clone());
    let decider = Decider {
        engine: &engine,
        keys: &keys,
        repos: &repos,
        drop: args.want_drop,
        explain: args.explain,
    };
    let printer = Printer {
        json: args.json,
        drop: args.want_drop,
        names: &ctx.loaded.names,
    };
    if args.batch {
        if !args.items.is_empty() {
            report(
                io,
                CMD,
                &"--batch reads its inputs from stdin; give no KEY|FILE arguments",
            );
            return 2;
        }
        return run_batch(&decider, &printer, io);
    }
    let mut status = 0;
    let mut out = Vec::with_capacity(1 << 16);
    let emit = |out: &mut Vec<u8>, io: &mut Io<'_>| -> bool {
        if out.len() >= 1 << 15 {
            let ok = io.stdout.write_all(out).is_ok();
            out.clear();
            ok
        } else {
            true
        }
    };
    if let Some(files) = all_files {
        for (key, file) in files {
            match decider.decide(key, Some(file)) {
                Ok(a) => printer.answer(&a, &mut out),
                Err(e) => {
                    report(io, CMD, &e);
                    status = 1;
                }
            }
            if !emit(&mut out, io) {
                return status;
            }
        }
    } else {
        let mut resolver = Resolver::new(&p.repo);
        for item in &args.items {
            let text = item.to_string_lossy().into_owned();
            let input = if std::fs::symlink_metadata(cwd.join(item)).is_ok() {
                resolver
                    .resolve(&cwd, item)
                    .map(|(k, f)| (k, Some(f)))
                    .map_err(InputError::from)
            } else {
                Key::from_str(&text)
                    .map(|k| (k, None))
                    .map_err(|source| InputError::NotFileOrKey {
                        text: text.clone(),
                        source,
                    })
            };
            match input.and_then(|(k, f)| decider.decide(k, f)) {
                Ok(a) => printer.answer(&a, &mut out),
                Err(e) => {
                    report(io, CMD, &e);
                    status = 1;
                }
            }
            if !emit(&mut out, io) {
                return status;
            }
        }
    }
    let _ = io.stdout.write_all(&out);
    status
}

/// The current directory from the top of the work tree, with a trailing `/` (empty at
/// the top or outside the work tree: then every file counts).
fn dir_under(top: &Path, cwd: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let top = std::fs::canonicalize(top).unwrap_or_else(|_| top.to_path_buf());
    let cwd = std::fs::canonicalize(cwd).unwrap_or_else(|_| cwd.to_path_buf());
    match cwd.strip_prefix(&top) {
        Ok(rel) if !rel.as_os_str().is_empty() => {
            let mut v = rel.as_os_str().as_bytes().to_vec();
            v.push(b'/');
            v
        }
        _ => Vec::new(),
    }
}

/// Parse a batch line: `KEY` or `KEY FILE`.
fn parse_line(line: &[u8]) -> Result<(Key, Option<Vec<u8>>), InputError> {
    let (k, f) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], Some(line[i + 1..].to_vec())),
        None => (line, None),
    };
    let key = Key::parse(k).map_err(|source| InputError::BadKey {
        text: String::from_utf8_lossy(k).into_owned(),
        source,
    })?;
    Ok((key, f.filter(|f| !f.is_empty())))
}

fn run_batch(decider: &Decider<'_, '_, '_>, printer: &Printer<'_>, io: &mut Io<'_>) -> i32 {
    let mut status = 0;
    let mut input = BufReader::with_capacity(1 << 16, &mut *io.stdin);
    let mut out: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut line = Vec::new();
    loop {
        // Answer everything read so far before waiting for more input, so a program
        // feeding us one line at a time gets its answer.
        if input.buffer().is_empty() || out.len() >= 1 << 15 {
            if io
                .stdout
                .write_all(&out)
                .and_then(|_| io.stdout.flush())
                .is_err()
            {
                return status;
            }
            out.clear();
        }
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                let _ = writeln!(io.stderr, "annexgate {CMD}: reading stdin: {e}");
                status = 1;
                break;
            }
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        match parse_line(&line).and_then(|(k, f)| decider.decide(k, f)) {
            Ok(a) => printer.answer(&a, &mut out),
            Err(e) => {
                let _ = writeln!(io.stderr, "annexgate {CMD}: {e}");
                printer.failure(&text, &e.to_string(), &mut out);
                status = 1;
            }
        }
    }
    let _ = io.stdout.write_all(&out);
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_lines() {
        let (k, f) = parse_line(b"SHA256E-s3--abc.txt dir/a b.txt").unwrap();
        assert_eq!(k.to_text(), "SHA256E-s3--abc.txt");
        assert_eq!(f.as_deref(), Some(&b"dir/a b.txt"[..]));
        let (_, f) = parse_line(b"SHA256E-s3--abc.txt").unwrap();
        assert!(f.is_none());
        assert!(parse_line(b"").is_err());
        assert!(parse_line(b"not a key").is_err());
    }
}
