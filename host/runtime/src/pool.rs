//! The instances of one backend: up to a fixed number, each its own sandbox, started when a
//! call finds none idle, each running one call at a time. Calls to one backend run
//! concurrently on different instances; a call that traps, times out or is abandoned discards
//! only its own instance.

use std::sync::Mutex;

use metrics::Gauge;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Idle instances of type `I` and the right to run at most `size` at once.
pub(crate) struct Pool<I> {
    size: usize,
    permits: Semaphore,
    idle: Mutex<Vec<I>>,
    /// Calls holding an instance, for the metrics (a no-op unless [`Pool::observed`]).
    in_use_gauge: Gauge,
}

/// One call's use of the pool: an idle instance if there was one (else the call starts one).
/// An instance comes back only through [`Checkout::give_back`]; one that is not given back (a
/// trap, a timeout, a caller that gave up half-way) is discarded, its state unknown.
pub(crate) struct Checkout<'p, I> {
    pool: &'p Pool<I>,
    /// Held until the instance is back: at most `size` instances exist at once.
    _permit: SemaphorePermit<'p>,
    /// The idle instance the call may run on.
    pub(crate) instance: Option<I>,
}

impl<I> Pool<I> {
    /// A pool of at most `size` instances (at least one), starting with `first` idle.
    pub(crate) fn new(size: usize, first: I) -> Pool<I> {
        let size = size.max(1);
        Pool {
            size,
            permits: Semaphore::new(size),
            idle: Mutex::new(vec![first]),
            in_use_gauge: Gauge::noop(),
        }
    }

    /// The pool, reporting its calls holding an instance on `in_use`.
    pub(crate) fn observed(mut self, in_use: Gauge) -> Pool<I> {
        self.in_use_gauge = in_use;
        self
    }

    /// How many instances may run at once.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// How many calls hold an instance right now.
    pub(crate) fn in_use(&self) -> usize {
        self.size - self.permits.available_permits()
    }

    /// Waits until fewer than `size` calls run, then takes an idle instance, if any.
    pub(crate) async fn checkout(&self) -> Checkout<'_, I> {
        // Never closed, so acquiring only waits.
        let permit = match self.permits.acquire().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("the pool's semaphore is never closed"),
        };
        self.in_use_gauge.increment(1.0);
        Checkout {
            pool: self,
            _permit: permit,
            instance: self.idle().pop(),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<I>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<I> Checkout<'_, I> {
    /// The call ended normally: `instance` waits idle for the next call. The permit is
    /// released after it is back, when `self` drops.
    pub(crate) fn give_back(self, instance: I) {
        self.pool.idle().push(instance);
    }
}

impl<I> Drop for Checkout<'_, I> {
    fn drop(&mut self) {
        self.pool.in_use_gauge.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn instances_are_reused_and_discarded_unless_finished() {
        let pool = Pool::new(2, 1);
        let mut a = pool.checkout().await;
        let first = a.instance.take();
        assert_eq!(first, Some(1));
        let b = pool.checkout().await;
        assert_eq!(b.instance, None, "the second call starts its own instance");
        a.give_back(first.unwrap());
        drop(b); // not finished: its (absent) instance is not given back
        let c = pool.checkout().await;
        assert_eq!(c.instance, Some(1));
        drop(c); // abandoned: instance 1 is discarded
        assert_eq!(pool.checkout().await.instance, None);
    }

    #[tokio::test]
    async fn no_more_than_size_calls_run_at_once() {
        let pool = Pool::new(1, ());
        let first = pool.checkout().await;
        // A zero timeout polls the checkout once: it must be waiting.
        let waiting = tokio::time::timeout(std::time::Duration::ZERO, pool.checkout());
        assert!(waiting.await.is_err(), "a second call ran beside the first");
        drop(first);
        let _second = pool.checkout().await;
    }
}
