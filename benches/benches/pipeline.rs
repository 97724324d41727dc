//! The whole offline pipeline on one core: a call with the bundled greeting (4.7 s) and beep
//! sent as RTP, then 10 s of caller audio through parse, jitter buffer, G.711 decode and WAV
//! recording (in memory), then hang-up. "× real time" = the call's simulated length divided by
//! the time one call takes here; it is printed before criterion's own report.
use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use voicemail_benches::{caller_packets, offline_call};
use voicemail_core::Prompt;

fn bench(c: &mut Criterion) {
    let greeting = Prompt::default_greeting();
    let packets = caller_packets(10);
    let (meta, length) = offline_call(&greeting, &packets);
    assert_eq!(meta.duration_ms, 10_000);
    // A quick ratio for the README, from a fixed number of calls.
    let calls = 200;
    let t = Instant::now();
    for _ in 0..calls {
        black_box(offline_call(&greeting, &packets));
    }
    let per_call = t.elapsed() / calls;
    eprintln!(
        "pipeline: {:.1} s call ({} ms recorded) in {:?} per call = {:.0}x faster than real time on one core",
        length.as_secs_f64(),
        meta.duration_ms,
        per_call,
        length.as_secs_f64() / per_call.as_secs_f64()
    );
    c.bench_function("offline_call_15s", |b| b.iter(|| black_box(offline_call(&greeting, &packets))));
}

criterion_group!(benches, bench);
criterion_main!(benches);
