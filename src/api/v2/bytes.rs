//! The protocol's `BYTES` datatype as UTF-8 string tensors: JSON strings, the binary tensor data
//! extension's length-prefixed layout (per element a 4-byte little-endian length, then the
//! bytes), and gRPC `bytes_contents`. Every decoder counts the elements and bytes actually sent,
//! against the declared count and [`MAX_STRING_BYTES`], before it keeps anything.

use serde_json::Value;

/// The longest string element accepted, in bytes (a category, a label or one text document).
pub const MAX_STRING_BYTES: usize = 1 << 20;

/// JSON `data` elements (already flattened and counted against the declared shape) as strings.
pub fn from_json(flat: &[&Value], input: &str) -> Result<Vec<String>, String> {
    flat.iter()
        .enumerate()
        .map(|(i, x)| match x {
            Value::String(s) => checked(s.as_bytes(), i, input).map(str::to_owned),
            other => Err(format!(
                "input {input:?} element {i}: expected a string, got {other}"
            )),
        })
        .collect()
}

/// The binary layout: exactly `count` length-prefixed elements filling `bytes`. The elements
/// are walked (and counted) first; strings are built only once the whole buffer checks out.
pub fn from_binary(count: usize, bytes: &[u8], input: &str) -> Result<Vec<String>, String> {
    let mut spans = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let i = spans.len();
        if i == count {
            return Err(format!(
                "input {input:?}: BYTES data holds more than the {count} elements of its shape"
            ));
        }
        let prefix = bytes.get(at..at + 4).ok_or_else(|| {
            format!("input {input:?} element {i}: truncated 4-byte length prefix")
        })?;
        let len = u32::from_le_bytes(prefix.try_into().expect("4 bytes")) as usize;
        let start = at + 4;
        let end = start
            .checked_add(len)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| {
                format!("input {input:?} element {i}: length {len} runs past the data sent")
            })?;
        spans.push((start, end));
        at = end;
    }
    if spans.len() != count {
        return Err(format!(
            "input {input:?}: shape holds {count} elements but BYTES data has {}",
            spans.len()
        ));
    }
    spans
        .iter()
        .enumerate()
        .map(|(i, (s, e))| checked(&bytes[*s..*e], i, input).map(str::to_owned))
        .collect()
}

/// gRPC `bytes_contents`, one entry per element (counted against the shape by the caller).
pub fn from_entries(entries: &[impl AsRef<[u8]>], input: &str) -> Result<Vec<String>, String> {
    entries
        .iter()
        .enumerate()
        .map(|(i, b)| checked(b.as_ref(), i, input).map(str::to_owned))
        .collect()
}

/// Appends the length-prefixed layout of `strings`.
pub fn to_binary(strings: &[String], out: &mut Vec<u8>) {
    for s in strings {
        // Strings come from the model or were accepted under MAX_STRING_BYTES: they fit u32.
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
}

fn checked<'a>(bytes: &'a [u8], i: usize, input: &str) -> Result<&'a str, String> {
    if bytes.len() > MAX_STRING_BYTES {
        return Err(format!(
            "input {input:?} element {i}: {} bytes, over the limit of {MAX_STRING_BYTES} per string",
            bytes.len()
        ));
    }
    std::str::from_utf8(bytes).map_err(|_| format!("input {input:?} element {i}: not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn layout(items: &[&str]) -> Vec<u8> {
        let owned: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        let mut out = Vec::new();
        to_binary(&owned, &mut out);
        out
    }

    #[test]
    fn binary_layout_round_trips() {
        let bytes = layout(&["rome", "", "zürich"]);
        assert_eq!(&bytes[..4], &4u32.to_le_bytes());
        assert_eq!(
            from_binary(3, &bytes, "city").unwrap(),
            vec!["rome", "", "zürich"]
        );
    }

    #[test]
    fn binary_counts_are_checked_against_the_data_sent() {
        let bytes = layout(&["a", "b"]);
        assert!(from_binary(3, &bytes, "x")
            .unwrap_err()
            .contains("shape holds 3 elements but BYTES data has 2"));
        assert!(from_binary(1, &bytes, "x")
            .unwrap_err()
            .contains("more than the 1 elements"));
        // A declared length far beyond the buffer is refused before anything is built.
        let mut lie = u32::MAX.to_le_bytes().to_vec();
        lie.extend_from_slice(b"abc");
        assert!(from_binary(1, &lie, "x")
            .unwrap_err()
            .contains("runs past the data sent"));
        assert!(from_binary(1, &[1, 0], "x")
            .unwrap_err()
            .contains("truncated"));
        assert!(from_binary(usize::MAX, &bytes, "x").is_err());
    }

    #[test]
    fn strings_must_be_utf8_and_short_enough() {
        let mut bad = 2u32.to_le_bytes().to_vec();
        bad.extend_from_slice(&[0xff, 0xfe]);
        assert!(from_binary(1, &bad, "x").unwrap_err().contains("not UTF-8"));
        let long = "x".repeat(MAX_STRING_BYTES + 1);
        let v = json!([long]);
        let flat: Vec<&Value> = v.as_array().unwrap().iter().collect();
        assert!(from_json(&flat, "x")
            .unwrap_err()
            .contains("over the limit"));
        let v = json!(["a", 3]);
        let flat: Vec<&Value> = v.as_array().unwrap().iter().collect();
        assert!(from_json(&flat, "x")
            .unwrap_err()
            .contains("element 1: expected a string, got 3"));
    }
}
