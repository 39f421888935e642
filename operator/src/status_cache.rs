//! The statuses this process wrote, until the watch cache shows them.
//!
//! The leader is the only writer of TelephonyService status, so it decides from the status it last
//! wrote rather than from a watch cache that may not have caught up yet: a failure is never counted
//! twice. An entry goes as soon as the watch delivers the object at the version its write returned,
//! so a converged operator holds one copy of each status (the cache's), not two.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use kube::ResourceExt;

use crate::crd::{TelephonyService, TelephonyServiceStatus};

/// Shared by the TelephonyService watch (which drops entries) and the reconciler.
#[derive(Clone, Default)]
pub struct StatusCache(Arc<Mutex<HashMap<String, Entry>>>);

struct Entry {
    /// The object's resourceVersion after the write.
    resource_version: Option<String>,
    status: TelephonyServiceStatus,
}

/// Deleted objects are never reconciled again: past this many stale entries, they are dropped.
const SLACK: usize = 64;

impl StatusCache {
    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic holding the lock aborts the process (release profile), so poison carries no risk.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The status to decide from for `uid`: the last one written, unless the cached object (at
    /// `cached_version`) already holds it.
    pub fn latest(&self, uid: &str, cached_version: Option<&str>) -> Option<TelephonyServiceStatus> {
        let mut entries = self.entries();
        let entry = entries.get(uid)?;
        if entry.resource_version.is_some() && entry.resource_version.as_deref() == cached_version {
            entries.remove(uid);
            return None;
        }
        Some(entry.status.clone())
    }

    /// A status was written; the API server answered with `resource_version`. `live_count` objects
    /// exist; `live` lists their uids, to bound the entries of deleted ones. The list is built only
    /// when the entries outnumber the objects: built on every write, it cost O(services) per write
    /// while thousands of writes awaited their watch event at 5,000 services.
    pub fn remember(
        &self,
        uid: String,
        resource_version: Option<String>,
        status: TelephonyServiceStatus,
        live_count: usize,
        live: impl FnOnce() -> HashSet<String>,
    ) {
        let mut entries = self.entries();
        entries.insert(uid, Entry { resource_version, status });
        if entries.len() > live_count + SLACK {
            let live = live();
            entries.retain(|uid, _| live.contains(uid));
        }
    }

    /// The outcome of a write is unknown, or the object is going: trust the watch again.
    pub fn forget(&self, uid: &str) {
        self.entries().remove(uid);
    }

    /// The watch delivered `tsvc` (already in the cache): its entry goes if this is the written version.
    pub fn seen(&self, tsvc: &TelephonyService) {
        let Some(uid) = tsvc.metadata.uid.as_deref() else { return };
        let mut entries = self.entries();
        if entries
            .get(uid)
            .is_some_and(|e| e.resource_version.is_some() && e.resource_version == tsvc.resource_version())
        {
            entries.remove(uid);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().len()
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

    #[test]
    fn the_live_objects_are_listed_only_when_entries_outnumber_them() {
        let cache = StatusCache::default();
        for i in 0..5000 {
            cache.remember(format!("u{i}"), Some("1".into()), status(Phase::Ready), 5000, || {
                panic!("5000 entries for 5000 live objects: no list needed")
            });
        }
        assert_eq!(cache.len(), 5000);
    }

    #[test]
    fn entries_of_deleted_objects_are_bounded() {
        let cache = StatusCache::default();
        for i in 0..=SLACK + 1 {
            cache.remember(format!("u{i}"), Some("1".into()), status(Phase::Ready), 1, || {
                HashSet::from(["u0".to_string()])
            });
        }
        assert!(cache.len() <= SLACK + 1, "{} entries", cache.len());
        assert!(cache.latest("u0", None).is_some(), "a live object's entry stays");
        cache.forget("u0");
        assert!(cache.latest("u0", None).is_none());
    }
}
