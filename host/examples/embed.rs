//! Embedding stateplug in another tool: load a plugin, open a sandboxed backend, use it.
//!
//! Run with `cargo run --example embed`.

use stateplug::{Grants, Plugin, Precondition, Runtime};

#[tokio::main]
async fn main() -> stateplug::Result<()> {
    let runtime = Runtime::new()?;
    let plugin = Plugin::builtin(&runtime, "memory").await?;
    let backend = plugin.open(vec![], Grants::default()).await?;

    let path = "dev/terraform.tfstate";
    let version = backend
        .write(path, br#"{"serial":1}"#.to_vec(), Precondition::Absent)
        .await?;
    let state = backend.read(path).await?;
    assert_eq!(state.version, version);
    println!("{path}: {} bytes, version {version}", state.data.len());

    // A second create-only write is refused: someone else's state is never overwritten.
    let refused = backend
        .write(path, b"{}".to_vec(), Precondition::Absent)
        .await;
    println!("second create: {}", refused.unwrap_err());
    Ok(())
}
