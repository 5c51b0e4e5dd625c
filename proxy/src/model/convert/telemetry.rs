//! Conversion of the telemetry settings (tracing, access log); environment
//! custom tags are read here, once per applied config.

use sluice_api::config as pb;

use super::{InvalidConfig, Problem, invalid};
use crate::metrics::{DisabledMetrics, TagPlans};
use crate::telemetry::{
    AccessLog, CustomTag, LogEncoding, TagValue, TelemetryConfig, Tracing, TracingMode,
};

pub(super) fn telemetry(t: Option<&pb::Telemetry>) -> Result<TelemetryConfig, InvalidConfig> {
    let Some(t) = t else {
        return Ok(TelemetryConfig::default());
    };
    Ok(TelemetryConfig {
        tracing: t.tracing.as_ref().map(tracing).transpose()?,
        access_log: t.access_log.as_ref().map(access_log).transpose()?,
        disabled_metrics: DisabledMetrics {
            client: metric_bits(&t.client_disabled_metrics)?,
            server: metric_bits(&t.server_disabled_metrics)?,
        },
        metric_tags: TagPlans::new(&t.metric_tags, |list| {
            metric_bits(list).map_err(|e| e.to_string())
        })
        .map_err(|e| invalid("telemetry metrics", Problem::BadMetricTag(e)))?
        .map(std::sync::Arc::new),
    })
}

/// A list of standard metrics as a bit set (bit `m` for wire value `m`).
fn metric_bits(list: &[i32]) -> Result<u16, InvalidConfig> {
    list.iter().try_fold(0u16, |bits, &value| {
        match pb::StandardMetric::try_from(value) {
            Ok(m) if m != pb::StandardMetric::Unspecified => Ok(bits | 1 << (m as i32)),
            _ => Err(invalid(
                "telemetry metrics",
                Problem::UnknownEnum {
                    what: "disabled metric",
                    value,
                },
            )),
        }
    })
}

fn tracing(t: &pb::Tracing) -> Result<Tracing, InvalidConfig> {
    let item = "telemetry tracing";
    let pct = t.sampling_percent;
    if !(0.0..=100.0).contains(&pct) {
        return Err(invalid(
            item,
            Problem::BadPercent {
                what: "sampling_percent",
                value: pct,
            },
        ));
    }
    if !t.otlp_endpoint.is_empty() {
        let has_port = t
            .otlp_endpoint
            .parse::<http::uri::Authority>()
            .is_ok_and(|a| a.port_u16().is_some());
        if !has_port {
            return Err(invalid(
                format!("{item} otlp_endpoint"),
                Problem::BadAddress(t.otlp_endpoint.clone()),
            ));
        }
    }
    let mode = mode(t.mode, item)?;
    Ok(Tracing {
        sampling_percent: pct,
        otlp_endpoint: t.otlp_endpoint.clone(),
        service_name: t.service_name.as_str().into(),
        custom_tags: t
            .custom_tags
            .iter()
            .map(custom_tag)
            .collect::<Result<_, _>>()?,
        mode,
        provider: t.provider.clone(),
    })
}

fn custom_tag(tag: &pb::CustomTag) -> Result<CustomTag, InvalidConfig> {
    use pb::custom_tag::Value;
    let item = format!("telemetry custom tag {:?}", tag.name);
    if tag.name.is_empty() {
        return Err(invalid(item, Problem::Required("name")));
    }
    let value = match &tag.value {
        Some(Value::Literal(v)) => TagValue::Literal(v.as_str().into()),
        Some(Value::Header(h)) => {
            if http::HeaderName::from_bytes(h.name.as_bytes()).is_err() {
                return Err(invalid(item, Problem::BadHeaderName(h.name.clone())));
            }
            TagValue::Header {
                name: h.name.to_ascii_lowercase(),
                default: h.default_value.as_str().into(),
            }
        }
        Some(Value::Environment(e)) => TagValue::Environment {
            name: e.name.clone(),
            value: std::env::var(&e.name)
                .unwrap_or_else(|_| e.default_value.clone())
                .into(),
        },
        None => return Err(invalid(item, Problem::Required("value"))),
    };
    Ok(CustomTag {
        name: tag.name.as_str().into(),
        value,
    })
}

fn access_log(a: &pb::AccessLog) -> Result<AccessLog, InvalidConfig> {
    let encoding = match pb::AccessLogEncoding::try_from(a.encoding) {
        Ok(pb::AccessLogEncoding::Text) => LogEncoding::Text,
        Ok(pb::AccessLogEncoding::Json) => LogEncoding::Json,
        Err(_) => {
            return Err(invalid(
                "telemetry access_log",
                Problem::UnknownEnum {
                    what: "access log encoding",
                    value: a.encoding,
                },
            ));
        }
    };
    let filter_expr = if a.filter.is_empty() {
        None
    } else {
        let expr = sluice_api::cel::parse(&a.filter)
            .map_err(|e| invalid("telemetry access_log filter", e))?;
        Some(std::sync::Arc::new(expr))
    };
    Ok(AccessLog {
        encoding,
        provider: a.provider.clone(),
        mode: mode(a.mode, "telemetry access_log")?,
        filter: a.filter.clone(),
        filter_headers: filter_expr
            .as_ref()
            .map(|e| e.headers())
            .unwrap_or_default(),
        filter_expr,
    })
}

/// A side selection (tracing or access log) from its wire value.
fn mode(value: i32, item: &str) -> Result<TracingMode, InvalidConfig> {
    match pb::TracingMode::try_from(value) {
        Ok(pb::TracingMode::ClientAndServer) => Ok(TracingMode::ClientAndServer),
        Ok(pb::TracingMode::Client) => Ok(TracingMode::Client),
        Ok(pb::TracingMode::Server) => Ok(TracingMode::Server),
        Err(_) => Err(invalid(
            item,
            Problem::UnknownEnum {
                what: "mode",
                value,
            },
        )),
    }
}
