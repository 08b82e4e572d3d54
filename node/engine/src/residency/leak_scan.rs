//! `domicile audit scan`: looks for PII canaries in places they must never be.
//!
//! A canary is a synthetic value (e.g. `canary-eu-central-7f3a`) stored in a `pii`
//! column of a row homed in one region. It may exist on that region's node and nowhere
//! else. The scan reads every byte of the given files and folders — the node's database
//! file (live and stale pages alike), its cache directory, its logs — and reports every
//! canary of *another* region it finds. Canaries are synthetic, so findings print them.

use std::io::Read;
use std::path::{Path, PathBuf};

use memchr::memmem::Finder;
use serde::Deserialize;

/// The canary file: `[[canary]]` tables with `region` and `value`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryFile {
    #[serde(rename = "canary", default)]
    pub canaries: Vec<Canary>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// The home region of the row that holds it.
    pub region: String,
    pub value: String,
}

/// A canary found outside its home region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub canary: String,
    pub home_region: String,
    pub file: PathBuf,
    pub offset: u64,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "canary {} (home {}) in {} at byte {}",
            self.canary,
            self.home_region,
            self.file.display(),
            self.offset
        )
    }
}

/// What one scan covered.
#[derive(Debug, Default)]
pub struct ScanReport {
    pub files: u64,
    pub bytes: u64,
    pub findings: Vec<Finding>,
}

const CHUNK_BYTES: usize = 1 << 20;

/// Scans `paths` (files, or folders walked recursively) on the node of `region` for the
/// canaries of every other region.
pub fn scan(region: &str, canaries: &[Canary], paths: &[PathBuf]) -> std::io::Result<ScanReport> {
    let foreign: Vec<(&Canary, Finder<'_>)> = canaries
        .iter()
        .filter(|c| c.region != region && !c.value.is_empty())
        .map(|c| (c, Finder::new(c.value.as_bytes())))
        .collect();
    let mut report = ScanReport::default();
    let mut files = Vec::new();
    for path in paths {
        collect_files(path, &mut files)?;
    }
    for file in files {
        scan_file(&file, &foreign, &mut report)?;
    }
    Ok(report)
}

/// Scans records that left every region (Kafka messages: keys, values, headers): no
/// canary of any region may be in them. Each record is `(where, bytes)`; a finding's
/// `file` is that `where`.
pub fn scan_records<'a>(
    canaries: &[Canary],
    records: impl IntoIterator<Item = (String, &'a [u8])>,
) -> ScanReport {
    let finders: Vec<(&Canary, Finder<'_>)> = canaries
        .iter()
        .filter(|c| !c.value.is_empty())
        .map(|c| (c, Finder::new(c.value.as_bytes())))
        .collect();
    let mut report = ScanReport::default();
    for (place, bytes) in records {
        report.files += 1;
        report.bytes += bytes.len() as u64;
        for (canary, finder) in &finders {
            for at in finder.find_iter(bytes) {
                report.findings.push(Finding {
                    canary: canary.value.clone(),
                    home_region: canary.region.clone(),
                    file: PathBuf::from(&place),
                    offset: at as u64,
                });
            }
        }
    }
    report
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(std::fs::DirEntry::path);
        for entry in entries {
            collect_files(&entry.path(), out)?;
        }
    } else if meta.is_file() {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// Reads the file in chunks that overlap by the longest canary, so a value split across
/// two reads is still found (and found once).
fn scan_file(
    path: &Path,
    canaries: &[(&Canary, Finder<'_>)],
    report: &mut ScanReport,
) -> std::io::Result<()> {
    let overlap = canaries
        .iter()
        .map(|(c, _)| c.value.len())
        .max()
        .unwrap_or(1)
        .saturating_sub(1);
    let mut file = std::fs::File::open(path)?;
    let mut window: Vec<u8> = Vec::with_capacity(CHUNK_BYTES + overlap);
    let mut window_start = 0u64;
    let mut chunk = vec![0u8; CHUNK_BYTES];
    report.files += 1;
    loop {
        let read = file.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        report.bytes += read as u64;
        let carried = window.len();
        window.extend_from_slice(&chunk[..read]);
        for (canary, finder) in canaries {
            for at in finder.find_iter(&window) {
                // Matches lying wholly in the carried-over bytes were reported last time.
                if carried > 0 && at + canary.value.len() <= carried {
                    continue;
                }
                report.findings.push(Finding {
                    canary: canary.value.clone(),
                    home_region: canary.region.clone(),
                    file: path.to_path_buf(),
                    offset: window_start + at as u64,
                });
            }
        }
        let keep = overlap.min(window.len());
        window_start += (window.len() - keep) as u64;
        window.drain(..window.len() - keep);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_foreign_canaries_only_even_across_chunk_borders() {
        let dir = tempfile::tempdir().expect("dir");
        let canaries = vec![
            Canary {
                region: "eu-central".into(),
                value: "canary-eu-1".into(),
            },
            Canary {
                region: "us-east".into(),
                value: "canary-us-1".into(),
            },
        ];
        let mut big = vec![b'x'; CHUNK_BYTES - 4];
        big.extend_from_slice(b"canary-eu-1 and canary-us-1");
        std::fs::create_dir(dir.path().join("sub")).expect("sub");
        std::fs::write(dir.path().join("sub/db"), &big).expect("write");
        std::fs::write(dir.path().join("log"), b"nothing here").expect("write");
        let report = scan("us-east", &canaries, &[dir.path().to_path_buf()]).expect("scan");
        assert_eq!(report.files, 2);
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        assert_eq!(report.findings[0].home_region, "eu-central");
        assert_eq!(report.findings[0].offset, (CHUNK_BYTES - 4) as u64);
        let home = scan("eu-central", &canaries, &[dir.path().to_path_buf()]).expect("scan");
        assert_eq!(home.findings.len(), 1, "only the US canary is foreign here");
    }
}
