//! Exact quantities. Every amount the API handles (hours, credits, vCPU
//! hours…) is a decimal with at most three fractional digits, so it is held as
//! an integer number of thousandths: sums never drift and comparisons are exact.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The largest magnitude accepted on input: 10^12 units.
pub const MAX_UNITS: i64 = 1_000_000_000_000;
const SCALE: i64 = 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("must be a decimal number with at most 3 fractional digits")]
    Malformed,
    #[error("must have at most 3 fractional digits")]
    TooPrecise,
    #[error("must not be negative")]
    Negative,
    #[error("must not exceed 1000000000000")]
    TooLarge,
}

/// A non-negative quantity in thousandths of a unit, at most 10^12 units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity(i64);

/// A signed change of quantity (a supply adjustment), magnitude at most 10^12 units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Delta(i64);

impl Quantity {
    pub const ZERO: Quantity = Quantity(0);

    /// From thousandths already known to be valid (stored values).
    pub fn from_thousandths(t: i64) -> Quantity {
        Quantity(t.max(0))
    }
    pub fn from_units(u: i64) -> Quantity {
        Quantity(u * SCALE)
    }
    pub fn thousandths(self) -> i64 {
        self.0
    }
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let t = parse_thousandths(s)?;
        if t < 0 {
            return Err(QuantityError::Negative);
        }
        Ok(Quantity(t))
    }
}

impl Delta {
    pub fn from_thousandths(t: i64) -> Delta {
        Delta(t)
    }
    pub fn thousandths(self) -> i64 {
        self.0
    }
    pub fn parse(s: &str) -> Result<Delta, QuantityError> {
        parse_thousandths(s).map(Delta)
    }
}

/// Parses a JSON-style decimal (`12`, `-0.5`, `38.500`, `1e3`) into thousandths,
/// refusing anything that is not exactly representable.
fn parse_thousandths(s: &str) -> Result<i64, QuantityError> {
    let s = s.trim();
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => {
            let e: i32 = body[i + 1..]
                .parse()
                .map_err(|_| QuantityError::Malformed)?;
            (&body[..i], e)
        }
        None => (body, 0),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((a, b)) => (a, b),
        None => (mantissa, ""),
    };
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
        || (mantissa.contains('.') && (int_part.is_empty() || frac_part.is_empty()))
    {
        return Err(QuantityError::Malformed);
    }
    // digits = int_part ++ frac_part, value = digits * 10^(exp - frac_len)
    let digits: String = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let scale_exp = exp as i64 - frac_part.len() as i64 + 3; // exponent of 10 applied to digits, in thousandths
    let (digits, scale_exp) = if scale_exp < 0 {
        // Dropped digits must be zeros, or the value has more than 3 decimals.
        let drop = (-scale_exp) as usize;
        if drop > digits.len() {
            if digits.bytes().any(|b| b != b'0') {
                return Err(QuantityError::TooPrecise);
            }
            ("", 0)
        } else {
            let (keep, dropped) = digits.split_at(digits.len() - drop);
            if dropped.bytes().any(|b| b != b'0') {
                return Err(QuantityError::TooPrecise);
            }
            (keep, 0)
        }
    } else {
        (digits, scale_exp)
    };
    if digits.is_empty() {
        return Ok(0);
    }
    // 10^12 units = 10^15 thousandths: 16 digits at most.
    if digits.len() as i64 + scale_exp > 16 {
        return Err(QuantityError::TooLarge);
    }
    let mut v: i64 = digits.parse().map_err(|_| QuantityError::TooLarge)?;
    for _ in 0..scale_exp {
        v = v.checked_mul(10).ok_or(QuantityError::TooLarge)?;
    }
    if v > MAX_UNITS * SCALE {
        return Err(QuantityError::TooLarge);
    }
    Ok(if neg { -v } else { v })
}

/// Prints thousandths as the shortest exact decimal: 38500 → `38.5`.
pub fn format_thousandths(t: i64) -> String {
    Decimal::of(t).as_str().to_owned()
}

/// Thousandths printed as the shortest exact decimal, on the stack: a
/// response carries dozens of quantities, and each used to cost three
/// small heap strings.
struct Decimal {
    buf: [u8; 24],
    start: usize,
}

impl Decimal {
    fn of(t: i64) -> Decimal {
        let mut buf = [0u8; 24];
        let mut at = buf.len();
        let a = t.unsigned_abs();
        let (mut int, mut frac) = (a / 1000, a % 1000);
        // Fraction digits, trailing zeros dropped.
        let mut digits = 3;
        while frac != 0 && frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        if frac != 0 {
            for _ in 0..digits {
                at -= 1;
                buf[at] = b'0' + (frac % 10) as u8;
                frac /= 10;
            }
            at -= 1;
            buf[at] = b'.';
        }
        loop {
            at -= 1;
            buf[at] = b'0' + (int % 10) as u8;
            int /= 10;
            if int == 0 {
                break;
            }
        }
        if t < 0 {
            at -= 1;
            buf[at] = b'-';
        }
        Decimal { buf, start: at }
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits, '.' and '-' were written.
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Decimal::of(self.0).as_str())
    }
}
impl fmt::Display for Delta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Decimal::of(self.0).as_str())
    }
}

/// Serializes thousandths as an exact JSON number (serde_json's
/// `arbitrary_precision` keeps the digits as written, no float detour).
pub fn serialize_thousandths<S: Serializer>(t: i64, s: S) -> Result<S::Ok, S::Error> {
    if t % 1000 == 0 {
        // Whole numbers, the common case, print as integers do.
        return s.serialize_i64(t / 1000);
    }
    let n: serde_json::Number = Decimal::of(t)
        .as_str()
        .parse()
        .map_err(serde::ser::Error::custom)?;
    n.serialize(s)
}

/// Quantities are JSON numbers only: a string such as `"5"` is refused, so
/// the API's schema (`type: number`) says exactly what is accepted.
fn deserialize_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => Ok(n.to_string()),
        _ => Err(serde::de::Error::custom(QuantityError::Malformed)),
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_thousandths(self.0, s)
    }
}
impl Serialize for Delta {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_thousandths(self.0, s)
    }
}
impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Quantity::parse(&deserialize_text(d)?).map_err(serde::de::Error::custom)
    }
}
impl<'de> Deserialize<'de> for Delta {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Delta::parse(&deserialize_text(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The formatting `Decimal` replaced, kept as the oracle.
    fn format_with_strings(t: i64) -> String {
        let sign = if t < 0 { "-" } else { "" };
        let a = t.unsigned_abs();
        let (int, frac) = (a / 1000, a % 1000);
        if frac == 0 {
            format!("{sign}{int}")
        } else {
            let f = format!("{frac:03}");
            format!("{sign}{int}.{}", f.trim_end_matches('0'))
        }
    }

    #[test]
    fn formats_edge_values_like_the_string_formatting() {
        for t in [
            0,
            1,
            -1,
            10,
            100,
            999,
            1000,
            -1000,
            1001,
            38_500,
            -38_050,
            i64::MIN,
            i64::MAX,
        ] {
            assert_eq!(format_thousandths(t), format_with_strings(t), "{t}");
        }
    }

    proptest! {
        #[test]
        fn formats_like_the_string_formatting(t in any::<i64>()) {
            prop_assert_eq!(format_thousandths(t), format_with_strings(t));
        }
    }

    #[test]
    fn parses_exact_decimals() {
        assert_eq!(Quantity::parse("38.5").unwrap().thousandths(), 38_500);
        assert_eq!(Quantity::parse("0.001").unwrap().thousandths(), 1);
        assert_eq!(Quantity::parse("40").unwrap().thousandths(), 40_000);
        assert_eq!(Quantity::parse("1.250").unwrap().thousandths(), 1_250);
        assert_eq!(Quantity::parse("1e3").unwrap().thousandths(), 1_000_000);
        assert_eq!(Quantity::parse("2.5E-2").unwrap().thousandths(), 25);
        assert_eq!(
            Quantity::parse("1000000000000").unwrap().thousandths(),
            MAX_UNITS * 1000
        );
    }

    #[test]
    fn refuses_what_is_not_exact_or_in_range() {
        assert_eq!(Quantity::parse("0.0001"), Err(QuantityError::TooPrecise));
        assert_eq!(Quantity::parse("1.2345"), Err(QuantityError::TooPrecise));
        assert_eq!(Quantity::parse("-1"), Err(QuantityError::Negative));
        assert_eq!(
            Quantity::parse("1000000000000.001"),
            Err(QuantityError::TooLarge)
        );
        assert_eq!(Quantity::parse("1e40"), Err(QuantityError::TooLarge));
        for bad in [
            "NaN", "", "abc", "1.", ".5", "1..2", "--1", "1e", "Infinity",
        ] {
            assert_eq!(Quantity::parse(bad), Err(QuantityError::Malformed), "{bad}");
        }
        assert_eq!(Delta::parse("-12.5").unwrap().thousandths(), -12_500);
    }

    #[test]
    fn prints_shortest_exact_form() {
        assert_eq!(format_thousandths(38_500), "38.5");
        assert_eq!(format_thousandths(200_000), "200");
        assert_eq!(format_thousandths(10_384_615), "10384.615");
        assert_eq!(format_thousandths(-1), "-0.001");
        assert_eq!(serde_json::to_string(&Quantity(38_500)).unwrap(), "38.5");
    }

    proptest! {
        #[test]
        fn print_parse_round_trip(t in 0i64..=MAX_UNITS * 1000) {
            let q = Quantity(t);
            prop_assert_eq!(Quantity::parse(&q.to_string()).unwrap(), q);
            let json = serde_json::to_string(&q).unwrap();
            prop_assert_eq!(&json, &format_thousandths(t));
            prop_assert_eq!(serde_json::from_str::<Quantity>(&json).unwrap(), q);
        }

        #[test]
        fn signed_round_trip(t in -MAX_UNITS * 1000..=MAX_UNITS * 1000, whole in proptest::bool::ANY) {
            // Whole numbers take the integer path when serialized.
            let t = if whole { t - t % 1000 } else { t };
            prop_assert_eq!(Delta::parse(&Delta(t).to_string()).unwrap(), Delta(t));
            prop_assert_eq!(serde_json::to_string(&Delta(t)).unwrap(), format_thousandths(t));
        }
    }
}
