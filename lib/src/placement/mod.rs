//! Preferred content: which repositories want which keys, as git-annex decides it.
//!
//! A repository's preferred content (`git annex wanted`) and required content
//! (`git annex required`) are expressions over a key, its file name and where it is:
//!
//! ```text
//! include=*.mp3 and (copies=backup:1 or largerthan=10mb) or balanced=nodes:2
//! ```
//!
//! Terms (see `spec/preferred-content.md` for each one's meaning): `anything`, `nothing`,
//! `include=GLOB`, `exclude=GLOB`, `largerthan=SIZE`, `smallerthan=SIZE`, `copies=N`,
//! `copies=GROUP:N`, `copies=TRUST[+]:N`, `lackingcopies=N`, `approxlackingcopies=N`,
//! `inbackend=NAME`, `securehash`, `metadata=F=GLOB` (and `<`, `<=`, `>`, `>=`), `url=GLOB`,
//! `present`, `inallgroup=G`, `onlyingroup=G`, `inpreferreddir`, `standard`, `groupwanted`,
//! `unused`, and `balanced`, `fullybalanced`, `sizebalanced`, `fullysizebalanced` with
//! `=G`, `=G:N` or `=G:lackingcopies`. Syntax: `and`, `or`, `not`, parentheses; no
//! precedence (strict left-to-right folding), adjacent terms are and-ed.
//!
//! Layout:
//! * [`expr`]: tokens, the parse tree, terms, errors and the printer;
//! * [`glob`], [`number`]: git-annex's glob and number/size syntax, quirks included;
//! * [`standard`]: the standard groups' expressions;
//! * [`balanced`]: the HMAC picker and free-space ordering of balanced preferred content;
//! * [`facts`]: what decisions are made from ([`Facts`], [`KeyFacts`]);
//! * [`eval`]: the [`Engine`]: wants / explain / plan_store / drop_check.
//!
//! Everything here is pure: no files, no clocks, no processes.

pub mod balanced;
pub mod eval;
pub mod expr;
pub mod facts;
pub mod glob;
pub mod number;
pub mod standard;

#[cfg(test)]
mod oracle;
#[cfg(test)]
mod tests;

pub use eval::{DropCheck, Engine, Event, Explanation, Rule, StoreFallback, StorePlan, Want};
pub use expr::{Expr, Node, ParseError, Term, TermError, TermFailure, TermKind};
pub use facts::{Facts, KeyFacts, KeyInfo, TrustLevel};
pub use standard::StandardGroup;
