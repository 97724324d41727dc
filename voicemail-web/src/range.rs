//! HTTP range requests (RFC 9110 §14) for the recordings: what part of a file of `len` bytes
//! a `Range` header asks for.
//!
//! - No `Range`, or a unit other than `bytes` (which a server must ignore): the whole file,
//!   `200 OK`.
//! - One satisfiable range, `bytes=FIRST-LAST`, `bytes=FIRST-` or `bytes=-SUFFIX`: `206 Partial
//!   Content` with `Content-Range: bytes FIRST-LAST/LEN` (a LAST past the end is cut to the
//!   end; a suffix longer than the file is the whole file).
//! - Anything else in the `bytes` unit (a first position at or past the end, a zero suffix,
//!   an empty file, LAST before FIRST, something that is not a number, numbers past 2^64,
//!   several ranges, which the queue does not serve as `multipart/byteranges`): `416 Range
//!   Not Satisfiable` with `Content-Range: bytes */LEN`.

/// What to send for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// The whole file, `200 OK`.
    Full,
    /// Bytes `first..=last`, `206 Partial Content`.
    Partial {
        /// The first byte.
        first: u64,
        /// The last byte (inclusive).
        last: u64,
    },
    /// `416 Range Not Satisfiable`.
    Unsatisfiable,
}

impl RangeRequest {
    /// Reads the `Range` header value `header` (if any) for a file of `len` bytes.
    pub fn parse(header: Option<&str>, len: u64) -> RangeRequest {
        let Some(header) = header else { return RangeRequest::Full };
        let header = header.trim();
        let Some((unit, set)) = header.split_once('=') else {
            // No `unit=`: not a range this server understands.
            return RangeRequest::Full;
        };
        if !unit.trim().eq_ignore_ascii_case("bytes") {
            return RangeRequest::Full;
        }
        let set = set.trim();
        if set.contains(',') {
            return RangeRequest::Unsatisfiable;
        }
        let Some((first, last)) = set.split_once('-') else { return RangeRequest::Unsatisfiable };
        let (first, last) = (first.trim(), last.trim());
        let number = |s: &str| -> Option<u64> {
            if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        if len == 0 {
            return RangeRequest::Unsatisfiable;
        }
        if first.is_empty() {
            // A suffix: the last N bytes.
            return match number(last) {
                Some(0) | None => RangeRequest::Unsatisfiable,
                Some(n) => RangeRequest::Partial { first: len.saturating_sub(n), last: len - 1 },
            };
        }
        let Some(first) = number(first) else { return RangeRequest::Unsatisfiable };
        let last = if last.is_empty() {
            len - 1
        } else {
            match number(last) {
                Some(l) if l >= first => l.min(len - 1),
                _ => return RangeRequest::Unsatisfiable,
            }
        };
        if first >= len {
            return RangeRequest::Unsatisfiable;
        }
        RangeRequest::Partial { first, last }
    }
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::{self, Full, Partial, Unsatisfiable};

    fn p(h: &str, len: u64) -> RangeRequest {
        RangeRequest::parse(Some(h), len)
    }

    #[test]
    fn ranges() {
        assert_eq!(RangeRequest::parse(None, 10), Full);
        assert_eq!(p("bytes=0-", 10), Partial { first: 0, last: 9 });
        assert_eq!(p("bytes=0-0", 10), Partial { first: 0, last: 0 });
        assert_eq!(p("bytes=2-5", 10), Partial { first: 2, last: 5 });
        assert_eq!(p("bytes=2-500", 10), Partial { first: 2, last: 9 });
        assert_eq!(p("bytes=9-", 10), Partial { first: 9, last: 9 });
        assert_eq!(p("bytes=-3", 10), Partial { first: 7, last: 9 });
        assert_eq!(p("bytes=-30", 10), Partial { first: 0, last: 9 });
        assert_eq!(p("Bytes = 1-2", 10), Partial { first: 1, last: 2 });
        assert_eq!(p("items=0-1", 10), Full);
        assert_eq!(p("garbage", 10), Full);
        for bad in [
            "bytes=10-",
            "bytes=10-20",
            "bytes=-0",
            "bytes=5-2",
            "bytes=a-b",
            "bytes=-",
            "bytes=",
            "bytes=1",
            "bytes=0-1,3-4",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
            "bytes=0-99999999999999999999999",
            "bytes=1.5-2",
        ] {
            assert_eq!(p(bad, 10), Unsatisfiable, "{bad}");
        }
        assert_eq!(p("bytes=0-", 0), Unsatisfiable);
        assert_eq!(p("bytes=-1", 0), Unsatisfiable);
        assert_eq!(p("bytes=18446744073709551615-", u64::MAX), Unsatisfiable);
        assert_eq!(p("bytes=-18446744073709551615", u64::MAX), Partial { first: 0, last: u64::MAX - 1 });
    }
}
