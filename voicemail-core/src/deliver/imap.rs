//! Delivery by IMAP APPEND into a server folder.
//!
//! This is a deliberately small IMAP4rev1 client (RFC 3501) over `std::net::TcpStream`, with
//! STARTTLS or implicit TLS (port 993, `tls = "implicit"`) through rustls (the same rustls
//! lettre already brings in); the server's certificate must chain to the webpki roots, or to
//! the CAs of `ca_file` instead. It speaks only what
//! delivery needs: the greeting, `STARTTLS`, `LOGIN`, `CREATE`, `EXAMINE`,
//! `UID SEARCH HEADER Message-ID`, `APPEND` with a synchronising literal, and `LOGOUT`.
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
//! NUL; they are sent as quoted strings, the folder name in modified UTF-7 (RFC 3501 §5.1.3).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use super::{Ack, DeliveryError, ImapTarget, OutgoingEmail, Target, TlsMode, is_timeout};

/// How long the polite `LOGOUT` at the end may take.
const LOGOUT_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest server line (plus literals) accepted; longer ones are a protocol error.
const MAX_RESPONSE: usize = 1 << 20;

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

struct Session<'t> {
    target: &'t ImapTarget,
    stream: Option<Stream>,
    buf: Vec<u8>,
    next_tag: u32,
    /// The step errors are reported for (`connect`, `LOGIN`, ...).
    step: &'static str,
    /// The read/write timeout in force, for error messages.
    io_timeout: Duration,
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
            return Err(session.err(format!("unexpected greeting: {}", String::from_utf8_lossy(&greeting))));
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
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..pos].to_vec();
                self.buf.drain(..pos + 2);
                return Ok(line);
            }
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
        let prefix = format!("{tag} ");
        loop {
            let response = self.read_response()?;
            if let Some(rest) = response.strip_prefix(prefix.as_bytes()) {
                let status_line = String::from_utf8_lossy(rest).into_owned();
                return Ok(Tagged { untagged, status_line });
            } else if response.starts_with(b"+") {
                on_continuation(self)?;
            } else if response.starts_with(b"* BYE") {
                return Err(self.err(format!("server closed the session: {}", String::from_utf8_lossy(&response))));
            } else {
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

    /// APPENDs `bytes`; a refusal is permanent unless [`append_refusal_is_permanent`] says
    /// otherwise.
    fn append(&mut self, mailbox: &str, bytes: &[u8]) -> Result<String, DeliveryError> {
        self.step = "APPEND";
        let tag = self.tag();
        self.write_all(format!("{tag} APPEND {mailbox} {{{}}}\r\n", bytes.len()).as_bytes())?;
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

    fn logout(&mut self) {
        // Best effort, and short: the outcome is already known when this runs.
        if self.set_io_timeout(LOGOUT_TIMEOUT.min(self.target.timeout)).is_ok() {
            let _ = self.command_status("LOGOUT", "LOGOUT");
        }
    }
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

/// Numbers in `* SEARCH 1 2 3` replies.
fn search_hits(untagged: &[Vec<u8>]) -> usize {
    untagged
        .iter()
        .filter_map(|r| r.strip_prefix(b"* SEARCH"))
        .map(|rest| {
            String::from_utf8_lossy(rest)
                .split_ascii_whitespace()
                .filter(|w| w.bytes().all(|b| b.is_ascii_digit()))
                .count()
        })
        .sum()
}

impl ImapTarget {
    fn config_quote(what: &str, value: &str) -> Result<String, DeliveryError> {
        quote(value).ok_or_else(|| DeliveryError::Config(format!("imap {what} must be ASCII without CR, LF or NUL")))
    }
}

impl Target for ImapTarget {
    fn key(&self) -> String {
        "imap".to_owned()
    }

    fn deliver(&self, email: &OutgoingEmail) -> Result<Ack, DeliveryError> {
        let user = Self::config_quote("username", &self.username)?;
        let pass = Self::config_quote("password", &self.password)?;
        if self.folder.is_empty() || self.folder.chars().any(char::is_control) {
            return Err(DeliveryError::Config(format!(
                "imap folder {:?} must be non-empty without control characters",
                self.folder
            )));
        }
        let mailbox = Self::config_quote("folder", &encode_mailbox_name(&self.folder))?;
        let message_id = Self::config_quote("message id", &format!("<{}>", email.message_id))?;

        let mode = self.tls_mode()?;
        let mut session = Session::connect(self, mode)?;
        if mode == TlsMode::StartTls {
            session.starttls()?;
        }
        session.command("LOGIN", &format!("LOGIN {user} {pass}"))?;
        // NO here usually means "already exists"; EXAMINE below reports real problems.
        let _ = session.command_status("CREATE", &format!("CREATE {mailbox}"))?;
        session.command("EXAMINE", &format!("EXAMINE {mailbox}"))?;
        let found = session.command("SEARCH", &format!("UID SEARCH HEADER Message-ID {message_id}"))?;
        if search_hits(&found) > 0 {
            session.logout();
            return Ok(Ack {
                detail: format!("already in {} ({})", self.folder, email.message_id),
                already_present: true,
            });
        }
        let status = session.append(&mailbox, &email.bytes)?;
        session.logout();
        Ok(Ack { detail: format!("APPEND to {}: {status}", self.folder), already_present: false })
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
        assert_eq!(search_hits(&[b"* SEARCH 3 7".to_vec()]), 2);
        assert_eq!(search_hits(&[b"* SEARCH".to_vec()]), 0);
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
}
