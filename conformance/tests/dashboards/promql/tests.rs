use super::*;

fn uses(q: &str) -> Vec<(String, Vec<String>)> {
    metric_uses(q)
        .unwrap()
        .into_iter()
        .map(|m| (m.name, m.labels.into_iter().collect()))
        .collect()
}

fn owned(name: &str, labels: &[&str]) -> (String, Vec<String>) {
    (
        name.into(),
        labels.iter().map(|l| (*l).to_owned()).collect(),
    )
}

#[test]
fn tokenize_selector_with_variables_splits_every_part() {
    let t = tokenize(r#"rate(a_total{x=~"$ns", y!="v\"q"}[$__rate_interval]) > 0.5"#).unwrap();
    assert_eq!(
        t,
        vec![
            Token::Ident("rate".into()),
            Token::Punct("("),
            Token::Ident("a_total".into()),
            Token::Punct("{"),
            Token::Ident("x".into()),
            Token::Punct("=~"),
            Token::Str("$ns".into()),
            Token::Punct(","),
            Token::Ident("y".into()),
            Token::Punct("!="),
            Token::Str("v\"q".into()),
            Token::Punct("}"),
            Token::Punct("["),
            Token::Var("__rate_interval".into()),
            Token::Punct("]"),
            Token::Punct(")"),
            Token::Punct(">"),
            Token::Number("0.5".into()),
        ]
    );
}

#[test]
fn tokenize_durations_braced_variables_and_comments_are_single_tokens() {
    let t = tokenize("x[5m:1m] offset 1h30m # note\n${v:regex}").unwrap();
    assert_eq!(t[2], Token::Number("5m".into()));
    assert_eq!(t[3], Token::Punct(":"));
    assert_eq!(t[6], Token::Ident("offset".into()));
    assert_eq!(t[7], Token::Number("1h30m".into()));
    assert_eq!(t[8], Token::Var("v:regex".into()));
    assert_eq!(t.len(), 9);
}

#[test]
fn tokenize_unclosed_string_or_stray_character_is_an_error() {
    assert!(tokenize(r#"a{b="c}"#).is_err());
    assert!(tokenize("a ? b").is_err());
}

#[test]
fn metric_uses_functions_and_keywords_are_not_metrics() {
    let q = r#"sum(rate(a_total{reporter="destination"}[5m])) / sum(rate(b_total[5m])) > bool 0"#;
    assert_eq!(
        uses(q),
        vec![owned("a_total", &["reporter"]), owned("b_total", &[])]
    );
}

#[test]
fn metric_uses_grouping_applies_to_the_aggregated_metrics_only() {
    let q = "histogram_quantile(0.9, sum by (le, svc) (rate(d_bucket{r=\"x\"}[1m]))) \
             + on (svc) group_left max(g) without (pod)";
    let got = uses(q);
    assert_eq!(
        got,
        vec![
            owned("d_bucket", &["le", "r", "svc"]),
            owned("g", &["pod", "svc"]),
        ]
    );
}

#[test]
fn metric_uses_trailing_by_clause_applies_to_the_arguments() {
    let q = "sum(rate(x_total[1m])) by (code) / count(up)";
    assert_eq!(uses(q), vec![owned("x_total", &["code"]), owned("up", &[])]);
}

#[test]
fn metric_uses_name_selector_and_time_function() {
    let q = r#"min({__name__="cert_ts", pod=~"$w-.*"}) - time()"#;
    assert_eq!(uses(q), vec![owned("cert_ts", &["pod"])]);
}

#[test]
fn metric_uses_unbalanced_or_bad_matcher_is_an_error() {
    assert!(metric_uses("sum(rate(x[1m])").is_err());
    assert!(metric_uses("x{a}").is_err());
    assert!(metric_uses("sum by (a (x)").is_err());
    assert!(metric_uses("sum(x) by").is_err());
}

#[test]
fn variable_uses_label_values_adds_the_label_to_the_metric() {
    let got = variable_uses(r#"label_values(m_total{ns=~"$namespace", a="b,c"}, dest)"#).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].name, "m_total");
    assert_eq!(
        got[0].labels.iter().collect::<Vec<_>>(),
        ["a", "dest", "ns"]
    );
}

#[test]
fn variable_uses_label_values_without_metric_is_an_error() {
    assert!(variable_uses("label_values(namespace)").is_err());
    assert!(variable_uses("metrics(istio_.*)").is_err());
}
