//! Streaming, crash-safe recording of 8 kHz 16-bit mono WAV (hound).
//!
//! The header is rewritten at least once per second of audio, so the file on disk is a valid
//! WAV at every moment up to the last second; [`repair_wav`] fixes a file torn by a crash
//! between two header updates, and [`recover_spool`] runs it over a spool directory at start-up.
//!
//! STUB: the API below is fixed; a helper fills in the bodies and tests.

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

/// A failure to write or repair a recording.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordingError {
    /// The file system refused (full disk, permissions, ...).
    #[error("recording I/O error on {path:?}: {source}")]
    Io {
        /// The file, when known.
        path: Option<PathBuf>,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The WAV encoder failed.
    #[error("WAV error: {0}")]
    Wav(String),
    /// A file to repair is not a WAV file we wrote.
    #[error("{path}: not a repairable WAV file: {reason}")]
    NotRepairable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
}

/// Anything a recording can be written to.
pub trait Sink: Write + Seek + Send {}
impl<T: Write + Seek + Send> Sink for T {}

/// A recording in progress: 8 kHz, 16-bit, mono PCM WAV.
pub struct Recording {
    _private: (),
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording").finish_non_exhaustive()
    }
}

impl Recording {
    /// Creates the file (it must not exist) and writes a valid zero-length WAV header at once.
    pub fn create(_path: &Path) -> Result<Self, RecordingError> {
        unimplemented!()
    }

    /// Records into any seekable writer (tests use `io::Cursor<Vec<u8>>`).
    pub fn new<W: Sink + 'static>(_writer: W) -> Result<Self, RecordingError> {
        unimplemented!()
    }

    /// The file's path, when created with [`Recording::create`].
    pub fn path(&self) -> Option<&Path> {
        unimplemented!()
    }

    /// Appends samples. No allocation; the header is refreshed every 8000 samples.
    pub fn write(&mut self, _pcm: &[i16]) -> Result<(), RecordingError> {
        unimplemented!()
    }

    /// Appends `n` samples of digital silence.
    pub fn write_silence(&mut self, _n: u64) -> Result<(), RecordingError> {
        unimplemented!()
    }

    /// Samples written so far.
    pub fn samples(&self) -> u64 {
        unimplemented!()
    }

    /// Writes the final header, flushes and syncs the file; returns the number of samples.
    pub fn finalize(self) -> Result<u64, RecordingError> {
        unimplemented!()
    }
}

/// What [`repair_wav`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairOutcome {
    /// The header already matched the data.
    Intact,
    /// The header was rewritten to cover `samples` samples (a torn tail byte is dropped).
    Repaired {
        /// Samples in the repaired file.
        samples: u64,
    },
}

/// Makes a WAV file we wrote valid again after a crash: header sizes set from the file length.
pub fn repair_wav(_path: &Path) -> Result<RepairOutcome, RecordingError> {
    unimplemented!()
}

/// Repairs every `*.wav` in `dir` (not recursive); returns the files that needed repair.
pub fn recover_spool(_dir: &Path) -> Result<Vec<(PathBuf, RepairOutcome)>, RecordingError> {
    unimplemented!()
}
