//! String columns as numbers. The row builders ([`super::rows`]) pick each cell from the
//! instance or from a background row, and work on `f64`s; a string cell travels through them as
//! a code: the index of its string in its column's [`Vocabulary`] (the background's strings), or,
//! for an instance's string the background does not hold, an index past them ([`Codes`]). The
//! caller turns the codes back into strings when it builds the model's input tensors.

use serde::Deserialize;

/// A value of a background row as `background.json` holds it: a number, or a string column's
/// category.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Number(f64),
    Text(String),
}

/// Per column: the distinct strings of a string column (in first-seen order), or `None` for a
/// number column.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Vocabulary {
    columns: Vec<Option<Vec<String>>>,
}

impl Vocabulary {
    /// Number columns only.
    pub fn numbers(width: usize) -> Vocabulary {
        Vocabulary {
            columns: vec![None; width],
        }
    }

    /// Empty vocabularies for the columns flagged in `text`.
    pub fn with_text(text: &[bool]) -> Vocabulary {
        Vocabulary {
            columns: text.iter().map(|&t| t.then(Vec::new)).collect(),
        }
    }

    /// Whether column `j` holds strings.
    pub fn is_text(&self, j: usize) -> bool {
        matches!(self.columns.get(j), Some(Some(_)))
    }

    /// The strings of column `j` (empty for a number column).
    pub fn strings(&self, j: usize) -> &[String] {
        match self.columns.get(j) {
            Some(Some(v)) => v,
            _ => &[],
        }
    }

    /// Whether any column holds strings.
    pub fn has_text(&self) -> bool {
        self.columns.iter().any(Option::is_some)
    }

    /// The code of `s` in column `j`, added when new.
    pub(super) fn intern(&mut self, j: usize, s: &str) -> f64 {
        let Some(Some(strings)) = self.columns.get_mut(j) else {
            return f64::NAN;
        };
        let at = match strings.iter().position(|x| x == s) {
            Some(at) => at,
            None => {
                strings.push(s.to_string());
                strings.len() - 1
            }
        };
        at as f64
    }
}

/// One request's codes: the background's vocabulary, plus the instances' strings it does not
/// hold (each copied once, whatever the number of rows it then appears in).
#[derive(Debug)]
pub struct Codes<'a> {
    base: &'a Vocabulary,
    extra: Vec<Vec<String>>,
}

impl<'a> Codes<'a> {
    pub fn new(base: &'a Vocabulary) -> Codes<'a> {
        Codes {
            base,
            extra: vec![Vec::new(); base.columns.len()],
        }
    }

    /// The code of an instance's string `s` in column `j`.
    pub fn encode(&mut self, j: usize, s: &str) -> f64 {
        let known = self.base.strings(j);
        if let Some(at) = known.iter().position(|x| x == s) {
            return at as f64;
        }
        let Some(extra) = self.extra.get_mut(j) else {
            return f64::NAN;
        };
        let at = match extra.iter().position(|x| x == s) {
            Some(at) => at,
            None => {
                extra.push(s.to_string());
                extra.len() - 1
            }
        };
        (known.len() + at) as f64
    }

    /// The string of code `code` in column `j` ("" for a code no string has).
    pub fn decode(&self, j: usize, code: f64) -> &str {
        let known = self.base.strings(j);
        let at = code as usize;
        match known.get(at) {
            Some(s) => s,
            None => self
                .extra
                .get(j)
                .and_then(|e| e.get(at - known.len()))
                .map_or("", String::as_str),
        }
    }

    /// Whether column `j` holds strings.
    pub fn is_text(&self, j: usize) -> bool {
        self.base.is_text(j)
    }

    /// An upper bound of the bytes one row's strings take once decoded (each string's length
    /// plus a `String`'s own size, the longest one of each string column): what bounds the rows
    /// of one chunk.
    pub fn row_text_bytes(&self) -> usize {
        (0..self.base.columns.len())
            .filter(|&j| self.is_text(j))
            .map(|j| {
                self.base
                    .strings(j)
                    .iter()
                    .chain(&self.extra[j])
                    .map(String::len)
                    .max()
                    .unwrap_or(0)
                    + std::mem::size_of::<String>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_copy_an_unseen_string_once() {
        let mut v = Vocabulary::with_text(&[true, false]);
        assert_eq!(v.intern(0, "rome"), 0.0);
        assert_eq!(v.intern(0, "oslo"), 1.0);
        assert_eq!(v.intern(0, "rome"), 0.0);
        assert!(v.intern(1, "x").is_nan());
        let mut codes = Codes::new(&v);
        assert_eq!(codes.encode(0, "oslo"), 1.0);
        assert_eq!(codes.encode(0, "lima"), 2.0);
        assert_eq!(codes.encode(0, "lima"), 2.0);
        assert_eq!(codes.extra[0].len(), 1);
        assert_eq!(codes.decode(0, 0.0), "rome");
        assert_eq!(codes.decode(0, 2.0), "lima");
        assert_eq!(codes.decode(0, 9.0), "");
        assert_eq!(codes.row_text_bytes(), 4 + std::mem::size_of::<String>());
    }
}
