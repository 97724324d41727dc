//! The web callback queue of a voicemail mailbox: the messages nobody has called back yet,
//! oldest first, for the people who return the calls.
//!
//! An [axum] app over a [`Mailbox`](voicemail_core::Mailbox), served by the answering machine
//! when its configuration has a `[web]` table ([`WebConfig`]):
//!
//! ```text
//!  GET  /                              the queue: not called back, oldest first, overdue marked
//!  GET  /messages/ID                   one message with its history
//!  POST /messages/ID/assign            to=NAME            ┐ HTML forms with the session's
//!  POST /messages/ID/called-back       note=TEXT          │ CSRF token (field `csrf`);
//!  POST /messages/ID/delete                               ┘ answer 303 to the page, or the error
//!  GET  /messages/ID/audio             the WAV, with range requests (206, 416)
//!  GET  /login, POST /login, POST /logout
//!
//!  POST   /api/login                   {"username","password"} → {"user","csrf_token"} + cookie
//!  GET    /api/session                 {"user","csrf_token"}
//!  POST   /api/logout
//!  GET    /api/messages[?all=true]     the queue (all: every message not deleted)
//!  GET    /api/messages/ID             one message with its history
//!  POST   /api/messages/ID/assign      {"to"}            ┐ header X-CSRF-Token: the session's
//!  POST   /api/messages/ID/called-back {"note"}          │ token; errors are
//!  DELETE /api/messages/ID                               ┘ {"error","kind"} with a 4xx status
//!  GET    /api/messages/ID/audio       the WAV, like the page's
//! ```
//!
//! Pages are rendered on the server (minijinja templates compiled into the binary, HTML
//! escaped) with a little plain JavaScript (`/static/app.js`); no build step. Every id is
//! checked with [`MessageId::parse`](voicemail_core::MessageId::parse) (400 when malformed,
//! 404 when unknown). Every mailbox call blocks, so it runs on tokio's blocking pool. What is
//! refused elsewhere is refused here too: deleting a message that was not called back is an
//! error shown to the user, never forced. See [`auth`] for sign-in, sessions and CSRF, and
//! [`range`] for range requests.
//!
//! ```no_run
//! # async fn run(mailbox: voicemail_core::Mailbox, table: Option<&toml::Table>) -> Result<(), Box<dyn std::error::Error>> {
//! if let Some(config) = voicemail_web::WebConfig::from_table(table)? {
//!     let listener = tokio::net::TcpListener::bind(config.listen).await?;
//!     let app = voicemail_web::router(mailbox, config);
//!     voicemail_web::serve(listener, app, std::future::pending()).await?;
//! }
//! # Ok(()) }
//! ```

pub mod auth;
pub mod config;
pub mod range;

mod api;
mod app;
mod pages;
mod view;

pub use app::{router, serve};
pub use config::{ProxyAuth, WebConfig, WebConfigError, WebUser};
