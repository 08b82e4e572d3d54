//! `--overload`: the steady workload of `tests/overload.rs` (point reads and 1-cent
//! transfers against us-east's node of the bank) with the hostile mix off, on, and off
//! again, in one run on one mesh: p50 / p99 of each kind of steady call, the calls per
//! second, and the node's resident memory (largest sample during the phase, and the
//! high-water mark after it).

use std::time::{Duration, Instant};

use domicile_tests::bank::bank;
use domicile_tests::overload::{SteadyReport, attack, steady};

use crate::{Options, ms};

pub(crate) async fn overload(options: &Options) -> anyhow::Result<()> {
    let mesh = bank(Duration::from_secs(10)).await;
    let node = mesh.node("us-east");
    let run = Duration::from_secs(options.seconds);
    println!();
    println!(
        "{:<12} {:>8} {:>9} {:>9} {:>10} {:>9} {:>9} {:>8} {:>9} {:>9}",
        "attack",
        "reads/s",
        "read p50",
        "read p99",
        "xfers/s",
        "xfer p50",
        "xfer p99",
        "errors",
        "RSS MiB",
        "HWM MiB"
    );
    for (phase, hostile) in [("off", false), ("on", true), ("off again", false)] {
        let started = Instant::now();
        let sample_rss = async {
            let mut rss_max = 0;
            while started.elapsed() < run {
                if let Some((rss, _)) = node.memory_kib() {
                    rss_max = rss_max.max(rss);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            rss_max
        };
        let keys = format!("bench-{}", phase.replace(' ', "-"));
        let (report, rss_max, attacked) = if hostile {
            let (report, hostile) = tokio::join!(
                steady(&mesh, "us-east", 2, 2, run, &keys),
                attack(node, run)
            );
            for (kind, outcomes) in &hostile.kinds {
                if !outcomes.unexpected.is_empty() {
                    println!("  {kind}: unexpected {:?}", outcomes.unexpected);
                }
            }
            let rss = hostile.rss_max_kib;
            (report, rss, Some(hostile))
        } else {
            let (report, rss) =
                tokio::join!(steady(&mesh, "us-east", 2, 2, run, &keys), sample_rss);
            (report, rss, None)
        };
        let seconds = started.elapsed().as_secs_f64();
        let hwm = node.memory_kib().map_or(0, |(_, hwm)| hwm);
        println!(
            "{:<12} {:>8.1} {:>9.1} {:>9.1} {:>10.1} {:>9.1} {:>9.1} {:>8} {:>9} {:>9}",
            phase,
            report.reads.len() as f64 / seconds,
            ms(SteadyReport::quantile(&report.reads, 0.5)),
            ms(SteadyReport::quantile(&report.reads, 0.99)),
            report.transfers.len() as f64 / seconds,
            ms(SteadyReport::quantile(&report.transfers, 0.5)),
            ms(SteadyReport::quantile(&report.transfers, 0.99)),
            report.errors.len(),
            rss_max >> 10,
            hwm >> 10,
        );
        if let Some(hostile) = attacked {
            let tally: Vec<String> = hostile
                .kinds
                .iter()
                .map(|(kind, o)| format!("{kind} {}/{}", o.refused, o.attempts))
                .collect();
            println!("  refused/attempts: {}", tally.join(", "));
        }
    }
    Ok(())
}
