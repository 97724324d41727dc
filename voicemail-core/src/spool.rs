//! The spool: where every message is written before anything else happens.
//!
//! For message `<id>` the spool holds `<id>.wav` (streamed during the call, valid at every
//! moment; see [`crate::recording`]) and `<id>.json` (the [`MessageMeta`], written atomically
//! when the call ends). While a call is in progress a provisional `<id>.json.partial` holds
//! what is known from the start (caller, time, greeting), so a crash mid-call loses neither
//! the audio nor who called: [`Spool::recover`] repairs the WAV and completes the metadata
//! with [`EndReason::Interrupted`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::durable::write_atomic;
use crate::message::{EndReason, MessageMeta};
use crate::recording::{RepairOutcome, repair_wav};

const PARTIAL: &str = "json.partial";

/// A spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Opens (creating if needed) the spool directory.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where message `id`'s recording goes. `id` must be one of ours (no path separators).
    pub fn wav_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.wav"))
    }

    /// Where message `id`'s metadata goes.
    pub fn meta_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Records that a call started: writes the provisional metadata.
    pub fn begin(&self, provisional: &MessageMeta) -> io::Result<()> {
        let path = self.dir.join(format!("{}.{PARTIAL}", provisional.id));
        write_atomic(&path, &to_json(provisional)?)
    }

    /// Records that a call ended: writes `<id>.json` atomically and removes the provisional
    /// file. Returns the metadata file's path.
    pub fn finish(&self, meta: &MessageMeta) -> io::Result<PathBuf> {
        let path = self.meta_path(&meta.id);
        write_atomic(&path, &to_json(meta)?)?;
        match fs::remove_file(self.dir.join(format!("{}.{PARTIAL}", meta.id))) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        Ok(path)
    }

    /// Start-up recovery after a crash: repairs torn WAVs of calls that were in progress and
    /// completes their metadata (duration from the WAV, end reason `interrupted`). Returns
    /// the recovered messages; they still need routing.
    pub fn recover(&self) -> io::Result<Vec<MessageMeta>> {
        let mut recovered = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let Some(id) = name.strip_suffix(&format!(".{PARTIAL}")) else { continue };
            if self.meta_path(id).exists() {
                // The call finished; only the clean-up of the provisional file was lost.
                let _ = fs::remove_file(&path);
                continue;
            }
            let mut meta: MessageMeta = match fs::read(&path).map(|b| serde_json::from_slice(&b)) {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable provisional metadata kept as is");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let wav = self.wav_path(id);
            let samples = match repair_wav(&wav) {
                Ok(RepairOutcome::Intact) => wav_samples(&wav).unwrap_or(0),
                Ok(RepairOutcome::Repaired { samples }) => samples,
                Err(e) => {
                    tracing::warn!(path = %wav.display(), error = %e, "recording of an interrupted call is not repairable");
                    0
                }
            };
            meta.duration_ms = samples * 1000 / 8000;
            meta.end_reason = EndReason::Interrupted;
            meta.wav_path = Some(wav).filter(|p| p.exists());
            self.finish(&meta)?;
            tracing::warn!(id = %meta.id, duration_ms = meta.duration_ms, "recovered the message of an interrupted call");
            recovered.push(meta);
        }
        recovered.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(recovered)
    }
}

fn wav_samples(path: &Path) -> Option<u64> {
    let len = fs::metadata(path).ok()?.len();
    Some(len.saturating_sub(44) / 2)
}

fn to_json(meta: &MessageMeta) -> io::Result<Vec<u8>> {
    serde_json::to_vec_pretty(meta).map_err(io::Error::other)
}
