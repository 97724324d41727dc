//! Running the answering machine in production: its `[metrics]` and `[log]` tables, the
//! Prometheus recorder, and the small HTTP server for `GET /metrics` and `GET /healthz`.
//!
//! ```toml
//! [metrics]
//! listen = "127.0.0.1:9464"   # Prometheus text format at /metrics, health at /healthz
//!
//! [log]
//! format = "json"             # or "text" (the default): one JSON object per line on stderr
//! ```
//!
//! Without `[metrics]` no recorder is installed and no port is opened: the `metrics` calls
//! of the libraries ([`voicemail_core::telemetry`], [`voicemail_sip::telemetry`]) do nothing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use voicemail_core::config::OpsTables;
use voicemail_core::{Mailbox, Mailboxes};
use voicemail_sip::EndpointHandle;

/// The answering machine's operations settings: `[metrics]` and `[log]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpsConfig {
    /// `[metrics] listen`: where `/metrics` and `/healthz` are served; `None` (no `[metrics]`
    /// table): not served, no recorder installed.
    pub metrics_listen: Option<SocketAddr>,
    /// `[log] format`.
    pub log_format: LogFormat,
}

/// How log lines are written to stderr (`[log] format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's
    /// fields at the top level.
    Json,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: SocketAddr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default)]
    format: LogFormat,
}

/// Deserialises `table` as `T`; errors name the key path under `key` (`metrics.listen: ...`).
fn parse<T: for<'de> Deserialize<'de>>(key: &str, table: &toml::Table) -> Result<T, String> {
    serde_path_to_error::deserialize(table.clone()).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." || path.is_empty() { key.to_owned() } else { format!("{key}.{path}") };
        format!("{at}: {}", e.inner().message().trim_end())
    })
}

impl OpsConfig {
    /// Validates the raw `[metrics]` and `[log]` tables of a configuration. Unknown keys and
    /// bad values are errors that name the key (`metrics.listen: invalid socket address syntax`).
    pub fn from_tables(tables: &OpsTables) -> Result<Self, String> {
        let metrics_listen = match &tables.metrics {
            None => None,
            Some(t) => Some(parse::<RawMetrics>("metrics", t)?.listen),
        };
        let log_format = match &tables.log {
            None => LogFormat::Text,
            Some(t) => parse::<RawLog>("log", t)?.format,
        };
        Ok(Self { metrics_listen, log_format })
    }
}

/// Installs the global tracing subscriber: `filter` (an `EnvFilter` directive, `RUST_LOG`
/// overrides it), to stderr, in `format`.
pub fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_ansi(false).init(),
    }
}

/// Installs the process's Prometheus recorder (once per process) and describes the
/// libraries' metrics. The handle renders them.
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    let handle =
        PrometheusBuilder::new().install_recorder().map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    voicemail_core::telemetry::describe();
    voicemail_sip::telemetry::describe();
    Ok(handle)
}

/// What the `/metrics` and `/healthz` routes read.
#[derive(Clone)]
pub struct OpsState {
    /// Renders the metrics.
    pub metrics: PrometheusHandle,
    /// The SIP endpoint: healthy while it takes calls.
    pub endpoint: EndpointHandle,
    /// The mailboxes: healthy while each one's store reads and its spool takes a file.
    pub mailboxes: Mailboxes,
}

/// The routes: `GET /metrics` (Prometheus text format 0.0.4) and `GET /healthz` (200 `ok`,
/// or 503 with what is wrong, one line).
pub fn router(state: OpsState) -> Router {
    Router::new().route("/metrics", get(metrics)).route("/healthz", get(healthz)).with_state(state)
}

async fn metrics(State(state): State<OpsState>) -> Response {
    state.metrics.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
}

async fn healthz(State(state): State<OpsState>) -> Response {
    let problem = if state.endpoint.is_accepting() {
        let mailboxes = state.mailboxes.clone();
        match tokio::task::spawn_blocking(move || mailboxes.all().iter().find_map(|m| check_mailbox(m).err())).await {
            Ok(problem) => problem,
            Err(e) => Some(format!("the health check failed: {e}")),
        }
    } else {
        Some("sip: not taking calls (stopping)".to_owned())
    };
    let text = |s: String| ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], s);
    match problem {
        None => (StatusCode::OK, text("ok\n".to_owned())).into_response(),
        Some(p) => (StatusCode::SERVICE_UNAVAILABLE, text(format!("unhealthy: {}\n", crate::config::one_line(&p))))
            .into_response(),
    }
}

/// Whether `mailbox` can take a message now: its store reads, its spool takes a new file,
/// and the spool's file system has `[store] min_free` free.
fn check_mailbox(mailbox: &Mailbox) -> Result<(), String> {
    static PROBE: AtomicU64 = AtomicU64::new(0);
    let name = &mailbox.config().mailbox;
    mailbox.change_mark().map_err(|e| format!("mailbox {name}: store: {e}"))?;
    let probe = mailbox.spool_dir().join(format!(
        ".healthz-{}-{}.tmp",
        std::process::id(),
        PROBE.fetch_add(1, Ordering::Relaxed)
    ));
    let written = std::fs::OpenOptions::new().write(true).create_new(true).open(&probe);
    let _ = std::fs::remove_file(&probe);
    written.map_err(|e| format!("mailbox {name}: spool {}: {e}", mailbox.spool_dir().display()))?;
    mailbox.check_space().map_err(|e| format!("mailbox {name}: {e}"))
}
