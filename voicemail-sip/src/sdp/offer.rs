//! Our offer, for a late offer (RFC 3261 §13.2.1, RFC 3264 §5): an INVITE without SDP gets
//! our offer in its 200 OK, and the caller's answer comes back in the ACK.
//!
//! [`make_offer`] writes one `m=audio` stream with every codec of [`MediaConfig::codecs`] in our
//! preference order (PCMU 0, PCMA 8 and G.722 9 by their static payload types; Opus as 96 and
//! L16 as 97) and RFC 4733 `telephone-event` at each clock rate in use (101 at 8000, 102 at
//! 48000). [`accept_answer`] reads the answer (RFC 3264 §6.1): exactly one m-line, not
//! rejected, plain RTP/AVP, and the first of its formats that we offered is the call's codec
//! (the answerer lists its preference first). Parsing is as lenient as for offers and never
//! panics.
//!
//! With `srtp = "required"` ([`make_offer_srtp`]) the offer is `RTP/SAVP` with two `a=crypto`
//! lines of our key (tag 1 `AES_CM_128_HMAC_SHA1_80`, tag 2 `AES_CM_128_HMAC_SHA1_32`), and
//! the answer must be `RTP/SAVP` and accept one of them with its own key
//! ([`accept_answer_srtp`]); otherwise the offer is plain RTP.

use super::*;

/// The dynamic payload type of Opus in our offer.
const OPUS_PAYLOAD_TYPE: u8 = 96;
/// The dynamic payload type of L16 in our offer.
const L16_PAYLOAD_TYPE: u8 = 97;
/// The telephone-event payload types of our offer, by clock rate.
const TELEPHONE_EVENTS: [(u32, u8); 2] = [(8000, 101), (48_000, 102)];

/// Our offer for the 200 OK of an INVITE without SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalOffer {
    /// The SDP (`application/sdp`, CRLF line ends).
    pub sdp: String,
    /// The codecs offered with their payload types, our preference first.
    pub formats: Vec<(CodecKind, u8)>,
    /// The telephone-event payload types offered, with their clock rates.
    pub telephone_events: Vec<(u32, u8)>,
    /// Our SRTP master key when the offer is `RTP/SAVP` (its `a=crypto` lines carry it).
    pub srtp_key: Option<MasterKey>,
}

/// The `a=crypto` lines of our SRTP offer: tag and suite.
const OFFERED_SUITES: [(u32, CryptoSuite); 2] =
    [(1, CryptoSuite::AesCm128HmacSha1_80), (2, CryptoSuite::AesCm128HmacSha1_32)];

impl LocalOffer {
    /// The call's media until the answer is known: our first codec, its telephone-event
    /// payload type, 20 ms, no remote address (nothing is sent before the answer). Its
    /// `answer` is our offer's SDP.
    pub fn provisional(&self) -> Negotiated {
        let (codec, payload_type) = self.formats.first().copied().unwrap_or((CodecKind::Pcmu, 0));
        Negotiated {
            answer: self.sdp.clone(),
            codec,
            payload_type,
            dtmf_payload_type: self.telephone_event(codec.clock_rate_hz()),
            ptime: DEFAULT_PTIME,
            remote_rtp: None,
            direction: Direction::SendRecv,
        }
    }

    fn telephone_event(&self, clock: u32) -> Option<u8> {
        self.telephone_events.iter().find(|(rate, _)| *rate == clock).map(|&(_, pt)| pt)
    }
}

/// Our offer (RFC 3264 §5) of the codecs of `media_config`, at `local`'s address and port.
pub fn make_offer(local: &LocalMedia, media_config: &MediaConfig) -> LocalOffer {
    make_offer_srtp(local, media_config, &SrtpOffer::OFF)
}

/// [`make_offer`]; with [`SrtpMode::Required`] an `RTP/SAVP` offer with our key in two
/// `a=crypto` lines (the `_80` and `_32` suites), otherwise plain RTP.
pub fn make_offer_srtp(local: &LocalMedia, media_config: &MediaConfig, srtp: &SrtpOffer) -> LocalOffer {
    let srtp_key = (srtp.mode == SrtpMode::Required).then_some(srtp.local_key);
    let mut formats: Vec<(CodecKind, u8)> = Vec::new();
    for &codec in &media_config.codecs {
        if !formats.iter().any(|(c, _)| *c == codec) {
            formats.push((codec, offered_payload_type(codec)));
        }
    }
    if formats.is_empty() {
        formats.push((CodecKind::Pcmu, 0));
    }
    let telephone_events: Vec<(u32, u8)> = TELEPHONE_EVENTS
        .into_iter()
        .filter(|(rate, _)| formats.iter().any(|(c, _)| c.clock_rate_hz() == *rate))
        .collect();
    write_offer(local, media_config, formats, telephone_events, srtp_key)
}

/// Our offer in the 200 OK of a re-INVITE without one (RFC 3261 §14.2, RFC 3264 §8; the ACK
/// brings the answer, read by [`accept_answer_srtp`]): the call's codec first, with the
/// payload type it has now, then the other codecs of `media_config` whose payload types the
/// session does not already use for something else (a third party the caller brings in, RFC
/// 3725, may pick another codec), telephone-event as now, and `a=sendrecv`. With `srtp_key`
/// (a call that uses SRTP) it is `RTP/SAVP` with our key, as [`make_offer_srtp`] writes it.
pub fn make_reoffer(
    local: &LocalMedia,
    current: &Negotiated,
    media_config: &MediaConfig,
    srtp_key: Option<MasterKey>,
) -> LocalOffer {
    let clock = current.codec.clock_rate_hz();
    let mut formats = vec![(current.codec, current.payload_type)];
    let mut telephone_events: Vec<(u32, u8)> = current.dtmf_payload_type.map(|pt| (clock, pt)).into_iter().collect();
    let taken = |pt: u8, formats: &[(CodecKind, u8)], events: &[(u32, u8)]| {
        formats.iter().any(|&(_, p)| p == pt) || events.iter().any(|&(_, p)| p == pt)
    };
    // Our usual payload type, or another free dynamic one when the session already uses it.
    let free = |pt: u8, formats: &[(CodecKind, u8)], events: &[(u32, u8)]| {
        if !taken(pt, formats, events) {
            Some(pt)
        } else if pt >= 96 {
            (96..=127).find(|&p| !taken(p, formats, events))
        } else {
            None
        }
    };
    for &codec in &media_config.codecs {
        if !formats.iter().any(|(c, _)| *c == codec)
            && let Some(pt) = free(offered_payload_type(codec), &formats, &telephone_events)
        {
            formats.push((codec, pt));
        }
    }
    for (rate, pt) in TELEPHONE_EVENTS {
        let needed = formats.iter().any(|(c, _)| c.clock_rate_hz() == rate);
        if needed
            && !telephone_events.iter().any(|&(r, _)| r == rate)
            && let Some(pt) = free(pt, &formats, &telephone_events)
        {
            telephone_events.push((rate, pt));
        }
    }
    write_offer(local, media_config, formats, telephone_events, srtp_key)
}

/// The payload type our offers give `codec`: its static one, else our dynamic one.
fn offered_payload_type(codec: CodecKind) -> u8 {
    codec.static_payload_type().unwrap_or(match codec {
        CodecKind::Opus => OPUS_PAYLOAD_TYPE,
        _ => L16_PAYLOAD_TYPE,
    })
}

/// The SDP of an offer of `formats` and `telephone_events` at `local`.
fn write_offer(
    local: &LocalMedia,
    media_config: &MediaConfig,
    formats: Vec<(CodecKind, u8)>,
    telephone_events: Vec<(u32, u8)>,
    srtp_key: Option<MasterKey>,
) -> LocalOffer {
    let address = match local.ip {
        IpAddr::V4(ip) => format!("IN IP4 {ip}"),
        IpAddr::V6(ip) => format!("IN IP6 {ip}"),
    };
    let mut sdp = String::with_capacity(512);
    // Writing into a String cannot fail; the results are ignored on purpose.
    let _ = write!(sdp, "v=0\r\no=voicemail {} {} {address}\r\ns=voicemail\r\n", local.session_id, local.version);
    let proto = if srtp_key.is_some() { "RTP/SAVP" } else { "RTP/AVP" };
    let _ = write!(sdp, "c={address}\r\nt=0 0\r\nm=audio {} {proto}", local.port);
    for pt in formats.iter().map(|&(_, pt)| pt).chain(telephone_events.iter().map(|&(_, pt)| pt)) {
        let _ = write!(sdp, " {pt}");
    }
    sdp.push_str("\r\n");
    for &(codec, pt) in &formats {
        if codec == CodecKind::Opus {
            let _ = write!(
                sdp,
                "a=rtpmap:{pt} opus/48000/2\r\na=fmtp:{pt} maxplaybackrate={}; sprop-maxcapturerate=16000; \
                 stereo=0; sprop-stereo=0; useinbandfec=1\r\n",
                media_config.opus_sample_rate_hz
            );
        } else {
            let _ = write!(sdp, "a=rtpmap:{pt} {}/{}\r\n", codec.name(), codec.clock_rate_hz());
        }
    }
    for (rate, pt) in &telephone_events {
        let _ = write!(sdp, "a=rtpmap:{pt} telephone-event/{rate}\r\na=fmtp:{pt} 0-15\r\n");
    }
    let _ = write!(sdp, "a=ptime:{}\r\na=sendrecv\r\n", DEFAULT_PTIME.as_millis());
    if let Some(key) = srtp_key {
        for (tag, suite) in OFFERED_SUITES {
            let _ = write!(sdp, "a=crypto:{tag} {} inline:{}\r\n", suite.name(), key.to_base64());
        }
    }
    LocalOffer { sdp, formats, telephone_events, srtp_key }
}

/// Reads the caller's answer (from the ACK) to our `offer` (RFC 3264 §6.1, §7): the call's
/// codec is the first format of the answer's stream that we offered, its payload type the
/// answer's. The returned [`Negotiated::answer`] is our offer's SDP (what we sent).
///
/// # Errors
/// [`SdpError::Malformed`] when the body is not SDP, or does not have the one m-line our offer
/// has; [`SdpError::NotAcceptable`] when the answer rejects the stream (port 0) or keeps none
/// of our formats.
pub fn accept_answer(answer: &[u8], offer: &LocalOffer) -> Result<Negotiated, SdpError> {
    accept_answer_srtp(answer, offer).map(|(n, _)| n)
}

/// [`accept_answer`], with the SRTP keys of both directions when our offer was `RTP/SAVP`:
/// the answer must then be `RTP/SAVP` with an `a=crypto` line that accepts one of ours (its
/// tag and suite) with the answerer's key.
///
/// # Errors
/// As [`accept_answer`]; an answer to our SRTP offer without a usable `a=crypto` line (or not
/// `RTP/SAVP`) is [`SdpError::NotAcceptable`].
pub fn accept_answer_srtp(answer: &[u8], offer: &LocalOffer) -> Result<(Negotiated, Option<SrtpKeys>), SdpError> {
    let (session, _) = parse_offer(answer)?;
    let [media] = session.media_descriptions.as_slice() else {
        return Err(SdpError::Malformed(format!(
            "the answer has {} media streams; the offer had one",
            session.media_descriptions.len()
        )));
    };
    let proto = if offer.srtp_key.is_some() { TransportProtocol::RtpSavp } else { TransportProtocol::RtpAvp };
    if media.media.media_type != MediaType::Audio || media.media.proto != proto || media.media.port == 0 {
        return Err(SdpError::NotAcceptable("the answer rejects the audio stream".into()));
    }
    let keys = match offer.srtp_key {
        None => None,
        Some(local) => {
            let answered = crate::srtp::crypto_per_media(&String::from_utf8_lossy(answer));
            let crypto = answered
                .first()
                .and_then(|lines| lines.iter().find(|c| OFFERED_SUITES.contains(&(c.tag, c.suite))))
                .ok_or_else(|| SdpError::NotAcceptable("the answer accepts none of our SRTP keys".into()))?;
            Some(SrtpKeys { suite: crypto.suite, tag: crypto.tag, local, remote: crypto.key })
        }
    };
    // What a payload type of the answer stands for: its rtpmap (or static type), else what it
    // stood for in our offer.
    let format = |pt: u8| match format_of(media, pt) {
        Format::Other => {
            if let Some(&(codec, _)) = offer.formats.iter().find(|(_, p)| *p == pt) {
                Format::Audio(codec)
            } else if let Some(&(rate, _)) = offer.telephone_events.iter().find(|(_, p)| *p == pt) {
                Format::TelephoneEvent(rate)
            } else {
                Format::Other
            }
        }
        known => known,
    };
    let formats: Vec<(u8, Format)> =
        media.media.fmts.iter().filter(|&&pt| pt <= 127).map(|&pt| (pt, format(pt))).collect();
    let Some((codec, payload_type)) = formats.iter().find_map(|&(pt, f)| match f {
        Format::Audio(codec) if offer.formats.iter().any(|(c, _)| *c == codec) => Some((codec, pt)),
        _ => None,
    }) else {
        return Err(SdpError::NotAcceptable("the answer keeps none of the offered codecs".into()));
    };
    let clock = codec.clock_rate_hz();
    let dtmf_payload_type = formats.iter().find(|(_, f)| *f == Format::TelephoneEvent(clock)).map(|&(pt, _)| pt);
    let direction = Direction::from(media.direction);
    let connection = media.connection.as_ref().or(session.connection.as_ref());
    let remote_rtp =
        connection.and_then(|c| usable_address(&c.address)).map(|ip| SocketAddr::new(ip, media.media.port));
    let negotiated = Negotiated {
        answer: offer.sdp.clone(),
        codec,
        payload_type,
        dtmf_payload_type,
        ptime: ptime_of(&session, media),
        remote_rtp,
        direction,
    };
    Ok((negotiated, keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    const LOCAL: LocalMedia =
        LocalMedia { ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), port: 40000, session_id: 42, version: 1 };

    fn answer(media: &str) -> String {
        format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{media}")
    }

    #[test]
    fn an_srtp_offer_carries_our_key_and_needs_an_srtp_answer() {
        let ours = MasterKey::from_bytes([9; 30]);
        let srtp = SrtpOffer { mode: SrtpMode::Required, local_key: ours };
        let o = make_offer_srtp(&LOCAL, &MediaConfig::default(), &srtp);
        assert!(o.sdp.contains("m=audio 40000 RTP/SAVP "), "{}", o.sdp);
        let key = ours.to_base64();
        assert!(o.sdp.contains(&format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n")), "{}", o.sdp);
        assert!(o.sdp.contains(&format!("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{key}\r\n")), "{}", o.sdp);
        // Optional (or off): a plain offer.
        let plain = make_offer_srtp(&LOCAL, &MediaConfig::default(), &SrtpOffer { mode: SrtpMode::Optional, ..srtp });
        assert!(plain.sdp.contains("RTP/AVP") && !plain.sdp.contains("a=crypto") && plain.srtp_key.is_none());

        let theirs = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
        let good =
            answer(&format!("m=audio 5004 RTP/SAVP 0\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{theirs}\r\n"));
        let (n, keys) = accept_answer_srtp(good.as_bytes(), &o).unwrap();
        let keys = keys.unwrap();
        assert_eq!((n.codec, keys.tag, keys.suite), (CodecKind::Pcmu, 2, CryptoSuite::AesCm128HmacSha1_32));
        assert_eq!((keys.local, keys.remote.to_base64()), (ours, theirs.to_owned()));
        // Not acceptable: plain RTP, no key, a tag we did not offer, a suite that is not the tag's.
        for bad in [
            format!("m=audio 5004 RTP/AVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{theirs}\r\n"),
            "m=audio 5004 RTP/SAVP 0\r\n".to_owned(),
            format!("m=audio 5004 RTP/SAVP 0\r\na=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{theirs}\r\n"),
            format!("m=audio 5004 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:{theirs}\r\n"),
        ] {
            let e = accept_answer_srtp(answer(&bad).as_bytes(), &o).unwrap_err();
            assert!(matches!(e, SdpError::NotAcceptable(_)), "{bad}: {e}");
        }
        // A plain offer takes no SRTP answer.
        assert!(accept_answer_srtp(good.as_bytes(), &plain).is_err());
    }

    fn current(codec: CodecKind, payload_type: u8, dtmf_payload_type: Option<u8>) -> Negotiated {
        Negotiated {
            answer: String::new(),
            codec,
            payload_type,
            dtmf_payload_type,
            ptime: DEFAULT_PTIME,
            remote_rtp: None,
            direction: Direction::SendRecv,
        }
    }

    #[test]
    fn a_reoffer_keeps_the_sessions_payload_types_and_adds_the_rest_around_them() {
        // Opus as the caller's 111 and telephone-event/48000 as its 101: ours keep them, the
        // other codecs keep their usual numbers, and telephone-event/8000 (usually 101) takes
        // the first free dynamic one.
        let o = make_reoffer(&LOCAL, &current(CodecKind::Opus, 111, Some(101)), &MediaConfig::default(), None);
        assert!(o.sdp.contains("m=audio 40000 RTP/AVP 111 9 8 0 97 101 96\r\n"), "{}", o.sdp);
        assert!(o.sdp.contains("a=rtpmap:111 opus/48000/2\r\n"), "{}", o.sdp);
        assert!(o.sdp.contains("a=rtpmap:101 telephone-event/48000\r\n"), "{}", o.sdp);
        assert!(o.sdp.contains("a=rtpmap:96 telephone-event/8000\r\n"), "{}", o.sdp);
        assert!(o.sdp.contains("a=sendrecv\r\n") && !o.sdp.contains("a=crypto"), "{}", o.sdp);
        // Opus (usually 96) moves when the session uses 96 for something else.
        let o = make_reoffer(&LOCAL, &current(CodecKind::Pcmu, 0, Some(96)), &MediaConfig::default(), None);
        assert!(o.sdp.contains("m=audio 40000 RTP/AVP 0 97 9 8 98 96 102\r\n"), "{}", o.sdp);
        assert!(o.sdp.contains("a=rtpmap:97 opus/48000/2\r\n"), "{}", o.sdp);
        assert!(o.sdp.contains("a=rtpmap:98 L16/"), "{}", o.sdp);
        assert!(o.sdp.contains("a=rtpmap:96 telephone-event/8000\r\n"), "{}", o.sdp);

        // The answer (the ACK's) picks the codec; a third party may pick another.
        let same = answer("m=audio 5004 RTP/AVP 0 96\r\na=rtpmap:96 telephone-event/8000\r\na=recvonly\r\n");
        let n = accept_answer(same.as_bytes(), &o).unwrap();
        assert_eq!((n.codec, n.payload_type, n.dtmf_payload_type), (CodecKind::Pcmu, 0, Some(96)));
        assert_eq!((n.remote_rtp.map(|a| a.port()), n.direction), (Some(5004), Direction::RecvOnly));
        let other = answer("m=audio 6000 RTP/AVP 8\r\n");
        let n = accept_answer(other.as_bytes(), &o).unwrap();
        assert_eq!((n.codec, n.payload_type, n.dtmf_payload_type), (CodecKind::Pcma, 8, None));
        assert!(accept_answer(answer("m=audio 6000 RTP/AVP 18\r\n").as_bytes(), &o).is_err());

        // A call with SRTP: our key again, in the offer's two lines.
        let key = MasterKey::from_bytes([7; 30]);
        let o = make_reoffer(&LOCAL, &current(CodecKind::Pcmu, 0, Some(101)), &MediaConfig::default(), Some(key));
        assert!(o.sdp.contains("m=audio 40000 RTP/SAVP 0 96 9 8 97 101 102\r\n"), "{}", o.sdp);
        assert!(o.sdp.contains(&format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}\r\n", key.to_base64())));
    }

    #[test]
    fn the_offer_lists_our_codecs_in_our_order() {
        let o = make_offer(&LOCAL, &MediaConfig::default());
        assert!(o.sdp.contains("m=audio 40000 RTP/AVP 96 9 8 0 97 101 102\r\n"), "{}", o.sdp);
        for line in ["a=rtpmap:96 opus/48000/2", "a=rtpmap:9 G722/8000", "a=rtpmap:0 PCMU/8000", "a=rtpmap:97 L16/8000"]
        {
            assert!(o.sdp.contains(line), "{line}: {}", o.sdp);
        }
        assert!(o.sdp.contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"));
        assert!(o.sdp.contains("a=rtpmap:102 telephone-event/48000\r\n"));
        let parsed = SessionDescription::parse(&o.sdp.clone().into()).unwrap();
        assert_eq!(parsed.media_descriptions.len(), 1);
        let p = o.provisional();
        assert_eq!(
            (p.codec, p.payload_type, p.dtmf_payload_type, p.remote_rtp),
            (CodecKind::Opus, 96, Some(102), None)
        );
        // Narrowband only: no 48 kHz telephone-event.
        let g711 = MediaConfig { codecs: vec![CodecKind::Pcma, CodecKind::Pcmu], ..MediaConfig::default() };
        let o = make_offer(&LOCAL, &g711);
        assert!(o.sdp.contains("m=audio 40000 RTP/AVP 8 0 101\r\n"), "{}", o.sdp);
        assert_eq!(o.provisional().codec, CodecKind::Pcma);
    }

    #[test]
    fn the_answer_picks_the_codec() {
        let o = make_offer(&LOCAL, &MediaConfig::default());
        let n = accept_answer(answer("m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n").as_bytes(), &o).unwrap();
        assert_eq!((n.codec, n.payload_type, n.dtmf_payload_type), (CodecKind::Pcmu, 0, Some(101)));
        assert_eq!(n.remote_rtp, Some("127.0.0.1:6000".parse().unwrap()));
        assert_eq!((n.direction, n.ptime, n.answer.as_str()), (Direction::SendRecv, DEFAULT_PTIME, o.sdp.as_str()));
        // The answerer's first choice wins; a dynamic type without rtpmap is the offer's.
        let n = accept_answer(answer("m=audio 6000 RTP/AVP 96 8 102\r\na=ptime:40\r\n").as_bytes(), &o).unwrap();
        assert_eq!((n.codec, n.payload_type, n.dtmf_payload_type), (CodecKind::Opus, 96, Some(102)));
        assert_eq!(n.ptime, Duration::from_millis(40));
        // Another payload type number for an offered codec is taken as the answer says.
        let n = accept_answer(answer("m=audio 6000 RTP/AVP 120\r\na=rtpmap:120 G722/8000\r\n").as_bytes(), &o).unwrap();
        assert_eq!((n.codec, n.payload_type), (CodecKind::G722, 120));
        let n = accept_answer(answer("m=audio 6000 RTP/AVP 8\r\na=sendonly\r\n").as_bytes(), &o).unwrap();
        assert_eq!(n.direction, Direction::SendOnly);
    }

    #[test]
    fn unusable_answers() {
        let o = make_offer(&LOCAL, &MediaConfig { codecs: vec![CodecKind::Pcmu], ..MediaConfig::default() });
        for (body, malformed) in [
            ("", true),
            ("hello", true),
            ("v=0\r\n", true),
            (&answer("m=audio 6000 RTP/AVP 0\r\nm=video 6002 RTP/AVP 31\r\n"), true),
            (&answer("m=audio 0 RTP/AVP 0\r\n"), false),
            (&answer("m=audio 6000 RTP/SAVP 0\r\n"), false),
            (&answer("m=audio 6000 RTP/AVP 8\r\n"), false),
            (&answer("m=audio 6000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"), false),
        ] {
            match accept_answer(body.as_bytes(), &o) {
                Err(SdpError::Malformed(_)) => assert!(malformed, "{body:?}"),
                Err(SdpError::NotAcceptable(_)) => assert!(!malformed, "{body:?}"),
                Ok(n) => panic!("{body:?} accepted: {n:?}"),
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_answers_never_panic(body in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let o = make_offer(&LOCAL, &MediaConfig::default());
            if let Ok(n) = accept_answer(&body, &o) {
                prop_assert!(n.payload_type <= 127 && o.formats.iter().any(|(c, _)| *c == n.codec));
            }
        }

        #[test]
        fn sdp_like_answers_never_panic(lines in proptest::collection::vec(
            "(v=0|o=[ -~]{0,40}|s=[ -~]{0,10}|c=IN IP[46] [0-9a-f.:/]{0,30}|t=[0-9 ]{0,10}|m=audio [0-9]{0,6} RTP/AVP( [0-9]{1,3}){0,6}|a=(rtpmap|ptime|sendonly)[: ]?[ -~]{0,30})",
            0..12,
        )) {
            let o = make_offer(&LOCAL, &MediaConfig::default());
            let _ = accept_answer(lines.join("\r\n").as_bytes(), &o);
        }
    }
}
