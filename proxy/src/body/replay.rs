//! A request body that several attempts can read in turn: the first reader
//! streams it from the client while a copy is kept (up to a cap), later
//! readers replay the copy and then continue with whatever is still unread.

#[cfg(test)]
mod tests;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::{Body, BoxError};

/// Bodies up to this size are kept for retries (Envoy's default buffer limit is similar).
pub const REPLAY_CAP: usize = 64 * 1024;

#[derive(Default)]
struct State {
    rest: Option<Body>,
    chunks: Vec<Bytes>,
    /// Data frames taken from `rest` so far.
    taken: usize,
    size: usize,
    /// The copy was dropped: the body went past the cap, or reading it failed.
    lost: bool,
    ended: bool,
    trailers: Option<HeaderMap>,
    /// The client body's size hint, so upstream framing stays as the client sent it.
    hint: SizeHint,
}

/// The shared body; `reader` hands out one body per attempt.
#[derive(Clone)]
pub struct Replay {
    state: Arc<Mutex<State>>,
}

/// Why a later attempt cannot resend the body.
#[derive(Debug, thiserror::Error)]
#[error("request body can no longer be replayed")]
struct NotReplayable;

impl Replay {
    /// Wraps `body`.
    pub fn new(body: Body) -> Self {
        // A body known to be empty stays empty (no chunked framing on a GET).
        let ended = body.is_end_stream();
        let state = State {
            hint: body.size_hint(),
            rest: (!ended).then_some(body),
            ended,
            ..State::default()
        };
        Replay {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Whether a new reader would see the whole body.
    pub fn replayable(&self) -> bool {
        !self.state.lock().unwrap_or_else(|p| p.into_inner()).lost
    }

    /// A body for one attempt, from the beginning.
    pub fn reader(&self) -> Body {
        super::boxed(Reader {
            state: Arc::clone(&self.state),
            next: 0,
            trailers_sent: false,
        })
    }
}

struct Reader {
    state: Arc<Mutex<State>>,
    next: usize,
    trailers_sent: bool,
}

impl HttpBody for Reader {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let mut guard = this.state.lock().unwrap_or_else(|p| p.into_inner());
        let st = &mut *guard;
        if this.next < st.taken {
            if st.lost {
                return Poll::Ready(Some(Err(Box::new(NotReplayable))));
            }
            let chunk = st.chunks.get(this.next).cloned().unwrap_or_default();
            this.next += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        let Some(rest) = st.rest.as_mut() else {
            if st.ended && !this.trailers_sent {
                this.trailers_sent = true;
                if let Some(t) = st.trailers.clone() {
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
            }
            if st.lost && !st.ended {
                return Poll::Ready(Some(Err(Box::new(NotReplayable))));
            }
            return Poll::Ready(None);
        };
        match Pin::new(&mut *rest).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                st.rest = None;
                st.ended = true;
                this.trailers_sent = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                st.rest = None;
                st.lost = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    st.taken += 1;
                    this.next += 1;
                    st.size += data.len();
                    if st.size > REPLAY_CAP {
                        st.lost = true;
                        st.chunks = Vec::new();
                    } else if !st.lost {
                        st.chunks.push(data.clone());
                    }
                } else if let Some(t) = frame.trailers_ref() {
                    st.trailers = Some(t.clone());
                    this.trailers_sent = true;
                }
                // Known to be over (e.g. Content-Length reached): say so now, so
                // HTTP/2 sets END_STREAM on this DATA frame instead of sending an
                // empty one later, which a peer that already answered and reset
                // the stream counts as a protocol error against the connection.
                if rest.is_end_stream() {
                    st.rest = None;
                    st.ended = true;
                    this.trailers_sent = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if self.next == 0 {
            st.hint
        } else {
            SizeHint::default()
        }
    }

    fn is_end_stream(&self) -> bool {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.ended && self.next >= st.taken && (self.trailers_sent || st.trailers.is_none())
    }
}
