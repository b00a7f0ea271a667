//! A throwaway PostgreSQL server for the tests: Debian's `postgresql` package (installed by
//! `.ci/run`), one cluster per [`Postgres`] in a temporary directory of its own, listening on a
//! free port of 127.0.0.1 only (its Unix socket in that directory, never /var/run), password
//! authentication (scram-sha-256) for everyone, every connection logged. [`shared`] is one
//! cluster for the whole test process, for the many tests that just need a database of their
//! own ([`Postgres::fresh_database`]).
//!
//! A cluster started with TLS ([`Postgres::start_with_tls_or_skip`], [`shared_tls`]) has a
//! throwaway CA of its own ([`Tls`], made with rcgen) and a server certificate it signed for
//! IP address 127.0.0.1, and accepts TCP connections only over TLS (`hostssl`; `hostnossl`
//! is rejected); the fixture's own psql then verifies the certificate (`verify-full`).
//!
//! initdb and postgres refuse to run as root, and CI runs as root: then the server runs as the
//! `postgres` user (the package creates it), switched to by `Command::uid` (no su, runuser or
//! PAM involved); otherwise as the current user. psql runs as the current user, over TCP.
//!
//! Nothing is left behind, however the test process ends: each cluster has a watchdog (see
//! [`Watchdog`]) that stops the server and removes the directory once the test process is gone,
//! even when it was killed; the shared cluster is also stopped at exit (`atexit`), so it is gone
//! when `cargo test` returns.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// The superuser initdb creates.
pub const SUPERUSER: &str = "postgres";
/// The superuser's password.
pub const PASSWORD: &str = "stateplug-test";
/// Where the server listens (and the only address it listens on).
pub const HOST: &str = "127.0.0.1";

/// The directory with `initdb`, `pg_ctl` and `postgres`: `STATEPLUG_POSTGRES_BIN`, else the
/// newest `/usr/lib/postgresql/<version>/bin` that has `initdb` and `pg_ctl` (Debian's layout).
pub fn postgres_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("STATEPLUG_POSTGRES_BIN") {
        return Some(PathBuf::from(dir));
    }
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version: Vec<u32> = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<_>>()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
        .max_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, bin)| bin)
}

/// [`postgres_bin_dir`], or `None` after saying that `test` was skipped; panics when `CI` is
/// set (CI must run every test).
pub fn installed_or_skip(test: &str) -> Option<PathBuf> {
    match postgres_bin_dir() {
        Some(bin) => Some(bin),
        None if std::env::var_os("CI").is_some() => panic!(
            "CI is set but PostgreSQL is not installed: `bash .ci/run` installs it \
             (`apt-get install postgresql`), or set STATEPLUG_POSTGRES_BIN to the directory \
             with initdb and pg_ctl"
        ),
        None => {
            eprintln!(
                "SKIPPED {test}: PostgreSQL not found; `apt-get install postgresql` (what \
                 `bash .ci/run` does) or set STATEPLUG_POSTGRES_BIN to the directory with \
                 initdb and pg_ctl"
            );
            None
        }
    }
}

/// The cluster shared by every test of this process, started by the first test that asks;
/// `None` (the test says it was skipped) when PostgreSQL is not installed. Each test makes its
/// own database with [`Postgres::fresh_database`]. Stopped and removed when the process exits.
pub fn shared() -> Option<&'static Postgres> {
    shared_cluster(0, Postgres::start)
}

/// The TLS cluster shared by every test of this process (see [`shared`] and
/// [`Postgres::start_with_tls_or_skip`]).
pub fn shared_tls() -> Option<&'static Postgres> {
    shared_cluster(1, Postgres::start_with_tls)
}

/// The shared clusters: plain and with TLS.
static SHARED: [OnceLock<Option<Postgres>>; 2] = [OnceLock::new(), OnceLock::new()];

fn shared_cluster(which: usize, start: fn(&Path) -> Postgres) -> Option<&'static Postgres> {
    extern "C" fn stop_at_exit() {
        for cluster in &SHARED {
            if let Some(Some(postgres)) = cluster.get() {
                postgres.shut_down();
            }
        }
    }
    SHARED[which]
        .get_or_init(|| {
            // libtest names each test's thread after the test.
            let test = std::thread::current()
                .name()
                .unwrap_or("a test")
                .to_string();
            let bin = installed_or_skip(&test)?;
            let postgres = start(&bin);
            // A static is never dropped: stop the servers when the process exits normally
            // (libtest returns from main or calls `exit`); the watchdog covers the rest.
            static AT_EXIT: std::sync::Once = std::sync::Once::new();
            // SAFETY: registers a plain function; it only reads statics set by then.
            AT_EXIT.call_once(|| unsafe {
                libc::atexit(stop_at_exit);
            });
            Some(postgres)
        })
        .as_ref()
}

/// The subject of every throwaway CA: two CAs differ by their key only, so a client that
/// trusted a CA by its name alone would be caught.
const CA_NAME: &str = "stateplug test CA";

/// A throwaway certificate authority: its certificate (PEM) and what signs with it.
pub struct Ca {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    /// A new CA (ECDSA P-256), named [`CA_NAME`] like every other one.
    pub fn generate() -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, CA_NAME);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        Ca {
            pem: certificate.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// The CA's certificate, PEM: what a client trusts (the plugin's `ssl_root_cert`).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `ip` (its only subject alternative name) and its key, PEM;
    /// each call makes a new key (and so another certificate).
    pub fn server_certificate(&self, ip: &str) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec![ip.to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, ip);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        (certificate.pem(), key.serialize_pem())
    }

    /// A client certificate (for mutual TLS) with common name `name`, and its key, PEM.
    pub fn client_certificate(&self, name: &str) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        (certificate.pem(), key.serialize_pem())
    }
}

/// The TLS files of a cluster started with TLS, in its directory: the CA that signed the
/// server's certificate, the certificate (for [`HOST`] only) and its key (mode 0600, the
/// server's user's).
pub struct Tls {
    ca: Ca,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Tls {
    /// The CA's certificate, PEM: the plugin's `ssl_root_cert` for `verify-full`.
    pub fn ca_pem(&self) -> &str {
        self.ca.pem()
    }

    /// Makes a CA and a server certificate for [`HOST`] signed by it, in `dir`.
    fn create(dir: &Path) -> Tls {
        let ca = Ca::generate();
        let (cert, key) = ca.server_certificate(HOST);
        let tls = Tls {
            ca,
            ca_file: dir.join("ca.crt"),
            cert_file: dir.join("server.crt"),
            key_file: dir.join("server.key"),
        };
        std::fs::write(&tls.ca_file, tls.ca.pem()).unwrap();
        std::fs::write(&tls.cert_file, cert).unwrap();
        // The server refuses a key file others may read; created 0600, then given away.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tls.key_file)
            .and_then(|mut file| file.write_all(key.as_bytes()))
            .unwrap();
        if let Some((uid, gid)) = server_user() {
            for file in [&tls.ca_file, &tls.cert_file, &tls.key_file] {
                std::os::unix::fs::chown(file, Some(uid), Some(gid)).unwrap();
            }
        }
        tls
    }
}

/// Makes database names unique within the process (and so within a cluster).
static NAMES: AtomicUsize = AtomicUsize::new(0);

/// A PostgreSQL cluster of its own in a temporary directory (`data/` the cluster, `postgres.log`
/// the server's log, the Unix socket), on a free port of 127.0.0.1. Dropping it stops the
/// server (immediate shutdown) and removes the directory.
pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// Set for a cluster started with TLS.
    tls: Option<Tls>,
    watchdog: Mutex<Option<Watchdog>>,
}

impl Postgres {
    /// A cluster of its own for `test`, or `None` (saying it was skipped) when PostgreSQL is
    /// not installed; panics then when `CI` is set.
    pub fn start_or_skip(test: &str) -> Option<Postgres> {
        installed_or_skip(test).map(|bin| Postgres::start(&bin))
    }

    /// Like [`Postgres::start_or_skip`], a cluster with TLS (see [`Postgres::start_with_tls`]).
    pub fn start_with_tls_or_skip(test: &str) -> Option<Postgres> {
        installed_or_skip(test).map(|bin| Postgres::start_with_tls(&bin))
    }

    /// Like [`Postgres::start`], with TLS: `ssl = on` with a certificate for [`HOST`] signed
    /// by a throwaway CA ([`Postgres::tls`]), and TCP connections only over TLS
    /// (`hostssl … scram-sha-256`, `hostnossl … reject`).
    pub fn start_with_tls(bin_dir: &Path) -> Postgres {
        Postgres::start_cluster(bin_dir, true)
    }

    /// Creates a cluster with the programs of `bin_dir` (initdb: superuser [`SUPERUSER`] with
    /// password [`PASSWORD`], scram-sha-256 for every connection, UTF8, locale C) and starts it
    /// on a free port. The port is found by binding port 0 and releasing it, so another
    /// process may take it in between: then the server does not start and we try another port
    /// (three attempts).
    pub fn start(bin_dir: &Path) -> Postgres {
        Postgres::start_cluster(bin_dir, false)
    }

    fn start_cluster(bin_dir: &Path, tls: bool) -> Postgres {
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("stateplug-pg-")
            .tempdir()
            .unwrap();
        if let Some((uid, gid)) = server_user() {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let mut postgres = Postgres {
            bin: bin_dir.to_path_buf(),
            watchdog: Mutex::new(Some(Watchdog::spawn(bin_dir, dir.path()))),
            dir,
            port: 0,
            tls: None,
        };
        postgres.init();
        if tls {
            postgres.tls = Some(Tls::create(postgres.dir.path()));
            postgres.require_tls();
        }
        let initialized = started.elapsed();
        let mut failures = String::new();
        for _ in 0..3 {
            postgres.port = TcpListener::bind((HOST, 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            postgres.write_settings();
            let output = postgres.pg_ctl(&["-w", "-t", "60", "start"]);
            if output.status.success() {
                eprintln!(
                    "PostgreSQL on {HOST}:{}{} ({}) started in {} ms (initdb {} ms)",
                    postgres.port,
                    if tls { " with TLS" } else { "" },
                    postgres.dir.path().display(),
                    started.elapsed().as_millis(),
                    initialized.as_millis()
                );
                return postgres;
            }
            let log = postgres.log();
            failures.push_str(&format!(
                "port {}: {}{}\n{log}\n",
                postgres.port,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
            if !log.contains("could not bind") && !log.contains("Address already in use") {
                break;
            }
            // The log of the next attempt on its own.
            let _ = std::fs::remove_file(postgres.log_path());
        }
        panic!("PostgreSQL did not start:\n{failures}");
    }

    /// initdb into `data/`, and the settings file included from `postgresql.conf`.
    fn init(&self) {
        let pwfile = self.dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
        if let Some((uid, gid)) = server_user() {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).unwrap();
        }
        let output = self
            .server_command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["-U", SUPERUSER, "--auth=scram-sha-256", "-E", "UTF8"])
            // No fsync of the new cluster: it lives as long as a test.
            .args(["--locale=C", "--no-sync"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb in {}: {e}", self.bin.display()));
        let _ = std::fs::remove_file(&pwfile);
        assert!(
            output.status.success(),
            "initdb failed (the server's user must be able to reach {}):\n{}{}",
            self.dir.path().display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir().join("postgresql.conf"))
            .unwrap();
        conf.write_all(b"\n# The tests' settings (port included), rewritten at each start.\ninclude = 'stateplug.conf'\n")
            .unwrap();
    }

    /// Replaces initdb's `pg_hba.conf`: the Unix socket with a password, TCP over TLS with a
    /// password, TCP without TLS rejected.
    fn require_tls(&self) {
        // Written over the file initdb made, so it stays the server's user's.
        std::fs::write(
            self.data_dir().join("pg_hba.conf"),
            format!(
                "# The tests' TLS cluster: TCP only over TLS.\n\
                 local all all scram-sha-256\n\
                 hostssl all all {HOST}/32 scram-sha-256\n\
                 hostnossl all all {HOST}/32 reject\n"
            ),
        )
        .unwrap();
    }

    /// Writes `data/stateplug.conf`: 127.0.0.1 and this port only, the socket in our
    /// directory, every connection logged, no waiting for the disk; TLS on with our
    /// certificate for a cluster with TLS.
    fn write_settings(&self) {
        let mut settings = format!(
            "listen_addresses = '{HOST}'\n\
             port = {port}\n\
             unix_socket_directories = '{dir}'\n\
             log_connections = on\n\
             log_disconnections = on\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n",
            port = self.port,
            dir = self.dir.path().display(),
        );
        if let Some(tls) = &self.tls {
            settings.push_str(&format!(
                "ssl = on\n\
                 ssl_cert_file = '{}'\n\
                 ssl_key_file = '{}'\n",
                tls.cert_file.display(),
                tls.key_file.display()
            ));
        }
        std::fs::write(self.data_dir().join("stateplug.conf"), settings).unwrap();
    }

    /// Stops the server (fast shutdown: clients are disconnected), keeping the cluster; the
    /// port stays free for [`Postgres::start_again`].
    pub fn stop(&self) {
        let output = self.pg_ctl(&["-w", "-m", "fast", "stop"]);
        assert!(
            output.status.success(),
            "pg_ctl stop failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts the stopped server again: same cluster, same port.
    pub fn start_again(&self) {
        let output = self.pg_ctl(&["-w", "-t", "60", "start"]);
        assert!(
            output.status.success(),
            "pg_ctl start failed:\n{}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
    }

    pub fn host(&self) -> &'static str {
        HOST
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn superuser(&self) -> &'static str {
        SUPERUSER
    }

    pub fn password(&self) -> &'static str {
        PASSWORD
    }

    /// The cluster's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The TLS files of a cluster started with TLS; `None` for one without.
    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// The server's log so far (every start; with log_connections and log_disconnections).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Runs `statements` (one or more, `;`-separated, each in its own transaction) with psql
    /// as `user` on `database` over TCP: `-X -q -w -v ON_ERROR_STOP=1 -At`, a cleared
    /// environment with `PGPASSWORD`, and without TLS (`PGSSLMODE=disable`), or, on a cluster
    /// with TLS, over TLS with the certificate checked against its CA (`verify-full`).
    /// Returns psql's output whatever its exit status.
    pub fn psql(&self, user: &str, password: &str, database: &str, statements: &str) -> Output {
        let mut command = Command::new(psql_binary(&self.bin));
        command
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LC_ALL", "C")
            .env("HOME", self.dir.path())
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10");
        match &self.tls {
            None => command.env("PGSSLMODE", "disable"),
            Some(tls) => command
                .env("PGSSLMODE", "verify-full")
                .env("PGSSLROOTCERT", &tls.ca_file),
        };
        let mut child = command
            .args(["-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", "-At"])
            .args(["-h", HOST, "-p", &self.port.to_string()])
            .args(["-U", user, "-d", database, "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
        // psql may exit without reading (no connection): a broken pipe is its answer then.
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(statements.as_bytes());
        drop(stdin);
        child.wait_with_output().unwrap()
    }

    /// Runs `statements` as the superuser on `database` (see [`Postgres::psql`]) and returns
    /// the rows, one per line, columns separated by `|`, without the last newline; panics
    /// with psql's errors when it fails.
    pub fn sql(&self, database: &str, statements: &str) -> String {
        let output = self.psql(SUPERUSER, PASSWORD, database, statements);
        assert!(
            output.status.success(),
            "psql on {database} failed ({}): {statements}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let mut stdout = String::from_utf8(output.stdout).unwrap();
        if stdout.ends_with('\n') {
            stdout.pop();
        }
        stdout
    }

    /// Creates a database owned by the superuser.
    pub fn create_database(&self, name: &str) {
        self.sql(SUPERUSER, &format!("CREATE DATABASE {}", quote_ident(name)));
    }

    /// Creates a database owned by `owner`, who may then do anything in it (PostgreSQL 15:
    /// the `public` schema belongs to the database's owner), with no GRANT needed.
    pub fn create_database_owned_by(&self, name: &str, owner: &str) {
        self.sql(
            SUPERUSER,
            &format!(
                "CREATE DATABASE {} OWNER {}",
                quote_ident(name),
                quote_ident(owner)
            ),
        );
    }

    /// A new database owned by the superuser, named `<prefix>_<n>` (the prefix lowercased,
    /// anything but ASCII letters and digits becoming `_`), unique in this process.
    pub fn fresh_database(&self, prefix: &str) -> String {
        let prefix: String = prefix
            .chars()
            .take(40)
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let name = format!("{prefix}_{}", NAMES.fetch_add(1, Ordering::Relaxed));
        self.create_database(&name);
        name
    }

    /// Creates a role that may log in with `password`: not a superuser, cannot create
    /// databases or roles.
    pub fn create_user(&self, name: &str, password: &str) {
        self.sql(
            SUPERUSER,
            &format!(
                "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}",
                quote_ident(name),
                quote_literal(password)
            ),
        );
    }

    /// The plugin settings to reach `database` as the superuser: `host`, `port`, `database`,
    /// `username`, `password`, `ssl_mode` (`disable`; `require` on a cluster with TLS, which
    /// refuses connections without it).
    pub fn settings(&self, database: &str) -> Vec<(String, String)> {
        self.settings_for(database, SUPERUSER, PASSWORD)
    }

    /// Like [`Postgres::settings`], as `username`.
    pub fn settings_for(
        &self,
        database: &str,
        username: &str,
        password: &str,
    ) -> Vec<(String, String)> {
        [
            ("host", HOST),
            ("port", &self.port.to_string()),
            ("database", database),
            ("username", username),
            ("password", password),
            (
                "ssl_mode",
                if self.tls.is_some() {
                    "require"
                } else {
                    "disable"
                },
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// One of the cluster's programs, run as the server's user in our directory with a
    /// cleared environment.
    fn server_command(&self, program: &str) -> Command {
        server_command(&self.bin.join(program), self.dir.path())
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        // `-l`: the postmaster's stdin, stdout and stderr are /dev/null and the log, so it
        // does not hold our pipes (`output()` returns when pg_ctl does).
        self.server_command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run pg_ctl in {}: {e}", self.bin.display()))
    }

    /// Stops the server at once and lets the watchdog remove the directory; idempotent.
    fn shut_down(&self) {
        let watchdog = self
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(watchdog) = watchdog {
            let _ = self.pg_ctl(&["-w", "-m", "immediate", "stop"]);
            watchdog.finish();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// A process that stops a cluster's server and removes its directory once the test process
/// is gone, however it ended (a static's value is never dropped, a killed process drops
/// nothing, and the postmaster that `pg_ctl start` leaves behind outlives us).
///
/// It is a shell reading its stdin, a pipe whose only writer is the test process (Rust opens
/// pipes close-on-exec, so no other child inherits it): `read` sees end of file when the test
/// process closes it or exits, whatever the cause (SIGKILL included), with no polling and no
/// PID that could be reused. It ignores the signals a Ctrl-C or a CI timeout sends, and is in
/// a process group of its own (not the terminal's), so it outlives the test process to do its
/// work. It runs as the server's user, who owns the directory and everything in it.
struct Watchdog {
    child: Child,
    pipe: ChildStdin,
}

impl Watchdog {
    const SCRIPT: &str = r#"trap '' HUP INT QUIT TERM PIPE
while read -r _; do :; done
"$1" -D "$2/data" -w -m immediate stop >/dev/null 2>&1
rm -rf -- "$2""#;

    fn spawn(bin_dir: &Path, dir: &Path) -> Watchdog {
        let mut child = server_command(Path::new("/bin/sh"), dir)
            .arg("-c")
            .arg(Self::SCRIPT)
            .arg("stateplug-postgres-watchdog")
            .arg(bin_dir.join("pg_ctl"))
            .arg(dir)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run /bin/sh: {e}"));
        let pipe = child.stdin.take().unwrap();
        Watchdog { child, pipe }
    }

    /// Lets the watchdog do its work now and waits until it has.
    fn finish(self) {
        let Watchdog { mut child, pipe } = self;
        drop(pipe);
        let _ = child.wait();
    }
}

/// `(uid, gid)` of the `postgres` user when we are root (initdb and postgres refuse to run as
/// root), `None` otherwise (the server runs as us).
fn server_user() -> Option<(u32, u32)> {
    static USER: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *USER.get_or_init(|| {
        // SAFETY: geteuid cannot fail; getpwnam's answer is read at once, under the OnceLock
        // (so no other call of ours overwrites it meanwhile).
        unsafe {
            if libc::geteuid() != 0 {
                return None;
            }
            let user = libc::getpwnam(c"postgres".as_ptr());
            assert!(
                !user.is_null(),
                "running as root, but there is no `postgres` user to run PostgreSQL as \
                 (`apt-get install postgresql` creates it)"
            );
            Some(((*user).pw_uid, (*user).pw_gid))
        }
    })
}

/// `program` run as the server's user, in `dir`, with a cleared environment.
fn server_command(program: &Path, dir: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C")
        .env("HOME", dir)
        .current_dir(dir)
        .stdin(Stdio::null());
    if let Some((uid, gid)) = server_user() {
        // std drops root's supplementary groups too.
        command.uid(uid).gid(gid);
    }
    command
}

/// psql: next to the server's programs (Debian), else on the PATH.
fn psql_binary(bin_dir: &Path) -> PathBuf {
    let beside = bin_dir.join("psql");
    if beside.is_file() {
        return beside;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("psql"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("psql not found in {} nor on the PATH", bin_dir.display()))
}

/// An SQL identifier, quoted.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An SQL string literal (standard_conforming_strings: backslashes are plain characters).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The processes (`PID: command line`) whose command line mentions `needle`: for checking
/// that nothing of a removed cluster is left (the postmaster's and the watchdog's command
/// lines name the cluster's directory).
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|entry| {
            let mut cmdline = Vec::new();
            std::fs::File::open(entry.path().join("cmdline"))
                .ok()?
                .read_to_end(&mut cmdline)
                .ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline
                .contains(needle)
                .then(|| format!("{}: {cmdline}", entry.file_name().to_string_lossy()))
        })
        .collect()
}
