//! Map logs: one current value per field, the newest line winning.
//!
//! Three line layouts share these semantics:
//!
//! * old UUID-based: `UUID SP VALUE [SP "timestamp=" T]` (VALUE is everything between the
//!   UUID and a final ` timestamp=T`; without one, the time is unknown);
//! * new UUID-based and map logs: `T SP FIELD SP VALUE` (FIELD has no spaces).
//!
//! Within one file, of two lines for the same field the one with the greater timestamp
//! wins, and on equal timestamps the later line. Merging two parsed logs gives what
//! parsing their union merge gives: the union merge sorts lines bytewise, so on equal
//! timestamps the bytewise greater line wins — which also makes the merge commutative.
//!
//! Writers rewrite the whole file, one line per field in field order
//! ([`MapLog::format`]), after [`MapLog::set`] picked the new line's timestamp with the
//! next-timestamp rule.

use std::collections::BTreeMap;
use std::fmt;

use super::clock::Timestamp;
use super::lines::log_lines;

/// The line layout of a map log family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `UUID VALUE timestamp=T`.
    Old,
    /// `T FIELD VALUE`.
    New,
}

/// How one family of map logs reads and writes its fields and values.
pub trait MapFormat {
    type Field: Ord + Clone + fmt::Debug;
    type Value: Clone + PartialEq + fmt::Debug;
    const LAYOUT: Layout;
    /// Parse a field (for the old layout: the UUID word; never contains a space).
    fn parse_field(b: &[u8]) -> Option<Self::Field>;
    fn format_field(f: &Self::Field, out: &mut Vec<u8>);
    /// Parse a whole value (may be empty, may contain spaces).
    fn parse_value(b: &[u8]) -> Option<Self::Value>;
    fn format_value(v: &Self::Value, out: &mut Vec<u8>);
}

/// The current line of one field.
#[derive(Clone, PartialEq, Eq)]
pub struct LogEntry<V> {
    pub ts: Timestamp,
    pub value: V,
}

impl<V: fmt::Debug> fmt::Debug for LogEntry<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}@{}", self.value, self.ts)
    }
}

/// A parsed map log: the winning entry per field.
pub struct MapLog<K: MapFormat> {
    entries: BTreeMap<K::Field, LogEntry<K::Value>>,
}

impl<K: MapFormat> Clone for MapLog<K> {
    fn clone(&self) -> Self {
        MapLog {
            entries: self.entries.clone(),
        }
    }
}
impl<K: MapFormat> PartialEq for MapLog<K> {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}
impl<K: MapFormat> Default for MapLog<K> {
    fn default() -> Self {
        MapLog {
            entries: BTreeMap::new(),
        }
    }
}
impl<K: MapFormat> fmt::Debug for MapLog<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.entries.iter()).finish()
    }
}

impl<K: MapFormat> MapLog<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse a file; lines that do not parse are skipped.
    pub fn parse(content: &[u8]) -> Self {
        let mut log = MapLog::new();
        for line in log_lines(content) {
            if let Some((field, entry)) = parse_line::<K>(line) {
                // Later lines win ties within one file.
                match log.entries.get(&field) {
                    Some(old) if old.ts > entry.ts => {}
                    _ => {
                        log.entries.insert(field, entry);
                    }
                }
            }
        }
        log
    }

    /// One line per field, in field order, each ending in `\n`.
    pub fn format(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (f, e) in &self.entries {
            format_line::<K>(f, e, &mut out);
        }
        out
    }

    /// The line this log would write for one entry (without the final `\n`).
    pub fn line_of(field: &K::Field, entry: &LogEntry<K::Value>) -> Vec<u8> {
        let mut out = Vec::new();
        format_line::<K>(field, entry, &mut out);
        out.pop();
        out
    }

    pub fn get(&self, field: &K::Field) -> Option<&K::Value> {
        self.entries.get(field).map(|e| &e.value)
    }

    pub fn entry(&self, field: &K::Field) -> Option<&LogEntry<K::Value>> {
        self.entries.get(field)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K::Field, &LogEntry<K::Value>)> {
        self.entries.iter()
    }

    /// Field -> current value.
    pub fn values(&self) -> impl Iterator<Item = (&K::Field, &K::Value)> {
        self.entries.iter().map(|(f, e)| (f, &e.value))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Record `value` for `field` with a timestamp from the next-timestamp rule. Returns
    /// false (and changes nothing) when the current value already is `value`.
    pub fn set(&mut self, field: K::Field, value: K::Value, candidate: Timestamp) -> bool {
        let prev = self.entries.get(&field);
        if prev.map(|e| &e.value) == Some(&value) {
            return false;
        }
        let ts = Timestamp::next(candidate, prev.map(|e| e.ts));
        self.entries.insert(field, LogEntry { ts, value });
        true
    }

    /// Record `value` for `field` even when it is the current value (with a new time).
    pub fn force_set(&mut self, field: K::Field, value: K::Value, candidate: Timestamp) {
        let prev = self.entries.get(&field).map(|e| e.ts);
        let ts = Timestamp::next(candidate, prev);
        self.entries.insert(field, LogEntry { ts, value });
    }

    /// Insert an entry as a line of another version would: it replaces the current one
    /// only if it wins (newer, or equally new with a bytewise greater line).
    pub fn insert(&mut self, field: K::Field, entry: LogEntry<K::Value>) {
        let wins = match self.entries.get(&field) {
            None => true,
            Some(old) => {
                entry.ts > old.ts
                    || (entry.ts == old.ts
                        && Self::line_of(&field, &entry) > Self::line_of(&field, old))
            }
        };
        if wins {
            self.entries.insert(field, entry);
        }
    }

    /// Merge another version in: the result equals parsing the union merge of the two
    /// formatted logs.
    pub fn merge(&mut self, other: &Self) {
        for (f, e) in &other.entries {
            self.insert(f.clone(), e.clone());
        }
    }

    /// Keep only the fields `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&K::Field, &LogEntry<K::Value>) -> bool) {
        self.entries.retain(|f, e| keep(f, e));
    }
}

fn parse_line<K: MapFormat>(line: &[u8]) -> Option<(K::Field, LogEntry<K::Value>)> {
    match K::LAYOUT {
        Layout::Old => {
            let sp = line.iter().position(|&b| b == b' ');
            let (uuid, rest) = match sp {
                Some(0) => return None,
                Some(i) => (&line[..i], &line[i..]),
                None => (line, &line[line.len()..]),
            };
            let field = K::parse_field(uuid)?;
            // rest is empty or starts with a space. A trailing ` timestamp=T` (T a whole
            // valid timestamp) is the time; otherwise all of it after the first space is
            // the value.
            const TS: &[u8] = b" timestamp=";
            let (value, ts) = match rest.iter().rposition(|&b| b == b' ') {
                Some(i)
                    if rest[i..].starts_with(TS)
                        && Timestamp::parse(&rest[i + TS.len()..]).is_some() =>
                {
                    let ts = Timestamp::parse(&rest[i + TS.len()..]).expect("checked");
                    (if i == 0 { &rest[..0] } else { &rest[1..i] }, ts)
                }
                _ => (
                    if rest.is_empty() { rest } else { &rest[1..] },
                    Timestamp::Unknown,
                ),
            };
            let value = K::parse_value(value)?;
            Some((field, LogEntry { ts, value }))
        }
        Layout::New => {
            let (ts, used) = Timestamp::parse_prefix(line)?;
            let rest = line[used..].strip_prefix(b" ")?;
            let sp = rest.iter().position(|&b| b == b' ')?;
            let field = K::parse_field(&rest[..sp])?;
            let value = K::parse_value(&rest[sp + 1..])?;
            Some((field, LogEntry { ts, value }))
        }
    }
}

fn format_line<K: MapFormat>(f: &K::Field, e: &LogEntry<K::Value>, out: &mut Vec<u8>) {
    match K::LAYOUT {
        Layout::Old => {
            K::format_field(f, out);
            out.push(b' ');
            K::format_value(&e.value, out);
            if e.ts != Timestamp::Unknown {
                out.extend_from_slice(b" timestamp=");
                e.ts.format_into(out);
            }
        }
        Layout::New => {
            e.ts.format_into(out);
            out.push(b' ');
            K::format_field(f, out);
            out.push(b' ');
            K::format_value(&e.value, out);
        }
    }
    out.push(b'\n');
}

/// A UUID field (both UUID-based layouts).
pub(crate) fn parse_uuid(b: &[u8]) -> Option<crate::types::Uuid> {
    crate::types::Uuid::parse_bytes(b).ok()
}

/// Values that are raw bytes (descriptions, expressions, state strings...). A value may not
/// contain a line break.
pub(crate) fn parse_raw(b: &[u8]) -> Option<Vec<u8>> {
    Some(b.to_vec())
}

/// Declare a map log family.
macro_rules! map_family {
    ($(#[$m:meta])* $name:ident, $layout:expr, field: $field:ty, value: $value:ty,
     parse_field: $pf:expr, format_field: $ff:expr, parse_value: $pv:expr, format_value: $fv:expr) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name;
        impl $crate::branch::log::maplog::MapFormat for $name {
            type Field = $field;
            type Value = $value;
            const LAYOUT: $crate::branch::log::maplog::Layout = $layout;
            fn parse_field(b: &[u8]) -> Option<$field> {
                ($pf)(b)
            }
            fn format_field(f: &$field, out: &mut Vec<u8>) {
                ($ff)(f, out)
            }
            fn parse_value(b: &[u8]) -> Option<$value> {
                ($pv)(b)
            }
            fn format_value(v: &$value, out: &mut Vec<u8>) {
                ($fv)(v, out)
            }
        }
    };
}
pub(crate) use map_family;

pub(crate) fn format_uuid(u: &crate::types::Uuid, out: &mut Vec<u8>) {
    out.extend_from_slice(u.as_str().as_bytes())
}
#[allow(clippy::ptr_arg)]
pub(crate) fn format_raw(v: &Vec<u8>, out: &mut Vec<u8>) {
    out.extend_from_slice(v)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::branch::log::clock::tests::arb_timestamp;
    use crate::types::Uuid;
    use proptest::prelude::*;

    map_family!(
        /// Test family: old layout, raw values.
        OldRaw, Layout::Old, field: Uuid, value: Vec<u8>,
        parse_field: parse_uuid, format_field: format_uuid,
        parse_value: parse_raw, format_value: format_raw
    );
    map_family!(
        /// Test family: new layout, raw values.
        NewRaw, Layout::New, field: Uuid, value: Vec<u8>,
        parse_field: parse_uuid, format_field: format_uuid,
        parse_value: parse_raw, format_value: format_raw
    );

    fn u(s: &str) -> Uuid {
        Uuid::parse(s).unwrap()
    }

    #[test]
    fn old_layout_value_and_timestamp() {
        let l = MapLog::<OldRaw>::parse(
            b"59040781-186b-45a2-89c3-064d940f40f6 repo a timestamp=1795644124s\n\
              u1 value with timestamp=bad\n\
              u2\n\
              u3  two  spaces timestamp=5s\n\
              u4 timestamp=7s\n\
              \x20leadingspace x timestamp=1s\n",
        );
        let e = l.entry(&u("59040781-186b-45a2-89c3-064d940f40f6")).unwrap();
        assert_eq!(e.value, b"repo a");
        assert_eq!(e.ts, Timestamp::from_secs(1795644124));
        let e = l.entry(&u("u1")).unwrap();
        assert_eq!(e.value, b"value with timestamp=bad");
        assert_eq!(e.ts, Timestamp::Unknown);
        assert_eq!(l.entry(&u("u2")).unwrap().value, b"");
        assert_eq!(l.entry(&u("u3")).unwrap().value, b" two  spaces");
        let e = l.entry(&u("u4")).unwrap();
        assert_eq!(
            (e.value.as_slice(), e.ts),
            (&b""[..], Timestamp::from_secs(7))
        );
        assert_eq!(l.len(), 5);
    }

    #[test]
    fn new_layout_lines() {
        let l = MapLog::<NewRaw>::parse(
            b"1795644140s 59040781-186b-45a2-89c3-064d940f40f6 1000000000\n\
              12x u1 v\n\
              5s u2\n\
              6s u3 \n",
        );
        assert_eq!(
            l.get(&u("59040781-186b-45a2-89c3-064d940f40f6")).unwrap(),
            b"1000000000"
        );
        assert!(l.get(&u("u1")).is_none());
        assert!(l.get(&u("u2")).is_none());
        assert_eq!(l.get(&u("u3")).unwrap(), b"");
    }

    #[test]
    fn newest_wins_ties_go_to_the_later_line() {
        let l = MapLog::<NewRaw>::parse(b"5s u a\n7s u b\n6s u c\n");
        assert_eq!(l.get(&u("u")).unwrap(), b"b");
        let l = MapLog::<NewRaw>::parse(b"5s u z\n5s u a\n");
        assert_eq!(l.get(&u("u")).unwrap(), b"a");
        let l = MapLog::<OldRaw>::parse(b"u a\nu b timestamp=1s\nu c\n");
        assert_eq!(l.get(&u("u")).unwrap(), b"b");
    }

    #[test]
    fn set_uses_next_timestamp() {
        let mut l = MapLog::<NewRaw>::parse(b"100s u a\n");
        assert!(!l.set(u("u"), b"a".to_vec(), Timestamp::from_secs(200)));
        assert!(l.set(u("u"), b"b".to_vec(), Timestamp::from_secs(50)));
        assert_eq!(l.entry(&u("u")).unwrap().ts, Timestamp::from_secs(101));
        assert!(l.set(u("v"), b"c".to_vec(), Timestamp::from_secs(50)));
        assert_eq!(l.format(), b"101s u b\n50s v c\n".to_vec());
    }

    fn arb_value() -> impl Strategy<Value = Vec<u8>> {
        "[a-z0-9=:]{0,3}( [a-z0-9=:]{1,3}){0,2}".prop_map(|s| s.into_bytes())
    }
    fn arb_uuid() -> impl Strategy<Value = Uuid> {
        "[a-d]{1,2}".prop_map(|s| Uuid::parse(&s).unwrap())
    }
    pub(crate) fn arb_log<K: MapFormat>(
        field: impl Strategy<Value = K::Field>,
        value: impl Strategy<Value = K::Value>,
    ) -> impl Strategy<Value = MapLog<K>> {
        let ts = if K::LAYOUT == Layout::Old {
            prop_oneof![1 => Just(Timestamp::Unknown), 4 => arb_timestamp()].boxed()
        } else {
            arb_timestamp().boxed()
        };
        proptest::collection::vec((field, ts, value), 0..6).prop_map(|v| {
            let mut l = MapLog::<K>::new();
            for (f, ts, value) in v {
                l.entries.insert(f, LogEntry { ts, value });
            }
            l
        })
    }

    /// The map-log laws for one family, over generated logs.
    pub(crate) fn check_laws<K: MapFormat>(
        a: &MapLog<K>,
        b: &MapLog<K>,
        c: &MapLog<K>,
    ) -> Result<(), TestCaseError> {
        use crate::branch::log::lines::union_merge_bytes;
        // parse . format = id
        prop_assert_eq!(&MapLog::<K>::parse(&a.format()), a);
        let m = |x: &MapLog<K>, y: &MapLog<K>| {
            let mut r = x.clone();
            r.merge(y);
            r
        };
        prop_assert_eq!(m(a, b), m(b, a));
        prop_assert_eq!(m(&m(a, b), c), m(a, &m(b, c)));
        prop_assert_eq!(&m(a, a), a);
        // Union merge, then winner selection == merge of the parsed logs.
        let u = union_merge_bytes(&[&a.format(), &b.format()]);
        prop_assert_eq!(MapLog::<K>::parse(&u), m(a, b));
        // The newest timestamp wins.
        let ab = m(a, b);
        for (f, e) in ab.iter() {
            for x in [a, b] {
                if let Some(o) = x.entry(f) {
                    prop_assert!(o.ts <= e.ts);
                }
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn laws_old_layout(a in arb_log::<OldRaw>(arb_uuid(), arb_value()),
                           b in arb_log::<OldRaw>(arb_uuid(), arb_value()),
                           c in arb_log::<OldRaw>(arb_uuid(), arb_value())) {
            check_laws(&a, &b, &c)?;
        }
        #[test]
        fn laws_new_layout(a in arb_log::<NewRaw>(arb_uuid(), arb_value()),
                           b in arb_log::<NewRaw>(arb_uuid(), arb_value()),
                           c in arb_log::<NewRaw>(arb_uuid(), arb_value())) {
            check_laws(&a, &b, &c)?;
        }
    }
}
