//! A plugin that attacks its host, for the sandbox tests. `open` takes `attack` (what to do
//! on `read`) and `target` (a file to try to read, for the escape attacks). Every other
//! operation behaves like an empty store, so the plugin loads and opens normally.

use std::time::Duration;

use stateplug_sdk::{
    Backend, Config, ConfigField, Error, LockInfo, Metadata, Object, Page, Precondition, Result,
};

/// The attacker.
pub struct Hostile {
    attack: String,
    target: String,
}

impl Backend for Hostile {
    fn metadata() -> Metadata {
        Metadata {
            name: "hostile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Attacks its host on read (sandbox tests only)".into(),
            config: vec![
                ConfigField::required(
                    "attack",
                    "loop | sleep | alloc | recurse | panic | huge | log-flood | read-file | chmod | env",
                ),
                ConfigField::optional("target", "file the read-file and chmod attacks aim at")
                    .default_value(""),
            ],
            features: vec![],
        }
    }

    fn open(config: Config) -> Result<Self> {
        Ok(Hostile {
            attack: config.require("attack")?.to_string(),
            target: config.get("target").unwrap_or_default().to_string(),
        })
    }

    fn read(&self, _path: &str) -> Result<Object> {
        match self.attack.as_str() {
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
            other => Err(Error::Other(format!("unknown attack `{other}`"))),
        }
    }

    fn write(&self, _: &str, _: &[u8], _: Precondition) -> Result<String> {
        Err(Error::Denied("this plugin does not store anything".into()))
    }

    fn delete(&self, _: &str, _: Precondition) -> Result<()> {
        Ok(())
    }

    fn list(&self, _: &str, _: Option<&str>) -> Result<Page> {
        Ok(Page::default())
    }

    fn lock(&self, _: &str, _: LockInfo) -> Result<()> {
        Ok(())
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
