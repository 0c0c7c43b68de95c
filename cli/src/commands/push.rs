//! `wasmfleet push FILE NAME:TAG`: uploads a module to the server's module store.
//!
//! The file is streamed (never read whole into memory) as the body of
//! `PUT /apis/wasmfleet.dev/v1/modules/{name}/tags/{tag}`. A progress bar goes to stderr
//! only when stderr is a terminal and the file is at least [`PROGRESS_MIN_BYTES`], so piped
//! output stays clean. On success it prints `pushed NAME:TAG sha256:<hex> (<size>)`.

use std::io::{Read as _, Write};
use std::path::Path;

use futures::TryStreamExt as _;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::io::ReaderStream;

use super::Session;
use super::check_name;
use crate::args::PushArgs;

/// Files smaller than this upload too fast for a progress bar to be worth drawing.
pub const PROGRESS_MIN_BYTES: u64 = 1024 * 1024;

/// The first bytes of every wasm binary (module or component).
const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// A module reference on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Module name.
    pub name: String,
    /// Tag (`latest` when omitted).
    pub tag: String,
}

/// Why the push could not start.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// `NAME:TAG` is malformed.
    #[error("invalid module reference {0:?}: expected NAME:TAG")]
    BadReference(String),
    /// The file is not readable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not wasm.
    #[error("{0} is not a wasm module or component (it does not start with \\0asm)")]
    NotWasm(String),
}

/// Parses `NAME:TAG` (or `NAME`, meaning `NAME:latest`).
pub fn parse_reference(text: &str) -> Result<Reference, PushError> {
    let bad = || PushError::BadReference(text.to_owned());
    let (name, tag) = text.split_once(':').unwrap_or((text, "latest"));
    let name = check_name(name).map_err(|_| bad())?;
    let tag = check_name(tag).map_err(|_| bad())?;
    if tag.contains(':') {
        return Err(bad());
    }
    Ok(Reference {
        name: name.to_owned(),
        tag: tag.to_owned(),
    })
}

/// Runs `push`.
pub async fn run(session: &Session, args: &PushArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let reference = parse_reference(&args.reference)?;
    let size = check_wasm_file(&args.file)?;
    let read_err = |source| PushError::Read {
        path: args.file.display().to_string(),
        source,
    };
    let file = tokio::fs::File::open(&args.file).await.map_err(read_err)?;
    let progress = progress_bar(size);
    let bar = progress.clone();
    let body = ReaderStream::new(file).inspect_ok(move |chunk| bar.inc(chunk.len() as u64));
    let path = super::modules::tag_path(&reference.name, &reference.tag);
    let result = session
        .client
        .put_bytes(
            &path,
            "application/wasm",
            size,
            reqwest::Body::wrap_stream(body),
        )
        .await;
    progress.finish_and_clear();
    let record = result?;
    let digest = record["digest"].as_str().unwrap_or("sha256:?");
    let stored_size = record["size"].as_u64().unwrap_or(size);
    writeln!(
        out,
        "pushed {}:{} {digest} ({})",
        reference.name,
        reference.tag,
        HumanBytes(stored_size)
    )?;
    Ok(())
}

/// Checks the magic bytes up front (a clear local error beats a rejected upload) and
/// returns the file size.
fn check_wasm_file(path: &Path) -> Result<u64, PushError> {
    let read_err = |source| PushError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let mut magic = [0u8; 4];
    let is_wasm = file.read_exact(&mut magic).is_ok() && &magic == WASM_MAGIC;
    if !is_wasm {
        return Err(PushError::NotWasm(path.display().to_string()));
    }
    Ok(file.metadata().map_err(read_err)?.len())
}

/// A byte progress bar on stderr; hidden for small files and when stderr is not a terminal
/// (indicatif's stderr target draws nothing then).
fn progress_bar(size: u64) -> ProgressBar {
    if size < PROGRESS_MIN_BYTES {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{spinner} pushing [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
    );
    if let Ok(style) = style {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_with_and_without_a_tag() {
        assert_eq!(
            parse_reference("hello:v1").ok(),
            Some(Reference {
                name: "hello".into(),
                tag: "v1".into()
            })
        );
        assert_eq!(
            parse_reference("hello").ok(),
            Some(Reference {
                name: "hello".into(),
                tag: "latest".into()
            })
        );
        for bad in ["", ":v1", "hello:", "a/b:v1", "a:b:c"] {
            assert!(parse_reference(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_wasm_files_are_pushed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wasm = dir.path().join("m.wasm");
        std::fs::write(&wasm, b"\0asm\x01\0\0\0").expect("write");
        assert_eq!(check_wasm_file(&wasm).ok(), Some(8));
        let text = dir.path().join("m.txt");
        std::fs::write(&text, b"hello").expect("write");
        assert!(matches!(check_wasm_file(&text), Err(PushError::NotWasm(_))));
        assert!(matches!(
            check_wasm_file(&dir.path().join("none")),
            Err(PushError::Read { .. })
        ));
    }
}
