//! Registration of accounts with SIP registrars (RFC 3261 §10), with digest authentication
//! (RFC 2617 / RFC 7616, MD5 with `qop=auth`, as rsipstack implements it).
//!
//! [`spawn_registrations`] starts one task per [`Account`]. Each task uses rsipstack's
//! [`Registration::keep_alive`]: REGISTER at once (answering a 401/407 challenge with the
//! account's credentials), refresh at 75 % of the lifetime the registrar granted, and after a
//! failure retry with a backoff of 1, 2, 4, … up to 60 s.
//!
//! **Transports.** The registrar's URI chooses the transport: `sip:host` UDP,
//! `sip:host;transport=tcp` TCP, `sips:host` or `sip:host;transport=tls` TLS (the server's
//! certificate is checked against `[sip] tls_ca_file`, see [`crate::tls`]). The registered
//! Contact names where the endpoint *listens* for that transport ([`LocalContacts`]): its
//! advertised address and listening port, with `;transport=tcp`, `;transport=tls` or a
//! `sips:` scheme; never the ephemeral port of the REGISTER's own connection, which a
//! registrar could not reach once that connection is gone. Over TCP and TLS the connection is
//! kept open between refreshes with the double-CRLF keep-alive of RFC 5626 §4.4.1 every
//! [`RegistrationOptions::keepalive`] (which also keeps our own `[sip] idle_timeout` and the
//! registrar's from closing it), so calls can come back on it too.
//!
//! **Per account**: an outbound proxy (where REGISTERs are sent, the registrar URI staying the
//! Request-URI), a digest user name other than the AOR user (`auth_username`), and the realm
//! the credentials are for (`realm`: a challenge from another realm is not answered). [`RegistrationHandle::status`] tells how
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
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::registration::{RefreshOutcome, Registration};
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Auth, Param, Response, Scheme, Transport, Uri};
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
/// auth_username = "4711"   # optional, the digest user name when it is not `username`
/// realm = "pbx.example.com" # optional, answer challenges of this realm only
/// outbound_proxy = "sip:192.0.2.1:5060"   # optional, where REGISTERs are sent
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
    /// The digest user name (an "authentication ID"), when it is not `username`.
    #[serde(default)]
    pub auth_username: Option<String>,
    /// The realm the credentials are for; a challenge from another realm is not answered.
    /// `None`: whatever realm the registrar names.
    #[serde(default)]
    pub realm: Option<String>,
    /// Where REGISTERs are sent instead of the registrar's host (a SIP URI whose host is an IP
    /// address or a name that resolves; its port, default 5060, or 5061 for TLS). The
    /// registrar URI stays the Request-URI and chooses the transport.
    #[serde(default)]
    pub outbound_proxy: Option<String>,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("registrar", &self.registrar)
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .field("expires", &self.expires)
            .field("contact_user", &self.contact_user)
            .field("auth_username", &self.auth_username)
            .field("realm", &self.realm)
            .field("outbound_proxy", &self.outbound_proxy)
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
    /// The outbound proxy is not a SIP URI with a host that resolves.
    #[error("invalid outbound proxy {uri:?}: {reason}")]
    InvalidOutboundProxy {
        /// The configured value.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Where the endpoint listens, per transport, as written into a registered Contact: the
/// advertised address with the listening port (`None`: no listener for that transport).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LocalContacts {
    /// The UDP listener.
    pub udp: Option<SocketAddr>,
    /// The TCP listener.
    pub tcp: Option<SocketAddr>,
    /// The TLS listener.
    pub tls: Option<SocketAddr>,
}

/// How [`spawn_registrations_with`] registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrationOptions {
    /// The listening addresses for our Contact; when the registrar's transport has none, the
    /// Contact is the address of the connection the REGISTER goes out on (as rsipstack makes it).
    pub contacts: LocalContacts,
    /// How often a TCP or TLS registration's connection gets a CRLF keep-alive
    /// ([`DEFAULT_KEEPALIVE`]). Keep it below the `idle_timeout` of both sides.
    pub keepalive: Duration,
}

/// The default [`RegistrationOptions::keepalive`]: 30 s, below Kamailio's default TCP
/// connection lifetime (120 s) and our own `idle_timeout` (300 s).
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(30);

impl Default for RegistrationOptions {
    fn default() -> Self {
        RegistrationOptions { contacts: LocalContacts::default(), keepalive: DEFAULT_KEEPALIVE }
    }
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
    let listen = endpoint.transport_layer.get_listen_addrs();
    let find = |t: rsipstack::sip::Transport| {
        listen.iter().find(|a| a.r#type == Some(t)).and_then(|a| a.get_socketaddr().ok())
    };
    let contacts = LocalContacts {
        udp: find(rsipstack::sip::Transport::Udp),
        tcp: find(rsipstack::sip::Transport::Tcp),
        tls: find(rsipstack::sip::Transport::Tls),
    };
    spawn_registrations_with(endpoint, accounts, RegistrationOptions { contacts, ..Default::default() }, cancel)
}

/// [`spawn_registrations`] with the Contact addresses and keep-alive interval of `options`.
///
/// # Errors
/// As [`spawn_registrations`], and [`RegisterError::InvalidOutboundProxy`].
pub fn spawn_registrations_with(
    endpoint: EndpointInnerRef,
    accounts: Vec<Account>,
    options: RegistrationOptions,
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
        if let Some(user) = &account.auth_username {
            check_user(user)?;
        }
        if account.expires == 0 {
            return Err(RegisterError::ZeroExpires);
        }
        let proxy = account.outbound_proxy.as_deref().map(|p| parse_outbound_proxy(p, &registrar)).transpose()?;
        prepared.push((account, registrar, proxy));
    }

    let initial = prepared
        .iter()
        .map(|(account, _, _)| AccountStatus {
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
        .map(|(index, (account, registrar, proxy))| {
            let task = AccountTask {
                endpoint: endpoint.clone(),
                account,
                registrar,
                proxy,
                options,
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
    const EXPECTED: &str = "expected a sip: or sips: URI such as sip:pbx.example.com:5060";
    let trimmed = uri.trim();
    let scheme_ok = trimmed.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("sip:"))
        || trimmed.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("sips:"));
    if !scheme_ok {
        return Err(invalid(EXPECTED));
    }
    if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("contains white space"));
    }
    let parsed = Uri::try_from(trimmed).map_err(|e| invalid(&e.to_string()))?;
    match (&parsed.scheme, transport_of(&parsed)) {
        (Some(Scheme::Sip), Some(Transport::Udp | Transport::Tcp | Transport::Tls) | None) => Ok(parsed),
        (Some(Scheme::Sips), Some(Transport::Tls | Transport::Tcp) | None) => Ok(parsed),
        (Some(Scheme::Sip | Scheme::Sips), Some(other)) => Err(invalid(&format!("transport {other} is not supported"))),
        _ => Err(invalid(EXPECTED)),
    }
}

/// The transport a registrar URI asks for: its `transport` parameter, TLS for `sips:`, else UDP.
fn transport_of(uri: &Uri) -> Option<Transport> {
    uri.params.iter().find_map(|p| match p {
        Param::Transport(t) => Some(*t),
        _ => None,
    })
}

/// The registrar's transport: its `transport` parameter, TLS for `sips:` (RFC 3261 §26.2),
/// else UDP.
fn registrar_transport(uri: &Uri) -> Transport {
    match (transport_of(uri), &uri.scheme) {
        (_, Some(Scheme::Sips)) => Transport::Tls,
        (Some(t), _) => t,
        (None, _) => Transport::Udp,
    }
}

/// The outbound proxy's socket address: its host (resolved once, here) and port (5060, or
/// 5061 when the registrar's transport is TLS).
fn parse_outbound_proxy(uri: &str, registrar: &Uri) -> Result<SocketAddr, RegisterError> {
    let invalid = |reason: String| RegisterError::InvalidOutboundProxy { uri: uri.to_owned(), reason };
    let parsed = Uri::try_from(uri.trim()).map_err(|e| invalid(e.to_string()))?;
    let default_port = if registrar_transport(registrar) == Transport::Tls { 5061 } else { 5060 };
    let port = parsed.host_with_port.port.as_ref().map_or(default_port, |p| p.value());
    let host = parsed.host_with_port.host.to_string();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host, port)
        .to_socket_addrs()
        .map_err(|e| invalid(format!("cannot resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| invalid(format!("{host} has no address")))
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
    /// Where REGISTERs go instead of the registrar's host.
    proxy: Option<SocketAddr>,
    options: RegistrationOptions,
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

    /// Our Contact: the contact user (or the AOR user) at the endpoint's listening address for
    /// the registrar's transport, `;transport=tcp`/`;transport=tls` for those, `sips:` for a
    /// `sips:` registrar. `None` when the endpoint has no listener for that transport (then
    /// rsipstack's own Contact is used: the REGISTER's connection address).
    fn contact(&self) -> Option<rsipstack::sip::typed::Contact> {
        let user = self.account.contact_user.clone().unwrap_or_else(|| self.account.username.clone());
        let transport = registrar_transport(&self.registrar);
        let contacts = self.options.contacts;
        let addr = match transport {
            Transport::Udp => contacts.udp,
            Transport::Tcp => contacts.tcp,
            Transport::Tls => contacts.tls,
            _ => None,
        }?;
        let sips = matches!(self.registrar.scheme, Some(Scheme::Sips));
        let params = match (transport, sips) {
            (Transport::Udp, _) | (Transport::Tls, true) => vec![],
            (t, _) => vec![Param::Transport(t)],
        };
        Some(rsipstack::sip::typed::Contact {
            display_name: None,
            uri: Uri {
                scheme: Some(if sips { Scheme::Sips } else { Scheme::Sip }),
                auth: Some(Auth { user, password: None }),
                host_with_port: addr.into(),
                params,
                headers: vec![],
            },
            params: vec![],
        })
    }

    /// Over TCP and TLS: a CRLF keep-alive on the registration's connection every
    /// [`RegistrationOptions::keepalive`], until `cancel` (RFC 5626 §4.4.1). The connection is
    /// looked up as the REGISTERs find it (a closed one is opened again by the next REGISTER).
    async fn keep_connection_alive(&self) {
        let transport = registrar_transport(&self.registrar);
        if !matches!(transport, Transport::Tcp | Transport::Tls) || self.options.keepalive.is_zero() {
            return std::future::pending().await;
        }
        let Some(target) = self.stream_target() else { return std::future::pending().await };
        let mut ticks = tokio::time::interval(self.options.keepalive);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is at once
        loop {
            ticks.tick().await;
            match self.endpoint.transport_layer.lookup(&target, None).await {
                Ok((connection, _)) => {
                    if let Err(e) = connection.send_keepalive().await {
                        tracing::debug!(registrar = %self.account.registrar, error = %e, "keep-alive");
                    }
                }
                Err(e) => tracing::debug!(registrar = %self.account.registrar, error = %e, "keep-alive: no connection"),
            }
        }
    }

    /// Where REGISTERs go over TCP or TLS: the outbound proxy, else the registrar URI's
    /// address; `None` over UDP.
    fn stream_target(&self) -> Option<rsipstack::transport::SipAddr> {
        let transport = registrar_transport(&self.registrar);
        if !matches!(transport, Transport::Tcp | Transport::Tls) {
            return None;
        }
        match self.proxy {
            Some(proxy) => {
                let mut addr = rsipstack::transport::SipAddr::from(proxy);
                addr.r#type = Some(transport);
                Some(addr)
            }
            None => rsipstack::transport::SipAddr::try_from(&self.registrar).ok(),
        }
    }

    /// Over TCP and TLS, connects before the first REGISTER: a connection that cannot be made
    /// (refused, a certificate not trusted) is reported at once with its reason, which the
    /// SIP stack would only turn into a 408 after Timer B (it retries on its own).
    async fn probe_connection(&self) {
        let Some(target) = self.stream_target() else { return };
        if let Err(e) = self.endpoint.transport_layer.lookup(&target, None).await {
            let last_error = shorten(&format!("connecting to {target}: {e}"));
            tracing::warn!(registrar = %self.account.registrar, user = %self.account.username, error = %last_error, "registration failed");
            self.set_state(RegistrationState::Failing { last_error, failures: 1 });
        }
    }

    async fn run(self) {
        self.probe_connection().await;
        let credential = Credential {
            username: self.account.username.clone(),
            password: self.account.password.clone(),
            realm: self.account.realm.clone(),
            auth_username: self.account.auth_username.clone(),
        };
        let mut registration = Registration::new(self.endpoint.clone(), Some(credential));
        registration.contact = self.contact();
        // Our Contact names where we listen: never the REGISTER connection's ephemeral port.
        registration.fixed_contact = registration.contact.is_some();
        registration.outbound_proxy = self.proxy;
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
            () = self.keep_connection_alive() => {}
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
            "registrar = \"sip:127.0.0.1\"\nusername = \"vm\"\npassword = \"pw\"\nproxy = \"x\"\n",
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
            auth_username: None,
            realm: None,
            outbound_proxy: None,
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
        assert!(parse_registrar("sips:pbx.example.com").is_ok());
        assert!(parse_registrar("sip:pbx.example.com;transport=tls").is_ok());
        assert!(matches!(parse_registrar("sip:pbx;transport=ws"), Err(RegisterError::InvalidRegistrar { .. })));
        let tls = parse_registrar("sips:pbx.example.com").unwrap();
        assert_eq!(registrar_transport(&tls), Transport::Tls);
        assert_eq!(registrar_transport(&parse_registrar("sip:pbx;transport=tcp").unwrap()), Transport::Tcp);
        assert_eq!(registrar_transport(&parse_registrar("sip:pbx").unwrap()), Transport::Udp);
        assert_eq!(parse_outbound_proxy("sip:127.0.0.1", &tls).unwrap().to_string(), "127.0.0.1:5061");
        assert!(parse_outbound_proxy("sip:127.0.0.1:5070", &tls).unwrap().to_string().ends_with(":5070"));
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
            auth_username: None,
            realm: None,
            outbound_proxy: None,
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
