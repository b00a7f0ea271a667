//! The clock of per-call deadlines: a thread advances the engine's epoch every tick, and a
//! call's store traps when its deadline (counted in ticks) passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::Engine;

/// How often the epoch advances; deadlines are counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A call's deadline in epoch ticks.
pub(crate) fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

/// Advances `engine`'s epoch every [`EPOCH_TICK`] until `stop` is set or the engine is gone.
pub(crate) fn spawn_ticker(engine: Engine, stop: Arc<AtomicBool>) {
    let weak = engine.weak();
    drop(engine);
    std::thread::Builder::new()
        .name("stateplug-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .ok();
}
