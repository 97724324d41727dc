//! G.711 is bit-exact with the reference implementation (Sun's `g711.c`, via CPython's
//! `audioop`) for every 16-bit input and every code, and obeys the codec's algebra:
//! decode∘encode is the identity on all 256 codewords' values, and encoding is monotonic.

use proptest::prelude::*;
use voicemail_core::codec::g711;
use voicemail_core::{Codec, CodecKind};

fn golden(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/g711").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn golden_i16(name: &str) -> Vec<i16> {
    golden(name).chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect()
}

fn all_samples() -> Vec<i16> {
    (i16::MIN..=i16::MAX).collect()
}

#[test]
fn ulaw_encode_matches_reference_for_all_inputs() {
    let want = golden("ulaw_encode.bin");
    let mut got = Vec::new();
    CodecKind::Pcmu.encode(&all_samples(), &mut got);
    assert_eq!(got.len(), 65536);
    let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert_eq!(diff, 0, "{diff} of 65536 μ-law codes differ from g711.c");
}

#[test]
fn alaw_encode_matches_reference_for_all_inputs() {
    let want = golden("alaw_encode.bin");
    let mut got = Vec::new();
    CodecKind::Pcma.encode(&all_samples(), &mut got);
    let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert_eq!(diff, 0, "{diff} of 65536 A-law codes differ from g711.c");
}

#[test]
fn decode_tables_match_reference() {
    let codes: Vec<u8> = (0..=255).collect();
    let mut u = Vec::new();
    CodecKind::Pcmu.decode(&codes, &mut u);
    assert_eq!(u, golden_i16("ulaw_decode.bin"));
    let mut a = Vec::new();
    CodecKind::Pcma.decode(&codes, &mut a);
    assert_eq!(a, golden_i16("alaw_decode.bin"));
}

#[test]
fn decode_then_encode_is_identity_on_codewords() {
    for code in 0..=255u8 {
        assert_eq!(g711::linear_to_alaw(g711::alaw_to_linear(code)), code, "A-law code {code:#04x}");
        let back = g711::linear_to_ulaw(g711::ulaw_to_linear(code));
        // μ-law has two codes for zero (0x7F is "negative zero"); both decode to 0.
        if code == 0x7F {
            assert_eq!(back, 0xFF);
        } else {
            assert_eq!(back, code, "μ-law code {code:#04x}");
        }
    }
}

/// The linear value a code stands for, as an ordering key.
fn ulaw_value(code: u8) -> i16 {
    g711::ulaw_to_linear(code)
}

proptest! {
    #[test]
    fn encode_is_monotonic(a in any::<i16>(), b in any::<i16>()) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        prop_assert!(ulaw_value(g711::linear_to_ulaw(lo)) <= ulaw_value(g711::linear_to_ulaw(hi)));
        prop_assert!(g711::alaw_to_linear(g711::linear_to_alaw(lo)) <= g711::alaw_to_linear(g711::linear_to_alaw(hi)));
    }

    #[test]
    fn round_trip_error_is_bounded(s in any::<i16>()) {
        // G.711 keeps 13/14 significant bits near zero and about 4% relative precision above.
        let u = g711::ulaw_to_linear(g711::linear_to_ulaw(s));
        let a = g711::alaw_to_linear(g711::linear_to_alaw(s));
        let tol = |x: i16| (i32::from(x).abs() / 16).max(16) + 1;
        prop_assert!((i32::from(u) - i32::from(s)).abs() <= tol(s) * 2, "μ-law {s} -> {u}");
        prop_assert!((i32::from(a) - i32::from(s)).abs() <= tol(s) * 2, "A-law {s} -> {a}");
    }

    #[test]
    fn slice_codec_equals_per_sample(pcm in proptest::collection::vec(any::<i16>(), 0..400)) {
        let mut u = Vec::new();
        CodecKind::Pcmu.encode(&pcm, &mut u);
        prop_assert_eq!(u, pcm.iter().map(|&s| g711::linear_to_ulaw(s)).collect::<Vec<_>>());
        let mut a = Vec::new();
        CodecKind::Pcma.encode(&pcm, &mut a);
        prop_assert_eq!(a, pcm.iter().map(|&s| g711::linear_to_alaw(s)).collect::<Vec<_>>());
    }
}
