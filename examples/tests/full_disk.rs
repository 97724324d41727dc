//! A full disk loses nothing and leaves no junk: the answering machine's spool and Maildir live
//! on a 2 MB tmpfs (mounted by the test, as root). A first call is recorded and delivered.
//! Then a second call is being recorded when the disk fills up completely: its recording stops
//! where the disk did, and its storing or delivery fails. While the disk is full, new INVITEs
//! get `503 Service Unavailable` with `Retry-After`, the caller's number is logged, and no
//! file appears in the spool (no 0-byte WAV, no orphan). Once space is freed, the pending
//! message is stored and delivered without a restart, and the machine takes calls again.
//!
//! Needs root (for `mount -t tmpfs`) and SIPp; otherwise the test prints `SKIPPED` and
//! passes, unless `VOICEMAIL_REQUIRE_INTEROP` is set.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// A tmpfs mounted on a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` up to the last byte with `dir/filler`.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5au8; 4096];
    while f.write_all(&chunk).and_then(|()| f.flush()).is_ok() {}
    // Whatever the page cache still holds: the last bytes, one at a time.
    while f.write_all(&[0]).and_then(|()| f.sync_all()).is_ok() {}
    path
}

fn wavs(spool: &Path) -> Vec<(PathBuf, u64)> {
    let mut v: Vec<(PathBuf, u64)> = std::fs::read_dir(spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .map(|p| {
            let len = std::fs::metadata(&p).unwrap().len();
            (p, len)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_full_disk_refuses_calls_leaves_no_junk_and_recovers_without_a_restart() {
    let Some(sipp_bin) = sipp() else { return };
    let dir = temp_dir("full-disk");
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let Some(_tmpfs) = Tmpfs::mount(&disk, "2m") else {
        missing("root to mount a 2 MB tmpfs (mount -t tmpfs)");
        return;
    };
    // The spool and the Maildir on the small disk; new calls need 256 kB free.
    let config = dir.path().join("vm.toml");
    std::fs::write(
        &config,
        format!(
            "mailbox = \"Test\"\ntimezone = \"UTC\"\nspool = \"{0}/spool\"\n\n[store]\nmin_free = \"256kB\"\n\n\
             [recording]\nmax_length = \"60s\"\n\n\
             [sip]\nlisten = \"127.0.0.1:0\"\nrtp_ports = \"36000-36999\"\n\n\
             [delivery.maildir]\nroot = \"{0}/Maildir\"\nfolder = \"Voicemail\"\n",
            disk.display()
        ),
    )
    .unwrap();
    let spool = disk.join("spool");
    let folder = disk.join("Maildir/.Voicemail");
    let mut am = AnsweringMachine::start(&config);
    ulaw_tone(&dir.path().join("tone.wav"), 3.0, 440.0);
    // A caller who talks 3 s and hangs up.
    let call = |caller: &str| {
        scenario(
            dir.path(),
            "uac_stream",
            &[
                ("CALLER", caller.to_owned()),
                ("PT", "0".into()),
                ("CODEC", "PCMU".into()),
                ("GREETING_MS", greeting_ms().to_string()),
                ("FILE", "tone.wav".into()),
                ("STREAM_MS", "3000".into()),
            ],
        )
    };

    // 1. A call while there is room: recorded and delivered.
    let first = call("+74951110001");
    let mut sipp = sipp_call(&sipp_bin, dir.path(), &am.addr, &first, "voicemail");
    let m1 = am.next_message(Duration::from_secs(90)).expect("the first message");
    assert_eq!(m1.caller, "+74951110001");
    assert!(sipp.wait_timeout(Duration::from_secs(60)).is_some_and(|s| s.success()));
    assert!(wait_until(Duration::from_secs(30), || maildir_messages(&folder).len() == 1), "first copy delivered");

    // 2. A call in progress when the disk fills up completely: the caller talks until the
    // endpoint hangs up, which it does when its recording cannot go on.
    let second = scenario(
        dir.path(),
        "uac_until_bye",
        &[
            ("CALLER", "+74951110002".to_owned()),
            ("PT", "0".into()),
            ("CODEC", "PCMU".into()),
            ("GREETING_MS", greeting_ms().to_string()),
            ("FILE", "tone.wav".into()),
            ("BYE_TIMEOUT_MS", "90000".into()),
        ],
    );
    let earlier: Vec<PathBuf> = wavs(&spool).into_iter().map(|(p, _)| p).collect();
    let mut sipp = sipp_call(&sipp_bin, dir.path(), &am.addr, &second, "voicemail");
    let recording = wait_until(Duration::from_secs(60), || {
        wavs(&spool).iter().any(|(p, len)| !earlier.contains(p) && *len > 44 + 16_000)
    });
    assert!(recording, "the second call records");
    let filler = fill(&disk);
    let _ = sipp.wait_timeout(Duration::from_secs(60));

    // 3. While the disk is full: 503 with Retry-After, the caller logged, no new file.
    let before = wavs(&spool);
    let refused = scenario(dir.path(), "uac_refused", &[("CALLER", "+74951110003".into()), ("STATUS", "503".into())]);
    let trace = dir.path().join("refused_messages.log");
    let mut sipp = ChildGuard::spawn(
        "sipp",
        Command::new(&sipp_bin)
            .current_dir(dir.path())
            .arg(&am.addr)
            .args(["-sf", refused.to_str().unwrap(), "-s", "voicemail", "-m", "1", "-i", "127.0.0.1"])
            .args(["-p", &free_port().to_string(), "-nostdin", "-timeout", "30s", "-timeout_error"])
            .args(["-trace_msg", "-message_file", trace.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let status = sipp.wait_timeout(Duration::from_secs(60)).expect("SIPp ended");
    assert!(status.success(), "the INVITE was not answered 503");
    let messages = std::fs::read_to_string(&trace).unwrap_or_default();
    assert!(messages.contains("SIP/2.0 503") && messages.contains("Retry-After:"), "{messages}");
    assert!(am.wait_log("+74951110003", Duration::from_secs(10)).is_some(), "the refused caller is logged");
    let after = wavs(&spool);
    assert_eq!(before.iter().map(|(p, _)| p).collect::<Vec<_>>(), after.iter().map(|(p, _)| p).collect::<Vec<_>>());
    for (p, len) in &after {
        assert!(*len >= 44, "a WAV without even a header: {}", p.display());
    }
    for f in all_files(&disk) {
        let len = std::fs::metadata(&f).unwrap().len();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(len > 0 || name.ends_with("-shm") || name.ends_with("-wal") || name == "maildirfolder", "{f:?}");
    }

    // 4. Space is freed: the second message is stored and delivered, no restart.
    std::fs::remove_file(filler).unwrap();
    let m2 = am.next_message(Duration::from_secs(90)).expect("the second message after space came back");
    assert_eq!(m2.caller, "+74951110002");
    assert!(
        wait_until(Duration::from_secs(120), || maildir_messages(&folder).len() == 2),
        "the pending message was delivered without a restart"
    );
    // And calls are taken again.
    let fourth = call("+74951110004");
    let mut sipp = sipp_call(&sipp_bin, dir.path(), &am.addr, &fourth, "voicemail");
    let m4 = am.next_message(Duration::from_secs(90)).expect("a call after the disk recovered");
    assert_eq!(m4.caller, "+74951110004");
    let _ = sipp.wait_timeout(Duration::from_secs(60));
    assert!(am.stop("TERM").success());
}
