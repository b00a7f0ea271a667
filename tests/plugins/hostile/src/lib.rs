//! A plugin that attacks its host, for the sandbox tests. `open` takes `attack` (what to do
//! on `read`) and `target` (a file to try to read, for the escape attacks). Every other
//! operation behaves like an empty store, so the plugin loads and opens normally.

use std::time::Duration;

use stateplug_sdk::{
    Config, ConfigField, Error, LockInfo, Metadata, Object, Page, Precondition, Result,
    SINGLE_INSTANCE, Store,
};

/// The attacker.
pub struct Hostile {
    attack: String,
    target: String,
    /// For `stuck-version`: a real store whose version token never changes.
    stored: std::cell::RefCell<std::collections::BTreeMap<String, Vec<u8>>>,
}

/// The only version token `stuck-version` ever reports.
const STUCK: &str = "always-the-same";

/// Text that would clear an operator's terminal, forge a log line and flip what follows.
const PAINT: &str = "\x1b[2J\x1b[31mowned\r\nERROR forged line\u{202e}";

impl Store for Hostile {
    fn metadata() -> Metadata {
        Metadata {
            name: "hostile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Attacks its host on read (sandbox tests only)".into(),
            config: vec![
                ConfigField::required(
                    "attack",
                    "loop | sleep | alloc | recurse | panic | huge | log-flood | read-file | chmod | env | stuck-version | http-get | foreign-lock | tcp-connect | huge-error | forged-log | loud-panic | huge-version | forged-lock | db-statement",
                ),
                ConfigField::optional(
                    "target",
                    "file the read-file and chmod attacks aim at; URL for http-get; for \
                     db-statement `HOST:PORT/DATABASE/USER/PASSWORD/STATEMENT`",
                )
                .default_value(""),
                // What `plugins inspect` shows must not repaint the operator's terminal.
                ConfigField::optional("paint", &format!("{PAINT}{}", "x".repeat(10_000)))
                    .default_value(PAINT),
            ],
            // What it stores lives in the instance: one instance per backend.
            features: vec![SINGLE_INSTANCE.into()],
        }
    }

    fn open(config: Config) -> Result<Self> {
        Ok(Hostile {
            attack: config.require("attack")?.to_string(),
            target: config.get("target").unwrap_or_default().to_string(),
            stored: Default::default(),
        })
    }

    fn read(&self, path: &str) -> Result<Object> {
        match self.attack.as_str() {
            "stuck-version" => {
                // Slow reads let concurrent writers interleave between read and write.
                std::thread::sleep(Duration::from_millis(20));
                let data = self
                    .stored
                    .borrow()
                    .get(path)
                    .cloned()
                    .ok_or(Error::NotFound)?;
                Ok(Object {
                    data,
                    version: STUCK.into(),
                })
            }
            "loop" => spin(),
            "sleep" => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                }
            }
            "recurse" => Ok(Object {
                data: Vec::new(),
                version: recurse(1).to_string(),
            }),
            "panic" => panic!("hostile plugin panics on purpose"),
            // A 32 MiB error message full of terminal escapes and line breaks.
            "huge-error" => Err(Error::Other(PAINT.repeat((32 << 20) / PAINT.len()))),
            "forged-log" => {
                stateplug_sdk::log::error(&format!("innocent{PAINT}"));
                Err(Error::NotFound)
            }
            "loud-panic" => {
                eprintln!("{}", PAINT.repeat(1000));
                panic!("{PAINT}")
            }
            "huge-version" => Ok(Object {
                data: Vec::new(),
                version: "v".repeat(1 << 20),
            }),
            // Answers with a 1 GiB object: it has to exist in linear memory first.
            "huge" => Ok(Object {
                data: vec![7u8; 1 << 30],
                version: "huge".into(),
            }),
            "log-flood" => {
                let line = "flood ".repeat(2000);
                for _ in 0..100_000 {
                    stateplug_sdk::log::error(&line);
                }
                Err(Error::NotFound)
            }
            "read-file" => std::fs::read(&self.target)
                .map(|data| Object {
                    data,
                    version: "stolen".into(),
                })
                .map_err(|e| Error::io(format!("opening {}", self.target), e)),
            "chmod" => stateplug_sdk::fs::set_file_mode(std::path::Path::new(&self.target), 0o777)
                .map(|()| Object {
                    data: Vec::new(),
                    version: "chmodded".into(),
                }),
            "env" => Ok(Object {
                data: format!("{:?}", std::env::vars().collect::<Vec<_>>()).into_bytes(),
                version: "env".into(),
            }),
            // A raw socket to `target` (ip:port), bypassing wasi-http and its grant.
            "tcp-connect" => {
                let address: std::net::SocketAddr = self
                    .target
                    .parse()
                    .map_err(|_| Error::Other(format!("`{}` is not ip:port", self.target)))?;
                wstd::runtime::block_on(wstd::net::TcpStream::connect_addr(address))
                    .map(|_| Object {
                        data: b"connected".to_vec(),
                        version: "socket".into(),
                    })
                    .map_err(|e| Error::io(format!("connecting to {address}"), e))
            }
            // A statement on the database `target` names, through the host's capability.
            "db-statement" => db_statement(&self.target).map(|data| Object {
                data,
                version: "queried".into(),
            }),
            "http-get" => http_get(&self.target).map(|data| Object {
                data,
                version: "fetched".into(),
            }),
            other => Err(Error::Other(format!("unknown attack `{other}`"))),
        }
    }

    fn write(&self, path: &str, data: Vec<u8>, precondition: Precondition) -> Result<String> {
        if self.attack != "stuck-version" {
            return Err(Error::Denied("this plugin does not store anything".into()));
        }
        let exists = self.stored.borrow().contains_key(path);
        stateplug_sdk::check_precondition(exists.then_some(STUCK), &precondition)?;
        self.stored.borrow_mut().insert(path.to_string(), data);
        Ok(STUCK.into())
    }

    fn delete(&self, _: &str, _: Precondition) -> Result<()> {
        Ok(())
    }

    fn list(&self, prefix: &str, cursor: Option<&str>) -> Result<Page> {
        let stored = self.stored.borrow();
        let matching = stored.keys().filter(|p| p.starts_with(prefix)).cloned();
        Ok(Page::from_sorted(matching, cursor, 1000))
    }

    fn lock(&self, path: &str, _: LockInfo) -> Result<()> {
        if self.attack == "forged-lock" {
            return Err(Error::Locked(Box::new(forged_lock(path))));
        }
        Ok(())
    }

    /// `foreign-lock`: whatever path is asked about, answers with another workspace's lock.
    /// `forged-lock`: a lock whose every field is huge and full of terminal escapes.
    fn lock_info(&self, path: &str) -> Result<Option<LockInfo>> {
        if self.attack == "forged-lock" {
            return Ok(Some(forged_lock(path)));
        }
        Ok(self.foreign_lock().map(|(_, lock)| lock))
    }

    fn list_locks(&self, _: &str) -> Result<Vec<(String, LockInfo)>> {
        Ok(self.foreign_lock().into_iter().collect())
    }
}

/// GETs `url` and follows redirects wherever they point, as an attacker would.
fn http_get(url: &str) -> Result<Vec<u8>> {
    use stateplug_sdk::http::{Request, block_on, send_with_retries};
    let mut url = url.to_string();
    for _ in 0..5 {
        let request = Request::new("GET", url.clone());
        let response = block_on(send_with_retries(&request, 0, Ok, |_| false))?;
        match response.header("location") {
            Some(location) if (300..400).contains(&response.status) => url = location.into(),
            _ => return Ok(response.body),
        }
    }
    Err(Error::Other("too many redirects".into()))
}

impl Hostile {
    fn foreign_lock(&self) -> Option<(String, LockInfo)> {
        (self.attack == "foreign-lock").then(|| {
            let path = "victim/terraform.tfstate".to_string();
            let lock = LockInfo {
                id: "foreign".into(),
                path: path.clone(),
                ..LockInfo::default()
            };
            (path, lock)
        })
    }
}

/// A lock whose every text field is 3 MB of terminal escapes and line breaks.
fn forged_lock(path: &str) -> LockInfo {
    let paint = PAINT.repeat(100_000);
    LockInfo {
        id: paint.clone(),
        operation: paint.clone(),
        info: paint.clone(),
        who: paint.clone(),
        version: paint.clone(),
        created: paint,
        path: path.to_string(),
        expires: None,
    }
}

fn spin() -> ! {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    recurse(depth + 1) + frame[0]
}

stateplug_sdk::export_backend!(Hostile);

/// Runs the statement of `target` (`HOST:PORT/DATABASE/USER/PASSWORD/STATEMENT`) and answers
/// its rows' debug text.
fn db_statement(target: &str) -> Result<Vec<u8>> {
    use stateplug_sdk::postgres::{ConnectOptions, Connection, SslMode};
    let parts: Vec<&str> = target.splitn(5, '/').collect();
    let [address, database, username, password, statement] = parts[..] else {
        return Err(Error::Other(format!(
            "`{target}` is not HOST:PORT/DB/USER/PASSWORD/SQL"
        )));
    };
    let (host, port) = address
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse().ok()?)))
        .ok_or_else(|| Error::Other(format!("`{address}` is not HOST:PORT")))?;
    let db = Connection::open(&ConnectOptions {
        host: host.into(),
        port,
        database: database.into(),
        username: username.into(),
        password: password.into(),
        ssl_mode: SslMode::Disable,
        ssl_root_cert: None,
    })?;
    let rows = db.query(statement, &[])?;
    Ok(format!("{:?}", rows.rows.len()).into_bytes())
}
