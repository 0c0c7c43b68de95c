//! Image references: what a container's `image:` may say.

use wasmfleet_protocol::names;

use super::ModuleError;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// `NAME:TAG` (a bare `NAME` means `NAME:latest`).
    Tagged {
        /// The module name.
        name: String,
        /// The tag.
        tag: String,
    },
    /// `sha256:HEX`: a module by content.
    Digest(String),
}

/// Parses `NAME[:TAG]` or `sha256:HEX`.
pub fn parse_image(image: &str) -> Result<ImageRef, ModuleError> {
    let invalid = || ModuleError::InvalidImage(image.to_owned());
    if let Some(hex) = image.strip_prefix("sha256:") {
        names::validate_digest_hex(hex).map_err(|_| invalid())?;
        return Ok(ImageRef::Digest(hex.to_owned()));
    }
    let (name, tag) = image.split_once(':').unwrap_or((image, "latest"));
    names::validate_module_name(name).map_err(|_| invalid())?;
    names::validate_tag(tag).map_err(|_| invalid())?;
    Ok(ImageRef::Tagged {
        name: name.to_owned(),
        tag: tag.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_means_latest() {
        assert_eq!(
            parse_image("hello").ok(),
            Some(ImageRef::Tagged {
                name: "hello".into(),
                tag: "latest".into()
            })
        );
    }

    #[test]
    fn name_and_tag_are_split_at_the_colon() {
        assert_eq!(
            parse_image("hello:v1").ok(),
            Some(ImageRef::Tagged {
                name: "hello".into(),
                tag: "v1".into()
            })
        );
    }

    #[test]
    fn a_digest_reference_names_content() {
        let hex = "ab".repeat(32);
        assert_eq!(
            parse_image(&format!("sha256:{hex}")).ok(),
            Some(ImageRef::Digest(hex))
        );
    }

    #[test]
    fn malformed_references_are_refused() {
        for bad in ["", "Hello", "a/b:c", "x:y:z", "sha256:abc", "hello:", ":v1"] {
            assert!(parse_image(bad).is_err(), "{bad:?}");
        }
    }
}
