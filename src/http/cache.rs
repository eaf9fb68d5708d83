//! The analytics cache: per organization, in memory, for `ANALYTICS_CACHE_TTL_SECS`.
//!
//! A hit must still be an authorized read, so the cache also remembers which
//! users it has seen the database accept as members of the organization (for
//! the same TTL). Writes through this server to an organization's deals (and
//! to its pipelines and stages, which the funnel lists) drop its entries at
//! once; membership changes drop its remembered members.
//!
//! Writes through other instances, or in `psql`, reach every instance through
//! the change feed's notifications ([`follow`]): a `minicrm_events`
//! notification for a `deal` or `pipeline` of an organization drops that
//! organization's reports, one for a `member` drops its remembered members
//! too, and a listener reconnect (notifications may have been lost) drops
//! everything. A notification is delivered at its transaction's commit, so
//! another instance's cache follows within the listener's latency (well
//! under a second), not the TTL.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use uuid::Uuid;

/// A report and its parameters: each combination is cached on its own.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Report {
    Summary {
        days: i32,
        pipeline: Option<Uuid>,
    },
    Funnel {
        pipeline: Option<Uuid>,
    },
    Velocity {
        pipeline: Option<Uuid>,
        days: i32,
        stuck_after_days: i32,
    },
    Forecast {
        pipeline: Option<Uuid>,
        months: i32,
    },
}

/// (organization, report) → (computed at, JSON).
type Reports = HashMap<(Uuid, Report), (Instant, Arc<str>)>;

#[derive(Default)]
struct Entries {
    reports: Reports,
    /// Bumped when every organization is invalidated at once (it is part of
    /// every organization's generation).
    epoch: u64,
    /// Bumped by every invalidation of an organization: a report computed
    /// before a write must not be stored after that write's invalidation.
    generations: HashMap<Uuid, u64>,
}

pub struct AnalyticsCache {
    ttl: Duration,
    entries: Mutex<Entries>,
    members: Mutex<HashMap<(Uuid, Uuid), Instant>>,
}

impl AnalyticsCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(Entries::default()),
            members: Mutex::new(HashMap::new()),
        }
    }

    fn fresh(&self, at: Instant) -> bool {
        at.elapsed() < self.ttl
    }

    /// The cached report, if `user` is a known member and the entry is fresh.
    pub fn get(&self, user: Uuid, org: Uuid, report: Report) -> Option<Arc<str>> {
        if self.ttl.is_zero() {
            return None;
        }
        let known = lock(&self.members)
            .get(&(user, org))
            .is_some_and(|at| self.fresh(*at));
        if !known {
            return None;
        }
        lock(&self.entries)
            .reports
            .get(&(org, report))
            .filter(|(at, _)| self.fresh(*at))
            .map(|(_, json)| json.clone())
    }

    /// Read before computing a report; hand it back to [`put`](Self::put).
    pub fn generation(&self, org: Uuid) -> u64 {
        let entries = lock(&self.entries);
        entries.epoch + entries.generations.get(&org).copied().unwrap_or(0)
    }

    /// Remembers a report the database produced for `user`, a member of `org`,
    /// unless the organization was invalidated since `generation` was read.
    pub fn put(&self, user: Uuid, org: Uuid, report: Report, json: Arc<str>, generation: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut members = lock(&self.members);
        let mut entries = lock(&self.entries);
        if entries.epoch + entries.generations.get(&org).copied().unwrap_or(0) != generation {
            return;
        }
        if members.len() > 100_000 {
            members.retain(|_, at| self.fresh(*at));
        }
        members.insert((user, org), now);
        if entries.reports.len() > 100_000 {
            entries.reports.retain(|_, (at, _)| self.fresh(*at));
        }
        entries.reports.insert((org, report), (now, json));
    }

    /// The organization's deals changed.
    pub fn invalidate_reports(&self, org: Uuid) {
        let mut entries = lock(&self.entries);
        *entries.generations.entry(org).or_insert(0) += 1;
        entries.reports.retain(|(o, _), _| *o != org);
    }

    /// Anything may have changed (the listener reconnected): drops every
    /// report and every remembered member.
    pub fn invalidate_all(&self) {
        lock(&self.members).clear();
        let mut entries = lock(&self.entries);
        entries.epoch += 1;
        entries.reports.clear();
    }

    /// The organization's membership changed (or it is gone).
    pub fn invalidate_members(&self, org: Uuid) {
        lock(&self.members).retain(|(_, o), _| *o != org);
        self.invalidate_reports(org);
    }
}

/// Drops entries as the change feed's notifications say (see the module
/// doc), until the listener stops.
pub fn follow(
    cache: Arc<AnalyticsCache>,
    listener: &crate::workers::listener::Listener,
) -> tokio::task::JoinHandle<()> {
    use crate::workers::listener::{Notice, EVENTS};
    use tokio::sync::broadcast::error::RecvError;
    let mut notices = listener.subscribe(EVENTS);
    tokio::spawn(async move {
        loop {
            match notices.recv().await {
                Ok(Notice::Notified(payload)) => {
                    // `<organization_id>:<resource_type>`; anything else is not ours.
                    let Some((org, resource)) = payload.split_once(':') else {
                        continue;
                    };
                    let Ok(org) = org.parse::<Uuid>() else {
                        continue;
                    };
                    match resource {
                        "deal" | "pipeline" => cache.invalidate_reports(org),
                        "member" => cache.invalidate_members(org),
                        _ => {}
                    }
                }
                Ok(Notice::Reset) | Err(RecvError::Lagged(_)) => cache.invalidate_all(),
                Err(RecvError::Closed) => break,
            }
        }
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_only_for_known_members_and_until_invalidated_or_expired() {
        let cache = AnalyticsCache::new(Duration::from_millis(80));
        let (user, other, org) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let r = Report::Summary {
            days: 30,
            pipeline: None,
        };
        assert!(cache.get(user, org, r).is_none());
        cache.put(user, org, r, Arc::from("{}"), cache.generation(org));
        assert_eq!(cache.get(user, org, r).as_deref(), Some("{}"));
        assert!(cache.get(other, org, r).is_none());
        let other_days = Report::Summary {
            days: 7,
            pipeline: None,
        };
        assert!(cache.get(user, org, other_days).is_none());
        let other_pipeline = Report::Summary {
            days: 30,
            pipeline: Some(Uuid::new_v4()),
        };
        assert!(cache.get(user, org, other_pipeline).is_none());
        cache.invalidate_reports(org);
        assert!(cache.get(user, org, r).is_none());
        cache.put(user, org, r, Arc::from("{}"), cache.generation(org));
        cache.invalidate_members(org);
        assert!(cache.get(user, org, r).is_none());
        cache.put(user, org, r, Arc::from("{}"), cache.generation(org));
        std::thread::sleep(Duration::from_millis(100));
        assert!(cache.get(user, org, r).is_none());
    }

    #[test]
    fn invalidating_everything_drops_every_organization_and_pending_report() {
        let cache = AnalyticsCache::new(Duration::from_secs(30));
        let (user, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let r = Report::Funnel { pipeline: None };
        cache.put(user, a, r, Arc::from("a"), cache.generation(a));
        let before = cache.generation(b);
        cache.invalidate_all();
        assert!(cache.get(user, a, r).is_none());
        cache.put(user, b, r, Arc::from("stale"), before);
        cache.put(user, a, r, Arc::from("fresh"), cache.generation(a));
        assert!(cache.get(user, b, r).is_none());
        assert_eq!(cache.get(user, a, r).as_deref(), Some("fresh"));
    }

    #[test]
    fn a_report_computed_before_an_invalidation_is_not_stored() {
        let cache = AnalyticsCache::new(Duration::from_secs(30));
        let (user, org) = (Uuid::new_v4(), Uuid::new_v4());
        let r = Report::Funnel { pipeline: None };
        let before = cache.generation(org);
        cache.invalidate_reports(org); // a write commits while the report is computed
        cache.put(user, org, r, Arc::from("stale"), before);
        assert!(cache.get(user, org, r).is_none());
        cache.put(user, org, r, Arc::from("fresh"), cache.generation(org));
        assert_eq!(cache.get(user, org, r).as_deref(), Some("fresh"));
    }
}
