//! Rust's logs in Python's `logging`, under the `voicemail` logger.
//!
//! The crates log with `tracing` (voicemail-core, voicemail-sip, rsipstack, ...) and a few
//! dependencies with `log` (symphonia, rustls). Importing the module installs one forwarder
//! for both: each event becomes a `logging.LogRecord` of the logger named after its module
//! (`voicemail_core::mailbox` → `voicemail.core.mailbox`, `voicemail_sip::endpoint` →
//! `voicemail.sip.endpoint`, another crate `x::y` → `voicemail.x.y`) at the same level
//! (TRACE does not pass; `ERROR`/`WARN`/`INFO`/`DEBUG` → `logging.ERROR`/`WARNING`/`INFO`/
//! `DEBUG`), with the event's fields after its message (`delivery failed; will retry
//! id=... target="smtp" error="..."`), its source file and line, and the Rust thread's name.
//! The Python side decides: a record is handled only if its logger `isEnabledFor` its level
//! when it is emitted, so `logging.getLogger("voicemail").setLevel(...)` and handlers work as
//! for any Python library.
//!
//! Which events are offered at all is fixed on the Rust side: voicemail's own modules from
//! DEBUG up; other crates from WARN up (rsipstack logs every SIP message, `Authorization`
//! headers included, at INFO, and dependencies log per packet at DEBUG/TRACE).
//!
//! Records are not emitted on the thread that logs: that thread may be a runtime worker
//! pacing RTP, or hold a lock a Python logging handler could need. They go through a bounded
//! queue to one thread (`voicemail-log`) that takes the GIL to emit them, in order. When the
//! queue is full, records are dropped and counted, and a WARNING says how many. `flush_logs()`
//! waits until every record queued before it has been emitted; it runs at interpreter exit
//! too (before `logging` shuts down), after which nothing more is forwarded.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyCFunction;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, span};

/// Records waiting for the logging thread at most.
const QUEUE: usize = 8192;
/// How long the exit hook waits for queued records.
const EXIT_FLUSH: Duration = Duration::from_secs(2);
/// Python's level numbers.
const PY_ERROR: u8 = 40;
const PY_WARNING: u8 = 30;
const PY_INFO: u8 = 20;
const PY_DEBUG: u8 = 10;

/// One event on its way to Python.
struct Record {
    /// Python logging level.
    level: u8,
    /// The Rust target (a module path).
    target: String,
    file: Option<String>,
    line: Option<u32>,
    message: String,
    /// The Rust thread's name, if it has one.
    thread: Option<String>,
}

enum Item {
    Record(Record),
    /// Acknowledged once everything queued before it was emitted.
    Flush(SyncSender<()>),
}

static QUEUE_TX: OnceLock<SyncSender<Item>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Set at interpreter exit: nothing is forwarded any more.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether an event of `level` from `target` is offered to Python.
fn wanted(level: Level, target: &str) -> bool {
    let ours = matches!(crate_of(target), "voicemail_core" | "voicemail_sip" | "_voicemail" | "voicemail_py");
    if ours { level <= Level::DEBUG } else { level <= Level::WARN }
}

fn crate_of(target: &str) -> &str {
    target.split_once("::").map_or(target, |(c, _)| c)
}

/// The Python logger name of a Rust target.
pub(crate) fn logger_name(target: &str) -> String {
    let (krate, rest) = target.split_once("::").map_or((target, None), |(c, r)| (c, Some(r)));
    let mut name = String::from("voicemail");
    match krate {
        "_voicemail" | "voicemail_py" | "" => {}
        other => {
            name.push('.');
            name.push_str(other.strip_prefix("voicemail_").unwrap_or(other));
        }
    }
    if let Some(rest) = rest {
        for part in rest.split("::").filter(|p| !p.is_empty()) {
            name.push('.');
            name.push_str(part);
        }
    }
    name
}

fn py_level(level: Level) -> u8 {
    match level {
        Level::ERROR => PY_ERROR,
        Level::WARN => PY_WARNING,
        Level::INFO => PY_INFO,
        _ => PY_DEBUG,
    }
}

/// Queues a record (never blocks; counts what a full queue drops).
fn push(record: Record) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let Some(tx) = QUEUE_TX.get() else { return };
    match tx.try_send(Item::Record(record)) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Err(TrySendError::Disconnected(_)) => {}
    }
}

fn current_thread_name() -> Option<String> {
    std::thread::current().name().map(str::to_owned)
}

/// The event's message followed by its other fields, `key=value` (values in `Debug` form).
#[derive(Default)]
struct Message {
    message: String,
    fields: String,
}

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}

/// The `tracing` subscriber: events only (spans are not recorded).
struct Forwarder;

impl tracing::Subscriber for Forwarder {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.enabled(metadata) { Interest::always() } else { Interest::never() }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && wanted(*metadata.level(), metadata.target())
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::DEBUG)
    }

    fn new_span(&self, _span: &span::Attributes<'_>) -> span::Id {
        // Never called: spans are disabled (`enabled` is false for them).
        span::Id::from_u64(1)
    }

    fn record(&self, _span: &span::Id, _values: &span::Record<'_>) {}

    fn record_follows_from(&self, _span: &span::Id, _follows: &span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        if CLOSED.load(Ordering::Relaxed) {
            return;
        }
        let metadata = event.metadata();
        let mut visitor = Message::default();
        event.record(&mut visitor);
        let mut message = visitor.message;
        message.push_str(&visitor.fields);
        push(Record {
            level: py_level(*metadata.level()),
            target: metadata.target().to_owned(),
            file: metadata.file().map(str::to_owned),
            line: metadata.line(),
            message,
            thread: current_thread_name(),
        });
    }

    fn enter(&self, _span: &span::Id) {}

    fn exit(&self, _span: &span::Id) {}
}

/// The `log` crate's logger (dependencies that log with `log`, not `tracing`).
struct LogForwarder;

impl log::Log for LogForwarder {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        let level = match metadata.level() {
            log::Level::Error => Level::ERROR,
            log::Level::Warn => Level::WARN,
            log::Level::Info => Level::INFO,
            log::Level::Debug => Level::DEBUG,
            log::Level::Trace => Level::TRACE,
        };
        wanted(level, metadata.target())
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Error => PY_ERROR,
            log::Level::Warn => PY_WARNING,
            log::Level::Info => PY_INFO,
            _ => PY_DEBUG,
        };
        push(Record {
            level,
            target: record.target().to_owned(),
            file: record.file().map(str::to_owned),
            line: record.line(),
            message: record.args().to_string(),
            thread: current_thread_name(),
        });
    }

    fn flush(&self) {}
}

static LOG_FORWARDER: LogForwarder = LogForwarder;

/// The logging thread's state: the `logging.Logger` of each name seen (loggers live as long
/// as the interpreter).
struct Emitter {
    loggers: HashMap<String, Py<PyAny>>,
}

impl Emitter {
    fn logger<'py>(&mut self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        if let Some(l) = self.loggers.get(name) {
            return Ok(l.bind(py).clone());
        }
        let logger = py.import("logging")?.call_method1("getLogger", (name,))?;
        self.loggers.insert(name.to_owned(), logger.clone().unbind());
        Ok(logger)
    }

    /// Emits one record, if its logger is enabled for its level now.
    fn emit(&mut self, py: Python<'_>, r: &Record) -> PyResult<()> {
        let name = logger_name(&r.target);
        let logger = self.logger(py, &name)?;
        if !logger.call_method1("isEnabledFor", (r.level,))?.is_truthy()? {
            return Ok(());
        }
        let record = logger.call_method1(
            "makeRecord",
            (
                &name,
                r.level,
                r.file.as_deref().unwrap_or("(rust)"),
                r.line.unwrap_or(0),
                &r.message,
                pyo3::types::PyTuple::empty(py),
                py.None(),
            ),
        )?;
        if let Some(thread) = &r.thread {
            record.setattr("threadName", thread)?;
        }
        logger.call_method1("handle", (record,))?;
        Ok(())
    }

    fn emit_dropped(&mut self, py: Python<'_>) -> PyResult<()> {
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped == 0 {
            return Ok(());
        }
        self.emit(
            py,
            &Record {
                level: PY_WARNING,
                target: "_voicemail::logging".to_owned(),
                file: Some(file!().to_owned()),
                line: Some(line!()),
                message: format!("{dropped} log records from Rust were dropped: the logging queue was full"),
                thread: current_thread_name(),
            },
        )
    }
}

/// The logging thread: emits queued records in order, taking the GIL once per batch.
fn run(rx: &Receiver<Item>) {
    let mut emitter = Emitter { loggers: HashMap::new() };
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let mut acks = Vec::new();
        if !CLOSED.load(Ordering::SeqCst) {
            Python::try_attach(|py| {
                for item in &batch {
                    match item {
                        Item::Record(r) => {
                            if let Err(e) = emitter.emit(py, r) {
                                // A handler that raises: Python's own `logging` reports
                                // handler errors itself; this is anything before that.
                                e.write_unraisable(py, None);
                            }
                        }
                        Item::Flush(_) => {}
                    }
                }
                if let Err(e) = emitter.emit_dropped(py) {
                    e.write_unraisable(py, None);
                }
            });
        }
        for item in batch {
            if let Item::Flush(ack) = item {
                acks.push(ack);
            }
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

/// Waits (without the GIL) until the records queued so far were emitted, at most `timeout`.
fn flush(py: Python<'_>, timeout: Duration) -> bool {
    let Some(tx) = QUEUE_TX.get() else { return true };
    let (ack_tx, ack_rx) = sync_channel(1);
    py.detach(move || {
        // The queue may be full: keep trying until the deadline.
        let deadline = std::time::Instant::now() + timeout;
        let mut item = Item::Flush(ack_tx);
        loop {
            match tx.try_send(item) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) => {
                    if std::time::Instant::now() >= deadline {
                        return false;
                    }
                    item = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TrySendError::Disconnected(_)) => return true,
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        ack_rx.recv_timeout(left).is_ok()
    })
}

/// Waits until every log record Rust queued before the call has been handed to Python's
/// ``logging`` (records are emitted by a thread of their own, shortly after the event).
/// Returns ``False`` if that did not happen within ``timeout`` seconds.
#[pyfunction]
#[pyo3(signature = (timeout = 5.0))]
pub(crate) fn flush_logs(py: Python<'_>, timeout: f64) -> PyResult<bool> {
    let timeout = Duration::try_from_secs_f64(timeout).map_err(|_| {
        pyo3::exceptions::PyValueError::new_err("timeout must be a finite, non-negative number of seconds")
    })?;
    Ok(flush(py, timeout))
}

/// Installs the forwarders and starts the logging thread (once per process), and registers
/// the exit hook that flushes and closes it.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    static STARTED: Mutex<bool> = Mutex::new(false);
    let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
    if *started {
        return Ok(());
    }
    let (tx, rx) = sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("voicemail-log".into())
        .spawn(move || run(&rx))
        .map_err(|e| crate::errors::BindingError::io(e, None, "cannot start the logging thread"))?;
    // Set once: `started` guards this block.
    let _ = QUEUE_TX.set(tx);
    // Another subscriber or logger in this module's copy of tracing/log can only be one
    // installed by this module; nothing else to do if one is.
    let _ = tracing::subscriber::set_global_default(Forwarder);
    if log::set_logger(&LOG_FORWARDER).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
    let at_exit = PyCFunction::new_closure(py, None, None, |args, _kwargs| -> PyResult<()> {
        let py = args.py();
        flush(py, EXIT_FLUSH);
        CLOSED.store(true, Ordering::SeqCst);
        Ok(())
    })?;
    py.import("atexit")?.call_method1("register", (at_exit,))?;
    *started = true;
    Ok(())
}
