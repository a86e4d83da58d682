//! The precision a figure is reported at, in one place for the report's figures and the
//! findings' values and limits alike.
//!
//! The model sums floats, so its figures carry noise in the last bits (212.99140699999998 ms,
//! 3.3000000000000003 attempts) that JSON prints in full and no reader can use. A time is
//! reported to the microsecond, the finest any setting in the file is likely to be given in; a
//! count, factor or rate to nine significant digits, far past any difference a threshold makes
//! and short of the noise.

/// A figure as the model computed it, with the unit that decides how it is reported.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Figure {
    /// A time in ms.
    Ms(f64),
    /// A count of attempts or calls, a factor, or a rate.
    Number(f64),
}

impl Figure {
    /// The figure rounded to the precision of its unit (a time to 3 decimals of a ms, anything
    /// else to 9 significant digits). Infinities and NaN pass through: they are not noise.
    pub(super) fn reported(self) -> f64 {
        match self {
            Figure::Ms(x) if x.is_finite() => {
                let rounded = (x * 1000.0).round() / 1000.0;
                if rounded.is_finite() {
                    rounded
                } else {
                    x
                }
            }
            // A whole number of nine digits or fewer is its own rounding; most counts are.
            Figure::Number(x) if x.fract() == 0.0 && x.abs() < 1e9 => x,
            Figure::Number(x) if x.is_finite() => {
                // Through the decimal text: the nearest float to the rounded decimal, which
                // prints back as that decimal, at any magnitude.
                format!("{x:.8e}").parse().unwrap_or(x)
            }
            Figure::Ms(x) | Figure::Number(x) => x,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Figure;

    #[test]
    fn times_are_reported_to_the_microsecond() {
        assert_eq!(Figure::Ms(212.99140699999998).reported(), 212.991);
        assert_eq!(Figure::Ms(2216.5004999).reported(), 2216.5);
        assert_eq!(Figure::Ms(1612.0000000000002).reported(), 1612.0);
        assert_eq!(Figure::Ms(0.0004).reported(), 0.0);
        assert_eq!(Figure::Ms(f64::INFINITY).reported(), f64::INFINITY);
        assert_eq!(Figure::Ms(1e300).reported(), 1e300);
    }

    #[test]
    fn numbers_are_reported_to_nine_significant_digits() {
        assert_eq!(Figure::Number(3.3000000000000003).reported(), 3.3);
        assert_eq!(Figure::Number(243.0).reported(), 243.0);
        assert_eq!(Figure::Number(0.010512345678).reported(), 0.0105123457);
        assert_eq!(Figure::Number(1.21e300 + 1e290).reported(), 1.21e300);
        assert_eq!(Figure::Number(0.0).reported(), 0.0);
        assert_eq!(Figure::Number(f64::INFINITY).reported(), f64::INFINITY);
        // JSON prints the rounded float as the short decimal.
        assert_eq!(
            serde_json::to_string(&Figure::Number(1.1 * 3.0).reported()).unwrap(),
            "3.3"
        );
    }
}
