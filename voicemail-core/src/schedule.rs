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
//!
//! ## Business time
//!
//! The same calendar measures how long a message has waited for a callback "in business
//! hours" ([`Schedule::business_time_between`], [`Schedule::add_business_time`]): the instants
//! whose local wall-clock time falls inside the day's business hours, on days that are not
//! holidays ([`Schedule::is_business_time`]), exactly the instants at which the after-hours
//! greeting would not play. Without business hours every instant counts (wall-clock time).
//! The arithmetic follows the same wall-clock rule on daylight-saving days: a day open
//! `00:00-24:00` has 23 hours of business time when the clocks go forward and 25 when they go
//! back, and a range `09:00-18:00` is nine hours on any day.

use std::fmt;
use std::ops::ControlFlow;
use std::time::Duration;

use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};
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

    /// Whether `date` (local) is a holiday: no business hours on that day.
    pub fn is_holiday(&self, date: Date) -> bool {
        self.holidays.iter().any(|h| h.dates.contains(date))
    }

    /// Whether `at` lies in business time: inside the day's business hours (local wall clock)
    /// on a day that is not a holiday. Always true without business hours.
    pub fn is_business_time(&self, at: Timestamp) -> bool {
        let Some(hours) = &self.business_hours else { return true };
        let local = self.local_time(at);
        !self.is_holiday(local.date()) && hours.is_open(local)
    }

    /// The business time between `from` and `to` (zero when `to` is not after `from`): the
    /// length of the instants in `[from, to)` that are [business time](Self::is_business_time).
    /// Without business hours, the wall-clock time between them.
    pub fn business_time_between(&self, from: Timestamp, to: Timestamp) -> Duration {
        if to <= from {
            return Duration::ZERO;
        }
        if self.business_hours.is_none() {
            return unsigned(to.duration_since(from));
        }
        let mut total = SignedDuration::ZERO;
        self.for_each_open(from, to, |a, b| {
            total = total.saturating_add(b.duration_since(a));
            ControlFlow::Continue(())
        });
        unsigned(total)
    }

    /// The first instant at which `amount` of business time has passed since `from` (`from`
    /// itself for zero). Without business hours, `from + amount`. `None` when business hours
    /// never add up to `amount` within [`BUSINESS_SEARCH_LIMIT`] of `from` (every day closed,
    /// or a holiday all year round).
    pub fn add_business_time(&self, from: Timestamp, amount: Duration) -> Option<Timestamp> {
        let amount = SignedDuration::try_from(amount).ok()?;
        if amount.is_zero() {
            return Some(from);
        }
        if self.business_hours.is_none() {
            return from.checked_add(amount).ok();
        }
        let limit = from.checked_add(BUSINESS_SEARCH_LIMIT).unwrap_or(Timestamp::MAX);
        let mut left = amount;
        let mut found = None;
        self.for_each_open(from, limit, |a, b| {
            let length = b.duration_since(a);
            if length >= left {
                found = a.checked_add(left).ok();
                return ControlFlow::Break(());
            }
            left -= length;
            ControlFlow::Continue(())
        });
        found
    }

    /// Calls `f` with each maximal interval `[a, b)` of business time inside `[from, to)`, in
    /// order, until it breaks. Needs business hours.
    ///
    /// The instants are cut into pieces of constant UTC offset (between two transitions of the
    /// zone); inside one piece local time is UTC plus that offset, so each business-hours range
    /// of each local day maps to one interval of instants. A range whose wall-clock times are
    /// skipped by a transition is cut there, and one whose times happen twice counts twice.
    fn for_each_open(
        &self,
        from: Timestamp,
        to: Timestamp,
        mut f: impl FnMut(Timestamp, Timestamp) -> ControlFlow<()>,
    ) {
        let Some(hours) = &self.business_hours else { return };
        if hours.days.iter().all(DayHours::is_closed) {
            return;
        }
        let mut piece_start = from;
        while piece_start < to {
            let next = self.time_zone.following(piece_start).take(2).map(|t| t.timestamp()).find(|t| *t > piece_start);
            let piece_end = next.filter(|t| *t < to).unwrap_or(to);
            let offset = self.time_zone.to_offset(piece_start);
            if self.open_in_piece(hours, offset, piece_start, piece_end, &mut f).is_break() {
                return;
            }
            piece_start = piece_end;
        }
    }

    /// [`Schedule::for_each_open`] inside `[a, b)`, where the zone's offset is `offset`.
    fn open_in_piece(
        &self,
        hours: &WeekHours,
        offset: Offset,
        a: Timestamp,
        b: Timestamp,
        f: &mut impl FnMut(Timestamp, Timestamp) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let (local_a, local_b) = (offset.to_datetime(a), offset.to_datetime(b));
        let mut date = local_a.date();
        while date.to_datetime(jiff::civil::Time::midnight()) < local_b {
            if !self.is_holiday(date) {
                for range in hours.day(date.weekday()).ranges() {
                    let start = at_minutes(date, range.start_min);
                    let end = at_minutes(date, range.end_min);
                    let (start, end) = (start.max(local_a), end.min(local_b));
                    if start >= end {
                        continue;
                    }
                    // Both lie between `local_a` and `local_b`, so they convert back.
                    let (Ok(s), Ok(e)) = (offset.to_timestamp(start), offset.to_timestamp(end)) else { continue };
                    f(s, e)?;
                }
            }
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        ControlFlow::Continue(())
    }
}

/// How far [`Schedule::add_business_time`] looks ahead: about three years.
pub const BUSINESS_SEARCH_LIMIT: SignedDuration = SignedDuration::from_hours(3 * 366 * 24);

/// `date` at `minutes` after midnight; 1440 is the next day's midnight.
fn at_minutes(date: Date, minutes: u16) -> DateTime {
    let midnight = date.to_datetime(jiff::civil::Time::midnight());
    midnight.checked_add(SignedDuration::from_mins(i64::from(minutes))).unwrap_or(DateTime::MAX)
}

/// A non-negative signed duration as a [`Duration`] (negative ones are zero).
fn unsigned(d: SignedDuration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::ZERO)
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

    // ---- business time -------------------------------------------------------------------

    fn office(tz: &str) -> Schedule {
        let mut week = WeekHours::closed();
        for day in [Weekday::Monday, Weekday::Tuesday, Weekday::Wednesday, Weekday::Thursday, Weekday::Friday] {
            week.set(day, DayHours::parse("09:00-13:00, 14:00-18:00").unwrap());
        }
        Schedule::new(TimeZone::get(tz).unwrap(), "default").with_business_hours(week)
    }

    fn at(s: &str, tz: &str) -> Timestamp {
        parse_instant(s, &TimeZone::get(tz).unwrap()).unwrap()
    }

    fn hours(h: u64) -> Duration {
        Duration::from_secs(h * 3600)
    }

    #[test]
    fn business_time_within_a_day_skips_lunch() {
        let s = office("Europe/Moscow");
        // Friday 2026-11-27: 10:00 to 15:30 is 3h before lunch and 1h30 after.
        let from = at("2026-11-27T10:00", "Europe/Moscow");
        let to = at("2026-11-27T15:30", "Europe/Moscow");
        assert_eq!(s.business_time_between(from, to), Duration::from_secs(4 * 3600 + 1800));
        assert_eq!(s.business_time_between(to, from), Duration::ZERO);
        // An amount used up exactly at a closing time ends there (13:00), not after lunch.
        assert_eq!(s.add_business_time(from, hours(3)), Some(at("2026-11-27T13:00", "Europe/Moscow")));
        assert_eq!(s.add_business_time(from, hours(4)), Some(at("2026-11-27T15:00", "Europe/Moscow")));
        assert!(s.is_business_time(from));
        assert!(!s.is_business_time(at("2026-11-27T13:30", "Europe/Moscow")));
    }

    #[test]
    fn business_time_across_a_weekend() {
        let s = office("Europe/Moscow");
        // Friday 17:00 → Monday 10:00: one hour on Friday, one on Monday.
        let fri = at("2026-11-27T17:00", "Europe/Moscow");
        let mon = at("2026-11-30T10:00", "Europe/Moscow");
        assert_eq!(s.business_time_between(fri, mon), hours(2));
        assert_eq!(s.add_business_time(fri, hours(2)), Some(mon));
        // A message left on Saturday has waited nothing by Monday 09:00.
        let sat = at("2026-11-28T12:00", "Europe/Moscow");
        assert_eq!(s.business_time_between(sat, at("2026-11-30T09:00", "Europe/Moscow")), Duration::ZERO);
        assert_eq!(s.add_business_time(sat, hours(5)), Some(at("2026-11-30T15:00", "Europe/Moscow")));
    }

    #[test]
    fn business_time_skips_holidays() {
        let holiday = Holiday {
            name: "New Year".into(),
            dates: DateRange::parse("12-31..01-08").unwrap(),
            greeting: "default".into(),
        };
        let s = office("Europe/Moscow").with_holiday(holiday);
        // Wednesday 2026-12-30 17:00 → the next business hour is Monday 2027-01-11 (1-8 are
        // holidays, 9-10 a weekend).
        let from = at("2026-12-30T17:00", "Europe/Moscow");
        assert_eq!(s.add_business_time(from, hours(2)), Some(at("2027-01-11T10:00", "Europe/Moscow")));
        assert_eq!(s.business_time_between(from, at("2027-01-08T23:00", "Europe/Moscow")), hours(1));
        assert!(!s.is_business_time(at("2026-12-31T10:00", "Europe/Moscow")));
    }

    #[test]
    fn business_time_across_dst_changes() {
        // America/New_York: clocks go forward on Sunday 2026-03-08 02:00 and back on Sunday
        // 2026-11-01 02:00. Friday 17:00 → Monday 10:00 is 2 business hours either way,
        // though 65 wall-clock hours are 64 h of instants in March and 66 h in November.
        let s = office("America/New_York");
        let fri = at("2026-03-06T17:00", "America/New_York");
        let mon = at("2026-03-09T10:00", "America/New_York");
        assert_eq!(mon.duration_since(fri), SignedDuration::from_hours(64));
        assert_eq!(s.business_time_between(fri, mon), hours(2));
        assert_eq!(s.add_business_time(fri, hours(2)), Some(mon));
        let fri = at("2026-10-30T17:00", "America/New_York");
        let mon = at("2026-11-02T10:00", "America/New_York");
        assert_eq!(mon.duration_since(fri), SignedDuration::from_hours(66));
        assert_eq!(s.business_time_between(fri, mon), hours(2));

        // A day open around the clock has 23 h in spring and 25 h in autumn.
        let mut week = WeekHours::closed();
        week.set(Weekday::Sunday, DayHours::parse("00:00-24:00").unwrap());
        let sundays = Schedule::new(TimeZone::get("America/New_York").unwrap(), "d").with_business_hours(week);
        let day = |d: &str, next: &str| {
            sundays.business_time_between(at(d, "America/New_York"), at(next, "America/New_York"))
        };
        assert_eq!(day("2026-03-08T00:00", "2026-03-09T00:00"), hours(23));
        assert_eq!(day("2026-11-01T00:00", "2026-11-02T00:00"), hours(25));
        assert_eq!(day("2026-03-15T00:00", "2026-03-16T00:00"), hours(24));

        // A range starting in the skipped hour opens when the clocks jump (the wall clock
        // decides, as for greetings): 02:30-04:00 on the spring day is 1 h (03:00-04:00).
        let mut week = WeekHours::closed();
        week.set(Weekday::Sunday, DayHours::parse("02:30-04:00").unwrap());
        let night = Schedule::new(TimeZone::get("America/New_York").unwrap(), "d").with_business_hours(week);
        let from = at("2026-03-08T00:00", "America/New_York");
        assert_eq!(night.business_time_between(from, at("2026-03-09T00:00", "America/New_York")), hours(1));
        assert_eq!(night.add_business_time(from, Duration::ZERO), Some(from));
        assert_eq!(
            night.add_business_time(from, Duration::from_secs(1)),
            Some(at("2026-03-08T03:00:01-04:00", "America/New_York"))
        );
        // In autumn the wall clock shows 01:00-02:00 twice (EDT, then EST): the range
        // 01:30-02:30 covers 01:30-02:00 EDT, 01:30-02:00 EST and 02:00-02:30 EST, 1 h 30 min.
        let mut week = WeekHours::closed();
        week.set(Weekday::Sunday, DayHours::parse("01:30-02:30").unwrap());
        let fold = Schedule::new(TimeZone::get("America/New_York").unwrap(), "d").with_business_hours(week);
        let from = at("2026-11-01T00:00", "America/New_York");
        assert_eq!(
            fold.business_time_between(from, at("2026-11-02T00:00", "America/New_York")),
            Duration::from_secs(5400)
        );
    }

    #[test]
    fn without_business_hours_wall_clock_time_counts() {
        let s = Schedule::new(TimeZone::get("Europe/Moscow").unwrap(), "default");
        let from = at("2026-11-28T12:00", "Europe/Moscow");
        assert_eq!(s.business_time_between(from, at("2026-11-28T17:00", "Europe/Moscow")), hours(5));
        assert_eq!(s.add_business_time(from, hours(5)), Some(at("2026-11-28T17:00", "Europe/Moscow")));
        assert!(s.is_business_time(from));
    }

    #[test]
    fn never_open_is_none() {
        let s = Schedule::new(TimeZone::UTC, "d").with_business_hours(WeekHours::closed());
        assert_eq!(s.add_business_time(Timestamp::UNIX_EPOCH, hours(1)), None);
        let all_year =
            Holiday { name: "always".into(), dates: DateRange::parse("01-01..12-31").unwrap(), greeting: "d".into() };
        let s = office("UTC").with_holiday(all_year);
        assert_eq!(s.add_business_time(Timestamp::UNIX_EPOCH, hours(1)), None);
        assert_eq!(s.business_time_between(Timestamp::UNIX_EPOCH, Timestamp::UNIX_EPOCH + hours(1000)), Duration::ZERO);
    }

    mod prop {
        use proptest::prelude::*;

        use super::*;

        const ZONES: &[&str] =
            &["UTC", "Europe/Moscow", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata"];

        /// A random week: each day closed or one or two ranges on a 15-minute grid.
        fn week() -> impl Strategy<Value = WeekHours> {
            let day = prop_oneof![
                Just(DayHours::closed()),
                (0u16..96, 1u16..97).prop_map(|(a, len)| {
                    let start = a * 15;
                    let end = (start + len * 15).min(1440);
                    DayHours::new(vec![TimeRange::from_minutes(start, end.max(start + 15).min(1440)).unwrap()])
                        .unwrap_or_default()
                }),
                (0u16..40, 1u16..30, 1u16..20, 1u16..30).prop_map(|(a, l1, gap, l2)| {
                    let s1 = a * 15;
                    let e1 = s1 + l1 * 15;
                    let s2 = e1 + gap * 15;
                    let e2 = (s2 + l2 * 15).min(1440);
                    let mut ranges = vec![TimeRange::from_minutes(s1, e1).unwrap()];
                    if s2 < e2 {
                        ranges.push(TimeRange::from_minutes(s2, e2).unwrap());
                    }
                    DayHours::new(ranges).unwrap()
                }),
            ];
            proptest::collection::vec(day, 7).prop_map(|days| {
                let mut w = WeekHours::closed();
                for (i, d) in days.into_iter().enumerate() {
                    let day = Weekday::from_monday_zero_offset(i as i8).unwrap();
                    w.set(day, d);
                }
                w
            })
        }

        fn schedule() -> impl Strategy<Value = Schedule> {
            (0..ZONES.len(), week(), proptest::option::of((1i8..13, 1i8..29, 0i8..10))).prop_map(
                |(zone, week, holiday)| {
                    let mut s = Schedule::new(TimeZone::get(ZONES[zone]).unwrap(), "d").with_business_hours(week);
                    if let Some((m, d, len)) = holiday {
                        let end = (m, (d + len).min(28));
                        s = s.with_holiday(Holiday {
                            name: "h".into(),
                            dates: DateRange::Yearly { start: (m, d), end },
                            greeting: "d".into(),
                        });
                    }
                    s
                },
            )
        }

        /// Whole seconds in 2025..2028, so DST transitions of both hemispheres are crossed.
        fn instant() -> impl Strategy<Value = Timestamp> {
            (1_735_689_600i64..1_830_297_600).prop_map(|s| Timestamp::from_second(s).unwrap())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]

            #[test]
            fn additive(s in schedule(), a in instant(), d1 in 0i64..2_000_000, d2 in 0i64..2_000_000) {
                let b = a + SignedDuration::from_secs(d1);
                let c = b + SignedDuration::from_secs(d2);
                prop_assert_eq!(
                    s.business_time_between(a, c),
                    s.business_time_between(a, b) + s.business_time_between(b, c)
                );
                prop_assert!(s.business_time_between(a, c) <= Duration::from_secs((d1 + d2) as u64));
            }

            #[test]
            fn add_inverts_between(s in schedule(), a in instant(), secs in 1u64..1_500_000) {
                let amount = Duration::from_secs(secs);
                if let Some(end) = s.add_business_time(a, amount) {
                    prop_assert_eq!(s.business_time_between(a, end), amount);
                    // The first such instant: one second earlier is not enough.
                    prop_assert!(s.business_time_between(a, end - SignedDuration::from_secs(1)) < amount);
                }
            }

            #[test]
            fn agrees_with_is_business_time(s in schedule(), t in instant()) {
                let one = s.business_time_between(t, t + SignedDuration::from_secs(1));
                let open = s.is_business_time(t);
                prop_assert_eq!(one == Duration::from_secs(1), open, "at {} ({})", t, s.local_time(t));
                prop_assert!(one == Duration::ZERO || open);
            }
        }
    }
}
