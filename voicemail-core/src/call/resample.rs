//! A small deterministic resampler, for a call whose codec changed to one at another audio
//! rate than the recording's (a re-INVITE from PCMU to G.722 in an 8 kHz recording, from
//! G.722 to PCMU in a 16 kHz one, G.711 into a 48 kHz Opus recording).
//!
//! The rates a call meets are 8, 16 and 48 kHz, so every conversion is a small rational
//! factor `up / down` (2, 6, 3, 1/2, 1/3, 1/6). [`Resampler`] is a polyphase FIR: the input is
//! (conceptually) stuffed with `up - 1` zeros per sample, low-pass filtered below the lower
//! of the two Nyquist frequencies by a Blackman-windowed sinc, and every `down`-th sample is
//! kept. The filter is causal (a delay of about 1 ms) and its state carries over from one
//! buffer to the next, so a stream cut into packets resamples exactly like the whole stream:
//! after `n` input samples `ceil(n * up / down)` samples have come out.
//!
//! [`Resampled`] wraps a codec's [`Decoder`] so that it yields audio at the recording's rate.
//! Opus never needs it (libopus decodes at any of these rates).
//!
//! [`Resampler`] is public for front-ends that exchange PCM with a call at another rate than
//! its codec's (the Python bindings' `Call.feed_pcm` and `Call.drain_pcm`).

use crate::codec::Decoder;

/// Input samples each output sample is computed from (per polyphase branch).
const TAPS_PER_PHASE: usize = 16;

/// A streaming sample-rate converter by the rational factor `up / down`.
#[derive(Debug, Clone)]
pub struct Resampler {
    up: u64,
    down: u64,
    /// `phases[p][j]`: the filter tap `p + j * up`, scaled by `up`.
    phases: Vec<[f32; TAPS_PER_PHASE]>,
    /// The last [`TAPS_PER_PHASE`] input samples, newest at `newest`.
    history: [f32; TAPS_PER_PHASE],
    newest: usize,
    /// Input samples taken so far.
    taken: u64,
    /// The position of the next output sample, in samples of the up-sampled stream.
    next: u64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Resampler {
    /// A converter from `from_hz` to `to_hz` (both positive).
    pub fn new(from_hz: u32, to_hz: u32) -> Self {
        let (from, to) = (u64::from(from_hz.max(1)), u64::from(to_hz.max(1)));
        let g = gcd(from, to);
        let (up, down) = (to / g, from / g);
        let len = TAPS_PER_PHASE * up as usize;
        // Cut-off in cycles per up-sampled sample: below both Nyquist frequencies, with room
        // for the transition band.
        let cutoff = 0.5 / (up.max(down) as f64) * 0.9;
        let centre = (len - 1) as f64 / 2.0;
        let mut taps: Vec<f64> = (0..len)
            .map(|k| {
                let x = k as f64 - centre;
                let sinc = if x == 0.0 {
                    2.0 * cutoff
                } else {
                    (2.0 * std::f64::consts::PI * cutoff * x).sin() / (std::f64::consts::PI * x)
                };
                let w = 2.0 * std::f64::consts::PI * k as f64 / (len - 1) as f64;
                let window = 0.42 - 0.5 * w.cos() + 0.08 * (2.0 * w).cos();
                sinc * window
            })
            .collect();
        // Unity gain at DC for the up-sampled stream, times `up` for the stuffed zeros.
        let sum: f64 = taps.iter().sum();
        for t in &mut taps {
            *t *= up as f64 / sum;
        }
        let phases = (0..up as usize)
            .map(|p| {
                let mut phase = [0f32; TAPS_PER_PHASE];
                for (j, tap) in phase.iter_mut().enumerate() {
                    *tap = taps[p + j * up as usize] as f32;
                }
                phase
            })
            .collect();
        Self { up, down, phases, history: [0.0; TAPS_PER_PHASE], newest: 0, taken: 0, next: 0 }
    }

    /// Appends the resampled `input` to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        out.reserve((input.len() as u64 * self.up / self.down) as usize + 1);
        for &sample in input {
            self.newest = (self.newest + 1) % TAPS_PER_PHASE;
            self.history[self.newest] = f32::from(sample);
            self.taken += 1;
            // Every output whose newest contributing input is this sample.
            while self.next < self.taken * self.up {
                let phase = &self.phases[(self.next % self.up) as usize];
                let mut acc = 0f32;
                for (j, tap) in phase.iter().enumerate() {
                    let at = (self.newest + TAPS_PER_PHASE - j) % TAPS_PER_PHASE;
                    acc += tap * self.history[at];
                }
                out.push(acc.round().clamp(-32768.0, 32767.0) as i16);
                self.next += self.down;
            }
        }
    }

    /// Input samples needed for about `output` output samples.
    pub(crate) fn input_for(&self, output: usize) -> usize {
        (output as u64 * self.down).div_ceil(self.up) as usize
    }
}

/// A [`Decoder`] whose audio is converted to another rate.
#[derive(Debug)]
pub(crate) struct Resampled {
    inner: Box<dyn Decoder>,
    resampler: Resampler,
    rate: u32,
    scratch: Vec<i16>,
}

impl Resampled {
    /// `inner`'s audio at `rate` Hz.
    pub(crate) fn new(inner: Box<dyn Decoder>, rate: u32) -> Self {
        let resampler = Resampler::new(inner.sample_rate_hz(), rate);
        Self { inner, resampler, rate, scratch: Vec::new() }
    }

    /// Resamples what `fill` appends to the scratch buffer into `out`, exactly `exact` samples
    /// when given.
    fn convert(
        &mut self,
        out: &mut Vec<i16>,
        exact: Option<usize>,
        fill: impl FnOnce(&mut dyn Decoder, &mut Vec<i16>),
    ) {
        self.scratch.clear();
        fill(self.inner.as_mut(), &mut self.scratch);
        let start = out.len();
        self.resampler.process(&self.scratch, out);
        if let Some(n) = exact {
            out.resize(start + n, 0);
        }
    }
}

impl Decoder for Resampled {
    fn sample_rate_hz(&self) -> u32 {
        self.rate
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        self.convert(out, None, |d, buf| d.decode(payload, buf));
    }

    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        let input = self.resampler.input_for(samples);
        self.convert(out, Some(samples), |d, buf| d.conceal(input, buf));
    }

    fn recover(&mut self, next: &[u8], samples: usize, out: &mut Vec<i16>) -> bool {
        let input = self.resampler.input_for(samples);
        self.scratch.clear();
        if !self.inner.recover(next, input, &mut self.scratch) {
            return false;
        }
        let start = out.len();
        self.resampler.process(&self.scratch, out);
        out.resize(start + samples, 0);
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, n: usize) -> Vec<i16> {
        (0..n).map(|i| ((i as f64 * freq * std::f64::consts::TAU / f64::from(rate)).sin() * 10_000.0) as i16).collect()
    }

    /// Power of `freq` (Goertzel), normalised by the length.
    fn power(samples: &[i16], freq: f64, rate: u32) -> f64 {
        let w = std::f64::consts::TAU * freq / f64::from(rate);
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &x in samples {
            let s = f64::from(x) + coeff * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (samples.len() as f64).powi(2)
    }

    fn rms(samples: &[i16]) -> f64 {
        (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len().max(1) as f64).sqrt()
    }

    #[test]
    fn lengths_follow_the_ratio_whatever_the_buffers() {
        for (from, to) in [(8000, 16_000), (8000, 48_000), (16_000, 8000), (16_000, 48_000), (48_000, 8000)] {
            let input = sine(440.0, from, 4000);
            let mut whole = Vec::new();
            Resampler::new(from, to).process(&input, &mut whole);
            let mut pieces = Vec::new();
            let mut r = Resampler::new(from, to);
            for chunk in input.chunks(7) {
                r.process(chunk, &mut pieces);
            }
            assert_eq!(whole, pieces, "{from} -> {to}");
            assert_eq!(whole.len() as u64, (4000 * u64::from(to)).div_ceil(u64::from(from)), "{from} -> {to}");
        }
    }

    #[test]
    fn a_tone_keeps_its_pitch_and_level() {
        for (from, to) in [(8000, 16_000), (8000, 48_000), (16_000, 8000), (16_000, 48_000)] {
            let input = sine(440.0, from, from as usize);
            let mut out = Vec::new();
            Resampler::new(from, to).process(&input, &mut out);
            let steady = &out[out.len() / 4..];
            assert!((rms(steady) - rms(&input)).abs() < rms(&input) * 0.02, "{from} -> {to}: level");
            assert!(power(steady, 440.0, to) > 100.0 * power(steady, 1000.0, to), "{from} -> {to}: pitch");
        }
    }

    #[test]
    fn down_sampling_removes_what_the_lower_rate_cannot_carry() {
        // 6 kHz in 16 kHz audio would alias to 2 kHz at 8 kHz.
        let input = sine(6000.0, 16_000, 16_000);
        let mut out = Vec::new();
        Resampler::new(16_000, 8000).process(&input, &mut out);
        assert!(rms(&out[1000..]) < rms(&input) * 0.01, "alias rms {}", rms(&out[1000..]));
    }

    #[test]
    fn extremes_do_not_overflow() {
        let input: Vec<i16> = (0..2000).map(|i| if i % 2 == 0 { i16::MAX } else { i16::MIN }).collect();
        let mut out = Vec::new();
        Resampler::new(8000, 48_000).process(&input, &mut out);
        assert_eq!(out.len(), 12_000);
    }
}
