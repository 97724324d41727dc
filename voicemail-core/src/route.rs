//! Where a message goes, as the configuration says: the caller is looked up in the client
//! directory (E.164-normalised); every configured target gets the message — the shared
//! Maildir or IMAP folder, and SMTP to the shared recipients plus a matched client's manager —
//! the message is assigned to the matched client's manager (by `directory`), and the e-mail
//! names the client and manager. Pure: no I/O.

use crate::config::Config;
use crate::deliver::{EmailContext, Manager};
use crate::directory::ClientEntry;
use crate::followup::FollowUp;
use crate::message::MessageMeta;
use crate::store::NewDelivery;
use crate::template::Words;

/// The sender used when no SMTP target names one.
const DEFAULT_FROM: &str = "voicemail@localhost";

/// Who an auto-assignment is recorded as made by (the history's `by`).
pub const DIRECTORY: &str = "directory";

/// Where a message goes, and for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// One delivery per target (`maildir`, `imap`, `smtp`); empty when no target is configured.
    pub deliveries: Vec<NewDelivery>,
    /// The matched client, if the caller is in the directory.
    pub client: Option<String>,
    /// The matched client's manager's e-mail address.
    pub manager_email: Option<String>,
    /// Who the message is assigned to as soon as it is stored: the matched client's manager,
    /// by e-mail address (the assignee that reminders reach). `None` leaves it New.
    pub assign_to: Option<String>,
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
        assign_to: client.map(|c| c.manager_email.clone()),
    }
}

/// The e-mail context for message `meta` in follow-up state `followup`: the mailbox's
/// templates and words, the matched client and manager, the greeting's label, who it is
/// assigned to, and the link to its page.
pub fn email_context(config: &Config, meta: &MessageMeta, followup: &FollowUp) -> EmailContext {
    let client = client_for(config, &meta.caller);
    let smtp = config.delivery.smtp.as_ref();
    let from = smtp.map_or(DEFAULT_FROM, |s| s.from.as_str());
    let mut ctx = EmailContext::new(config.timezone.clone(), from);
    ctx.templates = config.email.templates.clone();
    ctx.from_name = Some(format!("{} {}", Words::of(config.email.language).from_name, config.mailbox));
    ctx.to = smtp.map(|s| s.to.clone()).unwrap_or_default();
    ctx.mailbox = config.mailbox.clone();
    ctx.phone_region = phone_region(config);
    ctx.greeting_label = Some(config.greeting_label(&meta.greeting));
    ctx.message_url = config.message_url(&meta.id);
    ctx.finish_key = config.recording.finish_key;
    ctx.assigned_to = match followup {
        FollowUp::Assigned { to, .. } => Some(to.clone()),
        _ => None,
    };
    if let Some(c) = client {
        ctx.client = Some(c.client.clone());
        ctx.manager = Some(Manager { name: c.manager_name.clone(), email: c.manager_email.clone() });
    }
    ctx
}

/// The region numbers are read and shown in: the directory's `default_region`, else the
/// region of the mailbox's own `number`.
fn phone_region(config: &Config) -> Option<String> {
    if let Some(d) = &config.directory {
        return Some(d.default_region.clone());
    }
    let own = config.number.as_deref()?;
    let parsed = rlibphonenumber::PHONE_NUMBER_UTIL.parse(own, None).ok()?;
    parsed.get_region_code().map(|r| r.to_string())
}
