use super::*;

#[test]
fn parse_duration_common_forms_parse() {
    assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
    assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
    assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
    assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
    assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
}

#[test]
fn parse_duration_malformed_is_refused() {
    for bad in ["", "s", "10", "1.2.3s", "5d", "1 s", "abc", "1sm", "."] {
        assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn parse_duration_negative_is_refused() {
    assert_eq!(
        parse_duration("-1s"),
        Err("duration `-1s` must not be negative".into())
    );
}

#[test]
fn check_duration_below_one_ms_is_refused() {
    assert_eq!(
        check_duration("500us"),
        Err("duration must be >= 1ms".into())
    );
    assert_eq!(check_duration("0s"), Err("duration must be >= 1ms".into()));
    assert_eq!(
        check_duration("1.0005s"),
        Err("only durations to ms precision are supported".into())
    );
    assert_eq!(check_duration("1ms"), Ok(Duration::from_millis(1)));
}
