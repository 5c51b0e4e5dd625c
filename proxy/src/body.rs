//! The body type that flows through the proxy, and wrappers that count bytes and
//! run a completion hook when a streamed body ends (or is dropped).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

mod drain;
mod grpc_frames;
mod replay;

pub use drain::DrainOnDrop;
pub use grpc_frames::{Direction, GrpcFrames, GrpcMessages};
pub use replay::Replay;

/// Boxed error of any body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every request and response inside the proxy.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A complete body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Boxes any body with boxable errors.
pub fn boxed<B>(body: B) -> Body
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// What an [`Inspected`] body does with each data frame as it passes.
pub trait OnData {
    fn on_data(&mut self, data: &Bytes);
}

/// A counter of data bytes.
impl OnData for Arc<AtomicU64> {
    fn on_data(&mut self, data: &Bytes) {
        self.fetch_add(data.len() as u64, Ordering::Relaxed);
    }
}

/// Shows every data frame of the wrapped body to `S` as it passes, without
/// changing or holding it.
pub struct Inspected<B, S> {
    inner: B,
    sink: S,
}

impl<B, S> Inspected<B, S> {
    /// Wraps `inner`, showing its data to `sink`.
    pub fn with(inner: B, sink: S) -> Self {
        Inspected { inner, sink }
    }
}

/// Counts the data bytes that pass through into a shared counter.
pub type Counted<B> = Inspected<B, Arc<AtomicU64>>;

impl<B> Counted<B> {
    /// Wraps `inner`, adding every data frame's length to `bytes`.
    pub fn new(inner: B, bytes: Arc<AtomicU64>) -> Self {
        Inspected::with(inner, bytes)
    }
}

impl<B, S> HttpBody for Inspected<B, S>
where
    B: HttpBody<Data = Bytes> + Unpin,
    S: OnData + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.sink.on_data(data);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How a response body ended.
#[derive(Debug, Default)]
pub struct End {
    /// Data bytes delivered.
    pub bytes: u64,
    /// `grpc-status` seen in trailers.
    pub grpc_status: Option<http::HeaderValue>,
    /// The body ended normally (not dropped early or failed).
    pub complete: bool,
}

/// Runs `F` once when the wrapped body ends, fails, or is dropped.
pub struct Finishing<B: HttpBody, F: FnOnce(End)> {
    inner: B,
    end: End,
    finish: Option<F>,
}

impl<B: HttpBody, F: FnOnce(End)> Finishing<B, F> {
    /// Wraps `inner` with the completion hook `finish`.
    pub fn new(inner: B, finish: F) -> Self {
        Finishing {
            inner,
            end: End::default(),
            finish: Some(finish),
        }
    }

    fn done(&mut self, complete: bool) {
        if let Some(f) = self.finish.take() {
            let mut end = std::mem::take(&mut self.end);
            end.complete = complete;
            f(end);
        }
    }
}

impl<B, F> HttpBody for Finishing<B, F>
where
    B: HttpBody<Data = Bytes> + Unpin,
    F: FnOnce(End) + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.end.bytes += data.len() as u64;
                } else if let Some(trailers) = frame.trailers_ref()
                    && let Some(status) = trailers.get("grpc-status")
                {
                    self.end.grpc_status = Some(status.clone());
                }
            }
            Poll::Ready(None) => self.done(true),
            Poll::Ready(Some(Err(_))) => self.done(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: HttpBody, F: FnOnce(End)> Drop for Finishing<B, F> {
    fn drop(&mut self) {
        // A body dropped after its last frame (without a final poll) still completed.
        let complete = self.inner.is_end_stream();
        self.done(complete);
    }
}

/// Copies a body's data (up to a cap) while passing it through, and hands the
/// copy over when the body ends; a body over the cap (or failing) yields no copy.
pub struct Tee<B> {
    inner: B,
    copy: Option<bytes::BytesMut>,
    cap: usize,
    done: Option<tokio::sync::oneshot::Sender<Bytes>>,
}

impl<B> Tee<B> {
    /// Wraps `inner`; the receiver gets the whole body if it stays within `cap` bytes.
    pub fn new(inner: B, cap: usize) -> (Self, tokio::sync::oneshot::Receiver<Bytes>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tee = Tee {
            inner,
            copy: Some(bytes::BytesMut::new()),
            cap,
            done: Some(tx),
        };
        (tee, rx)
    }

    fn finish(&mut self) {
        if let (Some(copy), Some(done)) = (self.copy.take(), self.done.take()) {
            // The receiver may be gone (mirror dropped); nothing to do then.
            let _ = done.send(copy.freeze());
        }
    }
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for Tee<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let cap = self.cap;
                    let fits = self
                        .copy
                        .as_ref()
                        .is_some_and(|c| c.len() + data.len() <= cap);
                    match self.copy.as_mut() {
                        Some(c) if fits => c.extend_from_slice(data),
                        _ => {
                            self.copy = None;
                            self.done = None;
                        }
                    }
                }
                if self.inner.is_end_stream() {
                    self.finish();
                }
            }
            Poll::Ready(None) => self.finish(),
            Poll::Ready(Some(Err(_))) => {
                self.copy = None;
                self.done = None;
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
