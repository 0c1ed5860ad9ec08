//! Group commit: many writes, one flush.
//!
//! Actions that must wait until the log is on disk (send a receipt, report a
//! send done, show a message) are queued here. One flush runs at a time on a
//! blocking thread; every action queued while it runs waits for the next
//! flush, which then covers all of them. Under load the number of flushes
//! grows with time, not with messages.

use std::mem;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::store::{Store, StoreError};

/// Most actions held for one flush. Beyond it, the event loop stops taking new
/// work until the flush completes (backpressure instead of unbounded memory).
pub(crate) const MAX_WAITING: usize = 4096;

/// Received hallway posts are shown as soon as they are verified and logged
/// in memory, and a flush covering them is queued within this delay (see
/// [`LazyFlush`]); so are the delivery states of sent DMs and the other
/// writes nothing waits for. Flushing before showing each one costs an
/// fsync per post per node: on a 50-node single-machine mesh that queued
/// posts for up to a second (docs/PERFORMANCE.md). A post lost to a crash
/// in this window was shown but is not in the log after restart.
pub(crate) const POST_FLUSH_DELAY: Duration = Duration::from_millis(200);

/// When the writes nothing waits for (received posts and operations,
/// delivery states) are flushed: a flush is due [`POST_FLUSH_DELAY`] after
/// the first of them since the last such flush was queued, however many
/// follow, so a steady stream of posts cannot put it off. Plain state with
/// the time passed in: the event loop says when it logged such a write
/// ([`LazyFlush::logged`]), sleeps until [`LazyFlush::deadline`], queues
/// the flush [`LazyFlush::take_due`] asks for behind any running one
/// ([`GroupCommit`]) and reports its outcome ([`LazyFlush::flushed`]).
#[derive(Debug, Default)]
pub(crate) struct LazyFlush {
    /// When the oldest write that no queued flush covers was logged.
    oldest: Option<Instant>,
    /// Flushes queued and not yet completed.
    queued: usize,
}

impl LazyFlush {
    /// A write that waits for no flush was logged at `now`.
    pub(crate) fn logged(&mut self, now: Instant) {
        self.oldest.get_or_insert(now);
    }

    /// When the next flush is due, if anything waits for one.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.oldest.map(|first| first + POST_FLUSH_DELAY)
    }

    /// Whether a flush is due at `now`. When it is, the caller queues it,
    /// and it covers every write logged so far.
    pub(crate) fn take_due(&mut self, now: Instant) -> bool {
        match self.deadline() {
            Some(due) if due <= now => {
                self.oldest = None;
                self.queued += 1;
                true
            }
            _ => false,
        }
    }

    /// A flush [`LazyFlush::take_due`] asked for completed at `now`. One
    /// that failed made nothing durable: what it covered is due again
    /// [`POST_FLUSH_DELAY`] from now, so it reaches disk with the first flush
    /// that succeeds even if the node logs nothing more.
    pub(crate) fn flushed(&mut self, ok: bool, now: Instant) {
        debug_assert!(self.queued > 0, "a flush completed that was never queued");
        self.queued = self.queued.saturating_sub(1);
        if !ok {
            self.logged(now);
        }
    }

    /// Whether something logged is not known to be on disk: it waits for
    /// its flush, or the flush queued for it has not completed.
    pub(crate) fn pending(&self) -> bool {
        self.oldest.is_some() || self.queued > 0
    }
}

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
    use proptest::prelude::*;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_write_is_due_for_a_flush_after_the_delay_however_many_follow() {
        let t0 = Instant::now();
        let mut lazy = LazyFlush::default();
        assert!(
            !lazy.pending() && lazy.deadline().is_none(),
            "nothing logged, nothing due"
        );
        assert!(!lazy.take_due(t0 + ms(10_000)));

        lazy.logged(t0);
        assert_eq!(lazy.deadline(), Some(t0 + POST_FLUSH_DELAY));
        // Writes keep coming: the deadline is the first one's.
        for n in (10..POST_FLUSH_DELAY.as_millis() as u64).step_by(10) {
            lazy.logged(t0 + ms(n));
            assert!(!lazy.take_due(t0 + ms(n)), "not due at {n} ms");
        }
        assert_eq!(lazy.deadline(), Some(t0 + POST_FLUSH_DELAY));
        assert!(lazy.take_due(t0 + POST_FLUSH_DELAY), "due at the delay");
        assert!(lazy.pending(), "queued, not yet on disk");
        assert!(
            lazy.deadline().is_none() && !lazy.take_due(t0 + ms(10_000)),
            "one flush covers them all"
        );
        lazy.flushed(true, t0 + POST_FLUSH_DELAY + ms(5));
        assert!(!lazy.pending(), "on disk");

        // A write logged while a flush is queued waits for one of its own.
        let t1 = t0 + ms(1_000);
        lazy.logged(t1);
        assert!(lazy.take_due(t1 + POST_FLUSH_DELAY));
        lazy.logged(t1 + POST_FLUSH_DELAY + ms(1));
        lazy.flushed(true, t1 + POST_FLUSH_DELAY + ms(2));
        assert!(lazy.pending(), "the later write is not covered");
        assert_eq!(lazy.deadline(), Some(t1 + POST_FLUSH_DELAY + ms(1) + POST_FLUSH_DELAY));
    }

    #[test]
    fn what_a_failed_flush_covered_is_due_again() {
        let t0 = Instant::now();
        let mut lazy = LazyFlush::default();
        lazy.logged(t0);
        assert!(lazy.take_due(t0 + POST_FLUSH_DELAY));
        let failed_at = t0 + POST_FLUSH_DELAY + ms(3);
        lazy.flushed(false, failed_at);
        assert!(lazy.pending(), "nothing became durable");
        assert_eq!(lazy.deadline(), Some(failed_at + POST_FLUSH_DELAY));
        assert!(lazy.take_due(failed_at + POST_FLUSH_DELAY));
        lazy.flushed(true, failed_at + POST_FLUSH_DELAY);
        assert!(!lazy.pending());
    }

    proptest! {
        /// However writes fall and however long flushes take, a loop that
        /// wakes at each deadline queues a flush covering every write within
        /// [`POST_FLUSH_DELAY`] of it, and nothing is said to be pending
        /// exactly when every write is covered by a flush that completed.
        #[test]
        fn every_write_is_covered_by_a_flush_queued_within_the_delay(
            gaps in prop::collection::vec(0u64..400, 1..60),
            flush_ms in 0u64..500,
        ) {
            let mut lazy = LazyFlush::default();
            let mut now = Instant::now();
            // Writes no queued flush covers yet, and the queued flushes:
            // when each completes and how many writes it covers.
            let mut uncovered: Vec<Instant> = Vec::new();
            let mut queued: std::collections::VecDeque<(Instant, usize)> = Default::default();
            let (mut written, mut durable) = (0, 0);
            for gap in gaps.into_iter().map(Some).chain([None]) {
                let next_write = gap.map(|gap| now + ms(gap));
                let until = next_write.unwrap_or(now + ms(3_600_000));
                // Before the next write, in the order of time: the loop wakes
                // at the deadline, and flushes complete.
                loop {
                    let wake = lazy.deadline().filter(|at| *at <= until);
                    let done = queued.front().map(|(at, _)| *at).filter(|at| *at <= until);
                    match (wake, done) {
                        (Some(at), done) if done.is_none_or(|done| at <= done) => {
                            prop_assert!(!lazy.take_due(at - Duration::from_nanos(1)), "not due early");
                            prop_assert!(lazy.take_due(at));
                            let covered = uncovered.len();
                            for write in uncovered.drain(..) {
                                prop_assert!(at - write <= POST_FLUSH_DELAY, "a write waited {:?}", at - write);
                            }
                            queued.push_back((at + ms(flush_ms), covered));
                        }
                        (_, Some(at)) => {
                            let (_, covered) = queued.pop_front().expect("a flush is queued");
                            durable += covered;
                            lazy.flushed(true, at);
                        }
                        _ => break,
                    }
                    prop_assert_eq!(lazy.pending(), durable < written);
                }
                let Some(at) = next_write else { break };
                now = at;
                lazy.logged(now);
                uncovered.push(now);
                written += 1;
                prop_assert!(lazy.pending());
            }
            prop_assert_eq!(durable, written, "every write reached disk");
            prop_assert!(!lazy.pending());
        }
    }

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
