//! Event ids already applied, so a delivery seen twice (Telnyx retries, a replayed capture) is
//! applied once. Bounded in count and age: an id older than twice the timestamp tolerance can't
//! come back, because its signed timestamp would be refused as stale.

use std::collections::{HashSet, VecDeque};

use super::verify::TOLERANCE;

/// The most ids kept (a worker hears a few events per call).
pub const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct Seen {
    ids: HashSet<String>,
    /// (when seen, Unix seconds; id), oldest first.
    order: VecDeque<(u64, String)>,
}

impl Seen {
    /// True the first time `id` is offered (then remembered), false for a repeat.
    pub fn first_time(&mut self, id: &str, now: u64) -> bool {
        self.forget_before(now.saturating_sub(2 * TOLERANCE.as_secs()));
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() >= CAPACITY {
            if let Some((_, old)) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        self.ids.insert(id.to_string());
        self.order.push_back((now, id.to_string()));
        true
    }

    fn forget_before(&mut self, cutoff: u64) {
        while self.order.front().is_some_and(|(at, _)| *at < cutoff) {
            if let Some((_, old)) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_is_caught_until_it_could_no_longer_pass_the_timestamp_check() {
        let mut seen = Seen::default();
        assert!(seen.first_time("a", 1000));
        assert!(!seen.first_time("a", 1000));
        assert!(!seen.first_time("a", 1000 + 600));
        assert!(seen.first_time("b", 1000 + 601), "a is forgotten now");
        assert_eq!(seen.len(), 1);
        assert!(seen.first_time("a", 1000 + 601));
    }

    #[test]
    fn it_never_holds_more_than_its_capacity() {
        let mut seen = Seen::default();
        for i in 0..CAPACITY + 10 {
            assert!(seen.first_time(&i.to_string(), 5));
        }
        assert_eq!(seen.len(), CAPACITY);
        assert!(seen.first_time("0", 5), "the oldest went first");
        assert!(!seen.first_time(&(CAPACITY + 9).to_string(), 5));
    }
}
