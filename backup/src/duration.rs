//! Durations as people write them for TTLs and retention: Go-style (`720h`, `1h30m`, `45m`,
//! `30s`) plus days (`7d`, `2d12h`).

use chrono::Duration;

/// A duration that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a duration; write e.g. `720h`, `7d`, `1h30m`, `45m` or `30s`")]
pub struct DurationError {
    /// What was given.
    pub input: String,
}

/// Parses `text`: one or more `<integer><unit>` parts, units `d`, `h`, `m`, `s`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError {
        input: text.to_string(),
    };
    let s = text.trim();
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
    fn parses_go_style_durations_and_days() {
        assert_eq!(parse_duration("720h"), Ok(Duration::hours(720)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::minutes(90)));
        assert_eq!(parse_duration("2d12h"), Ok(Duration::hours(60)));
        assert_eq!(parse_duration("10s"), Ok(Duration::seconds(10)));
        for bad in ["", "10", "h", "5x", "1.5h"] {
            assert_eq!(
                parse_duration(bad),
                Err(DurationError {
                    input: bad.to_string()
                }),
                "{bad}"
            );
        }
    }
}
