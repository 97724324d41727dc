//! Kamailio in front of two voicemail nodes (`examples/cluster/`), and one of them killed.
//!
//! The test starts a throwaway PostgreSQL, two `answering_machine` nodes on 127.0.0.1 sharing
//! it (`[store] url`, `node = "a"` and `"b"`; each its own SIP port, RTP ports and spool, both
//! delivering into one Maildir folder) and Kamailio with
//! `examples/cluster/kamailio.cfg` dispatching to them (round-robin, OPTIONS probes,
//! failover). SIPp places 200 calls through Kamailio (`examples/cluster/call.xml`, each with
//! its own caller number from an injection file, PCMU audio after the greeting), at a few
//! calls a second with a bounded number at once. Once 70 messages are stored, node A gets
//! SIGKILL with calls in progress; calls go on, and once node B stored 40 more, A is started
//! again on the same configuration and spool. Then, after every message is in the Maildir and
//! both nodes stopped:
//!
//! - every call that was answered (SIPp got the 200 OK) is in the Maildir exactly once, with
//!   its caller's number: nothing lost, no message twice, no caller twice;
//! - A's calls in progress at the kill are there, as `interrupted` (A's recovery stored them
//!   when it started again);
//! - every call placed while A was down was answered by B;
//! - `inbox list` through either node's configuration shows every message, and a callback
//!   marked through node A is seen through node B.
//!
//! A call SIPp saw fail never got a 200 OK: it is not an answered call. It may still leave a
//! message (a node that took it with 100 Trying and died before answering stores it as
//! interrupted, as every call attempt becomes a message), so the figure checked is "every
//! answered call exactly once, no call twice", and the counts are printed: calls answered,
//! failed at SIP level, messages, lost, duplicates, how long failover took (from the SIGKILL
//! to Kamailio marking A inactive, to the first call after the kill answered by B, and the
//! slowest answer of a call placed during the failover). Nothing asserts on time.
//!
//! Needs PostgreSQL, Kamailio (with its `dispatcher` module) and SIPp (Debian `postgresql`,
//! `kamailio`, `sip-tester`); without them the test prints `SKIPPED` and passes, unless `VOICEMAIL_REQUIRE_INTEROP` is
//! set. Every process is stopped by its PID (Kamailio by its process group, PostgreSQL by the
//! postmaster's).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use voicemail_core::{EndReason, MessageMeta};

/// Calls SIPp places.
const CALLS: usize = 200;
/// Calls a second, and at most this many at once.
const RATE: u32 = 4;
const LIMIT: u32 = 40;
/// Calls placed at once to a full node and another.
const FULL_CALLS: usize = 16;
/// Node A is killed once this many messages are stored (both nodes).
const KILL_AFTER: usize = 70;
/// ... and started again once B stored this many more.
const DOWN_FOR: usize = 40;

/// How `examples/cluster/kamailio.cfg` runs here (its dispatcher list is added at start).
fn kamailio_options() -> KamailioOptions {
    KamailioOptions::new().module("dispatcher.so", "kamailio").memory_mb(64, 8).lifetime(Duration::from_secs(900))
}

/// Kamailio running `examples/cluster/kamailio.cfg`, dispatching to the nodes on `nodes`
/// (SIP ports of 127.0.0.1); its files in `dir`.
fn start_kamailio(dir: &Path, nodes: &[u16]) -> Option<Kamailio> {
    let list = dir.join("dispatcher.list");
    let lines: String = nodes.iter().map(|p| format!("1 sip:127.0.0.1:{p}\n")).collect();
    std::fs::write(&list, lines).unwrap();
    let options = kamailio_options().define_str("DS_LIST", list.display());
    Kamailio::start(&examples_dir().join("cluster/kamailio.cfg"), dir, options)
}

/// The dispatcher's flags of the node on `port` (`AP`: active, `IP`: inactive, probing).
fn dispatcher_flags(kam: &Kamailio, port: u16) -> Option<String> {
    let list = kam.rpc(&["dispatcher.list"])?;
    let uri = format!("URI: sip:127.0.0.1:{port}");
    let mut lines = list.lines().skip_while(|l| l.trim() != uri);
    lines.next()?;
    lines.find_map(|l| l.trim().strip_prefix("FLAGS:")).map(|f| f.trim().to_owned())
}

/// SIPp placing a call through the proxy on `proxy` for each of `callers` (in this order),
/// `rate` a second and at most `limit` at once (`examples/cluster/call.xml`, 3 s of a tone
/// after the greeting); its files in `dir`. Returns SIPp and its log file (see [`sipp_log`]).
fn place_calls(
    sipp_bin: &Path,
    dir: &Path,
    proxy: u16,
    callers: &[String],
    rate: u32,
    limit: u32,
) -> (ChildGuard, PathBuf) {
    let csv: String = std::iter::once("SEQUENTIAL".to_owned())
        .chain(callers.iter().map(|c| format!("{c};")))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("callers.csv"), csv + "\n").unwrap();
    ulaw_tone(&dir.join("caller-ulaw.wav"), 3.0, 440.0);
    let log = dir.join("sipp-logs.log");
    let sipp = ChildGuard::spawn(
        "sipp",
        Command::new(sipp_bin)
            .current_dir(dir)
            .arg(format!("127.0.0.1:{proxy}"))
            .arg("-sf")
            .arg(examples_dir().join("cluster/call.xml"))
            .args(["-inf", "callers.csv", "-s", "voicemail", "-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &free_port().to_string(), "-mp", &free_port().to_string()])
            .args(["-m", &callers.len().to_string(), "-r", &rate.to_string(), "-l", &limit.to_string()])
            .args(["-d", &greeting_ms().to_string()])
            .args(["-timeout", "600s", "-nostdin", "-trace_logs", "-trace_err"])
            .arg("-log_file")
            .arg(&log)
            .arg("-error_file")
            .arg(dir.join("sipp-errors.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    (sipp, log)
}

/// Waits (at most `limit`) until SIPp has placed all its calls, taking the messages the nodes
/// print meanwhile.
fn until_sipp_ends(sipp: &mut ChildGuard, nodes: &mut [&mut Node], limit: Duration) {
    let deadline = Instant::now() + limit;
    while sipp.exited().is_none() {
        assert!(Instant::now() < deadline, "sipp did not finish its calls within {limit:?}");
        for node in nodes.iter_mut() {
            node.poll(Duration::from_millis(100));
        }
    }
}

/// Waits until the nodes on `ports` answer Kamailio's probes (active in its dispatcher).
fn wait_active(kam: &Kamailio, ports: &[u16]) {
    let active = wait_until(Duration::from_secs(30), || {
        ports.iter().all(|p| dispatcher_flags(kam, *p).is_some_and(|f| f.starts_with('A')))
    });
    assert!(active, "the nodes are not active in kamailio: {:?}", kam.rpc(&["dispatcher.list"]));
}

/// One voicemail node: its configuration, SIP port and the running process (if any).
struct Node {
    name: &'static str,
    config: PathBuf,
    port: u16,
    process: Option<AnsweringMachine>,
    /// Every message it printed, with the instant it was seen.
    messages: Vec<(Instant, MessageMeta)>,
}

impl Node {
    /// A node of a shared store at `store_url` (its own SQLite store with `None`), with
    /// `sip_extra` in its `[sip]` table.
    fn new(
        name: &'static str,
        dir: &Path,
        maildir: &Path,
        rtp: &str,
        store_url: Option<&str>,
        sip_extra: &str,
    ) -> Node {
        let port = free_port();
        let home = dir.join(name);
        std::fs::create_dir_all(&home).unwrap();
        let config = home.join("vm.toml");
        let store = store_url.map_or(String::new(), |url| format!("[store]\nurl = \"{url}\"\nnode = \"{name}\"\n\n"));
        std::fs::write(
            &config,
            format!(
                "mailbox = \"Sales\"\ntimezone = \"UTC\"\nspool = \"spool\"\n\n\
                 [sip]\nlisten = \"127.0.0.1:{port}\"\nrtp_ports = \"{rtp}\"\ninvite_rate = 0\n{sip_extra}\n\n\
                 {store}[delivery.maildir]\nroot = \"{}\"\nfolder = \"Voicemail\"\n",
                maildir.display()
            ),
        )
        .unwrap();
        Node { name, config, port, process: None, messages: Vec::new() }
    }

    fn start(&mut self) {
        let am = AnsweringMachine::start(&self.config);
        assert_eq!(am.addr, format!("127.0.0.1:{}", self.port), "node {}", self.name);
        self.process = Some(am);
    }

    /// Takes the messages it printed so far (waiting at most `wait` for the first).
    fn poll(&mut self, wait: Duration) {
        let Some(am) = self.process.as_mut() else { return };
        let mut wait = wait;
        while let Some(meta) = am.next_message(wait) {
            self.messages.push((Instant::now(), meta));
            wait = Duration::ZERO;
        }
    }

    /// Sends `signal` and waits for the exit, taking every message it printed.
    fn stop(&mut self, signal: &str) -> std::process::ExitStatus {
        let mut am = self.process.take().unwrap();
        let status = am.stop(signal);
        for meta in am.remaining_messages(Duration::from_secs(30)) {
            self.messages.push((Instant::now(), meta));
        }
        status
    }

    /// `inbox list --json` through this node's configuration.
    fn list(&self) -> Vec<serde_json::Value> {
        let out = inbox(&self.config, &["list", "--json"]);
        assert_eq!(out.code(), Some(0), "inbox list ({}): {}", self.name, out.stderr);
        out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// A call SIPp got a 200 OK for: its `answered` log line.
#[derive(Debug)]
struct Answered {
    caller: String,
    invited: SystemTime,
    answered: SystemTime,
    /// The SIP port of the node that answered (from its Contact).
    node_port: u16,
}

fn at(seconds: &str, micros: &str) -> SystemTime {
    let s: f64 = seconds.parse().unwrap();
    let us: f64 = micros.parse().unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_secs(s as u64) + Duration::from_micros(us as u64)
}

/// The `answered` lines of SIPp's log (see `examples/cluster/call.xml`), and how many BYEs
/// went unanswered.
fn sipp_log(path: &Path) -> (Vec<Answered>, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut answered = Vec::new();
    let mut bye_lost = 0;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = words.iter().position(|w| *w == "answered") {
            let w = &words[i + 1..];
            assert!(w.len() >= 7, "unexpected log line {line:?}");
            let contact = w[6].trim_matches(['<', '>']);
            let port = contact.rsplit(':').next().unwrap().split(';').next().unwrap();
            answered.push(Answered {
                caller: w[0].to_owned(),
                invited: at(w[2], w[3]),
                answered: at(w[4], w[5]),
                node_port: port.parse().unwrap_or_else(|_| panic!("no port in {contact:?}")),
            });
        } else if words.contains(&"bye-unanswered") {
            bye_lost += 1;
        }
    }
    (answered, bye_lost)
}

/// The Maildir messages: (X-Voicemail-Id, X-Voicemail-Caller) of each file.
fn mails(folder: &Path) -> Vec<(String, String)> {
    maildir_messages(folder)
        .iter()
        .map(|p| {
            let raw = std::fs::read(p).unwrap();
            (mail_header(&raw, "X-Voicemail-Id").unwrap(), mail_header(&raw, "X-Voicemail-Caller").unwrap())
        })
        .collect()
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}

#[test]
fn two_nodes_behind_kamailio_lose_and_duplicate_nothing_when_one_is_killed() {
    let Some(sipp_bin) = sipp() else { return };
    if !Kamailio::installed(&kamailio_options()) {
        return;
    }
    let Some(postgres) = Postgres::start() else { return };
    let store_url = postgres.create_database("voicemail");
    let dir = temp_dir("cluster");
    let maildir = dir.path().join("Maildir");
    let folder = maildir.join(".Voicemail");
    let mut a = Node::new("a", dir.path(), &maildir, "42000-42399", Some(&store_url), "");
    let mut b = Node::new("b", dir.path(), &maildir, "42400-42799", Some(&store_url), "");
    a.start();
    b.start();
    let Some(kam) = start_kamailio(dir.path(), &[a.port, b.port]) else { return };
    wait_active(&kam, &[a.port, b.port]);

    let callers: Vec<String> = (1..=CALLS).map(|i| format!("+7495100{i:04}")).collect();
    let (mut sipp, log) = place_calls(&sipp_bin, dir.path(), kam.port(), &callers, RATE, LIMIT);

    let stored = |a: &Node, b: &Node| a.messages.len() + b.messages.len();
    // 1. Calls flow to both nodes; then node A dies with calls in progress.
    let deadline = Instant::now() + Duration::from_secs(300);
    while stored(&a, &b) < KILL_AFTER {
        assert!(Instant::now() < deadline, "only {} messages within 300 s", stored(&a, &b));
        assert!(sipp.exited().is_none(), "sipp ended before the kill:\n{}", kam.log());
        a.poll(Duration::from_millis(50));
        b.poll(Duration::from_millis(50));
    }
    assert!(!a.messages.is_empty() && !b.messages.is_empty(), "both nodes take calls");
    let killed_at = SystemTime::now();
    let killed = Instant::now();
    a.stop("KILL");
    let from_a_before_kill: BTreeSet<String> = a.messages.iter().map(|(_, m)| m.caller.clone()).collect();
    eprintln!("cluster: node A killed after {} messages ({} from A)", stored(&a, &b), a.messages.len());

    // 2. Kamailio notices (a failed INVITE or probe); calls go on to B.
    let mut marked_inactive = None;
    let b_before = b.messages.len();
    let deadline = Instant::now() + Duration::from_secs(300);
    while b.messages.len() < b_before + DOWN_FOR {
        assert!(Instant::now() < deadline, "B stored only {} messages in 300 s", b.messages.len() - b_before);
        if marked_inactive.is_none() && dispatcher_flags(&kam, a.port).is_some_and(|f| f.starts_with('I')) {
            marked_inactive = Some(killed.elapsed());
        }
        if sipp.exited().is_some() {
            break;
        }
        b.poll(Duration::from_millis(50));
    }
    let marked_inactive = marked_inactive.or_else(|| {
        let mut seen = None;
        wait_until(Duration::from_secs(30), || {
            seen = dispatcher_flags(&kam, a.port).filter(|f| f.starts_with('I')).map(|_| killed.elapsed());
            seen.is_some()
        });
        seen
    });
    let marked_inactive = marked_inactive.expect("kamailio never marked the killed node inactive");

    // 3. A again, on the same configuration and spool: it stores its interrupted calls.
    let restarted_at = SystemTime::now();
    a.start();
    let back =
        wait_until(Duration::from_secs(60), || dispatcher_flags(&kam, a.port).is_some_and(|f| f.starts_with('A')));
    assert!(back, "kamailio did not take node A back: {:?}", dispatcher_flags(&kam, a.port));

    // 4. Every call placed, then every message delivered (bounded).
    until_sipp_ends(&mut sipp, &mut [&mut a, &mut b], Duration::from_secs(600));
    let (answered, bye_lost) = sipp_log(&log);
    let answered_callers: BTreeSet<&str> = answered.iter().map(|c| c.caller.as_str()).collect();
    assert_eq!(answered_callers.len(), answered.len(), "a call was answered twice");
    let all_in = wait_until(Duration::from_secs(300), || {
        let delivered: BTreeSet<String> = mails(&folder).into_iter().map(|(_, c)| c).collect();
        answered_callers.iter().all(|c| delivered.contains(*c))
    });
    // SIGTERM: each node finishes, closes its store connections and exits with 0.
    for node in [&mut a, &mut b] {
        let status = node.stop("TERM");
        assert!(status.success(), "node {} exited with {status:?} after SIGTERM", node.name);
    }
    let mails = mails(&folder);
    let delivered: BTreeMap<&str, usize> = mails.iter().fold(BTreeMap::new(), |mut m, (_, c)| {
        *m.entry(c.as_str()).or_default() += 1;
        m
    });
    let ids: BTreeSet<&str> = mails.iter().map(|(id, _)| id.as_str()).collect();
    let lost: Vec<&str> = answered_callers.iter().copied().filter(|c| !delivered.contains_key(c)).collect();
    let duplicates = (mails.len() - ids.len()) + delivered.values().filter(|n| **n > 1).map(|n| n - 1).sum::<usize>();

    // The shared store, through either node: every message, with its metadata; and which
    // node stored each (what each node printed; A's recovered calls by A's second process).
    let list_a = a.list();
    let list_b = b.list();
    let ids_of = |list: &[serde_json::Value]| -> BTreeSet<String> {
        list.iter().map(|m| m["meta"]["id"].as_str().unwrap().to_owned()).collect()
    };
    let metas: BTreeMap<String, MessageMeta> = list_a
        .iter()
        .map(|m| serde_json::from_value::<MessageMeta>(m["meta"].clone()).unwrap())
        .map(|meta| (meta.caller.clone(), meta))
        .collect();
    let stored_by: BTreeMap<&str, &str> = a
        .messages
        .iter()
        .map(|(_, m)| (m.caller.as_str(), "a"))
        .chain(b.messages.iter().map(|(_, m)| (m.caller.as_str(), "b")))
        .collect();
    let node_and_reason = |caller: &str| (stored_by.get(caller).copied(), metas.get(caller).map(|m| m.end_reason));

    // The figures.
    let first_after_kill_on_b = answered
        .iter()
        .filter(|c| c.invited >= killed_at && c.node_port == b.port)
        .map(|c| since(c.answered, killed_at))
        .min();
    let failover_window = killed_at + marked_inactive + Duration::from_secs(3);
    let slowest_in_failover = answered
        .iter()
        .filter(|c| c.invited >= killed_at && c.invited <= failover_window)
        .map(|c| since(c.answered, c.invited))
        .max();
    let placed_while_down: Vec<&Answered> =
        answered.iter().filter(|c| c.invited >= killed_at && c.invited < restarted_at).collect();
    let in_progress_on_a: Vec<&Answered> = answered
        .iter()
        .filter(|c| c.node_port == a.port && c.answered < killed_at && !from_a_before_kill.contains(&c.caller))
        .collect();
    let unanswered_with_message: Vec<&str> =
        delivered.keys().copied().filter(|c| !answered_callers.contains(c)).collect();
    let by_a = answered.iter().filter(|c| c.node_port == a.port).count();
    eprintln!(
        "cluster: {CALLS} calls placed, {} answered ({by_a} by A, {} by B), {} failed at SIP level; \
         {bye_lost} BYEs unanswered (node A dead)",
        answered.len(),
        answered.len() - by_a,
        CALLS - answered.len(),
    );
    eprintln!("cluster: inbox list shows {} messages through node A, {} through node B", list_a.len(), list_b.len());
    eprintln!(
        "cluster: {} messages in the Maildir ({} of calls never answered), lost {}, duplicates {}",
        mails.len(),
        unanswered_with_message.len(),
        lost.len(),
        duplicates
    );
    eprintln!(
        "cluster: failover: node A marked inactive {} ms after SIGKILL; first call after it answered by B after {} ms; \
         slowest answer of a call placed during failover {} ms; {} calls placed while A was down; \
         {} of A's calls in progress at the kill",
        ms(marked_inactive),
        first_after_kill_on_b.map_or(-1, |d| ms(d) as i128),
        slowest_in_failover.map_or(-1, |d| ms(d) as i128),
        placed_while_down.len(),
        in_progress_on_a.len()
    );

    assert!(all_in, "not every answered call reached the Maildir within 300 s: lost {lost:?}");
    assert!(lost.is_empty(), "answered calls with no message: {lost:?}");
    assert_eq!(duplicates, 0, "messages delivered twice, or two messages of one call: {delivered:?}");
    assert!(delivered.keys().all(|c| callers.iter().any(|k| k == c)), "a message of an unknown caller");
    // A's calls in progress at the kill: stored as interrupted when A started again.
    assert!(!in_progress_on_a.is_empty(), "node A had no call in progress when it was killed");
    for c in &in_progress_on_a {
        assert_eq!(node_and_reason(&c.caller), (Some("a"), Some(EndReason::Interrupted)), "{c:?}");
    }
    // A message of a call SIPp never saw answered: one that A had taken when it died.
    for c in &unanswered_with_message {
        assert_eq!(node_and_reason(c), (Some("a"), Some(EndReason::Interrupted)), "{c}: no answer, yet a message");
    }
    // Calls placed while A was down went to B.
    assert!(!placed_while_down.is_empty());
    for c in &placed_while_down {
        assert_eq!(c.node_port, b.port, "{c:?} was placed while A was down");
    }
    // `inbox list` through either node shows every message.
    let delivered_ids: BTreeSet<String> = ids.iter().map(|id| (*id).to_owned()).collect();
    assert_eq!(ids_of(&list_a), delivered_ids, "inbox list through node A");
    assert_eq!(ids_of(&list_b), delivered_ids, "inbox list through node B");

    // A callback marked through node A (on a message B stored) shows through node B.
    let caller = stored_by.iter().find(|(_, node)| **node == "b").map(|(c, _)| *c).unwrap();
    let id = metas[caller].id.to_string();
    let out = inbox(&a.config, &["called-back", &id, "--by", "Anna", "--note", "cluster test"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let shown = show(&b.config, &id);
    assert_eq!(shown["followup"]["state"], "called-back", "{shown}");
    let listed = b.list().into_iter().find(|m| m["meta"]["id"] == id.as_str()).unwrap();
    assert_eq!(listed["followup"]["state"], "called-back", "{listed}");
    drop(kam);
    drop(postgres);
}

/// Node A takes two calls at once (`[sip] max_calls = 2`), node B as many as come; each node
/// has its own SQLite store, both deliver into one Maildir folder. SIPp places 16 calls
/// through Kamailio, 8 a second, all of them in progress together: A answers the INVITEs
/// beyond its two with 503 and `Retry-After` (full, not busy), Kamailio hands each of them to
/// B, and every call is answered and becomes exactly one message, with its caller's number.
#[test]
fn a_full_node_hands_its_calls_to_the_other() {
    let Some(sipp_bin) = sipp() else { return };
    if !Kamailio::installed(&kamailio_options()) {
        return;
    }
    let dir = temp_dir("cluster-full");
    let maildir = dir.path().join("Maildir");
    let folder = maildir.join(".Voicemail");
    let mut a = Node::new("a", dir.path(), &maildir, "42800-42999", None, "max_calls = 2");
    let mut b = Node::new("b", dir.path(), &maildir, "43000-43199", None, "");
    a.start();
    b.start();
    let Some(kam) = start_kamailio(dir.path(), &[a.port, b.port]) else { return };
    wait_active(&kam, &[a.port, b.port]);
    let callers: Vec<String> = (1..=FULL_CALLS).map(|i| format!("+7495200{i:04}")).collect();
    let (mut sipp, log) = place_calls(&sipp_bin, dir.path(), kam.port(), &callers, 8, FULL_CALLS as u32);
    until_sipp_ends(&mut sipp, &mut [&mut a, &mut b], Duration::from_secs(120));
    let (answered, _) = sipp_log(&log);
    let all_in = wait_until(Duration::from_secs(60), || {
        let delivered: BTreeSet<String> = mails(&folder).into_iter().map(|(_, c)| c).collect();
        callers.iter().all(|c| delivered.contains(c))
    });
    for node in [&mut a, &mut b] {
        let status = node.stop("TERM");
        assert!(status.success(), "node {} exited with {status:?} after SIGTERM", node.name);
    }
    let refused_by_a = kam.log().matches(&format!("sip:127.0.0.1:{} failed (503)", a.port)).count();
    let by_a = answered.iter().filter(|c| c.node_port == a.port).count();
    let mut delivered: Vec<String> = mails(&folder).into_iter().map(|(_, c)| c).collect();
    delivered.sort();
    eprintln!(
        "cluster, a full node: {FULL_CALLS} calls placed, {} answered ({by_a} by A, {} by B); \
         A answered {refused_by_a} INVITEs 503; {} messages in the Maildir",
        answered.len(),
        answered.len() - by_a,
        delivered.len()
    );
    let errors = std::fs::read_to_string(dir.path().join("sipp-errors.log")).unwrap_or_default();
    assert_eq!(answered.len(), FULL_CALLS, "every call is answered; SIPp's errors:\n{errors}\n{}", kam.log());
    assert!(refused_by_a > 0, "node A never answered 503 though full:\n{}", kam.log());
    assert!(all_in, "not every call reached the Maildir within 60 s: {delivered:?}");
    assert_eq!(delivered, callers, "one message per call, each with its caller's number");
    assert_eq!(a.messages.len() + b.messages.len(), FULL_CALLS, "each node printed the messages it stored");
    drop(kam);
}
