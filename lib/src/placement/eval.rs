//! The evaluator: which repositories want a key, and whether a drop is safe.
//!
//! An [`Engine`] is built once from [`Facts`]: it parses every repository's preferred and
//! required content expression, expands `standard` and `groupwanted` for that repository,
//! and prepares the balanced pickers of every group. Questions are then asked per key
//! through a [`KeyFacts`].
//!
//! Semantics follow git-annex 10.20261026:
//! * a repository's "wanted" matcher is its preferred content OR its required content;
//! * an expression that does not parse acts as `present`; no expression (or one with no
//!   terms) is "not configured", reported as [`Want::NotConfigured`];
//! * an expression that negates an unstable term (`not present`, `not balanced=…`) never
//!   matches;
//! * "want to get" evaluates with nothing assumed absent; "want to drop" evaluates the
//!   repository's own expression assuming the repository itself does not have the key.

use super::balanced::{repo_has_space, size_balanced_candidates, MemberSpace, Picker};
use super::expr::{
    BalancedCount, BalancedKind, Bin, CopiesFilter, CopiesSpec, Expr, MetaCompare, Node,
    ParseError, Term, TermError, TermFailure, TermKind,
};
use super::facts::{Facts, KeyFacts, TrustLevel};
use super::glob::decode_code_points;
use super::number::{read_maybe_double, readish_int};
use super::standard::standard_group_of;
use crate::types::backend::is_secure_hash;
use crate::types::Uuid;
use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;

/// An operation of a compiled matcher: a term, or an expanded `standard`/`groupwanted`.
#[derive(Debug, Clone)]
pub enum Op {
    Term(Term),
    Call {
        name: &'static str,
        sub: Arc<Node<Op>>,
        /// Some term inside is unstable under negation.
        unstable: bool,
    },
}

impl Op {
    /// git-annex's description of the operation.
    pub fn desc(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Op::Term(t) => t.desc(),
            Op::Call { name, .. } => std::borrow::Cow::Borrowed(name),
        }
    }
    fn negation_unstable(&self) -> bool {
        match self {
            Op::Term(t) => t.negation_unstable(),
            Op::Call { unstable, .. } => *unstable,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Term(t) => write!(f, "{t}"),
            Op::Call { name, .. } => f.write_str(name),
        }
    }
}

/// The answer to "does this repository want the key?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Wanted,
    NotWanted,
    /// The repository has no expression: the caller chooses (git-annex treats such a
    /// repository as wanting content for cluster uploads and `--auto` copies, and as not
    /// wanting to keep it for `drop --auto`).
    NotConfigured,
}

impl Want {
    /// The answer, with `unconfigured` for a repository that has no expression.
    pub fn or(self, unconfigured: bool) -> bool {
        match self {
            Want::Wanted => true,
            Want::NotWanted => false,
            Want::NotConfigured => unconfigured,
        }
    }
}

/// A compiled expression (preferred OR required) of one repository.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The matcher; `present` when the stored expression did not parse.
    pub tree: Node<Op>,
    /// The stored expression did not parse (the rule is then `present`).
    pub error: Option<ParseError>,
    /// Descriptions of negated unstable operations: when not empty the rule never matches.
    pub unstable: Vec<String>,
}

impl Rule {
    fn new(compiled: Result<Node<Op>, ParseError>) -> Rule {
        match compiled {
            Ok(tree) => {
                let mut unstable: Vec<String> = Vec::new();
                // git-annex lists them last-found first, without repeats.
                for op in tree.negated_ops().into_iter().rev() {
                    if op.negation_unstable() && !unstable.iter().any(|d| *d == op.desc()) {
                        unstable.push(op.desc().to_string());
                    }
                }
                Rule {
                    tree,
                    error: None,
                    unstable,
                }
            }
            Err(e) => Rule {
                tree: Node::Op(Op::Term(present_term())),
                error: Some(e),
                unstable: Vec::new(),
            },
        }
    }
}

fn present_term() -> Term {
    Term {
        text: "present".into(),
        span: 0..0,
        kind: TermKind::Present,
    }
}

/// One step of an evaluation, as git-annex records it for `--explain`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Open,
    Close,
    And,
    Or,
    Not,
    Op {
        desc: String,
        matched: bool,
        /// Our own note on what the term looked at.
        why: String,
    },
}

/// An evaluation with its trace (for `annexgate placement --explain`).
#[derive(Debug, Clone)]
pub struct Explanation {
    pub repo: Uuid,
    /// "preferred content" or "required content".
    pub matcher: &'static str,
    pub want: Want,
    /// Whether the expression matched (before the unstable-negation rule).
    pub matched: bool,
    /// The compiled expression, printed.
    pub expression: String,
    pub events: Vec<Event>,
    pub unstable: Vec<String>,
    /// The stored expression did not parse, so `present` was used.
    pub error: Option<ParseError>,
}

impl Explanation {
    /// git-annex's one-line explanation (`matches preferred content: include=*[TRUE]`),
    /// or `None` when nothing was evaluated.
    pub fn describe(&self) -> Option<String> {
        let prefix = format!(
            "{} {}: ",
            if self.matched {
                "matches"
            } else {
                "does not match"
            },
            self.matcher
        );
        let mut s = describe_events(&self.events, &prefix)?;
        if !self.unstable.is_empty() {
            write!(
                s,
                ", but that expression is not stable due to negated use of {}, so will not be used",
                self.unstable.join(" ")
            )
            .expect("writing to a String");
        }
        Some(s)
    }

    /// Our longer explanation: the git-annex line, then each term with its note.
    pub fn details(&self) -> String {
        let mut s = String::new();
        if let Some(e) = &self.error {
            writeln!(
                s,
                "expression does not parse, using `present`: {}",
                e.render()
            )
            .expect("string");
        }
        match self.describe() {
            Some(d) => writeln!(s, "{d}").expect("string"),
            None => writeln!(s, "{}: not configured", self.matcher).expect("string"),
        }
        for ev in &self.events {
            if let Event::Op { desc, matched, why } = ev {
                writeln!(
                    s,
                    "  {desc}: {}{}{}",
                    if *matched { "true" } else { "false" },
                    if why.is_empty() { "" } else { " — " },
                    why
                )
                .expect("string");
            }
        }
        s
    }
}

/// git-annex's `describeMatchResult`: the events as words, with redundant parentheses
/// removed the way git-annex removes them.
pub fn describe_events(events: &[Event], prefix: &str) -> Option<String> {
    if events.is_empty() {
        return None;
    }
    #[derive(Clone, PartialEq)]
    enum W {
        O,
        C,
        A,
        R,
        N,
        Op(String),
    }
    let ws: Vec<W> = events
        .iter()
        .map(|e| match e {
            Event::Open => W::O,
            Event::Close => W::C,
            Event::And => W::A,
            Event::Or => W::R,
            Event::Not => W::N,
            Event::Op { desc, matched, .. } => W::Op(format!(
                "{desc}[{}]",
                if *matched { "TRUE" } else { "FALSE" }
            )),
        })
        .collect();
    let is_op = |w: &W| matches!(w, W::Op(_));
    fn remove_close(v: &[W]) -> Vec<W> {
        let mut out = Vec::new();
        let mut n = 0usize;
        for (i, w) in v.iter().enumerate() {
            match w {
                W::O => {
                    n += 1;
                    out.push(W::O);
                }
                W::C if n > 0 => {
                    n -= 1;
                    out.push(W::C);
                }
                W::C => {
                    out.extend_from_slice(&v[i + 1..]);
                    return out;
                }
                w => out.push(w.clone()),
            }
        }
        out
    }
    let mut rest: Vec<W> = if ws.first() == Some(&W::O) {
        if ws.last() == Some(&W::C) && ws.len() >= 2 {
            ws[1..ws.len() - 1].to_vec()
        } else {
            ws[1..].to_vec()
        }
    } else {
        ws
    };
    let mut out: Vec<W> = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        let r = &rest[i..];
        if r.len() >= 6
            && r[0] == W::O
            && is_op(&r[1])
            && (r[2] == W::R || r[2] == W::A)
            && is_op(&r[3])
            && r[4] == W::C
            && r[5] == r[2]
        {
            // (a or b) or -> a or b or; (a and b) and -> a and b and
            out.extend([r[1].clone(), r[2].clone(), r[3].clone(), r[2].clone()]);
            i += 6;
        } else if r.len() >= 4
            && (r[0] == W::R || r[0] == W::A)
            && r[1] == W::O
            && is_op(&r[2])
            && r[3] == W::C
        {
            // or (a) -> or a
            out.extend([r[0].clone(), r[2].clone()]);
            i += 4;
        } else if r.len() >= 4 && r[0] == W::O && r[1] == W::N && is_op(&r[2]) && r[3] == W::C {
            // (not a) -> not a
            out.extend([W::N, r[2].clone()]);
            i += 4;
        } else if r.len() >= 2 && r[0] == W::O && r[1] == W::O {
            // ((…)) -> (…): drop the close matching the inner open.
            out.push(W::O);
            rest = remove_close(&r[2..]);
            i = 0;
        } else {
            out.push(r[0].clone());
            i += 1;
        }
    }
    let words: Vec<&str> = out
        .iter()
        .map(|w| match w {
            W::O => "(",
            W::C => ")",
            W::A => "and",
            W::R => "or",
            W::N => "not",
            W::Op(s) => s.as_str(),
        })
        .collect();
    Some(format!("{prefix}{}", words.join(" ")))
}

/// Where a cluster upload should go (see [`Engine::plan_store`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePlan {
    /// The repositories to send the key to.
    pub targets: Vec<Uuid>,
    /// Candidates the location log says already have the key (skipped).
    pub already_have: Vec<Uuid>,
    /// The answer of every candidate that lacks the key.
    pub decisions: Vec<(Uuid, Want)>,
    pub fallback: StoreFallback,
}

/// Whether [`StorePlan::targets`] came from preferred content or a fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFallback {
    /// The candidates that want the key.
    None,
    /// Nobody wants it: every candidate that lacks it (git-annex does this too, as an
    /// upload to no node at all would fail).
    AllLacking,
    /// Every candidate already has it: all of them.
    All,
}

/// The result of a drop safety check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropCheck {
    /// Copies that would remain and count: not dropped, not dead, not untrusted, not a
    /// cluster.
    pub remaining: Vec<Uuid>,
    pub numcopies: i64,
    pub mincopies: i64,
    /// Repositories being dropped from whose required content matches the key.
    pub required_by: Vec<Uuid>,
}

impl DropCheck {
    /// At least numcopies and mincopies copies remain.
    pub fn enough_copies(&self) -> bool {
        let need = self.numcopies.max(self.mincopies);
        self.remaining.len() as i64 >= need
    }
    /// Enough copies remain and no dropped repository requires the key.
    pub fn allowed(&self) -> bool {
        self.enough_copies() && self.required_by.is_empty()
    }
}

/// Preferred content decisions over a fixed set of facts.
#[derive(Debug, Clone)]
pub struct Engine {
    facts: Facts,
    members: BTreeMap<String, Vec<Uuid>>,
    pickers: HashMap<String, Picker>,
    node_clusters: HashMap<Uuid, Vec<Uuid>>,
    wanted: HashMap<Uuid, Rule>,
    required: HashMap<Uuid, Rule>,
}

impl Engine {
    /// Compile every repository's expressions from the facts.
    pub fn new(facts: Facts) -> Engine {
        let mut members: BTreeMap<String, Vec<Uuid>> = BTreeMap::new();
        for (u, gs) in &facts.groups {
            for g in gs {
                members.entry(g.clone()).or_default().push(u.clone());
            }
        }
        for ms in members.values_mut() {
            ms.sort();
            ms.dedup();
        }
        let pickers = members
            .iter()
            .map(|(g, ms)| (g.clone(), Picker::new(ms.iter())))
            .collect();
        let mut node_clusters: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
        for (c, nodes) in &facts.clusters {
            for n in nodes {
                if facts.trust_of(n) != TrustLevel::Dead {
                    node_clusters.entry(n.clone()).or_default().push(c.clone());
                }
            }
        }
        for cs in node_clusters.values_mut() {
            cs.sort();
        }
        let mut engine = Engine {
            facts,
            members,
            pickers,
            node_clusters,
            wanted: HashMap::new(),
            required: HashMap::new(),
        };
        let repos: HashSet<Uuid> = engine
            .facts
            .preferred
            .keys()
            .chain(engine.facts.required.keys())
            .cloned()
            .collect();
        for u in repos {
            let pc = engine
                .facts
                .preferred
                .get(&u)
                .map(|t| engine.compile(&u, t, true, true));
            let rc = engine
                .facts
                .required
                .get(&u)
                .map(|t| engine.compile(&u, t, true, true));
            if let Some(rc) = &rc {
                engine.required.insert(u.clone(), Rule::new(rc.clone()));
            }
            let combined = match (pc, rc) {
                (Some(x), None) | (None, Some(x)) => x,
                (Some(Ok(a)), Some(Ok(b))) => Ok(combine(a, b)),
                (Some(Err(e)), _) | (_, Some(Err(e))) => Err(e),
                (None, None) => continue,
            };
            engine.wanted.insert(u, Rule::new(combined));
        }
        engine
    }

    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    /// Update a repository's size (e.g. after storing a key), without recompiling.
    pub fn set_repo_size(&mut self, u: &Uuid, size: u64) {
        self.facts.repo_sizes.insert(u.clone(), size);
    }

    /// Add to a repository's size (an upload in progress counts as stored).
    pub fn add_repo_size(&mut self, u: &Uuid, delta: u64) {
        let e = self.facts.repo_sizes.entry(u.clone()).or_insert(0);
        *e = e.saturating_add(delta);
    }

    /// The compiled wanted rule (preferred OR required) of a repository.
    pub fn wanted_rule(&self, u: &Uuid) -> Option<&Rule> {
        self.wanted.get(u)
    }

    /// The compiled required rule of a repository.
    pub fn required_rule(&self, u: &Uuid) -> Option<&Rule> {
        self.required.get(u)
    }

    /// Members of a group, sorted.
    pub fn group_members(&self, g: &str) -> &[Uuid] {
        self.members.get(g).map(|v| v.as_slice()).unwrap_or(&[])
    }

    /// Parse `text` as repository `u`'s expression, expanding `standard` and
    /// `groupwanted` as git-annex does (inside `standard` neither expands; inside
    /// `groupwanted`, `standard` does but `groupwanted` does not; unexpanded they act as
    /// `present`).
    pub fn compile(
        &self,
        u: &Uuid,
        text: &str,
        expand_standard: bool,
        expand_groupwanted: bool,
    ) -> Result<Node<Op>, ParseError> {
        let expr = Expr::parse(text)?;
        let no_groups = Default::default();
        let groups = self.facts.groups.get(u).unwrap_or(&no_groups);
        let present = || Node::Op(Op::Term(present_term()));
        expr.into_tree().try_map(&mut |t: Term| {
            let (name, sub) = match t.kind {
                TermKind::Standard => {
                    let sub = match (expand_standard, standard_group_of(groups)) {
                        (true, Some(sg)) => self.compile(u, &sg.expression(), false, false)?,
                        _ => present(),
                    };
                    ("standard", sub)
                }
                TermKind::GroupWanted => {
                    let mut found = groups
                        .iter()
                        .filter_map(|g| self.facts.group_preferred.get(g));
                    let one = match (found.next(), found.next()) {
                        (Some(e), None) => Some(e),
                        _ => None,
                    };
                    let sub = match (expand_groupwanted, one) {
                        (true, Some(e)) => {
                            self.compile(u, e, true, false)
                                .map_err(|inner| ParseError {
                                    expression: text.to_string(),
                                    failures: vec![TermFailure {
                                        span: t.span.clone(),
                                        error: TermError::Expansion {
                                            term: "groupwanted",
                                            message: inner
                                                .failures
                                                .iter()
                                                .map(|f| f.error.to_string())
                                                .collect::<Vec<_>>()
                                                .join(" "),
                                        },
                                    }],
                                })?
                        }
                        _ => present(),
                    };
                    ("groupwanted", sub)
                }
                _ => return Ok(Op::Term(t)),
            };
            let unstable = sub.ops().iter().any(|o| o.negation_unstable());
            Ok(Op::Call {
                name,
                sub: Arc::new(sub),
                unstable,
            })
        })
    }

    /// Does `repo` want the key, assuming the repositories in `assume_not_present` do not
    /// have it? `file` is the work-tree path (relative to the top, `/`-separated), if any.
    pub fn wants(
        &self,
        repo: &Uuid,
        key: &dyn KeyFacts,
        file: Option<&[u8]>,
        assume_not_present: &[Uuid],
    ) -> Want {
        self.check_rule(self.wanted.get(repo), repo, key, file, assume_not_present)
    }

    /// Would `repo` get the key (`--want-get`)?
    pub fn want_get(&self, repo: &Uuid, key: &dyn KeyFacts, file: Option<&[u8]>) -> Want {
        self.wants(repo, key, file, &[])
    }

    /// Would `repo` still want the key if it did not have it? `NotWanted` means it wants
    /// to drop it (`--want-drop`); whether dropping is safe is [`Engine::drop_check`].
    pub fn still_wants(&self, repo: &Uuid, key: &dyn KeyFacts, file: Option<&[u8]>) -> Want {
        self.wants(repo, key, file, std::slice::from_ref(repo))
    }

    /// Does `repo`'s required content match the key?
    pub fn requires(
        &self,
        repo: &Uuid,
        key: &dyn KeyFacts,
        file: Option<&[u8]>,
        assume_not_present: &[Uuid],
    ) -> Want {
        self.check_rule(self.required.get(repo), repo, key, file, assume_not_present)
    }

    fn check_rule(
        &self,
        rule: Option<&Rule>,
        repo: &Uuid,
        key: &dyn KeyFacts,
        file: Option<&[u8]>,
        np: &[Uuid],
    ) -> Want {
        let Some(rule) = rule else {
            return Want::NotConfigured;
        };
        if rule.tree.is_empty() {
            return Want::NotConfigured;
        }
        if !rule.unstable.is_empty() {
            return Want::NotWanted;
        }
        let cx = Cx::new(self, repo, key, file, np);
        if cx.node(&rule.tree, &mut None) {
            Want::Wanted
        } else {
            Want::NotWanted
        }
    }

    /// [`Engine::wants`] with a record of how the answer came about.
    pub fn explain(
        &self,
        repo: &Uuid,
        key: &dyn KeyFacts,
        file: Option<&[u8]>,
        assume_not_present: &[Uuid],
    ) -> Explanation {
        self.explain_rule(
            self.wanted.get(repo),
            "preferred content",
            repo,
            key,
            file,
            assume_not_present,
        )
    }

    /// [`Engine::requires`] with a record.
    pub fn explain_required(
        &self,
        repo: &Uuid,
        key: &dyn KeyFacts,
        file: Option<&[u8]>,
        assume_not_present: &[Uuid],
    ) -> Explanation {
        self.explain_rule(
            self.required.get(repo),
            "required content",
            repo,
            key,
            file,
            assume_not_present,
        )
    }

    fn explain_rule(
        &self,
        rule: Option<&Rule>,
        matcher: &'static str,
        repo: &Uuid,
        key: &dyn KeyFacts,
        file: Option<&[u8]>,
        np: &[Uuid],
    ) -> Explanation {
        let mut ex = Explanation {
            repo: repo.clone(),
            matcher,
            want: Want::NotConfigured,
            matched: false,
            expression: String::new(),
            events: Vec::new(),
            unstable: Vec::new(),
            error: None,
        };
        let Some(rule) = rule else {
            return ex;
        };
        ex.expression = rule.tree.to_string();
        ex.error = rule.error.clone();
        if rule.tree.is_empty() {
            return ex;
        }
        let cx = Cx::new(self, repo, key, file, np);
        let mut trace = Some(Vec::new());
        let matched = cx.node(&rule.tree, &mut trace);
        ex.events = trace.unwrap_or_default();
        ex.matched = matched;
        ex.unstable = rule.unstable.clone();
        ex.want = if matched && rule.unstable.is_empty() {
            Want::Wanted
        } else {
            Want::NotWanted
        };
        ex
    }

    /// Which candidates should receive an uploaded key, as a git-annex cluster gateway
    /// decides: candidates whose location log entry says they lack it and that want it
    /// (`unconfigured_wants` for those without an expression); if none want it, every
    /// candidate that lacks it; if all have it, all candidates. Order is kept.
    pub fn plan_store(
        &self,
        key: &dyn KeyFacts,
        file: Option<&[u8]>,
        candidates: &[Uuid],
        unconfigured_wants: bool,
    ) -> StorePlan {
        let logged = self.logged_locations(key);
        let (have, lacking): (Vec<Uuid>, Vec<Uuid>) =
            candidates.iter().cloned().partition(|c| logged.contains(c));
        let decisions: Vec<(Uuid, Want)> = lacking
            .iter()
            .map(|c| (c.clone(), self.want_get(c, key, file)))
            .collect();
        let wanting: Vec<Uuid> = decisions
            .iter()
            .filter(|(_, w)| w.or(unconfigured_wants))
            .map(|(u, _)| u.clone())
            .collect();
        let (targets, fallback) = if !wanting.is_empty() {
            (wanting, StoreFallback::None)
        } else if !lacking.is_empty() {
            (lacking, StoreFallback::AllLacking)
        } else {
            (candidates.to_vec(), StoreFallback::All)
        };
        StorePlan {
            targets,
            already_have: have,
            decisions,
            fallback,
        }
    }

    /// Is it safe to drop the key from every repository in `from`? Counts the copies that
    /// remain in trusted or semitrusted, live, non-cluster repositories (dropping from a
    /// cluster drops from its nodes too) against numcopies and mincopies (the file's
    /// `.gitattributes` values, else the branch's), and lists the repositories in `from`
    /// whose required content matches.
    pub fn drop_check(&self, key: &dyn KeyFacts, file: Option<&[u8]>, from: &[Uuid]) -> DropCheck {
        let mut gone: HashSet<&Uuid> = from.iter().collect();
        for u in from {
            if let Some(nodes) = self.facts.clusters.get(u) {
                gone.extend(nodes.iter());
            }
        }
        let remaining: Vec<Uuid> = self
            .key_locations(&self.logged_locations(key))
            .into_iter()
            .filter(|u| {
                !gone.contains(u)
                    && !u.is_cluster()
                    && self.facts.trust_of(u) != TrustLevel::Untrusted
            })
            .collect();
        let attr = |v: Option<String>, global: i64| {
            v.and_then(|s| readish_int(&s))
                .map(|n| n.max(1))
                .unwrap_or(global)
        };
        let (numcopies, mincopies) = match file {
            Some(f) => (
                attr(key.numcopies_attr(f), self.facts.global_numcopies()),
                attr(key.mincopies_attr(f), self.facts.global_mincopies()),
            ),
            None => (self.facts.global_numcopies(), self.facts.global_mincopies()),
        };
        let required_by = from
            .iter()
            .filter(|u| self.requires(u, key, file, std::slice::from_ref(u)) == Want::Wanted)
            .cloned()
            .collect();
        DropCheck {
            remaining,
            numcopies,
            mincopies,
            required_by,
        }
    }

    /// The location log's UUIDs plus the clusters of live nodes among them (git-annex's
    /// `loggedLocations`).
    pub fn logged_locations(&self, key: &dyn KeyFacts) -> Vec<Uuid> {
        let raw = key.locations();
        let mut clusters: Vec<Uuid> = Vec::new();
        for u in raw {
            if let Some(cs) = self.node_clusters.get(u) {
                for c in cs {
                    if !clusters.contains(c) {
                        clusters.push(c.clone());
                    }
                }
            }
        }
        clusters.sort();
        let mut out = clusters;
        for u in raw {
            if !out.contains(u) {
                out.push(u.clone());
            }
        }
        out
    }

    /// Logged locations without dead repositories (git-annex's `keyLocations`).
    pub fn key_locations(&self, logged: &[Uuid]) -> Vec<Uuid> {
        logged
            .iter()
            .filter(|u| self.facts.trust_of(u) != TrustLevel::Dead)
            .cloned()
            .collect()
    }

    /// Which of `holders` should drop the key: those that no longer want it (with
    /// themselves assumed absent; `unconfigured_keeps` decides for repositories without
    /// an expression), taken in order while the drop stays safe.
    pub fn plan_drop(
        &self,
        key: &dyn KeyFacts,
        file: Option<&[u8]>,
        holders: &[Uuid],
        unconfigured_keeps: bool,
    ) -> Vec<Uuid> {
        let mut chosen: Vec<Uuid> = Vec::new();
        for h in holders {
            if self.still_wants(h, key, file).or(unconfigured_keeps) {
                continue;
            }
            chosen.push(h.clone());
            if !self.drop_check(key, file, &chosen).allowed() {
                chosen.pop();
            }
        }
        chosen
    }
}

fn combine(a: Node<Op>, b: Node<Op>) -> Node<Op> {
    if a.is_empty() {
        b
    } else if b.is_empty() {
        a
    } else {
        Node::Or(Box::new(a), Box::new(b))
    }
}

type Trace = Option<Vec<Event>>;

/// The context of one evaluation: the repository whose expression it is, the key, the
/// file, the repositories assumed not to have the key, and lazily derived facts.
struct Cx<'a> {
    e: &'a Engine,
    repo: &'a Uuid,
    kf: &'a dyn KeyFacts,
    file: Option<&'a [u8]>,
    np: &'a [Uuid],
    logged: OnceCell<Vec<Uuid>>,
    locs: OnceCell<Vec<Uuid>>,
    file_cps: OnceCell<Vec<u32>>,
}

impl<'a> Cx<'a> {
    fn new(
        e: &'a Engine,
        repo: &'a Uuid,
        kf: &'a dyn KeyFacts,
        file: Option<&'a [u8]>,
        np: &'a [Uuid],
    ) -> Cx<'a> {
        Cx {
            e,
            repo,
            kf,
            file,
            np,
            logged: OnceCell::new(),
            locs: OnceCell::new(),
            file_cps: OnceCell::new(),
        }
    }

    /// The location log's UUIDs plus the clusters of live nodes among them.
    fn logged(&self) -> &[Uuid] {
        self.logged.get_or_init(|| self.e.logged_locations(self.kf))
    }

    /// `logged` without dead repositories (git-annex's `keyLocations`).
    fn locs(&self) -> &[Uuid] {
        self.locs
            .get_or_init(|| self.e.key_locations(self.logged()))
    }

    fn file_cps(&self) -> Option<&[u32]> {
        let f = self.file?;
        Some(self.file_cps.get_or_init(|| decode_code_points(f)))
    }

    fn not_assumed_absent(&self, u: &Uuid) -> bool {
        !self.np.contains(u)
    }

    /// Evaluate a matcher like git-annex's `matchMrun'`, short-circuiting left to right and
    /// recording the same events. Left spines are evaluated without recursion.
    fn node(&self, n: &Node<Op>, tr: &mut Trace) -> bool {
        fn push(tr: &mut Trace, ev: Event) {
            if let Some(t) = tr {
                t.push(ev)
            }
        }
        let (leaf, levels) = n.spine();
        for _ in &levels {
            push(tr, Event::Open);
        }
        let mut acc = match leaf {
            Node::Any => true,
            Node::Not(a) => {
                push(tr, Event::Open);
                push(tr, Event::Not);
                let r = !self.node(a, tr);
                push(tr, Event::Close);
                r
            }
            Node::Op(op) => {
                let mut why = tr.as_ref().map(|_| String::new());
                let r = self.op(op, why.as_mut());
                if let Some(t) = tr {
                    t.push(Event::Op {
                        desc: op.desc().to_string(),
                        matched: r,
                        why: why.unwrap_or_default(),
                    });
                }
                r
            }
            Node::And(..) | Node::Or(..) => unreachable!("a spine ends in a non-binary node"),
        };
        for (bin, right) in levels.iter().rev() {
            acc = match (bin, acc) {
                (Bin::And, true) => {
                    push(tr, Event::And);
                    self.node(right, tr)
                }
                (Bin::And, false) => false,
                (Bin::Or, true) => true,
                (Bin::Or, false) => {
                    push(tr, Event::Or);
                    self.node(right, tr)
                }
            };
            push(tr, Event::Close);
        }
        acc
    }

    fn op(&self, op: &Op, why: Option<&mut String>) -> bool {
        match op {
            Op::Term(t) => self.term(&t.kind, why),
            Op::Call { sub, .. } => {
                if let Some(w) = why {
                    let mut inner = Some(Vec::new());
                    let r = self.node(sub, &mut inner);
                    let text = describe_events(&inner.unwrap_or_default(), "").unwrap_or_default();
                    write!(w, "expands to `{sub}`: {text}").expect("string");
                    r
                } else {
                    self.node(sub, &mut None)
                }
            }
        }
    }

    fn term(&self, t: &TermKind, mut why: Option<&mut String>) -> bool {
        macro_rules! note {
            ($($arg:tt)*) => {
                if let Some(w) = why.as_deref_mut() {
                    write!(w, $($arg)*).expect("string");
                }
            };
        }
        let key = self.kf.key();
        match t {
            TermKind::Anything => true,
            TermKind::Nothing => false,
            TermKind::Include(g) => match self.file_cps() {
                Some(f) => g.matches(f),
                None => {
                    note!("no file name");
                    false
                }
            },
            TermKind::Exclude(g) => match self.file_cps() {
                Some(f) => !g.matches(f),
                None => {
                    // git-annex: the glob "does not match" a missing file name.
                    note!("no file name");
                    true
                }
            },
            TermKind::LargerThan(n) | TermKind::SmallerThan(n) => {
                let larger = matches!(t, TermKind::LargerThan(_));
                match key.size() {
                    Some(s) => {
                        note!("key size {s}, limit {n}");
                        let s = s as i128;
                        if larger {
                            s > *n
                        } else {
                            s < *n
                        }
                    }
                    None => {
                        note!("key has no size");
                        !larger
                    }
                }
            }
            TermKind::Unused => self.file.is_none() && self.kf.is_unused(),
            TermKind::InPreferredDir => {
                let dir = self
                    .e
                    .facts
                    .preferreddir
                    .get(self.repo)
                    .map(String::as_str)
                    .unwrap_or("public");
                note!("preferred directory {dir:?}");
                self.file.is_some_and(|f| in_dir(f, dir.as_bytes()))
            }
            TermKind::Present => {
                let local = self.e.facts.local.as_ref() == Some(self.repo);
                match (local, self.kf.present_here()) {
                    (true, Some(here)) => {
                        note!("local content {}", if here { "present" } else { "absent" });
                        here
                    }
                    _ => {
                        let r = self.locs().contains(self.repo);
                        note!("location log {}", if r { "has it" } else { "lacks it" });
                        r
                    }
                }
            }
            TermKind::SecureHash => {
                if key.variety() == b"VURL" {
                    let eks: Vec<_> = self
                        .kf
                        .equivalent_keys()
                        .into_iter()
                        .filter(|k| k.variety() != b"VURL")
                        .collect();
                    eks.is_empty() || eks.iter().all(is_secure_hash)
                } else {
                    is_secure_hash(key)
                }
            }
            TermKind::Copies(spec) => {
                let n = self.count_copies(spec);
                note!("{n} counted copies, need {}", spec.n);
                n >= spec.n
            }
            TermKind::LackingCopies { needed, approx } => {
                let (numcopies, have) = self.numcopies_have(*approx);
                note!("numcopies {numcopies}, {have} copies");
                numcopies - have >= *needed
            }
            TermKind::InBackend(name) => key.variety() == name.as_bytes(),
            TermKind::Metadata { field, compare } => {
                let want = field.to_lowercase();
                self.kf
                    .metadata_any(&mut |f, v| f.to_lowercase() == want && meta_matches(compare, v))
            }
            TermKind::Url(g) => self.kf.url_any(&mut |u| g.matches_str(strip_downloader(u))),
            TermKind::InAllGroup(g) => {
                let members = self.e.group_members(g);
                if members.is_empty() {
                    true
                } else if members.iter().any(|m| self.np.contains(m)) {
                    false
                } else {
                    let locs = self.locs();
                    members.iter().all(|m| locs.contains(m))
                }
            }
            TermKind::OnlyInGroup(g) => {
                let members = self.e.group_members(g);
                if members.is_empty() {
                    return false;
                }
                let present: Vec<&Uuid> = self
                    .locs()
                    .iter()
                    .filter(|u| self.not_assumed_absent(u))
                    .collect();
                present.iter().any(|u| members.contains(u))
                    && present.iter().all(|u| members.contains(u))
            }
            TermKind::Balanced {
                kind,
                group,
                count,
                enough,
            } => self.balanced(*kind, group, *count, enough.as_ref(), why),
            TermKind::Standard | TermKind::GroupWanted => {
                // Compiled into Op::Call; a bare one (from a tree that was not compiled)
                // acts as the unexpanded form.
                self.term(&TermKind::Present, why)
            }
        }
    }

    fn count_copies(&self, spec: &CopiesSpec) -> i64 {
        let facts = &self.e.facts;
        self.locs()
            .iter()
            .filter(|u| match &spec.filter {
                CopiesFilter::All => true,
                CopiesFilter::Trust { level, or_higher } => {
                    let t = facts.trust_of(u);
                    if *or_higher {
                        *level <= t
                    } else {
                        *level == t
                    }
                }
                CopiesFilter::Group(g) => facts.groups.get(*u).is_some_and(|gs| gs.contains(g)),
            })
            .filter(|u| self.not_assumed_absent(u) && !u.is_cluster())
            .count() as i64
    }

    /// (numcopies, copies that count): numcopies from `.gitattributes` for the file
    /// unless `approx` or there is no file; copies exclude untrusted repositories, those
    /// assumed absent and clusters.
    fn numcopies_have(&self, approx: bool) -> (i64, i64) {
        let global = self.e.facts.global_numcopies();
        let numcopies = match (approx, self.file) {
            (false, Some(f)) => self
                .kf
                .numcopies_attr(f)
                .and_then(|s| readish_int(&s))
                .map(|n| n.max(1))
                .unwrap_or(global),
            _ => global,
        };
        let have = self
            .locs()
            .iter()
            .filter(|u| {
                self.e.facts.trust_of(u) != TrustLevel::Untrusted
                    && self.not_assumed_absent(u)
                    && !u.is_cluster()
            })
            .count() as i64;
        (numcopies, have)
    }

    fn balanced(
        &self,
        kind: BalancedKind,
        group: &str,
        count: BalancedCount,
        enough: Option<&CopiesSpec>,
        mut why: Option<&mut String>,
    ) -> bool {
        if !kind.is_combined() || self.e.facts.rebalance {
            return self.fully_balanced(kind.by_size(), group, count, why);
        }
        if self.term(&TermKind::Present, None) {
            if let Some(w) = why.as_deref_mut() {
                w.push_str("present");
            }
            return true;
        }
        let copies_ok = match enough {
            None => {
                let (numcopies, have) = self.numcopies_have(false);
                let r = numcopies - have >= 1;
                if let Some(w) = why.as_deref_mut() {
                    write!(w, "not present; numcopies {numcopies}, {have} copies; ")
                        .expect("string");
                }
                r
            }
            Some(spec) => {
                let n = self.count_copies(spec);
                if let Some(w) = why.as_deref_mut() {
                    write!(
                        w,
                        "not present; {n} copies in the group, enough at {}; ",
                        spec.n
                    )
                    .expect("string");
                }
                n < spec.n
            }
        };
        copies_ok && self.fully_balanced(kind.by_size(), group, count, why)
    }

    fn fully_balanced(
        &self,
        by_size: bool,
        group: &str,
        count: BalancedCount,
        why: Option<&mut String>,
    ) -> bool {
        let facts = &self.e.facts;
        let members: Vec<&Uuid> = self.e.group_members(group).iter().collect();
        let n = match count {
            BalancedCount::Count(n) => n,
            BalancedCount::LackingCopies => {
                // git-annex 10.20261026 counts only the copies outside the group here
                // (verified; older sources count every copy), so the group keeps making
                // copies until numcopies is met counting the group's own as missing.
                let (numcopies, _) = self.numcopies_have(false);
                let outside = self
                    .locs()
                    .iter()
                    .filter(|u| {
                        self.e.facts.trust_of(u) != TrustLevel::Untrusted
                            && self.not_assumed_absent(u)
                            && !u.is_cluster()
                            && !members.contains(u)
                    })
                    .count() as i64;
                numcopies - outside
            }
        };
        let key_size = self.kf.key().size().unwrap_or(0) as i128;
        let logged = self.logged();
        let space = |u: &Uuid| MemberSpace {
            max_size: facts.maxsize.get(u).copied(),
            repo_size: facts.repo_sizes.get(u).copied(),
            has_key: logged.contains(u),
        };
        let size_pick = |n: i64| -> Vec<&Uuid> {
            size_balanced_candidates(&members, n, key_size, &space)
                .into_iter()
                .map(|(u, _)| u)
                .collect()
        };
        let candidates: Vec<&Uuid> = if by_size {
            size_pick(n)
        } else {
            let too_full = |u: &&Uuid| match (facts.maxsize.get(*u), facts.repo_sizes.get(*u)) {
                (Some(0), _) => false,
                (Some(max), Some(size)) => {
                    *size as f64 >= *max as f64 * facts.fullybalanced_threshold
                }
                _ => false,
            };
            let needs_size_balance = facts.rebalance
                && n > 1
                && n > members.len() as i64 - members.iter().filter(|u| too_full(u)).count() as i64;
            if needs_size_balance {
                size_pick(n)
            } else {
                members
                    .iter()
                    .copied()
                    .filter(
                        |u| match (facts.maxsize.get(*u), facts.repo_sizes.get(*u)) {
                            (Some(max), Some(size)) => repo_has_space(
                                key_size,
                                logged.contains(u),
                                *size as i128,
                                *max as i128,
                            ),
                            _ => true,
                        },
                    )
                    .collect()
            }
        };
        let picks = match self.e.pickers.get(group) {
            Some(p) if !candidates.is_empty() => p.pick(&candidates, self.kf.key(), n),
            _ => Vec::new(),
        };
        let r = picks.contains(&self.repo);
        if let Some(w) = why {
            let names = |v: &[&Uuid]| v.iter().map(|u| u.as_str()).collect::<Vec<_>>().join(", ");
            write!(
                w,
                "group {group:?}: {} members, n={n}, candidates [{}], picks [{}]",
                members.len(),
                names(&candidates),
                names(&picks)
            )
            .expect("string");
        }
        r
    }
}

/// `url=` matches the URL without a `yt:`, `quvi:` or `:` downloader prefix.
fn strip_downloader(u: &str) -> &str {
    match u.split_once(':') {
        Some(("yt" | "quvi" | "", rest)) => rest,
        _ => u,
    }
}

fn meta_matches(c: &MetaCompare, value: &[u8]) -> bool {
    let (op, want): (fn(std::cmp::Ordering) -> bool, &str) = match c {
        MetaCompare::Glob(g) => return g.matches_bytes(value),
        MetaCompare::Lt(v) => (|o| o.is_lt(), v),
        MetaCompare::Le(v) => (|o| o.is_le(), v),
        MetaCompare::Gt(v) => (|o| o.is_gt(), v),
        MetaCompare::Ge(v) => (|o| o.is_ge(), v),
    };
    let have = decode_code_points(value);
    let have_text: String = have
        .iter()
        .map(|c| char::from_u32(*c).unwrap_or('\u{fffd}'))
        .collect();
    match (read_maybe_double(want), read_maybe_double(&have_text)) {
        (Some(d), Some(d2)) => d2.partial_cmp(&d).is_some_and(op),
        _ => {
            let want_cps: Vec<u32> = want.chars().map(|c| c as u32).collect();
            op(have.cmp(&want_cps))
        }
    }
}

/// `inpreferreddir`: the file's directory, split into components that keep their
/// trailing slashes, contains `dir` (so only the last directory matches a plain name).
fn in_dir(file: &[u8], dir: &[u8]) -> bool {
    // takeDirectory: drop the file name, then trailing slashes; "." for none.
    let cut = file.iter().rposition(|&b| b == b'/');
    let parent: &[u8] = match cut {
        None => b".",
        Some(i) => {
            let d = &file[..=i];
            let trimmed_len = d
                .iter()
                .rposition(|&b| b != b'/')
                .map(|p| p + 1)
                .unwrap_or(0);
            if trimmed_len == 0 {
                &d[..1]
            } else {
                &d[..trimmed_len]
            }
        }
    };
    // splitPath: components with their trailing slashes (a leading "/" on its own).
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut rest = parent;
    if rest.first() == Some(&b'/') {
        let n = rest.iter().take_while(|&&b| b == b'/').count();
        parts.push(&rest[..n]);
        rest = &rest[n..];
    }
    while !rest.is_empty() {
        let name = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
        let slashes = rest[name..].iter().take_while(|&&b| b == b'/').count();
        parts.push(&rest[..name + slashes]);
        rest = &rest[name + slashes..];
    }
    parts.contains(&dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferred_dir_components() {
        // Verified with git annex matchexpression: only the file's own directory counts.
        assert!(in_dir(b"public/x", b"public"));
        assert!(in_dir(b"sub/public/x", b"public"));
        assert!(!in_dir(b"public/sub/x", b"public"));
        assert!(in_dir(b"public/sub/x", b"public/"));
        assert!(!in_dir(b"x", b"public"));
        assert!(in_dir(b"x", b"."));
    }

    #[test]
    fn downloader_prefixes() {
        assert_eq!(strip_downloader("yt:https://x"), "https://x");
        assert_eq!(strip_downloader(":pylog:KEY"), "pylog:KEY");
        assert_eq!(strip_downloader("http://x"), "http://x");
    }

    #[test]
    fn metadata_comparisons() {
        let g = |s: &str| MetaCompare::Lt(s.to_string());
        assert!(meta_matches(&g("10"), b"9"));
        assert!(!meta_matches(&g("10"), b"11"));
        // Not both numbers: text comparison.
        assert!(meta_matches(&g("b"), b"a"));
        assert!(meta_matches(&MetaCompare::Ge("2000".into()), b" 2000 "));
        assert!(!meta_matches(&MetaCompare::Gt("x".into()), b"x"));
    }

    #[test]
    fn describe_like_git_annex() {
        let op = |d: &str, m: bool| Event::Op {
            desc: d.into(),
            matched: m,
            why: String::new(),
        };
        use Event::*;
        // `include=x or include=y and not largerthan=5` with x true (git-annex output).
        let ev = vec![
            Open,
            Open,
            op("include=x", true),
            Close,
            And,
            Open,
            Not,
            op("largerthan=5", false),
            Close,
            Close,
        ];
        assert_eq!(
            describe_events(&ev, "").unwrap(),
            "( include=x[TRUE] ) and not largerthan=5[FALSE]"
        );
        // `include=x and ( include=y or not include=z )`.
        let ev = vec![
            Open,
            op("include=x", true),
            And,
            Open,
            op("include=y", false),
            Or,
            Open,
            Not,
            op("include=z", false),
            Close,
            Close,
            Close,
        ];
        assert_eq!(
            describe_events(&ev, "").unwrap(),
            "include=x[TRUE] and ( include=y[FALSE] or not include=z[FALSE] )"
        );
    }
}
