//! The integration-test harness: real git-annex clients talking to server repositories over
//! ssh (a local shim or a real sshd), with `git-annex-shell` or `annexgate-shell` on the far
//! side.
//!
//! ```ignore
//! let env = TestEnv::new(Transport::Shim); // or Transport::Sshd
//! let client = env.client_repo("client"); // git init + git annex init client
//! let srv = env.server_repo("srv", RepoKind::Bare); // <tmp>/srv.git, git annex init srv
//! client.add_files(&[("a.txt", b"hello\n")]); // write, git annex add, commit
//! client.add_ssh_remote("srv", &srv, ShellImpl::AnnexgateShell); // + first contact
//! let r = client.annex(&["copy", "--to", "srv", "--debug", "a.txt"]); // panics on failure
//! assert_eq!(client.whereis(&["a.txt"]), ["client", "srv"]); // locations by repo name
//! assert!(client_p2p_trace(&r.stderr).iter().any(|m| m.starts_with("> PUT ")));
//! let r = client.try_annex(&["drop", "--from", "srv", "a.txt"]); // result, not judged
//! ```
//!
//! Parts: [`tools`] finds git-annex, OpenSSH and our programs (and fails loudly without them);
//! [`run`] runs a program with a time limit; [`env`] is one test's temp world; [`repo`] makes
//! and inspects repositories; [`ssh`] provides the two transports; [`outcome`] compares runs.
//!
//! Environment variables: `ANNEXGATE_TOOLS` (the git-annex installation, default
//! `<workspace>/.tools`), `ANNEXGATE_TEST_TIMEOUT` (seconds per command, default 60),
//! `ANNEXGATE_KEEP_TEST_DIRS=1` (keep each test's temp dir; its path is printed), and
//! `ANNEXGATE_LOG` (passed on to our programs on the server side).
//!
//! Tests run in parallel threads: everything a test changes lives in its own [`TestEnv`]; the
//! only process-wide things are the located tools, the one sshd (each test authorises its own
//! key) and the cache of reference outcomes.

pub mod env;
pub mod outcome;
pub mod repo;
pub mod run;
pub mod ssh;
pub mod tools;

pub use env::{ServerLogin, ShellImpl, Side, TestEnv};
pub use outcome::{assert_same_outcome, shared_outcome, Outcome};
pub use repo::{client_p2p_trace, key_file, pseudo_random, random_files, Repo, RepoKind};
pub use run::RunResult;
pub use ssh::{SshServer, Transport, SSH_HOST};
pub use tools::tools;
