//! Binary values of a registration hash written as base64url rather than hex — the callback
//! hash, the recent notification keys, an APNs device token: a third shorter, which keeps a
//! long-lived registration's hash inside a smaller allocation of Redis's allocator (see
//! docs/performance.md).

use std::fmt;

use base64::Engine as _;
use base64::display::Base64Display;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::domain::{CallbackSecretHash, RECENT_KEYS};

/// The callback hash: 43 base64url characters.
pub(super) struct CallbackHash<'a>(pub(super) &'a CallbackSecretHash);

impl fmt::Display for CallbackHash<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Base64Display::new(&self.0.0, &URL_SAFE_NO_PAD).fmt(f)
    }
}

pub(super) fn decode_callback_hash(raw: &str) -> Option<CallbackSecretHash> {
    let mut bytes = [0u8; 32];
    (URL_SAFE_NO_PAD.decode_slice(raw, &mut bytes).ok()? == 32).then_some(CallbackSecretHash(bytes))
}

/// Recent notification keys: base64url of their big-endian bytes.
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
        Base64Display::new(&bytes, &URL_SAFE_NO_PAD).fmt(f)
    }
}

pub(super) fn decode_keys(raw: &str) -> Option<Vec<u64>> {
    let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
    if !bytes.len().is_multiple_of(8) {
        return None;
    }
    bytes
        .chunks_exact(8)
        .map(|chunk| chunk.try_into().ok().map(u64::from_be_bytes))
        .collect()
}

/// An APNs device token (even-length lowercase hex of at most 200 digits, as `DeviceToken`
/// guarantees): base64url of its bytes.
pub(super) struct ApnsToken<'a>(pub(super) &'a str);

impl fmt::Display for ApnsToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Decoded on the stack. A string that is not such hex cannot be an APNs token: it
        // fails the write rather than storing something unreadable.
        let mut buf = [0u8; 100];
        let bytes = buf
            .get_mut(..self.0.len() / 2)
            .and_then(|out| hex::decode_to_slice(self.0, out).ok().map(|()| &*out))
            .ok_or(fmt::Error)?;
        Base64Display::new(bytes, &URL_SAFE_NO_PAD).fmt(f)
    }
}

/// An APNs device token as stored: hex again (the form every other part of Herald uses).
pub(super) fn decode_apns_token(raw: &str) -> Option<String> {
    Some(hex::encode(URL_SAFE_NO_PAD.decode(raw).ok()?))
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
        assert_eq!(written.len(), 86, "{written}");
        assert_eq!(decode_keys(&written).unwrap(), keys);
        assert_eq!(
            decode_keys(&Keys(&[]).to_string()).unwrap(),
            Vec::<u64>::new()
        );
        let more: Vec<u64> = (0..RECENT_KEYS as u64 + 1).collect();
        assert_eq!(decode_keys(&Keys(&more).to_string()).unwrap(), more);

        let token = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
        let written = ApnsToken(token).to_string();
        assert_eq!(written.len(), 43, "{written}");
        assert_eq!(decode_apns_token(&written).unwrap(), token);
        let longest = "ab".repeat(100);
        assert_eq!(
            decode_apns_token(&ApnsToken(&longest).to_string()).unwrap(),
            longest
        );
    }

    #[test]
    fn malformed_values_are_refused() {
        assert_eq!(decode_callback_hash("short"), None);
        assert_eq!(decode_callback_hash(&"z".repeat(64)), None);
        assert_eq!(decode_keys("AAAA"), None, "3 bytes are not whole keys");
        assert_eq!(decode_keys("!!"), None);
        assert_eq!(decode_apns_token("!!"), None);
        use std::fmt::Write as _;
        for not_hex in ["abc", "zz", &"ab".repeat(101)] {
            assert!(write!(String::new(), "{}", ApnsToken(not_hex)).is_err());
        }
    }
}
