//! The two text expositions a scraper may ask for. prometheus-client writes OpenMetrics
//! 1.0; the classic Prometheus text format 0.0.4 (what `promtool check metrics` and
//! older scrapers read) differs from it only in naming a counter's family by its
//! `_total` sample name and in having no `# UNIT` and `# EOF` lines, so it is derived
//! from the OpenMetrics text rather than encoded a second time.

/// The exposition format of a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (the default, as for every Prometheus client).
    Prometheus,
    /// OpenMetrics 1.0 text, when the scraper's `Accept` asks for it.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for (OpenMetrics when it names it; Prometheus
    /// servers do).
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// `openmetrics` (as prometheus-client encodes it) in Prometheus text format 0.0.4.
pub(super) fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let rest = line.strip_prefix(tag)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{tag}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENMETRICS: &str = "\
# HELP domicile_statements SQL statements.
# TYPE domicile_statements counter
domicile_statements_total{kind=\"select\"} 3
# HELP domicile_busy_seconds Busy.
# TYPE domicile_busy_seconds counter
# UNIT domicile_busy_seconds seconds
domicile_busy_seconds_total 1.5
# HELP domicile_connections_open Open.
# TYPE domicile_connections_open gauge
domicile_connections_open 2
# EOF
";

    #[test]
    fn counters_are_named_by_their_samples_and_openmetrics_lines_go() {
        assert_eq!(
            prometheus_text(OPENMETRICS),
            "\
# HELP domicile_statements_total SQL statements.
# TYPE domicile_statements_total counter
domicile_statements_total{kind=\"select\"} 3
# HELP domicile_busy_seconds_total Busy.
# TYPE domicile_busy_seconds_total counter
domicile_busy_seconds_total 1.5
# HELP domicile_connections_open Open.
# TYPE domicile_connections_open gauge
domicile_connections_open 2
"
        );
    }

    #[test]
    fn the_accept_header_chooses() {
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
    }
}
