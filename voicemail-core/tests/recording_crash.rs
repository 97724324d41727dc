//! Crash safety of recordings on a real file system.
//!
//! Proves the guarantee stated in `voicemail_core::recording`: if the process dies at any
//! moment after `Recording::create` (simulated by `std::mem::forget`, so neither hound's nor
//! the buffer's destructor runs), the file on disk is a valid WAV that hound reads without
//! error, holding exactly the samples up to the last whole second written (so at most 7999
//! samples, < 1 s, are missing); `repair_wav` then recovers every sample that left the 8 KiB
//! write buffer (all but < 4096 samples). A finalized file torn mid-data is repaired to its
//! whole remaining samples; intact files are left alone; garbage and foreign layouts are
//! `NotRepairable` without panics; `recover_spool` repairs a directory and skips the rest.

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use voicemail_core::Recording;
use voicemail_core::recording::{self, RecordingError, RepairOutcome};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("voicemail-recording-crash-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A recognisable, non-silent signal.
fn signal(n: usize) -> Vec<i16> {
    (0..n).map(|i| i16::try_from(i % 20_000).unwrap_or(0) - 10_000).collect()
}

/// Reads a WAV from bytes with hound: its spec and all its samples (errors if torn).
fn read_wav(bytes: Vec<u8>) -> Result<(hound::WavSpec, Vec<i16>), hound::Error> {
    let reader = hound::WavReader::new(Cursor::new(bytes))?;
    let spec = reader.spec();
    let samples = reader.into_samples::<i16>().collect::<Result<Vec<_>, _>>()?;
    Ok((spec, samples))
}

fn read_file(path: &Path) -> Result<Vec<i16>, Box<dyn std::error::Error>> {
    let (spec, samples) = read_wav(fs::read(path)?)?;
    assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (1, 8000, 16));
    Ok(samples)
}

/// Writes `samples` in 20 ms frames, then finalizes.
fn finalized(path: &Path, samples: &[i16]) -> TestResult {
    let mut rec = Recording::create(path)?;
    for frame in samples.chunks(160) {
        rec.write(frame)?;
    }
    assert_eq!(rec.finalize()?, samples.len() as u64);
    Ok(())
}

#[test]
fn process_crash_at_any_moment_leaves_a_valid_wav() -> TestResult {
    let dir = TempDir::new("any-moment")?;
    let path = dir.path("call.wav");
    let audio = signal(20_000); // 2.5 s
    let mut rec = Recording::create(&path)?;
    assert_eq!(rec.path(), Some(path.as_path()));
    // Right after create: a valid empty WAV.
    assert!(read_file(&path)?.is_empty());
    let snapshot = dir.path("snapshot.wav");
    let mut written = 0usize;
    for frame in audio.chunks(160) {
        rec.write(frame)?;
        written += frame.len();
        // The bytes on disk at this moment are what a crash right now would leave.
        let on_disk = read_file(&path)?;
        let checkpointed = written / 8000 * 8000;
        assert_eq!(on_disk.len(), checkpointed, "after {written} samples");
        assert!(written - on_disk.len() < 8000, "less than one second lost");
        assert_eq!(on_disk[..], audio[..checkpointed]);
        // Repairing a copy of them recovers all but the buffered tail.
        fs::copy(&path, &snapshot)?;
        let outcome = recording::repair_wav(&snapshot)?;
        let repaired = read_file(&snapshot)?;
        assert!(
            repaired.len() >= checkpointed.max(written.saturating_sub(4096)),
            "after {written} samples, {outcome:?}"
        );
        assert!(repaired.len() <= written);
        assert_eq!(repaired[..], audio[..repaired.len()]);
        if repaired.len() == checkpointed {
            assert_eq!(outcome, RepairOutcome::Intact);
        } else {
            assert_eq!(outcome, RepairOutcome::Repaired { samples: repaired.len() as u64 });
        }
        fs::remove_file(&snapshot)?;
    }
    assert_eq!(rec.samples(), 20_000);

    // The crash: no finalize, no destructors.
    std::mem::forget(rec);
    let after_crash = read_file(&path)?;
    assert_eq!(after_crash.len(), 16_000, "2 s of the 2.5 s are declared");
    assert!(after_crash.len() >= 12_000, "at least 1.5 s survive");
    assert_eq!(after_crash[..], audio[..16_000]);

    // Repair adds back whatever reached the file past the last header update (here the
    // 0.5 s after it all fit in the write buffer, so the file may already be intact).
    recording::repair_wav(&path)?;
    let repaired = read_file(&path)?;
    assert!(repaired.len() >= 20_000 - 4096, "{}", repaired.len());
    assert_eq!(repaired[..], audio[..repaired.len()]);
    assert_eq!(recording::repair_wav(&path)?, RepairOutcome::Intact);
    Ok(())
}

#[test]
fn crash_during_silence_and_long_writes() -> TestResult {
    let dir = TempDir::new("silence")?;
    let path = dir.path("call.wav");
    let mut rec = Recording::create(&path)?;
    rec.write(&signal(3000))?;
    rec.write_silence(30_000)?; // crosses three checkpoints in one call
    rec.write(&signal(7000))?;
    std::mem::forget(rec);
    let on_disk = read_file(&path)?;
    assert_eq!(on_disk.len(), 40_000, "last checkpoint at 5 s");
    assert!(on_disk[3000..33_000].iter().all(|&s| s == 0));
    Ok(())
}

#[test]
fn empty_recordings_are_valid() -> TestResult {
    let dir = TempDir::new("empty")?;
    // Finalized with no audio (the caller hung up during the greeting).
    let path = dir.path("empty.wav");
    assert_eq!(Recording::create(&path)?.finalize()?, 0);
    assert!(read_file(&path)?.is_empty());
    assert_eq!(fs::metadata(&path)?.len(), 44);
    assert_eq!(recording::repair_wav(&path)?, RepairOutcome::Intact);
    // Abandoned right after creation.
    let path = dir.path("abandoned.wav");
    std::mem::forget(Recording::create(&path)?);
    assert!(read_file(&path)?.is_empty());
    assert_eq!(recording::repair_wav(&path)?, RepairOutcome::Intact);
    // Dropped without finalize.
    let path = dir.path("dropped.wav");
    let mut rec = Recording::create(&path)?;
    rec.write(&signal(100))?;
    drop(rec);
    assert_eq!(read_file(&path)?.len(), 100);
    Ok(())
}

#[test]
fn create_refuses_an_existing_file() -> TestResult {
    let dir = TempDir::new("exists")?;
    let path = dir.path("taken.wav");
    fs::write(&path, b"someone else's message")?;
    match Recording::create(&path) {
        Err(RecordingError::Io { path: p, source }) => {
            assert_eq!(p.as_deref(), Some(path.as_path()));
            assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists);
        }
        other => return Err(format!("expected AlreadyExists, got {other:?}").into()),
    }
    assert_eq!(fs::read(&path)?, b"someone else's message", "untouched");
    Ok(())
}

#[test]
fn torn_file_is_repaired_to_its_whole_samples() -> TestResult {
    let dir = TempDir::new("torn")?;
    let audio = signal(12_000);
    for cut in [0u64, 1, 2, 5001, 10_000, 23_999] {
        let path = dir.path(&format!("torn-{cut}.wav"));
        finalized(&path, &audio)?;
        let file = fs::OpenOptions::new().write(true).open(&path)?;
        file.set_len(44 + cut)?;
        drop(file);
        // Torn: the header promises 12000 samples that are not there.
        assert!(read_wav(fs::read(&path)?).is_err(), "cut {cut}");

        let whole = cut / 2;
        assert_eq!(recording::repair_wav(&path)?, RepairOutcome::Repaired { samples: whole }, "cut {cut}");
        assert_eq!(fs::metadata(&path)?.len(), 44 + 2 * whole, "odd byte dropped");
        let samples = read_file(&path)?;
        assert_eq!(samples.len() as u64, whole);
        assert_eq!(samples[..], audio[..samples.len()]);
        assert_eq!(recording::repair_wav(&path)?, RepairOutcome::Intact);
    }
    Ok(())
}

#[test]
fn intact_file_is_left_alone() -> TestResult {
    let dir = TempDir::new("intact")?;
    let path = dir.path("ok.wav");
    finalized(&path, &signal(8000 * 3 + 17))?;
    let before = fs::read(&path)?;
    assert_eq!(recording::repair_wav(&path)?, RepairOutcome::Intact);
    assert_eq!(fs::read(&path)?, before);
    // Read-only: Intact needs no write access.
    let mut perms = fs::metadata(&path)?.permissions();
    perms.set_readonly(true);
    fs::set_permissions(&path, perms)?;
    assert_eq!(recording::repair_wav(&path)?, RepairOutcome::Intact);
    Ok(())
}

/// `Ok(NotRepairable)` or an error message.
fn expect_not_repairable(path: &Path) -> TestResult {
    match recording::repair_wav(path) {
        Err(RecordingError::NotRepairable { path: p, reason }) => {
            assert_eq!(p, path);
            assert!(!reason.is_empty());
            Ok(())
        }
        other => Err(format!("{}: expected NotRepairable, got {other:?}", path.display()).into()),
    }
}

#[test]
fn garbage_and_foreign_files_are_not_repairable() -> TestResult {
    let dir = TempDir::new("garbage")?;
    let mut ours = Vec::new();
    {
        let path = dir.path("ours.wav");
        finalized(&path, &signal(100))?;
        ours.extend(fs::read(&path)?);
    }
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.wav", Vec::new()),
        ("short.wav", b"RIFF\x24\0\0\0WAVE".to_vec()),
        ("header-only-43.wav", ours[..43].to_vec()),
        ("text.wav", b"this is not audio, it is a long enough text file".to_vec()),
        ("rifx.wav", [b"RIFX".as_slice(), &ours[4..]].concat()),
        ("avi.wav", [&ours[..8], b"AVI ".as_slice(), &ours[12..]].concat()),
    ];
    // A WAV hound writes in another format (16 kHz stereo) is foreign.
    let mut other = Cursor::new(Vec::new());
    {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut other, spec)?;
        for s in signal(200) {
            w.write_sample(s)?;
        }
        w.finalize()?;
    }
    cases.push(("stereo-16k.wav", other.into_inner()));
    // Our format, but with a LIST chunk before the data: a layout we never write.
    let mut list = ours[..36].to_vec();
    list.extend_from_slice(b"LIST\x04\0\0\0INFO");
    list.extend_from_slice(&ours[36..]);
    cases.push(("list-chunk.wav", list));
    // 8-bit and float headers.
    let mut eight = ours.clone();
    eight[34] = 8;
    cases.push(("8-bit.wav", eight));
    let mut float = ours.clone();
    float[20] = 3;
    cases.push(("float.wav", float));

    for (name, bytes) in &cases {
        let path = dir.path(name);
        fs::write(&path, bytes)?;
        expect_not_repairable(&path)?;
        assert_eq!(&fs::read(&path)?, bytes, "{name}: untouched");
    }

    // A directory named like a WAV and a missing file.
    let sub = dir.path("dir.wav");
    fs::create_dir(&sub)?;
    assert!(recording::repair_wav(&sub).is_err());
    assert!(matches!(recording::repair_wav(&dir.path("missing.wav")), Err(RecordingError::Io { .. })));

    // Random garbage, and our header with random bytes changed: never a panic.
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    let path = dir.path("random.wav");
    for round in 0..300 {
        let bytes: Vec<u8> = if round % 2 == 0 {
            let len = rng.random_range(0..200);
            (0..len).map(|_| rng.random()).collect()
        } else {
            let mut b = ours.clone();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..44);
                b[i] = rng.random();
            }
            let len = rng.random_range(0..=b.len());
            b.truncate(len);
            b
        };
        fs::write(&path, &bytes)?;
        if let Ok(RepairOutcome::Repaired { .. } | RepairOutcome::Intact) = recording::repair_wav(&path) {
            // Whatever was accepted is now a WAV hound can read.
            read_file(&path)?;
        }
    }
    Ok(())
}

#[test]
fn recover_spool_repairs_what_it_can() -> TestResult {
    let dir = TempDir::new("spool")?;
    let audio = signal(20_000);

    let intact = dir.path("a-intact.wav");
    finalized(&intact, &audio)?;

    let torn = dir.path("b-torn.wav");
    finalized(&torn, &audio)?;
    fs::OpenOptions::new().write(true).open(&torn)?.set_len(44 + 10_001)?;

    // 2.75 s, crashed: 2 s declared, 0.5 s more on disk past the header, the rest buffered.
    let crashed = dir.path("c-crashed.wav");
    let mut rec = Recording::create(&crashed)?;
    rec.write(&signal(22_000))?;
    std::mem::forget(rec);

    let upper = dir.path("d-UPPER.WAV");
    finalized(&upper, &audio)?;
    fs::OpenOptions::new().write(true).open(&upper)?.set_len(44 + 4000)?;

    let garbage = dir.path("e-garbage.wav");
    fs::write(&garbage, b"not a wav")?;
    let text = dir.path("notes.txt");
    fs::write(&text, b"RIFF")?;
    fs::create_dir(dir.path("nested.wav"))?;
    let nested = dir.path("nested.wav").join("deep.wav");
    finalized(&nested, &audio)?;
    fs::OpenOptions::new().write(true).open(&nested)?.set_len(100)?;

    let repaired = recording::recover_spool(&dir.0)?;
    let names: Vec<String> =
        repaired.iter().filter_map(|(p, _)| p.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
    assert_eq!(names, ["b-torn.wav", "c-crashed.wav", "d-UPPER.WAV"]);
    assert_eq!(repaired[0].1, RepairOutcome::Repaired { samples: 5000 });
    let RepairOutcome::Repaired { samples } = repaired[1].1 else {
        return Err("crashed file not repaired".into());
    };
    assert!((22_000 - 4096..22_000).contains(&samples), "{samples}");
    assert_eq!(repaired[2].1, RepairOutcome::Repaired { samples: 2000 });
    for path in [&intact, &torn, &crashed, &upper] {
        let samples = read_file(path)?;
        assert_eq!(samples[..], audio[..samples.len()], "{}", path.display());
    }
    assert_eq!(read_file(&intact)?.len(), 20_000);
    // Skipped files are untouched; the spool is not searched recursively.
    assert_eq!(fs::read(&garbage)?, b"not a wav");
    assert_eq!(fs::metadata(&nested)?.len(), 100);

    // A second pass finds nothing left to do.
    assert!(recording::recover_spool(&dir.0)?.is_empty());
    // A missing spool directory is an error.
    assert!(recording::recover_spool(&dir.path("no-such-dir")).is_err());
    Ok(())
}
