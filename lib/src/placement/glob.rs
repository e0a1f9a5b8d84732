//! Globs as git-annex matches them (`include=`, `exclude=`, `url=`, `metadata=F=…`).
//!
//! git-annex turns a glob into a POSIX-style regular expression and runs it with
//! regex-tdfa's default options. That has consequences a plain fnmatch would not show, and
//! we reproduce them by building the same regular expression text and interpreting it the
//! way regex-tdfa does:
//!
//! * `*` becomes `.*` and `?` becomes `.`; both match `/` (but never a newline).
//! * For file names, `/` becomes `[/]+`: one slash in the glob matches a run of slashes.
//! * `[...]` and `[!...]` (and `[^...]`) are copied into the regular expression up to the
//!   first `]`, so `[[:alpha:]]` is the bracket `[[:alpha:]\]` (an alpha character or a
//!   backslash), and a glob whose bracket never closes does not compile.
//! * Every other non-alphanumeric character is escaped with a backslash; regex-tdfa treats
//!   the escapes `` \` ``, `\'`, `\<` and `\>` as anchors (start of text, end of text, start
//!   of word, end of word), so a glob holding `'`, `` ` ``, `<` or `>` matches differently
//!   from the literal character (`a<b` never matches the file `a<b`).
//! * Matching is newline-sensitive (`^`/`$` also match at line breaks) and unanchored
//!   apart from those anchors: the glob matches when it matches some whole line.
//! * Case-insensitive matching (metadata) adds both the upper- and lower-case form of every
//!   alphabetic character of the pattern.
//!
//! Text is matched as code points; bytes that are not UTF-8 become U+DC80..U+DCFF, like
//! the file system encoding of git-annex.

use super::number::{simple_lower, simple_upper};

/// Why a glob does not compile (git-annex aborts with "failed to compile regex" then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobError {
    /// The regular expression git-annex would have built.
    pub regex: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anchor {
    LineStart,
    LineEnd,
    TextStart,
    TextEnd,
    WordStart,
    WordEnd,
    WordEdge,
    NotWordEdge,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CharSet {
    negated: bool,
    /// Inclusive code point ranges (single characters are ranges of one).
    ranges: Vec<(u32, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Char(u32),
    Dot,
    Set(CharSet),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Anchor(Anchor),
    /// An atom; `repeat` means zero or more times.
    Atom {
        atom: Atom,
        repeat: bool,
    },
}

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pieces: Vec<Piece>,
    case_insensitive: bool,
}

/// How a glob is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobMode {
    /// File names: case-sensitive, `/` matches runs of slashes.
    FilePath,
    /// URLs: case-sensitive, `/` literal.
    Plain,
    /// Metadata values: case-insensitive, `/` literal.
    CaseInsensitive,
}

/// The regular expression text git-annex builds for a glob (without the `^`/`$`).
pub fn glob_to_regex(glob: &str, filepath: bool) -> String {
    let mut out = String::with_capacity(glob.len() * 2 + 2);
    let chars: Vec<char> = glob.chars().collect();
    let mut i = 0;
    let mut in_bracket = false;
    while i < chars.len() {
        let c = chars[i];
        if in_bracket {
            match c {
                ']' => {
                    out.push(']');
                    in_bracket = false;
                }
                '\\' => out.push_str("\\\\"),
                c => out.push(c),
            }
            i += 1;
            continue;
        }
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '[' if chars.get(i + 1) == Some(&'!') => {
                out.push_str("[^");
                in_bracket = true;
                i += 1;
            }
            '[' => {
                out.push('[');
                in_bracket = true;
            }
            '/' if filepath => out.push_str("[/]+"),
            '\\' if filepath => out.push_str("[\\]+"),
            c if c.is_ascii_digit() || c.is_alphabetic() => out.push(c),
            c => {
                out.push('\\');
                out.push(c);
            }
        }
        i += 1;
    }
    out
}

impl Glob {
    /// Compile a glob the way git-annex does for the given use.
    pub fn new(glob: &str, mode: GlobMode) -> Result<Glob, GlobError> {
        let regex = format!(
            "^{}$",
            glob_to_regex(glob, matches!(mode, GlobMode::FilePath))
        );
        let pieces = parse_regex(&regex).map_err(|reason| GlobError {
            regex: regex.clone(),
            reason,
        })?;
        Ok(Glob {
            pieces,
            case_insensitive: matches!(mode, GlobMode::CaseInsensitive),
        })
    }

    /// Match text.
    pub fn matches_str(&self, s: &str) -> bool {
        let cps: Vec<u32> = s.chars().map(|c| c as u32).collect();
        self.matches(&cps)
    }

    /// Match bytes (a file name or metadata value), decoding UTF-8 with surrogate escapes.
    pub fn matches_bytes(&self, b: &[u8]) -> bool {
        self.matches(&decode_code_points(b))
    }

    /// Match a code point sequence (see [`decode_code_points`]).
    pub fn matches(&self, s: &[u32]) -> bool {
        let n = self.pieces.len();
        let mut cur = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        for pos in 0..=s.len() {
            // Unanchored search: a match may start anywhere.
            cur[0] = true;
            self.closure(&mut cur, s, pos);
            if cur[n] {
                return true;
            }
            if pos == s.len() {
                break;
            }
            let c = s[pos];
            next.iter_mut().for_each(|x| *x = false);
            for i in 0..n {
                if !cur[i] {
                    continue;
                }
                if let Piece::Atom { atom, repeat } = &self.pieces[i] {
                    if self.atom_matches(atom, c) {
                        if *repeat {
                            next[i] = true;
                        } else {
                            next[i + 1] = true;
                        }
                    }
                }
            }
            std::mem::swap(&mut cur, &mut next);
        }
        false
    }

    fn closure(&self, set: &mut [bool], s: &[u32], pos: usize) {
        // Pieces only ever lead forward, so one pass in order reaches the fixpoint.
        for i in 0..self.pieces.len() {
            if !set[i] {
                continue;
            }
            let pass = match &self.pieces[i] {
                Piece::Anchor(a) => anchor_holds(*a, s, pos),
                Piece::Atom { repeat, .. } => *repeat,
            };
            if pass {
                set[i + 1] = true;
            }
        }
    }

    fn atom_matches(&self, atom: &Atom, c: u32) -> bool {
        match atom {
            Atom::Dot => c != '\n' as u32,
            Atom::Char(p) => {
                if self.case_insensitive {
                    fold_matches(*p, c)
                } else {
                    *p == c
                }
            }
            Atom::Set(set) => {
                let inside = if self.case_insensitive {
                    set_contains_folded(set, c)
                } else {
                    set.ranges.iter().any(|(a, b)| (*a..=*b).contains(&c))
                };
                if set.negated {
                    // A negated bracket never matches a newline in newline-sensitive mode.
                    !inside && c != '\n' as u32
                } else {
                    inside
                }
            }
        }
    }
}

/// Whether pattern character `p`, under case-insensitive matching, accepts `c`:
/// an alphabetic `p` stands for its upper- and lower-case forms, anything else for itself.
fn fold_matches(p: u32, c: u32) -> bool {
    match char::from_u32(p) {
        Some(pc) if pc.is_alphabetic() => {
            simple_upper(pc) as u32 == c || simple_lower(pc) as u32 == c
        }
        _ => p == c,
    }
}

fn set_contains_folded(set: &CharSet, c: u32) -> bool {
    set.ranges.iter().any(|&(a, b)| {
        if b - a <= 0x3000 {
            (a..=b).any(|p| fold_matches(p, c))
        } else {
            // Very wide ranges: check the code points that can fold onto `c`.
            let mut cands = vec![c];
            if let Some(ch) = char::from_u32(c) {
                cands.push(simple_lower(ch) as u32);
                cands.push(simple_upper(ch) as u32);
            }
            cands
                .into_iter()
                .any(|p| (a..=b).contains(&p) && fold_matches(p, c))
        }
    })
}

fn is_word(c: u32) -> bool {
    c < 128 && ((c as u8).is_ascii_alphanumeric() || c == '_' as u32)
}

fn anchor_holds(a: Anchor, s: &[u32], pos: usize) -> bool {
    let nl = '\n' as u32;
    // Before the first character regex-tdfa pretends a newline precedes it.
    let prev = if pos == 0 { nl } else { s[pos - 1] };
    let next = s.get(pos).copied();
    match a {
        Anchor::LineStart => prev == nl,
        Anchor::LineEnd => next.is_none_or(|c| c == nl),
        Anchor::TextStart => pos == 0,
        Anchor::TextEnd => next.is_none(),
        Anchor::WordStart => !is_word(prev) && next.is_some_and(is_word),
        Anchor::WordEnd => is_word(prev) && next.is_none_or(|c| !is_word(c)),
        Anchor::WordEdge => edge(prev, next),
        Anchor::NotWordEdge => !edge(prev, next),
    }
}

fn edge(prev: u32, next: Option<u32>) -> bool {
    if is_word(prev) {
        next.is_none_or(|c| !is_word(c))
    } else {
        next.is_some_and(is_word)
    }
}

/// Decode bytes to code points: UTF-8, with each byte of an invalid sequence mapped to
/// U+DC00 + byte (the surrogate escape GHC uses for file names).
pub fn decode_code_points(b: &[u8]) -> Vec<u32> {
    let mut out = Vec::with_capacity(b.len());
    let mut rest = b;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.extend(s.chars().map(|c| c as u32));
                return out;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.extend(
                    std::str::from_utf8(good)
                        .expect("valid prefix")
                        .chars()
                        .map(|c| c as u32),
                );
                let n = e.error_len().unwrap_or(bad.len()).max(1);
                for &byte in &bad[..n] {
                    out.push(0xDC00 + byte as u32);
                }
                rest = &bad[n..];
            }
        }
    }
}

/// The characters of a POSIX class as regex-tdfa knows them (unknown names are empty).
fn class_ranges(name: &str) -> &'static [(u32, u32)] {
    // Code points: '0'-'9' 48-57, 'A'-'Z' 65-90, 'a'-'z' 97-122, '_' 95.
    match name {
        "alnum" => &[(48, 57), (65, 90), (97, 122)],
        "digit" => &[(48, 57)],
        "punct" => &[(33, 47), (58, 64), (91, 96), (123, 126)],
        "alpha" => &[(65, 90), (97, 122)],
        "graph" => &[(33, 126)],
        "space" => &[(9, 13), (32, 32)],
        "blank" => &[(9, 9), (32, 32)],
        "lower" => &[(97, 122)],
        "upper" => &[(65, 90)],
        "cntrl" => &[(0, 31), (127, 127)],
        "print" => &[(32, 126)],
        "xdigit" => &[(48, 57), (65, 70), (97, 102)],
        "word" => &[(48, 57), (65, 90), (95, 95), (97, 122)],
        _ => &[],
    }
}

/// Parse the regular expression subset the glob translation can produce, with
/// regex-tdfa's rules (so the bracket quirks come out the same).
fn parse_regex(re: &str) -> Result<Vec<Piece>, &'static str> {
    let cs: Vec<char> = re.chars().collect();
    let mut i = 0;
    let mut pieces = Vec::new();
    if cs.is_empty() {
        return Err("empty regular expression");
    }
    while i < cs.len() {
        let c = cs[i];
        let piece = match c {
            '^' => {
                i += 1;
                Piece::Anchor(Anchor::LineStart)
            }
            '$' => {
                i += 1;
                Piece::Anchor(Anchor::LineEnd)
            }
            '.' => {
                i += 1;
                atom(Atom::Dot)
            }
            '[' => {
                let (set, next) = parse_bracket(&cs, i + 1)?;
                i = next;
                atom(Atom::Set(set))
            }
            '\\' => {
                let e = *cs.get(i + 1).ok_or("trailing backslash")?;
                i += 2;
                match e {
                    '`' => Piece::Anchor(Anchor::TextStart),
                    '\'' => Piece::Anchor(Anchor::TextEnd),
                    '<' => Piece::Anchor(Anchor::WordStart),
                    '>' => Piece::Anchor(Anchor::WordEnd),
                    'b' => Piece::Anchor(Anchor::WordEdge),
                    'B' => Piece::Anchor(Anchor::NotWordEdge),
                    e => atom(Atom::Char(e as u32)),
                }
            }
            '(' | ')' | '|' | '*' | '+' | '?' => return Err("unexpected operator"),
            '{' if cs.get(i + 1).is_some_and(|d| d.is_ascii_digit()) => {
                return Err("unexpected bound")
            }
            c => {
                i += 1;
                atom(Atom::Char(c as u32))
            }
        };
        // Postfix operators.
        match cs.get(i) {
            Some('*') => {
                i += 1;
                pieces.push(repeat(piece)?);
            }
            Some('+') => {
                i += 1;
                pieces.push(piece.clone());
                pieces.push(repeat(piece)?);
            }
            Some('?') => return Err("unsupported operator ?"),
            _ => pieces.push(piece),
        }
    }
    Ok(pieces)
}

fn atom(a: Atom) -> Piece {
    Piece::Atom {
        atom: a,
        repeat: false,
    }
}

fn repeat(p: Piece) -> Result<Piece, &'static str> {
    match p {
        Piece::Atom { atom, .. } => Ok(Piece::Atom { atom, repeat: true }),
        // A repeated anchor is the anchor tested zero or more times: no constraint.
        Piece::Anchor(_) => Err("repeated anchor"),
    }
}

/// Parse a bracket expression after its `[`; returns the set and the index after `]`.
fn parse_bracket(cs: &[char], mut i: usize) -> Result<(CharSet, usize), &'static str> {
    let mut negated = false;
    if cs.get(i) == Some(&'^') {
        negated = true;
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut count = 0;
    if cs.get(i) == Some(&']') {
        ranges.push((']' as u32, ']' as u32));
        count += 1;
        i += 1;
    }
    loop {
        match cs.get(i) {
            None => return Err("unterminated bracket"),
            Some(']') => {
                if count == 0 {
                    return Err("empty bracket");
                }
                return Ok((CharSet { negated, ranges }, i + 1));
            }
            Some(_) => {}
        }
        // [:class:], [=equiv=], [.coll.]
        if cs[i] == '[' {
            if let Some(delim) = cs
                .get(i + 1)
                .copied()
                .filter(|d| matches!(d, ':' | '=' | '.'))
            {
                let start = i + 2;
                let mut j = start;
                while j < cs.len() && cs[j] != delim && cs[j] != ']' {
                    j += 1;
                }
                if j > start && cs.get(j) == Some(&delim) && cs.get(j + 1) == Some(&']') {
                    let name: String = cs[start..j].iter().collect();
                    match delim {
                        ':' => ranges.extend_from_slice(class_ranges(&name)),
                        '=' => ranges.extend(name.chars().map(|c| (c as u32, c as u32))),
                        _ => {} // collating elements are ignored by regex-tdfa
                    }
                    count += 1;
                    i = j + 2;
                    continue;
                }
            }
        }
        // range a-b
        if cs.get(i + 1) == Some(&'-') && cs.get(i + 2).is_some_and(|e| *e != ']') {
            let (a, b) = (cs[i] as u32, cs[i + 2] as u32);
            if a > b {
                return Err("reversed range");
            }
            ranges.push((a, b));
            count += 1;
            i += 3;
            continue;
        }
        ranges.push((cs[i] as u32, cs[i] as u32));
        count += 1;
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fm(glob: &str, file: &str) -> bool {
        Glob::new(glob, GlobMode::FilePath)
            .unwrap()
            .matches_str(file)
    }

    #[test]
    fn star_matches_slash_and_is_case_sensitive() {
        assert!(fm("*.mp3", "dir/x.mp3"));
        assert!(fm("*", "a/b/c"));
        assert!(!fm("*.txt", "A.TXT"));
        assert!(fm("*.TXT", "A.TXT"));
        assert!(fm("?", "/"));
        assert!(!fm("?", "ab"));
        assert!(fm("", ""));
        assert!(!fm("", "a"));
    }

    #[test]
    fn slashes_collapse_in_file_globs() {
        assert!(fm("a/b", "a//b"));
        assert!(!fm("a//b", "a/b"));
        assert!(fm("*/archive/*", "x/archive/y"));
        assert!(!fm("*/archive/*", "archive/y"));
        assert!(fm("archive/*", "archive/y"));
        let plain = Glob::new("a/b", GlobMode::Plain).unwrap();
        assert!(!plain.matches_str("a//b"));
    }

    #[test]
    fn brackets_and_classes_as_regex_tdfa() {
        // Verified with git annex matchexpression.
        assert!(fm("a[[:alpha:]]b", "a\\b"));
        assert!(fm("[[:alpha:]]", "\\"));
        assert!(fm("[[:alpha:]]", "q"));
        assert!(!fm("[[:alpha:]]", "1"));
        assert!(fm("[[:graph:]]", "!"));
        assert!(fm("[[:graph:]]", ")"));
        assert!(fm("[]a]", "\\"));
        assert!(!fm("[]a]", "a]"));
        assert!(fm("[^a]", "x"));
        assert!(!fm("[!a]", "a"));
        assert!(fm("[!a]", "b"));
        assert!(fm("[a-c]x", "bx"));
        assert!(fm("[[:space:]]", " "));
        assert!(Glob::new("[abc", GlobMode::FilePath).is_err());
        assert!(Glob::new("[z-a]", GlobMode::FilePath).is_err());
        assert_eq!(
            Glob::new("[abc", GlobMode::FilePath).unwrap_err().regex,
            "^[abc$"
        );
    }

    #[test]
    fn escaped_anchors() {
        // `<` and `'` become regex-tdfa anchors (verified: `a<b` does not match "a<b").
        assert!(!fm("a<b", "a<b"));
        assert!(!fm("x<ab", "x<ab"));
        assert!(!fm("a'", "a'"));
        assert!(fm("a'", "a"));
        assert!(!fm("x<", "x"));
        assert!(fm("x>", "x"));
        assert!(!fm("x>", "xy"));
        assert!(fm("*<ab", "x ab"));
    }

    #[test]
    fn newline_sensitive() {
        assert!(fm("abc", "x\nabc"));
        assert!(fm("abc", "abc\nx"));
        assert!(!fm("a*c", "a\nc"));
    }

    #[test]
    fn case_insensitive_metadata() {
        let g = Glob::new("Foo*", GlobMode::CaseInsensitive).unwrap();
        assert!(g.matches_str("fOObar"));
        let g = Glob::new("[a-c]", GlobMode::CaseInsensitive).unwrap();
        assert!(g.matches_str("B"));
        let g = Glob::new("[!a]", GlobMode::CaseInsensitive).unwrap();
        assert!(!g.matches_str("A"));
    }

    #[test]
    fn invalid_utf8_is_escaped() {
        assert_eq!(decode_code_points(b"a\xffb"), vec![97, 0xDCFF, 98]);
        assert!(fm("a?b", "a\u{e9}b"));
        let g = Glob::new("a?b", GlobMode::FilePath).unwrap();
        assert!(g.matches_bytes(b"a\xffb"));
    }
}
