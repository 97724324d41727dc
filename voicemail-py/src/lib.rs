//! Python bindings for voicemail-core: not implemented yet (tracked in issue 5); this crate exposes nothing.
