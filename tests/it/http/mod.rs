//! annexgate-http against the real git-annex: the same requests as `git annex p2phttp`
//! ([`oracle`]), real git-annex clients using it as an `annex+http` remote ([`clients`]),
//! and load and fault tests ([`load`]).

mod clients;
mod load;
mod oracle;
pub mod support;
