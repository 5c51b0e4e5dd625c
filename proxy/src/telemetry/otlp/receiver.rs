//! The receiving end of `TraceService/Export`, for tools and tests that act
//! as a collector (`sluicectl demo`'s trace view, the e2e tests): every
//! export is handed to a callback.

use super::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

type Sink = Arc<dyn Fn(ExportTraceServiceRequest) + Send + Sync>;

/// An OTLP/gRPC trace service handing each export request to a callback.
#[derive(Clone)]
pub struct TraceReceiver {
    sink: Sink,
}

struct Export(Sink);

impl tonic::server::UnaryService<ExportTraceServiceRequest> for Export {
    type Response = ExportTraceServiceResponse;
    type Future = tonic::codegen::BoxFuture<tonic::Response<Self::Response>, tonic::Status>;

    fn call(&mut self, req: tonic::Request<ExportTraceServiceRequest>) -> Self::Future {
        (self.0)(req.into_inner());
        Box::pin(async { Ok(tonic::Response::new(ExportTraceServiceResponse::default())) })
    }
}

impl tonic::server::NamedService for TraceReceiver {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for TraceReceiver {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let sink = Arc::clone(&self.sink);
        Box::pin(async move {
            if req.uri().path() != super::EXPORT_PATH {
                return Ok(tonic::Status::unimplemented("only TraceService/Export").into_http());
            }
            let codec = tonic_prost::ProstCodec::<
                ExportTraceServiceResponse,
                ExportTraceServiceRequest,
            >::default();
            let mut grpc = tonic::server::Grpc::new(codec);
            Ok(grpc.unary(Export(sink), req).await)
        })
    }
}

impl TraceReceiver {
    /// A receiver calling `sink` with every export request.
    pub fn new(sink: impl Fn(ExportTraceServiceRequest) + Send + Sync + 'static) -> Self {
        TraceReceiver {
            sink: Arc::new(sink),
        }
    }

    /// Serves on `listener` until the task is dropped or the listener fails.
    pub async fn serve(self, listener: TcpListener) -> Result<(), tonic::transport::Error> {
        tonic::transport::Server::builder()
            .add_service(self)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
    }
}
