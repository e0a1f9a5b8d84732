//! Chunk logs (`KEY.log.cnk`): `T SP UUID ":" METHOD SP COUNT`.
//!
//! METHOD is the chunk size in bytes for fixed-size chunking (any other text is kept as an
//! unknown method); COUNT is how many chunks the remote holds (0 after removal). A map log:
//! the newest line per (UUID, METHOD) wins.

use super::maplog::{map_family, Layout, MapLog};
use crate::types::Uuid;

/// How a key was chunked on a remote.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChunkMethod {
    /// Chunks of this many bytes.
    FixedSize(u64),
    /// A method this version does not know, kept as text.
    Unknown(Vec<u8>),
}

fn parse_field(b: &[u8]) -> Option<(Uuid, ChunkMethod)> {
    let c = b.iter().position(|&x| x == b':')?;
    let uuid = Uuid::parse_bytes(&b[..c]).ok()?;
    let m = &b[c + 1..];
    let digits = m.iter().take_while(|x| x.is_ascii_digit()).count();
    let method = if digits == 0 {
        ChunkMethod::Unknown(m.to_vec())
    } else if digits == m.len() {
        ChunkMethod::FixedSize(std::str::from_utf8(m).ok()?.parse().ok()?)
    } else {
        return None;
    };
    Some((uuid, method))
}

fn format_field(f: &(Uuid, ChunkMethod), out: &mut Vec<u8>) {
    out.extend_from_slice(f.0.as_str().as_bytes());
    out.push(b':');
    match &f.1 {
        ChunkMethod::FixedSize(n) => out.extend_from_slice(n.to_string().as_bytes()),
        ChunkMethod::Unknown(t) => out.extend_from_slice(t),
    }
}

fn parse_count(b: &[u8]) -> Option<u64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}
fn format_count(n: &u64, out: &mut Vec<u8>) {
    out.extend_from_slice(n.to_string().as_bytes())
}

map_family!(
    /// `KEY.log.cnk`.
    ChunkFormat, Layout::New, field: (Uuid, ChunkMethod), value: u64,
    parse_field: parse_field, format_field: format_field,
    parse_value: parse_count, format_value: format_count
);
pub type ChunkLog = MapLog<ChunkFormat>;

impl ChunkLog {
    /// The chunkings of a key present on `remote` (count > 0).
    pub fn chunkings(&self, remote: &Uuid) -> Vec<(ChunkMethod, u64)> {
        self.values()
            .filter(|((u, _), n)| u == remote && **n > 0)
            .map(|((_, m), n)| (m.clone(), *n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::branch::log::maplog::tests::{arb_log, check_laws};
    use proptest::prelude::*;

    #[test]
    fn fixture() {
        let line = b"1795644141s 37a759e5-8b0e-4e61-aa65-5dc79ab0ed0b:1048576 1\n";
        let l = ChunkLog::parse(line);
        let u = Uuid::parse("37a759e5-8b0e-4e61-aa65-5dc79ab0ed0b").unwrap();
        assert_eq!(l.chunkings(&u), [(ChunkMethod::FixedSize(1048576), 1)]);
        assert_eq!(l.format(), line.to_vec());
        let l = ChunkLog::parse(b"1s a:12x 1\n1s b:weird 2\n1s c:5 x\n1s d:5 0\n");
        assert_eq!(l.len(), 2);
        let b = Uuid::parse("b").unwrap();
        assert_eq!(
            l.chunkings(&b),
            [(ChunkMethod::Unknown(b"weird".to_vec()), 2)]
        );
        assert!(l.chunkings(&Uuid::parse("d").unwrap()).is_empty());
    }

    fn arb_field() -> impl Strategy<Value = (Uuid, ChunkMethod)> {
        (
            "[a-c]{1,2}".prop_map(|s| Uuid::parse(&s).unwrap()),
            prop_oneof![
                (1u64..5_000_000).prop_map(ChunkMethod::FixedSize),
                "[a-z]{0,3}".prop_map(|s| ChunkMethod::Unknown(s.into_bytes()))
            ],
        )
    }

    proptest! {
        #[test]
        fn laws(a in arb_log::<ChunkFormat>(arb_field(), 0u64..10),
                b in arb_log::<ChunkFormat>(arb_field(), 0u64..10),
                c in arb_log::<ChunkFormat>(arb_field(), 0u64..10)) {
            check_laws(&a, &b, &c)?;
        }
    }
}
