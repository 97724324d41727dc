//! The client directory matches a caller however the number is written: national (`8 ...`),
//! international (`+7 ...`) or bare digits (`7...`), with the default region `RU`, including
//! the Russian 8xx numbers the `phonenumber` crate corrupts. Malformed files are errors that
//! name the line; caller strings from the network (garbage, empty, paths, huge, unicode)
//! match nothing and never panic.

use std::path::PathBuf;

use voicemail_core::directory::{Directory, DirectoryError, normalize_e164, parse_region};

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name)
}

fn directory() -> Directory {
    match Directory::load(&testdata("directory.csv"), "RU") {
        Ok(d) => d,
        Err(e) => panic!("testdata/directory.csv should load: {e}"),
    }
}

fn from_str(csv: &str) -> Result<Directory, DirectoryError> {
    Directory::from_reader(csv.as_bytes(), "RU")
}

#[test]
fn moscow_number_matches_in_every_spelling() {
    let dir = directory();
    for caller in [
        "8 (495) 123-45-67",
        "+7 495 123 45 67",
        "74951234567",
        "+74951234567",
        "84951234567",
        "4951234567",
        "8-495-123-45-67",
    ] {
        let entry = dir.lookup(caller);
        assert_eq!(entry.map(|e| e.client.as_str()), Some("ООО «Ромашка»"), "{caller:?} should match");
        assert_eq!(dir.normalize(caller).as_deref(), Some("+74951234567"), "{caller:?}");
    }
    let entry = dir.lookup("+74951234567");
    assert_eq!(entry.map(|e| e.manager_name.as_str()), Some("Анна Петрова"));
    assert_eq!(entry.map(|e| e.manager_email.as_str()), Some("anna@example.com"));
}

#[test]
fn russian_8xx_numbers_are_not_corrupted() {
    let dir = directory();
    for caller in ["+7 800 555-35-35", "8 800 555 35 35", "88005553535", "78005553535"] {
        assert_eq!(dir.normalize(caller).as_deref(), Some("+78005553535"), "{caller:?}");
        assert_eq!(dir.lookup(caller).map(|e| e.client.as_str()), Some("Horns & Hooves Ltd"), "{caller:?}");
    }
    assert_eq!(dir.normalize("8 812 123 45 67").as_deref(), Some("+78121234567"));
    assert_eq!(dir.normalize("8 (8442) 12-34-56").as_deref(), Some("+78442123456"));
}

#[test]
fn several_numbers_per_client_by_rows_and_by_semicolons() {
    let dir = directory();
    // Two rows for one client.
    assert_eq!(dir.lookup("88121234567").map(|e| e.client.as_str()), Some("ООО «Ромашка»"));
    // Two numbers in one cell.
    assert_eq!(dir.lookup("+7 8442 12 34 56").map(|e| e.client.as_str()), Some("Horns & Hooves Ltd"));
    let romashka = dir.clients().iter().find(|c| c.client == "ООО «Ромашка»");
    assert_eq!(romashka.map(|c| c.numbers.clone()), Some(vec!["+74951234567".to_owned(), "+78121234567".to_owned()]));
    assert_eq!(dir.clients().len(), 4);
    assert_eq!(dir.len(), 6);
}

#[test]
fn foreign_numbers_match_in_international_form() {
    let dir = directory();
    assert_eq!(dir.lookup("+12025550173").map(|e| e.client.as_str()), Some("Acme Corp"));
    assert_eq!(dir.lookup("+44 20 7183 8750").map(|e| e.client.as_str()), Some("Smith, Jones & Co"));
    // A US number written nationally is read as a Russian one and matches nothing.
    assert!(dir.lookup("(202) 555-0173").is_none());
}

#[test]
fn the_default_region_decides_how_national_numbers_are_read() {
    let us = parse_region("US").ok();
    let ru = parse_region("RU").ok();
    assert!(us.is_some() && ru.is_some());
    if let (Some(us), Some(ru)) = (us, ru) {
        assert_eq!(normalize_e164("(202) 555-0173", us).as_deref(), Some("+12025550173"));
        assert_eq!(normalize_e164("8 (495) 123-45-67", ru).as_deref(), Some("+74951234567"));
    }
    let dir = Directory::from_reader(
        "number,client,manager_name,manager_email\n(202) 555-0173,Acme,Carol,carol@example.org\n".as_bytes(),
        "US",
    );
    assert!(dir.is_ok_and(|d| d.lookup("+1 202 555 0173").is_some()));
}

#[test]
fn unknown_callers_match_nothing() {
    let dir = directory();
    for caller in ["+7 495 765-43-21", "+1 212 555 0100", "112", "0"] {
        assert!(dir.lookup(caller).is_none(), "{caller:?}");
    }
}

#[test]
fn hostile_caller_strings_never_match_and_never_panic() {
    let dir = directory();
    let long_digits = "7".repeat(10_000);
    let long_mixed = "+7 495 ".repeat(5_000);
    let cases: Vec<&str> = vec![
        "",
        " ",
        "+",
        "++++",
        "anonymous",
        "unknown",
        "../etc/passwd",
        "../../74951234567",
        "74951234567/../x",
        "sip:74951234567@example.com",
        "\0",
        "7495\x001234567",
        "74951234567\r\nBcc: x@y.z",
        "\u{202e}74951234567",
        "٧٤٩٥١٢٣٤٥٦٧",
        "７４９５１２３４５６７",
        "📞74951234567",
        "тел. 74951234567",
        "()()()-.-.",
        "+0000000000000",
        "+999 123",
        &long_digits,
        &long_mixed,
    ];
    for caller in cases {
        assert!(dir.lookup(caller).is_none(), "{:?} should not match", caller.get(..40).unwrap_or(caller));
        let _ = dir.normalize(caller);
    }
}

#[test]
fn bad_rows_name_their_line() {
    let header = "number,client,manager_name,manager_email\n";
    let cases = [
        (
            format!("{header}+74951234567,A,Anna,anna@example.com\nnot a number,B,Boris,boris@example.com\n"),
            3,
            "not a valid phone number",
        ),
        (format!("{header}+74951234567,A,Anna,anna@example.com\n+78121234567,B,Boris\n"), 3, "expected 4 fields"),
        (format!("{header}+74951234567,A,Anna,not-an-email\n"), 2, "not an e-mail address"),
        (
            format!("{header}+74951234567,A,Anna,anna@example.com\n84951234567,B,Boris,boris@example.com\n"),
            3,
            "already listed for client \"A\"",
        ),
        (
            format!("{header}+74951234567,A,Anna,anna@example.com\n+78121234567,A,Boris,boris@example.com\n"),
            3,
            "already listed with manager",
        ),
        (format!("{header}+74951234567,,Anna,anna@example.com\n"), 2, "client is empty"),
        (format!("{header};;,A,Anna,anna@example.com\n"), 2, "number field is empty"),
        (format!("{header}+7495123,A,Anna,anna@example.com\n"), 2, "not a valid phone number"),
    ];
    for (csv, line, needle) in cases {
        match from_str(&csv) {
            Err(DirectoryError::BadRow { line: got, message }) => {
                assert_eq!(got, line, "{csv:?}: {message}");
                assert!(message.contains(needle), "{csv:?}: {message:?} should contain {needle:?}");
                let shown = DirectoryError::BadRow { line: got, message }.to_string();
                assert!(shown.starts_with(&format!("line {line}: ")), "{shown}");
            }
            other => panic!("{csv:?} should fail on line {line}, got {other:?}"),
        }
    }
}

#[test]
fn header_region_and_file_errors() {
    assert!(matches!(from_str("phone,client,manager,email\n"), Err(DirectoryError::BadHeader { .. })));
    assert!(matches!(from_str(""), Err(DirectoryError::BadHeader { .. })));
    assert!(matches!(
        Directory::from_reader("number,client,manager_name,manager_email\n".as_bytes(), "XX"),
        Err(DirectoryError::UnknownRegion(_))
    ));
    assert!(matches!(Directory::load(&testdata("no-such-directory.csv"), "RU"), Err(DirectoryError::Io { .. })));
    let invalid_utf8: &[u8] =
        b"number,client,manager_name,manager_email\n+74951234567,\xff\xfe,Anna,anna@example.com\n";
    assert!(matches!(Directory::from_reader(invalid_utf8, "RU"), Err(DirectoryError::BadRow { line: 2, .. })));
    // A UTF-8 byte order mark (spreadsheet exports) and CRLF line ends are fine.
    let bom = "\u{feff}number,client,manager_name,manager_email\r\n+74951234567,A,Anna,anna@example.com\r\n";
    assert!(from_str(bom).is_ok_and(|d| d.lookup("84951234567").is_some()));
    // A header-only file is an empty directory, not an error.
    assert!(from_str("number,client,manager_name,manager_email\n").is_ok_and(|d| d.is_empty()));
}
