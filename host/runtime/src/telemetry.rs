//! What the runtime reports through the `metrics` facade: plugin calls by operation and
//! outcome, traps and deadline hits, instances in use. A program that installs no recorder
//! (a library user, a test) pays only for a no-op. The names are documented in the README
//! ("Health and metrics").

use std::sync::Arc;

use metrics::{Gauge, Unit, counter, describe_counter, describe_gauge, gauge};

use crate::error::Error;

/// Contract calls, by `backend`, `plugin`, `operation` (the contract's function name) and
/// `outcome` (`ok` or [`Error::kind`]).
const CALLS: &str = "stateplug_plugin_calls_total";
/// Instances lost to a trap other than the deadline: a panic, a memory cap, a stack overflow.
const TRAPS: &str = "stateplug_plugin_traps_total";
/// Calls (or instance starts) stopped at their deadline, by the epoch interrupt or by the
/// host giving up on a plugin blocked in a host call.
const DEADLINES: &str = "stateplug_plugin_deadline_hits_total";
/// Calls holding an instance right now.
const IN_USE: &str = "stateplug_plugin_instances_in_use";
/// How many instances may run calls at once (`instances`).
const INSTANCES_MAX: &str = "stateplug_plugin_instances_max";

/// Describes the runtime's metrics to the recorder installed, for the `# HELP` lines of an
/// exporter. Call it once, after installing the recorder.
pub fn describe_metrics() {
    describe_counter!(
        CALLS,
        Unit::Count,
        "Plugin contract calls, by backend, plugin, operation and outcome (ok or the error kind)"
    );
    describe_counter!(
        TRAPS,
        Unit::Count,
        "Plugin instances lost to a trap (panic, memory cap, stack overflow; deadlines are \
         counted in stateplug_plugin_deadline_hits_total)"
    );
    describe_counter!(
        DEADLINES,
        Unit::Count,
        "Plugin calls and instance starts stopped at their deadline (`timeout`)"
    );
    describe_gauge!(IN_USE, "Calls holding a plugin instance right now");
    describe_gauge!(
        INSTANCES_MAX,
        "How many plugin instances may run calls at once (`instances`)"
    );
}

/// The labels one backend reports under: the name the operator gave it and its plugin's.
#[derive(Clone)]
pub(crate) struct Meter {
    backend: Arc<str>,
    plugin: Arc<str>,
}

impl Meter {
    pub(crate) fn new(backend: &str, plugin: &str) -> Meter {
        let meter = Meter {
            backend: backend.into(),
            plugin: plugin.into(),
        };
        // Shown at 0 from the start, so that an alert on their increase sees the first one.
        counter!(TRAPS, &meter.labels()).increment(0);
        counter!(DEADLINES, &meter.labels()).increment(0);
        meter
    }

    fn labels(&self) -> [(&'static str, Arc<str>); 2] {
        [
            ("backend", self.backend.clone()),
            ("plugin", self.plugin.clone()),
        ]
    }

    /// One contract call ended with `outcome`.
    pub(crate) fn call<T>(&self, operation: &'static str, outcome: &Result<T, Error>) {
        let outcome = match outcome {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        counter!(
            CALLS,
            "backend" => self.backend.clone(),
            "plugin" => self.plugin.clone(),
            "operation" => operation,
            "outcome" => outcome,
        )
        .increment(1);
    }

    /// An instance trapped; `deadline` when it was its deadline that stopped it.
    pub(crate) fn trapped(&self, deadline: bool) {
        if deadline {
            self.deadline_hit();
        } else {
            counter!(TRAPS, &self.labels()).increment(1);
        }
    }

    /// The host stopped waiting for a call at its deadline.
    pub(crate) fn deadline_hit(&self) {
        counter!(DEADLINES, &self.labels()).increment(1);
    }

    /// The gauge of calls holding an instance, after recording the pool's size.
    pub(crate) fn instances(&self, size: usize) -> Gauge {
        gauge!(INSTANCES_MAX, &self.labels()).set(size as f64);
        gauge!(IN_USE, &self.labels())
    }
}
