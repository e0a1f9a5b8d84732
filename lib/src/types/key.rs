//! Keys: the names git-annex gives content.
//!
//! Wire and file form (see `spec/keys-and-objects.md`):
//! `VARIETY [-s<size>] [-m<mtime>] [-S<chunksize> -C<chunknum>] --NAME`.
//! Fields appear in exactly that order; each is `-` + letter + decimal digits; `--` then
//! introduces NAME, which runs to the end and may hold any bytes. The serialisation is
//! canonical (`-s011` parses, and is written back as `-s11`, as git-annex does).

use std::fmt;
use std::hash::{Hash, Hasher};

/// Why a byte string is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("empty key")]
    Empty,
    #[error("key has no backend name before '-'")]
    NoVariety,
    #[error("key lacks the '--' before its name")]
    NoNameSeparator,
    #[error("key field -{field} has a bad number")]
    BadNumber { field: char },
    #[error("key name's extension is longer than 64 bytes")]
    ExtensionTooLong,
    #[error("key contains a newline or NUL byte")]
    BadByte,
}

/// A parsed key. Equality, ordering and hashing are those of the canonical serialisation,
/// which is a bijection of the structured fields, as git-annex compares keys.
#[derive(Clone)]
pub struct Key {
    ser: Box<[u8]>,
    variety_len: u16,
    name_start: u32,
    size: Option<u64>,
    mtime: Option<i64>,
    chunk_size: Option<u64>,
    chunk_num: Option<u64>,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.ser == other.ser
    }
}
impl Eq for Key {}
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.ser.hash(state)
    }
}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.ser.cmp(&other.ser)
    }
}

/// The parts of a key, for building one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyParts<'a> {
    pub variety: &'a [u8],
    pub size: Option<u64>,
    pub mtime: Option<i64>,
    pub chunk_size: Option<u64>,
    pub chunk_num: Option<u64>,
    pub name: &'a [u8],
}

impl Key {
    /// Parse a serialised key exactly as git-annex's key parser does.
    pub fn parse(bytes: &[u8]) -> Result<Key, KeyError> {
        if bytes.is_empty() {
            return Err(KeyError::Empty);
        }
        if bytes.iter().any(|&b| b == b'\n' || b == 0) {
            return Err(KeyError::BadByte);
        }
        let vend = bytes
            .iter()
            .position(|&b| b == b'-')
            .ok_or(KeyError::NoNameSeparator)?;
        if vend == 0 {
            return Err(KeyError::NoVariety);
        }
        let variety = &bytes[..vend];
        let mut pos = vend;
        // Each optional field: '-' letter digits+. A field that does not match is simply
        // absent (the parser backtracks), which then makes the '--' check fail.
        let mut field = |letter: u8| -> Result<Option<u64>, KeyError> {
            let rest = &bytes[pos..];
            if rest.len() >= 3 && rest[0] == b'-' && rest[1] == letter && rest[2].is_ascii_digit() {
                let digits = rest[2..].iter().take_while(|b| b.is_ascii_digit()).count();
                let text = std::str::from_utf8(&rest[2..2 + digits]).expect("ascii digits");
                // attoparsec's decimal reads arbitrarily large integers; git-annex then
                // stores an Integer. Sizes beyond u64 cannot exist on any disk.
                let n = text.parse::<u64>().map_err(|_| KeyError::BadNumber {
                    field: letter as char,
                })?;
                pos += 2 + digits;
                Ok(Some(n))
            } else {
                Ok(None)
            }
        };
        let size = field(b's')?;
        let mtime = field(b'm')?;
        let chunk_size = field(b'S')?;
        let chunk_num = field(b'C')?;
        let rest = &bytes[pos..];
        if rest.len() < 2 || rest[0] != b'-' || rest[1] != b'-' {
            return Err(KeyError::NoNameSeparator);
        }
        let name = &rest[2..];
        let mtime = match mtime {
            Some(m) => Some(i64::try_from(m).map_err(|_| KeyError::BadNumber { field: 'm' })?),
            None => None,
        };
        Key::from_parts(KeyParts {
            variety,
            size,
            mtime,
            chunk_size,
            chunk_num,
            name,
        })
    }

    /// Parse from text.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(s: &str) -> Result<Key, KeyError> {
        Key::parse(s.as_bytes())
    }

    /// Build a key from its parts, checking what git-annex checks.
    pub fn from_parts(p: KeyParts<'_>) -> Result<Key, KeyError> {
        if p.variety.is_empty() {
            return Err(KeyError::NoVariety);
        }
        if p.variety.contains(&b'-') {
            return Err(KeyError::NoVariety);
        }
        if p.name.iter().any(|&b| b == b'\n' || b == 0)
            || p.variety.iter().any(|&b| b == b'\n' || b == 0)
        {
            return Err(KeyError::BadByte);
        }
        if variety_has_ext(p.variety) {
            let dot = p
                .name
                .iter()
                .position(|&b| b == b'.')
                .unwrap_or(p.name.len());
            if p.name.len() - dot > 64 {
                return Err(KeyError::ExtensionTooLong);
            }
        }
        let mut ser = Vec::with_capacity(p.variety.len() + p.name.len() + 32);
        ser.extend_from_slice(p.variety);
        let mut num = |c: u8, v: Option<String>| {
            if let Some(v) = v {
                ser.push(b'-');
                ser.push(c);
                ser.extend_from_slice(v.as_bytes());
            }
        };
        num(b's', p.size.map(|v| v.to_string()));
        num(b'm', p.mtime.map(|v| v.to_string()));
        num(b'S', p.chunk_size.map(|v| v.to_string()));
        num(b'C', p.chunk_num.map(|v| v.to_string()));
        ser.extend_from_slice(b"--");
        let name_start = ser.len();
        ser.extend_from_slice(p.name);
        Ok(Key {
            ser: ser.into_boxed_slice(),
            variety_len: u16::try_from(p.variety.len()).map_err(|_| KeyError::NoVariety)?,
            name_start: u32::try_from(name_start).map_err(|_| KeyError::BadByte)?,
            size: p.size,
            mtime: p.mtime,
            chunk_size: p.chunk_size,
            chunk_num: p.chunk_num,
        })
    }

    /// The canonical serialisation.
    pub fn as_bytes(&self) -> &[u8] {
        &self.ser
    }
    /// The serialisation as text (lossy for the rare non-UTF-8 key names).
    pub fn to_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.ser)
    }
    /// The backend name, e.g. `SHA256E`.
    pub fn variety(&self) -> &[u8] {
        &self.ser[..self.variety_len as usize]
    }
    pub fn variety_str(&self) -> &str {
        std::str::from_utf8(self.variety()).unwrap_or("")
    }
    pub fn name(&self) -> &[u8] {
        &self.ser[self.name_start as usize..]
    }
    pub fn size(&self) -> Option<u64> {
        self.size
    }
    pub fn mtime(&self) -> Option<i64> {
        self.mtime
    }
    pub fn chunk_size(&self) -> Option<u64> {
        self.chunk_size
    }
    pub fn chunk_num(&self) -> Option<u64> {
        self.chunk_num
    }
    pub fn is_chunk(&self) -> bool {
        self.chunk_size.is_some() || self.chunk_num.is_some()
    }

    /// The key with the chunk fields removed (a chunk lives where its parent lives).
    pub fn non_chunk(&self) -> Key {
        if !self.is_chunk() {
            return self.clone();
        }
        Key::from_parts(KeyParts {
            chunk_size: None,
            chunk_num: None,
            ..self.parts()
        })
        .expect("removing chunk fields keeps a key valid")
    }

    /// The chunk key number `n` (1-based) of this key for chunks of `chunk_size` bytes.
    pub fn chunk(&self, chunk_size: u64, n: u64) -> Key {
        Key::from_parts(KeyParts {
            chunk_size: Some(chunk_size),
            chunk_num: Some(n),
            ..self.non_chunk_parts()
        })
        .expect("adding chunk fields keeps a key valid")
    }

    fn non_chunk_parts(&self) -> KeyParts<'_> {
        KeyParts {
            chunk_size: None,
            chunk_num: None,
            ..self.parts()
        }
    }

    pub fn parts(&self) -> KeyParts<'_> {
        KeyParts {
            variety: self.variety(),
            size: self.size,
            mtime: self.mtime,
            chunk_size: self.chunk_size,
            chunk_num: self.chunk_num,
            name: self.name(),
        }
    }

    /// The byte offset of a chunk key inside its parent: `S * (C - 1)`.
    pub fn chunk_offset(&self) -> Option<u64> {
        match (self.chunk_size, self.chunk_num) {
            (Some(s), Some(c)) if c >= 1 => s.checked_mul(c - 1),
            _ => None,
        }
    }

    /// Whether any byte would make this key unusable as a single path component after
    /// `keyFile` escaping (never: escaping removes '/'), or as a P2P protocol token
    /// other than the last (whitespace in the name).
    pub fn has_whitespace(&self) -> bool {
        self.ser.iter().any(|b| b.is_ascii_whitespace())
    }
}

/// Whether keys of this variety carry a file extension in their name (the `...E` and
/// `X...E` backends, and unknown varieties ending in `E`).
pub fn variety_has_ext(variety: &[u8]) -> bool {
    match variety {
        b"WORM" | b"URL" | b"VURL" | b"GITBUNDLE" | b"GITMANIFEST" => false,
        v => v.last() == Some(&b'E'),
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.to_text())
    }
}
impl std::str::FromStr for Key {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Key, KeyError> {
        Key::parse(s.as_bytes())
    }
}

/// `keyFile`: the key as one file name component (`&`->`&a`, `%`->`&s`, `:`->`&c`, `/`->`%`).
pub fn key_file(key: &Key) -> Vec<u8> {
    escape_key_file(key.as_bytes())
}

/// `keyFile` escaping of raw key bytes.
pub fn escape_key_file(bytes: &[u8]) -> Vec<u8> {
    if !bytes.iter().any(|b| matches!(b, b'&' | b'%' | b':' | b'/')) {
        return bytes.to_vec();
    }
    let mut out = Vec::with_capacity(bytes.len() + 8);
    for &b in bytes {
        match b {
            b'&' => out.extend_from_slice(b"&a"),
            b'%' => out.extend_from_slice(b"&s"),
            b':' => out.extend_from_slice(b"&c"),
            b'/' => out.push(b'%'),
            b => out.push(b),
        }
    }
    out
}

/// Reverse of [`key_file`]: the key a file name stands for.
pub fn file_key(name: &[u8]) -> Result<Key, KeyError> {
    Key::parse(&unescape_key_file(name))
}

/// Reverse `keyFile` escaping.
pub fn unescape_key_file(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        match name[i] {
            b'%' => {
                out.push(b'/');
                i += 1;
            }
            b'&' if i + 1 < name.len() => {
                match name[i + 1] {
                    b'c' => out.push(b':'),
                    b's' => out.push(b'%'),
                    b'a' => out.push(b'&'),
                    other => {
                        out.push(b'&');
                        out.push(other);
                    }
                }
                i += 2;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_git_annex_writes() {
        for s in [
            "SHA256E-s11--b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9.txt",
            "BLAKE3_256E-s11--d74981efa70a0c880b8d8c1985d075dbcbf679b99a5f9914e5aaf96b831a9e24.txt",
            "XXH3E-s11--d447b1ea40e6988b.txt",
            "MD5E-s11--5eb63bbbe01eeed093cb22bb8f5acdc3.txt",
            "SHA1-s11--2aae6c35c94fcfb415dbe95f408b9ce91ee846ed",
            "WORM-s11-m1795644124--hello.txt",
            "SHA256E-s100-S50-C2--abc.txt",
            "URL--http://example.com/a b",
            "WORM-s5-m1700000000--a&b%c:d",
            "XFOOE-s3--abc.x",
        ] {
            let k = Key::parse(s.as_bytes()).unwrap();
            assert_eq!(k.as_bytes(), s.as_bytes(), "{s}");
        }
        let k = Key::from_str("WORM-s11-m1795644124--hello.txt").unwrap();
        assert_eq!(k.variety(), b"WORM");
        assert_eq!(k.size(), Some(11));
        assert_eq!(k.mtime(), Some(1795644124));
        assert_eq!(k.name(), b"hello.txt");
        let c = Key::from_str("SHA256E-s100-S50-C2--abc.txt").unwrap();
        assert_eq!(c.chunk_offset(), Some(50));
        assert_eq!(c.non_chunk().as_bytes(), b"SHA256E-s100--abc.txt");
        assert_eq!(c.non_chunk().chunk(50, 2), c);
    }

    #[test]
    fn canonicalises_like_git_annex() {
        let k = Key::from_str("SHA256E-s011--x.txt").unwrap();
        assert_eq!(k.as_bytes(), b"SHA256E-s11--x.txt");
    }

    #[test]
    fn rejects_what_git_annex_rejects() {
        for bad in [
            "",
            "-s1--x",
            "SHA256E",
            "SHA256E-s1",
            "SHA256E-s1-x",
            "SHA256E-sx--a",
            "SHA256E-m1-s1--a", // out of order
            "SHA256E-q1--a",
            "SHA256E-s1-s1--a",
        ] {
            assert!(
                Key::parse(bad.as_bytes()).is_err(),
                "{bad:?} should not parse"
            );
        }
        let long_ext = format!("SHA256E-s1--abc.{}", "x".repeat(64));
        assert_eq!(
            Key::parse(long_ext.as_bytes()),
            Err(KeyError::ExtensionTooLong)
        );
        // Without the E the same name is fine.
        assert!(Key::parse(long_ext.replacen("SHA256E", "SHA256", 1).as_bytes()).is_ok());
    }

    #[test]
    fn key_file_escaping() {
        let k = Key::from_str("WORM-s5-m1700000000--a&b%c:d").unwrap();
        assert_eq!(key_file(&k), b"WORM-s5-m1700000000--a&ab&sc&cd");
        let k = Key::from_str("URL--http://x/y").unwrap();
        assert_eq!(key_file(&k), b"URL--http&c%%x%y");
        assert_eq!(file_key(&key_file(&k)).unwrap(), k);
    }
}
