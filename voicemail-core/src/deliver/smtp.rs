//! Delivery by SMTP submission (lettre's blocking `SmtpTransport`, `send_raw`).
//!
//! One connection per message: `EHLO`, optional `STARTTLS` (required when configured, rustls
//! with the webpki root certificates), optional `AUTH`, then `MAIL FROM` / `RCPT TO` for the
//! target's recipients plus the message's extra ones (a client's manager) and `DATA`. The
//! outbox marks the pair delivered right after the server's `250`; a crash in between sends
//! the message once more on restart, which is the "at most one duplicate" SMTP allows.

use std::str::FromStr;
use std::time::Duration;

use lettre::Transport;
use lettre::address::{Address, Envelope};
use lettre::transport::smtp::SmtpTransport;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};

use super::{Ack, DeliveryError, OutgoingEmail, SmtpTarget, Target, validate_address};

/// Timeout for each SMTP command (connect, each reply).
const SMTP_TIMEOUT: Duration = Duration::from_secs(60);

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

    fn smtp_error(&self, message: String, permanent: bool) -> DeliveryError {
        DeliveryError::Smtp { host: self.host.clone(), port: self.port, message, permanent }
    }

    fn parse_address(addr: &str) -> Result<Address, DeliveryError> {
        validate_address(addr)?;
        Address::from_str(addr).map_err(|_| DeliveryError::InvalidAddress(addr.to_owned()))
    }

    fn transport(&self) -> Result<SmtpTransport, DeliveryError> {
        let mut builder =
            SmtpTransport::builder_dangerous(self.host.as_str()).port(self.port).timeout(Some(SMTP_TIMEOUT));
        if self.starttls {
            let params =
                TlsParameters::new(self.host.clone()).map_err(|e| self.smtp_error(format!("tls setup: {e}"), true))?;
            builder = builder.tls(Tls::Required(params));
        }
        match (&self.username, &self.password) {
            (Some(user), Some(pass)) => {
                builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
            }
            (None, None) => {}
            _ => {
                return Err(DeliveryError::Config("smtp username and password must be set together".to_owned()));
            }
        }
        Ok(builder.build())
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
        let envelope = Envelope::new(Some(from), to).map_err(|e| self.smtp_error(format!("envelope: {e}"), true))?;
        let transport = self.transport()?;
        let response = transport
            .send_raw(&envelope, &email.bytes)
            .map_err(|e| self.smtp_error(e.to_string(), e.is_permanent()))?;
        let text: Vec<&str> = response.message().collect();
        Ok(Ack {
            detail: format!("{} to {}: {}", response.code(), recipients.join(", "), text.join(" ")),
            already_present: false,
        })
    }
}
