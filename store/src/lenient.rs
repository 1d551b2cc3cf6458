//! Reading loosely typed SQLite values as the types a row declares.
//!
//! SQLite stores whatever a producer wrote: an integer in a column declared
//! without a type, bytes in a TEXT column, a NULL where a table without the
//! NOT NULL constraint allowed it. A claim must never fail because of one such
//! row — that would stop every other row behind it. So each value is converted
//! where the meaning is clear (a number in a text column becomes its decimal
//! text, UTF-8 bytes become text, text becomes bytes) and otherwise replaced
//! by a default while [`Defects`] records what was found; the row then carries
//! `Row::defect` and the policy never sends it.
//!
//! Owns: the conversions and their wording. Not here: which columns a row has
//! (`claim`).

use rusqlite::types::ValueRef;

/// What was wrong with the columns of one row, in column order.
#[derive(Debug, Default)]
pub struct Defects(Vec<String>);

impl Defects {
    /// A TEXT column that must hold a value; "" if it cannot be read.
    pub fn text(&mut self, column: &str, value: ValueRef<'_>) -> String {
        match value {
            ValueRef::Null => self.found(column, "NULL", String::new()),
            other => self.optional_text(column, other).unwrap_or_default(),
        }
    }

    /// A nullable TEXT column; `None` if NULL or unreadable.
    pub fn optional_text(&mut self, column: &str, value: ValueRef<'_>) -> Option<String> {
        match value {
            ValueRef::Null => None,
            ValueRef::Integer(n) => Some(n.to_string()),
            ValueRef::Real(x) => Some(x.to_string()),
            ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => Some(text.to_string()),
                Err(_) => self.found(column, "text that is not UTF-8", None),
            },
            ValueRef::Blob(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => Some(text.to_string()),
                Err(_) => self.found(column, "bytes that are not UTF-8", None),
            },
        }
    }

    /// A BLOB column that must hold a value: bytes or text (its bytes).
    pub fn bytes(&mut self, column: &str, value: ValueRef<'_>) -> Vec<u8> {
        match value {
            ValueRef::Blob(bytes) | ValueRef::Text(bytes) => bytes.to_vec(),
            ValueRef::Null => self.found(column, "NULL", Vec::new()),
            ValueRef::Integer(_) => self.found(column, "an integer, not bytes", Vec::new()),
            ValueRef::Real(_) => self.found(column, "a real number, not bytes", Vec::new()),
        }
    }

    /// An INTEGER column that must hold a value; a whole real number is
    /// accepted as the integer it equals, anything else reads as 0.
    pub fn integer(&mut self, column: &str, value: ValueRef<'_>) -> i64 {
        match value {
            ValueRef::Integer(n) => n,
            ValueRef::Real(x) => match whole(x) {
                Some(n) => n,
                None => self.found(column, "a real number that is not a whole number", 0),
            },
            ValueRef::Null => self.found(column, "NULL", 0),
            ValueRef::Text(_) | ValueRef::Blob(_) => {
                self.found(column, "text or bytes, not an integer", 0)
            }
        }
    }

    /// A count that must fit a `u32` (attempts); anything else reads as 0.
    pub fn count(&mut self, column: &str, value: ValueRef<'_>) -> u32 {
        let mut inner = Defects::default();
        let n = inner.integer(column, value);
        self.0.append(&mut inner.0);
        match u32::try_from(n) {
            Ok(count) => count,
            Err(_) => self.found(column, &format!("{n}, outside 0..={}", u32::MAX), 0),
        }
    }

    /// `None` if every column read cleanly, else every defect joined by "; ".
    pub fn into_message(self) -> Option<String> {
        if self.0.is_empty() {
            None
        } else {
            Some(self.0.join("; "))
        }
    }

    fn found<T>(&mut self, column: &str, what: &str, default: T) -> T {
        self.0.push(format!("column {column} holds {what}"));
        default
    }
}

/// Any value as display text, for reports: never fails, replaces bad UTF-8.
pub fn text_lossy(value: ValueRef<'_>) -> Option<String> {
    match value {
        ValueRef::Null => None,
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(x) => Some(x.to_string()),
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
    }
}

/// Any value as an integer if it is one (or a whole real), for reports.
pub fn integer_or_none(value: ValueRef<'_>) -> Option<i64> {
    match value {
        ValueRef::Integer(n) => Some(n),
        ValueRef::Real(x) => whole(x),
        _ => None,
    }
}

/// `x` as an i64 if it is a whole number in range.
fn whole(x: f64) -> Option<i64> {
    // The casts are exact for these bounds: -2^63 and 2^63 are representable.
    let in_range = x.is_finite() && x >= i64::MIN as f64 && x < i64::MAX as f64;
    (in_range && x.fract() == 0.0).then_some(x as i64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn numbers_in_a_text_column_read_as_their_decimal_text() {
        let mut d = Defects::default();
        assert_eq!(
            d.optional_text("mesh", ValueRef::Integer(42)),
            Some("42".into())
        );
        assert_eq!(
            d.optional_text("mesh", ValueRef::Real(1.5)),
            Some("1.5".into())
        );
        assert_eq!(d.into_message(), None);
    }

    #[test]
    fn utf8_bytes_in_a_text_column_read_as_text_and_others_are_defects() {
        let mut d = Defects::default();
        assert_eq!(
            d.optional_text("nonce", ValueRef::Blob(b"abc")),
            Some("abc".into())
        );
        assert_eq!(d.into_message(), None);
        let mut d = Defects::default();
        assert_eq!(
            d.optional_text("nonce", ValueRef::Blob(&[0xff, 0xfe])),
            None
        );
        assert_eq!(d.optional_text("mesh", ValueRef::Text(&[0xc3])), None);
        assert_eq!(
            d.into_message().as_deref(),
            Some(
                "column nonce holds bytes that are not UTF-8; column mesh holds text that is not UTF-8"
            )
        );
    }

    #[test]
    fn null_in_a_required_column_is_a_defect_with_a_default() {
        let mut d = Defects::default();
        assert_eq!(d.text("id", ValueRef::Null), "");
        assert_eq!(d.bytes("payload", ValueRef::Null), Vec::<u8>::new());
        assert_eq!(d.integer("enqueued_at", ValueRef::Null), 0);
        let message = d.into_message().unwrap();
        assert!(
            message.contains("column id holds NULL")
                && message.contains("column enqueued_at holds NULL")
        );
    }

    #[test]
    fn blob_columns_take_bytes_or_text_but_not_numbers() {
        let mut d = Defects::default();
        assert_eq!(d.bytes("payload", ValueRef::Text(b"hi")), b"hi".to_vec());
        assert_eq!(d.bytes("payload", ValueRef::Blob(&[0, 255])), vec![0, 255]);
        assert_eq!(d.into_message(), None);
        let mut d = Defects::default();
        d.bytes("request_fingerprint", ValueRef::Integer(7));
        assert_eq!(
            d.into_message().as_deref(),
            Some("column request_fingerprint holds an integer, not bytes")
        );
    }

    #[test]
    fn counts_outside_u32_are_defects() {
        let mut d = Defects::default();
        assert_eq!(d.count("attempts", ValueRef::Integer(3)), 3);
        assert_eq!(d.count("attempts", ValueRef::Real(4.0)), 4);
        assert!(d.into_message().is_none());
        let mut d = Defects::default();
        assert_eq!(d.count("attempts", ValueRef::Integer(-1)), 0);
        assert!(
            d.into_message()
                .unwrap()
                .starts_with("column attempts holds -1")
        );
    }

    #[test]
    fn whole_rejects_fractions_and_out_of_range_reals() {
        assert_eq!(whole(3.0), Some(3));
        assert_eq!(whole(3.5), None);
        assert_eq!(whole(f64::NAN), None);
        assert_eq!(whole(1e300), None);
    }
}
