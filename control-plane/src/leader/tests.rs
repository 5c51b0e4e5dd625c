use super::*;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).expect("timestamp")
}

fn held(holder: &str, renewed: i64, duration: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(holder.into()),
        renew_time: Some(MicroTime(at(renewed))),
        lease_duration_seconds: Some(duration),
        ..LeaseSpec::default()
    }
}

#[test]
fn decide_absent_lease_creates() {
    assert_eq!(decide(at(0), None, "a"), Action::Create);
}

#[test]
fn decide_own_lease_renews_even_when_expired() {
    assert_eq!(decide(at(1), Some(&held("a", 0, 15)), "a"), Action::Renew);
    assert_eq!(decide(at(100), Some(&held("a", 0, 15)), "a"), Action::Renew);
}

#[test]
fn decide_live_foreign_lease_follows_until_expiry() {
    assert_eq!(
        decide(at(10), Some(&held("b", 0, 15)), "a"),
        Action::Follow {
            holder: "b".into(),
            expires: at(15)
        }
    );
    // Exactly at expiry the holder still has it.
    assert!(matches!(
        decide(at(15), Some(&held("b", 0, 15)), "a"),
        Action::Follow { .. }
    ));
}

#[test]
fn decide_expired_foreign_lease_takes_over() {
    assert_eq!(
        decide(at(16), Some(&held("b", 0, 15)), "a"),
        Action::Acquire
    );
}

#[test]
fn decide_released_lease_acquires_at_once() {
    let mut spec = held("b", 0, 15);
    spec.holder_identity = None;
    assert_eq!(decide(at(1), Some(&spec), "a"), Action::Acquire);
    spec.holder_identity = Some(String::new());
    assert_eq!(decide(at(1), Some(&spec), "a"), Action::Acquire);
}

#[test]
fn decide_foreign_lease_without_renew_time_is_taken_over() {
    let mut spec = held("b", 0, 15);
    spec.renew_time = None;
    assert_eq!(decide(at(1), Some(&spec), "a"), Action::Acquire);
}

#[test]
fn leader_config_identity_has_random_suffix() {
    let a = LeaderConfig::new("ns".into(), "l".into(), 3);
    let b = LeaderConfig::new("ns".into(), "l".into(), 3);
    assert_ne!(a.identity, b.identity);
    assert_eq!(a.lease_duration, Duration::from_secs(3));
}
