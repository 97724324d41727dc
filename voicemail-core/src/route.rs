//! Routing a recorded message to its destinations, as the configuration says.
//!
//! [`Router`] ties the pieces together: the caller is looked up in the client directory
//! (E.164-normalised), the e-mail names the client and manager when matched, and the message
//! is queued in the durable [`Outbox`] for every configured target — the shared Maildir or
//! IMAP folder, and SMTP to the shared recipients plus the client's manager. The outbox then
//! delivers with retries; [`Router::run_due`] is called by the adapter's loop (it does blocking
//! file and network I/O, so async callers run it on a blocking thread).

use jiff::Timestamp;

use crate::config::Config;
use crate::deliver::{EmailContext, Manager, Target};
use crate::directory::ClientEntry;
use crate::message::MessageMeta;
use crate::outbox::{Destination, Outbox, OutboxError, RunReport};

/// The sender used when no SMTP target names one.
const DEFAULT_FROM: &str = "voicemail@localhost";

/// Where a message was queued, and for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// The destinations the message was queued for (target keys: `maildir`, `smtp`, `imap`).
    pub destinations: Vec<Destination>,
    /// The matched client, if the caller is in the directory.
    pub client: Option<String>,
    /// The matched client's manager's e-mail address.
    pub manager_email: Option<String>,
    /// False when the message had been queued before (nothing changed).
    pub newly_queued: bool,
}

/// Routes messages of one mailbox. Build with [`Router::from_config`].
pub struct Router {
    config: Config,
    outbox: Outbox,
    targets: Vec<Box<dyn Target + Send + Sync>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = self.targets.iter().map(|t| t.key()).collect();
        f.debug_struct("Router").field("spool", &self.outbox.spool()).field("targets", &keys).finish()
    }
}

impl Router {
    /// A router for `config` (whose directory should already be loaded with
    /// [`Config::load_directory`]), with its outbox in the config's spool.
    pub fn from_config(config: Config) -> Result<Self, OutboxError> {
        let outbox = Outbox::open(&config.spool)?;
        let mut targets: Vec<Box<dyn Target + Send + Sync>> = Vec::new();
        if let Some(m) = &config.delivery.maildir {
            targets.push(Box::new(m.clone()));
        }
        if let Some(s) = &config.delivery.smtp {
            targets.push(Box::new(s.clone()));
        }
        if let Some(i) = &config.delivery.imap {
            targets.push(Box::new(i.clone()));
        }
        Ok(Self { config, outbox, targets })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The durable outbox (status, records).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The caller's directory entry, if the caller is a known client.
    pub fn client_for(&self, caller: &str) -> Option<&ClientEntry> {
        self.config.client_directory()?.lookup(caller)
    }

    /// The e-mail context for a message, naming the matched client and manager if any.
    fn context(&self, client: Option<&ClientEntry>) -> EmailContext {
        let smtp = self.config.delivery.smtp.as_ref();
        let from = smtp.map_or(DEFAULT_FROM, |s| s.from.as_str());
        let mut ctx = EmailContext::new(self.config.timezone.clone(), from);
        ctx.from_name = Some(format!("Voicemail {}", self.config.mailbox));
        ctx.to = smtp.map(|s| s.to.clone()).unwrap_or_default();
        if let Some(c) = client {
            ctx.client = Some(c.client.clone());
            ctx.manager = Some(Manager { name: c.manager_name.clone(), email: c.manager_email.clone() });
        }
        ctx
    }

    /// Queues a recorded message (already in the spool) for every destination it should
    /// reach. Idempotent: queueing the same message again changes nothing.
    pub fn submit(&self, meta: &MessageMeta, now: Timestamp) -> Result<Routing, OutboxError> {
        let client = self.client_for(&meta.caller);
        let ctx = self.context(client);
        let d = &self.config.delivery;
        let mut destinations = Vec::new();
        if d.maildir.is_some() {
            destinations.push(Destination::maildir());
        }
        if d.imap.is_some() {
            destinations.push(Destination::imap());
        }
        if let Some(smtp) = &d.smtp {
            let extra: Vec<String> = client.map(|c| c.manager_email.clone()).into_iter().collect();
            // With no shared recipients and no manager there is nobody to send to.
            if !smtp.to.is_empty() || !extra.is_empty() {
                destinations.push(Destination::smtp(extra));
            }
        }
        let newly_queued = self.outbox.enqueue(meta, &ctx, &destinations, now)?;
        if destinations.is_empty() {
            tracing::warn!(id = %meta.id, "no delivery target configured: the message stays in the spool only");
        }
        Ok(Routing {
            destinations,
            client: client.map(|c| c.client.clone()),
            manager_email: client.map(|c| c.manager_email.clone()),
            newly_queued,
        })
    }

    /// Attempts every delivery that is due at `now`; failures are rescheduled with back-off.
    pub fn run_due(&self, now: Timestamp) -> RunReport {
        let targets: Vec<&dyn Target> = self.targets.iter().map(|t| t.as_ref() as &dyn Target).collect();
        self.outbox.run_due(now, &targets)
    }

    /// Queues spool messages that were recorded but never queued (a crash between the two).
    /// Returns how many were queued.
    pub fn recover(&self, now: Timestamp) -> Result<usize, OutboxError> {
        let mut n = 0;
        for id in self.outbox.unqueued()? {
            let path = self.outbox.spool().join(format!("{id}.json"));
            let meta: MessageMeta = match std::fs::read(&path).map(|b| serde_json::from_slice(&b)) {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable metadata left in the spool");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read metadata");
                    continue;
                }
            };
            if self.submit(&meta, now)?.newly_queued {
                n += 1;
            }
        }
        Ok(n)
    }
}
