//! Which number an INVITE is for: the diverting number (History-Info, RFC 7044; Diversion,
//! RFC 5806), the Request-URI's user and the To header's user, for the choice of the mailbox
//! ([`voicemail_core::mailboxes`]). Pure string handling of what the peer sent: bounded,
//! never fails, never panics; what cannot be read is absent.
//!
//! The diverting number is the user part of:
//!
//! - History-Info: the `target` of an RFC 4458 voicemail URI (`sip:vm@host;target=...;cause=486`);
//!   else the entry the last retargeting came from, a retargeting being an entry whose URI
//!   carries `cause` (RFC 4458) or a `Reason` header with a `cause` (RFC 7044), or that has an
//!   `mp` tag: the entry its `mp` (or `rc`) tag names by index, else its parent by index
//!   (`1.1` for `1.1.1`), else the entry before it; without such tags, an entry with `rc` the
//!   same way; without any tag, the entry before the last (the last one reached us);
//! - Diversion: the URI of the top-most header's first value (the most recent diversion).
//!
//! History-Info wins when it names a number, as it is the standard one.

use rsipstack::sip::Request;
use voicemail_core::Dialled;

use crate::classify::clean;

/// The most header values (entries) looked at in one request.
const MAX_ENTRIES: usize = 64;

/// The numbers `req` is for. Each is cleaned ([`clean`]: percent-decoded, printable, at most
/// 64 characters); an empty one is `None`.
pub fn dialled(req: &Request) -> Dialled {
    let mut history = Vec::new();
    let mut diversion = Vec::new();
    let mut to = None;
    for header in req.headers.iter() {
        let name = header.name();
        if name.eq_ignore_ascii_case("History-Info") {
            history.push(header.value().to_owned());
        } else if name.eq_ignore_ascii_case("Diversion") {
            diversion.push(header.value().to_owned());
        } else if (name.eq_ignore_ascii_case("To") || name == "t") && to.is_none() {
            to = Some(header.value().to_owned());
        }
    }
    let nonempty = |s: String| {
        let s = clean(&s);
        (!s.is_empty()).then_some(s)
    };
    let diverted_from = history_info(&history).or_else(|| diversion_of(&diversion)).and_then(nonempty);
    let request_uri = uri_user(&req.uri.to_string()).and_then(nonempty);
    let to = to.and_then(|t| entries(&t).into_iter().next()).and_then(|e| uri_user(&e.uri)).and_then(nonempty);
    Dialled { diverted_from, request_uri, to }
}

/// One name-addr of a header value: its URI (without `<>`) and its header parameters
/// (names in lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    uri: String,
    params: Vec<(String, Option<String>)>,
}

impl Entry {
    fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_deref())
    }
}

/// Splits `value` at the commas that separate entries (not inside quotes or `<>`).
fn split_entries(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    let mut start = 0;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' if !angle => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(value.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
        if out.len() >= MAX_ENTRIES {
            return out;
        }
    }
    out.push(value.get(start..).unwrap_or_default());
    out
}

/// The entries of a header value (name-addr or addr-spec, each with its parameters).
fn entries(value: &str) -> Vec<Entry> {
    split_entries(value).into_iter().filter_map(entry).collect()
}

fn entry(text: &str) -> Option<Entry> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    // The URI: inside `<>` after an optional display name, else up to the first `;`.
    let (uri, rest) = match angle_bracketed(text) {
        Some((uri, rest)) => (uri, rest),
        None => match text.find(';') {
            Some(i) => (text.get(..i).unwrap_or_default(), text.get(i..).unwrap_or_default()),
            None => (text, ""),
        },
    };
    let params = rest
        .split(';')
        .filter_map(|p| {
            let p = p.trim();
            if p.is_empty() {
                return None;
            }
            Some(match p.split_once('=') {
                Some((n, v)) => (n.trim().to_ascii_lowercase(), Some(v.trim().trim_matches('"').to_owned())),
                None => (p.to_ascii_lowercase(), None),
            })
        })
        .take(MAX_ENTRIES)
        .collect();
    Some(Entry { uri: uri.trim().to_owned(), params })
}

/// `(uri, what follows the '>')` of `"Name" <uri>;params`, skipping a quoted display name.
fn angle_bracketed(text: &str) -> Option<(&str, &str)> {
    let mut quoted = false;
    let mut escaped = false;
    let mut open = None;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => {
                open = Some(i);
                break;
            }
            _ => {}
        }
    }
    let open = open?;
    let close = open + text.get(open..)?.find('>')?;
    Some((text.get(open + 1..close)?, text.get(close + 1..)?))
}

/// The user part of a `sip:`/`sips:` URI (before `@`, without its own `;` parameters) or the
/// number of a `tel:` URI.
fn uri_user(uri: &str) -> Option<String> {
    let uri = uri.trim().trim_start_matches('<').trim_end_matches('>');
    let (scheme, rest) = uri.split_once(':')?;
    let scheme = scheme.trim().to_ascii_lowercase();
    let rest = rest.split('?').next().unwrap_or_default();
    let user = match scheme.as_str() {
        "sip" | "sips" => rest.split_once('@').map(|(user, _)| user.split(';').next().unwrap_or_default())?,
        "tel" => rest.split(';').next().unwrap_or_default(),
        _ => return None,
    };
    // `user:password@host`: the password is not part of the user.
    let user = user.split(':').next().unwrap_or_default().trim();
    (!user.is_empty()).then(|| user.to_owned())
}

/// The `;`-parameters of a URI (after its host, before `?`), names in lower case.
fn uri_params(uri: &str) -> Vec<(String, Option<String>)> {
    let main = uri.split('?').next().unwrap_or_default();
    // Parameters follow the host: after the `@` when there is one (a user may have `;`).
    let after_host = match main.rfind('@') {
        Some(at) => main.get(at..).unwrap_or_default(),
        None => main,
    };
    after_host
        .split(';')
        .skip(1)
        .take(MAX_ENTRIES)
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (n.trim().to_ascii_lowercase(), Some(v.trim().to_owned())),
            None => (p.trim().to_ascii_lowercase(), None),
        })
        .collect()
}

/// Whether a History-Info URI says the request was retargeted: a `cause` parameter (RFC
/// 4458) or a `Reason` header with a `cause` (RFC 7044, `?Reason=SIP%3Bcause%3D302`).
fn has_cause(uri: &str) -> bool {
    if uri_params(uri).iter().any(|(n, _)| n == "cause") {
        return true;
    }
    uri.split_once('?').is_some_and(|(_, headers)| {
        let decoded = percent_decode(headers).to_ascii_lowercase();
        decoded.split('&').any(|h| h.trim_start().starts_with("reason=") && h.contains("cause="))
    })
}

/// The RFC 4458 `target` of a URI (percent-encoded), as a URI.
fn target_of(uri: &str) -> Option<String> {
    let (_, value) = uri_params(uri).into_iter().find(|(n, _)| n == "target")?;
    let value = percent_decode(&value?);
    (!value.is_empty()).then_some(value)
}

/// `%XX` escapes decoded (invalid UTF-8 replaced).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        if b == b'%'
            && let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The diverting user of the History-Info header values (see the [module docs](self)).
fn history_info(values: &[String]) -> Option<String> {
    let list: Vec<Entry> = values.iter().flat_map(|v| entries(v)).take(MAX_ENTRIES).collect();
    if let Some(target) = list.iter().rev().find_map(|e| target_of(&e.uri)) {
        // A target may be a bare number as well as a URI.
        return uri_user(&target).or(Some(target));
    }
    let index = |e: &Entry| e.param("index").flatten().map(str::to_owned);
    let by_index = |wanted: &str| list.iter().find(|e| index(e).as_deref() == Some(wanted));
    let parent_of = |pos: usize| -> Option<&Entry> {
        let e = list.get(pos)?;
        // The tag's value names the entry retargeted from; else the parent index.
        let named = ["mp", "rc"].iter().find_map(|t| e.param(t).flatten()).and_then(by_index);
        let parent = || index(e).and_then(|i| i.rsplit_once('.').map(|(p, _)| p.to_owned())).and_then(|p| by_index(&p));
        named.or_else(parent).or_else(|| pos.checked_sub(1).and_then(|p| list.get(p)))
    };
    let retargeted = list.iter().rposition(|e| has_cause(&e.uri) || e.param("mp").is_some());
    let contact = || list.iter().rposition(|e| e.param("rc").is_some());
    if let Some(pos) = retargeted.or_else(contact) {
        return parent_of(pos).and_then(|e| uri_user(&e.uri));
    }
    if list.len() >= 2 {
        return list.get(list.len() - 2).and_then(|e| uri_user(&e.uri));
    }
    None
}

/// The user of the top-most Diversion header's first value.
fn diversion_of(values: &[String]) -> Option<String> {
    let first = values.first()?;
    entries(first).into_iter().next().and_then(|e| uri_user(&e.uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hi(values: &[&str]) -> Option<String> {
        history_info(&values.iter().map(|v| (*v).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn users_of_uris() {
        assert_eq!(uri_user("sip:+74951234500@pbx.example.com;user=phone").as_deref(), Some("+74951234500"));
        assert_eq!(uri_user("<sips:sales@example.com>").as_deref(), Some("sales"));
        assert_eq!(uri_user("tel:+74951234500;phone-context=x").as_deref(), Some("+74951234500"));
        assert_eq!(uri_user("sip:+123;npdi@host").as_deref(), Some("+123"));
        assert_eq!(uri_user("sip:alice:secret@host").as_deref(), Some("alice"));
        assert_eq!(uri_user("sip:pbx.example.com"), None);
        assert_eq!(uri_user("http://x@y"), None);
        assert_eq!(uri_user(""), None);
    }

    #[test]
    fn diversion_takes_the_top_most() {
        let d = |v: &[&str]| diversion_of(&v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(
            d(&["\"Office, Sales\" <sip:84951234500@pbx>;reason=no-answer;counter=1, <sip:200@pbx>;reason=busy"])
                .as_deref(),
            Some("84951234500")
        );
        assert_eq!(d(&["<tel:+74951234600>;reason=unconditional", "<sip:1@x>"]).as_deref(), Some("+74951234600"));
        assert_eq!(d(&["sip:300@pbx;reason=user-busy"]).as_deref(), Some("300"));
        assert_eq!(d(&[]), None);
        assert_eq!(d(&["garbage"]), None);
    }

    #[test]
    fn history_info_entry_before_the_retargeting() {
        // RFC 7044 style: the voicemail entry carries a Reason with a cause and mp.
        assert_eq!(
            hi(&[
                "<sip:+74951234600@pbx.example.com>;index=1",
                "<sip:vm@vm.example.com?Reason=SIP%3Bcause%3D480>;index=1.1;mp=1"
            ])
            .as_deref(),
            Some("+74951234600")
        );
        // RFC 4458 cause as a URI parameter, several values in one header.
        assert_eq!(
            hi(&["<sip:office@pbx>;index=1, <sip:bob@pbx>;index=1.1;rc=1, <sip:vm@host;cause=486>;index=1.1.1"])
                .as_deref(),
            Some("bob")
        );
        // mp names the entry it was mapped from by index.
        assert_eq!(
            hi(&["<sip:100@pbx>;index=1", "<sip:101@pbx>;index=1.1;rc=1", "<sip:vm@pbx>;index=1.2;mp=1"]).as_deref(),
            Some("100")
        );
        // RFC 4458 target wins.
        assert_eq!(
            hi(&["<sip:vm@host;target=sip:%2B74951234500%40pbx;cause=302>;index=1"]).as_deref(),
            Some("+74951234500")
        );
        // No tags: the entry before the last.
        assert_eq!(hi(&["<sip:555@a>;index=1", "<sip:vm@b>;index=1.1"]).as_deref(), Some("555"));
        assert_eq!(hi(&["<sip:555@a>;index=1"]), None);
        assert_eq!(hi(&[]), None);
        assert_eq!(hi(&[",,,;;;<<>>\"\\"]), None);
    }

    #[test]
    fn quoted_commas_and_brackets() {
        let e = entries("\"a, <b>\" <sip:x@y>;p=1, <sip:z@w;q=2>");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].uri, "sip:x@y");
        assert_eq!(e[0].param("p"), Some(Some("1")));
        assert_eq!(e[1].uri, "sip:z@w;q=2");
    }

    #[test]
    fn long_and_odd_input_is_bounded() {
        let many = vec!["<sip:1@a>;index=1"; 1000].join(",");
        assert_eq!(hi(&[many.as_str()]).as_deref(), Some("1"));
        for s in ["<", ">", "\"", "<sip:@>", ";;;", "<sip:a@b;target=>", "<sip:a@b?>", "sip:", "é<ü>;ß"] {
            let _ = hi(&[s]);
            let _ = diversion_of(&[s.to_owned()]);
        }
    }
}
