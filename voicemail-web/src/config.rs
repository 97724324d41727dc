//! The queue's settings: the `[web]` table of the mailbox's TOML file.
//!
//! voicemail-core keeps `[web]` as a raw table ([`Config::web`](voicemail_core::config::Config));
//! [`WebConfig::from_table`] validates it strictly, like the rest of the file: serde into a
//! private `RawWeb` (`deny_unknown_fields`, key paths from `serde_path_to_error`), then the
//! values are checked. An unknown key, a value of the wrong type or an invalid value is an
//! error naming the key (`web.users[0].password_hash: ...`). Without `[web]` there is no web
//! queue. `examples/voicemail.toml` documents every key.
//!
//! ```toml
//! [web]
//! listen = "127.0.0.1:8080"
//! public_url = "https://voicemail.example.com"   # optional: https makes cookies Secure
//! overdue_after = "4h"                          # optional, default "4h"
//! session_lifetime = "12h"                      # optional, default "12h"
//! mailbox = "Sales"                             # with [[mailboxes]]: the one served (default:
//!                                               # default_mailbox, else the first)
//!
//! [[web.users]]                                 # sign in with a password ...
//! name = "anna"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$..."   # `voicemail-web hash-password`
//!
//! [web.proxy]                                   # ... or behind a reverse proxy that signs in
//! header = "X-Remote-User"
//! trusted = ["127.0.0.1"]
//! ```

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use axum::http::HeaderName;
use serde::Deserialize;
use voicemail_core::config::parse_duration;

/// The longest user name (the follow-up history allows 200 characters).
pub const MAX_USER_NAME_LEN: usize = 64;

/// Why the `[web]` table is not valid. The message names the key (`web.listen`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct WebConfigError {
    /// The key path, like `web.listen` or `web.users[0].name`.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl WebConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into() }
    }
}

/// A person who signs in with a password (`[[web.users]]`).
#[derive(Clone, PartialEq, Eq)]
pub struct WebUser {
    /// The user name: typed at the login form, and written into the message history.
    pub name: String,
    /// The Argon2 hash of the password as a PHC string (`$argon2id$v=19$...`).
    pub password_hash: String,
}

impl std::fmt::Debug for WebUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebUser").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Sign-in by a trusted reverse proxy (`[web.proxy]`): a request from one of `trusted` that
/// carries `header` is made by the user the header names. The header is ignored on requests
/// from any other address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyAuth {
    /// The header holding the user name (`X-Remote-User`).
    pub header: HeaderName,
    /// The proxy's addresses, as the queue sees them (the peer of the TCP connection).
    pub trusted: Vec<IpAddr>,
}

/// The web queue's settings. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// Where the queue listens (`listen`, like `"127.0.0.1:8080"`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// The URL people open, without a trailing `/` (`public_url`), when the queue is behind a
    /// reverse proxy or reached by a name: links in e-mails use it, and an `https` URL makes
    /// the session cookie `Secure`.
    pub public_url: Option<String>,
    /// A message not called back this long after its call is marked overdue when the mailbox
    /// has no `[followup]` (with it, `remind_after` in business hours decides) (`overdue_after`,
    /// default 4 h, wall-clock time).
    pub overdue_after: Duration,
    /// How long a sign-in lasts (`session_lifetime`, default 12 h).
    pub session_lifetime: Duration,
    /// The people who sign in with a password (`[[web.users]]`).
    pub users: Vec<WebUser>,
    /// Sign-in by a reverse proxy (`[web.proxy]`).
    pub proxy: Option<ProxyAuth>,
    /// In a file with several mailboxes, the one the queue serves (`mailbox`; checked by
    /// [`MailboxesConfig`](voicemail_core::config::MailboxesConfig), which also picks it:
    /// [`MailboxesConfig::web_mailbox`](voicemail_core::config::MailboxesConfig::web_mailbox)).
    pub mailbox: Option<String>,
}

const DEFAULT_OVERDUE_AFTER: Duration = Duration::from_secs(4 * 3600);
const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    listen: String,
    public_url: Option<String>,
    overdue_after: Option<String>,
    session_lifetime: Option<String>,
    #[serde(default)]
    users: Vec<RawUser>,
    proxy: Option<RawProxy>,
    mailbox: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    password_hash: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    header: String,
    trusted: Vec<String>,
}

impl WebConfig {
    /// Validates the `[web]` table; `None` (no table): no web queue.
    pub fn from_table(table: Option<&toml::Table>) -> Result<Option<Self>, WebConfigError> {
        let Some(table) = table else { return Ok(None) };
        let raw: RawWeb = serde_path_to_error::deserialize(table.clone()).map_err(|e| {
            let key = if e.path().iter().next().is_some() { format!("web.{}", e.path()) } else { "web".to_owned() };
            WebConfigError::new(key, e.inner().message().trim_end())
        })?;
        raw.validate().map(Some)
    }

    /// Parses a TOML text holding a `[web]` table (a convenience for tests and tools).
    pub fn from_toml_str(text: &str) -> Result<Option<Self>, WebConfigError> {
        let doc: toml::Table = toml::from_str(text).map_err(|e| WebConfigError::new("web", e.message().trim_end()))?;
        match doc.get("web") {
            None => Ok(None),
            Some(toml::Value::Table(t)) => Self::from_table(Some(t)),
            Some(other) => Err(WebConfigError::new("web", format!("expected a table, found {}", other.type_str()))),
        }
    }

    /// Whether the session cookie is `Secure`: the public URL is `https`.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
    }

    /// The link to a message's page under the public URL (for e-mails), if one is set.
    pub fn message_url(&self, id: &voicemail_core::MessageId) -> Option<String> {
        self.public_url.as_ref().map(|u| format!("{u}/messages/{id}"))
    }
}

impl RawWeb {
    fn validate(self) -> Result<WebConfig, WebConfigError> {
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            WebConfigError::new(
                "web.listen",
                format!("expected \"IP:PORT\" like \"127.0.0.1:8080\", found {:?}", self.listen),
            )
        })?;
        let public_url = match self.public_url {
            None => None,
            Some(u) => Some(check_url(&u).map_err(|m| WebConfigError::new("web.public_url", m))?),
        };
        let duration = |key: &str, text: &Option<String>, default: Duration, min: Duration, max: Duration| {
            let Some(text) = text else { return Ok(default) };
            let key = format!("web.{key}");
            let d = parse_duration(text).map_err(|m| WebConfigError::new(&key, m))?;
            if d < min || d > max {
                return Err(WebConfigError::new(
                    key,
                    format!("expected between {} and {}, found {text:?}", human(min), human(max)),
                ));
            }
            Ok(d)
        };
        let overdue_after = duration(
            "overdue_after",
            &self.overdue_after,
            DEFAULT_OVERDUE_AFTER,
            Duration::from_secs(60),
            Duration::from_secs(90 * 24 * 3600),
        )?;
        let session_lifetime = duration(
            "session_lifetime",
            &self.session_lifetime,
            DEFAULT_SESSION_LIFETIME,
            Duration::from_secs(5 * 60),
            Duration::from_secs(30 * 24 * 3600),
        )?;
        let mut users: Vec<WebUser> = Vec::new();
        for (i, u) in self.users.into_iter().enumerate() {
            let key = format!("web.users[{i}]");
            check_user_name(&u.name).map_err(|m| WebConfigError::new(format!("{key}.name"), m))?;
            if users.iter().any(|other| other.name == u.name) {
                return Err(WebConfigError::new(format!("{key}.name"), format!("user {:?} is listed twice", u.name)));
            }
            check_hash(&u.password_hash).map_err(|m| WebConfigError::new(format!("{key}.password_hash"), m))?;
            users.push(WebUser { name: u.name, password_hash: u.password_hash });
        }
        let proxy = match self.proxy {
            None => None,
            Some(p) => {
                let header = HeaderName::try_from(p.header.as_str())
                    .ok()
                    .filter(|h| !FORBIDDEN_PROXY_HEADERS.contains(&h.as_str()))
                    .ok_or_else(|| {
                        WebConfigError::new(
                            "web.proxy.header",
                            format!("expected a header name like \"X-Remote-User\", found {:?}", p.header),
                        )
                    })?;
                if p.trusted.is_empty() {
                    return Err(WebConfigError::new(
                        "web.proxy.trusted",
                        "expected the proxy's addresses, like [\"127.0.0.1\"]",
                    ));
                }
                let mut trusted = Vec::new();
                for (i, a) in p.trusted.iter().enumerate() {
                    let ip: IpAddr = a.parse().map_err(|_| {
                        WebConfigError::new(
                            format!("web.proxy.trusted[{i}]"),
                            format!("expected an IP address, found {a:?}"),
                        )
                    })?;
                    if ip.is_unspecified() {
                        return Err(WebConfigError::new(
                            format!("web.proxy.trusted[{i}]"),
                            "expected the proxy's own address, not a wildcard",
                        ));
                    }
                    trusted.push(ip);
                }
                Some(ProxyAuth { header, trusted })
            }
        };
        if users.is_empty() && proxy.is_none() {
            return Err(WebConfigError::new(
                "web",
                "nobody could sign in: expected [[web.users]] (name, password_hash) or [web.proxy] (header, trusted)",
            ));
        }
        Ok(WebConfig { listen, public_url, overdue_after, session_lifetime, users, proxy, mailbox: self.mailbox })
    }
}

/// Headers a proxy cannot use to name the user: they carry something else.
const FORBIDDEN_PROXY_HEADERS: &[&str] =
    &["host", "cookie", "authorization", "content-type", "content-length", "connection", "x-csrf-token"];

/// Checks a user name (config, proxy header): 1 to 64 characters, no control characters, not
/// blank.
pub(crate) fn check_user_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() || name.trim() != name {
        return Err(format!("expected a user name without leading or trailing spaces, found {name:?}"));
    }
    if name.chars().count() > MAX_USER_NAME_LEN {
        return Err(format!("expected at most {MAX_USER_NAME_LEN} characters, found {}", name.chars().count()));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("control characters are not allowed, found {name:?}"));
    }
    Ok(())
}

fn check_hash(hash: &str) -> Result<(), String> {
    let expected = "expected an Argon2 hash like \"$argon2id$v=19$m=19456,t=2,p=1$...\" (make one with `voicemail-web hash-password`)";
    let parsed = PasswordHash::new(hash).map_err(|e| format!("{expected}: {e}"))?;
    let algorithm = parsed.algorithm.as_str();
    if !matches!(algorithm, "argon2id" | "argon2i" | "argon2d") || parsed.hash.is_none() {
        return Err(format!("{expected}, found the algorithm {algorithm:?}"));
    }
    Ok(())
}

/// `http(s)://host[:port][/path]`, without a query, fragment, user info or whitespace; the
/// trailing `/` removed.
fn check_url(url: &str) -> Result<String, String> {
    let bad = || format!("expected an http or https URL like \"https://voicemail.example.com\", found {url:?}");
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).ok_or_else(bad)?;
    let host = rest.split('/').next().unwrap_or("");
    let ok = !host.is_empty()
        && !host.contains('@')
        && url.chars().all(|c| c.is_ascii_graphic())
        && !url.contains(['?', '#', '"', '<', '>', '\\']);
    if !ok {
        return Err(bad());
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else {
        format!("{}m", s / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$ZXhhbXBsZWhhc2hleGFtcGxlaGFzaA";

    fn parse(text: &str) -> Result<Option<WebConfig>, WebConfigError> {
        WebConfig::from_toml_str(text)
    }

    #[test]
    fn no_table_no_queue() {
        assert_eq!(parse("mailbox = \"x\"\n"), Ok(None));
    }

    #[test]
    fn a_full_table_is_read() {
        let text = format!(
            "[web]\nlisten = \"127.0.0.1:8080\"\npublic_url = \"https://vm.example.com/\"\noverdue_after = \"2h\"\n\
             [[web.users]]\nname = \"anna\"\npassword_hash = \"{HASH}\"\n\
             [web.proxy]\nheader = \"X-Remote-User\"\ntrusted = [\"127.0.0.1\", \"::1\"]\n"
        );
        let c = parse(&text).unwrap().unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.public_url.as_deref(), Some("https://vm.example.com"));
        assert!(c.secure_cookies());
        assert_eq!(c.overdue_after, Duration::from_secs(7200));
        assert_eq!(c.session_lifetime, DEFAULT_SESSION_LIFETIME);
        assert_eq!(c.users[0].name, "anna");
        let proxy = c.proxy.unwrap();
        assert_eq!(proxy.header.as_str(), "x-remote-user");
        assert_eq!(proxy.trusted.len(), 2);
    }

    #[test]
    fn the_documented_example_is_valid() {
        // examples/voicemail.toml documents [web] as a commented-out block: uncommented, it
        // must be a valid table.
        let example = include_str!("../../examples/voicemail.toml");
        let block: Vec<&str> = example
            .lines()
            .skip_while(|l| *l != "# [web]")
            .take_while(|l| l.starts_with("# "))
            .map(|l| &l[2..])
            .collect();
        assert!(block.len() > 5, "no `# [web]` block in examples/voicemail.toml");
        let c = parse(&block.join("\n")).unwrap().unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.overdue_after, DEFAULT_OVERDUE_AFTER);
        assert_eq!(c.session_lifetime, DEFAULT_SESSION_LIFETIME);
        assert_eq!(c.users.len(), 1);
        assert!(c.proxy.is_some());
        assert_eq!(
            c.message_url(&voicemail_core::MessageId::parse("a-1").unwrap()).unwrap(),
            "https://voicemail.example.com/messages/a-1"
        );
    }

    #[test]
    fn errors_name_the_key() {
        let user = format!("[[web.users]]\nname = \"anna\"\npassword_hash = \"{HASH}\"\n");
        for (text, key) in [
            ("[web]\nlisten = \"localhost\"\n".to_owned() + &user, "web.listen"),
            ("[web]\nlisten = \"127.0.0.1:1\"\nport = 3\n".to_owned() + &user, "web.port"),
            ("[web]\nlisten = \"127.0.0.1:1\"\npublic_url = \"ftp://x\"\n".to_owned() + &user, "web.public_url"),
            ("[web]\nlisten = \"127.0.0.1:1\"\noverdue_after = \"4 h\"\n".to_owned() + &user, "web.overdue_after"),
            ("[web]\nlisten = \"127.0.0.1:1\"\noverdue_after = \"1s\"\n".to_owned() + &user, "web.overdue_after"),
            ("[web]\nlisten = \"127.0.0.1:1\"\n".to_owned(), "web"),
            (
                "[web]\nlisten = \"127.0.0.1:1\"\n[[web.users]]\nname = \"a\"\npassword_hash = \"secret\"\n".to_owned(),
                "web.users[0].password_hash",
            ),
            (
                "[web]\nlisten = \"127.0.0.1:1\"\n[[web.users]]\nname = \" a\"\npassword_hash = \"x\"\n".to_owned(),
                "web.users[0].name",
            ),
            (format!("[web]\nlisten = \"127.0.0.1:1\"\n{user}{user}"), "web.users[1].name"),
            (
                "[web]\nlisten = \"127.0.0.1:1\"\n[web.proxy]\nheader = \"Cookie\"\ntrusted = [\"127.0.0.1\"]\n"
                    .to_owned(),
                "web.proxy.header",
            ),
            (
                "[web]\nlisten = \"127.0.0.1:1\"\n[web.proxy]\nheader = \"X-User\"\ntrusted = [\"0.0.0.0\"]\n"
                    .to_owned(),
                "web.proxy.trusted[0]",
            ),
            (
                "[web]\nlisten = \"127.0.0.1:1\"\n[web.proxy]\nheader = \"X-User\"\ntrusted = []\n".to_owned(),
                "web.proxy.trusted",
            ),
            (
                "[web]\nlisten = \"127.0.0.1:1\"\n[[web.users]]\nname = \"a\"\npassword_hash = 5\n".to_owned(),
                "web.users[0].password_hash",
            ),
        ] {
            let e = parse(&text).expect_err(&text);
            assert_eq!(e.key, key, "{text}: {e}");
        }
    }
}
