//! How the examples read their configuration: `--config FILE`, or the embedded defaults.

use std::path::{Path, PathBuf};

use voicemail_core::config::{Config, MailboxesConfig};

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
/// [`Config::default_embedded`] without a path; loads what `load` asks for. A file with several
/// mailboxes gives its default one (else its first): see [`load_one`]. Errors are one line.
pub fn load(path: Option<&Path>, load: Load) -> Result<Config, String> {
    load_one(path, None, load)
}

/// Every mailbox of the file at `path` (one, or several `[[mailboxes]]`; relative paths
/// resolved against its directory), or the embedded defaults without a path; loads what
/// `load` asks for into each mailbox. Errors are one line.
pub fn load_all(path: Option<&Path>, load: Load) -> Result<MailboxesConfig, String> {
    let mut config = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let base = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            MailboxesConfig::from_toml_str_in(&text, &base).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => MailboxesConfig::from(Config::default_embedded()),
    };
    if load == Load::Everything {
        config.load_prompts().map_err(|e| e.to_string())?;
    }
    if load != Load::Nothing {
        config.load_directories().map_err(|e| e.to_string())?;
    }
    Ok(config)
}

/// The mailbox `name` of the file at `path` (the default one, else the first, without a
/// name), loaded as `load` asks. A one-mailbox file needs no name (a name that is not its
/// mailbox's is an error).
pub fn load_one(path: Option<&Path>, name: Option<&str>, load: Load) -> Result<Config, String> {
    let all = load_all(path, Load::Nothing)?;
    let index = match name {
        None => all.default_mailbox.as_deref().and_then(|n| all.index_of(n)).unwrap_or(0),
        Some(n) => all.index_of(n).ok_or_else(|| {
            let names: Vec<String> = all.names().iter().map(|n| format!("{n:?}")).collect();
            format!("no mailbox is named {n:?}: the mailboxes are {}", names.join(", "))
        })?,
    };
    let prefix = if all.is_multi() { format!("mailboxes[{index}].") } else { String::new() };
    let mut config = all.mailboxes.into_iter().nth(index).ok_or("no mailbox in the configuration")?;
    if load == Load::Everything {
        config.load_prompts().map_err(|e| format!("{prefix}{e}"))?;
    }
    if load != Load::Nothing {
        config.load_directory().map_err(|e| format!("{prefix}{e}"))?;
    }
    Ok(config)
}

/// `text` on one line: line breaks become spaces (for messages that must stay one line).
pub fn one_line(text: &str) -> String {
    text.split(['\r', '\n']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}
