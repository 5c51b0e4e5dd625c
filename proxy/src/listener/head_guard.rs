//! Refuses HTTP/1 requests framed by both `Content-Length` and
//! `Transfer-Encoding`, the classic request smuggling shape. hyper accepts them
//! (chunked wins, RFC 9112 §6.3 allows that), but a server behind another hop may
//! disagree on where the body ends, so the sidecar answers 400 instead (RFC 9112
//! allows that too). The guard sits between the socket and hyper, holds each
//! request head until it is complete, follows the body framing to find the
//! next head, and spoils the request line of a smuggling-shaped head so that
//! hyper's own parser answers it with 400 and closes the connection.

#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Replaces the first byte of a refused request line: not a token character,
/// so the method fails to parse and hyper answers 400.
pub const SPOILED: u8 = 0x7f;

/// The HTTP/2 connection preface: such connections are not HTTP/1.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Where the guard is in the byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Deciding whether the connection is HTTP/2.
    Start,
    /// Waiting for a complete request head.
    Head,
    /// Inside a body of this many remaining bytes.
    Length(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// No more checks: HTTP/2, a protocol switch, or framing hyper refuses anyway.
    Passthrough,
}

/// Position inside a chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Reading hex digits of a chunk size (with the value so far).
    Size(u64),
    /// After the digits (chunk extensions), until the end of the line.
    SizeLine(u64),
    /// Inside chunk data.
    Data(u64),
    /// The line end after chunk data.
    DataEnd,
    /// Trailer lines after the last chunk; `true` at the start of a line.
    Trailers(bool),
}

/// An HTTP/1 server-side stream that refuses smuggling-shaped request heads.
#[derive(Debug)]
pub struct HeadGuard<I> {
    io: I,
    state: State,
    /// Bytes read from `io` and not yet handed on.
    pending: Vec<u8>,
    /// How many bytes at the front of `pending` were checked and may be handed on.
    checked: usize,
    /// Largest head held back; a longer one goes to hyper, which answers 431.
    max_head: usize,
    /// Time a held-back head may take to complete.
    head_timeout: Duration,
    /// Runs while a partial head is held back (hyper cannot time out what it
    /// never sees, and its HTTP/1-or-2 detection would wait for it forever).
    head_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> HeadGuard<I> {
    /// Guards `io`, holding back at most `max_head` bytes of a request head
    /// for at most `head_timeout`.
    pub fn new(io: I, max_head: usize, head_timeout: Duration) -> Self {
        HeadGuard {
            io,
            state: State::Start,
            pending: Vec::new(),
            checked: 0,
            max_head,
            head_timeout,
            head_deadline: None,
        }
    }

    /// While a partial head is held back: whether its time ran out.
    fn head_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.pending.is_empty() {
            self.head_deadline = None;
            return false;
        }
        let timeout = self.head_timeout;
        let deadline = self
            .head_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        deadline.as_mut().poll(cx).is_ready()
    }

    /// Checks as much of `pending` as possible; `eof` when no more bytes come.
    fn scan(&mut self, eof: bool) {
        let checked = self.checked;
        let rest = &mut self.pending[checked..];
        self.checked += advance(&mut self.state, rest, self.max_head, eof);
    }
}

/// Follows the stream over `bytes` (the next unchecked ones) from `state`,
/// spoiling a smuggling-shaped request line in place; returns how many bytes
/// from the start are checked and may be handed on. Stops early only before
/// an incomplete head (or HTTP/2 preface), which needs more bytes.
fn advance(state: &mut State, bytes: &mut [u8], max_head: usize, eof: bool) -> usize {
    let mut checked = 0;
    loop {
        let rest = &bytes[checked..];
        if rest.is_empty() {
            return checked;
        }
        match *state {
            State::Start => {
                let n = rest.len().min(H2_PREFACE.len());
                if rest[..n] != H2_PREFACE[..n] {
                    *state = State::Head;
                } else if n == H2_PREFACE.len() {
                    *state = State::Passthrough;
                } else if eof {
                    return bytes.len();
                } else {
                    return checked;
                }
            }
            State::Head => {
                // Only the first `max_head` bytes may hold the head, however
                // the bytes were split into reads.
                let window = &rest[..rest.len().min(max_head)];
                let Some((head, next, refuse)) = read_head(window) else {
                    if eof || rest.len() >= max_head {
                        // hyper answers a truncated or huge head itself.
                        *state = State::Passthrough;
                        return bytes.len();
                    }
                    return checked;
                };
                if refuse {
                    let start = rest
                        .iter()
                        .position(|b| !matches!(b, b'\r' | b'\n'))
                        .unwrap_or(0);
                    bytes[checked + start] = SPOILED;
                }
                checked += head;
                *state = next;
            }
            State::Length(n) => {
                let take = n.min(rest.len() as u64);
                checked += take as usize;
                *state = match n - take {
                    0 => State::Head,
                    left => State::Length(left),
                };
            }
            State::Chunked(chunk) => {
                let (used, next) = chunked(chunk, rest);
                checked += used;
                *state = next;
            }
            State::Passthrough => return bytes.len(),
        }
    }
}

/// Reads the head at the start of `buf` in one pass over its lines: its
/// length (up to and including the empty line, skipping empty lines before
/// the request line as parsers do), what follows it, and whether to refuse
/// it. `None` while the head is incomplete.
fn read_head(buf: &[u8]) -> Option<(usize, State, bool)> {
    let start = buf.iter().position(|b| !matches!(b, b'\r' | b'\n'))?;
    let mut framing = Framing::default();
    let mut line_start = start;
    for i in memchr::memchr_iter(b'\n', &buf[start..]) {
        let end = start + i;
        let raw = &buf[line_start..end];
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            let (next, refuse) = framing.verdict();
            return Some((end + 1, next, refuse));
        }
        if line_start == start {
            framing.upgrade = line.starts_with(b"CONNECT ");
        } else {
            framing.header(line);
        }
        line_start = end + 1;
    }
    None
}

/// The framing headers of one head.
#[derive(Default)]
struct Framing {
    /// `Content-Length` seen (its value, if it parsed).
    length: Option<Option<u64>>,
    /// `Transfer-Encoding` seen (whether it ends in `chunked`).
    chunked: Option<bool>,
    /// A protocol switch (`Upgrade`, or a `CONNECT` request line).
    upgrade: bool,
}

impl Framing {
    /// Notes `line` if it is one of the framing headers. A name is followed
    /// directly by its colon (hyper refuses whitespace before it), so the
    /// colon's position rules out every other name without a comparison.
    fn header(&mut self, line: &[u8]) {
        let named = |name: &[u8]| {
            line.get(name.len()) == Some(&b':') && line[..name.len()].eq_ignore_ascii_case(name)
        };
        let value = |name: &[u8]| line[name.len() + 1..].trim_ascii();
        if named(b"content-length") {
            let v = value(b"content-length");
            self.length = Some(std::str::from_utf8(v).ok().and_then(|v| v.parse().ok()));
        } else if named(b"transfer-encoding") {
            let v = value(b"transfer-encoding");
            let last = v.rsplit(|b| *b == b',').next().unwrap_or_default();
            self.chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if named(b"upgrade") {
            self.upgrade = true;
        }
    }

    /// What follows the head, and whether to refuse it.
    fn verdict(&self) -> (State, bool) {
        match (self.length, self.chunked) {
            (Some(_), Some(_)) => (State::Passthrough, true),
            // A protocol switch makes the rest of the stream someone else's.
            _ if self.upgrade => (State::Passthrough, false),
            (None, Some(true)) => (State::Chunked(Chunk::Size(0)), false),
            (Some(Some(0)) | None, None) => (State::Head, false),
            (Some(Some(n)), None) => (State::Length(n), false),
            // Framing hyper refuses itself (and then closes the connection).
            (Some(None), None) | (None, Some(false)) => (State::Passthrough, false),
        }
    }
}

/// Advances through a chunked body over `buf`: bytes used and the new state.
fn chunked(mut chunk: Chunk, buf: &[u8]) -> (usize, State) {
    let mut i = 0;
    while i < buf.len() {
        let b = buf[i];
        chunk = match chunk {
            Chunk::Size(n) => match (b as char).to_digit(16) {
                Some(d) => match n.checked_mul(16).and_then(|n| n.checked_add(u64::from(d))) {
                    Some(n) => Chunk::Size(n),
                    None => return (buf.len(), State::Passthrough),
                },
                None if b == b'\n' => end_of_size(n),
                None => Chunk::SizeLine(n),
            },
            Chunk::SizeLine(n) if b == b'\n' => end_of_size(n),
            Chunk::SizeLine(n) => Chunk::SizeLine(n),
            Chunk::Data(n) => {
                let take = n.min((buf.len() - i) as u64);
                i += take as usize;
                chunk = match n - take {
                    0 => Chunk::DataEnd,
                    left => Chunk::Data(left),
                };
                continue;
            }
            Chunk::DataEnd if b == b'\n' => Chunk::Size(0),
            Chunk::DataEnd => Chunk::DataEnd,
            Chunk::Trailers(true) if b == b'\n' => return (i + 1, State::Head),
            Chunk::Trailers(true) if b == b'\r' => Chunk::Trailers(true),
            Chunk::Trailers(_) => Chunk::Trailers(b == b'\n'),
        };
        i += 1;
    }
    (i, State::Chunked(chunk))
}

fn end_of_size(n: u64) -> Chunk {
    if n == 0 {
        Chunk::Trailers(true)
    } else {
        Chunk::Data(n)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for HeadGuard<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.checked > 0 {
                let n = this.checked.min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.drain(..n);
                this.checked -= n;
                return Poll::Ready(Ok(()));
            }
            // Body bytes of a known length and unchecked streams go straight through.
            if this.pending.is_empty() {
                match this.state {
                    State::Passthrough => return Pin::new(&mut this.io).poll_read(cx, buf),
                    State::Length(n) => {
                        let limit = usize::try_from(n)
                            .unwrap_or(usize::MAX)
                            .min(buf.remaining());
                        let mut direct = ReadBuf::new(buf.initialize_unfilled_to(limit));
                        ready!(Pin::new(&mut this.io).poll_read(cx, &mut direct))?;
                        let got = direct.filled().len();
                        buf.advance(got);
                        this.state = match n - got as u64 {
                            0 => State::Head,
                            left => State::Length(left),
                        };
                        return Poll::Ready(Ok(()));
                    }
                    _ => {}
                }
            }
            // Read into the caller's buffer (no scratch buffer to zero on every
            // call), then take the new bytes back out until they are checked.
            let before = buf.filled().len();
            if Pin::new(&mut this.io).poll_read(cx, buf)?.is_pending() {
                if this.head_expired(cx) {
                    let e = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "request head not complete in time",
                    );
                    return Poll::Ready(Err(e));
                }
                return Poll::Pending;
            }
            let eof = buf.filled().len() == before;
            if this.pending.is_empty() {
                // Nothing held back: check the new bytes where they are, and
                // keep back only an incomplete head at their end.
                let new = &mut buf.filled_mut()[before..];
                let n = advance(&mut this.state, new, this.max_head, eof);
                if n < new.len() {
                    this.pending.extend_from_slice(&new[n..]);
                    buf.set_filled(before + n);
                }
                if n > 0 || eof {
                    this.head_deadline = None;
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            this.pending.extend_from_slice(&buf.filled()[before..]);
            buf.set_filled(before);
            this.scan(eof);
            if this.checked > 0 {
                // The held-back head is complete (or handed on): its clock stops.
                this.head_deadline = None;
            }
            if eof && this.checked == 0 {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for HeadGuard<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
