//! `IntOrString` amounts (`maxSurge: 1`, `maxUnavailable: "25%"`): parsing and scaling
//! against a replica count, rounding as Kubernetes does (surge up, unavailable down).

use serde_json::Value;

/// An absolute count or a percentage of a total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntOrPercent {
    /// A count.
    Int(u32),
    /// A percentage (`25%`).
    Percent(u32),
}

impl IntOrPercent {
    /// Parses a JSON integer (at least 0) or a string `N%`; the error says what is wrong.
    pub fn parse(value: &Value) -> Result<Self, String> {
        if let Some(n) = value.as_i64() {
            return u32::try_from(n)
                .map(Self::Int)
                .map_err(|_| format!("{n}: must be greater than or equal to 0"));
        }
        let text = value.as_str().unwrap_or_default();
        let percent = text
            .strip_suffix('%')
            .and_then(|digits| digits.parse::<u32>().ok());
        match percent {
            Some(p) => Ok(Self::Percent(p)),
            None => Err(format!(
                "{text:?}: a valid percent string must be a numeric string followed by an ending '%'"
            )),
        }
    }

    /// The amount out of `total`, a percentage rounded up or down.
    pub fn scaled(self, total: u32, round_up: bool) -> u32 {
        match self {
            Self::Int(n) => n,
            Self::Percent(p) => {
                let product = u64::from(p) * u64::from(total);
                let value = if round_up {
                    product.div_ceil(100)
                } else {
                    product / 100
                };
                u32::try_from(value).unwrap_or(u32::MAX)
            }
        }
    }

    /// Whether it is zero whatever the total.
    pub fn is_zero(self) -> bool {
        matches!(self, Self::Int(0) | Self::Percent(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_and_percentages_parse_and_scale_like_kubernetes() {
        let surge = IntOrPercent::parse(&json!("25%")).ok();
        assert_eq!(surge, Some(IntOrPercent::Percent(25)));
        assert_eq!(surge.map(|s| s.scaled(10, true)), Some(3));
        assert_eq!(surge.map(|s| s.scaled(10, false)), Some(2));
        assert_eq!(IntOrPercent::parse(&json!(2)), Ok(IntOrPercent::Int(2)));
        assert!(IntOrPercent::parse(&json!(-1)).is_err());
        assert!(IntOrPercent::parse(&json!("25")).is_err());
        assert!(IntOrPercent::parse(&json!("x%")).is_err());
        assert!(IntOrPercent::Percent(0).is_zero());
    }
}
