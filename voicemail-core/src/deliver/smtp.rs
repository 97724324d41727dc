//! Delivery by SMTP submission (lettre's blocking `SmtpConnection`, one command at a time).
//!
//! One connection per message: the greeting and `EHLO` (bounded by `connect_timeout`; with
//! `tls = "implicit"`, port 465, the TLS handshake comes first), then, each reply bounded by
//! `timeout`: `STARTTLS` (with `tls = "starttls"`: required, a server that does not offer it is
//! an error, never a plaintext fallback), `AUTH` when both user name and password are set, `MAIL FROM` / `RCPT TO`
//! for the target's recipients plus the message's extra ones (a client's manager), `DATA`, the
//! message and `QUIT`. TLS is rustls; the server's certificate must chain to the webpki root
//! certificates, or to the CAs of `ca_file` instead (a company CA, a self-signed server). The outbox marks the pair delivered right after the server's `250`; a
//! crash in between sends the message once more on restart, which is the "at most one
//! duplicate" SMTP allows.
//!
//! Driving the commands one by one (rather than lettre's `SmtpTransport::send_raw`) gives the
//! two timeouts and tells which command a refusal answered: only a 5xx reply to `MAIL FROM`,
//! `RCPT TO`, `DATA` or the message itself is a permanent failure.
//!
//! Bounds: a server that accepts the connection and never answers costs `connect_timeout`; one
//! that stops answering later costs `timeout` (plus at most one second for the `QUIT` after a
//! negative reply). One exception comes from lettre: when `EHLO` (inside its `connect`) or
//! `STARTTLS` gets no reply, lettre sends `QUIT` and waits for it once more, so such a stall
//! costs up to twice the bound in force.

use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{Certificate, CertificateStore, SmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Auth, Data, Mail, Quit, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;

use super::{Ack, DeliveryError, OutgoingEmail, SmtpTarget, Target, TlsMode, is_timeout, validate_address};

/// How long the polite `QUIT` at the end may take; the outcome is already known by then.
const QUIT_TIMEOUT: Duration = Duration::from_secs(1);

impl SmtpTarget {
    /// The envelope recipients for `email`: the target's own, then the message's extra ones,
    /// without duplicates (compared case-insensitively).
    pub fn recipients_for(&self, email: &OutgoingEmail) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.to.iter().chain(email.extra_recipients.iter()) {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(r)) {
                out.push(r.clone());
            }
        }
        out
    }

    fn parse_address(addr: &str) -> Result<Address, DeliveryError> {
        validate_address(addr)?;
        Address::from_str(addr).map_err(|_| DeliveryError::InvalidAddress(addr.to_owned()))
    }

    fn credentials(&self) -> Result<Option<Credentials>, DeliveryError> {
        match (&self.username, &self.password) {
            (Some(user), Some(pass)) => Ok(Some(Credentials::new(user.clone(), pass.clone()))),
            (None, None) => Ok(None),
            _ => Err(DeliveryError::Config("smtp username and password must be set together".to_owned())),
        }
    }

    fn error(&self, step: impl Into<String>, code: Option<u16>, message: String, permanent: bool) -> DeliveryError {
        DeliveryError::Smtp { host: self.host.clone(), port: self.port, step: step.into(), code, message, permanent }
    }

    /// Converts lettre's error for `step`. `waited` is the timeout in force, for the message.
    /// A negative reply keeps its code and text; it is permanent only if `transaction` (the
    /// step is `MAIL FROM`, `RCPT TO`, `DATA` or the message) and the code is 5xx.
    fn lettre_error(
        &self,
        step: impl Into<String>,
        e: &SmtpError,
        waited: Duration,
        transaction: bool,
    ) -> DeliveryError {
        if let Some(code) = e.status() {
            let code = u16::from(code);
            let text = std::error::Error::source(e).map(ToString::to_string).unwrap_or_default();
            let message = if text.is_empty() { code.to_string() } else { format!("{code} {text}") };
            return self.error(step, Some(code), message, transaction && (500..600).contains(&code));
        }
        let mut source = std::error::Error::source(e);
        while let Some(err) = source {
            if let Some(io) = err.downcast_ref::<std::io::Error>()
                && is_timeout(io)
            {
                return self.error(step, None, format!("no reply within {waited:?}"), false);
            }
            source = err.source();
        }
        self.error(step, None, e.to_string(), false)
    }

    /// Sends one transaction command; a refusal is permanent when it is a 5xx.
    fn transaction_step<C: Display>(
        &self,
        conn: &mut SmtpConnection,
        step: impl Into<String>,
        command: C,
    ) -> Result<Response, DeliveryError> {
        conn.command(command).map_err(|e| self.lettre_error(step, &e, self.timeout, true))
    }
}

/// Sends `QUIT` and closes, waiting at most [`QUIT_TIMEOUT`] for the reply. Used when the
/// server is responsive (after its last reply, positive or negative); after a timeout or a
/// broken connection the connection is just dropped (closed) instead.
fn quit(mut conn: SmtpConnection, timeout: Duration) {
    if conn.set_timeout(Some(QUIT_TIMEOUT.min(timeout))).is_ok() {
        let _ = conn.command(Quit);
    }
}

impl Target for SmtpTarget {
    fn key(&self) -> String {
        "smtp".to_owned()
    }

    fn deliver(&self, email: &OutgoingEmail) -> Result<Ack, DeliveryError> {
        let from = Self::parse_address(&self.from)?;
        let recipients = self.recipients_for(email);
        if recipients.is_empty() {
            return Err(DeliveryError::NoRecipients);
        }
        let to = recipients.iter().map(|r| Self::parse_address(r)).collect::<Result<Vec<_>, _>>()?;
        let envelope =
            Envelope::new(Some(from), to).map_err(|e| DeliveryError::Config(format!("smtp envelope: {e}")))?;
        let credentials = self.credentials()?;
        let mode = self.tls_mode()?;
        let tls = match mode {
            TlsMode::None => None,
            TlsMode::StartTls | TlsMode::Implicit => Some(self.tls_parameters()?),
        };
        let implicit = if mode == TlsMode::Implicit { tls.as_ref() } else { None };
        let hello = ClientId::default();

        // lettre reads the greeting and the EHLO reply inside `connect` (after the handshake
        // with implicit TLS), with the timeout it is given; everything after that gets `timeout`.
        let mut conn = SmtpConnection::connect(
            (self.host.as_str(), self.port),
            Some(self.connect_timeout),
            &hello,
            implicit,
            None,
        )
        .map_err(|e| self.lettre_error("connect", &e, self.connect_timeout, false))?;
        conn.set_timeout(Some(self.timeout))
            .map_err(|e| self.error("connect", None, format!("setting the socket timeout: {e}"), false))?;

        if let (TlsMode::StartTls, Some(tls)) = (mode, &tls) {
            if !conn.server_info().supports_feature(Extension::StartTls) {
                quit(conn, self.timeout);
                return Err(self.error(
                    "STARTTLS",
                    None,
                    "the server does not offer STARTTLS, which this target requires".to_owned(),
                    false,
                ));
            }
            conn.starttls(tls, &hello).map_err(|e| self.lettre_error("STARTTLS", &e, self.timeout, false))?;
        }
        if let Some(credentials) = &credentials
            && let Err(err) = self.auth(&mut conn, credentials)
        {
            if matches!(err, DeliveryError::Smtp { code: Some(_), .. }) {
                quit(conn, self.timeout);
            }
            return Err(err);
        }

        match self.transaction(&mut conn, &envelope, email) {
            Ok(response) => {
                quit(conn, self.timeout);
                let text: Vec<&str> = response.message().collect();
                Ok(Ack {
                    detail: format!("{} to {}: {}", response.code(), recipients.join(", "), text.join(" ")),
                    already_present: false,
                })
            }
            Err(err) => {
                // A negative reply leaves a working session: close it politely. After a
                // timeout or a broken connection, dropping it closes the socket at once.
                if matches!(err, DeliveryError::Smtp { code: Some(_), .. }) {
                    quit(conn, self.timeout);
                }
                Err(err)
            }
        }
    }
}

impl SmtpTarget {
    /// rustls parameters for the host: the webpki roots, or the CAs of `ca_file` instead.
    fn tls_parameters(&self) -> Result<TlsParameters, DeliveryError> {
        let config = |e: String| DeliveryError::Config(format!("smtp tls for host {:?}: {e}", self.host));
        let mut builder = TlsParameters::builder(self.host.clone());
        if let Some(path) = &self.ca_file {
            // Read here too, so that a bad file is a clear configuration error.
            super::read_ca_file(path).map_err(config)?;
            let pem = std::fs::read(path).map_err(|e| config(format!("ca_file {}: {e}", path.display())))?;
            let certificate = Certificate::from_pem(&pem).map_err(|e| config(e.to_string()))?;
            builder = builder.certificate_store(CertificateStore::None).add_root_certificate(certificate);
        }
        builder.build().map_err(|e| config(e.to_string()))
    }

    /// `AUTH` with the first of lettre's default mechanisms (PLAIN, LOGIN) the server offers,
    /// answering its challenges. Driven here rather than by `SmtpConnection::auth`, whose
    /// error path sends `QUIT` and waits for it once more.
    fn auth(&self, conn: &mut SmtpConnection, credentials: &Credentials) -> Result<(), DeliveryError> {
        let mechanism = conn.server_info().get_auth_mechanism(DEFAULT_MECHANISMS).ok_or_else(|| {
            self.error(
                "AUTH",
                None,
                "the server offers no AUTH mechanism this client supports (PLAIN, LOGIN)".to_owned(),
                false,
            )
        })?;
        let fail = |e: &SmtpError| self.lettre_error("AUTH", e, self.timeout, false);
        let command = Auth::new(mechanism, credentials.clone(), None).map_err(|e| fail(&e))?;
        let mut response = conn.command(command).map_err(|e| fail(&e))?;
        // A challenge (334) is answered; PLAIN needs none, LOGIN two. More is a broken server.
        for _ in 0..4 {
            if !response.has_code(334) {
                return Ok(());
            }
            let command = Auth::new_from_response(mechanism, credentials.clone(), &response).map_err(|e| fail(&e))?;
            response = conn.command(command).map_err(|e| fail(&e))?;
        }
        Err(self.error("AUTH", None, "too many authentication challenges".to_owned(), false))
    }

    /// `MAIL FROM`, `RCPT TO` for each recipient, `DATA` and the message; the server's reply
    /// to the final dot.
    fn transaction(
        &self,
        conn: &mut SmtpConnection,
        envelope: &Envelope,
        email: &OutgoingEmail,
    ) -> Result<Response, DeliveryError> {
        let mut options = Vec::new();
        let server = conn.server_info();
        let addresses_ascii =
            envelope.from().into_iter().chain(envelope.to()).all(|a| AsRef::<str>::as_ref(a).is_ascii());
        if !addresses_ascii {
            if !server.supports_feature(Extension::SmtpUtfEight) {
                return Err(self.error(
                    "MAIL FROM",
                    None,
                    "non-ASCII address but the server does not offer SMTPUTF8".to_owned(),
                    true,
                ));
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        if !email.bytes.is_ascii() {
            if !server.supports_feature(Extension::EightBitMime) {
                return Err(self.error(
                    "MAIL FROM",
                    None,
                    "8-bit message but the server does not offer 8BITMIME".to_owned(),
                    true,
                ));
            }
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        self.transaction_step(conn, "MAIL FROM", Mail::new(envelope.from().cloned(), options))?;
        for rcpt in envelope.to() {
            self.transaction_step(conn, format!("RCPT TO:<{rcpt}>"), Rcpt::new(rcpt.clone(), Vec::new()))?;
        }
        self.transaction_step(conn, "DATA", Data)?;
        conn.message(&email.bytes).map_err(|e| self.lettre_error("end of DATA", &e, self.timeout, true))
    }
}
