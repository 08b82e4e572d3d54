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

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

use arrow::error::ArrowError;
use arrow::ipc::root_as_message;
use futures::Stream;

/// What a caller is told when the decoder gave up on a message's structure. Never the
/// decoder's own text: it is not ours to vouch for (it could quote bytes).
pub(crate) const MALFORMED_IPC: &str = "malformed Arrow IPC: the decoder refused its structure (a type, a child or a unit that \
     is not valid)";

thread_local! {
    /// Set while a decoder runs under [`guarded`] on this thread.
    static DECODING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `decode` over Arrow IPC from outside the process, turning a panic inside it into
/// [`MALFORMED_IPC`].
///
/// arrow-ipc (59) converts a schema with `panic!` on what it does not support: an Int of
/// width 0, a list without its child, a union mode or time unit out of range (found by
/// the `flight_parameters` fuzz target). One client's DoPut or one peer's answer would
/// end the task serving it, mid-request. The decoders share no state with the rest of
/// the node, so unwinding out of them leaves nothing half-changed.
pub fn guarded<T>(decode: impl FnOnce() -> Result<T, ArrowError>) -> Result<T, ArrowError> {
    let was = DECODING.with(|flag| flag.replace(true));
    let result = catch_unwind(AssertUnwindSafe(decode));
    DECODING.with(|flag| flag.set(was));
    result.unwrap_or_else(|_| Err(ArrowError::IpcError(MALFORMED_IPC.into())))
}

/// A stream of decoded items whose every poll runs under [`guarded`]'s protection; after
/// a panic it yields `malformed()` once and ends.
pub struct Guarded<S, F> {
    inner: Option<S>,
    malformed: F,
}

impl<S, F> Guarded<S, F> {
    pub fn new(inner: S, malformed: F) -> Self {
        Self {
            inner: Some(inner),
            malformed,
        }
    }

    /// The decoding stream, unless a panic ended it.
    pub fn get_ref(&self) -> Option<&S> {
        self.inner.as_ref()
    }
}

impl<S, F, T> Stream for Guarded<S, F>
where
    S: Stream<Item = T> + Unpin,
    F: Fn() -> T + Unpin,
{
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let was = DECODING.with(|flag| flag.replace(true));
        let polled = catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll_next(cx)));
        DECODING.with(|flag| flag.set(was));
        match polled {
            Ok(poll) => poll,
            Err(_) => {
                this.inner = None;
                Poll::Ready(Some((this.malformed)()))
            }
        }
    }
}

/// The record batches of a stream of Flight messages from outside, decoded under
/// [`Guarded`]: a decoder panic ends the stream with a `DecodeError` naming
/// [`MALFORMED_IPC`].
pub fn guarded_batches<S>(
    messages: S,
) -> Guarded<
    arrow_flight::decode::FlightRecordBatchStream,
    fn() -> Result<arrow::array::RecordBatch, arrow_flight::error::FlightError>,
>
where
    S: Stream<Item = Result<arrow_flight::FlightData, arrow_flight::error::FlightError>>
        + Send
        + 'static,
{
    Guarded::new(
        arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(messages),
        || {
            Err(arrow_flight::error::FlightError::DecodeError(
                MALFORMED_IPC.into(),
            ))
        },
    )
}

/// Replaces the panic hook so that a panic inside [`guarded`] is one warning line (it is
/// an answer to hostile input, not a crash) while every other panic still reaches the
/// hook that was there before. Idempotent.
pub fn install_panic_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if DECODING.with(Cell::get) {
                tracing::warn!("refused malformed Arrow IPC from outside the process");
            } else {
                previous(info);
            }
        }));
    });
}

/// Refuses one encapsulated message's metadata (a Flight `data_header`) if it is not a
/// valid `Message` flatbuffer or declares compressed buffers.
pub fn uncompressed_header(header: &[u8]) -> Result<(), String> {
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
    use futures::StreamExt;

    use super::*;

    /// The schema message the `flight_parameters` fuzz target found: a field of type Int
    /// with bit width 0, which arrow-ipc converts with a panic. The input is the target's
    /// (`fuzzing::frames`): a parameter count, then `u16 LE header length | u32 LE body
    /// length | header | body`; the first message's header is the schema.
    fn int_of_width_zero() -> Vec<u8> {
        let input =
            include_bytes!("../../../fuzz/corpus/flight_parameters/crash-int-of-width-zero");
        let length = usize::from(u16::from_le_bytes([input[1], input[2]]));
        input[7..7 + length].to_vec()
    }

    #[test]
    fn a_schema_the_decoder_panics_on_is_an_error() {
        install_panic_hook();
        let header = int_of_width_zero();
        assert_eq!(
            uncompressed_header(&header),
            Ok(()),
            "valid flatbuffer framing"
        );
        let refused = guarded(|| arrow::ipc::convert::try_schema_from_flatbuffer_bytes(&header))
            .expect_err("refused");
        assert!(
            refused.to_string().contains("malformed Arrow IPC"),
            "{refused}"
        );
        // And a stream of it, as a peer would send it, after the guard is left.
        let mut stream = vec![0xff, 0xff, 0xff, 0xff];
        stream.extend((header.len() as i32).to_le_bytes());
        stream.extend(&header);
        stream.extend([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert!(crate::peers::decode_ipc(&stream).is_err());
        assert!(
            !DECODING.with(Cell::get),
            "the flag is cleared after the guard"
        );
    }

    #[test]
    fn a_guarded_stream_ends_after_a_panic() {
        install_panic_hook();
        let panicking = futures::stream::iter([1, 2, 3]).map(|n| {
            assert!(n < 2, "boom");
            Ok::<_, String>(n)
        });
        let items: Vec<_> = futures::executor::block_on(
            Guarded::new(panicking, || Err("malformed".to_string())).collect(),
        );
        assert_eq!(items, vec![Ok(1), Err("malformed".to_string())]);
    }

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
