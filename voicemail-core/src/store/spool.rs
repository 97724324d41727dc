//! The spool directory's files: the one place that names them.
//!
//! ```text
//! <spool>/<id>.wav             a recording (streamed during the call, valid at every moment):
//!                              16-bit PCM or G.711 WAV, at 8, 16 or 48 kHz
//! <spool>/<id>.opus            a recording in Ogg/Opus (`[recording] format = "opus"`)
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
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::message::MessageId;
use crate::recording::{
    G711_HEADER_LEN, G711Law, HEADER_LEN, MAX_DATA_BYTES, OGG_SERIAL, RecordingFormat, g711_wav_header, opus_head,
    opus_tags,
};

/// The extensions of recordings, in the order they are looked for.
const EXTENSIONS: [&str; 2] = ["wav", "opus"];

/// The store's database file in the spool.
pub(crate) const DB_FILE: &str = "voicemail.sqlite3";
/// Where the JSON files of an older spool go once imported.
pub(crate) const IMPORTED_DIR: &str = "imported-json";
/// Write buffer of a recording file: a quarter of a second of 8 kHz audio (it is most of a
/// call's memory; the syscalls it saves are few next to the packets' 50 a second).
const WAV_BUFFER_BYTES: usize = 4 * 1024;

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

    /// Where message `id`'s recording is when it is a WAV (the name used in errors about a
    /// recording of unknown format).
    pub(crate) fn wav_path(&self, id: &MessageId) -> PathBuf {
        self.dir.join(format!("{id}.wav"))
    }

    /// Where message `id`'s recording in `format` is.
    pub(crate) fn recording_path(&self, id: &MessageId, format: RecordingFormat) -> PathBuf {
        self.dir.join(format!("{id}.{}", format.extension()))
    }

    /// Creates message `id`'s recording in `format` (no recording of `id` may exist) and
    /// takes its lock.
    pub(crate) fn create_wav(&self, id: &MessageId, format: RecordingFormat) -> io::Result<LockedWav> {
        for ext in EXTENSIONS {
            if self.dir.join(format!("{id}.{ext}")).exists() {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "the message already has a recording"));
            }
        }
        let path = self.recording_path(id, format);
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

    /// Takes the lock of message `id`'s recording (whatever its format) if no live process
    /// holds it.
    pub(crate) fn claim_wav(&self, id: &MessageId) -> io::Result<Claim> {
        let mut found = None;
        for ext in EXTENSIONS {
            let path = self.dir.join(format!("{id}.{ext}"));
            match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(f) => {
                    found = Some((f, path));
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let Some((file, path)) = found else { return Ok(Claim::Missing) };
        match file.try_lock() {
            Ok(()) => Ok(Claim::Dead(LockedWav { file: Arc::new(file), path })),
            Err(TryLockError::WouldBlock) => Ok(Claim::Live),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// Removes message `id`'s recording, whatever its format (a missing file is fine).
    pub(crate) fn remove_wav(&self, id: &MessageId) -> io::Result<()> {
        for ext in EXTENSIONS {
            match fs::remove_file(self.dir.join(format!("{id}.{ext}"))) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// `<id>` of every recording (`<id>.wav`, `<id>.opus`) in the spool.
    pub(crate) fn wav_ids(&self) -> io::Result<Vec<MessageId>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let stem = name.to_str().and_then(|n| EXTENSIONS.iter().find_map(|ext| n.strip_suffix(&format!(".{ext}"))));
            if let Some(id) = stem.and_then(|s| MessageId::parse(s).ok()) {
                ids.push(id);
            }
        }
        ids.sort();
        ids.dedup();
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
    /// It starts at offset 0, where the recording starts.
    pub(crate) fn sink(&self) -> BufWriter<SharedFile> {
        BufWriter::with_capacity(WAV_BUFFER_BYTES, SharedFile { file: self.file.clone(), pos: 0 })
    }

    /// Flushes the file's data to stable storage.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    /// Repairs the recording after a crash (WAV sizes, or a torn last Ogg page); returns
    /// what it holds.
    pub(crate) fn repair(&self) -> io::Result<Repaired> {
        let opus = self.path.extension().is_some_and(|e| e == "opus");
        repair(&self.file, opus)
    }
}

/// A file handle shared by the recording's sink and the call's lease.
///
/// It keeps its own position and writes with `pwrite`: hound seeks to the header and back at
/// every checkpoint, and that costs no system call here.
#[derive(Debug)]
pub(crate) struct SharedFile {
    file: Arc<File>,
    pos: u64,
}

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for SharedFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let (base, offset) = match pos {
            SeekFrom::Start(n) => {
                self.pos = n;
                return Ok(n);
            }
            SeekFrom::Current(d) => (self.pos, d),
            SeekFrom::End(d) => (self.file.metadata()?.len(), d),
        };
        self.pos = base
            .checked_add_signed(offset)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the file"))?;
        Ok(self.pos)
    }
}

/// What a repaired recording holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Repaired {
    /// Samples of audio.
    pub(crate) samples: u64,
    /// Their rate, in Hz.
    pub(crate) rate: u32,
}

impl Repaired {
    /// The length in milliseconds.
    pub(crate) fn duration_ms(&self) -> u64 {
        self.samples * 1000 / u64::from(self.rate.max(1))
    }
}

/// The WAV layouts the engine writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WavLayout {
    /// 16-bit PCM: 44-byte header, 2 bytes per sample.
    Pcm,
    /// G.711: 58-byte header with a `fact` chunk, 1 byte per sample.
    G711(G711Law),
}

impl WavLayout {
    fn header_len(self) -> u64 {
        match self {
            WavLayout::Pcm => HEADER_LEN,
            WavLayout::G711(_) => G711_HEADER_LEN,
        }
    }

    fn bytes_per_sample(self) -> u64 {
        match self {
            WavLayout::Pcm => 2,
            WavLayout::G711(_) => 1,
        }
    }
}

/// Checks that `h` starts like a header the engine's recording writes: RIFF/WAVE, then either
/// a 16-byte PCM fmt chunk (16-bit mono) and the data chunk, or an 18-byte A-law/μ-law fmt
/// chunk (8-bit mono), a `fact` chunk and the data chunk. The sizes are not checked. Returns
/// the layout and the rate.
fn check_header(h: &[u8]) -> Result<(WavLayout, u32), &'static str> {
    if h.len() < HEADER_LEN as usize {
        return Err("shorter than a WAV header");
    }
    let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    if &h[0..4] != b"RIFF" || &h[8..12] != b"WAVE" || &h[12..16] != b"fmt " {
        return Err("not a RIFF/WAVE file with its fmt chunk first");
    }
    let rate = u32_at(24);
    if !(8000..=48_000).contains(&rate) || u16_at(22) != 1 {
        return Err("not mono audio at 8 to 48 kHz");
    }
    match (u32_at(16), u16_at(20)) {
        (16, 1) => {
            if u32_at(28) != rate * 2 || u16_at(32) != 2 || u16_at(34) != 16 {
                return Err("not 16-bit PCM");
            }
            if &h[36..40] != b"data" {
                return Err("unexpected chunk layout: data chunk does not follow fmt");
            }
            Ok((WavLayout::Pcm, rate))
        }
        (18, tag @ (6 | 7)) => {
            if h.len() < G711_HEADER_LEN as usize {
                return Err("shorter than a G.711 WAV header");
            }
            if u32_at(28) != rate || u16_at(32) != 1 || u16_at(34) != 8 {
                return Err("not 8-bit G.711");
            }
            if &h[38..42] != b"fact" || u32_at(42) != 4 || &h[50..54] != b"data" {
                return Err("unexpected chunk layout: no fact then data chunk after fmt");
            }
            Ok((WavLayout::G711(if tag == 6 { G711Law::ALaw } else { G711Law::MuLaw }), rate))
        }
        _ => Err("neither 16-bit PCM nor G.711"),
    }
}

/// Makes a recording the engine wrote valid again after a crash, then syncs it. Never panics,
/// whatever the contents; a file that is not one of ours is an `InvalidData` error and is left
/// alone.
///
/// - WAV (16-bit PCM or G.711): header sizes set from the file length (a torn partial sample
///   at the end is dropped).
/// - Ogg/Opus: cut after the last whole page whose CRC checks; that page is marked the end of
///   the stream. The length comes from its granule position.
/// - A file shorter than its headers (a crash right after creation) becomes a valid empty
///   recording of its kind (`opus`: the file is a `.opus`).
fn repair(file: &File, opus: bool) -> io::Result<Repaired> {
    let invalid = |why: &'static str| io::Error::new(io::ErrorKind::InvalidData, why);
    let mut f = file;
    let len = f.metadata()?.len();
    let mut head = Vec::with_capacity(G711_HEADER_LEN as usize);
    f.seek(SeekFrom::Start(0))?;
    f.take(G711_HEADER_LEN).read_to_end(&mut head)?;
    if head.starts_with(b"OggS") || (opus && b"OggS".starts_with(&head[..head.len().min(4)])) {
        return repair_ogg(file);
    }
    if !b"RIFF".starts_with(&head[..head.len().min(4)]) {
        return Err(invalid("not a WAV or Ogg file"));
    }
    let layout = match check_header(&head) {
        Ok(l) => l,
        // A header cut short by a crash right after creation: an empty 8 kHz WAV.
        Err(_) if len < HEADER_LEN || (len < G711_HEADER_LEN && head.get(16..20) == Some(&18u32.to_le_bytes()[..])) => {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(&empty_wav_header())?;
            f.sync_all()?;
            return Ok(Repaired { samples: 0, rate: 8000 });
        }
        Err(why) => return Err(invalid(why)),
    };
    let (layout, rate) = layout;
    let header_len = layout.header_len();
    let per = layout.bytes_per_sample();
    let on_disk = len - header_len;
    let data_len = (on_disk - on_disk % per).min(MAX_DATA_BYTES);
    let samples = data_len / per;
    let u32_at = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let riff_size = u32_at(4);
    let data_at = header_len as usize - 4;
    let intact = data_len == on_disk
        && u64::from(u32_at(data_at)) == data_len
        && u64::from(riff_size) == len - 8
        && (layout == WavLayout::Pcm || u64::from(u32_at(46)) == samples);
    if intact {
        return Ok(Repaired { samples, rate });
    }
    if data_len != on_disk {
        f.set_len(header_len + data_len)?;
    }
    let new_data = u32::try_from(data_len).map_err(|_| invalid("too large"))?;
    match layout {
        WavLayout::Pcm => {
            let new_riff = u32::try_from(data_len + HEADER_LEN - 8).map_err(|_| invalid("too large"))?;
            f.seek(SeekFrom::Start(4))?;
            f.write_all(&new_riff.to_le_bytes())?;
            f.seek(SeekFrom::Start(40))?;
            f.write_all(&new_data.to_le_bytes())?;
        }
        WavLayout::G711(law) => {
            f.seek(SeekFrom::Start(0))?;
            f.write_all(&g711_wav_header(rate, law, new_data))?;
        }
    }
    f.sync_all()?;
    Ok(Repaired { samples, rate })
}

/// The CRC-32 of Ogg pages (polynomial 0x04C11DB7, no reflection, initial value 0).
fn ogg_crc(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut r = (i as u32) << 24;
            let mut bit = 0;
            while bit < 8 {
                r = if r & 0x8000_0000 != 0 { (r << 1) ^ 0x04C1_1DB7 } else { r << 1 };
                bit += 1;
            }
            table[i] = r;
            i += 1;
        }
        table
    };
    data.iter().fold(0u32, |crc, &b| (crc << 8) ^ TABLE[((crc >> 24) as u8 ^ b) as usize])
}

/// The largest Ogg page: 27 + 255 lacing values + 255 × 255 bytes.
const MAX_OGG_PAGE: usize = 27 + 255 + 255 * 255;

/// Repairs an Ogg/Opus recording: keeps the whole, CRC-valid pages of our stream from the
/// start, cuts the rest, and marks the last page the end of the stream (its CRC recomputed).
fn repair_ogg(file: &File) -> io::Result<Repaired> {
    let mut f = file;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(0))?;
    let mut reader = io::BufReader::with_capacity(64 * 1024, f);
    let mut page = Vec::with_capacity(MAX_OGG_PAGE);
    let mut good_end = 0u64;
    let mut last: Option<(u64, Vec<u8>)> = None; // offset and bytes of the last good page
    let mut pages = 0u64;
    let mut head: Option<(u64, u32)> = None; // pre-skip, input rate
    let mut granule = 0u64;
    loop {
        page.clear();
        page.resize(27, 0);
        if reader.read_exact(&mut page[..27]).is_err() {
            break;
        }
        if &page[0..4] != b"OggS"
            || page[4] != 0
            || u32::from_le_bytes([page[14], page[15], page[16], page[17]]) != OGG_SERIAL
        {
            break;
        }
        let segments = page[26] as usize;
        page.resize(27 + segments, 0);
        if reader.read_exact(&mut page[27..]).is_err() {
            break;
        }
        let body: usize = page[27..].iter().map(|&b| usize::from(b)).sum();
        let at = page.len();
        page.resize(at + body, 0);
        if reader.read_exact(&mut page[at..]).is_err() {
            break;
        }
        let stored = u32::from_le_bytes([page[22], page[23], page[24], page[25]]);
        page[22..26].fill(0);
        if ogg_crc(&page) != stored {
            break;
        }
        page[22..26].copy_from_slice(&stored.to_le_bytes());
        if pages == 0 {
            let data = &page[at..];
            if data.len() < 19 || &data[..8] != b"OpusHead" {
                break;
            }
            let pre_skip = u64::from(u16::from_le_bytes([data[10], data[11]]));
            let rate = u32::from_le_bytes([data[12], data[13], data[14], data[15]]);
            head = Some((pre_skip, rate));
        }
        let g = u64::from_le_bytes([page[6], page[7], page[8], page[9], page[10], page[11], page[12], page[13]]);
        if g != u64::MAX {
            granule = g;
        }
        last = Some((good_end, page.clone()));
        good_end += page.len() as u64;
        pages += 1;
    }
    drop(reader);
    let (pre_skip, rate) = match head {
        Some((pre_skip, rate)) if pages >= 2 => (pre_skip, if (8000..=48_000).contains(&rate) { rate } else { 48_000 }),
        // The headers did not make it to disk: an empty Ogg/Opus file.
        _ => {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            let mut w = ogg::PacketWriter::new(Vec::new());
            w.write_packet(opus_head(0, 48_000), OGG_SERIAL, ogg::PacketWriteEndInfo::EndPage, 0)?;
            w.write_packet(opus_tags(), OGG_SERIAL, ogg::PacketWriteEndInfo::EndPage, 0)?;
            f.write_all(&w.into_inner())?;
            f.sync_all()?;
            return Ok(Repaired { samples: 0, rate: 48_000 });
        }
    };
    let samples = granule.saturating_sub(pre_skip) * u64::from(rate) / 48_000;
    let mut changed = false;
    if good_end != len {
        f.set_len(good_end)?;
        changed = true;
    }
    // Mark the last audio page as the end of the stream (the header pages stay as they are).
    if let Some((offset, mut bytes)) = last.filter(|_| pages > 2)
        && bytes[5] & 4 == 0
    {
        bytes[5] |= 4;
        bytes[22..26].fill(0);
        let crc = ogg_crc(&bytes);
        bytes[22..26].copy_from_slice(&crc.to_le_bytes());
        f.seek(SeekFrom::Start(offset))?;
        f.write_all(&bytes)?;
        changed = true;
    }
    if changed {
        f.sync_all()?;
    }
    Ok(Repaired { samples, rate })
}

/// The 44-byte header of an empty 8 kHz recording.
pub(crate) fn empty_wav_header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&36u32.to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&1u16.to_le_bytes());
    h[24..28].copy_from_slice(&8000u32.to_le_bytes());
    h[28..32].copy_from_slice(&16_000u32.to_le_bytes());
    h[32..34].copy_from_slice(&2u16.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Recording;
    use crate::codec::CodecKind;
    use crate::recording::RecordingSpec;

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
        let wav = spool.create_wav(&id, RecordingFormat::Wav).unwrap();
        let mut rec = Recording::new(wav.sink()).unwrap();
        rec.write(&[7i16; 12_000]).unwrap();
        assert!(matches!(spool.claim_wav(&id).unwrap(), Claim::Live));
        assert!(spool.create_wav(&id, RecordingFormat::Wav).is_err(), "never two recordings in one file");
        assert!(spool.create_wav(&id, RecordingFormat::Opus).is_err(), "nor two recordings of one message");
        // The sink alone keeps the lock: dropping the lease handle changes nothing.
        drop(wav);
        assert!(matches!(spool.claim_wav(&id).unwrap(), Claim::Live));
        drop(rec); // like a process that dies: the lock goes with the last handle
        let Claim::Dead(claimed) = spool.claim_wav(&id).unwrap() else { panic!("not claimable") };
        assert_eq!(claimed.repair().unwrap(), Repaired { samples: 12_000, rate: 8000 });
        assert!(matches!(spool.claim_wav(&id).unwrap(), Claim::Live), "now we hold it");
        assert!(matches!(spool.claim_wav(&MessageId::parse("m2").unwrap()).unwrap(), Claim::Missing));
    }

    #[test]
    fn repair_restores_a_torn_file() {
        let (_d, spool) = spool();
        let id = MessageId::parse("torn").unwrap();
        let wav = spool.create_wav(&id, RecordingFormat::Wav).unwrap();
        let mut rec = Recording::new(wav.sink()).unwrap();
        rec.write(&[1i16; 9_000]).unwrap(); // one checkpoint at 8000
        std::mem::forget(rec); // the buffer never reaches the file: a crash
        // Simulate data written past the last checkpoint plus a torn byte.
        {
            let mut f = OpenOptions::new().append(true).open(wav.path()).unwrap();
            f.write_all(&[0u8; 201]).unwrap();
        }
        assert_eq!(wav.repair().unwrap().samples, 8_100);
        assert_eq!(read(wav.path()).len(), 8_100);
        // Intact files are left as they are.
        assert_eq!(wav.repair().unwrap().samples, 8_100);
    }

    #[test]
    fn repair_of_a_short_or_foreign_file() {
        let (_d, spool) = spool();
        let short = spool.dir().join("short.wav");
        fs::write(&short, b"RIF").unwrap();
        let f = OpenOptions::new().read(true).write(true).open(&short).unwrap();
        assert_eq!(repair(&f, false).unwrap().samples, 0);
        assert!(read(&short).is_empty());
        let foreign = spool.dir().join("foreign.wav");
        fs::write(&foreign, vec![b'x'; 100]).unwrap();
        let f = OpenOptions::new().read(true).write(true).open(&foreign).unwrap();
        assert_eq!(repair(&f, false).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(fs::read(&foreign).unwrap(), vec![b'x'; 100], "left alone");
    }

    #[test]
    fn repair_of_g711_and_wideband_wav() {
        let (_d, spool) = spool();
        for (i, spec) in [
            RecordingSpec::for_call(RecordingFormat::WavG711, CodecKind::Pcmu, 8000),
            RecordingSpec::for_call(RecordingFormat::WavG711, CodecKind::G722, 16_000),
            RecordingSpec::for_call(RecordingFormat::Wav, CodecKind::G722, 16_000),
        ]
        .into_iter()
        .enumerate()
        {
            let id = MessageId::parse(&format!("g{i}")).unwrap();
            let wav = spool.create_wav(&id, spec.format).unwrap();
            let mut rec = Recording::with_spec(wav.sink(), spec).unwrap();
            rec.write(&[100i16; 20_000]).unwrap();
            std::mem::forget(rec); // a crash: what the buffer held is lost
            {
                let mut f = OpenOptions::new().append(true).open(wav.path()).unwrap();
                f.write_all(&[0x55u8; 301]).unwrap();
            }
            let repaired = wav.repair().unwrap();
            assert_eq!(repaired.rate, spec.sample_rate_hz);
            let per = if spec.format == RecordingFormat::Wav { 2 } else { 1 };
            let header = if per == 2 { HEADER_LEN } else { G711_HEADER_LEN };
            let len = fs::metadata(wav.path()).unwrap().len();
            assert_eq!(repaired.samples, (len - header) / per);
            assert!(repaired.samples >= u64::from(spec.sample_rate_hz), "at least the first second");
            assert_eq!(wav.repair().unwrap(), repaired, "idempotent");
            if per == 2 {
                assert_eq!(read(wav.path()).len() as u64, repaired.samples);
            }
        }
    }

    #[test]
    fn repair_of_a_torn_ogg_opus_file() {
        let (_d, spool) = spool();
        let id = MessageId::parse("ogg").unwrap();
        let wav = spool.create_wav(&id, RecordingFormat::Opus).unwrap();
        assert!(wav.path().to_str().unwrap().ends_with("ogg.opus"));
        let spec = RecordingSpec::for_call(RecordingFormat::Opus, CodecKind::Opus, 16_000);
        let mut rec = Recording::with_spec(wav.sink(), spec).unwrap();
        let tone: Vec<i16> = (0..40_000).map(|i| ((i as f64 * 0.1).sin() * 5000.0) as i16).collect();
        rec.write(&tone).unwrap(); // two whole seconds on disk, half a second in memory
        std::mem::forget(rec);
        let whole = fs::read(wav.path()).unwrap();
        // A torn page after the last whole one.
        {
            let mut f = OpenOptions::new().append(true).open(wav.path()).unwrap();
            f.write_all(&whole[whole.len() - 100..]).unwrap();
        }
        let repaired = wav.repair().unwrap();
        assert_eq!(repaired, Repaired { samples: 32_000, rate: 16_000 });
        let after = fs::read(wav.path()).unwrap();
        assert_eq!(after.len(), whole.len(), "the torn page is cut");
        assert_eq!(wav.repair().unwrap(), repaired, "idempotent");
        assert_eq!(after, fs::read(wav.path()).unwrap());
        // A file cut inside its headers becomes an empty Ogg/Opus file.
        let cut = spool.dir().join("cut.opus");
        fs::write(&cut, &whole[..30]).unwrap();
        let f = OpenOptions::new().read(true).write(true).open(&cut).unwrap();
        assert_eq!(repair(&f, true).unwrap().samples, 0);
        assert!(fs::read(&cut).unwrap().starts_with(b"OggS"));
        // Random bytes after "OggS" never panic.
        let junk = spool.dir().join("junk.opus");
        let mut bytes = b"OggS".to_vec();
        bytes.extend((0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        fs::write(&junk, &bytes).unwrap();
        let f = OpenOptions::new().read(true).write(true).open(&junk).unwrap();
        assert_eq!(repair(&f, true).unwrap().samples, 0);
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
