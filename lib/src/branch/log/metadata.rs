//! Metadata logs (`KEY.log.met`, and `KEY.log.rmet` whose fields are `UUID:field`).
//!
//! A line is `T SP FIELD SP (+|-)VALUE ... FIELD SP (+|-)VALUE ...`: each field followed by
//! the values it sets (`+`) or unsets (`-`). A value containing a space or a line break, or
//! starting with `!`, is written as `!` + base64. Field names compare case-insensitively.
//!
//! The log is a set of (timestamp, metadata) lines. The current values of a field come from
//! replaying the lines oldest first: a later mention of a value (set or unset) overrides an
//! earlier one.

use std::collections::{BTreeMap, BTreeSet};

use super::clock::Timestamp;
use super::lines::log_lines;

/// A field name, compared case-insensitively (its text is kept as first written).
#[derive(Debug, Clone)]
pub struct MetaField {
    text: String,
    folded: String,
}

impl MetaField {
    pub fn new(text: &str) -> MetaField {
        MetaField {
            text: text.to_string(),
            folded: text.to_lowercase(),
        }
    }
    pub fn as_str(&self) -> &str {
        &self.text
    }
}
impl PartialEq for MetaField {
    fn eq(&self, o: &Self) -> bool {
        self.folded == o.folded
    }
}
impl Eq for MetaField {}
impl PartialOrd for MetaField {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for MetaField {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.folded.cmp(&o.folded)
    }
}

/// One line's metadata: field -> value -> set (`true`) or unset (`false`).
pub type MetaData = BTreeMap<MetaField, BTreeMap<Vec<u8>, bool>>;

/// A parsed metadata log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaDataLog {
    lines: BTreeSet<(Timestamp, MetaDataLine)>,
}

/// Wrapper giving metadata a total order (for the set of lines).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MetaDataLine(pub MetaData);

fn parse_value(w: &[u8]) -> Option<(bool, Vec<u8>)> {
    let set = match w.first()? {
        b'+' => true,
        b'-' => false,
        _ => return None,
    };
    let rest = &w[1..];
    let v = match rest.strip_prefix(b"!") {
        Some(b64) => base64_decode(b64)?,
        None => rest.to_vec(),
    };
    Some((set, v))
}

fn format_value(set: bool, v: &[u8], out: &mut Vec<u8>) {
    out.push(if set { b'+' } else { b'-' });
    if v.iter().any(|&b| matches!(b, b' ' | b'\r' | b'\n')) || v.starts_with(b"!") {
        out.push(b'!');
        out.extend_from_slice(base64_encode(v).as_bytes());
    } else {
        out.extend_from_slice(v);
    }
}

/// Parse the metadata part of a line (never fails; unusable words are skipped as git-annex
/// does).
pub fn parse_metadata(b: &[u8]) -> MetaData {
    let mut m = MetaData::new();
    let words: Vec<&[u8]> = b.split(|&c| c == b' ').collect();
    let mut i = 0;
    while i < words.len() {
        // A field: any UTF-8 word.
        let Ok(name) = std::str::from_utf8(words[i]) else {
            i += 1;
            continue;
        };
        let field = MetaField::new(name);
        i += 1;
        while i < words.len() {
            match parse_value(words[i]) {
                Some((set, v)) => {
                    m.entry(field.clone()).or_default().insert(v, set);
                    i += 1;
                }
                None => break,
            }
        }
    }
    m
}

/// Format metadata: fields in order, each followed by its values in byte order.
pub fn format_metadata(m: &MetaData, out: &mut Vec<u8>) {
    let mut first = true;
    for (f, vs) in m {
        if vs.is_empty() {
            continue;
        }
        if !first {
            out.push(b' ');
        }
        first = false;
        out.extend_from_slice(f.text.as_bytes());
        for (v, set) in vs {
            out.push(b' ');
            format_value(*set, v, out);
        }
    }
}

impl MetaDataLog {
    pub fn parse(content: &[u8]) -> MetaDataLog {
        let mut lines = BTreeSet::new();
        for line in log_lines(content) {
            let Some((ts, used)) = Timestamp::parse_prefix(line) else {
                continue;
            };
            let Some(rest) = line[used..].strip_prefix(b" ") else {
                continue;
            };
            lines.insert((ts, MetaDataLine(parse_metadata(rest))));
        }
        MetaDataLog { lines }
    }

    pub fn format(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (ts, m) in &self.lines {
            ts.format_into(&mut out);
            out.push(b' ');
            format_metadata(&m.0, &mut out);
            out.push(b'\n');
        }
        out
    }

    pub fn merge(&mut self, other: &MetaDataLog) {
        self.lines.extend(other.lines.iter().cloned());
    }

    /// Add a line (timed by the next-timestamp rule over all lines).
    pub fn add(&mut self, m: MetaData, candidate: Timestamp) {
        let ts = Timestamp::next(candidate, self.lines.iter().map(|(t, _)| *t));
        self.lines.insert((ts, MetaDataLine(m)));
    }

    /// Every field's current values: later lines override earlier mentions of a value.
    pub fn current(&self) -> BTreeMap<MetaField, BTreeSet<Vec<u8>>> {
        let mut state: BTreeMap<MetaField, BTreeMap<Vec<u8>, bool>> = BTreeMap::new();
        for (_, line) in &self.lines {
            for (f, vs) in &line.0 {
                let e = state.entry(f.clone()).or_default();
                for (v, set) in vs {
                    e.insert(v.clone(), *set);
                }
            }
        }
        state
            .into_iter()
            .map(|(f, vs)| {
                let cur: BTreeSet<Vec<u8>> =
                    vs.into_iter().filter(|(_, s)| *s).map(|(v, _)| v).collect();
                (f, cur)
            })
            .filter(|(_, vs)| !vs.is_empty())
            .collect()
    }

    /// The current values of one field.
    pub fn values_of(&self, field: &str) -> BTreeSet<Vec<u8>> {
        self.current()
            .remove(&MetaField::new(field))
            .unwrap_or_default()
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decode standard base64 with padding; `None` if malformed.
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    if text.len() % 4 != 0 {
        return None;
    }
    let val = |c: u8| B64.iter().position(|&x| x == c).map(|p| p as u32);
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let chunks = text.len() / 4;
    for (ci, q) in text.chunks(4).enumerate() {
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && ci + 1 != chunks) {
            return None;
        }
        let mut n = 0u32;
        for (k, &c) in q.iter().enumerate() {
            let v = if k >= 4 - pad { 0 } else { val(c)? };
            n = n << 6 | v;
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::branch::log::clock::tests::arb_timestamp;
    use proptest::prelude::*;

    fn set(vs: &[&str]) -> BTreeSet<Vec<u8>> {
        vs.iter().map(|v| v.as_bytes().to_vec()).collect()
    }

    #[test]
    fn current_values() {
        let l = MetaDataLog::parse(
            b"100s foo +x bar +y\n200s foo -x +z\n150s Bar -y baz +!aGVsbG8gd29ybGQ=\n",
        );
        assert_eq!(l.values_of("foo"), set(&["z"]));
        assert_eq!(l.values_of("BAR"), set(&[]));
        assert_eq!(l.values_of("baz"), set(&["hello world"]));
        assert_eq!(l.current().len(), 2);
    }

    #[test]
    fn odd_words() {
        let m = parse_metadata(b"f +a g h +b -c");
        assert_eq!(m.len(), 2, "a field with no values is dropped");
        assert_eq!(m[&MetaField::new("h")].len(), 2);
        let mut out = Vec::new();
        let mut mm = MetaData::new();
        mm.insert(
            MetaField::new("tag"),
            [(b"a b".to_vec(), true), (b"!x".to_vec(), false)]
                .into_iter()
                .collect(),
        );
        format_metadata(&mm, &mut out);
        assert_eq!(out, b"tag -!IXg= +!YSBi".to_vec());
        assert_eq!(parse_metadata(&out), mm);
    }

    #[test]
    fn base64() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), enc);
            assert_eq!(base64_decode(enc.as_bytes()).unwrap(), plain.as_bytes());
        }
        assert!(base64_decode(b"Zm9").is_none());
        assert!(base64_decode(b"Z===").is_none());
        assert!(base64_decode(b"Zg==Zg==").is_none());
        assert!(base64_decode(b"Z*9v").is_none());
    }

    fn arb_md() -> impl Strategy<Value = MetaData> {
        proptest::collection::btree_map(
            "[a-c][a-z0-9_.-]{0,3}",
            proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..5),
                any::<bool>(),
                1..3,
            ),
            0..3,
        )
        .prop_map(|m| {
            m.into_iter()
                .map(|(k, v)| (MetaField::new(&k), v))
                .collect()
        })
    }

    fn arb_log() -> impl Strategy<Value = MetaDataLog> {
        proptest::collection::vec((arb_timestamp(), arb_md()), 0..4).prop_map(|v| MetaDataLog {
            lines: v.into_iter().map(|(t, m)| (t, MetaDataLine(m))).collect(),
        })
    }

    proptest! {
        #[test]
        fn base64_round_trip(d in proptest::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(base64_decode(base64_encode(&d).as_bytes()), Some(d));
        }

        #[test]
        fn laws(a in arb_log(), b in arb_log(), c in arb_log()) {
            prop_assert_eq!(&MetaDataLog::parse(&a.format()), &a);
            let m = |x: &MetaDataLog, y: &MetaDataLog| { let mut r = x.clone(); r.merge(y); r };
            prop_assert_eq!(m(&a, &b), m(&b, &a));
            prop_assert_eq!(m(&m(&a, &b), &c), m(&a, &m(&b, &c)));
            prop_assert_eq!(&m(&a, &a), &a);
            let u = crate::branch::log::lines::union_merge_bytes(&[&a.format(), &b.format()]);
            prop_assert_eq!(MetaDataLog::parse(&u).current(), m(&a, &b).current());
        }
    }
}
