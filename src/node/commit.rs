//! Group commit: many writes, one flush.
//!
//! Actions that must wait until the log is on disk (send a receipt, report a
//! send done, show a message) are queued here. One flush runs at a time on a
//! blocking thread; every action queued while it runs waits for the next
//! flush, which then covers all of them. Under load the number of flushes
//! grows with time, not with messages.

use std::mem;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::store::{Store, StoreError};

/// Most actions held for one flush. Beyond it, the event loop stops taking new
/// work until the flush completes (backpressure instead of unbounded memory).
pub(crate) const MAX_WAITING: usize = 4096;

/// A flush running on a blocking thread.
type Flush = JoinHandle<Result<(), StoreError>>;

pub(crate) struct GroupCommit<A> {
    store: Store,
    /// Actions one flush may cover: unbounded (group commit), or 1 to
    /// measure what one flush per message costs.
    batch: usize,
    waiting: Vec<A>,
    in_flight: Option<(Flush, Vec<A>)>,
}

impl<A> GroupCommit<A> {
    pub(crate) fn new(store: Store, grouped: bool) -> Self {
        Self {
            store,
            batch: if grouped { usize::MAX } else { 1 },
            waiting: Vec::new(),
            in_flight: None,
        }
    }

    /// Queues an action until the next flush completes, starting one if none
    /// is running.
    pub(crate) fn push(&mut self, action: A) {
        self.waiting.push(action);
        self.start();
    }

    /// Whether the queue is full; the caller should wait for [`Self::next`].
    pub(crate) fn is_full(&self) -> bool {
        self.waiting.len() >= MAX_WAITING
    }

    /// Whether nothing is waiting or in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.in_flight.is_none()
    }

    fn start(&mut self) {
        if self.in_flight.is_some() || self.waiting.is_empty() {
            return;
        }
        let store = self.store.clone();
        let task = tokio::task::spawn_blocking(move || store.flush());
        let batch = if self.waiting.len() <= self.batch {
            mem::take(&mut self.waiting)
        } else {
            self.waiting.drain(..self.batch).collect()
        };
        self.in_flight = Some((task, batch));
    }

    /// Waits for the running flush and returns its outcome with the actions
    /// it covered. Pending forever while no flush runs. Cancel safe.
    pub(crate) async fn next(&mut self) -> (Result<(), Arc<StoreError>>, Vec<A>) {
        let Some((task, _)) = self.in_flight.as_mut() else {
            return std::future::pending().await;
        };
        let outcome = match task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Arc::new(e)),
            // The flush panicked (or the runtime is shutting down): the log
            // is not known to be durable, as after any failed flush.
            Err(e) => Err(Arc::new(StoreError::Engine(format!("flush task failed: {e}")))),
        };
        let (_, actions) = self.in_flight.take().expect("a flush is in flight");
        self.start();
        (outcome, actions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_actions_queued_during_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("log")).unwrap();
        let mut commit = GroupCommit::new(store, true);
        commit.push(1);
        commit.push(2);
        commit.push(3);
        let (r, first) = commit.next().await;
        r.unwrap();
        assert_eq!(first, vec![1]);
        let (r, second) = commit.next().await;
        r.unwrap();
        assert_eq!(second, vec![2, 3], "actions queued during a flush share the next one");
        assert!(commit.is_idle());
    }

    #[tokio::test]
    async fn the_queue_behind_a_flush_is_full_at_its_bound_and_drains_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut commit = GroupCommit::new(Store::open(&dir.path().join("log")).unwrap(), true);
        commit.push(0);
        // The first action went with the flush now running; the rest wait.
        for i in 1..MAX_WAITING {
            commit.push(i);
            assert!(!commit.is_full(), "{i} waiting");
        }
        commit.push(MAX_WAITING);
        assert!(commit.is_full(), "the event loop takes no more work now");
        let (r, first) = commit.next().await;
        r.unwrap();
        assert_eq!(first, vec![0]);
        assert!(!commit.is_full(), "the next flush took every waiting action");
        let (r, second) = commit.next().await;
        r.unwrap();
        assert_eq!(second.len(), MAX_WAITING, "one flush covers them all");
        assert!(commit.is_idle());
    }

    #[tokio::test]
    async fn without_grouping_each_flush_covers_one_action() {
        let dir = tempfile::tempdir().unwrap();
        let mut commit = GroupCommit::new(Store::open(&dir.path().join("log")).unwrap(), false);
        for i in 1..=3 {
            commit.push(i);
        }
        for i in 1..=3 {
            assert_eq!(commit.next().await.1, vec![i]);
        }
        assert!(commit.is_idle());
    }
}
