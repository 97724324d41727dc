//! Operations (issue 13, item 4, Done when): the answering machine with `[metrics]` serves
//! Prometheus metrics and `/healthz`. After one SIPp call, `GET /metrics` shows the call
//! (`voicemail_sip_calls_total{outcome="recorded"} 1`, no call in progress), the message
//! stored (`voicemail_messages_total{end_reason="hang-up"} 1`), its delivery to the Maildir
//! (`voicemail_deliveries_total{target="maildir",outcome="delivered"} 1`, an empty queue),
//! the 200 OK sent and the RTP received; `/healthz` is 200. An INVITE refused with 488 counts
//! as a rejection (`reason="sdp_not_acceptable"`), a response and a `refused` call. Without SIPp: `[log] format =
//! "json"` makes every log line a JSON object; `/healthz` turns 503 while the spool is gone
//! and 200 again when it is back; unknown keys and bad values in `[metrics]` and `[log]` are
//! refused at start-up with the key named.
//!
//! The SIPp test needs SIPp (Debian `sip-tester`); without it it prints `SKIPPED` and passes,
//! unless `VOICEMAIL_REQUIRE_INTEROP` is set.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use voicemail_core::EndReason;

/// `GET path` over HTTP/1.0: the status code and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not an HTTP response: {raw:?}"));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap();
    (status, body.to_owned())
}

/// The sum of the samples of metric `name` whose labels include `labels`, or `None` when no
/// series matches.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        if metric != name {
            continue;
        }
        let have: Vec<(&str, &str)> = rest
            .trim_end_matches('}')
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k, v.trim_matches('"'))
            })
            .collect();
        if labels.iter().all(|l| have.contains(l)) {
            *sum.get_or_insert(0.0) += value.parse::<f64>().unwrap();
        }
    }
    sum
}

fn metrics_config(dir: &std::path::Path, metrics: &str, extra: &str) -> std::path::PathBuf {
    write_config(dir, "34100-34199", &format!("{MAILDIR}\n[metrics]\nlisten = \"{metrics}\"\n{extra}"))
}

#[test]
fn metrics_after_a_sipp_call_show_the_call_and_the_delivered_message() {
    let Some(sipp_bin) = sipp() else { return };
    let dir = temp_dir("metrics");
    let metrics = format!("127.0.0.1:{}", free_port());
    // PCMU only: an offer of PCMA alone is refused with 488.
    let config = metrics_config(dir.path(), &metrics, "[media]\ncodecs = [\"pcmu\"]\n");
    let mut am = AnsweringMachine::start(&config);
    assert_eq!(get(&metrics, "/healthz"), (200, "ok\n".to_owned()));
    let (status, before) = get(&metrics, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(sample(&before, "voicemail_sip_calls_total", &[]), None, "no call yet:\n{before}");

    ulaw_tone(&dir.path().join("tone.wav"), 2.0, 440.0);
    let xml = scenario(
        dir.path(),
        "uac_stream",
        &[
            ("CALLER", "+74951234567".into()),
            ("PT", "0".into()),
            ("CODEC", "PCMU".into()),
            ("GREETING_MS", greeting_ms().to_string()),
            ("FILE", "tone.wav".into()),
            ("STREAM_MS", "2000".into()),
        ],
    );
    let mut call = sipp_call(&sipp_bin, dir.path(), &am.addr, &xml, "voicemail");
    let status = call.wait_timeout(Duration::from_secs(90)).expect("sipp did not finish");
    assert!(status.success(), "sipp failed: {status:?} (see {}/*_errors.log)", dir.path().display());
    let meta = am.next_message(Duration::from_secs(30)).expect("a JSON line on stdout");
    assert_eq!(meta.end_reason, EndReason::HangUp);
    let folder = dir.path().join("Maildir/.Voicemail");
    assert!(wait_until(Duration::from_secs(30), || maildir_messages(&folder).len() == 1), "the message was delivered");

    // The call's supervisor ends after the message is stored, and the queue's depth is read
    // after the delivery pass: wait (bounded) for both, then check every figure.
    let delivered = [("target", "maildir"), ("outcome", "delivered")];
    let mut text = String::new();
    let settled = wait_until(Duration::from_secs(30), || {
        text = get(&metrics, "/metrics").1;
        sample(&text, "voicemail_deliveries_total", &delivered) == Some(1.0)
            && sample(&text, "voicemail_sip_calls_in_progress", &[]) == Some(0.0)
            && sample(&text, "voicemail_delivery_queue", &[("target", "maildir")]) == Some(0.0)
    });
    assert!(settled, "the metrics did not settle:\n{text}");
    eprintln!("GET /metrics after the call:\n{text}");
    assert_eq!(sample(&text, "voicemail_sip_calls_total", &[]), Some(1.0), "{text}");
    assert_eq!(sample(&text, "voicemail_sip_calls_total", &[("outcome", "recorded")]), Some(1.0), "{text}");
    assert_eq!(sample(&text, "voicemail_sip_calls_in_progress", &[]), Some(0.0), "{text}");
    assert_eq!(
        sample(&text, "voicemail_messages_total", &[("mailbox", "Test"), ("end_reason", "hang-up")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "voicemail_messages_total", &[]), Some(1.0), "{text}");
    assert_eq!(sample(&text, "voicemail_deliveries_total", &delivered), Some(1.0), "{text}");
    assert_eq!(sample(&text, "voicemail_deliveries_total", &[("outcome", "failed")]), Some(0.0), "{text}");
    assert_eq!(sample(&text, "voicemail_deliveries_total", &[("outcome", "rejected")]), Some(0.0), "{text}");
    assert_eq!(sample(&text, "voicemail_sip_rejections_total", &[]), None, "nothing refused:\n{text}");
    // 180 Ringing and 200 OK to the INVITE, 200 OK to the BYE (more if one was retransmitted).
    let sent = |code: &str| sample(&text, "voicemail_sip_responses_total", &[("code", code)]).unwrap_or(0.0);
    assert!(sent("180") >= 1.0 && sent("200") >= 2.0, "{text}");
    let received = sample(&text, "voicemail_rtp_packets_total", &[("kind", "received")]).unwrap_or(0.0);
    assert_eq!(received, f64::from(u32::try_from(meta.media.packets_received).unwrap()), "{text}");
    assert!(received >= 50.0, "2 s of 20 ms packets were received: {received}\n{text}");
    assert_eq!(
        sample(&text, "voicemail_rtp_packets_total", &[("kind", "lost")]),
        Some(f64::from(u32::try_from(meta.media.lost).unwrap())),
        "the counter has the call's own figure (its metadata's)"
    );
    assert!(text.contains("# HELP voicemail_sip_calls_total"), "described:\n{text}");
    assert_eq!(get(&metrics, "/healthz"), (200, "ok\n".to_owned()));

    // A refused INVITE: counted by reason and response code, and as a refused call.
    let xml = scenario(dir.path(), "uac_refused", &[("CALLER", "+74951112233".into()), ("STATUS", "488".into())]);
    let offer = std::fs::read_to_string(&xml).unwrap();
    std::fs::write(&xml, offer.replace("RTP/AVP 0", "RTP/AVP 8").replace("rtpmap:0 PCMU", "rtpmap:8 PCMA")).unwrap();
    let mut call = sipp_call(&sipp_bin, dir.path(), &am.addr, &xml, "voicemail");
    let status = call.wait_timeout(Duration::from_secs(90)).expect("sipp did not finish");
    assert!(status.success(), "sipp did not get its 488: {status:?}");
    // The call's supervisor ends just after its 488 is sent: wait (bounded) for its count.
    let mut text = String::new();
    let counted = wait_until(Duration::from_secs(30), || {
        text = get(&metrics, "/metrics").1;
        sample(&text, "voicemail_sip_calls_total", &[("outcome", "refused")]).is_some()
    });
    assert!(counted, "the refused call was not counted:\n{text}");
    assert_eq!(sample(&text, "voicemail_sip_rejections_total", &[]), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "voicemail_sip_rejections_total", &[("reason", "sdp_not_acceptable")]),
        Some(1.0),
        "{text}"
    );
    assert!(sample(&text, "voicemail_sip_responses_total", &[("code", "488")]).is_some_and(|n| n >= 1.0), "{text}");
    assert_eq!(sample(&text, "voicemail_sip_calls_total", &[("outcome", "refused")]), Some(1.0), "{text}");
    assert_eq!(sample(&text, "voicemail_sip_calls_total", &[("outcome", "recorded")]), Some(1.0), "{text}");

    let exit = am.stop("TERM");
    assert!(exit.success(), "exit status {exit:?}");
}

/// The answering machine with JSON logs: its stderr lines (each parsed as a JSON object)
/// until the ready line, which is returned with the process.
fn start_json(config: &std::path::Path) -> (ChildGuard, serde_json::Value, mpsc::Receiver<String>) {
    let mut process = ChildGuard::spawn(
        "answering_machine",
        Command::new(example("answering_machine"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info,rsipstack=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let (tx, lines) = mpsc::channel();
    let pipe = process.child().stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            eprintln!("[answering_machine] {line}");
            let _ = tx.send(line);
        }
    });
    loop {
        let line = lines.recv_timeout(Duration::from_secs(60)).expect("the answering machine did not start");
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("a log line that is not JSON: {line:?}: {e}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string() && v["target"].is_string(), "{line}");
        if v["message"] == "answering machine ready (udp+tcp)" {
            return (process, v, lines);
        }
    }
}

#[test]
fn json_logs_and_health_that_follows_the_spool() {
    let dir = temp_dir("metrics-json");
    let config = metrics_config(dir.path(), "127.0.0.1:0", "[log]\nformat = \"json\"\n");
    let (mut process, ready, lines) = start_json(&config);
    // The event's fields are at the top level.
    assert!(ready["listen"].as_str().unwrap().starts_with("127.0.0.1:"), "{ready}");
    let metrics = ready["metrics"].as_str().unwrap().to_owned();
    assert_eq!(get(&metrics, "/healthz"), (200, "ok\n".to_owned()));

    // The spool gone: unhealthy, saying why; back: healthy again.
    let spool = dir.path().join("spool");
    let away = dir.path().join("spool.away");
    std::fs::rename(&spool, &away).unwrap();
    let (status, body) = get(&metrics, "/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("unhealthy: mailbox Test: spool "), "{body}");
    std::fs::rename(&away, &spool).unwrap();
    assert_eq!(get(&metrics, "/healthz"), (200, "ok\n".to_owned()));
    // The Maildir worker's first pass (it starts when the endpoint runs) sets its queue depth.
    let mut text = String::new();
    let queue = [("mailbox", "Test"), ("target", "maildir")];
    let passed = wait_until(Duration::from_secs(30), || {
        text = get(&metrics, "/metrics").1;
        sample(&text, "voicemail_delivery_queue", &queue).is_some()
    });
    assert!(passed, "no queue depth:\n{text}");
    assert_eq!(sample(&text, "voicemail_delivery_queue", &queue), Some(0.0), "{text}");

    process.signal("TERM");
    let exit = process.wait_timeout(Duration::from_secs(60)).expect("the answering machine did not exit");
    assert!(exit.success(), "exit status {exit:?}");
    for line in lines.try_iter() {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
        assert!(v["level"].is_string(), "{line}");
    }
}

#[test]
fn bad_metrics_and_log_tables_are_refused_with_the_key() {
    let dir = temp_dir("metrics-bad");
    for (extra, key) in [
        ("[metrics]\nlisten = \"127.0.0.1:9464\"\nport = 9464\n", "metrics.port: unknown field `port`"),
        ("[metrics]\nlisten = \"localhost\"\n", "metrics.listen: invalid socket address syntax"),
        ("[metrics]\n", "metrics: missing field `listen`"),
        ("[log]\nformat = \"xml\"\n", "log.format: unknown variant `xml`"),
    ] {
        let config = write_config(dir.path(), "34200-34299", &format!("{MAILDIR}\n{extra}"));
        let mut cmd = Command::new(example("answering_machine"));
        cmd.arg("--config").arg(&config);
        let out = run_bounded("answering_machine", &mut cmd, Duration::from_secs(60));
        assert_eq!(out.code(), Some(1), "{extra}: {}", out.stderr);
        assert!(out.stderr.contains(key), "{extra}: expected {key:?} in {:?}", out.stderr);
    }
}

/// `examples/systemd/voicemail.service` is a valid unit (`systemd-analyze verify`, with
/// `ExecStart` pointing at the built example) and its hardening rates "OK" or better in
/// `systemd-analyze security` (exposure below 2.0 of 10).
#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let Some(analyze) = tool("systemd-analyze", "systemd") else { return };
    let dir = temp_dir("systemd");
    let unit = std::fs::read_to_string(examples_dir().join("systemd/voicemail.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/voicemail-answering-machine --config"), "{unit}");
    let exe = example("answering_machine");
    let unit = unit.replace("/usr/local/bin/voicemail-answering-machine", exe.to_str().unwrap());
    let path = dir.path().join("voicemail.service");
    std::fs::write(&path, unit).unwrap();
    let mut cmd = Command::new(&analyze);
    cmd.arg("verify").arg(&path).env("SYSTEMD_LOG_COLOR", "0");
    let out = run_bounded("systemd-analyze verify", &mut cmd, Duration::from_secs(60));
    assert_eq!(out.code(), Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.trim().is_empty() && out.stdout.trim().is_empty(), "warnings: {}{}", out.stdout, out.stderr);

    let mut cmd = Command::new(&analyze);
    cmd.args(["security", "--offline=true", "--no-pager"]).arg(&path).env("SYSTEMD_COLORS", "0");
    let out = run_bounded("systemd-analyze security", &mut cmd, Duration::from_secs(60));
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level: {}{}", out.stdout, out.stderr));
    let level: f64 = line.split(": ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap();
    assert!(level < 2.0, "{line}");
}

/// In a file with `[[mailboxes]]`, `[metrics]` and `[log]` are shared at the top level (every
/// mailbox has them) and refused inside a mailbox, like `[sip]` and `[web]`.
#[test]
fn ops_tables_are_shared_by_every_mailbox() {
    use voicemail_core::config::MailboxesConfig;
    use voicemail_examples::ops::{LogFormat, OpsConfig};

    let mailbox = |name: &str, number: &str, extra: &str| {
        format!(
            "[[mailboxes]]\nmailbox = \"{name}\"\nnumber = \"{number}\"\ntimezone = \"UTC\"\nspool = \"{name}\"\n{extra}\n"
        )
    };
    let top = "default_mailbox = \"A\"\n[metrics]\nlisten = \"127.0.0.1:9464\"\n[log]\nformat = \"json\"\n";
    let text = format!("{top}{}{}", mailbox("A", "100", ""), mailbox("B", "200", ""));
    let all = MailboxesConfig::from_toml_str(&text).unwrap();
    let ops = OpsConfig::from_tables(&all.ops).unwrap();
    assert_eq!(ops, OpsConfig { metrics_listen: Some("127.0.0.1:9464".parse().unwrap()), log_format: LogFormat::Json });
    for c in &all.mailboxes {
        assert_eq!(c.ops, all.ops, "{}", c.mailbox);
    }

    let text =
        format!("{}{}", mailbox("A", "100", "[mailboxes.metrics]\nlisten = \"127.0.0.1:1\""), mailbox("B", "200", ""));
    let e = MailboxesConfig::from_toml_str(&format!("default_mailbox = \"A\"\n{text}")).unwrap_err().to_string();
    assert!(e.contains("mailboxes[0].metrics") && e.contains("top level"), "{e}");
    // A one-mailbox file, and none: text logs, no metrics.
    let one = MailboxesConfig::from_toml_str("mailbox = \"A\"\ntimezone = \"UTC\"\nspool = \"s\"\n").unwrap();
    assert_eq!(OpsConfig::from_tables(&one.ops).unwrap(), OpsConfig::default());
}
