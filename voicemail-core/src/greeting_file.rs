//! Greetings from audio files (the engine's [`Prompt`] decodes bytes; reading files is the
//! mailbox layer's business).

use std::io::Read;
use std::path::Path;

use crate::greeting::{GreetingError, MAX_FILE_BYTES, Prompt};

impl Prompt {
    /// Loads and decodes an audio file; the name is the file stem.
    ///
    /// Any format [`Prompt::from_encoded_bytes`] decodes; the extension is a probing hint only.
    /// Files over 256 MiB are refused before they are read whole.
    ///
    /// # Errors
    ///
    /// [`GreetingError::Io`] if the file cannot be read, [`GreetingError::Decode`] if it is
    /// not decodable audio, [`GreetingError::Empty`] if it holds no samples. Errors name the path.
    pub fn load(path: &Path) -> Result<Self, GreetingError> {
        let io_error = |source| GreetingError::Io { path: path.to_path_buf(), source };
        let label = path.display().to_string();
        let file = std::fs::File::open(path).map_err(io_error)?;
        let mut bytes = Vec::new();
        // `take` guards against a file that is (or grows) too large while it is read.
        file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(io_error)?;
        let ext = path.extension().and_then(|e| e.to_str());
        let name = path.file_stem().map_or_else(|| label.clone(), |s| s.to_string_lossy().into_owned());
        // Decode errors name the path; the prompt is named after the file stem.
        Ok(Self::from_encoded_bytes(&label, bytes, ext)?.renamed(&name))
    }
}
