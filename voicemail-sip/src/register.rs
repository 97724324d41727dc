//! Registration of accounts with a SIP registrar (RFC 3261 §10): work in progress.

/// One account to register (work in progress).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Registrar URI, e.g. `sip:pbx.example.com:5060`.
    pub registrar: String,
    /// Digest user name (also the AoR user part).
    pub username: String,
    /// Digest password.
    pub password: String,
    /// Requested registration lifetime in seconds.
    pub expires: u32,
    /// User part of our Contact, if different from `username`.
    pub contact_user: Option<String>,
}
