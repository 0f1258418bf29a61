//! Calendar dates for partition directories (`date=YYYY-MM-DD`, UTC), without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `YYYY-MM-DD` (UTC) of a time in milliseconds since the epoch.
pub fn date_of(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// RFC 3339 (UTC, milliseconds) of a time in milliseconds since the epoch, as CloudEvents'
/// `time`: `2026-12-01T10:00:00.123Z`.
pub fn rfc3339(ms: i64) -> String {
    let of_day = ms.rem_euclid(86_400_000);
    let (h, m, s, milli) = (
        of_day / 3_600_000,
        of_day / 60_000 % 60,
        of_day / 1000 % 60,
        of_day % 1000,
    );
    format!("{}T{h:02}:{m:02}:{s:02}.{milli:03}Z", date_of(ms))
}

/// Milliseconds since the epoch at the start (00:00 UTC) of a `YYYY-MM-DD` date.
pub fn parse_date_ms(s: &str) -> Option<i64> {
    let mut parts = s.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if s.len() != 10 || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    if date_of(days * 86_400_000) != s {
        return None; // 2026-02-30 and the like
    }
    Some(days * 86_400_000)
}

/// Howard Hinnant's civil-from-days: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_nonsense_is_refused() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(1_796_083_200_000), "2026-12-01");
        assert_eq!(parse_date_ms("2026-12-01"), Some(1_796_083_200_000));
        assert_eq!(date_of(parse_date_ms("2024-02-29").unwrap()), "2024-02-29");
        assert_eq!(parse_date_ms("2026-02-30"), None);
        assert_eq!(parse_date_ms("2026-13-01"), None);
        assert_eq!(parse_date_ms("yesterday"), None);
        assert_eq!(date_of(-1), "1969-12-31");
        assert_eq!(
            rfc3339(1_796_083_200_000 + 36_061_001),
            "2026-12-01T10:01:01.001Z"
        );
    }
}
