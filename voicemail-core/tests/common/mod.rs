//! Helpers shared by the integration tests: the corpus location and a pcap reader.
//!
//! Each test binary uses a subset, hence `dead_code` is allowed; the items are `pub` for
//! the test files that include this module, hence `unreachable_pub` is allowed too.
#![allow(dead_code, unreachable_pub)]

pub mod pcap;

use std::path::PathBuf;

/// The shared test corpus (`/work/shared/corpus` when the repository is at `/work/main`):
/// `<CARGO_MANIFEST_DIR>/../../shared/corpus`, or `None` when it does not exist.
///
/// Tests that need it print a "skipped" message to stderr and return when it is absent.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("..").join("shared").join("corpus");
    dir.is_dir().then_some(dir)
}

/// The corpus directory, or prints why the calling test is skipped and returns `None`.
pub fn corpus_or_skip(test: &str) -> Option<PathBuf> {
    let dir = corpus_dir();
    if dir.is_none() {
        eprintln!("{test}: skipped: corpus not found at {}/../../shared/corpus", env!("CARGO_MANIFEST_DIR"));
    }
    dir
}
