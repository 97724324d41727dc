//! Greetings and prompts: decoded once from WAV, MP3, FLAC or Ogg/Vorbis (symphonia), mixed
//! down to mono, resampled once to 8 kHz and once to 16 kHz (rubato; wideband calls hear the
//! 16 kHz audio), encoded once per codec and shared behind an `Arc` so every concurrent call
//! plays the same copy. Also the generated beep.
//!
//! Everything that can go wrong with a greeting goes wrong when it is loaded: a [`Prompt`]
//! that exists is valid audio, so a call never fails because of its greeting. Decoding is
//! defensive: any byte string either decodes or yields a [`GreetingError`], never a panic.
//!
//! ```
//! use std::time::Duration;
//! use voicemail_core::{CodecKind, Prompt};
//!
//! let beep = Prompt::beep(1000.0, Duration::from_millis(250))?;
//! assert_eq!(beep.samples(), 2000);
//! // One byte per sample in G.711, ready to be sliced into 20 ms packets.
//! assert_eq!(beep.encoded(CodecKind::Pcmu).len(), 2000);
//! # Ok::<(), voicemail_core::greeting::GreetingError>(())
//! ```

use std::fmt;
use std::io::Cursor;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

use crate::codec::{Codec, CodecKind};

/// Why a greeting could not be loaded. Always reported at load time, never during a call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GreetingError {
    /// The file could not be read.
    #[error("cannot read greeting {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The data is not audio in a supported format, or decoding failed.
    #[error("cannot decode greeting {name}: {reason}")]
    Decode {
        /// The greeting's name or path.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// The audio decoded to no samples.
    #[error("greeting {name} is empty")]
    Empty {
        /// The greeting's name or path.
        name: String,
    },
    /// A generated tone has invalid parameters.
    #[error("invalid tone: {0}")]
    InvalidTone(&'static str),
}

/// The sample rate of every prompt, in Hz.
const RATE_HZ: u32 = 8000;

/// The longest prompt that is decoded or generated. Longer input is refused at load time
/// rather than letting a bad file allocate without bound.
const MAX_SECONDS: u64 = 600;

/// The largest greeting file that is read into memory.
pub(crate) const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// The source sample rates accepted by the resampler.
const MIN_SOURCE_RATE_HZ: u32 = 1000;
const MAX_SOURCE_RATE_HZ: u32 = 192_000;

/// The resampler's chunk size in input frames (see DEPENDENCIES.md: exact output length).
const RESAMPLE_CHUNK: usize = 1024;

/// The beep's level: -6 dBFS, as a fraction of full scale.
const BEEP_AMPLITUDE: f64 = 0.501_187_233_627_272_2; // 10^(-6/20)

/// The beep's linear fade in and out, in samples (5 ms at 8 kHz).
const BEEP_FADE_SAMPLES: usize = 40;

/// The bundled default greeting (espeak-ng speech, 8 kHz 16-bit mono WAV; see assets/README.md).
const DEFAULT_GREETING_WAV: &[u8] = include_bytes!("../assets/default-greeting.wav");

/// The name of the bundled greeting (its file stem).
const DEFAULT_GREETING_NAME: &str = "default-greeting";

/// A prompt (greeting or beep): mono audio at 8 kHz and 16 kHz (each made once, from the
/// source where there is one), encoded once per codec and shared. Cloning is cheap (an `Arc`),
/// and the encodings are `Bytes`, so packets slice them without copying. G.711 and L16 are
/// encoded when the prompt is made; G.722 and Opus (from the 16 kHz audio) the first time a call
/// asks for them, then kept for every later call.
#[derive(Debug, Clone)]
pub struct Prompt {
    inner: Arc<Inner>,
}

/// The shared, immutable contents of a [`Prompt`].
#[derive(Debug)]
struct Inner {
    name: String,
    audio: Arc<Audio>,
}

/// The audio of a prompt, shared by its renamed copies.
struct Audio {
    /// 8 kHz samples.
    pcm: Vec<i16>,
    /// 16 kHz samples.
    pcm16: Vec<i16>,
    /// PCMU, PCMA and L16, indexed by [`slot`].
    encoded: [Bytes; 3],
    /// G.722, made on first use.
    g722: OnceLock<Bytes>,
    /// Opus packets of 10, 20, 40 and 60 ms, each made on first use.
    opus: [OnceLock<Arc<[Bytes]>>; 4],
}

impl fmt::Debug for Audio {
    // The samples and encodings are large and say nothing useful in a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Audio").field("samples", &self.pcm.len()).finish_non_exhaustive()
    }
}

/// The index of `codec`'s encoding in [`Audio::encoded`] (the codecs encoded at once).
fn slot(codec: CodecKind) -> Option<usize> {
    match codec {
        CodecKind::Pcmu => Some(0),
        CodecKind::Pcma => Some(1),
        CodecKind::L16 => Some(2),
        CodecKind::G722 | CodecKind::Opus => None,
    }
}

/// The Opus frame lengths a prompt is packetized in, in ms.
const OPUS_FRAMES_MS: [u64; 4] = [10, 20, 40, 60];

/// The Opus frame length used for a call's `ptime`: itself when Opus has such a frame (10,
/// 20, 40 or 60 ms), else 20 ms.
pub(crate) fn opus_frame_for(ptime: Duration) -> Duration {
    let ms = ptime.as_millis() as u64;
    Duration::from_millis(if OPUS_FRAMES_MS.contains(&ms) { ms } else { 20 })
}

/// A prompt ready to be sent in one codec.
#[derive(Debug, Clone)]
pub(crate) enum PromptMedia {
    /// A fixed number of bytes per RTP clock tick: slice it into packets of any length.
    Contiguous {
        /// The whole prompt.
        bytes: Bytes,
        /// Bytes per clock tick.
        bytes_per_tick: usize,
    },
    /// Ready-made packets of one frame length (Opus).
    Packets {
        /// The packets, in order.
        packets: Arc<[Bytes]>,
        /// Clock ticks per packet.
        ticks: u32,
        /// How long each packet plays.
        frame: Duration,
    },
}

impl Prompt {
    /// Decodes audio bytes of any supported format (`ext_hint` like `"mp3"` helps probing).
    ///
    /// WAV, MP3, FLAC and Ogg/Vorbis are supported, at any sample rate from 1 kHz to 192 kHz
    /// and any channel count: the channels are averaged to mono and the rate converted to
    /// 8 kHz and 16 kHz (8 kHz audio passes through sample-exact). Data over 256 MiB and audio
    /// over ten minutes are refused; errors carry `name`. (With the `mailbox` feature,
    /// `Prompt::load` reads a file.)
    pub fn from_encoded_bytes(name: &str, bytes: Vec<u8>, ext_hint: Option<&str>) -> Result<Self, GreetingError> {
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(GreetingError::Decode {
                name: name.to_owned(),
                reason: format!("the file is larger than {} MiB", MAX_FILE_BYTES >> 20),
            });
        }
        let (pcm, pcm16) = decode_to_8k_and_16k(Box::new(Cursor::new(bytes)), ext_hint, name)?;
        Ok(Self::from_parts(name.to_owned(), pcm, pcm16))
    }

    /// A prompt from 8 kHz mono samples; an empty slice is an error. The 16 kHz audio of
    /// wideband calls is resampled from them.
    pub fn from_pcm(name: &str, samples: Vec<i16>) -> Result<Self, GreetingError> {
        if samples.is_empty() {
            return Err(GreetingError::Empty { name: name.to_owned() });
        }
        let pcm16 = upsample_16k(&samples);
        Ok(Self::from_parts(name.to_owned(), samples, pcm16))
    }

    /// The greeting bundled with the crate (English speech, about 4.7 s).
    ///
    /// It is decoded on first use; every later call returns a clone sharing the same audio.
    pub fn default_greeting() -> Self {
        static DEFAULT: OnceLock<Prompt> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                match decode_to_8k_and_16k(
                    Box::new(Cursor::new(DEFAULT_GREETING_WAV)),
                    Some("wav"),
                    DEFAULT_GREETING_NAME,
                ) {
                    Ok((pcm, pcm16)) => Self::from_parts(DEFAULT_GREETING_NAME.to_owned(), pcm, pcm16),
                    Err(err) => {
                        // Unreachable in practice (the asset is tested); a second of silence
                        // keeps the call flow intact rather than panicking in a call.
                        tracing::error!(%err, "bundled greeting does not decode; using silence");
                        Self::from_parts(
                            DEFAULT_GREETING_NAME.to_owned(),
                            vec![0; RATE_HZ as usize],
                            vec![0; 2 * RATE_HZ as usize],
                        )
                    }
                }
            })
            .clone()
    }

    /// A beep: a sine tone of `frequency_hz` lasting `length`, with short fades.
    ///
    /// The tone is at -6 dBFS with a 5 ms linear fade in and out, named `"beep"`, generated
    /// at 8 kHz and at 16 kHz. The frequency must be finite and strictly between 0 and 4000 Hz
    /// (the Nyquist limit at 8 kHz); the length must be at least one 8 kHz sample and at most
    /// ten minutes. Beeps are kept: asking again for the same tone returns the same shared
    /// audio (and its encodings).
    pub fn beep(frequency_hz: f32, length: Duration) -> Result<Self, GreetingError> {
        if !frequency_hz.is_finite() || frequency_hz <= 0.0 {
            return Err(GreetingError::InvalidTone("frequency must be a positive finite number of hertz"));
        }
        if frequency_hz >= (RATE_HZ / 2) as f32 {
            return Err(GreetingError::InvalidTone("frequency must be below 4000 Hz (the 8 kHz Nyquist limit)"));
        }
        if length.is_zero() {
            return Err(GreetingError::InvalidTone("length must not be zero"));
        }
        if length > Duration::from_secs(MAX_SECONDS) {
            return Err(GreetingError::InvalidTone("length must not exceed ten minutes"));
        }
        // At most 4.8 M samples, so the conversion is exact.
        let n = (length.as_secs_f64() * f64::from(RATE_HZ)).round() as usize;
        if n == 0 {
            return Err(GreetingError::InvalidTone("length is shorter than one 8 kHz sample"));
        }
        static BEEPS: Mutex<Vec<(u32, usize, Prompt)>> = Mutex::new(Vec::new());
        let key = (frequency_hz.to_bits(), n);
        let mut cache = BEEPS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, _, p)) = cache.iter().find(|(f, len, _)| (*f, *len) == key) {
            return Ok(p.clone());
        }
        let tone = |rate: u32, n: usize| -> Vec<i16> {
            let fade = (BEEP_FADE_SAMPLES * rate as usize / RATE_HZ as usize).min(n / 2).max(1);
            let step = std::f64::consts::TAU * f64::from(frequency_hz) / f64::from(rate);
            (0..n)
                .map(|i| {
                    let from_end = n - 1 - i;
                    let gain = (i.min(from_end) as f64 / fade as f64).min(1.0);
                    to_i16(BEEP_AMPLITUDE * gain * (step * i as f64).sin())
                })
                .collect()
        };
        let prompt = Self::from_parts("beep".to_owned(), tone(RATE_HZ, n), tone(2 * RATE_HZ, 2 * n));
        // A few distinct beeps at most are configured; keep the cache small anyway.
        if cache.len() >= 8 {
            cache.remove(0);
        }
        cache.push((key.0, key.1, prompt.clone()));
        Ok(prompt)
    }

    /// The same audio under another name (the audio and its encodings are shared, not
    /// copied). The config names each greeting after its key, so messages record the
    /// calendar's choice.
    pub fn renamed(&self, name: &str) -> Prompt {
        Prompt { inner: Arc::new(Inner { name: name.to_owned(), audio: self.inner.audio.clone() }) }
    }

    /// The prompt's name (recorded in message metadata as the greeting used).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The 8 kHz mono samples.
    pub fn pcm(&self) -> &[i16] {
        &self.inner.audio.pcm
    }

    /// The mono samples at `rate_hz` (8000 or 16000), `None` at other rates.
    pub fn pcm_at(&self, rate_hz: u32) -> Option<&[i16]> {
        match rate_hz {
            8000 => Some(&self.inner.audio.pcm),
            16_000 => Some(&self.inner.audio.pcm16),
            _ => None,
        }
    }

    /// Number of 8 kHz samples.
    pub fn samples(&self) -> usize {
        self.inner.audio.pcm.len()
    }

    /// The length.
    pub fn duration(&self) -> Duration {
        // One sample at 8 kHz is exactly 125 µs.
        Duration::from_nanos((self.samples() as u64).saturating_mul(125_000))
    }

    /// The whole prompt encoded in a fixed-rate `codec` (one payload byte string; slice it
    /// into packets): G.711 and L16 from the 8 kHz audio, G.722 from the 16 kHz audio. Opus
    /// prompts are packets, not one byte string: empty here.
    pub fn encoded(&self, codec: CodecKind) -> &Bytes {
        static EMPTY: Bytes = Bytes::new();
        let audio = &self.inner.audio;
        match (codec, slot(codec)) {
            (_, Some(i)) => &audio.encoded[i],
            (CodecKind::G722, None) => audio.g722.get_or_init(|| {
                let mut out = Vec::with_capacity(audio.pcm16.len() / 2);
                CodecKind::G722.encode(&audio.pcm16, &mut out);
                Bytes::from(out)
            }),
            _ => &EMPTY,
        }
    }

    /// The prompt as Opus packets of `frame` (10, 20, 40 or 60 ms; other lengths use 20 ms),
    /// encoded once from the 16 kHz audio; the last frame is padded with silence.
    pub fn opus_packets(&self, frame: Duration) -> Arc<[Bytes]> {
        let frame = opus_frame_for(frame);
        let ms = frame.as_millis() as u64;
        let index = OPUS_FRAMES_MS.iter().position(|&f| f == ms).unwrap_or(1);
        let audio = &self.inner.audio;
        audio.opus[index]
            .get_or_init(|| {
                let per_frame = 16 * ms as usize;
                let Ok(mut encoder) = CodecKind::Opus.encoder(16_000) else {
                    return Arc::from(Vec::new());
                };
                let mut frame_pcm = vec![0i16; per_frame];
                let mut packets = Vec::with_capacity(audio.pcm16.len() / per_frame + 1);
                for chunk in audio.pcm16.chunks(per_frame) {
                    frame_pcm[..chunk.len()].copy_from_slice(chunk);
                    frame_pcm[chunk.len()..].fill(0);
                    let mut out = Vec::new();
                    encoder.encode(&frame_pcm, &mut out);
                    packets.push(Bytes::from(out));
                }
                Arc::from(packets)
            })
            .clone()
    }

    /// The prompt ready to be sent in `codec` with packets of `ptime`.
    pub(crate) fn media(&self, codec: CodecKind, ptime: Duration) -> PromptMedia {
        if codec.is_fixed_rate() {
            PromptMedia::Contiguous { bytes: self.encoded(codec).clone(), bytes_per_tick: codec.bytes_per_sample() }
        } else {
            let frame = opus_frame_for(ptime);
            let ticks = (frame.as_millis() as u32) * (codec.clock_rate_hz() / 1000);
            PromptMedia::Packets { packets: self.opus_packets(frame), ticks, frame }
        }
    }

    /// Builds a prompt from 8 kHz and 16 kHz samples, encoding G.711 and L16 at once.
    fn from_parts(name: String, pcm: Vec<i16>, pcm16: Vec<i16>) -> Self {
        let encode = |codec: CodecKind| {
            let mut out = Vec::with_capacity(pcm.len() * codec.bytes_per_sample());
            codec.encode(&pcm, &mut out);
            Bytes::from(out)
        };
        let encoded = [encode(CodecKind::Pcmu), encode(CodecKind::Pcma), encode(CodecKind::L16)];
        let audio = Audio { pcm, pcm16, encoded, g722: OnceLock::new(), opus: Default::default() };
        Self { inner: Arc::new(Inner { name, audio: Arc::new(audio) }) }
    }
}

/// Converts a sample in [-1, 1] to i16, clamping anything outside (NaN becomes 0).
fn to_i16(x: f64) -> i16 {
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Why decoding failed, before the greeting's label is attached.
enum Failure {
    Decode(String),
    Empty,
}

impl Failure {
    fn into_error(self, label: &str) -> GreetingError {
        match self {
            Failure::Decode(reason) => GreetingError::Decode { name: label.to_owned(), reason },
            Failure::Empty => GreetingError::Empty { name: label.to_owned() },
        }
    }
}

/// Decodes, downmixes and resamples `source` to 8 kHz and 16 kHz i16 samples.
///
/// Third-party decoders run on untrusted bytes here, so a panic inside them is caught and
/// reported as a decode error: a bad greeting file must never take the process down.
fn decode_to_8k_and_16k(
    source: Box<dyn MediaSource>,
    ext_hint: Option<&str>,
    label: &str,
) -> Result<(Vec<i16>, Vec<i16>), GreetingError> {
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let (mono, rate) = decode_mono(source, ext_hint)?;
        let wide = resample(&mono, rate, 2 * RATE_HZ)?;
        let resampled = resample(&mono, rate, RATE_HZ)?;
        if resampled.is_empty() {
            return Err(Failure::Empty);
        }
        let pcm = resampled.into_iter().map(|x| to_i16(f64::from(x))).collect();
        let pcm16 = wide.into_iter().map(|x| to_i16(f64::from(x))).collect();
        Ok((pcm, pcm16))
    }));
    match result {
        Ok(Ok(pcm)) => Ok(pcm),
        Ok(Err(failure)) => Err(failure.into_error(label)),
        Err(_) => Err(GreetingError::Decode {
            name: label.to_owned(),
            reason: "the decoder failed on malformed data".to_owned(),
        }),
    }
}

/// Demuxes and decodes the default audio track, averaging all channels to mono.
/// Returns the samples and their rate.
fn decode_mono(source: Box<dyn MediaSource>, ext_hint: Option<&str>) -> Result<(Vec<f32>, u32), Failure> {
    let mss = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = ext_hint {
        hint.with_extension(ext);
    }
    let mut format = symphonia::default::get_probe()
        .probe(&hint, mss, FormatOptions::default(), MetadataOptions::default())
        .map_err(|e| Failure::Decode(format!("not a supported audio format ({e})")))?;
    let track = format.default_track(TrackType::Audio).ok_or_else(|| Failure::Decode("no audio track".to_owned()))?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| Failure::Decode("the audio track has no codec parameters".to_owned()))?;
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| Failure::Decode(format!("unsupported codec ({e})")))?;

    let mut mono: Vec<f32> = Vec::new();
    let mut rate: Option<u32> = None;
    let mut planes: Vec<Vec<f32>> = Vec::new();
    let mut decoded_packets = 0usize;
    let mut bad_packets = 0usize;
    let mut last_error: Option<SymphoniaError> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A chained Ogg stream starts a new track list: the greeting is the first one.
            Err(SymphoniaError::ResetRequired) => break,
            // A truncated file: keep what was decoded so far.
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break;
            }
            Err(e) => return Err(Failure::Decode(format!("demuxing failed ({e})"))),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(buf) => buf,
            // A corrupt packet: skip it, as symphonia recommends, but remember it.
            Err(e @ (SymphoniaError::DecodeError(_) | SymphoniaError::IoError(_))) => {
                bad_packets += 1;
                last_error = Some(e);
                continue;
            }
            Err(e) => return Err(Failure::Decode(format!("decoding failed ({e})"))),
        };
        decoded_packets += 1;
        let spec = buf.spec();
        let buf_rate = spec.rate();
        if buf.frames() == 0 || spec.channels().count() == 0 {
            continue;
        }
        match rate {
            None => {
                if !(MIN_SOURCE_RATE_HZ..=MAX_SOURCE_RATE_HZ).contains(&buf_rate) {
                    return Err(Failure::Decode(format!("unsupported sample rate {buf_rate} Hz")));
                }
                rate = Some(buf_rate);
            }
            Some(r) if r != buf_rate => {
                return Err(Failure::Decode(format!("the sample rate changes from {r} to {buf_rate} Hz")));
            }
            Some(_) => {}
        }
        buf.copy_to_vecs_planar::<f32>(&mut planes);
        let frames = planes.iter().map(Vec::len).min().unwrap_or(0);
        let scale = 1.0 / planes.len().max(1) as f32;
        mono.extend((0..frames).map(|i| planes.iter().map(|p| p[i]).sum::<f32>() * scale));
        if mono.len() as u64 > MAX_SECONDS * u64::from(buf_rate) {
            return Err(Failure::Decode(format!("longer than the {} minute limit", MAX_SECONDS / 60)));
        }
    }
    // Garbage that happens to look like a stream decodes to mostly bad packets.
    if bad_packets > decoded_packets {
        let reason = last_error.map_or_else(|| "no packet decoded".to_owned(), |e| e.to_string());
        return Err(Failure::Decode(format!(
            "{bad_packets} of {} packets are corrupt ({reason})",
            bad_packets + decoded_packets
        )));
    }
    match rate {
        Some(rate) if !mono.is_empty() => Ok((mono, rate)),
        _ => Err(Failure::Empty),
    }
}

/// 16 kHz samples resampled from 8 kHz ones (exactly twice as many).
fn upsample_16k(pcm: &[i16]) -> Vec<i16> {
    let mono: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32768.0).collect();
    match resample(&mono, RATE_HZ, 2 * RATE_HZ) {
        Ok(wide) => wide.into_iter().map(|x| to_i16(f64::from(x))).collect(),
        // Unreachable for these fixed rates; repeating each sample keeps the audio usable.
        Err(_) => pcm.iter().flat_map(|&s| [s, s]).collect(),
    }
}

/// Resamples mono audio at `rate` Hz to `to` Hz; audio already at `to` passes through
/// untouched. The output has `round(n * to / rate)` samples.
fn resample(mono: &[f32], rate: u32, to: u32) -> Result<Vec<f32>, Failure> {
    if rate == to {
        return Ok(mono.to_vec());
    }
    let n = mono.len();
    let target = ((n as u128 * u128::from(to) + u128::from(rate) / 2) / u128::from(rate)) as usize;
    let mut resampler = Fft::<f32>::new(rate as usize, to as usize, RESAMPLE_CHUNK, 1, FixedSync::Input)
        .map_err(|e| Failure::Decode(format!("cannot resample from {rate} Hz ({e})")))?;
    let input = InterleavedSlice::new(mono, 1, n)
        .map_err(|e| Failure::Decode(format!("cannot resample from {rate} Hz ({e})")))?;
    let output = resampler
        .process_all(&input, n, None)
        .map_err(|e| Failure::Decode(format!("cannot resample from {rate} Hz ({e})")))?;
    let mut out = output.take_data();
    // process_all yields ceil(n * ratio) frames; a prompt has round(n * ratio).
    out.resize(target, 0.0);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).
mod tests {
    use super::*;

    /// A sine of `freq` Hz at `rate` Hz, amplitude 0.5, as 16-bit WAV bytes.
    fn sine_wav(freq: f64, rate: u32, channels: u16, frames: usize) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut cursor = Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for i in 0..frames {
            let x = 0.5 * (std::f64::consts::TAU * freq * i as f64 / f64::from(rate)).sin();
            for _ in 0..channels {
                writer.write_sample(to_i16(x)).unwrap();
            }
        }
        writer.finalize().unwrap();
        cursor.into_inner()
    }

    /// The frequency estimated from rising zero crossings.
    fn frequency(pcm: &[i16]) -> f64 {
        let rising = pcm.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
        rising as f64 * f64::from(RATE_HZ) / pcm.len() as f64
    }

    #[test]
    fn resampled_length_is_rounded_ratio() {
        for rate in [11_025u32, 16_000, 22_050, 32_000, 44_100, 48_000, 96_000] {
            for frames in [1usize, 7, 1000, 12_345] {
                let result = Prompt::from_encoded_bytes("t", sine_wav(440.0, rate, 1, frames), Some("wav"));
                let expected = (frames as f64 * 8000.0 / f64::from(rate)).round() as usize;
                if expected == 0 {
                    // Less than half an 8 kHz sample of audio.
                    assert!(matches!(result, Err(GreetingError::Empty { .. })), "rate {rate}, frames {frames}");
                } else {
                    assert_eq!(result.unwrap().samples(), expected, "rate {rate}, frames {frames}");
                }
            }
        }
    }

    #[test]
    fn resampling_keeps_pitch() {
        for rate in [16_000u32, 22_050, 44_100, 48_000] {
            let frames = rate as usize / 2;
            let prompt = Prompt::from_encoded_bytes("t", sine_wav(440.0, rate, 2, frames), None).unwrap();
            let f = frequency(prompt.pcm());
            assert!((f - 440.0).abs() < 5.0, "rate {rate}: {f} Hz");
        }
    }

    #[test]
    fn eight_khz_wav_passes_through_exactly() {
        let wav = sine_wav(440.0, 8000, 1, 800);
        let expected: Vec<i16> =
            hound::WavReader::new(Cursor::new(wav.clone())).unwrap().samples::<i16>().map(Result::unwrap).collect();
        let prompt = Prompt::from_encoded_bytes("t", wav, Some("wav")).unwrap();
        assert_eq!(prompt.pcm(), &expected[..]);
    }

    #[test]
    fn channels_are_averaged() {
        // Left full-scale-ish constant, right silent: the mono mix is half.
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut cursor = Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for _ in 0..100 {
            writer.write_sample(20_000i16).unwrap();
            writer.write_sample(0i16).unwrap();
        }
        writer.finalize().unwrap();
        let prompt = Prompt::from_encoded_bytes("t", cursor.into_inner(), Some("wav")).unwrap();
        assert!(prompt.pcm().iter().all(|&s| s == 10_000));
    }

    #[test]
    fn from_pcm_keeps_samples_and_rejects_empty() {
        let prompt = Prompt::from_pcm("p", vec![1, -2, 3]).unwrap();
        assert_eq!(prompt.pcm(), [1, -2, 3]);
        assert_eq!(prompt.name(), "p");
        assert_eq!(prompt.encoded(CodecKind::L16).as_ref(), [0, 1, 0xff, 0xfe, 0, 3]);
        assert!(matches!(Prompt::from_pcm("e", Vec::new()), Err(GreetingError::Empty { name }) if name == "e"));
    }

    #[test]
    fn duration_counts_samples() {
        let prompt = Prompt::from_pcm("p", vec![0; 12_000]).unwrap();
        assert_eq!(prompt.duration(), Duration::from_millis(1500));
        assert_eq!(Prompt::from_pcm("p", vec![0]).unwrap().duration(), Duration::from_micros(125));
    }

    #[test]
    fn encodings_match_each_codec() {
        let prompt = Prompt::beep(440.0, Duration::from_millis(100)).unwrap();
        for codec in CodecKind::ALL.into_iter().filter(|c| c.is_fixed_rate()) {
            let pcm = prompt.pcm_at(codec.sample_rate_hz()).unwrap();
            let mut expected = Vec::new();
            codec.encode(pcm, &mut expected);
            assert_eq!(prompt.encoded(codec).as_ref(), &expected[..], "{codec}");
            assert_eq!(prompt.encoded(codec).len(), prompt.samples() * codec.bytes_per_sample(), "{codec}");
        }
        assert!(prompt.encoded(CodecKind::Opus).is_empty());
        // Opus: whole frames of the 16 kHz audio, made once and shared.
        let packets = prompt.opus_packets(Duration::from_millis(20));
        assert_eq!(packets.len(), 5);
        assert!(Arc::ptr_eq(&packets, &prompt.renamed("x").opus_packets(Duration::from_millis(20))));
        assert_eq!(prompt.opus_packets(Duration::from_millis(30)).len(), 5, "30 ms is sent as 20 ms frames");
        assert_eq!(prompt.opus_packets(Duration::from_millis(60)).len(), 2);
        for p in packets.iter() {
            assert_eq!(CodecKind::Opus.samples_in(p), 960);
        }
        assert_eq!(prompt.pcm_at(16_000).unwrap().len(), 2 * prompt.samples());
        assert!(prompt.pcm_at(48_000).is_none());
        // The same beep is the same audio.
        let again = Prompt::beep(440.0, Duration::from_millis(100)).unwrap();
        assert!(Arc::ptr_eq(&prompt.inner, &again.inner));
    }

    #[test]
    fn beep_shape() {
        let beep = Prompt::beep(1000.0, Duration::from_millis(500)).unwrap();
        assert_eq!(beep.name(), "beep");
        assert_eq!(beep.samples(), 4000);
        let peak = beep.pcm().iter().map(|s| s.unsigned_abs()).max().unwrap();
        // -6 dBFS = 16422; 1 kHz at 8 kHz hits the peak exactly every 8 samples.
        assert!((16_400..=16_423).contains(&peak), "peak {peak}");
        assert_eq!(beep.pcm()[0], 0);
        // The fade: the first 5 ms stay below the steady-state peak.
        assert!(beep.pcm()[..20].iter().all(|s| s.unsigned_abs() < 16_422 / 2 + 1));
        assert!((frequency(beep.pcm()) - 1000.0).abs() < 5.0);
    }

    #[test]
    fn tiny_beep_is_valid() {
        let beep = Prompt::beep(440.0, Duration::from_micros(125)).unwrap();
        assert_eq!(beep.samples(), 1);
    }

    #[test]
    fn invalid_tones() {
        let ok = Duration::from_millis(100);
        for f in [0.0, -1.0, 4000.0, 5000.0, f32::NAN, f32::INFINITY] {
            assert!(matches!(Prompt::beep(f, ok), Err(GreetingError::InvalidTone(_))), "{f}");
        }
        for d in [Duration::ZERO, Duration::from_micros(10), Duration::from_secs(601), Duration::MAX] {
            assert!(matches!(Prompt::beep(440.0, d), Err(GreetingError::InvalidTone(_))), "{d:?}");
        }
    }

    #[test]
    fn to_i16_clamps() {
        assert_eq!(to_i16(2.0), i16::MAX);
        assert_eq!(to_i16(-2.0), i16::MIN);
        assert_eq!(to_i16(f64::NAN), 0);
        assert_eq!(to_i16(0.5), 16384);
    }

    #[test]
    fn prompt_is_send_sync_and_debug_is_short() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Prompt>();
        let text = format!("{:?}", Prompt::from_pcm("p", vec![0; 10_000]).unwrap());
        assert!(text.len() < 100, "{text}");
    }

    #[test]
    fn garbage_is_a_decode_error() {
        for bytes in [Vec::new(), b"RIFF".to_vec(), vec![0u8; 4096], vec![0xff; 4096]] {
            match Prompt::from_encoded_bytes("g", bytes, None) {
                Err(GreetingError::Decode { name, .. }) => assert_eq!(name, "g"),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn default_greeting_is_shared() {
        let a = Prompt::default_greeting();
        let b = Prompt::default_greeting();
        assert!(Arc::ptr_eq(&a.inner, &b.inner));
        assert_eq!(a.name(), "default-greeting");
    }
}
