//! The integration tests: real git-annex, real ssh, our programs as git-annex runs them.
//!
//! `harness` is shared by every test module; `harness_checks` tests the harness itself;
//! `bad_input` feeds both shells crafted input and restricted command lines;
//! `shell_scenarios` runs the same client scenarios against git-annex-shell and annexgate-shell;
//! `server_login` has annexgate-shell as the ssh forced command or login shell for plain clients;
//! `cluster_scenarios` runs git-annex's cluster tutorial through both shells and both set-ups;
//! `cluster_kinds` directory nodes, proxied non-cluster remotes and what a fetching client
//! learns; `cluster_faults` the clusters' fault and bad-input cases (nodes down, full, failing,
//! garbage, hanging; unknown UUIDs);
//! `p2p_node` runs the gateway's node connections (`P2pNode`) over ssh against both;
//! `http` tests annexgate-http against `git annex p2phttp` and with git-annex clients;
//! `placement_cli` runs the `annexgate` placement commands; `placement_oracle` compares
//! `annexgate placement` and `annexgate sizes` with git-annex's own decisions and sizes on a
//! generated network.

// The harness is a toolbox for all integration tests; not every tool is used by every suite.
#[allow(dead_code, unused_imports)]
mod harness;

mod bad_input;
mod cluster_faults;
mod cluster_kinds;
mod cluster_scenarios;
mod harness_checks;
mod http;
mod http_cluster;
mod http_gateway;
mod http_node;
mod p2p_node;
mod placement_cli;
mod placement_oracle;
mod server_login;
mod shell_scenarios;
