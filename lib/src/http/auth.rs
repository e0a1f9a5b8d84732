//! Who may do what over p2phttp: git-annex's decision table (spec `p2phttp.md` §7), without
//! I/O.
//!
//! Users come from the environment: `GIT_ANNEX_P2PHTTP_PASSWORD_<user>=<password>` makes a
//! user, `GIT_ANNEX_P2PHTTP_PERMISSIONS_<user>=readonly|appendonly` limits one (any other
//! value, or none, gives full access). For each request:
//!
//! 1. Credentials count only when they match a user exactly and authentication is enabled
//!    for the transport (`--authenv`: HTTPS only; `--authenv-http`: plain HTTP too). Then
//!    the user's mode applies.
//! 2. Otherwise the unauthenticated mode applies: `--wideopen` (read-write), else
//!    `--unauth-appendonly`, else `--unauth-readonly`; unauthenticated users may lock
//!    content unless `--unauth-nolocking`. With none of these, every request gets `401`.
//! 3. Read-write allows everything; locking allowed for the unauthenticated runs
//!    read-only; append-only allows all but removal; read-only allows reading.
//! 4. A refusal is `401` (asking for credentials) when the request carried none and
//!    authentication is enabled, else `403`.

use std::collections::HashMap;
use std::ffi::OsString;

use super::route::BasicAuth;
use crate::session::server::ServerMode;

/// What a request does, for the permission check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionClass {
    /// Content GET, checkpresent, gettimestamp.
    Read,
    /// put, putoffset.
    Write,
    /// remove, remove-before.
    Remove,
    /// lockcontent, keeplocked.
    Lock,
}

/// The verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead; the P2P session runs in this mode.
    Allow(ServerMode),
    /// `401` with the Basic challenge.
    Unauthorized,
    /// `403`.
    Forbidden,
}

/// The server's authentication options and users.
#[derive(Debug, Clone, Default)]
pub struct AuthPolicy {
    /// `--authenv`: accept users over HTTPS.
    pub authenv: bool,
    /// `--authenv-http`: accept users over plain HTTP too.
    pub authenv_http: bool,
    pub unauth_readonly: bool,
    pub unauth_appendonly: bool,
    pub unauth_nolocking: bool,
    pub wideopen: bool,
    /// (user, password) -> mode.
    pub users: HashMap<(Vec<u8>, Vec<u8>), ServerMode>,
}

/// The mode a request runs in before the action check.
#[derive(Debug, Clone, Copy)]
enum Effective {
    Mode {
        mode: ServerMode,
        unauth_locking: bool,
        auth_allowed: bool,
    },
    CannotServe,
}

impl AuthPolicy {
    /// Read the users from environment variables (pass `std::env::vars_os()`).
    pub fn load_users(&mut self, vars: impl IntoIterator<Item = (OsString, OsString)>) {
        use std::os::unix::ffi::OsStrExt;
        let mut passwords = Vec::new();
        let mut perms = HashMap::new();
        for (k, v) in vars {
            let k = k.as_bytes();
            let v = v.as_bytes().to_vec();
            if let Some(user) = k.strip_prefix(b"GIT_ANNEX_P2PHTTP_PASSWORD_") {
                passwords.push((user.to_vec(), v));
            } else if let Some(user) = k.strip_prefix(b"GIT_ANNEX_P2PHTTP_PERMISSIONS_") {
                let mode = match v.as_slice() {
                    b"readonly" => ServerMode::ReadOnly,
                    b"appendonly" => ServerMode::AppendOnly,
                    _ => continue,
                };
                perms.insert(user.to_vec(), mode);
            }
        }
        for (user, password) in passwords {
            let mode = perms.get(&user).copied().unwrap_or(ServerMode::ReadWrite);
            self.users.insert((user, password), mode);
        }
    }

    /// Decide one request. `secure`: it came over TLS.
    pub fn decide(&self, secure: bool, auth: Option<&BasicAuth>, class: ActionClass) -> Decision {
        let eff = self.effective(secure, auth);
        let Effective::Mode {
            mode,
            unauth_locking,
            auth_allowed,
        } = eff
        else {
            return Decision::Unauthorized;
        };
        let refuse = if auth_allowed {
            Decision::Unauthorized
        } else {
            Decision::Forbidden
        };
        match (mode, class) {
            (ServerMode::ReadWrite, _) => Decision::Allow(ServerMode::ReadWrite),
            (_, ActionClass::Lock) if unauth_locking => Decision::Allow(ServerMode::ReadOnly),
            (ServerMode::AppendOnly, ActionClass::Remove) => refuse,
            (ServerMode::AppendOnly, _) => Decision::Allow(ServerMode::AppendOnly),
            (ServerMode::ReadOnly, ActionClass::Read) => Decision::Allow(ServerMode::ReadOnly),
            (ServerMode::ReadOnly, _) => refuse,
        }
    }

    fn effective(&self, secure: bool, auth: Option<&BasicAuth>) -> Effective {
        match auth {
            None => self.unauthenticated(self.authenv || self.authenv_http),
            Some(a) => {
                let enabled = if secure {
                    self.authenv
                } else {
                    self.authenv_http
                };
                let user = self.users.get(&(a.user.clone(), a.password.clone()));
                match (enabled, user) {
                    (true, Some(&mode)) => Effective::Mode {
                        mode,
                        unauth_locking: false,
                        auth_allowed: false,
                    },
                    // Credentials that do not count: as unauthenticated, but never asked
                    // for again (git-annex's behaviour: 403, not 401).
                    _ => self.unauthenticated(false),
                }
            }
        }
    }

    fn unauthenticated(&self, can_auth: bool) -> Effective {
        let unauth_locking = !self.unauth_nolocking;
        let mode = if self.wideopen {
            return Effective::Mode {
                mode: ServerMode::ReadWrite,
                unauth_locking,
                auth_allowed: false,
            };
        } else if self.unauth_appendonly {
            ServerMode::AppendOnly
        } else if self.unauth_readonly {
            ServerMode::ReadOnly
        } else {
            return Effective::CannotServe;
        };
        Effective::Mode {
            mode,
            unauth_locking,
            auth_allowed: can_auth,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(u: &str, p: &str) -> BasicAuth {
        BasicAuth {
            user: u.as_bytes().to_vec(),
            password: p.as_bytes().to_vec(),
        }
    }

    fn policy(f: impl FnOnce(&mut AuthPolicy)) -> AuthPolicy {
        let mut p = AuthPolicy::default();
        p.load_users([
            ("GIT_ANNEX_P2PHTTP_PASSWORD_alice".into(), "apw".into()),
            ("GIT_ANNEX_P2PHTTP_PASSWORD_bob".into(), "bpw".into()),
            (
                "GIT_ANNEX_P2PHTTP_PERMISSIONS_bob".into(),
                "readonly".into(),
            ),
            ("GIT_ANNEX_P2PHTTP_PASSWORD_carol".into(), "cpw".into()),
            (
                "GIT_ANNEX_P2PHTTP_PERMISSIONS_carol".into(),
                "appendonly".into(),
            ),
            (
                "GIT_ANNEX_P2PHTTP_PERMISSIONS_dave".into(),
                "readonly".into(),
            ),
            ("UNRELATED".into(), "x".into()),
        ]);
        f(&mut p);
        p
    }

    use ActionClass::*;
    use Decision::*;
    use ServerMode::*;

    #[test]
    fn users_from_the_environment() {
        let p = policy(|_| {});
        assert_eq!(
            p.users.len(),
            3,
            "a permission without a password makes no user"
        );
        assert_eq!(p.users[&(b"bob".to_vec(), b"bpw".to_vec())], ReadOnly);
        assert_eq!(p.users[&(b"alice".to_vec(), b"apw".to_vec())], ReadWrite);
    }

    #[test]
    fn no_options_refuses_everything_with_401() {
        let p = policy(|_| {});
        for class in [Read, Write, Remove, Lock] {
            assert_eq!(p.decide(false, None, class), Unauthorized);
            // Users are not accepted without --authenv(-http), and get 401 too.
            assert_eq!(
                p.decide(false, Some(&user("alice", "apw")), class),
                Unauthorized
            );
            assert_eq!(
                p.decide(true, Some(&user("alice", "apw")), class),
                Unauthorized
            );
        }
    }

    #[test]
    fn verified_authenv_http_unauth_readonly_table() {
        // The combinations checked against git-annex in spec p2phttp.md §7.
        let p = policy(|p| {
            p.authenv_http = true;
            p.unauth_readonly = true;
        });
        assert_eq!(p.decide(false, None, Read), Allow(ReadOnly));
        assert_eq!(p.decide(false, None, Write), Unauthorized);
        assert_eq!(p.decide(false, None, Lock), Allow(ReadOnly));
        assert_eq!(
            p.decide(false, Some(&user("alice", "apw")), Write),
            Allow(ReadWrite)
        );
        assert_eq!(
            p.decide(false, Some(&user("alice", "bad")), Write),
            Forbidden
        );
        assert_eq!(p.decide(false, Some(&user("bob", "bpw")), Write), Forbidden);
        assert_eq!(p.decide(false, Some(&user("bob", "bpw")), Lock), Forbidden);
        assert_eq!(
            p.decide(false, Some(&user("bob", "bpw")), Read),
            Allow(ReadOnly)
        );
        assert_eq!(
            p.decide(false, Some(&user("carol", "cpw")), Remove),
            Forbidden
        );
        assert_eq!(
            p.decide(false, Some(&user("carol", "cpw")), Lock),
            Allow(AppendOnly)
        );
        assert_eq!(
            p.decide(false, Some(&user("carol", "cpw")), Write),
            Allow(AppendOnly)
        );
    }

    #[test]
    fn authenv_is_for_https_only() {
        let p = policy(|p| p.authenv = true);
        assert_eq!(
            p.decide(true, Some(&user("alice", "apw")), Remove),
            Allow(ReadWrite)
        );
        assert_eq!(
            p.decide(false, Some(&user("alice", "apw")), Remove),
            Unauthorized
        );
        assert_eq!(p.decide(true, None, Read), Unauthorized);
        assert_eq!(
            p.decide(true, Some(&user("alice", "x")), Read),
            Unauthorized
        );
    }

    #[test]
    fn unauthenticated_modes() {
        let p = policy(|p| p.wideopen = true);
        assert_eq!(p.decide(false, None, Remove), Allow(ReadWrite));
        let p = policy(|p| p.unauth_appendonly = true);
        assert_eq!(p.decide(false, None, Write), Allow(AppendOnly));
        assert_eq!(p.decide(false, None, Remove), Forbidden);
        assert_eq!(p.decide(false, None, Lock), Allow(ReadOnly));
        let p = policy(|p| {
            p.unauth_readonly = true;
            p.unauth_nolocking = true;
        });
        assert_eq!(p.decide(false, None, Lock), Forbidden);
        assert_eq!(p.decide(false, None, Read), Allow(ReadOnly));
        let p = policy(|p| {
            p.unauth_readonly = true;
            p.unauth_nolocking = true;
            p.authenv_http = true;
        });
        assert_eq!(p.decide(false, None, Lock), Unauthorized);
        // Append-only wins over read-only, wide open over both.
        let p = policy(|p| {
            p.unauth_readonly = true;
            p.unauth_appendonly = true;
        });
        assert_eq!(p.decide(false, None, Write), Allow(AppendOnly));
    }
}
