//! Delivery by IMAP APPEND into a server folder.
//!
//! This is a deliberately small IMAP4rev1 client (RFC 3501) over `std::net::TcpStream`, with
//! STARTTLS or implicit TLS (port 993, `tls = "implicit"`) through rustls (the same rustls
//! lettre already brings in); the server's certificate must chain to the webpki roots, or to
//! the CAs of `ca_file` instead. It speaks only what
//! delivery and the folder watcher ([`crate::imapsync`]) need: the greeting, `STARTTLS`,
//! `LOGIN`, `CAPABILITY`, `CREATE`, `EXAMINE`/`SELECT` (with `CONDSTORE`, RFC 7162),
//! `UID SEARCH HEADER Message-ID`, `UID SEARCH UID`, `UID FETCH (FLAGS)` (with
//! `CHANGEDSINCE`), `UID STORE +FLAGS.SILENT`, `APPEND` with flags and a synchronising
//! literal, `NOOP`, `IDLE` (RFC 2177) and `LOGOUT`.
//! Why not the `imap` crate: its stable release (2.4.1) does TLS only through native-tls
//! (OpenSSL) and pulls in nom 5, regex and chrono; the rustls-capable 3.0 line has been alpha
//! for years. A hundred lines of line-oriented protocol are easier to audit than that tree.
//!
//! Idempotency: before APPEND the folder is searched for the message's `Message-ID`; when it is
//! found, the delivery is acknowledged without a second APPEND. (A crash between the server's
//! `OK` to APPEND and the outbox recording it is therefore harmless too.)
//!
//! Timeouts: `connect_timeout` bounds the TCP connect (per resolved address) and the wait for
//! the greeting, `timeout` every later read and write. A failure names the step (`connect`,
//! `LOGIN`, `APPEND`, ...) and carries the server's reply; only a refusal of `APPEND` itself
//! is permanent, and not even that when a response code says it is temporary
//! ([`append_refusal_is_permanent`]).
//!
//! Every string sent is checked: user name, password and folder must not contain CR, LF or
//! NUL; they are sent as quoted strings, the folder name in modified UTF-7 (RFC 3501 §5.1.3);
//! keywords must be atoms.
//!
//! Server input is bounded and never trusted: a response (a line with its literals) longer
//! than 1 MiB, or more than 8 MiB of untagged responses to one command, ends the session with
//! an error; parenthesised lists are parsed to a bounded depth and length, numbers that do not
//! fit are ignored, server text in errors and logs is cut to 300 characters, and nothing the
//! server sends can make the client panic. Untagged responses are read wherever they come (`* n EXISTS`,
//! `* n EXPUNGE`, `* VANISHED`, `* n FETCH (UID x FLAGS (...) MODSEQ (y))`, `* FLAGS`,
//! `* OK [PERMANENTFLAGS ...]`, ...); an expunge is remembered for the watcher.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Ack, DeliveryError, ImapTarget, OutgoingEmail, Target, TlsMode, is_timeout};

/// How long the polite `LOGOUT` at the end may take.
const LOGOUT_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest server line (plus literals) accepted; longer ones are a protocol error.
const MAX_RESPONSE: usize = 1 << 20;

/// The most bytes of untagged responses kept for one command; more is a protocol error.
const MAX_UNTAGGED: usize = 8 << 20;

/// The most items of one parenthesised list that are parsed (the rest is ignored).
const MAX_LIST_ITEMS: usize = 4096;

/// The deepest nesting of parenthesised lists that is parsed.
const MAX_DEPTH: usize = 8;

/// The longest keyword sent or kept.
const MAX_KEYWORD_LEN: usize = 64;

/// UIDs named in one `UID FETCH`/`UID SEARCH UID` command (larger sets are split), so
/// command lines stay far below servers' limits.
const MAX_UIDS_PER_COMMAND: usize = 500;

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A tagged reply: `OK`, or the failure text of `NO`/`BAD`.
struct Tagged {
    untagged: Vec<Vec<u8>>,
    status_line: String,
}

/// One IMAP session (connection) to a target's server.
pub(crate) struct Session<'t> {
    target: &'t ImapTarget,
    stream: Option<Stream>,
    buf: Vec<u8>,
    next_tag: u32,
    /// The step errors are reported for (`connect`, `LOGIN`, ...).
    step: &'static str,
    /// The read/write timeout in force, for error messages.
    io_timeout: Duration,
    /// An `EXPUNGE` or `VANISHED` came since [`Session::take_expunged`] was last called.
    expunged: bool,
}

/// What `SELECT`/`EXAMINE` told about a folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SelectInfo {
    /// `[UIDVALIDITY n]`.
    pub(crate) uidvalidity: Option<u32>,
    /// `[HIGHESTMODSEQ n]` (RFC 7162); `None` with `[NOMODSEQ]` or without CONDSTORE.
    pub(crate) highest_modseq: Option<u64>,
    /// `* n EXISTS`.
    pub(crate) exists: Option<u32>,
    /// `[PERMANENTFLAGS (... \*)]`: new keywords can be set.
    pub(crate) new_keywords: bool,
    /// `[READ-ONLY]` in the tagged reply.
    pub(crate) read_only: bool,
}

/// One `* n FETCH (UID x FLAGS (...) MODSEQ (y))` response that carries a UID and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fetch {
    /// The message's UID.
    pub(crate) uid: u32,
    /// Its flags and keywords, as the server spelled them.
    pub(crate) flags: Vec<String>,
    /// Its `MODSEQ`, when the server sent one.
    pub(crate) modseq: Option<u64>,
}

/// Why [`Session::idle`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdleEnd {
    /// The server reported a change in the folder (`EXISTS`, `EXPUNGE`, `FETCH`, `VANISHED`).
    Changed,
    /// The caller's `interrupt` asked to stop.
    Interrupted,
    /// The deadline passed without a change.
    Timeout,
}

impl<'t> Session<'t> {
    /// A transient error of the current step.
    fn err(&self, message: impl Into<String>) -> DeliveryError {
        DeliveryError::Imap {
            host: self.target.host.clone(),
            port: self.target.port,
            step: self.step,
            message: message.into(),
            permanent: false,
        }
    }

    fn io_err(&self, doing: &str, e: &std::io::Error) -> DeliveryError {
        match (is_timeout(e), doing) {
            (true, "reading") => self.err(format!("no reply within {:?}", self.io_timeout)),
            (true, _) => self.err(format!("{doing}: no progress within {:?}", self.io_timeout)),
            (false, _) => self.err(format!("{doing}: {e}")),
        }
    }

    fn set_io_timeout(&mut self, timeout: Duration) -> Result<(), DeliveryError> {
        let tcp = match self.stream.as_ref() {
            Some(Stream::Plain(tcp)) => tcp,
            Some(Stream::Tls(tls)) => tls.get_ref(),
            None => return Err(self.err("not connected")),
        };
        tcp.set_read_timeout(Some(timeout))
            .and_then(|()| tcp.set_write_timeout(Some(timeout)))
            .map_err(|e| self.err(format!("setting the socket timeout: {e}")))?;
        self.io_timeout = timeout;
        Ok(())
    }

    fn connect(target: &'t ImapTarget, mode: TlsMode) -> Result<Self, DeliveryError> {
        let mut session = Session {
            target,
            stream: None,
            buf: Vec::new(),
            next_tag: 1,
            step: "connect",
            io_timeout: target.connect_timeout,
            expunged: false,
        };
        let addrs = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| session.err(format!("resolving: {e}")))?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, target.connect_timeout) {
                Ok(tcp) => {
                    session.stream = Some(Stream::Plain(tcp));
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if session.stream.is_none() {
            return Err(match last {
                Some(e) if is_timeout(&e) => {
                    session.err(format!("connecting: no answer within {:?}", target.connect_timeout))
                }
                Some(e) => session.err(format!("connecting: {e}")),
                None => session.err("connecting: no address"),
            });
        }
        // The greeting (after the handshake, with implicit TLS) belongs to connecting; every
        // later exchange gets `timeout`.
        session.set_io_timeout(target.connect_timeout)?;
        if mode == TlsMode::Implicit {
            session.start_tls()?;
        }
        let greeting = session.read_response()?;
        if !(greeting.starts_with(b"* OK") || greeting.starts_with(b"* PREAUTH")) {
            return Err(session.err(format!("unexpected greeting: {}", shown(&greeting))));
        }
        session.set_io_timeout(target.timeout)?;
        Ok(session)
    }

    fn stream(&mut self) -> Result<&mut Stream, DeliveryError> {
        match self.stream.as_mut() {
            Some(s) => Ok(s),
            None => Err(DeliveryError::Imap {
                host: self.target.host.clone(),
                port: self.target.port,
                step: self.step,
                message: "not connected".to_owned(),
                permanent: false,
            }),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), DeliveryError> {
        let res = self.stream()?.write_all(bytes).and_then(|()| self.stream_flush());
        res.map_err(|e| self.io_err("writing", &e))
    }

    fn stream_flush(&mut self) -> std::io::Result<()> {
        match self.stream.as_mut() {
            Some(s) => s.flush(),
            None => Ok(()),
        }
    }

    fn fill(&mut self) -> Result<(), DeliveryError> {
        let mut chunk = [0u8; 8192];
        let n = self.stream()?.read(&mut chunk).map_err(|e| self.io_err("reading", &e))?;
        if n == 0 {
            return Err(self.err("connection closed by server"));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        if self.buf.len() > MAX_RESPONSE {
            return Err(self.err("server response too long"));
        }
        Ok(())
    }

    /// One line without its CRLF.
    fn read_line(&mut self) -> Result<Vec<u8>, DeliveryError> {
        // Only the bytes not searched yet are searched (a long line arrives in many reads).
        let mut from = 0;
        loop {
            if let Some(pos) = self.buf[from..].windows(2).position(|w| w == b"\r\n") {
                let end = from + pos;
                let line = self.buf[..end].to_vec();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            from = self.buf.len().saturating_sub(1);
            self.fill()?;
        }
    }

    fn read_exact_bytes(&mut self, n: usize) -> Result<Vec<u8>, DeliveryError> {
        if n > MAX_RESPONSE {
            return Err(self.err("server literal too long"));
        }
        while self.buf.len() < n {
            self.fill()?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// One response: a line, plus any literals it announces (`{n}` at the end) and the lines
    /// that continue it.
    fn read_response(&mut self) -> Result<Vec<u8>, DeliveryError> {
        let mut response = self.read_line()?;
        while let Some(n) = literal_len(&response) {
            response.extend_from_slice(b"\r\n");
            let literal = self.read_exact_bytes(n)?;
            response.extend_from_slice(&literal);
            let more = self.read_line()?;
            response.extend_from_slice(&more);
            if response.len() > MAX_RESPONSE {
                return Err(self.err("server response too long"));
            }
        }
        Ok(response)
    }

    fn tag(&mut self) -> String {
        let tag = format!("V{}", self.next_tag);
        self.next_tag += 1;
        tag
    }

    /// Reads responses until the tagged one. `on_continuation` is called for a `+` reply.
    fn await_tagged(
        &mut self,
        tag: &str,
        mut on_continuation: impl FnMut(&mut Self) -> Result<(), DeliveryError>,
    ) -> Result<Tagged, DeliveryError> {
        let mut untagged = Vec::new();
        let mut kept = 0usize;
        let prefix = format!("{tag} ");
        loop {
            let response = self.read_response()?;
            if let Some(rest) = response.strip_prefix(prefix.as_bytes()) {
                let status_line = shown(rest);
                return Ok(Tagged { untagged, status_line });
            } else if response.starts_with(b"+") {
                on_continuation(self)?;
            } else if response.starts_with(b"* BYE") {
                return Err(self.err(format!("server closed the session: {}", shown(&response))));
            } else {
                self.note_untagged(&response);
                kept += response.len();
                if kept > MAX_UNTAGGED {
                    return Err(self.err("too many untagged responses"));
                }
                untagged.push(response);
            }
        }
    }

    /// Sends `command` as step `step` and returns the untagged replies; `NO`/`BAD` are
    /// (transient) errors carrying the reply.
    fn command(&mut self, step: &'static str, command: &str) -> Result<Vec<Vec<u8>>, DeliveryError> {
        let tagged = self.command_status(step, command)?;
        if is_ok(&tagged.status_line) { Ok(tagged.untagged) } else { Err(self.err(tagged.status_line)) }
    }

    fn command_status(&mut self, step: &'static str, command: &str) -> Result<Tagged, DeliveryError> {
        self.step = step;
        let tag = self.tag();
        self.write_all(format!("{tag} {command}\r\n").as_bytes())?;
        self.await_tagged(&tag, |s| Err(s.err("unexpected continuation request")))
    }

    fn starttls(&mut self) -> Result<(), DeliveryError> {
        self.command("STARTTLS", "STARTTLS")?;
        if !self.buf.is_empty() {
            // Anything the server sent before the handshake could be injected plaintext.
            return Err(self.err("data after STARTTLS reply"));
        }
        self.start_tls()?;
        // Make the handshake happen now, so certificate errors name STARTTLS.
        self.command("STARTTLS", "NOOP")?;
        Ok(())
    }

    /// Wraps the plain connection in TLS (the handshake happens on the first read or write).
    fn start_tls(&mut self) -> Result<(), DeliveryError> {
        let config_err = |what: &str, e: &dyn std::fmt::Display| {
            DeliveryError::Config(format!("imap tls {what} for host {:?}: {e}", self.target.host))
        };
        let Some(Stream::Plain(tcp)) = self.stream.take() else {
            return Err(self.err("TLS on a connection that is not plain"));
        };
        let mut roots = rustls::RootCertStore::empty();
        match &self.target.ca_file {
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Some(path) => {
                for certificate in super::read_ca_file(path).map_err(|e| config_err("ca_file", &e))? {
                    roots.add(certificate).map_err(|e| config_err("ca_file", &e))?;
                }
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| config_err("setup", &e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(self.target.host.clone())
            .map_err(|e| config_err("server name", &e))?;
        let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| config_err("setup", &e))?;
        self.stream = Some(Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))));
        Ok(())
    }

    /// APPENDs `bytes` to `mailbox` (quoted and encoded, [`quoted_mailbox`]) with `keywords`
    /// set; a refusal is permanent unless [`append_refusal_is_permanent`] says otherwise.
    /// Returns the tagged `OK` line (with `[APPENDUID v uid]` from UIDPLUS servers).
    pub(crate) fn append(&mut self, mailbox: &str, keywords: &[String], bytes: &[u8]) -> Result<String, DeliveryError> {
        self.step = "APPEND";
        let flags = flag_list(keywords)?;
        let flags = if flags.is_empty() { String::new() } else { format!("({flags}) ") };
        let tag = self.tag();
        self.write_all(format!("{tag} APPEND {mailbox} {flags}{{{}}}\r\n", bytes.len()).as_bytes())?;
        let mut sent = false;
        let tagged = self.await_tagged(&tag, |s| {
            if sent {
                return Err(s.err("unexpected second continuation request"));
            }
            sent = true;
            s.write_all(bytes)?;
            s.write_all(b"\r\n")
        })?;
        if is_ok(&tagged.status_line) {
            return Ok(tagged.status_line);
        }
        Err(DeliveryError::Imap {
            host: self.target.host.clone(),
            port: self.target.port,
            step: "APPEND",
            permanent: append_refusal_is_permanent(&tagged.status_line),
            message: tagged.status_line,
        })
    }

    /// Says goodbye, briefly and on a best-effort basis.
    pub(crate) fn logout(&mut self) {
        // Best effort, and short: the outcome is already known when this runs.
        if self.set_io_timeout(LOGOUT_TIMEOUT.min(self.target.timeout)).is_ok() {
            let _ = self.command_status("LOGOUT", "LOGOUT");
        }
    }

    /// Connects, upgrades with STARTTLS when the target asks for it, and logs in.
    pub(crate) fn open(target: &'t ImapTarget) -> Result<Self, DeliveryError> {
        let user = ImapTarget::config_quote("username", &target.username)?;
        let pass = ImapTarget::config_quote("password", &target.password)?;
        let mode = target.tls_mode()?;
        let mut session = Session::connect(target, mode)?;
        if mode == TlsMode::StartTls {
            session.starttls()?;
        }
        session.command("LOGIN", &format!("LOGIN {user} {pass}"))?;
        Ok(session)
    }

    /// Remembers an expunge reported by an untagged response.
    fn note_untagged(&mut self, response: &[u8]) {
        if matches!(classify(response), Untagged::Expunge | Untagged::Vanished) {
            self.expunged = true;
        }
    }

    /// Whether an `EXPUNGE` or `VANISHED` came since the last call; clears the mark.
    pub(crate) fn take_expunged(&mut self) -> bool {
        std::mem::take(&mut self.expunged)
    }

    /// The server's capabilities (`CAPABILITY`), upper-cased.
    pub(crate) fn capabilities(&mut self) -> Result<Vec<String>, DeliveryError> {
        let untagged = self.command("CAPABILITY", "CAPABILITY")?;
        Ok(untagged
            .iter()
            .filter_map(|r| strip_prefix_ignore_case(r, b"* CAPABILITY "))
            .flat_map(|rest| {
                String::from_utf8_lossy(rest).split_ascii_whitespace().map(str::to_ascii_uppercase).collect::<Vec<_>>()
            })
            .take(MAX_LIST_ITEMS)
            .collect())
    }

    /// `CREATE`s `mailbox` ([`quoted_mailbox`]); a `NO` (usually "already exists") is not an
    /// error: selecting the folder reports real problems.
    pub(crate) fn create(&mut self, mailbox: &str) -> Result<(), DeliveryError> {
        self.command_status("CREATE", &format!("CREATE {mailbox}")).map(|_| ())
    }

    /// `SELECT`s (read-write) `mailbox`, with `(CONDSTORE)` when asked (RFC 7162).
    pub(crate) fn select(&mut self, mailbox: &str, condstore: bool) -> Result<SelectInfo, DeliveryError> {
        let command = if condstore { format!("SELECT {mailbox} (CONDSTORE)") } else { format!("SELECT {mailbox}") };
        let tagged = self.command_status("SELECT", &command)?;
        if !is_ok(&tagged.status_line) {
            return Err(self.err(tagged.status_line));
        }
        let mut info = parse_select(&tagged.untagged);
        info.read_only = response_code(tagged.status_line.get(2..).unwrap_or("").as_bytes())
            .is_some_and(|code| code.eq_ignore_ascii_case("READ-ONLY"));
        Ok(info)
    }

    /// UIDs of the messages whose `Message-ID` header contains `message_id` (without angle
    /// brackets) in the selected folder.
    pub(crate) fn search_message_id(&mut self, message_id: &str) -> Result<Vec<u32>, DeliveryError> {
        let quoted = ImapTarget::config_quote("message id", &format!("<{message_id}>"))?;
        let found = self.command("SEARCH", &format!("UID SEARCH HEADER Message-ID {quoted}"))?;
        Ok(search_uids(&found))
    }

    /// Which of `uids` are still in the selected folder (`UID SEARCH UID set`).
    pub(crate) fn present(&mut self, uids: &[u32]) -> Result<Vec<u32>, DeliveryError> {
        let mut out = Vec::new();
        for chunk in sorted_unique(uids).chunks(MAX_UIDS_PER_COMMAND) {
            let found = self.command("SEARCH", &format!("UID SEARCH UID {}", uid_set(chunk)))?;
            out.extend(search_uids(&found));
        }
        Ok(out)
    }

    /// The flags of `uids` (`UID FETCH set (UID FLAGS)`, with `MODSEQ` when asked); with
    /// `changed_since` only of those whose `MODSEQ` is higher (`(CHANGEDSINCE n)`, RFC 7162).
    /// Unsolicited `FETCH` responses that carry a UID count too.
    pub(crate) fn fetch_flags(
        &mut self,
        uids: &[u32],
        changed_since: Option<u64>,
        with_modseq: bool,
    ) -> Result<Vec<Fetch>, DeliveryError> {
        let mut out = Vec::new();
        for chunk in sorted_unique(uids).chunks(MAX_UIDS_PER_COMMAND) {
            let modifier = changed_since.map(|m| format!(" (CHANGEDSINCE {m})")).unwrap_or_default();
            let items = if changed_since.is_some() || with_modseq { "(UID FLAGS MODSEQ)" } else { "(UID FLAGS)" };
            let untagged = self.command("FETCH", &format!("UID FETCH {} {items}{modifier}", uid_set(chunk)))?;
            out.extend(untagged.iter().filter_map(|r| parse_fetch(r)));
        }
        Ok(out)
    }

    /// Adds `keywords` to message `uid` (`UID STORE uid +FLAGS.SILENT (...)`). `Ok(Err(reply))`
    /// when the server refuses (`NO`: keywords not allowed in the folder, ...).
    pub(crate) fn add_keywords(&mut self, uid: u32, keywords: &[String]) -> Result<Result<(), String>, DeliveryError> {
        let flags = flag_list(keywords)?;
        if flags.is_empty() {
            return Ok(Ok(()));
        }
        let tagged = self.command_status("STORE", &format!("UID STORE {uid} +FLAGS.SILENT ({flags})"))?;
        Ok(if is_ok(&tagged.status_line) { Ok(()) } else { Err(tagged.status_line) })
    }

    /// `NOOP`: lets the server report what changed (`EXPUNGE`, `EXISTS`, `FETCH`).
    pub(crate) fn noop(&mut self) -> Result<(), DeliveryError> {
        self.command("NOOP", "NOOP").map(|_| ())
    }

    /// `IDLE` (RFC 2177) until the server reports a change in the folder, `until` passes, or
    /// `interrupt` (asked at least every `tick`) says so; then `DONE`.
    pub(crate) fn idle(
        &mut self,
        until: Instant,
        tick: Duration,
        interrupt: &mut dyn FnMut() -> bool,
    ) -> Result<IdleEnd, DeliveryError> {
        self.step = "IDLE";
        let tag = self.tag();
        self.write_all(format!("{tag} IDLE\r\n").as_bytes())?;
        let prefix = format!("{tag} ");
        loop {
            let response = self.read_response()?;
            if response.starts_with(b"+") {
                break;
            }
            if let Some(rest) = response.strip_prefix(prefix.as_bytes()) {
                return Err(self.err(format!("IDLE refused: {}", shown(rest))));
            }
            if response.starts_with(b"* BYE") {
                return Err(self.err(format!("server closed the session: {}", shown(&response))));
            }
            self.note_untagged(&response);
        }
        let end = loop {
            if interrupt() {
                break IdleEnd::Interrupted;
            }
            let now = Instant::now();
            if now >= until {
                break IdleEnd::Timeout;
            }
            let wait = tick.min(until - now).max(Duration::from_millis(10));
            self.set_io_timeout(wait)?;
            let ready = self.line_ready();
            self.set_io_timeout(self.target.timeout)?;
            if !ready? {
                continue;
            }
            let response = self.read_response()?;
            if response.starts_with(b"* BYE") {
                return Err(self.err(format!("server closed the session: {}", shown(&response))));
            }
            // The server ended IDLE by itself: no DONE to send.
            if let Some(rest) = response.strip_prefix(prefix.as_bytes()) {
                let status_line = shown(rest);
                return if is_ok(&status_line) { Ok(IdleEnd::Changed) } else { Err(self.err(status_line)) };
            }
            self.note_untagged(&response);
            if matches!(
                classify(&response),
                Untagged::Exists | Untagged::Expunge | Untagged::Fetch | Untagged::Vanished
            ) {
                break IdleEnd::Changed;
            }
        };
        self.write_all(b"DONE\r\n")?;
        let tagged = self.await_tagged(&tag, |s| Err(s.err("unexpected continuation request")))?;
        if !is_ok(&tagged.status_line) {
            return Err(self.err(tagged.status_line));
        }
        Ok(end)
    }

    /// Waits (at most the socket's read timeout) until a whole line is buffered; `false` when
    /// none came in time.
    fn line_ready(&mut self) -> Result<bool, DeliveryError> {
        if has_line(&self.buf) {
            return Ok(true);
        }
        let mut chunk = [0u8; 8192];
        match self.stream()?.read(&mut chunk) {
            Ok(0) => Err(self.err("connection closed by server")),
            Ok(n) => {
                let old = self.buf.len();
                self.buf.extend_from_slice(&chunk[..n]);
                if self.buf.len() > MAX_RESPONSE {
                    return Err(self.err("server response too long"));
                }
                Ok(has_line(&self.buf[old.saturating_sub(1)..]))
            }
            Err(e) if is_timeout(&e) || e.kind() == std::io::ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(self.io_err("reading", &e)),
        }
    }
}

/// `[APPENDUID uidvalidity uid]` (RFC 4315) in APPEND's tagged `OK` line.
pub(crate) fn append_uid(status_line: &str) -> Option<(u32, u32)> {
    let code = response_code(status_line.get(2..)?.as_bytes())?;
    let mut words = code.split_ascii_whitespace();
    if !words.next()?.eq_ignore_ascii_case("APPENDUID") {
        return None;
    }
    Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
}

/// Whether `buf` holds a CRLF.
fn has_line(buf: &[u8]) -> bool {
    buf.windows(2).any(|w| w == b"\r\n")
}

/// A server string for a message or a log: lossy UTF-8, control characters shown as spaces,
/// at most 300 characters.
fn shown(bytes: &[u8]) -> String {
    let text: String =
        String::from_utf8_lossy(bytes).chars().take(300).map(|c| if c.is_control() { ' ' } else { c }).collect();
    text
}

fn strip_prefix_ignore_case<'a>(bytes: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = bytes.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &bytes[prefix.len()..])
}

/// The kinds of untagged response the watcher cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Untagged {
    Exists,
    Expunge,
    Fetch,
    Vanished,
    Other,
}

fn classify(response: &[u8]) -> Untagged {
    let Some(rest) = response.strip_prefix(b"* ") else { return Untagged::Other };
    let mut words = rest.split(|&b| b == b' ');
    let first = words.next().unwrap_or_default();
    if first.eq_ignore_ascii_case(b"VANISHED") {
        return Untagged::Vanished;
    }
    if first.is_empty() || !first.iter().all(u8::is_ascii_digit) {
        return Untagged::Other;
    }
    let second = words.next().unwrap_or_default();
    if second.eq_ignore_ascii_case(b"EXISTS") {
        Untagged::Exists
    } else if second.eq_ignore_ascii_case(b"EXPUNGE") {
        Untagged::Expunge
    } else if second.eq_ignore_ascii_case(b"FETCH") {
        Untagged::Fetch
    } else {
        Untagged::Other
    }
}

/// Whether `keyword` can be sent as an IMAP keyword: an atom (RFC 3501 `atom`, no
/// `atom-specials` and not `]`), not a system flag, at most 64 bytes.
pub(crate) fn is_keyword(keyword: &str) -> bool {
    !keyword.is_empty()
        && keyword.len() <= MAX_KEYWORD_LEN
        && keyword.bytes().all(|b| (0x21..0x7f).contains(&b) && !b"(){%*\"\\]".contains(&b))
}

/// `kw1 kw2` for a flag list; an error when one is not a keyword.
fn flag_list(keywords: &[String]) -> Result<String, DeliveryError> {
    if let Some(bad) = keywords.iter().find(|k| !is_keyword(k)) {
        return Err(DeliveryError::Config(format!("{bad:?} is not an IMAP keyword")));
    }
    Ok(keywords.join(" "))
}

/// Sorted, without duplicates.
fn sorted_unique(uids: &[u32]) -> Vec<u32> {
    let mut v = uids.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// A UID set in ranges (`1:3,7,9:10`) of sorted, unique `uids`.
fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end.saturating_add(1) {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// The response code of a response text (`[UIDVALIDITY 3857529045] UIDs valid` →
/// `UIDVALIDITY 3857529045`), after `* OK ` or a tagged status.
fn response_code(text: &[u8]) -> Option<String> {
    let text = text.strip_prefix(b" ").unwrap_or(text);
    let inner = text.strip_prefix(b"[")?;
    let end = inner.iter().position(|&b| b == b']')?;
    Some(String::from_utf8_lossy(&inner[..end]).into_owned())
}

/// Reads `SELECT`'s untagged responses.
fn parse_select(untagged: &[Vec<u8>]) -> SelectInfo {
    let mut info = SelectInfo::default();
    for r in untagged {
        if let Some(text) = strip_prefix_ignore_case(r, b"* OK") {
            let Some(code) = response_code(text) else { continue };
            let (name, arg) = code.split_once(' ').unwrap_or((code.as_str(), ""));
            match name.to_ascii_uppercase().as_str() {
                "UIDVALIDITY" => info.uidvalidity = arg.trim().parse().ok(),
                "HIGHESTMODSEQ" => info.highest_modseq = arg.trim().parse().ok(),
                "NOMODSEQ" => info.highest_modseq = None,
                "PERMANENTFLAGS" => info.new_keywords = arg.split([' ', '(', ')']).any(|f| f == "\\*"),
                _ => {}
            }
        } else if let (Untagged::Exists, Some(rest)) = (classify(r), r.strip_prefix(b"* ")) {
            info.exists = std::str::from_utf8(rest).ok().and_then(|t| t.split(' ').next()).and_then(|n| n.parse().ok());
        }
    }
    info
}

/// A value in a server response: an atom or number, a string (quoted or literal), or a
/// parenthesised list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Atom(String),
    Str(Vec<u8>),
    List(Vec<Value>),
}

/// A bounded parser of IMAP values (RFC 3501 §4): atoms (with `[...]` sections kept whole),
/// quoted strings, literals as [`Session::read_response`] inlines them (`{n}` CRLF and `n`
/// bytes), and lists nested at most [`MAX_DEPTH`] deep with at most [`MAX_LIST_ITEMS`] items.
/// Malformed input yields `None`, never a panic.
struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a [u8]) -> Self {
        Parser { input, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        self.skip_spaces();
        match self.peek()? {
            b'(' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_spaces();
                    match self.peek()? {
                        b')' => {
                            self.pos += 1;
                            return Some(Value::List(items));
                        }
                        _ => {
                            let v = self.value(depth + 1)?;
                            if items.len() < MAX_LIST_ITEMS {
                                items.push(v);
                            }
                        }
                    }
                }
            }
            b'"' => {
                self.pos += 1;
                let mut out = Vec::new();
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.pos += 1;
                            return Some(Value::Str(out));
                        }
                        b'\\' => {
                            self.pos += 1;
                            out.push(self.peek()?);
                            self.pos += 1;
                        }
                        b => {
                            out.push(b);
                            self.pos += 1;
                        }
                    }
                }
            }
            b'{' => {
                let close = self.input[self.pos..].iter().position(|&b| b == b'}')? + self.pos;
                let digits = self.input.get(self.pos + 1..close)?;
                let digits = digits.strip_suffix(b"+").unwrap_or(digits);
                let n: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
                let start = close + 1;
                if self.input.get(start..start + 2)? != b"\r\n" {
                    return None;
                }
                let body = self.input.get(start + 2..start.checked_add(2)?.checked_add(n)?)?;
                self.pos = start + 2 + n;
                Some(Value::Str(body.to_vec()))
            }
            b')' => None,
            _ => {
                let start = self.pos;
                let mut brackets = 0usize;
                while let Some(b) = self.peek() {
                    match b {
                        b'[' => brackets += 1,
                        b']' => brackets = brackets.saturating_sub(1),
                        b' ' | b'(' | b')' if brackets == 0 => break,
                        b'\r' | b'\n' => break,
                        _ => {}
                    }
                    self.pos += 1;
                }
                if self.pos == start {
                    return None;
                }
                Some(Value::Atom(String::from_utf8_lossy(&self.input[start..self.pos]).into_owned()))
            }
        }
    }
}

/// Reads `* n FETCH (...)`; `None` unless it is one with a UID and flags.
fn parse_fetch(response: &[u8]) -> Option<Fetch> {
    if classify(response) != Untagged::Fetch {
        return None;
    }
    let open = response.iter().position(|&b| b == b'(')?;
    let Value::List(items) = Parser::new(&response[open..]).value(0)? else { return None };
    let (mut uid, mut flags, mut modseq) = (None, None, None);
    for pair in items.chunks(2) {
        let [Value::Atom(name), value] = pair else { continue };
        match (name.to_ascii_uppercase().as_str(), value) {
            ("UID", Value::Atom(n)) => uid = n.parse::<u32>().ok(),
            ("FLAGS", Value::List(list)) => {
                flags = Some(
                    list.iter()
                        .filter_map(|f| match f {
                            Value::Atom(a) if a.len() <= MAX_KEYWORD_LEN => Some(a.clone()),
                            _ => None,
                        })
                        .collect::<Vec<_>>(),
                )
            }
            ("MODSEQ", Value::List(list)) => {
                modseq = match list.first() {
                    Some(Value::Atom(n)) => n.parse::<u64>().ok(),
                    _ => None,
                }
            }
            _ => {}
        }
    }
    Some(Fetch { uid: uid?, flags: flags?, modseq })
}

/// The folder name as sent: non-empty, no control characters, modified UTF-7, quoted.
pub(crate) fn quoted_mailbox(folder: &str) -> Result<String, DeliveryError> {
    if folder.is_empty() || folder.chars().any(char::is_control) {
        return Err(DeliveryError::Config(format!(
            "imap folder {folder:?} must be non-empty without control characters"
        )));
    }
    ImapTarget::config_quote("folder", &encode_mailbox_name(folder))
}

/// Whether a `NO`/`BAD` reply to APPEND (`status_line`, without the tag) means the server will
/// not take this message however often it is asked. Temporary response codes say otherwise:
/// RFC 5530 `UNAVAILABLE`, `INUSE`, `LIMIT`, `OVERQUOTA`, `SERVERBUG`, `EXPUNGEISSUED`, and RFC
/// 3501 `TRYCREATE` (the next attempt creates the folder first); so does a reply without a code
/// that mentions a quota (servers older than RFC 5530 say "Quota exceeded").
pub(crate) fn append_refusal_is_permanent(status_line: &str) -> bool {
    const TEMPORARY: [&str; 7] =
        ["UNAVAILABLE", "INUSE", "LIMIT", "OVERQUOTA", "SERVERBUG", "EXPUNGEISSUED", "TRYCREATE"];
    let rest = status_line.split_once(' ').map_or("", |(_, rest)| rest.trim_start());
    if let Some(code) = rest.strip_prefix('[') {
        let atom: String = code.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        if TEMPORARY.iter().any(|t| t.eq_ignore_ascii_case(&atom)) {
            return false;
        }
    } else if rest.to_ascii_lowercase().contains("quota") {
        return false;
    }
    true
}

fn is_ok(status_line: &str) -> bool {
    status_line.get(..2).is_some_and(|s| s.eq_ignore_ascii_case("OK"))
}

/// `{123}` or `{123+}` at the end of a line.
fn literal_len(line: &[u8]) -> Option<usize> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// An IMAP quoted string; `None` if `s` holds CR, LF, NUL or non-ASCII (which would need a
/// literal).
fn quote(s: &str) -> Option<String> {
    if !s.is_ascii() || s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return None;
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Some(out)
}

/// Modified UTF-7 for mailbox names (RFC 3501 §5.1.3).
pub(crate) fn encode_mailbox_name(name: &str) -> String {
    fn flush(out: &mut String, pending: &mut Vec<u16>) {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&base64_mutf7(&bytes));
        out.push('-');
        pending.clear();
    }
    let mut out = String::new();
    let mut pending: Vec<u16> = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut out, &mut pending);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut out, &mut pending);
    out
}

/// Base64 with `,` instead of `/` and no padding (the modified UTF-7 alphabet).
fn base64_mutf7(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = ((n >> (18 - 6 * i)) & 0x3f) as usize;
            out.push(char::from(ALPHABET[idx]));
        }
    }
    out
}

/// The numbers of `* SEARCH 1 2 3` replies (a `(MODSEQ n)` at the end is not one of them;
/// numbers that do not fit are ignored).
fn search_uids(untagged: &[Vec<u8>]) -> Vec<u32> {
    untagged
        .iter()
        .filter_map(|r| strip_prefix_ignore_case(r, b"* SEARCH"))
        .flat_map(|rest| {
            let rest = rest.split(|&b| b == b'(').next().unwrap_or_default();
            String::from_utf8_lossy(rest)
                .split_ascii_whitespace()
                .filter_map(|w| w.parse::<u32>().ok())
                .take(MAX_LIST_ITEMS)
                .collect::<Vec<_>>()
        })
        .collect()
}

impl ImapTarget {
    pub(crate) fn config_quote(what: &str, value: &str) -> Result<String, DeliveryError> {
        quote(value).ok_or_else(|| DeliveryError::Config(format!("imap {what} must be ASCII without CR, LF or NUL")))
    }
}

impl Target for ImapTarget {
    fn key(&self) -> String {
        "imap".to_owned()
    }

    fn deliver(&self, email: &OutgoingEmail) -> Result<Ack, DeliveryError> {
        let mailbox = quoted_mailbox(&self.folder)?;
        Self::config_quote("message id", &format!("<{}>", email.message_id))?;
        flag_list(&email.keywords)?;

        let mut session = Session::open(self)?;
        // NO here usually means "already exists"; EXAMINE below reports real problems.
        session.create(&mailbox)?;
        session.command("EXAMINE", &format!("EXAMINE {mailbox}"))?;
        if !session.search_message_id(&email.message_id)?.is_empty() {
            session.logout();
            return Ok(Ack {
                detail: format!("already in {} ({})", self.folder, email.message_id),
                already_present: true,
            });
        }
        let status = session.append(&mailbox, &email.keywords, &email.bytes)?;
        session.logout();
        Ok(Ack { detail: format!("APPEND to {}: {status}", self.folder), already_present: false })
    }

    /// Every attempt searches the folder for the message's `Message-ID` first.
    fn finds_earlier_copies(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_utf7() {
        assert_eq!(encode_mailbox_name("Voicemail"), "Voicemail");
        assert_eq!(encode_mailbox_name("A&B"), "A&-B");
        assert_eq!(encode_mailbox_name("台北"), "&U,BTFw-");
        assert_eq!(encode_mailbox_name("~peter/mail/日本語/台北"), "~peter/mail/&ZeVnLIqe-/&U,BTFw-");
    }

    #[test]
    fn literals_and_quotes() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {42}"), Some(42));
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {42+}"), Some(42));
        assert_eq!(literal_len(b"* OK {abc}"), None);
        assert_eq!(quote("a\"b\\c").as_deref(), Some("\"a\\\"b\\\\c\""));
        assert_eq!(quote("a\r\nb"), None);
        assert_eq!(search_uids(&[b"* SEARCH 3 7".to_vec()]), [3, 7]);
        assert_eq!(search_uids(&[b"* SEARCH".to_vec()]), [] as [u32; 0]);
        assert_eq!(search_uids(&[b"* SEARCH 2 5 (MODSEQ 917162500)".to_vec()]), [2, 5]);
        assert_eq!(search_uids(&[b"* SEARCH 1 99999999999 x".to_vec()]), [1]);
    }

    #[test]
    fn append_refusals() {
        assert!(append_refusal_is_permanent("NO Message rejected"));
        assert!(append_refusal_is_permanent("NO [CANNOT] Message contains invalid headers"));
        assert!(append_refusal_is_permanent("BAD Invalid arguments"));
        assert!(append_refusal_is_permanent("NO"));
        for temporary in [
            "NO [OVERQUOTA] Quota exceeded (mailbox for user is full)",
            "NO [INUSE] Mailbox is locked",
            "NO [UNAVAILABLE] Backend down",
            "NO [LIMIT] Too many messages",
            "no [overquota] lower case",
            "NO [TRYCREATE] Mailbox doesn't exist",
            "NO Over quota",
        ] {
            assert!(!append_refusal_is_permanent(temporary), "{temporary}");
        }
    }

    #[test]
    fn fetch_responses() {
        let f = parse_fetch(b"* 12 FETCH (UID 42 FLAGS (\\Seen VM-Assigned) MODSEQ (1234))").unwrap();
        assert_eq!(f, Fetch { uid: 42, flags: vec!["\\Seen".into(), "VM-Assigned".into()], modseq: Some(1234) });
        let f = parse_fetch(b"* 1 fetch (flags () uid 7)").unwrap();
        assert_eq!((f.uid, f.flags.len(), f.modseq), (7, 0, None));
        // Unsolicited, without a UID (IDLE without QRESYNC): not usable.
        assert_eq!(parse_fetch(b"* 1 FETCH (MODSEQ (9) FLAGS (\\Deleted))"), None);
        // Other items, a literal and a section with a parenthesised list are skipped over.
        let raw = b"* 3 FETCH (BODY[HEADER.FIELDS (MESSAGE-ID)] {12}\r\nMessage-ID:x UID 5 FLAGS (a))";
        assert_eq!(parse_fetch(raw).unwrap().uid, 5);
        for bad in [
            &b"* 1 FETCH"[..],
            b"* 1 FETCH (",
            b"* 1 FETCH (UID",
            b"* 1 FETCH (UID 99999999999 FLAGS ())",
            b"* 1 FETCH (UID 1 FLAGS (((((((((((a))))))))))))",
            b"* 1 FETCH (UID 1 FLAGS {999}\r\nab)",
            b"* 1 FETCH (UID 1 FLAGS \"unterminated)",
            b"* x FETCH (UID 1 FLAGS ())",
        ] {
            assert_eq!(parse_fetch(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn untagged_kinds_and_select() {
        assert_eq!(classify(b"* 3 EXPUNGE"), Untagged::Expunge);
        assert_eq!(classify(b"* VANISHED (EARLIER) 1:3"), Untagged::Vanished);
        assert_eq!(classify(b"* 4 exists"), Untagged::Exists);
        assert_eq!(classify(b"* 4 FETCH (FLAGS ())"), Untagged::Fetch);
        assert_eq!(classify(b"* OK Still here"), Untagged::Other);
        assert_eq!(classify(b"* 4"), Untagged::Other);
        let untagged: Vec<Vec<u8>> = [
            &b"* FLAGS (\\Answered \\Seen VM-Assigned)"[..],
            b"* OK [PERMANENTFLAGS (\\Answered \\Seen VM-Assigned \\*)] Flags permitted.",
            b"* 3 EXISTS",
            b"* OK [UIDVALIDITY 1796147714] UIDs valid",
            b"* OK [HIGHESTMODSEQ 715194045007] Highest",
        ]
        .iter()
        .map(|r| r.to_vec())
        .collect();
        let info = parse_select(&untagged);
        assert_eq!(info.uidvalidity, Some(1_796_147_714));
        assert_eq!(info.highest_modseq, Some(715_194_045_007));
        assert_eq!(info.exists, Some(3));
        assert!(info.new_keywords);
        let info = parse_select(&[b"* OK [NOMODSEQ] none".to_vec(), b"* OK [UIDVALIDITY x]".to_vec()]);
        assert_eq!((info.uidvalidity, info.highest_modseq, info.new_keywords), (None, None, false));
        assert_eq!(response_code(b" [READ-ONLY] Select completed").as_deref(), Some("READ-ONLY"));
        assert_eq!(append_uid("OK [APPENDUID 1796147714 2] Append completed"), Some((1_796_147_714, 2)));
        assert_eq!(append_uid("OK Append completed"), None);
        assert_eq!(append_uid("OK [APPENDUID 1 x]"), None);
    }

    #[test]
    fn uid_sets_and_keywords() {
        assert_eq!(uid_set(&sorted_unique(&[7, 1, 2, 3, 9, 10, 3])), "1:3,7,9:10");
        assert_eq!(uid_set(&[u32::MAX]), u32::MAX.to_string());
        assert!(is_keyword("VM-CalledBack"));
        for bad in ["", "a b", "a(b", "\\Seen", "a]", "a\"b", "Зеленый", "x*"] {
            assert!(!is_keyword(bad), "{bad:?}");
        }
        assert!(flag_list(&["VM-Assigned".into(), "x y".into()]).is_err());
    }

    proptest::proptest! {
        /// Whatever the server sends, the parsers return (something or nothing) without
        /// panicking.
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut fetch = b"* 1 FETCH ".to_vec();
            fetch.extend_from_slice(&bytes);
            let _ = parse_fetch(&fetch);
            let _ = parse_fetch(&bytes);
            let _ = parse_select(&[bytes.clone(), fetch.clone()]);
            let _ = search_uids(std::slice::from_ref(&bytes));
            let _ = classify(&bytes);
            let _ = literal_len(&bytes);
            let _ = response_code(&bytes);
            let _ = append_uid(&String::from_utf8_lossy(&bytes));
        }
    }
}
