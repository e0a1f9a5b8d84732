//! annexgate-shell: a drop-in for git-annex-shell. Parses the command lines git-annex sends
//! (see [`args`]), applies git-annex-shell's environment restrictions, and serves the P2P
//! protocol on stdio for the repository, a proxied node or a cluster.

pub mod args;
