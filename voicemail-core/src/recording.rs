//! Streaming, crash-safe recording into a sink the engine is given, in one of three formats
//! ([`RecordingFormat`]): 16-bit PCM WAV (hound), G.711 WAV (A-law or μ-law, half the size) or
//! Ogg/Opus (RFC 7845, about a tenth of the size), at the call's audio rate (8 kHz for G.711
//! and L16, 16 kHz for G.722, 8, 16 or 48 kHz for Opus).
//!
//! The engine owns no file: a [`Recording`] writes into any `Write + Seek` sink. The mailbox
//! gives it a file in its spool (and fsyncs that file itself when the message is stored);
//! tests give it an `io::Cursor`.
//!
//! # Crash-safety guarantee
//!
//! Every second of audio (a checkpoint) the writer flushes everything to the sink and makes
//! the file complete up to there: the WAV formats rewrite their RIFF, `fact` and data sizes;
//! Ogg/Opus ends the current page (each page carries its own length, granule position and
//! CRC, and nothing before it is ever rewritten). If the *process* dies at any moment after
//! [`Recording::new`] returned, a file sink holds a valid file (hound, sox, opusdec read it)
//! holding at least every sample up to the last checkpoint: at most the last second is missing
//! from what the headers declare. Bytes written after the checkpoint are on disk past it; the
//! mailbox's repair at recovery adds them back (WAV) or cuts a torn last page (Ogg).
//!
//! Durability against power loss is the sink owner's business: [`Recording::finalize`] writes
//! the final header or page and flushes, and never syncs.

use std::io::{Seek, SeekFrom, Write};

use crate::codec::{CodecKind, Encoder as _, OpusEncoder, g711};

/// A failure to write a recording.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordingError {
    /// The sink refused (full disk, permissions, ...).
    #[error("recording I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The WAV encoder failed.
    #[error("WAV error: {0}")]
    Wav(String),
    /// The format cannot record at this rate, or its encoder failed.
    #[error("recording format error: {0}")]
    Format(String),
}

/// Anything a recording can be written to.
pub trait Sink: Write + Seek + Send {}
impl<T: Write + Seek + Send> Sink for T {}

/// The file format of recordings (`[recording] format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordingFormat {
    /// 16-bit linear PCM WAV (`"wav"`, the default): about 1 MB per minute at 8 kHz, 2 MB at
    /// 16 kHz.
    #[default]
    Wav,
    /// 8-bit G.711 WAV (`"wav-g711"`), half the size of `wav`: μ-law when the caller spoke
    /// PCMU (the recording then holds exactly the caller's bytes), A-law otherwise (PCMA
    /// calls likewise byte-exact; wideband calls are companded at their 16 kHz rate).
    WavG711,
    /// Ogg/Opus (`"opus"`, RFC 7845, `.opus`): mono voice at 12 to 24 kbit/s, about a tenth of
    /// the size of `wav`.
    Opus,
}

impl RecordingFormat {
    /// The configuration name (`wav`, `wav-g711`, `opus`).
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingFormat::Wav => "wav",
            RecordingFormat::WavG711 => "wav-g711",
            RecordingFormat::Opus => "opus",
        }
    }

    /// The file extension (`wav` or `opus`).
    pub fn extension(self) -> &'static str {
        match self {
            RecordingFormat::Wav | RecordingFormat::WavG711 => "wav",
            RecordingFormat::Opus => "opus",
        }
    }

    /// The MIME type of a file in this format (`audio/wav`, `audio/ogg`).
    pub fn mime_type(self) -> &'static str {
        match self {
            RecordingFormat::Wav | RecordingFormat::WavG711 => "audio/wav",
            RecordingFormat::Opus => "audio/ogg",
        }
    }
}

impl std::str::FromStr for RecordingFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "wav" => Ok(RecordingFormat::Wav),
            "wav-g711" => Ok(RecordingFormat::WavG711),
            "opus" => Ok(RecordingFormat::Opus),
            other => Err(format!("expected \"wav\", \"wav-g711\" or \"opus\", found {other:?}")),
        }
    }
}

/// Which G.711 law a `wav-g711` recording uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711Law {
    /// A-law (WAV format tag 6).
    ALaw,
    /// μ-law (WAV format tag 7).
    MuLaw,
}

/// What a recording is: its format, audio rate and (for `wav-g711`) law.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordingSpec {
    /// The file format.
    pub format: RecordingFormat,
    /// The audio rate in Hz (8000 to 48000).
    pub sample_rate_hz: u32,
    /// The law of a `wav-g711` recording.
    pub law: G711Law,
}

impl RecordingSpec {
    /// The spec of a call in `codec` at `sample_rate_hz`: μ-law for PCMU calls, A-law for the
    /// others.
    pub fn for_call(format: RecordingFormat, codec: CodecKind, sample_rate_hz: u32) -> Self {
        let law = if codec == CodecKind::Pcmu { G711Law::MuLaw } else { G711Law::ALaw };
        Self { format, sample_rate_hz, law }
    }
}

impl Default for RecordingSpec {
    /// 8 kHz 16-bit PCM WAV.
    fn default() -> Self {
        Self { format: RecordingFormat::Wav, sample_rate_hz: 8000, law: G711Law::ALaw }
    }
}

/// Samples handed to hound at once (20 ms at 48 kHz, 60 ms at 16 kHz); its sample buffer is
/// this size (1,920 bytes per recording), allocated once.
const CHUNK_SAMPLES: usize = 960;

/// Length of the header hound writes for 16-bit mono PCM: RIFF, fmt (16 bytes), data.
pub(crate) const HEADER_LEN: u64 = 44;

/// Length of the header of a G.711 WAV: RIFF, fmt (18 bytes), fact, data.
pub(crate) const G711_HEADER_LEN: u64 = 58;

/// The largest data chunk whose RIFF size (`data + 36`) still fits in 32 bits, rounded down
/// to whole samples.
pub(crate) const MAX_DATA_BYTES: u64 = (u32::MAX as u64 - (HEADER_LEN - 8)) & !1;

/// The most samples a recording can hold (about 74.5 hours at 8 kHz, 37 at 16 kHz): the
/// 16-bit WAV limit, for every format.
const MAX_SAMPLES: u64 = MAX_DATA_BYTES / 2;

/// The lowest and highest audio rates a recording takes.
const MIN_RATE_HZ: u32 = 8000;
const MAX_RATE_HZ: u32 = 48_000;

/// Digital silence for [`Recording::write_silence`].
static SILENCE: [i16; CHUNK_SAMPLES] = [0; CHUNK_SAMPLES];

/// The writer of one format.
enum Writer {
    Pcm(hound::WavWriter<Box<dyn Sink>>),
    G711(G711Wav),
    Opus(Box<OggOpus>),
}

/// A recording in progress. See the [module docs](self).
///
/// Memory per recording is fixed after creation: hound's sample buffer (1,920 bytes), or one frame and
/// one page of Opus (wrap a file sink in a `BufWriter`). After an error the recording should be
/// abandoned; dropping it without [`Recording::finalize`] still completes the file, best effort.
pub struct Recording {
    writer: Writer,
    spec: RecordingSpec,
    samples: u64,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording").field("spec", &self.spec).field("samples", &self.samples).finish_non_exhaustive()
    }
}

impl Recording {
    /// Starts an 8 kHz 16-bit PCM WAV recording in `sink` (positioned at offset 0) and writes a
    /// valid zero-length WAV header at once. The sink is used as is: wrap it in a `BufWriter`
    /// if writes are expensive.
    pub fn new<W: Sink + 'static>(sink: W) -> Result<Self, RecordingError> {
        Self::with_spec(sink, RecordingSpec::default())
    }

    /// Starts a recording of `spec` in `sink` (positioned at offset 0) and writes a valid empty
    /// file at once (the WAV header, or Ogg/Opus's two header pages).
    pub fn with_spec<W: Sink + 'static>(sink: W, spec: RecordingSpec) -> Result<Self, RecordingError> {
        if !(MIN_RATE_HZ..=MAX_RATE_HZ).contains(&spec.sample_rate_hz) {
            return Err(RecordingError::Format(format!("unsupported sample rate {} Hz", spec.sample_rate_hz)));
        }
        let sink = Box::new(sink) as Box<dyn Sink>;
        let writer = match spec.format {
            RecordingFormat::Wav => {
                let wav_spec = hound::WavSpec {
                    channels: 1,
                    sample_rate: spec.sample_rate_hz,
                    bits_per_sample: 16,
                    sample_format: hound::SampleFormat::Int,
                };
                let mut wav = hound::WavWriter::new(sink, wav_spec).map_err(wav_error)?;
                // Allocate hound's sample buffer now, at its final size, so `write` never
                // allocates. The unflushed `SampleWriter16` is discarded without writing.
                let _ = wav.get_i16_writer(chunk_u32(CHUNK_SAMPLES));
                Writer::Pcm(wav)
            }
            RecordingFormat::WavG711 => Writer::G711(G711Wav::new(sink, spec.sample_rate_hz, spec.law)?),
            RecordingFormat::Opus => Writer::Opus(Box::new(OggOpus::new(sink, spec.sample_rate_hz)?)),
        };
        let mut rec = Self { writer, spec, samples: 0 };
        // hound's first header has zero RIFF and data sizes; flushing sets them, so the sink
        // holds a valid empty file from now on.
        rec.checkpoint()?;
        Ok(rec)
    }

    /// What is being recorded.
    pub fn spec(&self) -> RecordingSpec {
        self.spec
    }

    /// The audio rate, in Hz.
    pub fn sample_rate_hz(&self) -> u32 {
        self.spec.sample_rate_hz
    }

    /// Appends samples. No allocation; the file is checkpointed every second of audio.
    ///
    /// Fails without writing anything when the recording would outgrow the 4 GiB WAV limit
    /// (about 74 hours at 8 kHz).
    pub fn write(&mut self, pcm: &[i16]) -> Result<(), RecordingError> {
        self.check_room(pcm.len() as u64)?;
        let mut rest = pcm;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(self.next_chunk_len(rest.len()));
            self.write_chunk(now)?;
            rest = later;
        }
        Ok(())
    }

    /// Appends `n` samples of digital silence.
    ///
    /// Written in fixed-size chunks from a static buffer: no allocation, whatever `n`.
    pub fn write_silence(&mut self, n: u64) -> Result<(), RecordingError> {
        self.check_room(n)?;
        let mut left = n;
        while left > 0 {
            let len = self.next_chunk_len(usize::try_from(left).unwrap_or(usize::MAX));
            self.write_chunk(&SILENCE[..len])?;
            left -= len as u64;
        }
        Ok(())
    }

    /// Samples written so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Completes the file (final header, or the last Opus page marked end of stream) and
    /// flushes the sink; returns the number of samples. Syncing the sink to stable storage is
    /// its owner's business.
    pub fn finalize(self) -> Result<u64, RecordingError> {
        let Self { writer, samples, .. } = self;
        match writer {
            Writer::Pcm(wav) => wav.finalize().map_err(wav_error)?,
            Writer::G711(mut w) => w.finish()?,
            Writer::Opus(mut w) => w.finish()?,
        }
        Ok(samples)
    }

    fn check_room(&self, more: u64) -> Result<(), RecordingError> {
        match self.samples.checked_add(more) {
            Some(total) if total <= MAX_SAMPLES => Ok(()),
            _ => {
                Err(RecordingError::Wav(format!("recording would exceed the WAV size limit of {MAX_SAMPLES} samples")))
            }
        }
    }

    /// Samples between two checkpoints: one second.
    fn checkpoint_samples(&self) -> u64 {
        u64::from(self.spec.sample_rate_hz)
    }

    /// How many of `want` samples to write next: at most a chunk, and never across a
    /// checkpoint, so checkpoints fall exactly on whole seconds.
    fn next_chunk_len(&self, want: usize) -> usize {
        let every = self.checkpoint_samples();
        let to_checkpoint = every - self.samples % every;
        let to_checkpoint = usize::try_from(to_checkpoint).unwrap_or(CHUNK_SAMPLES);
        want.min(CHUNK_SAMPLES).min(to_checkpoint)
    }

    /// Writes at most [`CHUNK_SAMPLES`] samples, then checkpoints if one is due.
    fn write_chunk(&mut self, chunk: &[i16]) -> Result<(), RecordingError> {
        match &mut self.writer {
            Writer::Pcm(wav) => {
                let mut writer = wav.get_i16_writer(chunk_u32(chunk.len()));
                for &sample in chunk {
                    writer.write_sample(sample);
                }
                writer.flush().map_err(wav_error)?;
            }
            Writer::G711(w) => w.write(chunk)?,
            Writer::Opus(w) => w.write(chunk)?,
        }
        self.samples += chunk.len() as u64;
        if self.samples.is_multiple_of(self.checkpoint_samples()) {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Makes the file complete for the samples so far and flushes everything to the sink.
    fn checkpoint(&mut self) -> Result<(), RecordingError> {
        match &mut self.writer {
            Writer::Pcm(wav) => wav.flush().map_err(wav_error),
            Writer::G711(w) => w.checkpoint(),
            Writer::Opus(w) => w.checkpoint(),
        }
    }
}

/// A chunk length as hound's `u32`; chunks never exceed [`CHUNK_SAMPLES`].
fn chunk_u32(len: usize) -> u32 {
    u32::try_from(len.min(CHUNK_SAMPLES)).unwrap_or(0)
}

fn wav_error(e: hound::Error) -> RecordingError {
    match e {
        hound::Error::IoError(source) => RecordingError::Io(source),
        other => RecordingError::Wav(other.to_string()),
    }
}

/// The 58-byte header of a G.711 WAV (`WAVE_FORMAT_ALAW` 6 or `WAVE_FORMAT_MULAW` 7, with the
/// `fact` chunk non-PCM formats carry) holding `samples` samples.
pub(crate) fn g711_wav_header(rate: u32, law: G711Law, samples: u32) -> [u8; G711_HEADER_LEN as usize] {
    let mut h = [0u8; G711_HEADER_LEN as usize];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(samples.saturating_add(G711_HEADER_LEN as u32 - 8)).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&18u32.to_le_bytes());
    let tag: u16 = match law {
        G711Law::ALaw => 6,
        G711Law::MuLaw => 7,
    };
    h[20..22].copy_from_slice(&tag.to_le_bytes());
    h[22..24].copy_from_slice(&1u16.to_le_bytes()); // mono
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&rate.to_le_bytes()); // one byte per sample
    h[32..34].copy_from_slice(&1u16.to_le_bytes()); // block align
    h[34..36].copy_from_slice(&8u16.to_le_bytes()); // bits per sample
    h[36..38].copy_from_slice(&0u16.to_le_bytes()); // cbSize
    h[38..42].copy_from_slice(b"fact");
    h[42..46].copy_from_slice(&4u32.to_le_bytes());
    h[46..50].copy_from_slice(&samples.to_le_bytes());
    h[50..54].copy_from_slice(b"data");
    h[54..58].copy_from_slice(&samples.to_le_bytes());
    h
}

/// A G.711 WAV being written: one byte per sample after a 58-byte header.
struct G711Wav {
    sink: Box<dyn Sink>,
    rate: u32,
    law: G711Law,
    data: u64,
    buf: Vec<u8>,
    finished: bool,
}

impl G711Wav {
    fn new(mut sink: Box<dyn Sink>, rate: u32, law: G711Law) -> Result<Self, RecordingError> {
        sink.write_all(&g711_wav_header(rate, law, 0))?;
        Ok(Self { sink, rate, law, data: 0, buf: Vec::with_capacity(CHUNK_SAMPLES), finished: false })
    }

    fn write(&mut self, pcm: &[i16]) -> Result<(), RecordingError> {
        self.buf.clear();
        self.buf.resize(pcm.len(), 0);
        match self.law {
            G711Law::ALaw => g711::encode_alaw(pcm, &mut self.buf),
            G711Law::MuLaw => g711::encode_ulaw(pcm, &mut self.buf),
        }
        self.sink.write_all(&self.buf)?;
        self.data += pcm.len() as u64;
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<(), RecordingError> {
        let samples = u32::try_from(self.data).unwrap_or(u32::MAX);
        self.sink.seek(SeekFrom::Start(0))?;
        self.sink.write_all(&g711_wav_header(self.rate, self.law, samples))?;
        self.sink.seek(SeekFrom::Start(G711_HEADER_LEN + self.data))?;
        self.sink.flush()?;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), RecordingError> {
        self.finished = true;
        self.checkpoint()
    }
}

impl Drop for G711Wav {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.checkpoint();
        }
    }
}

/// Ogg/Opus (RFC 7845) being written: the `OpusHead` and `OpusTags` pages, then 20 ms Opus
/// packets, 50 to a page (a page per second, flushed at once).
struct OggOpus {
    writer: ogg::PacketWriter<'static, Box<dyn Sink>>,
    encoder: OpusEncoder,
    rate: u32,
    /// Samples of the frame being filled.
    frame: Vec<i16>,
    frame_len: usize,
    packet: Vec<u8>,
    /// Samples (at 48 kHz) of the packets written, pre-skip included.
    granule: u64,
    pre_skip: u64,
    /// Samples written by the caller (at `rate`).
    samples: u64,
    /// Samples encoded into packets (at `rate`): whole frames.
    encoded: u64,
    finished: bool,
}

/// The Ogg stream serial number of recordings (one stream per file).
pub(crate) const OGG_SERIAL: u32 = 0x766d_3031; // "vm01"

/// Opus bitrate of recordings at `rate` Hz: plenty for speech at that bandwidth.
fn recording_bitrate(rate: u32) -> i32 {
    if rate <= 8000 {
        12_000
    } else if rate <= 16_000 {
        16_000
    } else {
        24_000
    }
}

/// The `OpusHead` packet (RFC 7845 §5.1): mono, mapping family 0.
pub(crate) fn opus_head(pre_skip: u16, input_rate: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(19);
    h.extend_from_slice(b"OpusHead");
    h.push(1); // version
    h.push(1); // channels
    h.extend_from_slice(&pre_skip.to_le_bytes());
    h.extend_from_slice(&input_rate.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes()); // output gain
    h.push(0); // mapping family
    h
}

/// The `OpusTags` packet (RFC 7845 §5.2): our vendor string, no comments.
pub(crate) fn opus_tags() -> Vec<u8> {
    let vendor = b"voicemail";
    let mut t = Vec::with_capacity(8 + 4 + vendor.len() + 4);
    t.extend_from_slice(b"OpusTags");
    t.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    t.extend_from_slice(vendor);
    t.extend_from_slice(&0u32.to_le_bytes());
    t
}

impl OggOpus {
    fn new(sink: Box<dyn Sink>, rate: u32) -> Result<Self, RecordingError> {
        if !CodecKind::Opus.supports_sample_rate(rate) {
            return Err(RecordingError::Format(format!("Ogg/Opus records at 8, 16 or 48 kHz, not {rate} Hz")));
        }
        let mut encoder = OpusEncoder::new(rate, recording_bitrate(rate)).map_err(RecordingError::Format)?;
        let pre_skip = u64::from(encoder.lookahead_48k());
        let mut writer = ogg::PacketWriter::new(sink);
        let end = ogg::PacketWriteEndInfo::EndPage;
        writer.write_packet(opus_head(pre_skip as u16, rate), OGG_SERIAL, end, 0)?;
        writer.write_packet(opus_tags(), OGG_SERIAL, ogg::PacketWriteEndInfo::EndPage, 0)?;
        let frame_len = rate as usize / 50;
        Ok(Self {
            writer,
            encoder,
            rate,
            frame: Vec::with_capacity(frame_len),
            frame_len,
            packet: Vec::with_capacity(1500),
            granule: pre_skip,
            pre_skip,
            samples: 0,
            encoded: 0,
            finished: false,
        })
    }

    fn write(&mut self, mut pcm: &[i16]) -> Result<(), RecordingError> {
        self.samples += pcm.len() as u64;
        while !pcm.is_empty() {
            let take = (self.frame_len - self.frame.len()).min(pcm.len());
            self.frame.extend_from_slice(&pcm[..take]);
            pcm = &pcm[take..];
            if self.frame.len() == self.frame_len {
                self.encoded += self.frame_len as u64;
                // The packet that completes a second of audio ends its page: the page is
                // written out whole at the checkpoint that follows.
                let end = if self.encoded.is_multiple_of(u64::from(self.rate)) {
                    ogg::PacketWriteEndInfo::EndPage
                } else {
                    ogg::PacketWriteEndInfo::NormalPacket
                };
                self.encode_frame(end, None)?;
            }
        }
        Ok(())
    }

    /// Encodes the (full) frame and writes its packet; `end_granule` overrides the granule
    /// position (the end trimming of the last packet).
    fn encode_frame(&mut self, end: ogg::PacketWriteEndInfo, end_granule: Option<u64>) -> Result<(), RecordingError> {
        self.packet.clear();
        self.encoder.encode(&self.frame, &mut self.packet);
        self.frame.clear();
        if self.packet.is_empty() {
            return Err(RecordingError::Format("the Opus encoder failed".to_owned()));
        }
        self.granule += 960;
        let granule = end_granule.unwrap_or(self.granule);
        self.writer.write_packet(self.packet.clone(), OGG_SERIAL, end, granule)?;
        Ok(())
    }

    /// Flushes the pages written so far. Checkpoints fall on whole seconds, where `write` has
    /// just ended a page with the second's last packet, so the sink then holds every page.
    fn checkpoint(&mut self) -> Result<(), RecordingError> {
        self.writer.inner_mut().flush()?;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), RecordingError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let end_granule = self.pre_skip + self.samples * 48_000 / u64::from(self.rate);
        self.frame.resize(self.frame_len, 0);
        self.encode_frame(ogg::PacketWriteEndInfo::EndStream, Some(end_granule))?;
        self.writer.inner_mut().flush()?;
        Ok(())
    }
}

impl Drop for OggOpus {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, SeekFrom};
    use std::sync::{Arc, Mutex, PoisonError};

    /// A cursor the test can still read after the recording took ownership of the writer.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Cursor<Vec<u8>>>>);

    impl Shared {
        fn bytes(&self) -> Vec<u8> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).get_ref().clone()
        }
    }

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Seek for Shared {
        fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).seek(pos)
        }
    }

    fn read_back(bytes: Vec<u8>) -> (hound::WavSpec, Vec<i16>) {
        let reader = hound::WavReader::new(Cursor::new(bytes)).expect("valid WAV");
        let spec = reader.spec();
        let samples = reader.into_samples::<i16>().collect::<Result<Vec<_>, _>>().expect("all samples readable");
        (spec, samples)
    }

    #[test]
    fn empty_recording_is_a_valid_wav() {
        let sink = Shared::default();
        let rec = Recording::new(sink.clone()).expect("new");
        // Valid before finalize...
        let (spec, samples) = read_back(sink.bytes());
        assert_eq!((spec.sample_rate, spec.bits_per_sample, spec.channels), (8000, 16, 1));
        assert!(samples.is_empty());
        assert_eq!(sink.bytes().len(), 44);
        // ...and after.
        assert_eq!(rec.finalize().expect("finalize"), 0);
        let (_, samples) = read_back(sink.bytes());
        assert!(samples.is_empty());
    }

    #[test]
    fn writes_samples_and_silence() {
        let sink = Shared::default();
        let mut rec = Recording::new(sink.clone()).expect("new");
        let ramp: Vec<i16> = (0..12_345).map(|i| (i * 7) as i16).collect();
        rec.write(&ramp).expect("write");
        rec.write(&[]).expect("empty write");
        rec.write_silence(10_001).expect("silence");
        rec.write(&[i16::MIN, i16::MAX]).expect("write");
        assert_eq!(rec.samples(), 12_345 + 10_001 + 2);
        assert_eq!(rec.finalize().expect("finalize"), 22_348);
        let (_, samples) = read_back(sink.bytes());
        assert_eq!(samples.len(), 22_348);
        assert_eq!(&samples[..12_345], &ramp[..]);
        assert!(samples[12_345..22_346].iter().all(|&s| s == 0));
        assert_eq!(&samples[22_346..], &[i16::MIN, i16::MAX]);
    }

    #[test]
    fn header_is_refreshed_every_second() {
        let sink = Shared::default();
        let mut rec = Recording::new(sink.clone()).expect("new");
        // Many small writes, as from 20 ms RTP packets.
        let frame = [1i16; 160];
        for _ in 0..49 {
            rec.write(&frame).expect("write");
        }
        // 7840 samples: no checkpoint yet, the header still says 0.
        assert_eq!(read_back(sink.bytes()).1.len(), 0);
        rec.write(&frame).expect("write");
        // 8000 samples: a checkpoint.
        assert_eq!(read_back(sink.bytes()).1.len(), 8000);
        rec.write_silence(7999).expect("silence");
        assert_eq!(read_back(sink.bytes()).1.len(), 8000);
        rec.write_silence(1).expect("silence");
        assert_eq!(read_back(sink.bytes()).1.len(), 16_000);
        // A large write crossing several checkpoints leaves the last one declared.
        rec.write(&vec![2i16; 20_500]).expect("write");
        assert_eq!(read_back(sink.bytes()).1.len(), 32_000);
        drop(rec);
    }

    #[test]
    fn drop_without_finalize_still_writes_the_header() {
        let sink = Shared::default();
        let mut rec = Recording::new(sink.clone()).expect("new");
        rec.write(&[5i16; 1234]).expect("write");
        drop(rec);
        assert_eq!(read_back(sink.bytes()).1.len(), 1234);
    }

    #[test]
    fn wideband_pcm_wav_checkpoints_every_second() {
        let sink = Shared::default();
        let spec = RecordingSpec { sample_rate_hz: 16_000, ..RecordingSpec::default() };
        let mut rec = Recording::with_spec(sink.clone(), spec).expect("new");
        rec.write(&[3i16; 15_999]).expect("write");
        assert_eq!(read_back(sink.bytes()).1.len(), 0);
        rec.write(&[3i16; 2]).expect("write");
        let (spec, samples) = read_back(sink.bytes());
        assert_eq!((spec.sample_rate, samples.len()), (16_000, 16_000));
        assert_eq!(rec.finalize().expect("finalize"), 16_001);
        assert_eq!(read_back(sink.bytes()).1.len(), 16_001);
    }

    #[test]
    fn g711_wav_is_half_the_size_and_checkpointed() {
        for (codec, law_tag) in [(CodecKind::Pcmu, 7u16), (CodecKind::Pcma, 6), (CodecKind::G722, 6)] {
            let rate = if codec == CodecKind::G722 { 16_000 } else { 8000 };
            let sink = Shared::default();
            let spec = RecordingSpec::for_call(RecordingFormat::WavG711, codec, rate);
            let mut rec = Recording::with_spec(sink.clone(), spec).expect("new");
            assert_eq!(sink.bytes(), g711_wav_header(rate, spec.law, 0));
            let pcm: Vec<i16> = (0..rate as i32 + 100).map(|i| (i * 37 % 20_000) as i16).collect();
            rec.write(&pcm).expect("write");
            // The checkpoint after one second declares exactly one second.
            let bytes = sink.bytes();
            assert_eq!(u32::from_le_bytes(bytes[54..58].try_into().unwrap()), rate);
            assert_eq!(u16::from_le_bytes([bytes[20], bytes[21]]), law_tag);
            rec.finalize().expect("finalize");
            let bytes = sink.bytes();
            assert_eq!(bytes.len() as u64, G711_HEADER_LEN + pcm.len() as u64);
            assert_eq!(u32::from_le_bytes(bytes[46..50].try_into().unwrap()), pcm.len() as u32);
            let mut expected = vec![0u8; pcm.len()];
            if law_tag == 7 {
                g711::encode_ulaw(&pcm, &mut expected);
            } else {
                g711::encode_alaw(&pcm, &mut expected);
            }
            assert_eq!(&bytes[58..], &expected[..]);
        }
    }

    /// The Ogg pages of `bytes`: (granule position, header type, packet bytes).
    fn ogg_pages(bytes: &[u8]) -> Vec<(u64, u8, usize)> {
        let mut pages = Vec::new();
        let mut at = 0;
        while at + 27 <= bytes.len() && &bytes[at..at + 4] == b"OggS" {
            let h = &bytes[at..];
            let segments = h[26] as usize;
            if at + 27 + segments > bytes.len() {
                break;
            }
            let body: usize = h[27..27 + segments].iter().map(|&b| b as usize).sum();
            let granule = u64::from_le_bytes(h[6..14].try_into().unwrap());
            pages.push((granule, h[5], body));
            at += 27 + segments + body;
        }
        assert_eq!(at, bytes.len(), "whole pages only");
        pages
    }

    #[test]
    fn ogg_opus_pages_every_second_and_ends_the_stream() {
        let sink = Shared::default();
        let spec = RecordingSpec::for_call(RecordingFormat::Opus, CodecKind::Opus, 16_000);
        let mut rec = Recording::with_spec(sink.clone(), spec).expect("new");
        let pages = ogg_pages(&sink.bytes());
        assert_eq!(pages.len(), 2, "OpusHead and OpusTags, flushed at once");
        assert_eq!(pages[0].1 & 2, 2, "beginning of stream");
        let pre_skip = u64::from(u16::from_le_bytes(sink.bytes()[28 + 10..28 + 12].try_into().unwrap()));
        let tone: Vec<i16> = (0..40_000).map(|i| ((i as f64 * 0.2).sin() * 9000.0) as i16).collect();
        rec.write(&tone[..15_000]).expect("write");
        assert_eq!(ogg_pages(&sink.bytes()).len(), 2, "nothing before the first second");
        rec.write(&tone[15_000..]).expect("write");
        let pages = ogg_pages(&sink.bytes());
        assert_eq!(pages.len(), 4, "one page per second");
        assert_eq!(pages[3].0, pre_skip + 2 * 48_000);
        rec.write_silence(100).expect("silence");
        assert_eq!(rec.finalize().expect("finalize"), 40_100);
        let pages = ogg_pages(&sink.bytes());
        let last = pages.last().unwrap();
        assert_eq!(last.1 & 4, 4, "end of stream");
        assert_eq!(last.0, pre_skip + 40_100 * 3, "end trimmed to the samples written");
        // About a tenth of a 16-bit WAV.
        let wav_bytes = 44 + 2 * 40_100;
        assert!(sink.bytes().len() * 100 < wav_bytes * 15, "{} bytes", sink.bytes().len());
    }

    #[test]
    fn rates_are_checked() {
        let spec = RecordingSpec { format: RecordingFormat::Opus, sample_rate_hz: 44_100, law: G711Law::ALaw };
        assert!(Recording::with_spec(Shared::default(), spec).is_err());
        let spec = RecordingSpec { sample_rate_hz: 4000, ..RecordingSpec::default() };
        assert!(Recording::with_spec(Shared::default(), spec).is_err());
    }

    #[test]
    fn refuses_to_outgrow_the_wav_format() {
        let sink = Shared::default();
        let mut rec = Recording::new(sink.clone()).expect("new");
        rec.samples = MAX_SAMPLES - 1;
        assert!(matches!(rec.write(&[0, 0]), Err(RecordingError::Wav(_))));
        assert!(matches!(rec.write_silence(u64::MAX), Err(RecordingError::Wav(_))));
        assert_eq!(rec.samples(), MAX_SAMPLES - 1, "nothing written");
        assert_eq!(MAX_DATA_BYTES + 36, u64::from(u32::MAX) - 1);
    }
}
