//! Numbers as git-annex reads them: Haskell's `reads` for `Int` and `Double`, and the data
//! size syntax of `largerthan=`/`smallerthan=`.
//!
//! git-annex parses numbers in preferred content with Haskell's `Read` instances, which
//! accept more than plain decimals and ignore trailing garbage in some places:
//!
//! * `readish` (used for `copies=`, `lackingcopies=`, balanced counts) takes the first
//!   parse of a prefix: `2abc` reads as 2, `0x10` as 16, `-1` as -1; `2.5` and `1e3` are
//!   not integers and fail. Values beyond the 64-bit range wrap, like `fromInteger`.
//! * a size is a `Double` read from a prefix (`0.5`, `1e3`, `0x10`, `NaN`, `Infinity`),
//!   followed by an optional unit made of the letters right after it (anything after the
//!   letters is ignored: `1.kb` is 1 byte), multiplied out and rounded half to even.
//!
//! Units (case-insensitive, full names and plurals too): storage units are powers of 1000
//! (`B`, `kB`, `MB` … `QB`), committee units powers of 1024 (`KiB` … `YiB`), bandwidth
//! units are bits (`kbit` = 125 bytes … `Ybit`). A unit abbreviation may drop its final
//! `b` (`k`, `Mi`).

/// A number lexeme: an integer (from decimal, hex or octal digits) or a decimal with a
/// fraction or exponent, or one of the two float identifiers.
#[derive(Debug, Clone, PartialEq)]
enum Lexeme {
    Integer { digits: String, radix: u32 },
    Decimal(String),
    NaN,
    Infinity,
}

/// Haskell's `isSpace`.
pub(crate) fn hs_is_space(c: char) -> bool {
    matches!(c as u32, 9..=13 | 32 | 0xa0 | 0x1680 | 0x2000..=0x200a | 0x202f | 0x205f | 0x3000)
}

fn skip_spaces(s: &str) -> &str {
    s.trim_start_matches(hs_is_space)
}

/// Lex one number (or `NaN`/`Infinity`) at the start of `s` (no leading spaces).
fn lex_number(s: &str) -> Option<(Lexeme, &str)> {
    let b = s.as_bytes();
    if b.first().is_some_and(|c| c.is_ascii_digit()) {
        // 0x / 0o forms take priority when at least one digit follows.
        if b[0] == b'0' && b.len() > 2 {
            let radix = match b[1] {
                b'x' | b'X' => Some(16),
                b'o' | b'O' => Some(8),
                _ => None,
            };
            if let Some(radix) = radix {
                let n = b[2..]
                    .iter()
                    .take_while(|c| (**c as char).is_digit(radix))
                    .count();
                if n > 0 {
                    return Some((
                        Lexeme::Integer {
                            digits: s[2..2 + n].to_string(),
                            radix,
                        },
                        &s[2 + n..],
                    ));
                }
            }
        }
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut end = int_len;
        let mut decimal = false;
        // Fraction: '.' followed by at least one digit.
        if b.get(end) == Some(&b'.') {
            let n = b[end + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if n > 0 {
                end += 1 + n;
                decimal = true;
            }
        }
        // Exponent: e/E, optional sign, at least one digit.
        if matches!(b.get(end), Some(b'e' | b'E')) {
            let mut p = end + 1;
            if matches!(b.get(p), Some(b'+' | b'-')) {
                p += 1;
            }
            let n = b[p..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n > 0 {
                end = p + n;
                decimal = true;
            }
        }
        let lexeme = if decimal {
            Lexeme::Decimal(s[..end].to_string())
        } else {
            Lexeme::Integer {
                digits: s[..int_len].to_string(),
                radix: 10,
            }
        };
        return Some((lexeme, &s[end..]));
    }
    // Identifiers: a letter or '_' then letters, digits, '_' and '\''.
    let mut chars = s.char_indices();
    let (_, c0) = chars.next()?;
    if c0.is_alphabetic() || c0 == '_' {
        let end = s
            .char_indices()
            .skip(1)
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '\''))
            .map(|(i, _)| i)
            .unwrap_or(s.len());
        return match &s[..end] {
            "NaN" => Some((Lexeme::NaN, &s[end..])),
            "Infinity" => Some((Lexeme::Infinity, &s[end..])),
            _ => None,
        };
    }
    None
}

/// `readNumber`: optional parentheses, an optional `-` symbol, then a number lexeme.
fn read_number(s: &str) -> Option<(bool, Lexeme, &str)> {
    let s = skip_spaces(s);
    if let Some(inner) = s.strip_prefix('(') {
        let (neg, lx, rest) = read_number(inner)?;
        let rest = skip_spaces(rest).strip_prefix(')')?;
        return Some((neg, lx, rest));
    }
    if let Some(after) = s.strip_prefix('-') {
        // The lexer reads a run of symbol characters as one symbol: "--1" is not "-".
        if after.starts_with(is_symbol_char) {
            return None;
        }
        let after = skip_spaces(after);
        let (lx, rest) = lex_number(after)?;
        return Some((true, lx, rest));
    }
    let (lx, rest) = lex_number(s)?;
    Some((false, lx, rest))
}

fn is_symbol_char(c: char) -> bool {
    "!@#$%&*+./<=>?\\^|:-~".contains(c)
}

fn integer_value_wrapping(digits: &str, radix: u32) -> i64 {
    let mut v: i64 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix).unwrap_or(0) as i64;
        v = v.wrapping_mul(radix as i64).wrapping_add(d);
    }
    v
}

fn integer_value_f64(digits: &str, radix: u32) -> f64 {
    if radix == 10 {
        return digits.parse::<f64>().unwrap_or(f64::INFINITY);
    }
    match u128::from_str_radix(digits, radix) {
        Ok(v) => v as f64,
        Err(_) => {
            let mut v = 0f64;
            for c in digits.chars() {
                v = v * radix as f64 + c.to_digit(radix).unwrap_or(0) as f64;
            }
            v
        }
    }
}

/// `readish :: Maybe Int`: the first parse of a prefix of `s`, wrapping like `fromInteger`.
pub fn readish_int(s: &str) -> Option<i64> {
    let (neg, lx, _) = read_number(s)?;
    let v = match lx {
        Lexeme::Integer { digits, radix } => integer_value_wrapping(&digits, radix),
        _ => return None,
    };
    Some(if neg { v.wrapping_neg() } else { v })
}

/// `reads :: ReadS Double`, first parse: the value and the unparsed rest.
pub fn reads_double(s: &str) -> Option<(f64, &str)> {
    let (neg, lx, rest) = read_number(s)?;
    let v = match lx {
        Lexeme::Integer { digits, radix } => integer_value_f64(&digits, radix),
        Lexeme::Decimal(text) => text.parse::<f64>().ok()?,
        Lexeme::NaN => f64::NAN,
        Lexeme::Infinity => f64::INFINITY,
    };
    Some((if neg { -v } else { v }, rest))
}

/// `readMaybe :: Maybe Double`: the whole string must be one number (spaces around allowed).
pub fn read_maybe_double(s: &str) -> Option<f64> {
    let (v, rest) = reads_double(s)?;
    if skip_spaces(rest).is_empty() {
        Some(v)
    } else {
        None
    }
}

/// Haskell's `round :: Double -> Integer` (half to even), saturated to the i128 range.
/// Infinities saturate; NaN rounds to a huge negative number in Haskell, so it saturates
/// to the minimum here.
pub fn hs_round(x: f64) -> i128 {
    if x.is_nan() {
        return i128::MIN;
    }
    let r = x.round_ties_even();
    if r >= i128::MAX as f64 {
        i128::MAX
    } else if r <= i128::MIN as f64 {
        i128::MIN
    } else {
        r as i128
    }
}

/// (abbreviation, name, bytes) in git-annex's search order: storage, committee, bandwidth.
const UNITS: &[(&str, &str, u128)] = &[
    ("QB", "quettabyte", 1000u128.pow(10)),
    ("RB", "ronnabyte", 1000u128.pow(9)),
    ("YB", "yottabyte", 1000u128.pow(8)),
    ("ZB", "zettabyte", 1000u128.pow(7)),
    ("EB", "exabyte", 1000u128.pow(6)),
    ("PB", "petabyte", 1000u128.pow(5)),
    ("TB", "terabyte", 1000u128.pow(4)),
    ("GB", "gigabyte", 1000u128.pow(3)),
    ("MB", "megabyte", 1000u128.pow(2)),
    ("kB", "kilobyte", 1000),
    ("B", "byte", 1),
    ("YiB", "yobibyte", 1u128 << 80),
    ("ZiB", "zebibyte", 1u128 << 70),
    ("EiB", "exbibyte", 1u128 << 60),
    ("PiB", "pebibyte", 1u128 << 50),
    ("TiB", "tebibyte", 1u128 << 40),
    ("GiB", "gibibyte", 1u128 << 30),
    ("MiB", "mebibyte", 1u128 << 20),
    ("KiB", "kibibyte", 1u128 << 10),
    ("B", "byte", 1),
    ("Ybit", "yottabit", 1000u128.pow(8) / 8),
    ("Zbit", "zettabit", 1000u128.pow(7) / 8),
    ("Ebit", "exabit", 1000u128.pow(6) / 8),
    ("Pbit", "petabit", 1000u128.pow(5) / 8),
    ("Tbit", "terabit", 1000u128.pow(4) / 8),
    ("Gbit", "gigabit", 1000u128.pow(3) / 8),
    ("Mbit", "megabit", 1000u128.pow(2) / 8),
    ("kbit", "kilobit", 1000 / 8),
];

fn hs_lower(s: &str) -> String {
    s.chars().map(simple_lower).collect()
}

/// A one-to-one lower-case mapping like Haskell's `toLower`.
pub(crate) fn simple_lower(c: char) -> char {
    let mut it = c.to_lowercase();
    match (it.next(), it.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// A one-to-one upper-case mapping like Haskell's `toUpper`.
pub(crate) fn simple_upper(c: char) -> char {
    let mut it = c.to_uppercase();
    match (it.next(), it.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

fn lookup_unit(name: &str) -> Option<u128> {
    if name.is_empty() {
        return Some(1);
    }
    let v = hs_lower(name);
    let vb = format!("{v}b");
    UNITS.iter().find_map(|(abbrev, long, bytes)| {
        let a = hs_lower(abbrev);
        let plural = format!("{long}s");
        (a == v || *long == v || plural == v || a == vb).then_some(*bytes)
    })
}

/// `readSize dataUnits`: parse a size like `100`, `1kb`, `0.5GiB`, `10 megabytes`.
pub fn read_size(s: &str) -> Option<i128> {
    let (number, rest) = reads_double(s)?;
    let rest = skip_spaces(rest);
    let end = rest
        .char_indices()
        .find(|(_, c)| !c.is_alphabetic())
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    let multiplier = lookup_unit(&rest[..end])?;
    Some(hs_round(number * multiplier as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readish_int_like_haskell() {
        assert_eq!(readish_int("2"), Some(2));
        assert_eq!(readish_int("2abc"), Some(2));
        assert_eq!(readish_int("0x10"), Some(16));
        assert_eq!(readish_int("0o17"), Some(15));
        assert_eq!(readish_int("0xg"), Some(0));
        assert_eq!(readish_int("-3"), Some(-3));
        assert_eq!(readish_int("2."), Some(2));
        assert_eq!(readish_int("2.5"), None);
        assert_eq!(readish_int("1e3"), None);
        assert_eq!(readish_int(""), None);
        assert_eq!(readish_int("x"), None);
        assert_eq!(readish_int("+1"), None);
        assert_eq!(readish_int("--1"), None);
        assert_eq!(readish_int("(4)"), Some(4));
        // fromInteger wraps at 64 bits.
        assert_eq!(readish_int("18446744073709551617"), Some(1));
    }

    #[test]
    fn sizes_like_git_annex() {
        // Each of these was checked with `git annex matchexpression --size`.
        assert_eq!(read_size("1kb"), Some(1000));
        assert_eq!(read_size("1KiB"), Some(1024));
        assert_eq!(read_size("0.5"), Some(0));
        assert_eq!(read_size("2.5"), Some(2));
        assert_eq!(read_size("3.5"), Some(4));
        assert_eq!(read_size("1.kb"), Some(1));
        assert_eq!(read_size("0x10"), Some(16));
        assert_eq!(read_size("-5"), Some(-5));
        assert_eq!(read_size("1e400"), Some(i128::MAX));
        assert_eq!(read_size("+5"), None);
        assert_eq!(read_size("2k"), Some(2000));
        assert_eq!(read_size("1zz"), None);
        assert_eq!(read_size(""), None);
        assert_eq!(read_size("2mb"), Some(2_000_000));
        assert_eq!(read_size("0.5gb"), Some(500_000_000));
        assert_eq!(read_size("1tb"), Some(1_000_000_000_000));
        assert_eq!(read_size("10megabytes"), Some(10_000_000));
        assert_eq!(read_size("1megabyte"), Some(1_000_000));
        assert_eq!(read_size("3Mi"), Some(3 << 20));
        assert_eq!(read_size("1mbit"), Some(125_000));
        assert_eq!(read_size("8kilobits"), Some(1000));
        assert_eq!(read_size("1B"), Some(1));
        assert_eq!(read_size("7bytes"), Some(7));
        assert_eq!(read_size("1kb!!"), Some(1000));
        assert_eq!(read_size("1e3"), Some(1000));
        assert_eq!(read_size("1.5e3KiB"), Some(1_536_000));
        assert_eq!(read_size("Infinity"), Some(i128::MAX));
        assert_eq!(read_size("NaN"), Some(i128::MIN));
    }

    #[test]
    fn read_maybe_double_whole_string() {
        assert_eq!(read_maybe_double(" 5 "), Some(5.0));
        assert_eq!(read_maybe_double("5x"), None);
        assert_eq!(read_maybe_double("-2.5e1"), Some(-25.0));
        assert_eq!(read_maybe_double("(1)"), Some(1.0));
        assert_eq!(read_maybe_double(""), None);
    }
}
