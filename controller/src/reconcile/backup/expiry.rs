//! TTLs as Backups spell them: Go-style durations (`720h`, `1h30m`, `90s`, `2d` as a
//! convenience), read by `lifeboat_backup::duration`.

use chrono::Duration;
use lifeboat_backup::duration::{DurationError, parse_duration};

/// A Backup's `spec.ttl` that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.ttl {}", .0)]
pub struct TtlError(#[from] DurationError);

/// Parses `ttl`; the error names the field and shows valid forms.
pub fn parse_ttl(ttl: &str) -> Result<Duration, TtlError> {
    Ok(parse_duration(ttl)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_durations() {
        assert_eq!(parse_ttl("720h"), Ok(Duration::hours(720)));
        assert_eq!(parse_ttl("2d"), Ok(Duration::days(2)));
        for bad in ["", "10", "h", "5x", "1.5h"] {
            assert!(
                parse_ttl(bad).unwrap_err().to_string().contains("spec.ttl"),
                "{bad}"
            );
        }
    }
}
