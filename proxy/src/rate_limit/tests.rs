use http::HeaderMap;

use super::*;
use crate::model::StringMatch;

fn view<'a>(path: &'a str, headers: &'a HeaderMap) -> RequestView<'a> {
    RequestView {
        method: "GET",
        scheme: "http",
        authority: "reviews:9080",
        path,
        query: None,
        headers,
    }
}

fn limit(callers: Callers, matches: Vec<RouteMatch>, ports: Vec<u16>) -> RateLimit {
    RateLimit::new(
        "default/RateLimitPolicy/r".into(),
        2,
        1,
        60_000,
        matches,
        100.0,
        100.0,
        callers,
        ports,
    )
}

#[tokio::test(start_paused = true)]
async fn limit_shared_bucket_refuses_after_burst() {
    let metrics = crate::metrics::Metrics::new();
    let limits = vec![limit(Callers::Shared, vec![], vec![])];
    let h = HeaderMap::new();
    for _ in 0..2 {
        assert!(matches!(
            gate(
                &limits,
                Stage::AfterAuthorization,
                Some(9080),
                &view("/", &h),
                "a",
                &metrics.resilience
            ),
            Gate::Pass(Some(_))
        ));
    }
    let Gate::Refuse(l, d) = gate(
        &limits,
        Stage::AfterAuthorization,
        Some(9080),
        &view("/", &h),
        "b",
        &metrics.resilience,
    ) else {
        panic!("third request passed");
    };
    let resp = refused(l, d);
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(resp.headers()["x-ratelimit-limit"], "2");
    assert_eq!(resp.headers()["x-envoy-ratelimited"], "true");
    assert_eq!(resp.headers()["x-ratelimit-reset"], "60");
}

#[tokio::test(start_paused = true)]
async fn limit_each_caller_gets_its_own_bucket() {
    let metrics = crate::metrics::Metrics::new();
    let limits = vec![limit(Callers::Each, vec![], vec![])];
    let h = HeaderMap::new();
    let go = |p| {
        gate(
            &limits,
            Stage::AfterAuthorization,
            None,
            &view("/", &h),
            p,
            &metrics.resilience,
        )
    };
    assert!(matches!(go("spiffe://td/ns/a/sa/x"), Gate::Pass(_)));
    assert!(matches!(go("td/ns/a/sa/x"), Gate::Pass(_)));
    assert!(
        matches!(go("td/ns/a/sa/x"), Gate::Refuse(..)),
        "same caller, spiffe:// or not"
    );
    assert!(matches!(go("td/ns/b/sa/y"), Gate::Pass(Some(_))));
}

#[tokio::test(start_paused = true)]
async fn limit_outside_ports_matches_or_callers_does_not_apply() {
    let m = RouteMatch {
        uri: Some(StringMatch::Prefix("/api".into())),
        ..RouteMatch::default()
    };
    let listed = Callers::Listed(vec!["td/ns/a/sa/x".into()]);
    let l = limit(listed, vec![m], vec![9080]);
    let h = HeaderMap::new();
    assert!(!l.covers(Some(9080), &view("/other", &h), "td/ns/a/sa/x"));
    assert!(!l.covers(Some(9090), &view("/api", &h), "td/ns/a/sa/x"));
    assert!(!l.covers(Some(9080), &view("/api", &h), "td/ns/b/sa/y"));
    assert!(l.covers(Some(9080), &view("/api/v1", &h), "spiffe://td/ns/a/sa/x"));
}

#[tokio::test(start_paused = true)]
async fn limit_not_enforced_is_shadow_only() {
    let metrics = crate::metrics::Metrics::new();
    let mut l = limit(Callers::Shared, vec![], vec![]);
    l.enforced_percent = 0.0;
    let limits = vec![l];
    let h = HeaderMap::new();
    for _ in 0..5 {
        assert!(matches!(
            gate(
                &limits,
                Stage::AfterAuthorization,
                None,
                &view("/", &h),
                "",
                &metrics.resilience
            ),
            Gate::Pass(_)
        ));
    }
    assert!(metrics.encode().contains("decision=\"shadow\""));
}

#[tokio::test(start_paused = true)]
async fn limit_runs_only_at_its_stage() {
    let metrics = crate::metrics::Metrics::new();
    let mut early = limit(Callers::Shared, vec![], vec![]);
    early.stage = Stage::BeforeAuthentication;
    let limits = vec![early];
    let h = HeaderMap::new();
    let go = |stage| {
        gate(
            &limits,
            stage,
            None,
            &view("/", &h),
            "",
            &metrics.resilience,
        )
    };
    // The other stages never touch the bucket.
    for _ in 0..5 {
        assert!(matches!(go(Stage::AfterAuthorization), Gate::Pass(None)));
        assert!(matches!(go(Stage::BeforeAuthorization), Gate::Pass(None)));
    }
    assert!(matches!(
        go(Stage::BeforeAuthentication),
        Gate::Pass(Some(_))
    ));
}

fn header(name: &'static str, value: &'static str, append: HeaderAction) -> HeaderToAdd {
    HeaderToAdd {
        name: http::HeaderName::from_static(name),
        value: http::HeaderValue::from_static(value),
        append,
    }
}

#[tokio::test(start_paused = true)]
async fn limit_refusal_has_its_status_and_response_headers() {
    let metrics = crate::metrics::Metrics::new();
    let mut l = limit(Callers::Shared, vec![], vec![]);
    l.status = http::StatusCode::SERVICE_UNAVAILABLE;
    l.x_ratelimit_headers = false;
    l.response_headers = vec![
        header(
            "x-local-rate-limit",
            "true",
            HeaderAction::OverwriteIfExistsOrAdd,
        ),
        // Envoy's own mark is there already: overwritten, not doubled.
        header(
            "x-envoy-ratelimited",
            "yes",
            HeaderAction::OverwriteIfExists,
        ),
        header("x-added", "1", HeaderAction::AppendIfExistsOrAdd),
        header("x-added", "2", HeaderAction::AppendIfExistsOrAdd),
        header("x-added", "3", HeaderAction::AddIfAbsent),
        header("x-absent", "1", HeaderAction::OverwriteIfExists),
    ];
    let limits = vec![l];
    let h = HeaderMap::new();
    let go = || {
        gate(
            &limits,
            Stage::AfterAuthorization,
            Some(9080),
            &view("/", &h),
            "a",
            &metrics.resilience,
        )
    };
    assert!(matches!(go(), Gate::Pass(_)));
    assert!(matches!(go(), Gate::Pass(_)));
    let Gate::Refuse(l, d) = go() else {
        panic!("third request passed");
    };
    let resp = refused(l, d);
    assert_eq!(resp.status(), 503);
    let headers = resp.headers();
    assert_eq!(headers["x-local-rate-limit"], "true");
    assert_eq!(headers["x-envoy-ratelimited"], "yes");
    let added: Vec<_> = headers.get_all("x-added").iter().collect();
    assert_eq!(added, ["1", "2"]);
    assert!(!headers.contains_key("x-absent"));
    assert!(!headers.contains_key("x-ratelimit-limit"));
}

#[tokio::test(start_paused = true)]
async fn limit_unenforced_requests_are_noted_and_except_ports_skipped() {
    let metrics = crate::metrics::Metrics::new();
    let mut l = limit(Callers::Shared, vec![], vec![]);
    l.enforced_percent = 0.0;
    l.request_headers_when_not_enforced = vec![header(
        "x-over-limit",
        "true",
        HeaderAction::AppendIfExistsOrAdd,
    )];
    l.except_ports = vec![8000];
    let limits = vec![l];
    let h = HeaderMap::new();
    fn go<'a>(
        limits: &'a [RateLimit],
        port: u16,
        h: &HeaderMap,
        metrics: &crate::metrics::Metrics,
        unenforced: &mut Vec<&'a RateLimit>,
    ) -> bool {
        let gate = gate_noting(
            limits,
            Stage::AfterAuthorization,
            Some(port),
            &view("/", h),
            "a",
            &metrics.resilience,
            unenforced,
        );
        matches!(gate, Gate::Pass(_))
    }
    let mut noted = Vec::new();
    for _ in 0..2 {
        assert!(go(&limits, 9080, &h, &metrics, &mut noted));
    }
    assert!(noted.is_empty());
    // Over the limit, not enforced: forwarded, with the header to add.
    assert!(go(&limits, 9080, &h, &metrics, &mut noted));
    assert_eq!(noted.len(), 1);
    let mut request = HeaderMap::new();
    for h in &noted[0].request_headers_when_not_enforced {
        h.apply(&mut request);
    }
    assert_eq!(request["x-over-limit"], "true");
    // A port a per-route config took over is not covered.
    let mut none = Vec::new();
    assert!(go(&limits, 8000, &h, &metrics, &mut none));
    assert!(none.is_empty());
}
