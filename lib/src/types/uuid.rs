//! Repository UUIDs: opaque text without whitespace (normally RFC 4122), and the cluster
//! UUID form (`ac` prefix, version nibble `8`).

use std::fmt;

/// A repository, special remote or cluster UUID.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid(Box<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UuidError {
    #[error("empty UUID")]
    Empty,
    #[error("UUID contains whitespace or a control character")]
    BadChar,
}

impl Uuid {
    pub fn parse(s: &str) -> Result<Uuid, UuidError> {
        if s.is_empty() {
            return Err(UuidError::Empty);
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UuidError::BadChar);
        }
        Ok(Uuid(s.into()))
    }
    pub fn parse_bytes(b: &[u8]) -> Result<Uuid, UuidError> {
        Uuid::parse(std::str::from_utf8(b).map_err(|_| UuidError::BadChar)?)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// A fresh random repository UUID (version 4).
    pub fn new_random() -> Uuid {
        Uuid(uuid::Uuid::new_v4().hyphenated().to_string().into())
    }
    /// A fresh cluster UUID: a v4 UUID with `ac` in front and version nibble `8`.
    pub fn new_cluster() -> Uuid {
        let s = uuid::Uuid::new_v4().hyphenated().to_string();
        let mut b = s.into_bytes();
        b[0] = b'a';
        b[1] = b'c';
        b[14] = b'8';
        Uuid(String::from_utf8(b).expect("ascii").into())
    }
    /// Whether this is a cluster UUID (`ac` prefix, `8` at index 14).
    pub fn is_cluster(&self) -> bool {
        let b = self.0.as_bytes();
        b.len() > 14 && b[0] == b'a' && b[1] == b'c' && b[14] == b'8'
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({})", self.0)
    }
}
impl std::str::FromStr for Uuid {
    type Err = UuidError;
    fn from_str(s: &str) -> Result<Uuid, UuidError> {
        Uuid::parse(s)
    }
}
impl AsRef<str> for Uuid {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn cluster_uuids() {
        assert!(Uuid::parse("acb82efc-627c-8994-982b-f7149c37427b")
            .unwrap()
            .is_cluster());
        assert!(!Uuid::parse("b7681060-076a-4fc0-aab9-adfeb2bde4fd")
            .unwrap()
            .is_cluster());
        for _ in 0..50 {
            let c = Uuid::new_cluster();
            assert!(c.is_cluster());
            assert_eq!(c.as_str().len(), 36);
            assert!(
                !Uuid::new_random().is_cluster() || Uuid::new_random().as_str().starts_with("ac")
            );
        }
        assert!(Uuid::parse("").is_err());
        assert!(Uuid::parse("a b").is_err());
    }
}
