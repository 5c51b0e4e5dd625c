//! Counts gRPC messages (length-prefixed frames) in a body as its data
//! streams through, without buffering: Istio's message counters.

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::{Inspected, OnData};

/// Bytes before a message: a flag byte and a 4-byte big-endian length.
const HEADER: u8 = 5;

/// Where a body's data stands in gRPC's framing, carried across data chunks
/// (a header or a message may be split over several).
#[derive(Debug, Default)]
pub struct FrameCounter {
    /// Header bytes of the current message read so far (0: the next byte
    /// begins a message, once `payload_left` is 0).
    header_read: u8,
    /// The current message's length, as its header bytes arrive.
    length: u32,
    /// Payload bytes of the current message still to come.
    payload_left: u64,
}

impl FrameCounter {
    /// Reads `data`, the body's next bytes, and returns how many messages
    /// begin in it. A message counts at its first byte, as Envoy's gRPC frame
    /// inspector counts frames (so a message cut short still counts).
    pub fn count(&mut self, data: &[u8]) -> u64 {
        let mut begun = 0;
        let mut rest = data;
        while !rest.is_empty() {
            if self.payload_left > 0 {
                let skip =
                    usize::try_from(self.payload_left).map_or(rest.len(), |n| n.min(rest.len()));
                self.payload_left -= skip as u64;
                rest = &rest[skip..];
                continue;
            }
            let (&byte, tail) = match rest.split_first() {
                Some(split) => split,
                None => break,
            };
            rest = tail;
            if self.header_read == 0 {
                // The flag byte: a new message.
                begun += 1;
                self.length = 0;
            } else {
                self.length = self.length << 8 | u32::from(byte);
            }
            self.header_read += 1;
            if self.header_read == HEADER {
                self.header_read = 0;
                self.payload_left = u64::from(self.length);
            }
        }
        begun
    }
}

/// The messages of one gRPC call not reported yet, counted in each direction.
#[derive(Debug, Default)]
pub struct GrpcMessages {
    /// Sent by the client (request body).
    pub request: AtomicU64,
    /// Sent by the server (response body).
    pub response: AtomicU64,
}

impl GrpcMessages {
    /// The messages counted since the last call (request, response), so
    /// that reports running at once never add one twice.
    pub fn take(&self) -> (u64, u64) {
        (
            self.request.swap(0, Ordering::Relaxed),
            self.response.swap(0, Ordering::Relaxed),
        )
    }
}

/// Which body of a call a [`GrpcFrames`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// Counts one body's gRPC messages into its call's [`GrpcMessages`].
pub struct MessageSink {
    counter: FrameCounter,
    messages: Arc<GrpcMessages>,
    direction: Direction,
}

impl OnData for MessageSink {
    fn on_data(&mut self, data: &Bytes) {
        let begun = self.counter.count(data);
        if begun > 0 {
            let total = match self.direction {
                Direction::Request => &self.messages.request,
                Direction::Response => &self.messages.response,
            };
            total.fetch_add(begun, Ordering::Relaxed);
        }
    }
}

/// Counts the gRPC messages of the wrapped body into a call's [`GrpcMessages`].
pub type GrpcFrames<B> = Inspected<B, MessageSink>;

impl<B> GrpcFrames<B> {
    /// Wraps `inner`, the `direction` body of the call counted in `messages`.
    pub fn new(inner: B, messages: Arc<GrpcMessages>, direction: Direction) -> Self {
        let sink = MessageSink {
            counter: FrameCounter::default(),
            messages,
            direction,
        };
        Inspected::with(inner, sink)
    }
}
