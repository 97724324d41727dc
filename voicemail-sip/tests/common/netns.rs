//! The shared corpus, and the private network namespace that a test feeding it to a running
//! endpoint runs in.
//!
//! The corpus names outside addresses in Via, Contact and SDP: an endpoint answering its
//! messages sends responses, BYEs and RTP towards them. So a test that sends corpus messages
//! over the wire runs its endpoint and its sender in a child process inside a new network
//! namespace that has only loopback: [`run_isolated`] re-executes the test binary as
//! `unshare -n sh -c 'ip link set lo up && exec <test binary> --exact <inner test> ...'`
//! (tests and CI run as root), and the inner test calls [`assert_private_netns`] before it
//! sends anything. Without `unshare` the outer test prints `SKIPPED` and passes, unless
//! `VOICEMAIL_REQUIRE_INTEROP=1`: then it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The environment variable that tells an inner test it runs in the child process.
const CHILD: &str = "VOICEMAIL_ISOLATED_CHILD";

/// The shared corpus directory, or `None` after printing why.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("VOICEMAIL_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: corpus not found at {} (set VOICEMAIL_CORPUS to its path)", dir.display());
        None
    }
}

/// How [`run_isolated`] runs the inner test.
#[derive(Debug, Clone, Copy, Default)]
pub struct Isolation {
    /// In a new network namespace with only loopback up (`unshare -n`).
    pub netns: bool,
    /// With this soft limit of open files (`ulimit -n`).
    pub max_open_files: Option<u32>,
}

/// Runs the `#[ignore]`d test `inner` of this test binary in a child process isolated as
/// `how` says, and panics with the child's output if it fails (or runs longer than
/// `timeout`). Returns false after printing `SKIPPED` when a network namespace cannot be
/// created here and `VOICEMAIL_REQUIRE_INTEROP` is not set (with it set: a panic).
pub fn run_isolated(inner: &str, how: Isolation, timeout: Duration) -> bool {
    if how.netns && !can_unshare() {
        let msg = "cannot create a network namespace (`unshare -n` needs root and util-linux; \
                   `ip` needs iproute2)";
        if std::env::var_os("VOICEMAIL_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
            panic!("{msg}, and VOICEMAIL_REQUIRE_INTEROP=1");
        }
        eprintln!("SKIPPED: {msg}");
        return false;
    }
    let exe = std::env::current_exe().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("child.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut script = String::from("set -e\n");
    if how.netns {
        script.push_str("ip link set lo up\n");
    }
    if let Some(n) = how.max_open_files {
        script.push_str(&format!("ulimit -S -n {n}\n"));
    }
    script.push_str("exec \"$0\" \"$@\"\n");
    let mut cmd = if how.netns {
        let mut c = Command::new("unshare");
        c.args(["-n", "sh", "-c", &script]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &script]);
        c
    };
    cmd.arg(&exe)
        .args(["--exact", inner, "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut child = super::Proc::spawn(inner, &mut cmd);
    let status = child.wait(timeout);
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "{inner} in its child process: {status:?} (killed after {timeout:?} if None)\n{output}"
    );
    // The child's report (counts, sizes) for the outer test's output.
    for line in output.lines().filter_map(|l| l.find("REPORT ").map(|at| &l[at..])) {
        eprintln!("{line}");
    }
    true
}

fn can_unshare() -> bool {
    Command::new("unshare")
        .args(["-n", "ip", "link", "set", "lo", "up"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Panics unless this is the child process of [`run_isolated`] (an inner test run on its own
/// does nothing useful and must not run outside its isolation).
pub fn assert_child() {
    assert!(
        std::env::var_os(CHILD).is_some(),
        "this test runs only in the child process its outer test starts (see tests/common/netns.rs)"
    );
}

/// The network interfaces of this process's network namespace (from `/proc/self/net/dev`).
pub fn interfaces() -> Vec<String> {
    let dev = std::fs::read_to_string("/proc/self/net/dev").unwrap();
    dev.lines().skip(2).filter_map(|l| l.split_once(':')).map(|(name, _)| name.trim().to_owned()).collect()
}

/// Refuses (panics) unless this process runs in the child of [`run_isolated`] inside a
/// network namespace whose only interface is `lo`: corpus messages must not reach any other
/// network.
pub fn assert_private_netns() {
    assert_child();
    let interfaces = interfaces();
    assert_eq!(
        interfaces,
        ["lo"],
        "refusing to send corpus messages: this network namespace has interfaces besides lo"
    );
}
