//! The answering machine: a SIP endpoint on a mailbox, or on several (a configuration with
//! `[[mailboxes]]`: one SIP listener and one RTP port range for all, each call going to the
//! mailbox its diverting number, Request-URI or To user selects). It answers every call, plays
//! the greeting and a beep, records the caller, and the mailbox stores each message and
//! delivers it by e-mail to the configured targets (retrying until they acknowledge).
//!
//! ```text
//! cargo run --release --example answering_machine -- [--config FILE]
//! ```
//!
//! Without `--config` it runs on the embedded defaults: SIP on 127.0.0.1:5060 (UDP and TCP),
//! the bundled greeting, the spool in `./voicemail-data/spool`, delivery into the Maildir
//! folder `./voicemail-data/Maildir/.Voicemail`. The `[sip]` table of the configuration file
//! sets the listen address, RTP ports, call limit, ring delay, allow-list and registrations
//! (see `examples/voicemail.toml`). With no delivery target configured, messages stay in the
//! spool (see `inbox`). With a `[web]` table it also serves the web callback queue
//! (voicemail-web) on `[web] listen` for one mailbox (`[web] mailbox`, else the default one,
//! else the first); the ready line then names its address (`web=`).
//!
//! With a `[metrics]` table it serves Prometheus metrics at `http://<listen>/metrics` and a
//! health check at `/healthz` (200 while SIP takes calls and every mailbox's store and spool
//! work, else 503); the ready line names its address (`metrics=`). `[log] format = "json"`
//! writes the log as one JSON object per line (see `voicemail_examples::ops`).
//!
//! It logs one line per call to stderr (`RUST_LOG` overrides the default filter
//! `info,rsipstack=warn`) and prints the metadata of every message of every mailbox (its
//! `mailbox` field names which) as one JSON line on stdout
//! as soon as the message is durably stored, before any delivery (messages of calls a crash
//! interrupted are printed when they are recovered). Ctrl-C or SIGTERM stops accepting calls,
//! hangs up the calls in progress so their messages are finished and stored, gives due
//! deliveries a last pass, and exits with status 0; a second signal exits at once. A test
//! call with SIPp:
//!
//! ```text
//! sipp -sn uac 127.0.0.1:5060 -s 4951234500 -m 1 -d 10000 -timeout 60s -timeout_error -nostdin
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use tokio::signal::unix::{SignalKind, signal};
use voicemail_core::Mailboxes;
use voicemail_core::config::MailboxesConfig;
use voicemail_examples::config::{Load, load_all, one_line};
use voicemail_examples::ops::{self, OpsConfig, OpsState};
use voicemail_sip::{Endpoint, SipConfig};
use voicemail_web::WebConfig;

const USAGE: &str = "usage: answering_machine [--config FILE]";

fn parse_args() -> Result<Option<PathBuf>, String> {
    let mut args = std::env::args().skip(1);
    let mut config = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => config = Some(PathBuf::from(args.next().ok_or("--config needs a file")?)),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        }
    }
    Ok(config)
}

/// The tables of the configuration file beyond the mailboxes'.
struct Tables {
    sip: SipConfig,
    web: Option<WebConfig>,
    ops: OpsConfig,
}

async fn run(configs: MailboxesConfig, mailboxes: Mailboxes, tables: Tables) -> Result<(), String> {
    let Tables { sip, web, ops: ops_config } = tables;
    let web_name = configs.web_mailbox().mailbox.clone();
    let names = configs.names().join(",");
    let targets_of = |m: &voicemail_core::Mailbox| match m.targets() {
        t if t.is_empty() => "none".to_owned(),
        t => t.join(","),
    };
    if mailboxes.all().len() > 1 {
        for m in mailboxes.all() {
            let c = m.config();
            let mut selected_by: Vec<&str> = c.number.iter().chain(&c.numbers).map(String::as_str).collect();
            let is_default = mailboxes.default_mailbox().is_some_and(|d| d.config().mailbox == c.mailbox);
            if is_default {
                selected_by.push("(default)");
            }
            tracing::info!(
                mailbox = %c.mailbox,
                numbers = %selected_by.join(","),
                spool = %m.spool_dir().display(),
                targets = %targets_of(m),
                "mailbox"
            );
        }
    }
    let primary = mailboxes.primary().clone();
    let mut endpoint = Endpoint::bind(sip, mailboxes.clone()).await.map_err(|e| e.to_string())?;
    let mut messages = endpoint.messages().ok_or("the message stream was taken")?;
    let handle = endpoint.handle();
    // Signals are ours before we say we are ready: a SIGTERM never kills a half-started process.
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT: {e}"))?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM: {e}"))?;
    tokio::spawn(async move {
        let first = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(
            signal = first,
            "stopping: calls in progress finish their messages (a second signal quits at once)"
        );
        handle.shutdown();
        let code = tokio::select! {
            _ = interrupt.recv() => 130,
            _ = terminate.recv() => 143,
        };
        tracing::warn!("second signal: quitting at once");
        std::process::exit(code);
    });
    let printer = tokio::spawn(async move {
        while let Some(meta) = messages.recv().await {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", meta.to_json_line());
            let _ = out.flush();
        }
    });
    // Metrics and health, when configured: served until the endpoint has stopped.
    let (metrics_addr, metrics_task) = match ops_config.metrics_listen {
        None => ("off".to_owned(), None),
        Some(listen) => {
            let recorder = ops::install_recorder()?;
            let listener =
                tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("metrics.listen {listen}: {e}"))?;
            let addr = listener.local_addr().map_err(|e| format!("metrics.listen: {e}"))?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let state = OpsState { metrics: recorder, endpoint: endpoint.handle(), mailboxes: mailboxes.clone() };
            let task = tokio::spawn(voicemail_web::serve(listener, ops::router(state), async move {
                let _ = stopped.await;
            }));
            (addr.to_string(), Some((stop, task)))
        }
    };
    // The web callback queue, when configured: served until the endpoint has stopped.
    let (web_addr, web_task) = match web {
        None => ("off".to_owned(), None),
        Some(web) => {
            let listener = tokio::net::TcpListener::bind(web.listen)
                .await
                .map_err(|e| format!("web.listen {}: {e}", web.listen))?;
            let addr = listener.local_addr().map_err(|e| format!("web.listen: {e}"))?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let served = mailboxes.get(&web_name).unwrap_or(&primary).clone();
            let app = voicemail_web::router(served, web);
            let task = tokio::spawn(voicemail_web::serve(listener, app, async move {
                let _ = stopped.await;
            }));
            (addr.to_string(), Some((stop, task)))
        }
    };
    tracing::info!(
        mailbox = %primary.config().mailbox,
        mailboxes = %names,
        listen = %endpoint.local_addr(),
        web = %web_addr,
        metrics = %metrics_addr,
        spool = %primary.spool_dir().display(),
        targets = %targets_of(&primary),
        "answering machine ready (udp+tcp)"
    );
    let result = endpoint.run().await.map_err(|e| e.to_string());
    if let Some((stop, task)) = metrics_task {
        let _ = stop.send(());
        if tokio::time::timeout(std::time::Duration::from_secs(5), task).await.is_err() {
            tracing::warn!("the metrics endpoint did not stop within 5 s");
        }
    }
    if let Some((stop, task)) = web_task {
        let _ = stop.send(());
        // Requests in progress finish; a connection that lingers does not hold the exit up.
        match tokio::time::timeout(std::time::Duration::from_secs(5), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "the web queue failed"),
            Ok(Err(e)) => tracing::error!(error = %e, "the web queue's task failed"),
            Err(_) => tracing::warn!("the web queue did not stop within 5 s"),
        }
    }
    // The stream ends once `run` has returned: every stored message is printed.
    if let Err(e) = printer.await {
        tracing::error!(error = %e, "printing messages failed");
    }
    tracing::info!("stopped");
    result
}

fn main() -> ExitCode {
    // The configuration first: it says how to log.
    let loaded = parse_args().and_then(|path| {
        let configs = load_all(path.as_deref(), Load::Everything)?;
        let ops = OpsConfig::from_tables(&configs.ops)?;
        let sip = SipConfig::from_table(configs.sip.as_ref()).map_err(|e| e.to_string())?;
        let web = WebConfig::from_table(configs.web.as_ref()).map_err(|e| e.to_string())?;
        Ok((configs, Tables { sip, web, ops }))
    });
    let (configs, tables) = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("answering_machine: {}", one_line(&e));
            return ExitCode::FAILURE;
        }
    };
    ops::init_logging(tables.ops.log_format, "info,rsipstack=warn");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("answering_machine: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The mailboxes are opened, and closed last, outside the runtime: a store may block on
    // its own (the PostgreSQL client runs a runtime of its own, which must not start or stop
    // on one of ours). `main` keeps a handle until the runtime and its tasks are gone.
    let mailboxes = match Mailboxes::open(configs.clone()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("answering_machine: {}", one_line(&e.to_string()));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(configs, mailboxes.clone(), tables));
    drop(runtime);
    drop(mailboxes);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("answering_machine: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}
