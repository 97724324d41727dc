//! Runnable examples for voicemail, and the code they share with their tests.
//!
//! - `offline_call`: the whole pipeline with a simulated caller and clock ([`offline`]).
//! - `inbox`: the mailbox workflow and delivery status from the command line.

pub mod offline;
