//! Who is asking: password hashes, sessions, CSRF tokens and the login rate limit.
//!
//! - Passwords are checked against the Argon2 PHC strings of `[[web.users]]`
//!   ([`hash_password`] makes one; `voicemail-web hash-password` prints one). An unknown user
//!   name costs the same hash as a wrong password, so the answer does not tell which it was.
//! - A sign-in opens a session: a random 256-bit token in an `HttpOnly`, `SameSite=Strict`
//!   cookie (`Secure`, and named `__Host-vm_session`, when the public URL is https), kept in
//!   memory (a restart signs everybody out) for `session_lifetime`.
//! - Every session has its own random CSRF token: forms carry it in a hidden field, the JSON
//!   API in the `X-CSRF-Token` header; a state-changing request without the session's token
//!   is refused (403). The login form has its own token in a short-lived cookie.
//! - Failed sign-ins are counted per client address and per user name: after
//!   [`MAX_FAILURES`] within [`FAILURE_WINDOW`], further attempts (right or wrong) are refused
//!   with 429 until the window has passed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// Failed sign-ins allowed per client address and per user name within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 5;
/// The window failed sign-ins are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Sessions kept at most; the oldest go first.
const MAX_SESSIONS: usize = 10_000;
/// Counters kept at most by the rate limit; the oldest go first.
const MAX_COUNTERS: usize = 10_000;

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct HashError(String);

/// Hashes `password` with Argon2id and the recommended parameters (19 MiB, 2 passes) and a
/// random salt: the PHC string for `password_hash` in `[[web.users]]`.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    hash_password_with(password, Params::default())
}

/// Like [`hash_password`] with cheap parameters (64 KiB, 1 pass): for tests only, never for
/// real passwords.
pub fn hash_password_for_tests(password: &str) -> Result<String, HashError> {
    let params = Params::new(64, 1, 1, None).map_err(|e| HashError(e.to_string()))?;
    hash_password_with(password, params)
}

fn hash_password_with(password: &str, params: Params) -> Result<String, HashError> {
    if password.is_empty() {
        return Err(HashError("the password is empty".to_owned()));
    }
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (which names its own parameters).
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A random token: 32 bytes from the operating system, as 64 hex digits.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The OS random source does not fail on Linux once booted; if it ever did, a token of
    // zeros must not be handed out.
    if let Err(e) = getrandom::fill(&mut bytes) {
        panic!("the operating system's random source failed: {e}");
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two secrets in time independent of where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A signed-in user, as handlers see it.
#[derive(Debug, Clone)]
pub(crate) struct SessionInfo {
    /// The session token (the cookie's value).
    pub token: String,
    /// The user name.
    pub user: String,
    /// The session's CSRF token.
    pub csrf: String,
}

#[derive(Debug)]
struct Session {
    user: String,
    csrf: String,
    expires: Instant,
    /// Opened for a reverse proxy's user: valid only on requests that proxy makes for them.
    via_proxy: bool,
}

/// The open sessions, in memory.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Opens a session for `user`, lasting `lifetime` from `now`.
    pub(crate) fn open(&self, user: &str, via_proxy: bool, lifetime: Duration, now: Instant) -> SessionInfo {
        let token = random_token();
        let csrf = random_token();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.expires > now);
            while map.len() >= MAX_SESSIONS {
                let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| k.clone()) else { break };
                map.remove(&oldest);
            }
        }
        map.insert(
            token.clone(),
            Session { user: user.to_owned(), csrf: csrf.clone(), expires: now + lifetime, via_proxy },
        );
        SessionInfo { token, user: user.to_owned(), csrf }
    }

    /// The session of `token`, if it is open at `now`. `proxy_user` is the user a trusted
    /// proxy names on this request: a session opened for a proxy's user is valid only with it.
    pub(crate) fn get(&self, token: &str, proxy_user: Option<&str>, now: Instant) -> Option<SessionInfo> {
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let s = map.get(token)?;
        if s.expires <= now {
            map.remove(token);
            return None;
        }
        let valid = match proxy_user {
            Some(p) => p == s.user,
            None => !s.via_proxy,
        };
        valid.then(|| SessionInfo { token: token.to_owned(), user: s.user.clone(), csrf: s.csrf.clone() })
    }

    /// Closes a session.
    pub(crate) fn close(&self, token: &str) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(token);
    }
}

/// Failed sign-ins, by client address and by user name.
#[derive(Debug, Default)]
pub(crate) struct LoginLimiter {
    counters: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginLimiter {
    fn keys(ip: IpAddr, user: &str) -> [String; 2] {
        [format!("ip:{ip}"), format!("user:{user}")]
    }

    /// `Err(seconds to wait)` while `ip` or `user` has used up its failures.
    pub(crate) fn check(&self, ip: IpAddr, user: &str, now: Instant) -> Result<(), u64> {
        let map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = 0;
        for key in Self::keys(ip, user) {
            if let Some((n, since)) = map.get(&key) {
                let end = *since + FAILURE_WINDOW;
                if *n >= MAX_FAILURES && end > now {
                    wait = wait.max((end - now).as_secs().max(1));
                }
            }
        }
        if wait > 0 { Err(wait) } else { Ok(()) }
    }

    /// Counts a failed sign-in; true when it used up the last allowed failure of the address
    /// or the user name (logged once per lock-out, not on every refused attempt).
    pub(crate) fn failed(&self, ip: IpAddr, user: &str, now: Instant) -> bool {
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_COUNTERS {
            map.retain(|_, (_, since)| *since + FAILURE_WINDOW > now);
            while map.len() >= MAX_COUNTERS {
                let Some(oldest) = map.iter().min_by_key(|(_, (_, since))| *since).map(|(k, _)| k.clone()) else {
                    break;
                };
                map.remove(&oldest);
            }
        }
        let mut locked = false;
        for key in Self::keys(ip, user) {
            let entry = map.entry(key).or_insert((0, now));
            if entry.1 + FAILURE_WINDOW <= now {
                *entry = (0, now);
            }
            entry.0 = entry.0.saturating_add(1);
            locked |= entry.0 == MAX_FAILURES;
        }
        locked
    }

    /// Forgets the failures of `user` after a successful sign-in (the address keeps its count:
    /// one good password does not open the door to guessing others).
    pub(crate) fn succeeded(&self, user: &str) {
        self.counters.lock().unwrap_or_else(|e| e.into_inner()).remove(&format!("user:{user}"));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hashes_verify() {
        let h = hash_password_for_tests("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct hors", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(hash_password_for_tests("").is_err());
    }

    #[test]
    fn hashes_from_debians_argon2_tool_verify() {
        // printf %s 'PASSWORD' | argon2 "$(openssl rand -base64 16)" -id -t 2 -m 15 -p 1 -e
        // (the command examples/voicemail.toml gives).
        let h = "$argon2id$v=19$m=32768,t=2,p=1$YUNqRGY0d3JBSWRvYnRTSjRBNkQ3QT09$ePbhM06mG1h5/0khhEIefCNGxdh2CP0zOH4117Fbwos";
        assert!(verify_password("PASSWORD", h));
        assert!(!verify_password("password", h));
    }

    #[test]
    fn sessions_expire_and_proxy_sessions_need_the_proxy() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let a = s.open("anna", false, Duration::from_secs(60), t0);
        assert_eq!(a.token.len(), 64);
        assert_ne!(a.token, a.csrf);
        assert_eq!(s.get(&a.token, None, t0).unwrap().user, "anna");
        assert!(s.get(&a.token, Some("anna"), t0).is_some(), "the proxy names the same user");
        assert!(s.get(&a.token, Some("boris"), t0).is_none(), "the proxy names another user");
        assert!(s.get(&a.token, None, t0 + Duration::from_secs(60)).is_none());
        assert!(s.get(&a.token, None, t0).is_none(), "gone once expired");
        let b = s.open("boris", true, Duration::from_secs(60), t0);
        assert!(s.get(&b.token, None, t0).is_none());
        assert!(s.get(&b.token, Some("anna"), t0).is_none());
        assert!(s.get(&b.token, Some("boris"), t0).is_some());
        s.close(&b.token);
        assert!(s.get(&b.token, Some("boris"), t0).is_none());
        assert!(s.get("../etc", None, t0).is_none());
    }

    #[test]
    fn the_limit_counts_failures_per_address_and_user() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 1..=MAX_FAILURES {
            assert!(l.check(ip, "anna", t0).is_ok());
            assert_eq!(l.failed(ip, "anna", t0), i == MAX_FAILURES, "the lock-out is reported once");
        }
        assert!(!l.failed(ip, "anna", t0));
        assert!(l.check(ip, "anna", t0).is_err());
        assert!(l.check(ip, "boris", t0).is_err(), "the address is limited");
        assert!(l.check("192.0.2.2".parse().unwrap(), "anna", t0).is_err(), "the user is limited");
        assert!(l.check("192.0.2.2".parse().unwrap(), "boris", t0).is_ok());
        assert!(l.check(ip, "anna", t0 + FAILURE_WINDOW).is_ok(), "the window passes");
    }

    #[test]
    fn secrets_compare() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
