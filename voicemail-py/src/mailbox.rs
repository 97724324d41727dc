//! `voicemail.Mailbox` (the callback workflow over a spool) and `voicemail.Outbox` (delivery
//! status).

use std::path::PathBuf;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDateTime;
use voicemail_core::mailbox::{DeletionRecord, ForceReason, Mailbox, MessageStatus, WorkflowState};
use voicemail_core::outbox::{DeliveryState, DeliveryStatus, Outbox};

use crate::config::PyConfig;
use crate::errors::BindingError;
use crate::message::PyMessage;
use crate::time::{timestamp_or_now, to_datetime_opt};

/// A spool directory from a path or a `Config` (its `spool`).
fn spool_arg(spool: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    if let Ok(c) = spool.cast::<PyConfig>() {
        return Ok(c.get().spool_dir().to_path_buf());
    }
    spool
        .extract::<PathBuf>()
        .map_err(|_| PyTypeError::new_err("spool must be a directory path (str or os.PathLike) or a Config"))
}

/// A message's place in the callback workflow: ``New`` → ``Assigned`` (to whom, when) →
/// ``CalledBack`` (by whom, when, a note).
#[pyclass(frozen, eq, module = "voicemail", name = "WorkflowState")]
#[derive(Debug, Clone, PartialEq)]
pub struct PyWorkflowState {
    state: WorkflowState,
}

#[pymethods]
impl PyWorkflowState {
    /// ``"new"``, ``"assigned"`` or ``"called-back"``.
    #[getter]
    fn name(&self) -> &'static str {
        self.state.name()
    }

    /// Who was assigned (``assigned``) or who called back (``called-back``); ``None`` when new.
    #[getter]
    fn who(&self) -> Option<&str> {
        match &self.state {
            WorkflowState::New => None,
            WorkflowState::Assigned { to, .. } => Some(to),
            WorkflowState::CalledBack { by, .. } => Some(by),
        }
    }

    /// When the state was entered (UTC ``datetime``); ``None`` when new.
    #[getter]
    fn at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDateTime>>> {
        let at = match &self.state {
            WorkflowState::New => None,
            WorkflowState::Assigned { at, .. } | WorkflowState::CalledBack { at, .. } => Some(*at),
        };
        to_datetime_opt(py, at)
    }

    /// The callback's note, if one was given.
    #[getter]
    fn note(&self) -> Option<&str> {
        match &self.state {
            WorkflowState::CalledBack { note, .. } => note.as_deref(),
            _ => None,
        }
    }

    /// A short description: ``new``, ``assigned to Anna``, ``called back by Boris``.
    #[getter]
    fn description(&self) -> String {
        self.state.describe()
    }

    fn __repr__(&self) -> String {
        format!("WorkflowState({:?})", self.state.describe())
    }
}

/// One message as the inbox shows it: its metadata (``None`` if unreadable), recording and
/// workflow state with history.
#[pyclass(frozen, module = "voicemail", name = "MessageStatus")]
#[derive(Debug, Clone)]
pub struct PyMessageStatus {
    status: MessageStatus,
}

#[pymethods]
impl PyMessageStatus {
    /// The message id.
    #[getter]
    fn id(&self) -> &str {
        &self.status.id
    }

    /// The metadata, or ``None`` when ``<id>.json`` is missing or unreadable.
    #[getter]
    fn message(&self) -> Option<PyMessage> {
        self.status.meta.clone().map(PyMessage::new)
    }

    /// The recording, if ``<id>.wav`` exists.
    #[getter]
    fn wav(&self) -> Option<PathBuf> {
        self.status.wav.clone()
    }

    /// The current workflow state.
    #[getter]
    fn state(&self) -> PyWorkflowState {
        PyWorkflowState { state: self.status.workflow.state.clone() }
    }

    /// Every state the message entered, oldest first (``new`` is implicit).
    #[getter]
    fn history(&self) -> Vec<PyWorkflowState> {
        self.status.workflow.history.iter().map(|s| PyWorkflowState { state: s.clone() }).collect()
    }

    fn __repr__(&self) -> String {
        format!("MessageStatus(id={:?}, state={:?})", self.status.id, self.status.workflow.state.describe())
    }
}

/// The record of one deletion, as appended to ``deletions.log``.
#[pyclass(frozen, module = "voicemail", name = "DeletionRecord")]
#[derive(Debug, Clone)]
pub struct PyDeletionRecord {
    record: DeletionRecord,
}

#[pymethods]
impl PyDeletionRecord {
    /// The deleted message's id.
    #[getter]
    fn id(&self) -> &str {
        &self.record.id
    }

    /// When it was deleted (UTC ``datetime``).
    #[getter]
    fn at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDateTime>> {
        crate::time::to_datetime(py, self.record.at)
    }

    /// Whether it was deleted before a callback, by force.
    #[getter]
    fn forced(&self) -> bool {
        self.record.forced
    }

    /// The reason given for a forced deletion.
    #[getter]
    fn reason(&self) -> Option<&str> {
        self.record.reason.as_deref()
    }

    /// The workflow state it was in.
    #[getter]
    fn state(&self) -> PyWorkflowState {
        PyWorkflowState { state: self.record.state.clone() }
    }

    /// The caller's number, when the metadata was readable.
    #[getter]
    fn caller(&self) -> Option<&str> {
        self.record.caller.as_deref()
    }

    fn __repr__(&self) -> String {
        format!("DeletionRecord(id={:?}, forced={})", self.record.id, if self.record.forced { "True" } else { "False" })
    }
}

/// The spool seen as a mailbox: each message goes New → Assigned → CalledBack, and a message
/// cannot be deleted before a callback is logged unless forced with a reason (recorded in
/// ``deletions.log``).
///
/// ``Mailbox(spool)`` takes the spool directory or a ``Config``. Times (``at``) default to
/// now and must be timezone-aware. Refusals raise ``MailboxError`` subclasses
/// (``MessageNotFoundError``, ``InvalidTransitionError``, ``NotCalledBackError``); a missing
/// spool raises ``FileNotFoundError``.
#[pyclass(frozen, module = "voicemail", name = "Mailbox")]
#[derive(Debug)]
pub struct PyMailbox {
    mailbox: Mailbox,
}

#[pymethods]
impl PyMailbox {
    #[new]
    #[pyo3(signature = (spool, /))]
    fn new(spool: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mailbox = Mailbox::open(spool_arg(spool)?).map_err(BindingError::from)?;
        Ok(Self { mailbox })
    }

    /// The spool directory.
    #[getter]
    fn spool(&self) -> PathBuf {
        self.mailbox.spool().to_path_buf()
    }

    /// Every message, oldest first (messages without metadata last).
    fn list(&self, py: Python<'_>) -> Result<Vec<PyMessageStatus>, BindingError> {
        let list = py.detach(|| self.mailbox.list())?;
        Ok(list.into_iter().map(|status| PyMessageStatus { status }).collect())
    }

    /// One message.
    #[pyo3(signature = (id, /))]
    fn show(&self, py: Python<'_>, id: &str) -> Result<PyMessageStatus, BindingError> {
        let status = py.detach(|| self.mailbox.show(id))?;
        Ok(PyMessageStatus { status })
    }

    /// Assigns a new or assigned message to ``to``.
    #[pyo3(signature = (id, to, *, at = None))]
    fn assign(
        &self,
        py: Python<'_>,
        id: &str,
        to: &str,
        at: Option<&Bound<'_, PyDateTime>>,
    ) -> PyResult<PyMessageStatus> {
        let at = timestamp_or_now(at)?;
        let status = py.detach(|| self.mailbox.assign(id, to, at)).map_err(BindingError::from)?;
        Ok(PyMessageStatus { status })
    }

    /// Records that ``by`` called the caller back, with an optional note. Final: a message
    /// is called back once.
    #[pyo3(signature = (id, by, *, note = None, at = None))]
    fn called_back(
        &self,
        py: Python<'_>,
        id: &str,
        by: &str,
        note: Option<&str>,
        at: Option<&Bound<'_, PyDateTime>>,
    ) -> PyResult<PyMessageStatus> {
        let at = timestamp_or_now(at)?;
        let status = py.detach(|| self.mailbox.called_back(id, by, at, note)).map_err(BindingError::from)?;
        Ok(PyMessageStatus { status })
    }

    /// Deletes a message (recording, metadata, state). Before a callback this raises
    /// ``NotCalledBackError`` unless ``force_reason`` says why; forced deletions are logged.
    #[pyo3(signature = (id, force_reason = None, *, at = None))]
    fn delete(
        &self,
        py: Python<'_>,
        id: &str,
        force_reason: Option<String>,
        at: Option<&Bound<'_, PyDateTime>>,
    ) -> PyResult<PyDeletionRecord> {
        let at = timestamp_or_now(at)?;
        let force = force_reason.map(ForceReason::new);
        let record = py.detach(|| self.mailbox.delete(id, force, at)).map_err(BindingError::from)?;
        Ok(PyDeletionRecord { record })
    }

    /// Every deletion recorded in ``deletions.log``, oldest first.
    fn deletions(&self, py: Python<'_>) -> Result<Vec<PyDeletionRecord>, BindingError> {
        let records = py.detach(|| self.mailbox.deletions())?;
        Ok(records.into_iter().map(|record| PyDeletionRecord { record }).collect())
    }

    fn __repr__(&self) -> String {
        format!("Mailbox({:?})", self.mailbox.spool().display().to_string())
    }
}

/// One (message, destination) pair of the outbox.
#[pyclass(frozen, module = "voicemail", name = "DeliveryStatus")]
#[derive(Debug, Clone)]
pub struct PyDeliveryStatus {
    status: DeliveryStatus,
}

#[pymethods]
impl PyDeliveryStatus {
    /// The message id.
    #[getter]
    fn id(&self) -> &str {
        &self.status.id
    }

    /// The destination: ``"maildir"``, ``"smtp"`` or ``"imap"`` (empty for an unreadable record).
    #[getter]
    fn target(&self) -> &str {
        &self.status.target
    }

    /// ``"pending"``, ``"failing"`` or ``"delivered"``.
    #[getter]
    fn state(&self) -> &'static str {
        match self.status.state {
            DeliveryState::Pending => "pending",
            DeliveryState::Failing => "failing",
            DeliveryState::Delivered => "delivered",
        }
    }

    /// Failed attempts so far.
    #[getter]
    fn attempts(&self) -> u32 {
        self.status.attempts
    }

    /// The last failure, if any.
    #[getter]
    fn last_error(&self) -> Option<&str> {
        self.status.last_error.as_deref()
    }

    /// The next attempt (UTC ``datetime``), ``None`` once delivered.
    #[getter]
    fn next_attempt<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDateTime>>> {
        to_datetime_opt(py, self.status.next_attempt)
    }

    /// When the destination acknowledged it (UTC ``datetime``).
    #[getter]
    fn delivered_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDateTime>>> {
        to_datetime_opt(py, self.status.delivered_at)
    }

    fn __repr__(&self) -> String {
        format!("DeliveryStatus(id={:?}, target={:?}, state={:?})", self.status.id, self.status.target, self.state())
    }
}

/// The durable delivery outbox of a spool: every message is retried per destination until
/// acknowledged; nothing is dropped. ``Outbox(spool)`` takes the spool directory or a
/// ``Config``.
#[pyclass(frozen, module = "voicemail", name = "Outbox")]
#[derive(Debug)]
pub struct PyOutbox {
    outbox: Outbox,
}

#[pymethods]
impl PyOutbox {
    #[new]
    #[pyo3(signature = (spool, /))]
    fn new(spool: &Bound<'_, PyAny>) -> PyResult<Self> {
        let outbox = Outbox::open(spool_arg(spool)?).map_err(BindingError::from)?;
        Ok(Self { outbox })
    }

    /// Every pair of every queued and delivered message, by message id.
    fn status(&self, py: Python<'_>) -> Result<Vec<PyDeliveryStatus>, BindingError> {
        let list = py.detach(|| self.outbox.status())?;
        Ok(list.into_iter().map(|status| PyDeliveryStatus { status }).collect())
    }

    /// The earliest time an undelivered pair is due (UTC ``datetime``), or ``None``.
    fn next_due<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDateTime>>> {
        let next = py.detach(|| self.outbox.next_due()).map_err(BindingError::from)?;
        to_datetime_opt(py, next)
    }

    /// Ids of spool messages the outbox has never seen (e.g. after a crash).
    fn unqueued(&self, py: Python<'_>) -> Result<Vec<String>, BindingError> {
        Ok(py.detach(|| self.outbox.unqueued())?)
    }

    fn __repr__(&self) -> String {
        format!("Outbox({:?})", self.outbox.spool().display().to_string())
    }
}
