//! Entries this process keeps per TelephonyService (by uid) until something catches up, bounded
//! to the live objects: a deleted object is never reconciled again to drop its own.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// Deleted objects' entries past this many are dropped.
pub const SLACK: usize = 64;

pub struct ByUid<V>(Arc<Mutex<HashMap<String, V>>>);

impl<V> Default for ByUid<V> {
    fn default() -> Self {
        ByUid(Arc::default())
    }
}

impl<V> Clone for ByUid<V> {
    fn clone(&self) -> Self {
        ByUid(self.0.clone())
    }
}

impl<V> ByUid<V> {
    pub fn entries(&self) -> MutexGuard<'_, HashMap<String, V>> {
        // A panic holding the lock aborts the process (release profile), so poison carries no risk.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps `value` for `uid`. `live_count` objects exist; `live` lists their uids, to bound the
    /// entries of deleted ones. The list is built only when the entries outnumber the objects:
    /// built on every insert, it cost O(services) per write while thousands of writes awaited
    /// their watch event at 5,000 services.
    pub fn insert(&self, uid: String, value: V, live_count: usize, live: impl FnOnce() -> HashSet<String>) {
        let mut entries = self.entries();
        entries.insert(uid, value);
        if entries.len() > live_count + SLACK {
            let live = live();
            entries.retain(|uid, _| live.contains(uid));
        }
    }

    pub fn remove(&self, uid: &str) -> Option<V> {
        self.entries().remove(uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_objects_are_listed_only_when_entries_outnumber_them() {
        let map = ByUid::default();
        for i in 0..5000 {
            map.insert(format!("u{i}"), (), 5000, || {
                panic!("5000 entries for 5000 live objects: no list needed")
            });
        }
        assert_eq!(map.entries().len(), 5000);
    }

    #[test]
    fn entries_of_deleted_objects_are_bounded() {
        let map = ByUid::default();
        for i in 0..=SLACK + 1 {
            map.insert(format!("u{i}"), i, 1, || HashSet::from(["u0".to_string()]));
        }
        assert!(map.entries().len() <= SLACK + 1, "{} entries", map.entries().len());
        assert_eq!(map.remove("u0"), Some(0), "a live object's entry stays");
    }
}
