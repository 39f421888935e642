//! The children this process applied, until the watch cache shows them. A look that one child's
//! watch event starts can come before the other child's event: deciding from the cache alone, it
//! applied that child again (0.3 to 0.4 more writes per service at N = 1000 on the simulated
//! node, once a new service's first look no longer wrote a status).

use std::time::{Duration, Instant};

use crate::by_uid::ByUid;
use crate::supervisor::JustApplied;

/// Past this, the cache is trusted again even if it never showed the child (a watch that
/// relisted without it: someone deleted it at once). The watches lag by well under a second.
const TRUST_FOR: Duration = Duration::from_secs(10);

#[derive(Clone, Default)]
pub struct Applied(ByUid<(JustApplied, Instant)>);

impl Applied {
    /// This process applied these hashes for the service `uid` (`live_count` and `live` bound
    /// the entries, see [`ByUid::insert`]).
    pub fn remember(
        &self,
        uid: &str,
        deployment: Option<String>,
        service: Option<String>,
        live_count: usize,
        live: impl FnOnce() -> std::collections::HashSet<String>,
    ) {
        if deployment.is_none() && service.is_none() {
            return;
        }
        let mut entry = self.0.remove(uid).map(|(j, _)| j).unwrap_or_default();
        entry.deployment = deployment.or(entry.deployment);
        entry.service = service.or(entry.service);
        self.0.insert(uid.to_string(), (entry, Instant::now()), live_count, live);
    }

    /// The service `uid` is being deleted: nothing it applied matters any more.
    pub fn forget(&self, uid: &str) {
        self.0.remove(uid);
    }

    /// What `uid`'s look should take as applied besides the cache, which shows the Deployment
    /// and the Service or not: only what it doesn't show yet, and only for `TRUST_FOR`.
    pub fn unseen(&self, uid: &str, deployment_seen: bool, service_seen: bool) -> JustApplied {
        let mut entries = self.0.entries();
        let Some((applied, at)) = entries.get(uid) else { return JustApplied::default() };
        if at.elapsed() > TRUST_FOR || (deployment_seen && service_seen) {
            entries.remove(uid);
            return JustApplied::default();
        }
        JustApplied {
            deployment: applied.deployment.clone().filter(|_| !deployment_seen),
            service: applied.service.clone().filter(|_| !service_seen),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn what_the_cache_does_not_show_yet_counts_as_applied_until_it_does() {
        let applied = Applied::default();
        applied.remember("u1", Some("d1".into()), Some("s1".into()), 1, HashSet::new);
        let both = applied.unseen("u1", false, false);
        assert_eq!((both.deployment.as_deref(), both.service.as_deref()), (Some("d1"), Some("s1")));
        let service_only = applied.unseen("u1", true, false);
        assert_eq!((service_only.deployment, service_only.service.as_deref()), (None, Some("s1")));
        assert_eq!(applied.unseen("u1", true, true), JustApplied::default(), "the cache caught up");
        assert_eq!(applied.unseen("u1", false, false), JustApplied::default(), "and the entry went");
        assert_eq!(applied.unseen("u2", false, false), JustApplied::default(), "never applied");
    }
}
