//! What a scenario observed, as comparable values: the same scenario run against
//! `git-annex-shell` and against `annexgate-shell` must produce equal outcomes.
//!
//! An outcome holds only facts that do not depend on the run (exit codes, location sets by
//! repo name, fsck verdicts, yes/no checks), never UUIDs, paths or timings.

use std::collections::HashMap;
use std::fmt::{self, Debug};
use std::sync::{Arc, Mutex, OnceLock};

use super::run::RunResult;

/// An ordered list of `what: value` facts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome(Vec<String>);

impl Outcome {
    /// Records one fact.
    pub fn note(&mut self, what: &str, value: impl Debug) {
        self.0.push(format!("{what}: {value:?}"));
    }

    /// Records a command's exit code.
    pub fn exit(&mut self, what: &str, r: &RunResult) {
        self.note(what, r.code);
    }

    pub fn facts(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.0 {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

/// Panics, listing the facts that differ, unless `ours` equals `reference`.
#[track_caller]
pub fn assert_same_outcome(what: &str, reference: &Outcome, ours: &Outcome) {
    if reference == ours {
        return;
    }
    let mut diff = String::new();
    let n = reference.0.len().max(ours.0.len());
    for i in 0..n {
        let r = reference.0.get(i).map(String::as_str).unwrap_or("<none>");
        let o = ours.0.get(i).map(String::as_str).unwrap_or("<none>");
        let mark = if r == o { ' ' } else { '!' };
        diff.push_str(&format!("{mark} reference: {r}\n{mark} ours:      {o}\n"));
    }
    panic!("{what}: outcome differs from the reference run\n{diff}");
}

/// The outcome for `key`, computed by `run` at most once per test binary run (the reference
/// run with git-annex-shell is shared by the test that checks it and the test comparing
/// annexgate-shell with it). A panicking `run` leaves it uncomputed, so the next caller
/// retries and fails the same way.
pub fn shared_outcome(key: String, run: impl FnOnce() -> Outcome) -> Outcome {
    static CELLS: OnceLock<Mutex<HashMap<String, Arc<OnceLock<Outcome>>>>> = OnceLock::new();
    let cell = CELLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default()
        .clone();
    cell.get_or_init(run).clone()
}
