//! HAProxy's time syntax, which HaRP's timeout variables use: an unsigned integer with an optional
//! unit `us ms s m h d`, a bare number meaning milliseconds (`30s`, `1800s`, `500`, `2m`).

use std::time::Duration;

/// HAProxy refuses timeouts above 2^31-1 ms (about 24.8 days); keeping the same ceiling means a
/// value HaRP accepted is accepted here, and nothing later overflows an `Instant` addition.
const MAX: Duration = Duration::from_millis(i32::MAX as u64);

/// Parses one HAProxy time value; zero is allowed here, callers decide what it means.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let expected =
        "expected a time like 30s, 1800s, 2m or 500 (milliseconds); units us, ms, s, m, h, d";
    if number.is_empty() {
        return Err(expected.to_string());
    }
    let micros_per_unit: u64 = match unit {
        "us" => 1,
        "" | "ms" => 1_000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return Err(expected.to_string()),
    };
    let too_long = || format!("expected at most {} (HAProxy's limit)", format(MAX));
    let micros = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(micros_per_unit))
        .ok_or_else(too_long)?;
    let duration = Duration::from_micros(micros);
    if duration > MAX {
        return Err(too_long());
    }
    Ok(duration)
}

/// Renders a duration back in the same syntax, exactly (`30s`, `1500ms`, `250us`).
pub(crate) fn format(duration: Duration) -> String {
    let micros = duration.as_micros();
    if micros.is_multiple_of(1_000_000) {
        format!("{}s", micros / 1_000_000)
    } else if micros.is_multiple_of(1_000) {
        format!("{}ms", micros / 1_000)
    } else {
        format!("{micros}us")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_units() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1800s"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse("500"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("24d"), Ok(Duration::from_secs(24 * 86400)));
        assert_eq!(parse("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse(" 0 "), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_what_haproxy_rejects() {
        for bad in [
            "",
            "s",
            "1.5s",
            "-1",
            "10 s",
            "10S",
            "10sec",
            "abc",
            "25d",
            "99999999999999999999",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn format_round_trips() {
        for text in ["30s", "1500ms", "250us", "0s"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
        assert_eq!(format(parse("2m").unwrap()), "120s");
    }
}
