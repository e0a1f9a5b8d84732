//! p2phttp URLs as git-annex's client computes them (spec `p2phttp.md` §1), without I/O.
//!
//! An annex URL is `annex+http://host[:port]/path` or `annex+https://…`. The base the
//! client talks to is `http(s)://host:port` plus the path, where the port defaults to
//! 9417 for both schemes, and a path that is exactly `/git-annex` (the usual form, since
//! every API route starts with `/git-annex/`) counts as no path at all. Any other path is
//! a prefix: `annex+http://h/p2p` makes requests to `http://h:9417/p2p/git-annex/…`.
//! Empty path components and a trailing `/` are dropped, as git-annex's path splitting
//! does — with one deliberate difference: git-annex keeps a path of just `/` and then
//! requests `//git-annex/…`, which its own server answers `404`; we request
//! `/git-annex/…` (tests/it compares both clients' requests).
//!
//! Requests are `{base}/git-annex/{server uuid}/v{n}/{endpoint}?{query}`; values in the
//! path and query are first put in the API's text form (as they are when UTF-8, else
//! `[base64url]`), then percent-encoded.
//!
//! Credentials are asked for the remote's git URL when the annex URL is on the same host
//! (both http(s), host names compared without case), else for the annex URL itself.

use crate::http::route::encode_value;

/// The default p2phttp port (git's is 9418).
pub const DEFAULT_PORT: u16 = 9417;

/// Why an annex URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{url}: not an annex+http:// or annex+https:// URL")]
    NotP2pHttp { url: String },
    #[error("{url}: no host")]
    NoHost { url: String },
    #[error("{url}: bad port {port:?}")]
    BadPort { url: String, port: String },
}

/// A parsed annex URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct P2pHttpUrl {
    /// The URL as configured (`annex+http…`), for messages and credentials.
    pub original: String,
    pub https: bool,
    /// The host as written (an IPv6 literal keeps its brackets).
    pub host: String,
    pub port: u16,
    /// The path prefix before `/git-annex/…`: empty or starting with `/`, never ending
    /// with `/`. Still percent-encoded as written.
    pub base_path: String,
}

impl P2pHttpUrl {
    /// Parse `annex+http(s)://[user@]host[:port][/path][?query][#fragment]`.
    pub fn parse(url: &str) -> Result<P2pHttpUrl, UrlError> {
        let (https, rest) = if let Some(r) = url.strip_prefix("annex+http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("annex+https://") {
            (true, r)
        } else {
            return Err(UrlError::NotP2pHttp { url: url.into() });
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = if hostport.starts_with('[') {
            match hostport.find(']') {
                Some(i) => {
                    let (h, p) = hostport.split_at(i + 1);
                    (h, p.strip_prefix(':'))
                }
                None => (hostport, None),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::NoHost { url: url.into() });
        }
        let port = match port {
            None | Some("") => DEFAULT_PORT,
            Some(p) => p.parse::<u16>().map_err(|_| UrlError::BadPort {
                url: url.into(),
                port: p.into(),
            })?,
        };
        let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
        let parts: Vec<&str> = tail[..path_end]
            .split('/')
            .filter(|p| !p.is_empty())
            .collect();
        let base_path = if parts == ["git-annex"] {
            String::new()
        } else {
            parts.iter().map(|p| format!("/{p}")).collect()
        };
        Ok(P2pHttpUrl {
            original: url.to_string(),
            https,
            host: host.to_string(),
            port,
            base_path,
        })
    }

    /// `http(s)://host:port/prefix`, without a trailing `/`.
    pub fn base(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}:{}{}", self.host, self.port, self.base_path)
    }

    /// The URL of an API endpoint: `{base}/git-annex/{server}/v{version}/{endpoint}` (no
    /// version segment when `version` is `None`), endpoint segments encoded one by one.
    pub fn endpoint(&self, server: &str, version: Option<u8>, endpoint: &[&[u8]]) -> String {
        let mut s = format!(
            "{}/git-annex/{}",
            self.base(),
            encode_segment(server.as_bytes())
        );
        if let Some(v) = version {
            s.push_str(&format!("/v{v}"));
        }
        for seg in endpoint {
            s.push('/');
            s.push_str(&encode_segment(seg));
        }
        s
    }

    /// Where credentials are asked for: the remote's git URL when it is an http(s) URL on
    /// the same host, else the annex URL itself.
    pub fn credential_url(&self, git_url: Option<&str>) -> String {
        match git_url {
            Some(g) if url_host(g).is_some_and(|h| h.eq_ignore_ascii_case(&self.host)) => {
                g.to_string()
            }
            _ => self.original.clone(),
        }
    }
}

/// The host of an `http://` or `https://` URL.
fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let hostport = rest[..end]
        .rsplit_once('@')
        .map_or(&rest[..end], |(_, h)| h);
    let host = if hostport.starts_with('[') {
        hostport.find(']').map_or(hostport, |i| &hostport[..=i])
    } else {
        hostport.rsplit_once(':').map_or(hostport, |(h, _)| h)
    };
    (!host.is_empty()).then_some(host)
}

/// Percent-encode everything but RFC 3986's unreserved characters.
pub fn percent_encode(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for &c in b {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// A value (key, UUID, file name) as a path segment.
pub fn encode_segment(b: &[u8]) -> String {
    percent_encode(encode_value(b).as_bytes())
}

/// A query string from (name, raw value) pairs, values in the API's text form.
pub fn query(pairs: &[(&str, &[u8])]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k.as_bytes()), encode_segment(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::route::{decode_bytes, parse_query, path_segments};

    fn p(u: &str) -> P2pHttpUrl {
        P2pHttpUrl::parse(u).unwrap()
    }

    #[test]
    fn bases_as_git_annex_computes_them() {
        assert_eq!(p("annex+http://h/git-annex").base(), "http://h:9417");
        assert_eq!(p("annex+http://h/git-annex/").base(), "http://h:9417");
        assert_eq!(p("annex+http://h/").base(), "http://h:9417");
        assert_eq!(p("annex+http://h").base(), "http://h:9417");
        assert_eq!(p("annex+https://h:8443/").base(), "https://h:8443");
        assert_eq!(p("annex+http://h/p2p").base(), "http://h:9417/p2p");
        assert_eq!(
            p("annex+http://h//a//b/git-annex/").base(),
            "http://h:9417/a/b/git-annex",
            "only a path that is exactly /git-annex is dropped"
        );
        assert_eq!(
            p("annex+http://u:pw@[::1]:99/x?q#f").base(),
            "http://[::1]:99/x"
        );
        assert_eq!(p("annex+http://[::1]/").base(), "http://[::1]:9417");
        assert!(matches!(
            P2pHttpUrl::parse("http://h/"),
            Err(UrlError::NotP2pHttp { .. })
        ));
        assert!(matches!(
            P2pHttpUrl::parse("annex+http://h:port/"),
            Err(UrlError::BadPort { .. })
        ));
        assert!(matches!(
            P2pHttpUrl::parse("annex+http:///x"),
            Err(UrlError::NoHost { .. })
        ));
    }

    #[test]
    fn credentials_for_the_git_url_on_the_same_host() {
        let u = p("annex+http://Example.org/git-annex");
        assert_eq!(
            u.credential_url(Some("https://example.ORG/repo.git")),
            "https://example.ORG/repo.git"
        );
        assert_eq!(
            u.credential_url(Some("https://other.org/repo.git")),
            "annex+http://Example.org/git-annex"
        );
        assert_eq!(
            u.credential_url(Some("example.org:repo.git")),
            "annex+http://Example.org/git-annex",
            "an ssh git URL is not http"
        );
        assert_eq!(u.credential_url(None), "annex+http://Example.org/git-annex");
    }

    #[test]
    fn values_survive_the_server_side_decoding() {
        let u = p("annex+http://h/");
        let odd: &[u8] = b"SHA256E-s1--ab c%&?#+/[x].txt";
        let url = u.endpoint("uuid-1", Some(4), &[b"key", odd]);
        let path = url.strip_prefix("http://h:9417").unwrap();
        let segs = path_segments(path);
        assert_eq!(segs[..4], ["git-annex", "uuid-1", "v4", "key"]);
        assert_eq!(decode_bytes(&segs[4]).unwrap(), odd);
        let bracketed: &[u8] = b"[looks base64]";
        let nonutf8: &[u8] = &[0xff, b'a', 0];
        let q = query(&[("associatedfile", nonutf8), ("key", bracketed), ("x", odd)]);
        let parsed = parse_query(&q);
        assert_eq!(parsed.len(), 3, "{q}");
        let vals: Vec<Vec<u8>> = parsed
            .iter()
            .map(|(_, v)| decode_bytes(v.as_deref().unwrap()).unwrap())
            .collect();
        assert_eq!(vals, [nonutf8, bracketed, odd]);
    }
}
