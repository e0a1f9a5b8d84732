//! Single-value logs: `T SP VALUE` lines; the newest line wins, and on equal timestamps
//! the greatest value. `numcopies.log` and `mincopies.log` hold a number each (values below
//! 1 read as 1); writers replace the file with a single line.
//!
//! The parsed value is the set of all (timestamp, value) lines, so merging is set union.

use std::collections::BTreeSet;

use super::clock::Timestamp;
use super::lines::log_lines;

/// A value of a single-value log.
pub trait SingleValue: Ord + Clone + std::fmt::Debug {
    fn parse(b: &[u8]) -> Option<Self>;
    fn format(&self, out: &mut Vec<u8>);
}

/// A parsed single-value log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SingleValueLog<V: SingleValue> {
    lines: BTreeSet<(Timestamp, V)>,
}

impl<V: SingleValue> Default for SingleValueLog<V> {
    fn default() -> Self {
        SingleValueLog {
            lines: BTreeSet::new(),
        }
    }
}

impl<V: SingleValue> SingleValueLog<V> {
    pub fn parse(content: &[u8]) -> Self {
        let mut lines = BTreeSet::new();
        for line in log_lines(content) {
            let Some((ts, used)) = Timestamp::parse_prefix(line) else {
                continue;
            };
            let Some(rest) = line[used..].strip_prefix(b" ") else {
                continue;
            };
            if let Some(v) = V::parse(rest) {
                lines.insert((ts, v));
            }
        }
        SingleValueLog { lines }
    }

    /// Every line, oldest first.
    pub fn format(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (ts, v) in &self.lines {
            ts.format_into(&mut out);
            out.push(b' ');
            v.format(&mut out);
            out.push(b'\n');
        }
        out
    }

    /// The current value.
    pub fn value(&self) -> Option<&V> {
        self.lines.last().map(|(_, v)| v)
    }

    /// The current value and its time.
    pub fn newest(&self) -> Option<&(Timestamp, V)> {
        self.lines.last()
    }

    /// Replace the log by one line holding `value`, timed by the next-timestamp rule.
    /// Returns false (and changes nothing) when `value` already is the current value.
    pub fn set(&mut self, value: V, candidate: Timestamp) -> bool {
        if self.value() == Some(&value) {
            return false;
        }
        let ts = Timestamp::next(candidate, self.lines.iter().map(|(t, _)| *t));
        self.lines = [(ts, value)].into_iter().collect();
        true
    }

    pub fn merge(&mut self, other: &Self) {
        self.lines.extend(other.lines.iter().cloned());
    }

    pub fn lines(&self) -> impl Iterator<Item = &(Timestamp, V)> {
        self.lines.iter()
    }
}

/// A copy count (numcopies, mincopies): at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Copies(u32);

impl Copies {
    /// A configured count; values below 1 become 1, as git-annex does.
    pub fn new(n: i64) -> Copies {
        Copies(n.clamp(1, u32::MAX as i64) as u32)
    }
    pub fn get(self) -> u32 {
        self.0
    }
}

impl SingleValue for Copies {
    fn parse(b: &[u8]) -> Option<Copies> {
        // git-annex reads an Int leniently: leading spaces, an optional sign, digits.
        let s = b.iter().position(|c| !c.is_ascii_whitespace())?;
        let b = &b[s..];
        let (neg, b) = match b.first() {
            Some(b'-') => (true, &b[1..]),
            _ => (false, b),
        };
        let d = b.iter().take_while(|c| c.is_ascii_digit()).count();
        if d == 0 || matches!(b.get(d), Some(b'.' | b'e' | b'E' | b'x' | b'o' | b'b')) {
            return None;
        }
        let n: i64 = std::str::from_utf8(&b[..d]).ok()?.parse().ok()?;
        Some(Copies::new(if neg { -n } else { n }))
    }
    fn format(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0.to_string().as_bytes())
    }
}

/// `numcopies.log` / `mincopies.log`.
pub type CopiesLog = SingleValueLog<Copies>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::branch::log::clock::tests::arb_timestamp;
    use crate::branch::log::lines::union_merge_bytes;
    use proptest::prelude::*;

    #[test]
    fn fixtures() {
        let n = CopiesLog::parse(b"1795644140s 2\n");
        assert_eq!(n.value(), Some(&Copies::new(2)));
        let m = CopiesLog::parse(b"1795644140s 1\n");
        assert_eq!(m.value().unwrap().get(), 1);
        assert_eq!(CopiesLog::parse(b"").value(), None);
    }

    #[test]
    fn newest_then_greatest() {
        let l = CopiesLog::parse(b"5s 3\n7s 2\n6s 9\n");
        assert_eq!(l.value().unwrap().get(), 2);
        let l = CopiesLog::parse(b"7s 3\n7s 2\n");
        assert_eq!(l.value().unwrap().get(), 3);
        let l = CopiesLog::parse(b"7s 0\n1s x\n");
        assert_eq!(l.value().unwrap().get(), 1, "0 reads as 1");
        assert_eq!(l.lines().count(), 1, "unparsable line skipped");
    }

    #[test]
    fn set_replaces_with_one_line() {
        let mut l = CopiesLog::parse(b"100s 2\n50s 3\n");
        assert!(!l.set(Copies::new(2), Timestamp::from_secs(10)));
        assert!(l.set(Copies::new(4), Timestamp::from_secs(10)));
        assert_eq!(l.format(), b"101s 4\n".to_vec());
    }

    fn arb_log() -> impl Strategy<Value = CopiesLog> {
        proptest::collection::vec((arb_timestamp(), 1i64..6), 0..5).prop_map(|v| {
            let mut l = CopiesLog::default();
            for (t, n) in v {
                l.lines.insert((t, Copies::new(n)));
            }
            l
        })
    }

    proptest! {
        #[test]
        fn laws(a in arb_log(), b in arb_log(), c in arb_log()) {
            prop_assert_eq!(&CopiesLog::parse(&a.format()), &a);
            let m = |x: &CopiesLog, y: &CopiesLog| { let mut r = x.clone(); r.merge(y); r };
            prop_assert_eq!(m(&a, &b), m(&b, &a));
            prop_assert_eq!(m(&m(&a, &b), &c), m(&a, &m(&b, &c)));
            prop_assert_eq!(&m(&a, &a), &a);
            let u = union_merge_bytes(&[&a.format(), &b.format()]);
            let merged = m(&a, &b);
            let parsed = CopiesLog::parse(&u);
            prop_assert_eq!(parsed.value(), merged.value());
            if let Some((t, _)) = merged.newest() {
                for x in [&a, &b] {
                    if let Some((o, _)) = x.newest() { prop_assert!(o <= t); }
                }
            }
        }
    }
}
