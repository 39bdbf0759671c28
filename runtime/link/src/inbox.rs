//! A bounded queue that keeps the newest: what arrives from the network
//! (telemetry) goes into a queue of fixed capacity, and when the reader
//! falls behind, or never reads, the oldest item is dropped and counted.
//! Nothing a peer sends can grow this process's memory (a reader that never
//! read an unbounded channel held ~350 MB a day of telemetry at 20 Hz).

use std::collections::VecDeque;
use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

struct Ring<T> {
    items: VecDeque<T>,
    capacity: usize,
    dropped: u64,
    /// The sending side is gone: nothing more will come.
    closed: bool,
}

struct Shared<T> {
    ring: Mutex<Ring<T>>,
    ready: Condvar,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Ring<T>> {
        // A panicking pusher leaves a queue that is still a queue.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The writing end (a subscriber callback).
pub struct Pusher<T>(Arc<Shared<T>>);

/// The reading end.
pub struct Inbox<T>(Arc<Shared<T>>);

/// A queue of `capacity` items (at least 1), allocated once.
pub fn bounded<T>(capacity: usize) -> (Pusher<T>, Inbox<T>) {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        ring: Mutex::new(Ring {
            items: VecDeque::with_capacity(capacity),
            capacity,
            dropped: 0,
            closed: false,
        }),
        ready: Condvar::new(),
    });
    (Pusher(shared.clone()), Inbox(shared))
}

impl<T> Pusher<T> {
    /// Queues `item`, dropping (and counting) the oldest when full. Never
    /// blocks on the reader and never allocates.
    pub fn push(&self, item: T) {
        let mut r = self.0.lock();
        if r.items.len() == r.capacity {
            r.items.pop_front();
            r.dropped = r.dropped.saturating_add(1);
        }
        r.items.push_back(item);
        drop(r);
        self.0.ready.notify_one();
    }
}

impl<T> Drop for Pusher<T> {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.ready.notify_all();
    }
}

impl<T> Inbox<T> {
    /// The oldest item queued, waiting up to `timeout` for one.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        let mut r = self.0.lock();
        loop {
            if let Some(item) = r.items.pop_front() {
                return Ok(item);
            }
            if r.closed {
                return Err(RecvTimeoutError::Disconnected);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvTimeoutError::Timeout);
            }
            r = self
                .0
                .ready
                .wait_timeout(r, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The oldest item queued, if any.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let mut r = self.0.lock();
        match r.items.pop_front() {
            Some(item) => Ok(item),
            None if r.closed => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Everything queued now, oldest first.
    pub fn try_iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.try_recv().ok())
    }

    /// Items dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.0.lock().dropped
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.0.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most items it holds.
    pub fn capacity(&self) -> usize {
        self.0.lock().capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_keeps_the_newest_and_counts_what_it_dropped() {
        let (tx, rx) = bounded(4);
        for k in 0..1000 {
            tx.push(k);
        }
        assert_eq!((rx.len(), rx.dropped()), (4, 996));
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [996, 997, 998, 999]);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(5)),
            Err(RecvTimeoutError::Timeout)
        );
    }

    #[test]
    fn a_reader_waits_for_the_next_item_and_hears_the_end() {
        let (tx, rx) = bounded(2);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.push(7u8);
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(7));
        t.join().unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(RecvTimeoutError::Disconnected)
        );
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }
}
