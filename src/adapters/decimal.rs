//! Exact decimal numbers for token amounts: Golem's invoice amounts are decimal strings
//! (BigDecimal), Streamr's earnings are wei (10^-18 DATA) and Storj's estimates are cents
//! with float noise. Sums are kept exact in an i128 mantissa with a decimal scale, and turn
//! into f64 only at the end ([`Decimal::to_f64`]), so adding ten thousand invoices of 0.1 GLM
//! gives exactly 1000. Two decimals are equal when their values are (`1.50 == 1.5`); they
//! serialize as their decimal text, so a file that stores them loses nothing.

use std::cmp::Ordering;
use std::fmt;

/// `mantissa × 10^-scale`.
#[derive(Clone, Copy, Debug, Default)]
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

    /// The exact difference, or `None` on overflow.
    pub fn checked_sub(self, other: Decimal) -> Option<Decimal> {
        self.checked_add(Decimal {
            mantissa: other.mantissa.checked_neg()?,
            scale: other.scale,
        })
    }

    pub fn is_negative(&self) -> bool {
        self.mantissa < 0
    }

    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// Rounded to `scale` fractional digits, half away from zero (Storj's cents with float
    /// noise, `877.2199999999999`, become whole micro-dollars).
    pub fn round_to(self, scale: u32) -> Decimal {
        if self.scale <= scale {
            return self;
        }
        let f = 10i128.pow((self.scale - scale).min(38));
        let (q, r) = (self.mantissa / f, self.mantissa % f);
        let q = if r.unsigned_abs() * 2 >= f.unsigned_abs() {
            q + self.mantissa.signum()
        } else {
            q
        };
        Decimal { mantissa: q, scale }
    }

    /// The shortest form: trailing fractional zeros removed.
    pub fn normalized(self) -> Decimal {
        let mut d = self;
        while d.scale > 0 && d.mantissa % 10 == 0 {
            d.mantissa /= 10;
            d.scale -= 1;
        }
        d
    }

    /// `x` rounded to `scale` digits (a USD value computed in f64); `None` when not finite.
    pub fn from_f64(x: f64, scale: u32) -> Option<Decimal> {
        if !x.is_finite() {
            return None;
        }
        Decimal::parse(&format!("{x:.prec$}", prec = scale.min(MAX_SCALE) as usize)).ok()
    }

    /// The exact product, or `None` on overflow.
    pub fn checked_mul(self, other: Decimal) -> Option<Decimal> {
        Some(Decimal {
            mantissa: self.mantissa.checked_mul(other.mantissa)?,
            scale: self.scale.checked_add(other.scale)?,
        })
    }

    /// `self / 10^n`, exactly (cents to dollars: `n = 2`).
    pub fn div_pow10(self, n: u32) -> Decimal {
        Decimal {
            mantissa: self.mantissa,
            scale: self.scale + n,
        }
    }

    /// The larger of two.
    pub fn max(self, other: Decimal) -> Decimal {
        if other > self {
            other
        } else {
            self
        }
    }

    /// The nearest f64 (the decimal text parsed once, so correctly rounded).
    pub fn to_f64(self) -> f64 {
        format!("{}e-{}", self.mantissa, self.scale)
            .parse()
            .unwrap_or(f64::NAN)
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Decimal) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Decimal) -> Ordering {
        let (a, b) = (self.normalized(), other.normalized());
        let scale = a.scale.max(b.scale);
        match (a.rescale(scale), b.rescale(scale)) {
            (Some(x), Some(y)) => x.mantissa.cmp(&y.mantissa),
            // Only numbers near 10^38 get here: the sign and then f64 decide.
            _ => a
                .to_f64()
                .partial_cmp(&b.to_f64())
                .unwrap_or(Ordering::Equal),
        }
    }
}

impl serde::Serialize for Decimal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Decimal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let s = String::deserialize(d)?;
        Decimal::parse(&s).map_err(serde::de::Error::custom)
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
    fn arithmetic_order_and_rounding() {
        let d = |s: &str| Decimal::parse(s).unwrap();
        assert_eq!(d("1.50"), d("1.5"));
        assert!(d("1.64") > d("1.5"));
        assert!(d("-0.1") < Decimal::ZERO);
        assert_eq!(d("1.64").checked_sub(d("1.50")).unwrap(), d("0.14"));
        // Storj's float noise, in USD with 6 digits.
        assert_eq!(d("8.772199999999999").round_to(6).to_string(), "8.772200");
        assert_eq!(d("-0.0000005").round_to(6), d("-0.000001"));
        assert_eq!(d("0.00855").round_to(6), d("0.00855"));
        assert_eq!(Decimal::from_f64(0.1 + 0.2, 9).unwrap(), d("0.3"));
        let json = serde_json::to_string(&d("0.000000000000000001")).unwrap();
        assert_eq!(json, "\"0.000000000000000001\"");
        assert_eq!(serde_json::from_str::<Decimal>(&json).unwrap(), d("1e-18"));
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
