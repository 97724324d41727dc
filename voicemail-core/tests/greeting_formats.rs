//! Greetings load from every supported container (WAV, FLAC, MP3, Ogg/Vorbis) at any sample
//! rate and channel count, and come out as 8 kHz mono of the right length and pitch; an 8 kHz
//! WAV passes through sample-exact. Every failure (missing file, empty audio, garbage,
//! truncated or corrupted files, random bytes) is an error at load time, never a panic.
//! The bundled greeting and the beep are valid, the per-codec encodings equal the codec's
//! own output, and clones share one copy of the audio.

#![allow(clippy::unwrap_used)] // Tests may unwrap (STYLE.md).

use std::path::PathBuf;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use voicemail_core::greeting::{GreetingError, Prompt};
use voicemail_core::{Codec, CodecKind};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/greeting").join(name)
}

/// The frequency estimated from rising zero crossings of 8 kHz audio.
fn frequency(pcm: &[i16]) -> f64 {
    let rising = pcm.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
    rising as f64 * 8000.0 / pcm.len() as f64
}

fn rms(pcm: &[i16]) -> f64 {
    (pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / pcm.len() as f64).sqrt()
}

/// Loads a 440 Hz fixture of `seconds` and checks length (±1 %), pitch and level.
/// `level` is the tone's amplitude as a fraction of full scale after the mono downmix.
fn check_tone(file: &str, seconds: f64, level: f64) -> Result<Prompt, GreetingError> {
    let prompt = Prompt::load(&fixture(file))?;
    let expected = seconds * 8000.0;
    let len = prompt.samples() as f64;
    assert!((len - expected).abs() <= expected * 0.01, "{file}: {len} samples, expected {expected}");
    assert_eq!(prompt.duration(), Duration::from_nanos(prompt.samples() as u64 * 125_000));
    let f = frequency(prompt.pcm());
    assert!((f - 440.0).abs() < 440.0 * 0.02, "{file}: dominant frequency {f} Hz");
    // A sine's RMS is its amplitude / sqrt(2); lossy codecs and resampling stay within 10 %.
    let want_rms = level * 32768.0 / 2f64.sqrt();
    let got_rms = rms(prompt.pcm());
    assert!((got_rms - want_rms).abs() < want_rms * 0.1, "{file}: rms {got_rms}, expected {want_rms}");
    Ok(prompt)
}

#[test]
fn wav_22050_stereo_is_downmixed_and_resampled() -> Result<(), GreetingError> {
    // Left is a 0.5 tone, right is silent: the average is a 0.25 tone.
    let prompt = check_tone("tone-22050-stereo.wav", 0.25, 0.25)?;
    assert_eq!(prompt.name(), "tone-22050-stereo");
    Ok(())
}

#[test]
fn flac_44100_mono_loads() -> Result<(), GreetingError> {
    check_tone("tone-44100-mono.flac", 0.25, 0.5).map(drop)
}

#[test]
fn mp3_24000_mono_loads() -> Result<(), GreetingError> {
    check_tone("tone-24000-mono.mp3", 0.5, 0.5).map(drop)
}

#[test]
fn ogg_vorbis_48000_mono_loads() -> Result<(), GreetingError> {
    check_tone("tone-48000-mono.ogg", 0.5, 0.5).map(drop)
}

#[test]
fn wav_8000_mono_is_sample_exact() -> Result<(), GreetingError> {
    let prompt = check_tone("tone-8000-mono.wav", 0.25, 0.5)?;
    let expected: Vec<i16> =
        hound::WavReader::open(fixture("tone-8000-mono.wav")).unwrap().samples::<i16>().map(Result::unwrap).collect();
    assert_eq!(prompt.pcm(), &expected[..]);
    Ok(())
}

#[test]
fn from_encoded_bytes_matches_load() -> Result<(), GreetingError> {
    for file in ["tone-22050-stereo.wav", "tone-44100-mono.flac", "tone-24000-mono.mp3", "tone-48000-mono.ogg"] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        let ext = file.rsplit('.').next();
        let from_memory = Prompt::from_encoded_bytes("mem", bytes.clone(), ext)?;
        assert_eq!(from_memory.pcm(), Prompt::load(&fixture(file))?.pcm(), "{file}");
        assert_eq!(from_memory.name(), "mem");
        // Probing works without the hint too.
        assert_eq!(Prompt::from_encoded_bytes("mem", bytes, None)?.pcm(), from_memory.pcm(), "{file}");
    }
    Ok(())
}

#[test]
fn empty_wav_is_empty() {
    match Prompt::load(&fixture("empty.wav")) {
        Err(GreetingError::Empty { name }) => assert!(name.ends_with("empty.wav"), "{name}"),
        other => panic!("expected Empty, got {other:?}"),
    }
}

#[test]
fn garbage_is_a_decode_error() {
    match Prompt::load(&fixture("garbage.wav")) {
        Err(GreetingError::Decode { name, reason }) => {
            assert!(name.ends_with("garbage.wav"), "{name}");
            assert!(!reason.is_empty());
        }
        other => panic!("expected Decode, got {other:?}"),
    }
}

#[test]
fn missing_file_is_an_io_error() {
    let path = fixture("does-not-exist.wav");
    match Prompt::load(&path) {
        Err(GreetingError::Io { path: p, source }) => {
            assert_eq!(p, path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Io, got {other:?}"),
    }
    // A directory cannot be read as a file either.
    assert!(matches!(Prompt::load(&fixture("")), Err(GreetingError::Io { .. })));
}

#[test]
fn random_bytes_are_rejected_without_panicking() {
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    for round in 0..200 {
        let mut bytes = vec![0u8; rng.random_range(0..8192)];
        rng.fill(&mut bytes[..]);
        let hint = ["wav", "mp3", "flac", "ogg", "bin"][round % 5];
        match Prompt::from_encoded_bytes("random", bytes, Some(hint)) {
            Err(GreetingError::Decode { .. } | GreetingError::Empty { .. }) => {}
            other => panic!("round {round} ({hint}): expected an error, got {other:?}"),
        }
    }
}

#[test]
fn truncated_files_fail_or_load_without_panicking() {
    for file in ["tone-22050-stereo.wav", "tone-44100-mono.flac", "tone-24000-mono.mp3", "tone-48000-mono.ogg"] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        let ext = file.rsplit('.').next();
        for cut in (0..bytes.len()).step_by(97).chain([bytes.len() - 1]) {
            if let Ok(prompt) = Prompt::from_encoded_bytes(file, bytes[..cut].to_vec(), ext) {
                // Whatever survives is a real prompt: no longer than the whole file.
                assert!(prompt.samples() > 0);
                assert!(prompt.samples() <= 4020, "{file} cut at {cut}: {} samples", prompt.samples());
            }
        }
    }
}

#[test]
fn corrupted_files_fail_or_load_without_panicking() {
    let mut rng = SmallRng::seed_from_u64(7);
    for file in ["tone-22050-stereo.wav", "tone-44100-mono.flac", "tone-24000-mono.mp3", "tone-48000-mono.ogg"] {
        let original = std::fs::read(fixture(file)).unwrap();
        let ext = file.rsplit('.').next();
        for _ in 0..50 {
            let mut bytes = original.clone();
            for _ in 0..rng.random_range(1..32) {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = rng.random();
            }
            // Either outcome is fine; panicking or hanging is not.
            let _ = Prompt::from_encoded_bytes(file, bytes, ext);
        }
    }
}

#[test]
fn default_greeting_loads() {
    let greeting = Prompt::default_greeting();
    let secs = greeting.duration().as_secs_f64();
    assert!((3.0..=6.0).contains(&secs), "default greeting is {secs} s");
    assert_eq!(greeting.name(), "default-greeting");
    // Speech, not silence.
    assert!(rms(greeting.pcm()) > 1000.0);
    // Every call shares the one decoded copy.
    assert_eq!(Prompt::default_greeting().pcm().as_ptr(), greeting.pcm().as_ptr());
}

#[test]
fn beep_length_and_frequency() -> Result<(), GreetingError> {
    let beep = Prompt::beep(440.0, Duration::from_millis(300))?;
    assert_eq!(beep.name(), "beep");
    assert_eq!(beep.samples(), 2400);
    assert_eq!(beep.duration(), Duration::from_millis(300));
    assert!((frequency(beep.pcm()) - 440.0).abs() < 440.0 * 0.02);
    // -6 dBFS peak, faded in from and out to silence.
    let peak = beep.pcm().iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
    assert!((16_000..=16_423).contains(&peak), "peak {peak}");
    assert!(beep.pcm()[0].unsigned_abs() < 100 && beep.pcm()[2399].unsigned_abs() < 500);
    Ok(())
}

#[test]
fn invalid_beeps_are_rejected() {
    for (f, len) in [(0.0, 100), (-440.0, 100), (4000.0, 100), (f32::NAN, 100), (440.0, 0)] {
        let result = Prompt::beep(f, Duration::from_millis(len));
        assert!(matches!(result, Err(GreetingError::InvalidTone(_))), "{f} Hz, {len} ms: {result:?}");
    }
}

#[test]
fn encoded_equals_codec_output() -> Result<(), GreetingError> {
    let prompt = Prompt::load(&fixture("tone-44100-mono.flac"))?;
    // The fixed-rate codecs, each from the prompt's audio at its rate (G.722: 16 kHz).
    for codec in CodecKind::ALL.into_iter().filter(|c| c.is_fixed_rate()) {
        let mut expected = Vec::new();
        codec.encode(prompt.pcm_at(codec.sample_rate_hz()).expect("8 or 16 kHz"), &mut expected);
        assert_eq!(prompt.encoded(codec).as_ref(), &expected[..], "{codec}");
    }
    assert_eq!(prompt.encoded(CodecKind::Pcmu).len(), prompt.samples());
    assert_eq!(prompt.encoded(CodecKind::L16).len(), 2 * prompt.samples());
    Ok(())
}

#[test]
fn clones_share_one_allocation() -> Result<(), GreetingError> {
    let prompt = Prompt::from_pcm("shared", vec![100; 800])?;
    let clone = prompt.clone();
    let other_thread = std::thread::spawn(move || clone.encoded(CodecKind::Pcma).as_ptr() as usize).join().unwrap();
    assert_eq!(other_thread, prompt.encoded(CodecKind::Pcma).as_ptr() as usize);
    let clone = prompt.clone();
    assert_eq!(clone.pcm().as_ptr(), prompt.pcm().as_ptr());
    for codec in CodecKind::ALL {
        assert_eq!(clone.encoded(codec).as_ptr(), prompt.encoded(codec).as_ptr());
    }
    Ok(())
}

#[test]
fn from_pcm_rejects_empty() {
    assert!(matches!(Prompt::from_pcm("none", Vec::new()), Err(GreetingError::Empty { .. })));
}

#[test]
fn decoder_panic_on_crafted_header_is_a_decode_error() {
    // 65535 channels overflow a multiplication inside symphonia's WAV reader (a panic in
    // debug builds, found by corrupting fixtures); it must surface as an ordinary error.
    match Prompt::load(&fixture("crash-wav-channel-overflow.wav")) {
        Err(GreetingError::Decode { .. }) => {}
        other => panic!("expected Decode, got {other:?}"),
    }
}
