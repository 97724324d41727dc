//! `voicemail.Delivery`: routing recorded messages to the configured targets (Maildir, SMTP,
//! IMAP) through the durable outbox.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDateTime;
use voicemail_core::outbox::RunReport;
use voicemail_core::route::Router;

use crate::config::PyConfig;
use crate::errors::BindingError;
use crate::message::PyMessage;
use crate::time::{timestamp_or_now, to_datetime_opt};

/// What one ``Delivery.run_due()`` did.
#[pyclass(frozen, module = "voicemail", name = "DeliveryReport")]
#[derive(Debug, Clone)]
pub struct PyDeliveryReport {
    report: RunReport,
}

#[pymethods]
impl PyDeliveryReport {
    /// Pairs attempted.
    #[getter]
    fn attempted(&self) -> usize {
        self.report.attempted
    }

    /// Pairs acknowledged in this run: ``(message id, target)``.
    #[getter]
    fn delivered(&self) -> Vec<(String, String)> {
        self.report.delivered.clone()
    }

    /// Pairs that failed in this run: ``(message id, target, error)``; they are retried later.
    #[getter]
    fn failed(&self) -> Vec<(String, String, String)> {
        self.report.failed.iter().map(|f| (f.id.clone(), f.target.clone(), f.error.clone())).collect()
    }

    /// The earliest time a still-undelivered pair is due (UTC ``datetime``), or ``None``.
    #[getter]
    fn next_due<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDateTime>>> {
        to_datetime_opt(py, self.report.next_due)
    }

    fn __repr__(&self) -> String {
        format!(
            "DeliveryReport(attempted={}, delivered={}, failed={})",
            self.report.attempted,
            self.report.delivered.len(),
            self.report.failed.len()
        )
    }
}

/// Delivers messages as a configuration says: the caller is looked up in the client
/// directory, and the message is queued in the spool's durable outbox for every configured
/// target (the shared Maildir or IMAP folder, SMTP to the shared recipients plus a matched
/// client's manager), then sent with retries by ``run_due()``.
///
/// Both methods do blocking file and network I/O with the GIL released; from asyncio, run
/// them in an executor.
#[pyclass(frozen, module = "voicemail", name = "Delivery")]
pub struct PyDelivery {
    pub(crate) router: Arc<Router>,
}

#[pymethods]
impl PyDelivery {
    #[new]
    #[pyo3(signature = (config, /))]
    fn new(py: Python<'_>, config: &Bound<'_, PyConfig>) -> Result<Self, BindingError> {
        let config = config.get().config.clone();
        let router = py.detach(|| -> Result<Router, BindingError> {
            std::fs::create_dir_all(&config.spool)
                .map_err(|e| BindingError::io(e, Some(&config.spool), "cannot create the spool directory"))?;
            Ok(Router::from_config(config)?)
        })?;
        Ok(Self { router: Arc::new(router) })
    }

    /// Queues a message for every configured target (idempotent: a message already queued
    /// is not queued twice) and returns the targets it was queued for.
    #[pyo3(signature = (message, /, *, now = None))]
    fn submit(
        &self,
        py: Python<'_>,
        message: &Bound<'_, PyMessage>,
        now: Option<&Bound<'_, PyDateTime>>,
    ) -> PyResult<Vec<String>> {
        let now = timestamp_or_now(now)?;
        let meta = message.get().meta.clone();
        let routing = py.detach(|| self.router.submit(&meta, now)).map_err(BindingError::from)?;
        Ok(routing.destinations.into_iter().map(|d| d.target).collect())
    }

    /// Attempts every delivery that is due now; failures stay queued and are retried with
    /// back-off (5 s doubling to 10 min).
    #[pyo3(signature = (*, now = None))]
    fn run_due(&self, py: Python<'_>, now: Option<&Bound<'_, PyDateTime>>) -> PyResult<PyDeliveryReport> {
        let now = timestamp_or_now(now)?;
        let report = py.detach(|| self.router.run_due(now));
        Ok(PyDeliveryReport { report })
    }
}
