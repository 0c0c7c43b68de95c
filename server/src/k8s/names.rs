//! Generated names: Kubernetes' "safe" alphabet (no vowels, no look-alike digits, so no
//! accidental words) for `generateName` suffixes and template hashes.

/// The characters of generated name parts.
pub const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `prefix` plus five random safe characters (`generateName`).
pub fn generate(prefix: &str) -> String {
    let suffix: String = (0..5)
        .map(|_| char::from(SAFE_ALPHABET[rand::random_range(0..SAFE_ALPHABET.len())]))
        .collect();
    format!("{prefix}{suffix}")
}

/// A number in the safe alphabet, least significant first (template hashes).
pub fn safe_encode(mut value: u32) -> String {
    let base = SAFE_ALPHABET.len() as u32;
    let mut text = String::new();
    loop {
        text.push(char::from(SAFE_ALPHABET[(value % base) as usize]));
        value /= base;
        if value == 0 {
            return text;
        }
    }
}

/// The hash of a pod template (`pod-template-hash`, `controller-revision-hash`): FNV-1a over
/// its canonical JSON (object keys sorted), in the safe alphabet.
pub fn template_hash(template: &serde_json::Value) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in template.to_string().bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    safe_encode(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_parts_use_the_safe_alphabet() {
        let name = generate("web-");
        assert_eq!(name.len(), 9);
        assert!(name[4..].bytes().all(|b| SAFE_ALPHABET.contains(&b)));
        assert_eq!(safe_encode(0), "b");
        assert_eq!(safe_encode(27), "bc");
    }
}
