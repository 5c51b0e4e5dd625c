//! The text exposition where Envoy's admin `/stats/prometheus` (what Istio's
//! sidecars serve) writes it differently from the client library: bucket bounds.

#[cfg(test)]
mod tests;

use std::fmt::Write as _;

/// Rewrites every histogram bucket's `le` value as Envoy prints bucket bounds
/// (`{:.32g}`: `le="2500"`, `le="0.5"`) where the client library writes a
/// float (`le="2500.0"`). Prometheus 2 keeps `le` as scraped, so queries and
/// recording rules naming a bucket select the same series as on Istio.
/// Scrape-time only: the exposition is copied once.
pub(super) fn envoy_bucket_bounds(text: String) -> String {
    if !text.contains("_bucket{") {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        match bucket_bound(line) {
            Some((start, end, bound)) => {
                out.push_str(&line[..start]);
                // Rust's shortest form: Envoy's for every bound that is exact
                // in binary (all of the proxy's are); writing to a String cannot fail.
                let _ = write!(out, "{bound}");
                out.push_str(&line[end..]);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Where the `le` value of a `<name>_bucket{le="<bound>",...} <count>` line
/// is, and the bound; `None` for other lines and for `+Inf`. The library
/// writes `le` as the first label.
fn bucket_bound(line: &str) -> Option<(usize, usize, f64)> {
    const LE: &str = "le=\"";
    let brace = line.find('{')?;
    if !line[..brace].ends_with("_bucket") {
        return None;
    }
    let start = brace + 1 + LE.len();
    let value = line.get(brace + 1..)?.strip_prefix(LE)?;
    let end = start + value.find('"')?;
    let bound: f64 = line[start..end].parse().ok()?;
    bound.is_finite().then_some((start, end, bound))
}
