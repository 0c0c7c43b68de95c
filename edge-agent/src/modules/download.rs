//! One module download: request chunks, write them, verify, rename.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::Message;
use wasmfleet_protocol::blob::{BlobBody, BlobRequest, chunk_count};
use wasmfleet_protocol::pod::ModuleRef;
use wasmfleet_protocol::topic::Up;

use super::progress::{Progress, check_chunk, chunk_offset};
use super::{FetchError, FetchTimeouts, WINDOW};
use crate::link::Uplink;

/// Everything one download needs, borrowed from the fetcher.
pub(super) struct Job<'a> {
    pub(super) module: &'a ModuleRef,
    pub(super) dir: &'a Path,
    pub(super) uplink: &'a Uplink,
    pub(super) timeouts: FetchTimeouts,
    pub(super) shutdown: &'a CancellationToken,
}

/// What woke the download loop.
enum Wake {
    Reply(Option<BlobBody>),
    SessionChanged,
    RequestTimeout,
    Shutdown,
}

impl Job<'_> {
    /// Downloads the module into the cache and returns its path.
    pub(super) async fn run(
        &self,
        replies: mpsc::Receiver<BlobBody>,
    ) -> Result<PathBuf, FetchError> {
        let final_path = self.dir.join(format!("{}.wasm", self.digest()));
        if tokio::fs::metadata(&final_path)
            .await
            .is_ok_and(|m| m.len() == self.module.size)
        {
            return Ok(final_path);
        }
        let partial = self.dir.join(format!("{}.partial", self.digest()));
        let result = self.download_into(&partial, replies).await;
        let result = match result {
            Ok(()) => self.verify_and_rename(&partial, &final_path).await,
            Err(err) => Err(err),
        };
        if result.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        result.map(|()| final_path)
    }

    fn digest(&self) -> &str {
        &self.module.digest
    }

    async fn download_into(
        &self,
        partial: &Path,
        mut replies: mpsc::Receiver<BlobBody>,
    ) -> Result<(), FetchError> {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(partial)
            .await
            .map_err(|e| self.io(e))?;
        file.set_len(self.module.size)
            .await
            .map_err(|e| self.io(e))?;
        let mut progress = Progress::new(chunk_count(self.module.size));
        let mut sessions = self.uplink.sessions();
        let mut session = *sessions.borrow_and_update();
        let mut last_progress = Instant::now();
        while !progress.is_complete() {
            self.request_more(&mut progress);
            let wake = tokio::select! {
                () = self.shutdown.cancelled() => Wake::Shutdown,
                reply = replies.recv() => Wake::Reply(reply),
                changed = sessions.changed() => match changed {
                    Ok(()) => Wake::SessionChanged,
                    Err(_) => Wake::Shutdown,
                },
                () = tokio::time::sleep(self.timeouts.request) => Wake::RequestTimeout,
            };
            match wake {
                Wake::Shutdown | Wake::Reply(None) => return Err(FetchError::ShuttingDown),
                Wake::Reply(Some(body)) => {
                    if self.write_chunk(&mut file, &mut progress, body).await? {
                        last_progress = Instant::now();
                    }
                }
                // A new session (or none) lost whatever was in flight: ask again once connected.
                Wake::SessionChanged => {
                    let now = *sessions.borrow_and_update();
                    if now != session {
                        progress.forget_in_flight();
                        session = now;
                    }
                }
                Wake::RequestTimeout => {
                    progress.forget_in_flight();
                    self.check_stall(last_progress)?;
                }
            }
        }
        file.flush().await.map_err(|e| self.io(e))?;
        file.sync_all().await.map_err(|e| self.io(e))
    }

    /// Asks for more chunks when a session is up and the window has room.
    fn request_more(&self, progress: &mut Progress) {
        if !self.uplink.session().connected {
            return;
        }
        let chunks = progress.next_requests(WINDOW);
        if chunks.is_empty() {
            return;
        }
        let request = Message::BlobRequest(BlobRequest {
            digest: self.digest().to_owned(),
            chunks: chunks.clone(),
        });
        if let Err(err) = self.uplink.try_send(Up::BlobRequest, &request) {
            tracing::debug!(%err, digest = self.digest(), "cannot request chunks now; retrying later");
            progress.unrequest(&chunks);
        }
    }

    /// Writes one chunk; true if it was new.
    async fn write_chunk(
        &self,
        file: &mut tokio::fs::File,
        progress: &mut Progress,
        body: BlobBody,
    ) -> Result<bool, FetchError> {
        let (index, total, size, data) = match body {
            BlobBody::NotFound => return Err(FetchError::NotFound(self.digest().to_owned())),
            BlobBody::Chunk {
                index,
                total,
                size,
                data,
            } => (index, total, size, data),
        };
        check_chunk(self.module.size, index, total, size, data.len()).map_err(|why| {
            FetchError::BadChunk {
                digest: self.digest().to_owned(),
                why,
            }
        })?;
        if !progress.record(index) {
            return Ok(false);
        }
        file.seek(SeekFrom::Start(chunk_offset(index)))
            .await
            .map_err(|e| self.io(e))?;
        file.write_all(&data).await.map_err(|e| self.io(e))?;
        Ok(true)
    }

    fn check_stall(&self, last_progress: Instant) -> Result<(), FetchError> {
        let waited = last_progress.elapsed();
        if waited < self.timeouts.stall {
            return Ok(());
        }
        let state = if self.uplink.session().connected {
            "connected, the server did not answer"
        } else {
            "not connected to the server"
        };
        Err(FetchError::Timeout {
            digest: self.digest().to_owned(),
            waited: round_to_millis(waited),
            state,
        })
    }

    async fn verify_and_rename(&self, partial: &Path, final_path: &Path) -> Result<(), FetchError> {
        let actual = sha256_file(partial).await.map_err(|e| self.io(e))?;
        if actual != self.digest() {
            return Err(FetchError::DigestMismatch {
                expected: self.digest().to_owned(),
                actual,
            });
        }
        tokio::fs::rename(partial, final_path)
            .await
            .map_err(|e| self.io(e))
    }

    fn io(&self, err: std::io::Error) -> FetchError {
        FetchError::Io {
            digest: self.digest().to_owned(),
            why: err.to_string(),
        }
    }
}

/// Whole milliseconds read better in an error message than nanoseconds.
fn round_to_millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The hex sha256 of a file, read in 64 KiB pieces.
async fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
