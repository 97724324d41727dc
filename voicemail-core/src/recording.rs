//! Streaming, crash-safe recording of 8 kHz 16-bit mono WAV (hound).
//!
//! The header is rewritten at least once per second of audio, so the file on disk is a valid
//! WAV at every moment up to the last second; [`repair_wav`] fixes a file torn by a crash
//! between two header updates, and [`recover_spool`] runs it over a spool directory at start-up.
//!
//! # Crash-safety guarantee
//!
//! Every 8000 samples (one second) the writer flushes its buffer and
//! rewrites the RIFF and data sizes (hound's `WavWriter::flush`). If the *process* dies at any
//! moment after [`Recording::create`] returned, the file is a valid WAV that hound reads
//! without error, holding at least every sample up to the last completed checkpoint: at most
//! the last 7999 samples (< 1 s) are missing from what the header declares. Samples between
//! the checkpoint and the crash that already left the 8 KiB write buffer are on disk past
//! the declared data; [`repair_wav`] adds them back, so after repair at most the buffered
//! tail (< 4096 samples, 0.512 s) is lost.
//!
//! Durability against power loss or an OS crash is only promised after
//! [`Recording::finalize`], which calls `sync_all` on the file (and, best effort, its
//! directory); between checkpoints the data sits in the page cache.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A failure to write or repair a recording.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordingError {
    /// The file system refused (full disk, permissions, ...).
    #[error("recording I/O error on {path:?}: {source}")]
    Io {
        /// The file, when known.
        path: Option<PathBuf>,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The WAV encoder failed.
    #[error("WAV error: {0}")]
    Wav(String),
    /// A file to repair is not a WAV file we wrote.
    #[error("{path}: not a repairable WAV file: {reason}")]
    NotRepairable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
}

/// Anything a recording can be written to.
pub trait Sink: Write + Seek + Send {}
impl<T: Write + Seek + Send> Sink for T {}

/// Sample rate of recordings, in Hz.
const SAMPLE_RATE_HZ: u32 = 8000;

/// Samples between two header rewrites: one second of audio.
const CHECKPOINT_SAMPLES: u64 = SAMPLE_RATE_HZ as u64;

/// Samples handed to hound at once; its sample buffer is this size (8 KB), allocated once.
const CHUNK_SAMPLES: usize = 4000;

/// Capacity of the file write buffer.
const FILE_BUFFER_BYTES: usize = 8 * 1024;

/// Length of the header hound writes for 16-bit mono PCM: RIFF, fmt (16 bytes), data.
const HEADER_LEN: u64 = 44;

/// The largest data chunk whose RIFF size (`data + 36`) still fits in 32 bits, rounded down
/// to whole samples.
const MAX_DATA_BYTES: u64 = (u32::MAX as u64 - (HEADER_LEN - 8)) & !1;

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
/// Memory per recording is fixed: an 8 KiB file buffer (files only) and hound's 8 KB sample
/// buffer, both allocated at creation. After an error the recording should be abandoned;
/// dropping it without [`Recording::finalize`] still rewrites the header, best effort.
pub struct Recording {
    wav: hound::WavWriter<Box<dyn Sink>>,
    /// A second handle on the file, for `sync_all` at finalize.
    file: Option<File>,
    path: Option<PathBuf>,
    samples: u64,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording").field("path", &self.path).field("samples", &self.samples).finish_non_exhaustive()
    }
}

impl Recording {
    /// Creates the file (it must not exist) and writes a valid zero-length WAV header at once.
    pub fn create(path: &Path) -> Result<Self, RecordingError> {
        let io_err = |source| RecordingError::Io { path: Some(path.to_path_buf()), source };
        let file = File::create_new(path).map_err(io_err)?;
        let sync_handle = file.try_clone().map_err(io_err)?;
        let writer = BufWriter::with_capacity(FILE_BUFFER_BYTES, file);
        Self::start(Box::new(writer), Some(sync_handle), Some(path.to_path_buf()))
    }

    /// Records into any seekable writer (tests use `io::Cursor<Vec<u8>>`).
    ///
    /// The writer is used as is (wrap it in a `BufWriter` if writes are expensive); it must be
    /// positioned at offset 0.
    pub fn new<W: Sink + 'static>(writer: W) -> Result<Self, RecordingError> {
        Self::start(Box::new(writer), None, None)
    }

    fn start(sink: Box<dyn Sink>, file: Option<File>, path: Option<PathBuf>) -> Result<Self, RecordingError> {
        let wav = hound::WavWriter::new(sink, SPEC).map_err(|e| wav_error(e, path.as_deref()))?;
        let mut rec = Self { wav, file, path, samples: 0 };
        // Allocate hound's sample buffer now, at its final size, so `write` never allocates.
        // The unflushed `SampleWriter16` is discarded without writing anything.
        let _ = rec.wav.get_i16_writer(chunk_u32(CHUNK_SAMPLES));
        // hound's first header has zero RIFF and data sizes; flushing sets them, so the file
        // is a valid empty WAV from now on.
        rec.checkpoint()?;
        Ok(rec)
    }

    /// The file's path, when created with [`Recording::create`].
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
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

    /// Writes the final header, flushes and syncs the file; returns the number of samples.
    pub fn finalize(self) -> Result<u64, RecordingError> {
        let Self { wav, file, path, samples } = self;
        wav.finalize().map_err(|e| wav_error(e, path.as_deref()))?;
        if let Some(file) = file {
            file.sync_all().map_err(|source| RecordingError::Io { path: path.clone(), source })?;
            sync_parent_dir(path.as_deref());
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
        writer.flush().map_err(|e| wav_error(e, self.path.as_deref()))?;
        self.samples += chunk.len() as u64;
        if self.samples.is_multiple_of(CHECKPOINT_SAMPLES) {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Rewrites the header for the samples so far and flushes everything to the file.
    fn checkpoint(&mut self) -> Result<(), RecordingError> {
        self.wav.flush().map_err(|e| wav_error(e, self.path.as_deref()))
    }
}

/// A chunk length as hound's `u32`; chunks never exceed [`CHUNK_SAMPLES`].
fn chunk_u32(len: usize) -> u32 {
    u32::try_from(len.min(CHUNK_SAMPLES)).unwrap_or(0)
}

fn wav_error(e: hound::Error, path: Option<&Path>) -> RecordingError {
    match e {
        hound::Error::IoError(source) => RecordingError::Io { path: path.map(Path::to_path_buf), source },
        other => RecordingError::Wav(other.to_string()),
    }
}

/// Makes the file's directory entry durable too. Best effort: not every platform can open a
/// directory for syncing, and the data itself is already synced.
fn sync_parent_dir(path: Option<&Path>) {
    let Some(dir) = path.and_then(Path::parent) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// What [`repair_wav`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairOutcome {
    /// The header already matched the data.
    Intact,
    /// The header was rewritten to cover `samples` samples (a torn tail byte is dropped).
    Repaired {
        /// Samples in the repaired file.
        samples: u64,
    },
}

/// Offset of the RIFF chunk size.
const RIFF_SIZE_OFFSET: u64 = 4;
/// Offset of the data chunk size in our layout.
const DATA_SIZE_OFFSET: u64 = 40;

/// Checks that `h` is the header [`Recording`] writes: RIFF/WAVE, a 16-byte PCM fmt chunk
/// for 8000 Hz, 16-bit mono, then the data chunk header. The two sizes are not checked.
fn check_header(h: &[u8; HEADER_LEN as usize]) -> Result<(), &'static str> {
    let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    if &h[0..4] != b"RIFF" || &h[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file");
    }
    if &h[12..16] != b"fmt " || u32_at(16) != 16 {
        return Err("unexpected chunk layout: no 16-byte fmt chunk first");
    }
    if u16_at(20) != 1
        || u16_at(22) != 1
        || u32_at(24) != SAMPLE_RATE_HZ
        || u32_at(28) != SAMPLE_RATE_HZ * 2
        || u16_at(32) != 2
        || u16_at(34) != 16
    {
        return Err("not 8 kHz 16-bit mono PCM");
    }
    if &h[36..40] != b"data" {
        return Err("unexpected chunk layout: data chunk does not follow fmt");
    }
    Ok(())
}

/// Makes a WAV file we wrote valid again after a crash: header sizes set from the file length.
///
/// Only the layout [`Recording`] writes is accepted (44-byte header, data chunk last, 8 kHz
/// 16-bit mono PCM); anything else, including files shorter than the header, is
/// [`RecordingError::NotRepairable`]. When both sizes already match the file length the file
/// is not opened for writing. Otherwise a torn odd byte at the end is truncated, the RIFF and
/// data sizes are rewritten and the file is synced. Never panics, whatever the contents.
pub fn repair_wav(path: &Path) -> Result<RepairOutcome, RecordingError> {
    let io_err = |source| RecordingError::Io { path: Some(path.to_path_buf()), source };
    let not_repairable = |reason| RecordingError::NotRepairable { path: path.to_path_buf(), reason };

    let mut file = File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(not_repairable("not a regular file"));
    }
    let len = meta.len();
    if len < HEADER_LEN {
        return Err(not_repairable("shorter than a WAV header"));
    }
    let mut header = [0u8; HEADER_LEN as usize];
    match file.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(not_repairable("shorter than a WAV header"));
        }
        Err(e) => return Err(io_err(e)),
    }
    check_header(&header).map_err(not_repairable)?;

    let on_disk = len - HEADER_LEN;
    let data_len = on_disk & !1;
    if data_len > MAX_DATA_BYTES {
        return Err(not_repairable("larger than a WAV file can be"));
    }
    let riff_size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let data_size = u32::from_le_bytes([header[40], header[41], header[42], header[43]]);
    if data_len == on_disk && u64::from(data_size) == data_len && u64::from(riff_size) == len - 8 {
        return Ok(RepairOutcome::Intact);
    }
    drop(file);

    // Both sizes fit: data_len <= MAX_DATA_BYTES, whose RIFF size fits in 32 bits.
    let new_data = u32::try_from(data_len).map_err(|_| not_repairable("too large"))?;
    let new_riff = u32::try_from(data_len + HEADER_LEN - 8).map_err(|_| not_repairable("too large"))?;
    let mut file = OpenOptions::new().write(true).open(path).map_err(io_err)?;
    if data_len != on_disk {
        file.set_len(HEADER_LEN + data_len).map_err(io_err)?;
    }
    file.seek(SeekFrom::Start(RIFF_SIZE_OFFSET)).map_err(io_err)?;
    file.write_all(&new_riff.to_le_bytes()).map_err(io_err)?;
    file.seek(SeekFrom::Start(DATA_SIZE_OFFSET)).map_err(io_err)?;
    file.write_all(&new_data.to_le_bytes()).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    Ok(RepairOutcome::Repaired { samples: data_len / 2 })
}

/// Repairs every `*.wav` in `dir` (not recursive); returns the files that needed repair.
///
/// Intact files are left alone and not listed. A file that cannot be repaired (not one of
/// ours, unreadable, ...) is logged with `tracing::warn!` and skipped, so one bad file does
/// not stop the spool from being recovered; only failing to list `dir` is an error. The
/// result is sorted by path.
pub fn recover_spool(dir: &Path) -> Result<Vec<(PathBuf, RepairOutcome)>, RecordingError> {
    let entries =
        std::fs::read_dir(dir).map_err(|source| RecordingError::Io { path: Some(dir.to_path_buf()), source })?;
    let mut repaired = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "cannot read a spool directory entry");
                continue;
            }
        };
        let path = entry.path();
        let is_wav = path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("wav"));
        if !is_wav || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        match repair_wav(&path) {
            Ok(RepairOutcome::Intact) => {}
            Ok(outcome) => {
                tracing::info!(path = %path.display(), ?outcome, "repaired spool recording");
                repaired.push((path, outcome));
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "spool recording not recovered");
            }
        }
    }
    repaired.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(repaired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
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
        assert_eq!(rec.path(), None);
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

    #[test]
    fn header_check_accepts_only_our_layout() {
        let sink = Shared::default();
        Recording::new(sink.clone()).expect("new").finalize().expect("finalize");
        let bytes = sink.bytes();
        let mut header = [0u8; 44];
        header.copy_from_slice(&bytes[..44]);
        assert_eq!(check_header(&header), Ok(()));
        for (offset, value) in
            [(0, b'X'), (8, b'X'), (12, b'X'), (16, 18), (20, 3), (22, 2), (24, 0x44), (34, 8), (36, b'L')]
        {
            let mut h = header;
            h[offset] = value;
            assert!(check_header(&h).is_err(), "byte {offset}");
        }
    }
}
