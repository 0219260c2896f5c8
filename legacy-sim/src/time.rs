//! Clock and date codecs of the legacy services: epoch milliseconds (crm-core,
//! engagements), ASP.NET `"/Date(ms)/"` (sales), `yyyy-MM-dd HH:mm:ss` UTC (workflow)
//! and epoch seconds (audit). No calendar crate: the civil-date arithmetic is Howard
//! Hinnant's, which is exact for the proleptic Gregorian calendar.

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) const DAY_MS: i64 = 86_400_000;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = (if y >= 0 { y } else { y - 399 }) / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let d = i64::from(d);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = (if z >= 0 { z } else { z - 146_096 }) / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Epoch ms of `y-m-d 00:00:00Z`.
pub(crate) fn ymd_ms(y: i64, m: u32, d: u32) -> i64 {
    days_from_civil(y, m, d) * DAY_MS
}

fn days_in_month(y: i64, m: u32) -> u32 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)) as u32
}

pub(crate) fn midnight(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS) * DAY_MS
}

/// `2026-12-01 17:00:00` (workflow's format, UTC without a zone marker).
pub(crate) fn fmt_wf(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

fn digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0')))
}

fn date_part(b: &[u8]) -> Option<i64> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = digits(&b[0..4])?;
    let m = u32::try_from(digits(&b[5..7])?).ok()?;
    let d = u32::try_from(digits(&b[8..10])?).ok()?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(ymd_ms(y, m, d))
}

/// Parses workflow's `yyyy-MM-dd HH:mm:ss` strictly.
pub(crate) fn parse_wf(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 19 || b[10] != b' ' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let day = date_part(&b[0..10])?;
    let h = digits(&b[11..13])?;
    let mi = digits(&b[14..16])?;
    let se = digits(&b[17..19])?;
    if h > 23 || mi > 59 || se > 59 {
        return None;
    }
    Some(day + (h * 3600 + mi * 60 + se) * 1000)
}

/// `yyyy-MM-dd` as midnight UTC.
pub(crate) fn parse_ymd(s: &str) -> Option<i64> {
    date_part(s.as_bytes())
}

pub(crate) fn fmt_aspnet(ms: i64) -> String {
    format!("/Date({ms})/")
}

/// `/Date(1767225600000)/`, also with the `+0100`-style suffix .NET may write
/// (the number is UTC milliseconds either way, so the suffix is ignored).
pub(crate) fn parse_aspnet(s: &str) -> Option<i64> {
    let inner = s.strip_prefix("/Date(")?.strip_suffix(")/")?;
    let (neg, rest) = match inner.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, inner),
    };
    let end = rest.find(['+', '-']).unwrap_or(rest.len());
    let (num, zone) = rest.split_at(end);
    if !zone.is_empty() && (zone.len() != 5 || digits(&zone.as_bytes()[1..]).is_none()) {
        return None;
    }
    if num.len() > 16 {
        return None;
    }
    let v = digits(num.as_bytes())?;
    Some(if neg { -v } else { v })
}

/// 100-nanosecond ticks (.NET's precision, kept by the OData directory).
pub(crate) const TICKS_PER_MS: i64 = 10_000;
const TICKS_PER_SEC: i64 = 10_000_000;

fn civil_time(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// The directory's Edm.DateTimeOffset: `2026-11-28T09:30:00Z`, or with the 1–7 digits
/// the fraction needs when it is not zero (`2026-11-28T09:30:00.1234567Z`, `…00.5Z`).
pub(crate) fn fmt_odata(ticks: i64) -> String {
    let secs = ticks.div_euclid(TICKS_PER_SEC);
    let frac = ticks.rem_euclid(TICKS_PER_SEC);
    if frac == 0 {
        format!("{}Z", civil_time(secs))
    } else {
        let digits = format!("{frac:07}");
        format!("{}.{}Z", civil_time(secs), digits.trim_end_matches('0'))
    }
}

/// The accounts service's timestamps: `2026-11-28T09:30:00.123+0000` (always
/// milliseconds and a `+0000` offset).
pub(crate) fn fmt_jsonapi(ms: i64) -> String {
    format!(
        "{}.{:03}+0000",
        civil_time(ms.div_euclid(1000)),
        ms.rem_euclid(1000)
    )
}

/// An ISO 8601 date-time with a zone, as nanoseconds since the epoch:
/// `YYYY-MM-DDTHH:MM[:SS[.f]]` then `Z`, `±HH:MM` or `±HHMM`, with at most `max_frac`
/// fraction digits. Strict: anything else is `None`.
pub(crate) fn parse_iso(s: &str, max_frac: usize) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 17 || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    let day = date_part(&b[0..10])? / 1000;
    let h = digits(&b[11..13])?;
    let mi = digits(&b[14..16])?;
    let mut rest = &b[16..];
    let mut se = 0;
    let mut nanos: i128 = 0;
    if let Some(r) = rest.strip_prefix(b":") {
        se = digits(r.get(0..2)?)?;
        rest = &r[2..];
        if let Some(r) = rest.strip_prefix(b".") {
            let n = r.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 || n > max_frac || n > 9 {
                return None;
            }
            let mut f = digits(&r[..n])? as i128;
            for _ in n..9 {
                f *= 10;
            }
            nanos = f;
            rest = &r[n..];
        }
    }
    if h > 23 || mi > 59 || se > 59 {
        return None;
    }
    let offset = match rest {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), zone @ ..] => {
            let (oh, om) = match zone {
                [a, b, b':', c, d] | [a, b, c, d] => (digits(&[*a, *b])?, digits(&[*c, *d])?),
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let o = (oh * 3600 + om * 60) as i128;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let secs = (day + h * 3600 + mi * 60 + se) as i128 - offset;
    Some(secs * 1_000_000_000 + nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        assert_eq!(ymd_ms(2026, 1, 1), 1_767_225_600_000);
        for day in -800_000..800_000i64 {
            if day % 997 != 0 {
                continue;
            }
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }

    #[test]
    fn workflow_format() {
        let ms = parse_wf("2026-12-01 17:00:00").unwrap();
        assert_eq!(fmt_wf(ms), "2026-12-01 17:00:00");
        assert!(parse_wf("2026-02-29 00:00:00").is_none());
        assert!(parse_wf("2026-12-01T17:00:00").is_none());
        assert!(parse_wf("2026-12-01 24:00:00").is_none());
    }

    #[test]
    fn iso_formats() {
        let t = parse_iso("2026-11-28T09:30:00Z", 7).unwrap();
        assert_eq!(t, 1_795_858_200 * 1_000_000_000);
        assert_eq!(fmt_odata((t / 100) as i64), "2026-11-28T09:30:00Z");
        let f = parse_iso("2026-11-28T09:30:00.1234567Z", 7).unwrap();
        assert_eq!(fmt_odata((f / 100) as i64), "2026-11-28T09:30:00.1234567Z");
        let h = parse_iso("2026-11-28T09:30:00.5Z", 7).unwrap();
        assert_eq!(fmt_odata((h / 100) as i64), "2026-11-28T09:30:00.5Z");
        assert_eq!(parse_iso("2026-11-28T10:30:00+01:00", 7), Some(t));
        assert_eq!(parse_iso("2026-11-28T08:30:00-0100", 7), Some(t));
        assert_eq!(parse_iso("2026-11-28T09:30Z", 7), Some(t));
        assert!(parse_iso("2026-11-28T09:30:00.12345678Z", 7).is_none());
        assert!(parse_iso("2026-11-28T09:30:00", 7).is_none());
        assert!(parse_iso("2026-11-28 09:30:00Z", 7).is_none());
        assert!(parse_iso("2026-02-30T09:30:00Z", 7).is_none());
        assert!(parse_iso("2026-11-28T24:00:00Z", 7).is_none());
        assert!(parse_iso("2026-11-28T09:30:00.Z", 7).is_none());
        assert!(parse_iso("2026-11-28T09:30:00+0", 7).is_none());
        let ms = 1_795_858_200_123;
        assert_eq!(fmt_jsonapi(ms), "2026-11-28T09:30:00.123+0000");
        assert_eq!(
            parse_iso(&fmt_jsonapi(ms), 9),
            Some(i128::from(ms) * 1_000_000)
        );
    }

    #[test]
    fn aspnet_format() {
        assert_eq!(
            parse_aspnet("/Date(1767225600000)/"),
            Some(1_767_225_600_000)
        );
        assert_eq!(
            parse_aspnet("/Date(1767225600000+0100)/"),
            Some(1_767_225_600_000)
        );
        assert_eq!(parse_aspnet("/Date(-5)/"), Some(-5));
        assert_eq!(parse_aspnet("2026-01-01"), None);
        assert_eq!(parse_aspnet("/Date()/"), None);
        assert_eq!(fmt_aspnet(5), "/Date(5)/");
    }
}
