//! The gateway's remotes as git-annex sees them, computed without I/O from git config and
//! the git-annex branch: each remote's UUID, kind (local git repository, ssh, annex+http,
//! special remote), cost and proxy/cluster settings, plus the *instantiated* remotes
//! git-annex creates for every repository another proxy remote proxies (`<remote>-<name>`,
//! spec `clusters-and-proxies.md` §3).
//!
//! On top of that list: which UUIDs this gateway may proxy for (its own proxy.log entry and
//! its config agreeing, §1), which remotes are a cluster's nodes for a session (§5 step 3),
//! and what `updateproxy` / `updatecluster` would record.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::branch::log::uuidlogs::{Proxy, RemoteConfig};
use crate::branch::repo::GitConfig;
use crate::types::Uuid;

/// git-annex's default costs (Config/Cost.hs).
pub const CHEAP_COST: f64 = 100.0;
pub const EXPENSIVE_COST: f64 = 200.0;

/// How a remote is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteKind {
    /// A git repository on a local path.
    LocalGit(PathBuf),
    /// A git repository over ssh (the URL as configured).
    Ssh(String),
    /// A git repository with an `annex+http(s)://` annex URL.
    Http(String),
    /// A special remote of this type (`directory`, `S3`, `external`, ...), with its
    /// effective configuration from remote.log.
    Special { kind: String, config: RemoteConfig },
    /// Something else (a plain http git remote without annexurl, gcrypt, ...).
    Other(String),
}

/// One remote of the gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteInfo {
    pub name: String,
    pub uuid: Option<Uuid>,
    pub kind: RemoteKind,
    pub cost: f64,
    /// `remote.<r>.annex-proxy`.
    pub proxy: bool,
    /// `remote.<r>.annex-cluster-node`: the cluster names it is a node of.
    pub cluster_node: Vec<String>,
    /// `remote.<r>.annex-cluster-gateway`: clusters it is another gateway of.
    pub cluster_gateway: Vec<Uuid>,
    /// For an instantiated remote: the UUID of the proxy remote it is reached through.
    pub proxied_by: Option<Uuid>,
    /// `remote.<r>.annex-ignore`.
    pub ignore: bool,
    /// Every `remote.<r>.*` setting (inherited ones included for instantiated remotes).
    pub settings: BTreeMap<String, String>,
}

/// Settings an instantiated remote inherits from its proxy remote (git-annex's list).
const INHERITED: &[&str] = &[
    "annex-cost",
    "annex-cost-command",
    "annex-ignore",
    "annex-ignore-auto",
    "annex-ignore-command",
    "annex-sync",
    "annex-sync-command",
    "annex-pull",
    "annex-push",
    "annex-readonly",
    "annex-verify",
    "annex-fastcopy",
    "annex-speculate-present",
    "annex-bare",
    "annex-retry",
    "annex-forward-retry",
    "annex-retrydelay",
    "annex-stalldetection",
    "annex-stalldetection-upload",
    "annex-stalldetection-download",
    "annex-bwlimit",
    "annex-bwlimit-upload",
    "annex-bwlimit-download",
    "annex-security-allow-unverified-downloads",
    "annex-web-options",
    "annex-max-git-bundles",
    "annex-allow-encrypted-gitrepo",
    "annex-proxy",
    "annex-shell",
    "annex-ssh-options",
];

/// Special remote types git-annex recognises by a `remote.<r>.annex-<type>` key.
const SPECIAL_MARKERS: &[(&str, &str)] = &[
    ("annex-directory", "directory"),
    ("annex-externaltype", "external"),
    ("annex-s3", "S3"),
    ("annex-rsyncurl", "rsync"),
    ("annex-webdav", "webdav"),
    ("annex-adb", "adb"),
    ("annex-borgrepo", "borg"),
    ("annex-rclone", "rclone"),
    ("annex-httpalso", "httpalso"),
    ("annex-hook", "hook"),
    ("annex-bup", "bup"),
    ("annex-ddar", "ddar"),
    ("annex-gcrypt", "gcrypt"),
    ("annex-git-lfs", "git-lfs"),
    ("annex-glacier", "glacier"),
    ("annex-web", "web"),
    ("annex-bittorrent", "bittorrent"),
];

/// The facts from the git-annex branch the view needs.
#[derive(Debug, Clone, Default)]
pub struct BranchFacts {
    /// proxy.log: proxy UUID -> the repositories it proxies (legal names only).
    pub proxies: BTreeMap<Uuid, BTreeSet<Proxy>>,
    /// cluster.log with dead nodes removed: cluster UUID -> node UUIDs.
    pub clusters: BTreeMap<Uuid, BTreeSet<Uuid>>,
    /// remote.log, effective (sameas applied): UUID -> config.
    pub remote_configs: BTreeMap<Uuid, RemoteConfig>,
    /// uuid.log descriptions.
    pub descriptions: BTreeMap<Uuid, String>,
    /// Dead repositories (trust.log `X`).
    pub dead: BTreeSet<Uuid>,
}

/// The gateway's view of itself and its remotes.
#[derive(Debug, Clone)]
pub struct GatewayView {
    pub uuid: Uuid,
    /// `annex.cluster.<name>` = cluster UUID.
    pub my_clusters: BTreeMap<String, Uuid>,
    /// Every remote, real and instantiated, sorted by cost then name.
    pub remotes: Vec<RemoteInfo>,
    pub facts: BranchFacts,
    /// UUIDs configured private: never written to proxy.log or cluster.log.
    pub private: BTreeSet<Uuid>,
}

fn bool_setting(s: &BTreeMap<String, String>, k: &str) -> bool {
    s.get(k).is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "true" | "yes" | "on" | "1" | ""
        )
    })
}

/// Classify a git remote URL.
pub fn classify_url(url: &str, annexurl: Option<&str>) -> RemoteKind {
    if let Some(a) = annexurl {
        if a.starts_with("annex+http://") || a.starts_with("annex+https://") {
            return RemoteKind::Http(a.to_string());
        }
    }
    if let Some(p) = url.strip_prefix("file://") {
        return RemoteKind::LocalGit(PathBuf::from(p));
    }
    if url.starts_with("ssh://") || url.starts_with("git+ssh://") || url.starts_with("ssh+git://") {
        return RemoteKind::Ssh(url.to_string());
    }
    if url.starts_with("annex+http://") || url.starts_with("annex+https://") {
        return RemoteKind::Http(url.to_string());
    }
    if url.contains("://") {
        return RemoteKind::Other(url.to_string());
    }
    // scp-like `host:path` (a colon before any slash), as git reads it.
    if let Some(colon) = url.find(':') {
        let slash = url.find('/').unwrap_or(usize::MAX);
        if colon < slash && colon > 0 {
            return RemoteKind::Ssh(url.to_string());
        }
    }
    RemoteKind::LocalGit(PathBuf::from(url))
}

impl GatewayView {
    /// Build the view from git config and branch facts.
    pub fn new(cfg: &GitConfig, uuid: Uuid, facts: BranchFacts) -> GatewayView {
        let mut remotes = Vec::new();
        for name in cfg.remotes() {
            let settings = cfg.remote_settings(&name);
            let uuid = settings.get("annex-uuid").and_then(|u| Uuid::parse(u).ok());
            let special = SPECIAL_MARKERS
                .iter()
                .find(|(k, _)| settings.contains_key(*k))
                .map(|(_, t)| t.to_string());
            let kind = if let Some(t) = special {
                let mut config = uuid
                    .as_ref()
                    .and_then(|u| facts.remote_configs.get(u).cloned())
                    .unwrap_or_default();
                let stored_type = config.get("type").cloned();
                if let Some(d) = settings.get("annex-directory") {
                    config.insert("directory".into(), d.clone());
                }
                RemoteKind::Special {
                    kind: stored_type.unwrap_or(t),
                    config,
                }
            } else if let Some(url) = settings.get("url") {
                classify_url(url, settings.get("annexurl").map(String::as_str))
            } else if let Some(a) = settings.get("annexurl") {
                classify_url("", Some(a))
            } else {
                RemoteKind::Other(String::new())
            };
            let default_cost = match &kind {
                RemoteKind::LocalGit(_) => CHEAP_COST,
                RemoteKind::Special { kind, .. } if kind == "directory" => CHEAP_COST,
                _ => EXPENSIVE_COST,
            };
            let cost = settings
                .get("annex-cost")
                .and_then(|c| c.trim().parse::<f64>().ok())
                .unwrap_or(default_cost);
            let words = |k: &str| -> Vec<String> {
                settings
                    .get(k)
                    .map(|v| v.split_whitespace().map(str::to_string).collect())
                    .unwrap_or_default()
            };
            remotes.push(RemoteInfo {
                proxy: bool_setting(&settings, "annex-proxy"),
                cluster_node: words("annex-cluster-node"),
                cluster_gateway: words("annex-cluster-gateway")
                    .iter()
                    .filter_map(|u| Uuid::parse(u).ok())
                    .collect(),
                proxied_by: settings
                    .get("annex-proxied-by")
                    .and_then(|u| Uuid::parse(u).ok()),
                ignore: bool_setting(&settings, "annex-ignore"),
                name,
                uuid,
                kind,
                cost,
                settings,
            });
        }
        // Instantiated remotes for what each ssh/http proxy remote proxies.
        let configured: BTreeSet<String> = remotes.iter().map(|r| r.name.clone()).collect();
        let mut instantiated = Vec::new();
        for r in &remotes {
            if !matches!(r.kind, RemoteKind::Ssh(_) | RemoteKind::Http(_)) {
                continue;
            }
            let Some(ru) = &r.uuid else { continue };
            let Some(proxied) = facts.proxies.get(ru) else {
                continue;
            };
            let proxied_uuids: BTreeSet<&Uuid> = proxied.iter().map(|p| &p.uuid).collect();
            for p in proxied {
                let name = format!("{}-{}", r.name, p.name);
                if configured.contains(&name) {
                    continue;
                }
                let mut settings: BTreeMap<String, String> = BTreeMap::new();
                for k in INHERITED {
                    if let Some(v) = r.settings.get(*k) {
                        settings.insert((*k).to_string(), v.clone());
                    }
                }
                // A node of a cluster proxied by the same remote costs a little more.
                let node_of_proxied_cluster = facts
                    .clusters
                    .iter()
                    .any(|(c, nodes)| nodes.contains(&p.uuid) && proxied_uuids.contains(c));
                let cost = if node_of_proxied_cluster {
                    r.cost + 0.1
                } else {
                    r.cost
                };
                if let Some(url) = r.settings.get("url") {
                    settings.insert("url".into(), url.clone());
                }
                if let Some(a) = r.settings.get("annexurl") {
                    settings.insert("annexurl".into(), a.clone());
                }
                settings.insert("annex-uuid".into(), p.uuid.to_string());
                settings.insert("annex-proxied-by".into(), ru.to_string());
                instantiated.push(RemoteInfo {
                    name,
                    uuid: Some(p.uuid.clone()),
                    kind: r.kind.clone(),
                    cost,
                    proxy: bool_setting(&settings, "annex-proxy"),
                    cluster_node: Vec::new(),
                    cluster_gateway: Vec::new(),
                    proxied_by: Some(ru.clone()),
                    ignore: bool_setting(&settings, "annex-ignore"),
                    settings,
                });
            }
        }
        remotes.extend(instantiated);
        remotes.sort_by(|a, b| {
            a.cost
                .partial_cmp(&b.cost)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.name.cmp(&b.name))
        });
        GatewayView {
            uuid,
            my_clusters: cfg.clusters(),
            remotes,
            private: cfg.private_uuids(),
            facts,
        }
    }

    pub fn remote(&self, name: &str) -> Option<&RemoteInfo> {
        self.remotes.iter().find(|r| r.name == name)
    }

    /// git-annex's `proxyisconfigured`: may this gateway proxy for remote `r`?
    fn proxy_configured(&self, r: &RemoteInfo) -> bool {
        if r.proxy {
            return true;
        }
        if r.cluster_node
            .iter()
            .any(|n| self.my_clusters.contains_key(n))
        {
            return true;
        }
        match &r.proxied_by {
            Some(pu) => self
                .remotes
                .iter()
                .any(|g| g.uuid.as_ref() == Some(pu) && !g.cluster_gateway.is_empty()),
            None => false,
        }
    }

    /// What a client naming `wanted` reaches (git-annex-shell's `--uuid` rules).
    pub fn resolve(&self, wanted: &Uuid) -> Resolution {
        if *wanted == self.uuid {
            return Resolution::Local;
        }
        let mine = self.facts.proxies.get(&self.uuid);
        let listed: Vec<&Proxy> = mine
            .map(|s| s.iter().filter(|p| p.uuid == *wanted).collect())
            .unwrap_or_default();
        if !listed.is_empty() {
            if wanted.is_cluster() {
                if self.facts.clusters.contains_key(wanted) {
                    let name = self
                        .my_clusters
                        .iter()
                        .find(|(_, u)| *u == wanted)
                        .map(|(n, _)| n.clone())
                        .or_else(|| listed.first().map(|p| p.name.clone()))
                        .unwrap_or_default();
                    return Resolution::Cluster {
                        uuid: wanted.clone(),
                        name,
                    };
                }
            } else if let Some(r) = self.remotes.iter().find(|r| {
                r.uuid.as_ref() == Some(wanted)
                    && self.proxy_configured(r)
                    && listed.iter().any(|p| p.name == r.name)
            }) {
                return Resolution::Remote(Box::new(r.clone()));
            }
        }
        match self.facts.descriptions.get(wanted) {
            Some(d) => Resolution::NotProxied {
                description: d.clone(),
            },
            None => Resolution::Unknown,
        }
    }

    /// The remotes that are cluster `cluster`'s nodes for a session whose client sent
    /// `bypass` (git-annex's `clusterProxySelector`), cheapest first.
    pub fn cluster_nodes(&self, cluster: &Uuid, bypass: &[Uuid]) -> Vec<RemoteInfo> {
        let nodes = self
            .facts
            .clusters
            .get(cluster)
            .cloned()
            .unwrap_or_default();
        let mut bypass: BTreeSet<&Uuid> = bypass.iter().collect();
        bypass.insert(&self.uuid);
        self.remotes
            .iter()
            .filter(|r| {
                if !r.cluster_node.is_empty() {
                    r.cluster_node
                        .iter()
                        .any(|n| self.my_clusters.get(n) == Some(cluster))
                        && r.uuid.as_ref().is_some_and(|u| nodes.contains(u))
                } else {
                    // The same cluster, proxied by another gateway of it.
                    r.uuid.as_ref() == Some(cluster)
                        && r.proxied_by.as_ref().is_some_and(|pu| {
                            !bypass.contains(pu)
                                && self.remotes.iter().any(|g| {
                                    g.uuid.as_ref() == Some(pu)
                                        && g.cluster_gateway.contains(cluster)
                                })
                        })
                }
            })
            .cloned()
            .collect()
    }

    /// What `updateproxy` records for this gateway: every remote with `annex-proxy` or
    /// `annex-cluster-node` (with a known UUID), each cluster it is a gateway for, and nodes
    /// of its clusters reached through other gateways, minus what it proxies directly.
    pub fn proxies_to_record(&self) -> (BTreeSet<Proxy>, Vec<String>) {
        let mut warnings = Vec::new();
        let mut direct = BTreeSet::new();
        for r in self.remotes.iter().filter(|r| r.proxied_by.is_none()) {
            if !r.proxy && r.cluster_node.is_empty() {
                continue;
            }
            match &r.uuid {
                None => warnings.push(format!(
                    "{} is a git remote without a known annex-uuid. Cannot proxy to this remote.",
                    r.name
                )),
                Some(u) => {
                    if let RemoteKind::Special { config, .. } = &r.kind {
                        if config.get("exporttree").map(String::as_str) == Some("yes")
                            && config.get("annexobjects").map(String::as_str) != Some("yes")
                        {
                            warnings.push(format!(
                                "{} is a special remote configured with exporttree=yes, but without annexobjects=yes. Cannot proxy to this remote. Suggest you run: git-annex enableremote {} annexobjects=yes",
                                r.name, r.name
                            ));
                            continue;
                        }
                    }
                    direct.insert(Proxy {
                        uuid: u.clone(),
                        name: r.name.clone(),
                    });
                }
            }
        }
        let clusters: Vec<Proxy> = self
            .my_clusters
            .iter()
            .map(|(n, u)| Proxy {
                uuid: u.clone(),
                name: n.clone(),
            })
            .collect();
        let mine: BTreeSet<Uuid> = direct
            .iter()
            .map(|p| p.uuid.clone())
            .chain(clusters.iter().map(|p| p.uuid.clone()))
            .collect();
        let my_cluster_uuids: BTreeSet<&Uuid> = self.my_clusters.values().collect();
        let remote_proxied_nodes = self.remotes.iter().filter_map(|r| {
            let u = r.uuid.as_ref()?;
            r.proxied_by.as_ref()?;
            let in_my_cluster = self
                .facts
                .clusters
                .iter()
                .any(|(c, nodes)| my_cluster_uuids.contains(c) && nodes.contains(u));
            (in_my_cluster && !mine.contains(u)).then(|| Proxy {
                uuid: u.clone(),
                name: r.name.clone(),
            })
        });
        let mut all: BTreeSet<Proxy> = direct;
        all.extend(clusters);
        all.extend(remote_proxied_nodes);
        all.retain(|p| !self.private.contains(&p.uuid));
        (all, warnings)
    }

    /// What `updatecluster` records for each cluster this gateway serves: its directly
    /// configured nodes plus recorded nodes reachable through other gateways. Returns
    /// (cluster name, cluster UUID, directly configured node remotes, new node set).
    pub fn clusters_to_record(&self) -> Vec<(String, Uuid, Vec<RemoteInfo>, BTreeSet<Uuid>)> {
        let mut out = Vec::new();
        for (name, cu) in &self.my_clusters {
            let mine: Vec<RemoteInfo> = self
                .remotes
                .iter()
                .filter(|r| {
                    r.proxied_by.is_none()
                        && r.uuid.is_some()
                        && r.cluster_node.iter().any(|n| n == name)
                })
                .cloned()
                .collect();
            let recorded = self.facts.clusters.get(cu).cloned().unwrap_or_default();
            let via_gateways = self.remotes.iter().filter_map(|r| {
                let u = r.uuid.as_ref()?;
                (recorded.contains(u) && r.proxied_by.is_some()).then(|| u.clone())
            });
            let mut all: BTreeSet<Uuid> = mine.iter().filter_map(|r| r.uuid.clone()).collect();
            all.extend(via_gateways);
            all.retain(|u| !self.private.contains(u));
            out.push((name.clone(), cu.clone(), mine, all));
        }
        out
    }
}

/// What a UUID named by a client selects.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    Local,
    Remote(Box<RemoteInfo>),
    Cluster {
        uuid: Uuid,
        name: String,
    },
    /// A repository with this description that the gateway does not proxy.
    NotProxied {
        description: String,
    },
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Uuid {
        Uuid::parse(s).unwrap()
    }
    const GW: &str = "b7681060-076a-4fc0-aab9-adfeb2bde4fd";
    const C: &str = "acb82efc-627c-8994-982b-f7149c37427b";
    const N1: &str = "b9330ac3-c381-4ace-9009-98621a4aeba7";
    const N2: &str = "350e264d-a98e-4449-affe-9cdb92de9916";
    const N3: &str = "72e8e007-25ba-4852-ad74-ad6e65919798";

    fn gateway_config() -> GitConfig {
        GitConfig::from_pairs([
            ("annex.uuid", GW),
            ("annex.cluster.mycluster", C),
            ("remote.node1.url", "/srv/node1.git"),
            ("remote.node1.annex-uuid", N1),
            ("remote.node1.annex-cluster-node", "mycluster"),
            ("remote.node2.url", "/srv/node2.git"),
            ("remote.node2.annex-uuid", N2),
            ("remote.node2.annex-cluster-node", "mycluster"),
            ("remote.node3.annex-directory", "/srv/d3"),
            ("remote.node3.annex-uuid", N3),
            ("remote.node3.annex-cluster-node", "mycluster"),
            ("remote.other.url", "host:/srv/other.git"),
            ("remote.nouuid.url", "/srv/x.git"),
            ("remote.nouuid.annex-proxy", "true"),
        ])
    }

    #[test]
    fn what_updateproxy_and_updatecluster_record() {
        let v = GatewayView::new(&gateway_config(), u(GW), BranchFacts::default());
        let (proxies, warnings) = v.proxies_to_record();
        let names: Vec<&str> = proxies.iter().map(|p| p.name.as_str()).collect();
        // Sorted by UUID, as git-annex's set is.
        assert_eq!(names, ["node2", "node3", "mycluster", "node1"]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("nouuid is a git remote without a known annex-uuid"));
        let clusters = v.clusters_to_record();
        assert_eq!(clusters.len(), 1);
        assert_eq!(clusters[0].3, [u(N1), u(N2), u(N3)].into_iter().collect());
    }

    #[test]
    fn resolution_needs_log_and_config() {
        let mut facts = BranchFacts::default();
        let v0 = GatewayView::new(&gateway_config(), u(GW), facts.clone());
        // Not yet in proxy.log: not proxied even though configured.
        assert_eq!(v0.resolve(&u(N1)), Resolution::Unknown);
        let (proxies, _) = v0.proxies_to_record();
        facts.proxies.insert(u(GW), proxies);
        facts
            .clusters
            .insert(u(C), [u(N1), u(N2), u(N3)].into_iter().collect());
        facts.descriptions.insert(u(N1), "node one".into());
        let v = GatewayView::new(&gateway_config(), u(GW), facts.clone());
        assert_eq!(v.resolve(&u(GW)), Resolution::Local);
        assert!(matches!(v.resolve(&u(N1)), Resolution::Remote(r) if r.name == "node1"));
        assert!(
            matches!(v.resolve(&u(N3)), Resolution::Remote(r) if matches!(&r.kind, RemoteKind::Special{kind, ..} if kind == "directory"))
        );
        assert_eq!(
            v.resolve(&u(C)),
            Resolution::Cluster {
                uuid: u(C),
                name: "mycluster".into()
            }
        );
        let nodes: Vec<String> = v
            .cluster_nodes(&u(C), &[])
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(nodes, ["node1", "node2", "node3"]);
        // A configured remote that the config no longer allows is refused with its
        // description.
        let cfg = GitConfig::from_pairs([
            ("annex.uuid", GW),
            ("remote.node1.url", "/srv/node1.git"),
            ("remote.node1.annex-uuid", N1),
        ]);
        let v2 = GatewayView::new(&cfg, u(GW), facts);
        assert_eq!(
            v2.resolve(&u(N1)),
            Resolution::NotProxied {
                description: "node one".into()
            }
        );
    }

    #[test]
    fn instantiated_remotes_and_multi_gateway_clusters() {
        const GB: &str = "11111111-2222-4333-8444-555555555555";
        const N4: &str = "44444444-2222-4333-8444-555555555555";
        let cfg = GitConfig::from_pairs([
            ("annex.uuid", GW),
            ("annex.cluster.mycluster", C),
            ("remote.node1.url", "/srv/node1.git"),
            ("remote.node1.annex-uuid", N1),
            ("remote.node1.annex-cluster-node", "mycluster"),
            ("remote.b.url", "ssh://hostb/srv/gwb.git"),
            ("remote.b.annex-uuid", GB),
            ("remote.b.annex-cluster-gateway", C),
        ]);
        let mut facts = BranchFacts::default();
        facts.proxies.insert(
            u(GB),
            [
                Proxy {
                    uuid: u(C),
                    name: "mycluster".into(),
                },
                Proxy {
                    uuid: u(N4),
                    name: "node4".into(),
                },
            ]
            .into_iter()
            .collect(),
        );
        facts
            .clusters
            .insert(u(C), [u(N1), u(N4)].into_iter().collect());
        let v = GatewayView::new(&cfg, u(GW), facts.clone());
        let b_node4 = v.remote("b-node4").expect("instantiated");
        assert_eq!(b_node4.proxied_by, Some(u(GB)));
        assert_eq!(b_node4.cost, 200.1);
        assert!(matches!(b_node4.kind, RemoteKind::Ssh(_)));
        // Cluster nodes: node1 directly, and the cluster via gateway b unless bypassed.
        let names = |bypass: &[Uuid]| -> Vec<String> {
            v.cluster_nodes(&u(C), bypass)
                .into_iter()
                .map(|r| r.name)
                .collect()
        };
        assert_eq!(names(&[]), ["node1", "b-mycluster"]);
        assert_eq!(names(&[u(GB)]), ["node1"]);
        // updateproxy records node4 (reached through b), updatecluster keeps it.
        let (proxies, _) = v.proxies_to_record();
        assert!(proxies.iter().any(|p| p.name == "b-node4"));
        assert!(
            !proxies.iter().any(|p| p.name == "b-mycluster"),
            "the cluster itself is proxied directly"
        );
        let c = v.clusters_to_record();
        assert_eq!(c[0].3, [u(N1), u(N4)].into_iter().collect());
    }

    #[test]
    fn urls() {
        assert_eq!(
            classify_url("/a/b", None),
            RemoteKind::LocalGit("/a/b".into())
        );
        assert_eq!(
            classify_url("../b", None),
            RemoteKind::LocalGit("../b".into())
        );
        assert_eq!(
            classify_url("file:///a", None),
            RemoteKind::LocalGit("/a".into())
        );
        assert_eq!(classify_url("h:/a", None), RemoteKind::Ssh("h:/a".into()));
        assert_eq!(classify_url("u@h:a", None), RemoteKind::Ssh("u@h:a".into()));
        assert_eq!(
            classify_url("ssh://h/a", None),
            RemoteKind::Ssh("ssh://h/a".into())
        );
        assert_eq!(
            classify_url("./a:b", None),
            RemoteKind::LocalGit("./a:b".into())
        );
        assert_eq!(
            classify_url("https://h/r", Some("annex+https://h/git-annex")),
            RemoteKind::Http("annex+https://h/git-annex".into())
        );
    }
}
