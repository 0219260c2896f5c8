//! Time formats: the upstream dialects' timestamps and dates ↔ epoch milliseconds, and the
//! public RFC 3339 form.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde_json::Value;

use super::model::TimeFormat;

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, as chrono's `to_rfc3339_opts(Millis, true)` writes it: here
/// for the years 0000–9999 (chrono's formatter took ~900 instructions a timestamp), by
/// chrono beyond them.
pub fn millis_to_rfc3339(ms: i64) -> Option<String> {
    const FIRST: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00.000Z
    const LAST: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    if !(FIRST..=LAST).contains(&ms) {
        return Utc
            .timestamp_millis_opt(ms)
            .single()
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true));
    }
    let (year, month, day) = civil_from_days(ms.div_euclid(86_400_000));
    let t = ms.rem_euclid(86_400_000);
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut n: i64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, t / 3_600_000);
    put(14, 2, t / 60_000 % 60);
    put(17, 2, t / 1000 % 60);
    put(20, 3, t % 1000);
    std::str::from_utf8(&b).ok().map(str::to_owned)
}

/// The proleptic Gregorian (year, month, day) of a day counted from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub(super) fn upstream_millis(fmt: TimeFormat, v: &Value) -> Option<i64> {
    match fmt {
        TimeFormat::EpochMs => v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)),
        TimeFormat::EpochS => v.as_i64().map(|s| s.saturating_mul(1000)),
        TimeFormat::AspNet => {
            let s = v.as_str()?;
            let inner = s.strip_prefix("/Date(")?.strip_suffix(")/")?;
            // ASP.NET may append a zone offset (`+0000`); the instant is the leading number.
            // (Found by fuzzing: never slice by byte offset into upstream text.)
            let end = inner
                .char_indices()
                .skip(1)
                .find(|(_, c)| matches!(c, '+' | '-'))
                .map_or(inner.len(), |(i, _)| i);
            inner.get(..end)?.parse().ok()
        }
        TimeFormat::SqlUtc => {
            let t = NaiveDateTime::parse_from_str(v.as_str()?, "%Y-%m-%d %H:%M:%S").ok()?;
            Some(t.and_utc().timestamp_millis())
        }
        TimeFormat::Rfc3339 | TimeFormat::Iso8601Offset => parse_iso8601(v.as_str()?),
    }
}

/// ISO 8601 date-times in their common shapes: `Z`, `+00:00` or `+0000`, no fraction or
/// 1–9 fraction digits, `T` or a space; a date alone is its midnight UTC.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.timestamp_millis());
        }
    }
    parse_date(s)
}

pub(super) fn millis_to_upstream(fmt: TimeFormat, ms: i64) -> Value {
    match fmt {
        TimeFormat::EpochMs => Value::from(ms),
        TimeFormat::EpochS => Value::from(ms.div_euclid(1000)),
        TimeFormat::AspNet => Value::from(format!("/Date({ms})/")),
        TimeFormat::SqlUtc => Utc
            .timestamp_millis_opt(ms)
            .single()
            .map(|t| Value::from(t.format("%Y-%m-%d %H:%M:%S").to_string()))
            .unwrap_or(Value::Null),
        TimeFormat::Rfc3339 => millis_to_rfc3339(ms)
            .map(Value::from)
            .unwrap_or(Value::Null),
        TimeFormat::Iso8601Offset => Utc
            .timestamp_millis_opt(ms)
            .single()
            .map(|t| Value::from(t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()))
            .unwrap_or(Value::Null),
    }
}

/// Parses a public RFC 3339 timestamp into epoch milliseconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

pub(super) fn parse_date(s: &str) -> Option<i64> {
    if s.len() != 10 {
        return None;
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_formats_round_trip() {
        for fmt in [TimeFormat::EpochMs, TimeFormat::AspNet, TimeFormat::SqlUtc] {
            let up = millis_to_upstream(fmt, 1_767_225_600_000);
            assert_eq!(
                upstream_millis(fmt, &up),
                Some(1_767_225_600_000),
                "{fmt:?}"
            );
        }
        assert_eq!(
            millis_to_rfc3339(1_767_225_600_000).as_deref(),
            Some("2026-01-01T00:00:00.000Z")
        );
        // ASP.NET's zone offset and negative instants: `fuzz_regressions` below.
        assert_eq!(
            upstream_millis(TimeFormat::EpochS, &Value::from(10)),
            Some(10_000)
        );
    }

    /// Timestamps are written as chrono writes them, inside the years written here and
    /// beyond them.
    #[test]
    fn timestamps_read_as_chrono_writes_them() {
        let chrono = |ms: i64| {
            Utc.timestamp_millis_opt(ms)
                .single()
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        };
        let mut samples = vec![
            0,
            -1,
            1,
            951_782_400_000,     // 2000-02-29
            -2_203_891_200_001,  // 1900-02-28T23:59:59.999
            -62_167_219_200_000, // 0000-01-01
            -62_167_219_200_001, // before year 0
            253_402_300_799_999, // 9999-12-31T23:59:59.999
            253_402_300_800_000, // 10000-01-01
            i64::MIN,
            i64::MAX,
        ];
        // Spread over the years 0–9999 and a little beyond (a fixed LCG: repeatable).
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..200_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let span = 320_000_000_000_000_i64;
            samples.push((x >> 11) as i64 % span - 64_000_000_000_000);
        }
        for ms in samples {
            assert_eq!(millis_to_rfc3339(ms), chrono(ms), "{ms}");
        }
    }
}

#[cfg(test)]
mod fuzz_regressions {
    use super::*;

    /// `fuzz/artifacts/request_transform/crash-15872518…`: a multi-byte character right
    /// after `/Date(` (and an empty `/Date()/`) panicked on a byte slice.
    #[test]
    fn aspnet_dates_with_odd_text_do_not_panic() {
        for s in [
            "/Date(\u{3df}3589U80)/",
            "/Date()/",
            "/Date(ϟ)/",
            "/Date(-5)/",
            "/Date(12+0000)/",
        ] {
            let _ = upstream_millis(TimeFormat::AspNet, &Value::from(s));
        }
        assert_eq!(
            upstream_millis(
                TimeFormat::AspNet,
                &Value::from("/Date(1735812000000+0000)/")
            ),
            Some(1_735_812_000_000)
        );
        assert_eq!(
            upstream_millis(TimeFormat::AspNet, &Value::from("/Date(-5)/")),
            Some(-5)
        );
    }
}
