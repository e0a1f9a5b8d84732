//! Plain values shared by every layer: keys, UUIDs, associated files, hash directories,
//! key backends (hashing and verification). No I/O here.

pub mod af;
pub mod backend;
pub mod hashdir;
pub mod key;
pub mod uuid;

pub use af::AssociatedFile;
pub use key::Key;
pub use uuid::Uuid;
