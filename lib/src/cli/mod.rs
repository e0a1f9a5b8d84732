//! The `annexgate` program: one module per subcommand, each a clap `Args` struct and a
//! `run` that writes to the given output streams and returns the exit status. The binary
//! (`bins/annexgate.rs`) only calls [`main`]. A later subcommand (`cluster`, `proxy`,
//! `status`, `sim`) is a new module here and a new variant of [`Command`].
//!
//! Exit status: 0 success, 1 the command failed (for some input, or the expression does
//! not parse), 2 bad usage.

pub mod check_expression;
pub mod cluster;
pub mod placement;
pub mod sizes;

use std::ffi::OsString;
use std::io::{Read, Write};

use clap::{Parser, Subcommand};

/// annexgate: a gateway for git-annex clusters; this program is its helper CLI.
#[derive(Debug, Parser)]
#[command(name = "annexgate", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Which repositories want each key, as git-annex decides it in each of them.
    Placement(placement::Args),
    /// Parse a preferred content expression; report errors and unstable negations.
    CheckExpression(check_expression::Args),
    /// Repository sizes from the location logs (cached), with their maxsize.
    Sizes(sizes::Args),
    /// Set up and inspect clusters: init, update, extend, status.
    Cluster(cluster::ClusterArgs),
    /// Record what this repository proxies for (like `git annex updateproxy`).
    Proxy(cluster::ProxyArgs),
}

/// The streams a command uses.
pub struct Io<'a> {
    pub stdin: &'a mut dyn Read,
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
}

/// Parse `args` (program name first) and run the command. Returns the exit status.
pub fn run(args: impl IntoIterator<Item = OsString>, io: &mut Io<'_>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let text = e.render().to_string();
            let out: &mut dyn Write = if e.use_stderr() {
                &mut *io.stderr
            } else {
                &mut *io.stdout
            };
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            return e.exit_code();
        }
    };
    let status = match cli.command {
        Command::Placement(a) => placement::run(&a, io),
        Command::CheckExpression(a) => check_expression::run(&a, io),
        Command::Sizes(a) => sizes::run(&a, io),
        Command::Cluster(a) => cluster::run_cluster(&a, io),
        Command::Proxy(a) => cluster::run_proxy(&a, io),
    };
    let _ = io.stdout.flush();
    status
}

/// The program's entry: the process's arguments and standard streams.
pub fn main() -> i32 {
    crate::branch::repo::tune_for_bulk_reads();
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut err = stderr.lock();
    let mut input = stdin.lock();
    let status = run(
        std::env::args_os(),
        &mut Io {
            stdin: &mut input,
            stdout: &mut out,
            stderr: &mut err,
        },
    );
    // A closed stdout (e.g. `| head`) is a clean end, not a failure to report.
    let _ = out.flush();
    status
}

/// Write an error line `annexgate <cmd>: <msg>` to stderr.
pub(crate) fn report(io: &mut Io<'_>, cmd: &str, msg: &dyn std::fmt::Display) {
    let _ = writeln!(io.stderr, "annexgate {cmd}: {msg}");
}
