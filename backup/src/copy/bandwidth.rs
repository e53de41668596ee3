//! A bandwidth limit shared by every transfer of one copy (`--bandwidth 50MiB`).
//!
//! Each chunk reserves its slot on one timeline: the slot starts when the previous one ends
//! (or now, if the line is idle) and lasts `bytes / rate`; the transfer waits until its slot
//! ends before taking the next chunk, so the socket's receive window closes and the sender
//! slows down. The average stays at or under the rate however many transfers run, and a
//! source that hands over a whole pack in one chunk (local disk) is held for its full slot. (`object_store`'s `ThrottledStore` sleeps per request, not per
//! byte shared across requests, so it cannot express a total rate.)

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A shared byte-rate limit.
#[derive(Debug)]
pub struct Bandwidth {
    bytes_per_second: u64,
    next_free: Mutex<Option<Instant>>,
}

impl Bandwidth {
    /// A limit of `bytes_per_second` (at least 1).
    pub fn new(bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second: bytes_per_second.max(1),
            next_free: Mutex::new(None),
        }
    }

    /// The rate, bytes per second.
    pub fn bytes_per_second(&self) -> u64 {
        self.bytes_per_second
    }

    /// Accounts for `bytes` just received: waits until the end of their slot.
    pub async fn take(&self, bytes: usize) {
        let now = Instant::now();
        let slot = Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64);
        let end = {
            let Ok(mut next) = self.next_free.lock() else {
                return;
            };
            let end = next.map_or(now, |n| n.max(now)) + slot;
            *next = Some(end);
            end
        };
        tokio::time::sleep_until(end).await;
    }
}

/// A bandwidth limit that does not parse; each names the text and the accepted form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    /// The number part does not parse.
    #[error("bandwidth {0:?} is not a number with an optional unit (e.g. 50MiB)")]
    NotANumber(String),
    /// The unit is not one of B, KiB, MiB, GiB, K, M, G (with optional `/s`).
    #[error(
        "bandwidth {text:?}: unknown unit {unit:?}; use B, KiB, MiB, GiB (or K, M, G for powers of 1000)"
    )]
    UnknownUnit {
        /// The text given.
        text: String,
        /// Its unit.
        unit: String,
    },
    /// Less than one byte per second (zero would never finish).
    #[error("bandwidth {0:?} must be at least 1 byte per second")]
    TooLow(String),
}

/// Parses a rate in bytes per second: `52428800`, `50MiB`, `50Mi`, `50M` (10⁶), `1.5GiB`,
/// `800KiB/s`.
pub fn parse_rate(text: &str) -> Result<u64, RateError> {
    let t = text.trim().trim_end_matches("/s").trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| RateError::NotANumber(text.to_string()))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "ki" | "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mi" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(RateError::UnknownUnit {
                text: text.to_string(),
                unit: other.to_string(),
            });
        }
    };
    let bytes = value * factor;
    // NaN fails this too.
    if bytes.is_nan() || bytes < 1.0 {
        return Err(RateError::TooLow(text.to_string()));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates_with_units() {
        assert_eq!(parse_rate("1000").unwrap(), 1000);
        assert_eq!(parse_rate("50MiB").unwrap(), 50 << 20);
        assert_eq!(parse_rate("50Mi").unwrap(), 50 << 20);
        assert_eq!(parse_rate("10M").unwrap(), 10_000_000);
        assert_eq!(parse_rate("1.5GiB/s").unwrap(), 3 << 29);
        assert!(parse_rate("fast").unwrap_err().to_string().contains("50MiB"));
        assert!(
            parse_rate("10 parsecs")
                .unwrap_err()
                .to_string()
                .contains("unknown unit")
        );
        assert!(parse_rate("0").is_err());
    }

    #[tokio::test]
    async fn holds_the_total_rate_across_transfers() {
        let limit = std::sync::Arc::new(Bandwidth::new(10_000_000));
        let start = Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let limit = limit.clone();
                tokio::spawn(async move {
                    for _ in 0..10 {
                        limit.take(25_000).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // 1 MB at 10 MB/s: the last slot ends after 100 ms, however the tasks interleave.
        let took = start.elapsed().as_secs_f64();
        assert!((0.099..0.3).contains(&took), "{took}");
    }
}
