//! The maintenance worker: every `MAINTENANCE_INTERVAL_SECS` (default 5
//! minutes, each pause jittered by ±20 % so that several servers spread their
//! rounds), it calls `private.run_maintenance()` (sql/functions/95_maintenance.sql),
//! which deletes what has expired (idempotency keys, records in the trash for
//! longer than `TRASH_RETENTION_DAYS`, events older than
//! `EVENT_RETENTION_DAYS`). Rounds are cheap
//! when there is nothing to delete. Any number of servers may run it at
//! once: each step is a plain `DELETE … WHERE expires_at < now()`, and what
//! has expired already behaves as absent, so a late or failed round changes
//! nothing a client sees.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::{db::Db, workers::Shutdown};

/// Starts the worker. It stops when `shutdown` turns true (or its sender is
/// dropped), after the round in progress, if any.
pub fn spawn(
    db: Db,
    interval: Duration,
    trash_retention_days: u32,
    event_retention_days: u32,
    mut shutdown: Shutdown,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(jittered(interval)) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
            // The trash and events steps delete one batch a round: while
            // they delete something, go on at once (a bounded number of
            // times).
            for _ in 0..FULL_TRASH_ROUNDS {
                let steps = run_once(&db, trash_retention_days, event_retention_days).await;
                if !trash_erased_some(steps.as_deref()) {
                    break;
                }
            }
        }
        tracing::debug!("maintenance worker stopped");
    })
}

/// One round: every step's count is logged (INFO when it deleted rows); an
/// error (the database is down, say) is a warning, and the next round tries
/// again.
pub async fn run_once(
    db: &Db,
    trash_retention_days: u32,
    event_retention_days: u32,
) -> Option<Vec<(String, i64)>> {
    match db
        .run_maintenance(trash_retention_days, event_retention_days)
        .await
    {
        Ok(steps) => {
            for (step, deleted) in &steps {
                if *deleted > 0 {
                    tracing::info!(step = %step, deleted, "maintenance");
                } else {
                    tracing::debug!(step = %step, deleted, "maintenance");
                }
            }
            Some(steps)
        }
        Err(e) => {
            let e = crate::http::problem::AppError::from(e);
            tracing::warn!(error = ?e, "maintenance round failed; trying again next round");
            None
        }
    }
}

/// How many rounds in a row may follow a round whose trash, events or
/// webhook deliveries step deleted something (each deletes one batch a round; the round after the
/// last partial batch finds nothing and ends the run).
const FULL_TRASH_ROUNDS: usize = 50;

fn trash_erased_some(steps: Option<&[(String, i64)]>) -> bool {
    steps.is_some_and(|steps| {
        steps.iter().any(|(step, n)| {
            (step == "trash" || step == "events" || step == "webhook_deliveries") && *n > 0
        })
    })
}

/// `interval` ± 20 %, from the random bits of a v4 UUID (no extra crate).
fn jittered(interval: Duration) -> Duration {
    let random = (uuid::Uuid::new_v4().as_u128() & 0xffff) as f64 / 65535.0;
    interval.mul_f64(0.8 + 0.4 * random)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_stay_within_a_fifth_of_the_interval() {
        let interval = Duration::from_secs(300);
        for _ in 0..1000 {
            let pause = jittered(interval);
            assert!(pause >= Duration::from_secs(240) && pause <= Duration::from_secs(360));
        }
    }
}
