//! Structural caps. Real notifications are 1–5 KB, nest fewer than 12 elements deep and
//! carry a handful of events (protocol note §10.3); the caps leave wide margins while keeping
//! the cost of a hostile body bounded.

/// The parser's caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_depth: usize,
    pub max_attributes: usize,
    pub max_namespace_bindings: usize,
    /// Longest text node or attribute value, in bytes.
    pub max_text: usize,
    /// Longest identifier (subscription id, watermark, item or folder id), in bytes.
    pub max_id: usize,
    pub max_events: usize,
    pub max_messages: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 64,
            max_attributes: 16,
            max_namespace_bindings: 32,
            max_text: 4096,
            max_id: 1024,
            max_events: 10_000,
            max_messages: 16,
        }
    }
}
