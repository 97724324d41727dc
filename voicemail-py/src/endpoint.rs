//! `voicemail._voicemail.SipEndpoint`: the SIP answering machine (voicemail-sip) run from
//! Python. The asyncio front (`start`/`stop`, `async with`, `messages()`) is Python code in
//! `voicemail/_endpoint.py`, built on this blocking `run()` and thread-safe `shutdown()`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use pyo3::PyTraverseError;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch};
use voicemail_core::MessageMeta;
use voicemail_core::route::Router;
use voicemail_sip::{Endpoint, EndpointHandle, SipConfig};

use crate::config::PyConfig;
use crate::errors::{BindingError, SipError};
use crate::message::PyMessage;

/// How often `run()` wakes up to check for Ctrl-C (and other Python signals).
const SIGNAL_POLL: Duration = Duration::from_millis(100);
/// How often failed deliveries are retried while nothing else happens.
const RETRY_EVERY: Duration = Duration::from_secs(5);

const READY: u8 = 0;
const RUNNING: u8 = 1;
const STOPPED: u8 = 2;

/// The SIP answering machine of a mailbox: answers every call, plays the greeting the
/// calendar picks and a beep, records into the spool and hands each message over.
///
/// The SIP transports are bound at construction (``local_addr`` tells the port when
/// ``listen`` — or ``[sip] listen`` — asks for port 0). ``run()`` serves until
/// ``shutdown()`` (from any thread) or Ctrl-C: new calls are then refused, calls in progress
/// are hung up and finish their messages, and ``run()`` returns (re-raising the
/// ``KeyboardInterrupt`` after the clean stop). ``on_message(message)`` is called from a
/// worker thread for every recorded message, after it is in the spool and, with
/// ``deliver=True``, queued for the configured delivery targets. ``voicemail.SipEndpoint``
/// adds the asyncio interface (``await start()``, ``await stop()``, ``async with``,
/// ``async for message in endpoint.messages()``).
#[pyclass(frozen, module = "voicemail._voicemail", name = "SipEndpoint")]
pub struct PySipEndpoint {
    runtime: Mutex<Option<Arc<Runtime>>>,
    endpoint: Mutex<Option<Endpoint>>,
    /// Released when `run()` returns: it holds the SIP stack (and its sockets) alive.
    handle: Mutex<Option<EndpointHandle>>,
    local_addr: SocketAddr,
    spool: PathBuf,
    on_message: Option<Arc<Py<PyAny>>>,
    router: Option<Arc<Router>>,
    state: AtomicU8,
}

#[pymethods]
impl PySipEndpoint {
    #[new]
    #[pyo3(signature = (config, *, on_message = None, deliver = true, listen = None))]
    fn new(
        py: Python<'_>,
        config: &Bound<'_, PyConfig>,
        on_message: Option<Py<PyAny>>,
        deliver: bool,
        listen: Option<&str>,
    ) -> PyResult<Self> {
        if let Some(cb) = &on_message
            && !cb.bind(py).is_callable()
        {
            return Err(pyo3::exceptions::PyTypeError::new_err("on_message must be callable"));
        }
        let mailbox = config.get().config.clone();
        let mut sip = SipConfig::from_table(mailbox.sip.as_ref())
            .map_err(|e| BindingError::Sip(Box::new(voicemail_sip::Error::Config(e))))?;
        if let Some(listen) = listen {
            sip.listen = listen.parse().map_err(|_| {
                PyValueError::new_err(format!("listen must be \"IP:PORT\" like \"127.0.0.1:5060\", got {listen:?}"))
            })?;
        }
        let spool = mailbox.spool.clone();
        let (runtime, endpoint, router) = py.detach(move || -> Result<_, BindingError> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("voicemail-sip")
                .enable_all()
                .build()
                .map_err(|e| BindingError::io(e, None, "cannot start the runtime"))?;
            let router = if deliver {
                // The outbox lives in the spool; the endpoint would create it, but later.
                std::fs::create_dir_all(&mailbox.spool)
                    .map_err(|e| BindingError::io(e, Some(&mailbox.spool), "cannot create the spool directory"))?;
                Some(Arc::new(Router::from_config(mailbox.clone())?))
            } else {
                None
            };
            let endpoint = runtime.block_on(Endpoint::bind(sip, Arc::new(mailbox)))?;
            Ok((runtime, endpoint, router))
        })?;
        Ok(Self {
            handle: Mutex::new(Some(endpoint.handle())),
            local_addr: endpoint.local_addr(),
            runtime: Mutex::new(Some(Arc::new(runtime))),
            endpoint: Mutex::new(Some(endpoint)),
            spool,
            on_message: on_message.map(Arc::new),
            router,
            state: AtomicU8::new(READY),
        })
    }

    /// The address SIP listens on (UDP and TCP): ``(host, port)``.
    #[getter]
    fn local_addr(&self) -> (String, u16) {
        (self.local_addr.ip().to_string(), self.local_addr.port())
    }

    /// The spool directory messages are written to.
    #[getter]
    fn spool(&self) -> PathBuf {
        self.spool.clone()
    }

    /// Calls in progress.
    #[getter]
    fn active_calls(&self) -> usize {
        self.handle.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map_or(0, EndpointHandle::active_calls)
    }

    /// Whether ``run()`` is serving.
    #[getter]
    fn running(&self) -> bool {
        self.state.load(Ordering::SeqCst) == RUNNING
    }

    /// Serves SIP until ``shutdown()`` or Ctrl-C, then lets the calls in progress finish
    /// their messages and returns. The GIL is released while serving. After Ctrl-C the
    /// ``KeyboardInterrupt`` is re-raised once the endpoint has stopped cleanly; a second
    /// Ctrl-C stops at once. An endpoint runs once.
    fn run(&self, py: Python<'_>) -> PyResult<()> {
        let Some(mut endpoint) = self.endpoint.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Err(PyRuntimeError::new_err("the endpoint has already run"));
        };
        let Some(rt) = self.runtime.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return Err(PyRuntimeError::new_err("the endpoint has been closed"));
        };
        self.state.store(RUNNING, Ordering::SeqCst);
        let (stop_tx, stop_rx) = watch::channel(false);
        let on_message = self.on_message.clone();
        let delivery = rt.spawn(message_loop(endpoint.messages(), on_message, self.router.clone(), stop_rx));
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
        let _ = stop_tx.send(true);
        let _ = py.detach(|| rt.block_on(delivery));
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

/// Hands every message to delivery and the Python callback until the endpoint stopped,
/// then drains what is left.
async fn message_loop(
    messages: Option<mpsc::UnboundedReceiver<MessageMeta>>,
    on_message: Option<Arc<Py<PyAny>>>,
    router: Option<Arc<Router>>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(mut messages) = messages else { return };
    if let Some(r) = router.clone() {
        // Messages of calls a crash interrupted (or never queued) are queued first.
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = r.recover(Timestamp::now()) {
                tracing::warn!(error = %e, "recovering the spool failed");
            }
        })
        .await;
    }
    let mut retry = tokio::time::interval(RETRY_EVERY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            m = messages.recv() => match m {
                Some(meta) => hand_over(meta, &on_message, &router).await,
                None => break,
            },
            _ = retry.tick(), if router.is_some() => {
                if let Some(r) = router.clone() {
                    let _ = tokio::task::spawn_blocking(move || r.run_due(Timestamp::now())).await;
                }
            }
            _ = stop.changed() => {
                while let Ok(meta) = messages.try_recv() {
                    hand_over(meta, &on_message, &router).await;
                }
                break;
            }
        }
    }
}

/// Queues one message for delivery (attempting what is due), then calls the callback.
async fn hand_over(meta: MessageMeta, on_message: &Option<Arc<Py<PyAny>>>, router: &Option<Arc<Router>>) {
    let on_message = on_message.clone();
    let router = router.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(r) = router {
            let now = Timestamp::now();
            if let Err(e) = r.submit(&meta, now) {
                tracing::error!(id = %meta.id, error = %e, "cannot queue the message; it stays in the spool");
            }
            let report = r.run_due(now);
            for f in &report.failed {
                tracing::warn!(id = %f.id, target = %f.target, error = %f.error, "delivery failed; will retry");
            }
        }
        if let Some(cb) = on_message {
            Python::attach(|py| {
                let result = Py::new(py, PyMessage::new(meta)).and_then(|m| cb.call1(py, (m,)));
                if let Err(e) = result {
                    e.write_unraisable(py, Some(cb.bind(py)));
                }
            });
        }
    })
    .await;
}
