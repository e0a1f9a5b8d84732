//! Response bodies: always of unknown length, so HTTP/1.1 responses go out chunked as
//! git-annex's do (never with `Content-Length`), and content streams through a small
//! bounded channel.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming};
use tokio::sync::mpsc;

/// A response body.
pub(crate) enum RespBody {
    /// Nothing, or one piece.
    Once(Option<Bytes>),
    /// Pieces as a producer task sends them; an `Err` aborts the response (the client
    /// sees the body break off).
    Stream(mpsc::Receiver<Result<Bytes, std::io::Error>>),
}

impl RespBody {
    pub(crate) fn empty() -> RespBody {
        RespBody::Once(None)
    }
    pub(crate) fn bytes(b: impl Into<Bytes>) -> RespBody {
        let b = b.into();
        RespBody::Once((!b.is_empty()).then_some(b))
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            RespBody::Once(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            RespBody::Stream(rx) => loop {
                match rx.poll_recv(cx) {
                    // An empty piece would end a chunked body early; skip it.
                    Poll::Ready(Some(Ok(b))) if b.is_empty() => continue,
                    Poll::Ready(r) => return Poll::Ready(r.map(|r| r.map(Frame::data))),
                    Poll::Pending => return Poll::Pending,
                }
            },
        }
    }
}

/// Why reading a request body stopped short.
#[derive(Debug)]
pub(crate) struct BodyBroken(pub String);

/// The next data of a request body; `Ok(None)` at its end.
pub(crate) async fn next_data(body: &mut Incoming) -> Result<Option<Bytes>, BodyBroken> {
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await;
        match frame {
            None => return Ok(None),
            Some(Err(e)) => return Err(BodyBroken(e.to_string())),
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    if !d.is_empty() {
                        return Ok(Some(d));
                    }
                }
            }
        }
    }
}
