//! The leader-election decision as a pure function of the Lease as last read.

use chrono::{DateTime, Utc};

/// The parts of a Lease that matter for the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    /// Who holds it.
    pub holder: Option<String>,
    /// When the holder last renewed it.
    pub renew_time: Option<DateTime<Utc>>,
    /// How long a renewal is valid.
    pub duration_secs: i64,
}

/// What this process should do with the Lease now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds a valid Lease: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it until `until`.
    Wait {
        /// The holder.
        holder: String,
        /// When their Lease runs out unless renewed.
        until: DateTime<Utc>,
    },
    /// We led, but someone else holds it now: stop reconciling at once.
    Lost {
        /// The new holder.
        holder: String,
    },
}

/// Decides from the Lease (`None` when it does not exist) what `me` should do at `now`.
pub fn decide(lease: Option<&LeaseView>, me: &str, now: DateTime<Utc>, was_leading: bool) -> Decision {
    let Some(lease) = lease else {
        return Decision::Acquire;
    };
    match lease.holder.as_deref() {
        None | Some("") => return Decision::Acquire,
        Some(h) if h == me => return Decision::Renew,
        Some(_) => {}
    }
    match lease.held_until(now) {
        Some((holder, _)) if was_leading => Decision::Lost {
            holder: holder.to_string(),
        },
        Some((holder, until)) => Decision::Wait {
            holder: holder.to_string(),
            until,
        },
        None => Decision::Acquire,
    }
}

impl LeaseView {
    /// The holder and when their Lease runs out, if someone holds it and it has not run out
    /// at `now` (also how drctl tells whether a controller is running).
    pub fn held_until(&self, now: DateTime<Utc>) -> Option<(&str, DateTime<Utc>)> {
        let holder = self.holder.as_deref().filter(|h| !h.is_empty())?;
        let until = self.renew_time? + chrono::Duration::seconds(self.duration_secs.max(1));
        (until > now).then_some((holder, until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0)
            .single()
            .expect("valid time")
    }

    fn held_by(h: &str, renewed: i64) -> LeaseView {
        LeaseView {
            holder: Some(h.into()),
            renew_time: Some(at(renewed)),
            duration_secs: 15,
        }
    }

    #[test]
    fn a_missing_or_released_lease_is_taken() {
        assert_eq!(decide(None, "a", at(0), false), Decision::Acquire);
        let released = LeaseView {
            holder: None,
            renew_time: None,
            duration_secs: 15,
        };
        assert_eq!(decide(Some(&released), "a", at(0), false), Decision::Acquire);
    }

    #[test]
    fn the_holder_renews_and_others_wait_until_it_expires() {
        assert_eq!(decide(Some(&held_by("a", 0)), "a", at(5), true), Decision::Renew);
        assert_eq!(
            decide(Some(&held_by("a", 0)), "b", at(5), false),
            Decision::Wait {
                holder: "a".into(),
                until: at(15)
            }
        );
        assert_eq!(
            decide(Some(&held_by("a", 0)), "b", at(16), false),
            Decision::Acquire
        );
    }

    #[test]
    fn a_leader_that_finds_another_holder_has_lost() {
        assert_eq!(
            decide(Some(&held_by("b", 10)), "a", at(12), true),
            Decision::Lost { holder: "b".into() }
        );
    }
}
