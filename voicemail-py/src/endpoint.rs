//! `voicemail._voicemail.SipEndpoint`: the SIP answering machine (voicemail-sip) run from
//! Python. The asyncio front (`start`/`stop`, `async with`, `messages()`) is Python code in
//! `voicemail/_endpoint.py`, built on this blocking `run()` and thread-safe `shutdown()`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use pyo3::PyTraverseError;
use pyo3::exceptions::{PyRuntimeError, PyUserWarning, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use tokio::runtime::Runtime;
use voicemail_core::config::MailboxesConfig;
use voicemail_core::{Mailboxes, MessageMeta};
use voicemail_sip::hooks::HookSettings;
use voicemail_sip::{Endpoint, EndpointHandle, SipConfig};

use crate::config::PyConfig;
use crate::errors::{BindingError, SipError};
use crate::hooks::{self, PyHooks};
use crate::mailbox::PyMailbox;
use crate::message::PyMessage;

/// How often `run()` wakes up to run Python's signal handlers (Ctrl-C, SIGTERM handlers).
const SIGNAL_POLL: Duration = Duration::from_millis(100);

const READY: u8 = 0;
const RUNNING: u8 = 1;
const STOPPED: u8 = 2;

/// Where the mailbox's subscription puts each stored message for `on_message`: closed
/// (`None`) when `run()` ends.
type MessageSender = Arc<Mutex<Option<std_mpsc::Sender<MessageMeta>>>>;

/// The SIP answering machine of a mailbox: answers every call, plays the greeting the
/// calendar picks and a beep, records into the mailbox and hands each message over.
///
/// It opens the ``Mailbox`` of ``config`` (``mailbox``) and builds every call through it; a
/// configuration with several mailboxes opens them all (``mailboxes``), and each call goes
/// to the one its diverting number, Request-URI or To user selects (else the default one;
/// without a default, 404).
/// The SIP transports are bound at construction (``local_addr`` tells the port when
/// ``listen`` — or ``[sip] listen`` — asks for port 0). ``run()`` serves until
/// ``shutdown()`` (from any thread) or Ctrl-C: new calls are then refused, calls in progress
/// are hung up and finish their messages, and ``run()`` returns (re-raising the
/// ``KeyboardInterrupt`` after the clean stop). While serving, the mailbox's background work
/// runs: deliveries with retries, and recovery of calls a crashed process left (at start,
/// then every few seconds); on stop, due deliveries get a last short pass.
///
/// ``on_message(message)`` is called from a worker thread (with the GIL) for every message as
/// soon as the mailbox has stored it durably — finished calls and recovered ones — before
/// any delivery is attempted; an exception it raises goes to ``sys.unraisablehook``.
/// ``on_call(call)`` (an ``IncomingCall``) decides each new call after the endpoint's own
/// checks, on a worker thread: ``Accept`` (optionally another configured mailbox and/or
/// greeting), ``Reject(status)`` (400-699; the call leaves no message) or ``None`` (as
/// usual); a decision later than ``decision_timeout`` seconds, an exception (to
/// ``sys.unraisablehook``) or another return type leaves the default behaviour, logged.
/// ``on_dtmf(call_id, digit)`` and ``on_state(call_id, state)`` hear each call's keys and
/// states, queued (1024 at most, more are dropped and counted in ``dropped_notices``) and
/// called in order on a thread of their own; the GIL is taken only for each call.
/// ``deliver=False`` runs the endpoint without the mailbox's background work: this process
/// neither delivers nor recovers (deliveries for the configured targets are still queued;
/// run them with ``mailbox.deliver()`` and ``mailbox.recover()``, or let another process
/// sharing the spool do it). ``voicemail.SipEndpoint`` adds the asyncio interface and
/// SIGTERM handling.
#[pyclass(frozen, module = "voicemail._voicemail", name = "SipEndpoint")]
pub struct PySipEndpoint {
    runtime: Mutex<Option<Arc<Runtime>>>,
    endpoint: Mutex<Option<Endpoint>>,
    /// Released when `run()` returns: it holds the SIP stack (and its sockets) alive.
    handle: Mutex<Option<EndpointHandle>>,
    local_addr: SocketAddr,
    mailboxes: Mailboxes,
    on_message: Option<Arc<Py<PyAny>>>,
    sender: MessageSender,
    receiver: Mutex<Option<std_mpsc::Receiver<MessageMeta>>>,
    state: AtomicU8,
    /// `on_call`, `on_dtmf`, `on_state` (also held by the endpoint's hooks).
    hooks: Option<Arc<PyHooks>>,
}

/// Calls `on_message` with every message until the sender is closed.
fn hand_over(messages: &std_mpsc::Receiver<MessageMeta>, on_message: &Py<PyAny>) {
    while let Ok(meta) = messages.recv() {
        Python::attach(|py| {
            let result = Py::new(py, PyMessage::new(meta)).and_then(|m| on_message.call1(py, (m,)));
            if let Err(e) = result {
                e.write_unraisable(py, Some(on_message.bind(py)));
            }
        });
    }
}

/// Warns (`UserWarning`, at the line that made the `voicemail.SipEndpoint`, the Python class
/// that makes this one: two frames up) about the tables of `file` that only the
/// `answering_machine` program serves: without it, a `[metrics]` or `[web]` table passed to a
/// `SipEndpoint` would silently open no port.
fn warn_unserved(py: Python<'_>, file: &MailboxesConfig) -> PyResult<()> {
    let unserved: Vec<&str> = [
        (file.web.is_some(), "[web] (the callback queue)"),
        (file.ops.metrics.is_some(), "[metrics] (the Prometheus endpoint)"),
        (file.ops.log.is_some(), "[log] (records go to Python's logging, logger \"voicemail\")"),
    ]
    .into_iter()
    .filter_map(|(present, what)| present.then_some(what))
    .collect();
    if unserved.is_empty() {
        return Ok(());
    }
    let message =
        format!("SipEndpoint does not serve {}: only the answering_machine program does", unserved.join(", "));
    let message = std::ffi::CString::new(message).map_err(|e| PyValueError::new_err(e.to_string()))?;
    PyErr::warn(py, &py.get_type::<PyUserWarning>(), &message, 2)
}

#[pymethods]
impl PySipEndpoint {
    #[new]
    #[pyo3(signature = (
        config, *, on_message = None, deliver = true, listen = None, on_call = None, on_dtmf = None,
        on_state = None, decision_timeout = 3.0
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        config: &Bound<'_, PyConfig>,
        on_message: Option<Py<PyAny>>,
        deliver: bool,
        listen: Option<&str>,
        on_call: Option<Py<PyAny>>,
        on_dtmf: Option<Py<PyAny>>,
        on_state: Option<Py<PyAny>>,
        decision_timeout: f64,
    ) -> PyResult<Self> {
        hooks::check_callable(
            py,
            &[("on_message", &on_message), ("on_call", &on_call), ("on_dtmf", &on_dtmf), ("on_state", &on_state)],
        )?;
        let decision_timeout = Duration::try_from_secs_f64(decision_timeout)
            .ok()
            .filter(|d| !d.is_zero() && *d <= Duration::from_secs(60))
            .ok_or_else(|| PyValueError::new_err("decision_timeout must be more than 0 and at most 60 seconds"))?;
        warn_unserved(py, &config.get().file)?;
        let call_hooks = hooks::hooks(on_call, on_dtmf, on_state);
        let installed = call_hooks.clone();
        let file = config.get().file.as_ref().clone();
        let mut sip = SipConfig::from_table(file.sip.as_ref())
            .map_err(|e| BindingError::Sip(Box::new(voicemail_sip::Error::Config(e))))?;
        if let Some(listen) = listen {
            sip.listen = listen.parse().map_err(|_| {
                PyValueError::new_err(format!("listen must be \"IP:PORT\" like \"127.0.0.1:5060\", got {listen:?}"))
            })?;
        }
        let (runtime, endpoint, mailboxes) = py.detach(move || -> Result<_, BindingError> {
            let mailboxes = Mailboxes::open(file)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("voicemail-sip")
                .enable_all()
                .build()
                .map_err(|e| BindingError::io(e, None, "cannot start the runtime"))?;
            let mut endpoint = runtime.block_on(Endpoint::bind(sip, mailboxes.clone()))?;
            if !deliver {
                endpoint = endpoint.without_background_work();
            }
            if let Some(h) = installed {
                let settings = HookSettings { decision_timeout, ..HookSettings::default() };
                endpoint = endpoint
                    .with_hooks(h, settings)
                    .map_err(|e| BindingError::io(e, None, "cannot start the call hooks' thread"))?;
            }
            // Messages reach Python through the mailbox's subscription below.
            drop(endpoint.messages());
            Ok((runtime, endpoint, mailboxes))
        })?;
        let (tx, rx) = std_mpsc::channel();
        let sender: MessageSender = Arc::new(Mutex::new(on_message.is_some().then_some(tx)));
        for mailbox in mailboxes.all() {
            let sender = sender.clone();
            mailbox.subscribe(move |meta| {
                if let Some(tx) = sender.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    let _ = tx.send(meta.clone());
                }
            });
        }
        Ok(Self {
            handle: Mutex::new(Some(endpoint.handle())),
            local_addr: endpoint.local_addr(),
            runtime: Mutex::new(Some(Arc::new(runtime))),
            endpoint: Mutex::new(Some(endpoint)),
            mailboxes,
            on_message: on_message.map(Arc::new),
            sender,
            receiver: Mutex::new(Some(rx)),
            state: AtomicU8::new(READY),
            hooks: call_hooks,
        })
    }

    /// The address SIP listens on (UDP and TCP): ``(host, port)``.
    #[getter]
    fn local_addr(&self) -> (String, u16) {
        (self.local_addr.ip().to_string(), self.local_addr.port())
    }

    /// The spool directory of the endpoint's mailbox (the default one, else the first).
    #[getter]
    fn spool(&self) -> PathBuf {
        self.mailboxes.primary().spool_dir().to_path_buf()
    }

    /// The endpoint's mailbox (the same store: list, follow-up, deliveries); of several, the
    /// default one, else the first.
    #[getter]
    fn mailbox(&self) -> PyMailbox {
        PyMailbox { mailbox: self.mailboxes.primary().clone() }
    }

    /// Every mailbox the endpoint serves, by name.
    #[getter]
    fn mailboxes(&self) -> BTreeMap<String, PyMailbox> {
        self.mailboxes.all().iter().map(|m| (m.config().mailbox.clone(), PyMailbox { mailbox: m.clone() })).collect()
    }

    /// Calls in progress.
    #[getter]
    fn active_calls(&self) -> usize {
        self.handle.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map_or(0, EndpointHandle::active_calls)
    }

    /// Call notices (``on_dtmf``, ``on_state``) dropped because the callbacks were too slow
    /// (the queue holds 1024).
    #[getter]
    fn dropped_notices(&self) -> u64 {
        self.handle.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map_or(0, EndpointHandle::dropped_notices)
    }

    /// Whether ``run()`` is serving.
    #[getter]
    fn running(&self) -> bool {
        self.state.load(Ordering::SeqCst) == RUNNING
    }

    /// Serves SIP until ``shutdown()`` or Ctrl-C, then lets the calls in progress finish
    /// their messages, gives due deliveries a last pass, hands every stored message to
    /// ``on_message`` and returns. The GIL is released while serving; every 100 ms Python's
    /// signal handlers run (a handler may call ``shutdown()``). After Ctrl-C the
    /// ``KeyboardInterrupt`` (or whatever a handler raised) is re-raised once the endpoint
    /// has stopped cleanly; a second one stops at once. An endpoint runs once.
    fn run(&self, py: Python<'_>) -> PyResult<()> {
        let Some(endpoint) = self.endpoint.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Err(PyRuntimeError::new_err("the endpoint has already run"));
        };
        let Some(rt) = self.runtime.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return Err(PyRuntimeError::new_err("the endpoint has been closed"));
        };
        self.state.store(RUNNING, Ordering::SeqCst);
        let worker = self.start_hand_over()?;
        let mut serving = rt.spawn(endpoint.run());
        let mut interrupted: Option<PyErr> = None;
        let result = loop {
            let done = py.detach(|| rt.block_on(async { tokio::time::timeout(SIGNAL_POLL, &mut serving).await }));
            match done {
                Ok(joined) => break joined,
                Err(_elapsed) => {
                    if let Err(e) = py.check_signals() {
                        if interrupted.is_some() {
                            serving.abort(); // a second Ctrl-C: stop at once
                        } else {
                            self.shutdown();
                        }
                        interrupted = Some(e);
                    }
                }
            }
        };
        // Every message stored so far goes to on_message before run() returns.
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(worker) = worker {
            let _ = py.detach(move || worker.join());
        }
        self.state.store(STOPPED, Ordering::SeqCst);
        // The stack and the runtime are no longer needed: release the sockets and threads
        // now, without the GIL, which a worker might still be waiting for.
        let handle = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take();
        let taken = self.runtime.lock().unwrap_or_else(|e| e.into_inner()).take();
        py.detach(move || {
            let guard = rt.enter();
            drop(handle);
            drop(guard);
            drop(taken);
            drop(rt);
        });
        if let Some(e) = interrupted {
            return Err(e);
        }
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BindingError::from(e).into()),
            Err(e) => Err(SipError::new_err(format!("the endpoint stopped abnormally: {e}"))),
        }
    }

    /// Asks a running endpoint to stop (thread-safe, returns at once): new INVITEs get 503,
    /// calls in progress are hung up and finish their messages, then ``run()`` returns.
    /// Before ``run()``, the endpoint will stop as soon as it starts.
    fn shutdown(&self) {
        if let Some(h) = self.handle.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            h.shutdown();
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(cb) = &self.on_message {
            visit.call(cb.as_ref())?;
        }
        if let Some(h) = &self.hooks {
            h.traverse(&visit)?;
        }
        Ok(())
    }

    fn __repr__(&self) -> String {
        let state = match self.state.load(Ordering::SeqCst) {
            READY => "ready",
            RUNNING => "running",
            _ => "stopped",
        };
        format!("SipEndpoint(local_addr=\"{}\", state={state:?})", self.local_addr)
    }
}

impl PySipEndpoint {
    /// Starts the thread that calls `on_message` (if there is a callback).
    fn start_hand_over(&self) -> PyResult<Option<JoinHandle<()>>> {
        let (Some(on_message), Some(rx)) =
            (self.on_message.clone(), self.receiver.lock().unwrap_or_else(|e| e.into_inner()).take())
        else {
            return Ok(None);
        };
        std::thread::Builder::new()
            .name("voicemail-on-message".into())
            .spawn(move || hand_over(&rx, &on_message))
            .map(Some)
            .map_err(|e| BindingError::io(e, None, "cannot start the on_message thread").into())
    }
}

impl Drop for PySipEndpoint {
    fn drop(&mut self) {
        let handle = self.handle.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = &handle {
            h.shutdown();
        }
        let endpoint = self.endpoint.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        let runtime = self.runtime.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(rt) = runtime {
            // An endpoint that never ran owns sockets registered with this runtime: close
            // them inside it.
            let guard = rt.enter();
            drop(endpoint);
            drop(handle);
            drop(guard);
            if let Ok(rt) = Arc::try_unwrap(rt) {
                // Never block the dropping (Python) thread on worker threads that may wait
                // for it.
                rt.shutdown_background();
            }
        }
    }
}
