//! SRTP (RFC 3711) with keys exchanged in the SDP (SDES, RFC 4568).
//!
//! - [`SrtpMode`]: the `[sip] srtp` policy: `off` (plain RTP only), `optional` (SRTP when the
//!   caller offers it, plain RTP otherwise) or `required` (a plain RTP offer gets 488).
//! - [`Crypto`]: one `a=crypto` line of an offer that we can use: crypto suite
//!   `AES_CM_128_HMAC_SHA1_80` or `AES_CM_128_HMAC_SHA1_32`, one inline master key (16 bytes)
//!   and salt (14 bytes), no MKI, no session parameters that change what is protected.
//! - [`SrtpKeys`]: what a negotiation settled (suite, our key, the caller's key);
//!   [`SrtpSession`] protects what we send and unprotects what we receive, in the media
//!   thread's own buffers; a packet that does not authenticate (or is a replay) is an error the
//!   media thread counts and drops.
//!
//! The cryptography is webrtc-rs's `webrtc-srtp` (pure Rust, maintained with the webrtc
//! crates; AES-CM-128 with HMAC-SHA1, 80- and 32-bit tags, replay protection). The older
//! `srtp` crate (bindings to libsrtp2) was last released in 2020 and needs bindgen and
//! `libsrtp2-dev`; it was dropped for that.
//!
//! SDES keys travel in the SDP: they are only as secret as the signalling. Use SIP over TLS
//! (`tls_listen`) with SRTP.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Master key (16 bytes) followed by the master salt (14 bytes): the `inline:` key of
/// `AES_CM_128_HMAC_SHA1_*` (RFC 4568 §6.2.1).
pub const MASTER_KEY_LEN: usize = 30;

/// The most bytes protecting a packet adds (the 10-byte tag of `_80`; libsrtp's own bound is
/// larger and is what the buffers reserve: [`SRTP_TRAILER_ROOM`]).
pub const SRTP_TRAILER_ROOM: usize = 144;

/// The `[sip] srtp` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrtpMode {
    /// Plain RTP only: RTP/SAVP offers are refused (488) and `a=crypto` lines ignored.
    Off,
    /// SRTP when the caller offers it (RTP/SAVP, or RTP/AVP with `a=crypto`), plain RTP
    /// otherwise. The default.
    #[default]
    Optional,
    /// SRTP only: an offer without a usable `a=crypto` line gets 488 Not Acceptable Here.
    Required,
}

impl SrtpMode {
    /// `"off"`, `"optional"` or `"required"` (case-insensitive).
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "off" => Some(SrtpMode::Off),
            "optional" => Some(SrtpMode::Optional),
            "required" => Some(SrtpMode::Required),
            _ => None,
        }
    }

    /// The configuration value.
    pub fn as_str(self) -> &'static str {
        match self {
            SrtpMode::Off => "off",
            SrtpMode::Optional => "optional",
            SrtpMode::Required => "required",
        }
    }
}

/// The crypto suites we speak (RFC 4568 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CryptoSuite {
    /// AES-128 counter mode, HMAC-SHA1 with an 80-bit tag.
    AesCm128HmacSha1_80,
    /// AES-128 counter mode, HMAC-SHA1 with a 32-bit tag on SRTP (80 bits on SRTCP).
    AesCm128HmacSha1_32,
}

impl CryptoSuite {
    /// The suite's SDP name.
    pub fn name(self) -> &'static str {
        match self {
            CryptoSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            CryptoSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "AES_CM_128_HMAC_SHA1_80" => Some(CryptoSuite::AesCm128HmacSha1_80),
            "AES_CM_128_HMAC_SHA1_32" => Some(CryptoSuite::AesCm128HmacSha1_32),
            _ => None,
        }
    }
}

/// A master key and salt ([`MASTER_KEY_LEN`] bytes). `Debug` does not show it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MasterKey([u8; MASTER_KEY_LEN]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<hidden>)")
    }
}

impl MasterKey {
    /// A fresh key from the operating system's random source.
    pub fn random() -> std::io::Result<Self> {
        let mut key = [0u8; MASTER_KEY_LEN];
        getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(MasterKey(key))
    }

    /// The key from its bytes.
    pub const fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> Self {
        MasterKey(bytes)
    }

    /// The key's bytes (master key, then salt).
    pub fn as_bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.0
    }

    /// The `inline:` form: base64 with padding (RFC 4568 §6.1).
    pub fn to_base64(self) -> String {
        STANDARD.encode(self.0)
    }

    fn from_base64(text: &str) -> Option<Self> {
        // 30 bytes are 40 base64 characters; anything longer cannot be one key.
        if text.len() > 44 {
            return None;
        }
        let bytes = STANDARD.decode(text).ok()?;
        Some(MasterKey(bytes.try_into().ok()?))
    }
}

/// One usable `a=crypto` line of an offer (RFC 4568 §9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crypto {
    /// The tag, echoed in the answer.
    pub tag: u32,
    /// The suite.
    pub suite: CryptoSuite,
    /// The offerer's master key and salt: what it protects its packets with.
    pub key: MasterKey,
}

impl Crypto {
    /// Parses the value of an `a=crypto:` attribute (what follows the colon): `None` unless we
    /// can use it. Refused: other suites, more than one key, keys that are not 30 bytes, an MKI
    /// (we send none and expect none), a lifetime that is not a number or a power of two, and
    /// session parameters other than a window size hint (`WSH=`) or `KDR=0`: the others change
    /// what is protected (`UNENCRYPTED_SRTP`, ...) or how (FEC, key derivation rates).
    pub fn parse(value: &str) -> Option<Self> {
        let mut fields = value.split_ascii_whitespace();
        let tag = fields.next()?;
        if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let tag: u32 = tag.parse().ok()?;
        let suite = CryptoSuite::from_name(fields.next()?)?;
        let key_params = fields.next()?;
        if key_params.contains(';') {
            return None; // several keys: we would need MKIs to tell them apart
        }
        let inline = key_params.strip_prefix("inline:")?;
        let mut parts = inline.split('|');
        let key = MasterKey::from_base64(parts.next()?)?;
        for part in parts {
            if part.contains(':') {
                return None; // MKI:length
            }
            let lifetime_ok = match part.strip_prefix("2^") {
                Some(exp) => exp.parse::<u8>().is_ok_and(|e| e <= 48),
                None => !part.is_empty() && part.len() <= 20 && part.bytes().all(|b| b.is_ascii_digit()),
            };
            if !lifetime_ok {
                return None;
            }
        }
        for param in fields {
            let harmless = param == "KDR=0"
                || param.strip_prefix("WSH=").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !harmless {
                return None;
            }
        }
        Some(Crypto { tag, suite, key })
    }
}

/// The usable `a=crypto` lines of each m-section of an SDP body, in order (the session level
/// has none: RFC 4568 §9.1 puts them at media level). Lines we cannot use are left out.
pub(crate) fn crypto_per_media(body: &str) -> Vec<Vec<Crypto>> {
    let mut out: Vec<Vec<Crypto>> = Vec::new();
    for line in body.split(['\r', '\n']).map(str::trim_end) {
        if line.starts_with("m=") {
            out.push(Vec::new());
        } else if let (Some(value), Some(current)) = (line.strip_prefix("a=crypto:"), out.last_mut())
            && let Some(crypto) = Crypto::parse(value)
        {
            current.push(crypto);
        }
    }
    out
}

/// What a negotiation settled for a call's SRTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrtpKeys {
    /// The suite (both directions).
    pub suite: CryptoSuite,
    /// The tag of the offer's `a=crypto` line we answered.
    pub tag: u32,
    /// Our master key: it protects what we send (it is in our answer).
    pub local: MasterKey,
    /// The caller's master key: it protects what we receive (it was in the offer).
    pub remote: MasterKey,
}

impl SrtpKeys {
    /// The `a=crypto` value of our answer: the offer's tag and suite, our key.
    pub fn answer_attribute(&self) -> String {
        format!("{} {} inline:{}", self.tag, self.suite.name(), self.local.to_base64())
    }
}

/// Why an SRTP session could not be made or a packet not be (un)protected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("srtp: {0}")]
pub struct SrtpError(String);

/// The SRTP contexts of one call: outbound (our key) and inbound (the caller's key), for any
/// SSRC, with replay protection on what arrives (a 64-packet window).
pub struct SrtpSession {
    outbound: webrtc_srtp::context::Context,
    inbound: webrtc_srtp::context::Context,
}

impl fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SrtpSession")
    }
}

/// The replay window of what arrives (RFC 3711 §3.3.2 asks for at least 64).
const REPLAY_WINDOW: usize = 64;

impl SrtpSession {
    /// The contexts for `keys`.
    ///
    /// # Errors
    /// When the SRTP library refuses the keys (it does not for keys of the right length).
    pub fn new(keys: &SrtpKeys) -> Result<Self, SrtpError> {
        use webrtc_srtp::option::{srtcp_replay_protection, srtp_no_replay_protection, srtp_replay_protection};
        use webrtc_srtp::protection_profile::ProtectionProfile;
        let profile = match keys.suite {
            CryptoSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            CryptoSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        };
        let context = |key: &MasterKey, replay: bool| {
            let (master_key, salt) = key.as_bytes().split_at(16);
            let srtp = if replay { srtp_replay_protection(REPLAY_WINDOW) } else { srtp_no_replay_protection() };
            webrtc_srtp::context::Context::new(
                master_key,
                salt,
                profile,
                Some(srtp),
                Some(srtcp_replay_protection(REPLAY_WINDOW)),
            )
            .map_err(|e| SrtpError(e.to_string()))
        };
        Ok(SrtpSession { outbound: context(&keys.local, false)?, inbound: context(&keys.remote, true)? })
    }

    /// Protects the RTP packet in `packet`: it becomes the SRTP packet (encrypted payload,
    /// authentication tag appended). The buffer is reused; its capacity grows at most once.
    ///
    /// # Errors
    /// When the packet is not RTP.
    pub fn protect(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let out = self.outbound.encrypt_rtp(packet).map_err(|e| SrtpError(e.to_string()))?;
        packet.clear();
        packet.extend_from_slice(&out);
        Ok(())
    }

    /// Unprotects the SRTP packet in `packet`: it becomes the RTP packet.
    ///
    /// # Errors
    /// When the packet does not authenticate, is a replay, or is not SRTP: drop it. `packet`
    /// is left empty then.
    pub fn unprotect(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        match self.inbound.decrypt_rtp(packet) {
            Ok(out) => {
                packet.clear();
                packet.extend_from_slice(&out);
                Ok(())
            }
            Err(e) => {
                packet.clear();
                Err(SrtpError(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    #[test]
    fn modes() {
        assert_eq!(SrtpMode::parse("Required"), Some(SrtpMode::Required));
        assert_eq!(SrtpMode::parse("off"), Some(SrtpMode::Off));
        assert_eq!(SrtpMode::parse("sometimes"), None);
        assert_eq!(SrtpMode::default(), SrtpMode::Optional);
    }

    #[test]
    fn crypto_lines() {
        let c = Crypto::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|")).is_none();
        assert!(c, "an empty lifetime is malformed");
        let c = Crypto::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}")).unwrap();
        assert_eq!((c.tag, c.suite), (1, CryptoSuite::AesCm128HmacSha1_80));
        assert_eq!(c.key.to_base64(), KEY);
        for ok in [
            format!("2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}|2^31"),
            format!("3 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^48"),
            format!("3 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|1048576 WSH=64"),
            format!("3 AES_CM_128_HMAC_SHA1_80  inline:{KEY}  KDR=0"),
        ] {
            assert!(Crypto::parse(&ok).is_some(), "{ok}");
        }
        for bad in [
            format!("1 AES_256_CM_HMAC_SHA1_80 inline:{KEY}"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY};inline:{KEY}"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} UNENCRYPTED_SRTP"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^99"),
            "1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=".to_owned(),
            "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!".to_owned(),
            format!("x AES_CM_128_HMAC_SHA1_80 inline:{KEY}"),
            format!("99999999999 AES_CM_128_HMAC_SHA1_80 inline:{KEY}"),
            format!("1 AES_CM_128_HMAC_SHA1_80 {KEY}"),
            "1 AES_CM_128_HMAC_SHA1_80".to_owned(),
            String::new(),
        ] {
            assert!(Crypto::parse(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn crypto_lines_per_media_section() {
        let body = format!(
            "v=0\r\na=crypto:9 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\nm=audio 1 RTP/SAVP 0\r\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\na=crypto:2 BOGUS inline:{KEY}\r\n\
             m=video 0 RTP/AVP 31\r\nm=audio 2 RTP/AVP 0\r\na=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:{KEY}\r\n"
        );
        let per = crypto_per_media(&body);
        let tags: Vec<Vec<u32>> = per.iter().map(|v| v.iter().map(|c| c.tag).collect()).collect();
        assert_eq!(tags, [vec![1], vec![], vec![3]]);
    }

    #[test]
    fn random_keys_differ_and_debug_hides_them() {
        let (a, b) = (MasterKey::random().unwrap(), MasterKey::random().unwrap());
        assert_ne!(a, b);
        assert!(!format!("{a:?}").contains(&a.to_base64()));
        assert_eq!(MasterKey::from_base64(&a.to_base64()), Some(a));
    }

    fn rtp_packet(seq: u16, payload: u8) -> Vec<u8> {
        let mut p = vec![0x80, 0, (seq >> 8) as u8, seq as u8, 0, 0, 0, 160, 0xde, 0xad, 0xbe, 0xef];
        p.extend_from_slice(&[payload; 160]);
        p
    }

    #[test]
    fn protect_then_unprotect_in_place_both_suites() {
        for suite in [CryptoSuite::AesCm128HmacSha1_80, CryptoSuite::AesCm128HmacSha1_32] {
            let (a, b) = (MasterKey::random().unwrap(), MasterKey::random().unwrap());
            let mut alice = SrtpSession::new(&SrtpKeys { suite, tag: 1, local: a, remote: b }).unwrap();
            let mut bob = SrtpSession::new(&SrtpKeys { suite, tag: 1, local: b, remote: a }).unwrap();
            let mut buf = Vec::with_capacity(2048);
            for seq in 0..50u16 {
                let plain = rtp_packet(seq, seq as u8);
                buf.clear();
                buf.extend_from_slice(&plain);
                let capacity = buf.capacity();
                alice.protect(&mut buf).unwrap();
                assert_eq!(buf.capacity(), capacity, "no reallocation");
                let tag = if suite == CryptoSuite::AesCm128HmacSha1_80 { 10 } else { 4 };
                assert_eq!(buf.len(), plain.len() + tag);
                assert_ne!(&buf[12..plain.len()], &plain[12..], "the payload is encrypted");
                bob.unprotect(&mut buf).unwrap();
                assert_eq!(buf, plain);
            }
            // A tampered packet and a replay are refused.
            let plain = rtp_packet(100, 7);
            buf.clear();
            buf.extend_from_slice(&plain);
            alice.protect(&mut buf).unwrap();
            let saved = buf.clone();
            buf[20] ^= 1;
            assert!(bob.unprotect(&mut buf).is_err());
            buf.clone_from(&saved);
            assert!(bob.unprotect(&mut buf).is_ok());
            buf.clone_from(&saved);
            assert!(bob.unprotect(&mut buf).is_err(), "replay");
            // Garbage and plain RTP are refused, never a panic.
            for junk in [&[][..], &[0x80][..], &[0u8; 11][..], &rtp_packet(5, 1)[..]] {
                buf.clear();
                buf.extend_from_slice(junk);
                assert!(bob.unprotect(&mut buf).is_err());
            }
        }
    }

    mod hostile {
        use super::*;
        use proptest::prelude::*;

        fn suite() -> impl Strategy<Value = CryptoSuite> {
            prop_oneof![Just(CryptoSuite::AesCm128HmacSha1_80), Just(CryptoSuite::AesCm128HmacSha1_32)]
        }

        proptest! {
            /// Anything at all: `None` or a usable line, never a panic.
            #[test]
            fn any_text_parses_or_is_refused(text in "\\PC{0,200}") {
                let _ = Crypto::parse(&text);
                let _ = crypto_per_media(&format!("m=audio 1 RTP/SAVP 0\r\na=crypto:{text}\r\n"));
            }

            /// Text shaped like a crypto attribute (digits, suite names, `inline:`, base64,
            /// `|`, `:`, `^`, `;`, `=`, spaces): parses only into the key it carries.
            #[test]
            fn attribute_shaped_text_never_panics(
                parts in proptest::collection::vec(prop_oneof![
                    "[0-9]{0,12}".prop_map(String::from),
                    Just("AES_CM_128_HMAC_SHA1_80".to_owned()),
                    Just("AES_CM_128_HMAC_SHA1_32".to_owned()),
                    Just("inline:".to_owned()),
                    "[A-Za-z0-9+/=]{0,64}".prop_map(String::from),
                    "[|:^; =\\t]{1,3}".prop_map(String::from),
                    Just("2^".to_owned()),
                    Just("WSH=".to_owned()),
                ], 0..12),
            ) {
                let text = parts.concat();
                if let Some(c) = Crypto::parse(&text) {
                    prop_assert!(text.contains(&c.key.to_base64()[..38]));
                }
            }

            /// What we write (our answer's attribute) is what we read.
            #[test]
            fn our_attribute_round_trips(tag in 0u32..1_000_000_000, suite in suite(), key in any::<[u8; 30]>(), lifetime in proptest::option::of(0u8..=48)) {
                let key = MasterKey::from_bytes(key);
                let mut text = SrtpKeys { suite, tag, local: key, remote: key }.answer_attribute();
                if let Some(l) = lifetime {
                    text.push_str(&format!("|2^{l}"));
                }
                let c = Crypto::parse(&text).unwrap();
                prop_assert_eq!((c.tag, c.suite, c.key), (tag, suite, key));
            }

            /// Hostile datagrams are refused by the SRTP session, never a panic.
            #[test]
            fn hostile_packets_are_refused(data in proptest::collection::vec(any::<u8>(), 0..400)) {
                let (a, b) = (MasterKey::from_bytes([1; 30]), MasterKey::from_bytes([2; 30]));
                let mut session =
                    SrtpSession::new(&SrtpKeys { suite: CryptoSuite::AesCm128HmacSha1_80, tag: 1, local: a, remote: b }).unwrap();
                let mut buf = data.clone();
                prop_assert!(session.unprotect(&mut buf).is_err());
                // Protecting hostile bytes is an error or a packet, never a panic.
                let mut buf = data;
                let _ = session.protect(&mut buf);
            }
        }
    }
}
