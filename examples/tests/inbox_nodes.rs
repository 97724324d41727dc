//! `inbox` on two nodes of one shared PostgreSQL store (`[store] url`, `[store] node`): a
//! message recorded on node `a` is listed and exported on node `b`, also after `a`'s spool
//! is gone (its recording is in the database); a call left in progress by node `a` when it
//! died is not recovered by `b`'s own `inbox recover`, and is recovered as `interrupted` by
//! `inbox recover --spool <a's spool> --node a` on `b`. Missing `--node` or `--spool` is
//! refused with exit status 2. Without PostgreSQL the test is skipped with the reason
//! printed, or fails when `VOICEMAIL_REQUIRE_INTEROP` is set.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::*;
use jiff::Timestamp;
use voicemail_core::config::Config;
use voicemail_core::{CallSetup, Mailbox, StartedCall};
use voicemail_examples::offline::{Args, run};

/// Node `node`'s configuration file in `dir/<node>/`, on the database `url`.
fn node_config(dir: &Path, url: &str, node: &str) -> PathBuf {
    let home = dir.join(node);
    std::fs::create_dir_all(&home).unwrap();
    write_config(&home, "36000-36999", &format!("[store]\nurl = \"{url}\"\nnode = \"{node}\"\nmin_free = 0\n"))
}

fn ok(config: &Path, args: &[&str]) -> String {
    let out = inbox(config, args);
    assert_eq!(out.code(), Some(0), "inbox {args:?}: {}", out.stderr);
    out.stdout
}

#[test]
fn inbox_on_another_node_lists_exports_and_recovers_a_dead_nodes_calls() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.create_database("voicemail");
    let dir = temp_dir("inbox-nodes");
    let (a, b) = (node_config(dir.path(), &url, "a"), node_config(dir.path(), &url, "b"));

    // A message recorded on node a.
    let input = dir.path().join("speech.wav");
    write_wav8k(&input, &speechlike(8000));
    let mut args = Args::new(&input, "+74951234567");
    args.config = Some(a.clone());
    let meta = run(&args).unwrap().meta;
    let id = meta.id.to_string();
    let recording = std::fs::read(meta.wav_path.as_ref().unwrap()).unwrap();
    assert!(ok(&b, &["list"]).contains(&id), "b lists a's message");

    // Exported on node b, from the database once a's spool is gone.
    std::fs::remove_dir_all(dir.path().join("a/spool")).unwrap();
    let out = dir.path().join("export.wav");
    ok(&b, &["export", &id, "--out", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), recording);

    // Node a starts a call and dies (its lock on the recording goes with it).
    let mailbox = Mailbox::open(Config::load(&a).unwrap()).unwrap();
    let StartedCall { call, lease } =
        mailbox.start_call(CallSetup::new("+74957654321", Timestamp::now()), Instant::now()).unwrap();
    let live = lease.id().to_string();
    drop((call, lease, mailbox));

    assert!(ok(&b, &["recover"]).starts_with("recovered 0"), "not b's call");
    assert_eq!(show(&b, &live)["lifecycle"], "recording");
    let a_spool = dir.path().join("a/spool");
    let spool = a_spool.to_str().unwrap();
    let refused = inbox(&b, &["recover", "--spool", spool]);
    assert_eq!(refused.code(), Some(2), "{}", refused.stderr);
    assert!(refused.stderr.contains("--node"), "{}", refused.stderr);
    let refused = inbox(&b, &["recover", "--node", "a"]);
    assert_eq!(refused.code(), Some(2), "{}", refused.stderr);
    let text = ok(&b, &["recover", "--spool", spool, "--node", "a"]);
    assert!(text.starts_with("recovered 1"), "{text}");
    assert!(text.contains(&live) && text.contains("interrupted"), "{text}");
    let shown = show(&b, &live);
    assert_eq!(shown["lifecycle"], "stored", "{shown}");
    assert_eq!(shown["meta"]["end_reason"], "interrupted", "{shown}");
    assert!(ok(&b, &["recover", "--spool", spool, "--node", "a"]).starts_with("recovered 0"), "once");
}
