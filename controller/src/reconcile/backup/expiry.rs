//! TTLs as Backups spell them: Go-style durations (`720h`, `1h30m`, `90s`, `2d` as a
//! convenience).

use chrono::Duration;

/// Parses `ttl`; the error names the field and shows valid forms.
pub fn parse_ttl(ttl: &str) -> Result<Duration, String> {
    let bad = || format!("spec.ttl {ttl:?} is not a duration; write e.g. `720h`, `1h30m`, `45m` or `30s`");
    let s = ttl.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::zero();
    let mut number = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: i64 = number.parse().map_err(|_| bad())?;
        number.clear();
        let part = match c {
            'd' => Duration::try_days(n),
            'h' => Duration::try_hours(n),
            'm' => Duration::try_minutes(n),
            's' => Duration::try_seconds(n),
            _ => None,
        }
        .ok_or_else(bad)?;
        total = total.checked_add(&part).ok_or_else(bad)?;
    }
    if !number.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_durations() {
        assert_eq!(parse_ttl("720h"), Ok(Duration::hours(720)));
        assert_eq!(parse_ttl("1h30m"), Ok(Duration::minutes(90)));
        assert_eq!(parse_ttl("2d"), Ok(Duration::days(2)));
        assert_eq!(parse_ttl("10s"), Ok(Duration::seconds(10)));
        for bad in ["", "10", "h", "5x", "1.5h"] {
            assert!(parse_ttl(bad).unwrap_err().contains("spec.ttl"), "{bad}");
        }
    }
}
