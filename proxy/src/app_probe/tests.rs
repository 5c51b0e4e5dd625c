use super::*;
use std::convert::Infallible;

use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// An app answering `/healthz` with 200 only when `x-probe: yes` is sent, and
/// `/slow` after 3 s.
async fn app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let status = match req.uri().path() {
                        "/healthz" if req.headers().get("x-probe").is_some() => StatusCode::OK,
                        "/slow" => {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            StatusCode::OK
                        }
                        _ => StatusCode::INTERNAL_SERVER_ERROR,
                    };
                    let mut r = Response::new(Full::new(Bytes::from_static(b"x")));
                    *r.status_mut() = status;
                    Ok::<_, Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

fn probes(port: u16) -> AppProbes {
    AppProbes::parse(&format!(
        r#"{{
          "/app-health/web/livez": {{"httpGet": {{"path": "/healthz", "port": {port}, "httpHeaders": [{{"name": "x-probe", "value": "yes"}}]}}}},
          "/app-health/web/readyz": {{"httpGet": {{"path": "/healthz", "port": {port}}}}},
          "/app-health/web/startupz": {{"httpGet": {{"path": "/slow", "port": {port}}}, "timeoutSeconds": 1}}
        }}"#
    ))
    .unwrap()
}

#[tokio::test]
async fn answer_forwards_probe_with_its_headers_and_returns_app_status() {
    let addr = app().await;
    let p = probes(addr.port());
    let live = p.answer("/app-health/web/livez", addr.ip()).await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let ready = p.answer("/app-health/web/readyz", addr.ip()).await.unwrap();
    assert_eq!(ready.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn answer_slow_app_times_out_with_503() {
    let addr = app().await;
    let p = probes(addr.port());
    let started = std::time::Instant::now();
    let slow = p
        .answer("/app-health/web/startupz", addr.ip())
        .await
        .unwrap();
    assert_eq!(slow.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn answer_unknown_path_is_none_and_closed_port_is_503() {
    let p = probes(1);
    assert!(
        p.answer("/app-health/other/livez", [127, 0, 0, 1].into())
            .await
            .is_none()
    );
    let closed = p
        .answer("/app-health/web/readyz", [127, 0, 0, 1].into())
        .await
        .unwrap();
    assert_eq!(closed.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn parse_named_port_or_https_or_bad_path_is_refused_naming_the_probe() {
    for (json, want) in [
        (
            r#"{"/app-health/web/livez": {"httpGet": {"port": "http"}}}"#,
            "/app-health/web/livez: port \"http\" must be a number",
        ),
        (
            r#"{"/app-health/web/livez": {"httpGet": {"port": 80, "scheme": "HTTPS"}}}"#,
            "only HTTP probes",
        ),
        (
            r#"{"/other": {"httpGet": {"port": 80}}}"#,
            "/other: must start with /app-health/",
        ),
    ] {
        let err = AppProbes::parse(json).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
}
