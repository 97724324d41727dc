//! The client directory: which client a caller's number belongs to, and who manages them.
//!
//! The directory is a CSV file with the header `number,client,manager_name,manager_email`.
//! A client with several numbers has several rows (same client, same manager), or several
//! numbers in one `number` cell separated by `;`. Every number is normalised to E.164 with
//! [rlibphonenumber](https://crates.io/crates/rlibphonenumber) and a default region, so
//! `8 (495) 123-45-67`, `+7 495 123 45 67` and `74951234567` (region `RU`) are the same
//! number, and so are `+7 800 555-35-35` and `8 800 555 35 35`.
//!
//! Loading is strict: a row that is malformed, a number that is not a valid phone number, a
//! number listed for two different clients, or a client listed with two different managers is
//! an error naming the line. Looking up a caller is lenient: the caller's number comes from the
//! network, and anything that is not a plausible phone number simply matches nothing.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumberFormat, Region};

/// Longest caller string that is looked up at all; longer ones match nothing.
const MAX_CALLER_LEN: usize = 64;

/// Why the directory could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The file could not be opened or read.
    #[error("cannot read client directory {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The default region is not a known ISO 3166 region with a calling code.
    #[error("unknown region {0:?}: expected a two-letter ISO 3166 code with a calling code, like \"RU\" or \"US\"")]
    UnknownRegion(String),
    /// The header row is not `number,client,manager_name,manager_email`.
    #[error("line 1: expected the header \"number,client,manager_name,manager_email\", found {found:?}")]
    BadHeader {
        /// The header found.
        found: String,
    },
    /// A row is malformed.
    #[error("line {line}: {message}")]
    BadRow {
        /// The 1-based line number in the file.
        line: u64,
        /// What is wrong with it.
        message: String,
    },
}

/// A client and the manager who calls them back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientEntry {
    /// The client's name.
    pub client: String,
    /// The manager's name.
    pub manager_name: String,
    /// The manager's e-mail address.
    pub manager_email: String,
    /// The client's numbers in E.164 (`+74951234567`), in file order.
    pub numbers: Vec<String>,
}

/// The loaded client directory.
#[derive(Debug, Clone)]
pub struct Directory {
    region: Region,
    clients: Vec<ClientEntry>,
    by_number: HashMap<String, usize>,
}

const HEADER: [&str; 4] = ["number", "client", "manager_name", "manager_email"];

impl Directory {
    /// Loads a directory CSV, reading national numbers as numbers of `default_region`
    /// (an ISO 3166 code like `"RU"`).
    pub fn load(path: &Path, default_region: &str) -> Result<Self, DirectoryError> {
        let region = parse_region(default_region)?;
        let file =
            std::fs::File::open(path).map_err(|source| DirectoryError::Io { path: path.to_path_buf(), source })?;
        Self::read(file, region).map_err(|e| match e {
            DirectoryError::Io { source, .. } => DirectoryError::Io { path: path.to_path_buf(), source },
            other => other,
        })
    }

    /// Reads a directory CSV from any reader (see [`Directory::load`]).
    pub fn from_reader(reader: impl Read, default_region: &str) -> Result<Self, DirectoryError> {
        let region = parse_region(default_region)?;
        Self::read(reader, region)
    }

    fn read(reader: impl Read, region: Region) -> Result<Self, DirectoryError> {
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .trim(csv::Trim::All)
            .comment(Some(b'#'))
            .flexible(true)
            .from_reader(reader);
        let mut dir = Directory { region, clients: Vec::new(), by_number: HashMap::new() };
        let mut header_seen = false;
        let mut record = csv::StringRecord::new();
        loop {
            match csv.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => return Err(csv_error(e)),
            }
            let line = record.position().map_or(0, |p| p.line());
            if !header_seen {
                header_seen = true;
                let fields: Vec<&str> = record.iter().collect();
                if fields != HEADER {
                    return Err(DirectoryError::BadHeader { found: fields.join(",") });
                }
                continue;
            }
            if record.iter().all(str::is_empty) {
                continue;
            }
            dir.add_row(&record, line)?;
        }
        if !header_seen {
            return Err(DirectoryError::BadHeader { found: String::new() });
        }
        Ok(dir)
    }

    fn add_row(&mut self, record: &csv::StringRecord, line: u64) -> Result<(), DirectoryError> {
        let bad = |message: String| DirectoryError::BadRow { line, message };
        if record.len() != HEADER.len() {
            return Err(bad(format!(
                "expected 4 fields (number,client,manager_name,manager_email), found {}",
                record.len()
            )));
        }
        let field = |i: usize| record.get(i).unwrap_or("");
        let (numbers, client, manager_name, manager_email) = (field(0), field(1), field(2), field(3));
        check_text("client", client).map_err(&bad)?;
        check_text("manager_name", manager_name).map_err(&bad)?;
        check_email(manager_email).map_err(&bad)?;

        let index = match self.clients.iter().position(|c| c.client == client) {
            Some(i) => {
                let existing = &self.clients[i];
                if existing.manager_name != manager_name || existing.manager_email != manager_email {
                    return Err(bad(format!(
                        "client {client:?} is already listed with manager {:?} <{}>",
                        existing.manager_name, existing.manager_email
                    )));
                }
                i
            }
            None => {
                self.clients.push(ClientEntry {
                    client: client.to_owned(),
                    manager_name: manager_name.to_owned(),
                    manager_email: manager_email.to_owned(),
                    numbers: Vec::new(),
                });
                self.clients.len() - 1
            }
        };

        let mut any = false;
        for raw in numbers.split(';').map(str::trim).filter(|n| !n.is_empty()) {
            any = true;
            let e164 = normalize_strict(raw, self.region).ok_or_else(|| {
                bad(format!(
                    "number {raw:?} is not a valid phone number (national numbers are read as region {})",
                    self.region
                ))
            })?;
            match self.by_number.get(&e164) {
                Some(&other) if other != index => {
                    let other_client = self.clients.get(other).map_or("", |c| c.client.as_str());
                    return Err(bad(format!("number {raw:?} ({e164}) is already listed for client {other_client:?}")));
                }
                Some(_) => {}
                None => {
                    self.by_number.insert(e164.clone(), index);
                    if let Some(c) = self.clients.get_mut(index) {
                        c.numbers.push(e164);
                    }
                }
            }
        }
        if !any {
            return Err(bad("the number field is empty".to_owned()));
        }
        Ok(())
    }

    /// The client whose number the caller's number is, if any. Never fails: a caller string
    /// that is not a phone number (empty, garbage, too long) matches nothing.
    pub fn lookup(&self, caller: &str) -> Option<&ClientEntry> {
        let e164 = self.normalize(caller)?;
        self.by_number.get(&e164).and_then(|&i| self.clients.get(i))
    }

    /// The caller's number in E.164, read with this directory's default region, or `None`
    /// when it is not a plausible phone number.
    pub fn normalize(&self, caller: &str) -> Option<String> {
        normalize_e164(caller, self.region)
    }

    /// The default region national numbers are read in.
    pub fn region(&self) -> Region {
        self.region
    }

    /// All clients, in file order.
    pub fn clients(&self) -> &[ClientEntry] {
        &self.clients
    }

    /// The number of distinct numbers.
    pub fn len(&self) -> usize {
        self.by_number.len()
    }

    /// Whether the directory lists no number.
    pub fn is_empty(&self) -> bool {
        self.by_number.is_empty()
    }
}

/// Parses an ISO 3166 region code (`"RU"`) that has a calling code.
pub fn parse_region(code: &str) -> Result<Region, DirectoryError> {
    let unknown = || DirectoryError::UnknownRegion(code.to_owned());
    if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(unknown());
    }
    let region = Region::from_code(code).map_err(|_| unknown())?;
    PHONE_NUMBER_UTIL.get_country_code_for_region(region).filter(|&cc| cc > 0).map(|_| region).ok_or_else(unknown)
}

/// A caller's number in E.164 (`+74951234567`), national numbers read in `region`; `None` when
/// it is not a plausible phone number. Accepts only ASCII digits, `+`, spaces, `(`, `)`, `-`
/// and `.` (at most 64 characters), so network input never reaches the parser in odd shapes.
pub fn normalize_e164(number: &str, region: Region) -> Option<String> {
    if number.is_empty() || number.len() > MAX_CALLER_LEN {
        return None;
    }
    if !number.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'+' | b' ' | b'(' | b')' | b'-' | b'.')) {
        return None;
    }
    if !number.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    let parsed = PHONE_NUMBER_UTIL.parse(number, Some(region)).ok()?;
    if !PHONE_NUMBER_UTIL.is_possible_number(&parsed) {
        return None;
    }
    Some(parsed.format_as(PhoneNumberFormat::E164).into_owned())
}

/// Like [`normalize_e164`], but the number must also be valid (assigned ranges) for its
/// region: used for the directory's own numbers, where a typo should be an error.
fn normalize_strict(number: &str, region: Region) -> Option<String> {
    let e164 = normalize_e164(number, region)?;
    let parsed = PHONE_NUMBER_UTIL.parse(&e164, None).ok()?;
    parsed.is_valid().then_some(e164)
}

fn check_text(name: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{name} is empty"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{name} {value:?} contains a control character"));
    }
    if value.chars().count() > 200 {
        return Err(format!("{name} is longer than 200 characters"));
    }
    Ok(())
}

fn check_email(value: &str) -> Result<(), String> {
    let invalid = || {
        Err(format!(
            "manager_email {value:?} is not an e-mail address (expected local@domain, no spaces or angle brackets)"
        ))
    };
    let Some((local, domain)) = value.rsplit_once('@') else {
        return invalid();
    };
    let ok_char = |c: char| {
        c.is_ascii_graphic() && !matches!(c, '<' | '>' | '(' | ')' | ',' | ';' | ':' | '"' | '[' | ']' | '\\')
    };
    if local.is_empty()
        || domain.is_empty()
        || local.contains('@')
        || !domain.contains('.') && domain != "localhost"
        || value.len() > 254
        || !local.chars().all(ok_char)
        || !domain.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return invalid();
    }
    Ok(())
}

fn csv_error(e: csv::Error) -> DirectoryError {
    let line = e.position().map_or(0, |p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(source) => DirectoryError::Io { path: PathBuf::new(), source },
        csv::ErrorKind::Utf8 { err, .. } => DirectoryError::BadRow { line, message: format!("not valid UTF-8: {err}") },
        other => DirectoryError::BadRow { line, message: format!("malformed CSV: {other:?}") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_codes_are_checked() {
        assert!(parse_region("RU").is_ok());
        assert!(parse_region("US").is_ok());
        for bad in ["", "ru", "QQ", "RUS", "001", "ZZ"] {
            assert!(parse_region(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn emails_are_checked() {
        assert!(check_email("anna@example.com").is_ok());
        assert!(check_email("anna@localhost").is_ok());
        for bad in [
            "",
            "anna",
            "@example.com",
            "anna@",
            "a b@example.com",
            "a@b@example.com",
            "<a@example.com>",
            "a@example.com\r\nBcc: x@y.z",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
