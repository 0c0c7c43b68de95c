//! Modules uploaded in parts: a module larger than one MQTT packet (the embedded broker's
//! is 16 MiB) is published as parts `1..=n` of `wf/v1/modules/NAME/TAG/part/I/N`, in any
//! order; once every part is in, the worker stores them, joined, as one module. Pure, on
//! the clock it is given; owned by the front door's worker.
//!
//! An upload is one client's (its id or response topic) `name:tag`. Limits: at most
//! [`MAX_PARTS`] parts and [`MAX_MODULE_SIZE`] bytes per module, [`MAX_PENDING_BYTES`]
//! held for all unfinished uploads together, and [`IDLE`] between two parts of one upload
//! (then it is forgotten and its parts must be sent again). A part sent again replaces the
//! first copy (a QoS 1 redelivery); a part 1 with another count starts the upload over.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use wasmfleet_protocol::topic::Part;

use crate::modules::MAX_MODULE_SIZE;

/// The most parts a module may be sent in.
pub const MAX_PARTS: u32 = 64;

/// The most bytes all unfinished uploads may hold at once.
pub const MAX_PENDING_BYTES: usize = 2 * MAX_MODULE_SIZE;

/// How long an upload waits for its next part.
pub const IDLE: Duration = Duration::from_secs(120);

/// Who uploads what: the client and the module's `name:tag`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UploadKey {
    /// The client id, or the response topic.
    pub source: String,
    /// `name:tag`.
    pub module: String,
}

/// What a part did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Kept; the upload waits for more.
    Waiting {
        /// Parts in so far.
        received: u32,
        /// Bytes in so far.
        bytes: usize,
    },
    /// The last part: the whole module, joined in order.
    Complete(Bytes),
}

#[derive(Debug)]
struct Upload {
    parts: Vec<Option<Bytes>>,
    bytes: usize,
    touched: Instant,
}

/// The unfinished uploads.
#[derive(Debug, Default)]
pub struct Uploads {
    uploads: HashMap<UploadKey, Upload>,
    pending: usize,
}

impl Uploads {
    /// Takes part `part` of the upload `key`, at `now`; `Err` says why it was refused (the
    /// upload is then forgotten, except when only this part was wrong).
    pub fn add(
        &mut self,
        key: UploadKey,
        part: Part,
        bytes: Bytes,
        now: Instant,
    ) -> Result<Progress, String> {
        self.expire(now);
        if part.count > MAX_PARTS {
            return Err(format!(
                "{} parts is more than the {MAX_PARTS} a module may be sent in",
                part.count
            ));
        }
        let restart = match self.uploads.get(&key) {
            Some(upload) => part.index == 1 && upload.parts.len() != part.count as usize,
            None => true,
        };
        if restart {
            // Parts come in any order: an upload starts with whichever arrives first.
            self.forget(&key);
            let upload = Upload {
                parts: vec![None; part.count as usize],
                bytes: 0,
                touched: now,
            };
            self.uploads.insert(key.clone(), upload);
        }
        let progress = self.put(&key, part, bytes, now);
        if self
            .uploads
            .get(&key)
            .is_some_and(|upload| upload.bytes == 0)
        {
            self.uploads.remove(&key);
        }
        progress
    }

    /// Puts one part into an upload that exists and has `part.count` parts.
    fn put(
        &mut self,
        key: &UploadKey,
        part: Part,
        bytes: Bytes,
        now: Instant,
    ) -> Result<Progress, String> {
        let Some(upload) = self.uploads.get_mut(key) else {
            return Err("the upload was forgotten".to_owned());
        };
        if upload.parts.len() != part.count as usize {
            return Err(format!(
                "part {} of {} does not belong to the upload in progress, which has {} \
                 parts: send part 1 of {} to start over",
                part.index,
                part.count,
                upload.parts.len(),
                part.count
            ));
        }
        let slot = part.index as usize - 1;
        let replaced = upload.parts[slot].as_ref().map_or(0, Bytes::len);
        let module_bytes = upload.bytes - replaced + bytes.len();
        if module_bytes > MAX_MODULE_SIZE {
            self.forget(key);
            return Err(format!(
                "the parts add up to more than the {MAX_MODULE_SIZE} byte module limit; \
                 the upload was dropped"
            ));
        }
        if self.pending - replaced + bytes.len() > MAX_PENDING_BYTES {
            return Err(format!(
                "the server holds {} bytes of unfinished uploads already (at most \
                 {MAX_PENDING_BYTES}); send this part again later",
                self.pending
            ));
        }
        self.pending = self.pending - replaced + bytes.len();
        upload.bytes = module_bytes;
        upload.parts[slot] = Some(bytes);
        upload.touched = now;
        let received = upload.parts.iter().filter(|p| p.is_some()).count();
        if received < upload.parts.len() {
            return Ok(Progress::Waiting {
                received: u32::try_from(received).unwrap_or(u32::MAX),
                bytes: module_bytes,
            });
        }
        let Some(upload) = self.uploads.remove(key) else {
            return Err("the upload was forgotten".to_owned());
        };
        self.pending -= upload.bytes;
        let mut whole = BytesMut::with_capacity(upload.bytes);
        upload
            .parts
            .iter()
            .flatten()
            .for_each(|p| whole.extend_from_slice(p));
        Ok(Progress::Complete(whole.freeze()))
    }

    /// Forgets uploads idle for longer than [`IDLE`].
    fn expire(&mut self, now: Instant) {
        let idle: Vec<UploadKey> = self
            .uploads
            .iter()
            .filter(|(_, upload)| now.duration_since(upload.touched) > IDLE)
            .map(|(key, _)| key.clone())
            .collect();
        for key in idle {
            tracing::info!(source = %key.source, module = %key.module, "forgetting an unfinished module upload after {IDLE:?} without a part");
            self.forget(&key);
        }
    }

    fn forget(&mut self, key: &UploadKey) {
        if let Some(upload) = self.uploads.remove(key) {
            self.pending -= upload.bytes;
        }
    }

    /// Bytes held for unfinished uploads.
    pub fn pending_bytes(&self) -> usize {
        self.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(source: &str) -> UploadKey {
        UploadKey {
            source: source.into(),
            module: "big:v1".into(),
        }
    }

    fn part(index: u32, count: u32) -> Part {
        Part { index, count }
    }

    #[test]
    fn parts_in_any_order_join_in_order_once_all_are_in() {
        let mut uploads = Uploads::default();
        let t = Instant::now();
        let add = |u: &mut Uploads, i, text: &'static str| {
            u.add(key("me"), part(i, 3), Bytes::from(text), t)
        };
        assert_eq!(
            add(&mut uploads, 2, "bb"),
            Ok(Progress::Waiting {
                received: 1,
                bytes: 2
            })
        );
        // A redelivered part replaces its first copy.
        assert_eq!(
            add(&mut uploads, 2, "BB"),
            Ok(Progress::Waiting {
                received: 1,
                bytes: 2
            })
        );
        add(&mut uploads, 3, "c").unwrap();
        assert_eq!(uploads.pending_bytes(), 3);
        assert_eq!(
            add(&mut uploads, 1, "a"),
            Ok(Progress::Complete(Bytes::from("aBBc")))
        );
        assert_eq!(uploads.pending_bytes(), 0);
    }

    #[test]
    fn uploads_of_two_clients_do_not_mix_and_a_new_count_starts_over() {
        let mut uploads = Uploads::default();
        let t = Instant::now();
        uploads
            .add(key("a"), part(1, 2), Bytes::from("a1"), t)
            .unwrap();
        uploads
            .add(key("b"), part(1, 2), Bytes::from("b1"), t)
            .unwrap();
        assert_eq!(
            uploads.add(key("b"), part(2, 2), Bytes::from("b2"), t),
            Ok(Progress::Complete(Bytes::from("b1b2")))
        );
        let wrong = uploads.add(key("a"), part(2, 3), Bytes::from("x"), t);
        assert!(
            wrong
                .unwrap_err()
                .contains("send part 1 of 3 to start over")
        );
        uploads
            .add(key("a"), part(1, 1), Bytes::from("new"), t)
            .unwrap();
        assert_eq!(uploads.pending_bytes(), 0);
    }

    #[test]
    fn limits_refuse_with_reasons_and_idle_uploads_are_forgotten() {
        let mut uploads = Uploads::default();
        let t = Instant::now();
        let too_many = uploads.add(key("me"), part(1, MAX_PARTS + 1), Bytes::from("x"), t);
        assert!(too_many.unwrap_err().contains("more than the 64"));

        let half = Bytes::from(vec![0u8; MAX_MODULE_SIZE / 2 + 1]);
        uploads.add(key("me"), part(1, 2), half.clone(), t).unwrap();
        let over = uploads.add(key("me"), part(2, 2), half.clone(), t);
        assert!(over.unwrap_err().contains("module limit"));
        assert_eq!(uploads.pending_bytes(), 0, "the upload was dropped");

        // All uploads together hold at most MAX_PENDING_BYTES.
        let big = Bytes::from(vec![0u8; MAX_MODULE_SIZE / 2]);
        for source in ["a", "b", "c", "d"] {
            uploads
                .add(key(source), part(1, 3), big.clone(), t)
                .unwrap();
        }
        let busy = uploads.add(key("e"), part(1, 3), big.clone(), t);
        assert!(busy.unwrap_err().contains("send this part again later"));

        let later = t + IDLE + Duration::from_secs(1);
        uploads.add(key("e"), part(1, 3), big, later).unwrap();
        assert_eq!(uploads.pending_bytes(), MAX_MODULE_SIZE / 2);
    }
}
