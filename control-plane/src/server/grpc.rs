//! `ConfigDiscovery.Stream` on the wire, without tonic's generated server:
//! its encoder copies every message into a per-stream buffer that keeps the
//! size of the largest config it ever sent. Here the response body hands
//! hyper the pre-encoded (and mostly shared) buffers as they are.

use super::ConfigServer;
use super::frame::EncodedSnapshot;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame};
use prost::Message;
use sluice_api::config::ProxyMessage;
use sluice_api::config::config_discovery_server::SERVICE_NAME;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::sync::mpsc;
use tonic::body::Body;
use tonic::codec::{DecodeBuf, Decoder};
use tonic::metadata::{GRPC_CONTENT_TYPE, MetadataMap};
use tonic::{Request, Status, Streaming};

/// The one method this service serves.
pub const STREAM_PATH: &str = "/sluice.config.v1.ConfigDiscovery/Stream";
/// Largest proxy message accepted (tonic's default): hellos, ACKs and NACKs are small.
const MAX_REQUEST: usize = 4 << 20;

impl tonic::server::NamedService for ConfigServer {
    const NAME: &'static str = SERVICE_NAME;
}

impl tonic::codegen::Service<http::Request<Body>> for ConfigServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let server = self.clone();
        Box::pin(async move { Ok(server.serve(request).await) })
    }
}

impl ConfigServer {
    async fn serve(self, request: http::Request<Body>) -> http::Response<Body> {
        if request.uri().path() != STREAM_PATH {
            return Status::unimplemented(format!("no method {}", request.uri().path()))
                .into_http();
        }
        // Proxies never compress; refuse rather than misread such a stream.
        if request
            .headers()
            .get("grpc-encoding")
            .is_some_and(|e| e != "identity")
        {
            return Status::unimplemented("compressed requests are not accepted").into_http();
        }
        let (parts, body) = request.into_parts();
        let inbound = Streaming::new_request(ProxyMessages, body, None, Some(MAX_REQUEST));
        let request = Request::from_parts(
            MetadataMap::from_headers(parts.headers),
            parts.extensions,
            inbound,
        );
        match self.open(request).await {
            Ok(rx) => {
                let mut response = http::Response::new(Body::new(SnapshotBody {
                    rx,
                    queued: Vec::new().into_iter(),
                    done: false,
                }));
                response
                    .headers_mut()
                    .insert(http::header::CONTENT_TYPE, GRPC_CONTENT_TYPE);
                response
            }
            Err(status) => status.into_http(),
        }
    }
}

/// Decodes the proxy's messages (tonic strips the gRPC prefix).
struct ProxyMessages;

impl Decoder for ProxyMessages {
    type Item = ProxyMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<ProxyMessage>, Status> {
        ProxyMessage::decode(src)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("decoding a proxy message: {e}")))
    }
}

/// The response: each snapshot's buffers as data frames, then an OK status
/// once the stream task has ended.
struct SnapshotBody {
    rx: mpsc::Receiver<EncodedSnapshot>,
    queued: std::vec::IntoIter<Bytes>,
    done: bool,
}

fn ok_trailers() -> http::HeaderMap {
    let mut trailers = http::HeaderMap::with_capacity(1);
    trailers.insert(Status::GRPC_STATUS, http::HeaderValue::from_static("0"));
    trailers
}

impl HttpBody for SnapshotBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        loop {
            if let Some(chunk) = this.queued.find(|c| !c.is_empty()) {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(this.rx.poll_recv(cx)) {
                Some(snapshot) => this.queued = snapshot.into_chunks().into_iter(),
                None => {
                    this.done = true;
                    return Poll::Ready(Some(Ok(Frame::trailers(ok_trailers()))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.queued.len() == 0
    }
}
