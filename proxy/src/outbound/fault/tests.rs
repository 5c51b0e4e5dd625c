use super::*;

fn fault(delay_percent: f64, abort_percent: f64, http: u32, grpc: &str) -> Fault {
    Fault {
        delay_ms: 10,
        delay_percent,
        abort_http_status: http,
        abort_grpc_status: grpc.to_owned(),
        abort_percent,
    }
}

#[test]
fn decide_full_percentages_always_inject_and_zero_never() {
    let all = decide(&fault(100.0, 100.0, 503, ""));
    assert_eq!(
        all,
        Injected {
            delayed: true,
            abort: Some(Abort::Http(StatusCode::SERVICE_UNAVAILABLE))
        }
    );
    assert_eq!(decide(&fault(0.0, 0.0, 503, "")), Injected::default());
}

#[test]
fn decide_grpc_status_names_and_numbers_map_to_codes() {
    assert_eq!(
        decide(&fault(0.0, 100.0, 0, "UNAVAILABLE")).abort,
        Some(Abort::Grpc(14))
    );
    assert_eq!(
        decide(&fault(0.0, 100.0, 0, "7")).abort,
        Some(Abort::Grpc(7))
    );
    assert_eq!(decide(&fault(0.0, 100.0, 0, "")).abort, None);
}

#[test]
fn decide_half_percentage_aborts_about_half() {
    let f = fault(0.0, 50.0, 500, "");
    let n = (0..4000).filter(|_| decide(&f).abort.is_some()).count();
    assert!((1700..2300).contains(&n), "{n}");
}

#[tokio::test(start_paused = true)]
async fn delay_waits_the_configured_time() {
    let start = tokio::time::Instant::now();
    delay(&Fault {
        delay_ms: 5000,
        ..fault(100.0, 0.0, 0, "")
    })
    .await;
    assert_eq!(start.elapsed(), Duration::from_millis(5000));
}
