//! The integration tests: real git-annex, real ssh, our programs as git-annex runs them.
//!
//! `harness` is shared by every test module; `harness_checks` tests the harness itself;
//! `shell_scenarios` runs the same client scenarios against git-annex-shell and annexgate-shell;
//! `p2p_node` runs the gateway's node connections (`P2pNode`) over ssh against both;
//! `http` tests annexgate-http against `git annex p2phttp` and with git-annex clients.

// The harness is a toolbox for all integration tests; not every tool is used by every suite.
#[allow(dead_code, unused_imports)]
mod harness;

mod cluster_scenarios;
mod harness_checks;
mod http;
mod http_cluster;
mod http_gateway;
mod http_node;
mod p2p_node;
mod shell_scenarios;
