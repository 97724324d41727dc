//! The answering machine: a SIP endpoint that answers every call, plays the greeting and a
//! beep, records the caller, and delivers each message by e-mail to the configured targets.
//!
//! ```text
//! cargo run --release --example answering_machine -- [--config FILE]
//! ```
//!
//! Without `--config` it runs on the embedded defaults: SIP on 127.0.0.1:5060 (UDP and TCP),
//! the bundled greeting, the spool in `./voicemail-data/spool`, delivery into the Maildir
//! folder `./voicemail-data/Maildir/.Voicemail`. The `[sip]` table of the configuration file
//! sets the listen address, RTP ports, call limit, ring delay, allow-list and registrations
//! (see `examples/voicemail.toml`).
//!
//! It logs one line per call to stderr (`RUST_LOG` overrides the default filter
//! `info,rsipstack=warn`) and prints the metadata of every recorded message as one JSON line on
//! stdout once it is queued for delivery. Ctrl-C stops accepting calls, hangs up the calls in
//! progress so their messages are finished and delivered, and exits; a second Ctrl-C exits at
//! once. A test call with SIPp:
//!
//! ```text
//! sipp -sn uac 127.0.0.1:5060 -s 4951234500 -m 1 -d 10000 -timeout 60s -timeout_error -nostdin
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::mpsc;
use voicemail_core::MessageMeta;
use voicemail_core::config::Config;
use voicemail_core::route::Router;
use voicemail_core::spool::Spool;
use voicemail_sip::{Endpoint, SipConfig};

const USAGE: &str = "usage: answering_machine [--config FILE]";

/// How often deliveries that failed are retried while nothing else happens.
const RETRY_EVERY: Duration = Duration::from_secs(5);

fn parse_args() -> Result<Option<PathBuf>, String> {
    let mut args = std::env::args().skip(1);
    let mut config = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => config = Some(PathBuf::from(args.next().ok_or("--config needs a file")?)),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(config)
}

fn load_config(path: Option<PathBuf>) -> Result<Config, String> {
    match path {
        Some(path) => Config::load(&path).map_err(|e| format!("{}: {e}", path.display())),
        None => {
            let mut config = Config::default_embedded();
            config.load_prompts().map_err(|e| e.to_string())?;
            Ok(config)
        }
    }
}

/// Queues one message for delivery, attempts what is due, and prints the metadata line.
fn deliver(router: &Router, meta: &MessageMeta) {
    let now = Timestamp::now();
    match router.submit(meta, now) {
        Ok(routing) => {
            let targets: Vec<&str> = routing.destinations.iter().map(|d| d.target.as_str()).collect();
            tracing::debug!(id = %meta.id, targets = ?targets, client = ?routing.client, "queued");
        }
        Err(e) => tracing::error!(id = %meta.id, error = %e, "cannot queue the message; it stays in the spool"),
    }
    run_due(router);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", meta.to_json_line());
    let _ = out.flush();
}

fn run_due(router: &Router) {
    let report = router.run_due(Timestamp::now());
    for failure in &report.failed {
        tracing::warn!(id = %failure.id, target = %failure.target, error = %failure.error, "delivery failed; will retry");
    }
}

/// Delivers messages as they arrive, retries failed deliveries, and returns when the
/// endpoint has closed the stream and everything received was handled.
async fn delivery_loop(router: Arc<Router>, mut messages: mpsc::UnboundedReceiver<MessageMeta>) {
    let mut retry = tokio::time::interval(RETRY_EVERY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            m = messages.recv() => match m {
                Some(meta) => {
                    let r = router.clone();
                    if let Err(e) = tokio::task::spawn_blocking(move || deliver(&r, &meta)).await {
                        tracing::error!(error = %e, "delivery task failed");
                    }
                }
                None => break,
            },
            _ = retry.tick() => {
                let r = router.clone();
                let _ = tokio::task::spawn_blocking(move || run_due(&r)).await;
            }
        }
    }
}

async fn run() -> Result<(), String> {
    let config = load_config(parse_args()?)?;
    let sip = SipConfig::from_table(config.sip.as_ref()).map_err(|e| e.to_string())?;
    // Messages of calls a crash interrupted are finished and queued first.
    let spool = Spool::open(&config.spool).map_err(|e| format!("spool {}: {e}", config.spool.display()))?;
    let recovered = spool.recover().map_err(|e| format!("spool recovery: {e}"))?;
    let router = Arc::new(Router::from_config(config.clone()).map_err(|e| e.to_string())?);
    let queued = router.recover(Timestamp::now()).map_err(|e| e.to_string())?;
    if !recovered.is_empty() || queued > 0 {
        tracing::info!(recovered = recovered.len(), queued, "recovered messages from the spool");
    }
    let mailbox = config.mailbox.clone();
    let mut endpoint = Endpoint::bind(sip, Arc::new(config)).await.map_err(|e| e.to_string())?;
    let messages = endpoint.messages().ok_or("the message stream was taken")?;
    let handle = endpoint.handle();
    tracing::info!(%mailbox, listen = %endpoint.local_addr(), "answering machine ready (udp+tcp)");
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C: finishing the calls in progress (Ctrl-C again to quit at once)");
            handle.shutdown();
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
    let delivery = tokio::spawn(delivery_loop(router.clone(), messages));
    let result = endpoint.run().await.map_err(|e| e.to_string());
    if let Err(e) = delivery.await {
        tracing::error!(error = %e, "delivery loop failed");
    }
    let _ = tokio::task::spawn_blocking(move || run_due(&router)).await;
    tracing::info!("stopped");
    result
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rsipstack=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("answering_machine: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("answering_machine: {e}");
            ExitCode::FAILURE
        }
    }
}
