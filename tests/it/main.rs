//! The integration tests: real git-annex, real ssh, our programs as git-annex runs them.
//!
//! `harness` is shared by every test module; `harness_checks` tests the harness itself;
//! `shell_scenarios` runs the same client scenarios against git-annex-shell and annexgate-shell;
//! `placement_oracle` compares `annexgate placement` and `annexgate sizes` with git-annex's
//! own decisions and sizes on a generated network.

// The harness is a toolbox for all integration tests; not every tool is used by every suite.
#[allow(dead_code, unused_imports)]
mod harness;

mod harness_checks;
mod placement_cli;
mod placement_oracle;
mod shell_scenarios;
