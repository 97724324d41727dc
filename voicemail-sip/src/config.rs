//! The endpoint's settings: the `[sip]` table of the mailbox's TOML file.
//!
//! voicemail-core keeps `[sip]` as a raw table ([`Config::sip`](voicemail_core::config::Config));
//! [`SipConfig::from_table`] validates it strictly, like the rest of the file: it deserialises
//! the table with serde into a private `RawSip` (`deny_unknown_fields`, key paths from
//! `serde_path_to_error`), then checks the values. An unknown key, a value of the wrong type
//! or an invalid value is an error that names the key (`sip.rtp_ports: ...`,
//! `sip.accounts[0].username: ...`). Every key may be left out; `examples/voicemail.toml`
//! documents them.
//!
//! ```toml
//! [sip]
//! listen = "127.0.0.1:5060"        # UDP and TCP
//! transports = ["udp", "tcp"]
//! advertise_ip = "192.0.2.10"      # Contact and SDP address, when listen is a wildcard
//! rtp_ports = "20000-20999"        # even ports are used
//! shared_rtp_ports = 0             # per media thread; 0: an RTP port per call
//! max_calls = 100                  # more get 503 + Retry-After (a proxy tries another node)
//! ring_delay = "0s"                # between 180 Ringing and 200 OK
//! allow_from = ["127.0.0.1", "192.0.2.0/24"]   # empty: INVITEs from anywhere, PAI from nobody
//! user = "voicemail"               # user part of our Contact
//! max_connections = 256            # TCP connections open at once; more are closed at once
//! max_connections_per_source = 32  # the same, per remote IP address
//! idle_timeout = "300s"            # a TCP connection that sends nothing this long is closed
//! invite_rate = 10                 # INVITEs per second and source; more get 503 (0: no limit)
//! invite_burst = 50                # INVITEs one source may send at once before the rate applies
//! tls_listen = "127.0.0.1:5061"    # SIP over TLS (`sips:`, `;transport=tls`)
//! tls_certificate = "/etc/voicemail/sip.crt"   # PEM chain, leaf first
//! tls_private_key = "/etc/voicemail/sip.key"   # PEM, PKCS#8 or PKCS#1
//! tls_ca_file = "/etc/voicemail/ca.pem"        # CAs trusted for outgoing TLS (default: the system's)
//! srtp = "optional"                # "off", "optional" or "required" (SDES, RFC 4568)
//! ack_timeout = "32s"              # a 200 OK not ACKed this long: the call is dropped, no message
//!
//! [[sip.accounts]]                 # optional registrations
//! registrar = "sip:pbx.example.com"
//! username = "voicemail"
//! password = "secret"
//! expires = 600
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

// The accounts to register and the message-waiting configuration are part of `[sip]`.
pub use crate::mwi::{Manager, MwiConfig};
pub use crate::register::Account;
pub use crate::srtp::SrtpMode;

/// Why the `[sip]` table is not valid. The message names the key (`sip.max_calls`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SipConfigError {
    /// The key path, like `sip.rtp_ports` or `sip.accounts[0].username`.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl SipConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into() }
    }
}

/// One entry of the INVITE source allow-list: an address or a CIDR network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrRule {
    /// The network address.
    pub addr: IpAddr,
    /// The prefix length (32 or 128 for a single address).
    pub prefix: u8,
}

impl AddrRule {
    /// Parses `"192.0.2.1"`, `"192.0.2.0/24"`, `"::1"` or `"2001:db8::/32"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("expected an IP address or CIDR network like \"192.0.2.0/24\", found {text:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("prefix length must be 0..={max}, found {text:?}")),
            },
        };
        Ok(Self { addr: normalize(addr), prefix })
    }

    /// Whether `ip` lies inside this rule (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, normalize(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_match(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_match(&net.octets(), &ip.octets(), self.prefix),
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses as their IPv4 address.
pub(crate) fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_match(net: &[u8], ip: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if net.get(..full) != ip.get(..full) {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    match (net.get(full), ip.get(full)) {
        (Some(a), Some(b)) => a & mask == b & mask,
        _ => false,
    }
}

/// The SIP endpoint's settings. [`SipConfig::default`] is what an absent `[sip]` table means.
#[derive(Debug, Clone, PartialEq)]
pub struct SipConfig {
    /// Address and port SIP listens on, for UDP and TCP (`listen`, default `127.0.0.1:5060`).
    /// Port 0 picks a free port (the same for UDP and TCP); see
    /// [`Endpoint::local_addr`](crate::Endpoint::local_addr).
    pub listen: SocketAddr,
    /// Listen on UDP (`transports` contains `"udp"`; default true).
    pub udp: bool,
    /// Listen on TCP (`transports` contains `"tcp"`; default true).
    pub tcp: bool,
    /// The address written into Contact and SDP (`advertise_ip`); default: the listen address.
    /// Required when `listen` is a wildcard address.
    pub advertise_ip: Option<IpAddr>,
    /// The RTP port range, inclusive (`rtp_ports`, default `"20000-20999"`); even ports only.
    pub rtp_ports: (u16, u16),
    /// RTP ports per media thread that all its calls share (`shared_rtp_ports`, default 0:
    /// every call has a port of its own). Sharing a few ports reads many calls' packets with
    /// one system call, for thousands of calls at once; datagrams are told apart by the
    /// caller's address and SSRC, and a caller behind NAT (RTP from another address than its
    /// SDP names) is latched only while it is the one new call from its SIP address.
    /// The ports come from `rtp_ports`, bound at start.
    pub shared_rtp_ports: usize,
    /// The most calls at once (`max_calls`, default 100); more INVITEs get 503 Service
    /// Unavailable with `Retry-After: 5` (the server is full, not the callee busy: a proxy in
    /// front of several nodes tries the next).
    pub max_calls: usize,
    /// Time between 180 Ringing and 200 OK (`ring_delay`, default `"0s"`).
    pub ring_delay: Duration,
    /// Sources INVITEs are accepted from (`allow_from`); empty accepts every source. Only
    /// from these sources are P-Asserted-Identity and Remote-Party-ID believed (empty: from
    /// none).
    pub allow_from: Vec<AddrRule>,
    /// User part of our Contact (`user`, default `"voicemail"`).
    pub user: String,
    /// Accounts to REGISTER with a registrar (`[[sip.accounts]]`).
    pub accounts: Vec<Account>,
    /// The most TCP connections open at once (`max_connections`, default 256); a connection
    /// accepted beyond it is closed at once. Outbound ones count too.
    pub max_connections: usize,
    /// The most TCP connections open at once from one IP address
    /// (`max_connections_per_source`, default 32).
    pub max_connections_per_source: usize,
    /// A TCP connection that sends nothing (not even a keep-alive) for this long is closed
    /// (`idle_timeout`, default `"300s"`).
    pub idle_timeout: Duration,
    /// The per-source INVITE rate limit: INVITEs per second that one IP address may send in
    /// the long run (`invite_rate`, default 10; 0 turns the limit off). Beyond it INVITEs get
    /// 503 Service Unavailable with `Retry-After`.
    pub invite_rate: f64,
    /// How many INVITEs one IP address may send at once before [`SipConfig::invite_rate`]
    /// applies (`invite_burst`, default 50).
    pub invite_burst: u32,
    /// How long the endpoint waits for the ACK of its 200 OK (`ack_timeout`, default `"32s"`,
    /// 64·T1 as RFC 3261 §13.3.1.4 says). A call not ACKed by then is hung up with BYE, its
    /// call slot freed, and it leaves no message (it is logged with the caller's number).
    pub ack_timeout: Duration,
    /// Message-waiting indication for managers' phones (`[sip.mwi]`,
    /// [`MwiConfig`]); `None`: SUBSCRIBE gets 405.
    pub mwi: Option<crate::mwi::MwiConfig>,
    /// SIP over TLS (`tls_listen`, `tls_certificate`, `tls_private_key`); `None`: no TLS
    /// listener. The connection caps and the idle timeout apply to TLS connections too.
    pub tls: Option<TlsListen>,
    /// The CA certificates (PEM) trusted for outgoing TLS connections: registrars, outbound
    /// proxies, callers' TLS listeners (`tls_ca_file`). `None`: the system's bundle
    /// (`/etc/ssl/certs/ca-certificates.crt` and the other usual paths).
    pub tls_ca_file: Option<PathBuf>,
    /// SRTP with SDES keys (RFC 4568) for calls (`srtp`, default `"optional"`).
    pub srtp: SrtpMode,
}

/// The TLS listener of `[sip]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListen {
    /// Address and port SIP over TLS listens on (`tls_listen`, like `"0.0.0.0:5061"`). Port 0
    /// picks a free port.
    pub addr: SocketAddr,
    /// The certificate chain, PEM, leaf first (`tls_certificate`).
    pub certificate: PathBuf,
    /// The certificate's private key, PEM, PKCS#8 or PKCS#1 (`tls_private_key`).
    pub private_key: PathBuf,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5060),
            udp: true,
            tcp: true,
            advertise_ip: None,
            rtp_ports: (20000, 20999),
            shared_rtp_ports: 0,
            max_calls: 100,
            ring_delay: Duration::ZERO,
            allow_from: Vec::new(),
            user: "voicemail".to_owned(),
            accounts: Vec::new(),
            max_connections: 256,
            max_connections_per_source: 32,
            idle_timeout: Duration::from_secs(300),
            invite_rate: 10.0,
            invite_burst: 50,
            tls: None,
            tls_ca_file: None,
            srtp: SrtpMode::Optional,
            ack_timeout: Duration::from_secs(32),
            mwi: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The raw, serde-facing shape of `[sip]`. Values are validated afterwards, with key paths.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSip {
    listen: Option<String>,
    transports: Option<Vec<String>>,
    advertise_ip: Option<String>,
    rtp_ports: Option<String>,
    shared_rtp_ports: Option<i64>,
    max_calls: Option<i64>,
    ring_delay: Option<String>,
    allow_from: Option<Vec<String>>,
    user: Option<String>,
    #[serde(default)]
    accounts: Vec<RawAccount>,
    max_connections: Option<i64>,
    max_connections_per_source: Option<i64>,
    idle_timeout: Option<String>,
    invite_rate: Option<f64>,
    invite_burst: Option<i64>,
    tls_listen: Option<String>,
    tls_certificate: Option<String>,
    tls_private_key: Option<String>,
    tls_ca_file: Option<String>,
    srtp: Option<String>,
    ack_timeout: Option<String>,
    mwi: Option<crate::mwi::RawMwi>,
}

/// Every key is optional here so that a missing required one is reported with its own path
/// (`sip.accounts[0].password: required key is missing`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    registrar: Option<String>,
    username: Option<String>,
    password: Option<String>,
    expires: Option<i64>,
    contact_user: Option<String>,
    auth_username: Option<String>,
    realm: Option<String>,
    outbound_proxy: Option<String>,
}

impl SipConfig {
    /// Validates the `[sip]` table (`None`: the defaults).
    pub fn from_table(table: Option<&toml::Table>) -> Result<Self, SipConfigError> {
        let Some(table) = table else {
            return Ok(Self::default());
        };
        let raw: RawSip = serde_path_to_error::deserialize(table.clone()).map_err(|e| {
            let path = e.path().to_string();
            let key = if e.path().iter().next().is_some() { format!("sip.{path}") } else { "sip".to_owned() };
            SipConfigError::new(key, e.inner().message().trim_end())
        })?;
        raw.validate()
    }

    /// Parses a TOML text holding a `[sip]` table (a convenience for tests and tools).
    pub fn from_toml_str(text: &str) -> Result<Self, SipConfigError> {
        let doc: toml::Table = toml::from_str(text).map_err(|e| SipConfigError::new("sip", e.message().to_owned()))?;
        match doc.get("sip") {
            None => Self::from_table(None),
            Some(toml::Value::Table(t)) => Self::from_table(Some(t)),
            Some(other) => Err(SipConfigError::new("sip", format!("expected a table, found {}", other.type_str()))),
        }
    }

    /// The address written into Contact and SDP.
    pub fn advertised_ip(&self) -> IpAddr {
        self.advertise_ip.unwrap_or(self.listen.ip())
    }

    /// The warning [`Endpoint::bind`](crate::Endpoint::bind) logs when SIP listens beyond
    /// loopback with an empty `allow_from`: INVITEs are then accepted from anywhere, and
    /// P-Asserted-Identity and Remote-Party-ID believed from nobody. `None` otherwise.
    pub fn open_network_warning(&self) -> Option<String> {
        (!self.listen.ip().is_loopback() && self.allow_from.is_empty()).then(|| {
            format!(
                "SIP listens on {} beyond loopback with an empty sip.allow_from: INVITEs are accepted from \
                 anywhere, and P-Asserted-Identity and Remote-Party-ID are believed from nobody; list your \
                 trunk or proxy in sip.allow_from",
                self.listen
            )
        })
    }
}

impl RawSip {
    fn validate(self) -> Result<SipConfig, SipConfigError> {
        let mut config = SipConfig::default();
        if let Some(s) = &self.listen {
            config.listen = s.parse().map_err(|_| {
                SipConfigError::new("sip.listen", format!("expected \"IP:PORT\" like \"127.0.0.1:5060\", found {s:?}"))
            })?;
        }
        if let Some(transports) = &self.transports {
            config.udp = false;
            config.tcp = false;
            for (i, item) in transports.iter().enumerate() {
                match item.to_ascii_lowercase().as_str() {
                    "udp" => config.udp = true,
                    "tcp" => config.tcp = true,
                    other => {
                        return Err(SipConfigError::new(
                            format!("sip.transports[{i}]"),
                            format!("expected \"udp\" or \"tcp\", found {other:?}"),
                        ));
                    }
                }
            }
            if !config.udp && !config.tcp {
                return Err(SipConfigError::new("sip.transports", "expected at least one of \"udp\", \"tcp\""));
            }
        }
        if let Some(s) = &self.advertise_ip {
            let ip: IpAddr = s
                .parse()
                .map_err(|_| SipConfigError::new("sip.advertise_ip", format!("expected an IP address, found {s:?}")))?;
            if ip.is_unspecified() {
                return Err(SipConfigError::new("sip.advertise_ip", "expected a concrete address, not a wildcard"));
            }
            config.advertise_ip = Some(ip);
        }
        if let Some(s) = &self.rtp_ports {
            config.rtp_ports = parse_port_range(s).map_err(|m| SipConfigError::new("sip.rtp_ports", m))?;
        }
        if let Some(n) = self.shared_rtp_ports {
            config.shared_rtp_ports = match usize::try_from(n) {
                Ok(n) if n <= 64 => n,
                _ => return Err(SipConfigError::new("sip.shared_rtp_ports", format!("expected 0 to 64, found {n}"))),
            };
        }
        if let Some(n) = self.max_calls {
            config.max_calls = match usize::try_from(n) {
                Ok(n) if (1..=100_000).contains(&n) => n,
                _ => return Err(SipConfigError::new("sip.max_calls", format!("expected 1 to 100000, found {n}"))),
            };
        }
        if let Some(s) = &self.ring_delay {
            let d = if s == "0" { Ok(Duration::ZERO) } else { voicemail_core::config::parse_duration(s) };
            let d = d.map_err(|m| SipConfigError::new("sip.ring_delay", m))?;
            if d > Duration::from_secs(60) {
                return Err(SipConfigError::new("sip.ring_delay", format!("expected at most 60s, found {s:?}")));
            }
            config.ring_delay = d;
        }
        if let Some(rules) = &self.allow_from {
            for (i, item) in rules.iter().enumerate() {
                let rule = AddrRule::parse(item).map_err(|m| SipConfigError::new(format!("sip.allow_from[{i}]"), m))?;
                config.allow_from.push(rule);
            }
        }
        if let Some(s) = &self.user {
            if s.is_empty() || s.len() > 64 || !s.chars().all(is_user_char) {
                return Err(SipConfigError::new(
                    "sip.user",
                    format!("expected 1-64 letters, digits, '+', '-', '_' or '.', found {s:?}"),
                ));
            }
            config.user = s.clone();
        }
        if let Some(n) = self.max_connections {
            config.max_connections = int_in("sip.max_connections", n, 1, 100_000)?;
        }
        if let Some(n) = self.max_connections_per_source {
            config.max_connections_per_source = int_in("sip.max_connections_per_source", n, 1, 100_000)?;
        }
        if config.max_connections_per_source > config.max_connections {
            return Err(SipConfigError::new(
                "sip.max_connections_per_source",
                format!("expected at most sip.max_connections ({})", config.max_connections),
            ));
        }
        if let Some(s) = &self.idle_timeout {
            let d =
                voicemail_core::config::parse_duration(s).map_err(|m| SipConfigError::new("sip.idle_timeout", m))?;
            if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
                return Err(SipConfigError::new("sip.idle_timeout", format!("expected 1s to 24h, found {s:?}")));
            }
            config.idle_timeout = d;
        }
        if let Some(r) = self.invite_rate {
            if !(0.0..=100_000.0).contains(&r) {
                return Err(SipConfigError::new(
                    "sip.invite_rate",
                    format!("expected 0 to 100000 per second, found {r}"),
                ));
            }
            config.invite_rate = r;
        }
        if let Some(n) = self.invite_burst {
            config.invite_burst = int_in("sip.invite_burst", n, 1, 1_000_000)?;
        }
        if let Some(s) = &self.ack_timeout {
            let d = voicemail_core::config::parse_duration(s).map_err(|m| SipConfigError::new("sip.ack_timeout", m))?;
            if d < Duration::from_millis(500) || d > Duration::from_secs(300) {
                return Err(SipConfigError::new("sip.ack_timeout", format!("expected 500ms to 300s, found {s:?}")));
            }
            config.ack_timeout = d;
        }
        config.tls =
            validate_tls(self.tls_listen.as_deref(), self.tls_certificate.as_deref(), self.tls_private_key.as_deref())?;
        if let Some(tls) = &config.tls
            && config.tcp
            && tls.addr.port() != 0
            && tls.addr == config.listen
        {
            return Err(SipConfigError::new(
                "sip.tls_listen",
                format!("expected another port than sip.listen ({}), which TCP uses", config.listen),
            ));
        }
        if let Some(path) = &self.tls_ca_file {
            config.tls_ca_file = Some(file_path("sip.tls_ca_file", path)?);
        }
        if let Some(mode) = &self.srtp {
            config.srtp = SrtpMode::parse(mode).ok_or_else(|| {
                SipConfigError::new(
                    "sip.srtp",
                    format!("expected \"off\", \"optional\" or \"required\", found {mode:?}"),
                )
            })?;
        }
        for (i, account) in self.accounts.into_iter().enumerate() {
            config.accounts.push(account.validate(&format!("sip.accounts[{i}]"))?);
        }
        if let Some(mwi) = self.mwi {
            config.mwi = Some(mwi.validate()?);
        }
        if config.listen.ip().is_unspecified() && config.advertise_ip.is_none() {
            return Err(SipConfigError::new(
                "sip.advertise_ip",
                "required when sip.listen is a wildcard address (it goes into Contact and SDP)",
            ));
        }
        Ok(config)
    }
}

impl RawAccount {
    fn validate(self, path: &str) -> Result<Account, SipConfigError> {
        let required = |key: &str, value: Option<String>| {
            value.ok_or_else(|| SipConfigError::new(format!("{path}.{key}"), "required key is missing"))
        };
        let registrar = required("registrar", self.registrar)?;
        if !(registrar.starts_with("sip:") || registrar.starts_with("sips:")) {
            return Err(SipConfigError::new(
                format!("{path}.registrar"),
                format!("expected a SIP URI like \"sip:pbx.example.com\", found {registrar:?}"),
            ));
        }
        let username = required("username", self.username)?;
        let password = required("password", self.password)?;
        let expires = match self.expires {
            None => crate::register::DEFAULT_EXPIRES,
            Some(n) => match u32::try_from(n) {
                Ok(n) if (30..=86_400).contains(&n) => n,
                _ => {
                    return Err(SipConfigError::new(
                        format!("{path}.expires"),
                        format!("expected 30 to 86400 seconds, found {n}"),
                    ));
                }
            },
        };
        let text = |key: &str, value: Option<String>| -> Result<Option<String>, SipConfigError> {
            match value {
                Some(v) if v.is_empty() || v.len() > 256 || v.chars().any(|c| c.is_control() || c == '"') => {
                    Err(SipConfigError::new(
                        format!("{path}.{key}"),
                        format!("expected 1-256 characters without quotes or control characters, found {v:?}"),
                    ))
                }
                other => Ok(other),
            }
        };
        let auth_username = text("auth_username", self.auth_username)?;
        let realm = text("realm", self.realm)?;
        let outbound_proxy = match self.outbound_proxy {
            Some(p) if !(p.starts_with("sip:") || p.starts_with("sips:")) => {
                return Err(SipConfigError::new(
                    format!("{path}.outbound_proxy"),
                    format!("expected a SIP URI like \"sip:192.0.2.1:5060\", found {p:?}"),
                ));
            }
            other => other,
        };
        Ok(Account {
            registrar,
            username,
            password,
            expires,
            contact_user: self.contact_user,
            auth_username,
            realm,
            outbound_proxy,
        })
    }
}

/// The TLS listener keys: all three or none.
fn validate_tls(
    listen: Option<&str>,
    certificate: Option<&str>,
    private_key: Option<&str>,
) -> Result<Option<TlsListen>, SipConfigError> {
    let Some(listen) = listen else {
        for (key, value) in [("sip.tls_certificate", certificate), ("sip.tls_private_key", private_key)] {
            if value.is_some() {
                return Err(SipConfigError::new(key, "given without sip.tls_listen"));
            }
        }
        return Ok(None);
    };
    let addr = listen.parse().map_err(|_| {
        SipConfigError::new("sip.tls_listen", format!("expected \"IP:PORT\" like \"0.0.0.0:5061\", found {listen:?}"))
    })?;
    fn required<'v>(key: &str, value: Option<&'v str>) -> Result<&'v str, SipConfigError> {
        value.ok_or_else(|| SipConfigError::new(key, "required with sip.tls_listen (a PEM file)"))
    }
    let certificate = file_path("sip.tls_certificate", required("sip.tls_certificate", certificate)?)?;
    let private_key = file_path("sip.tls_private_key", required("sip.tls_private_key", private_key)?)?;
    Ok(Some(TlsListen { addr, certificate, private_key }))
}

/// A non-empty file path (whether the file exists is checked when the endpoint starts).
fn file_path(key: &str, value: &str) -> Result<PathBuf, SipConfigError> {
    if value.is_empty() || value.contains('\0') {
        return Err(SipConfigError::new(key, format!("expected a file path, found {value:?}")));
    }
    Ok(PathBuf::from(value))
}

/// `n` as an integer type when it lies in `min..=max`, else an error naming `key`.
fn int_in<T: TryFrom<i64>>(key: &str, n: i64, min: i64, max: i64) -> Result<T, SipConfigError> {
    match T::try_from(n) {
        Ok(v) if (min..=max).contains(&n) => Ok(v),
        _ => Err(SipConfigError::new(key, format!("expected {min} to {max}, found {n}"))),
    }
}

fn is_user_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '_' | '.')
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let expected =
        || format!("expected \"LOW-HIGH\" like \"20000-20999\" (1024-65535, at least two ports), found {s:?}");
    let (lo, hi) = s.split_once('-').ok_or_else(expected)?;
    let lo: u16 = lo.trim().parse().map_err(|_| expected())?;
    let hi: u16 = hi.trim().parse().map_err(|_| expected())?;
    if lo < 1024 || hi <= lo {
        return Err(expected());
    }
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_table() {
        let c = SipConfig::from_toml_str("").unwrap();
        assert_eq!(c, SipConfig::default());
        assert_eq!(c.listen.to_string(), "127.0.0.1:5060");
    }

    #[test]
    fn full_table() {
        let c = SipConfig::from_toml_str(
            r#"
            [sip]
            listen = "0.0.0.0:5070"
            advertise_ip = "192.0.2.10"
            transports = ["udp"]
            rtp_ports = "30000-30100"
            shared_rtp_ports = 2
            max_calls = 7
            ring_delay = "2s"
            allow_from = ["127.0.0.1", "10.0.0.0/8"]
            max_connections = 64
            max_connections_per_source = 8
            idle_timeout = "30s"
            invite_rate = 0.5
            invite_burst = 4
            ack_timeout = "4s"
            [[sip.accounts]]
            registrar = "sip:127.0.0.1:5062"
            username = "vm"
            password = "pw"
            "#,
        )
        .unwrap();
        assert!(c.udp && !c.tcp);
        assert_eq!(c.rtp_ports, (30000, 30100));
        assert_eq!(c.shared_rtp_ports, 2);
        assert_eq!(c.max_calls, 7);
        assert_eq!(c.ring_delay, Duration::from_secs(2));
        assert!(c.allow_from[1].contains("10.1.2.3".parse().unwrap()));
        assert!(!c.allow_from[1].contains("11.1.2.3".parse().unwrap()));
        assert!(c.allow_from[0].contains("::ffff:127.0.0.1".parse().unwrap()));
        assert_eq!(c.accounts[0].expires, 600);
        assert_eq!(c.advertised_ip().to_string(), "192.0.2.10");
        assert_eq!((c.max_connections, c.max_connections_per_source), (64, 8));
        assert_eq!(c.idle_timeout, Duration::from_secs(30));
        assert_eq!((c.invite_rate, c.invite_burst), (0.5, 4));
        assert_eq!(c.ack_timeout, Duration::from_secs(4));
    }

    #[test]
    fn abuse_limits_are_on_by_default_and_the_rate_takes_integers() {
        let c = SipConfig::default();
        assert_eq!((c.max_connections, c.max_connections_per_source), (256, 32));
        assert_eq!(c.idle_timeout, Duration::from_secs(300));
        assert_eq!((c.invite_rate, c.invite_burst), (10.0, 50));
        assert_eq!(c.ack_timeout, Duration::from_secs(32), "64·T1");
        let c = SipConfig::from_toml_str("[sip]\ninvite_rate = 3\n").unwrap();
        assert_eq!(c.invite_rate, 3.0);
        let off = SipConfig::from_toml_str("[sip]\ninvite_rate = 0\n").unwrap();
        assert_eq!(off.invite_rate, 0.0);
    }

    #[test]
    fn an_open_listen_address_without_allow_from_is_warned_about() {
        assert_eq!(SipConfig::default().open_network_warning(), None, "loopback");
        let open =
            SipConfig::from_toml_str("[sip]\nlisten = \"0.0.0.0:5060\"\nadvertise_ip = \"192.0.2.10\"\n").unwrap();
        let warning = open.open_network_warning().unwrap();
        assert!(warning.contains("0.0.0.0:5060") && warning.contains("sip.allow_from"), "{warning}");
        let v6 = SipConfig::from_toml_str("[sip]\nlisten = \"[2001:db8::1]:5060\"\n").unwrap();
        assert!(v6.open_network_warning().is_some());
        let listed = SipConfig::from_toml_str(
            "[sip]\nlisten = \"0.0.0.0:5060\"\nadvertise_ip = \"192.0.2.10\"\nallow_from = [\"192.0.2.0/24\"]\n",
        )
        .unwrap();
        assert_eq!(listed.open_network_warning(), None);
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let c = SipConfig::from_toml_str(include_str!("../../examples/voicemail.toml")).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:5060");
        assert!(c.udp && c.tcp && c.allow_from.is_empty() && c.accounts.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[sip]\nlisten = \"nope\"", "sip.listen"),
            ("[sip]\nbogus = 1", "sip.bogus"),
            ("[sip]\nrtp_ports = \"5-4\"", "sip.rtp_ports"),
            ("[sip]\nmax_calls = 0", "sip.max_calls"),
            ("[sip]\nshared_rtp_ports = -1", "sip.shared_rtp_ports"),
            ("[sip]\nshared_rtp_ports = 65", "sip.shared_rtp_ports"),
            ("[sip]\nallow_from = [\"1.2.3.4/40\"]", "sip.allow_from[0]"),
            ("[sip]\nlisten = \"0.0.0.0:5060\"", "sip.advertise_ip"),
            ("[sip]\ntransports = [\"sctp\"]", "sip.transports[0]"),
            ("[sip]\nmax_connections = 0", "sip.max_connections"),
            ("[sip]\nmax_connections = 10\nmax_connections_per_source = 20", "sip.max_connections_per_source"),
            ("[sip]\nidle_timeout = \"0s\"", "sip.idle_timeout"),
            ("[sip]\nidle_timeout = \"soon\"", "sip.idle_timeout"),
            ("[sip]\ninvite_rate = -1", "sip.invite_rate"),
            ("[sip]\ninvite_rate = nan", "sip.invite_rate"),
            ("[sip]\ninvite_rate = \"fast\"", "sip.invite_rate"),
            ("[sip]\ninvite_burst = 0", "sip.invite_burst"),
            ("[sip]\nack_timeout = \"100ms\"", "sip.ack_timeout"),
            ("[sip]\nack_timeout = \"1h\"", "sip.ack_timeout"),
            ("[sip]\nack_timeout = 32", "sip.ack_timeout"),
            ("[[sip.accounts]]\nregistrar = \"sip:x\"\nusername = \"u\"", "sip.accounts[0].password"),
            (
                "[[sip.accounts]]\nregistrar = \"sip:x\"\nusername = \"u\"\npassword = \"p\"\nfoo = 1",
                "sip.accounts[0].foo",
            ),
        ];
        for (text, key) in cases {
            let e = SipConfig::from_toml_str(text).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_path() {
        const ACCOUNT: &str = "[[sip.accounts]]\nregistrar = \"sip:x\"\nusername = \"u\"\npassword = \"p\"\n";
        let cases = [
            ("[sip]\nbogus = 1", "sip.bogus", &["unknown field `bogus`", "expected one of", "rtp_ports"][..]),
            ("[sip]\nmax_calls = \"7\"", "sip.max_calls", &["invalid type: string \"7\"", "i64"]),
            ("[sip]\nlisten = 5060", "sip.listen", &["invalid type: integer `5060`", "string"]),
            ("[sip]\ntransports = \"udp\"", "sip.transports", &["invalid type: string \"udp\"", "sequence"]),
            ("[sip]\ntransports = [\"udp\", 6]", "sip.transports[1]", &["invalid type: integer `6`", "string"]),
            ("[sip]\nallow_from = [\"127.0.0.1\", true]", "sip.allow_from[1]", &["invalid type: boolean"]),
            ("[sip]\naccounts = 5", "sip.accounts", &["invalid type: integer `5`", "sequence"]),
            (
                "[[sip.accounts]]\nregistrar = \"sip:x\"\nusername = 7\npassword = \"p\"",
                "sip.accounts[0].username",
                &["invalid type: integer `7`"],
            ),
            (
                &*format!("{ACCOUNT}{ACCOUNT}expires = \"600\""),
                "sip.accounts[1].expires",
                &["invalid type: string \"600\""],
            ),
            (
                &*format!("{ACCOUNT}{ACCOUNT}regsitrar = \"sip:y\""),
                "sip.accounts[1].regsitrar",
                &["unknown field `regsitrar`", "registrar"],
            ),
            (
                &*format!("{ACCOUNT}[[sip.accounts]]\nusername = \"u\"\npassword = \"p\""),
                "sip.accounts[1].registrar",
                &["required key is missing"],
            ),
            (
                &*format!("{ACCOUNT}[[sip.accounts]]\nregistrar = \"pbx\"\nusername = \"u\"\npassword = \"p\""),
                "sip.accounts[1].registrar",
                &["expected a SIP URI"],
            ),
            (&*format!("{ACCOUNT}expires = 5"), "sip.accounts[0].expires", &["expected 30 to 86400 seconds, found 5"]),
            ("sip = 5", "sip", &["expected a table, found integer"]),
        ];
        for (text, key, needles) in cases {
            let e = SipConfig::from_toml_str(text).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
            let shown = e.to_string();
            assert!(shown.starts_with(&format!("{key}: ")), "{shown}");
            for needle in needles {
                assert!(shown.contains(needle), "{shown:?} should contain {needle:?}");
            }
        }
    }

    #[test]
    fn a_table_from_the_mailbox_config_is_validated_with_paths() {
        let mailbox = voicemail_core::config::Config::from_toml_str(
            "mailbox = \"m\"\ntimezone = \"UTC\"\nspool = \"s\"\n[sip]\nrtp_ports = \"30000-30001\"\n[[sip.accounts]]\nregistrar = \"sip:pbx\"\nusername = \"u\"\npassword = \"p\"\ncontact_user = [\"x\"]\n",
        )
        .unwrap();
        let e = SipConfig::from_table(mailbox.sip.as_ref()).unwrap_err();
        assert_eq!(e.key, "sip.accounts[0].contact_user", "{e}");
        assert!(e.message.starts_with("invalid type: sequence, expected a string"), "{e}");
    }
}
