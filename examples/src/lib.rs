//! Runnable examples for voicemail, and the code they share with their tests. Each example is
//! a thin front-end of the [`Mailbox`](voicemail_core::Mailbox):
//!
//! - `answering_machine`: the SIP endpoint on a mailbox.
//! - `offline_call`: the whole pipeline with a simulated caller and clock ([`offline`]).
//! - `inbox`: the follow-up workflow and delivery status from the command line.
//!
//! [`ops`] holds what the answering machine needs in production: `[metrics]` (Prometheus
//! `/metrics`, `/healthz`) and `[log]` (JSON log lines).

pub mod config;
pub mod offline;
pub mod ops;
