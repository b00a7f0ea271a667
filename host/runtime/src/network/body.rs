//! A response body capped in size and in silence, so a plugin's request can neither fill the
//! host's memory nor hang past its deadline.

use std::future::Future;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use hyper::body::Incoming;
use wasmtime_wasi_http::Error as HttpError;

/// A response body that errors out past `max` bytes (at once when its declared length is over)
/// or when the server goes quiet for longer than `between_bytes`.
pub(super) struct CappedBody {
    incoming: Incoming,
    read: u64,
    max: u64,
    between_bytes: Duration,
    idle: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl CappedBody {
    /// `incoming` capped at `max` bytes, failing after `between_bytes` of silence.
    pub(super) fn new(incoming: Incoming, max: u64, between_bytes: Duration) -> CappedBody {
        CappedBody {
            // A declared length over the cap fails at the first read.
            read: incoming
                .size_hint()
                .exact()
                .filter(|n| *n > max)
                .unwrap_or(0),
            incoming,
            max,
            between_bytes,
            idle: None,
        }
    }
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        if this.read > this.max {
            return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(this.read)))));
        }
        match std::pin::Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.idle = None;
                if let Some(data) = frame.data_ref() {
                    this.read += data.len() as u64;
                    if this.read > this.max {
                        return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(
                            this.read,
                        )))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(HttpError::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let between_bytes = this.between_bytes;
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(between_bytes)));
                match idle.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }
}
