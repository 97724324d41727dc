//! G.711 μ-law and A-law, table-driven and bit-exact with the ITU-T reference
//! implementation (Sun Microsystems' `g711.c`, also used by CPython's `audioop`).
//!
//! Decoding is one lookup in a 256-entry table. Encoding is one lookup in a table indexed by
//! the sample's top 14 (μ-law) or 13 (A-law) bits, which is exactly the precision `g711.c`
//! keeps, so the tables reproduce it for all 65,536 inputs. All tables are built at compile
//! time.

/// Segment end points for A-law (13-bit magnitudes), as in `g711.c`.
const SEG_AEND: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
/// Segment end points for μ-law (14-bit magnitudes), as in `g711.c`.
const SEG_UEND: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
const BIAS: i32 = 0x84;
const CLIP: i32 = 8159;

/// The μ-law code of digital silence.
pub const ULAW_SILENCE: u8 = 0xFF;
/// The A-law code of digital silence.
pub const ALAW_SILENCE: u8 = 0xD5;

const fn search(val: i32, table: &[i32; 8]) -> i32 {
    let mut i = 0;
    while i < 8 {
        if val <= table[i] {
            return i as i32;
        }
        i += 1;
    }
    8
}

/// `linear2ulaw` from `g711.c`, applied to a 14-bit sample (the 16-bit sample shifted right by 2).
const fn ulaw_encode_14(pcm14: i32) -> u8 {
    let (mut val, mask) = if pcm14 < 0 { (-pcm14, 0x7F) } else { (pcm14, 0xFF) };
    if val > CLIP {
        val = CLIP;
    }
    val += BIAS >> 2;
    let seg = search(val, &SEG_UEND);
    if seg >= 8 {
        (0x7F ^ mask) as u8
    } else {
        let uval = (seg << 4) | ((val >> (seg + 1)) & 0xF);
        (uval ^ mask) as u8
    }
}

/// `linear2alaw` from `g711.c`, applied to a 13-bit sample (the 16-bit sample shifted right by 3).
const fn alaw_encode_13(pcm13: i32) -> u8 {
    let (val, mask) = if pcm13 >= 0 { (pcm13, 0xD5) } else { (-pcm13 - 1, 0x55) };
    let seg = search(val, &SEG_AEND);
    if seg >= 8 {
        (0x7F ^ mask) as u8
    } else {
        let mut aval = seg << 4;
        if seg < 2 {
            aval |= (val >> 1) & 0xF;
        } else {
            aval |= (val >> seg) & 0xF;
        }
        (aval ^ mask) as u8
    }
}

const fn ulaw_decode_one(code: u8) -> i16 {
    let u = !code as i32;
    let mut t = ((u & 0xF) << 3) + BIAS;
    t <<= (u & 0x70) >> 4;
    (if u & 0x80 != 0 { BIAS - t } else { t - BIAS }) as i16
}

const fn alaw_decode_one(code: u8) -> i16 {
    let a = (code ^ 0x55) as i32;
    let mut t = (a & 0xF) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const fn build_ulaw_encode() -> [u8; 1 << 14] {
    let mut table = [0u8; 1 << 14];
    let mut i = 0;
    while i < (1 << 14) {
        // Index i is the 14-bit two's complement value (i16 >> 2) masked to 14 bits.
        let v = if i >= (1 << 13) { i as i32 - (1 << 14) } else { i as i32 };
        table[i] = ulaw_encode_14(v);
        i += 1;
    }
    table
}

const fn build_alaw_encode() -> [u8; 1 << 13] {
    let mut table = [0u8; 1 << 13];
    let mut i = 0;
    while i < (1 << 13) {
        let v = if i >= (1 << 12) { i as i32 - (1 << 13) } else { i as i32 };
        table[i] = alaw_encode_13(v);
        i += 1;
    }
    table
}

const fn build_decode(ulaw: bool) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if ulaw { ulaw_decode_one(i as u8) } else { alaw_decode_one(i as u8) };
        i += 1;
    }
    table
}

static ULAW_ENCODE: [u8; 1 << 14] = build_ulaw_encode();
static ALAW_ENCODE: [u8; 1 << 13] = build_alaw_encode();
static ULAW_DECODE: [i16; 256] = build_decode(true);
static ALAW_DECODE: [i16; 256] = build_decode(false);

/// Encodes one 16-bit linear sample to μ-law.
#[inline]
pub fn linear_to_ulaw(sample: i16) -> u8 {
    ULAW_ENCODE[((sample as u16) >> 2) as usize]
}

/// Encodes one 16-bit linear sample to A-law.
#[inline]
pub fn linear_to_alaw(sample: i16) -> u8 {
    ALAW_ENCODE[((sample as u16) >> 3) as usize]
}

/// Decodes one μ-law code to a 16-bit linear sample.
#[inline]
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_DECODE[code as usize]
}

/// Decodes one A-law code to a 16-bit linear sample.
#[inline]
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_DECODE[code as usize]
}

/// Encodes `pcm` to μ-law into `out`, which must be exactly as long.
///
/// # Panics
/// If the lengths differ (a programming error, never caused by input data).
pub fn encode_ulaw(pcm: &[i16], out: &mut [u8]) {
    assert_eq!(pcm.len(), out.len(), "encode_ulaw: length mismatch");
    for (o, &s) in out.iter_mut().zip(pcm) {
        *o = linear_to_ulaw(s);
    }
}

/// Encodes `pcm` to A-law into `out`, which must be exactly as long.
///
/// # Panics
/// If the lengths differ (a programming error, never caused by input data).
pub fn encode_alaw(pcm: &[i16], out: &mut [u8]) {
    assert_eq!(pcm.len(), out.len(), "encode_alaw: length mismatch");
    for (o, &s) in out.iter_mut().zip(pcm) {
        *o = linear_to_alaw(s);
    }
}

/// Decodes μ-law `codes` into `out`, which must be exactly as long.
///
/// # Panics
/// If the lengths differ (a programming error, never caused by input data).
pub fn decode_ulaw(codes: &[u8], out: &mut [i16]) {
    assert_eq!(codes.len(), out.len(), "decode_ulaw: length mismatch");
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = ulaw_to_linear(c);
    }
}

/// Decodes A-law `codes` into `out`, which must be exactly as long.
///
/// # Panics
/// If the lengths differ (a programming error, never caused by input data).
pub fn decode_alaw(codes: &[u8], out: &mut [i16]) {
    assert_eq!(codes.len(), out.len(), "decode_alaw: length mismatch");
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = alaw_to_linear(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_codes_decode_to_near_zero() {
        assert_eq!(ulaw_to_linear(ULAW_SILENCE), 0);
        assert_eq!(alaw_to_linear(ALAW_SILENCE), 8);
        assert_eq!(linear_to_ulaw(0), ULAW_SILENCE);
        assert_eq!(linear_to_alaw(0), ALAW_SILENCE);
    }

    #[test]
    fn extremes_clip() {
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
    }
}
