//! `voicemail.Config` (a TOML configuration of one mailbox or several), its greeting calendar
//! and client directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDateTime;
use voicemail_core::config::{Config, GreetingSource, MailboxesConfig};
use voicemail_core::directory::ClientEntry;
use voicemail_core::schedule::GreetingChoice;

use crate::call::PyPrompt;
use crate::errors::BindingError;
use crate::time::from_datetime;

/// The configuration of a mailbox, read from a TOML file (``examples/voicemail.toml``
/// documents every key): greetings and their calendar, recording limits, the spool, delivery
/// targets, the client directory and the ``[sip]`` table.
///
/// A file may define several mailboxes (``[[mailboxes]]`` tables, ``examples/mailboxes.toml``):
/// ``mailboxes`` names them, ``mailbox_config(name)`` gives one of them, ``SipEndpoint``
/// serves them all and ``Mailbox(config, name)`` opens one. The other properties and methods
/// describe the default mailbox (``default_mailbox``), else the first.
///
/// Reading is strict: a bad key or value raises ``ConfigError`` naming the key path
/// (``error.key``, like ``mailboxes[1].delivery.smtp.to[0]``); a missing config file raises
/// ``FileNotFoundError``. Greeting files and the directory are loaded (and so validated) when
/// the configuration is read.
#[pyclass(frozen, module = "voicemail", name = "Config")]
#[derive(Debug, Clone)]
pub struct PyConfig {
    /// The mailbox the properties describe: the default one, else the first.
    pub(crate) config: Config,
    /// Every mailbox of the file.
    pub(crate) file: Arc<MailboxesConfig>,
}

impl PyConfig {
    pub(crate) fn new(file: MailboxesConfig) -> Self {
        Self { config: file.primary().clone(), file: Arc::new(file) }
    }

    /// The mailbox `name`, else the primary one; `ValueError` names the mailboxes.
    pub(crate) fn chosen(&self, name: Option<&str>) -> PyResult<Config> {
        match name {
            None => Ok(self.config.clone()),
            Some(n) => self.file.get(n).cloned().ok_or_else(|| {
                let names: Vec<String> = self.file.names().iter().map(|n| format!("{n:?}")).collect();
                pyo3::exceptions::PyValueError::new_err(format!(
                    "no mailbox is named {n:?}: the mailboxes are {}",
                    names.join(", ")
                ))
            }),
        }
    }
}

#[pymethods]
impl PyConfig {
    /// Reads a configuration file; relative paths in it are resolved against its directory.
    #[staticmethod]
    #[pyo3(signature = (path, /))]
    fn load(py: Python<'_>, path: PathBuf) -> Result<Self, BindingError> {
        let file = py.detach(|| MailboxesConfig::load(&path))?;
        Ok(Self::new(file))
    }

    /// Parses a configuration from TOML text; relative paths are resolved against
    /// ``base_dir`` (default: the current directory). Greetings and the directory are loaded.
    #[staticmethod]
    #[pyo3(signature = (text, /, base_dir = None))]
    fn from_toml(py: Python<'_>, text: &str, base_dir: Option<PathBuf>) -> Result<Self, BindingError> {
        let file = py.detach(|| -> Result<MailboxesConfig, BindingError> {
            let mut file = match &base_dir {
                Some(dir) => MailboxesConfig::from_toml_str_in(text, dir)?,
                None => MailboxesConfig::from_toml_str(text)?,
            };
            file.load_prompts()?;
            file.load_directories()?;
            Ok(file)
        })?;
        Ok(Self::new(file))
    }

    /// The configuration used without a file: the bundled greeting, the spool in
    /// ``./voicemail-data/spool``, delivery into the Maildir folder ``Voicemail`` under
    /// ``./voicemail-data/Maildir``, time zone UTC, SIP on 127.0.0.1:5060.
    #[staticmethod]
    fn default(py: Python<'_>) -> Result<Self, BindingError> {
        let config = py.detach(|| -> Result<Config, BindingError> {
            let mut config = Config::default_embedded();
            config.load_prompts()?;
            Ok(config)
        })?;
        Ok(Self::new(MailboxesConfig::from(config)))
    }

    /// The names of the file's mailboxes, in file order (one for a one-mailbox file).
    #[getter]
    fn mailboxes(&self) -> Vec<String> {
        self.file.names().into_iter().map(str::to_owned).collect()
    }

    /// The mailbox calls for an unknown number go to (``default_mailbox``; a one-mailbox
    /// file's mailbox), or ``None``: such calls are then refused with 404.
    #[getter]
    fn default_mailbox(&self) -> Option<&str> {
        self.file.default_mailbox.as_deref()
    }

    /// The configuration of the mailbox ``name`` alone (``ValueError`` when there is none).
    #[pyo3(signature = (name, /))]
    fn mailbox_config(&self, name: &str) -> PyResult<Self> {
        let config = self.chosen(Some(name))?;
        let mut file = MailboxesConfig::from(config.clone());
        file.sip.clone_from(&self.file.sip);
        Ok(Self { config, file: Arc::new(file) })
    }

    /// Other numbers and SIP users that select the mailbox (``numbers``).
    #[getter]
    fn numbers(&self) -> Vec<String> {
        self.config.numbers.clone()
    }

    /// The mailbox's name (shown in e-mails).
    #[getter]
    fn mailbox(&self) -> &str {
        &self.config.mailbox
    }

    /// The mailbox's own number, if configured.
    #[getter]
    fn number(&self) -> Option<&str> {
        self.config.number.as_deref()
    }

    /// The IANA time zone of the calendar (``"Europe/Moscow"``).
    #[getter]
    fn timezone(&self) -> &str {
        self.config.timezone_name()
    }

    /// The spool directory (``pathlib.Path``), where messages are written first.
    #[getter]
    fn spool(&self) -> PathBuf {
        self.config.spool.clone()
    }

    /// The greetings by name: ``"builtin:default"`` or the audio file's path.
    #[getter]
    fn greetings(&self) -> BTreeMap<String, String> {
        self.config
            .greetings
            .iter()
            .map(|(name, source)| {
                let s = match source {
                    GreetingSource::BuiltinDefault => voicemail_core::config::BUILTIN_DEFAULT_GREETING.to_owned(),
                    GreetingSource::File(p) => p.display().to_string(),
                };
                (name.clone(), s)
            })
            .collect()
    }

    /// The delivery targets configured: some of ``"maildir"``, ``"smtp"``, ``"imap"``.
    #[getter]
    fn delivery_targets(&self) -> Vec<&'static str> {
        let d = &self.config.delivery;
        let mut out = Vec::new();
        if d.maildir.is_some() {
            out.push("maildir");
        }
        if d.smtp.is_some() {
            out.push("smtp");
        }
        if d.imap.is_some() {
            out.push("imap");
        }
        out
    }

    /// The longest message, in seconds (``[recording] max_length``).
    #[getter]
    fn max_length(&self) -> f64 {
        self.config.recording.max_length.as_secs_f64()
    }

    /// The name of the greeting that plays at ``at`` (an aware ``datetime``): holiday >
    /// temporary > after hours > business hours > default, in the mailbox's time zone.
    #[pyo3(signature = (at, /))]
    fn greeting_at(&self, at: &Bound<'_, PyDateTime>) -> PyResult<String> {
        Ok(self.config.greeting_at(from_datetime(at)?).name)
    }

    /// The greeting that plays at ``at`` and why.
    #[pyo3(signature = (at, /))]
    fn greeting_choice(&self, at: &Bound<'_, PyDateTime>) -> PyResult<PyGreetingChoice> {
        Ok(PyGreetingChoice::new(self.config.greeting_at(from_datetime(at)?)))
    }

    /// The loaded greeting of a name, or ``None`` if there is no such greeting.
    #[pyo3(signature = (name, /))]
    fn prompt(&self, name: &str) -> Option<PyPrompt> {
        self.config.prompt(name).map(|p| PyPrompt { prompt: p.clone() })
    }

    /// Whether a client directory is configured (``[directory]``).
    #[getter]
    fn has_directory(&self) -> bool {
        self.config.client_directory().is_some()
    }

    /// The client a caller's number belongs to, or ``None`` (also without a directory). Any
    /// usual notation matches: ``"8 (495) 123-45-67"`` is ``"+74951234567"`` in region RU.
    #[pyo3(signature = (number, /))]
    fn lookup_client(&self, number: &str) -> Option<PyClient> {
        self.config.client_directory()?.lookup(number).map(|c| PyClient { entry: c.clone() })
    }

    /// The number in E.164 as the directory reads it, or ``None`` when it is not a plausible
    /// phone number or no directory is configured.
    #[pyo3(signature = (number, /))]
    fn normalize_number(&self, number: &str) -> Option<String> {
        self.config.client_directory()?.normalize(number)
    }

    fn __repr__(&self) -> String {
        if self.file.mailboxes.len() > 1 {
            return format!("Config(mailboxes={:?})", self.file.names());
        }
        format!("Config(mailbox={:?}, spool={:?})", self.config.mailbox, self.config.spool.display().to_string())
    }
}

/// The greeting the calendar picks at a moment, and why.
#[pyclass(frozen, eq, module = "voicemail", name = "GreetingChoice")]
#[derive(Debug, Clone, PartialEq)]
pub struct PyGreetingChoice {
    /// The greeting's name (a key of ``[greetings]``).
    #[pyo3(get)]
    name: String,
    /// Which rule chose it: ``"holiday"``, ``"temporary"``, ``"after-hours"``,
    /// ``"business-hours"`` or ``"default"``.
    #[pyo3(get)]
    kind: String,
    /// A human description (``holiday "New Year"``, ``after hours``).
    #[pyo3(get)]
    reason: String,
}

impl PyGreetingChoice {
    fn new(choice: GreetingChoice) -> Self {
        let kind = serde_json::to_value(&choice.reason)
            .ok()
            .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
            .unwrap_or_default();
        Self { name: choice.name, kind, reason: choice.reason.to_string() }
    }
}

#[pymethods]
impl PyGreetingChoice {
    fn __repr__(&self) -> String {
        format!("GreetingChoice(name={:?}, kind={:?}, reason={:?})", self.name, self.kind, self.reason)
    }
}

/// A client of the directory and the manager who calls them back.
#[pyclass(frozen, eq, module = "voicemail", name = "Client")]
#[derive(Debug, Clone, PartialEq)]
pub struct PyClient {
    entry: ClientEntry,
}

#[pymethods]
impl PyClient {
    /// The client's name.
    #[getter]
    fn client(&self) -> &str {
        &self.entry.client
    }

    /// The manager's name.
    #[getter]
    fn manager_name(&self) -> &str {
        &self.entry.manager_name
    }

    /// The manager's e-mail address.
    #[getter]
    fn manager_email(&self) -> &str {
        &self.entry.manager_email
    }

    /// The client's numbers in E.164, in file order.
    #[getter]
    fn numbers(&self) -> Vec<String> {
        self.entry.numbers.clone()
    }

    fn __repr__(&self) -> String {
        format!("Client(client={:?}, manager_name={:?})", self.entry.client, self.entry.manager_name)
    }
}
