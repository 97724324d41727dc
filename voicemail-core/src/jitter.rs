//! Jitter buffer (placeholder, being written).
