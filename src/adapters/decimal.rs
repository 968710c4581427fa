//! Exact decimal numbers for token amounts: Golem's invoice amounts are decimal strings
//! (BigDecimal) and Streamr's earnings are wei (10^-18 DATA). Sums are kept exact in an i128
//! mantissa with a decimal scale, and turn into f64 only at the end ([`Decimal::to_f64`]), so
//! adding ten thousand invoices of 0.1 GLM gives exactly 1000.

use std::fmt;

/// `mantissa × 10^-scale`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decimal {
    mantissa: i128,
    scale: u32,
}

/// The most fractional digits kept (wei has 18; BigDecimal strings may have more, which are
/// cut, not rounded: far below any price).
pub const MAX_SCALE: u32 = 24;

impl Decimal {
    pub const ZERO: Decimal = Decimal {
        mantissa: 0,
        scale: 0,
    };

    /// `units × 10^-decimals`, e.g. wei with 18 decimals.
    pub fn from_units(units: u128, decimals: u32) -> Option<Decimal> {
        Some(Decimal {
            mantissa: i128::try_from(units).ok()?,
            scale: decimals,
        })
    }

    /// Parses `-12.345`, `0.1`, `7`, `1.5e-3`. Refuses empty strings, NaN, infinities and
    /// numbers too large for 38 digits.
    pub fn parse(s: &str) -> Result<Decimal, String> {
        let t = s.trim();
        let bad = || format!("{s:?} is not a decimal number");
        let (neg, t) = match t.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let (num, exp) = match t.find(['e', 'E']) {
            Some(i) => (&t[..i], t[i + 1..].parse::<i32>().map_err(|_| bad())?),
            None => (t, 0),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let mut digits: String = format!("{int}{frac}");
        let mut scale = frac.len() as i64 - exp as i64;
        if scale < 0 {
            digits.extend(std::iter::repeat_n('0', (-scale) as usize));
            scale = 0;
        }
        if scale > MAX_SCALE as i64 {
            let cut = (scale - MAX_SCALE as i64) as usize;
            digits.truncate(digits.len().saturating_sub(cut));
            scale = MAX_SCALE as i64;
        }
        let digits = digits.trim_start_matches('0');
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits
                .parse()
                .map_err(|_| format!("{s:?} has too many digits"))?
        };
        Ok(Decimal {
            mantissa: if neg { -mantissa } else { mantissa },
            scale: scale as u32,
        })
    }

    fn rescale(self, scale: u32) -> Option<Decimal> {
        let f = 10i128.checked_pow(scale.checked_sub(self.scale)?)?;
        Some(Decimal {
            mantissa: self.mantissa.checked_mul(f)?,
            scale,
        })
    }

    /// The exact sum, or `None` on overflow.
    pub fn checked_add(self, other: Decimal) -> Option<Decimal> {
        let scale = self.scale.max(other.scale);
        let (a, b) = (self.rescale(scale)?, other.rescale(scale)?);
        Some(Decimal {
            mantissa: a.mantissa.checked_add(b.mantissa)?,
            scale,
        })
    }

    pub fn is_negative(&self) -> bool {
        self.mantissa < 0
    }

    /// The nearest f64 (the decimal text parsed once, so correctly rounded).
    pub fn to_f64(self) -> f64 {
        format!("{}e-{}", self.mantissa, self.scale)
            .parse()
            .unwrap_or(f64::NAN)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa.unsigned_abs().to_string();
        let sign = if self.mantissa < 0 { "-" } else { "" };
        let s = self.scale as usize;
        if s == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = s + 1);
        let (i, fr) = padded.split_at(padded.len() - s);
        write!(f, "{sign}{i}.{fr}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_exact() {
        let mut sum = Decimal::ZERO;
        for _ in 0..10_000 {
            sum = sum.checked_add(Decimal::parse("0.1").unwrap()).unwrap();
        }
        assert_eq!(sum.to_f64(), 1000.0);
        assert_eq!(sum.to_string(), "1000.0");
        let mut f = 0.0f64;
        for _ in 0..10_000 {
            f += 0.1;
        }
        assert_ne!(f, 1000.0, "the reason this type exists");
    }

    #[test]
    fn parses_the_shapes_nodes_send() {
        assert_eq!(Decimal::parse("0.012345").unwrap().to_f64(), 0.012345);
        assert_eq!(Decimal::parse("12").unwrap().to_f64(), 12.0);
        assert_eq!(Decimal::parse("1.5e-3").unwrap().to_f64(), 0.0015);
        assert_eq!(Decimal::parse("2E2").unwrap().to_f64(), 200.0);
        assert_eq!(Decimal::parse("-0.5").unwrap().to_string(), "-0.5");
        for bad in ["", ".", "abc", "1.2.3", "NaN", "inf", "0x10", "1e"] {
            assert!(Decimal::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wei_to_data() {
        let wei: u128 = 1_234_567_890_123_456_789_012;
        let d = Decimal::from_units(wei, 18).unwrap();
        assert_eq!(d.to_string(), "1234.567890123456789012");
        assert_eq!(
            d.to_f64(),
            "1234.567890123456789012".parse::<f64>().unwrap()
        );
        let one = Decimal::from_units(1, 18).unwrap();
        assert_eq!(one.to_string(), "0.000000000000000001");
    }
}
