//! The preferred content expression language: tokens, terms, the parse tree and its
//! printer.
//!
//! Tokens are separated by whitespace; `(` and `)` are always tokens of their own. `and`,
//! `or`, `not`, `(`, `)` are syntax, anything else is a term `name` or `name=value` (split
//! at the first `=`). The tree is built exactly as git-annex builds it:
//!
//! * parentheses are grouped first; a `)` with no `(` is ignored, a missing `)` is
//!   assumed at the end;
//! * at the top level only, two terms (or groups) in a row get an `and` between them;
//! * then the tokens fold strictly left to right from "match anything": `x and t`,
//!   `x or t`, `x not t` (= `x and not t`) take one following term or group `t`, and a
//!   bare term is and-ed onto what came before. There is no precedence: `a or b and c`
//!   is `(a or b) and c`. Inside a group a following group continues the fold
//!   (`(a (b or c))` is `((a and b) or c)`), which is git-annex's behaviour too.
//! * finally "anything and x" collapses to x (one pass, as git-annex does).
//!
//! Parse errors keep the expression and the byte span of every failing term, and print
//! like git-annex (`Parse failure: near "foo=bar"`).

use super::facts::TrustLevel;
use super::glob::{Glob, GlobMode};
use super::number::{hs_is_space, read_size, readish_int};
use std::fmt;
use std::ops::Range;

/// At most this many tokens in one expression.
pub const MAX_TOKENS: usize = 2048;

/// At most this deep: parentheses open at once, plus `and`/`or`/`not` in a row. Long flat
/// chains (`a or b or c …`) are not limited by this; true nesting is, because parsing and
/// evaluation recurse over it.
pub const MAX_NESTING: usize = 100;

/// A parsed matcher: git-annex's `Matcher`. `Any` matches everything; an expression with
/// no terms is `Any`, which callers treat as "not configured".
#[derive(Debug, Clone, PartialEq)]
pub enum Node<T> {
    Any,
    And(Box<Node<T>>, Box<Node<T>>),
    Or(Box<Node<T>>, Box<Node<T>>),
    Not(Box<Node<T>>),
    Op(T),
}

impl<T> Node<T> {
    /// No terms at all ("not configured" when it is a whole expression).
    pub fn is_empty(&self) -> bool {
        matches!(self, Node::Any)
    }

    /// Every operation, left to right.
    pub fn ops(&self) -> Vec<&T> {
        let mut out = Vec::new();
        self.visit(false, &mut |t, _| out.push(t));
        out
    }

    /// Visit the operations left to right with whether each is under an odd number of
    /// `not`s. Left spines (`a or b or c …`) are walked without recursion.
    fn visit<'a>(&'a self, neg: bool, f: &mut dyn FnMut(&'a T, bool)) {
        let (leaf, levels) = self.spine();
        match leaf {
            Node::Any => {}
            Node::Not(a) => a.visit(!neg, f),
            Node::Op(t) => f(t, neg),
            Node::And(..) | Node::Or(..) => unreachable!("a spine ends in a non-binary node"),
        }
        for (_, right) in levels.iter().rev() {
            right.visit(neg, f);
        }
    }

    /// The left spine of a tree: the leftmost node that is not an `and`/`or`, and the
    /// `and`/`or` levels above it, outermost first.
    pub(crate) fn spine(&self) -> (&Node<T>, Vec<(Bin, &Node<T>)>) {
        let mut levels = Vec::new();
        let mut n = self;
        loop {
            match n {
                Node::And(a, b) => {
                    levels.push((Bin::And, &**b));
                    n = a;
                }
                Node::Or(a, b) => {
                    levels.push((Bin::Or, &**b));
                    n = a;
                }
                leaf => return (leaf, levels),
            }
        }
    }

    /// Take a tree apart along its left spine (see [`Node::spine`]).
    pub(crate) fn into_spine(self) -> (Node<T>, Vec<(Bin, Node<T>)>) {
        let mut levels = Vec::new();
        let mut n = self;
        loop {
            match n {
                Node::And(a, b) => {
                    levels.push((Bin::And, *b));
                    n = *a;
                }
                Node::Or(a, b) => {
                    levels.push((Bin::Or, *b));
                    n = *a;
                }
                leaf => return (leaf, levels),
            }
        }
    }

    /// Operations under an odd number of `not`s (git-annex's `findNegated`), left to
    /// right.
    pub fn negated_ops(&self) -> Vec<&T> {
        let mut out = Vec::new();
        self.visit(false, &mut |t, neg| {
            if neg {
                out.push(t)
            }
        });
        out
    }

    /// The same tree with every operation mapped (possibly failing).
    pub fn try_map<U, E>(self, f: &mut dyn FnMut(T) -> Result<U, E>) -> Result<Node<U>, E> {
        let (leaf, levels) = self.into_spine();
        let mut acc = match leaf {
            Node::Any => Node::Any,
            Node::Not(a) => Node::Not(Box::new(a.try_map(f)?)),
            Node::Op(t) => Node::Op(f(t)?),
            Node::And(..) | Node::Or(..) => unreachable!("a spine ends in a non-binary node"),
        };
        for (bin, right) in levels.into_iter().rev() {
            acc = bin.join(acc, right.try_map(f)?);
        }
        Ok(acc)
    }
}

/// `and` or `or`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bin {
    And,
    Or,
}

impl Bin {
    pub(crate) fn join<T>(self, a: Node<T>, b: Node<T>) -> Node<T> {
        match self {
            Bin::And => Node::And(Box::new(a), Box::new(b)),
            Bin::Or => Node::Or(Box::new(a), Box::new(b)),
        }
    }
}

/// Which member of the balanced family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalancedKind {
    Balanced,
    FullyBalanced,
    SizeBalanced,
    FullySizeBalanced,
}

impl BalancedKind {
    pub fn name(self) -> &'static str {
        match self {
            BalancedKind::Balanced => "balanced",
            BalancedKind::FullyBalanced => "fullybalanced",
            BalancedKind::SizeBalanced => "sizebalanced",
            BalancedKind::FullySizeBalanced => "fullysizebalanced",
        }
    }
    /// `balanced` and `sizebalanced` include `present` and a copies check.
    pub fn is_combined(self) -> bool {
        matches!(self, BalancedKind::Balanced | BalancedKind::SizeBalanced)
    }
    /// The size-ordered variants.
    pub fn by_size(self) -> bool {
        matches!(
            self,
            BalancedKind::SizeBalanced | BalancedKind::FullySizeBalanced
        )
    }
}

/// How many repositories a balanced term picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalancedCount {
    /// `G` (1) or `G:N`.
    Count(i64),
    /// `G:lackingcopies`: numcopies minus the copies there are.
    LackingCopies,
}

/// Which repositories `copies=` counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopiesFilter {
    All,
    /// `TRUST:N` (`or_higher` for `TRUST+:N`).
    Trust {
        level: TrustLevel,
        or_higher: bool,
    },
    Group(String),
}

/// `copies=[FILTER:]N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiesSpec {
    pub filter: CopiesFilter,
    pub n: i64,
}

/// The comparison of a `metadata=` term.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaCompare {
    Glob(Glob),
    Lt(String),
    Le(String),
    Gt(String),
    Ge(String),
}

/// What a term tests. See the module documentation of `placement` for the meaning of each.
#[derive(Debug, Clone, PartialEq)]
pub enum TermKind {
    Anything,
    Nothing,
    Include(Glob),
    Exclude(Glob),
    LargerThan(i128),
    SmallerThan(i128),
    Unused,
    Standard,
    GroupWanted,
    InPreferredDir,
    Present,
    SecureHash,
    Copies(CopiesSpec),
    LackingCopies {
        needed: i64,
        approx: bool,
    },
    InBackend(String),
    Metadata {
        field: String,
        compare: MetaCompare,
    },
    Url(Glob),
    InAllGroup(String),
    OnlyInGroup(String),
    Balanced {
        kind: BalancedKind,
        group: String,
        count: BalancedCount,
        /// For `balanced`/`sizebalanced`: the copies check that stops more copies being
        /// made once the group has enough (`copies=G:N`, or `lackingcopies=1`).
        enough: Option<CopiesSpec>,
    },
}

/// One term of an expression: its text as written, where it was, and what it tests.
/// Two terms are equal when their text is (the text determines the rest).
#[derive(Debug, Clone)]
pub struct Term {
    pub text: Box<str>,
    pub span: Range<usize>,
    pub kind: TermKind,
}

impl PartialEq for Term {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Term {
    /// git-annex's description of the term (`include=*.txt`, `lackingcopies`, …), as used
    /// in `--explain` output.
    pub fn desc(&self) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow;
        match &self.kind {
            // git-annex describes these without their value.
            TermKind::LackingCopies { approx, .. } => Cow::Borrowed(if *approx {
                "approxlackingcopies"
            } else {
                "lackingcopies"
            }),
            TermKind::Anything
            | TermKind::Nothing
            | TermKind::Unused
            | TermKind::Standard
            | TermKind::GroupWanted
            | TermKind::InPreferredDir
            | TermKind::Present
            | TermKind::SecureHash => Cow::Borrowed(&self.text),
            // Terms with a value are described as `name=value`, even when written
            // without the `=`.
            _ if !self.text.contains('=') => Cow::Owned(format!("{}=", self.text)),
            _ => Cow::Borrowed(&self.text),
        }
    }

    /// Whether `not` before this term makes the whole expression unusable (a repository
    /// would get content and then drop it again).
    pub fn negation_unstable(&self) -> bool {
        match &self.kind {
            TermKind::Present => true,
            TermKind::Balanced { kind, .. } => kind.is_combined(),
            _ => false,
        }
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why one term failed to parse. The messages are git-annex's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TermError {
    #[error("near {}", hs_show(.token))]
    Unknown { token: String },
    #[error("bad size")]
    BadSize,
    #[error("bad number for copies")]
    BadCopiesNumber,
    #[error("bad value for number of lacking copies")]
    BadLackingCopies,
    #[error("bad number for {term}")]
    BadBalancedNumber { term: &'static str },
    #[error("bad value for {term}")]
    BadBalancedValue { term: &'static str },
    #[error("Illegal metadata field name, \"{field}\"")]
    IllegalMetadataField { field: String },
    /// git-annex accepts such a glob and aborts when it is first used; we refuse it.
    #[error("failed to compile regex: {regex}")]
    BadGlob { regex: String },
    #[error("expression has more than {max} tokens")]
    TooLong { max: usize },
    #[error("expression nests more than {max} deep")]
    TooDeep { max: usize },
    /// The expansion of `groupwanted` (the group's expression) does not parse.
    #[error("{message}")]
    Expansion { term: &'static str, message: String },
}

/// One failing term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermFailure {
    /// Byte range of the term in the expression.
    pub span: Range<usize>,
    pub error: TermError,
}

/// An expression that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub expression: String,
    pub failures: Vec<TermFailure>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for fail in &self.failures {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "Parse failure: {}", fail.error)?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    /// The message followed by the expression and a marker under the first failing term.
    pub fn render(&self) -> String {
        let mut s = self.to_string();
        if let Some(first) = self.failures.first() {
            let start = self.expression[..first.span.start.min(self.expression.len())]
                .chars()
                .count();
            let width = self
                .expression
                .get(first.span.clone())
                .map(|t| t.chars().count())
                .unwrap_or(1)
                .max(1);
            s.push_str("\n  ");
            s.push_str(&self.expression);
            s.push_str("\n  ");
            s.push_str(&" ".repeat(start));
            s.push_str(&"^".repeat(width));
        }
        s
    }
}

/// Haskell's `show` for a string: quotes, with `\"`, `\\`, control characters by name and
/// non-ASCII characters as decimal escapes.
pub(crate) fn hs_show(s: &str) -> String {
    const ASCII: [&str; 32] = [
        "NUL", "SOH", "STX", "ETX", "EOT", "ENQ", "ACK", "a", "b", "t", "n", "v", "f", "r", "SO",
        "SI", "DLE", "DC1", "DC2", "DC3", "DC4", "NAK", "SYN", "ETB", "CAN", "EM", "SUB", "ESC",
        "FS", "GS", "RS", "US",
    ];
    let mut out = String::from("\"");
    // What the previous escape needs protecting from: a following digit or 'H'.
    let mut protect: Option<fn(char) -> bool> = None;
    for c in s.chars() {
        if let Some(p) = protect.take() {
            if p(c) {
                out.push_str("\\&");
            }
        }
        let code = c as u32;
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (0x20..0x7f).contains(&code) => out.push(c),
            '\u{7f}' => out.push_str("\\DEL"),
            _ if code < 0x20 => {
                out.push('\\');
                out.push_str(ASCII[code as usize]);
                if code == 14 {
                    protect = Some(|c| c == 'H');
                }
            }
            _ => {
                out.push_str(&format!("\\{code}"));
                protect = Some(|c| c.is_ascii_digit());
            }
        }
    }
    out.push('"');
    out
}

/// A token and its byte span.
#[derive(Debug, Clone)]
pub(crate) struct RawToken<'a> {
    pub text: &'a str,
    pub span: Range<usize>,
}

/// Split an expression into tokens: whitespace-separated words, with `(` and `)` split
/// out as tokens of their own.
pub(crate) fn tokenize(s: &str) -> Vec<RawToken<'_>> {
    fn flush<'a>(s: &'a str, out: &mut Vec<RawToken<'a>>, from: usize, to: usize) {
        if to > from {
            out.push(RawToken {
                text: &s[from..to],
                span: from..to,
            });
        }
    }
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in s.char_indices() {
        if hs_is_space(c) {
            if let Some(st) = start.take() {
                flush(s, &mut out, st, i);
            }
        } else if c == '(' || c == ')' {
            if let Some(st) = start.take() {
                flush(s, &mut out, st, i);
            }
            flush(s, &mut out, i, i + 1);
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(st) = start {
        flush(s, &mut out, st, s.len());
    }
    out
}

#[derive(Debug)]
enum Tok {
    Op(Term),
    And,
    Or,
    Not,
    Open,
    Close,
}

fn parse_term(text: &str, span: Range<usize>) -> Result<Tok, TermError> {
    let simple = |kind| {
        Ok(Tok::Op(Term {
            text: text.into(),
            span: span.clone(),
            kind,
        }))
    };
    match text {
        "and" => return Ok(Tok::And),
        "or" => return Ok(Tok::Or),
        "not" => return Ok(Tok::Not),
        "(" => return Ok(Tok::Open),
        ")" => return Ok(Tok::Close),
        "standard" => return simple(TermKind::Standard),
        "groupwanted" => return simple(TermKind::GroupWanted),
        "inpreferreddir" => return simple(TermKind::InPreferredDir),
        "present" => return simple(TermKind::Present),
        "securehash" => return simple(TermKind::SecureHash),
        "anything" => return simple(TermKind::Anything),
        "nothing" => return simple(TermKind::Nothing),
        "unused" => return simple(TermKind::Unused),
        _ => {}
    }
    let (name, value) = match text.find('=') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    };
    let kind = match name {
        "include" => TermKind::Include(file_glob(value)?),
        "exclude" => TermKind::Exclude(file_glob(value)?),
        "largerthan" => TermKind::LargerThan(read_size(value).ok_or(TermError::BadSize)?),
        "smallerthan" => TermKind::SmallerThan(read_size(value).ok_or(TermError::BadSize)?),
        "copies" => TermKind::Copies(parse_copies(value)?),
        "lackingcopies" | "approxlackingcopies" => TermKind::LackingCopies {
            needed: readish_int(value).ok_or(TermError::BadLackingCopies)?,
            approx: name == "approxlackingcopies",
        },
        "inbackend" => TermKind::InBackend(value.to_string()),
        "metadata" => parse_metadata(value)?,
        "url" => TermKind::Url(glob(value, GlobMode::Plain)?),
        "inallgroup" => TermKind::InAllGroup(value.to_string()),
        "onlyingroup" => TermKind::OnlyInGroup(value.to_string()),
        "balanced" => parse_balanced(BalancedKind::Balanced, value)?,
        "fullybalanced" => parse_balanced(BalancedKind::FullyBalanced, value)?,
        "sizebalanced" => parse_balanced(BalancedKind::SizeBalanced, value)?,
        "fullysizebalanced" => parse_balanced(BalancedKind::FullySizeBalanced, value)?,
        _ => {
            return Err(TermError::Unknown {
                token: text.to_string(),
            })
        }
    };
    simple(kind)
}

fn glob(value: &str, mode: GlobMode) -> Result<Glob, TermError> {
    Glob::new(value, mode).map_err(|e| TermError::BadGlob { regex: e.regex })
}

fn file_glob(value: &str) -> Result<Glob, TermError> {
    glob(value, GlobMode::FilePath)
}

/// `copies=` values: `N`, `GROUP:N`, `TRUST:N`, `TRUST+:N` (a trust level name wins over
/// a group of the same name).
pub(crate) fn parse_copies(value: &str) -> Result<CopiesSpec, TermError> {
    let parts: Vec<&str> = value.split(':').collect();
    let (filter, num) = match parts.as_slice() {
        [n] => (CopiesFilter::All, *n),
        [v, n] => {
            let (name, or_higher) = match v.strip_suffix('+') {
                Some(b) => (b, true),
                None => (*v, false),
            };
            let filter = match TrustLevel::from_name(name) {
                Some(level) => CopiesFilter::Trust { level, or_higher },
                None => CopiesFilter::Group((*v).to_string()),
            };
            (filter, *n)
        }
        // git-annex 10.20261026 reports three or more parts as a bad number.
        _ => return Err(TermError::BadCopiesNumber),
    };
    let n = readish_int(num).ok_or(TermError::BadCopiesNumber)?;
    Ok(CopiesSpec { filter, n })
}

fn parse_balanced(kind: BalancedKind, value: &str) -> Result<TermKind, TermError> {
    let term = kind.name();
    let parts: Vec<&str> = value.split(':').collect();
    let (group, count) = match parts.as_slice() {
        [g] => (*g, BalancedCount::Count(1)),
        [g, "lackingcopies"] => (*g, BalancedCount::LackingCopies),
        [g, n] => (
            *g,
            BalancedCount::Count(readish_int(n).ok_or(TermError::BadBalancedNumber { term })?),
        ),
        _ => return Err(TermError::BadBalancedValue { term }),
    };
    let enough = if kind.is_combined() {
        match count {
            BalancedCount::LackingCopies => None,
            BalancedCount::Count(_) => Some(if value.contains(':') {
                parse_copies(value)?
            } else {
                parse_copies(&format!("{value}:1"))?
            }),
        }
    } else {
        None
    };
    Ok(TermKind::Balanced {
        kind,
        group: group.to_string(),
        count,
        enough,
    })
}

/// A metadata field name git-annex accepts: alphanumeric first, then alphanumerics and
/// `_-.`.
fn legal_field(f: &str) -> bool {
    let mut it = f.chars();
    match it.next() {
        Some(c) if c.is_alphanumeric() => it.all(|c| c.is_alphanumeric() || "_-.".contains(c)),
        _ => false,
    }
}

fn parse_metadata(value: &str) -> Result<TermKind, TermError> {
    let split = value.find(['=', '<', '>']).unwrap_or(value.len());
    let (field, op) = value.split_at(split);
    if !legal_field(field) {
        return Err(TermError::IllegalMetadataField {
            field: field.to_string(),
        });
    }
    let compare = if let Some(v) = op.strip_prefix('=') {
        MetaCompare::Glob(glob(v, GlobMode::CaseInsensitive)?)
    } else if let Some(v) = op.strip_prefix("<=") {
        MetaCompare::Le(v.to_string())
    } else if let Some(v) = op.strip_prefix('<') {
        MetaCompare::Lt(v.to_string())
    } else if let Some(v) = op.strip_prefix(">=") {
        MetaCompare::Ge(v.to_string())
    } else if let Some(v) = op.strip_prefix('>') {
        MetaCompare::Gt(v.to_string())
    } else {
        MetaCompare::Glob(glob("", GlobMode::CaseInsensitive)?)
    };
    Ok(TermKind::Metadata {
        field: field.to_string(),
        compare,
    })
}

enum Group {
    One(Tok),
    Many(Vec<Group>),
}

fn token_groups(toks: Vec<Tok>) -> Vec<Group> {
    let mut it = toks.into_iter();
    let mut out = Vec::new();
    while let Some(t) = it.next() {
        match t {
            Tok::Open => out.push(Group::Many(find_close(&mut it))),
            Tok::Close => {} // a stray ")" is ignored
            t => out.push(Group::One(t)),
        }
    }
    out
}

fn find_close(it: &mut std::vec::IntoIter<Tok>) -> Vec<Group> {
    let mut out = Vec::new();
    while let Some(t) = it.next() {
        match t {
            Tok::Close => return out,
            Tok::Open => out.push(Group::Many(find_close(it))),
            t => out.push(Group::One(t)),
        }
    }
    out // a missing ")" is assumed at the end
}

fn implicit_and(gs: Vec<Group>) -> Vec<Group> {
    let needs = |g: &Group| matches!(g, Group::One(Tok::Op(_)) | Group::Many(_));
    let mut out: Vec<Group> = Vec::with_capacity(gs.len());
    for g in gs {
        if out.last().is_some_and(needs) && needs(&g) {
            out.push(Group::One(Tok::And));
        }
        out.push(g);
    }
    out
}

fn and<T>(a: Node<T>, b: Node<T>) -> Node<T> {
    Node::And(Box::new(a), Box::new(b))
}

fn process(mut m: Node<Term>, mut gs: std::collections::VecDeque<Group>) -> Node<Term> {
    while !gs.is_empty() {
        m = consume(m, &mut gs);
    }
    m
}

fn consume(m: Node<Term>, gs: &mut std::collections::VecDeque<Group>) -> Node<Term> {
    loop {
        let Some(g) = gs.pop_front() else {
            return m;
        };
        return match g {
            Group::One(Tok::And) => {
                let p = consume(Node::Any, gs);
                and(m, p)
            }
            Group::One(Tok::Or) => {
                let p = consume(Node::Any, gs);
                Node::Or(Box::new(m), Box::new(p))
            }
            Group::One(Tok::Not) => {
                let p = consume(Node::Any, gs);
                and(m, Node::Not(Box::new(p)))
            }
            Group::One(Tok::Op(t)) => and(m, Node::Op(t)),
            Group::Many(inner) => process(m, inner.into()),
            Group::One(Tok::Open | Tok::Close) => continue,
        };
    }
}

/// git-annex's one-pass simplification: `anything and x` and `x and anything` become `x`.
fn simplify<T>(n: Node<T>) -> Node<T> {
    // Walk down the left spine, deciding for each level whether it survives.
    let mut kept: Vec<(Bin, Node<T>)> = Vec::new();
    let mut n = n;
    let leaf = loop {
        match n {
            Node::And(a, b) if a.is_empty() => break simplify(*b),
            Node::And(a, b) if b.is_empty() => n = *a,
            Node::And(a, b) => {
                kept.push((Bin::And, simplify(*b)));
                n = *a;
            }
            Node::Or(a, b) => {
                kept.push((Bin::Or, simplify(*b)));
                n = *a;
            }
            Node::Not(a) => break Node::Not(Box::new(simplify(*a))),
            leaf => break leaf,
        }
    };
    kept.into_iter()
        .rev()
        .fold(leaf, |acc, (bin, right)| bin.join(acc, right))
}

/// A parsed preferred content expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    text: String,
    tree: Node<Term>,
}

impl Expr {
    /// Parse an expression as git-annex does (every failing term is reported).
    pub fn parse(text: &str) -> Result<Expr, ParseError> {
        let raw = tokenize(text);
        if raw.len() > MAX_TOKENS {
            return Err(ParseError {
                expression: text.to_string(),
                failures: vec![TermFailure {
                    span: raw[MAX_TOKENS].span.clone(),
                    error: TermError::TooLong { max: MAX_TOKENS },
                }],
            });
        }
        let mut depth = 0usize;
        let mut run = 0usize;
        for t in &raw {
            match t.text {
                "(" => depth += 1,
                ")" => depth = depth.saturating_sub(1),
                _ => {}
            }
            if matches!(t.text, "and" | "or" | "not") {
                run += 1;
            } else {
                run = 0;
            }
            if depth + run > MAX_NESTING {
                return Err(ParseError {
                    expression: text.to_string(),
                    failures: vec![TermFailure {
                        span: t.span.clone(),
                        error: TermError::TooDeep { max: MAX_NESTING },
                    }],
                });
            }
        }
        let mut toks = Vec::with_capacity(raw.len());
        let mut failures = Vec::new();
        for t in raw {
            match parse_term(t.text, t.span.clone()) {
                Ok(tok) => toks.push(tok),
                Err(error) => failures.push(TermFailure {
                    span: t.span,
                    error,
                }),
            }
        }
        if !failures.is_empty() {
            return Err(ParseError {
                expression: text.to_string(),
                failures,
            });
        }
        let groups = implicit_and(token_groups(toks));
        let tree = simplify(process(Node::Any, groups.into()));
        Ok(Expr {
            text: text.to_string(),
            tree,
        })
    }

    /// The text it was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn tree(&self) -> &Node<Term> {
        &self.tree
    }

    pub fn into_tree(self) -> Node<Term> {
        self.tree
    }

    /// No terms: as a repository's setting this means "not configured".
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Terms that appear negated although negating them is unstable (`not present`,
    /// `not balanced=…`). git-annex then treats the whole expression as never matching.
    /// `standard` and `groupwanted` depend on the repository and are checked when the
    /// expression is compiled for one.
    pub fn unstable_negations(&self) -> Vec<&Term> {
        self.tree
            .negated_ops()
            .into_iter()
            .filter(|t| t.negation_unstable())
            .collect()
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.tree)
    }
}

impl std::str::FromStr for Expr {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Expr, ParseError> {
        Expr::parse(s)
    }
}

#[derive(Clone, Copy)]
enum Ctx {
    And,
    Or,
}

/// Print a tree so that parsing the text gives the same tree back: left operands need no
/// parentheses (the fold is left to right), right operands that are not single terms are
/// parenthesised, and an "anything" placeholder is written so that the parser rebuilds it.
impl<T: fmt::Display> fmt::Display for Node<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Any => Ok(()),
            n => write_node(n, f),
        }
    }
}

fn write_node<T: fmt::Display>(n: &Node<T>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let (leaf, levels) = n.spine();
    // The leftmost operand prints without parentheses; an "anything" there needs the
    // placeholder of the innermost operator.
    match (leaf, levels.last()) {
        (Node::Any, Some((Bin::And, _))) => write_any(Ctx::And, f)?,
        (Node::Any, Some((Bin::Or, _))) => write_any(Ctx::Or, f)?,
        (Node::Any, None) => f.write_str("( )")?,
        (Node::Op(t), _) => write!(f, "{t}")?,
        (Node::Not(a), _) => {
            f.write_str("not ")?;
            write_atom(a, f)?;
        }
        (Node::And(..) | Node::Or(..), _) => unreachable!("a spine ends in a non-binary node"),
    }
    for (bin, right) in levels.iter().rev() {
        let ctx = match bin {
            Bin::And => {
                f.write_str(" and ")?;
                Ctx::And
            }
            Bin::Or => {
                f.write_str(" or ")?;
                Ctx::Or
            }
        };
        write_right(right, ctx, f)?;
    }
    Ok(())
}

fn write_any(ctx: Ctx, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match ctx {
        // "( and )" parses to "anything and anything", which survives simplification as
        // "anything" only where an "and" needs an operand that is not literally empty.
        Ctx::And => f.write_str("( and )"),
        Ctx::Or => f.write_str("( )"),
    }
}

fn write_right<T: fmt::Display>(n: &Node<T>, ctx: Ctx, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match n {
        Node::Any => write_any(ctx, f),
        Node::Op(_) | Node::Not(_) => write_node(n, f),
        n => {
            f.write_str("( ")?;
            write_node(n, f)?;
            f.write_str(" )")
        }
    }
}

fn write_atom<T: fmt::Display>(n: &Node<T>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match n {
        Node::Any => f.write_str("( )"),
        Node::Op(_) | Node::Not(_) => write_node(n, f),
        n => {
            f.write_str("( ")?;
            write_node(n, f)?;
            f.write_str(" )")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(s: &str) -> String {
        // A compact rendering of the tree for assertions.
        fn go(n: &Node<Term>) -> String {
            match n {
                Node::Any => "T".into(),
                Node::Op(t) => t.text.to_string(),
                Node::Not(a) => format!("!{}", go(a)),
                Node::And(a, b) => format!("({}&{})", go(a), go(b)),
                Node::Or(a, b) => format!("({}|{})", go(a), go(b)),
            }
        }
        go(Expr::parse(s).unwrap().tree())
    }

    #[test]
    fn folds_left_to_right_like_git_annex() {
        assert_eq!(
            shape("include=a or include=b and include=c"),
            "((include=a|include=b)&include=c)"
        );
        assert_eq!(shape("include=a include=b"), "(include=a&include=b)");
        assert_eq!(
            shape("not include=a and include=b"),
            "(!include=a&include=b)"
        );
        assert_eq!(
            shape("include=x and ( include=y or include=z"),
            "(include=x&(include=y|include=z))"
        );
        assert_eq!(shape("include=x ) or include=y"), "(include=x|include=y)");
        assert_eq!(shape("include=a not include=b"), "(include=a&!include=b)");
        assert_eq!(shape("not not include=a"), "!!include=a");
        // Inside a group, a following group continues the fold.
        assert_eq!(
            shape("( include=y ( include=x or include=z ) )"),
            "((include=y&include=x)|include=z)"
        );
        assert_eq!(
            shape("include=y ( include=x or include=z )"),
            "(include=y&(include=x|include=z))"
        );
        // Dangling operators.
        assert_eq!(shape("include=x or"), "(include=x|T)");
        assert_eq!(shape("include=x and"), "include=x");
        assert_eq!(shape("not"), "!T");
        assert_eq!(
            shape("include=x and or include=y"),
            "(include=x&(T|include=y))"
        );
        assert!(Expr::parse("").unwrap().is_empty());
        assert!(Expr::parse("and").unwrap().is_empty());
        assert!(Expr::parse("( )").unwrap().is_empty());
        assert!(Expr::parse("  \t ").unwrap().is_empty());
        assert!(!Expr::parse("or").unwrap().is_empty());
    }

    #[test]
    fn parens_split_without_spaces() {
        assert_eq!(shape("(include=a)or(include=b)"), "(include=a|include=b)");
        let toks: Vec<_> = tokenize("a(b) c").iter().map(|t| t.text).collect();
        assert_eq!(toks, ["a", "(", "b", ")", "c"]);
    }

    #[test]
    fn errors_like_git_annex() {
        let e = Expr::parse("include=*.txt foo=bar").unwrap_err();
        assert_eq!(e.to_string(), "Parse failure: near \"foo=bar\"");
        assert_eq!(e.failures[0].span, 14..21);
        assert!(
            e.render().contains("\n                ^^^^^^^"),
            "{}",
            e.render()
        );
        let e = Expr::parse("include=x foo=bar baz").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Parse failure: near \"foo=bar\" Parse failure: near \"baz\""
        );
        let e = Expr::parse("largerthan=1zz copies=x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Parse failure: bad size Parse failure: bad number for copies"
        );
        for (expr, msg) in [
            ("anything=1", "near \"anything=1\""),
            ("copies", "bad number for copies"),
            ("copies=a:b:1", "bad number for copies"),
            ("copies=g:0:", "bad number for copies"),
            ("copies=2.5", "bad number for copies"),
            ("metadata=-a=b", "Illegal metadata field name, \"-a\""),
            ("balanced=g:x", "bad number for balanced"),
            ("sizebalanced=g:1:2", "bad value for sizebalanced"),
            ("lackingcopies=x", "bad value for number of lacking copies"),
            ("largerthan=+5", "bad size"),
            ("frob=\u{e9}", "near \"frob=\\233\""),
            ("include=[abc", "failed to compile regex: ^[abc$"),
        ] {
            let e = Expr::parse(expr).unwrap_err();
            assert_eq!(e.to_string(), format!("Parse failure: {msg}"), "{expr}");
        }
        assert!(Expr::parse("include").is_ok());
        assert!(Expr::parse("copies=2abc").is_ok());
    }

    #[test]
    fn terms_parse_their_values() {
        let t = |s: &str| Expr::parse(s).unwrap().into_tree();
        match t("copies=trusted+:2") {
            Node::Op(Term {
                kind: TermKind::Copies(c),
                ..
            }) => {
                assert_eq!(
                    c.filter,
                    CopiesFilter::Trust {
                        level: TrustLevel::Trusted,
                        or_higher: true
                    }
                );
                assert_eq!(c.n, 2);
            }
            other => panic!("{other:?}"),
        }
        match t("balanced=g:lackingcopies") {
            Node::Op(Term {
                kind:
                    TermKind::Balanced {
                        count,
                        enough,
                        kind,
                        ..
                    },
                ..
            }) => {
                assert_eq!(count, BalancedCount::LackingCopies);
                assert_eq!(enough, None);
                assert_eq!(kind, BalancedKind::Balanced);
            }
            other => panic!("{other:?}"),
        }
        match t("sizebalanced=g") {
            Node::Op(Term {
                kind: TermKind::Balanced { enough, .. },
                ..
            }) => assert_eq!(
                enough,
                Some(CopiesSpec {
                    filter: CopiesFilter::Group("g".into()),
                    n: 1
                })
            ),
            other => panic!("{other:?}"),
        }
        match t("metadata=year>=2000") {
            Node::Op(Term {
                kind: TermKind::Metadata { field, compare },
                ..
            }) => {
                assert_eq!(field, "year");
                assert_eq!(compare, MetaCompare::Ge("2000".into()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unstable_negations_found() {
        let e = Expr::parse("not present").unwrap();
        assert_eq!(e.unstable_negations().len(), 1);
        let e = Expr::parse("not not present").unwrap();
        assert!(e.unstable_negations().is_empty());
        let e = Expr::parse("include=* and not (balanced=g or copies=1)").unwrap();
        assert_eq!(e.unstable_negations()[0].text.as_ref(), "balanced=g");
        let e = Expr::parse("not fullybalanced=g").unwrap();
        assert!(e.unstable_negations().is_empty());
    }

    #[test]
    fn formatter_round_trips_odd_trees() {
        for s in [
            "include=x or",
            "( and ) and include=y",
            "include=x and or include=y",
            "not",
            "not ( )",
            "include=a or include=b and include=c",
            "include=a or (include=b and include=c)",
            "not (include=a or include=b) include=c",
            "( include=y ( include=x or include=z ) )",
            "( ( and ) ) or ( and include=x )",
            "not not not include=a",
        ] {
            let e = Expr::parse(s).unwrap();
            let printed = e.to_string();
            let again = Expr::parse(&printed).unwrap();
            assert_eq!(again.tree(), e.tree(), "{s:?} printed as {printed:?}");
        }
        assert_eq!(
            Expr::parse("include=a or (include=b and include=c)")
                .unwrap()
                .to_string(),
            "include=a or ( include=b and include=c )"
        );
    }

    #[test]
    fn hs_show_escapes() {
        assert_eq!(hs_show("a\"b\\"), "\"a\\\"b\\\\\"");
        assert_eq!(hs_show("\u{e9}1"), "\"\\233\\&1\"");
        assert_eq!(hs_show("\u{1}\u{e}H\u{7f}"), "\"\\SOH\\SO\\&H\\DEL\"");
    }
}
