//! Many mailboxes behind one endpoint: [`Mailboxes`] opens every mailbox of a configuration
//! file ([`MailboxesConfig`]) and picks the one a call is for.
//!
//! A call names the number it is for in up to three places, tried in this order
//! ([`Dialled`]):
//!
//! 1. the **diverting number**, when the call was forwarded to voicemail ("no answer after
//!    20 s"): the entry of History-Info (RFC 7044) the call was retargeted from, or the URI
//!    of the top-most Diversion header (RFC 5806). The SIP adapter reads those headers;
//! 2. the **Request-URI**'s user part;
//! 3. the **To** header's user part.
//!
//! The first of them that selects a mailbox wins; when none does, the call goes to the default
//! mailbox (`default_mailbox`; a one-mailbox file's mailbox is its default), and without a
//! default it is refused (the SIP endpoint answers 404 Not Found).
//!
//! A mailbox is selected by its `number` and its `numbers` (numbers or SIP user names).
//! They are compared in two ways: as phone numbers in E.164, national numbers read in the
//! mailbox's region (the directory's `default_region`, else the region of its own `number`),
//! so `8 (495) 123-45-00`, `84951234500` and `+74951234500` are one number in region RU; and
//! as literal SIP users ignoring case, so `sales` selects the mailbox whose `numbers` has
//! `"Sales"`. Pure lookups: no I/O.

use std::collections::HashMap;
use std::sync::Arc;

use rlibphonenumber::{PHONE_NUMBER_UTIL, Region};

use crate::config::{Config, MailboxesConfig};
use crate::directory::normalize_e164;
use crate::mailbox::{Mailbox, MailboxError};

/// The numbers a call was placed to, as the signalling names them (see the
/// [module docs](self)). Empty strings count as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dialled {
    /// The diverting number: who forwarded the call here (History-Info or Diversion).
    pub diverted_from: Option<String>,
    /// The Request-URI's user part (for a `tel:` URI, the number).
    pub request_uri: Option<String>,
    /// The To header's user part.
    pub to: Option<String>,
}

/// Which part of the call selected the mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectedBy {
    /// The diverting number.
    DivertedFrom,
    /// The Request-URI's user.
    RequestUri,
    /// The To header's user.
    To,
    /// Nothing matched: the default mailbox.
    Default,
}

impl SelectedBy {
    /// `diverted-from`, `request-uri`, `to` or `default`.
    pub fn as_str(self) -> &'static str {
        match self {
            SelectedBy::DivertedFrom => "diverted-from",
            SelectedBy::RequestUri => "request-uri",
            SelectedBy::To => "to",
            SelectedBy::Default => "default",
        }
    }
}

/// A mailbox chosen for a call.
#[derive(Debug, Clone)]
pub struct Selected<'a> {
    /// The mailbox.
    pub mailbox: &'a Mailbox,
    /// What selected it.
    pub by: SelectedBy,
}

/// Two mailboxes selected by one number: `mailbox`'s `key` (`number`, `numbers[2]`) with
/// `value` selects `other` too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conflict {
    pub(crate) mailbox: usize,
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) other: usize,
}

/// The lookup from numbers and users to mailboxes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Index {
    /// E.164 numbers and lower-cased users, to the mailbox's position.
    keys: HashMap<String, usize>,
    /// The distinct regions national numbers are read in, in mailbox order.
    regions: Vec<Region>,
}

/// The region a mailbox reads national numbers in: its directory's, else its own number's.
fn region_of(config: &Config) -> Option<Region> {
    if let Some(d) = &config.directory {
        return Region::from_code(&d.default_region).ok();
    }
    let own = config.number.as_deref()?;
    let parsed = PHONE_NUMBER_UTIL.parse(own, None).ok()?;
    parsed.get_region_code()
}

/// `number` in E.164 read in `region`; without a region, only numbers written with `+`.
fn e164(number: &str, region: Option<Region>) -> Option<String> {
    match region {
        Some(r) => normalize_e164(number, r),
        None if number.starts_with('+') => Region::from_code("US").ok().and_then(|r| normalize_e164(number, r)),
        None => None,
    }
}

/// The literal key of a user (trimmed, lower case); `None` when empty.
fn literal(user: &str) -> Option<String> {
    let u = user.trim();
    (!u.is_empty()).then(|| u.to_lowercase())
}

impl Index {
    /// The index of `mailboxes`' numbers; a number that selects two mailboxes is an error.
    pub(crate) fn build(mailboxes: &[Config]) -> Result<Self, Conflict> {
        let mut index = Index::default();
        for r in mailboxes.iter().filter_map(region_of) {
            if !index.regions.contains(&r) {
                index.regions.push(r);
            }
        }
        for (i, c) in mailboxes.iter().enumerate() {
            // A mailbox without a region of its own has its national numbers read in every
            // region, as a call's are ([`Index::lookup`]): a clash with another mailbox's
            // number is then found here, not left to the order of the lookup.
            let regions: Vec<Option<Region>> = match region_of(c) {
                Some(r) => vec![Some(r)],
                None if index.regions.is_empty() => vec![None],
                None => index.regions.iter().copied().map(Some).collect(),
            };
            let selectors = c
                .number
                .iter()
                .map(|n| ("number".to_owned(), n))
                .chain(c.numbers.iter().enumerate().map(|(j, n)| (format!("numbers[{j}]"), n)));
            for (key, value) in selectors {
                let numbers = regions.iter().filter_map(|&r| e164(value.trim(), r));
                for k in literal(value).into_iter().chain(numbers) {
                    match index.keys.get(&k) {
                        Some(&other) if other != i => {
                            return Err(Conflict { mailbox: i, key, value: value.clone(), other });
                        }
                        _ => {
                            index.keys.insert(k, i);
                        }
                    }
                }
            }
        }
        Ok(index)
    }

    /// The mailbox `candidate` selects: as a user, else as a number in each region.
    pub(crate) fn lookup(&self, candidate: &str) -> Option<usize> {
        let lit = literal(candidate)?;
        if let Some(&i) = self.keys.get(&lit) {
            return Some(i);
        }
        let candidate = candidate.trim();
        if candidate.starts_with('+') {
            return e164(candidate, None).and_then(|k| self.keys.get(&k).copied());
        }
        self.regions.iter().find_map(|&r| normalize_e164(candidate, r).and_then(|k| self.keys.get(&k).copied()))
    }

    /// The first of the dialled numbers that selects a mailbox, in order.
    pub(crate) fn select(&self, dialled: &Dialled) -> Option<(usize, SelectedBy)> {
        [
            (&dialled.diverted_from, SelectedBy::DivertedFrom),
            (&dialled.request_uri, SelectedBy::RequestUri),
            (&dialled.to, SelectedBy::To),
        ]
        .into_iter()
        .find_map(|(candidate, by)| candidate.as_deref().and_then(|c| self.lookup(c)).map(|i| (i, by)))
    }
}

struct Inner {
    mailboxes: Vec<Mailbox>,
    default: Option<usize>,
    index: Index,
}

/// Every mailbox of one configuration file, opened, and the choice of the one a call is for
/// (see the [module docs](self)). Cheap to clone; safe to share between threads.
#[derive(Clone)]
pub struct Mailboxes {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Mailboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailboxes").field("mailboxes", &self.inner.mailboxes).finish_non_exhaustive()
    }
}

impl From<Mailbox> for Mailboxes {
    /// One mailbox, which is the default: it takes every call.
    fn from(mailbox: Mailbox) -> Self {
        let index = Index::build(std::slice::from_ref(mailbox.config())).unwrap_or_default();
        Mailboxes { inner: Arc::new(Inner { mailboxes: vec![mailbox], default: Some(0), index }) }
    }
}

impl Mailboxes {
    /// Opens every mailbox of `config` ([`Mailbox::open`]), in file order.
    pub fn open(config: MailboxesConfig) -> Result<Self, MailboxError> {
        let default = config.default_mailbox.as_deref().and_then(|n| config.index_of(n));
        // Validated when the file was read; a conflict here means the configs were changed
        // since, and the first mailbox listed keeps the number.
        let index = Index::build(&config.mailboxes).unwrap_or_else(|c| {
            tracing::warn!(mailbox = c.mailbox, key = %c.key, value = %c.value, "a number selects two mailboxes");
            Index::default()
        });
        let mut mailboxes = Vec::with_capacity(config.mailboxes.len());
        for c in config.mailboxes {
            mailboxes.push(Mailbox::open(c)?);
        }
        Ok(Mailboxes { inner: Arc::new(Inner { mailboxes, default, index }) })
    }

    /// Every mailbox, in file order (never empty).
    pub fn all(&self) -> &[Mailbox] {
        &self.inner.mailboxes
    }

    /// The mailbox named `name` (exactly, else ignoring case).
    pub fn get(&self, name: &str) -> Option<&Mailbox> {
        let all = self.all();
        all.iter()
            .find(|m| m.config().mailbox == name)
            .or_else(|| all.iter().find(|m| m.config().mailbox.to_lowercase() == name.to_lowercase()))
    }

    /// The default mailbox, if one is named.
    pub fn default_mailbox(&self) -> Option<&Mailbox> {
        self.inner.default.and_then(|i| self.inner.mailboxes.get(i))
    }

    /// The default mailbox, else the first.
    pub fn primary(&self) -> &Mailbox {
        match self.default_mailbox() {
            Some(m) => m,
            None => &self.inner.mailboxes[0],
        }
    }

    /// The mailbox a call for `dialled` goes to: the first of its diverting number,
    /// Request-URI user and To user that selects one, else the default mailbox; `None` when
    /// nothing matches and there is no default (the call is refused).
    pub fn select(&self, dialled: &Dialled) -> Option<Selected<'_>> {
        let (i, by) =
            self.inner.index.select(dialled).or_else(|| self.inner.default.map(|d| (d, SelectedBy::Default)))?;
        self.inner.mailboxes.get(i).map(|mailbox| Selected { mailbox, by })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(text: &str) -> Vec<Config> {
        MailboxesConfig::from_toml_str(text).unwrap().mailboxes
    }

    const TWO: &str = r#"
        [[mailboxes]]
        mailbox = "Sales"
        number = "+74951234500"
        numbers = ["Sales", "100"]
        timezone = "UTC"
        spool = "a"
        [[mailboxes]]
        mailbox = "Support"
        number = "8 (495) 123-46-00"
        timezone = "UTC"
        spool = "b"
        [mailboxes.directory]
        path = "clients.csv"
        default_region = "RU"
    "#;

    #[test]
    fn numbers_and_users_select_their_mailbox() {
        let index = Index::build(&configs(TWO)).unwrap();
        for (candidate, want) in [
            ("+74951234500", Some(0)),
            ("84951234500", Some(0)),
            ("4951234500", Some(0)),
            ("+7 (495) 123-45-00", Some(0)),
            ("sales", Some(0)),
            ("SALES", Some(0)),
            ("100", Some(0)),
            ("+74951234600", Some(1)),
            ("84951234600", Some(1)),
            ("74951234600", Some(1)),
            ("support", None),
            ("999", None),
            ("", None),
            ("+", None),
            ("x".repeat(200).as_str(), None),
        ] {
            assert_eq!(index.lookup(candidate), want, "{candidate:?}");
        }
    }

    #[test]
    fn the_diverting_number_wins_then_the_request_uri_then_to() {
        let index = Index::build(&configs(TWO)).unwrap();
        let d = |div: Option<&str>, ruri: Option<&str>, to: Option<&str>| Dialled {
            diverted_from: div.map(str::to_owned),
            request_uri: ruri.map(str::to_owned),
            to: to.map(str::to_owned),
        };
        assert_eq!(
            index.select(&d(Some("84951234600"), Some("sales"), Some("sales"))),
            Some((1, SelectedBy::DivertedFrom))
        );
        assert_eq!(
            index.select(&d(Some("999"), Some("sales"), Some("84951234600"))),
            Some((0, SelectedBy::RequestUri))
        );
        assert_eq!(index.select(&d(None, Some("vm"), Some("+74951234600"))), Some((1, SelectedBy::To)));
        assert_eq!(index.select(&d(None, Some("vm"), Some("vm"))), None);
        assert_eq!(index.select(&Dialled::default()), None);
    }
}
