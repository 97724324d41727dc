//! Greetings and prompts: decoded once from WAV, MP3, FLAC or Ogg/Vorbis (symphonia), mixed
//! down to mono, resampled to 8 kHz (rubato), encoded once per codec and shared behind an
//! `Arc` so every concurrent call plays the same copy. Also the generated beep.
//!
//! STUB: the API below is fixed; a helper fills in the bodies and tests.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;

use crate::codec::CodecKind;

/// Why a greeting could not be loaded. Always reported at load time, never during a call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GreetingError {
    /// The file could not be read.
    #[error("cannot read greeting {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The data is not audio in a supported format, or decoding failed.
    #[error("cannot decode greeting {name}: {reason}")]
    Decode {
        /// The greeting's name or path.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// The audio decoded to no samples.
    #[error("greeting {name} is empty")]
    Empty {
        /// The greeting's name or path.
        name: String,
    },
    /// A generated tone has invalid parameters.
    #[error("invalid tone: {0}")]
    InvalidTone(&'static str),
}

/// A prompt (greeting or beep): 8 kHz mono audio, pre-encoded for every codec. Cloning is
/// cheap (an `Arc`), and the encoded bytes are `Bytes`, so packets slice them without copying.
#[derive(Debug, Clone)]
pub struct Prompt {
    _private: (),
}

impl Prompt {
    /// Loads and decodes an audio file; the name is the file stem.
    pub fn load(_path: &Path) -> Result<Self, GreetingError> {
        unimplemented!()
    }

    /// Decodes audio bytes of any supported format (`ext_hint` like `"mp3"` helps probing).
    pub fn from_encoded_bytes(_name: &str, _bytes: Vec<u8>, _ext_hint: Option<&str>) -> Result<Self, GreetingError> {
        unimplemented!()
    }

    /// A prompt from 8 kHz mono samples; an empty slice is an error.
    pub fn from_pcm(_name: &str, _samples: Vec<i16>) -> Result<Self, GreetingError> {
        unimplemented!()
    }

    /// The greeting bundled with the crate (English speech, about 3.5 s).
    pub fn default_greeting() -> Self {
        unimplemented!()
    }

    /// A beep: a sine tone of `frequency_hz` lasting `length`, with short fades.
    pub fn beep(_frequency_hz: f32, _length: Duration) -> Result<Self, GreetingError> {
        unimplemented!()
    }

    /// The prompt's name (recorded in message metadata as the greeting used).
    pub fn name(&self) -> &str {
        unimplemented!()
    }

    /// The 8 kHz mono samples.
    pub fn pcm(&self) -> &[i16] {
        unimplemented!()
    }

    /// Number of 8 kHz samples.
    pub fn samples(&self) -> usize {
        unimplemented!()
    }

    /// The length.
    pub fn duration(&self) -> Duration {
        unimplemented!()
    }

    /// The whole prompt encoded in `codec` (one payload byte string; slice it into packets).
    pub fn encoded(&self, _codec: CodecKind) -> &Bytes {
        unimplemented!()
    }
}
