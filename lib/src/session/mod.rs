//! Protocol state machines as plain values: they take what arrived (a decoded message,
//! the result of an operation they asked for) and answer with actions (send this, ask the
//! node that, move these bytes). They never touch a socket, file or clock, so recorded
//! exchanges replay against them in tests; `conn` drives them over real I/O.
//!
//! * [`server`]: the server side of the P2P protocol (what git-annex-shell p2pstdio does).
//! * [`client`]: the client side (what git-annex does when it talks to a P2P remote).

pub mod client;
pub mod server;

#[cfg(test)]
pub(crate) mod testing;
