//! The greeting calendar picks the right greeting name for an instant, in the mailbox's IANA
//! time zone: each precedence level (holiday > temporary > after-hours > business hours >
//! default), yearly holidays wrapping the year end, February 29, one-off holidays, temporary
//! greetings expiring, DST transitions in America/New_York (2026-03-08 gap, 2026-11-01
//! overlap), and Europe/Moscow (UTC+3, no DST). Also the same calendar read from TOML.

use jiff::Timestamp;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use voicemail_core::config::Config;
use voicemail_core::schedule::{
    DateRange, DayHours, GreetingChoice, GreetingReason, Holiday, Schedule, TemporaryGreeting, WeekHours, parse_instant,
};

fn tz(name: &str) -> TimeZone {
    match TimeZone::get(name) {
        Ok(tz) => tz,
        Err(e) => panic!("time zone {name}: {e}"),
    }
}

fn ts(s: &str) -> Timestamp {
    match s.parse() {
        Ok(t) => t,
        Err(e) => panic!("timestamp {s}: {e}"),
    }
}

fn hours(s: &str) -> DayHours {
    match DayHours::parse(s) {
        Ok(h) => h,
        Err(e) => panic!("hours {s}: {e}"),
    }
}

fn dates(s: &str) -> DateRange {
    match DateRange::parse(s) {
        Ok(d) => d,
        Err(e) => panic!("dates {s}: {e}"),
    }
}

/// Mon-Fri 09:00-13:00 and 14:00-18:00, Saturday 10:00-14:00, Sunday closed.
fn office_week() -> WeekHours {
    let mut w = WeekHours::closed();
    for day in [Weekday::Monday, Weekday::Tuesday, Weekday::Wednesday, Weekday::Thursday, Weekday::Friday] {
        w.set(day, hours("09:00-13:00, 14:00-18:00"));
    }
    w.set(Weekday::Saturday, hours("10:00-14:00"));
    w.set(Weekday::Sunday, DayHours::closed());
    w
}

fn moscow_office() -> Schedule {
    Schedule::new(tz("Europe/Moscow"), "default")
        .with_business_hours(office_week())
        .with_business_hours_greeting("office")
        .with_after_hours_greeting("after_hours")
}

fn name(choice: &GreetingChoice) -> &str {
    &choice.name
}

#[test]
fn default_when_no_rule_applies() {
    let s = Schedule::new(tz("Europe/Moscow"), "default");
    let c = s.greeting_at(ts("2026-06-10T12:00:00Z"));
    assert_eq!(c, GreetingChoice { name: "default".into(), reason: GreetingReason::Default });
}

#[test]
fn business_hours_and_after_hours_in_moscow() {
    let s = moscow_office();
    // Wednesday 2026-06-10. Moscow is UTC+3 all year.
    let cases = [
        ("2026-06-10T05:59:59Z", "after_hours"), // 08:59:59 local
        ("2026-06-10T06:00:00Z", "office"),      // 09:00 local
        ("2026-06-10T09:59:00Z", "office"),      // 12:59
        ("2026-06-10T10:00:00Z", "after_hours"), // 13:00: lunch break
        ("2026-06-10T10:30:00Z", "after_hours"),
        ("2026-06-10T11:00:00Z", "office"),      // 14:00
        ("2026-06-10T14:59:59Z", "office"),      // 17:59:59
        ("2026-06-10T15:00:00Z", "after_hours"), // 18:00 closes (half-open range)
        ("2026-06-13T07:00:00Z", "office"),      // Saturday 10:00
        ("2026-06-13T11:00:00Z", "after_hours"), // Saturday 14:00
        ("2026-06-14T09:00:00Z", "after_hours"), // Sunday noon: closed
        ("2026-06-10T22:30:00Z", "after_hours"), // Thursday 01:30 local, Wednesday in UTC
    ];
    for (at, want) in cases {
        let c = s.greeting_at(ts(at));
        assert_eq!(name(&c), want, "at {at} (local {})", s.local_time(ts(at)));
        let reason = if want == "office" { GreetingReason::BusinessHours } else { GreetingReason::AfterHours };
        assert_eq!(c.reason, reason, "at {at}");
    }
}

#[test]
fn business_hours_without_their_own_greeting_play_the_default() {
    let s = Schedule::new(tz("Europe/Moscow"), "default")
        .with_business_hours(office_week())
        .with_after_hours_greeting("after_hours");
    assert_eq!(s.greeting_at(ts("2026-06-10T07:00:00Z")).reason, GreetingReason::Default);
    assert_eq!(name(&s.greeting_at(ts("2026-06-10T20:00:00Z"))), "after_hours");
}

#[test]
fn precedence_holiday_over_temporary_over_after_hours_over_business_hours() {
    let temporary = TemporaryGreeting { greeting: "vacation".into(), from: None, until: ts("2026-06-20T00:00:00Z") };
    let s = moscow_office().with_temporary(Some(temporary)).with_holiday(Holiday {
        name: "Russia Day".into(),
        dates: dates("06-12"),
        greeting: "holiday".into(),
    });

    // Friday 2026-06-12 is the holiday: holiday beats the active temporary greeting and hours.
    let c = s.greeting_at(ts("2026-06-12T08:00:00Z"));
    assert_eq!(
        c,
        GreetingChoice { name: "holiday".into(), reason: GreetingReason::Holiday { holiday: "Russia Day".into() } }
    );
    // Thursday in business hours: temporary beats business hours.
    let c = s.greeting_at(ts("2026-06-11T08:00:00Z"));
    assert_eq!(
        c,
        GreetingChoice {
            name: "vacation".into(),
            reason: GreetingReason::Temporary { until: ts("2026-06-20T00:00:00Z") }
        }
    );
    // Thursday night: temporary beats after-hours.
    assert_eq!(name(&s.greeting_at(ts("2026-06-11T20:00:00Z"))), "vacation");
    // Once expired, business hours and after-hours come back.
    assert_eq!(name(&s.greeting_at(ts("2026-06-22T08:00:00Z"))), "office");
    assert_eq!(name(&s.greeting_at(ts("2026-06-22T20:00:00Z"))), "after_hours");
}

#[test]
fn temporary_greeting_expires_exactly_at_until_and_starts_at_from() {
    let t = TemporaryGreeting {
        greeting: "moving".into(),
        from: Some(ts("2026-07-01T06:00:00Z")),
        until: ts("2026-07-03T15:00:00Z"),
    };
    let s = Schedule::new(tz("Europe/Moscow"), "default").with_temporary(Some(t));
    assert_eq!(name(&s.greeting_at(ts("2026-07-01T05:59:59Z"))), "default");
    assert_eq!(name(&s.greeting_at(ts("2026-07-01T06:00:00Z"))), "moving");
    assert_eq!(name(&s.greeting_at(ts("2026-07-03T14:59:59Z"))), "moving");
    assert_eq!(name(&s.greeting_at(ts("2026-07-03T15:00:00Z"))), "default");
}

#[test]
fn yearly_holiday_wraps_over_the_year_end() {
    let s = moscow_office().with_holiday(Holiday {
        name: "New Year".into(),
        dates: dates("12-31..01-08"),
        greeting: "new_year".into(),
    });
    // Local dates in Moscow: 2026-12-30 23:59 is not yet the holiday, 12-31 00:00 is.
    assert_eq!(name(&s.greeting_at(ts("2026-12-30T20:59:59Z"))), "after_hours");
    assert_eq!(name(&s.greeting_at(ts("2026-12-30T21:00:00Z"))), "new_year");
    // Business hours on a weekday inside the holiday still get the holiday greeting.
    assert_eq!(name(&s.greeting_at(ts("2027-01-05T08:00:00Z"))), "new_year");
    assert_eq!(name(&s.greeting_at(ts("2027-01-08T20:59:59Z"))), "new_year");
    assert_eq!(name(&s.greeting_at(ts("2027-01-08T21:00:00Z"))), "after_hours"); // Sat 01-09 00:00
    assert_eq!(name(&s.greeting_at(ts("2027-01-11T08:00:00Z"))), "office");
    // Every year, not just one.
    assert_eq!(name(&s.greeting_at(ts("2031-01-01T12:00:00Z"))), "new_year");
    assert_eq!(name(&s.greeting_at(ts("2031-06-01T12:00:00Z"))), "after_hours"); // a Sunday
}

#[test]
fn holiday_dates_are_local_not_utc() {
    let s = Schedule::new(tz("Europe/Moscow"), "default").with_holiday(Holiday {
        name: "Victory Day".into(),
        dates: dates("05-09"),
        greeting: "holiday".into(),
    });
    // 2026-05-08T22:00Z is 05-09 01:00 in Moscow; 2026-05-09T21:30Z is 05-10 00:30.
    assert_eq!(name(&s.greeting_at(ts("2026-05-08T20:59:59Z"))), "default");
    assert_eq!(name(&s.greeting_at(ts("2026-05-08T22:00:00Z"))), "holiday");
    assert_eq!(name(&s.greeting_at(ts("2026-05-09T21:30:00Z"))), "default");
}

#[test]
fn one_off_holiday_applies_once() {
    let s = Schedule::new(tz("Europe/Moscow"), "default").with_holiday(Holiday {
        name: "May holidays 2026".into(),
        dates: dates("2026-05-01..2026-05-03"),
        greeting: "may".into(),
    });
    assert_eq!(name(&s.greeting_at(ts("2026-04-30T20:59:59Z"))), "default");
    assert_eq!(name(&s.greeting_at(ts("2026-04-30T21:00:00Z"))), "may");
    assert_eq!(name(&s.greeting_at(ts("2026-05-03T20:59:59Z"))), "may");
    assert_eq!(name(&s.greeting_at(ts("2026-05-03T21:00:00Z"))), "default");
    assert_eq!(name(&s.greeting_at(ts("2027-05-02T12:00:00Z"))), "default");
}

#[test]
fn february_29() {
    let s = Schedule::new(tz("UTC"), "default")
        .with_holiday(Holiday { name: "Leap day".into(), dates: dates("02-29"), greeting: "leap".into() })
        .with_holiday(Holiday { name: "Late Feb".into(), dates: dates("02-28..03-01"), greeting: "late_feb".into() });
    // The leap day exists only in leap years; the first holiday wins where both apply.
    assert_eq!(name(&s.greeting_at(ts("2028-02-29T12:00:00Z"))), "leap");
    assert_eq!(name(&s.greeting_at(ts("2028-02-28T12:00:00Z"))), "late_feb");
    assert_eq!(name(&s.greeting_at(ts("2027-02-28T12:00:00Z"))), "late_feb");
    assert_eq!(name(&s.greeting_at(ts("2027-03-01T12:00:00Z"))), "late_feb");
    assert_eq!(name(&s.greeting_at(ts("2027-03-02T12:00:00Z"))), "default");
    // A one-off range over a leap day, and a one-off Feb 29 in a non-leap year is rejected.
    assert!(dates("2028-02-28..2028-03-01").contains(jiff::civil::date(2028, 2, 29)));
    assert!(DateRange::parse("2027-02-29").is_err());
    assert!(DateRange::parse("02-30").is_err());
}

#[test]
fn dst_spring_forward_gap_in_new_york() {
    // 2026-03-08 (a Sunday): 02:00 EST jumps to 03:00 EDT; 02:00-02:59 local does not exist.
    let mut week = WeekHours::closed();
    week.set(Weekday::Sunday, hours("02:30-05:00"));
    let s = Schedule::new(tz("America/New_York"), "default")
        .with_business_hours(week)
        .with_business_hours_greeting("open")
        .with_after_hours_greeting("closed");
    assert_eq!(name(&s.greeting_at(ts("2026-03-08T06:59:59Z"))), "closed"); // 01:59:59 EST
    assert_eq!(s.local_time(ts("2026-03-08T07:00:00Z")).to_string(), "2026-03-08T03:00:00");
    assert_eq!(name(&s.greeting_at(ts("2026-03-08T07:00:00Z"))), "open"); // 03:00 EDT, after 02:30
    assert_eq!(name(&s.greeting_at(ts("2026-03-08T08:59:59Z"))), "open"); // 04:59:59 EDT
    assert_eq!(name(&s.greeting_at(ts("2026-03-08T09:00:00Z"))), "closed"); // 05:00 EDT
    // A civil time in the gap resolves to the later side (02:30 EST does not exist -> 03:30 EDT).
    let t = parse_instant("2026-03-08T02:30", &tz("America/New_York"));
    assert_eq!(t.ok(), Some(ts("2026-03-08T07:30:00Z")));
}

#[test]
fn dst_fall_back_overlap_in_new_york() {
    // 2026-11-01 (a Sunday): 02:00 EDT falls back to 01:00 EST; 01:00-01:59 happens twice.
    let mut week = WeekHours::closed();
    week.set(Weekday::Sunday, hours("01:00-02:00"));
    let s = Schedule::new(tz("America/New_York"), "default")
        .with_business_hours(week)
        .with_business_hours_greeting("open")
        .with_after_hours_greeting("closed");
    let first = ts("2026-11-01T05:30:00Z"); // 01:30 EDT
    let second = ts("2026-11-01T06:30:00Z"); // 01:30 EST
    assert_eq!(s.local_time(first), s.local_time(second));
    assert_eq!(name(&s.greeting_at(first)), "open");
    assert_eq!(name(&s.greeting_at(second)), "open");
    assert_eq!(name(&s.greeting_at(ts("2026-11-01T04:59:59Z"))), "closed"); // 00:59:59 EDT
    assert_eq!(name(&s.greeting_at(ts("2026-11-01T07:00:00Z"))), "closed"); // 02:00 EST
    // Ordinary office hours keep their wall-clock times across both transitions.
    let mut office = WeekHours::closed();
    office.set(Weekday::Monday, hours("09:00-17:00"));
    let s = Schedule::new(tz("America/New_York"), "default")
        .with_business_hours(office)
        .with_after_hours_greeting("closed");
    assert_eq!(name(&s.greeting_at(ts("2026-03-02T13:59:00Z"))), "closed"); // 08:59 EST
    assert_eq!(name(&s.greeting_at(ts("2026-03-02T14:00:00Z"))), "default"); // 09:00 EST
    assert_eq!(name(&s.greeting_at(ts("2026-03-09T12:59:00Z"))), "closed"); // 08:59 EDT
    assert_eq!(name(&s.greeting_at(ts("2026-03-09T13:00:00Z"))), "default"); // 09:00 EDT
    assert_eq!(name(&s.greeting_at(ts("2026-11-02T14:00:00Z"))), "default"); // 09:00 EST
    assert_eq!(name(&s.greeting_at(ts("2026-11-02T13:59:00Z"))), "closed");
}

#[test]
fn the_same_calendar_from_toml() {
    let text = r#"
        mailbox = "Sales"
        timezone = "Europe/Moscow"
        spool = "spool"

        [greetings]
        after_hours = "builtin:default"
        office = "builtin:default"
        new_year = "builtin:default"
        vacation = "builtin:default"

        [schedule]
        business_hours_greeting = "office"
        after_hours_greeting = "after_hours"

        [schedule.business_hours]
        monday = "09:00-13:00, 14:00-18:00"
        tuesday = "09:00-13:00, 14:00-18:00"
        wednesday = "09:00-13:00, 14:00-18:00"
        thursday = "09:00-13:00, 14:00-18:00"
        friday = "09:00-13:00, 14:00-18:00"
        saturday = "10:00-14:00"
        sunday = "closed"

        [[schedule.holidays]]
        name = "New Year"
        dates = "12-31..01-08"
        greeting = "new_year"

        [schedule.temporary]
        greeting = "vacation"
        from = "2026-08-01T00:00"
        until = 2026-08-15T00:00:00+03:00
    "#;
    let config = match Config::from_toml_str(text) {
        Ok(c) => c,
        Err(e) => panic!("config should parse: {e}"),
    };
    let at = |s: &str| config.greeting_at(ts(s)).name;
    assert_eq!(at("2026-06-10T07:00:00Z"), "office");
    assert_eq!(at("2026-06-10T16:00:00Z"), "after_hours");
    assert_eq!(at("2027-01-04T07:00:00Z"), "new_year");
    assert_eq!(at("2026-07-31T20:59:59Z"), "after_hours"); // Fri 23:59:59 MSK
    assert_eq!(at("2026-07-31T21:00:00Z"), "vacation"); // 08-01 00:00 MSK
    assert_eq!(at("2026-08-14T20:59:59Z"), "vacation");
    assert_eq!(at("2026-08-14T21:00:00Z"), "after_hours"); // Sat 08-15 00:00 MSK
    assert_eq!(at("2026-06-10T07:00:00Z"), config.schedule.greeting_at(ts("2026-06-10T07:00:00Z")).name);
}
