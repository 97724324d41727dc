//! Wall-clock conversions (`datetime.datetime` ↔ `jiff::Timestamp`) and the monotonic clock
//! mapping of a call (`time.monotonic()` seconds ↔ `std::time::Instant`).

use std::time::{Duration, Instant};

use jiff::Timestamp;
use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDateAccess, PyDateTime, PyTimeAccess, PyTzInfo};

use crate::errors::CallError;

/// A timestamp as an aware `datetime.datetime` in UTC (microsecond precision).
pub(crate) fn to_datetime<'py>(py: Python<'py>, ts: Timestamp) -> PyResult<Bound<'py, PyDateTime>> {
    let dt = ts.to_zoned_datetime(jiff::tz::TimeZone::UTC).datetime();
    let micros = u32::try_from(dt.subsec_nanosecond() / 1000).unwrap_or(0);
    let utc = PyTzInfo::utc(py)?;
    PyDateTime::new(
        py,
        i32::from(dt.year()),
        u8::try_from(dt.month()).unwrap_or(1),
        u8::try_from(dt.day()).unwrap_or(1),
        u8::try_from(dt.hour()).unwrap_or(0),
        u8::try_from(dt.minute()).unwrap_or(0),
        u8::try_from(dt.second()).unwrap_or(0),
        micros,
        Some(&utc.to_owned()),
    )
}

/// An optional timestamp as an optional UTC `datetime`.
pub(crate) fn to_datetime_opt<'py>(py: Python<'py>, ts: Option<Timestamp>) -> PyResult<Option<Bound<'py, PyDateTime>>> {
    ts.map(|t| to_datetime(py, t)).transpose()
}

/// An aware `datetime.datetime` as a timestamp. Naive datetimes are refused: which instant
/// they mean depends on a time zone nobody named.
pub(crate) fn from_datetime(dt: &Bound<'_, PyDateTime>) -> PyResult<Timestamp> {
    let py = dt.py();
    if dt.getattr("tzinfo")?.is_none() || dt.call_method0("utcoffset")?.is_none() {
        return Err(PyValueError::new_err(
            "expected a timezone-aware datetime (e.g. datetime.now(timezone.utc)), got a naive one",
        ));
    }
    let utc = PyTzInfo::utc(py)?;
    let u = dt.call_method1("astimezone", (utc,))?;
    let u = u.cast_into::<PyDateTime>()?;
    let civil = jiff::civil::DateTime::new(
        i16::try_from(u.get_year()).map_err(|_| PyOverflowError::new_err("year out of range"))?,
        i8::try_from(u.get_month()).map_err(|_| PyValueError::new_err("invalid month"))?,
        i8::try_from(u.get_day()).map_err(|_| PyValueError::new_err("invalid day"))?,
        i8::try_from(u.get_hour()).map_err(|_| PyValueError::new_err("invalid hour"))?,
        i8::try_from(u.get_minute()).map_err(|_| PyValueError::new_err("invalid minute"))?,
        i8::try_from(u.get_second()).map_err(|_| PyValueError::new_err("invalid second"))?,
        i32::try_from(u.get_microsecond() * 1000).map_err(|_| PyValueError::new_err("invalid microsecond"))?,
    )
    .map_err(|e| PyValueError::new_err(format!("datetime out of range: {e}")))?;
    civil
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp())
        .map_err(|e| PyValueError::new_err(format!("datetime out of range: {e}")))
}

/// `at` or, when absent, the current time.
pub(crate) fn timestamp_or_now(at: Option<&Bound<'_, PyDateTime>>) -> PyResult<Timestamp> {
    at.map_or_else(|| Ok(Timestamp::now()), from_datetime)
}

/// Maps `time.monotonic()`-style seconds onto `Instant`s for one call: the first time seen
/// corresponds to the `Instant` the call was created at.
///
/// It also remembers the latest time given (its seconds and its `Instant`): the engine never
/// accepts an input older than that, so no deadline is expressed as earlier (see `seconds`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base: Instant,
    base_secs: Option<f64>,
    /// The latest time seen, as given and as mapped (the origin until an input comes).
    latest: Option<(f64, Instant)>,
}

impl Clock {
    /// A clock whose origin is `base`; `now`, if given, is the seconds value of that origin.
    pub(crate) fn new(base: Instant, now: Option<f64>) -> PyResult<Self> {
        if let Some(n) = now {
            check_finite(n)?;
        }
        Ok(Self { base, base_secs: now, latest: now.map(|n| (n, base)) })
    }

    /// Sets the origin's seconds value if it is not known yet.
    pub(crate) fn anchor(&mut self, now: f64) -> PyResult<()> {
        check_finite(now)?;
        let base = *self.base_secs.get_or_insert(now);
        self.latest.get_or_insert((base, self.base));
        Ok(())
    }

    /// The `Instant` of `now` seconds (anchoring the clock on first use); remembered as the
    /// latest time if it is not older than the latest so far (an older one is refused by the
    /// call, which raises).
    pub(crate) fn instant(&mut self, now: f64) -> PyResult<Instant> {
        self.anchor(now)?;
        let base = self.base_secs.unwrap_or(now);
        let t = self.instant_at(base, now)?;
        if self.latest.is_none_or(|(_, latest)| t >= latest) {
            self.latest = Some((now, t));
        }
        Ok(t)
    }

    fn instant_at(&self, base: f64, now: f64) -> PyResult<Instant> {
        let delta = now - base;
        if delta >= 0.0 {
            let d = Duration::try_from_secs_f64(delta)
                .map_err(|_| PyOverflowError::new_err(format!("time {now} is too far from the call's start")))?;
            self.base.checked_add(d).ok_or_else(|| PyOverflowError::new_err("time out of range"))
        } else {
            let d = Duration::try_from_secs_f64(-delta)
                .map_err(|_| CallError::new_err("time went backwards: an input is older than the previous one"))?;
            self.base
                .checked_sub(d)
                .ok_or_else(|| CallError::new_err("time went backwards: an input is older than the previous one"))
        }
    }

    /// The seconds value of a deadline `at`: the smallest float that maps back to an instant
    /// not earlier than `at`, so feeding a `Timeout`'s `at` back as `now` reaches the
    /// deadline. A deadline that is already due (the engine's `at` can lie before its latest
    /// input, when it asks to be called again at once) is the latest time given, exactly as
    /// given: feeding it back is never "time going backwards". Before any time was seen there
    /// is no scale to express it in: infinity (nothing will happen before the first input).
    pub(crate) fn seconds(&self, at: Instant) -> f64 {
        let Some(base) = self.base_secs else {
            return f64::INFINITY;
        };
        if let Some((secs, latest)) = self.latest
            && at <= latest
        {
            return secs;
        }
        let mut secs = if at >= self.base {
            base + at.duration_since(self.base).as_secs_f64()
        } else {
            base - self.base.duration_since(at).as_secs_f64()
        };
        for _ in 0..64 {
            match self.instant_at(base, secs) {
                Ok(i) if i < at => secs = secs.next_up(),
                _ => break,
            }
        }
        secs
    }
}

fn check_finite(now: f64) -> PyResult<()> {
    if now.is_finite() {
        Ok(())
    } else {
        Err(PyValueError::new_err(format!("time must be a finite number of seconds, got {now}")))
    }
}
