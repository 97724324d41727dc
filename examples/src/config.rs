//! How the examples read their configuration: `--config FILE`, or the embedded defaults.

use std::path::{Path, PathBuf};

use voicemail_core::config::Config;

/// What a front-end needs loaded besides the parsed configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Greetings (decoded audio) and the client directory: front-ends that take calls.
    Everything,
    /// The client directory only (routing and e-mails name the client): delivery, recovery.
    Directory,
    /// Nothing: the follow-up workflow and status need neither greetings nor the directory.
    Nothing,
}

/// The configuration from `path` (relative paths resolved against its directory), or
/// [`Config::default_embedded`] without a path; loads what `load` asks for. Errors are one line.
pub fn load(path: Option<&Path>, load: Load) -> Result<Config, String> {
    let mut config = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let base = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            Config::from_toml_str_in(&text, &base).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Config::default_embedded(),
    };
    if load == Load::Everything {
        config.load_prompts().map_err(|e| e.to_string())?;
    }
    if load != Load::Nothing {
        config.load_directory().map_err(|e| e.to_string())?;
    }
    Ok(config)
}

/// `text` on one line: line breaks become spaces (for messages that must stay one line).
pub fn one_line(text: &str) -> String {
    text.split(['\r', '\n']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}
