//! Rate-limited logging for conditions a peer can repeat at will (failed accepts, connections
//! over the cap, malformed traffic): at most one line per interval, the next one saying how
//! many were held back, so that no flood can fill a disk with logs.

use crate::platform::sync::Mutex;
use crate::platform::Instant;
use core::time::Duration;

/// Lets one log line through per interval and counts the ones it holds back.
pub(crate) struct LogLimiter {
    interval: Duration,
    /// When the next line may be logged, and how many were held back since the last one.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogLimiter {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held_back)` when a line may be logged now (`held_back` lines were suppressed
    /// since the previous one), `None` when this one is to be suppressed.
    pub(crate) fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock();
        match state.0 {
            Some(next) if now < next => {
                state.1 += 1;
                None
            }
            _ => {
                let held_back = state.1;
                *state = (Some(now + self.interval), 0);
                Some(held_back)
            }
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_then_the_count_of_the_others() {
        let limiter = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limiter.allow_at(t0), Some(0));
        for i in 1..1000 {
            assert_eq!(limiter.allow_at(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(limiter.allow_at(t0 + Duration::from_secs(10)), Some(999));
        assert_eq!(limiter.allow_at(t0 + Duration::from_secs(11)), None);
        assert_eq!(limiter.allow_at(t0 + Duration::from_secs(30)), Some(1));
    }
}
