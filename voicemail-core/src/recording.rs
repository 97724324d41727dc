//! Streaming, crash-safe recording of 8 kHz 16-bit mono WAV (hound) into a sink the engine
//! is given.
//!
//! The engine owns no file: a [`Recording`] writes into any `Write + Seek` sink. The mailbox
//! gives it a file in its spool (and fsyncs that file itself when the message is stored);
//! tests give it an `io::Cursor`.
//!
//! # Crash-safety guarantee
//!
//! Every 8000 samples (one second) the writer flushes its buffer and rewrites the RIFF and
//! data sizes (hound's `WavWriter::flush`). If the *process* dies at any moment after
//! [`Recording::new`] returned, a file sink holds a valid WAV that hound reads without error,
//! holding at least every sample up to the last completed checkpoint: at most the last 7999
//! samples (< 1 s) are missing from what the header declares. Samples between the checkpoint
//! and the crash that already left the sink's buffer are on disk past the declared data; the
//! mailbox's repair at recovery adds them back.
//!
//! Durability against power loss is the sink owner's business: [`Recording::finalize`] writes
//! the final header and flushes, and never syncs.

use std::io::{Seek, Write};

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
}

/// Anything a recording can be written to.
pub trait Sink: Write + Seek + Send {}
impl<T: Write + Seek + Send> Sink for T {}

/// Sample rate of recordings, in Hz.
pub(crate) const SAMPLE_RATE_HZ: u32 = 8000;

/// Samples between two header rewrites: one second of audio.
const CHECKPOINT_SAMPLES: u64 = SAMPLE_RATE_HZ as u64;

/// Samples handed to hound at once; its sample buffer is this size (8 KB), allocated once.
const CHUNK_SAMPLES: usize = 4000;

/// Length of the header hound writes for 16-bit mono PCM: RIFF, fmt (16 bytes), data.
pub(crate) const HEADER_LEN: u64 = 44;

/// The largest data chunk whose RIFF size (`data + 36`) still fits in 32 bits, rounded down
/// to whole samples.
pub(crate) const MAX_DATA_BYTES: u64 = (u32::MAX as u64 - (HEADER_LEN - 8)) & !1;

/// The most samples a WAV file can hold (about 74.5 hours at 8 kHz).
const MAX_SAMPLES: u64 = MAX_DATA_BYTES / 2;

/// Digital silence for [`Recording::write_silence`].
static SILENCE: [i16; CHUNK_SAMPLES] = [0; CHUNK_SAMPLES];

/// The format of every recording.
const SPEC: hound::WavSpec = hound::WavSpec {
    channels: 1,
    sample_rate: SAMPLE_RATE_HZ,
    bits_per_sample: 16,
    sample_format: hound::SampleFormat::Int,
};

/// A recording in progress: 8 kHz, 16-bit, mono PCM WAV.
///
/// Memory per recording is fixed: hound's 8 KB sample buffer, allocated at creation (wrap a
/// file sink in a `BufWriter`). After an error the recording should be abandoned; dropping it
/// without [`Recording::finalize`] still rewrites the header, best effort.
pub struct Recording {
    wav: hound::WavWriter<Box<dyn Sink>>,
    samples: u64,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording").field("samples", &self.samples).finish_non_exhaustive()
    }
}

impl Recording {
    /// Starts a recording in `sink` (positioned at offset 0) and writes a valid zero-length
    /// WAV header at once. The sink is used as is: wrap it in a `BufWriter` if writes are
    /// expensive.
    pub fn new<W: Sink + 'static>(sink: W) -> Result<Self, RecordingError> {
        let wav = hound::WavWriter::new(Box::new(sink) as Box<dyn Sink>, SPEC).map_err(wav_error)?;
        let mut rec = Self { wav, samples: 0 };
        // Allocate hound's sample buffer now, at its final size, so `write` never allocates.
        // The unflushed `SampleWriter16` is discarded without writing anything.
        let _ = rec.wav.get_i16_writer(chunk_u32(CHUNK_SAMPLES));
        // hound's first header has zero RIFF and data sizes; flushing sets them, so the sink
        // holds a valid empty WAV from now on.
        rec.checkpoint()?;
        Ok(rec)
    }

    /// Appends samples. No allocation; the header is refreshed every 8000 samples.
    ///
    /// Fails without writing anything when the recording would outgrow the 4 GiB WAV limit
    /// (about 74 hours).
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

    /// Writes the final header and flushes the sink; returns the number of samples.
    /// Syncing the sink to stable storage is its owner's business.
    pub fn finalize(self) -> Result<u64, RecordingError> {
        let Self { wav, samples } = self;
        wav.finalize().map_err(wav_error)?;
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

    /// How many of `want` samples to write next: at most a chunk, and never across a
    /// checkpoint, so checkpoints fall exactly on multiples of [`CHECKPOINT_SAMPLES`].
    fn next_chunk_len(&self, want: usize) -> usize {
        let to_checkpoint = CHECKPOINT_SAMPLES - self.samples % CHECKPOINT_SAMPLES;
        let to_checkpoint = usize::try_from(to_checkpoint).unwrap_or(CHUNK_SAMPLES);
        want.min(CHUNK_SAMPLES).min(to_checkpoint)
    }

    /// Writes at most [`CHUNK_SAMPLES`] samples, then checkpoints if one is due.
    fn write_chunk(&mut self, chunk: &[i16]) -> Result<(), RecordingError> {
        let mut writer = self.wav.get_i16_writer(chunk_u32(chunk.len()));
        for &sample in chunk {
            writer.write_sample(sample);
        }
        writer.flush().map_err(wav_error)?;
        self.samples += chunk.len() as u64;
        if self.samples.is_multiple_of(CHECKPOINT_SAMPLES) {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Rewrites the header for the samples so far and flushes everything to the file.
    fn checkpoint(&mut self) -> Result<(), RecordingError> {
        self.wav.flush().map_err(wav_error)
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
        assert_eq!(spec, SPEC);
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
