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
    parse(quantity)?
        .in_units(0)
        .ok_or_else(|| InvalidQuantity(quantity.to_owned()))
}

/// CPU quantity in millicores (`500m` = 500, `1` = 1000, `0.25` = 250), rounded up.
pub fn cpu_millis(quantity: &str) -> Result<u64, InvalidQuantity> {
    parse(quantity)?
        .in_units(3)
        .ok_or_else(|| InvalidQuantity(quantity.to_owned()))
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

/// A quantity, exactly: `digits × 10^exponent × binary`. Decimal arithmetic, not
/// floating point, so `700m` is 700 millicores (floats made it 701; found by the
/// `selectors` fuzz target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Exact {
    digits: u128,
    exponent: i32,
    binary: u128,
}

impl Exact {
    /// The value in units of `10^-unit_exponent` (0: bytes, 3: millicores), rounded up;
    /// `None` when it does not fit in a `u64`.
    fn in_units(self, unit_exponent: i32) -> Option<u64> {
        let scaled = self.digits.checked_mul(self.binary)?;
        let exponent = self.exponent + unit_exponent;
        let power = 10_u128.checked_pow(exponent.unsigned_abs());
        let value = if exponent >= 0 {
            scaled.checked_mul(power?)?
        } else {
            // Beyond 10^38 any positive value is a tiny fraction, which rounds up to 1.
            power.map_or(u128::from(scaled > 0), |divisor| scaled.div_ceil(divisor))
        };
        u64::try_from(value).ok()
    }
}

/// The suffixes Kubernetes accepts, binary ones first so `Ki` wins over `k`-like ones:
/// (suffix, decimal exponent, binary multiplier).
const SUFFIXES: [(&str, i32, u128); 15] = [
    ("Ki", 0, 1 << 10),
    ("Mi", 0, 1 << 20),
    ("Gi", 0, 1 << 30),
    ("Ti", 0, 1 << 40),
    ("Pi", 0, 1 << 50),
    ("Ei", 0, 1 << 60),
    ("n", -9, 1),
    ("u", -6, 1),
    ("m", -3, 1),
    ("k", 3, 1),
    ("M", 6, 1),
    ("G", 9, 1),
    ("T", 12, 1),
    ("P", 15, 1),
    ("E", 18, 1),
];

/// At most this many significant digits (the most a `u128` always holds).
const MAX_DIGITS: usize = 38;

/// Reads `[+]DIGITS[.DIGITS][(e|E)[+|-]DIGITS][SUFFIX]`.
fn parse(quantity: &str) -> Result<Exact, InvalidQuantity> {
    let invalid = || InvalidQuantity(quantity.to_owned());
    let text = quantity.trim();
    let (number, suffix_exponent, binary) = SUFFIXES
        .iter()
        .find_map(|&(suffix, exp, bin)| text.strip_suffix(suffix).map(|n| (n, exp, bin)))
        .unwrap_or((text, 0, 1));
    let number = number.strip_prefix('+').unwrap_or(number);
    let (mantissa, exponent) = match number.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i16>().map_err(|_| invalid())?),
        None => (number, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let is_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.len() + fraction.len() == 0 || !is_digits(whole) || !is_digits(fraction) {
        return Err(invalid());
    }
    let fraction = fraction.trim_end_matches('0');
    let significant = format!("{whole}{fraction}");
    let significant = significant.trim_start_matches('0');
    if significant.len() > MAX_DIGITS {
        return Err(invalid());
    }
    let digits = if significant.is_empty() {
        0
    } else {
        significant.parse::<u128>().map_err(|_| invalid())?
    };
    let fraction_len = i32::try_from(fraction.len()).map_err(|_| invalid())?;
    Ok(Exact {
        digits,
        exponent: i32::from(exponent) + suffix_exponent - fraction_len,
        binary,
    })
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

    /// Found by the `selectors` fuzz target: floating point made `700m` 701 millicores.
    #[test]
    fn quantities_are_exact() {
        assert_eq!(cpu_millis("700m"), Ok(700));
        assert_eq!(cpu_millis("0.7"), Ok(700));
        assert_eq!(cpu_millis("0.0001"), Ok(1));
        assert_eq!(memory_bytes("0.1Ki"), Ok(103));
        assert_eq!(memory_bytes("1.1G"), Ok(1_100_000_000));
        assert_eq!(memory_bytes("16Ei"), Err(InvalidQuantity("16Ei".into())));
        assert_eq!(memory_bytes("15Ei"), Ok(15 << 60));
        assert_eq!(memory_bytes("1e-50"), Ok(1));
        assert_eq!(memory_bytes("0e5"), Ok(0));
    }

    #[test]
    fn garbage_and_negative_quantities_are_refused() {
        for bad in [
            "", "abc", "-1Mi", "Mi", "1Xi", "1..2", "1 Mi", "1e", "1e99999", ".", "1e3.5",
        ] {
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
