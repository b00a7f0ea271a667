//! What one instance may grow to, and the memory budget the instances of one backend share:
//! each instance is capped at the backend's `memory`, and all of them together at its
//! `memory_total`, so a pool cannot multiply what the operator granted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

use crate::grants::Grants;

/// Linear memory the instances of one backend may hold together.
pub(crate) struct MemoryBudget {
    total: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    pub(crate) fn new(total: usize) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            total,
            used: AtomicUsize::new(0),
        })
    }

    /// Takes `bytes` from the budget if they are left.
    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|sum| *sum <= self.total)
            })
            .is_ok()
    }

    /// The bytes the instances hold now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// What one of `instances` idle instances may keep: an equal share of the total.
    pub(crate) fn share(&self, instances: usize) -> usize {
        self.total / instances.max(1)
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// The limits of one instance's store.
pub(crate) struct Limits {
    own: StoreLimits,
    shared: Option<Arc<MemoryBudget>>,
    /// What this instance holds of the shared budget, given back when the store goes.
    held: usize,
}

impl Limits {
    /// The linear memory the instance holds, in bytes.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// The limits of an instance under `grants`, drawing on `shared` when its backend has one.
    pub(crate) fn new(grants: &Grants, shared: Option<Arc<MemoryBudget>>) -> Limits {
        let own = StoreLimitsBuilder::new()
            .memory_size(grants.memory)
            .table_elements(1 << 20)
            .instances(64)
            .tables(64)
            .memories(16)
            // A guest that asks for too much traps at once with a clear message instead of
            // seeing a failed allocation and aborting somewhere less obvious.
            .trap_on_grow_failure(true)
            .build();
        Limits {
            own,
            shared,
            held: 0,
        }
    }
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if !self.own.memory_growing(current, desired, maximum)? {
            return Ok(false);
        }
        let more = desired.saturating_sub(current);
        if let Some(shared) = &self.shared
            && !shared.take(more)
        {
            wasmtime::bail!(
                "growing memory by {more} bytes would take the backend's instances together \
                 past their `memory_total` of {} MiB; raise `memory_total` or lower `instances`",
                shared.total >> 20
            );
        }
        self.held += more;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.own.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.own.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.own.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.own.instances()
    }

    fn tables(&self) -> usize {
        self.own.tables()
    }

    fn memories(&self) -> usize {
        self.own.memories()
    }
}

impl Drop for Limits {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            shared.give_back(self.held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_share_the_budget_and_give_it_back() {
        let budget = MemoryBudget::new(3 << 20);
        let grants = Grants {
            memory: 2 << 20,
            ..Grants::default()
        };
        let mut a = Limits::new(&grants, Some(budget.clone()));
        let mut b = Limits::new(&grants, Some(budget.clone()));
        assert!(a.memory_growing(0, 2 << 20, None).unwrap());
        let refused = b.memory_growing(0, 2 << 20, None).unwrap_err().to_string();
        assert!(refused.contains("`memory_total` of 3 MiB"), "{refused}");
        assert!(b.memory_growing(0, 1 << 20, None).unwrap());
        drop(a);
        assert!(b.memory_growing(1 << 20, 2 << 20, None).unwrap());
        assert!(
            b.memory_growing(2 << 20, 3 << 20, None).is_err(),
            "one instance stays under its own `memory`"
        );
    }
}
