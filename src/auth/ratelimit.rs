//! Fixed-window attempt counters for login and registration, per client
//! address and per email. In memory: each server instance limits on its own.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Where a key stands in its window, for the `RateLimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window resets (at least 1).
    pub reset: u64,
}

impl Quota {
    /// The tighter of two quotas (fewer attempts left), which the headers show.
    pub fn tighter(self, other: Quota) -> Quota {
        if other.remaining < self.remaining {
            other
        } else {
            self
        }
    }
}

pub struct RateLimiter {
    limit: u32,
    window: Duration,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an attempt for `key`: `Ok` with what is left of the window, or
    /// `Err` when the key is over its limit.
    pub fn check(&self, key: &str) -> Result<Quota, Quota> {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() > 100_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let entry = windows.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        let left = self.window.saturating_sub(now.duration_since(entry.0));
        let quota = Quota {
            limit: self.limit,
            remaining: self.limit.saturating_sub(entry.1),
            reset: left.as_secs().max(1),
        };
        if entry.1 > self.limit {
            return Err(quota);
        }
        Ok(quota)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_its_limit_is_refused_until_the_window_ends() {
        let limiter = RateLimiter::new(2, Duration::from_millis(50));
        assert_eq!(limiter.check("a").map(|q| q.remaining), Ok(1));
        assert_eq!(
            limiter.check("a").map(|q| (q.limit, q.remaining)),
            Ok((2, 0))
        );
        assert_eq!(limiter.check("a").map_err(|q| q.remaining), Err(0));
        assert!(limiter.check("b").is_ok());
        std::thread::sleep(Duration::from_millis(60));
        assert!(limiter.check("a").is_ok());
    }
}
