//! Runnable examples for voicemail; see the `[[example]]` targets.
