//! The mailbox configuration is strict and its errors are useful: unknown keys, wrong types,
//! malformed durations, time ranges and dates, unknown time zones and regions, greeting names
//! the calendar uses but `[greetings]` lacks, and missing or undecodable greeting files are
//! all errors that name the key path and say what was expected. Also: the documented example
//! `examples/voicemail.toml` loads (with every relative path resolved against its directory),
//! and the embedded defaults are what the answering machine runs on without a file.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use voicemail_core::config::{Config, ConfigError, GreetingSource, StoreConfig};
use voicemail_core::schedule::GreetingReason;

const MINIMAL: &str = r#"
mailbox = "Sales"
timezone = "Europe/Moscow"
spool = "spool"
"#;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn err(text: &str) -> ConfigError {
    match Config::from_toml_str(text) {
        Ok(_) => panic!("should be rejected:\n{text}"),
        Err(e) => e,
    }
}

/// Asserts the error names `key` and its message contains every `needle`.
fn assert_err(text: &str, key: &str, needles: &[&str]) {
    let e = err(text);
    let shown = e.to_string();
    assert_eq!(e.key(), Some(key), "{shown}");
    assert!(shown.starts_with(&format!("{key}: ")), "{shown:?} should start with the key {key:?}");
    for needle in needles {
        assert!(shown.contains(needle), "{shown:?} should contain {needle:?}");
    }
}

fn tmp_dir(test: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("config-{test}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    if let Err(e) = fs::create_dir_all(&dir) {
        panic!("{e}");
    }
    dir
}

fn write(path: &Path, text: &str) {
    if let Err(e) = fs::write(path, text) {
        panic!("write {}: {e}", path.display());
    }
}

#[test]
fn minimal_config_takes_documented_defaults() {
    let c = match Config::from_toml_str(MINIMAL) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(c.mailbox, "Sales");
    assert_eq!(c.timezone_name(), "Europe/Moscow");
    assert_eq!(c.spool, PathBuf::from("spool"));
    assert_eq!(c.recording.max_length, Duration::from_secs(300));
    assert_eq!(c.recording.finish_key, Some('#'));
    assert_eq!(c.greetings.get("default"), Some(&GreetingSource::BuiltinDefault));
    assert!(c.delivery.is_empty());
    assert!(c.directory.is_none());
    assert_eq!(c.store.min_free_bytes, 10_000_000);
    assert_eq!(c.greeting_at(jiff::Timestamp::UNIX_EPOCH).reason, GreetingReason::Default);
}

fn min_free(value: &str) -> Result<u64, ConfigError> {
    Config::from_toml_str(&format!("{MINIMAL}[store]\nmin_free = {value}\n")).map(|c| c.store.min_free_bytes)
}

#[test]
fn store_min_free_takes_sizes_with_units() {
    for (value, bytes) in [
        ("\"10MB\"", 10_000_000),
        ("\"512kB\"", 512_000),
        ("\"1GB\"", 1_000_000_000),
        ("\"2097152\"", 2_097_152),
        ("2097152", 2_097_152),
        ("\"64KiB\"", 65_536),
        ("\"3MiB\"", 3 * 1024 * 1024),
        ("\"1GiB\"", 1024 * 1024 * 1024),
        ("\"100B\"", 100),
        ("\"0\"", 0),
        ("0", 0),
    ] {
        match min_free(value) {
            Ok(n) => assert_eq!(n, bytes, "min_free = {value}"),
            Err(e) => panic!("min_free = {value}: {e}"),
        }
    }
    // An empty [store] table takes the default.
    assert!(Config::from_toml_str(&format!("{MINIMAL}[store]\n")).is_ok_and(|c| c.store == StoreConfig::default()));
    assert_eq!(StoreConfig::default().min_free_bytes, 10_000_000);
}

#[test]
fn store_min_free_rejects_bad_sizes_naming_the_key() {
    let text = |value: &str| format!("{MINIMAL}[store]\nmin_free = {value}\n");
    for bad in ["\"10 MB\"", "\"1.5GB\"", "\"10mb\"", "\"10KB\"", "\"-1MB\"", "\"\"", "\"MB\"", "\"10TB\"", "\"ten\""] {
        assert_err(&text(bad), "store.min_free", &["expected a size like \"10MB\"", &format!("found {bad}")]);
    }
    assert_err(&text("-5"), "store.min_free", &["expected a size like \"10MB\"", "found -5"]);
    assert_err(&text("\"99999999999GB\""), "store.min_free", &["too large"]);
    // Wrong types are parse errors at the key, with toml's line.
    for bad in ["true", "1.5", "[\"10MB\"]", "{ bytes = 5 }"] {
        assert_err(&text(bad), "store.min_free", &["invalid type", "expected a size like \"10MB\"", "line 6"]);
    }
    assert_err(
        &format!("{MINIMAL}[store]\nmin_fre = \"1MB\"\n"),
        "store.min_fre",
        &["unknown field `min_fre`", "min_free"],
    );
    assert_err(&format!("{MINIMAL}store = \"10MB\"\n"), "store", &["invalid type: string \"10MB\""]);
}

/// `[store] url` picks the shared PostgreSQL store and `node` names this node; a URL that is
/// not PostgreSQL's or does not parse is an error naming the key, and the password stays out
/// of the configuration's debug output (logs).
#[test]
fn store_url_and_node() {
    let text = |store: &str| format!("{MINIMAL}[store]\n{store}\n");
    let c = match Config::from_toml_str(&text("url = \"postgres://vm:secret@127.0.0.1:5432/vm\"\nnode = \"vm1\"")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(c.store.url.as_deref(), Some("postgres://vm:secret@127.0.0.1:5432/vm"));
    assert_eq!(c.store.node, "vm1");
    let shown = format!("{c:?}");
    assert!(!shown.contains("secret") && shown.contains("postgres://vm:***@127.0.0.1:5432/vm"), "{shown}");
    assert_err(&text("url = \"mysql://vm@db/vm\""), "store.url", &["expected a URL like \"postgres://"]);
    assert_err(&text("url = \"mysql://vm:pw@db/vm\""), "store.url", &["mysql://vm:***@db/vm"]);
    assert_err(&text("url = \"postgres://vm@db:port/vm\""), "store.url", &["invalid PostgreSQL URL"]);
    assert_err(&text("url = 5"), "store.url", &["invalid type"]);
    for bad in ["\"\"", "\"two words\"", "\"a\\tb\""] {
        assert_err(&text(&format!("node = {bad}")), "store.node", &["expected a node name"]);
    }
    // Without them: SQLite in the spool, and the host name.
    let c = match Config::from_toml_str(MINIMAL) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert!(c.store.url.is_none() && !c.store.node.is_empty());
}

/// Key paths come from serde (`serde_path_to_error`), however deep the error is; toml gives the
/// line and column.
#[test]
fn serde_errors_name_nested_key_paths() {
    let parse = |text: &str| match err(text) {
        ConfigError::Parse { key, message, line, detail } => (key, message, line, detail),
        other => panic!("expected a parse error, got {other:?}"),
    };

    // A wrong type deep in the second [[schedule.holidays]].
    let holidays = format!(
        "{MINIMAL}[[schedule.holidays]]\nname = \"a\"\ndates = \"01-01\"\ngreeting = \"default\"\n[[schedule.holidays]]\nname = \"b\"\ndates = 20270102\ngreeting = \"default\"\n"
    );
    assert_err(&holidays, "schedule.holidays[1].dates", &["invalid type: integer `20270102`", "string", "line 11"]);
    let (key, message, line, detail) = parse(&holidays);
    assert_eq!(key.as_deref(), Some("schedule.holidays[1].dates"));
    assert!(message.starts_with("invalid type"), "{message}");
    assert_eq!(line, Some((11, 9)));
    assert!(detail.contains("dates = 20270102"), "the detail shows the line: {detail}");

    // An unknown key in [delivery.maildir].
    assert_err(
        &format!("{MINIMAL}[delivery.maildir]\nroot = \"m\"\nfodler = \"V\"\n"),
        "delivery.maildir.fodler",
        &["unknown field `fodler`", "folder", "line 7"],
    );
    // A missing required key names the table.
    assert_err(
        &format!("{MINIMAL}[directory]\npath = \"clients.csv\"\n"),
        "directory",
        &["missing field `default_region`"],
    );
    assert_err(
        &format!("{MINIMAL}[delivery.imap]\nhost = \"h\"\nport = 143\nusername = \"u\"\nfolder = \"V\"\n"),
        "delivery.imap",
        &["missing field `password`"],
    );
    // Array items and table values.
    assert_err(
        &format!("{MINIMAL}[delivery.smtp]\nhost = \"h\"\nport = 25\nfrom = \"a@b.c\"\nto = [\"x@y.z\", 5]\n"),
        "delivery.smtp.to[1]",
        &["invalid type: integer `5`", "string"],
    );
    assert_err(&format!("{MINIMAL}[greetings]\nafter_hours = 5\n"), "greetings.after_hours", &["invalid type"]);
    assert_err(
        &format!("{MINIMAL}[schedule.temporary]\ngreeting = \"default\"\nuntil = \"2027-01-01T00:00\"\nfrom = [1]\n"),
        "schedule.temporary.from",
        &["date-time"],
    );
    assert_err(
        &format!(
            "{MINIMAL}[[schedule.holidays]]\nname = \"a\"\ndates = \"01-01\"\ngreeting = \"default\"\nextra = {{ x = 1 }}\n"
        ),
        "schedule.holidays[0].extra",
        &["unknown field `extra`"],
    );
    // The [sip] table is kept raw here (voicemail-sip validates it) but must be a table.
    assert_err(&format!("{MINIMAL}sip = 5\n"), "sip", &["invalid type: integer `5`"]);
    // Errors about the whole document have no key; syntax errors have a line, not a key.
    let (key, message, _, _) = parse("timezone = \"UTC\"\nspool = \"s\"\n");
    assert_eq!(key, None);
    assert!(message.contains("missing field `mailbox`"), "{message}");
    let (key, _, line, _) = parse(&format!("{MINIMAL}[store\nmin_free = 1\n"));
    assert_eq!(key, None);
    assert_eq!(line.map(|(l, _)| l), Some(5));
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    assert_err(
        &format!("{MINIMAL}colour = \"blue\"\n"),
        "colour",
        &["unknown field `colour`", "expected one of", "line 5"],
    );
    assert_err(
        &format!("{MINIMAL}[recording]\nmax_lenght = \"2m\"\n"),
        "recording.max_lenght",
        &["unknown field `max_lenght`", "max_length"],
    );
    assert_err(
        &format!("{MINIMAL}[schedule.business_hours]\nmonday = \"closed\"\nmondy = \"closed\"\n"),
        "schedule.business_hours.mondy",
        &["unknown field `mondy`"],
    );
    assert_err(
        &format!(
            "{MINIMAL}[[schedule.holidays]]\nname = \"x\"\ndates = \"01-01\"\ngreeting = \"default\"\ncolor = 1\n"
        ),
        "schedule.holidays[0].color",
        &["unknown field `color`"],
    );
    assert_err(
        &format!("{MINIMAL}[delivery.maildir]\nroot = \"m\"\nfolder = \"V\"\nfoo = 1\n"),
        "delivery.maildir.foo",
        &["unknown field `foo`"],
    );
    assert_err(
        &format!("{MINIMAL}[delivery.pigeon]\nx = 1\n"),
        "delivery.pigeon",
        &["unknown field `pigeon`", "maildir"],
    );
}

#[test]
fn missing_and_mistyped_values_are_errors() {
    let e = err("timezone = \"UTC\"\nspool = \"s\"\n");
    assert!(e.to_string().contains("missing field `mailbox`"), "{e}");
    assert_err(
        &format!("{MINIMAL}[recording]\nbeep_frequency_hz = \"loud\"\n"),
        "recording.beep_frequency_hz",
        &["invalid type", "u32"],
    );
    assert_err(
        &format!("{MINIMAL}[recording]\nmax_length = 120\n"),
        "recording.max_length",
        &["invalid type", "string"],
    );
    assert_err(
        &format!("{MINIMAL}[delivery.smtp]\nhost = \"h\"\nport = 70000\nfrom = \"a@b.c\"\n"),
        "delivery.smtp.port",
        &["u16"],
    );
    assert_err(
        &format!("{MINIMAL}[delivery.smtp]\nport = 25\nfrom = \"a@b.c\"\n"),
        "delivery.smtp",
        &["missing field `host`"],
    );
    assert_err(
        &format!(
            "{MINIMAL}[[schedule.holidays]]\nname = \"a\"\ndates = \"01-01\"\ngreeting = \"default\"\n[[schedule.holidays]]\nname = \"b\"\ndates = \"01-02\"\n"
        ),
        "schedule.holidays[1]",
        &["missing field `greeting`"],
    );
    assert_err(
        &format!("{MINIMAL}[schedule.temporary]\ngreeting = \"default\"\nuntil = 5\n"),
        "schedule.temporary.until",
        &["date-time"],
    );
    // Malformed TOML says where.
    let e = err("mailbox = \"Sales\ntimezone = \"UTC\"\n");
    assert!(matches!(e, ConfigError::Parse { line: Some(_), .. }), "{e:?}");
}

#[test]
fn bad_values_name_the_key_and_what_was_expected() {
    assert_err(
        &MINIMAL.replace("Europe/Moscow", "Mars/Base"),
        "timezone",
        &["unknown time zone \"Mars/Base\"", "IANA"],
    );
    assert_err(&MINIMAL.replace("Europe/Moscow", "../../etc/passwd"), "timezone", &["unknown time zone"]);
    assert_err(&MINIMAL.replace("Europe/Moscow", ""), "timezone", &["unknown time zone"]);
    assert_err(&MINIMAL.replace("\"spool\"", "\"\""), "spool", &["empty"]);
    assert_err(&MINIMAL.replace("Sales", ""), "mailbox", &["non-empty"]);
    for (value, needle) in [
        ("2", "expected a duration"),
        ("2 m", "expected a duration"),
        ("1.5m", "expected a duration"),
        ("2min", "expected a duration"),
        ("0s", "between 1s and 60m"),
        ("2h", "between 1s and 60m"),
    ] {
        assert_err(&format!("{MINIMAL}[recording]\nmax_length = \"{value}\"\n"), "recording.max_length", &[needle]);
    }
    assert_err(
        &format!("{MINIMAL}[recording]\nsilence_timeout = \"-5s\"\n"),
        "recording.silence_timeout",
        &["expected a duration"],
    );
    assert_err(&format!("{MINIMAL}[recording]\nfinish_key = \"##\"\n"), "recording.finish_key", &["one DTMF key"]);
    assert_err(
        &format!("{MINIMAL}[recording]\nbeep_frequency_hz = 20000\n"),
        "recording.beep_frequency_hz",
        &["between 100 and 3800"],
    );

    let week = |monday: &str| {
        format!(
            "{MINIMAL}[schedule.business_hours]\nmonday = \"{monday}\"\ntuesday = \"closed\"\nwednesday = \"closed\"\nthursday = \"closed\"\nfriday = \"closed\"\nsaturday = \"closed\"\nsunday = \"closed\"\n"
        )
    };
    for bad in ["9-18", "09:00", "09:00-18", "open", "", "18:00-09:00", "09:00-13:00,12:00-14:00", "09:00-25:00"] {
        assert_err(&week(bad), "schedule.business_hours.monday", &[]);
    }
    assert_err(&week("9-18"), "schedule.business_hours.monday", &["expected \"HH:MM-HH:MM\""]);
    assert_err(&week("18:00-09:00"), "schedule.business_hours.monday", &["crossing midnight"]);
    // All seven days must be given.
    assert_err(
        &format!("{MINIMAL}[schedule.business_hours]\nmonday = \"closed\"\n"),
        "schedule.business_hours",
        &["missing field `tuesday`"],
    );

    let holiday = |dates: &str, greeting: &str| {
        format!(
            "{MINIMAL}[greetings]\nny = \"builtin:default\"\n[[schedule.holidays]]\nname = \"NY\"\ndates = \"{dates}\"\ngreeting = \"{greeting}\"\n"
        )
    };
    assert!(Config::from_toml_str(&holiday("12-31..01-08", "ny")).is_ok());
    assert_err(&holiday("12-32..01-08", "ny"), "schedule.holidays[0].dates", &["not a day of the year"]);
    assert_err(&holiday("2027-02-29", "ny"), "schedule.holidays[0].dates", &["not a valid date"]);
    assert_err(&holiday("12-31..2027-01-08", "ny"), "schedule.holidays[0].dates", &["both ends"]);
    assert_err(&holiday("Christmas", "ny"), "schedule.holidays[0].dates", &["expected \"MM-DD..MM-DD\""]);
    assert_err(
        &holiday("12-31..01-08", "xmas"),
        "schedule.holidays[0].greeting",
        &["unknown greeting \"xmas\"", "default, ny"],
    );

    assert_err(
        &format!("{MINIMAL}[schedule]\nafter_hours_greeting = \"default\"\n"),
        "schedule.after_hours_greeting",
        &["needs [schedule.business_hours]"],
    );
    assert_err(
        &format!("{MINIMAL}[schedule]\ndefault_greeting = \"nope\"\n"),
        "schedule.default_greeting",
        &["unknown greeting"],
    );
    assert_err(
        &format!("{MINIMAL}[schedule.temporary]\ngreeting = \"default\"\nuntil = \"next week\"\n"),
        "schedule.temporary.until",
        &["expected a date-time"],
    );
    assert_err(
        &format!(
            "{MINIMAL}[schedule.temporary]\ngreeting = \"default\"\nfrom = \"2026-09-01T00:00\"\nuntil = \"2026-08-01T00:00\"\n"
        ),
        "schedule.temporary",
        &["from must be before until"],
    );

    assert_err(
        &format!("{MINIMAL}[greetings]\nafter_hours = \"builtin:beep\"\n"),
        "greetings.after_hours",
        &["unknown built-in greeting"],
    );
    assert_err(&format!("{MINIMAL}[greetings]\nafter_hours = \"\"\n"), "greetings.after_hours", &["empty"]);
    assert_err(&format!("{MINIMAL}[greetings]\n\"bad name\" = \"x.wav\"\n"), "greetings.bad name", &["greeting names"]);

    assert_err(
        &format!("{MINIMAL}[directory]\npath = \"c.csv\"\ndefault_region = \"Russia\"\n"),
        "directory.default_region",
        &["unknown region \"Russia\""],
    );
    assert_err(
        &format!("{MINIMAL}[delivery.maildir]\nroot = \"m\"\nfolder = \"../x\"\n"),
        "delivery.maildir.folder",
        &["folder name"],
    );
    assert_err(
        &format!("{MINIMAL}[delivery.smtp]\nhost = \"h\"\nport = 25\nfrom = \"not an address\"\n"),
        "delivery.smtp.from",
        &["e-mail address"],
    );
    assert_err(
        &format!(
            "{MINIMAL}[delivery.smtp]\nhost = \"h\"\nport = 25\nfrom = \"a@b.c\"\nto = [\"x@y.z\\r\\nBcc: e@f.g\"]\n"
        ),
        "delivery.smtp.to[0]",
        &["e-mail address"],
    );
    assert_err(
        &format!("{MINIMAL}[delivery.smtp]\nhost = \"h\"\nport = 25\nfrom = \"a@b.c\"\nusername = \"u\"\n"),
        "delivery.smtp",
        &["username and password"],
    );
}

#[test]
fn greeting_files_are_checked_at_load_time() {
    let dir = tmp_dir("greetings");
    let tone = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/greeting/tone-8000-mono.wav");
    let garbage = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/greeting/garbage.wav");

    let config = |greetings: &str| format!("{MINIMAL}[greetings]\n{greetings}\n");
    write(&dir.join("missing.toml"), &config("after_hours = \"after-hours.wav\""));
    match Config::load(&dir.join("missing.toml")) {
        Err(e) => {
            assert_eq!(e.key(), Some("greetings.after_hours"));
            let shown = e.to_string();
            assert!(shown.starts_with("greetings.after_hours: file not found: "), "{shown}");
            // The relative path was resolved against the config file's directory.
            assert!(shown.contains(&dir.join("after-hours.wav").display().to_string()), "{shown}");
        }
        Ok(_) => panic!("a missing greeting file must be an error"),
    }

    write(&dir.join("garbage.toml"), &config(&format!("after_hours = {:?}", garbage.display().to_string())));
    match Config::load(&dir.join("garbage.toml")) {
        Err(e @ ConfigError::Greeting { .. }) => assert_eq!(e.key(), Some("greetings.after_hours"), "{e}"),
        other => panic!("an undecodable greeting must be an error, got {other:?}"),
    }

    if let Err(e) = fs::copy(&tone, dir.join("after-hours.wav")) {
        panic!("{e}");
    }
    let loaded = match Config::load(&dir.join("missing.toml")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(loaded.spool, dir.join("spool"));
    assert!(loaded.prompt("after_hours").is_some_and(|p| p.samples() > 0));
    assert!(loaded.prompt("default").is_some_and(|p| p.samples() > 0), "builtin:default loads the bundled greeting");
    assert!(loaded.prompt("nope").is_none());
}

#[test]
fn unreadable_config_file_and_directory_errors() {
    let dir = tmp_dir("files");
    assert!(matches!(Config::load(&dir.join("nope.toml")), Err(ConfigError::Read { .. })));
    write(&dir.join("dir.toml"), &format!("{MINIMAL}[directory]\npath = \"clients.csv\"\ndefault_region = \"RU\"\n"));
    match Config::load(&dir.join("dir.toml")) {
        Err(e @ ConfigError::Directory { .. }) => assert_eq!(e.key(), Some("directory.path"), "{e}"),
        other => panic!("a missing directory must be an error, got {other:?}"),
    }
    write(
        &dir.join("clients.csv"),
        "number,client,manager_name,manager_email\n+74951234567,A,Anna,anna@example.com\nbogus,B,Boris,boris@example.com\n",
    );
    match Config::load(&dir.join("dir.toml")) {
        Err(e) => assert!(e.to_string().starts_with("directory.path: line 3: "), "{e}"),
        Ok(_) => panic!("a bad directory row must be an error"),
    }
}

#[test]
fn the_example_config_loads() {
    let path = repo_root().join("examples/voicemail.toml");
    let c = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => panic!("examples/voicemail.toml: {e}"),
    };
    let examples = repo_root().join("examples");
    assert_eq!(c.mailbox, "Sales");
    assert_eq!(c.timezone_name(), "Europe/Moscow");
    assert_eq!(c.spool, examples.join("../voicemail-data/spool"));
    assert_eq!(c.recording.max_length, Duration::from_secs(180));
    assert_eq!(c.store.min_free_bytes, 10_000_000);
    assert_eq!(c.delivery.maildir.as_ref().map(|m| m.root.clone()), Some(examples.join("../voicemail-data/Maildir")));
    assert_eq!(c.delivery.maildir.as_ref().map(|m| m.folder.as_str()), Some("Voicemail"));
    assert!(c.delivery.smtp.is_some());
    assert!(c.delivery.imap.is_none());
    for name in ["default", "after_hours", "new_year", "may_holidays", "vacation"] {
        assert!(c.prompt(name).is_some(), "greeting {name} loaded");
    }
    // The holiday from 12-31 to 01-08, in Moscow time.
    let at = |s: &str| c.greeting_at(s.parse().unwrap_or(jiff::Timestamp::UNIX_EPOCH));
    let ny = at("2026-12-31T09:00:00Z");
    assert_eq!(ny.name, "new_year");
    assert!(matches!(ny.reason, GreetingReason::Holiday { .. }));
    assert_eq!(at("2026-06-10T08:00:00Z").name, "default"); // Wednesday 11:00 MSK
    assert_eq!(at("2026-06-10T10:30:00Z").name, "after_hours"); // lunch
    assert_eq!(at("2026-08-05T08:00:00Z").name, "vacation");
    // The example client directory.
    let dir = c.client_directory();
    assert!(dir.is_some());
    if let Some(dir) = dir {
        assert_eq!(dir.lookup("8 (495) 123-45-67").map(|e| e.manager_email.as_str()), Some("anna.petrova@example.com"));
        assert_eq!(dir.lookup("88005553535").map(|e| e.client.as_str()), Some("Horns & Hooves Ltd"));
        assert!(dir.lookup("+74957654321").is_none());
    }
}

/// `[delivery.imap]`: the watcher is on by default, every 30 s; `watch` and `poll_interval`
/// are read, and an interval out of 1s..=29m is an error naming the key.
#[test]
fn imap_watch_keys() {
    const IMAP: &str =
        "[delivery.imap]\nhost = \"h\"\nport = 143\nusername = \"u\"\npassword = \"p\"\nfolder = \"V\"\n";
    let c = Config::from_toml_str(&format!("{MINIMAL}{IMAP}")).unwrap_or_else(|e| panic!("{e}"));
    let imap = c.delivery.imap.clone().unwrap_or_else(|| panic!("[delivery.imap]"));
    assert!(imap.watch);
    assert_eq!(imap.poll_interval, Duration::from_secs(30));
    let c = Config::from_toml_str(&format!("{MINIMAL}{IMAP}watch = false\npoll_interval = \"2m\"\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let imap = c.delivery.imap.clone().unwrap_or_else(|| panic!("[delivery.imap]"));
    assert!(!imap.watch);
    assert_eq!(imap.poll_interval, Duration::from_secs(120));
    for bad in ["500ms", "30m", "soon"] {
        assert_err(&format!("{MINIMAL}{IMAP}poll_interval = \"{bad}\"\n"), "delivery.imap.poll_interval", &[bad]);
    }
    assert_err(&format!("{MINIMAL}{IMAP}watch = \"yes\"\n"), "delivery.imap.watch", &["invalid type"]);
}

#[test]
fn embedded_defaults() {
    let mut c = Config::default_embedded();
    assert_eq!(c.timezone_name(), "UTC");
    assert_eq!(c.spool, PathBuf::from("./voicemail-data/spool"));
    assert_eq!(c.store, StoreConfig::default());
    let maildir = c.delivery.maildir.clone();
    assert_eq!(maildir.as_ref().map(|m| m.root.clone()), Some(PathBuf::from("./voicemail-data/Maildir")));
    assert_eq!(maildir.as_ref().map(|m| m.folder.as_str()), Some("Voicemail"));
    assert!(c.delivery.smtp.is_none() && c.delivery.imap.is_none());
    assert_eq!(c.greetings.get("default"), Some(&GreetingSource::BuiltinDefault));
    assert_eq!(c.greeting_at(jiff::Timestamp::UNIX_EPOCH).name, "default");
    assert!(c.prompt("default").is_none());
    if let Err(e) = c.load_prompts() {
        panic!("{e}");
    }
    assert!(c.prompt("default").is_some_and(|p| p.samples() > 0));
}

#[test]
fn recording_limits_reach_the_call() {
    let text = format!(
        "{MINIMAL}[recording]\nmax_length = \"1m30s\"\nsilence_timeout = \"off\"\nmedia_timeout = \"20s\"\nfinish_key = \"*\"\nbeep_frequency_hz = 800\nbeep_length = \"200ms\"\n"
    );
    let c = match Config::from_toml_str(&text) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(c.recording.silence_timeout, None);
    let mut call = voicemail_core::CallConfig::new(
        voicemail_core::MessageId::parse("m1").unwrap(),
        "+74951234567",
        jiff::Timestamp::UNIX_EPOCH,
    );
    if let Err(e) = c.recording.apply_to(&mut call) {
        panic!("{e}");
    }
    assert_eq!(call.max_length, Duration::from_secs(90));
    assert_eq!(call.silence_timeout, None);
    assert_eq!(call.media_timeout, Duration::from_secs(20));
    assert_eq!(call.finish_key.map(|k| k.as_char()), Some('*'));
    assert!(call.beep.as_ref().is_some_and(|b| b.samples() == 1600), "200 ms at 8 kHz");

    let none = format!("{MINIMAL}[recording]\nfinish_key = \"none\"\n");
    assert!(Config::from_toml_str(&none).is_ok_and(|c| c.recording.finish_key.is_none()));
}

const SMTP: &str = "[delivery.smtp]\nhost = \"127.0.0.1\"\nport = 2525\nfrom = \"vm@example.com\"\n";

#[test]
fn followup_email_web_and_greeting_labels() {
    let ok = |text: &str| match Config::from_toml_str(text) {
        Ok(c) => c,
        Err(e) => panic!("{e}\n{text}"),
    };
    // Defaults: English, built-in templates, no reminders, no public URL, labels from names.
    let c = ok(MINIMAL);
    assert_eq!(c.email.language, voicemail_core::template::Language::En);
    assert!(c.followup.is_none() && c.public_url.is_none() && c.web.is_none());
    assert_eq!(c.greeting_label("after_hours"), "After hours");

    let c = ok(&format!(
        "{MINIMAL}[greetings]\nnew_year = {{ file = \"builtin:default\", label = \"Новогодние праздники\" }}\n\
         [email]\nlanguage = \"ru\"\nreminder_subject = \"{{{{ step }}}} {{{{ number }}}}\"\n\
         [web]\npublic_url = \"https://vm.example.com/queue/\"\nlisten = \"127.0.0.1:8080\"\n\
         [followup]\nremind_after = \"4h\"\nremind_every = \"2h\"\nescalate_after = \"1h30m\"\n\
         escalate_to = [\"head@example.com\"]\n{SMTP}"
    ));
    assert_eq!(c.greeting_label("new_year"), "Новогодние праздники");
    assert_eq!(c.greetings.get("new_year"), Some(&GreetingSource::BuiltinDefault));
    assert_eq!(c.email.language, voicemail_core::template::Language::Ru);
    assert_eq!(c.public_url.as_deref(), Some("https://vm.example.com/queue"));
    assert!(c.web.as_ref().is_some_and(|w| w.contains_key("listen")), "the web table is kept for the web front-end");
    let id = voicemail_core::MessageId::parse("m-1").unwrap();
    assert_eq!(c.message_url(&id).as_deref(), Some("https://vm.example.com/queue/messages/m-1"));
    let f = c.followup.unwrap();
    assert_eq!(f.remind_after, Duration::from_secs(4 * 3600));
    assert_eq!(f.remind_every, Some(Duration::from_secs(2 * 3600)));
    assert_eq!(f.escalate_after, Some(Duration::from_secs(5400)));
    assert_eq!(f.escalate_to, ["head@example.com"]);

    // Errors name the key.
    assert_err(&format!("{MINIMAL}[email]\nlanguage = \"de\"\n"), "email.language", &["\"en\" or \"ru\"", "\"de\""]);
    assert_err(&format!("{MINIMAL}[email]\nsubject = \"{{{{ numbr }}}}\"\n"), "email.subject", &["undefined"]);
    assert_err(&format!("{MINIMAL}[email]\nbody = \"{{% if client %}}\"\n"), "email.body", &["syntax error"]);
    assert_err(&format!("{MINIMAL}[email]\nfooter = \"x\"\n"), "email.footer", &["unknown field `footer`"]);
    assert_err(&format!("{MINIMAL}[followup]\nremind_after = \"4h\"\n"), "followup", &["[delivery.smtp]"]);
    assert_err(&format!("{MINIMAL}{SMTP}[followup]\nremind_every = \"4h\"\n"), "followup", &["remind_after"]);
    assert_err(
        &format!("{MINIMAL}{SMTP}[followup]\nremind_after = \"4 hours\"\n"),
        "followup.remind_after",
        &["duration"],
    );
    assert_err(
        &format!("{MINIMAL}{SMTP}[followup]\nremind_after = \"30s\"\n"),
        "followup.remind_after",
        &["1m and 1000h"],
    );
    assert_err(
        &format!("{MINIMAL}{SMTP}[followup]\nremind_after = \"4h\"\nescalate_after = \"8h\"\n"),
        "followup.escalate_to",
        &["escalate_after needs escalate_to"],
    );
    assert_err(
        &format!("{MINIMAL}{SMTP}[followup]\nremind_after = \"4h\"\nescalate_to = [\"a@b.c\"]\n"),
        "followup.escalate_after",
        &["needs escalate_after"],
    );
    assert_err(
        &format!(
            "{MINIMAL}{SMTP}[followup]\nremind_after = \"4h\"\nescalate_after = \"8h\"\nescalate_to = [\"not an address\"]\n"
        ),
        "followup.escalate_to[0]",
        &["e-mail address"],
    );
    for bad in ["vm.example.com", "ftp://x", "https://", "https://a b", "https://x/?q=1", "https://x<y", "https://x y"]
    {
        assert_err(&format!("{MINIMAL}[web]\npublic_url = \"{bad}\"\n"), "web.public_url", &["http"]);
    }
    assert_err(&format!("{MINIMAL}[web]\npublic_url = 5\n"), "web.public_url", &["string"]);
    assert_err(
        &format!("{MINIMAL}[greetings]\nx = {{ file = \"builtin:default\", label = \"a\\nb\" }}\n"),
        "greetings.x.label",
        &["control"],
    );
    assert_err(&format!("{MINIMAL}[greetings]\nx = {{ label = \"X\" }}\n"), "greetings.x", &["file"]);
    assert_err(&format!("{MINIMAL}[greetings]\nx = {{ file = \"\" }}\n"), "greetings.x.file", &["empty"]);
}
