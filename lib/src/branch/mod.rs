//! The git-annex branch: its log files ([`log`], pure), reading and committing it
//! ([`repo`], the only git code, with [`pack`], a fast pack file reader for reading a
//! whole branch, and [`packwrite`], which writes each commit's new objects as one pack), and batching location changes into it ([`recorder`]); [`watch`] tells a repository's
//! views when its refs changed.

pub mod log;
pub mod pack;
pub mod packwrite;
pub mod recorder;
pub mod repo;
mod watch;

#[cfg(test)]
mod annex_tests;
#[cfg(test)]
pub(crate) mod testing;
