//! `annexgate sizes [--repo DIR] [--json]`: each repository's size (the sum of the sizes
//! of the keys its location log entries list) and maxsize, the numbers git-annex's
//! balanced preferred content works from and `git annex maxsize` prints. Dead
//! repositories are left out, as `git annex maxsize` does; a repository with a maxsize
//! but nothing stored shows size 0.
//!
//! Text lines: `UUID SIZE MAXSIZE NAME`, largest first (`-` for no maxsize). The sums
//! are cached (see [`crate::placement_io::sizes`]); how they were obtained goes to stderr
//! with `ANNEXGATE_LOG=info`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::json;

use super::{report, Io};
use crate::placement::TrustLevel;
use crate::placement_io::Placement;
use crate::types::Uuid;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The repository (default: the one containing the current directory).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// One JSON object per repository.
    #[arg(long)]
    pub json: bool,
}

const CMD: &str = "sizes";

pub fn run(args: &Args, io: &mut Io<'_>) -> i32 {
    let start = match &args.repo {
        Some(r) => r.clone(),
        None => PathBuf::from("."),
    };
    let p = match Placement::open(&start, Some(true)) {
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
    let f = &ctx.loaded.facts;
    if let Some(s) = &ctx.loaded.sizes {
        tracing::info!(source = ?s.source, overridden = s.overridden, "repository sizes");
    }
    let mut rows: BTreeMap<Uuid, (u64, Option<u64>)> = BTreeMap::new();
    for (u, s) in &f.repo_sizes {
        rows.insert(u.clone(), (*s, f.maxsize.get(u).copied()));
    }
    for (u, m) in &f.maxsize {
        rows.entry(u.clone()).or_insert((0, Some(*m)));
    }
    let mut rows: Vec<(Uuid, u64, Option<u64>)> = rows
        .into_iter()
        .filter(|(u, _)| f.trust_of(u) != TrustLevel::Dead)
        .map(|(u, (s, m))| (u, s, m))
        .collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (u, size, max) in rows {
        let name = ctx.loaded.names.label(&u);
        let r = if args.json {
            let v = json!({"uuid": u.as_str(), "size": size, "maxsize": max, "name": name});
            writeln!(io.stdout, "{v}")
        } else {
            writeln!(
                io.stdout,
                "{} {size} {} {}",
                u.as_str(),
                max.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                name.unwrap_or_default()
            )
        };
        if r.is_err() {
            break;
        }
    }
    0
}
