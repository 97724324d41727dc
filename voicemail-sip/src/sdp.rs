//! SDP offer/answer (RFC 3264, RFC 4566) for the voicemail endpoint.
//!
//! [`negotiate`] takes the raw body of an INVITE (or re-INVITE) and either produces an answer for
//! the 200 OK ([`Negotiated`]) or says why the offer cannot be answered ([`SdpError`]: 488 or 400).
//! For an INVITE without SDP (a late offer), [`make_offer`] writes our offer for the 200 OK and
//! [`accept_answer`] reads the caller's answer from the ACK.
//!
//! What is accepted:
//! - the first `m=audio` line with a non-zero port over plain `RTP/AVP` (or, with
//!   [`negotiate_srtp`], SRTP: `RTP/SAVP` or `RTP/AVP` with `a=crypto`) that offers one of our
//!   codecs: PCMU, PCMA, G.722 (static payload types 0, 8 and 9 even without `a=rtpmap`),
//!   `L16/8000` (mono) and `opus/48000/2` (dynamic, by their `a=rtpmap` name,
//!   case-insensitive). The codec is the first of **our** preference order
//!   ([`MediaConfig::codecs`], default Opus, G.722, PCMA, PCMU, L16) that the offer has, so a
//!   phone offering G.722 or Opus gets wideband audio, and an offer of any single one of them is
//!   answered with it (RFC 3264 §6.1 lets the answerer choose among the offered formats);
//! - RFC 4733 `telephone-event` at the chosen codec's RTP clock rate (8000, or 48000 for Opus),
//!   with whatever payload type the offer uses for it in that m-line. A payload type with
//!   conflicting `a=rtpmap` lines is ambiguous and never used;
//! - `a=ptime` (media level, else session level, the first line if there are several), rounded to
//!   a multiple of 10 ms between 10 and 120 ms; 20 ms when absent or unreadable.
//!
//! The answer has as many m-lines as the offer, in the same order (RFC 3264 §6): the chosen audio
//! stream with our port, and every other stream rejected with port 0, keeping its media type,
//! transport and one of its formats.
//!
//! Parsing uses `ezk-sdp-types`. Real offers carry lines that parser refuses (`a=rtpmap:98 iLBC`
//! without a clock rate, `b=CT 1000`, unknown media types such as `m=image`): when the whole
//! offer does not parse, each line is checked on its own, bad attribute lines are dropped and bad
//! m-lines are kept as rejected placeholders, so one odd line never costs the call.
//!
//! Offers over [`MAX_OFFER_LEN`] bytes are malformed; offers with more than [`MAX_MEDIA_STREAMS`]
//! m-lines are not acceptable.
//!
//! Nothing here panics on any input, allocates more than a small multiple of the input size, or
//! loops over counts taken from the input (such as a `c=` address count); the property tests below
//! and the `sdp_offer` fuzz target check this.

mod offer;

pub use offer::{LocalOffer, accept_answer_srtp, make_offer_srtp, make_reoffer};
// Without SRTP: for the tests and the fuzz targets (the endpoint always passes its SRTP policy).
#[cfg(any(test, feature = "_internals"))]
pub use offer::{accept_answer, make_offer};

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ezk_sdp_types::{
    Direction as SdpDirection, MediaDescription, MediaType, SessionDescription, TaggedAddress, TransportProtocol,
};
use voicemail_core::CodecKind;
use voicemail_core::codec::Codec as _;
use voicemail_core::config::MediaConfig;

use crate::srtp::{CryptoSuite, MasterKey, SrtpKeys, SrtpMode};

/// Largest SDP body accepted (bytes). Bigger bodies are [`SdpError::Malformed`].
pub const MAX_OFFER_LEN: usize = 64 * 1024;

/// Most m-lines an offer may have; more are [`SdpError::NotAcceptable`] (the answer would have to
/// repeat every one of them).
pub const MAX_MEDIA_STREAMS: usize = 64;

/// Default packetization time when the offer has no usable `a=ptime`.
pub const DEFAULT_PTIME: Duration = Duration::from_millis(20);

/// Attributes whose value `ezk-sdp-types` parses strictly (a bad value fails the whole body).
const STRICT_ATTRIBUTES: [&str; 15] = [
    "group",
    "rtcp",
    "rtcp-fb",
    "msid",
    "rtpmap",
    "fmtp",
    "ice-options",
    "ice-ufrag",
    "ice-pwd",
    "candidate",
    "crypto",
    "extmap",
    "ssrc",
    "fingerprint",
    "imageattr",
];

/// Stand-in for an m-line the parser refuses; it is always answered as rejected.
const PLACEHOLDER_MLINE: &str = "m=application 0 RTP/AVP 0";

/// Longest token copied from an offered m-line into a rejected m-line of the answer.
const MAX_TOKEN_LEN: usize = 64;

/// Our side of the media session, as written into the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalMedia {
    /// Address the RTP socket is reachable at (written into `o=` and `c=`).
    pub ip: IpAddr,
    /// RTP port of the call's socket.
    pub port: u16,
    /// `o=` session id; keep it for the whole dialog.
    pub session_id: u64,
    /// `o=` session version; increment it for every new answer in the same dialog (RFC 3264 §8).
    pub version: u64,
}

/// Media direction of the accepted stream, as offered by the remote side (RFC 3264 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// `a=sendrecv`, also the default when no direction attribute is present.
    #[default]
    SendRecv,
    /// `a=sendonly`: the remote only sends (we answer `recvonly`). Typical for hold.
    SendOnly,
    /// `a=recvonly`: the remote only receives (we answer `sendonly`).
    RecvOnly,
    /// `a=inactive`: no media in either direction (we answer `inactive`).
    Inactive,
}

impl Direction {
    /// The direction attribute we put into the answer for this offered direction.
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// The attribute name (`sendrecv`, `sendonly`, `recvonly`, `inactive`).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Whether the remote sends media to us in this direction.
    pub fn remote_sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the remote wants media from us in this direction.
    pub fn remote_receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

impl From<SdpDirection> for Direction {
    fn from(direction: SdpDirection) -> Self {
        match direction {
            SdpDirection::SendRecv => Direction::SendRecv,
            SdpDirection::SendOnly => Direction::SendOnly,
            SdpDirection::RecvOnly => Direction::RecvOnly,
            SdpDirection::Inactive => Direction::Inactive,
        }
    }
}

/// The result of a successful negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The SDP answer for the 200 OK (`application/sdp`, CRLF line ends); for a late offer
    /// ([`accept_answer`]), our offer, which the 200 OK carried.
    pub answer: String,
    /// The chosen audio codec.
    pub codec: CodecKind,
    /// The RTP payload type the offer uses for the chosen codec (we send and expect this one).
    pub payload_type: u8,
    /// The RFC 4733 telephone-event payload type of the offer, if it has one at the codec's
    /// clock rate.
    pub dtmf_payload_type: Option<u8>,
    /// Packetization time: 10 to 120 ms in steps of 10 ms.
    pub ptime: Duration,
    /// Where the remote wants RTP sent: `None` for hold (`c=IN IP4 0.0.0.0`), port 0, a
    /// multicast or broadcast address, or a host name (we do no DNS lookups for media). Symmetric
    /// RTP can still latch onto the address the caller really sends from.
    pub remote_rtp: Option<SocketAddr>,
    /// The direction the remote offered for the accepted stream (media level overrides session
    /// level).
    pub direction: Direction,
}

/// Why an offer could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// A valid offer with nothing we can accept: answer `488 Not Acceptable Here`.
    #[error("no acceptable media: {0}")]
    NotAcceptable(String),
    /// The body is not usable SDP: answer `400 Bad Request`.
    #[error("malformed sdp: {0}")]
    Malformed(String),
}

impl SdpError {
    /// The SIP status code to answer an INVITE carrying this offer with.
    pub fn status_code(&self) -> u16 {
        match self {
            SdpError::NotAcceptable(_) => 488,
            SdpError::Malformed(_) => 400,
        }
    }
}

/// One `m=` line as written in the offer, kept for rejecting it in the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawMLine {
    media: String,
    proto: String,
    format: String,
}

impl RawMLine {
    /// Tokens of an offered `m=` line; anything that is not an RFC 4566 token is replaced.
    fn from_line(line: &str) -> Self {
        let mut tokens = line.get(2..).unwrap_or_default().split_ascii_whitespace();
        let media = clean_token(tokens.next(), false).unwrap_or_else(|| "application".to_owned());
        let _port = tokens.next();
        let proto = clean_token(tokens.next(), true).unwrap_or_else(|| "RTP/AVP".to_owned());
        let format = clean_token(tokens.next(), false).unwrap_or_else(|| "0".to_owned());
        RawMLine { media, proto, format }
    }
}

/// A token safe to copy into our answer: RFC 4566 `token` characters (and `/` between tokens
/// for a transport), bounded length.
fn clean_token(token: Option<&str>, slashes: bool) -> Option<String> {
    let token = token?;
    let token_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`{|}~".contains(&b);
    let valid = if slashes {
        token.split('/').all(|part| !part.is_empty() && part.bytes().all(token_char))
    } else {
        !token.is_empty() && token.bytes().all(token_char)
    };
    (valid && token.len() <= MAX_TOKEN_LEN).then(|| token.to_owned())
}

/// What a payload type of an m-line stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Audio(CodecKind),
    /// RFC 4733 events at this clock rate.
    TelephoneEvent(u32),
    Other,
}

/// [`negotiate_with`] our default preferences ([`MediaConfig::default`]: Opus, G.722, PCMA,
/// PCMU, L16; Opus at 16 kHz).
///
/// # Errors
/// As [`negotiate_with`].
pub fn negotiate(offer: &[u8], local: &LocalMedia) -> Result<Negotiated, SdpError> {
    negotiate_with(offer, local, &MediaConfig::default())
}

/// Negotiates our answer to an SDP `offer` (RFC 3264 §6), choosing the first codec of
/// `media.codecs` that the accepted stream offers.
///
/// See the module documentation for what is accepted. The returned answer always has as many
/// m-lines as the offer, in the same order.
///
/// # Errors
/// [`SdpError::NotAcceptable`] (488) when no audio stream offers one of `media.codecs` over
/// RTP/AVP; [`SdpError::Malformed`] (400) when the body is not SDP (too big, or no usable `o=`,
/// `s=`, `t=`).
pub fn negotiate_with(offer: &[u8], local: &LocalMedia, media_config: &MediaConfig) -> Result<Negotiated, SdpError> {
    negotiate_srtp(offer, local, media_config, &SrtpOffer::OFF).map(|(n, _)| n)
}

/// How [`negotiate_srtp`] treats SRTP: the `[sip] srtp` mode and the master key our answer
/// carries when it accepts SRTP (keep it for the whole call: a re-INVITE's answer repeats it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrtpOffer {
    /// Plain RTP only, SRTP when offered, or SRTP only.
    pub mode: SrtpMode,
    /// Our master key and salt.
    pub local_key: MasterKey,
}

impl SrtpOffer {
    /// Plain RTP only ([`negotiate_with`]).
    pub const OFF: SrtpOffer = SrtpOffer { mode: SrtpMode::Off, local_key: MasterKey::from_bytes([0; 30]) };
}

/// [`negotiate_with`], with SRTP (SDES, RFC 4568) as `srtp` says: the answer and, when the
/// accepted stream is SRTP, the keys of both directions.
///
/// A stream is SRTP when it is offered over `RTP/SAVP` or over `RTP/AVP` with `a=crypto`
/// lines ("best effort" SRTP), and one of its `a=crypto` lines is usable
/// ([`Crypto::parse`](crate::srtp::Crypto::parse): `AES_CM_128_HMAC_SHA1_80` or `_32`; the first usable one is
/// answered, with its tag and suite and our key). With [`SrtpMode::Optional`] or
/// [`SrtpMode::Required`] an SRTP stream is preferred to a plain one; with
/// [`SrtpMode::Required`] plain streams are not acceptable (488); with [`SrtpMode::Off`]
/// `RTP/SAVP` streams are not acceptable and `a=crypto` lines are ignored.
///
/// # Errors
/// As [`negotiate_with`].
pub fn negotiate_srtp(
    offer: &[u8],
    local: &LocalMedia,
    media_config: &MediaConfig,
    srtp: &SrtpOffer,
) -> Result<(Negotiated, Option<SrtpKeys>), SdpError> {
    let (session, raw_mlines) = parse_offer(offer)?;
    if session.media_descriptions.is_empty() {
        return Err(SdpError::NotAcceptable("the offer has no media stream".into()));
    }
    // `a=crypto` lines are ours to read (`parse_offer` leaves them out): see `srtp`.
    let crypto = if srtp.mode == SrtpMode::Off {
        Vec::new()
    } else {
        crate::srtp::crypto_per_media(&String::from_utf8_lossy(offer))
    };

    // SRTP streams first (unless SRTP is off), then plain ones (unless it is required).
    let mut chosen = None;
    'passes: for secure in [true, false] {
        if (secure && srtp.mode == SrtpMode::Off) || (!secure && srtp.mode == SrtpMode::Required) {
            continue;
        }
        for (index, media) in session.media_descriptions.iter().enumerate() {
            let proto = &media.media.proto;
            let keys = crypto.get(index).and_then(|c| c.first()).map(|c| SrtpKeys {
                suite: c.suite,
                tag: c.tag,
                local: srtp.local_key,
                remote: c.key,
            });
            let usable = match (secure, proto) {
                (true, &TransportProtocol::RtpSavp | &TransportProtocol::RtpAvp) => keys.is_some(),
                (false, &TransportProtocol::RtpAvp) => true,
                _ => false,
            };
            if !usable {
                continue;
            }
            if let Some(selection) = select_audio(media, &media_config.codecs) {
                chosen = Some((index, media, selection, if secure { keys } else { None }));
                break 'passes;
            }
        }
    }
    let Some((chosen_index, media, (codec, payload_type, dtmf_payload_type), keys)) = chosen else {
        let names: Vec<&str> = media_config.codecs.iter().map(|c| c.name()).collect();
        let over = match srtp.mode {
            SrtpMode::Off => "RTP/AVP",
            SrtpMode::Optional => "RTP/AVP or SRTP",
            SrtpMode::Required => "SRTP (AES_CM_128_HMAC_SHA1_80 or _32 keys), which is required,",
        };
        return Err(SdpError::NotAcceptable(format!("no audio stream offers {} over {over}", names.join(", "))));
    };

    let ptime = ptime_of(&session, media);
    let direction = Direction::from(media.direction);
    let connection = media.connection.as_ref().or(session.connection.as_ref());
    let remote_rtp = connection.and_then(|c| usable_address(&c.address)).and_then(|ip| {
        let port = media.media.port;
        (port != 0).then_some(SocketAddr::new(ip, port))
    });

    let secure = keys.map(|k| {
        let proto = if media.media.proto == TransportProtocol::RtpSavp { "RTP/SAVP" } else { "RTP/AVP" };
        (proto, k.answer_attribute())
    });
    let answer = write_answer(
        local,
        &raw_mlines,
        chosen_index,
        (codec, media_config.opus_sample_rate_hz),
        payload_type,
        dtmf_payload_type,
        ptime,
        direction.answer(),
        secure.as_ref().map(|(proto, line)| (*proto, line.as_str())),
    );
    Ok((Negotiated { answer, codec, payload_type, dtmf_payload_type, ptime, remote_rtp, direction }, keys))
}

/// Parses the offer with `ezk-sdp-types`, leniently (see the module docs).
///
/// Returns the session and, for each of its media descriptions, the offered m-line tokens.
fn parse_offer(offer: &[u8]) -> Result<(SessionDescription, Vec<RawMLine>), SdpError> {
    if offer.len() > MAX_OFFER_LEN {
        return Err(SdpError::Malformed(format!("body of {} bytes exceeds {MAX_OFFER_LEN}", offer.len())));
    }
    let text = String::from_utf8_lossy(offer);
    // `a=crypto` lines are read by `srtp::crypto_per_media`, never by ezk-sdp-types: its
    // parser computes a `|2^48` key lifetime (a common value) in a u32, which overflows.
    let lines: Vec<&str> = text
        .split(['\r', '\n'])
        .map(str::trim_end)
        .filter(|line| !line.is_empty() && !line.starts_with("a=crypto:"))
        .collect();
    let raw_mlines: Vec<RawMLine> =
        lines.iter().filter(|line| line.starts_with("m=")).map(|line| RawMLine::from_line(line)).collect();
    if raw_mlines.len() > MAX_MEDIA_STREAMS {
        return Err(SdpError::NotAcceptable(format!(
            "{} media streams, at most {MAX_MEDIA_STREAMS} are answered",
            raw_mlines.len()
        )));
    }

    let session = match parse_lines(lines.iter().copied()) {
        Ok(session) => session,
        Err(strict_error) => {
            let mut in_media = false;
            let kept = lines.iter().filter_map(|&line| {
                if line.starts_with("m=") {
                    in_media = true;
                    Some(if line_parses(line, false) { line } else { PLACEHOLDER_MLINE })
                } else if line.get(2..).is_none() {
                    None
                } else if !needs_check(line) || line_parses(line, in_media) {
                    Some(line)
                } else {
                    None
                }
            });
            parse_lines(kept).map_err(|_| SdpError::Malformed(shorten(&strict_error.to_string())))?
        }
    };

    if session.media_descriptions.len() != raw_mlines.len() {
        return Err(SdpError::Malformed("m-lines could not be matched to the offer".into()));
    }
    Ok((session, raw_mlines))
}

fn parse_lines<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> Result<SessionDescription, ezk_sdp_types::ParseSessionDescriptionError> {
    let mut text = String::new();
    for line in lines {
        text.push_str(line);
        text.push_str("\r\n");
    }
    SessionDescription::parse(&text.into())
}

/// Whether `ezk-sdp-types` may refuse this line (the others it takes whatever they contain).
fn needs_check(line: &str) -> bool {
    match line.as_bytes() {
        [b'o' | b't' | b'c' | b'b' | b'm', b'=', ..] => true,
        [b'a', b'=', ..] => line
            .get(2..)
            .and_then(|attribute| attribute.split_once(':'))
            .is_some_and(|(name, _)| STRICT_ATTRIBUTES.contains(&name)),
        _ => false,
    }
}

/// Whether one line parses on its own, at session level or inside a media description.
fn line_parses(line: &str, in_media: bool) -> bool {
    let media = if in_media { "m=audio 9 RTP/AVP 0\r\n" } else { "" };
    let text = format!("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n{media}{line}\r\n");
    SessionDescription::parse(&text.into()).is_ok()
}

/// Error text from the network, cut to a reasonable length for logs and reason phrases.
fn shorten(text: &str) -> String {
    const MAX: usize = 160;
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(MAX).collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    out
}

/// The codec (first of `preference` offered), its payload type (the first the offer lists for
/// it) and the telephone-event payload type at its clock rate, for an acceptable audio stream.
fn select_audio(media: &MediaDescription, preference: &[CodecKind]) -> Option<(CodecKind, u8, Option<u8>)> {
    // The transport (RTP/AVP, RTP/SAVP) is the caller's to check.
    if media.media.media_type != MediaType::Audio || media.media.port == 0 {
        return None;
    }
    // RTP payload types have 7 bits; a larger number is nothing we could send or receive.
    let formats: Vec<(u8, Format)> =
        media.media.fmts.iter().filter(|&&pt| pt <= 127).map(|&pt| (pt, format_of(media, pt))).collect();
    let (codec, payload_type) = preference
        .iter()
        .find_map(|&want| formats.iter().find(|(_, f)| *f == Format::Audio(want)).map(|&(pt, _)| (want, pt)))?;
    let clock = codec.clock_rate_hz();
    let dtmf = formats.iter().find(|(_, f)| *f == Format::TelephoneEvent(clock)).map(|&(pt, _)| pt);
    Some((codec, payload_type, dtmf))
}

/// What `payload_type` means in `media`: its `a=rtpmap`, else the RFC 3551 static assignment.
fn format_of(media: &MediaDescription, payload_type: u8) -> Format {
    let mut maps = media.rtpmap.iter().filter(|map| map.payload == payload_type);
    let Some(first) = maps.next() else {
        return match payload_type {
            0 => Format::Audio(CodecKind::Pcmu),
            8 => Format::Audio(CodecKind::Pcma),
            9 => Format::Audio(CodecKind::G722),
            _ => Format::Other,
        };
    };
    let describe = |map: &ezk_sdp_types::RtpMap| {
        let channels = map.params.as_ref().map(|p| p.trim().to_owned());
        (map.encoding.trim().to_ascii_lowercase(), map.clock_rate, channels)
    };
    let (encoding, clock_rate, channels) = describe(first);
    // The same payload type mapped twice to different encodings: ambiguous, use neither.
    if maps.any(|other| describe(other) != (encoding.clone(), clock_rate, channels.clone())) {
        return Format::Other;
    }
    let mono = matches!(channels.as_deref(), None | Some("1"));
    match (encoding.as_str(), clock_rate) {
        ("pcmu", 8000) if mono => Format::Audio(CodecKind::Pcmu),
        ("pcma", 8000) if mono => Format::Audio(CodecKind::Pcma),
        ("g722", 8000) if mono => Format::Audio(CodecKind::G722),
        ("l16", 8000) if mono => Format::Audio(CodecKind::L16),
        // RFC 7587 §7: always `opus/48000/2`; a missing channel count is tolerated.
        ("opus", 48_000) if matches!(channels.as_deref(), None | Some("2") | Some("1")) => {
            Format::Audio(CodecKind::Opus)
        }
        ("telephone-event", rate @ (8000 | 48_000)) => Format::TelephoneEvent(rate),
        _ => Format::Other,
    }
}

/// `a=ptime` of the stream (else of the session), rounded to 10..=120 ms in steps of 10 ms.
fn ptime_of(session: &SessionDescription, media: &MediaDescription) -> Duration {
    let first_ptime = |attributes: &[ezk_sdp_types::UnknownAttribute]| {
        attributes
            .iter()
            .find(|attribute| attribute.name.eq_ignore_ascii_case("ptime"))
            .and_then(|attribute| attribute.value.as_ref())
            .map(|value| value.trim().to_owned())
    };
    let value = first_ptime(&media.attributes).or_else(|| first_ptime(&session.attributes));
    value.and_then(|value| value.parse::<f64>().ok()).filter(|ms| ms.is_finite()).map_or(DEFAULT_PTIME, |ms| {
        let tens = (ms / 10.0).round().clamp(1.0, 12.0);
        // `tens` is a whole number in 1..=12, so the conversion is exact.
        Duration::from_millis(tens as u64 * 10)
    })
}

/// The address RTP can be sent to, if the connection address is a usable unicast IP.
fn usable_address(address: &TaggedAddress) -> Option<IpAddr> {
    let ip = match address {
        TaggedAddress::IP4(ip) => IpAddr::V4(*ip),
        TaggedAddress::IP6(ip) => IpAddr::V6(*ip),
        TaggedAddress::IP4FQDN(_) | TaggedAddress::IP6FQDN(_) => return None,
    };
    let unusable = match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    };
    (!unusable).then_some(ip)
}

#[allow(clippy::too_many_arguments)]
fn write_answer(
    local: &LocalMedia,
    raw_mlines: &[RawMLine],
    chosen_index: usize,
    (codec, opus_rate): (CodecKind, u32),
    payload_type: u8,
    dtmf_payload_type: Option<u8>,
    ptime: Duration,
    direction: Direction,
    secure: Option<(&str, &str)>,
) -> String {
    let address = match local.ip {
        IpAddr::V4(ip) => format!("IN IP4 {ip}"),
        IpAddr::V6(ip) => format!("IN IP6 {ip}"),
    };
    let mut sdp = String::with_capacity(256 + raw_mlines.len() * 32);
    // Writing into a String cannot fail; the results are ignored on purpose.
    let _ = write!(sdp, "v=0\r\no=voicemail {} {} {address}\r\ns=voicemail\r\n", local.session_id, local.version);
    let _ = write!(sdp, "c={address}\r\nt=0 0\r\n");
    for (index, raw) in raw_mlines.iter().enumerate() {
        if index != chosen_index {
            let _ = write!(sdp, "m={} 0 {} {}\r\n", raw.media, raw.proto, raw.format);
            continue;
        }
        let clock = codec.clock_rate_hz();
        let proto = secure.map_or("RTP/AVP", |(proto, _)| proto);
        let _ = write!(sdp, "m=audio {} {proto} {payload_type}", local.port);
        if let Some(dtmf) = dtmf_payload_type {
            let _ = write!(sdp, " {dtmf}");
        }
        if codec == CodecKind::Opus {
            // RFC 7587 §7: what we decode (mono at our rate) and that we use in-band FEC.
            let _ = write!(
                sdp,
                "\r\na=rtpmap:{payload_type} opus/48000/2\r\na=fmtp:{payload_type} maxplaybackrate={opus_rate}; \
                 sprop-maxcapturerate=16000; stereo=0; sprop-stereo=0; useinbandfec=1\r\n"
            );
        } else {
            let _ = write!(sdp, "\r\na=rtpmap:{payload_type} {}/{clock}\r\n", codec.name());
        }
        if let Some(dtmf) = dtmf_payload_type {
            let _ = write!(sdp, "a=rtpmap:{dtmf} telephone-event/{clock}\r\na=fmtp:{dtmf} 0-15\r\n");
        }
        let _ = write!(sdp, "a=ptime:{}\r\na={}\r\n", ptime.as_millis(), direction.as_str());
        if let Some((_, crypto)) = secure {
            let _ = write!(sdp, "a=crypto:{crypto}\r\n");
        }
    }
    sdp
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const LOCAL: LocalMedia =
        LocalMedia { ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), port: 40000, session_id: 42, version: 1 };

    const SIPP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
        t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    const BARESIP: &str = "v=0\no=- 1 2 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n\
        m=audio 10000 RTP/AVP 96 8 0 101\na=rtpmap:96 opus/48000/2\na=rtpmap:8 PCMA/8000\n\
        a=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\na=ptime:20\na=sendrecv\n";

    fn offer(media: &str) -> String {
        format!("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n{media}")
    }

    fn reparse(answer: &str) -> SessionDescription {
        SessionDescription::parse(&answer.to_owned().into()).unwrap()
    }

    #[test]
    fn sipp_default_offer_gives_pcmu() {
        let n = negotiate(SIPP.as_bytes(), &LOCAL).unwrap();
        assert_eq!(n.codec, CodecKind::Pcmu);
        assert_eq!(n.payload_type, 0);
        assert_eq!(n.dtmf_payload_type, None);
        assert_eq!(n.ptime, Duration::from_millis(20));
        assert_eq!(n.remote_rtp, Some("127.0.0.1:6000".parse().unwrap()));
        assert_eq!(n.direction, Direction::SendRecv);
        assert_eq!(
            n.answer,
            "v=0\r\no=voicemail 42 1 IN IP4 127.0.0.1\r\ns=voicemail\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
        );
    }

    #[test]
    fn lf_only_offer_in_preference_order() {
        // Our preference (Opus first) wins over the offer's order; telephone-event/8000 does
        // not go with Opus's 48 kHz clock.
        let n = negotiate(BARESIP.as_bytes(), &LOCAL).unwrap();
        assert_eq!((n.codec, n.payload_type, n.dtmf_payload_type), (CodecKind::Opus, 96, None));
        assert!(n.answer.contains("a=rtpmap:96 opus/48000/2\r\na=fmtp:96 maxplaybackrate=16000; "), "{}", n.answer);
        // Without Opus in our list, PCMA (ours before PCMU) with its telephone-event.
        let narrow = MediaConfig { codecs: vec![CodecKind::Pcmu, CodecKind::Pcma], ..MediaConfig::default() };
        let n = negotiate_with(BARESIP.as_bytes(), &LOCAL, &narrow).unwrap();
        assert_eq!((n.codec, n.payload_type, n.dtmf_payload_type), (CodecKind::Pcmu, 0, Some(101)));
        let answer = reparse(&n.answer);
        let media = &answer.media_descriptions[0];
        assert_eq!(media.media.fmts, [0, 101]);
        assert_eq!(media.media.port, 40000);
        assert!(n.answer.contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"));
    }

    #[test]
    fn single_codec_offers_are_answered_with_that_codec() {
        let cases = [
            ("m=audio 5000 RTP/AVP 9\r\n", CodecKind::G722, 9, None, "a=rtpmap:9 G722/8000\r\n"),
            (
                "m=audio 5000 RTP/AVP 9 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
                CodecKind::G722,
                9,
                Some(101),
                "a=rtpmap:101 telephone-event/8000\r\n",
            ),
            (
                "m=audio 5000 RTP/AVP 111 110\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\n\
                 a=rtpmap:110 telephone-event/48000\r\n",
                CodecKind::Opus,
                111,
                Some(110),
                "a=rtpmap:110 telephone-event/48000\r\n",
            ),
            (
                "m=audio 5000 RTP/AVP 97\r\na=rtpmap:97 L16/8000\r\n",
                CodecKind::L16,
                97,
                None,
                "a=rtpmap:97 L16/8000\r\n",
            ),
            (
                "m=audio 5000 RTP/AVP 98\r\na=rtpmap:98 l16/8000/1\r\n",
                CodecKind::L16,
                98,
                None,
                "a=rtpmap:98 L16/8000\r\n",
            ),
        ];
        for (media, codec, pt, dtmf, line) in cases {
            let n = negotiate(offer(media).as_bytes(), &LOCAL).unwrap_or_else(|e| panic!("{media:?}: {e}"));
            assert_eq!((n.codec, n.payload_type, n.dtmf_payload_type), (codec, pt, dtmf), "{media:?}");
            assert!(n.answer.contains(line), "{}", n.answer);
            reparse(&n.answer);
        }
        // Wideband first, whatever the offer's order.
        let n = negotiate(offer("m=audio 5000 RTP/AVP 0 8 9\r\n").as_bytes(), &LOCAL).unwrap();
        assert_eq!(n.codec, CodecKind::G722);
        // L16 at other rates or in stereo, and G.722 at 16000 (a common mistake), are not ours.
        for media in [
            "m=audio 5000 RTP/AVP 97\r\na=rtpmap:97 L16/16000\r\n",
            "m=audio 5000 RTP/AVP 97\r\na=rtpmap:97 L16/8000/2\r\n",
            "m=audio 5000 RTP/AVP 97\r\na=rtpmap:97 G722/16000\r\n",
            "m=audio 5000 RTP/AVP 97\r\na=rtpmap:97 opus/8000\r\n",
        ] {
            assert!(matches!(negotiate(offer(media).as_bytes(), &LOCAL), Err(SdpError::NotAcceptable(_))), "{media}");
        }
        // A codec left out of the configuration is refused.
        let only_g711 = MediaConfig { codecs: vec![CodecKind::Pcma, CodecKind::Pcmu], ..MediaConfig::default() };
        let e = negotiate_with(offer("m=audio 5000 RTP/AVP 9\r\n").as_bytes(), &LOCAL, &only_g711).unwrap_err();
        assert_eq!(e.status_code(), 488);
        // The Opus rate is announced as our maximum playback rate.
        let wide = MediaConfig { opus_sample_rate_hz: 48_000, ..MediaConfig::default() };
        let n =
            negotiate_with(offer("m=audio 5000 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\n").as_bytes(), &LOCAL, &wide)
                .unwrap();
        assert!(n.answer.contains("maxplaybackrate=48000;"), "{}", n.answer);
    }

    #[test]
    fn dynamic_pcmu_and_odd_telephone_event_payload_types() {
        let n = negotiate(
            offer("m=audio 5000 RTP/AVP 97 120\r\na=rtpmap:97 pcmu/8000\r\na=rtpmap:120 TELEPHONE-EVENT/8000\r\n")
                .as_bytes(),
            &LOCAL,
        )
        .unwrap();
        assert_eq!((n.codec, n.payload_type, n.dtmf_payload_type), (CodecKind::Pcmu, 97, Some(120)));
        assert!(n.answer.contains("m=audio 40000 RTP/AVP 97 120\r\na=rtpmap:97 PCMU/8000\r\n"));
    }

    #[test]
    fn wrong_clock_or_stereo_is_not_g711() {
        let e = negotiate(
            offer("m=audio 5000 RTP/AVP 97 98\r\na=rtpmap:97 PCMU/16000\r\na=rtpmap:98 PCMA/8000/2\r\n").as_bytes(),
            &LOCAL,
        );
        assert!(matches!(e, Err(SdpError::NotAcceptable(_))), "{e:?}");
    }

    #[test]
    fn telephone_event_at_other_rates_is_ignored() {
        let n = negotiate(
            offer("m=audio 5000 RTP/AVP 0 110 126\r\na=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\n")
                .as_bytes(),
            &LOCAL,
        )
        .unwrap();
        assert_eq!(n.dtmf_payload_type, Some(126));
    }

    #[test]
    fn payload_type_with_two_rtpmaps_is_not_telephone_event() {
        let n = negotiate(
            offer("m=audio 5000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=rtpmap:101 G726-24/8000\r\n")
                .as_bytes(),
            &LOCAL,
        )
        .unwrap();
        assert_eq!(n.dtmf_payload_type, None);
        assert!(n.answer.contains("m=audio 40000 RTP/AVP 0\r\n"));
    }

    #[test]
    fn ptime_rules() {
        let cases = [
            ("", 20),
            ("a=ptime:30\r\n", 30),
            ("a=ptime:33\r\n", 30),
            ("a=ptime:35\r\n", 40),
            ("a=ptime:5\r\n", 10),
            ("a=ptime:0\r\n", 10),
            ("a=ptime:1000\r\n", 120),
            ("a=ptime:-20\r\n", 10),
            ("a=ptime:20.0\r\n", 20),
            ("a=ptime:abc\r\n", 20),
            ("a=ptime:NaN\r\n", 20),
            ("a=ptime:inf\r\n", 20),
            ("a=ptime:40\r\na=ptime:20\r\n", 40),
        ];
        for (attribute, ms) in cases {
            let n = negotiate(offer(&format!("m=audio 5000 RTP/AVP 0\r\n{attribute}")).as_bytes(), &LOCAL).unwrap();
            assert_eq!(n.ptime, Duration::from_millis(ms), "{attribute:?}");
            assert!(n.answer.contains(&format!("a=ptime:{ms}\r\n")));
        }
        // Session level applies when the media level has none; media level wins otherwise.
        let session = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\na=ptime:60\r\n";
        let n = negotiate(format!("{session}m=audio 5000 RTP/AVP 0\r\n").as_bytes(), &LOCAL).unwrap();
        assert_eq!(n.ptime, Duration::from_millis(60));
        let n = negotiate(format!("{session}m=audio 5000 RTP/AVP 0\r\na=ptime:10\r\n").as_bytes(), &LOCAL).unwrap();
        assert_eq!(n.ptime, Duration::from_millis(10));
    }

    #[test]
    fn directions_are_answered_per_rfc3264() {
        let cases = [
            ("a=sendrecv\r\n", Direction::SendRecv, "a=sendrecv"),
            ("a=sendonly\r\n", Direction::SendOnly, "a=recvonly"),
            ("a=recvonly\r\n", Direction::RecvOnly, "a=sendonly"),
            ("a=inactive\r\n", Direction::Inactive, "a=inactive"),
            ("", Direction::SendRecv, "a=sendrecv"),
        ];
        for (attribute, offered, answered) in cases {
            let n = negotiate(offer(&format!("m=audio 5000 RTP/AVP 0\r\n{attribute}")).as_bytes(), &LOCAL).unwrap();
            assert_eq!(n.direction, offered);
            assert!(n.answer.ends_with(&format!("{answered}\r\n")), "{}", n.answer);
        }
    }

    #[test]
    fn media_level_direction_overrides_session_level() {
        let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=inactive\r\n\
                   m=audio 5000 RTP/AVP 0\r\na=sendonly\r\n";
        assert_eq!(negotiate(sdp.as_bytes(), &LOCAL).unwrap().direction, Direction::SendOnly);
        let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=sendonly\r\n\
                   m=audio 5000 RTP/AVP 0\r\n";
        assert_eq!(negotiate(sdp.as_bytes(), &LOCAL).unwrap().direction, Direction::SendOnly);
    }

    #[test]
    fn remote_address_rules() {
        // Media-level c= overrides session level.
        let n = negotiate(offer("m=audio 5000 RTP/AVP 0\r\nc=IN IP4 198.51.100.7\r\n").as_bytes(), &LOCAL).unwrap();
        assert_eq!(n.remote_rtp, Some("198.51.100.7:5000".parse().unwrap()));
        // RFC 2543 hold.
        let hold = "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";
        let n = negotiate(hold.as_bytes(), &LOCAL).unwrap();
        assert_eq!((n.remote_rtp, n.direction), (None, Direction::SendRecv));
        // IPv6, and a v6 answer.
        let v6 =
            "v=0\r\no=- 1 2 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 8\r\n";
        let local6 = LocalMedia { ip: IpAddr::V6(Ipv6Addr::LOCALHOST), ..LOCAL };
        let n = negotiate(v6.as_bytes(), &local6).unwrap();
        assert_eq!(n.remote_rtp, Some("[2001:db8::1]:5000".parse().unwrap()));
        assert!(n.answer.contains("o=voicemail 42 1 IN IP6 ::1\r\n") && n.answer.contains("c=IN IP6 ::1\r\n"));
        reparse(&n.answer);
        // Multicast with a huge address count, a host name, no c= at all.
        for c in ["c=IN IP4 224.2.1.1/127/2000000000\r\n", "c=IN IP4 pbx.example.com\r\n", "c=IN IP6 ff0e::1/3\r\n"] {
            let sdp = format!("v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n{c}");
            assert_eq!(negotiate(sdp.as_bytes(), &LOCAL).unwrap().remote_rtp, None, "{c}");
        }
        let sdp = "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";
        assert_eq!(negotiate(sdp.as_bytes(), &LOCAL).unwrap().remote_rtp, None);
    }

    #[test]
    fn port_zero_stream_is_removed_and_next_one_accepted() {
        let n = negotiate(
            offer("m=audio 0 RTP/AVP 0\r\nm=audio 5002 RTP/AVP 8\r\nm=audio 5004 RTP/AVP 0\r\n").as_bytes(),
            &LOCAL,
        )
        .unwrap();
        assert_eq!((n.codec, n.remote_rtp), (CodecKind::Pcma, Some("192.0.2.1:5002".parse().unwrap())));
        let answer = reparse(&n.answer);
        let ports: Vec<u16> = answer.media_descriptions.iter().map(|m| m.media.port).collect();
        assert_eq!(ports, [0, 40000, 0]);
        let e = negotiate(offer("m=audio 0 RTP/AVP 0\r\n").as_bytes(), &LOCAL);
        assert!(matches!(e, Err(SdpError::NotAcceptable(_))));
    }

    #[test]
    fn other_streams_rejected_in_order() {
        let n = negotiate(
            offer(
                "m=video 5002 RTP/AVP 31 34\r\nm=audio 5000 RTP/SAVP 0\r\nm=audio 5004 RTP/AVP 18 0\r\n\
                 m=image 5006 udptl t38\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n",
            )
            .as_bytes(),
            &LOCAL,
        )
        .unwrap();
        let lines: Vec<&str> = n.answer.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            lines,
            [
                "m=video 0 RTP/AVP 31",
                "m=audio 0 RTP/SAVP 0",
                "m=audio 40000 RTP/AVP 0",
                "m=image 0 udptl t38",
                "m=application 0 UDP/DTLS/SCTP webrtc-datachannel"
            ]
        );
    }

    #[test]
    fn not_acceptable_offers() {
        for media in [
            "m=audio 5000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n",
            "m=audio 5000 RTP/SAVP 0 8\r\n",
            "m=audio 5000 UDP/TLS/RTP/SAVPF 0 8\r\n",
            "m=audio 5000 RTP/AVP 96\r\na=rtpmap:96 AMR/8000\r\n",
            "m=audio 5000 RTP/AVP 96\r\n",
            "m=video 5000 RTP/AVP 0\r\n",
            "",
        ] {
            let e = negotiate(offer(media).as_bytes(), &LOCAL).unwrap_err();
            assert!(matches!(e, SdpError::NotAcceptable(_)), "{media:?}: {e:?}");
            assert_eq!(e.status_code(), 488);
        }
    }

    #[test]
    fn malformed_bodies() {
        for body in
            [&b""[..], b"hello", b"\xff\xfe\x00", b"v=0\r\nm=audio 5000 RTP/AVP 0\r\n", &[b'a'; MAX_OFFER_LEN + 1]]
        {
            let e = negotiate(body, &LOCAL).unwrap_err();
            assert!(matches!(e, SdpError::Malformed(_)), "{e:?}");
            assert_eq!(e.status_code(), 400);
        }
    }

    #[test]
    fn bad_lines_are_dropped_not_fatal() {
        let n = negotiate(
            offer(
                "b=CT 1000\r\nm=audio 5000 RTP/AVP 98 8 101\r\na=rtpmap:98 iLBC\r\na=rtpmap:101 telephone-event/8000\r\n\
                 a=fmtp\r\nx\r\na=crypto:garbage\r\nm=bogus 1 2 3\r\n",
            )
            .as_bytes(),
            &LOCAL,
        )
        .unwrap();
        assert_eq!((n.codec, n.payload_type, n.dtmf_payload_type), (CodecKind::Pcma, 8, Some(101)));
        let lines: Vec<&str> = n.answer.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(lines, ["m=audio 40000 RTP/AVP 8 101", "m=bogus 0 2 3"]);
    }

    #[test]
    fn too_many_media_streams() {
        let many = "m=video 0 RTP/AVP 31\r\n".repeat(MAX_MEDIA_STREAMS);
        assert!(negotiate(offer(&format!("m=audio 5000 RTP/AVP 0\r\n{many}")).as_bytes(), &LOCAL).is_err());
        let fine = "m=video 0 RTP/AVP 31\r\n".repeat(MAX_MEDIA_STREAMS - 1);
        let n = negotiate(offer(&format!("m=audio 5000 RTP/AVP 0\r\n{fine}")).as_bytes(), &LOCAL).unwrap();
        assert_eq!(reparse(&n.answer).media_descriptions.len(), MAX_MEDIA_STREAMS);
    }

    #[test]
    fn non_ascii_tokens_are_not_echoed() {
        let n = negotiate(offer("m=audio 5000 RTP/AVP 0\r\nm=vidéo 1 RTP/AVP 31\r\n").as_bytes(), &LOCAL).unwrap();
        assert!(n.answer.is_ascii());
        assert!(n.answer.contains("m=application 0 RTP/AVP 31\r\n"), "{}", n.answer);
    }

    const THEIR_KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    fn srtp(mode: SrtpMode) -> SrtpOffer {
        SrtpOffer { mode, local_key: MasterKey::from_bytes([7; 30]) }
    }

    #[test]
    fn srtp_offers_are_answered_as_the_mode_says() {
        use crate::srtp::CryptoSuite;
        let ours = MasterKey::from_bytes([7; 30]).to_base64();
        let media = MediaConfig::default();
        let savp = offer(&format!(
            "m=audio 5000 RTP/SAVP 0\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{THEIR_KEY}|2^48\r\n"
        ));
        for mode in [SrtpMode::Optional, SrtpMode::Required] {
            let (n, keys) = negotiate_srtp(savp.as_bytes(), &LOCAL, &media, &srtp(mode)).unwrap();
            let keys = keys.unwrap();
            assert_eq!((keys.tag, keys.suite), (2, CryptoSuite::AesCm128HmacSha1_32));
            assert_eq!(keys.remote.to_base64(), THEIR_KEY);
            assert!(n.answer.contains("m=audio 40000 RTP/SAVP 0\r\n"), "{}", n.answer);
            assert!(
                n.answer.ends_with(&format!("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{ours}\r\n")),
                "{}",
                n.answer
            );
            reparse(&n.answer);
        }
        // Off: an RTP/SAVP offer is not acceptable.
        let e = negotiate_srtp(savp.as_bytes(), &LOCAL, &media, &srtp(SrtpMode::Off)).unwrap_err();
        assert_eq!(e.status_code(), 488);
        // Required: a plain offer is not acceptable; "best effort" RTP/AVP with a=crypto is SRTP.
        let plain = offer("m=audio 5000 RTP/AVP 0\r\n");
        let e = negotiate_srtp(plain.as_bytes(), &LOCAL, &media, &srtp(SrtpMode::Required)).unwrap_err();
        assert_eq!(e.status_code(), 488);
        assert!(e.to_string().contains("required"), "{e}");
        let (n, keys) = negotiate_srtp(plain.as_bytes(), &LOCAL, &media, &srtp(SrtpMode::Optional)).unwrap();
        assert!(keys.is_none() && !n.answer.contains("a=crypto") && n.answer.contains("RTP/AVP 0"));
        let best_effort =
            offer(&format!("m=audio 5000 RTP/AVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{THEIR_KEY}\r\n"));
        let (n, keys) = negotiate_srtp(best_effort.as_bytes(), &LOCAL, &media, &srtp(SrtpMode::Required)).unwrap();
        assert!(keys.is_some());
        assert!(n.answer.contains("m=audio 40000 RTP/AVP 0\r\n") && n.answer.contains("a=crypto:1 "), "{}", n.answer);
        // With SRTP off the same offer is plain RTP, its a=crypto ignored.
        let (n, keys) = negotiate_srtp(best_effort.as_bytes(), &LOCAL, &media, &srtp(SrtpMode::Off)).unwrap();
        assert!(keys.is_none() && !n.answer.contains("a=crypto"));
    }

    #[test]
    fn baresips_srtp_offer_is_answered() {
        let body = "v=0\r\no=- 3111095480 815236278 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                    a=tool:baresip 1.0.0\r\nm=audio 12452 RTP/SAVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n\
                    a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n\
                    a=label:1\r\na=rtcp-rsize\r\na=ssrc:3490569131 cname:sip:alice@127.0.0.1\r\n\
                    a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:8WChnM0NMTFMpEqLJgnWbiA0LHjteyFF/tS79Net\r\n\
                    a=minptime:20\r\na=ptime:20\r\n";
        let (n, keys) =
            negotiate_srtp(body.as_bytes(), &LOCAL, &MediaConfig::default(), &srtp(SrtpMode::Required)).unwrap();
        assert!(keys.is_some());
        assert!(n.answer.contains("RTP/SAVP"), "{}", n.answer);
    }

    #[test]
    fn srtp_streams_are_preferred_and_unusable_keys_fall_back() {
        let media = MediaConfig::default();
        // A plain stream first, an SRTP one second (two alternatives): SRTP is chosen.
        let both = offer(&format!(
            "m=audio 5000 RTP/AVP 0\r\nm=audio 5002 RTP/SAVP 8\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{THEIR_KEY}\r\n"
        ));
        let (n, keys) = negotiate_srtp(both.as_bytes(), &LOCAL, &media, &srtp(SrtpMode::Optional)).unwrap();
        assert!(keys.is_some());
        let lines: Vec<&str> = n.answer.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(lines, ["m=audio 0 RTP/AVP 0", "m=audio 40000 RTP/SAVP 8"]);
        // Keys we cannot use (another suite, an MKI): the SAVP stream is not acceptable, the
        // plain one is (optional), nothing is (required).
        for bad in [
            format!("a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:{THEIR_KEY}"),
            format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{THEIR_KEY}|2^20|1:4"),
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:short".to_owned(),
        ] {
            let body = offer(&format!("m=audio 5000 RTP/AVP 0\r\nm=audio 5002 RTP/SAVP 8\r\n{bad}\r\n"));
            let (n, keys) = negotiate_srtp(body.as_bytes(), &LOCAL, &media, &srtp(SrtpMode::Optional)).unwrap();
            assert!(keys.is_none() && n.codec == CodecKind::Pcmu, "{bad}");
            assert!(negotiate_srtp(body.as_bytes(), &LOCAL, &media, &srtp(SrtpMode::Required)).is_err(), "{bad}");
        }
        // A key lifetime of 2^48 (common) never reaches ezk-sdp-types, whose parser overflows.
        let lifetime =
            offer(&format!("m=audio 5000 RTP/AVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{THEIR_KEY}|2^48\r\n"));
        assert!(negotiate(lifetime.as_bytes(), &LOCAL).is_ok());
    }

    fn mutate(base: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
        let mut bytes = base.to_vec();
        for &(position, op, value) in edits {
            let at = if bytes.is_empty() { 0 } else { position % (bytes.len() + 1) };
            match op % 3 {
                0 => bytes.insert(at, value),
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ if at < bytes.len() => bytes[at] = value,
                _ => bytes.push(value),
            }
        }
        bytes
    }

    /// Invariants of every answer: one m-line per offered m-line, exactly one accepted, and the
    /// answer re-parses with ezk-sdp-types (which knows only these four media types).
    fn check_answer(offer: &[u8], n: &Negotiated) {
        let offered = String::from_utf8_lossy(offer).split(['\r', '\n']).filter(|l| l.starts_with("m=")).count();
        let mlines: Vec<&str> = n.answer.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(mlines.len(), offered, "{}", n.answer);
        assert_eq!(mlines.iter().filter(|l| l.split(' ').nth(1) != Some("0")).count(), 1);
        assert!((10..=120).contains(&n.ptime.as_millis()) && n.ptime.as_millis().is_multiple_of(10));
        let known = ["m=audio ", "m=video ", "m=text ", "m=application "];
        if mlines.iter().all(|l| known.iter().any(|k| l.starts_with(k))) {
            assert_eq!(reparse(&n.answer).media_descriptions.len(), offered);
        }
    }

    fn check_no_panic(body: &[u8]) {
        if let Ok(n) = negotiate(body, &LOCAL) {
            check_answer(body, &n);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
            check_no_panic(&body);
        }

        #[test]
        fn sdp_like_lines_never_panic(lines in proptest::collection::vec(
            "(v=0|o=[ -~]{0,40}|s=[ -~]{0,10}|c=IN IP[46] [0-9a-f.:/]{0,30}|t=[0-9 ]{0,10}|m=(audio|video|x) [0-9/]{0,8} (RTP/AVP|RTP/SAVP|[A-Z/]{0,8})( [0-9]{1,4}){0,6}|a=(rtpmap|fmtp|ptime|sendonly|inactive|crypto|candidate|ssrc|rtcp)[: ]?[ -~]{0,30}|[ -~]{0,20})",
            0..24,
        )) {
            check_no_panic(lines.join("\r\n").as_bytes());
        }

        #[test]
        fn mutated_real_offers_never_panic(
            which in 0usize..2,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..12),
        ) {
            let base = [SIPP, BARESIP][which].as_bytes();
            check_no_panic(&mutate(base, &edits));
        }
    }
}
