//! `domicile audit verify | scan`: the hash-chained audit log, and the leak scan.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use crate::bounded_file;
use crate::config::NodeConfig;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Walk the chain from the first entry to the tip; name the first broken link.
    /// Exit status 0: intact; 1: broken.
    Verify {
        /// The node's config (its `data_dir` is read).
        #[arg(long, required_unless_present = "data_dir")]
        config: Option<PathBuf>,
        /// The node's data directory (instead of --config).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Search a node's files for PII canaries of other regions (see README "Leak
    /// scan"). Exit status 0: none found; 1: leaks found.
    Scan {
        /// The region of the node whose files are scanned: its own canaries may be there.
        #[arg(long, required_unless_present = "kafka")]
        region: Option<String>,
        /// TOML file of `[[canary]]` entries (`region`, `value`).
        #[arg(long)]
        canaries: PathBuf,
        /// Also read every message of every `domicile.cdc.*` topic on these brokers
        /// (`host:port,...`): no canary of any region may be in a key, value or header.
        #[arg(long)]
        kafka: Option<String>,
        /// Files and folders to scan: the node's data dir (database and cache), its logs.
        #[arg(required_unless_present = "kafka", requires = "region")]
        paths: Vec<PathBuf>,
    },
}

/// Runs the check; whether it passed (chain intact, no leak found).
pub fn run(command: AuditCommand, runtime: &tokio::runtime::Runtime) -> anyhow::Result<bool> {
    match command {
        AuditCommand::Verify { config, data_dir } => verify_audit(config, data_dir),
        AuditCommand::Scan {
            region,
            canaries,
            kafka,
            paths,
        } => {
            let canaries = read_canaries(&canaries)?;
            let mut clean = true;
            if let Some(region) = region
                && !paths.is_empty()
            {
                clean &= scan_for_leaks(&region, &canaries, &paths)?;
            }
            if let Some(brokers) = kafka {
                clean &= runtime.block_on(scan_topics_for_leaks(&brokers, &canaries))?;
            }
            Ok(clean)
        }
    }
}

fn read_canaries(path: &Path) -> anyhow::Result<Vec<crate::residency::leak_scan::Canary>> {
    let text = bounded_file::read_to_string(path, crate::limits::CONFIG_FILE_SIZE_MAX_BYTES)?;
    let file: crate::residency::leak_scan::CanaryFile =
        toml::from_str(&text).with_context(|| format!("invalid canary file {}", path.display()))?;
    anyhow::ensure!(
        !file.canaries.is_empty(),
        "{} lists no canaries",
        path.display()
    );
    Ok(file.canaries)
}

fn scan_for_leaks(
    region: &str,
    canaries: &[crate::residency::leak_scan::Canary],
    paths: &[PathBuf],
) -> anyhow::Result<bool> {
    let report = crate::residency::leak_scan::scan(region, canaries, paths)?;
    for finding in &report.findings {
        println!("LEAK {finding}");
    }
    println!(
        "scanned {} files ({} bytes) for {} canaries of other regions: {} found",
        report.files,
        report.bytes,
        canaries.iter().filter(|c| c.region != region).count(),
        report.findings.len()
    );
    Ok(report.findings.is_empty())
}

/// Every message of every CDC topic: keys, values and headers.
async fn scan_topics_for_leaks(
    brokers: &str,
    canaries: &[crate::residency::leak_scan::Canary],
) -> anyhow::Result<bool> {
    use std::time::Duration;
    let records =
        crate::cdc::read_all_topics(brokers, Duration::from_secs(10), Duration::from_secs(2))
            .await
            .with_context(|| format!("cannot read the CDC topics on {brokers}"))?;
    let place = |r: &crate::cdc::TopicRecord, part: &str| {
        format!("kafka:{}[{}]@{}/{part}", r.topic, r.partition, r.offset)
    };
    let parts = records.iter().flat_map(|r| {
        [
            (place(r, "key"), r.key.as_slice()),
            (place(r, "value"), r.value.as_slice()),
        ]
        .into_iter()
        .chain(
            r.headers
                .iter()
                .map(move |(name, value)| (place(r, &format!("header:{name}")), value.as_slice())),
        )
    });
    let report = crate::residency::leak_scan::scan_records(canaries, parts);
    for finding in &report.findings {
        println!("LEAK {finding}");
    }
    let topics: std::collections::BTreeSet<&str> =
        records.iter().map(|r| r.topic.as_str()).collect();
    println!(
        "scanned {} messages in {} topics ({} bytes) for {} canaries: {} found",
        records.len(),
        topics.len(),
        report.bytes,
        canaries.len(),
        report.findings.len()
    );
    Ok(report.findings.is_empty())
}

/// Opens the node's database (refused while the node runs: redb locks the file) and
/// walks the audit chain.
fn verify_audit(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> anyhow::Result<bool> {
    let data_dir = match (data_dir, config) {
        (Some(dir), _) => dir,
        (None, Some(path)) => NodeConfig::load(&path)?.data_dir,
        (None, None) => anyhow::bail!("give --config or --data-dir"),
    };
    let path = data_dir.join("domicile.redb");
    anyhow::ensure!(path.exists(), "no database at {}", path.display());
    let store = crate::storage::Store::open(&path)
        .with_context(|| format!("cannot open {} (stop the node first)", path.display()))?;
    let verdict = store.verify_audit()?;
    // Close the file cleanly before the process exits, so the node's next start does
    // not take it for a crash.
    let closed = store.close_watch();
    drop(store);
    if !closed.wait(std::time::Duration::from_secs(10)) {
        eprintln!("warning: the database did not close cleanly");
    }
    match verdict {
        Ok(verified) => {
            println!(
                "audit chain intact: {} entries, tip {}",
                verified.entries,
                hex::encode(verified.tip)
            );
            Ok(true)
        }
        Err(broken) => {
            println!("{broken}");
            Ok(false)
        }
    }
}
