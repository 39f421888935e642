//! WebRTC credentials without hitting Telnyx's account limits.
//!
//! One credential per username, reused while unexpired (a credential mints any number of tokens).
//! Every credential this worker creates is named after the username, tagged
//! `dialtone:<namespace>/<service>` and given an `expires_at`. Concurrent requests for one username
//! wait for a single creation. After a restart (or on another replica) an unexpired credential with
//! the same tag and name is adopted rather than duplicated. At most `MAX_CREDENTIALS` are held: the
//! least recently used is deleted to make room. A background sweep deletes the tag's expired
//! credentials and duplicates per username.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

use crate::metrics::Metrics;
use crate::telnyx::{Credential, NewCredential, Telnyx, UpstreamError};

/// A credential is reused only while it stays valid at least this much longer.
const REUSE_MARGIN: SignedDuration = SignedDuration::from_mins(5);
/// A token lives 24 h, or until its credential expires.
const TOKEN_LIFETIME: SignedDuration = SignedDuration::from_hours(24);

/// What a client gets: a credential and a fresh login token for it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub credential_id: String,
    pub sip_username: String,
    pub token: String,
    /// When the token stops working.
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone)]
struct Held {
    id: String,
    sip_username: String,
    expires_at: Timestamp,
    last_used: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Held>>>;

pub struct Credentials {
    telnyx: Arc<Telnyx>,
    connection_id: String,
    tag: String,
    ttl: Duration,
    max: usize,
    metrics: Metrics,
    slots: Mutex<HashMap<String, Slot>>,
    /// Evicted credentials whose deletion failed: the sweep tries again.
    doomed: Mutex<Vec<String>>,
}

/// What a sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    pub deleted: usize,
    pub kept: usize,
}

impl Credentials {
    pub fn new(
        telnyx: Arc<Telnyx>,
        connection_id: String,
        tag: String,
        ttl: Duration,
        max: usize,
        metrics: Metrics,
    ) -> Credentials {
        Credentials {
            telnyx,
            connection_id,
            tag,
            ttl,
            max: max.max(1),
            metrics,
            slots: Mutex::default(),
            doomed: Mutex::default(),
        }
    }

    /// A credential for `username` (reused, adopted or created) and a fresh token for it.
    pub async fn issue(&self, username: &str) -> Result<Issued, UpstreamError> {
        let slot = self.slot(username);
        let mut held = slot.lock().await; // one creation per username, however many ask at once
        let now = Timestamp::now();
        let usable = |h: &Held| h.expires_at > now + REUSE_MARGIN;
        let mut current = match held.take().filter(usable) {
            Some(h) => {
                self.metrics.credential("reused");
                h
            }
            None => self.adopt_or_create(username, now).await?,
        };
        let token = match self.telnyx.mint_token(&current.id).await {
            Ok(t) => t,
            // Deleted behind our back (by a sweep elsewhere, or by hand): start over once.
            Err(UpstreamError::Rejected { status: 404, .. }) => {
                current = self.create(username, now).await?;
                self.telnyx.mint_token(&current.id).await?
            }
            Err(e) => return Err(e),
        };
        current.last_used = Instant::now();
        let issued = Issued {
            credential_id: current.id.clone(),
            sip_username: current.sip_username.clone(),
            token,
            expires_at: (now + TOKEN_LIFETIME).min(current.expires_at),
        };
        *held = Some(current);
        drop(held);
        self.evict_beyond_max(username).await;
        Ok(issued)
    }

    /// Deletes the tag's expired credentials and duplicates, and retries failed evictions.
    pub async fn sweep(&self) -> Result<Sweep, UpstreamError> {
        let mut report = Sweep::default();
        let doomed: Vec<String> = self.doomed.lock().map(|mut d| std::mem::take(&mut *d)).unwrap_or_default();
        for id in doomed {
            self.delete(&id).await?;
            report.deleted += 1;
        }
        // Collect every page first: deleting while paging would shift the pages under us.
        let mut all = Vec::new();
        let mut page = 1;
        loop {
            let p = self.telnyx.list_credentials(&self.tag, None, false, page).await?;
            let last = p.data.is_empty()
                || p.meta.as_ref().and_then(|m| m.total_pages).is_none_or(|total| page >= total);
            all.extend(p.data);
            if last || page >= 1000 {
                break;
            }
            page += 1;
        }
        let now = Timestamp::now();
        let held = self.held_ids();
        let mut newest: HashMap<String, (Timestamp, String)> = HashMap::new();
        let mut doomed = Vec::new();
        for c in &all {
            let expires = c.expires_at.as_deref().and_then(parse_time);
            if c.expired == Some(true) || expires.is_some_and(|t| t <= now) {
                doomed.push(c.id.clone());
                continue;
            }
            // One credential per username: keep the one we hold, else the longest-lived.
            let name = c.name.clone().unwrap_or_default();
            let rank = if held.contains(&c.id) { Timestamp::MAX } else { expires.unwrap_or(Timestamp::MIN) };
            match newest.get(&name) {
                Some((best, _)) if *best >= rank => doomed.push(c.id.clone()),
                Some((_, loser)) => {
                    doomed.push(loser.clone());
                    newest.insert(name, (rank, c.id.clone()));
                }
                None => {
                    newest.insert(name, (rank, c.id.clone()));
                }
            }
        }
        for id in doomed.iter().filter(|id| !held.contains(*id)) {
            self.delete(id).await?;
            report.deleted += 1;
        }
        report.kept = all.len() - doomed.len();
        Ok(report)
    }

    /// Credentials held right now.
    pub fn live(&self) -> usize {
        self.held_ids().len()
    }

    fn slot(&self, username: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(username.to_string()).or_default().clone()
    }

    fn held_ids(&self) -> Vec<String> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.values().filter_map(|s| s.try_lock().ok()?.as_ref().map(|h| h.id.clone())).collect()
    }

    async fn adopt_or_create(&self, username: &str, now: Timestamp) -> Result<Held, UpstreamError> {
        let page = self.telnyx.list_credentials(&self.tag, Some(username), false, 1).await?;
        let adoptable = page
            .data
            .into_iter()
            .filter(|c| c.expired != Some(true) && c.name.as_deref() == Some(username))
            .filter_map(|c| Some((c.expires_at.as_deref().and_then(parse_time)?, c)))
            .filter(|(t, _)| *t > now + REUSE_MARGIN)
            .max_by_key(|(t, _)| *t);
        match adoptable {
            Some((expires_at, c)) => {
                self.metrics.credential("reused");
                Ok(held(c, expires_at))
            }
            None => self.create(username, now).await,
        }
    }

    async fn create(&self, username: &str, now: Timestamp) -> Result<Held, UpstreamError> {
        let expires_at = now + SignedDuration::try_from(self.ttl).unwrap_or(TOKEN_LIFETIME);
        let c = self
            .telnyx
            .create_credential(&NewCredential {
                connection_id: &self.connection_id,
                name: username,
                tag: &self.tag,
                expires_at: expires_at.to_string(),
            })
            .await?;
        self.metrics.credential("created");
        // Trust our own expiry if Telnyx echoes none (or one we can't read).
        let expires = c.expires_at.as_deref().and_then(parse_time).unwrap_or(expires_at);
        Ok(held(c, expires))
    }

    /// Deletes the least recently used credentials while more than `max` are held.
    async fn evict_beyond_max(&self, keep: &str) {
        loop {
            let victim = {
                let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                let held: Vec<(String, Instant)> = slots
                    .iter()
                    .filter_map(|(u, s)| Some((u.clone(), s.try_lock().ok()?.as_ref()?.last_used)))
                    .collect();
                if held.len() <= self.max {
                    None
                } else {
                    held.into_iter().filter(|(u, _)| u != keep).min_by_key(|(_, t)| *t).map(|(u, _)| u)
                }
            };
            let Some(user) = victim else { break };
            let slot = self.slot(&user);
            let taken = slot.lock().await.take();
            if let Ok(mut slots) = self.slots.lock() {
                slots.remove(&user);
            }
            if let Some(h) = taken {
                if self.delete(&h.id).await.is_err() {
                    if let Ok(mut d) = self.doomed.lock() {
                        d.push(h.id);
                    }
                }
            }
        }
        self.metrics.live_credentials.set(i64::try_from(self.live()).unwrap_or(i64::MAX));
    }

    async fn delete(&self, id: &str) -> Result<(), UpstreamError> {
        self.telnyx.delete_credential(id).await?;
        self.metrics.credential("deleted");
        Ok(())
    }
}

fn held(c: Credential, expires_at: Timestamp) -> Held {
    Held {
        sip_username: c.sip_username.clone().unwrap_or_default(),
        id: c.id,
        expires_at,
        last_used: Instant::now(),
    }
}

/// Telnyx times: RFC 3339, or (as in its examples) a civil time without offset, meaning UTC.
pub fn parse_time(s: &str) -> Option<Timestamp> {
    s.parse::<Timestamp>().ok().or_else(|| {
        s.parse::<jiff::civil::DateTime>()
            .ok()
            .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
            .map(|z| z.timestamp())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telnyx_time_formats() {
        let z: Timestamp = "2042-06-18T21:32:38Z".parse().unwrap();
        assert_eq!(parse_time("2042-06-18T21:32:38Z"), Some(z));
        assert_eq!(parse_time("2042-06-18T21:32:38"), Some(z));
        assert_eq!(parse_time("2042-06-18T21:32:38.000Z").map(|t| t.as_second()), Some(z.as_second()));
        assert_eq!(parse_time("soon"), None);
    }
}
