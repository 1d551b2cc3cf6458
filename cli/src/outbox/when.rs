//! Times on the `sluice outbox` command line: "7d" and "2025-01-31" in,
//! "2025-01-31T12:00:00.000Z" and "3 s ago" out. All UTC, all milliseconds.
//!
//! Owns: those formats (small enough not to need a date crate). Not here:
//! what a cutoff means (the store's queries).

/// The longest duration accepted: a typo like `10000000d` is refused
/// instead of overflowing a cutoff to before the epoch.
const DURATION_MAX_MS: i64 = 100 * 365 * DAY_MS;

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

const DURATION_HELP: &str = "give a number followed by s, m, h or d (e.g. 30s, 10m, 2h, 7d)";

/// `--since`: rows enqueued within a duration, or since a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// Within this many milliseconds before now.
    Within(i64),
    /// At or after this time (ms since the epoch).
    At(i64),
}

impl Since {
    pub fn cutoff(self, now: i64) -> i64 {
        match self {
            Since::Within(ms) => now - ms,
            Since::At(at) => at,
        }
    }
}

/// A duration such as `10m`: a whole number and one of s, m, h, d.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text.len().saturating_sub(1);
    let (number, unit) = (
        text.get(..split).unwrap_or(""),
        text.get(split..).unwrap_or(""),
    );
    let unit_ms = match unit {
        "s" => SECOND_MS,
        "m" => MINUTE_MS,
        "h" => HOUR_MS,
        "d" => DAY_MS,
        _ => return Err(DURATION_HELP.to_string()),
    };
    let n: i64 = number
        .parse()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| DURATION_HELP.to_string())?;
    n.checked_mul(unit_ms)
        .filter(|ms| *ms <= DURATION_MAX_MS)
        .ok_or_else(|| format!("{text} is longer than 100 years; {DURATION_HELP}"))
}

/// `--since`: a duration, or a UTC date or time (`2025-01-31`,
/// `2025-01-31T14:00`, `2025-01-31 14:00:05Z`).
pub fn parse_since(text: &str) -> Result<Since, String> {
    if let Ok(ms) = parse_duration(text) {
        return Ok(Since::Within(ms));
    }
    parse_time(text.trim()).map(Since::At).ok_or_else(|| {
        format!("{DURATION_HELP}, or a UTC time such as 2025-01-31 or 2025-01-31T14:00:00Z")
    })
}

fn parse_time(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, clock) = match text.split_once(['T', ' ']) {
        Some((date, clock)) => (date, Some(clock)),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (parts.next()??, parts.next()??, parts.next()??);
    let days = days_from_civil(y, m, d);
    if civil_from_days(days) != (y, m, d) {
        return None;
    }
    let clock_ms = match clock {
        None => 0,
        Some(clock) => {
            let fields: Vec<i64> = clock
                .split(':')
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            let (h, min, s) = match fields[..] {
                [h, min] => (h, min, 0),
                [h, min, s] => (h, min, s),
                _ => return None,
            };
            if !(0..24).contains(&h) || !(0..60).contains(&min) || !(0..60).contains(&s) {
                return None;
            }
            h * HOUR_MS + min * MINUTE_MS + s * SECOND_MS
        }
    };
    Some(days * DAY_MS + clock_ms)
}

/// `2025-01-31T12:00:00.000Z`.
pub fn utc(ms: i64) -> String {
    let (days, rest) = (ms.div_euclid(DAY_MS), ms.rem_euclid(DAY_MS));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / HOUR_MS,
        rest % HOUR_MS / MINUTE_MS,
        rest % MINUTE_MS / SECOND_MS,
        rest % SECOND_MS
    )
}

/// "in 3 s" or "3 s ago", from `now`.
pub fn relative(at: i64, now: i64) -> String {
    if at > now {
        format!("in {}", span(at - now))
    } else {
        format!("{} ago", span(now - at))
    }
}

/// A length of time in the largest unit that keeps it readable.
pub fn span(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        _ if ms < MINUTE_MS => format!("{} s", ms / SECOND_MS),
        _ if ms < HOUR_MS => format!("{} min", ms / MINUTE_MS),
        _ if ms < 2 * DAY_MS => format!("{:.1} h", ms as f64 / HOUR_MS as f64),
        _ => format!("{:.1} d", ms as f64 / DAY_MS as f64),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm); out-of-range months and days give a different date, which
/// [`parse_time`] catches by converting back.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_number_and_one_unit() {
        assert_eq!(parse_duration("30s"), Ok(30_000));
        assert_eq!(parse_duration("10m"), Ok(600_000));
        assert_eq!(parse_duration("2h"), Ok(7_200_000));
        assert_eq!(parse_duration("7d"), Ok(604_800_000));
        for bad in ["7x", "7", "d", "", "-1d", "1.5h", "7 d", "99999999999d"] {
            let error = parse_duration(bad).unwrap_err();
            assert!(
                error.contains("give a number followed by s, m, h or d"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn since_takes_a_duration_or_a_utc_time() {
        assert_eq!(parse_since("2h"), Ok(Since::Within(7_200_000)));
        assert_eq!(parse_since("1970-01-02"), Ok(Since::At(DAY_MS)));
        assert_eq!(
            parse_since("2025-01-31T14:00:05Z"),
            Ok(Since::At(1_738_332_005_000))
        );
        assert_eq!(
            parse_since("2025-01-31 14:00"),
            Ok(Since::At(1_738_332_000_000))
        );
        for bad in [
            "2025-02-30",
            "2025-13-01",
            "2025-01-31T24:00",
            "yesterday",
            "7x",
        ] {
            assert!(parse_since(bad).is_err(), "{bad} was accepted");
        }
        assert_eq!(Since::Within(10).cutoff(100), 90);
    }

    #[test]
    fn times_print_as_utc_and_relative_to_now() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(1_738_332_005_123), "2025-01-31T14:00:05.123Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(relative(13_000, 10_000), "in 3 s");
        assert_eq!(relative(7_000, 10_000), "3 s ago");
        assert_eq!(span(5 * MINUTE_MS), "5 min");
        assert_eq!(span(3 * DAY_MS), "3.0 d");
    }
}
