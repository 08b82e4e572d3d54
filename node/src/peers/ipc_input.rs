//! Arrow IPC from outside the process (clients' parameter batches, peers' answers and
//! requests) is read only uncompressed.
//!
//! A compressed IPC buffer starts with its uncompressed length, which the decoder
//! allocates before it inflates anything: a few bytes on the wire can ask for 2^62 bytes
//! (the process aborts) or inflate a zstd block of zeros into gigabytes. Uncompressed
//! buffers are slices of the body actually received, so their size is bounded by what
//! was sent, which the transport bounds. Domicile never compresses IPC itself.
//!
//! Framing (Arrow columnar format, "Encapsulated message format"): each message is an
//! optional continuation marker `0xFFFFFFFF`, an int32 metadata length, the `Message`
//! flatbuffer (padded), then `bodyLength` bytes of body; length 0 ends the stream.

use arrow::ipc::root_as_message;

/// Refuses one encapsulated message's metadata (a Flight `data_header`) if it is not a
/// valid `Message` flatbuffer or declares compressed buffers.
pub(crate) fn uncompressed_header(header: &[u8]) -> Result<(), String> {
    let message = root_as_message(header).map_err(|e| format!("not an Arrow IPC message: {e}"))?;
    let compressed = message
        .header_as_record_batch()
        .and_then(|batch| batch.compression())
        .is_some()
        || message
            .header_as_dictionary_batch()
            .and_then(|dictionary| dictionary.data())
            .and_then(|batch| batch.compression())
            .is_some();
    if compressed {
        return Err("compressed Arrow IPC buffers are not accepted; send them uncompressed".into());
    }
    Ok(())
}

/// Refuses an IPC stream if any message in it is malformed or declares compressed
/// buffers. Walks the framing only; decoding is left to the reader.
pub(crate) fn uncompressed_stream(bytes: &[u8]) -> Result<(), String> {
    let truncated = || "truncated Arrow IPC stream".to_string();
    let int32 = |at: usize| -> Result<i32, String> {
        let word = bytes.get(at..at + 4).ok_or_else(truncated)?;
        Ok(i32::from_le_bytes([word[0], word[1], word[2], word[3]]))
    };
    let mut at = 0usize;
    while at < bytes.len() {
        let mut length = int32(at)?;
        at += 4;
        if length == -1 {
            length = int32(at)?;
            at += 4;
        }
        if length == 0 {
            return Ok(());
        }
        let length = usize::try_from(length).map_err(|_| "negative IPC metadata length")?;
        let end = at.checked_add(length).ok_or_else(truncated)?;
        let header = bytes.get(at..end).ok_or_else(truncated)?;
        uncompressed_header(header)?;
        let body = root_as_message(header)
            .map(|message| message.bodyLength())
            .map_err(|e| e.to_string())?;
        let body = usize::try_from(body).map_err(|_| "negative IPC body length")?;
        at = end.checked_add(body).ok_or_else(truncated)?;
        if at > bytes.len() {
            return Err(truncated());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::ipc::CompressionType;
    use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};

    use super::*;

    fn stream(compression: Option<CompressionType>) -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from_iter_values(0..1000))],
        )
        .expect("batch");
        let options = IpcWriteOptions::default()
            .try_with_compression(compression)
            .expect("options");
        let mut out = Vec::new();
        let mut writer =
            StreamWriter::try_new_with_options(&mut out, &schema, options).expect("writer");
        writer.write(&batch).expect("write");
        writer.finish().expect("finish");
        drop(writer);
        out
    }

    #[test]
    fn an_uncompressed_stream_passes() {
        assert_eq!(uncompressed_stream(&stream(None)), Ok(()));
    }

    #[test]
    fn a_compressed_stream_is_refused_before_decoding() {
        let refused = uncompressed_stream(&stream(Some(CompressionType::ZSTD)));
        assert!(refused.is_err_and(|e| e.contains("compressed")));
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let whole = stream(None);
        for cut in [1, 5, 9, whole.len() / 2, whole.len() - 9] {
            assert!(uncompressed_stream(&whole[..cut]).is_err(), "cut at {cut}");
        }
        assert!(uncompressed_stream(&[0xff; 64]).is_err());
        assert!(uncompressed_stream(&[0x7f, 0xff, 0xff, 0xff, 1, 2]).is_err());
    }
}
