//! A plugin's stdout and stderr: logged at debug level, and the last few KiB kept so that a
//! crash report can quote the panic message.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// How much of a plugin's stdout/stderr is kept to explain a crash.
const OUTPUT_TAIL: usize = 4096;

/// What one instance printed.
#[derive(Clone, Default)]
pub(crate) struct GuestOutput {
    tail: Arc<Mutex<Vec<u8>>>,
}

impl GuestOutput {
    /// Takes what the plugin printed since the last call, trimmed.
    pub(crate) fn take(&self) -> String {
        let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(&tail).trim().to_string();
        tail.clear();
        text
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        tracing::debug!(
            target: "stateplug::plugin_output",
            "{}",
            stateplug_sdk::text::untrusted(String::from_utf8_lossy(buf).trim_end())
        );
        let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        tail.extend_from_slice(buf);
        if tail.len() > OUTPUT_TAIL {
            let excess = tail.len() - OUTPUT_TAIL;
            tail.drain(..excess);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
