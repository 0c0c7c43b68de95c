//! The guest's stdout and stderr: WASI output streams that write straight into the
//! container's [`LogBuffer`].
//!
//! Writing is synchronous and never fails: the log buffer is bounded and drops old lines
//! instead of pushing back on the guest, so a chatty guest cannot stall itself or the
//! host. A persisted log also appends to its file through a buffered writer flushed once
//! per guest write (a page-cache write, not a sync); a file error only turns that log
//! memory-only.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::logbuf::{LineSplitter, LogBuffer};

/// How much the guest may write per `check-write` permit.
const WRITE_PERMIT: usize = 64 << 10;

/// One output stream (stdout or stderr) of one container run. Every stream handle the
/// guest opens shares the same splitter; the last one dropped (with the store) flushes a
/// trailing partial line.
#[derive(Clone)]
pub struct LogSink {
    splitter: Arc<Mutex<LineSplitter>>,
}

impl LogSink {
    /// A sink writing lines into `buffer`.
    pub fn new(buffer: LogBuffer) -> Self {
        Self {
            splitter: Arc::new(Mutex::new(LineSplitter::new(buffer))),
        }
    }

    fn write_bytes(&self, bytes: &[u8]) {
        let mut splitter = self
            .splitter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        splitter.write(bytes);
    }
}

impl IsTerminal for LogSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogSink {
    async fn ready(&mut self) {}
}

impl OutputStream for LogSink {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl AsyncWrite for LogSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
