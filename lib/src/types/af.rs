//! Associated files: the work-tree path a transfer is for, as the P2P protocol carries it.
//!
//! On the wire every whitespace byte becomes `%` and `%` becomes `%%`. Decoding turns `%%`
//! back into `%`, a lone `%` into `_` (not a space: the original whitespace is lost), and
//! control bytes into `_`. An absolute path makes the whole message unparsable.

/// A repository-relative path with `/` separators; empty means "no file".
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct AssociatedFile(Option<Vec<u8>>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AfError {
    #[error("associated file is an absolute path")]
    Absolute,
}

impl AssociatedFile {
    pub fn none() -> Self {
        AssociatedFile(None)
    }
    pub fn new(path: impl Into<Vec<u8>>) -> Self {
        let p = path.into();
        if p.is_empty() {
            AssociatedFile(None)
        } else {
            AssociatedFile(Some(p))
        }
    }
    pub fn path(&self) -> Option<&[u8]> {
        self.0.as_deref()
    }
    pub fn is_none(&self) -> bool {
        self.0.is_none()
    }
    /// The path as text, if any (lossy).
    pub fn to_text(&self) -> Option<String> {
        self.0
            .as_ref()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    /// Decode the wire form.
    pub fn decode(wire: &[u8]) -> Result<Self, AfError> {
        if wire.is_empty() {
            return Ok(AssociatedFile(None));
        }
        let mut out = Vec::with_capacity(wire.len());
        let mut i = 0;
        while i < wire.len() {
            let b = wire[i];
            if b == b'%' {
                if wire.get(i + 1) == Some(&b'%') {
                    out.push(b'%');
                    i += 2;
                } else {
                    out.push(b'_');
                    i += 1;
                }
            } else if b < 0x20 || b == 0x7f {
                out.push(b'_');
                i += 1;
            } else {
                out.push(b);
                i += 1;
            }
        }
        if out.first() == Some(&b'/') {
            return Err(AfError::Absolute);
        }
        Ok(AssociatedFile(Some(out)))
    }

    /// Encode for the wire.
    pub fn encode(&self) -> Vec<u8> {
        let Some(p) = &self.0 else { return Vec::new() };
        let mut out = Vec::with_capacity(p.len());
        for &b in p {
            match b {
                b'%' => out.extend_from_slice(b"%%"),
                b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => out.push(b'%'),
                b => out.push(b),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn wire_forms() {
        let af = AssociatedFile::new("hello world.txt");
        assert_eq!(af.encode(), b"hello%world.txt");
        assert_eq!(
            AssociatedFile::decode(b"hello%world.txt").unwrap().path(),
            Some(&b"hello_world.txt"[..])
        );
        assert_eq!(
            AssociatedFile::decode(b"hello%%world.txt").unwrap().path(),
            Some(&b"hello%world.txt"[..])
        );
        assert_eq!(AssociatedFile::new("50%").encode(), b"50%%");
        assert!(AssociatedFile::decode(b"").unwrap().is_none());
        assert_eq!(
            AssociatedFile::decode(b"/etc/passwd"),
            Err(AfError::Absolute)
        );
    }
}
