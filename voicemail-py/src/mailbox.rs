//! `voicemail.Mailbox`: the one owner of a message's life (voicemail-core's `Mailbox`) —
//! calls, the stored messages with their follow-up and history, deliveries and recovery.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDateTime, PyDict};
use voicemail_core::followup::{FollowUp, HistoryEntry};
use voicemail_core::mailbox::RunReport;
use voicemail_core::store::{Delivery, Lifecycle, StoredMessage};
use voicemail_core::{CallSetup, Mailbox, MessageId};

use crate::call::{PyCall, parse_codec};
use crate::config::PyConfig;
use crate::errors::{BindingError, DeliveryError};
use crate::message::PyMessage;
use crate::time::{timestamp_or_now, to_datetime, to_datetime_opt};

/// Who made a change when the caller does not say.
pub(crate) const DEFAULT_BY: &str = "python";

/// A message id from Python: a string that is not one raises `ValueError`.
fn parse_id(id: &str) -> PyResult<MessageId> {
    MessageId::parse(id).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// A message's place in the callback workflow: ``new`` → ``assigned`` (to whom, when) →
/// ``called-back`` (by whom, when, a note).
#[pyclass(frozen, eq, module = "voicemail", name = "WorkflowState")]
#[derive(Debug, Clone, PartialEq)]
pub struct PyWorkflowState {
    state: FollowUp,
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
            FollowUp::New => None,
            FollowUp::Assigned { to, .. } => Some(to),
            FollowUp::CalledBack { by, .. } => Some(by),
        }
    }

    /// When the state was entered (UTC ``datetime``); ``None`` when new.
    #[getter]
    fn at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDateTime>>> {
        let at = match &self.state {
            FollowUp::New => None,
            FollowUp::Assigned { at, .. } | FollowUp::CalledBack { at, .. } => Some(*at),
        };
        to_datetime_opt(py, at)
    }

    /// The callback's note, if one was given.
    #[getter]
    fn note(&self) -> Option<&str> {
        match &self.state {
            FollowUp::CalledBack { note, .. } => note.as_deref(),
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

/// One line of a message's history: who did what, when.
#[pyclass(frozen, module = "voicemail", name = "HistoryEntry")]
#[derive(Debug, Clone)]
pub struct PyHistoryEntry {
    entry: HistoryEntry,
}

#[pymethods]
impl PyHistoryEntry {
    /// When it happened (UTC ``datetime``).
    #[getter]
    fn at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDateTime>> {
        to_datetime(py, self.entry.at)
    }

    /// Who did it: a person, or the part of the product that acted (``answering-machine``,
    /// ``recovery``, ``delivery``, ...).
    #[getter]
    fn by(&self) -> &str {
        &self.entry.by
    }

    /// What happened: ``"recorded"``, ``"assigned"``, ``"called-back"``, ``"deleted"``,
    /// ``"delivered"``, ``"rejected"`` or ``"retried"``.
    #[getter]
    fn event(&self) -> String {
        self.to_json_value().get("event").and_then(|v| v.as_str()).unwrap_or_default().to_owned()
    }

    /// A short description: ``assigned to Anna``, ``delivered to maildir: ...``.
    #[getter]
    fn description(&self) -> String {
        self.entry.event.describe()
    }

    /// The entry as a dict of JSON values: ``at`` (RFC 3339), ``by``, ``event`` and the
    /// event's fields (``to``, ``note``, ``forced``, ``reason``, ``target``, ``detail``,
    /// ``error``, ``end_reason``).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let json = py.import("json")?;
        let text = self.to_json_value().to_string();
        Ok(json.call_method1("loads", (text,))?.cast_into::<PyDict>()?)
    }

    fn __repr__(&self) -> String {
        format!("HistoryEntry({:?})", self.entry.describe())
    }
}

impl PyHistoryEntry {
    fn to_json_value(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.entry.event).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            map.insert("at".into(), serde_json::Value::String(self.entry.at.to_string()));
            map.insert("by".into(), serde_json::Value::String(self.entry.by.clone()));
        }
        v
    }
}

/// One (message, target) delivery.
#[pyclass(frozen, module = "voicemail", name = "DeliveryStatus")]
#[derive(Debug, Clone)]
pub struct PyDeliveryStatus {
    status: Delivery,
}

#[pymethods]
impl PyDeliveryStatus {
    /// The message id.
    #[getter]
    fn id(&self) -> &str {
        self.status.id.as_str()
    }

    /// The target: ``"maildir"``, ``"smtp"`` or ``"imap"``.
    #[getter]
    fn target(&self) -> &str {
        &self.status.target
    }

    /// ``"pending"``, ``"failing"`` (retried with back-off), ``"delivered"`` or
    /// ``"rejected"`` (refused for good, e.g. an SMTP 5xx; retried only on
    /// ``Mailbox.retry``).
    #[getter]
    fn state(&self) -> &'static str {
        self.status.state.as_str()
    }

    /// Failed attempts so far.
    #[getter]
    fn attempts(&self) -> u32 {
        self.status.attempts
    }

    /// The last failure or the rejection, in the server's words.
    #[getter]
    fn last_error(&self) -> Option<&str> {
        self.status.last_error.as_deref()
    }

    /// When it is due next (UTC ``datetime``); ``None`` once delivered or rejected.
    #[getter]
    fn next_attempt<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDateTime>>> {
        to_datetime_opt(py, self.status.next_attempt)
    }

    /// When it was last tried (UTC ``datetime``).
    #[getter]
    fn last_attempt<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDateTime>>> {
        to_datetime_opt(py, self.status.last_attempt)
    }

    /// When the target acknowledged it (UTC ``datetime``).
    #[getter]
    fn delivered_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDateTime>>> {
        to_datetime_opt(py, self.status.delivered_at)
    }

    /// What the target said when it acknowledged (a file name, an SMTP reply, ...).
    #[getter]
    fn ack(&self) -> Option<&str> {
        self.status.ack.as_deref()
    }

    /// Envelope recipients besides the target's own (a matched client's manager).
    #[getter]
    fn extra_to(&self) -> Vec<String> {
        self.status.extra_to.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "DeliveryStatus(id={:?}, target={:?}, state={:?})",
            self.status.id.as_str(),
            self.status.target,
            self.state()
        )
    }
}

/// One message as the mailbox holds it: its metadata, where it is in its life, its
/// follow-up state, its history and its deliveries.
#[pyclass(frozen, module = "voicemail", name = "MessageStatus")]
#[derive(Debug, Clone)]
pub struct PyMessageStatus {
    status: StoredMessage,
}

#[pymethods]
impl PyMessageStatus {
    /// The message id.
    #[getter]
    fn id(&self) -> &str {
        self.status.meta.id.as_str()
    }

    /// The metadata (for a call still being recorded: what was known when it started).
    #[getter]
    fn message(&self) -> PyMessage {
        PyMessage::new(self.status.meta.clone())
    }

    /// ``"recording"`` (the call is in progress, or its process died and it awaits
    /// ``recover()``), ``"stored"`` or ``"deleted"``.
    #[getter]
    fn lifecycle(&self) -> &'static str {
        self.status.lifecycle.as_str()
    }

    /// The recording (``pathlib.Path``); ``None`` once deleted. With a store shared by several
    /// nodes (``[store] url``) the file is on the node that recorded it: ``Mailbox.audio(id)``
    /// reads the recording on any node.
    #[getter]
    fn wav(&self) -> Option<PathBuf> {
        if self.status.lifecycle == Lifecycle::Deleted {
            return None;
        }
        self.status.meta.wav_path.clone()
    }

    /// The current follow-up state.
    #[getter]
    fn state(&self) -> PyWorkflowState {
        PyWorkflowState { state: self.status.followup.clone() }
    }

    /// Who did what, oldest first: recorded, assigned, called back, delivered, deleted, ...
    #[getter]
    fn history(&self) -> Vec<PyHistoryEntry> {
        self.status.history.iter().map(|e| PyHistoryEntry { entry: e.clone() }).collect()
    }

    /// One entry per delivery target.
    #[getter]
    fn deliveries(&self) -> Vec<PyDeliveryStatus> {
        self.status.deliveries.iter().map(|d| PyDeliveryStatus { status: d.clone() }).collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "MessageStatus(id={:?}, lifecycle={:?}, state={:?})",
            self.status.meta.id.as_str(),
            self.status.lifecycle.as_str(),
            self.status.followup.describe()
        )
    }
}

/// What one ``Mailbox.deliver()`` pass did.
#[pyclass(frozen, module = "voicemail", name = "DeliveryReport")]
#[derive(Debug, Clone)]
pub struct PyDeliveryReport {
    report: RunReport,
}

#[pymethods]
impl PyDeliveryReport {
    /// Deliveries attempted.
    #[getter]
    fn attempted(&self) -> usize {
        self.report.attempted
    }

    /// Acknowledged in this pass: ``(message id, target)``.
    #[getter]
    fn delivered(&self) -> Vec<(String, String)> {
        self.report.delivered.iter().map(|(id, t)| (id.as_str().to_owned(), t.clone())).collect()
    }

    /// Failed in this pass, retried later with back-off: ``(message id, target, error)``.
    #[getter]
    fn failed(&self) -> Vec<(String, String, String)> {
        self.report.failed.iter().map(|(id, t, e)| (id.as_str().to_owned(), t.clone(), e.clone())).collect()
    }

    /// Refused for good in this pass: ``(message id, target, the server's words)``; retried
    /// only on ``Mailbox.retry``.
    #[getter]
    fn rejected(&self) -> Vec<(String, String, String)> {
        self.report.rejected.iter().map(|(id, t, e)| (id.as_str().to_owned(), t.clone(), e.clone())).collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "DeliveryReport(attempted={}, delivered={}, failed={}, rejected={})",
            self.report.attempted,
            self.report.delivered.len(),
            self.report.failed.len(),
            self.report.rejected.len()
        )
    }
}

/// The mailbox of a configuration: the one owner of every message's life. It starts calls
/// (``start_call``: id, greeting by the calendar, recording in its spool), stores their
/// messages, recovers calls whose process died (``recover``), delivers by e-mail with retries
/// (``deliver``, ``deliveries``, ``retry``) and tracks the follow-up (New → Assigned →
/// CalledBack, with history). Several processes may open one mailbox at once (the answering
/// machine, ``inbox``, Python): the store (SQLite in the spool) keeps them consistent.
///
/// ``Mailbox(config)`` opens (creating if needed) the spool of a ``Config``; of a file with
/// several mailboxes, ``Mailbox(config, name)`` opens the one named (default: the default
/// mailbox, else the first). Times (``at``,
/// ``now``) default to the current time and must be timezone-aware ``datetime``s. ``by``
/// names who made a change (default ``"python"``); ``called_back`` needs it (who returned
/// the call).
///
/// Errors: a string that is not a message id, and an empty or over-long name, note or
/// reason, raise ``ValueError``; refusals raise ``MailboxError`` subclasses
/// (``MessageNotFoundError``, ``InvalidTransitionError``, ``NotCalledBackError``,
/// ``SpoolFullError``); I/O failures raise ``OSError`` subclasses. Every method releases the
/// GIL while it works (file and network I/O); from asyncio, run them in an executor.
#[pyclass(frozen, module = "voicemail", name = "Mailbox")]
#[derive(Debug, Clone)]
pub struct PyMailbox {
    pub(crate) mailbox: Mailbox,
}

impl PyMailbox {
    fn check_target(&self, target: Option<&str>) -> PyResult<()> {
        match target {
            Some(t) if !self.mailbox.targets().iter().any(|k| k == t) => Err(DeliveryError::new_err(format!(
                "no delivery target {t:?}: this mailbox has {:?}",
                self.mailbox.targets()
            ))),
            _ => Ok(()),
        }
    }
}

#[pymethods]
impl PyMailbox {
    #[new]
    #[pyo3(signature = (config, /, name = None))]
    fn new(py: Python<'_>, config: &Bound<'_, PyConfig>, name: Option<&str>) -> PyResult<Self> {
        let config = config.get().chosen(name)?;
        let mailbox = py.detach(|| Mailbox::open(config)).map_err(BindingError::from)?;
        Ok(Self { mailbox })
    }

    /// The mailbox's name (``mailbox`` of its configuration).
    #[getter]
    fn name(&self) -> &str {
        &self.mailbox.config().mailbox
    }

    /// The spool directory (recordings and the store).
    #[getter]
    fn spool(&self) -> PathBuf {
        self.mailbox.spool_dir().to_path_buf()
    }

    /// The configured delivery targets: ``"maildir"``, ``"smtp"``, ``"imap"``.
    #[getter]
    fn targets(&self) -> Vec<String> {
        self.mailbox.targets()
    }

    /// Starts a call: a new message id, the greeting for ``started_at`` from the calendar
    /// (or the greeting named ``greeting`` in ``[greetings]``), the recording limits, finish
    /// key and beep of ``[recording]``, and the recording in the spool. Drive the returned
    /// ``Call``; its ``MessageRecorded`` message is stored before you see it.
    ///
    /// ``caller`` is the caller's number as signalled; ``caller_name`` and ``called``
    /// (default: the configuration's ``number``) go into the message; ``started_at`` is the
    /// call's wall-clock time (aware ``datetime``, default now). ``codec`` is ``"pcmu"``,
    /// ``"pcma"`` or ``"l16"``; ``payload_type`` defaults to the codec's static type;
    /// ``dtmf_payload_type`` is the RFC 4733 type (``None``: no in-band DTMF); ``ptime_ms``
    /// the greeting's packet length (10-120 ms). ``rtp_seed`` seeds the outgoing SSRC,
    /// sequence and timestamp (default random). ``now`` is the call's origin on your clock
    /// (``time.monotonic()``), if the first input's time should not be.
    ///
    /// Raises ``SpoolFullError`` when the spool keeps less than ``[store] min_free`` free,
    /// ``ValueError`` for an unknown codec or greeting, ``ConfigError`` for invalid codec
    /// parameters.
    #[pyo3(
        text_signature = "(self, /, *, caller, caller_name=None, called=None, started_at=None, codec='pcmu', payload_type=None, dtmf_payload_type=101, ptime_ms=20, greeting=None, rtp_seed=None, now=None)"
    )]
    #[pyo3(signature = (
        *,
        caller,
        caller_name = None,
        called = None,
        started_at = None,
        codec = "pcmu",
        payload_type = None,
        dtmf_payload_type = Some(101),
        ptime_ms = 20,
        greeting = None,
        rtp_seed = None,
        now = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn start_call(
        &self,
        py: Python<'_>,
        caller: String,
        caller_name: Option<String>,
        called: Option<String>,
        started_at: Option<&Bound<'_, PyDateTime>>,
        codec: &str,
        payload_type: Option<u8>,
        dtmf_payload_type: Option<u8>,
        ptime_ms: u64,
        greeting: Option<String>,
        rtp_seed: Option<u64>,
        now: Option<f64>,
    ) -> PyResult<PyCall> {
        let started_at = timestamp_or_now(started_at)?;
        let mut setup = CallSetup::new(caller, started_at).with_codec(parse_codec(codec)?);
        setup.recorded_by = "python".to_owned();
        setup.caller_name = caller_name;
        setup.called = called.unwrap_or_default();
        if let Some(pt) = payload_type {
            setup.payload_type = pt;
        }
        setup.dtmf_payload_type = dtmf_payload_type;
        setup.ptime = Duration::from_millis(ptime_ms);
        setup.rtp_seed = rtp_seed;
        if let Some(name) = &greeting
            && !self.mailbox.config().greetings.contains_key(name)
        {
            let known: Vec<&String> = self.mailbox.config().greetings.keys().collect();
            return Err(PyValueError::new_err(format!("unknown greeting {name:?}: [greetings] has {known:?}")));
        }
        setup.greeting = greeting;
        let base = Instant::now();
        let started = py.detach(|| self.mailbox.start_call(setup, base)).map_err(BindingError::from)?;
        PyCall::started(self.mailbox.clone(), started.call, started.lease, base, now)
    }

    /// Raises ``SpoolFullError`` when the spool keeps less free space than ``[store]
    /// min_free`` (new calls are then refused).
    fn check_space(&self, py: Python<'_>) -> Result<(), BindingError> {
        Ok(py.detach(|| self.mailbox.check_space())?)
    }

    /// Every message, oldest call first, with its history and deliveries; ``deleted=True``
    /// includes deleted ones.
    #[pyo3(signature = (*, deleted = false))]
    fn list(&self, py: Python<'_>, deleted: bool) -> Result<Vec<PyMessageStatus>, BindingError> {
        let list = py.detach(|| if deleted { self.mailbox.list_all() } else { self.mailbox.list(true) })?;
        Ok(list.into_iter().map(|status| PyMessageStatus { status }).collect())
    }

    /// One message (deleted ones too) with its history and deliveries.
    #[pyo3(signature = (id, /))]
    fn show(&self, py: Python<'_>, id: &str) -> PyResult<PyMessageStatus> {
        let id = parse_id(id)?;
        let status = py.detach(|| self.mailbox.show(&id)).map_err(BindingError::from)?;
        Ok(PyMessageStatus { status })
    }

    /// Assigns a new or assigned message to ``to`` (made by ``by``).
    #[pyo3(signature = (id, to, *, by = DEFAULT_BY, at = None), text_signature = "(self, /, id, to, *, by='python', at=None)")]
    fn assign(
        &self,
        py: Python<'_>,
        id: &str,
        to: &str,
        by: &str,
        at: Option<&Bound<'_, PyDateTime>>,
    ) -> PyResult<PyMessageStatus> {
        let (id, at) = (parse_id(id)?, timestamp_or_now(at)?);
        let status = py.detach(|| self.mailbox.assign(&id, to, by, at)).map_err(BindingError::from)?;
        Ok(PyMessageStatus { status })
    }

    /// Records that ``by`` called the caller back, with an optional note. Final: a message
    /// is called back once.
    #[pyo3(signature = (id, *, by, note = None, at = None))]
    fn called_back(
        &self,
        py: Python<'_>,
        id: &str,
        by: &str,
        note: Option<&str>,
        at: Option<&Bound<'_, PyDateTime>>,
    ) -> PyResult<PyMessageStatus> {
        let (id, at) = (parse_id(id)?, timestamp_or_now(at)?);
        let status = py.detach(|| self.mailbox.called_back(&id, by, note, at)).map_err(BindingError::from)?;
        Ok(PyMessageStatus { status })
    }

    /// Deletes a message: its recording is removed; its record and history stay (a
    /// ``deleted`` history entry, visible with ``list(deleted=True)`` and ``show``). Before a
    /// callback this raises ``NotCalledBackError`` unless ``force_reason`` says why; forced
    /// deletions are recorded with the reason.
    #[pyo3(
        signature = (id, *, force_reason = None, by = DEFAULT_BY, at = None),
        text_signature = "(self, /, id, *, force_reason=None, by='python', at=None)"
    )]
    fn delete(
        &self,
        py: Python<'_>,
        id: &str,
        force_reason: Option<&str>,
        by: &str,
        at: Option<&Bound<'_, PyDateTime>>,
    ) -> PyResult<PyMessageStatus> {
        let (id, at) = (parse_id(id)?, timestamp_or_now(at)?);
        let status = py.detach(|| self.mailbox.delete(&id, force_reason, by, at)).map_err(BindingError::from)?;
        Ok(PyMessageStatus { status })
    }

    /// Every delivery of every message, by message id then target (states ``pending``,
    /// ``failing``, ``delivered``, ``rejected`` with the server's words in ``last_error``).
    fn deliveries(&self, py: Python<'_>) -> Result<Vec<PyDeliveryStatus>, BindingError> {
        let list = py.detach(|| self.mailbox.deliveries())?;
        Ok(list.into_iter().map(|status| PyDeliveryStatus { status }).collect())
    }

    /// Queues the rejected or failing deliveries of message ``id`` again, due now (every
    /// target, or only ``target``); ``by`` is recorded in the history. A delivery being
    /// attempted at this moment is left alone. Returns how many were queued.
    #[pyo3(signature = (id, target = None, *, by = "python", now = None))]
    fn retry(
        &self,
        py: Python<'_>,
        id: &str,
        target: Option<&str>,
        by: &str,
        now: Option<&Bound<'_, PyDateTime>>,
    ) -> PyResult<usize> {
        let (id, now) = (parse_id(id)?, timestamp_or_now(now)?);
        self.check_target(target)?;
        Ok(py.detach(|| self.mailbox.retry(&id, target, by, now)).map_err(BindingError::from)?)
    }

    /// Attempts every delivery due at ``now`` (every target, or only ``target``), one target
    /// after the other, until none is due; each outcome is recorded before the next attempt.
    /// Failures are retried later with back-off (5 s doubling to 10 min), rejections only on
    /// ``retry``. A ``SipEndpoint`` does this in the background itself.
    #[pyo3(signature = (now = None, *, target = None))]
    fn deliver(
        &self,
        py: Python<'_>,
        now: Option<&Bound<'_, PyDateTime>>,
        target: Option<&str>,
    ) -> PyResult<PyDeliveryReport> {
        let now = timestamp_or_now(now)?;
        self.check_target(target)?;
        let report = py
            .detach(|| match target {
                Some(t) => self.mailbox.deliver_due(t, now),
                None => self.mailbox.deliver_all_due(now),
            })
            .map_err(BindingError::from)?;
        Ok(PyDeliveryReport { report })
    }

    /// The earliest time a delivery (to ``target``, or to any target) is due (UTC
    /// ``datetime``), or ``None`` when nothing waits.
    #[pyo3(signature = (target = None))]
    fn next_due<'py>(&self, py: Python<'py>, target: Option<&str>) -> PyResult<Option<Bound<'py, PyDateTime>>> {
        self.check_target(target)?;
        let targets = match target {
            Some(t) => vec![t.to_owned()],
            None => self.mailbox.targets(),
        };
        let next = py
            .detach(|| -> Result<Option<Timestamp>, BindingError> {
                let mut next: Option<Timestamp> = None;
                for t in &targets {
                    if let Some(at) = self.mailbox.next_due(t)? {
                        next = Some(next.map_or(at, |n| n.min(at)));
                    }
                }
                Ok(next)
            })
            .map_err(PyErr::from)?;
        to_datetime_opt(py, next)
    }

    /// Recovery, safe at any time and from any process: stores the calls whose process died
    /// (their WAV repaired, end reason ``interrupted``) and messages whose storing failed
    /// earlier in this process. Calls still being recorded by a live process are never
    /// touched. Returns the messages it stored. A ``SipEndpoint`` does this in the
    /// background itself.
    #[pyo3(signature = (now = None))]
    fn recover(&self, py: Python<'_>, now: Option<&Bound<'_, PyDateTime>>) -> PyResult<Vec<PyMessage>> {
        let now = timestamp_or_now(now)?;
        let list = py.detach(|| self.mailbox.recover(now)).map_err(BindingError::from)?;
        Ok(list.into_iter().map(PyMessage::new).collect())
    }

    /// The recording of a stored message (WAV bytes, or Ogg/Opus with ``[recording] format
    /// = "opus"``), or ``None`` when it has none (deleted, still being recorded). Read from
    /// this node's spool, or from the shared store (``[store] url``) when another node
    /// recorded it.
    #[pyo3(signature = (id, /))]
    fn audio<'py>(&self, py: Python<'py>, id: &str) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let id = parse_id(id)?;
        let audio = py.detach(|| self.mailbox.audio(&id)).map_err(BindingError::from)?;
        Ok(audio.map(|bytes| PyBytes::new(py, &bytes)))
    }

    /// Recovers the calls in progress of the dead node ``node`` (``[store] node``) from its
    /// spool directory ``spool`` on this node: each is stored as ``interrupted`` with what
    /// its recording holds, as that node would after a restart. Returns the messages stored.
    #[pyo3(signature = (spool, node, now = None))]
    fn recover_spool(
        &self,
        py: Python<'_>,
        spool: PathBuf,
        node: &str,
        now: Option<&Bound<'_, PyDateTime>>,
    ) -> PyResult<Vec<PyMessage>> {
        let now = timestamp_or_now(now)?;
        let list = py.detach(|| self.mailbox.recover_spool(&spool, node, now)).map_err(BindingError::from)?;
        Ok(list.into_iter().map(PyMessage::new).collect())
    }

    fn __repr__(&self) -> String {
        format!("Mailbox({:?})", self.mailbox.spool_dir().display().to_string())
    }
}
