//! The spool directory's files: the one place that names them.
//!
//! ```text
//! <spool>/<id>.wav             a recording (streamed during the call, valid at every moment)
//! <spool>/voicemail.sqlite3    the store (metadata, follow-up, history, outbox), with -wal/-shm
//! <spool>/imported-json/       JSON files of an older spool, once imported
//! ```
//!
//! # Who owns a recording
//!
//! The process recording a call holds an exclusive lock (`flock`) on its WAV file from the
//! moment the file is created until the finished message is committed to the store. The
//! kernel releases the lock when that process dies, however it dies. Recovery (in any
//! process) finalises only recordings whose lock it can take itself: a live call is never
//! touched, a dead one is recovered by whoever looks first.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::message::MessageId;
use crate::recording::{HEADER_LEN, MAX_DATA_BYTES, SAMPLE_RATE_HZ};

/// The store's database file in the spool.
pub(crate) const DB_FILE: &str = "voicemail.sqlite3";
/// Where the JSON files of an older spool go once imported.
pub(crate) const IMPORTED_DIR: &str = "imported-json";
/// Write buffer of a recording file: about half a second of audio.
const WAV_BUFFER_BYTES: usize = 8 * 1024;

/// A spool directory.
#[derive(Debug, Clone)]
pub(crate) struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Opens (creating if needed) the spool directory.
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn db_path(&self) -> PathBuf {
        self.dir.join(DB_FILE)
    }

    /// Where message `id`'s recording is.
    pub(crate) fn wav_path(&self, id: &MessageId) -> PathBuf {
        self.dir.join(format!("{id}.wav"))
    }

    /// Creates message `id`'s recording (it must not exist) and takes its lock.
    pub(crate) fn create_wav(&self, id: &MessageId) -> io::Result<LockedWav> {
        let path = self.wav_path(id);
        let file = File::create_new(&path)?;
        if let Err(e) = file.try_lock() {
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(match e {
                TryLockError::Error(e) => e,
                TryLockError::WouldBlock => io::Error::new(io::ErrorKind::WouldBlock, "a new recording is locked"),
            });
        }
        Ok(LockedWav { file: Arc::new(file), path })
    }

    /// Takes the lock of message `id`'s recording if no live process holds it.
    pub(crate) fn claim_wav(&self, id: &MessageId) -> io::Result<Claim> {
        let path = self.wav_path(id);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Claim::Missing),
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            Ok(()) => Ok(Claim::Dead(LockedWav { file: Arc::new(file), path })),
            Err(TryLockError::WouldBlock) => Ok(Claim::Live),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// Removes message `id`'s recording (a missing file is fine).
    pub(crate) fn remove_wav(&self, id: &MessageId) -> io::Result<()> {
        match fs::remove_file(self.wav_path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// `<id>` of every `<id>.wav` in the spool.
    pub(crate) fn wav_ids(&self) -> io::Result<Vec<MessageId>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".wav")).and_then(|s| MessageId::parse(s).ok())
            {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Makes creations, renames and removals in the spool durable.
    pub(crate) fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    /// Bytes available to us on the spool's file system.
    pub(crate) fn free_space(&self) -> io::Result<u64> {
        let st = rustix::fs::statvfs(&self.dir).map_err(io::Error::from)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }
}

/// What [`Spool::claim_wav`] found.
#[derive(Debug)]
pub(crate) enum Claim {
    /// Nobody holds the recording: its writer died (or finished and stored it).
    Dead(LockedWav),
    /// A live process is writing it.
    Live,
    /// There is no recording file.
    Missing,
}

/// A recording file whose lock this process holds. The lock lasts as long as any clone of
/// the file handle (the recording's sink, the call's lease).
#[derive(Debug, Clone)]
pub(crate) struct LockedWav {
    file: Arc<File>,
    path: PathBuf,
}

impl LockedWav {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A buffered sink for the engine's [`Recording`](crate::Recording) on this file.
    pub(crate) fn sink(&self) -> BufWriter<SharedFile> {
        BufWriter::with_capacity(WAV_BUFFER_BYTES, SharedFile(self.file.clone()))
    }

    /// Flushes the file's data to stable storage.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    /// Repairs the WAV header after a crash; returns the samples it holds.
    pub(crate) fn repair(&self) -> io::Result<u64> {
        repair(&self.file)
    }
}

/// A file handle shared by the recording's sink and the call's lease.
#[derive(Debug)]
pub(crate) struct SharedFile(Arc<File>);

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        (&*self.0).flush()
    }
}

impl Seek for SharedFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        (&*self.0).seek(pos)
    }
}

/// Checks that `h` is the header the engine's recording writes: RIFF/WAVE, a 16-byte PCM fmt
/// chunk for 8000 Hz, 16-bit mono, then the data chunk header. The two sizes are not checked.
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

/// Makes a WAV file the engine wrote valid again after a crash: header sizes set from the
/// file length (a torn odd byte at the end is dropped), then synced. A file shorter than a
/// header (a crash right after creation) becomes a valid empty WAV. A file that is not one of
/// ours is an `InvalidData` error and is left alone. Never panics, whatever the contents.
fn repair(file: &File) -> io::Result<u64> {
    let invalid = |why: &'static str| io::Error::new(io::ErrorKind::InvalidData, why);
    let mut f = file;
    let len = f.metadata()?.len();
    if len < HEADER_LEN {
        let mut head = Vec::new();
        f.seek(SeekFrom::Start(0))?;
        f.read_to_end(&mut head)?;
        if !b"RIFF".starts_with(&head[..head.len().min(4)]) {
            return Err(invalid("not a WAV file"));
        }
        f.set_len(0)?;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&empty_wav_header())?;
        f.sync_all()?;
        return Ok(0);
    }
    let mut header = [0u8; HEADER_LEN as usize];
    f.seek(SeekFrom::Start(0))?;
    f.read_exact(&mut header)?;
    check_header(&header).map_err(invalid)?;
    let on_disk = len - HEADER_LEN;
    let data_len = (on_disk & !1).min(MAX_DATA_BYTES);
    let riff_size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let data_size = u32::from_le_bytes([header[40], header[41], header[42], header[43]]);
    if data_len == on_disk && u64::from(data_size) == data_len && u64::from(riff_size) == len - 8 {
        return Ok(data_len / 2);
    }
    let new_data = u32::try_from(data_len).map_err(|_| invalid("too large"))?;
    let new_riff = u32::try_from(data_len + HEADER_LEN - 8).map_err(|_| invalid("too large"))?;
    if data_len != on_disk {
        f.set_len(HEADER_LEN + data_len)?;
    }
    f.seek(SeekFrom::Start(4))?;
    f.write_all(&new_riff.to_le_bytes())?;
    f.seek(SeekFrom::Start(40))?;
    f.write_all(&new_data.to_le_bytes())?;
    f.sync_all()?;
    Ok(data_len / 2)
}

/// The 44-byte header of an empty recording.
pub(crate) fn empty_wav_header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&36u32.to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&1u16.to_le_bytes());
    h[24..28].copy_from_slice(&SAMPLE_RATE_HZ.to_le_bytes());
    h[28..32].copy_from_slice(&(SAMPLE_RATE_HZ * 2).to_le_bytes());
    h[32..34].copy_from_slice(&2u16.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Recording;

    fn spool() -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        (dir, spool)
    }

    fn read(path: &Path) -> Vec<i16> {
        hound::WavReader::open(path).unwrap().into_samples::<i16>().collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn a_live_recording_cannot_be_claimed_and_a_released_one_can() {
        let (_d, spool) = spool();
        let id = MessageId::parse("m1").unwrap();
        let wav = spool.create_wav(&id).unwrap();
        let mut rec = Recording::new(wav.sink()).unwrap();
        rec.write(&[7i16; 12_000]).unwrap();
        assert!(matches!(spool.claim_wav(&id).unwrap(), Claim::Live));
        assert!(spool.create_wav(&id).is_err(), "never two recordings in one file");
        // The sink alone keeps the lock: dropping the lease handle changes nothing.
        drop(wav);
        assert!(matches!(spool.claim_wav(&id).unwrap(), Claim::Live));
        drop(rec); // like a process that dies: the lock goes with the last handle
        let Claim::Dead(claimed) = spool.claim_wav(&id).unwrap() else { panic!("not claimable") };
        assert_eq!(claimed.repair().unwrap(), 12_000);
        assert!(matches!(spool.claim_wav(&id).unwrap(), Claim::Live), "now we hold it");
        assert!(matches!(spool.claim_wav(&MessageId::parse("m2").unwrap()).unwrap(), Claim::Missing));
    }

    #[test]
    fn repair_restores_a_torn_file() {
        let (_d, spool) = spool();
        let id = MessageId::parse("torn").unwrap();
        let wav = spool.create_wav(&id).unwrap();
        let mut rec = Recording::new(wav.sink()).unwrap();
        rec.write(&[1i16; 9_000]).unwrap(); // one checkpoint at 8000
        std::mem::forget(rec); // the buffer never reaches the file: a crash
        // Simulate data written past the last checkpoint plus a torn byte.
        {
            let mut f = OpenOptions::new().append(true).open(wav.path()).unwrap();
            f.write_all(&[0u8; 201]).unwrap();
        }
        assert_eq!(wav.repair().unwrap(), 8_100);
        assert_eq!(read(wav.path()).len(), 8_100);
        // Intact files are left as they are.
        assert_eq!(wav.repair().unwrap(), 8_100);
    }

    #[test]
    fn repair_of_a_short_or_foreign_file() {
        let (_d, spool) = spool();
        let short = spool.dir().join("short.wav");
        fs::write(&short, b"RIF").unwrap();
        let f = OpenOptions::new().read(true).write(true).open(&short).unwrap();
        assert_eq!(repair(&f).unwrap(), 0);
        assert!(read(&short).is_empty());
        let foreign = spool.dir().join("foreign.wav");
        fs::write(&foreign, vec![b'x'; 100]).unwrap();
        let f = OpenOptions::new().read(true).write(true).open(&foreign).unwrap();
        assert_eq!(repair(&f).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(fs::read(&foreign).unwrap(), vec![b'x'; 100], "left alone");
    }

    #[test]
    fn empty_header_matches_the_engine() {
        let buf = std::io::Cursor::new(Vec::new());
        let shared = Arc::new(std::sync::Mutex::new(buf));
        struct W(Arc<std::sync::Mutex<std::io::Cursor<Vec<u8>>>>);
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().write(b)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        impl Seek for W {
            fn seek(&mut self, p: SeekFrom) -> io::Result<u64> {
                self.0.lock().unwrap().seek(p)
            }
        }
        Recording::new(W(shared.clone())).unwrap().finalize().unwrap();
        assert_eq!(shared.lock().unwrap().get_ref().as_slice(), &empty_wav_header());
    }
}
