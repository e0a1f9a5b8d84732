//! Hash directories for keys: `hashdirlower` (bare repositories, the git-annex branch,
//! special remotes) and `hashdirmixed` (non-bare repositories' objects). Both hash the
//! serialised non-chunk key, so a chunk lives in its parent's directories.

use super::key::Key;
use md5::{Digest, Md5};

/// `aaa/bbb/` from the lower-case md5 of the key.
pub fn hash_dir_lower(key: &Key) -> String {
    let digest = Md5::digest(key.non_chunk().as_bytes());
    let hex: String = digest.iter().take(3).map(|b| format!("{b:02x}")).collect();
    format!("{}/{}/", &hex[0..3], &hex[3..6])
}

/// `Xx/Yy/` from the first 32-bit word of the key's md5, in git-annex's alphabet.
pub fn hash_dir_mixed(key: &Key) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789zqjxkmvwgpfZQJXKMVWGPF";
    let d = Md5::digest(key.non_chunk().as_bytes());
    let w = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
    let c = |x: u32| ALPHABET[((w >> (6 * x)) & 31) as usize] as char;
    format!("{}{}/{}{}/", c(1), c(0), c(3), c(2))
}

/// One-level variants, for repositories with the OneLevel*Hash differences.
pub fn hash_dir_lower_one(key: &Key) -> String {
    hash_dir_lower(key)[..4].to_string()
}
pub fn hash_dir_mixed_one(key: &Key) -> String {
    hash_dir_mixed(key)[..3].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn worked_examples_from_git_annex() {
        for (k, mixed, lower) in [
            (
                "SHA256E-s0--e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "pX/ZJ/",
                "f87/4d5/",
            ),
            (
                "SHA256E-s11--b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9.txt",
                "mJ/76/",
                "d76/b9c/",
            ),
            (
                "SHA256E-s3--2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae.bin",
                "zG/96/",
                "bd6/a24/",
            ),
            ("WORM-s5-m1700000000--a&b%c:d", "Z7/MG/", "47d/5e9/"),
            ("SHA256E-s100-S50-C2--abc.txt", "x9/5Z/", "495/b95/"),
        ] {
            let key = Key::from_str(k).unwrap();
            assert_eq!(hash_dir_mixed(&key), mixed, "{k}");
            assert_eq!(hash_dir_lower(&key), lower, "{k}");
        }
    }
}
