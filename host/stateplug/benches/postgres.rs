//! The wasm `postgres` plugin (through the host's database capability) against a native
//! tokio-postgres client running the same statements on the same server, in one run: write
//! and read of 1 KiB and 1 MiB. Then `stateplug serve` on the postgres plugin with 8 clients,
//! next to the same load on the local plugin. Prints tables; figures go to BENCHMARKS.md.
//!
//! `cargo bench --bench postgres` (PostgreSQL from Debian's `postgresql`, as for the tests).

// The tests' set-up, of which a benchmark uses a part.
#[path = "../../../tests/all/common/mod.rs"]
#[allow(dead_code)]
mod common;

#[path = "support/load.rs"]
mod load;
#[path = "support/timing.rs"]
mod timing;

use common::Server;
use common::postgres::Postgres;
use stateplug_runtime::{Grants, Precondition};
use timing::{interleaved_medians, timed};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // `cargo test` builds benches too; only `cargo bench` runs this.
    }
    let pg = Postgres::start_or_skip("the postgres benchmark")
        .expect("the postgres benchmark needs PostgreSQL (see above)");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(plugin_against_native(&pg));
    runtime.block_on(serve(&pg));
}

/// The statements the plugin runs for a write without precondition and a read, on the
/// plugin's own tables, prepared once on one connection (as the host's pool does).
struct Native {
    client: tokio_postgres::Client,
    put: tokio_postgres::Statement,
    read: tokio_postgres::Statement,
}

impl Native {
    async fn connect(pg: &Postgres, database: &str) -> Native {
        let config = format!(
            "host={} port={} user={} password={} dbname={database}",
            pg.host(),
            pg.port(),
            pg.superuser(),
            pg.password()
        );
        let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let put = client
            .prepare(
                "INSERT INTO \"stateplug\".\"objects\" (path, data, version) VALUES ($1, $2, \
                 nextval('\"stateplug\".\"versions\"')) ON CONFLICT (path) DO UPDATE SET \
                 data = excluded.data, version = excluded.version RETURNING version",
            )
            .await
            .unwrap();
        let read = client
            .prepare("SELECT data, version FROM \"stateplug\".\"objects\" WHERE path = $1")
            .await
            .unwrap();
        Native { client, put, read }
    }

    async fn write(&self, path: &str, data: &[u8]) -> String {
        let row = self
            .client
            .query_one(&self.put, &[&path, &data])
            .await
            .unwrap();
        row.get::<_, i64>(0).to_string()
    }

    async fn read(&self, path: &str) -> Vec<u8> {
        let row = self.client.query_one(&self.read, &[&path]).await.unwrap();
        row.get(0)
    }
}

async fn plugin_against_native(pg: &Postgres) {
    let database = pg.fresh_database("bench");
    let grants = Grants {
        allow_hosts: vec![
            format!("postgres://{}:{}", pg.host(), pg.port())
                .parse()
                .unwrap(),
        ],
        ..Grants::default()
    };
    let plugin = common::builtin("postgres")
        .await
        .open(pg.settings(&database), grants)
        .await
        .unwrap();
    let native = Native::connect(pg, &database).await;

    println!("## postgres plugin vs native tokio-postgres, same statements, same server");
    println!("| operation | wasm plugin | native client | ratio |");
    println!("|---|---|---|---|");
    for (label, size, rounds) in [("1 KiB", 1 << 10, 400), ("1 MiB", 1 << 20, 60)] {
        let data = vec![b'x'; size];
        let (key, native_key) = (format!("bench/{size}"), format!("native/{size}"));
        let [wasm_put, wasm_get, native_put, native_get] =
            interleaved_medians(rounds, async || {
                let write = plugin.write(&key, data.clone(), Precondition::None);
                let (put, written) = timed(write).await;
                written.unwrap();
                let (get, read) = timed(plugin.read(&key)).await;
                assert_eq!(read.unwrap().data.len(), size);
                let (n_put, _) = timed(native.write(&native_key, &data)).await;
                let (n_get, read) = timed(native.read(&native_key)).await;
                assert_eq!(read.len(), size);
                [put, get, n_put, n_get]
            })
            .await;
        for (op, wasm, native) in [
            ("write", wasm_put, native_put),
            ("read", wasm_get, native_get),
        ] {
            println!(
                "| {op} {label} | {:.3} ms | {:.3} ms | {:.2}× |",
                wasm.as_secs_f64() * 1e3,
                native.as_secs_f64() * 1e3,
                wasm.as_secs_f64() / native.as_secs_f64()
            );
        }
    }
}

/// `stateplug serve` on the postgres plugin and on the local plugin, the same load on both.
async fn serve(pg: &Postgres) {
    let database = pg.fresh_database("serve");
    let pg_dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[backends.team]\nplugin = \"postgres\"\nhost = \"{}\"\nport = {}\n\
         database = \"{database}\"\nusername = \"{}\"\npassword = \"{}\"\nssl_mode = \"disable\"\n",
        pg.host(),
        pg.port(),
        pg.superuser(),
        pg.password()
    );
    std::fs::write(pg_dir.path().join("stateplug.toml"), config).unwrap();
    let on_postgres = Server::start(pg_dir.path(), &[]);
    let local_dir = tempfile::tempdir().unwrap();
    let on_local = Server::start(local_dir.path(), &[]);

    println!("\n## stateplug serve, 8 clients (history 10), postgres plugin vs local plugin");
    println!("| request | postgres req/s | local req/s | postgres / local |");
    println!("|---|---|---|---|");
    let client = reqwest::Client::new();
    for (label, size) in [("1 KiB", 1 << 10), ("1 MiB", 1 << 20)] {
        for server in [&on_postgres, &on_local] {
            // The state GETs read: this size, a serial above the last seed's.
            let seed = load::state(size as u64, &"x".repeat(size));
            let url = format!("{}/state/read", server.url);
            let sent = client.post(url).body(seed).send().await.unwrap();
            assert!(sent.status().is_success(), "{}", sent.status());
        }
        for post in [false, true] {
            let requests = if post { 256 } else { 1024 } >> (size >> 20).min(1);
            let (mut on_pg, mut on_fs) = (Vec::new(), Vec::new());
            // Five rounds taking turns; medians of each side.
            for _ in 0..5 {
                on_pg.push(
                    load::load(&on_postgres.url, 8, requests, post, size)
                        .await
                        .0,
                );
                on_fs.push(load::load(&on_local.url, 8, requests, post, size).await.0);
            }
            let middle = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let (pg_rate, fs_rate) = (middle(on_pg), middle(on_fs));
            println!(
                "| {} {label} | {pg_rate:.0} | {fs_rate:.0} | {:.2}× |",
                if post { "POST" } else { "GET" },
                pg_rate / fs_rate
            );
        }
    }
}
