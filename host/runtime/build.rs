//! Builds the built-in plugins (`plugins/`) as wasm32-wasip2 components, so the runtime can
//! embed them (`builtin.rs`): no set-up step, no committed `.wasm`.

use stateplug_guest_build::{Guest, build};

fn main() {
    build(&[
        Guest {
            package: "stateplug-plugin-memory",
            dir: "plugins/memory",
            file: "memory.wasm",
        },
        Guest {
            package: "stateplug-plugin-local",
            dir: "plugins/local",
            file: "local.wasm",
        },
        Guest {
            package: "stateplug-plugin-s3",
            dir: "plugins/s3",
            file: "s3.wasm",
        },
        Guest {
            package: "stateplug-plugin-postgres",
            dir: "plugins/postgres",
            file: "postgres.wasm",
        },
    ]);
}
