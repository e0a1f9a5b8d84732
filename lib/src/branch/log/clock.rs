//! Timestamps of log lines ("vector clocks").
//!
//! Text form: `['-'|'+'] digits ['.' digits] ['s']`, POSIX seconds, e.g. `1795644140s` or the
//! older `1317929189.157237s`. Values keep picosecond precision, as git-annex's own time
//! type does (digits past the twelfth are dropped). Lines of the old UUID-based format may
//! carry no timestamp at all: that is [`Timestamp::Unknown`], older than every real time.
//!
//! Writers pick the timestamp of a new line with [`Timestamp::next`]: the current time,
//! unless an earlier line for the same entry is as new or newer, in which case one second
//! past that line, so that the new line wins everywhere whatever the clocks say.

use std::fmt;

/// Picoseconds per second.
const PICOS: i128 = 1_000_000_000_000;

/// When a log line was written. `Unknown` sorts before every known time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Timestamp {
    /// No timestamp (very old logs); older than any real time.
    #[default]
    Unknown,
    /// POSIX time in picoseconds.
    At(i128),
}

impl Timestamp {
    /// A whole number of POSIX seconds.
    pub fn from_secs(secs: i64) -> Timestamp {
        Timestamp::At(secs as i128 * PICOS)
    }

    /// Whole seconds (rounded towards negative infinity), if known.
    pub fn secs(self) -> Option<i64> {
        match self {
            Timestamp::Unknown => None,
            Timestamp::At(p) => i64::try_from(p.div_euclid(PICOS)).ok(),
        }
    }

    /// Parse the whole of `text` as a timestamp.
    pub fn parse(text: &[u8]) -> Option<Timestamp> {
        match Timestamp::parse_prefix(text) {
            Some((t, used)) if used == text.len() => Some(t),
            _ => None,
        }
    }

    /// Parse a timestamp at the start of `text`; returns it and the bytes it used. As in
    /// git-annex, a `.` must be followed by digits to count as a fraction (else the
    /// timestamp ends before the `.`), and a leading `-` applies only to the integer part
    /// (so `-0.5` reads as 0.5, a quirk kept for compatibility).
    pub fn parse_prefix(text: &[u8]) -> Option<(Timestamp, usize)> {
        let mut i = 0;
        let negative = match text.first() {
            Some(b'-') => {
                i = 1;
                true
            }
            Some(b'+') => {
                i = 1;
                false
            }
            _ => false,
        };
        let int_start = i;
        while i < text.len() && text[i].is_ascii_digit() {
            i += 1;
        }
        if i == int_start {
            return None;
        }
        let int = digits_value(&text[int_start..i])?;
        let n = if negative { -int } else { int };
        let mut frac: i128 = 0;
        if text.get(i) == Some(&b'.') {
            let fstart = i + 1;
            let mut j = fstart;
            while j < text.len() && text[j].is_ascii_digit() {
                j += 1;
            }
            if j > fstart {
                // floor(fraction * 10^12): the first twelve digits, zero padded.
                let digits = &text[fstart..j];
                for k in 0..12 {
                    frac = frac * 10 + digits.get(k).map_or(0, |d| (d - b'0') as i128);
                }
                i = j;
            }
        }
        if text.get(i) == Some(&b's') {
            i += 1;
        }
        let whole = n.checked_mul(PICOS)?;
        let total = if n < 0 {
            whole.checked_sub(frac)?
        } else {
            whole.checked_add(frac)?
        };
        Some((Timestamp::At(total), i))
    }

    /// Append the text form: `Ns`, `N.fffs` (trailing zeros dropped) or `0` for unknown.
    pub fn format_into(self, out: &mut Vec<u8>) {
        match self {
            Timestamp::Unknown => out.push(b'0'),
            Timestamp::At(p) => {
                if p < 0 {
                    out.push(b'-');
                }
                let a = p.unsigned_abs();
                let whole = a / PICOS as u128;
                let frac = a % PICOS as u128;
                out.extend_from_slice(whole.to_string().as_bytes());
                if frac != 0 {
                    let f = format!("{frac:012}");
                    out.push(b'.');
                    out.extend_from_slice(f.trim_end_matches('0').as_bytes());
                }
                out.push(b's');
            }
        }
    }

    /// The text form as a string.
    pub fn to_text(self) -> String {
        let mut v = Vec::new();
        self.format_into(&mut v);
        String::from_utf8(v).expect("ascii")
    }

    /// The timestamp for a new line: `candidate`, unless one of `previous` (the earlier
    /// lines' timestamps for the same entry) is at least as new; then one second past the
    /// newest of them.
    pub fn next(candidate: Timestamp, previous: impl IntoIterator<Item = Timestamp>) -> Timestamp {
        match previous.into_iter().max() {
            Some(Timestamp::At(p)) if Timestamp::At(p) >= candidate => Timestamp::At(p + PICOS),
            _ => candidate,
        }
    }

    /// The candidate time a writer uses: `GIT_ANNEX_VECTOR_CLOCK` when it holds a valid
    /// timestamp (git-annex's reproducible-clock setting), else `now_secs`. The caller reads
    /// the environment and the clock; this only decides.
    pub fn candidate(env_vector_clock: Option<&[u8]>, now_secs: i64) -> Timestamp {
        env_vector_clock
            .and_then(Timestamp::parse)
            .unwrap_or_else(|| Timestamp::from_secs(now_secs))
    }
}

fn digits_value(d: &[u8]) -> Option<i128> {
    let mut v: i128 = 0;
    for &b in d {
        v = v.checked_mul(10)?.checked_add((b - b'0') as i128)?;
    }
    Some(v)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}
impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Timestamp::Unknown => f.write_str("Timestamp(unknown)"),
            t => write!(f, "Timestamp({t})"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Option<Timestamp> {
        Timestamp::parse(s.as_bytes())
    }

    #[test]
    fn grammar() {
        assert_eq!(p("1795644140s"), Some(Timestamp::from_secs(1795644140)));
        assert_eq!(p("1795644140"), Some(Timestamp::from_secs(1795644140)));
        assert_eq!(p("1.5s"), Some(Timestamp::At(1_500_000_000_000)));
        assert_eq!(p("1.5"), Some(Timestamp::At(1_500_000_000_000)));
        assert_eq!(p("-2s"), Some(Timestamp::from_secs(-2)));
        assert_eq!(p("-1.5s"), Some(Timestamp::At(-1_500_000_000_000)));
        // The sign applies to the integer part only, as in git-annex.
        assert_eq!(p("-0.5s"), Some(Timestamp::At(500_000_000_000)));
        assert_eq!(p("+3s"), Some(Timestamp::from_secs(3)));
        assert_eq!(
            p("1.1234567890129s"),
            Some(Timestamp::At(PICOS + 123_456_789_012))
        );
        assert_eq!(p("0"), Some(Timestamp::At(0)));
        for bad in ["", "s", "x1", "1ss", "1 s", "1.s", "-", "1e5", "1.5x"] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
        // "1." stops before the dot.
        assert_eq!(
            Timestamp::parse_prefix(b"1. x"),
            Some((Timestamp::from_secs(1), 1))
        );
    }

    #[test]
    fn format_matches_git_annex() {
        assert_eq!(Timestamp::from_secs(1795644140).to_text(), "1795644140s");
        assert_eq!(
            p("1317929189.157237s").unwrap().to_text(),
            "1317929189.157237s"
        );
        assert_eq!(p("1.50s").unwrap().to_text(), "1.5s");
        assert_eq!(p("-1.5s").unwrap().to_text(), "-1.5s");
        assert_eq!(Timestamp::Unknown.to_text(), "0");
    }

    #[test]
    fn unknown_is_oldest() {
        assert!(Timestamp::Unknown < Timestamp::from_secs(-1_000_000));
        assert!(Timestamp::Unknown < Timestamp::At(0));
    }

    #[test]
    fn next_timestamp_rule() {
        let now = Timestamp::from_secs(100);
        assert_eq!(Timestamp::next(now, []), now);
        assert_eq!(Timestamp::next(now, [Timestamp::from_secs(50)]), now);
        assert_eq!(
            Timestamp::next(now, [Timestamp::from_secs(100)]),
            Timestamp::from_secs(101)
        );
        assert_eq!(
            Timestamp::next(
                now,
                [Timestamp::from_secs(40), Timestamp::At(150 * PICOS + 7)]
            ),
            Timestamp::At(151 * PICOS + 7)
        );
        assert_eq!(Timestamp::next(now, [Timestamp::Unknown]), now);
    }

    #[test]
    fn candidate_from_env() {
        assert_eq!(
            Timestamp::candidate(Some(b"12345"), 99),
            Timestamp::from_secs(12345)
        );
        assert_eq!(
            Timestamp::candidate(Some(b"junk"), 99),
            Timestamp::from_secs(99)
        );
        assert_eq!(Timestamp::candidate(None, 99), Timestamp::from_secs(99));
    }

    pub(crate) fn arb_timestamp() -> impl Strategy<Value = Timestamp> {
        prop_oneof![
            (0i64..4_000_000_000).prop_map(Timestamp::from_secs),
            (0i128..4_000_000_000_000_000_000_000).prop_map(Timestamp::At),
            (-4_000_000_000i128..-1).prop_map(|s| Timestamp::At(s * PICOS)),
        ]
    }

    proptest! {
        #[test]
        fn parse_format_identity(t in arb_timestamp()) {
            prop_assert_eq!(Timestamp::parse(t.to_text().as_bytes()), Some(t));
        }

        #[test]
        fn next_always_wins(c in arb_timestamp(), prev in proptest::collection::vec(arb_timestamp(), 0..5)) {
            let n = Timestamp::next(c, prev.iter().copied());
            prop_assert!(n >= c);
            for q in prev { prop_assert!(n > q); }
        }
    }
}
