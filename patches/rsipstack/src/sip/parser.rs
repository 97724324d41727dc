use crate::prelude::*;
use crate::sip::{
    headers::{make_header, Headers},
    message::{Request, Response, SipMessage},
    uri::parse_uri,
    Error, Header, Method, StatusCode, Uri, Version,
};
use memchr::{memchr, memmem};
pub fn parse_message(data: &[u8]) -> Result<SipMessage, Error> {
    parse(data, false)
}

/// [`parse_message`] for a message that arrived as a datagram (UDP): a `Content-Length`
/// larger than the rest of the datagram makes it malformed (RFC 3261 §18.3), where
/// [`parse_message`] keeps what there is.
pub fn parse_datagram(data: &[u8]) -> Result<SipMessage, Error> {
    parse(data, true)
}

fn parse(data: &[u8], datagram: bool) -> Result<SipMessage, Error> {
    let sep = find_double_crlf(data)
        .ok_or_else(|| Error::ParseError("SIP message: missing \\r\\n\\r\\n separator".into()))?;

    // The start line and the headers are text (RFC 3261 §7.3.1: TEXT-UTF8): a line that is not
    // UTF-8 makes the message malformed instead of silently ending the header section there.
    let head = core::str::from_utf8(&data[..sep]).map_err(|_| {
        Error::ParseError("SIP message: the start line or a header is not UTF-8".into())
    })?;
    let mut lines = split_crlf_lines(head);
    let start_str = lines
        .next()
        .ok_or_else(|| Error::ParseError("SIP message: empty start line".into()))?;
    let headers = parse_headers(lines);
    let body = message_body(&data[sep + 4..], &headers, datagram)?;

    if start_str.starts_with("SIP/") {
        parse_response_line(start_str, headers, body)
    } else {
        parse_request_line(start_str, headers, body)
    }
}

/// The header lines up to the end of the header section, with folded lines unfolded. A line
/// without a colon is skipped.
fn parse_headers<'a>(lines: impl Iterator<Item = &'a str>) -> Headers {
    let mut headers = Headers::default();
    let mut pending: Option<(String, String)> = None;

    for line in lines {
        if line.is_empty() {
            break;
        }

        if line.as_bytes()[0] == b' ' || line.as_bytes()[0] == b'\t' {
            if let Some((_, ref mut val)) = pending {
                if val.len() > 4096 {
                    // Debug, not warn: the peer decides how often this happens.
                    tracing::debug!(
                        len = val.len(),
                        "parser: folded header value exceeds 4 KiB — likely misframed stream"
                    );
                }
                val.push(' ');
                val.push_str(line.trim());
            }
            continue;
        }

        if let Some((name, val)) = pending.take() {
            headers.push(make_header(&name, val));
        }

        if let Some(colon) = line.find(':') {
            let name = line[..colon].trim().to_string();
            let val = line[colon + 1..].trim().to_string();
            pending = Some((name, val));
        }
    }

    if let Some((name, val)) = pending {
        headers.push(make_header(&name, val));
    }
    headers
}

/// The body: `Content-Length` bytes of what follows the header section, or all of it when the
/// header is absent (RFC 3261 §18.3: on a datagram transport the body then ends with the
/// datagram, as RFC 2543 requests expect; stream transports cut each message at its
/// `Content-Length` before it gets here). A `Content-Length` that is not a number or that
/// differs between two headers is an error (§20.14), and so is one larger than what follows
/// in a `datagram` (§18.3); otherwise the body is what there is.
fn message_body(rest: &[u8], headers: &Headers, datagram: bool) -> Result<Vec<u8>, Error> {
    let mut declared: Option<usize> = None;
    for header in headers.iter() {
        if let Header::ContentLength(value) = header {
            let text = value.value().trim();
            let n: usize = text
                .parse()
                .map_err(|_| Error::ParseError(format!("invalid Content-Length {:?}", text)))?;
            if declared.is_some_and(|d| d != n) {
                return Err(Error::ParseError(
                    "Content-Length headers with different values".into(),
                ));
            }
            declared = Some(n);
        }
    }
    match declared {
        None => Ok(rest.to_vec()),
        Some(n) if n <= rest.len() => Ok(rest[..n].to_vec()),
        Some(_) if !datagram => Ok(rest.to_vec()),
        Some(n) => Err(Error::ParseError(format!(
            "Content-Length {} exceeds the {} bytes after the header section",
            n,
            rest.len()
        ))),
    }
}

/// The response a server sends to bytes that [`parse_message`] refused, when they still
/// begin with a request line: `505` when the SIP-Version is not `SIP/2.0` (RFC 3261 §8.2.1,
/// §21.5.7), `501` when the method is a token but not one of [`Method`]'s (§8.2.1, §21.5.2),
/// `400` for any other defect (a malformed Request-Line or Request-URI, a header that is not
/// UTF-8, a bad `Content-Length`, no end of the header section; §21.4.1). The headers are the
/// request's `Via`, `From`, `To`, `Call-ID` and `CSeq` as far as they can be read (bytes that
/// are not UTF-8 replaced), to be copied into the response (§8.2.6.2).
///
/// `None` for a response (a malformed response is dropped, §18.1.2), for bytes that do not
/// start like a SIP request, and for a request without a `Via` (there is no way to answer it).
/// Call it only for bytes that did not parse: it does not parse the rest of the message.
pub fn reject_unparsable(data: &[u8]) -> Option<(StatusCode, Headers)> {
    let head_end = find_double_crlf(data).unwrap_or(data.len());
    let head = String::from_utf8_lossy(&data[..head_end]);
    let mut lines = split_crlf_lines(&head);
    let start = lines.next()?.trim_end_matches([' ', '\t']);
    let method = start.split(' ').next()?;
    let version = start.rsplit(' ').next()?;
    let is_sip = |s: &str| s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SIP/"));
    if is_sip(method) || !is_sip(version) || method.is_empty() || !method.bytes().all(is_token_byte)
    {
        return None;
    }
    let mut headers = parse_headers(lines);
    headers.retain(|h| {
        matches!(
            h,
            Header::Via(_) | Header::From(_) | Header::To(_) | Header::CallId(_) | Header::CSeq(_)
        )
    });
    if !headers.iter().any(|h| matches!(h, Header::Via(_))) {
        return None;
    }
    let status = if !version.eq_ignore_ascii_case("SIP/2.0") {
        StatusCode::VersionNotSupported
    } else if method.parse::<Method>().is_err() {
        StatusCode::NotImplemented
    } else {
        StatusCode::BadRequest
    };
    Some((status, headers))
}

/// RFC 3261 §25.1 `token` characters.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// `Request-Line = Method SP Request-URI SP SIP-Version CRLF` (RFC 3261 §25.1): single spaces,
/// a Request-URI that is not enclosed in `<>` (RFC 4475 §3.1.2.7-9). Whitespace after the
/// version is tolerated (RFC 4475 §3.1.2.10).
fn parse_request_line(line: &str, headers: Headers, body: Vec<u8>) -> Result<SipMessage, Error> {
    let line = line.trim_end_matches([' ', '\t']);
    let mut parts = line.split(' ');
    let (Some(method_str), Some(uri_str), Some(version_str), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::ParseError(
            "Request-Line: expected `Method SP Request-URI SP SIP-Version`".into(),
        ));
    };
    if [method_str, uri_str, version_str]
        .iter()
        .any(|p| p.is_empty() || p.contains(char::is_whitespace))
    {
        return Err(Error::ParseError(
            "Request-Line: expected `Method SP Request-URI SP SIP-Version`".into(),
        ));
    }
    if uri_str.starts_with('<') {
        return Err(Error::ParseError(
            "Request-Line: the Request-URI is enclosed in <>".into(),
        ));
    }

    let method: Method = method_str.parse()?;
    let uri: Uri = parse_uri(uri_str)?;
    let version: Version = version_str.parse()?;

    Ok(SipMessage::Request(Request {
        method,
        uri,
        version,
        headers,
        body,
    }))
}

fn parse_response_line(line: &str, headers: Headers, body: Vec<u8>) -> Result<SipMessage, Error> {
    let mut parts = line.splitn(3, [' ', '\t']);
    let version_str = parts
        .next()
        .ok_or_else(|| Error::ParseError("Status-Line: missing version".into()))?;
    let code_str = parts
        .next()
        .ok_or_else(|| Error::ParseError("Status-Line: missing status code".into()))?;
    let reason = parts.next().unwrap_or("").trim();

    let version: Version = version_str.parse()?;
    let code: u16 = code_str
        .parse()
        .map_err(|_| Error::ParseError(format!("Status-Line: invalid code {:?}", code_str)))?;
    let status_code = StatusCode::try_from((code, reason))?;
    let wire_reason = wire_reason(&status_code, reason);

    Ok(SipMessage::Response(Response {
        status_code,
        wire_reason,
        version,
        headers,
        body,
    }))
}

/// The Status-Line phrase when it is not the standard text for a known code.
/// An unknown code already keeps its phrase in [`StatusCode::Other`].
fn wire_reason(status_code: &StatusCode, reason: &str) -> Option<String> {
    if reason.is_empty()
        || matches!(status_code, StatusCode::Other(..))
        || reason.eq_ignore_ascii_case(status_code.text())
    {
        return None;
    }
    Some(reason.to_string())
}

fn find_double_crlf(data: &[u8]) -> Option<usize> {
    memmem::find(data, b"\r\n\r\n")
}

fn split_crlf_lines(data: &str) -> impl Iterator<Item = &str> {
    SplitCrLf { data, pos: 0 }
}

/// Lines ending in CRLF or a bare LF.
struct SplitCrLf<'a> {
    data: &'a str,
    pos: usize,
}

impl<'a> Iterator for SplitCrLf<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.data.len() {
            return None;
        }
        let start = self.pos;
        let rest = &self.data.as_bytes()[start..];

        // Find '\n' with memchr, then check the preceding '\r'.
        let (end, next_pos) = if let Some(lf) = memchr(b'\n', rest) {
            let line_end = if lf > 0 && rest[lf - 1] == b'\r' {
                start + lf - 1
            } else {
                start + lf
            };
            (line_end, start + lf + 1)
        } else {
            (self.data.len(), self.data.len())
        };

        self.pos = next_pos;
        // Both ends sit next to an ASCII byte (or at an end of the text): char boundaries.
        self.data.get(start..end)
    }
}

#[cfg(test)]
mod tests {
    use crate::sip::SipMessage;
    #[test]
    fn parser_keeps_body_with_colons_intact() {
        let message: SipMessage = concat!(
            "INVITE sip:bob@restsend.com SIP/2.0\r\n",
            "Via: SIP/2.0/UDP restsend.com:5060;branch=z9hG4bK-1\r\n",
            "From: <sip:alice@restsend.com>;tag=123\r\n",
            "To: <sip:bob@restsend.com>\r\n",
            "Call-ID: call-id-1\r\n",
            "CSeq: 1 INVITE\r\n",
            "Content-Type: application/sdp\r\n",
            "Content-Length: 27\r\n",
            "\r\n",
            "a=rtcp:4000 IN IP4 1.2.3.4"
        )
        .try_into()
        .unwrap();

        match message {
            SipMessage::Request(request) => {
                assert_eq!(
                    String::from_utf8(request.body).unwrap(),
                    "a=rtcp:4000 IN IP4 1.2.3.4"
                );
            }
            SipMessage::Response(_) => panic!("expected request"),
        }
    }

    fn parse_request_line(request_line: &str) -> Result<SipMessage, crate::sip::Error> {
        let raw = format!(
            "{request_line}\r\nVia: SIP/2.0/UDP a.example:5060;branch=z9hG4bK-1\r\n\
             From: <sip:a@a.example>;tag=1\r\nTo: <sip:b@b.example>;tag=2\r\n\
             Call-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        SipMessage::try_from(raw.as_str())
    }

    #[test]
    fn a_request_without_a_request_uri_host_is_rejected() {
        for line in [
            "BYE  SIP/2.0",
            "BYE \t SIP/2.0",
            "BYE sip: SIP/2.0",
            "BYE sip:bob@ SIP/2.0",
            "INVITE  SIP/2.0",
        ] {
            assert!(parse_request_line(line).is_err(), "{line:?} was accepted");
        }
        for line in [
            "BYE sip:bob@127.0.0.1:5060 SIP/2.0",
            "BYE sip:bob@b.example;transport=udp SIP/2.0",
            "INVITE sip:[::1]:5060 SIP/2.0",
            "INVITE tel:+15551234567 SIP/2.0",
        ] {
            assert!(parse_request_line(line).is_ok(), "{line:?} was rejected");
        }
    }

    fn response(status_line: &str) -> crate::sip::Response {
        let raw = format!(
            "{status_line}\r\nVia: SIP/2.0/UDP a.example:5060;branch=z9hG4bK-1\r\n\
             From: <sip:a@a.example>;tag=1\r\nTo: <sip:b@b.example>;tag=2\r\n\
             Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        match SipMessage::try_from(raw.as_str()).unwrap() {
            SipMessage::Response(r) => r,
            SipMessage::Request(_) => panic!("expected response"),
        }
    }

    #[test]
    fn a_custom_reason_phrase_is_kept_beside_the_standard_code() {
        let r = response("SIP/2.0 403 Caller Origination Number is Invalid");
        assert_eq!(r.status_code, crate::sip::StatusCode::Forbidden);
        assert_eq!(
            r.wire_reason.as_deref(),
            Some("Caller Origination Number is Invalid")
        );
        // The wire form is unchanged: the standard phrase is still written.
        assert!(r.to_string().starts_with("SIP/2.0 403 Forbidden\r\n"));
        assert!(r.to_bytes().starts_with(b"SIP/2.0 403 Forbidden\r\n"));
        // Surrounding whitespace is trimmed.
        let r = response("SIP/2.0 503 \tOverloaded Try Later  ");
        assert_eq!(r.wire_reason.as_deref(), Some("Overloaded Try Later"));
    }

    #[test]
    fn the_standard_phrase_or_none_keeps_no_wire_reason() {
        assert_eq!(response("SIP/2.0 403 Forbidden").wire_reason, None);
        assert_eq!(response("SIP/2.0 486 busy here").wire_reason, None);
        assert_eq!(response("SIP/2.0 404").wire_reason, None);
        assert_eq!(response("SIP/2.0 404 ").wire_reason, None);
        // An unknown code keeps its phrase in StatusCode::Other instead.
        let r = response("SIP/2.0 499 Odd Thing");
        assert_eq!(r.wire_reason, None);
        assert_eq!(r.status_code.text(), "Odd Thing");
        assert_eq!(crate::sip::Response::default().wire_reason, None);
    }

    const HEADERS: &str = "Via: SIP/2.0/UDP a.example:5060;branch=z9hG4bK-1\r\n\
        From: <sip:a@a.example>;tag=1\r\nTo: <sip:b@b.example>\r\n\
        Call-ID: c1\r\nCSeq: 1 OPTIONS\r\n";

    fn request(start: &str, extra: &str, body: &str) -> Vec<u8> {
        format!("{start}\r\n{HEADERS}{extra}\r\n{body}").into_bytes()
    }

    #[test]
    fn without_content_length_the_body_is_the_rest_of_the_datagram() {
        let raw = request("INVITE sip:b@b.example SIP/2.0", "", "v=0\r\n");
        let SipMessage::Request(r) = SipMessage::try_from(raw.as_slice()).unwrap() else {
            panic!("expected a request")
        };
        assert_eq!(r.body, b"v=0\r\n");
        // With Content-Length, what follows it is not part of the message (RFC 3261 §18.3).
        let raw = request("INVITE sip:b@b.example SIP/2.0", "l: 3\r\n", "v=0\r\n");
        let SipMessage::Request(r) = SipMessage::try_from(raw.as_slice()).unwrap() else {
            panic!("expected a request")
        };
        assert_eq!(r.body, b"v=0");
    }

    #[test]
    fn a_bad_content_length_is_an_error() {
        for extra in [
            "Content-Length: -1\r\n",
            "Content-Length: 2\r\nContent-Length: 3\r\n",
        ] {
            let raw = request("OPTIONS sip:b@b.example SIP/2.0", extra, "abc");
            assert!(SipMessage::try_from(raw.as_slice()).is_err(), "{extra:?}");
        }
        // Beyond the end: an error in a datagram (RFC 3261 §18.3), the rest otherwise.
        let raw = request(
            "OPTIONS sip:b@b.example SIP/2.0",
            "Content-Length: 99\r\n",
            "abc",
        );
        assert!(super::parse_datagram(&raw).is_err());
        let SipMessage::Request(r) = super::parse_message(&raw).unwrap() else {
            panic!("a request")
        };
        assert_eq!(r.body, b"abc");
    }

    #[test]
    fn a_header_that_is_not_utf8_is_an_error() {
        let mut raw =
            b"OPTIONS sip:b@b.example SIP/2.0\r\nFrom: J\xf6rg <sip:j@a.example>;tag=1\r\n"
                .to_vec();
        raw.extend_from_slice(
            HEADERS
                .replace("From: <sip:a@a.example>;tag=1\r\n", "")
                .as_bytes(),
        );
        raw.extend_from_slice(b"\r\n");
        assert!(SipMessage::try_from(raw.as_slice()).is_err());
        let (status, headers) = super::reject_unparsable(&raw).unwrap();
        assert_eq!(status, crate::sip::StatusCode::BadRequest);
        // The From is kept (lossily) for the response.
        assert!(headers
            .iter()
            .any(|h| matches!(h, crate::sip::Header::From(_))));
    }

    #[test]
    fn the_request_line_has_single_spaces_and_a_bare_uri() {
        for line in [
            "INVITE  sip:b@b.example SIP/2.0",
            "INVITE sip:b@b.example  SIP/2.0",
            "INVITE <sip:b@b.example> SIP/2.0",
            "INVITE sip:b@b.example; lr SIP/2.0",
            "INVITE\tsip:b@b.example SIP/2.0",
        ] {
            assert!(
                SipMessage::try_from(request(line, "", "").as_slice()).is_err(),
                "{line:?}"
            );
        }
        // Trailing whitespace is tolerated (RFC 4475 §3.1.2.10).
        assert!(SipMessage::try_from(
            request("OPTIONS sip:b@b.example SIP/2.0  ", "", "").as_slice()
        )
        .is_ok());
    }

    #[test]
    fn unparsable_requests_get_400_501_or_505_and_the_rest_nothing() {
        use crate::sip::StatusCode;
        let cases: [(&str, Option<StatusCode>); 7] = [
            (
                "NEWMETHOD sip:b@b.example SIP/2.0",
                Some(StatusCode::NotImplemented),
            ),
            (
                "RE%47IST%45R sip:b@b.example SIP/2.0",
                Some(StatusCode::NotImplemented),
            ),
            (
                "OPTIONS sip:b@b.example SIP/7.0",
                Some(StatusCode::VersionNotSupported),
            ),
            (
                "OPTIONS sip:b@[2001:db8:::1] SIP/2.0",
                Some(StatusCode::BadRequest),
            ),
            ("SIP/2.0 4294967301 better not break the receiver", None),
            ("GET / HTTP/1.1", None),
            ("OPTIONS\u{1} sip:b@b.example SIP/2.0", None),
        ];
        for (line, want) in cases {
            let got = super::reject_unparsable(&request(line, "", "")).map(|(s, _)| s);
            assert_eq!(got, want, "{line:?}");
        }
        // The response headers are the request's Via, From, To, Call-ID and CSeq.
        let (_, headers) = super::reject_unparsable(&request(
            "FOO sip:b@b.example SIP/2.0",
            "Max-Forwards: 70\r\n",
            "",
        ))
        .unwrap();
        assert_eq!(headers.len(), 5);
        // Without a Via there is nobody to answer.
        assert_eq!(
            super::reject_unparsable(b"FOO sip:b@b.example SIP/2.0\r\nCall-ID: x\r\n\r\n"),
            None
        );
    }
}
