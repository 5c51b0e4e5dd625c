use super::*;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::json;

const ISS: &str = "testing@secure.sluice.io";
const NOW: u64 = 1_900_000_000;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs `claims` with a signing function over `header.payload`.
fn token(header: Value, claims: Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = sign(signed.as_bytes());
    format!("{signed}.{}", b64(&sig))
}

/// The RSA test key (PKCS#8) and its JWKS, shared with the conformance scenario.
fn rsa() -> (RsaKeyPair, String) {
    let pem = include_str!("../../testdata/jwt-rsa-test-key.pk8.pem");
    let der = pem::parse(pem).unwrap();
    let key = RsaKeyPair::from_pkcs8(der.contents()).unwrap();
    let jwks = include_str!("../../testdata/jwt-rsa-test-jwks.json").to_owned();
    (key, jwks)
}

fn rs256(claims: Value) -> String {
    rs256_with(
        json!({"alg": "RS256", "kid": "sluice-test-rsa", "typ": "JWT"}),
        claims,
    )
}

/// A token signed with the RSA test key under any header.
fn rs256_with(header: Value, claims: Value) -> String {
    let (key, _) = rsa();
    token(header, claims, |m| {
        let mut sig = vec![0; key.public().modulus_len()];
        key.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            m,
            &mut sig,
        )
        .unwrap();
        sig
    })
}

fn rule(jwks: &str) -> pb::JwtRule {
    pb::JwtRule {
        policy: "default/jwt".into(),
        issuer: ISS.into(),
        jwks: jwks.into(),
        ..Default::default()
    }
}

fn authn(rules: Vec<pb::JwtRule>) -> Authn {
    Authn::compile(&rules).unwrap().unwrap()
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

fn claims() -> Value {
    json!({"iss": ISS, "sub": "alice", "exp": NOW + 3600, "groups": ["group1", "group2"],
           "scope": "read write", "nested": {"key": "value"}, "azp": "web", "aud": "bookinfo"})
}

fn refused(a: &Authn, headers: &mut HeaderMap) -> Failure {
    match a.authenticate_at(headers, None, NOW) {
        Outcome::Refused(f) => f,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn verified(a: &Authn, headers: &mut HeaderMap, query: Option<&str>) -> Identity {
    match a.authenticate_at(headers, query, NOW) {
        Outcome::Verified(id) => *id,
        other => panic!("expected a verified token, got {other:?}"),
    }
}

#[test]
fn rs256_token_gives_identity_and_the_token_header_is_removed() {
    let a = authn(vec![rule(&rsa().1)]);
    let mut h = bearer(&rs256(claims()));
    let id = verified(&a, &mut h, None);
    assert_eq!(
        id.principal.as_deref(),
        Some("testing@secure.sluice.io/alice")
    );
    assert_eq!(id.audiences, ["bookinfo"]);
    assert_eq!(id.presenter.as_deref(), Some("web"));
    assert_eq!(id.claim_strings(&["groups".into()]), ["group1", "group2"]);
    assert_eq!(
        id.claim_strings(&["nested".into(), "key".into()]),
        ["value"]
    );
    // `scope` is a space-separated list.
    assert_eq!(id.claim_strings(&["scope".into()]), ["read", "write"]);
    assert!(
        id.claim_strings(&["exp".into()]).is_empty(),
        "numbers never match"
    );
    assert!(!h.contains_key(http::header::AUTHORIZATION));
}

#[test]
fn no_token_is_anonymous_and_other_authorization_schemes_are_not_tokens() {
    let a = authn(vec![rule(&rsa().1)]);
    let mut h = HeaderMap::new();
    assert!(matches!(
        a.authenticate_at(&mut h, None, NOW),
        Outcome::Anonymous
    ));
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Basic dXNlcjpwdw=="),
    );
    assert!(matches!(
        a.authenticate_at(&mut h, None, NOW),
        Outcome::Anonymous
    ));
    // The scheme is case-sensitive, as Envoy reads it.
    let mut h = HeaderMap::new();
    let lower = format!("bearer {}", rs256(claims()));
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&lower).unwrap(),
    );
    assert!(matches!(
        a.authenticate_at(&mut h, None, NOW),
        Outcome::Anonymous
    ));
}

#[test]
fn time_claims_allow_sixty_seconds_of_skew() {
    let a = authn(vec![rule(&rsa().1)]);
    let with = |k: &str, v: u64| {
        let mut c = claims();
        c[k] = json!(v);
        bearer(&rs256(c))
    };
    assert_eq!(refused(&a, &mut with("exp", NOW - 61)), Failure::Expired);
    verified(&a, &mut with("exp", NOW - 59), None);
    assert_eq!(
        refused(&a, &mut with("nbf", NOW + 61)),
        Failure::NotYetValid
    );
    verified(&a, &mut with("nbf", NOW + 59), None);
    // No exp at all is accepted (Istio never requires it).
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    verified(&a, &mut bearer(&rs256(c)), None);
    let mut c = claims();
    c["exp"] = json!("tomorrow");
    assert_eq!(refused(&a, &mut bearer(&rs256(c))), Failure::Malformed);
}

#[test]
fn audiences_must_overlap_after_scheme_and_slash_are_dropped() {
    let mut r = rule(&rsa().1);
    r.audiences = vec!["https://bookinfo.example/".into(), "other".into()];
    let a = authn(vec![r]);
    let mut c = claims();
    c["aud"] = json!(["x", "bookinfo.example"]);
    verified(&a, &mut bearer(&rs256(c)), None);
    let f = refused(&a, &mut bearer(&rs256(claims())));
    assert_eq!(f, Failure::Audience);
    assert_eq!(f.status(), http::StatusCode::FORBIDDEN);
}

#[test]
fn unknown_issuer_bad_signature_wrong_kid_and_malformed_are_refused() {
    let (_, jwks) = rsa();
    let a = authn(vec![rule(&jwks)]);
    let mut c = claims();
    c["iss"] = json!("someone-else");
    let f = refused(&a, &mut bearer(&rs256(c)));
    assert_eq!(
        (f, f.status()),
        (Failure::UnknownIssuer, http::StatusCode::UNAUTHORIZED)
    );
    assert_eq!(f.message(), "Jwt issuer is not configured");

    // The payload changed after signing.
    let good = rs256(claims());
    let mut parts: Vec<&str> = good.split('.').collect();
    let mut c = claims();
    c["sub"] = json!("mallory");
    let forged = b64(c.to_string().as_bytes());
    parts[1] = &forged;
    assert_eq!(
        refused(&a, &mut bearer(&parts.join("."))),
        Failure::BadSignature
    );

    let other_kid = rs256_with(json!({"alg": "RS256", "kid": "rotated"}), claims());
    assert_eq!(refused(&a, &mut bearer(&other_kid)), Failure::NoMatchingKey);
    assert_eq!(refused(&a, &mut bearer("a.b")), Failure::Malformed);
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(claims().to_string().as_bytes())
    );
    assert_eq!(refused(&a, &mut bearer(&none)), Failure::UnsupportedAlg);
}

#[test]
fn ecdsa_ed25519_and_hmac_keys_verify() {
    let rng = SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let ec = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let point = ec.public_key().as_ref();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let ed = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let secret = b"a shared secret of at least 32 bytes!!";
    let jwks = json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec", "x": b64(&point[1..33]), "y": b64(&point[33..])},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(ed.public_key().as_ref())},
        {"kty": "oct", "kid": "hs", "k": b64(secret)},
        // Unusable here, skipped rather than refusing the set.
        {"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"},
        {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
    ]});
    let a = authn(vec![rule(&jwks.to_string())]);
    let es = token(json!({"alg": "ES256", "kid": "ec"}), claims(), |m| {
        ec.sign(&rng, m).unwrap().as_ref().to_vec()
    });
    let eddsa = token(json!({"alg": "EdDSA", "kid": "ed"}), claims(), |m| {
        ed.sign(m).as_ref().to_vec()
    });
    let hs = token(json!({"alg": "HS256"}), claims(), |m| {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        ring::hmac::sign(&key, m).as_ref().to_vec()
    });
    for t in [es, eddsa, hs] {
        verified(&a, &mut bearer(&t), None);
    }
    // An ES256 token checked against a key of another type never passes.
    let wrong = token(json!({"alg": "ES256", "kid": "ed"}), claims(), |m| {
        ec.sign(&rng, m).unwrap().as_ref().to_vec()
    });
    assert_eq!(refused(&a, &mut bearer(&wrong)), Failure::NoMatchingKey);
}

#[test]
fn custom_locations_replace_the_defaults() {
    let mut r = rule(&rsa().1);
    r.from_headers = vec![pb::JwtHeader {
        name: "x-jwt-assertion".into(),
        prefix: String::new(),
    }];
    r.from_params = vec!["my_token".into()];
    r.from_cookies = vec!["session".into()];
    let a = authn(vec![r]);
    let t = rs256(claims());
    // The default locations are not read any more.
    let mut h = bearer(&t);
    assert!(matches!(
        a.authenticate_at(&mut h, Some(&format!("access_token={t}")), NOW),
        Outcome::Anonymous
    ));
    let mut h = HeaderMap::new();
    h.insert("x-jwt-assertion", HeaderValue::from_str(&t).unwrap());
    verified(&a, &mut h, None);
    assert!(!h.contains_key("x-jwt-assertion"));
    let mut h = HeaderMap::new();
    verified(&a, &mut h, Some(&format!("a=1&my_token={t}")));
    let mut h = HeaderMap::new();
    let c = format!("theme=dark; session={t}");
    h.insert(http::header::COOKIE, HeaderValue::from_str(&c).unwrap());
    verified(&a, &mut h, None);
    // Cookies and parameters stay (Envoy removes only headers).
    assert!(h.contains_key(http::header::COOKIE));
}

#[test]
fn default_query_parameter_and_one_bad_token_among_good_ones() {
    let a = authn(vec![rule(&rsa().1)]);
    let t = rs256(claims());
    let mut h = HeaderMap::new();
    verified(&a, &mut h, Some(&format!("access_token={t}")));
    // Every token found must pass.
    let mut expired = claims();
    expired["exp"] = json!(NOW - 3600);
    let mut h = bearer(&t);
    let q = format!("access_token={}", rs256(expired));
    assert!(matches!(
        a.authenticate_at(&mut h, Some(&q), NOW),
        Outcome::Refused(Failure::Expired)
    ));
}

#[test]
fn output_headers_and_forwarding() {
    let mut r = rule(&rsa().1);
    r.forward_original_token = true;
    r.output_payload_to_header = "x-jwt-payload".into();
    r.output_claim_to_headers = vec![
        pb::JwtClaimToHeader {
            header: "x-sub".into(),
            claim: "sub".into(),
        },
        pb::JwtClaimToHeader {
            header: "x-nested".into(),
            claim: "nested.key".into(),
        },
        pb::JwtClaimToHeader {
            header: "x-exp".into(),
            claim: "exp".into(),
        },
        pb::JwtClaimToHeader {
            header: "x-groups".into(),
            claim: "groups".into(),
        },
        pb::JwtClaimToHeader {
            header: "x-missing".into(),
            claim: "nope".into(),
        },
    ];
    let a = authn(vec![r]);
    let t = rs256(claims());
    let mut h = bearer(&t);
    // A caller cannot set the output headers itself.
    h.insert("x-missing", HeaderValue::from_static("forged"));
    verified(&a, &mut h, None);
    assert!(
        h.contains_key(http::header::AUTHORIZATION),
        "forwardOriginalToken keeps it"
    );
    let payload = h.get("x-jwt-payload").unwrap().to_str().unwrap();
    assert_eq!(payload, t.split('.').nth(1).unwrap());
    assert_eq!(h.get("x-sub").unwrap(), "alice");
    assert_eq!(h.get("x-nested").unwrap(), "value");
    assert_eq!(h.get("x-exp").unwrap(), &(NOW + 3600).to_string());
    let groups = base64::engine::general_purpose::STANDARD.encode(r#"["group1","group2"]"#);
    assert_eq!(h.get("x-groups").unwrap(), &groups);
    assert!(!h.contains_key("x-missing"));
    // Stripped even when the request has no token.
    let mut h = HeaderMap::new();
    h.insert("x-sub", HeaderValue::from_static("forged"));
    a.authenticate_at(&mut h, None, NOW);
    assert!(!h.contains_key("x-sub"));
}

#[test]
fn rules_merge_and_unfetched_keys_fail_only_their_issuer() {
    let mut broken = rule("");
    broken.issuer = "other-issuer".into();
    broken.jwks_error = "fetching https://idp.example/jwks: connection refused".into();
    let a = authn(vec![rule(&rsa().1), broken]);
    verified(&a, &mut bearer(&rs256(claims())), None);
    let mut c = claims();
    c["iss"] = json!("other-issuer");
    assert_eq!(
        refused(&a, &mut bearer(&rs256(c))),
        Failure::KeysUnavailable
    );
    // A rule with no issuer checks every token.
    let mut any = rule(&rsa().1);
    any.issuer = String::new();
    let a = authn(vec![any]);
    let mut c = claims();
    c["iss"] = json!("whoever");
    let id = verified(&a, &mut bearer(&rs256(c)), None);
    assert_eq!(id.principal.as_deref(), Some("whoever/alice"));
    // No principal without a subject.
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sub");
    let id = verified(&a, &mut bearer(&rs256(c)), None);
    assert_eq!(id.principal, None);
}

#[test]
fn bad_rules_are_refused_with_the_field() {
    let e = Authn::compile(&[rule("{not json")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("default/jwt") && e.contains("jwks"), "{e}");
    // A key that cannot be used is skipped; the set's other keys still work.
    let mut set: Value = serde_json::from_str(&rsa().1).unwrap();
    let keys = set["keys"].as_array_mut().unwrap();
    keys.insert(
        0,
        json!({"kty": "RSA", "kid": "sluice-test-rsa", "n": "***", "e": "AQAB"}),
    );
    keys.insert(
        0,
        json!({"kty": "EC", "crv": "secp256k1", "x": "AQ", "y": "AQ"}),
    );
    keys.insert(
        0,
        json!({"kty": "EC", "crv": "P-256", "x": "AQ", "y": "AQ"}),
    );
    keys.insert(0, json!({"kty": "RSA", "kid": 7, "n": "AQAB", "e": "AQAB"}));
    let a = authn(vec![rule(&set.to_string())]);
    verified(&a, &mut bearer(&rs256(claims())), None);
    let mut r = rule(&rsa().1);
    r.output_payload_to_header = "bad header".into();
    let e = Authn::compile(&[r]).unwrap_err().to_string();
    assert!(e.contains("outputPayloadToHeader"), "{e}");
    assert!(Authn::compile(&[]).unwrap().is_none());
}

#[test]
fn prefix_is_found_anywhere_and_the_token_ends_at_a_non_token_byte() {
    assert_eq!(
        strip_prefix("Bearer abc.def-_1", "Bearer "),
        Some("abc.def-_1")
    );
    assert_eq!(strip_prefix("x, Bearer abc, y", "Bearer "), Some("abc"));
    assert_eq!(strip_prefix("abc", ""), Some("abc"));
    assert_eq!(strip_prefix("Basic abc", "Bearer "), None);
}

#[test]
fn every_value_of_a_repeated_header_is_a_token_and_each_must_pass() {
    let a = authn(vec![rule(&rsa().1)]);
    let mut expired = claims();
    expired["exp"] = json!(NOW - 3600);
    let mut h = bearer(&rs256(claims()));
    let second = format!("Bearer {}", rs256(expired));
    h.append(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&second).unwrap(),
    );
    assert_eq!(refused(&a, &mut h), Failure::Expired);
}

#[test]
fn a_verified_query_token_leaves_the_url_unless_forwarded() {
    let t = rs256(claims());
    let a = authn(vec![rule(&rsa().1)]);
    let mut uri: http::Uri = format!("/get?a=1&access_token={t}&b=2").parse().unwrap();
    let mut h = HeaderMap::new();
    assert!(matches!(
        a.authenticate(&mut h, &mut uri),
        Outcome::Verified(_)
    ));
    assert_eq!(uri.to_string(), "/get?a=1&b=2");
    let mut only: http::Uri = format!("/get?access_token={t}").parse().unwrap();
    assert!(matches!(
        a.authenticate(&mut h, &mut only),
        Outcome::Verified(_)
    ));
    assert_eq!(only.to_string(), "/get");
    let mut r = rule(&rsa().1);
    r.forward_original_token = true;
    let a = authn(vec![r]);
    let mut kept: http::Uri = format!("/get?access_token={t}").parse().unwrap();
    assert!(matches!(
        a.authenticate(&mut h, &mut kept),
        Outcome::Verified(_)
    ));
    assert!(kept.to_string().contains("access_token="));
}

#[test]
fn fractional_time_claims_are_cut_to_seconds_and_aud_must_be_strings() {
    let a = authn(vec![rule(&rsa().1)]);
    let mut c = claims();
    c["exp"] = json!((NOW + 100) as f64 + 0.5);
    verified(&a, &mut bearer(&rs256(c)), None);
    let mut c = claims();
    c["aud"] = json!(["bookinfo", 7]);
    assert_eq!(refused(&a, &mut bearer(&rs256(c))), Failure::Malformed);
    let mut c = claims();
    c["iss"] = json!(42);
    assert_eq!(refused(&a, &mut bearer(&rs256(c))), Failure::Malformed);
}
