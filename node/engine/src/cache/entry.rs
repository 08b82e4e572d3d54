//! How a cache entry is laid out: keys carry their kind; values carry their kind,
//! expiry and filling process before the payload, so the disk tier never needs foyer
//! to know about time.

const FORMAT: u8 = 1;
const HEADER_BYTES: usize = 1 + 1 + 8 + 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    LocalRow,
    RemoteResult,
}

impl EntryKind {
    fn code(self) -> u8 {
        match self {
            EntryKind::LocalRow => 1,
            EntryKind::RemoteResult => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(EntryKind::LocalRow),
            2 => Some(EntryKind::RemoteResult),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::LocalRow => "local-row",
            EntryKind::RemoteResult => "remote-result",
        }
    }
}

pub(super) use crate::clock::now_unix_ms;

pub(super) fn cache_key(kind: EntryKind, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.push(kind.code());
    out.extend_from_slice(key);
    out
}

pub(super) struct Entry<'a> {
    pub(super) kind: EntryKind,
    pub(super) expires_unix_ms: u64,
    pub(super) incarnation: u64,
    pub(super) payload: &'a [u8],
}

impl<'a> Entry<'a> {
    pub(super) fn encode(
        kind: EntryKind,
        expires_unix_ms: u64,
        incarnation: u64,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
        out.push(FORMAT);
        out.push(kind.code());
        out.extend_from_slice(&expires_unix_ms.to_le_bytes());
        out.extend_from_slice(&incarnation.to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// `None` for bytes that are not an entry of this format (never served).
    pub(super) fn decode(bytes: &'a [u8]) -> Option<Self> {
        let (&format, rest) = bytes.split_first()?;
        if format != FORMAT {
            return None;
        }
        let (&kind, rest) = rest.split_first()?;
        let (expires, rest) = rest.split_first_chunk::<8>()?;
        let (incarnation, payload) = rest.split_first_chunk::<8>()?;
        Some(Self {
            kind: EntryKind::from_code(kind)?,
            expires_unix_ms: u64::from_le_bytes(*expires),
            incarnation: u64::from_le_bytes(*incarnation),
            payload,
        })
    }

    pub(super) fn expired(&self) -> bool {
        now_unix_ms() >= self.expires_unix_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_garbage_is_no_entry() {
        let bytes = Entry::encode(EntryKind::RemoteResult, u64::MAX, 7, b"rows");
        let entry = Entry::decode(&bytes).expect("decodes");
        assert_eq!(entry.kind, EntryKind::RemoteResult);
        assert_eq!(entry.incarnation, 7);
        assert_eq!(entry.payload, b"rows");
        assert!(!entry.expired());
        let past = Entry::encode(EntryKind::LocalRow, 1, 0, b"");
        assert!(Entry::decode(&past).expect("decodes").expired());
        assert!(Entry::decode(b"").is_none());
        assert!(Entry::decode(&[9, 1, 0]).is_none());
        assert!(Entry::decode(&bytes[..10]).is_none());
    }
}
