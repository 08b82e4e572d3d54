//! Counts the node keeps where the work happens (storage, plugins, the CDC relay and
//! replicas, the cache, the connection gates, the login throttle, the residency guard,
//! the peer monitor, the saga log), read once per scrape into an [`Observed`] snapshot
//! and encoded as Prometheus counters and gauges. Nothing here is updated between
//! scrapes: the sources are the truth, the snapshot a copy of them.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

/// A sample's labels: (name, value) pairs.
pub(super) type Labels = Vec<(String, String)>;

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Monotonic since the process started (encoded with `_total`).
    Counter,
    Gauge,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Value {
    Count(u64),
    Real(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Count(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}

/// A number of microseconds as seconds (metric names carry base units).
pub(super) fn seconds_from_us(us: u64) -> Value {
    Value::Real(us as f64 / 1e6)
}

/// A number of milliseconds as seconds; `u64::MAX` (never) as +Inf.
pub(super) fn seconds_from_ms(ms: u64) -> Value {
    if ms == u64::MAX {
        Value::Real(f64::INFINITY)
    } else {
        Value::Real(ms as f64 / 1e3)
    }
}

#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    kind: Kind,
    samples: Vec<(Labels, Value)>,
}

/// One scrape's copy of the node's counts, ready to encode.
#[derive(Debug, Default)]
pub struct Observed {
    families: Vec<Family>,
}

impl Observed {
    fn family(&mut self, kind: Kind, name: &'static str, unit: Option<Unit>, help: &'static str) {
        self.families.push(Family {
            name,
            help,
            unit,
            kind,
            samples: Vec::new(),
        });
    }

    /// Starts a counter family (`name` without `_total` and without its unit).
    pub(super) fn counter(&mut self, name: &'static str, help: &'static str) -> &mut Self {
        self.family(Kind::Counter, name, None, help);
        self
    }

    /// Starts a counter family measured in seconds (`name` without `_seconds_total`).
    pub(super) fn counter_seconds(&mut self, name: &'static str, help: &'static str) -> &mut Self {
        self.family(Kind::Counter, name, Some(Unit::Seconds), help);
        self
    }

    pub(super) fn gauge(&mut self, name: &'static str, help: &'static str) -> &mut Self {
        self.family(Kind::Gauge, name, None, help);
        self
    }

    pub(super) fn gauge_in(
        &mut self,
        name: &'static str,
        unit: Unit,
        help: &'static str,
    ) -> &mut Self {
        self.family(Kind::Gauge, name, Some(unit), help);
        self
    }

    /// Adds a sample to the family started last.
    pub(super) fn sample(&mut self, labels: &[(&str, &str)], value: impl Into<Value>) -> &mut Self {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        if let Some(family) = self.families.last_mut() {
            family.samples.push((labels, value.into()));
        }
        self
    }

    /// The family named `name` (as registered, without prefix, unit or `_total`), for tests.
    #[cfg(test)]
    pub(super) fn samples(&self, name: &str) -> Vec<(Labels, f64)> {
        self.families
            .iter()
            .filter(|f| f.name == name)
            .flat_map(|f| &f.samples)
            .map(|(labels, value)| {
                let value = match value {
                    Value::Count(v) => *v as f64,
                    Value::Real(v) => *v,
                };
                (labels.clone(), value)
            })
            .collect()
    }
}

impl Collector for Observed {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.families {
            let metric_type = match family.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
            };
            let mut metric = encoder.encode_descriptor(
                family.name,
                family.help,
                family.unit.as_ref(),
                metric_type,
            )?;
            for (labels, value) in &family.samples {
                if labels.is_empty() {
                    encode_value(&mut metric, family.kind, *value)?;
                } else {
                    encode_value(&mut metric.encode_family(labels)?, family.kind, *value)?;
                }
            }
        }
        Ok(())
    }
}

fn encode_value(metric: &mut MetricEncoder<'_>, kind: Kind, value: Value) -> std::fmt::Result {
    match (kind, value) {
        (Kind::Counter, Value::Count(v)) => metric.encode_counter::<NoLabelSet, _, u64>(&v, None),
        (Kind::Counter, Value::Real(v)) => metric.encode_counter::<NoLabelSet, _, f64>(&v, None),
        (Kind::Gauge, Value::Count(v)) => metric.encode_gauge(&v),
        (Kind::Gauge, Value::Real(v)) => metric.encode_gauge(&v),
    }
}
