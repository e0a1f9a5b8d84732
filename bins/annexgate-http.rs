//! annexgate-http: a drop-in for `git annex p2phttp` (see the README and `annexgate::http`).

use std::path::PathBuf;

use clap::Parser;

/// Serve git-annex repositories over the p2phttp protocol (options as `git annex p2phttp`).
#[derive(Parser, Debug)]
#[command(name = "annexgate-http", version)]
struct Args {
    /// Port to listen on.
    #[arg(long, default_value_t = 9417)]
    port: u16,
    /// Address (or host name) to listen on; default: every address.
    #[arg(long)]
    bind: Option<String>,
    /// Listen on this unix domain socket instead of TCP.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// TLS certificate file (PEM) for HTTPS.
    #[arg(long)]
    certfile: Option<PathBuf>,
    /// TLS private key file (PEM) for HTTPS.
    #[arg(long)]
    privatekeyfile: Option<PathBuf>,
    /// TLS chain file (PEM); repeatable.
    #[arg(long)]
    chainfile: Vec<PathBuf>,
    /// Authenticate users from the environment (HTTPS only).
    #[arg(long)]
    authenv: bool,
    /// Authenticate users from the environment (plain HTTP too).
    #[arg(long = "authenv-http")]
    authenv_http: bool,
    /// Let unauthenticated users read the repository.
    #[arg(long = "unauth-readonly")]
    unauth_readonly: bool,
    /// Let unauthenticated users read and add to the repository.
    #[arg(long = "unauth-appendonly")]
    unauth_appendonly: bool,
    /// Do not let unauthenticated users lock content.
    #[arg(long = "unauth-nolocking")]
    unauth_nolocking: bool,
    /// Give unauthenticated users full read+write access.
    #[arg(long)]
    wideopen: bool,
    /// Idle connections to keep per proxied remote.
    #[arg(long, default_value_t = 1)]
    proxyconnections: usize,
    /// Requests that may work on repositories at once (a number or `cpus`).
    #[arg(short = 'J', long)]
    jobs: Option<String>,
    /// Parallel node accesses per request when serving a cluster.
    #[arg(long, default_value_t = 1)]
    clusterjobs: usize,
    /// Threads to run on (a number or `cpus`).
    #[arg(long)]
    cpus: Option<String>,
    /// Content locks that may be held at once.
    #[arg(long, default_value_t = 100)]
    lockedfiles: usize,
    /// Serve every git-annex repository found below this directory; repeatable.
    #[arg(long)]
    directory: Vec<PathBuf>,
    /// Seconds a lock lasts when keeplocked never comes (git-annex: 600; for tests).
    #[arg(long = "lock-retention", hide = true)]
    lock_retention: Option<u64>,
    /// Serve only the API routes up to this protocol version, as an older git-annex
    /// would (for tests of clients' version fallback).
    #[arg(long = "max-version", hide = true, default_value_t = 4, value_parser = clap::value_parser!(u8).range(0..=4))]
    max_version: u8,
    /// Log debugging information (as ANNEXGATE_LOG=debug).
    #[arg(long)]
    debug: bool,
    /// The repository to serve (default: the one the current directory is in).
    repository: Option<PathBuf>,
}

fn count(v: &str, what: &str) -> Result<usize, String> {
    if v == "cpus" {
        return Ok(std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1));
    }
    v.parse::<usize>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| format!("{what} must be a number of at least 1 or \"cpus\", not {v:?}"))
}

fn main() {
    let args = Args::parse();
    if args.debug && std::env::var_os("ANNEXGATE_LOG").is_none() {
        std::env::set_var("ANNEXGATE_LOG", "debug");
    }
    annexgate::logging::init();
    let jobs = match args.jobs.as_deref().map(|j| count(j, "--jobs")).transpose() {
        Ok(j) => j.unwrap_or(annexgate::http::HttpOptions::default().jobs),
        Err(e) => {
            eprintln!("annexgate-http: {e}");
            std::process::exit(1);
        }
    };
    let threads = match args.cpus.as_deref().map(|c| count(c, "--cpus")).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("annexgate-http: {e}");
            std::process::exit(1);
        }
    };
    let mut auth = annexgate::http::auth::AuthPolicy {
        authenv: args.authenv,
        authenv_http: args.authenv_http,
        unauth_readonly: args.unauth_readonly,
        unauth_appendonly: args.unauth_appendonly,
        unauth_nolocking: args.unauth_nolocking,
        wideopen: args.wideopen,
        ..Default::default()
    };
    auth.load_users(std::env::vars_os());
    let opts = annexgate::http::HttpOptions {
        port: args.port,
        bind: args.bind,
        socket: args.socket,
        certfile: args.certfile,
        chainfiles: args.chainfile,
        privatekeyfile: args.privatekeyfile,
        auth,
        jobs,
        lockedfiles: args.lockedfiles,
        proxyconnections: args.proxyconnections,
        clusterjobs: args.clusterjobs,
        threads,
        directories: args.directory,
        repository: args.repository,
        lock_retention: args
            .lock_retention
            .map(std::time::Duration::from_secs)
            .unwrap_or(annexgate::http::LOCK_RETENTION),
        max_version: args.max_version,
        ..Default::default()
    };
    std::process::exit(annexgate::http::main(opts));
}
