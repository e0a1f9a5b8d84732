//! What every [`super::HttpNode`] of one gateway shares: one HTTP client (so connections
//! to a server are kept alive and reused across nodes, requests and sessions), the
//! protocol version each server was found to speak, and the credentials that worked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::credential::{Credential, CredentialHelper};
use crate::types::Uuid;

/// Settings of an [`HttpPool`].
#[derive(Debug, Clone)]
pub struct HttpPoolOptions {
    /// How long opening a connection (TCP and TLS) may take. Default 30 s.
    pub connect_timeout: Duration,
    /// How long an unused connection is kept open for reuse. Default 90 s.
    pub idle_timeout: Duration,
    /// Unused connections kept per server. Default 16.
    pub max_idle_per_host: usize,
    /// Where credentials come from when a server asks for them.
    pub credentials: CredentialHelper,
    /// Certificates (PEM) trusted besides the system's, for HTTPS servers.
    pub extra_roots_pem: Vec<Vec<u8>>,
}

impl Default for HttpPoolOptions {
    fn default() -> Self {
        HttpPoolOptions {
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            max_idle_per_host: 16,
            credentials: CredentialHelper::default(),
            extra_roots_pem: Vec::new(),
        }
    }
}

/// Why a pool could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("bad certificate: {0}")]
    Certificate(#[source] reqwest::Error),
    #[error("cannot set up the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// A shared HTTP client with its caches. Clones share everything.
#[derive(Clone)]
pub struct HttpPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    client: reqwest::Client,
    helper: CredentialHelper,
    /// (base URL, server UUID) -> the version the server answered at.
    versions: Mutex<HashMap<(String, Uuid), u8>>,
    /// Credential URL -> a credential that worked.
    credentials: Mutex<HashMap<String, Credential>>,
    /// One `git credential fill` at a time, so a burst of refused requests asks once.
    filling: tokio::sync::Mutex<()>,
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl HttpPool {
    pub fn new(opts: HttpPoolOptions) -> Result<HttpPool, PoolError> {
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("annexgate/", env!("CARGO_PKG_VERSION")))
            .http1_only()
            .connect_timeout(opts.connect_timeout)
            .pool_idle_timeout(opts.idle_timeout)
            .pool_max_idle_per_host(opts.max_idle_per_host)
            .tcp_keepalive(Duration::from_secs(60))
            .tcp_nodelay(true);
        for pem in &opts.extra_roots_pem {
            let certs =
                reqwest::Certificate::from_pem_bundle(pem).map_err(PoolError::Certificate)?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let client = b.build().map_err(PoolError::Client)?;
        Ok(HttpPool {
            inner: Arc::new(PoolInner {
                client,
                helper: opts.credentials,
                versions: Mutex::new(HashMap::new()),
                credentials: Mutex::new(HashMap::new()),
                filling: tokio::sync::Mutex::new(()),
            }),
        })
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.inner.client
    }

    pub(crate) fn helper(&self) -> &CredentialHelper {
        &self.inner.helper
    }

    pub(crate) fn version(&self, base: &str, uuid: &Uuid) -> Option<u8> {
        guard(&self.inner.versions)
            .get(&(base.to_string(), uuid.clone()))
            .copied()
    }

    pub(crate) fn set_version(&self, base: &str, uuid: &Uuid, v: u8) {
        guard(&self.inner.versions).insert((base.to_string(), uuid.clone()), v);
    }

    pub(crate) fn credential(&self, url: &str) -> Option<Credential> {
        guard(&self.inner.credentials).get(url).cloned()
    }

    pub(crate) fn remember(&self, url: &str, c: Credential) {
        guard(&self.inner.credentials).insert(url.to_string(), c);
    }

    pub(crate) fn forget(&self, url: &str, c: &Credential) {
        let mut m = guard(&self.inner.credentials);
        if m.get(url) == Some(c) {
            m.remove(url);
        }
    }

    pub(crate) async fn filling(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.filling.lock().await
    }
}

impl std::fmt::Debug for HttpPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPool")
            .field("helper", &self.inner.helper)
            .finish_non_exhaustive()
    }
}
