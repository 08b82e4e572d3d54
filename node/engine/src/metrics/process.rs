//! The process metrics every Prometheus client exposes (`process_*`, named as the
//! Prometheus client libraries name them so stock dashboards and alerts work), read from
//! `/proc/self` at scrape time; and `domicile_build_info`.

use prometheus_client::registry::Unit;

use super::observed::{Observed, Value};

/// `process_*` of this process. A value `/proc` cannot give (another OS, a restricted
/// container) is left out rather than reported as 0.
pub(super) fn process() -> Observed {
    let mut observed = Observed::default();
    let Ok(me) = procfs::process::Process::myself() else {
        return observed;
    };
    let ticks = procfs::ticks_per_second().max(1) as f64;
    if let Ok(stat) = me.stat() {
        observed
            .counter_seconds("process_cpu", "user and system CPU time spent, seconds")
            .sample(&[], Value::Real((stat.utime + stat.stime) as f64 / ticks));
        observed
            .gauge_in(
                "process_virtual_memory",
                Unit::Bytes,
                "virtual memory size, bytes",
            )
            .sample(&[], stat.vsize);
        observed
            .gauge_in(
                "process_resident_memory",
                Unit::Bytes,
                "resident memory size, bytes",
            )
            .sample(&[], stat.rss.saturating_mul(procfs::page_size()));
        observed
            .gauge("process_threads", "OS threads of the process")
            .sample(&[], u64::try_from(stat.num_threads).unwrap_or(0));
        if let Ok(boot) = procfs::boot_time_secs() {
            observed
                .gauge_in(
                    "process_start_time",
                    Unit::Seconds,
                    "start time of the process since the Unix epoch, seconds",
                )
                .sample(
                    &[],
                    Value::Real(boot as f64 + stat.starttime as f64 / ticks),
                );
        }
    }
    if let Ok(open) = me.fd_count() {
        observed
            .gauge("process_open_fds", "open file descriptors")
            .sample(&[], open as u64);
    }
    if let Ok(limits) = me.limits()
        && let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit
    {
        observed
            .gauge("process_max_fds", "the open file descriptor limit (soft)")
            .sample(&[], max);
    }
    observed
}

/// `domicile_build_info`: 1, labelled with what was built (Prometheus' convention for
/// build metadata: a gauge whose labels carry it).
pub(super) fn build_info(observed: &mut Observed, region: &str) {
    observed
        .gauge(
            "build_info",
            "1, labelled with the version of Domicile and the node's region",
        )
        .sample(
            &[("version", env!("CARGO_PKG_VERSION")), ("region", region)],
            1u64,
        );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_describe_this_process() {
        let observed = process();
        let value = |name: &str| {
            observed
                .samples(name)
                .first()
                .map(|(_, v)| *v)
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        // This test's own process: it has threads, files open and memory resident.
        assert!(value("process_threads") >= 1.0);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_resident_memory") > 1e6);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        let started = value("process_start_time");
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "{started} vs {now}"
        );
    }
}
