//! G.711 throughput: encode and decode in MB/s of 8-bit codes (the payload side), table-driven
//! (ours) against the arithmetic reference algorithm (`g711.c` computed per sample), measured in
//! the same run.
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use voicemail_core::codec::g711;

/// Sun g711.c's linear2ulaw, computed per sample (the peer).
fn ulaw_reference(sample: i16) -> u8 {
    const SEG_UEND: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
    let mut v = i32::from(sample) >> 2;
    let mask = if v < 0 {
        v = -v;
        0x7F
    } else {
        0xFF
    };
    v = v.min(8159) + (0x84 >> 2);
    let seg = SEG_UEND.iter().position(|&e| v <= e).unwrap_or(8) as i32;
    if seg >= 8 { (0x7F ^ mask) as u8 } else { (((seg << 4) | ((v >> (seg + 1)) & 0xF)) ^ mask) as u8 }
}

fn bench(c: &mut Criterion) {
    let n = 1 << 20;
    let pcm: Vec<i16> = (0..n).map(|i| ((i as f32 * 0.013).sin() * 20000.0) as i16).collect();
    let mut codes = vec![0u8; n];
    let mut back = vec![0i16; n];
    g711::encode_ulaw(&pcm, &mut codes);

    let mut g = c.benchmark_group("g711");
    g.throughput(Throughput::Bytes(n as u64));
    g.bench_function("ulaw_encode_table", |b| b.iter(|| g711::encode_ulaw(black_box(&pcm), &mut codes)));
    g.bench_function("ulaw_encode_reference_g711c", |b| {
        b.iter(|| {
            for (o, &s) in codes.iter_mut().zip(black_box(&pcm)) {
                *o = ulaw_reference(s);
            }
        })
    });
    g.bench_function("alaw_encode_table", |b| b.iter(|| g711::encode_alaw(black_box(&pcm), &mut codes)));
    g.bench_function("ulaw_decode_table", |b| b.iter(|| g711::decode_ulaw(black_box(&codes), &mut back)));
    g.bench_function("alaw_decode_table", |b| b.iter(|| g711::decode_alaw(black_box(&codes), &mut back)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
