//! Reading files from outside the process (config, keys, certificates, components,
//! scripts, passwords) with a size bound checked while reading, never after: a path
//! that names `/dev/zero`, a log or a multi-gigabyte file by mistake gets an error
//! naming the bound instead of filling memory. The bounds live in `limits.rs`.

use std::io::Read;
use std::path::Path;

/// Why a bounded read failed.
#[derive(Debug, thiserror::Error)]
pub enum BoundedReadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {max_bytes} bytes (its bound)")]
    TooLarge { path: String, max_bytes: u64 },
    #[error("{path} is not UTF-8 text")]
    NotText { path: String },
}

/// The bytes of `path`, at most `max_bytes` of them.
///
/// # Errors
/// The file cannot be opened or read ([`BoundedReadError::Io`]), or holds more than
/// `max_bytes` bytes ([`BoundedReadError::TooLarge`]; only `max_bytes + 1` were read).
pub fn read(path: &Path, max_bytes: u64) -> Result<Vec<u8>, BoundedReadError> {
    let io = |source| BoundedReadError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > max_bytes {
        return Err(BoundedReadError::TooLarge {
            path: path.display().to_string(),
            max_bytes,
        });
    }
    Ok(bytes)
}

/// [`read`] for text.
///
/// # Errors
/// As [`read`], and [`BoundedReadError::NotText`] for bytes that are not UTF-8.
pub fn read_to_string(path: &Path, max_bytes: u64) -> Result<String, BoundedReadError> {
    String::from_utf8(read(path, max_bytes)?).map_err(|_| BoundedReadError::NotText {
        path: path.display().to_string(),
    })
}

/// At most `max_bytes` of text from `reader` (standard input, say).
///
/// # Errors
/// A read error, more than `max_bytes` bytes, or bytes that are not UTF-8; `what` names
/// the input in the error.
pub fn read_text_from(
    reader: impl Read,
    max_bytes: u64,
    what: &str,
) -> Result<String, BoundedReadError> {
    let mut bytes = Vec::new();
    reader
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| BoundedReadError::Io {
            path: what.to_string(),
            source,
        })?;
    if bytes.len() as u64 > max_bytes {
        return Err(BoundedReadError::TooLarge {
            path: what.to_string(),
            max_bytes,
        });
    }
    String::from_utf8(bytes).map_err(|_| BoundedReadError::NotText {
        path: what.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_past_its_bound_is_refused_without_being_read_whole() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").expect("write");
        assert_eq!(read(&path, 10).expect("at the bound"), b"0123456789");
        let error = read(&path, 9).expect_err("past the bound");
        assert!(
            matches!(error, BoundedReadError::TooLarge { max_bytes: 9, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("larger than 9 bytes"));
        // An endless file: only the bound plus one byte is read.
        #[cfg(target_os = "linux")]
        assert!(matches!(
            read(Path::new("/dev/zero"), 1 << 20),
            Err(BoundedReadError::TooLarge { .. })
        ));
        assert!(matches!(
            read(&dir.path().join("missing"), 10),
            Err(BoundedReadError::Io { .. })
        ));
        std::fs::write(&path, [0xff, 0xfe]).expect("write");
        assert!(matches!(
            read_to_string(&path, 10),
            Err(BoundedReadError::NotText { .. })
        ));
        assert!(matches!(
            read_text_from(&b"secret\n"[..], 4, "standard input"),
            Err(BoundedReadError::TooLarge { max_bytes: 4, .. })
        ));
        assert_eq!(
            read_text_from(&b"pw\n"[..], 4, "standard input").expect("short"),
            "pw\n"
        );
    }
}
