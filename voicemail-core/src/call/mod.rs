//! The call state machine (placeholder, being written).

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallState {
    /// Created, not answered yet.
    Ringing,
    /// Answered.
    Answered,
    /// Playing the greeting.
    Greeting,
    /// Playing the beep.
    Beep,
    /// Recording the caller.
    Recording,
    /// Ended; the message has been reported.
    Ended,
}

/// Placeholder.
#[derive(Debug)]
pub struct Call;
/// Placeholder.
#[derive(Debug)]
pub struct CallConfig;
