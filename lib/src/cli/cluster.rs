//! `annexgate cluster …` and `annexgate proxy update`: set up gateways and clusters the way
//! git-annex's `initcluster`, `updatecluster`, `extendcluster` and `updateproxy` do (same git
//! config, same branch logs, same messages), and show a cluster's status: its nodes, whether
//! each is up, and how full each is according to the git-annex branch.

use std::path::PathBuf;

use clap::Subcommand;

use super::{report, Io};
use crate::admin;

#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// The gateway repository (default: the one the current directory is in).
    #[arg(long, global = true)]
    pub repo: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Make this repository the gateway of a new cluster (`git annex initcluster`).
    Init {
        name: String,
        /// The cluster's description (default: `cluster NAME`).
        description: Option<String>,
    },
    /// Record the configured nodes (`remote.<r>.annex-cluster-node`) in the branch and start
    /// proxying for them (`git annex updatecluster`).
    Update,
    /// Become another gateway of the cluster NAME that REMOTE is a gateway for
    /// (`git annex extendcluster`).
    Extend { remote: String, name: String },
    /// Nodes, reachability and fill of each cluster (or just NAME).
    Status {
        name: Option<String>,
        /// Output JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// The gateway repository (default: the one the current directory is in).
    #[arg(long, global = true)]
    pub repo: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ProxyCommand,
}

#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// Record in the branch which remotes this repository proxies (`git annex updateproxy`).
    Update,
}

fn repo_dir(repo: &Option<PathBuf>) -> Result<PathBuf, String> {
    let start = match repo {
        Some(p) => p.clone(),
        None => std::env::current_dir().map_err(|e| e.to_string())?,
    };
    crate::branch::repo::GitRepo::discover(&start)
        .map(|r| r.git_dir().to_path_buf())
        .map_err(|e| e.to_string())
}

fn print_lines(io: &mut Io<'_>, lines: &[String]) {
    for l in lines {
        let _ = writeln!(io.stdout, "{l}");
    }
}

pub fn run_cluster(args: &ClusterArgs, io: &mut Io<'_>) -> i32 {
    let dir = match repo_dir(&args.repo) {
        Ok(d) => d,
        Err(e) => {
            report(io, "cluster", &e);
            return 1;
        }
    };
    let result = match &args.command {
        ClusterCommand::Init { name, description } => {
            admin::init_cluster(&dir, name, description.as_deref())
        }
        ClusterCommand::Update => admin::update_cluster(&dir),
        ClusterCommand::Extend { remote, name } => admin::extend_cluster(&dir, remote, name),
        ClusterCommand::Status { name, json } => {
            return match admin::cluster_status(&dir, name.as_deref()) {
                Ok(statuses) => {
                    if *json {
                        for s in &statuses {
                            let _ = writeln!(
                                io.stdout,
                                "{}",
                                serde_json::to_string(s).unwrap_or_default()
                            );
                        }
                    } else if statuses.is_empty() {
                        let _ = writeln!(io.stdout, "this repository is not a cluster gateway");
                    } else {
                        for s in &statuses {
                            print_lines(io, &admin::render_status(s));
                        }
                    }
                    0
                }
                Err(e) => {
                    report(io, "cluster status", &e);
                    1
                }
            };
        }
    };
    match result {
        Ok(lines) => {
            print_lines(io, &lines);
            0
        }
        Err(e) => {
            report(io, "cluster", &e);
            1
        }
    }
}

pub fn run_proxy(args: &ProxyArgs, io: &mut Io<'_>) -> i32 {
    let dir = match repo_dir(&args.repo) {
        Ok(d) => d,
        Err(e) => {
            report(io, "proxy", &e);
            return 1;
        }
    };
    match &args.command {
        ProxyCommand::Update => match admin::update_proxy(&dir) {
            Ok(lines) => {
                print_lines(io, &lines);
                0
            }
            Err(e) => {
                report(io, "proxy update", &e);
                1
            }
        },
    }
}
