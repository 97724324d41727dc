//! SIP adapter for voicemail-core: not implemented yet (tracked in issue 4); this crate exposes nothing.

pub mod register;
pub mod sdp;
