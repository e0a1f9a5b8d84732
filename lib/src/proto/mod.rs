//! Wire formats, as pure encoders and decoders: bytes in, values out, and back. No I/O.
//!
//! * [`p2p`]: the git-annex P2P protocol's line serialisation (git-annex-shell p2pstdio,
//!   tor/p2p peers, the messages inside p2phttp).

pub mod p2p;
