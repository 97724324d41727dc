//! Registration of accounts with SIP registrars (RFC 3261 §10), with digest authentication
//! (RFC 2617 / RFC 7616, MD5 with `qop=auth`, as rsipstack implements it).
//!
//! [`spawn_registrations`] starts one task per [`Account`]. Each task uses rsipstack's
//! [`Registration::keep_alive`]: REGISTER at once (answering a 401/407 challenge with the
//! account's credentials), refresh at 75 % of the lifetime the registrar granted, and after a
//! failure retry with a backoff of 1, 2, 4, … up to 60 s. [`RegistrationHandle::status`] tells how
//! each account is doing; [`RegistrationHandle::shutdown`] stops the refreshes and removes each
//! binding with `Expires: 0`.
//!
//! The endpoint passed in must be served (`Endpoint::serve`) for the responses to arrive.
//!
//! **Logging.** rsipstack logs every SIP message it sends or receives at INFO level, including the
//! `Authorization` header of an authenticated REGISTER. Run with `rsipstack=warn` (for example
//! `RUST_LOG=info,rsipstack=warn`) in production. This module never logs a header or a password;
//! [`Account`]'s `Debug` output hides the password.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::registration::{RefreshOutcome, Registration};
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Auth, Param, Response, Scheme, Uri};
use rsipstack::transaction::endpoint::EndpointInnerRef;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Registration lifetime asked for when an account does not say (seconds).
pub const DEFAULT_EXPIRES: u32 = 600;

/// How long [`RegistrationHandle::shutdown`] waits for each unregistration (`Expires: 0`).
pub const UNREGISTER_TIMEOUT: Duration = Duration::from_secs(5);

fn default_expires() -> u32 {
    DEFAULT_EXPIRES
}

/// One account to keep registered, as read from the configuration file.
///
/// ```toml
/// [[account]]
/// registrar = "sip:pbx.example.com:5060"
/// username = "voicemail"
/// password = "secret"
/// expires = 600            # optional, seconds
/// contact_user = "vm"      # optional, the user part of our Contact
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// The registrar's URI, e.g. `sip:pbx.example.com:5060` (`;transport=tcp` for TCP). It is the
    /// Request-URI of the REGISTER; the address of record is `sip:<username>@<its host>`.
    pub registrar: String,
    /// User part of the address of record, also the digest user name.
    pub username: String,
    /// Digest password. Never logged.
    pub password: String,
    /// Registration lifetime to ask for, in seconds (the registrar may grant less).
    #[serde(default = "default_expires")]
    pub expires: u32,
    /// User part of our Contact (where the registrar sends calls), if not `username`.
    #[serde(default)]
    pub contact_user: Option<String>,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("registrar", &self.registrar)
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .field("expires", &self.expires)
            .field("contact_user", &self.contact_user)
            .finish()
    }
}

/// Errors found before any REGISTER is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The registrar is not a SIP URI.
    #[error("invalid registrar uri {uri:?}: {reason}")]
    InvalidRegistrar {
        /// The configured value.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The user name (or contact user) is empty or contains characters not allowed in a SIP URI
    /// user part.
    #[error("invalid user name {0:?}")]
    InvalidUser(String),
    /// `expires` is 0, which would unregister instead of register.
    #[error("expires must be at least 1 second")]
    ZeroExpires,
    /// Must be called from within a tokio runtime.
    #[error("no tokio runtime")]
    NoRuntime,
}

/// Where one account's registration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationState {
    /// The first REGISTER has not been answered yet.
    Pending,
    /// The registrar accepted the binding for `expires` seconds; it is refreshed at 75 %.
    Registered {
        /// Lifetime granted by the registrar, in seconds.
        expires: u32,
    },
    /// The last attempt failed; the next one follows after a backoff (1 s doubling, at most 60 s).
    Failing {
        /// Why the last attempt failed (status line or transport error; no header values).
        last_error: String,
        /// Consecutive failed attempts.
        failures: u32,
    },
    /// Stopped: the binding was removed (`Expires: 0`) or the task was shut down.
    Unregistered,
}

/// Status of one account, in the order the accounts were given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountStatus {
    /// The account's registrar URI.
    pub registrar: String,
    /// The account's user name.
    pub username: String,
    /// Where the registration stands.
    pub state: RegistrationState,
}

/// Running registrations: status queries and shutdown.
///
/// Dropping the handle stops the refreshes too (each task still unregisters in the background);
/// call [`RegistrationHandle::shutdown`] to wait for the unregistrations.
#[derive(Debug)]
pub struct RegistrationHandle {
    status: watch::Receiver<Vec<AccountStatus>>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl RegistrationHandle {
    /// The current status of every account.
    pub fn status(&self) -> Vec<AccountStatus> {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change (also after [`RegistrationHandle::shutdown`]).
    ///
    /// Do not hold the guard of `borrow()` or `wait_for()` across an `.await` or while calling
    /// [`RegistrationHandle::status`]: the registration tasks cannot publish while it is held.
    pub fn watch(&self) -> watch::Receiver<Vec<AccountStatus>> {
        self.status.clone()
    }

    /// Whether every account is registered right now.
    pub fn all_registered(&self) -> bool {
        self.status.borrow().iter().all(|s| matches!(s.state, RegistrationState::Registered { .. }))
    }

    /// Waits until every account is registered, or `timeout` passes. Returns whether they are.
    pub async fn wait_registered(&self, timeout: Duration) -> bool {
        let mut status = self.status.clone();
        let all = |s: &Vec<AccountStatus>| s.iter().all(|s| matches!(s.state, RegistrationState::Registered { .. }));
        matches!(tokio::time::timeout(timeout, status.wait_for(all)).await, Ok(Ok(_)))
    }

    /// Stops refreshing, unregisters every account that was registered (`Expires: 0`, at most
    /// [`UNREGISTER_TIMEOUT`] each, in parallel) and waits for the tasks to end.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        for task in std::mem::take(&mut self.tasks) {
            // A task that panicked has nothing left to clean up; its error is not ours to report.
            let _ = task.await;
        }
    }
}

impl Drop for RegistrationHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Starts keeping every account registered through `endpoint` (see the module docs).
///
/// `cancel` stops all registrations as [`RegistrationHandle::shutdown`] does (a child token is
/// used, so cancelling the handle does not cancel `cancel`). Must be called within a tokio
/// runtime.
///
/// # Errors
/// A [`RegisterError`] when an account is unusable (bad registrar URI or user name, zero
/// expiry); nothing is started then.
pub fn spawn_registrations(
    endpoint: EndpointInnerRef,
    accounts: Vec<Account>,
    cancel: &CancellationToken,
) -> Result<RegistrationHandle, RegisterError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| RegisterError::NoRuntime)?;
    let mut prepared = Vec::with_capacity(accounts.len());
    for account in accounts {
        let registrar = parse_registrar(&account.registrar)?;
        check_user(&account.username)?;
        if let Some(user) = &account.contact_user {
            check_user(user)?;
        }
        if account.expires == 0 {
            return Err(RegisterError::ZeroExpires);
        }
        prepared.push((account, registrar));
    }

    let initial = prepared
        .iter()
        .map(|(account, _)| AccountStatus {
            registrar: account.registrar.clone(),
            username: account.username.clone(),
            state: RegistrationState::Pending,
        })
        .collect();
    let (status_tx, status_rx) = watch::channel(initial);
    let status_tx = Arc::new(status_tx);
    let cancel = cancel.child_token();
    let tasks = prepared
        .into_iter()
        .enumerate()
        .map(|(index, (account, registrar))| {
            let task = AccountTask {
                endpoint: endpoint.clone(),
                account,
                registrar,
                index,
                status: status_tx.clone(),
                cancel: cancel.clone(),
            };
            runtime.spawn(task.run())
        })
        .collect();
    Ok(RegistrationHandle { status: status_rx, cancel, tasks })
}

fn parse_registrar(uri: &str) -> Result<Uri, RegisterError> {
    let invalid = |reason: &str| RegisterError::InvalidRegistrar { uri: uri.to_owned(), reason: reason.to_owned() };
    let trimmed = uri.trim();
    if !trimmed.get(..4).is_some_and(|scheme| scheme.eq_ignore_ascii_case("sip:")) {
        return Err(invalid("expected a sip: URI such as sip:pbx.example.com:5060"));
    }
    if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("contains white space"));
    }
    let parsed = Uri::try_from(trimmed).map_err(|e| invalid(&e.to_string()))?;
    match parsed.scheme {
        Some(Scheme::Sip) => Ok(parsed),
        _ => Err(invalid("expected a sip: URI such as sip:pbx.example.com:5060")),
    }
}

/// RFC 3261 `user`: unreserved, escaped and user-unreserved characters.
fn check_user(user: &str) -> Result<(), RegisterError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/%".contains(c);
    if user.is_empty() || !user.chars().all(allowed) {
        return Err(RegisterError::InvalidUser(user.to_owned()));
    }
    Ok(())
}

/// The lifetime the registrar granted, as far as the response tells (for status only; the
/// refresh timing is rsipstack's, from the same response).
fn granted_expires(response: &Response, requested: u32) -> u32 {
    let contacts = response.typed_contact_headers().unwrap_or_default();
    if let [only] = contacts.as_slice()
        && let Some(expires) = only.expires()
    {
        return expires;
    }
    response.expires_header().and_then(|h| h.value().trim().parse().ok()).unwrap_or(requested)
}

struct AccountTask {
    endpoint: EndpointInnerRef,
    account: Account,
    registrar: Uri,
    index: usize,
    status: Arc<watch::Sender<Vec<AccountStatus>>>,
    cancel: CancellationToken,
}

impl AccountTask {
    fn set_state(&self, state: RegistrationState) {
        self.status.send_modify(|all| {
            if let Some(status) = all.get_mut(self.index) {
                status.state = state;
            }
        });
    }

    /// Our Contact when `contact_user` is set: that user at the endpoint's address for the
    /// registrar's transport.
    fn contact(&self) -> Option<rsipstack::sip::typed::Contact> {
        let user = self.account.contact_user.clone()?;
        let transport = self.registrar.params.iter().find_map(|p| match p {
            Param::Transport(t) => Some(*t),
            _ => None,
        });
        let addrs = self.endpoint.get_addrs();
        let local = addrs
            .iter()
            .find(|a| {
                a.r#type == transport || (transport.is_none() && a.r#type == Some(rsipstack::sip::Transport::Udp))
            })
            .or(addrs.first())?;
        let params = transport.map(|t| vec![Param::Transport(t)]).unwrap_or_default();
        Some(rsipstack::sip::typed::Contact {
            display_name: None,
            uri: Uri {
                scheme: Some(Scheme::Sip),
                auth: Some(Auth { user, password: None }),
                host_with_port: local.addr.clone(),
                params,
                headers: vec![],
            },
            params: vec![],
        })
    }

    async fn run(self) {
        let credential = Credential {
            username: self.account.username.clone(),
            password: self.account.password.clone(),
            realm: None,
            auth_username: None,
        };
        let mut registration = Registration::new(self.endpoint.clone(), Some(credential));
        registration.contact = self.contact();
        let requested = self.account.expires;
        let registrar = self.account.registrar.as_str();
        let user = self.account.username.as_str();
        let mut failures = 0u32;
        let mut ever_registered = false;

        let on_result = |outcome: RefreshOutcome<'_>| {
            let (state, failed) = match outcome {
                RefreshOutcome::Registered(response) => {
                    let expires = granted_expires(response, requested);
                    if failures > 0 || !ever_registered {
                        tracing::info!(registrar, user, expires, "registered");
                    } else {
                        tracing::debug!(registrar, user, expires, "registration refreshed");
                    }
                    failures = 0;
                    ever_registered = true;
                    (RegistrationState::Registered { expires }, None)
                }
                RefreshOutcome::Rejected(response) => {
                    let reason = format!("registrar answered {}", response.status_code);
                    (RegistrationState::Pending, Some(reason))
                }
                RefreshOutcome::Failed(error) => (RegistrationState::Pending, Some(shorten(&error.to_string()))),
            };
            match failed {
                None => self.set_state(state),
                Some(last_error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(registrar, user, failures, error = %last_error, "registration failed");
                    self.set_state(RegistrationState::Failing { last_error, failures });
                }
            }
        };

        // keep_alive only looks at the token between attempts; racing it against the token
        // also stops a REGISTER transaction that is still waiting for its timeout.
        tokio::select! {
            () = registration.keep_alive(self.registrar.clone(), requested, self.cancel.clone(), on_result) => {}
            () = self.cancel.cancelled() => {}
        }

        if registration.granted_expires.is_some() {
            match tokio::time::timeout(UNREGISTER_TIMEOUT, registration.register(self.registrar.clone(), Some(0))).await
            {
                Ok(Ok(response)) if response.status_code.kind() == rsipstack::sip::StatusCodeKind::Successful => {
                    tracing::info!(registrar, user, "unregistered");
                }
                Ok(Ok(response)) => {
                    tracing::warn!(registrar, user, status = %response.status_code, "unregistration refused");
                }
                Ok(Err(error)) => {
                    tracing::warn!(registrar, user, error = %shorten(&error.to_string()), "unregistration failed");
                }
                Err(_) => tracing::warn!(registrar, user, "unregistration timed out"),
            }
        }
        self.set_state(RegistrationState::Unregistered);
    }
}

/// An error text cut to a size fit for a status line or a log field.
fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(MAX).collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_from_toml_with_defaults() {
        let account: Account =
            toml::from_str("registrar = \"sip:127.0.0.1:5070\"\nusername = \"vm\"\npassword = \"pw\"\n").unwrap();
        assert_eq!(account.expires, DEFAULT_EXPIRES);
        assert_eq!(account.contact_user, None);
        let unknown = toml::from_str::<Account>(
            "registrar = \"sip:127.0.0.1\"\nusername = \"vm\"\npassword = \"pw\"\nrealm = \"x\"\n",
        );
        assert!(unknown.is_err());
    }

    #[test]
    fn debug_hides_the_password() {
        let account = Account {
            registrar: "sip:127.0.0.1".into(),
            username: "vm".into(),
            password: "hunter2".into(),
            expires: 60,
            contact_user: None,
        };
        let text = format!("{account:?}");
        assert!(!text.contains("hunter2") && text.contains("<hidden>"), "{text}");
    }

    #[test]
    fn registrar_and_user_validation() {
        assert!(parse_registrar("sip:127.0.0.1:5070").is_ok());
        assert!(parse_registrar("sip:pbx.example.com;transport=tcp").is_ok());
        for bad in ["not a uri", "sip:pbx example.com", "pbx.example.com", "tel:+4930123"] {
            assert!(matches!(parse_registrar(bad), Err(RegisterError::InvalidRegistrar { .. })), "{bad}");
        }
        assert!(matches!(parse_registrar("sips:pbx.example.com"), Err(RegisterError::InvalidRegistrar { .. })));
        assert!(check_user("voicemail").is_ok());
        assert!(check_user("+4930123").is_ok());
        for bad in ["", "a b", "a@b", "a\r\nVia: x", "é"] {
            assert!(check_user(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn granted_expiry_from_response() {
        let response = |extra: &str| -> Response {
            format!(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n\
                 To: <sip:a@h>;tag=2\r\nCall-ID: x\r\nCSeq: 2 REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
            )
            .as_str()
            .try_into()
            .unwrap()
        };
        assert_eq!(granted_expires(&response("Contact: <sip:a@127.0.0.1:5062>;expires=120\r\n"), 600), 120);
        assert_eq!(granted_expires(&response("Expires: 300\r\n"), 600), 300);
        assert_eq!(granted_expires(&response(""), 600), 600);
    }

    #[tokio::test]
    async fn spawn_rejects_bad_accounts_before_starting() {
        let endpoint = rsipstack::EndpointBuilder::new().build();
        let good = Account {
            registrar: "sip:127.0.0.1:5070".into(),
            username: "vm".into(),
            password: "pw".into(),
            expires: 60,
            contact_user: None,
        };
        let zero = Account { expires: 0, ..good.clone() };
        let cancel = CancellationToken::new();
        let result = spawn_registrations(endpoint.inner.clone(), vec![good.clone(), zero], &cancel);
        assert!(matches!(result, Err(RegisterError::ZeroExpires)));
        let bad_user = Account { contact_user: Some("x y".into()), ..good };
        let result = spawn_registrations(endpoint.inner.clone(), vec![bad_user], &cancel);
        assert!(matches!(result, Err(RegisterError::InvalidUser(_))));
        let handle = spawn_registrations(endpoint.inner.clone(), vec![], &cancel).unwrap();
        assert!(handle.all_registered() && handle.status().is_empty());
        handle.shutdown().await;
    }
}
