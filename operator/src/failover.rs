//! Which service takes a primary's calls (`spec.failover`), as the status records it. The
//! readiness service switches to the backup the moment the primary can't serve (its heartbeats
//! tell it in milliseconds); this decision adds what needs memory: each switch announced once
//! (an Event), and a hold-down before calls come back, so a primary that flaps doesn't pull the
//! app's calls back and forth. Calls never wait on the hold-down with nowhere to go: with the
//! backup down, they come back at once.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::FailoverStatus;

/// What the operator sees of both services.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sight {
    /// The primary stopped taking calls: it served and lost its workers, ran out of budget, or
    /// was scaled to 0 (one still starting is not failing).
    pub primary_down: bool,
    /// The primary takes calls: a worker Ready (the hold-down runs from here).
    pub primary_up: bool,
    /// The backup can: Ready or Degraded with a worker Ready. None: not seen (not watched).
    pub backup_up: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// Calls go to the backup.
    Over,
    /// Calls come back to the primary.
    Back { backup_down: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub status: FailoverStatus,
    pub switch: Option<Switch>,
    /// Look again then: the end of the hold-down, or (primary down, backup not up) soon, as the
    /// backup's changes don't wake the primary.
    pub requeue: Option<Duration>,
}

/// How often a down primary looks at its backup again while the backup can't take over.
const WATCH_BACKUP: Duration = Duration::from_secs(5);

pub fn decide(prev: Option<&FailoverStatus>, sight: Sight, hold_down: Duration, now: Timestamp) -> Verdict {
    let at = |t: Timestamp| Time(crate::liveness::truncate(t));
    let active = prev.is_some_and(|p| p.active);
    let backup_up = sight.backup_up == Some(true);
    if !active {
        if sight.primary_down && backup_up {
            let status = FailoverStatus { active: true, since: Some(at(now)), primary_up_since: None };
            return Verdict { status, switch: Some(Switch::Over), requeue: None };
        }
        let status = FailoverStatus {
            active: false,
            since: prev.and_then(|p| p.since.clone()),
            primary_up_since: None,
        };
        let requeue = sight.primary_down.then_some(WATCH_BACKUP);
        return Verdict { status, switch: None, requeue };
    }
    let since = prev.and_then(|p| p.since.clone());
    if !sight.primary_up {
        let status = FailoverStatus { active: true, since, primary_up_since: None };
        return Verdict { status, switch: None, requeue: None };
    }
    let up_since = prev.and_then(|p| p.primary_up_since.as_ref()).map_or(now, |t| t.0);
    let held = now.duration_since(up_since);
    let hold = SignedDuration::try_from(hold_down).unwrap_or(SignedDuration::MAX);
    if held >= hold || !backup_up {
        let status = FailoverStatus { active: false, since: Some(at(now)), primary_up_since: None };
        return Verdict { status, switch: Some(Switch::Back { backup_down: !backup_up }), requeue: None };
    }
    let left = Duration::try_from(hold - held).unwrap_or_default();
    let status = FailoverStatus { active: true, since, primary_up_since: Some(at(up_since)) };
    // A whole second past the end: status times are whole seconds.
    Verdict { status, switch: None, requeue: Some(left + Duration::from_secs(1)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }
    const HOLD: Duration = Duration::from_secs(30);
    const DOWN: Sight = Sight { primary_down: true, primary_up: false, backup_up: Some(true) };
    const UP: Sight = Sight { primary_down: false, primary_up: true, backup_up: Some(true) };

    #[test]
    fn over_when_the_primary_is_down_and_back_after_the_hold_down() {
        let calm = decide(None, UP, HOLD, t(0));
        assert_eq!((calm.status.active, calm.switch, calm.requeue), (false, None, None));
        let over = decide(Some(&calm.status), DOWN, HOLD, t(10));
        assert_eq!((over.status.active, over.switch), (true, Some(Switch::Over)));
        assert_eq!(over.status.since, Some(Time(t(10))));
        let still = decide(Some(&over.status), DOWN, HOLD, t(11));
        assert_eq!((still.status.active, still.switch), (true, None));
        // The primary is back: calls stay on the backup for the hold-down.
        let held = decide(Some(&still.status), UP, HOLD, t(20));
        assert_eq!((held.status.active, held.switch), (true, None));
        assert_eq!(held.status.primary_up_since, Some(Time(t(20))));
        assert_eq!(held.requeue, Some(Duration::from_secs(31)));
        let later = decide(Some(&held.status), UP, HOLD, t(35));
        assert_eq!((later.status.active, later.requeue), (true, Some(Duration::from_secs(16))));
        let back = decide(Some(&later.status), UP, HOLD, t(50));
        assert_eq!((back.status.active, back.switch), (false, Some(Switch::Back { backup_down: false })));
        assert_eq!(back.status.since, Some(Time(t(50))));
        assert_eq!(decide(Some(&back.status), UP, HOLD, t(51)).switch, None, "announced once");
    }

    #[test]
    fn a_flap_during_the_hold_down_starts_it_again() {
        let over = decide(None, DOWN, HOLD, t(0));
        let held = decide(Some(&over.status), UP, HOLD, t(10));
        let flap = decide(Some(&held.status), DOWN, HOLD, t(20));
        assert_eq!(
            (flap.status.active, flap.status.primary_up_since.clone(), flap.switch),
            (true, None, None)
        );
        let again = decide(Some(&flap.status), UP, HOLD, t(30));
        assert_eq!(again.status.primary_up_since, Some(Time(t(30))));
        assert_eq!(decide(Some(&again.status), UP, HOLD, t(45)).switch, None, "30 s from the last recovery");
    }

    #[test]
    fn calls_never_wait_on_the_hold_down_with_the_backup_down() {
        let over = decide(None, DOWN, HOLD, t(0));
        let backup_gone = Sight { primary_down: false, primary_up: true, backup_up: Some(false) };
        let back = decide(Some(&over.status), backup_gone, HOLD, t(5));
        assert_eq!((back.status.active, back.switch), (false, Some(Switch::Back { backup_down: true })));
    }

    #[test]
    fn no_switch_to_a_backup_that_is_down_or_unseen_but_keep_looking() {
        for backup_up in [Some(false), None] {
            let v = decide(None, Sight { primary_down: true, primary_up: false, backup_up }, HOLD, t(0));
            assert_eq!((v.status.active, v.switch, v.requeue), (false, None, Some(WATCH_BACKUP)));
        }
        // Over, then both down: stays over (no loop, the answer is a 503), nothing announced.
        let over = decide(None, DOWN, HOLD, t(0));
        let both = decide(
            Some(&over.status),
            Sight { primary_down: true, primary_up: false, backup_up: Some(false) },
            HOLD,
            t(5),
        );
        assert_eq!((both.status.active, both.switch), (true, None));
    }
}
