//! Criterion benchmarks for voicemail; see `benches/`.
