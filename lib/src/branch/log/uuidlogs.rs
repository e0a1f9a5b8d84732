//! The UUID-based logs: one value per repository UUID.
//!
//! Old layout (`UUID VALUE timestamp=T`): `uuid.log` (descriptions; a newline in a
//! description is written as the two characters `\n`), `remote.log` (special remote
//! configuration, `key=value` words with whitespace and `&` escaped as `&<codepoint>;`,
//! keys sorted), `trust.log` (`1` trusted, `0` untrusted, `X` dead, `?` or anything else
//! semitrusted, empty = trusted), `group.log` (a set of group names), `preferred-content.log`
//! and `required-content.log` (expression text), and `schedule.log`, `activity.log`,
//! `difference.log`, `multicast.log`, kept as raw text.
//!
//! New layout (`T UUID VALUE`): `maxsize.log` (bytes), `proxy.log` (`UUID:remotename`
//! words), `cluster.log` (node UUIDs; only cluster UUIDs as fields), `export.log` (field
//! `fromUUID:toUUID`, kept as text), the per-key remote state `KEY.log.rmt` and content
//! identifier `KEY.log.cid` logs (kept as text).

use std::collections::{BTreeMap, BTreeSet};

use super::maplog::{format_raw, format_uuid, map_family, parse_raw, parse_uuid, Layout, MapLog};
use crate::types::Uuid;

// ---------------------------------------------------------------------------------------
// uuid.log

map_family!(
    /// `uuid.log`: descriptions as stored (see [`escape_description`]).
    DescriptionFormat, Layout::Old, field: Uuid, value: Vec<u8>,
    parse_field: parse_uuid, format_field: format_uuid,
    parse_value: parse_raw, format_value: format_raw
);
pub type UuidLog = MapLog<DescriptionFormat>;

/// A description as stored: newlines become the two characters `\n` (one-way).
pub fn escape_description(desc: &str) -> Vec<u8> {
    desc.replace('\n', "\\n").into_bytes()
}

// ---------------------------------------------------------------------------------------
// remote.log

/// A special remote's configuration: `key=value` pairs.
pub type RemoteConfig = BTreeMap<String, String>;

map_family!(
    /// `remote.log`: special remote configurations.
    RemoteConfigFormat, Layout::Old, field: Uuid, value: RemoteConfig,
    parse_field: parse_uuid, format_field: format_uuid,
    parse_value: parse_remote_config, format_value: format_remote_config
);
pub type RemoteLog = MapLog<RemoteConfigFormat>;

/// Haskell's `isSpace`: ASCII whitespace, NBSP and the Unicode space separators.
fn hs_is_space(c: char) -> bool {
    matches!(c, ' ' | '\t'..='\r' | '\u{a0}' | '\u{1680}' | '\u{2000}'..='\u{200a}'
        | '\u{202f}' | '\u{205f}' | '\u{3000}')
}

/// Escape a remote config value: whitespace and `&` as `&<decimal codepoint>;`.
pub fn config_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if hs_is_space(c) || c == '&' {
            out.push_str(&format!("&{};", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Reverse [`config_escape`]; a `&` not starting a valid `&N;` stays as it is.
pub fn config_unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let digits = after.bytes().take_while(|b| b.is_ascii_digit()).count();
        let decoded = if digits > 0 && after[digits..].starts_with(';') {
            after[..digits].parse::<u32>().ok().and_then(char::from_u32)
        } else {
            None
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[digits + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn parse_remote_config(b: &[u8]) -> Option<RemoteConfig> {
    let text = String::from_utf8_lossy(b);
    let mut m = RemoteConfig::new();
    for word in text.split(hs_is_space).filter(|w| !w.is_empty()) {
        let (k, v) = match word.find('=') {
            Some(i) => (&word[..i], &word[i + 1..]),
            None => (word, ""),
        };
        m.insert(k.to_string(), config_unescape(v));
    }
    Some(m)
}

fn format_remote_config(m: &RemoteConfig, out: &mut Vec<u8>) {
    let mut first = true;
    for (k, v) in m {
        if !first {
            out.push(b' ');
        }
        first = false;
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(config_escape(v).as_bytes());
    }
}

/// Fields a remote with `sameas-uuid` takes from that UUID's config (and cannot set).
pub const SAMEAS_INHERITED: &[&str] = &[
    "encryption",
    "mac",
    "cipher",
    "cipherkeys",
    "pubkeys",
    "chunksize",
    "chunk",
];

/// Every remote's configuration with the `sameas-uuid` inheritance applied.
pub fn effective_remote_configs(log: &RemoteLog) -> BTreeMap<Uuid, RemoteConfig> {
    let raw: BTreeMap<Uuid, RemoteConfig> =
        log.values().map(|(u, c)| (u.clone(), c.clone())).collect();
    raw.iter()
        .map(|(u, c)| {
            let parent = c
                .get("sameas-uuid")
                .and_then(|s| Uuid::parse(s).ok())
                .and_then(|p| raw.get(&p));
            let eff = match parent {
                None => c.clone(),
                Some(p) => {
                    let mut e: RemoteConfig = c
                        .iter()
                        .filter(|(k, _)| !SAMEAS_INHERITED.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    for (k, v) in p {
                        if SAMEAS_INHERITED.contains(&k.as_str()) {
                            e.insert(k.clone(), v.clone());
                        }
                    }
                    e
                }
            };
            (u.clone(), eff)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// trust.log

/// How far a repository is trusted to keep content. Ordered from least to most trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum TrustLevel {
    Dead,
    Untrusted,
    #[default]
    SemiTrusted,
    Trusted,
}

impl TrustLevel {
    pub fn as_char(self) -> char {
        match self {
            TrustLevel::Trusted => '1',
            TrustLevel::Untrusted => '0',
            TrustLevel::Dead => 'X',
            TrustLevel::SemiTrusted => '?',
        }
    }
}

fn parse_trust(b: &[u8]) -> Option<TrustLevel> {
    match b {
        [] => Some(TrustLevel::Trusted),
        [b'1'] => Some(TrustLevel::Trusted),
        [b'0'] => Some(TrustLevel::Untrusted),
        [b'X'] => Some(TrustLevel::Dead),
        [_] => Some(TrustLevel::SemiTrusted),
        _ => None,
    }
}
fn format_trust(t: &TrustLevel, out: &mut Vec<u8>) {
    out.push(t.as_char() as u8)
}

map_family!(
    /// `trust.log`.
    TrustFormat, Layout::Old, field: Uuid, value: TrustLevel,
    parse_field: parse_uuid, format_field: format_uuid,
    parse_value: parse_trust, format_value: format_trust
);
pub type TrustLog = MapLog<TrustFormat>;

impl TrustLog {
    /// The logged trust of a repository (semitrusted when not listed).
    pub fn level(&self, u: &Uuid) -> TrustLevel {
        self.get(u).copied().unwrap_or_default()
    }
    /// UUIDs logged as dead.
    pub fn dead(&self) -> BTreeSet<Uuid> {
        self.values()
            .filter(|(_, t)| **t == TrustLevel::Dead)
            .map(|(u, _)| u.clone())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// group.log

/// A repository's groups.
pub type Groups = BTreeSet<String>;

fn parse_groups(b: &[u8]) -> Option<Groups> {
    Some(
        String::from_utf8_lossy(b)
            .split(' ')
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect(),
    )
}
fn format_groups(g: &Groups, out: &mut Vec<u8>) {
    for (i, name) in g.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(name.as_bytes());
    }
}

map_family!(
    /// `group.log`.
    GroupFormat, Layout::Old, field: Uuid, value: Groups,
    parse_field: parse_uuid, format_field: format_uuid,
    parse_value: parse_groups, format_value: format_groups
);
pub type GroupLog = MapLog<GroupFormat>;

impl GroupLog {
    /// Group name -> member UUIDs.
    pub fn by_group(&self) -> BTreeMap<String, BTreeSet<Uuid>> {
        let mut m: BTreeMap<String, BTreeSet<Uuid>> = BTreeMap::new();
        for (u, gs) in self.values() {
            for g in gs {
                m.entry(g.clone()).or_default().insert(u.clone());
            }
        }
        m
    }
}

// ---------------------------------------------------------------------------------------
// preferred-content.log, required-content.log

fn parse_text(b: &[u8]) -> Option<String> {
    Some(String::from_utf8_lossy(b).into_owned())
}
fn format_text(s: &String, out: &mut Vec<u8>) {
    out.extend_from_slice(s.as_bytes())
}

map_family!(
    /// `preferred-content.log` and `required-content.log`: expressions (empty = unset).
    ExpressionFormat, Layout::Old, field: Uuid, value: String,
    parse_field: parse_uuid, format_field: format_uuid,
    parse_value: parse_text, format_value: format_text
);
pub type PreferredContentLog = MapLog<ExpressionFormat>;

map_family!(
    /// `schedule.log`, `activity.log`, `difference.log`, `multicast.log`: kept as text.
    OldRawFormat, Layout::Old, field: Uuid, value: Vec<u8>,
    parse_field: parse_uuid, format_field: format_uuid,
    parse_value: parse_raw, format_value: format_raw
);
pub type OldRawLog = MapLog<OldRawFormat>;

/// The repository format differences recorded in `difference.log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Differences {
    pub object_hash_lower: bool,
    pub one_level_object_hash: bool,
    pub one_level_branch_hash: bool,
    pub simulation: bool,
    /// A value this version cannot read was recorded.
    pub unknown: bool,
}

/// Parse a `difference.log` value: `fromList [A,B]` or `[A,B]`.
pub fn parse_differences(v: &[u8]) -> Differences {
    let mut d = Differences::default();
    let text = String::from_utf8_lossy(v);
    let t = text.trim();
    let t = t.strip_prefix("fromList").map(str::trim_start).unwrap_or(t);
    let inner = match t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        Some(i) => i,
        None => {
            d.unknown = true;
            return d;
        }
    };
    for name in inner.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name {
            "ObjectHashLower" => d.object_hash_lower = true,
            "OneLevelObjectHash" => d.one_level_object_hash = true,
            "OneLevelBranchHash" => d.one_level_branch_hash = true,
            "Simulation" => d.simulation = true,
            _ => d.unknown = true,
        }
    }
    d
}

// ---------------------------------------------------------------------------------------
// maxsize.log

fn parse_size(b: &[u8]) -> Option<u64> {
    // Read as git-annex's lenient number reader: leading spaces, digits, then anything
    // that is not part of a number.
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let d = b[s..].iter().take_while(|c| c.is_ascii_digit()).count();
    if d == 0 {
        return None;
    }
    if matches!(b.get(s + d), Some(b'.' | b'e' | b'E' | b'x' | b'o' | b'b')) {
        return None;
    }
    std::str::from_utf8(&b[s..s + d]).ok()?.parse().ok()
}
fn format_size(n: &u64, out: &mut Vec<u8>) {
    out.extend_from_slice(n.to_string().as_bytes())
}

map_family!(
    /// `maxsize.log`: bytes (0 = no limit).
    MaxSizeFormat, Layout::New, field: Uuid, value: u64,
    parse_field: parse_uuid, format_field: format_uuid,
    parse_value: parse_size, format_value: format_size
);
pub type MaxSizeLog = MapLog<MaxSizeFormat>;

// ---------------------------------------------------------------------------------------
// proxy.log

/// One repository a proxy serves, under its remote name at the proxy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Proxy {
    pub uuid: Uuid,
    pub name: String,
}

/// Whether git would accept `name` as a remote name, by git-annex's rule: not empty,
/// only alphanumerics, `_`, `-` and `.`, not starting with `.` or `-`.
pub fn is_legal_remote_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn parse_proxies(b: &[u8]) -> Option<BTreeSet<Proxy>> {
    let mut set = BTreeSet::new();
    let mut rest = b;
    while !rest.is_empty() {
        let colon = rest.iter().position(|&c| c == b':')?;
        if colon == 0 {
            return None;
        }
        let uuid = Uuid::parse_bytes(&rest[..colon]).ok()?;
        let after = &rest[colon + 1..];
        let end = after.iter().position(|&c| c == b' ').unwrap_or(after.len());
        if end == 0 {
            return None;
        }
        let name = String::from_utf8_lossy(&after[..end]).into_owned();
        set.insert(Proxy { uuid, name });
        rest = after.get(end + 1..).unwrap_or(&[]);
    }
    Some(set)
}
fn format_proxies(s: &BTreeSet<Proxy>, out: &mut Vec<u8>) {
    for (i, p) in s.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(p.uuid.as_str().as_bytes());
        out.push(b':');
        out.extend_from_slice(p.name.as_bytes());
    }
}

map_family!(
    /// `proxy.log`: for each proxy UUID, the repositories it proxies.
    ProxyFormat, Layout::New, field: Uuid, value: BTreeSet<Proxy>,
    parse_field: parse_uuid, format_field: format_uuid,
    parse_value: parse_proxies, format_value: format_proxies
);
pub type ProxyLog = MapLog<ProxyFormat>;

impl ProxyLog {
    /// The proxies each proxy UUID offers, without names git would not accept.
    pub fn valid_proxies(&self) -> BTreeMap<Uuid, BTreeSet<Proxy>> {
        self.values()
            .map(|(u, s)| {
                let ok = s
                    .iter()
                    .filter(|p| is_legal_remote_name(&p.name))
                    .cloned()
                    .collect();
                (u.clone(), ok)
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// cluster.log

fn parse_cluster_uuid(b: &[u8]) -> Option<Uuid> {
    parse_uuid(b).filter(Uuid::is_cluster)
}
fn parse_nodes(b: &[u8]) -> Option<BTreeSet<Uuid>> {
    let mut set = BTreeSet::new();
    if b.is_empty() {
        return Some(set);
    }
    let mut rest = b;
    loop {
        let end = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        set.insert(Uuid::parse_bytes(&rest[..end]).ok()?);
        if end == rest.len() {
            return Some(set);
        }
        rest = &rest[end + 1..];
        if rest.is_empty() {
            return Some(set);
        }
    }
}
fn format_nodes(s: &BTreeSet<Uuid>, out: &mut Vec<u8>) {
    for (i, u) in s.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(u.as_str().as_bytes());
    }
}

map_family!(
    /// `cluster.log`: cluster UUID -> node UUIDs. Lines whose UUID is not a cluster UUID
    /// are dropped when reading.
    ClusterFormat, Layout::New, field: Uuid, value: BTreeSet<Uuid>,
    parse_field: parse_cluster_uuid, format_field: format_uuid,
    parse_value: parse_nodes, format_value: format_nodes
);
pub type ClusterLog = MapLog<ClusterFormat>;

/// Clusters and their nodes, as readers use them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Clusters {
    /// Cluster -> nodes.
    pub nodes: BTreeMap<Uuid, BTreeSet<Uuid>>,
    /// Node -> the clusters it belongs to.
    pub clusters_of: BTreeMap<Uuid, BTreeSet<Uuid>>,
}

impl Clusters {
    /// From the cluster log, with the nodes in `dead` removed (git-annex drops dead nodes
    /// so that a dead node's copy does not make the cluster look like it has content).
    pub fn new(log: &ClusterLog, dead: &BTreeSet<Uuid>) -> Clusters {
        let mut c = Clusters::default();
        for (cluster, nodes) in log.values() {
            let live: BTreeSet<Uuid> = nodes.difference(dead).cloned().collect();
            for n in &live {
                c.clusters_of
                    .entry(n.clone())
                    .or_default()
                    .insert(cluster.clone());
            }
            c.nodes.insert(cluster.clone(), live);
        }
        c
    }

    /// The cluster UUIDs to add to a list of locations: each cluster one of whose
    /// (live) nodes is present.
    pub fn clusters_for<'a>(&self, present: impl IntoIterator<Item = &'a Uuid>) -> BTreeSet<Uuid> {
        let mut out = BTreeSet::new();
        for u in present {
            if let Some(cs) = self.clusters_of.get(u) {
                out.extend(cs.iter().cloned());
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// export.log, KEY.log.rmt, KEY.log.cid

fn parse_export_field(b: &[u8]) -> Option<Vec<u8>> {
    let c = b.iter().position(|&x| x == b':')?;
    (c > 0 && c + 1 < b.len()).then(|| b.to_vec())
}

map_family!(
    /// `export.log`: field `fromUUID:toUUID`, value the exported tree(s), kept as text.
    ExportFormat, Layout::New, field: Vec<u8>, value: Vec<u8>,
    parse_field: parse_export_field, format_field: format_raw,
    parse_value: parse_raw, format_value: format_raw
);
pub type ExportLog = MapLog<ExportFormat>;

map_family!(
    /// New-layout UUID logs kept as text: `KEY.log.rmt` (remote state) and `KEY.log.cid`
    /// (content identifiers).
    NewRawFormat, Layout::New, field: Uuid, value: Vec<u8>,
    parse_field: parse_uuid, format_field: format_uuid,
    parse_value: parse_raw, format_value: format_raw
);
/// `KEY.log.rmt`: per special remote state of a key.
pub type RemoteStateLog = MapLog<NewRawFormat>;
/// `KEY.log.cid`: content identifiers (text).
pub type ContentIdLog = MapLog<NewRawFormat>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::branch::log::clock::Timestamp;
    use crate::branch::log::maplog::tests::{arb_log, check_laws};
    use proptest::prelude::*;

    fn u(s: &str) -> Uuid {
        Uuid::parse(s).unwrap()
    }

    // Verified lines from spec/branch-logs.md.
    #[test]
    fn uuid_log_fixture() {
        let l = UuidLog::parse(
            b"37a759e5-8b0e-4e61-aa65-5dc79ab0ed0b dirr timestamp=1795644140s\n\
59040781-186b-45a2-89c3-064d940f40f6 repo a timestamp=1795644124s\n\
acb82efc-627c-8994-982b-f7149c37427b cluster mycluster timestamp=1795644799s\n",
        );
        assert_eq!(
            l.get(&u("59040781-186b-45a2-89c3-064d940f40f6")).unwrap(),
            b"repo a"
        );
        assert_eq!(
            l.get(&u("acb82efc-627c-8994-982b-f7149c37427b")).unwrap(),
            b"cluster mycluster"
        );
        assert_eq!(escape_description("a\nb"), b"a\\nb".to_vec());
    }

    #[test]
    fn remote_log_fixture() {
        let text = b"37a759e5-8b0e-4e61-aa65-5dc79ab0ed0b chunk=1MiB encryption=none name=dirr type=directory timestamp=1795644140s\n\
43cbde97-ab93-4844-b44c-9688250e3bc2 directory=/srv/annexstore encryption=none externaltype=pylog extra=hello&32;world name=pyr type=external timestamp=1795644875s\n";
        let l = RemoteLog::parse(text);
        let c = l.get(&u("43cbde97-ab93-4844-b44c-9688250e3bc2")).unwrap();
        assert_eq!(c["extra"], "hello world");
        assert_eq!(c["type"], "external");
        assert_eq!(
            l.get(&u("37a759e5-8b0e-4e61-aa65-5dc79ab0ed0b")).unwrap()["chunk"],
            "1MiB"
        );
        // Writing gives back the very same bytes (keys sorted, value escaped).
        assert_eq!(l.format(), text.to_vec());
        assert_eq!(config_escape("a&b\tc"), "a&38;b&9;c");
        assert_eq!(config_unescape("a&38;b&9;c&x;&"), "a&b\tc&x;&");
        assert_eq!(config_unescape("&99999999999;"), "&99999999999;");
    }

    #[test]
    fn sameas_inheritance() {
        let l = RemoteLog::parse(
            b"p encryption=shared cipher=abc chunk=1MiB name=p type=directory timestamp=1s\n\
c sameas-uuid=p encryption=none name=c type=rsync timestamp=1s\n",
        );
        let e = effective_remote_configs(&l);
        let c = &e[&u("c")];
        assert_eq!(c["encryption"], "shared");
        assert_eq!(c["cipher"], "abc");
        assert_eq!(c["chunk"], "1MiB");
        assert_eq!(c["type"], "rsync");
        assert_eq!(c["name"], "c");
    }

    #[test]
    fn trust_log_meanings() {
        let l = TrustLog::parse(
            b"a 1 timestamp=1s\nb 0 timestamp=1s\nc X timestamp=1s\nd ? timestamp=1s\n\
e timestamp=1s\nf z timestamp=1s\ng 10 timestamp=1s\n",
        );
        assert_eq!(l.level(&u("a")), TrustLevel::Trusted);
        assert_eq!(l.level(&u("b")), TrustLevel::Untrusted);
        assert_eq!(l.level(&u("c")), TrustLevel::Dead);
        assert_eq!(l.level(&u("d")), TrustLevel::SemiTrusted);
        assert_eq!(l.level(&u("e")), TrustLevel::Trusted);
        assert_eq!(l.level(&u("f")), TrustLevel::SemiTrusted);
        assert!(l.get(&u("g")).is_none(), "two characters: line skipped");
        assert_eq!(l.level(&u("zzz")), TrustLevel::SemiTrusted);
        assert_eq!(l.dead(), [u("c")].into_iter().collect());
        let v = TrustLog::parse(b"37a759e5-8b0e-4e61-aa65-5dc79ab0ed0b 0 timestamp=1795644140s\n");
        assert_eq!(
            v.level(&u("37a759e5-8b0e-4e61-aa65-5dc79ab0ed0b")),
            TrustLevel::Untrusted
        );
    }

    #[test]
    fn group_log() {
        let l = GroupLog::parse(
            b"59040781-186b-45a2-89c3-064d940f40f6 client mygroup timestamp=1795644141s\n\
b  x   y timestamp=1s\nc timestamp=1s\n",
        );
        let g = l.get(&u("59040781-186b-45a2-89c3-064d940f40f6")).unwrap();
        assert_eq!(g.iter().collect::<Vec<_>>(), ["client", "mygroup"]);
        assert_eq!(l.get(&u("b")).unwrap().len(), 2);
        assert!(l.get(&u("c")).unwrap().is_empty());
        assert_eq!(l.by_group()["client"].len(), 1);
    }

    #[test]
    fn preferred_and_required_content() {
        let p = PreferredContentLog::parse(
            b"59040781-186b-45a2-89c3-064d940f40f6 standard or include=*.bin timestamp=1795644140s\n",
        );
        assert_eq!(
            p.get(&u("59040781-186b-45a2-89c3-064d940f40f6")).unwrap(),
            "standard or include=*.bin"
        );
        let r = PreferredContentLog::parse(
            b"59040781-186b-45a2-89c3-064d940f40f6 include=foo* timestamp=1795644140s\n",
        );
        assert_eq!(
            r.get(&u("59040781-186b-45a2-89c3-064d940f40f6")).unwrap(),
            "include=foo*"
        );
    }

    #[test]
    fn differences() {
        let d = parse_differences(b"fromList [ObjectHashLower,OneLevelBranchHash]");
        assert!(d.object_hash_lower && d.one_level_branch_hash && !d.unknown);
        assert!(parse_differences(b"[ObjectHashLower]").object_hash_lower);
        assert!(parse_differences(b"[Foo]").unknown);
        assert!(parse_differences(b"junk").unknown);
    }

    #[test]
    fn maxsize_fixture() {
        let l = MaxSizeLog::parse(b"1795644140s 59040781-186b-45a2-89c3-064d940f40f6 1000000000\n");
        assert_eq!(
            l.get(&u("59040781-186b-45a2-89c3-064d940f40f6")),
            Some(&1000000000)
        );
        assert!(MaxSizeLog::parse(b"1s a x\n").is_empty());
    }

    #[test]
    fn proxy_fixture() {
        let line = b"1795644799s b7681060-076a-4fc0-aab9-adfeb2bde4fd 350e264d-a98e-4449-affe-9cdb92de9916:node2 72e8e007-25ba-4852-ad74-ad6e65919798:node3 acb82efc-627c-8994-982b-f7149c37427b:mycluster b9330ac3-c381-4ace-9009-98621a4aeba7:node1\n";
        let l = ProxyLog::parse(line);
        let s = l.get(&u("b7681060-076a-4fc0-aab9-adfeb2bde4fd")).unwrap();
        assert_eq!(s.len(), 4);
        assert!(s.contains(&Proxy {
            uuid: u("acb82efc-627c-8994-982b-f7149c37427b"),
            name: "mycluster".into()
        }));
        assert_eq!(l.format(), line.to_vec());
        let l = ProxyLog::parse(b"1s p a:ok b:-bad c:.x d:x/y e:fine.name_2\n");
        let v = &l.valid_proxies()[&u("p")];
        let names: Vec<&str> = v.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["ok", "fine.name_2"]);
        assert!(l.get(&u("p")).unwrap().len() == 5, "kept for rewriting");
    }

    #[test]
    fn cluster_fixture() {
        let line = b"1795644799s acb82efc-627c-8994-982b-f7149c37427b 350e264d-a98e-4449-affe-9cdb92de9916 72e8e007-25ba-4852-ad74-ad6e65919798 b9330ac3-c381-4ace-9009-98621a4aeba7\n";
        let l = ClusterLog::parse(line);
        let c = u("acb82efc-627c-8994-982b-f7149c37427b");
        assert_eq!(l.get(&c).unwrap().len(), 3);
        assert_eq!(l.format(), line.to_vec());
        // Not a cluster UUID: dropped.
        assert!(ClusterLog::parse(b"1s b7681060-076a-4fc0-aab9-adfeb2bde4fd x y\n").is_empty());
        // Dead nodes are removed as a separate step.
        let dead = [u("350e264d-a98e-4449-affe-9cdb92de9916")]
            .into_iter()
            .collect();
        let cl = Clusters::new(&l, &dead);
        assert_eq!(cl.nodes[&c].len(), 2);
        assert!(cl
            .clusters_for([&u("350e264d-a98e-4449-affe-9cdb92de9916")])
            .is_empty());
        assert_eq!(
            cl.clusters_for([&u("72e8e007-25ba-4852-ad74-ad6e65919798")]),
            [c.clone()].into_iter().collect()
        );
    }

    #[test]
    fn remote_state_fixture() {
        let l = RemoteStateLog::parse(
            b"1795644879s 43cbde97-ab93-4844-b44c-9688250e3bc2 stored-by-pylog\n",
        );
        assert_eq!(
            l.get(&u("43cbde97-ab93-4844-b44c-9688250e3bc2")).unwrap(),
            b"stored-by-pylog"
        );
    }

    #[test]
    fn export_log_fields() {
        let l = ExportLog::parse(b"1s a:b t1 t2\n1s :b t\n1s a: t\n");
        assert_eq!(l.len(), 1);
        assert_eq!(l.get(&b"a:b".to_vec()).unwrap(), b"t1 t2");
    }

    #[test]
    fn set_trust_respects_clock() {
        let mut l = TrustLog::parse(b"a 1 timestamp=100s\n");
        assert!(l.set(u("a"), TrustLevel::Dead, Timestamp::from_secs(100)));
        assert_eq!(l.format(), b"a X timestamp=101s\n".to_vec());
    }

    fn arb_uuid() -> impl Strategy<Value = Uuid> {
        "[a-c]{1,2}".prop_map(|s| Uuid::parse(&s).unwrap())
    }
    fn arb_cluster_uuid() -> impl Strategy<Value = Uuid> {
        "ac[0-9]{12}8[0-9]{2}".prop_map(|s| Uuid::parse(&s).unwrap())
    }
    fn arb_word() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,4}"
    }
    fn arb_config() -> impl Strategy<Value = RemoteConfig> {
        proptest::collection::btree_map("[a-z-]{1,5}", "[a-z&= \t\u{a0}é]{0,5}", 0..4)
    }
    fn arb_trust() -> impl Strategy<Value = TrustLevel> {
        prop_oneof![
            Just(TrustLevel::Dead),
            Just(TrustLevel::Untrusted),
            Just(TrustLevel::SemiTrusted),
            Just(TrustLevel::Trusted)
        ]
    }
    fn arb_proxy() -> impl Strategy<Value = Proxy> {
        (arb_uuid(), arb_word()).prop_map(|(uuid, name)| Proxy { uuid, name })
    }

    proptest! {
        #[test]
        fn laws_uuid_log(a in arb_log::<DescriptionFormat>(arb_uuid(), "[a-z ]{0,6}".prop_map(|s| s.into_bytes())),
                         b in arb_log::<DescriptionFormat>(arb_uuid(), "[a-z ]{0,6}".prop_map(|s| s.into_bytes())),
                         c in arb_log::<DescriptionFormat>(arb_uuid(), "[a-z ]{0,6}".prop_map(|s| s.into_bytes()))) {
            check_laws(&a, &b, &c)?;
        }
        #[test]
        fn laws_remote_log(a in arb_log::<RemoteConfigFormat>(arb_uuid(), arb_config()),
                           b in arb_log::<RemoteConfigFormat>(arb_uuid(), arb_config()),
                           c in arb_log::<RemoteConfigFormat>(arb_uuid(), arb_config())) {
            check_laws(&a, &b, &c)?;
        }
        #[test]
        fn laws_trust_log(a in arb_log::<TrustFormat>(arb_uuid(), arb_trust()),
                          b in arb_log::<TrustFormat>(arb_uuid(), arb_trust()),
                          c in arb_log::<TrustFormat>(arb_uuid(), arb_trust())) {
            check_laws(&a, &b, &c)?;
        }
        #[test]
        fn laws_group_log(a in arb_log::<GroupFormat>(arb_uuid(), proptest::collection::btree_set(arb_word(), 0..3)),
                          b in arb_log::<GroupFormat>(arb_uuid(), proptest::collection::btree_set(arb_word(), 0..3)),
                          c in arb_log::<GroupFormat>(arb_uuid(), proptest::collection::btree_set(arb_word(), 0..3))) {
            check_laws(&a, &b, &c)?;
        }
        #[test]
        fn laws_expression_log(a in arb_log::<ExpressionFormat>(arb_uuid(), "[a-z=* ]{0,8}"),
                               b in arb_log::<ExpressionFormat>(arb_uuid(), "[a-z=* ]{0,8}"),
                               c in arb_log::<ExpressionFormat>(arb_uuid(), "[a-z=* ]{0,8}")) {
            check_laws(&a, &b, &c)?;
        }
        #[test]
        fn laws_maxsize_log(a in arb_log::<MaxSizeFormat>(arb_uuid(), any::<u64>()),
                            b in arb_log::<MaxSizeFormat>(arb_uuid(), any::<u64>()),
                            c in arb_log::<MaxSizeFormat>(arb_uuid(), any::<u64>())) {
            check_laws(&a, &b, &c)?;
        }
        #[test]
        fn laws_proxy_log(a in arb_log::<ProxyFormat>(arb_uuid(), proptest::collection::btree_set(arb_proxy(), 0..3)),
                          b in arb_log::<ProxyFormat>(arb_uuid(), proptest::collection::btree_set(arb_proxy(), 0..3)),
                          c in arb_log::<ProxyFormat>(arb_uuid(), proptest::collection::btree_set(arb_proxy(), 0..3))) {
            check_laws(&a, &b, &c)?;
        }
        #[test]
        fn laws_cluster_log(a in arb_log::<ClusterFormat>(arb_cluster_uuid(), proptest::collection::btree_set(arb_uuid(), 0..3)),
                            b in arb_log::<ClusterFormat>(arb_cluster_uuid(), proptest::collection::btree_set(arb_uuid(), 0..3)),
                            c in arb_log::<ClusterFormat>(arb_cluster_uuid(), proptest::collection::btree_set(arb_uuid(), 0..3))) {
            check_laws(&a, &b, &c)?;
        }
        #[test]
        fn laws_export_log(a in arb_log::<ExportFormat>("[a-b]:[a-b]".prop_map(|s| s.into_bytes()), "[0-9a-f]{2}( [0-9a-f]{2})?".prop_map(|s| s.into_bytes())),
                           b in arb_log::<ExportFormat>("[a-b]:[a-b]".prop_map(|s| s.into_bytes()), "[0-9a-f]{2}( [0-9a-f]{2})?".prop_map(|s| s.into_bytes())),
                           c in arb_log::<ExportFormat>("[a-b]:[a-b]".prop_map(|s| s.into_bytes()), "[0-9a-f]{2}( [0-9a-f]{2})?".prop_map(|s| s.into_bytes()))) {
            check_laws(&a, &b, &c)?;
        }
    }
}
