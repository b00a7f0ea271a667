//! Each operation through the wasm plugin against the same plugin code linked natively (the
//! SDK's `Store` trait makes that possible), in one run; plus instantiation and process
//! start to first call. Figures and ratios go to BENCHMARKS.md.
//!
//! `cargo bench --bench plugins`

use std::process::Command;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use stateplug_plugin_local::Local;
use stateplug_plugin_memory::Memory;
use stateplug_runtime::{DirGrant, Grants, Plugin, Precondition, Runtime};
use stateplug_sdk::{Config, Store as _};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

fn native<B: stateplug_sdk::Store>(config: Vec<(String, String)>) -> B {
    B::open(Config::new(&B::metadata().config, config).unwrap()).unwrap()
}

fn local_config(dir: &std::path::Path) -> (Vec<(String, String)>, Grants) {
    let grants = Grants {
        dirs: vec![DirGrant::read_write(dir)],
        ..Grants::default()
    };
    (Vec::new(), grants)
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let runtime = Runtime::new().unwrap();
    let memory = rt.block_on(Plugin::builtin(&runtime, "memory")).unwrap();
    let local = rt.block_on(Plugin::builtin(&runtime, "local")).unwrap();

    // memory plugin: read and write, 1 KiB and 4 MiB
    let wasm = rt.block_on(memory.open(vec![], Grants::default())).unwrap();
    let native_memory: Memory = native(vec![]);
    for (label, size) in [("1KiB", KIB), ("4MiB", 4 * MIB)] {
        let data: Vec<u8> = (0..size).map(|i| i as u8).collect();
        rt.block_on(wasm.write("obj", data.clone(), Precondition::None))
            .unwrap();
        native_memory
            .write("obj", data.clone(), Precondition::None)
            .unwrap();

        let mut group = c.benchmark_group(format!("memory/read/{label}"));
        group.bench_function("wasm", |b| b.to_async(&rt).iter(|| wasm.read("obj")));
        group.bench_function("native", |b| b.iter(|| native_memory.read("obj").unwrap()));
        group.finish();

        let mut group = c.benchmark_group(format!("memory/write/{label}"));
        group.bench_function("wasm", |b| {
            b.to_async(&rt).iter_batched(
                || data.clone(),
                |data| wasm.write("obj", data, Precondition::None),
                BatchSize::LargeInput,
            )
        });
        group.bench_function("native", |b| {
            b.iter_batched(
                || data.clone(),
                |data| {
                    native_memory
                        .write("obj", data, Precondition::None)
                        .unwrap()
                },
                BatchSize::LargeInput,
            )
        });
        group.finish();
    }

    // local plugin: write 1 MiB (temp file, fsync, rename, fsync dir)
    let wasm_dir = tempfile::tempdir().unwrap();
    let native_dir = tempfile::tempdir().unwrap();
    let (config, grants) = local_config(wasm_dir.path());
    let wasm_local = rt.block_on(local.open(config, grants)).unwrap();
    let root = native_dir.path().display().to_string();
    let native_local: Local = native(vec![("root".to_string(), root)]);
    let data: Vec<u8> = (0..MIB).map(|i| (i * 7) as u8).collect();
    let mut group = c.benchmark_group("local/write/1MiB");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("wasm", |b| {
        b.to_async(&rt).iter_batched(
            || data.clone(),
            |data| wasm_local.write("obj", data, Precondition::None),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("native", |b| {
        b.iter_batched(
            || data.clone(),
            |data| native_local.write("obj", data, Precondition::None).unwrap(),
            BatchSize::LargeInput,
        )
    });
    group.finish();

    // a fresh backend: instantiate (pooling allocator, InstancePre) + open the store
    c.bench_function("instantiate/memory", |b| {
        b.to_async(&rt)
            .iter(|| memory.open(vec![], Grants::default()))
    });

    // process start to first call, with the compiled cache warm (the loads above filled it)
    let dir = tempfile::tempdir().unwrap();
    let binary = env!("CARGO_BIN_EXE_stateplug");
    std::fs::write(
        dir.path().join("s.json"),
        br#"{"version":4,"serial":1,"lineage":"bench"}"#,
    )
    .unwrap();
    let pushed = Command::new(binary)
        .args(["state", "push", "default", "s.json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let mut group = c.benchmark_group("process");
    group.sample_size(30);
    group.bench_function("start-to-first-call", |b| {
        b.iter(|| {
            let out = Command::new(binary)
                .args(["state", "pull"])
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success());
        })
    });
    group.finish();
}

criterion_group!(plugin_benches, benches);
criterion_main!(plugin_benches);
