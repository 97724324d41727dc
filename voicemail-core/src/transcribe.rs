//! The transcription hook (`[transcription]`): an external speech-to-text program run on each
//! finished recording, whose standard output becomes the message's transcript (the e-mail's
//! `transcript` variable, [`MessageMeta::transcript`](crate::MessageMeta::transcript)).
//!
//! ```toml
//! [transcription]
//! command = ["whisper-cli", "-m", "/opt/whisper.cpp/models/ggml-base.bin", "-l", "auto", "-nt", "-np", "-f", "{audio}"]
//! timeout = "60s"        # the longest a message's delivery waits for its transcript
//! max_size = "64kB"      # standard output kept; the rest is dropped
//! ```
//!
//! The command runs off the call path, in the delivery worker, before the message's first
//! delivery attempt: [`Mailbox`](crate::Mailbox) runs it once per message (the workers of the
//! other targets wait for that run), stores what it printed with the message, and builds the
//! e-mail with it. `{audio}` in an argument becomes the recording's path; without the
//! placeholder the path is the last argument. The program gets no standard input and its own
//! process group; when it runs longer than `timeout` the whole group is killed (SIGKILL) and
//! the message goes out without a transcript. A program that fails (cannot start, exits with
//! a non-zero status) is logged, with the end of its standard error, and the message goes out
//! without a transcript too: transcription never holds a delivery back longer than `timeout`.
//!
//! The output is read as UTF-8 (invalid sequences become `�`), control characters other than
//! line breaks and tabs are dropped, line ends become `\n`, and at most `max_size` bytes are
//! kept (cut at a character boundary, marked with `…`). Empty output means no transcript.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::message::MessageId;

/// The argument placeholder replaced by the recording's path.
pub const AUDIO_PLACEHOLDER: &str = "{audio}";
/// The default `timeout`: 60 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest `timeout` accepted: 10 minutes.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// The default `max_size`: 64 kB of standard output.
pub const DEFAULT_MAX_BYTES: usize = 64_000;
/// The largest `max_size` accepted: 1 MB.
pub const MAX_MAX_BYTES: usize = 1_000_000;
/// Standard error kept for the log when the program fails.
const STDERR_TAIL: usize = 2048;
/// How long the output is still read after the program ended (a descendant that left the
/// process group may hold the pipe open).
const DRAIN: Duration = Duration::from_secs(1);

/// The `[transcription]` table of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptionConfig {
    /// The program and its arguments (`command`); `{audio}` is replaced by the recording's
    /// path, which is appended when no argument has the placeholder. A program name without
    /// `/` is looked up on `PATH`; a relative path is resolved against the configuration
    /// file's directory.
    pub command: Vec<String>,
    /// The longest the program may run (`timeout`, default 60 s, at most 10 min).
    pub timeout: Duration,
    /// The most standard output kept, in bytes (`max_size`, default `"64kB"`, at most 1 MB).
    pub max_bytes: usize,
}

/// Why a transcription gave no transcript.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TranscriptionError {
    /// The program could not be started.
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The program ran longer than the timeout; its process group was killed.
    #[error("no transcript within {0:?}: the program was killed")]
    TimedOut(Duration),
    /// The program exited with a failure status.
    #[error("the program failed ({status}){}", if .stderr.is_empty() { String::new() } else { format!(": {}", .stderr) })]
    Failed {
        /// How it exited.
        status: ExitStatus,
        /// The end of its standard error, on one line.
        stderr: String,
    },
    /// Waiting for the program failed.
    #[error("waiting for the program: {0}")]
    Wait(io::Error),
    /// The caller asked to stop (the mailbox is shutting down); the program was killed.
    #[error("stopped before the transcript was ready: the program was killed")]
    Aborted,
}

/// The command line for `audio`: `{audio}` replaced, or the path appended.
fn arguments(command: &[String], audio: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::with_capacity(command.len());
    let mut placed = false;
    for arg in command.iter().skip(1) {
        if arg == AUDIO_PLACEHOLDER {
            args.push(audio.as_os_str().to_owned());
            placed = true;
        } else if arg.contains(AUDIO_PLACEHOLDER) {
            args.push(arg.replace(AUDIO_PLACEHOLDER, &audio.to_string_lossy()).into());
            placed = true;
        } else {
            args.push(arg.into());
        }
    }
    if !placed {
        args.push(audio.as_os_str().to_owned());
    }
    args
}

/// Runs `config.command` on the recording `audio` and returns its sanitised standard output
/// (`None` when it printed nothing). Waits at most `config.timeout`, then kills the program's
/// process group; `keep_going` is asked every few milliseconds, and a `false` kills it too
/// ([`TranscriptionError::Aborted`]). Blocks the calling thread.
pub fn transcribe(
    config: &TranscriptionConfig,
    audio: &Path,
    keep_going: &dyn Fn() -> bool,
) -> Result<Option<String>, TranscriptionError> {
    let program = config.command.first().cloned().unwrap_or_default();
    let mut child = Command::new(&program)
        .args(arguments(&config.command, audio))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|source| TranscriptionError::Spawn { program: program.clone(), source })?;
    let stdout = child.stdout.take().map(|pipe| read_bounded(pipe, config.max_bytes, false));
    let stderr = child.stderr.take().map(|pipe| read_bounded(pipe, STDERR_TAIL, true));
    let started = Instant::now();
    let mut pause = Duration::from_millis(2);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                kill_group(&mut child);
                return Err(TranscriptionError::Wait(e));
            }
        }
        if started.elapsed() >= config.timeout {
            kill_group(&mut child);
            return Err(TranscriptionError::TimedOut(config.timeout));
        }
        if !keep_going() {
            kill_group(&mut child);
            return Err(TranscriptionError::Aborted);
        }
        std::thread::sleep(pause.min(config.timeout.saturating_sub(started.elapsed())));
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    // Descendants left behind (a shell's background job) would keep the pipes open.
    let _ =
        rustix::process::kill_process_group(rustix::process::Pid::from_child(&child), rustix::process::Signal::KILL);
    let out = stdout.and_then(|rx| rx.recv_timeout(DRAIN).ok()).unwrap_or_default();
    if !status.success() {
        let err = stderr.and_then(|rx| rx.recv_timeout(DRAIN).ok()).unwrap_or_default();
        return Err(TranscriptionError::Failed { status, stderr: one_line(&String::from_utf8_lossy(&err.bytes)) });
    }
    let text = sanitize(&String::from_utf8_lossy(&out.bytes), out.truncated);
    Ok((!text.is_empty()).then_some(text))
}

/// Kills the child's process group (the child leads it) and reaps the child. The child is
/// not reaped before, so its id still names its group.
fn kill_group(child: &mut Child) {
    let pid = rustix::process::Pid::from_child(child);
    if rustix::process::kill_process_group(pid, rustix::process::Signal::KILL).is_err() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// What a reader thread read.
#[derive(Debug, Default)]
struct Output {
    bytes: Vec<u8>,
    truncated: bool,
}

/// Reads `pipe` to its end on a thread of its own, keeping the first `max` bytes (the last
/// `max` with `tail`) and draining the rest, so the program never blocks on a full pipe.
fn read_bounded(mut pipe: impl Read + Send + 'static, max: usize, tail: bool) -> mpsc::Receiver<Output> {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new().name("vm-transcript-read".into()).spawn(move || {
        let mut out = Output::default();
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let chunk = buf.get(..n).unwrap_or_default();
                    if tail {
                        out.bytes.extend_from_slice(chunk);
                        if out.bytes.len() > max {
                            let cut = out.bytes.len() - max;
                            out.bytes.drain(..cut);
                        }
                    } else {
                        let room = max.saturating_sub(out.bytes.len());
                        out.bytes.extend_from_slice(chunk.get(..room.min(n)).unwrap_or_default());
                        out.truncated |= n > room;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(out);
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a thread to read the transcription's output");
    }
    rx
}

/// The transcript as kept: line ends `\n`, no control characters but `\n` and `\t`, no
/// trailing spaces on lines, at most two blank lines in a row, trimmed; `…` marks a cut.
pub fn sanitize(text: &str, truncated: bool) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.split('\n') {
        let line: String = line
            .chars()
            .filter(|c| *c == '\t' || !(c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')))
            .collect();
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 2 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    let mut out = out.trim().to_owned();
    if truncated && !out.is_empty() {
        out.push('…');
    }
    out
}

/// `text` on one line, at most 300 characters.
fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut chars = line.chars();
    let cut: String = chars.by_ref().take(300).collect();
    if chars.next().is_some() { format!("{cut}…") } else { cut }
}

/// One transcription per message and process, however many delivery workers ask: the first
/// runs it, the others wait for its result (at most the timeout and a second). Results are
/// kept an hour, so a retried delivery does not run the program again.
#[derive(Debug, Default)]
pub(crate) struct Transcripts {
    state: Mutex<HashMap<MessageId, Slot>>,
    done: Condvar,
}

#[derive(Debug, Clone)]
enum Slot {
    Running,
    Done { text: Option<String>, at: Instant },
}

/// Results kept at most this long.
const KEEP: Duration = Duration::from_secs(3600);
/// Results kept before old ones are dropped.
const KEEP_MAX: usize = 1024;

/// What a worker asking for a transcript is to do.
pub(crate) enum Turn {
    /// The transcript is known (or its run failed): use this.
    Known(Option<String>),
    /// Run the program, then call [`Transcripts::finish`] (or [`Transcripts::abandon`]).
    Run,
}

impl Transcripts {
    /// The transcript of `id` if it is known, else whose turn it is to run it. A worker that
    /// waits for another's run waits at most `wait`, then goes on without one.
    pub(crate) fn turn(&self, id: &MessageId, wait: Duration, keep_going: &dyn Fn() -> bool) -> Turn {
        let deadline = Instant::now() + wait;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match state.get(id) {
                Some(Slot::Done { text, .. }) => return Turn::Known(text.clone()),
                None => {
                    if state.len() >= KEEP_MAX {
                        state.retain(|_, s| {
                            matches!(s, Slot::Done { at, .. } if at.elapsed() < KEEP) || matches!(s, Slot::Running)
                        });
                    }
                    state.insert(id.clone(), Slot::Running);
                    return Turn::Run;
                }
                Some(Slot::Running) => {
                    let now = Instant::now();
                    if now >= deadline || !keep_going() {
                        return Turn::Known(None);
                    }
                    let step = (deadline - now).min(Duration::from_millis(100));
                    state = self.done.wait_timeout(state, step).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
        }
    }

    /// Records the result of the run of `id`.
    pub(crate) fn finish(&self, id: &MessageId, text: Option<String>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.insert(id.clone(), Slot::Done { text, at: Instant::now() });
        self.done.notify_all();
    }

    /// Forgets a run of `id` that was stopped: the next delivery attempt runs it again.
    pub(crate) fn abandon(&self, id: &MessageId) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.remove(id);
        self.done.notify_all();
    }
}

/// Resolves the program of a command against the configuration's directory when it is a
/// relative path with a `/` (`./bin/stt`); names without `/` stay for a `PATH` lookup.
pub(crate) fn resolve_program(program: &str, base: Option<&Path>) -> String {
    match base {
        Some(base) if program.contains('/') && Path::new(program).is_relative() => {
            PathBuf::from(base).join(program).to_string_lossy().into_owned()
        }
        _ => program.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_or_appended() {
        let cmd = |args: &[&str]| args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let audio = Path::new("/spool/x.wav");
        assert_eq!(arguments(&cmd(&["stt", "-f", "{audio}", "-l", "ru"]), audio), ["-f", "/spool/x.wav", "-l", "ru"]);
        assert_eq!(arguments(&cmd(&["stt", "--in={audio}"]), audio), ["--in=/spool/x.wav"]);
        assert_eq!(arguments(&cmd(&["stt", "-q"]), audio), ["-q", "/spool/x.wav"]);
        assert_eq!(arguments(&cmd(&["stt"]), audio), ["/spool/x.wav"]);
    }

    #[test]
    fn output_is_sanitised() {
        assert_eq!(sanitize("  hello\r\nworld \x1b[1m!\x07\n\n\n\n\nend\t.\n", false), "hello\nworld [1m!\n\n\nend\t.");
        assert_eq!(sanitize("\u{feff}text\u{2028}more", true), "textmore…");
        assert_eq!(sanitize(" \n\t\n", true), "");
    }
}
