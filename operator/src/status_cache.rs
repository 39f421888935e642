//! The statuses this process wrote, until the watch cache shows them.
//!
//! The leader is the only writer of TelephonyService status, so it decides from the status it last
//! wrote rather than from a watch cache that may not have caught up yet: a failure is never counted
//! twice. An entry goes as soon as the watch delivers the object at the version its write returned,
//! so a converged operator holds one copy of each status (the cache's), not two.

use std::collections::HashSet;

use kube::ResourceExt;

use crate::by_uid::ByUid;

use crate::crd::{TelephonyService, TelephonyServiceStatus};

/// Shared by the TelephonyService watch (which drops entries) and the reconciler.
#[derive(Clone, Default)]
pub struct StatusCache(ByUid<Entry>);

struct Entry {
    /// The object's resourceVersion after the write.
    resource_version: Option<String>,
    status: TelephonyServiceStatus,
}

impl StatusCache {
    /// The status to decide from for `uid`: the last one written, unless the cached object (at
    /// `cached_version`) already holds it.
    pub fn latest(&self, uid: &str, cached_version: Option<&str>) -> Option<TelephonyServiceStatus> {
        let mut entries = self.0.entries();
        let entry = entries.get(uid)?;
        if entry.resource_version.is_some() && entry.resource_version.as_deref() == cached_version {
            entries.remove(uid);
            return None;
        }
        Some(entry.status.clone())
    }

    /// A status was written; the API server answered with `resource_version` (`live_count` and
    /// `live` bound the entries, see [`ByUid::insert`]).
    pub fn remember(
        &self,
        uid: String,
        resource_version: Option<String>,
        status: TelephonyServiceStatus,
        live_count: usize,
        live: impl FnOnce() -> HashSet<String>,
    ) {
        self.0.insert(uid, Entry { resource_version, status }, live_count, live);
    }

    /// The outcome of a write is unknown, or the object is going: trust the watch again.
    pub fn forget(&self, uid: &str) {
        self.0.remove(uid);
    }

    /// The watch delivered `tsvc` (already in the cache): its entry goes if this is the written version.
    pub fn seen(&self, tsvc: &TelephonyService) {
        let Some(uid) = tsvc.metadata.uid.as_deref() else { return };
        let mut entries = self.0.entries();
        if entries
            .get(uid)
            .is_some_and(|e| e.resource_version.is_some() && e.resource_version == tsvc.resource_version())
        {
            entries.remove(uid);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.entries().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Phase;

    fn status(phase: Phase) -> TelephonyServiceStatus {
        TelephonyServiceStatus { phase, ..Default::default() }
    }

    fn tsvc_at(uid: &str, version: &str) -> TelephonyService {
        let mut t: TelephonyService = serde_json::from_value(serde_json::json!({
            "apiVersion": "dialtone.dev/v1alpha1", "kind": "TelephonyService",
            "metadata": { "name": "calls", "namespace": "shop" },
            "spec": { "image": "w:1", "telnyx": { "apiKeySecretRef": { "name": "telnyx" }, "connectionId": "c" } }
        }))
        .expect("tsvc");
        t.metadata.uid = Some(uid.into());
        t.metadata.resource_version = Some(version.into());
        t
    }

    #[test]
    fn a_written_status_wins_until_the_cache_holds_it() {
        let cache = StatusCache::default();
        cache.remember("u1".into(), Some("7".into()), status(Phase::Ready), 1, HashSet::new);
        assert_eq!(cache.latest("u1", Some("6")), Some(status(Phase::Ready)), "the cache is behind");
        assert_eq!(cache.latest("u1", Some("7")), None, "the cache caught up: its copy is used");
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn the_watch_delivering_the_written_version_drops_the_entry() {
        let cache = StatusCache::default();
        cache.remember("u1".into(), Some("7".into()), status(Phase::Progressing), 1, HashSet::new);
        cache.seen(&tsvc_at("u1", "6"));
        assert_eq!(cache.len(), 1, "an older version keeps it");
        cache.seen(&tsvc_at("u2", "7"));
        assert_eq!(cache.len(), 1, "another object's version keeps it");
        cache.seen(&tsvc_at("u1", "7"));
        assert_eq!(cache.len(), 0, "a converged operator holds no second copy");
    }
}
