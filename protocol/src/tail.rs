//! Fields appended at the very end of a message, readable by old and new peers alike.
//!
//! postcard is not self-describing, but a message's last field ends the payload
//! (`Envelope::V1(Message::X(x))` puts `x` last, and `x`'s last field last), so:
//! - an old reader of a newer payload stops before the appended bytes, and
//!   `postcard::from_bytes` ignores bytes left over (`old_readers_ignore_an_appended_tail`);
//! - a new reader of an older payload meets the end of the input where the field would
//!   start: a field read with [`or_default`] then takes its default instead of failing
//!   (`new_readers_default_a_missing_tail`).
//!
//! Use it only for a field that is the last one of a struct that is itself the last thing
//! in its message (the tests of each such message pin that), and append later fields after
//! it the same way.

use serde::{Deserialize, Deserializer};

/// Reads a trailing field, or its default when the payload ended before it.
pub fn or_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    // The only way this field can fail to decode is an older sender's payload that ends
    // before it (anything after it is ignored by design), so a failure means "absent".
    Ok(T::deserialize(deserializer).unwrap_or_default())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Old {
        a: u32,
        b: String,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct New {
        a: u32,
        b: String,
        #[serde(default, deserialize_with = "super::or_default")]
        c: Vec<u16>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum OldMessage {
        X(u8),
        Y(Old),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum NewMessage {
        X(u8),
        Y(New),
    }

    #[test]
    fn old_readers_ignore_an_appended_tail() {
        let new = NewMessage::Y(New {
            a: 7,
            b: "hi".into(),
            c: vec![30080, 443],
        });
        let bytes = postcard::to_stdvec(&new).unwrap();
        let old: OldMessage = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(
            old,
            OldMessage::Y(Old {
                a: 7,
                b: "hi".into()
            })
        );
    }

    #[test]
    fn new_readers_default_a_missing_tail() {
        let old = OldMessage::Y(Old {
            a: 7,
            b: "hi".into(),
        });
        let bytes = postcard::to_stdvec(&old).unwrap();
        let new: NewMessage = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(
            new,
            NewMessage::Y(New {
                a: 7,
                b: "hi".into(),
                c: vec![]
            })
        );
    }
}
