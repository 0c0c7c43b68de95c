//! Parsing Kubernetes resource quantities (`128Mi`, `1G`, `500m`, `0.5`, `1e3`) into the
//! integer units wasmfleet counts in: bytes for memory, millicores for CPU; and resource
//! lists as flags write them (`cpu=100m,memory=256Mi`, like the kubelet's
//! `--system-reserved`).

/// Why a quantity could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {0:?}")]
pub struct InvalidQuantity(pub String);

/// Memory quantity in bytes (fractions of a byte round up, as Kubernetes does).
pub fn memory_bytes(quantity: &str) -> Result<u64, InvalidQuantity> {
    let value = parse(quantity)?;
    to_u64(value.ceil(), quantity)
}

/// CPU quantity in millicores (`500m` = 500, `1` = 1000, `0.25` = 250), rounded up.
pub fn cpu_millis(quantity: &str) -> Result<u64, InvalidQuantity> {
    let value = parse(quantity)?;
    to_u64((value * 1000.0).ceil(), quantity)
}

/// A parser of one resource's quantities.
pub type Parser = fn(&str) -> Result<u64, InvalidQuantity>;

/// The resources wasmfleet counts, with the parser of each (bytes, millicores).
pub const RESOURCES: [(&str, Parser); 2] = [("memory", memory_bytes), ("cpu", cpu_millis)];

/// Formats bytes the way kubelets report memory: in Ki when it divides evenly.
pub fn format_memory(bytes: u64) -> String {
    if bytes.is_multiple_of(1024) {
        format!("{}Ki", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

/// Formats millicores: whole cores as an integer, otherwise with the `m` suffix.
pub fn format_cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// Amounts of CPU and memory, each optional (a flag or a spec may name only one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceAmounts {
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
    /// CPU in millicores.
    pub cpu_millis: Option<u64>,
}

/// Why a resource list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidResourceList {
    /// An entry is not `name=quantity`.
    #[error("{0:?} is not name=quantity (e.g. cpu=100m,memory=256Mi)")]
    NotAPair(String),
    /// A resource other than `cpu` and `memory`.
    #[error("unknown resource {0:?}: only cpu and memory are counted")]
    UnknownResource(String),
    /// A resource named twice.
    #[error("resource {0:?} is given twice")]
    Duplicate(String),
    /// A quantity that does not parse.
    #[error(transparent)]
    Quantity(#[from] InvalidQuantity),
}

/// Reads `cpu=100m,memory=256Mi` (either may be left out; an empty string names neither).
pub fn resource_list(list: &str) -> Result<ResourceAmounts, InvalidResourceList> {
    let mut amounts = ResourceAmounts::default();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, value) = entry
            .split_once('=')
            .ok_or_else(|| InvalidResourceList::NotAPair(entry.to_owned()))?;
        let duplicate = || InvalidResourceList::Duplicate(name.to_owned());
        match name.trim() {
            "memory" if amounts.memory_bytes.is_some() => return Err(duplicate()),
            "cpu" if amounts.cpu_millis.is_some() => return Err(duplicate()),
            "memory" => amounts.memory_bytes = Some(memory_bytes(value)?),
            "cpu" => amounts.cpu_millis = Some(cpu_millis(value)?),
            other => return Err(InvalidResourceList::UnknownResource(other.to_owned())),
        }
    }
    Ok(amounts)
}

fn to_u64(value: f64, original: &str) -> Result<u64, InvalidQuantity> {
    // 2^64 as f64: anything at or above it does not fit.
    if value.is_finite() && (0.0..18_446_744_073_709_551_616.0).contains(&value) {
        // Truncation is exact here: `value` is already a whole number in range.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(value as u64)
    } else {
        Err(InvalidQuantity(original.to_owned()))
    }
}

/// The suffixes Kubernetes accepts, longest first so `Ki` wins over `k`-like prefixes.
const SUFFIXES: [(&str, f64); 13] = [
    ("Ki", 1024.0),
    ("Mi", 1_048_576.0),
    ("Gi", 1_073_741_824.0),
    ("Ti", 1_099_511_627_776.0),
    ("Pi", 1_125_899_906_842_624.0),
    ("Ei", 1_152_921_504_606_846_976.0),
    ("n", 1e-9),
    ("u", 1e-6),
    ("m", 1e-3),
    ("k", 1e3),
    ("M", 1e6),
    ("G", 1e9),
    ("T", 1e12),
];

fn parse(quantity: &str) -> Result<f64, InvalidQuantity> {
    let invalid = || InvalidQuantity(quantity.to_owned());
    let text = quantity.trim();
    if text.is_empty() || text.starts_with('-') {
        return Err(invalid());
    }
    let (number, multiplier) = split_suffix(text);
    if number.is_empty()
        || !number
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return Err(invalid());
    }
    let value: f64 = number.parse().map_err(|_| invalid())?;
    if value < 0.0 {
        return Err(invalid());
    }
    Ok(value * multiplier)
}

fn split_suffix(text: &str) -> (&str, f64) {
    for (suffix, multiplier) in SUFFIXES {
        if let Some(number) = text.strip_suffix(suffix) {
            return (number, multiplier);
        }
    }
    for (suffix, multiplier) in [("P", 1e15), ("E", 1e18)] {
        if let Some(number) = text.strip_suffix(suffix) {
            return (number, multiplier);
        }
    }
    (text, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_memory_suffixes_are_understood() {
        assert_eq!(memory_bytes("128Mi"), Ok(128 << 20));
        assert_eq!(memory_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(memory_bytes("4096Ki"), Ok(4 << 20));
        assert_eq!(memory_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(memory_bytes("500M"), Ok(500_000_000));
        assert_eq!(memory_bytes("12345"), Ok(12345));
        assert_eq!(memory_bytes("1e3"), Ok(1000));
        assert_eq!(memory_bytes("1.5Gi"), Ok(3 << 29));
    }

    #[test]
    fn cpu_is_counted_in_millicores() {
        assert_eq!(cpu_millis("500m"), Ok(500));
        assert_eq!(cpu_millis("1"), Ok(1000));
        assert_eq!(cpu_millis("0.25"), Ok(250));
        assert_eq!(cpu_millis("2"), Ok(2000));
    }

    #[test]
    fn garbage_and_negative_quantities_are_refused() {
        for bad in ["", "abc", "-1Mi", "Mi", "1Xi", "1..2", "1 Mi"] {
            assert!(memory_bytes(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn resource_lists_name_cpu_and_memory_in_any_order() {
        let both = ResourceAmounts {
            memory_bytes: Some(256 << 20),
            cpu_millis: Some(100),
        };
        assert_eq!(resource_list("cpu=100m,memory=256Mi"), Ok(both));
        assert_eq!(resource_list(" memory=256Mi , cpu=0.1 "), Ok(both));
        assert_eq!(
            resource_list("memory=1Gi"),
            Ok(ResourceAmounts {
                memory_bytes: Some(1 << 30),
                cpu_millis: None
            })
        );
        assert_eq!(resource_list(""), Ok(ResourceAmounts::default()));
    }

    #[test]
    fn bad_resource_lists_say_what_is_wrong() {
        assert!(matches!(
            resource_list("cpu"),
            Err(InvalidResourceList::NotAPair(_))
        ));
        assert!(matches!(
            resource_list("gpu=1"),
            Err(InvalidResourceList::UnknownResource(_))
        ));
        assert!(matches!(
            resource_list("cpu=1,cpu=2"),
            Err(InvalidResourceList::Duplicate(_))
        ));
        assert!(matches!(
            resource_list("memory=lots"),
            Err(InvalidResourceList::Quantity(_))
        ));
    }

    #[test]
    fn formatting_uses_kubelet_units() {
        assert_eq!(format_memory(4 << 30), "4194304Ki");
        assert_eq!(format_memory(1000), "1000");
        assert_eq!(format_cpu(4000), "4");
        assert_eq!(format_cpu(1500), "1500m");
    }
}
