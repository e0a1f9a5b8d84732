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
//!
//! Verified against git-annex 10.20261026 where `spec/preferred-content.md` (or older
//! git-annex sources) say otherwise:
//! * `exclude=GLOB` with no file name is true (an unassociated key is wanted by
//!   `exclude=*.txt`);
//! * `balanced=G:lackingcopies` (and the fully/size variants) count only the copies
//!   outside group G when working out how many repositories to pick;
//! * `copies=` with three or more `:`-separated parts is "bad number for copies";
//! * `git annex dead` also empties the repository's groups (group.log shows it);
//! * a glob whose bracket never closes makes git-annex abort when it is first used; we
//!   reject the expression when parsing (a stored one then acts as `present`).
//!
//! How callers use it: fill [`Facts`] from the git-annex branch once, build an [`Engine`],
//! then ask per key through a [`KeyFacts`] (the location log is the only per-key fact
//! most expressions need; metadata, URLs and `.gitattributes` values are asked for only
//! by the terms that use them).
//!
//! ```
//! use annexgate::placement::{Engine, Facts, KeyInfo, Want};
//! use annexgate::{Key, Uuid};
//!
//! let n1 = Uuid::parse("ad24d0d7-b9ee-4b96-b029-746b1c075a51").unwrap();
//! let n2 = Uuid::parse("ed402f23-fb08-4f97-b0ab-67eeb4b3621a").unwrap();
//! let facts = Facts::default()
//!     .with_group(&n1, "nodes")
//!     .with_group(&n2, "nodes")
//!     .with_group_preferred("nodes", "balanced=nodes")
//!     .with_preferred(&n1, "groupwanted")
//!     .with_preferred(&n2, "groupwanted");
//! let engine = Engine::new(facts);
//! let key = Key::from_str("SHA256E-s3--abc.txt").unwrap();
//! let k = KeyInfo::new(key, vec![]); // stored nowhere yet
//!
//! // A cluster upload: exactly one of the two nodes wants the key.
//! let plan = engine.plan_store(&k, Some(b"a.txt"), &[n1.clone(), n2.clone()], true);
//! assert_eq!(plan.targets.len(), 1);
//! // The same question for one node, and why.
//! let ex = engine.explain(&plan.targets[0], &k, Some(b"a.txt"), &[]);
//! assert_eq!(ex.want, Want::Wanted);
//! assert_eq!(ex.describe().unwrap(), "matches preferred content: groupwanted[TRUE]");
//! // Dropping the only copy is never safe.
//! let stored = KeyInfo::new(k.key.clone(), vec![plan.targets[0].clone()]);
//! assert!(!engine.drop_check(&stored, None, &plan.targets).allowed());
//! ```

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
