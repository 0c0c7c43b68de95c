//! Validation of names that end up in topics, object keys and file names.
//!
//! Node names follow Kubernetes' DNS-1123 subdomain rule, which also guarantees they can
//! never contain the MQTT wildcards `+` and `#` or a level separator `/`.

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {name:?}: {rule}")]
pub struct InvalidName {
    /// What kind of name it was.
    pub what: &'static str,
    /// The offending name.
    pub name: String,
    /// The rule it broke.
    pub rule: &'static str,
}

const DNS_SUBDOMAIN_RULE: &str = "must be at most 253 lowercase alphanumeric characters, '-' or '.', \
     and start and end with an alphanumeric character";

/// Checks a pod uid that names a topic level: 1 to [`crate::pod::MAX_UID_LEN`] ASCII
/// letters, digits or `-` (so never `/`, `+` or `#`).
pub fn validate_uid(uid: &str) -> Result<(), InvalidName> {
    let ok = !uid.is_empty()
        && uid.len() <= crate::pod::MAX_UID_LEN
        && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(InvalidName {
            what: "pod uid",
            name: uid.to_owned(),
            rule: "must be 1 to 64 ASCII letters, digits or '-'",
        })
    }
}

/// Checks a DNS-1123 subdomain (node names, pod names, namespace names).
pub fn validate_dns_subdomain(what: &'static str, name: &str) -> Result<(), InvalidName> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(InvalidName {
            what,
            name: name.to_owned(),
            rule: DNS_SUBDOMAIN_RULE,
        })
    }
}

/// Checks a node name.
pub fn validate_node_name(name: &str) -> Result<(), InvalidName> {
    validate_dns_subdomain("node name", name)
}

/// Checks a module name (the `NAME` of `NAME:TAG`): like an image repository, lowercase
/// alphanumerics with `-`, `_` and `.`.
pub fn validate_module_name(name: &str) -> Result<(), InvalidName> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        })
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(InvalidName {
            what: "module name",
            name: name.to_owned(),
            rule: "must be at most 128 lowercase alphanumeric characters, '-', '_' or '.', \
                   starting with an alphanumeric character",
        })
    }
}

/// Checks a module tag (the `TAG` of `NAME:TAG`), with the OCI tag rule.
pub fn validate_tag(tag: &str) -> Result<(), InvalidName> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(InvalidName {
            what: "module tag",
            name: tag.to_owned(),
            rule: "must be at most 128 alphanumeric characters, '-', '_' or '.'",
        })
    }
}

/// Checks a sha256 digest written as 64 lowercase hex characters (no `sha256:` prefix).
pub fn validate_digest_hex(digest: &str) -> Result<(), InvalidName> {
    if digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(InvalidName {
            what: "digest",
            name: digest.to_owned(),
            rule: "must be 64 lowercase hexadecimal characters",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_that_could_break_topics_are_refused() {
        for bad in [
            "",
            "a/b",
            "pi+",
            "#",
            "Pi-1",
            "-pi",
            "pi-",
            "pi_1",
            &"a".repeat(254),
        ] {
            assert!(validate_node_name(bad).is_err(), "{bad:?} was accepted");
        }
        for good in ["pi-1", "node.example.com", "a", "x86-64"] {
            assert!(validate_node_name(good).is_ok(), "{good:?} was refused");
        }
    }

    #[test]
    fn module_names_and_tags_follow_image_rules() {
        assert!(validate_module_name("hello_world-2.x").is_ok());
        assert!(validate_module_name("Hello").is_err());
        assert!(validate_module_name("a/b").is_err());
        assert!(validate_tag("v1.0-RC_1").is_ok());
        assert!(validate_tag(".hidden").is_err());
        assert!(validate_tag("a+b").is_err());
    }

    #[test]
    fn digests_are_64_lowercase_hex_characters() {
        assert!(validate_digest_hex(&"ab".repeat(32)).is_ok());
        assert!(validate_digest_hex(&"AB".repeat(32)).is_err());
        assert!(validate_digest_hex("abc").is_err());
    }
}
