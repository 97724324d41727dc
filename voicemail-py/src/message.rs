//! `voicemail.Message` (a recorded message's metadata) and `voicemail.MediaStats`.

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDateTime, PyDict};
use voicemail_core::{MediaStats, MessageMeta};

use crate::time::to_datetime;

/// The metadata of one recorded message: who called, when, how long, why it ended, and
/// where the WAV is. Every call attempt yields exactly one, even a caller who hung up
/// during the greeting (``duration_ms == 0``, a valid empty WAV).
///
/// Instances are immutable. ``to_json()`` gives the message as one JSON line (the answering
/// machine's output format); ``Message.from_json(text)`` reads one back.
#[pyclass(frozen, eq, module = "voicemail", name = "Message")]
#[derive(Debug, Clone, PartialEq)]
pub struct PyMessage {
    pub(crate) meta: MessageMeta,
}

impl PyMessage {
    /// Wraps metadata.
    pub(crate) fn new(meta: MessageMeta) -> Self {
        Self { meta }
    }
}

#[pymethods]
impl PyMessage {
    /// Reads a message from its JSON form (``to_json()``, or a line the answering machine
    /// printed).
    #[staticmethod]
    #[pyo3(signature = (text, /))]
    fn from_json(text: &str) -> PyResult<Self> {
        serde_json::from_str(text)
            .map(Self::new)
            .map_err(|e| PyValueError::new_err(format!("not message metadata: {e}")))
    }

    /// The message id (unique within the mailbox).
    #[getter]
    fn id(&self) -> &str {
        self.meta.id.as_str()
    }

    /// The caller's number as signalled.
    #[getter]
    fn caller(&self) -> &str {
        &self.meta.caller
    }

    /// The caller's display name, if any.
    #[getter]
    fn caller_name(&self) -> Option<&str> {
        self.meta.caller_name.as_deref()
    }

    /// The called number (the mailbox); empty when unknown.
    #[getter]
    fn called(&self) -> &str {
        &self.meta.called
    }

    /// When the call was answered: an aware ``datetime`` in UTC.
    #[getter]
    fn started_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDateTime>> {
        to_datetime(py, self.meta.started_at)
    }

    /// Length of the recorded audio in milliseconds.
    #[getter]
    fn duration_ms(&self) -> u64 {
        self.meta.duration_ms
    }

    /// Why the call ended: ``"hang-up"``, ``"finish-key"``, ``"max-length"``,
    /// ``"silence-timeout"``, ``"media-timeout"``, ``"recording-failed"`` or ``"interrupted"``.
    #[getter]
    fn end_reason(&self) -> &'static str {
        self.meta.end_reason.as_str()
    }

    /// The codec the caller's audio arrived in: ``"pcmu"``, ``"pcma"`` or ``"l16"``.
    #[getter]
    fn codec(&self) -> &'static str {
        self.meta.codec.as_str()
    }

    /// The name of the greeting that was played.
    #[getter]
    fn greeting(&self) -> &str {
        &self.meta.greeting
    }

    /// The DTMF digits received during the call, in order.
    #[getter]
    fn dtmf(&self) -> &str {
        &self.meta.dtmf
    }

    /// The name of the mailbox that took the call (``None`` in records of older versions).
    #[getter]
    fn mailbox(&self) -> Option<&str> {
        self.meta.mailbox.as_deref()
    }

    /// The number that forwarded the call to the mailbox (History-Info or Diversion), as
    /// signalled, or ``None`` when the call was not diverted.
    #[getter]
    fn diverted_from(&self) -> Option<&str> {
        self.meta.diverted_from.as_deref()
    }

    /// The recording's transcript (``[transcription]``), once it is made (it is added after
    /// the message is stored, before its first delivery), else ``None``.
    #[getter]
    fn transcript(&self) -> Option<&str> {
        self.meta.transcript.as_deref()
    }

    /// The WAV file (``pathlib.Path``), or ``None`` when the recording was not a file.
    #[getter]
    fn wav_path(&self) -> Option<PathBuf> {
        self.meta.wav_path.clone()
    }

    /// Media counters of the call.
    #[getter]
    fn media(&self) -> PyMediaStats {
        PyMediaStats { stats: self.meta.media }
    }

    /// The metadata as one line of JSON.
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.meta).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// The metadata as a dict of JSON values (``started_at`` is an RFC 3339 string,
    /// ``wav_path`` a string or ``None``, ``media`` a dict).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let json = py.import("json")?;
        Ok(json.call_method1("loads", (self.to_json()?,))?.cast_into::<PyDict>()?)
    }

    pub(crate) fn __repr__(&self) -> String {
        format!(
            "Message(id={:?}, caller={:?}, duration_ms={}, end_reason={:?})",
            self.meta.id.as_str(),
            self.meta.caller,
            self.meta.duration_ms,
            self.meta.end_reason.as_str()
        )
    }
}

/// Counters of what arrived on the media path of a call. Malformed input is counted here,
/// never raised.
#[pyclass(frozen, eq, module = "voicemail", name = "MediaStats")]
#[derive(Debug, Clone, PartialEq)]
pub struct PyMediaStats {
    pub(crate) stats: MediaStats,
}

#[pymethods]
impl PyMediaStats {
    /// RTP packets received (all, including dropped ones).
    #[getter]
    fn packets_received(&self) -> u64 {
        self.stats.packets_received
    }

    /// Datagrams that were not valid RTP and were dropped.
    #[getter]
    fn malformed(&self) -> u64 {
        self.stats.malformed
    }

    /// Packets with a payload type the call did not negotiate.
    #[getter]
    fn unknown_payload_type(&self) -> u64 {
        self.stats.unknown_payload_type
    }

    /// Duplicate packets dropped by the jitter buffer.
    #[getter]
    fn duplicates(&self) -> u64 {
        self.stats.duplicates
    }

    /// Packets that arrived after their slot had been played out.
    #[getter]
    fn late(&self) -> u64 {
        self.stats.late
    }

    /// Packets never received (gaps filled with silence).
    #[getter]
    fn lost(&self) -> u64 {
        self.stats.lost
    }

    /// SSRC changes seen.
    #[getter]
    fn ssrc_changes(&self) -> u64 {
        self.stats.ssrc_changes
    }

    /// Samples of silence inserted for gaps.
    #[getter]
    fn concealed_samples(&self) -> u64 {
        self.stats.concealed_samples
    }

    fn __repr__(&self) -> String {
        let s = &self.stats;
        format!(
            "MediaStats(packets_received={}, malformed={}, unknown_payload_type={}, duplicates={}, late={}, lost={}, ssrc_changes={}, concealed_samples={})",
            s.packets_received,
            s.malformed,
            s.unknown_payload_type,
            s.duplicates,
            s.late,
            s.lost,
            s.ssrc_changes,
            s.concealed_samples
        )
    }
}
