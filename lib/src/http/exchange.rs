//! One HTTP request as a P2P exchange with an in-process [`ServerSession`].
//!
//! git-annex's HTTP server answers each request by speaking the P2P protocol, as a client,
//! to its own P2P server. We do the same with the session state machine directly: the
//! handler feeds it the messages a P2P client would send (`VERSION v`, `BYPASS …`, then
//! the request) and reads what the session sends back, while the session's node calls,
//! releases and data moves are carried out here with the driver's own helpers
//! ([`crate::conn`]). So every policy the session holds (server modes and their
//! refusals, the version rules, how REMOVE and PUT results are reported, what a short
//! DATA means) is the same for ssh and HTTP clients.

use std::sync::Arc;

use crate::conn::{release, run_call, Held};
use crate::node::Node;
use crate::proto::p2p::Message;
use crate::session::server::{
    Action, AuthMode, DataDest, End, GitRequests, Input, Refusal, ServerConfig, ServerMode,
    ServerSession,
};
use crate::types::Uuid;

/// Why [`Exchange::run`] stopped.
#[derive(Debug)]
pub(crate) enum Pause {
    /// The session waits for the client's next message.
    Input,
    /// Move `len` bytes of request body to `dest` (the open sink, or nowhere) and report
    /// them with [`Input::Moved`]; for [`DataDest::Sink`] call the sink's `begin` first.
    Receive { len: u64, dest: DataDest },
    /// Move `len` bytes of the open download to the response.
    Transmit { len: u64 },
    /// The session ended.
    Closed,
}

/// A P2P server session serving one HTTP request.
pub(crate) struct Exchange {
    session: ServerSession,
    held: Held,
    node: Arc<dyn Node>,
}

impl Exchange {
    /// A session for `served` in `mode`, at protocol `version`, after the client's
    /// `VERSION` and (v2+) `BYPASS` messages.
    pub(crate) async fn start(
        served: Uuid,
        mode: ServerMode,
        version: u8,
        bypass: Vec<Uuid>,
        node: Arc<dyn Node>,
    ) -> Exchange {
        let config = ServerConfig {
            uuid: served,
            mode,
            auth: AuthMode::PreAuthenticated,
            max_version: version,
            git_requests: GitRequests::Refuse,
        };
        let mut ex = Exchange {
            session: ServerSession::new(config),
            held: Held::default(),
            node,
        };
        ex.send(Message::Version(u64::from(version))).await;
        if version >= 2 && !bypass.is_empty() {
            ex.send(Message::Bypass(bypass)).await;
        }
        ex
    }

    pub(crate) fn held(&mut self) -> &mut Held {
        &mut self.held
    }

    /// Feed a client message; returns what the session sent and why it stopped.
    pub(crate) async fn send(&mut self, m: Message) -> (Vec<Message>, Pause) {
        self.input(Input::Message(m)).await
    }

    pub(crate) async fn input(&mut self, i: Input) -> (Vec<Message>, Pause) {
        self.session.handle(i);
        self.run().await
    }

    /// Carry out the session's actions until it needs something from outside.
    pub(crate) async fn run(&mut self) -> (Vec<Message>, Pause) {
        let mut sent = Vec::new();
        loop {
            let Some(action) = self.session.poll_action() else {
                return (sent, Pause::Input);
            };
            match action {
                Action::Send(m) => {
                    tracing::trace!("P2P(http) > {m}");
                    sent.push(m);
                }
                Action::Refused(r) => match r {
                    Refusal::ClientError(_) => tracing::debug!("{r}"),
                    r => tracing::warn!("{r}"),
                },
                Action::CreateNode { .. } => {
                    self.held.node = Some(self.node.clone());
                    self.session.handle(Input::NodeCreated(Ok(())));
                }
                Action::Call(call) => {
                    let r = run_call(&mut self.held, call).await;
                    self.session.handle(Input::Reply(r));
                }
                Action::Release(r) => release(&mut self.held, r).await,
                Action::Receive { len, dest } => return (sent, Pause::Receive { len, dest }),
                Action::Transmit { len } => return (sent, Pause::Transmit { len }),
                Action::Close(end) => {
                    if let End::Failed(f) = &end {
                        tracing::warn!("P2P session for an HTTP request failed: {f}");
                    }
                    return (sent, Pause::Closed);
                }
            }
        }
    }

    /// Give up: let go of whatever the session holds (the HTTP client went away).
    pub(crate) async fn abandon(mut self) {
        self.held.release_all().await;
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // Held objects release themselves when dropped (locks unlock, sinks keep their
        // partial data); the async paths above release them properly first.
        if self.held.lock.is_some() || self.held.sink.is_some() || self.held.content.is_some() {
            tracing::debug!("an HTTP request's P2P session ended holding a transfer object");
        }
    }
}
