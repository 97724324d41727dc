//! The greeting calendar: which greeting plays at a given moment.
//!
//! A [`Schedule`] answers one question, [`Schedule::greeting_at`]: given a UTC instant (a
//! [`jiff::Timestamp`], never the clock), which greeting *name* plays and why. The mailbox's
//! configuration maps names to loaded prompts.
//!
//! Everything is evaluated in the mailbox's IANA time zone, in local civil time: the instant is
//! converted to the wall-clock date and time of the zone first, and the rules only ever look at
//! that wall clock. Daylight-saving transitions therefore need no special cases:
//!
//! - in a spring-forward gap (America/New_York 2026-03-08 02:00–03:00 does not exist), no
//!   instant maps to the missing wall-clock times, so a business-hours range starting at 02:30
//!   simply opens at 03:00 local, the first existing wall-clock time after 02:30;
//! - in a fall-back overlap (2026-11-01 01:00–02:00 happens twice), both instants map to the
//!   same wall-clock time and get the same greeting.
//!
//! Precedence, highest first:
//!
//! 1. a **holiday** covering the local date ([`GreetingReason::Holiday`]);
//! 2. the **temporary** greeting while it is active ([`GreetingReason::Temporary`]);
//! 3. the **after-hours** greeting outside business hours ([`GreetingReason::AfterHours`]);
//! 4. the **business-hours** greeting inside business hours ([`GreetingReason::BusinessHours`]);
//! 5. the **default** greeting ([`GreetingReason::Default`]).
//!
//! A level without a configured greeting is skipped, so a mailbox with business hours but no
//! business-hours greeting plays the default greeting during business hours.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::TimeZone;
use serde::Serialize;

/// Why a schedule value could not be parsed. The message says what was expected; the
/// configuration loader prefixes it with the key path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

impl ScheduleError {
    fn new(message: impl Into<String>) -> Self {
        ScheduleError(message.into())
    }

    /// What went wrong, without a key path.
    pub fn message(&self) -> &str {
        &self.0
    }
}

/// A half-open range of wall-clock time within one day, `start <= t < end`, minute precision.
///
/// Written `"HH:MM-HH:MM"`; the end may be `24:00` (the end of the day). Ranges crossing
/// midnight are written as two ranges on two days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeRange {
    start_min: u16,
    end_min: u16,
}

impl TimeRange {
    /// A range from `start` to `end`, both as minutes after midnight (`end` at most 1440).
    pub fn from_minutes(start: u16, end: u16) -> Result<Self, ScheduleError> {
        if end > 24 * 60 {
            return Err(ScheduleError::new("the end is after 24:00"));
        }
        if start >= end {
            return Err(ScheduleError::new(
                "the start must be before the end (split ranges crossing midnight across two days)",
            ));
        }
        Ok(TimeRange { start_min: start, end_min: end })
    }

    /// Parses `"HH:MM-HH:MM"` (for example `"09:00-18:00"`).
    pub fn parse(s: &str) -> Result<Self, ScheduleError> {
        let expected = || ScheduleError::new(format!("expected \"HH:MM-HH:MM\", found {s:?}"));
        let (a, b) = s.trim().split_once('-').ok_or_else(expected)?;
        let start = parse_hh_mm(a.trim()).ok_or_else(expected)?;
        let end = parse_hh_mm(b.trim()).ok_or_else(expected)?;
        if start == 24 * 60 {
            return Err(expected());
        }
        TimeRange::from_minutes(start, end).map_err(|e| ScheduleError::new(format!("{s:?}: {e}")))
    }

    /// The start, in minutes after midnight.
    pub fn start_minutes(self) -> u16 {
        self.start_min
    }

    /// The end (exclusive), in minutes after midnight; 1440 is the end of the day.
    pub fn end_minutes(self) -> u16 {
        self.end_min
    }

    /// Whether the wall-clock time `seconds_of_day` (0..86400) lies within the range.
    fn contains_second(self, seconds_of_day: u32) -> bool {
        let start = u32::from(self.start_min) * 60;
        let end = u32::from(self.end_min) * 60;
        start <= seconds_of_day && seconds_of_day < end
    }
}

impl fmt::Display for TimeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start_min / 60,
            self.start_min % 60,
            self.end_min / 60,
            self.end_min % 60
        )
    }
}

/// Parses strict `HH:MM` (two digits each, `00:00`..=`24:00`) into minutes after midnight.
fn parse_hh_mm(s: &str) -> Option<u16> {
    let bytes = s.as_bytes();
    if bytes.len() != 5 || bytes[2] != b':' {
        return None;
    }
    let h = two_digits(bytes[0], bytes[1])?;
    let m = two_digits(bytes[3], bytes[4])?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

fn two_digits(a: u8, b: u8) -> Option<u16> {
    if a.is_ascii_digit() && b.is_ascii_digit() { Some(u16::from(a - b'0') * 10 + u16::from(b - b'0')) } else { None }
}

/// The opening hours of one weekday: zero or more non-overlapping ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayHours {
    ranges: Vec<TimeRange>,
}

impl DayHours {
    /// A day on which the business is closed all day.
    pub fn closed() -> Self {
        DayHours { ranges: Vec::new() }
    }

    /// A day with the given ranges; they are sorted and must not overlap.
    pub fn new(mut ranges: Vec<TimeRange>) -> Result<Self, ScheduleError> {
        ranges.sort_by_key(|r| r.start_min);
        for pair in ranges.windows(2) {
            if let [a, b] = pair
                && b.start_min < a.end_min
            {
                return Err(ScheduleError::new(format!("ranges {a} and {b} overlap")));
            }
        }
        Ok(DayHours { ranges })
    }

    /// Parses `"closed"` or one or more comma-separated `"HH:MM-HH:MM"` ranges
    /// (for example `"09:00-13:00, 14:00-18:00"`).
    pub fn parse(s: &str) -> Result<Self, ScheduleError> {
        let trimmed = s.trim();
        if trimmed == "closed" {
            return Ok(DayHours::closed());
        }
        if trimmed.is_empty() {
            return Err(ScheduleError::new(
                "expected \"HH:MM-HH:MM\" (several separated by commas) or \"closed\", found an empty string",
            ));
        }
        let ranges = trimmed
            .split(',')
            .map(|part| {
                TimeRange::parse(part).map_err(|e| {
                    ScheduleError::new(format!(
                        "{e} (expected \"HH:MM-HH:MM\", several separated by commas, or \"closed\")"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        DayHours::new(ranges)
    }

    /// The ranges, sorted by start.
    pub fn ranges(&self) -> &[TimeRange] {
        &self.ranges
    }

    /// Whether the business is closed all day.
    pub fn is_closed(&self) -> bool {
        self.ranges.is_empty()
    }

    fn is_open_at(&self, seconds_of_day: u32) -> bool {
        self.ranges.iter().any(|r| r.contains_second(seconds_of_day))
    }
}

/// Business hours for the seven weekdays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeekHours {
    days: [DayHours; 7],
}

impl WeekHours {
    /// Closed every day; set days with [`WeekHours::set`].
    pub fn closed() -> Self {
        WeekHours::default()
    }

    /// Sets the hours of one weekday.
    pub fn set(&mut self, day: Weekday, hours: DayHours) -> &mut Self {
        if let Some(slot) = self.days.get_mut(weekday_index(day)) {
            *slot = hours;
        }
        self
    }

    /// The hours of one weekday.
    pub fn day(&self, day: Weekday) -> &DayHours {
        // `weekday_index` is always 0..=6, so the fallback is never taken.
        self.days.get(weekday_index(day)).unwrap_or(&self.days[0])
    }

    /// Whether the local wall-clock date-time falls into business hours.
    pub fn is_open(&self, local: DateTime) -> bool {
        let seconds =
            u32::try_from(i32::from(local.hour()) * 3600 + i32::from(local.minute()) * 60 + i32::from(local.second()))
                .unwrap_or(0);
        self.day(local.weekday()).is_open_at(seconds)
    }
}

fn weekday_index(day: Weekday) -> usize {
    usize::try_from(day.to_monday_zero_offset()).unwrap_or(0)
}

/// An inclusive range of dates, either every year (`12-31..01-08`, which may wrap over the
/// year end) or once (`2026-05-01..2026-05-03`). A single day is written without `..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DateRange {
    /// Every year from `start` to `end` (month, day), both inclusive. When `start > end` the
    /// range wraps over the year end. `(2, 29)` is allowed and only exists in leap years.
    Yearly {
        /// First day as (month, day).
        start: (i8, i8),
        /// Last day as (month, day).
        end: (i8, i8),
    },
    /// Once, from `start` to `end`, both inclusive.
    Once {
        /// First day.
        start: Date,
        /// Last day.
        end: Date,
    },
}

impl DateRange {
    /// Parses `MM-DD..MM-DD`, `YYYY-MM-DD..YYYY-MM-DD`, or a single `MM-DD` / `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Result<Self, ScheduleError> {
        let expected = || {
            ScheduleError::new(format!(
                "expected \"MM-DD..MM-DD\" (every year) or \"YYYY-MM-DD..YYYY-MM-DD\" (once), found {s:?}"
            ))
        };
        let trimmed = s.trim();
        let (a, b) = match trimmed.split_once("..") {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (trimmed, trimmed),
        };
        if is_month_day_shape(a) && is_month_day_shape(b) {
            let start = parse_month_day(a)
                .ok_or_else(|| ScheduleError::new(format!("{s:?}: {a:?} is not a day of the year")))?;
            let end = parse_month_day(b)
                .ok_or_else(|| ScheduleError::new(format!("{s:?}: {b:?} is not a day of the year")))?;
            return Ok(DateRange::Yearly { start, end });
        }
        if !is_full_date_shape(a) || !is_full_date_shape(b) {
            if (is_month_day_shape(a) || is_full_date_shape(a)) && (is_month_day_shape(b) || is_full_date_shape(b)) {
                return Err(ScheduleError::new(format!(
                    "{s:?}: both ends must be \"MM-DD\" (every year) or both \"YYYY-MM-DD\" (once)"
                )));
            }
            return Err(expected());
        }
        let start: Date = a.parse().map_err(|_| ScheduleError::new(format!("{s:?}: {a:?} is not a valid date")))?;
        let end: Date = b.parse().map_err(|_| ScheduleError::new(format!("{s:?}: {b:?} is not a valid date")))?;
        if end < start {
            return Err(ScheduleError::new(format!("{s:?}: the last day is before the first day")));
        }
        Ok(DateRange::Once { start, end })
    }

    /// Whether the local date lies within the range.
    pub fn contains(&self, date: Date) -> bool {
        match *self {
            DateRange::Yearly { start, end } => {
                let md = (date.month(), date.day());
                if start <= end { start <= md && md <= end } else { md >= start || md <= end }
            }
            DateRange::Once { start, end } => start <= date && date <= end,
        }
    }
}

impl fmt::Display for DateRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DateRange::Yearly { start, end } => {
                write!(f, "{:02}-{:02}..{:02}-{:02}", start.0, start.1, end.0, end.1)
            }
            DateRange::Once { start, end } => write!(f, "{start}..{end}"),
        }
    }
}

/// `YYYY-MM-DD` shape (digits and dashes only); validity is checked by jiff.
fn is_full_date_shape(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// `MM-DD` shape (digits and a dash only).
fn is_month_day_shape(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 5 && b[2] == b'-' && b.iter().enumerate().all(|(i, c)| i == 2 || c.is_ascii_digit())
}

/// Strict `MM-DD` of a day that exists in some year (so `02-29` is accepted).
fn parse_month_day(s: &str) -> Option<(i8, i8)> {
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b'-' {
        return None;
    }
    let m = i8::try_from(two_digits(b[0], b[1])?).ok()?;
    let d = i8::try_from(two_digits(b[3], b[4])?).ok()?;
    // 2024 is a leap year, so every day that exists in any year exists in it.
    Date::new(2024, m, d).ok()?;
    Some((m, d))
}

/// A holiday: a date range with its own greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holiday {
    /// The holiday's name (for logs and the greeting reason).
    pub name: String,
    /// The days it covers, in local time.
    pub dates: DateRange,
    /// The greeting name played on those days.
    pub greeting: String,
}

/// A temporary greeting, active from `from` (or always, if `None`) until `until` (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemporaryGreeting {
    /// The greeting name.
    pub greeting: String,
    /// When it starts to apply; `None` means it already applies.
    pub from: Option<Timestamp>,
    /// When it expires (the first instant it no longer applies).
    pub until: Timestamp,
}

impl TemporaryGreeting {
    /// Whether it applies at `at`.
    pub fn is_active(&self, at: Timestamp) -> bool {
        self.from.is_none_or(|from| from <= at) && at < self.until
    }
}

/// Parses a point in time: RFC 3339 with an offset (`2026-12-01T18:00:00+03:00`, `...Z`), or a
/// civil date-time (`2026-12-01T18:00` or `2026-12-01 18:00:00`) read in the zone `tz`. A
/// civil time in a DST gap or overlap resolves the way RFC 5545 does (gap: later, overlap:
/// earlier).
pub fn parse_instant(s: &str, tz: &TimeZone) -> Result<Timestamp, ScheduleError> {
    let s = s.trim();
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Ok(ts);
    }
    let civil: DateTime = s.parse().map_err(|_| {
        ScheduleError::new(format!(
            "expected a date-time like \"2026-12-01T18:00\" (mailbox time) or \"2026-12-01T18:00:00+03:00\", found {s:?}"
        ))
    })?;
    civil
        .to_zoned_datetime(tz.clone())
        .map(|z| z.timestamp())
        .map_err(|e| ScheduleError::new(format!("{s:?} cannot be placed in the time zone: {e}")))
}

/// Why a greeting was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum GreetingReason {
    /// A holiday covers the local date.
    Holiday {
        /// The holiday's name.
        holiday: String,
    },
    /// The temporary greeting is active.
    Temporary {
        /// When it expires.
        until: Timestamp,
    },
    /// Outside business hours.
    AfterHours,
    /// Inside business hours.
    BusinessHours,
    /// No rule applied.
    Default,
}

impl fmt::Display for GreetingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GreetingReason::Holiday { holiday } => write!(f, "holiday {holiday:?}"),
            GreetingReason::Temporary { until } => write!(f, "temporary greeting until {until}"),
            GreetingReason::AfterHours => f.write_str("after hours"),
            GreetingReason::BusinessHours => f.write_str("business hours"),
            GreetingReason::Default => f.write_str("default"),
        }
    }
}

/// The greeting chosen for a moment: its name and the rule that chose it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GreetingChoice {
    /// The greeting name (a key of the configuration's `[greetings]`).
    pub name: String,
    /// Why it was chosen.
    pub reason: GreetingReason,
}

/// The greeting calendar of one mailbox. See the [module docs](self) for the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    time_zone: TimeZone,
    default_greeting: String,
    business_hours: Option<WeekHours>,
    business_hours_greeting: Option<String>,
    after_hours_greeting: Option<String>,
    holidays: Vec<Holiday>,
    temporary: Option<TemporaryGreeting>,
}

impl Schedule {
    /// A schedule that always plays `default_greeting`, evaluated in `time_zone`.
    pub fn new(time_zone: TimeZone, default_greeting: impl Into<String>) -> Self {
        Schedule {
            time_zone,
            default_greeting: default_greeting.into(),
            business_hours: None,
            business_hours_greeting: None,
            after_hours_greeting: None,
            holidays: Vec::new(),
            temporary: None,
        }
    }

    /// Sets the business hours. Without them there is no "after hours".
    pub fn with_business_hours(mut self, hours: WeekHours) -> Self {
        self.business_hours = Some(hours);
        self
    }

    /// Sets the greeting played inside business hours (otherwise the default plays).
    pub fn with_business_hours_greeting(mut self, greeting: impl Into<String>) -> Self {
        self.business_hours_greeting = Some(greeting.into());
        self
    }

    /// Sets the greeting played outside business hours.
    pub fn with_after_hours_greeting(mut self, greeting: impl Into<String>) -> Self {
        self.after_hours_greeting = Some(greeting.into());
        self
    }

    /// Adds a holiday; when holidays overlap, the first one added wins.
    pub fn with_holiday(mut self, holiday: Holiday) -> Self {
        self.holidays.push(holiday);
        self
    }

    /// Sets (or clears) the temporary greeting.
    pub fn with_temporary(mut self, temporary: Option<TemporaryGreeting>) -> Self {
        self.temporary = temporary;
        self
    }

    /// The mailbox's time zone.
    pub fn time_zone(&self) -> &TimeZone {
        &self.time_zone
    }

    /// The default greeting name.
    pub fn default_greeting(&self) -> &str {
        &self.default_greeting
    }

    /// The business hours, if any.
    pub fn business_hours(&self) -> Option<&WeekHours> {
        self.business_hours.as_ref()
    }

    /// The business-hours greeting name, if any.
    pub fn business_hours_greeting(&self) -> Option<&str> {
        self.business_hours_greeting.as_deref()
    }

    /// The after-hours greeting name, if any.
    pub fn after_hours_greeting(&self) -> Option<&str> {
        self.after_hours_greeting.as_deref()
    }

    /// The holidays, in precedence order.
    pub fn holidays(&self) -> &[Holiday] {
        &self.holidays
    }

    /// The temporary greeting, if configured (active or not).
    pub fn temporary(&self) -> Option<&TemporaryGreeting> {
        self.temporary.as_ref()
    }

    /// Every greeting name the schedule can choose (the default first, no duplicates).
    pub fn greeting_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = vec![self.default_greeting.as_str()];
        let others = self
            .business_hours_greeting
            .iter()
            .chain(self.after_hours_greeting.iter())
            .chain(self.holidays.iter().map(|h| &h.greeting))
            .chain(self.temporary.iter().map(|t| &t.greeting));
        for name in others {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        names
    }

    /// The local wall-clock date-time of `at` in the mailbox's zone.
    pub fn local_time(&self, at: Timestamp) -> DateTime {
        self.time_zone.to_datetime(at)
    }

    /// The greeting that plays at `at`.
    pub fn greeting_at(&self, at: Timestamp) -> GreetingChoice {
        let local = self.local_time(at);
        if let Some(h) = self.holidays.iter().find(|h| h.dates.contains(local.date())) {
            return GreetingChoice {
                name: h.greeting.clone(),
                reason: GreetingReason::Holiday { holiday: h.name.clone() },
            };
        }
        if let Some(t) = self.temporary.as_ref().filter(|t| t.is_active(at)) {
            return GreetingChoice { name: t.greeting.clone(), reason: GreetingReason::Temporary { until: t.until } };
        }
        if let Some(hours) = &self.business_hours {
            let open = hours.is_open(local);
            let by_hours = if open {
                self.business_hours_greeting.as_ref().map(|g| (g, GreetingReason::BusinessHours))
            } else {
                self.after_hours_greeting.as_ref().map(|g| (g, GreetingReason::AfterHours))
            };
            if let Some((name, reason)) = by_hours {
                return GreetingChoice { name: name.clone(), reason };
            }
        }
        GreetingChoice { name: self.default_greeting.clone(), reason: GreetingReason::Default }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_range_parsing_is_strict() {
        assert_eq!(TimeRange::parse("09:00-18:00").map(|r| r.to_string()), Ok("09:00-18:00".into()));
        assert!(TimeRange::parse("00:00-24:00").is_ok());
        for bad in [
            "9:00-18:00",
            "09:00-18",
            "09:00",
            "18:00-09:00",
            "09:00-09:00",
            "24:00-24:00",
            "09:60-10:00",
            "25:00-26:00",
            "",
            "-",
            "09:00–18:00",
        ] {
            assert!(TimeRange::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn day_hours_reject_overlaps_and_accept_closed() {
        assert!(DayHours::parse("closed").is_ok_and(|d| d.is_closed()));
        assert!(DayHours::parse("09:00-13:00, 14:00-18:00").is_ok_and(|d| d.ranges().len() == 2));
        assert!(DayHours::parse("09:00-13:00,12:00-18:00").is_err());
        assert!(DayHours::parse("").is_err());
        assert!(DayHours::parse("open").is_err());
    }

    #[test]
    fn date_range_parsing() {
        assert_eq!(DateRange::parse("12-31..01-08"), Ok(DateRange::Yearly { start: (12, 31), end: (1, 8) }));
        assert!(matches!(DateRange::parse("2026-05-01..2026-05-03"), Ok(DateRange::Once { .. })));
        assert!(matches!(DateRange::parse("02-29"), Ok(DateRange::Yearly { .. })));
        for bad in
            ["02-30", "13-01", "2027-02-29", "2026-05-03..2026-05-01", "12-31..2027-01-08", "1-1", "", "..", "2026-5-1"]
        {
            assert!(DateRange::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
