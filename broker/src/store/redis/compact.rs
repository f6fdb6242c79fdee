//! Binary values of a registration hash (the callback hash, the recent notification keys, an
//! APNs device token) written as base64url instead of hex: a third shorter, which keeps a
//! long-lived registration's hash inside a smaller allocation of Redis's allocator (see
//! docs/performance.md). Values written by earlier versions, in hex, are still read; a
//! base64 value that could be mistaken for hex starts with [`MARK`].

use std::fmt;

use base64::Engine as _;
use base64::display::Base64Display;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::domain::{CallbackSecretHash, RECENT_KEYS};

/// Starts a base64url value whose length alone does not tell it from hex. Neither alphabet
/// has it.
const MARK: char = '.';

/// The callback hash: 43 base64url characters (hex: 64, which no base64 form of 32 bytes
/// has, so no mark).
pub(super) struct CallbackHash<'a>(pub(super) &'a CallbackSecretHash);

impl fmt::Display for CallbackHash<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Base64Display::new(&self.0.0, &URL_SAFE_NO_PAD).fmt(f)
    }
}

pub(super) fn decode_callback_hash(raw: &str) -> Option<CallbackSecretHash> {
    if raw.len() == 64 {
        return CallbackSecretHash::from_hex(raw);
    }
    let mut bytes = [0u8; 32];
    (URL_SAFE_NO_PAD.decode_slice(raw, &mut bytes).ok()? == 32).then_some(CallbackSecretHash(bytes))
}

/// Recent notification keys: [`MARK`], then base64url of their big-endian bytes (hex: 16
/// digits each).
pub(super) struct Keys<'a>(pub(super) &'a [u64]);

impl fmt::Display for Keys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written on every notification: the bytes go through a buffer on the stack.
        let mut buf = [0u8; 8 * RECENT_KEYS];
        let bytes: std::borrow::Cow<'_, [u8]> = if self.0.len() <= RECENT_KEYS {
            for (slot, key) in buf.chunks_exact_mut(8).zip(self.0) {
                slot.copy_from_slice(&key.to_be_bytes());
            }
            buf[..8 * self.0.len()].into()
        } else {
            self.0
                .iter()
                .flat_map(|k| k.to_be_bytes())
                .collect::<Vec<_>>()
                .into()
        };
        write!(f, "{MARK}{}", Base64Display::new(&bytes, &URL_SAFE_NO_PAD))
    }
}

pub(super) fn decode_keys(raw: &str) -> Option<Vec<u64>> {
    match raw.strip_prefix(MARK) {
        Some(encoded) => {
            let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
            if !bytes.len().is_multiple_of(8) {
                return None;
            }
            bytes
                .chunks_exact(8)
                .map(|chunk| chunk.try_into().ok().map(u64::from_be_bytes))
                .collect()
        }
        None => {
            if !raw.len().is_multiple_of(16) || !raw.is_ascii() {
                return None;
            }
            (0..raw.len())
                .step_by(16)
                .map(|at| u64::from_str_radix(&raw[at..at + 16], 16).ok())
                .collect()
        }
    }
}

/// An APNs device token (lowercase hex, normalised): [`MARK`], then base64url of its bytes.
/// Anything else (an FCM token) is written as it is.
pub(super) struct Token<'a>(pub(super) &'a str);

impl fmt::Display for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // APNs tokens are at most 200 hex digits (`DeviceToken`): decoded on the stack. Odd
        // lengths and other characters fail `decode_to_slice`.
        let mut buf = [0u8; 100];
        let bytes = buf
            .get_mut(..self.0.len() / 2)
            .and_then(|out| hex::decode_to_slice(self.0, out).ok().map(|()| &*out));
        match bytes {
            Some(bytes) => write!(f, "{MARK}{}", Base64Display::new(bytes, &URL_SAFE_NO_PAD)),
            None => f.write_str(self.0),
        }
    }
}

/// An APNs device token as stored: hex again (the form every other part of Herald uses).
pub(super) fn decode_apns_token(raw: String) -> Option<String> {
    match raw.strip_prefix(MARK) {
        Some(encoded) => Some(hex::encode(URL_SAFE_NO_PAD.decode(encoded).ok()?)),
        None => Some(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_forms_round_trip_and_are_shorter_than_hex() {
        let hash = CallbackSecretHash([0xfe; 32]);
        let written = CallbackHash(&hash).to_string();
        assert_eq!(written.len(), 43);
        assert_eq!(decode_callback_hash(&written), Some(hash));

        let keys = [1, u64::MAX, 0xdead_beef, 0, 7, 8, 9, 10];
        let written = Keys(&keys).to_string();
        assert_eq!(written.len(), 1 + 86, "{written}");
        assert_eq!(decode_keys(&written).unwrap(), keys);
        assert_eq!(
            decode_keys(&Keys(&[]).to_string()).unwrap(),
            Vec::<u64>::new()
        );
        let more: Vec<u64> = (0..RECENT_KEYS as u64 + 1).collect();
        assert_eq!(decode_keys(&Keys(&more).to_string()).unwrap(), more);

        let token = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
        let written = Token(token).to_string();
        assert_eq!(written.len(), 1 + 43, "{written}");
        assert_eq!(decode_apns_token(written).unwrap(), token);
        let longest = "ab".repeat(100);
        assert_eq!(
            decode_apns_token(Token(&longest).to_string()).unwrap(),
            longest
        );
        // What is not even-length hex of at most 200 digits is written as it is.
        for raw in ["abc", "zz", &"ab".repeat(101)] {
            assert_eq!(Token(raw).to_string(), raw);
        }
    }

    #[test]
    fn hex_written_by_earlier_versions_is_still_read() {
        let hash = CallbackSecretHash([0x5a; 32]);
        assert_eq!(decode_callback_hash(&hash.to_hex()), Some(hash));
        assert_eq!(
            decode_keys("0000000000000001ffffffffffffffff").unwrap(),
            [1, u64::MAX]
        );
        let token = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
        assert_eq!(decode_apns_token(token.into()).unwrap(), token);
    }

    #[test]
    fn malformed_values_are_refused() {
        assert_eq!(decode_callback_hash("short"), None);
        assert_eq!(decode_callback_hash(&"z".repeat(64)), None);
        assert_eq!(decode_keys(".AAAA"), None, "3 bytes are not whole keys");
        assert_eq!(decode_keys(".!!"), None);
        assert_eq!(decode_keys("abc"), None);
        assert_eq!(decode_apns_token(".!!".into()), None);
    }
}
