//! The integration-test harness: real git-annex clients talking to server repositories over
//! ssh (a local shim or a real sshd), with `git-annex-shell` or `annexgate-shell` on the far
//! side.
//!
//! ```ignore
//! let env = TestEnv::new(Transport::Shim);
//! let client = env.client_repo("client");
//! let srv = env.server_repo("srv", RepoKind::Bare);
//! client.add_files(&[("a.txt", b"hello\n")]);
//! client.add_ssh_remote("srv", &srv, ShellImpl::AnnexgateShell);
//! client.annex(&["copy", "--to", "srv", "a.txt"]);
//! assert_eq!(client.whereis(&["a.txt"]), ["client", "srv"]);
//! ```
//!
//! Parts: [`tools`] finds git-annex, OpenSSH and our programs (and fails loudly without them);
//! [`run`] runs a program with a time limit; [`env`] is one test's temp world; [`repo`] makes
//! and inspects repositories; [`ssh`] provides the two transports; [`outcome`] compares runs.

pub mod env;
pub mod outcome;
pub mod repo;
pub mod run;
pub mod ssh;
pub mod tools;

pub use env::{ShellImpl, Side, TestEnv};
pub use outcome::{assert_same_outcome, shared_outcome, Outcome};
pub use repo::{client_p2p_trace, key_file, pseudo_random, Repo, RepoKind};
pub use run::RunResult;
pub use ssh::{SshServer, Transport, SSH_HOST};
pub use tools::tools;
