//! The Prometheus text format (0.0.4), for readers of `/metrics` that do
//! not speak OpenMetrics: `promtool check metrics`, older scrapers, and
//! Prometheus itself when it does not ask for OpenMetrics.
//!
//! `prometheus_client` encodes OpenMetrics only. The two formats differ in
//! what this project's series use in three ways: a counter family is
//! named without `_total` in OpenMetrics (`# TYPE x counter`, samples
//! `x_total`) and with it in the text format; `# UNIT` and `# EOF` lines
//! exist only in OpenMetrics; OpenMetrics types `info`, `stateset` and
//! `unknown` are gauges or untyped in the text format. Samples are the
//! same (this project sets no timestamps, exemplars or `_created`
//! samples; `_created` samples and exemplars are dropped should they
//! appear).

/// The content type of [`prometheus_text`]'s output.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rewrites OpenMetrics text, as [`Metrics::encode`](super::Metrics::encode)
/// produces it, into the Prometheus text format 0.0.4.
pub fn prometheus_text(openmetrics: &str) -> String {
    let mut text = String::with_capacity(openmetrics.len());
    // The HELP line of the family whose TYPE line comes next: in the text
    // format a counter's HELP names it with `_total`, known only at TYPE.
    let mut help: Option<(&str, &str)> = None;
    let mut counter: Option<String> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, doc));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (family, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "stateset" => (name.to_owned(), "gauge"),
                "gaugehistogram" => (name.to_owned(), "histogram"),
                "unknown" => (name.to_owned(), "untyped"),
                other => (name.to_owned(), other),
            };
            if let Some((helped, doc)) = help.take()
                && helped == name
            {
                text.push_str(&format!("# HELP {family} {doc}\n"));
            }
            text.push_str(&format!("# TYPE {family} {kind}\n"));
            counter = (kind == "counter").then(|| name.to_owned());
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
        } else if line.starts_with('#') {
            text.push_str(line);
            text.push('\n');
        } else if !line.is_empty() {
            let sample = without_exemplar(line);
            let created = counter
                .as_deref()
                .is_some_and(|name| sample_name(sample) == format!("{name}_created"));
            if !created {
                text.push_str(sample);
                text.push('\n');
            }
        }
    }
    text
}

/// The metric name of a sample line.
fn sample_name(sample: &str) -> &str {
    let end = sample.find(['{', ' ']).unwrap_or(sample.len());
    &sample[..end]
}

/// A sample line without its exemplar (` # {…} value`), which the text
/// format does not have. A `#` inside a quoted label value is not one.
fn without_exemplar(sample: &str) -> &str {
    let mut in_quotes = false;
    let mut escaped = false;
    for (at, c) in sample.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '#' if !in_quotes => return sample[..at].trim_end(),
            _ => {}
        }
    }
    sample
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_with_total_and_units_and_eof_are_dropped() {
        let openmetrics = "\
# HELP workqueue_adds Total number of adds handled by workqueue
# TYPE workqueue_adds counter
workqueue_adds_total{name=\"greeting\",controller=\"greeting\"} 3
workqueue_adds_created{name=\"greeting\",controller=\"greeting\"} 1700000000.0
# HELP workqueue_queue_duration_seconds How long in seconds an item stays in workqueue
# TYPE workqueue_queue_duration_seconds histogram
# UNIT workqueue_queue_duration_seconds seconds
workqueue_queue_duration_seconds_sum{name=\"g\"} 0.5
workqueue_queue_duration_seconds_count{name=\"g\"} 1
workqueue_queue_duration_seconds_bucket{le=\"+Inf\",name=\"g\"} 1
# HELP workqueue_depth Current depth of workqueue
# TYPE workqueue_depth gauge
workqueue_depth{name=\"a # not an exemplar\"} 2 # {trace_id=\"x\"} 1.0
# EOF
";
        assert_eq!(
            prometheus_text(openmetrics),
            "\
# HELP workqueue_adds_total Total number of adds handled by workqueue
# TYPE workqueue_adds_total counter
workqueue_adds_total{name=\"greeting\",controller=\"greeting\"} 3
# HELP workqueue_queue_duration_seconds How long in seconds an item stays in workqueue
# TYPE workqueue_queue_duration_seconds histogram
workqueue_queue_duration_seconds_sum{name=\"g\"} 0.5
workqueue_queue_duration_seconds_count{name=\"g\"} 1
workqueue_queue_duration_seconds_bucket{le=\"+Inf\",name=\"g\"} 1
# HELP workqueue_depth Current depth of workqueue
# TYPE workqueue_depth gauge
workqueue_depth{name=\"a # not an exemplar\"} 2
"
        );
    }

    #[test]
    fn an_empty_registry_is_an_empty_text() {
        assert_eq!(prometheus_text("# EOF\n"), "");
    }
}
