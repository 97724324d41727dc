//! The per-call hooks of `SipEndpoint` (`on_call`, `on_dtmf`, `on_state`): voicemail-sip's
//! [`CallHooks`] calling Python. The endpoint calls them on threads of its own; the GIL is
//! taken only for the call into Python. The asyncio side (coroutines run on the user's loop)
//! is Python code in `voicemail/_endpoint.py`.

use std::sync::Arc;

use pyo3::PyTraverseError;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use voicemail_sip::hooks::{Accept, CallDecision, CallHooks, CallNotice, IncomingCall, RejectStatus};

/// An incoming call, as ``on_call`` sees it (before it is answered).
#[pyclass(frozen, module = "voicemail", name = "IncomingCall")]
#[derive(Debug, Clone)]
pub struct PyIncomingCall {
    /// The SIP ``Call-ID``: it names the call in ``on_dtmf`` and ``on_state``.
    #[pyo3(get)]
    call_id: String,
    /// The caller's number.
    #[pyo3(get)]
    caller: String,
    /// The caller's display name, if any.
    #[pyo3(get)]
    caller_name: Option<String>,
    /// The called number.
    #[pyo3(get)]
    called: String,
    /// The number that diverted the call here (History-Info or Diversion), if any.
    #[pyo3(get)]
    diverted_from: Option<String>,
    /// The mailbox the endpoint chose for the call.
    #[pyo3(get)]
    mailbox: String,
    /// The source IP address of the INVITE.
    #[pyo3(get)]
    source: String,
}

#[pymethods]
impl PyIncomingCall {
    fn __repr__(&self) -> String {
        format!(
            "IncomingCall(call_id={:?}, caller={:?}, called={:?}, mailbox={:?})",
            self.call_id, self.caller, self.called, self.mailbox
        )
    }
}

/// ``on_call``'s answer: take the call, optionally into another configured mailbox
/// (``mailbox``: a ``[[mailboxes]]`` name) and with another greeting (``greeting``: a name of
/// that mailbox's ``[greetings]``). A name the configuration does not have is ignored (logged)
/// and the endpoint's own choice stays. Returning ``None`` from ``on_call`` is ``Accept()``.
#[pyclass(frozen, eq, module = "voicemail", name = "Accept")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyAccept {
    /// The mailbox to record into (``None``: the endpoint's choice).
    #[pyo3(get)]
    mailbox: Option<String>,
    /// The greeting to play (``None``: the calendar's).
    #[pyo3(get)]
    greeting: Option<String>,
}

#[pymethods]
impl PyAccept {
    #[new]
    #[pyo3(signature = (*, mailbox = None, greeting = None))]
    fn new(mailbox: Option<String>, greeting: Option<String>) -> Self {
        Self { mailbox, greeting }
    }

    fn __repr__(&self) -> String {
        format!("Accept(mailbox={:?}, greeting={:?})", self.mailbox, self.greeting)
    }
}

/// ``on_call``'s answer: refuse the call with a final SIP status, 400 to 699 (486 Busy Here by
/// default; 603 Decline, 480 Temporarily Unavailable, ...). The call leaves no message.
/// Another status raises ``ValueError``.
#[pyclass(frozen, eq, module = "voicemail", name = "Reject")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyReject {
    /// The SIP status code.
    #[pyo3(get)]
    status: u16,
}

#[pymethods]
impl PyReject {
    #[new]
    #[pyo3(signature = (status = 486))]
    fn new(status: i64) -> PyResult<Self> {
        u16::try_from(status)
            .ok()
            .and_then(|s| RejectStatus::new(s).ok())
            .map(|s| Self { status: s.code() })
            .ok_or_else(|| {
                PyValueError::new_err(format!("a call is rejected with a status from 400 to 699, not {status}"))
            })
    }

    fn __repr__(&self) -> String {
        format!("Reject(status={})", self.status)
    }
}

/// The Python callbacks, as voicemail-sip's hooks.
pub(crate) struct PyHooks {
    pub(crate) on_call: Option<Py<PyAny>>,
    pub(crate) on_dtmf: Option<Py<PyAny>>,
    pub(crate) on_state: Option<Py<PyAny>>,
}

impl PyHooks {
    pub(crate) fn is_empty(&self) -> bool {
        self.on_call.is_none() && self.on_dtmf.is_none() && self.on_state.is_none()
    }

    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        for cb in [&self.on_call, &self.on_dtmf, &self.on_state].into_iter().flatten() {
            visit.call(cb)?;
        }
        Ok(())
    }
}

/// What `on_call` returned, as a decision (`None` is the default).
fn decision(result: &Bound<'_, PyAny>) -> PyResult<CallDecision> {
    if result.is_none() {
        return Ok(CallDecision::default());
    }
    if let Ok(accept) = result.cast::<PyAccept>() {
        let a = accept.get();
        return Ok(CallDecision::Accept(Accept { mailbox: a.mailbox.clone(), greeting: a.greeting.clone() }));
    }
    if let Ok(reject) = result.cast::<PyReject>() {
        let status = RejectStatus::new(reject.get().status).map_err(|e| PyValueError::new_err(e.to_string()))?;
        return Ok(CallDecision::Reject(status));
    }
    Err(PyTypeError::new_err(format!(
        "on_call must return voicemail.Accept, voicemail.Reject or None, not {}",
        result.get_type().name().map(|n| n.to_string()).unwrap_or_default()
    )))
}

impl CallHooks for PyHooks {
    fn on_call(&self, call: &IncomingCall) -> CallDecision {
        let Some(on_call) = &self.on_call else { return CallDecision::default() };
        let incoming = PyIncomingCall {
            call_id: call.call_id.clone(),
            caller: call.caller.clone(),
            caller_name: call.caller_name.clone(),
            called: call.called.clone(),
            diverted_from: call.diverted_from.clone(),
            mailbox: call.mailbox.clone(),
            source: call.source.to_string(),
        };
        Python::attach(|py| {
            let result = Py::new(py, incoming).and_then(|c| on_call.call1(py, (c,))).and_then(|r| decision(r.bind(py)));
            result.unwrap_or_else(|e| {
                e.write_unraisable(py, Some(on_call.bind(py)));
                CallDecision::default()
            })
        })
    }

    fn on_notice(&self, notice: CallNotice) {
        let (callback, call_id, value) = match notice {
            CallNotice::Dtmf { call_id, digit } => (&self.on_dtmf, call_id, digit.as_char().to_string()),
            CallNotice::State { call_id, state } => (&self.on_state, call_id, state.as_str().to_owned()),
            _ => return,
        };
        let Some(callback) = callback else { return };
        Python::attach(|py| {
            if let Err(e) = callback.call1(py, (call_id, value)) {
                e.write_unraisable(py, Some(callback.bind(py)));
            }
        });
    }
}

/// Checks that each given callback is callable.
pub(crate) fn check_callable(py: Python<'_>, callbacks: &[(&str, &Option<Py<PyAny>>)]) -> PyResult<()> {
    for (name, cb) in callbacks {
        if let Some(cb) = cb
            && !cb.bind(py).is_callable()
        {
            return Err(PyTypeError::new_err(format!("{name} must be callable")));
        }
    }
    Ok(())
}

/// The hooks to install, if any callback was given.
pub(crate) fn hooks(
    on_call: Option<Py<PyAny>>,
    on_dtmf: Option<Py<PyAny>>,
    on_state: Option<Py<PyAny>>,
) -> Option<Arc<PyHooks>> {
    let hooks = PyHooks { on_call, on_dtmf, on_state };
    (!hooks.is_empty()).then(|| Arc::new(hooks))
}
