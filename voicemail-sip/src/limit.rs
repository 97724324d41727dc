//! Abuse limits of the endpoint that live above the SIP stack: the per-source INVITE rate
//! limit ([`InviteLimiter`]) and rate-limited logging ([`LogLimiter`]).
//!
//! Both are plain state that is given the time (`now`), so their tests need no clock. The
//! transport's own limits (TCP connection caps, the idle timeout, rate-limited accept errors)
//! are rsipstack's, configured by the endpoint (see `patches/rsipstack/PATCH.md`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most sources [`InviteLimiter`] tracks at once: it holds a few dozen bytes per source,
/// so many spoofed source addresses cannot make it grow without bound.
const MAX_SOURCES: usize = 10_000;

/// A token bucket per source IP address: a source may send `burst` INVITEs at once, then
/// `rate` per second. IPv4-mapped IPv6 addresses count as their IPv4 address.
#[derive(Debug)]
pub(crate) struct InviteLimiter {
    rate: f64,
    burst: f64,
    sources: HashMap<IpAddr, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl InviteLimiter {
    /// A limiter of `rate` INVITEs per second and `burst` at once per source; a rate of 0
    /// turns it off.
    pub(crate) fn new(rate: f64, burst: u32) -> Self {
        Self { rate, burst: f64::from(burst.max(1)), sources: HashMap::new() }
    }

    /// Counts one INVITE from `source` at `now`: `Ok(())` within the limit, else
    /// `Err(retry_after)`, the whole seconds (at least 1) until the source may send again.
    pub(crate) fn check(&mut self, source: IpAddr, now: Instant) -> Result<(), u32> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let source = crate::config::normalize(source);
        if !self.sources.contains_key(&source) && self.sources.len() >= MAX_SOURCES {
            // A full bucket behaves like no bucket: forget those. If every tracked source is
            // still busy, the table is under a flood from many addresses: new ones wait.
            let (rate, burst) = (self.rate, self.burst);
            self.sources.retain(|_, b| b.refilled(now, rate, burst) < burst);
            if self.sources.len() >= MAX_SOURCES {
                return Err(self.retry_after(0.0));
            }
        }
        let bucket = self.sources.entry(source).or_insert(Bucket { tokens: self.burst, at: now });
        let tokens = bucket.refilled(now, self.rate, self.burst);
        *bucket = Bucket { tokens, at: now.max(bucket.at) };
        if tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.retry_after(tokens))
        }
    }

    fn retry_after(&self, tokens: f64) -> u32 {
        let seconds = ((1.0 - tokens) / self.rate).ceil();
        if seconds >= f64::from(u32::MAX) { u32::MAX } else { (seconds as u32).max(1) }
    }
}

impl Bucket {
    /// The tokens at `now`: refilled at `rate` per second since the last INVITE, up to `burst`.
    fn refilled(&self, now: Instant, rate: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * rate).min(burst)
    }
}

/// Rate-limited logging for events a peer can repeat at will (refused INVITEs, a full spool,
/// no RTP port): at most `lines` lines of each kind per interval. The first line logged after
/// some were held back says how many (`suppressed`), so that nothing goes unnoticed and no
/// flood can fill the disk.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    lines: u32,
    interval: Duration,
    kinds: Mutex<HashMap<&'static str, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    logged: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// At most `lines` lines per `interval` for each kind.
    pub(crate) fn new(lines: u32, interval: Duration) -> Self {
        Self { lines, interval, kinds: Mutex::new(HashMap::new()) }
    }

    /// Whether a line of `kind` may be logged at `now`: `Some(suppressed)`, the lines of this
    /// kind held back since the last one logged, or `None` to hold this one back.
    pub(crate) fn allow(&self, kind: &'static str, now: Instant) -> Option<u64> {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        let w = kinds.entry(kind).or_insert(Window { start: now, logged: 0, suppressed: 0 });
        if now.saturating_duration_since(w.start) >= self.interval {
            w.start = now;
            w.logged = 0;
        }
        if w.logged < self.lines {
            w.logged += 1;
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut l = InviteLimiter::new(2.0, 5);
        for _ in 0..5 {
            assert_eq!(l.check(ip("192.0.2.1"), t0), Ok(()));
        }
        assert_eq!(l.check(ip("192.0.2.1"), t0), Err(1));
        // Another source has its own bucket.
        assert_eq!(l.check(ip("192.0.2.2"), t0), Ok(()));
        // Two per second come back.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.check(ip("192.0.2.1"), t1), Ok(()));
        assert_eq!(l.check(ip("192.0.2.1"), t1), Ok(()));
        assert_eq!(l.check(ip("192.0.2.1"), t1), Err(1));
        // Never more than the burst, however long the pause.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..5 {
            assert_eq!(l.check(ip("192.0.2.1"), t2), Ok(()));
        }
        assert!(l.check(ip("192.0.2.1"), t2).is_err());
    }

    #[test]
    fn retry_after_is_the_time_to_the_next_token() {
        let t0 = Instant::now();
        let mut l = InviteLimiter::new(0.1, 1);
        assert_eq!(l.check(ip("198.51.100.7"), t0), Ok(()));
        assert_eq!(l.check(ip("198.51.100.7"), t0), Err(10));
        assert_eq!(l.check(ip("198.51.100.7"), t0 + Duration::from_secs(4)), Err(6));
        assert_eq!(l.check(ip("198.51.100.7"), t0 + Duration::from_secs(10)), Ok(()));
    }

    #[test]
    fn mapped_addresses_share_the_ipv4_bucket_and_zero_turns_the_limit_off() {
        let t0 = Instant::now();
        let mut l = InviteLimiter::new(1.0, 1);
        assert_eq!(l.check(ip("127.0.0.1"), t0), Ok(()));
        assert!(l.check(ip("::ffff:127.0.0.1"), t0).is_err());
        let mut off = InviteLimiter::new(0.0, 1);
        for _ in 0..1000 {
            assert_eq!(off.check(ip("127.0.0.1"), t0), Ok(()));
        }
    }

    #[test]
    fn the_table_of_sources_is_bounded() {
        let t0 = Instant::now();
        let mut l = InviteLimiter::new(1.0, 2);
        let addr = |i: usize| IpAddr::V6(std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | i as u128));
        for i in 0..MAX_SOURCES {
            assert_eq!(l.check(addr(i), t0), Ok(()));
        }
        // Every tracked source is busy: a new one waits.
        assert!(l.check(addr(MAX_SOURCES), t0).is_err());
        assert!(l.sources.len() <= MAX_SOURCES);
        // Once their buckets are full again they are forgotten and new sources get in.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(l.check(addr(MAX_SOURCES), later), Ok(()));
        assert!(l.sources.len() <= MAX_SOURCES);
    }

    #[test]
    fn log_lines_per_kind_and_interval_with_the_count_of_the_others() {
        let t0 = Instant::now();
        let log = LogLimiter::new(3, Duration::from_secs(10));
        assert_eq!(log.allow("a", t0), Some(0));
        assert_eq!(log.allow("a", t0), Some(0));
        assert_eq!(log.allow("a", t0), Some(0));
        for _ in 0..1000 {
            assert_eq!(log.allow("a", t0 + Duration::from_secs(1)), None);
        }
        // Another kind has its own budget.
        assert_eq!(log.allow("b", t0), Some(0));
        // The next window: the first line carries the count of the held-back ones.
        assert_eq!(log.allow("a", t0 + Duration::from_secs(10)), Some(1000));
        assert_eq!(log.allow("a", t0 + Duration::from_secs(10)), Some(0));
    }
}
