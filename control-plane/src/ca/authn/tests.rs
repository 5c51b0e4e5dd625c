use super::*;
use k8s_openapi::api::authentication::v1::UserInfo;

fn status(authenticated: bool, audiences: &[&str], user: &str) -> TokenReviewStatus {
    TokenReviewStatus {
        authenticated: Some(authenticated),
        audiences: Some(audiences.iter().map(|a| a.to_string()).collect()),
        user: Some(UserInfo {
            username: Some(user.to_owned()),
            ..Default::default()
        }),
        error: None,
    }
}

fn ours() -> Vec<String> {
    vec!["sluice".to_owned()]
}

#[test]
fn parse_service_account_username_gives_namespace_and_name() {
    assert_eq!(
        parse_service_account("system:serviceaccount:shop:reviews"),
        Some(("shop".into(), "reviews".into()))
    );
}

#[test]
fn parse_service_account_other_users_refused() {
    for bad in [
        "admin",
        "system:serviceaccount:shop",
        "system:serviceaccount::reviews",
        "system:serviceaccount:shop:",
        "system:serviceaccount:shop:reviews:extra",
        "system:serviceaccount:shop:a/b",
        "system:node:worker-1",
        "",
    ] {
        assert_eq!(parse_service_account(bad), None, "{bad}");
    }
}

#[test]
fn identity_from_status_authenticated_for_our_audience_accepted() {
    let s = status(
        true,
        &["other", "sluice"],
        "system:serviceaccount:shop:reviews",
    );
    assert_eq!(
        identity_from_status(&s, &ours()),
        Ok(("shop".into(), "reviews".into()))
    );
}

#[test]
fn identity_from_status_unauthenticated_refused_with_server_reason() {
    let mut s = status(false, &[], "");
    s.error = Some("token has expired".into());
    assert_eq!(
        identity_from_status(&s, &ours()),
        Err(AuthnError::Rejected("token has expired".into()))
    );
    assert!(matches!(
        identity_from_status(&TokenReviewStatus::default(), &ours()),
        Err(AuthnError::Rejected(_))
    ));
}

#[test]
fn identity_from_status_other_or_missing_audience_refused() {
    let s = status(true, &["other"], "system:serviceaccount:shop:reviews");
    assert!(matches!(
        identity_from_status(&s, &ours()),
        Err(AuthnError::WrongAudience { .. })
    ));
    let s = status(true, &[], "system:serviceaccount:shop:reviews");
    assert!(matches!(
        identity_from_status(&s, &ours()),
        Err(AuthnError::WrongAudience { .. })
    ));
}

#[test]
fn identity_from_status_non_service_account_user_refused() {
    let s = status(true, &["sluice"], "kubernetes-admin");
    assert_eq!(
        identity_from_status(&s, &ours()),
        Err(AuthnError::NotServiceAccount("kubernetes-admin".into()))
    );
}

#[test]
fn cache_entry_fresh_hit_then_expires() {
    let cache = ReviewCache::new(Duration::from_secs(60), 10);
    let now = Instant::now();
    let key = ReviewCache::key("token-a");
    cache.insert(key, ("shop".into(), "reviews".into()), now);
    assert_eq!(
        cache.get(&key, now + Duration::from_secs(59)),
        Some(("shop".into(), "reviews".into()))
    );
    assert_eq!(cache.get(&key, now + Duration::from_secs(60)), None);
    assert_eq!(cache.get(&ReviewCache::key("token-b"), now), None);
}

#[test]
fn cache_key_is_digest_not_token() {
    let key = ReviewCache::key("secret-token");
    assert_eq!(key, ReviewCache::key("secret-token"));
    assert_ne!(key, ReviewCache::key("secret-tokem"));
    assert!(!key.windows(6).any(|w| w == b"secret"));
}

#[test]
fn cache_full_drops_expired_first_and_stays_bounded() {
    let cache = ReviewCache::new(Duration::from_secs(60), 3);
    let t0 = Instant::now();
    let who = || ("ns".to_owned(), "sa".to_owned());
    cache.insert(ReviewCache::key("old-1"), who(), t0);
    cache.insert(ReviewCache::key("old-2"), who(), t0);
    let t1 = t0 + Duration::from_secs(30);
    cache.insert(ReviewCache::key("fresh"), who(), t1);
    // Full; at t0+61 s the two old entries have expired and make room.
    let t2 = t0 + Duration::from_secs(61);
    cache.insert(ReviewCache::key("new"), who(), t2);
    assert_eq!(cache.len(), 2);
    assert!(cache.get(&ReviewCache::key("fresh"), t2).is_some());
    assert!(cache.get(&ReviewCache::key("new"), t2).is_some());
    // Full of fresh entries: never grows past capacity.
    for i in 0..10 {
        cache.insert(ReviewCache::key(&format!("burst-{i}")), who(), t2);
        assert!(cache.len() <= 3, "{}", cache.len());
    }
}

#[tokio::test]
async fn authenticate_local_mode_bootstrap_only() {
    let tokens = Arc::new(BootstrapTokens::from_secret(b"secret"));
    let authn = Authenticator::bootstrap(tokens.clone());
    let token = tokens.issue("shop", "reviews");
    assert_eq!(
        authn.authenticate(&token).await,
        Ok(("shop".into(), "reviews".into()))
    );
    assert_eq!(
        authn.authenticate("eyJhbGciOiJSUzI1NiJ9.e30.sig").await,
        Err(AuthnError::NotBootstrap)
    );
    let forged = token.replace("reviews", "ratings");
    assert_eq!(
        authn.authenticate(&forged).await,
        Err(AuthnError::Bootstrap(InvalidToken::BadSignature))
    );
}

#[tokio::test]
async fn authenticate_api_server_unreachable_is_unavailable_and_bootstrap_still_works() {
    // A port nobody listens on: bind, note it, close.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let uri: http::Uri = format!("http://{addr}").parse().expect("uri");
    let client = kube::Client::try_from(kube::Config::new(uri)).expect("client");
    let tokens = Arc::new(BootstrapTokens::from_secret(b"secret"));
    let authn = Authenticator::bootstrap(tokens.clone()).with_token_review(client, ours());
    let err = authn
        .authenticate("eyJhbGciOiJSUzI1NiJ9.e30.sig")
        .await
        .expect_err("no API server");
    assert!(err.is_unavailable(), "{err}");
    assert_eq!(
        authn.authenticate(&tokens.issue("shop", "reviews")).await,
        Ok(("shop".into(), "reviews".into()))
    );
}
