//! A request body that is read to its end in the background when dropped early.
//! An HTTP/1 app client stops at `Content-Length` and drops the body before an
//! HTTP/2 caller's END_STREAM (which may come in a later, empty DATA frame) has
//! arrived; the h2 server then resets the stream, and the late frame counts as
//! a protocol error against the whole connection (GOAWAY after a limit).

#[cfg(test)]
mod tests;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;

/// How long a dropped body is still read for.
const DRAIN_TIME: Duration = Duration::from_secs(1);
/// How many more bytes a dropped body may deliver before it is given up.
const DRAIN_CAP: usize = 64 * 1024;

/// Passes `inner` through; on drop before its end, drains it (bounded) on a task.
pub struct DrainOnDrop<B>
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
{
    inner: Option<B>,
}

impl<B> DrainOnDrop<B>
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
{
    /// Wraps `inner`.
    pub fn new(inner: B) -> Self {
        DrainOnDrop { inner: Some(inner) }
    }
}

impl<B> HttpBody for DrainOnDrop<B>
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.inner.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl<B> Drop for DrainOnDrop<B>
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
{
    fn drop(&mut self) {
        let Some(mut body) = self.inner.take().filter(|b| !b.is_end_stream()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let drain = async {
                let mut read = 0usize;
                while let Some(Ok(frame)) = body.frame().await {
                    read += frame.data_ref().map_or(0, Bytes::len);
                    if read > DRAIN_CAP {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
        });
    }
}
