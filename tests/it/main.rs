//! The integration tests: real git-annex, real ssh, our programs as git-annex runs them.
