//! What to do with an incoming SIP request: a pure function of the request, its source and
//! the endpoint's state, with no socket and no clock.
//!
//! The endpoint calls [`classify_request`] for every request the SIP stack delivers and then
//! does what the [`Decision`] says: start a call, hand the request to its dialog, or answer
//! with a status. [`classify_bytes`] runs the same logic on raw bytes the way the endpoint
//! gets them: rsipstack parses them, and what does not parse gets the answer rsipstack's
//! transport gives it ([`reject_unparsable`]: 400, 501 or 505 for a request, nothing for
//! anything else). The fuzz target uses it; the corpus replay test checks the same answers on
//! the wire.
//!
//! The answers follow RFC 3261: 400 for a malformed request (missing or repeated
//! single-value headers, a CSeq method that differs from the request's, broken address
//! syntax), 416 for an unsupported Request-URI scheme, 420 for a `Require`d extension, 415 for
//! a body that is not SDP, 481 for a request in an unknown dialog, 405 for methods the
//! endpoint knows but does not accept (REGISTER, SUBSCRIBE without `[sip.mwi]`, ...), 505
//! for another SIP version, 403 for INVITEs from a source outside the allow-list, 503 with
//! `Retry-After` while shutting down and at the call limit (RFC 3261 §21.5.4: the server is
//! overloaded, not the callee busy, so a proxy in front of several nodes tries the next one;
//! FreeSWITCH answers its session limit the same way), and 488 or 400 from the SDP
//! offer/answer. Malformed request lines,
//! unknown methods and `Content-Length` errors never get here: rsipstack's parser refuses
//! them and its transport answers them.

use std::net::{IpAddr, Ipv4Addr};

use rsipstack::sip::parser::{parse_datagram, reject_unparsable};
use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{Header, Method, Request, Scheme, SipMessage, Uri};

use crate::config::AddrRule;
use crate::sdp::{self, LocalMedia, Negotiated, SdpError};

/// The methods the endpoint accepts, SUBSCRIBE last: see [`allowed_methods`].
const METHODS: [Method; 8] = [
    Method::Invite,
    Method::Ack,
    Method::Bye,
    Method::Cancel,
    Method::Options,
    Method::Info,
    Method::Update,
    Method::Subscribe,
];

/// The methods the endpoint accepts: what [`allow`] lists and what the SIP stack's 501 answers
/// list. SUBSCRIBE is among them only when the endpoint takes message-waiting subscriptions
/// (`subscriptions`, with `[sip.mwi]`); without them a SUBSCRIBE gets 405.
pub fn allowed_methods(subscriptions: bool) -> &'static [Method] {
    if subscriptions { &METHODS } else { &METHODS[..METHODS.len() - 1] }
}

/// The `Allow` header's value (RFC 3261 §20.5): [`allowed_methods`], comma-separated.
pub fn allow(subscriptions: bool) -> String {
    allowed_methods(subscriptions).iter().map(Method::to_string).collect::<Vec<_>>().join(", ")
}

/// The bodies the endpoint understands (the `Accept` header).
pub const ACCEPT: &str = "application/sdp, application/dtmf-relay, application/dtmf";

/// The longest caller number, display name or called number kept from a request.
const MAX_PARTY_LEN: usize = 64;

/// The endpoint's state that a decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// False while shutting down: new INVITEs get 503.
    pub accepting: bool,
    /// Sources INVITEs are accepted from, and whose P-Asserted-Identity and Remote-Party-ID
    /// are believed; empty accepts all and believes none.
    pub allow_from: &'a [AddrRule],
    /// Calls in progress.
    pub active_calls: usize,
    /// The most calls at once; beyond it INVITEs get 486.
    pub max_calls: usize,
    /// The `[sip] srtp` policy: which offers are acceptable (plain RTP, SRTP with SDES keys).
    pub srtp: crate::srtp::SrtpMode,
    /// Whether the endpoint takes SUBSCRIBEs for message-summary (`[sip.mwi]`): the `Allow`
    /// of its answers then lists SUBSCRIBE, with `Allow-Events` ([`ReplyExtra::AllowAccept`]).
    /// The endpoint hands such SUBSCRIBEs outside a dialog to MWI before classifying;
    /// [`classify_request`] still answers them 405.
    pub subscriptions: bool,
}

impl Policy<'_> {
    /// A policy that accepts everything (for tests and fuzzing).
    pub fn permissive() -> Policy<'static> {
        Policy {
            accepting: true,
            allow_from: &[],
            active_calls: 0,
            max_calls: usize::MAX,
            srtp: crate::srtp::SrtpMode::Optional,
            subscriptions: false,
        }
    }

    /// The headers that say what the endpoint accepts (OPTIONS, 405, 415, 406).
    fn allow_accept(&self) -> ReplyExtra {
        ReplyExtra::AllowAccept { subscriptions: self.subscriptions }
    }
}

/// Headers a reply carries besides the mandatory ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyExtra {
    /// Nothing else.
    None,
    /// `Allow` ([`allow`]) and `Accept` (OPTIONS, 405, 415, 406); with `subscriptions`
    /// (`[sip.mwi]`), `Allow` lists SUBSCRIBE and `Allow-Events` names `message-summary`
    /// (RFC 6665 §8.2.2).
    AllowAccept {
        /// Whether the endpoint takes message-waiting subscriptions ([`Policy::subscriptions`]).
        subscriptions: bool,
    },
    /// `Unsupported` with the extensions the request required (420).
    Unsupported(String),
    /// `Retry-After` in seconds (503).
    RetryAfter(u32),
}

/// Why an INVITE got 503 while the endpoint shuts down.
pub(crate) const SHUTTING_DOWN: &str = "shutting down";
/// Why an INVITE got 503 at `max_calls`.
pub(crate) const CALL_LIMIT: &str = "call limit reached";
/// `Retry-After` of the 503 at `max_calls`: calls last minutes, but a proxy that honours it
/// should not keep the node out of its rotation for long.
pub(crate) const CALL_LIMIT_RETRY_AFTER_S: u32 = 5;

/// A response to send without creating a dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Extra headers.
    pub extra: ReplyExtra,
    /// Why, for logs.
    pub why: String,
}

impl Reply {
    fn new(status: u16, why: impl Into<String>) -> Self {
        Self { status, extra: ReplyExtra::None, why: why.into() }
    }

    fn with(mut self, extra: ReplyExtra) -> Self {
        self.extra = extra;
        self
    }
}

/// Who calls whom, taken from the request and cleaned of anything unprintable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parties {
    /// The caller's number: the user part of From (`anonymous` when it has none); from a
    /// trusted source (in `allow_from`), of P-Asserted-Identity (RFC 3325) or else
    /// Remote-Party-ID (`party=calling`) first.
    pub caller: String,
    /// The display name of From, if any.
    pub caller_name: Option<String>,
    /// The called number: the user part of To, else of the Request-URI (may be empty).
    pub called: String,
}

/// A new call to set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall {
    /// Caller and called party.
    pub parties: Parties,
    /// The negotiated media (computed against a placeholder local address; the endpoint
    /// negotiates again with the call's real RTP port); `None` for a late offer, an INVITE
    /// without SDP (our offer goes in the 200 OK and the caller's answer comes in the ACK).
    pub negotiated: Option<Negotiated>,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer an INVITE and start a call.
    NewCall(Box<NewCall>),
    /// Hand the request to its existing dialog.
    InDialog,
    /// Answer with this response.
    Reply(Reply),
    /// Absorb the message silently (a stray ACK or response).
    Ignore,
    /// The bytes are not a SIP message: drop them.
    Drop,
}

impl Decision {
    /// The status code of a [`Decision::Reply`], 200 for a new call (the final answer it
    /// gets when all goes well), `None` otherwise.
    pub fn status(&self) -> Option<u16> {
        match self {
            Decision::Reply(r) => Some(r.status),
            Decision::NewCall(_) => Some(200),
            _ => None,
        }
    }
}

/// Parses `bytes` as a UDP datagram with rsipstack's parser and classifies the request, as
/// the endpoint does with what arrives on the wire. Responses are ignored; what does not parse gets the answer
/// rsipstack's transport gives it ([`reject_unparsable`]: 400, 501 or 505 when it starts like
/// a request) and is dropped otherwise. Never panics.
pub fn classify_bytes(bytes: &[u8], source: IpAddr, policy: &Policy<'_>) -> Decision {
    match parse_datagram(bytes) {
        Ok(SipMessage::Request(req)) => classify_request(&req, source, false, policy),
        Ok(SipMessage::Response(_)) => Decision::Ignore,
        Err(e) => match reject_unparsable(bytes) {
            Some((status, _)) => Decision::Reply(Reply::new(status.code(), format!("malformed request: {e}"))),
            None => Decision::Drop,
        },
    }
}

/// Classifies a parsed request from `source`. `dialog_known` says whether the request's
/// dialog (Call-ID, To tag, From tag) exists.
pub fn classify_request(req: &Request, source: IpAddr, dialog_known: bool, policy: &Policy<'_>) -> Decision {
    if let Err(reply) = validate(req) {
        return match req.method {
            Method::Ack => Decision::Ignore,
            _ => Decision::Reply(reply),
        };
    }
    if has_to_tag(req) {
        return match (dialog_known, &req.method) {
            (true, _) => Decision::InDialog,
            (false, Method::Ack) => Decision::Ignore,
            (false, _) => Decision::Reply(Reply::new(481, "no such dialog")),
        };
    }
    match req.method {
        Method::Invite => classify_invite(req, source, policy),
        Method::Options => Decision::Reply(Reply::new(200, "options").with(policy.allow_accept())),
        Method::Ack => Decision::Ignore,
        Method::Bye | Method::Cancel | Method::Info | Method::Update | Method::PRack => {
            Decision::Reply(Reply::new(481, "no such dialog or transaction"))
        }
        Method::Register | Method::Subscribe | Method::Notify | Method::Publish | Method::Message | Method::Refer => {
            Decision::Reply(Reply::new(405, format!("{} not allowed", req.method)).with(policy.allow_accept()))
        }
    }
}

/// The checks every request passes before anything else (version, header syntax, URI
/// scheme, `Require`); the error is the reply (400, 416, 420 or 505). The endpoint runs them
/// on the SUBSCRIBEs it takes for message-waiting indication ([`crate::mwi`]), which do not
/// go through [`classify_request`].
pub fn check_request(req: &Request) -> Result<(), Reply> {
    validate(req)
}

/// Whether the request's To header has a tag: it belongs to a dialog (RFC 3261 §12.2.2).
pub fn has_to_tag(req: &Request) -> bool {
    req.to_header().ok().and_then(|t| t.tag().ok().flatten()).is_some()
}

fn classify_invite(req: &Request, source: IpAddr, policy: &Policy<'_>) -> Decision {
    if !policy.allow_from.is_empty() && !policy.allow_from.iter().any(|r| r.contains(source)) {
        return Decision::Reply(Reply::new(403, format!("source {source} is not in sip.allow_from")));
    }
    if !policy.accepting {
        return Decision::Reply(Reply::new(503, SHUTTING_DOWN).with(ReplyExtra::RetryAfter(30)));
    }
    if req.contact_header().is_err() && !is_rfc2543(req) {
        // RFC 3261 §8.1.1.8; RFC 2543 made it optional (the dialog then answers to From).
        return Decision::Reply(Reply::new(400, "an INVITE without Contact"));
    }
    if req.headers.iter().any(|h| h.name().eq_ignore_ascii_case("Replaces")) {
        // RFC 3891 §3: there is no dialog here to replace.
        return Decision::Reply(Reply::new(481, "Replaces names an unknown dialog"));
    }
    if let Some(ct) = content_type(req)
        && !req.body.is_empty()
        && ct != "application/sdp"
    {
        return Decision::Reply(Reply::new(415, format!("body type {ct:?} is not SDP")).with(policy.allow_accept()));
    }
    if let Some(accept) = header_value(req, "Accept")
        && !accept.split(',').any(|a| {
            let a = a.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            a == "application/sdp" || a == "application/*" || a == "*/*"
        })
    {
        return Decision::Reply(Reply::new(406, "the caller does not accept SDP").with(policy.allow_accept()));
    }
    if policy.active_calls >= policy.max_calls {
        return Decision::Reply(Reply::new(503, CALL_LIMIT).with(ReplyExtra::RetryAfter(CALL_LIMIT_RETRY_AFTER_S)));
    }
    // Identity headers are believed only from the sources the operator trusts.
    let trusted = policy.allow_from.iter().any(|r| r.contains(source));
    if req.body.is_empty() {
        // A late offer (RFC 3261 §13.2.1): we offer in the 200 OK, the answer comes in the ACK.
        return Decision::NewCall(Box::new(NewCall { parties: parties(req, trusted), negotiated: None }));
    }
    let placeholder = LocalMedia { ip: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 40000, session_id: 1, version: 1 };
    // The key is a placeholder too: only whether the offer is acceptable matters here.
    let srtp = sdp::SrtpOffer { mode: policy.srtp, ..sdp::SrtpOffer::OFF };
    let media = voicemail_core::config::MediaConfig::default();
    match sdp::negotiate_srtp(&req.body, &placeholder, &media, &srtp).map(|(n, _)| n) {
        Ok(negotiated) => {
            Decision::NewCall(Box::new(NewCall { parties: parties(req, trusted), negotiated: Some(negotiated) }))
        }
        Err(SdpError::NotAcceptable(why)) => Decision::Reply(Reply::new(488, why)),
        Err(SdpError::Malformed(why)) => Decision::Reply(Reply::new(400, format!("malformed SDP: {why}"))),
    }
}

/// Whether the request comes from an RFC 2543 element: its top Via has no branch starting
/// with RFC 3261's magic cookie `z9hG4bK` (RFC 3261 §8.1.1.7).
fn is_rfc2543(req: &Request) -> bool {
    let branch = req.via_header().ok().and_then(|v| v.typed().ok()).and_then(|v| v.branch().map(|b| b.to_string()));
    !branch.is_some_and(|b| b.starts_with("z9hG4bK"))
}

/// The lower-case media type of Content-Type, without parameters.
pub fn content_type(req: &Request) -> Option<String> {
    let v = header_value(req, "Content-Type")?;
    Some(v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

fn header_value(req: &Request, name: &str) -> Option<String> {
    req.headers.iter().find(|h| h.name().eq_ignore_ascii_case(name)).map(|h| h.value().trim().to_owned())
}

/// The checks every request must pass; the error is the reply (400, 416, 420 or 505).
fn validate(req: &Request) -> Result<(), Reply> {
    if req.version != rsipstack::sip::Version::V2 {
        return Err(Reply::new(505, "unsupported SIP version"));
    }
    check_headers(req).map_err(|why| Reply::new(400, why))?;
    if !matches!(req.uri.scheme, Some(Scheme::Sip) | Some(Scheme::Sips))
        && !matches!(&req.uri.scheme, Some(Scheme::Other(s)) if s.eq_ignore_ascii_case("tel"))
    {
        return Err(Reply::new(416, "unsupported Request-URI scheme"));
    }
    if !matches!(req.method, Method::Ack | Method::Cancel) {
        let required: Vec<String> = req
            .headers
            .iter()
            .filter_map(|h| match h {
                Header::Require(r) => Some(r.value().to_owned()),
                _ => None,
            })
            .flat_map(|v| v.split(',').map(|s| s.trim().to_owned()).collect::<Vec<_>>())
            .filter(|s| !s.is_empty())
            .collect();
        if !required.is_empty() {
            let list = required.join(", ");
            return Err(Reply::new(420, "unsupported extension").with(ReplyExtra::Unsupported(list)));
        }
    }
    Ok(())
}

/// Header syntax: single-value headers once, the mandatory ones present and parseable, CSeq
/// consistent with the request, balanced quotes and no empty list elements in the address
/// headers.
fn check_headers(req: &Request) -> Result<(), String> {
    for name in ["From", "To", "Call-ID", "CSeq", "Content-Length", "Content-Type", "Max-Forwards"] {
        if req.headers.iter().filter(|h| h.name().eq_ignore_ascii_case(name)).count() > 1 {
            return Err(format!("more than one {name} header"));
        }
    }
    let from = req.from_header().map_err(|_| "missing From".to_owned())?;
    from.typed().map_err(|e| format!("bad From: {e}"))?;
    let to = req.to_header().map_err(|_| "missing To".to_owned())?;
    to.typed().map_err(|e| format!("bad To: {e}"))?;
    let call_id = req.call_id_header().map_err(|_| "missing Call-ID".to_owned())?;
    if call_id.value().trim().is_empty() || call_id.value().contains(char::is_whitespace) {
        return Err("bad Call-ID".into());
    }
    let via = req.via_header().map_err(|_| "missing Via".to_owned())?;
    via.typed().map_err(|e| format!("bad Via: {e}"))?;
    let cseq = req.cseq_header().map_err(|_| "missing CSeq".to_owned())?;
    let seq = cseq.seq().map_err(|e| format!("bad CSeq: {e}"))?;
    if seq >= 1 << 31 {
        return Err("CSeq number out of range".into());
    }
    let method = cseq.method().map_err(|e| format!("bad CSeq: {e}"))?;
    if method != req.method {
        return Err(format!("CSeq method {method} differs from the request's {}", req.method));
    }
    if let Some(v) = header_value(req, "Max-Forwards")
        && v.parse::<u8>().is_err()
    {
        return Err("bad Max-Forwards".into());
    }
    for h in req.headers.iter() {
        let name = h.name();
        if ["From", "To", "Contact", "Via"].iter().any(|n| name.eq_ignore_ascii_case(n)) {
            check_address_syntax(h.value()).map_err(|why| format!("bad {name}: {why}"))?;
        }
    }
    Ok(())
}

/// Quotes balanced, no whitespace just inside `<...>`, no empty `;` or `,` elements (a
/// trailing separator is tolerated).
fn check_address_syntax(value: &str) -> Result<(), &'static str> {
    let mut in_quotes = false;
    let mut escaped = false;
    let mut prev = ' ';
    let mut prev_sep = false;
    for c in value.chars() {
        if in_quotes {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_quotes = false,
                _ => {}
            }
            prev = c;
            continue;
        }
        match c {
            '"' => in_quotes = true,
            ';' | ',' if prev_sep => return Err("empty list element"),
            c if c.is_whitespace() && prev == '<' => return Err("whitespace inside <>"),
            '>' if prev.is_whitespace() => return Err("whitespace inside <>"),
            _ => {}
        }
        if !c.is_whitespace() {
            prev_sep = matches!(c, ';' | ',');
        }
        prev = c;
    }
    if in_quotes {
        return Err("unterminated quoted string");
    }
    Ok(())
}

/// The user part of a URI (for `tel:` URIs, the number), if any.
fn user_of(uri: &Uri) -> Option<String> {
    if let Some(auth) = &uri.auth {
        return Some(auth.user.clone());
    }
    match &uri.scheme {
        Some(Scheme::Other(s)) if s.eq_ignore_ascii_case("tel") => Some(uri.host_with_port.host.to_string()),
        _ => None,
    }
}

/// Keeps printable characters only and at most 64 of them; percent-escapes
/// in user parts are decoded first.
pub fn clean(text: &str) -> String {
    let decoded = percent_decode(text);
    decoded
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '\u{2028}' | '\u{2029}'))
        .take(MAX_PARTY_LEN)
        .collect::<String>()
        .trim()
        .to_owned()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(s) = std::str::from_utf8(hex)
            && let Ok(b) = u8::from_str_radix(s, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Caller and called party of an INVITE. `trusted`: the INVITE comes from a source in
/// `allow_from`, whose P-Asserted-Identity (RFC 3325) and Remote-Party-ID (the caller's
/// `party=calling` entry) are believed before From; from anywhere else they are ignored, as
/// anyone can write them.
pub fn parties(req: &Request, trusted: bool) -> Parties {
    let from = req.from_header().ok().and_then(|f| f.typed().ok());
    let asserted = if trusted { asserted_identity(req) } else { None };
    let caller = asserted
        .or_else(|| from.as_ref().and_then(|f| user_of(&f.uri)))
        .map(|u| clean(&u))
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "anonymous".to_owned());
    let caller_name = from
        .as_ref()
        .and_then(|f| f.display_name.as_deref())
        .map(|n| clean(n.trim_matches('"')))
        .filter(|n| !n.is_empty());
    let to = req.to_header().ok().and_then(|t| t.typed().ok());
    let called = to.and_then(|t| user_of(&t.uri)).or_else(|| user_of(&req.uri)).map(|u| clean(&u)).unwrap_or_default();
    Parties { caller, caller_name, called }
}

/// The user part of the first P-Asserted-Identity, else of the calling party's
/// Remote-Party-ID.
fn asserted_identity(req: &Request) -> Option<String> {
    let values = |name: &str| -> Vec<String> {
        req.headers.iter().filter(|h| h.name().eq_ignore_ascii_case(name)).flat_map(|h| split_list(h.value())).collect()
    };
    let user = |v: &str| rsipstack::sip::parse_uri(&extract_uri(v)).ok().and_then(|u| user_of(&u));
    let pai = values("P-Asserted-Identity").first().and_then(|v| user(v));
    pai.or_else(|| {
        values("Remote-Party-ID")
            .iter()
            .find(|v| party_of(v).is_none_or(|p| p.eq_ignore_ascii_case("calling")))
            .and_then(|v| user(v))
    })
}

/// The `party` parameter of a Remote-Party-ID entry (after the `>` of its URI).
fn party_of(entry: &str) -> Option<String> {
    let params = entry.rfind('>').map_or("", |at| &entry[at + 1..]);
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("party").then(|| v.trim().to_owned())
    })
}

/// The entries of a comma-separated header value, commas inside quotes or `<>` kept.
fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    let mut start = 0;
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' if !angle => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(value[start..i].trim().to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim().to_owned());
    out.retain(|e| !e.is_empty());
    out
}

/// The URI inside a name-addr (`"Name" <sip:...>`), or the value itself.
fn extract_uri(value: &str) -> String {
    match (value.find('<'), value.rfind('>')) {
        (Some(a), Some(b)) if a < b => value[a + 1..b].to_owned(),
        _ => value.trim().to_owned(),
    }
}

/// A DTMF digit carried by a SIP INFO body, by content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoDtmf {
    /// A digit was found.
    Digit(voicemail_core::DtmfDigit),
    /// The body is empty (a keep-alive INFO): answer 200.
    Empty,
    /// The content type is not a DTMF one: answer 415.
    UnsupportedType,
    /// A DTMF content type without a valid digit: answer 400.
    Invalid,
}

/// Parses an INFO body: `application/dtmf-relay` (`Signal=5` / `Signal=#` / `Signal=11`,
/// `Duration=160`) or `application/dtmf` (the digit itself).
pub fn info_dtmf(content_type: Option<&str>, body: &[u8]) -> InfoDtmf {
    if body.iter().all(u8::is_ascii_whitespace) {
        return InfoDtmf::Empty;
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return InfoDtmf::Invalid;
    };
    let signal = match content_type {
        Some("application/dtmf-relay") => text.lines().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then(|| v.trim().to_owned())
        }),
        Some("application/dtmf") => Some(text.trim().to_owned()),
        _ => return InfoDtmf::UnsupportedType,
    };
    let Some(signal) = signal else {
        return InfoDtmf::Invalid;
    };
    let digit = match signal.parse::<u8>() {
        Ok(code) if signal.len() == 2 => voicemail_core::DtmfDigit::from_event(code),
        _ => {
            let mut chars = signal.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => voicemail_core::DtmfDigit::from_char(c.to_ascii_uppercase()),
                _ => None,
            }
        }
    };
    digit.map_or(InfoDtmf::Invalid, InfoDtmf::Digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:4951234500@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n\
From: \"Ivan\\r\\nX: y\" <sip:+74951234567@127.0.0.1:5070>;tag=a\r\n\
To: <sip:4951234500@127.0.0.1>\r\n\
Call-ID: c1@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:caller@127.0.0.1:5070>\r\n\
Max-Forwards: 70\r\n\
Content-Type: application/sdp\r\n\
Content-Length: LEN\r\n\r\nBODY";

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

    fn invite(body: &str) -> String {
        INVITE.replace("LEN", &body.len().to_string()).replace("BODY", body)
    }

    fn localhost() -> IpAddr {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }

    #[test]
    fn options_get_200_with_allow() {
        let msg = invite("").replace("INVITE sip", "OPTIONS sip").replace("1 INVITE", "1 OPTIONS");
        for subscriptions in [false, true] {
            let policy = Policy { subscriptions, ..Policy::permissive() };
            let d = classify_bytes(msg.as_bytes(), localhost(), &policy);
            let extra = ReplyExtra::AllowAccept { subscriptions };
            assert_eq!(d, Decision::Reply(Reply::new(200, "options").with(extra)), "{subscriptions}");
        }
    }

    #[test]
    fn allow_lists_subscribe_only_with_subscriptions() {
        assert_eq!(allow(false), "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE");
        assert_eq!(allow(true), "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, SUBSCRIBE");
        assert!(!allowed_methods(false).contains(&Method::Subscribe));
        assert!(allowed_methods(true).contains(&Method::Subscribe));
    }

    #[test]
    fn policy_answers() {
        let msg = invite(SDP);
        let rules = [AddrRule::parse("10.0.0.0/8").unwrap()];
        let denied = Policy { allow_from: &rules, ..Policy::permissive() };
        assert_eq!(classify_bytes(msg.as_bytes(), localhost(), &denied).status(), Some(403));
        let closing = Policy { accepting: false, ..Policy::permissive() };
        assert_eq!(classify_bytes(msg.as_bytes(), localhost(), &closing).status(), Some(503));
        let full = Policy { active_calls: 3, max_calls: 3, ..Policy::permissive() };
        let Decision::Reply(reply) = classify_bytes(msg.as_bytes(), localhost(), &full) else { panic!("no reply") };
        assert_eq!((reply.status, reply.extra), (503, ReplyExtra::RetryAfter(CALL_LIMIT_RETRY_AFTER_S)));
    }

    #[test]
    fn methods() {
        let base = invite("");
        for (method, status) in [("BYE", Some(481)), ("REGISTER", Some(405)), ("ACK", None), ("INFO", Some(481))] {
            let msg = base.replace("INVITE sip", &format!("{method} sip")).replace("1 INVITE", &format!("1 {method}"));
            assert_eq!(classify_bytes(msg.as_bytes(), localhost(), &Policy::permissive()).status(), status, "{method}");
        }
        let unknown = base.replace("INVITE sip", "FOO sip").replace("1 INVITE", "1 FOO");
        assert_eq!(classify_bytes(unknown.as_bytes(), localhost(), &Policy::permissive()).status(), Some(501));
        let mismatch = base.replace("1 INVITE", "1 BYE");
        assert_eq!(classify_bytes(mismatch.as_bytes(), localhost(), &Policy::permissive()).status(), Some(400));
        assert_eq!(classify_bytes(b"\x00\x01garbage", localhost(), &Policy::permissive()), Decision::Drop);
    }

    #[test]
    fn an_invite_needs_a_contact_unless_it_comes_from_rfc_2543() {
        let no_contact = invite(SDP).replace("Contact: <sip:caller@127.0.0.1:5070>\r\n", "");
        assert_eq!(classify_bytes(no_contact.as_bytes(), localhost(), &Policy::permissive()).status(), Some(400));
        // Without RFC 3261's branch cookie: an RFC 2543 element, which need not send Contact.
        let rfc2543 = no_contact.replace(";branch=z9hG4bK-1", "");
        assert_eq!(classify_bytes(rfc2543.as_bytes(), localhost(), &Policy::permissive()).status(), Some(200));
    }

    #[test]
    fn unparsable_requests_get_the_transport_answer() {
        let base = invite(SDP);
        let cases = [
            (base.replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia"), Some(505)),
            (base.replace("INVITE sip:4951234500", "INVITE  sip:4951234500"), Some(400)),
            (base.replace("Content-Length: ", "Content-Length: 9"), Some(400)),
            (base.replace("Ivan", "Iv\u{e4}n").replace('\u{e4}', "\u{fffd}"), Some(200)),
        ];
        for (msg, want) in cases {
            assert_eq!(classify_bytes(msg.as_bytes(), localhost(), &Policy::permissive()).status(), want, "{msg}");
        }
        let mut latin1 = base.into_bytes();
        let at = latin1.windows(4).position(|w| w == b"Ivan").unwrap_or(0);
        latin1[at + 2] = 0xe4; // "Ivän" in Latin-1: not UTF-8
        assert_eq!(classify_bytes(&latin1, localhost(), &Policy::permissive()).status(), Some(400));
    }

    #[test]
    fn parties_are_cleaned() {
        let msg = invite(SDP);
        let Ok(SipMessage::Request(req)) = SipMessage::try_from(msg.as_bytes()) else { panic!("parse") };
        let p = parties(&req, false);
        assert_eq!(p.caller, "+74951234567");
        assert_eq!(p.called, "4951234500");
        assert!(p.caller_name.as_deref().is_some_and(|n| !n.contains('\r') && !n.contains('\n')));
    }

    fn caller_of(msg: &str, source: &str, allow_from: &[&str]) -> String {
        let rules: Vec<AddrRule> = allow_from.iter().map(|r| AddrRule::parse(r).unwrap()).collect();
        let policy = Policy { allow_from: &rules, ..Policy::permissive() };
        match classify_bytes(msg.as_bytes(), source.parse().unwrap(), &policy) {
            Decision::NewCall(call) => call.parties.caller,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn asserted_identities_are_believed_from_trusted_sources_only() {
        let pai = invite(SDP).replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nP-Asserted-Identity: \"Trunk, Inc\" <sip:+74950001122@trunk.example>, <tel:+74950001133>\r\n",
        );
        assert_eq!(caller_of(&pai, "10.1.2.3", &["10.0.0.0/8"]), "+74950001122");
        // From anywhere (an empty allow-list accepts every source but trusts none), From's.
        assert_eq!(caller_of(&pai, "10.1.2.3", &[]), "+74951234567");
        assert_eq!(caller_of(&pai, "127.0.0.1", &[]), "+74951234567");
        let rpid = invite(SDP).replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nRemote-Party-ID: <sip:+74950009999@pbx>;party=called, \"A\" <sip:+74950002233@pbx>;party=calling;screen=yes\r\n",
        );
        assert_eq!(caller_of(&rpid, "10.1.2.3", &["10.1.2.3"]), "+74950002233");
        assert_eq!(caller_of(&rpid, "10.1.2.3", &[]), "+74951234567");
        // P-Asserted-Identity wins over Remote-Party-ID.
        let both =
            pai.replace("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nRemote-Party-ID: <sip:+74950002233@pbx>\r\n");
        assert_eq!(caller_of(&both, "10.1.2.3", &["10.0.0.0/8"]), "+74950001122");
        let tel = invite(SDP).replace("<sip:+74951234567@127.0.0.1:5070>", "<tel:+74953334455>");
        assert_eq!(caller_of(&tel, "127.0.0.1", &[]), "+74953334455");
    }

    #[test]
    fn an_invite_without_sdp_is_a_late_offer() {
        let Decision::NewCall(call) = classify_bytes(invite("").as_bytes(), localhost(), &Policy::permissive()) else {
            panic!("a late offer is a call")
        };
        assert_eq!(call.negotiated, None);
    }

    #[test]
    fn info_bodies() {
        let pound = voicemail_core::DtmfDigit::from_char('#').unwrap();
        assert_eq!(info_dtmf(Some("application/dtmf-relay"), b"Signal=#\r\nDuration=160\r\n"), InfoDtmf::Digit(pound));
        assert_eq!(info_dtmf(Some("application/dtmf-relay"), b"Signal=11\r\nDuration=160\r\n"), InfoDtmf::Digit(pound));
        assert_eq!(info_dtmf(Some("application/dtmf"), b"#"), InfoDtmf::Digit(pound));
        assert_eq!(info_dtmf(Some("text/plain"), b"#"), InfoDtmf::UnsupportedType);
        assert_eq!(info_dtmf(None, b""), InfoDtmf::Empty);
        assert_eq!(info_dtmf(Some("application/dtmf-relay"), b"Signal=xyz"), InfoDtmf::Invalid);
    }
}
