//! Arbitrary bytes as a SIP datagram through rsipstack's parser and the endpoint's request
//! classification (`voicemail_sip::classify`), with a permissive and a restrictive policy,
//! as a known and as an unknown dialog; the body also goes through the INFO DTMF parser.
//! Nothing may panic; every answer is a final status (200..=699); the caller strings of an
//! accepted INVITE are printable and at most 64 characters.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use voicemail_sip::AddrRule;
use voicemail_sip::classify::{Decision, Policy, classify_bytes, classify_request, info_dtmf};

fn check(d: &Decision) {
    match d {
        Decision::Reply(r) => assert!((200..=699).contains(&r.status), "{r:?}"),
        Decision::NewCall(c) => {
            let p = &c.parties;
            for s in [Some(&p.caller), p.caller_name.as_ref(), Some(&p.called)].into_iter().flatten() {
                assert!(s.chars().count() <= 64 && !s.chars().any(char::is_control), "{s:?}");
            }
        }
        Decision::InDialog | Decision::Ignore | Decision::Drop => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let source = IpAddr::V4(Ipv4Addr::LOCALHOST);
    check(&classify_bytes(data, source, &Policy::permissive()));
    let rules = [AddrRule { addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0)), prefix: 24 }];
    let strict = Policy { accepting: true, allow_from: &rules, active_calls: 3, max_calls: 3, ..Policy::permissive() };
    check(&classify_bytes(data, source, &strict));
    if let Ok(rsipstack::sip::SipMessage::Request(req)) = rsipstack::sip::SipMessage::try_from(data) {
        check(&classify_request(&req, source, true, &Policy::permissive()));
        let ct = voicemail_sip::classify::content_type(&req);
        let _ = info_dtmf(ct.as_deref(), &req.body);
    }
    let _ = info_dtmf(Some("application/dtmf-relay"), data);
    let _ = info_dtmf(Some("application/dtmf"), data);
});
