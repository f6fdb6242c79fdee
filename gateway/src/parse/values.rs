//! XML Schema value types the notification uses: `xs:boolean`, `xs:int`, `xs:dateTime`.
//! Each parser applies the type's whitespace collapsing and returns `None` for anything
//! outside the lexical space or the value range.

use crate::model::Timestamp;

/// XML whitespace (`#x20 | #x9 | #xD | #xA`), the only characters `collapse` removes.
fn trim_xml(raw: &str) -> &str {
    raw.trim_matches([' ', '\t', '\r', '\n'])
}

/// `xs:boolean`: `true`, `false`, `1` or `0`.
pub(crate) fn boolean(raw: &str) -> Option<bool> {
    match trim_xml(raw) {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// `xs:int`: an optional sign and decimal digits, within `i32`.
pub(crate) fn int(raw: &str) -> Option<i32> {
    let s = trim_xml(raw);
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // `i32::from_str` accepts exactly this grammar, leading `+` included.
    s.parse().ok()
}

/// `xs:dateTime`: `YYYY-MM-DDThh:mm:ss[.fraction][Z|(+|-)hh:mm]`, years 0001–9999. A value
/// without a zone is taken as UTC (Exchange always writes `Z`). `24:00:00` is the end of the
/// day, as the schema allows.
pub(crate) fn date_time(raw: &str) -> Option<Timestamp> {
    let s = trim_xml(raw).as_bytes();
    if s.len() < 19 || s[4] != b'-' || s[7] != b'-' || s[10] != b'T' {
        return None;
    }
    if s[13] != b':' || s[16] != b':' {
        return None;
    }
    let year = digits(&s[0..4])?;
    let month = digits(&s[5..7])?;
    let day = digits(&s[8..10])?;
    let (hour, minute, second) = (
        digits(&s[11..13])?,
        digits(&s[14..16])?,
        digits(&s[17..19])?,
    );
    if year == 0 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let end_of_day = hour == 24 && minute == 0 && second == 0;
    if (hour > 23 && !end_of_day) || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 || (end_of_day && fraction[..len].iter().any(|&b| b != b'0')) {
            return None;
        }
        for (i, &b) in fraction[..len].iter().take(9).enumerate() {
            nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
        }
        rest = &fraction[len..];
    }
    let offset_minutes = match rest {
        [] | [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if m > 59 || h > 14 || (h == 14 && m != 0) {
                return None;
            }
            let minutes = i64::from(h * 60 + m);
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let seconds =
        days * 86_400 + i64::from(hour) * 3_600 + i64::from(minute) * 60 + i64::from(second)
            - offset_minutes * 60;
    Some(Timestamp {
        unix_seconds: seconds,
        nanos,
    })
}

fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(unix_seconds: i64, nanos: u32) -> Option<Timestamp> {
        Some(Timestamp {
            unix_seconds,
            nanos,
        })
    }

    #[test]
    fn booleans_follow_the_lexical_space() {
        assert_eq!(boolean("true"), Some(true));
        assert_eq!(boolean(" 1\n"), Some(true));
        assert_eq!(boolean("0"), Some(false));
        assert_eq!(boolean("false"), Some(false));
        for bad in ["maybe", "TRUE", "yes", "", "01", "t"] {
            assert_eq!(boolean(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ints_stay_within_i32() {
        assert_eq!(int("4"), Some(4));
        assert_eq!(int("+7"), Some(7));
        assert_eq!(int("-3"), Some(-3));
        assert_eq!(int(" 0012 "), Some(12));
        assert_eq!(int("2147483647"), Some(i32::MAX));
        assert_eq!(int("-2147483648"), Some(i32::MIN));
        for bad in [
            "99999999999",
            "2147483648",
            "",
            "+",
            "1.0",
            "1e3",
            "0x10",
            "--1",
            "٣",
        ] {
            assert_eq!(int(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn date_times_convert_to_unix_time() {
        assert_eq!(date_time("1970-01-01T00:00:00Z"), ts(0, 0));
        assert_eq!(date_time("2026-03-04T09:15:27Z"), ts(1_772_615_727, 0));
        assert_eq!(date_time("2026-03-04T10:15:27+01:00"), ts(1_772_615_727, 0));
        assert_eq!(date_time("2026-03-04T09:15:27"), ts(1_772_615_727, 0));
        assert_eq!(
            date_time("2026-03-04T09:15:27.25Z"),
            ts(1_772_615_727, 250_000_000)
        );
        assert_eq!(date_time("2024-02-29T00:00:00Z"), ts(1_709_164_800, 0));
        assert_eq!(
            date_time("2026-03-03T24:00:00Z"),
            date_time("2026-03-04T00:00:00Z")
        );
        assert_eq!(date_time("1969-12-31T23:59:59Z"), ts(-1, 0));
    }

    #[test]
    fn bad_date_times_are_refused() {
        for bad in [
            "yesterday",
            "",
            "2026-03-04",
            "2026-03-04 09:15:27Z",
            "2026-13-04T09:15:27Z",
            "2026-02-29T09:15:27Z",
            "2026-03-04T25:00:00Z",
            "2026-03-04T24:00:01Z",
            "2026-03-04T09:60:00Z",
            "2026-03-04T09:15:27.Z",
            "2026-03-04T09:15:27+15:00",
            "2026-03-04T09:15:27+0100",
            "0000-01-01T00:00:00Z",
            "2026-03-04T09:15:27Zjunk",
            "२०२६-03-04T09:15:27Z",
        ] {
            assert_eq!(date_time(bad), None, "{bad:?}");
        }
    }
}
