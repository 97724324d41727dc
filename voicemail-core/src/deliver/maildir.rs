//! Delivery into a Maildir++ folder on the local file system.
//!
//! A message is stored under a file name derived from its `Message-ID`
//! (`voicemail.<id>.<hash>`), not the usual time/pid/host name the `maildir` crate's
//! `store_new` picks. That makes delivery idempotent: before storing a message that an
//! earlier attempt may have stored ([`OutgoingEmail::may_be_stored`]: a retry, or an attempt
//! whose process crashed), `new/` and `cur/` are scanned for that name (also with a
//! `:2,flags` or `,S=size` suffix, which mail readers and Dovecot add when they move or index
//! a message), and the retry acknowledges the copy it finds instead of storing a second one.
//! A first attempt skips the scan, whose cost grows with the folder (a shared folder keeps
//! every message until it is called back). The write itself follows the Maildir
//! protocol like `store_new`: write into `tmp/`, `fsync` the file, `rename` into `new/`, and
//! then also `fsync` the `new/` directory so the rename survives a power loss (once for a
//! batch of messages when the mailbox delivers several: [`Target::sync`]). The `maildir`
//! crate creates the root's and the folder's `tmp/new/cur` directories.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Ack, DeliveryError, MaildirTarget, OutgoingEmail, Target, fnv1a64};

impl MaildirTarget {
    /// The folder's directory: `<root>/.<folder>`.
    pub fn folder_path(&self) -> PathBuf {
        self.root.join(format!(".{}", self.folder))
    }

    /// The file name (without flags) a message is stored under in this folder.
    pub fn file_name_for(email: &OutgoingEmail) -> String {
        let safe: String = email
            .voicemail_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            .take(64)
            .collect();
        format!("voicemail.{safe}.{:016x}", fnv1a64(email.message_id.as_bytes()))
    }

    /// Creates the root's own `tmp/new/cur`, the folder's, and the folder's `maildirfolder`
    /// marker (Maildir++), then syncs the directories so they survive a crash.
    fn create_folder(&self, dir: &Path) -> Result<(), DeliveryError> {
        let md = maildir::Maildir::from(self.root.clone());
        let as_io = |e: maildir::MaildirError| std::io::Error::other(e.to_string());
        md.create_dirs().map_err(io_err(&self.root))?;
        md.create_subfolder_dirs(&format!(".{}", self.folder)).map_err(|e| io_err(dir)(as_io(e)))?;
        let marker = dir.join("maildirfolder");
        if !marker.exists() {
            fs::File::create(&marker).and_then(|f| f.sync_all()).map_err(io_err(&marker))?;
        }
        sync_dir(dir)?;
        sync_dir(&self.root)
    }

    fn check_folder_name(&self) -> Result<(), DeliveryError> {
        let f = &self.folder;
        if f.is_empty() || f.starts_with('.') || f.contains(['/', '\\']) || f.chars().any(char::is_control) {
            return Err(DeliveryError::Config(format!(
                "maildir folder {f:?} must be a non-empty Maildir++ name without '/' or a leading '.'"
            )));
        }
        Ok(())
    }
}

/// The messages written at once ([`Target::concurrency`]).
const CONCURRENCY: usize = 64;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DeliveryError + '_ {
    move |source| DeliveryError::Maildir { path: path.to_owned(), source }
}

fn sync_dir(path: &Path) -> Result<(), DeliveryError> {
    fs::File::open(path).and_then(|d| d.sync_all()).map_err(io_err(path))
}

/// Looks for `name` (optionally followed by `:` or `,` and more) in `dir`.
fn find_in(dir: &Path, name: &str) -> Result<Option<PathBuf>, DeliveryError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else { continue };
        if let Some(rest) = file_name.strip_prefix(name)
            && (rest.is_empty() || rest.starts_with(':') || rest.starts_with(','))
        {
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

impl Target for MaildirTarget {
    fn key(&self) -> String {
        "maildir".to_owned()
    }

    fn deliver(&self, email: &OutgoingEmail) -> Result<Ack, DeliveryError> {
        let ack = self.deliver_unsynced(email)?;
        self.sync()?;
        Ok(ack)
    }

    /// Stores the message like [`Target::deliver`] but leaves the `fsync` of `new/`, which
    /// makes the rename durable, to [`Target::sync`]: one for a batch of messages.
    fn deliver_unsynced(&self, email: &OutgoingEmail) -> Result<Ack, DeliveryError> {
        self.check_folder_name()?;
        let dir = self.folder_path();
        if !dir.join("new").is_dir() {
            self.create_folder(&dir)?;
        }

        let name = Self::file_name_for(email);
        // Reading the folder costs as much as the folder holds: only a retry does it.
        let earlier = if email.may_be_stored {
            match find_in(&dir.join("new"), &name)? {
                Some(found) => Some(found),
                None => find_in(&dir.join("cur"), &name)?,
            }
        } else {
            None
        };
        if let Some(found) = earlier {
            return Ok(Ack { detail: format!("already stored as {}", found.display()), already_present: true });
        }

        let tmp = dir.join("tmp").join(&name);
        let new = dir.join("new").join(&name);
        {
            let open = || fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp);
            let mut f = match open() {
                // `new/` is there but `tmp/` is not (yet): another thread or process is creating
                // the folder right now (`cur`, `new`, then `tmp`), or one crashed doing it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.create_folder(&dir)?;
                    open()
                }
                other => other,
            }
            .map_err(io_err(&tmp))?;
            f.write_all(&email.bytes).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &new).map_err(io_err(&new))?;
        Ok(Ack { detail: format!("stored as {}", new.display()), already_present: false })
    }

    fn sync(&self) -> Result<(), DeliveryError> {
        let new = self.folder_path().join("new");
        if new.is_dir() { sync_dir(&new) } else { Ok(()) }
    }

    /// Local files: a batch's messages are written side by side, so that their `fsync`s
    /// overlap instead of waiting one behind the other.
    fn concurrency(&self) -> usize {
        CONCURRENCY
    }

    /// A retry looks for the message's own file name in `new/` and `cur/`.
    fn finds_earlier_copies(&self) -> bool {
        true
    }
}
