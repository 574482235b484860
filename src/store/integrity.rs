//! A checksum on every value portflow writes, verified on every read.
//!
//! A sealed value is `0x01`, the CRC-32 (little-endian) of key and payload,
//! then the payload (JSON). sled checksums its own log messages, but not what
//! it hands back after a recovery that went wrong, nor a value stored under the
//! wrong key; the key is in the checksum for that reason. Values written before
//! schema 3 are plain JSON, which never starts with `0x01`: they are read as
//! they are, unchecked.

use super::StoreError;

/// First byte of a sealed value (no JSON text starts with it).
const SEALED: u8 = 0x01;
/// Marker and checksum.
const HEADER: usize = 5;

/// CRC-32 of a key and a payload.
fn checksum(key: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(key);
    h.update(payload);
    h.finalize()
}

/// The stored form of `payload` under `key`.
pub fn seal(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.push(SEALED);
    out.extend_from_slice(&checksum(key, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// How a stored value was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seal {
    /// Sealed, checksum verified.
    Checked,
    /// Written before checksums (schema ≤ 2): taken as it is.
    Legacy,
}

/// The payload of a stored value, its checksum verified (legacy values pass unchecked).
pub fn open<'v>(key: &[u8], stored: &'v [u8]) -> Result<(&'v [u8], Seal), StoreError> {
    match stored.first() {
        Some(&SEALED) => {
            let Some((head, payload)) = stored.split_at_checked(HEADER) else {
                return Err(StoreError::Corrupt {
                    key: String::from_utf8_lossy(key).into_owned(),
                    reason: format!("a sealed value of {} byte(s) is too short", stored.len()),
                });
            };
            let mut crc = [0u8; 4];
            crc.copy_from_slice(&head[1..]);
            let stored_crc = u32::from_le_bytes(crc);
            let computed = checksum(key, payload);
            if stored_crc != computed {
                return Err(StoreError::Checksum {
                    key: String::from_utf8_lossy(key).into_owned(),
                    stored: stored_crc,
                    computed,
                });
            }
            Ok((payload, Seal::Checked))
        }
        _ => Ok((stored, Seal::Legacy)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_round_trip_and_legacy_values_pass() {
        let v = seal(b"i/r/1", br#"{"a":1}"#);
        assert_eq!(v[0], SEALED);
        assert!(matches!(
            open(b"i/r/1", &v),
            Ok((p, Seal::Checked)) if p == br#"{"a":1}"#
        ));
        assert!(matches!(
            open(b"i/r/1", br#"{"a":1}"#),
            Ok((_, Seal::Legacy))
        ));
        assert!(matches!(open(b"k", b""), Ok((b"", Seal::Legacy))));
    }

    #[test]
    fn a_flipped_bit_a_moved_value_and_a_cut_header_are_caught() {
        let mut v = seal(b"i/r/1", br#"{"a":1}"#);
        let last = v.len() - 2;
        v[last] ^= 0x04;
        assert!(matches!(
            open(b"i/r/1", &v),
            Err(StoreError::Checksum { .. })
        ));
        let v = seal(b"i/r/1", br#"{"a":1}"#);
        assert!(
            matches!(open(b"i/r/2", &v), Err(StoreError::Checksum { .. })),
            "the key is part of the checksum"
        );
        assert!(matches!(
            open(b"i/r/1", &v[..3]),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
