//! Where a message goes, as the configuration says: the caller is looked up in the client
//! directory (E.164-normalised); every configured target gets the message — the shared
//! Maildir or IMAP folder, and SMTP to the shared recipients plus a matched client's manager —
//! and the e-mail names the client and manager. Pure: no I/O.

use crate::config::Config;
use crate::deliver::{EmailContext, Manager};
use crate::directory::ClientEntry;
use crate::store::NewDelivery;

/// The sender used when no SMTP target names one.
const DEFAULT_FROM: &str = "voicemail@localhost";

/// Where a message goes, and for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// One delivery per target (`maildir`, `imap`, `smtp`); empty when no target is configured.
    pub deliveries: Vec<NewDelivery>,
    /// The matched client, if the caller is in the directory.
    pub client: Option<String>,
    /// The matched client's manager's e-mail address.
    pub manager_email: Option<String>,
}

/// The caller's directory entry, if the caller is a known client.
pub fn client_for<'c>(config: &'c Config, caller: &str) -> Option<&'c ClientEntry> {
    config.client_directory()?.lookup(caller)
}

/// Routes a message from `caller`.
pub fn route(config: &Config, caller: &str) -> Routing {
    let client = client_for(config, caller);
    let d = &config.delivery;
    let mut deliveries = Vec::new();
    if d.maildir.is_some() {
        deliveries.push(NewDelivery { target: "maildir".to_owned(), extra_to: Vec::new() });
    }
    if d.imap.is_some() {
        deliveries.push(NewDelivery { target: "imap".to_owned(), extra_to: Vec::new() });
    }
    if let Some(smtp) = &d.smtp {
        let extra: Vec<String> = client.map(|c| c.manager_email.clone()).into_iter().collect();
        // With no shared recipients and no manager there is nobody to send to.
        if !smtp.to.is_empty() || !extra.is_empty() {
            deliveries.push(NewDelivery { target: "smtp".to_owned(), extra_to: extra });
        }
    }
    Routing {
        deliveries,
        client: client.map(|c| c.client.clone()),
        manager_email: client.map(|c| c.manager_email.clone()),
    }
}

/// The e-mail context for a message from `caller`, naming the matched client and manager.
pub fn email_context(config: &Config, caller: &str) -> EmailContext {
    let client = client_for(config, caller);
    let smtp = config.delivery.smtp.as_ref();
    let from = smtp.map_or(DEFAULT_FROM, |s| s.from.as_str());
    let mut ctx = EmailContext::new(config.timezone.clone(), from);
    ctx.from_name = Some(format!("Voicemail {}", config.mailbox));
    ctx.to = smtp.map(|s| s.to.clone()).unwrap_or_default();
    if let Some(c) = client {
        ctx.client = Some(c.client.clone());
        ctx.manager = Some(Manager { name: c.manager_name.clone(), email: c.manager_email.clone() });
    }
    ctx
}
