//! A trap explained in words a person can act on: which limit was hit and what to raise, with
//! the end of what the plugin printed (its panic message).

use wasmtime::Trap;

use crate::error::{Error, chain};
use crate::grants::Grants;

/// How much of a crashed plugin's output is quoted in the error.
const QUOTED_OUTPUT: usize = 1000;

/// The error for a plugin instance that trapped.
pub(crate) fn crashed(
    plugin: &str,
    grants: &Grants,
    trap: &wasmtime::Error,
    output: &str,
) -> Error {
    let detail = chain(trap);
    let cause = match trap.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => format!(
            "it ran past its deadline of {:?} (raise `timeout` in the backend's grants if the \
             storage is slow)",
            grants.timeout
        ),
        Some(Trap::StackOverflow) => "it overflowed its stack (unbounded recursion?)".to_string(),
        // Rust guests keep their stack at the bottom of linear memory: overflowing it shows
        // up as an access below address 0.
        Some(Trap::MemoryOutOfBounds) => format!(
            "it overflowed its stack (unbounded recursion?) or accessed memory out of bounds ({detail})"
        ),
        Some(Trap::UnreachableCodeReached) => format!("it panicked or aborted ({detail})"),
        // The shared budget's own words name `memory_total` and what to do.
        _ if detail.contains("memory_total") => format!("it ran out of memory: {detail}"),
        _ if detail.contains("growing memory") => format!(
            "it exceeded its memory cap of {} MiB ({detail}); raise `memory` in the backend's \
             grants if it really needs more",
            grants.memory >> 20
        ),
        _ => detail,
    };
    Error::Crashed {
        plugin: plugin.to_string(),
        cause: format!("{cause}{}", quote_output(output)),
    }
}

/// Whether `trap` is the epoch interrupt of a call's deadline rather than the plugin's fault.
pub(crate) fn ran_past_deadline(trap: &wasmtime::Error) -> bool {
    matches!(trap.downcast_ref::<Trap>(), Some(Trap::Interrupt))
}

/// `; it printed: …` with the end of a plugin's output, or nothing.
pub(crate) fn quote_output(output: &str) -> String {
    if output.is_empty() {
        return String::new();
    }
    let mut start = output.len().saturating_sub(QUOTED_OUTPUT);
    while !output.is_char_boundary(start) {
        start += 1;
    }
    format!(
        "; it printed: {}",
        stateplug_sdk::text::untrusted(&output[start..])
    )
}
