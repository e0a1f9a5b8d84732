//! Key backends: which varieties are hashes, how to hash content for each, and streaming
//! verification of received content against a key.
//!
//! Every hashing backend git-annex 10.20261026 lists is here: SHA1, SHA2 (224/256/384/512),
//! SHA3 (224/256/384/512), SKEIN (256/512), BLAKE2B (160/224/256/384/512), BLAKE2BP512,
//! BLAKE2S (160/224/256), BLAKE2SP (224/256), BLAKE3_256, XXH3 and MD5, each with and without
//! the `E` (extension) suffix. Other varieties (WORM, URL, external `X…`) are checked by
//! size only, when the key has a size.

use super::key::Key;
use digest::Digest;

/// The hash a variety names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    Sha1,
    Sha2_224,
    Sha2_256,
    Sha2_384,
    Sha2_512,
    Sha3_224,
    Sha3_256,
    Sha3_384,
    Sha3_512,
    Skein256,
    Skein512,
    Blake2b(u8),
    Blake2bp512,
    Blake2s(u8),
    Blake2sp(u8),
    Blake3_256,
    Xxh3,
    Md5,
}

impl HashKind {
    /// The hash a variety name (with or without the `E` suffix) stands for.
    pub fn of_variety(variety: &[u8]) -> Option<HashKind> {
        let v = std::str::from_utf8(variety).ok()?;
        let base = v.strip_suffix('E').unwrap_or(v);
        Some(match base {
            "SHA1" => HashKind::Sha1,
            "SHA224" => HashKind::Sha2_224,
            "SHA256" => HashKind::Sha2_256,
            "SHA384" => HashKind::Sha2_384,
            "SHA512" => HashKind::Sha2_512,
            "SHA3_224" => HashKind::Sha3_224,
            "SHA3_256" => HashKind::Sha3_256,
            "SHA3_384" => HashKind::Sha3_384,
            "SHA3_512" => HashKind::Sha3_512,
            "SKEIN256" => HashKind::Skein256,
            "SKEIN512" => HashKind::Skein512,
            "BLAKE2B160" => HashKind::Blake2b(20),
            "BLAKE2B224" => HashKind::Blake2b(28),
            "BLAKE2B256" => HashKind::Blake2b(32),
            "BLAKE2B384" => HashKind::Blake2b(48),
            "BLAKE2B512" => HashKind::Blake2b(64),
            "BLAKE2BP512" => HashKind::Blake2bp512,
            "BLAKE2S160" => HashKind::Blake2s(20),
            "BLAKE2S224" => HashKind::Blake2s(28),
            "BLAKE2S256" => HashKind::Blake2s(32),
            "BLAKE2SP224" => HashKind::Blake2sp(28),
            "BLAKE2SP256" => HashKind::Blake2sp(32),
            "BLAKE3_256" => HashKind::Blake3_256,
            "XXH3" => HashKind::Xxh3,
            "MD5" => HashKind::Md5,
            _ => return None,
        })
    }

    /// Cryptographically secure (the `securehash` preferred-content term).
    pub fn is_secure(self) -> bool {
        !matches!(self, HashKind::Sha1 | HashKind::Md5 | HashKind::Xxh3)
    }

    /// The variety name without the extension suffix.
    pub fn name(self) -> &'static str {
        match self {
            HashKind::Sha1 => "SHA1",
            HashKind::Sha2_224 => "SHA224",
            HashKind::Sha2_256 => "SHA256",
            HashKind::Sha2_384 => "SHA384",
            HashKind::Sha2_512 => "SHA512",
            HashKind::Sha3_224 => "SHA3_224",
            HashKind::Sha3_256 => "SHA3_256",
            HashKind::Sha3_384 => "SHA3_384",
            HashKind::Sha3_512 => "SHA3_512",
            HashKind::Skein256 => "SKEIN256",
            HashKind::Skein512 => "SKEIN512",
            HashKind::Blake2b(20) => "BLAKE2B160",
            HashKind::Blake2b(28) => "BLAKE2B224",
            HashKind::Blake2b(32) => "BLAKE2B256",
            HashKind::Blake2b(48) => "BLAKE2B384",
            HashKind::Blake2b(_) => "BLAKE2B512",
            HashKind::Blake2bp512 => "BLAKE2BP512",
            HashKind::Blake2s(20) => "BLAKE2S160",
            HashKind::Blake2s(28) => "BLAKE2S224",
            HashKind::Blake2s(_) => "BLAKE2S256",
            HashKind::Blake2sp(28) => "BLAKE2SP224",
            HashKind::Blake2sp(_) => "BLAKE2SP256",
            HashKind::Blake3_256 => "BLAKE3_256",
            HashKind::Xxh3 => "XXH3",
            HashKind::Md5 => "MD5",
        }
    }

    /// Every hash backend, for tests and `annexgate` listings.
    pub fn all() -> &'static [HashKind] {
        &[
            HashKind::Sha1,
            HashKind::Sha2_224,
            HashKind::Sha2_256,
            HashKind::Sha2_384,
            HashKind::Sha2_512,
            HashKind::Sha3_224,
            HashKind::Sha3_256,
            HashKind::Sha3_384,
            HashKind::Sha3_512,
            HashKind::Skein256,
            HashKind::Skein512,
            HashKind::Blake2b(20),
            HashKind::Blake2b(28),
            HashKind::Blake2b(32),
            HashKind::Blake2b(48),
            HashKind::Blake2b(64),
            HashKind::Blake2bp512,
            HashKind::Blake2s(20),
            HashKind::Blake2s(28),
            HashKind::Blake2s(32),
            HashKind::Blake2sp(28),
            HashKind::Blake2sp(32),
            HashKind::Blake3_256,
            HashKind::Xxh3,
            HashKind::Md5,
        ]
    }

    pub fn hasher(self) -> ContentHasher {
        ContentHasher(match self {
            HashKind::Sha1 => H::Sha1(sha1::Sha1::new()),
            HashKind::Sha2_224 => H::Sha224(sha2::Sha224::new()),
            HashKind::Sha2_256 => H::Sha256(sha2::Sha256::new()),
            HashKind::Sha2_384 => H::Sha384(sha2::Sha384::new()),
            HashKind::Sha2_512 => H::Sha512(sha2::Sha512::new()),
            HashKind::Sha3_224 => H::Sha3_224(sha3::Sha3_224::new()),
            HashKind::Sha3_256 => H::Sha3_256(sha3::Sha3_256::new()),
            HashKind::Sha3_384 => H::Sha3_384(sha3::Sha3_384::new()),
            HashKind::Sha3_512 => H::Sha3_512(sha3::Sha3_512::new()),
            HashKind::Skein256 => H::Skein256(skein::Skein256::new()),
            HashKind::Skein512 => H::Skein512(skein::Skein512::new()),
            HashKind::Blake2b(n) => H::Blake2b(Box::new(
                blake2b_simd::Params::new()
                    .hash_length(n as usize)
                    .to_state(),
            )),
            HashKind::Blake2bp512 => H::Blake2bp(Box::new(blake2b_simd::blake2bp::State::new())),
            HashKind::Blake2s(n) => H::Blake2s(Box::new(
                blake2s_simd::Params::new()
                    .hash_length(n as usize)
                    .to_state(),
            )),
            HashKind::Blake2sp(n) => H::Blake2sp(Box::new(
                blake2s_simd::blake2sp::Params::new()
                    .hash_length(n as usize)
                    .to_state(),
            )),
            HashKind::Blake3_256 => H::Blake3(Box::new(blake3::Hasher::new())),
            HashKind::Xxh3 => H::Xxh3(Box::new(xxhash_rust::xxh3::Xxh3::new())),
            HashKind::Md5 => H::Md5(md5::Md5::new()),
        })
    }
}

enum H {
    Sha1(sha1::Sha1),
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
    Sha3_224(sha3::Sha3_224),
    Sha3_256(sha3::Sha3_256),
    Sha3_384(sha3::Sha3_384),
    Sha3_512(sha3::Sha3_512),
    Skein256(skein::Skein256<digest::consts::U32>),
    Skein512(skein::Skein512<digest::consts::U64>),
    Blake2b(Box<blake2b_simd::State>),
    Blake2bp(Box<blake2b_simd::blake2bp::State>),
    Blake2s(Box<blake2s_simd::State>),
    Blake2sp(Box<blake2s_simd::blake2sp::State>),
    Blake3(Box<blake3::Hasher>),
    Xxh3(Box<xxhash_rust::xxh3::Xxh3>),
    Md5(md5::Md5),
}

/// An incremental content hash of one backend.
pub struct ContentHasher(H);

impl ContentHasher {
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            H::Sha1(h) => h.update(data),
            H::Sha224(h) => h.update(data),
            H::Sha256(h) => h.update(data),
            H::Sha384(h) => h.update(data),
            H::Sha512(h) => h.update(data),
            H::Sha3_224(h) => h.update(data),
            H::Sha3_256(h) => h.update(data),
            H::Sha3_384(h) => h.update(data),
            H::Sha3_512(h) => h.update(data),
            H::Skein256(h) => h.update(data),
            H::Skein512(h) => h.update(data),
            H::Blake2b(h) => {
                h.update(data);
            }
            H::Blake2bp(h) => {
                h.update(data);
            }
            H::Blake2s(h) => {
                h.update(data);
            }
            H::Blake2sp(h) => {
                h.update(data);
            }
            H::Blake3(h) => {
                h.update(data);
            }
            H::Xxh3(h) => h.update(data),
            H::Md5(h) => h.update(data),
        }
    }

    /// The lower-case hex digest, as it appears in key names.
    pub fn finish_hex(self) -> String {
        fn hex(b: &[u8]) -> String {
            let mut s = String::with_capacity(b.len() * 2);
            for x in b {
                s.push_str(&format!("{x:02x}"));
            }
            s
        }
        match self.0 {
            H::Sha1(h) => hex(&h.finalize()),
            H::Sha224(h) => hex(&h.finalize()),
            H::Sha256(h) => hex(&h.finalize()),
            H::Sha384(h) => hex(&h.finalize()),
            H::Sha512(h) => hex(&h.finalize()),
            H::Sha3_224(h) => hex(&h.finalize()),
            H::Sha3_256(h) => hex(&h.finalize()),
            H::Sha3_384(h) => hex(&h.finalize()),
            H::Sha3_512(h) => hex(&h.finalize()),
            H::Skein256(h) => hex(&h.finalize()),
            H::Skein512(h) => hex(&h.finalize()),
            H::Blake2b(h) => h.finalize().to_hex().to_string(),
            H::Blake2bp(h) => h.finalize().to_hex().to_string(),
            H::Blake2s(h) => h.finalize().to_hex().to_string(),
            H::Blake2sp(h) => h.finalize().to_hex().to_string(),
            H::Blake3(h) => h.finalize().to_hex().to_string(),
            H::Xxh3(h) => format!("{:016x}", h.digest()),
            H::Md5(h) => hex(&h.finalize()),
        }
    }
}

/// The hex hash a key's name claims: the name up to the extension for `E` varieties.
pub fn key_hash_hex(key: &Key) -> &[u8] {
    let name = key.name();
    if super::key::variety_has_ext(key.variety()) {
        let end = name.iter().position(|&b| b == b'.').unwrap_or(name.len());
        &name[..end]
    } else {
        name
    }
}

/// Whether keys of this variety can be verified by hashing.
pub fn is_verifiable(key: &Key) -> bool {
    HashKind::of_variety(key.variety()).is_some()
}

/// Whether the key's variety is a cryptographically secure hash (`securehash`).
pub fn is_secure_hash(key: &Key) -> bool {
    HashKind::of_variety(key.variety()).is_some_and(|h| h.is_secure())
}

/// Streaming verification of content against a key: feed every byte from the start of
/// the content, then ask [`Verifier::finish`].
pub struct Verifier {
    hasher: Option<ContentHasher>,
    expected_size: Option<u64>,
    seen: u64,
}

/// The result of checking content against its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Size and (for hash backends) hash match.
    Good,
    /// The size differs from the key's `-s` field.
    WrongSize { expected: u64, got: u64 },
    /// The hash differs.
    WrongHash { expected: String, got: String },
}

impl Verifier {
    /// A verifier for `key`; `hash` false checks only the size (annex.verify=false).
    pub fn new(key: &Key, hash: bool) -> Verifier {
        let hasher = if hash {
            HashKind::of_variety(key.variety()).map(HashKind::hasher)
        } else {
            None
        };
        Verifier {
            hasher,
            expected_size: key.size(),
            seen: 0,
        }
    }
    pub fn hashes(&self) -> bool {
        self.hasher.is_some()
    }
    pub fn update(&mut self, data: &[u8]) {
        self.seen += data.len() as u64;
        if let Some(h) = &mut self.hasher {
            h.update(data);
        }
    }
    pub fn seen(&self) -> u64 {
        self.seen
    }
    pub fn finish(self, key: &Key) -> Verdict {
        if let Some(expected) = self.expected_size {
            if expected != self.seen {
                return Verdict::WrongSize {
                    expected,
                    got: self.seen,
                };
            }
        }
        if let Some(h) = self.hasher {
            let got = h.finish_hex();
            let expected = key_hash_hex(key);
            if !got.as_bytes().eq_ignore_ascii_case(expected) {
                return Verdict::WrongHash {
                    expected: String::from_utf8_lossy(expected).into_owned(),
                    got,
                };
            }
        }
        Verdict::Good
    }
}

/// Hash a whole byte slice with a backend (for tests and small content).
pub fn hash_hex(kind: HashKind, data: &[u8]) -> String {
    let mut h = kind.hasher();
    h.update(data);
    h.finish_hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors_from_git_annex() {
        // `git annex calckey` of the 11 bytes "hello world" (spec keys-and-objects.md).
        let d = b"hello world";
        assert_eq!(
            hash_hex(HashKind::Sha2_256, d),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(
            hash_hex(HashKind::Blake3_256, d),
            "d74981efa70a0c880b8d8c1985d075dbcbf679b99a5f9914e5aaf96b831a9e24"
        );
        assert_eq!(hash_hex(HashKind::Xxh3, d), "d447b1ea40e6988b");
        assert_eq!(
            hash_hex(HashKind::Md5, d),
            "5eb63bbbe01eeed093cb22bb8f5acdc3"
        );
        assert_eq!(
            hash_hex(HashKind::Sha1, d),
            "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed"
        );
        assert_eq!(
            hash_hex(HashKind::Skein256, d),
            "cd9c8fefc0b6bd07cab959ee0ee0c8a1fd1f27e5adbeb47e6f2c165956d8c972"
        );
    }

    #[test]
    fn verifier_checks_size_and_hash() {
        let key = Key::from_str(
            "SHA256E-s11--b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9.txt",
        )
        .unwrap();
        let mut v = Verifier::new(&key, true);
        v.update(b"hello ");
        v.update(b"world");
        assert_eq!(v.finish(&key), Verdict::Good);
        let mut v = Verifier::new(&key, true);
        v.update(b"hello worlD");
        assert!(matches!(v.finish(&key), Verdict::WrongHash { .. }));
        let mut v = Verifier::new(&key, false);
        v.update(b"hello worlD");
        assert_eq!(v.finish(&key), Verdict::Good);
        let mut v = Verifier::new(&key, true);
        v.update(b"hello");
        assert!(matches!(v.finish(&key), Verdict::WrongSize { .. }));
        let worm = Key::from_str("WORM-s3-m1--x").unwrap();
        let mut v = Verifier::new(&worm, true);
        v.update(b"abc");
        assert_eq!(v.finish(&worm), Verdict::Good);
        assert!(!is_verifiable(&worm));
        assert!(is_secure_hash(&key));
        assert!(!is_secure_hash(
            &Key::from_str("XXH3E-s11--d447b1ea40e6988b.txt").unwrap()
        ));
    }

    #[test]
    fn every_kind_round_trips_its_name() {
        for k in HashKind::all() {
            assert_eq!(HashKind::of_variety(k.name().as_bytes()), Some(*k));
            let e = format!("{}E", k.name());
            assert_eq!(HashKind::of_variety(e.as_bytes()), Some(*k));
            assert!(!hash_hex(*k, b"x").is_empty());
        }
    }
}
