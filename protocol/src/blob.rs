//! Content-addressed module transfer.
//!
//! An agent pulls a module by digest in chunks of at most [`crate::CHUNK_SIZE`] bytes,
//! asking only for the chunks it is missing, so an interrupted download resumes.

use serde::{Deserialize, Serialize};

/// An agent asks for some chunks of a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRequest {
    /// sha256 of the whole module, hex.
    pub digest: String,
    /// The chunk indices wanted; empty means all of them.
    pub chunks: Vec<u32>,
}

/// The server's answer to a [`BlobRequest`]: one message per chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobReply {
    /// sha256 of the whole module, hex.
    pub digest: String,
    /// A chunk, or the news that the module is unknown.
    pub body: BlobBody,
}

/// What a [`BlobReply`] carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobBody {
    /// One chunk of the module.
    Chunk {
        /// Its index.
        index: u32,
        /// How many chunks the module has.
        total: u32,
        /// The module's full size in bytes.
        size: u64,
        /// The chunk's bytes.
        data: Vec<u8>,
    },
    /// The server does not have this module.
    NotFound,
}

/// How many chunks a module of `size` bytes has.
pub fn chunk_count(size: u64) -> u32 {
    let chunk = crate::CHUNK_SIZE as u64;
    u32::try_from(size.div_ceil(chunk)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CHUNK_SIZE, MAX_MESSAGE_SIZE, Message, decode, encode};

    #[test]
    fn a_full_size_chunk_fits_in_one_message() {
        let reply = Message::BlobReply(BlobReply {
            digest: "ab".repeat(32),
            body: BlobBody::Chunk {
                index: 3,
                total: 4,
                size: 4 * CHUNK_SIZE as u64,
                data: vec![7; CHUNK_SIZE],
            },
        });
        let bytes = encode(&reply);
        assert!(bytes.len() < MAX_MESSAGE_SIZE);
        assert_eq!(decode(&bytes), Ok(reply));
    }

    #[test]
    fn chunk_count_rounds_up() {
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(CHUNK_SIZE as u64), 1);
        assert_eq!(chunk_count(CHUNK_SIZE as u64 + 1), 2);
    }
}
