//! The idempotency key of the request being handled, between the HTTP layer
//! that reads it (`http::idempotency`) and [`Db::call`](super::Db::call),
//! which makes the request's first API call idempotent with it: the key
//! travels in a task-local, so a handler opts in without passing anything.
//!
//! The call then becomes, still in one statement (sql/functions/15_idempotency.sql):
//! claim the key, replay a stored answer or make the call and store its answer.

use std::{cell::RefCell, future::Future};

/// What the HTTP layer hands the database call.
#[derive(Clone, Debug)]
pub struct Key {
    /// The `Idempotency-Key` header, checked (1–255 printable ASCII).
    pub key: String,
    /// SHA-256 of the method, the path with its query and the raw body.
    pub fingerprint: Vec<u8>,
    /// The status the answer is stored with: the operation's success status.
    pub status: i32,
}

/// Where the request's key stands.
#[derive(Debug)]
pub enum State {
    /// Not used yet: the next `Db::call` takes it.
    Pending(Key),
    /// Taken by a call (which may have failed).
    Claimed,
    /// The call replayed a stored answer with this status.
    Replayed(u16),
}

tokio::task_local! {
    static REQUEST: RefCell<State>;
}

/// Runs `handler` with `key` pending, and says what became of the key.
pub async fn scope<F: Future>(key: Key, handler: F) -> (F::Output, State) {
    REQUEST
        .scope(RefCell::new(State::Pending(key)), async move {
            let output = handler.await;
            let state = REQUEST.with(|s| s.replace(State::Claimed));
            (output, state)
        })
        .await
}

/// The pending key, if this task has one; only the first call gets it.
pub(crate) fn claim() -> Option<Key> {
    REQUEST
        .try_with(|s| {
            let mut state = s.borrow_mut();
            match std::mem::replace(&mut *state, State::Claimed) {
                State::Pending(key) => Some(key),
                other => {
                    *state = other;
                    None
                }
            }
        })
        .ok()
        .flatten()
}

/// The claimed call replayed an answer stored with `status`.
pub(crate) fn replayed(status: u16) {
    let _ = REQUEST.try_with(|s| *s.borrow_mut() = State::Replayed(status));
}
