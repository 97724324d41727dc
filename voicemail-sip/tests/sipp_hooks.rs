//! The application's per-call hooks (`voicemail_sip::hooks`): SIPp calls an endpoint of two
//! mailboxes whose `on_call` rejects the caller `+15550000666` with 486 Busy Here (SIPp
//! expects exactly that final response; no message is left) and moves every other call from
//! the mailbox the endpoint chose (Support) to Sales with the greeting `short`; `on_notice`
//! hears the answered call's states in order under its SIP Call-ID.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{run_sipp, scenario};
use voicemail_core::config::MailboxesConfig;
use voicemail_core::{CallState, Mailboxes, MessageMeta};
use voicemail_sip::hooks::{Accept, CallDecision, CallHooks, CallNotice, HookSettings, IncomingCall, RejectStatus};
use voicemail_sip::{Endpoint, SipConfig};

const CONFIG: &str = r#"
default_mailbox = "Support"

[sip]
listen = "127.0.0.1:0"
rtp_ports = "20000-29999"

[[mailboxes]]
mailbox = "Sales"
numbers = ["100"]
timezone = "UTC"
spool = "sales"
[mailboxes.store]
min_free = "0"
[mailboxes.greetings]
default = "builtin:default"
short = "short.wav"

[[mailboxes]]
mailbox = "Support"
numbers = ["200"]
timezone = "UTC"
spool = "support"
[mailboxes.store]
min_free = "0"
"#;

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<IncomingCall>>,
    notices: Mutex<Vec<CallNotice>>,
}

impl CallHooks for Recorder {
    fn on_call(&self, call: &IncomingCall) -> CallDecision {
        self.calls.lock().unwrap().push(call.clone());
        if call.caller == "+15550000666" {
            CallDecision::Reject(RejectStatus::BUSY_HERE)
        } else {
            CallDecision::Accept(Accept { mailbox: Some("Sales".into()), greeting: Some("short".into()) })
        }
    }

    fn on_notice(&self, notice: CallNotice) {
        self.notices.lock().unwrap().push(notice);
    }
}

#[test]
fn on_call_rejects_with_486_and_chooses_the_mailbox() {
    let Some(sipp) = common::tool("sipp", "sip-tester") else { return };
    common::log_to_stderr();
    let dir = common::temp_dir("hooks");
    common::write_pcm_wav(&dir.path().join("short.wav"), 8000, 0.5, 600.0);
    let mut config = MailboxesConfig::from_toml_str_in(CONFIG, dir.path()).unwrap();
    config.load_prompts().unwrap();
    let sip = SipConfig::from_table(config.sip.as_ref()).unwrap();
    let mailboxes = Mailboxes::open(config).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let hooks = Arc::new(Recorder::default());
    let endpoint = rt.block_on(Endpoint::bind(sip, mailboxes.clone())).unwrap();
    let mut endpoint = endpoint.with_hooks(hooks.clone(), HookSettings::default()).unwrap();
    let mut messages = endpoint.messages().unwrap();
    let handle = endpoint.handle();
    let target = endpoint.local_addr().to_string();
    let run = rt.spawn(endpoint.run());

    let sipp_dir = dir.path().join("sipp");
    std::fs::create_dir_all(&sipp_dir).unwrap();
    let xml = scenario(&sipp_dir, "uac_refused", &[("CALLER", "+15550000666".into()), ("STATUS", "486".into())]);
    let refused = run_sipp(
        &sipp,
        &sipp_dir,
        &target,
        &["-sf", xml.to_str().unwrap(), "-s", "200", "-m", "1"],
        Duration::from_secs(30),
    );
    assert!(refused.success(), "the rejected call: {}", refused.describe());
    let vars = [
        ("CALLER", "+15550000001".to_owned()),
        ("RURI", "200".to_owned()),
        ("TO", "200".to_owned()),
        ("HEADER", "Subject: to Support".to_owned()),
        ("HANGUP_MS", "1500".to_owned()),
    ];
    let xml = scenario(&sipp_dir, "uac_dialled", &vars);
    let run_call =
        run_sipp(&sipp, &sipp_dir, &target, &["-sf", xml.to_str().unwrap(), "-m", "1"], Duration::from_secs(30));
    assert!(run_call.success(), "the accepted call: {}", run_call.describe());

    let left = Duration::from_secs(30);
    let meta: MessageMeta =
        rt.block_on(async { tokio::time::timeout(left, messages.recv()).await.ok().flatten() }).expect("a message");
    handle.shutdown();
    let r = rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), run).await });
    assert!(matches!(r, Ok(Ok(Ok(())))), "endpoint run: {r:?}");

    // Only the accepted call left a message: in Sales, with the chosen greeting.
    assert_eq!(meta.caller, "+15550000001");
    assert_eq!(meta.mailbox.as_deref(), Some("Sales"), "{meta:?}");
    assert_eq!(meta.greeting, "short", "{meta:?}");
    assert_eq!(mailboxes.get("Sales").unwrap().list(false).unwrap().len(), 1);
    assert!(mailboxes.get("Support").unwrap().list(false).unwrap().is_empty());

    let calls = hooks.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!((calls[0].caller.as_str(), calls[0].mailbox.as_str()), ("+15550000666", "Support"));
    assert_eq!((calls[1].caller.as_str(), calls[1].mailbox.as_str()), ("+15550000001", "Support"));
    // The notices of the answered call, in order (the hooks' thread may still be at the last one).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hooks.notices.lock().unwrap().iter().any(|n| matches!(n, CallNotice::State { state: CallState::Ended, .. }))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let notices = hooks.notices.lock().unwrap().clone();
    let states: Vec<CallState> = notices
        .iter()
        .map(|n| match n {
            CallNotice::State { call_id, state } => {
                assert_eq!(call_id, &calls[1].call_id);
                *state
            }
            other => panic!("unexpected notice {other:?}"),
        })
        .collect();
    assert_eq!(
        states,
        [CallState::Answered, CallState::Greeting, CallState::Beep, CallState::Recording, CallState::Ended],
        "{notices:?}"
    );
    assert_eq!(handle.dropped_notices(), 0);
}
