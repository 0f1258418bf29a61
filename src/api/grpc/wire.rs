//! A reader of the protobuf wire format that walks a message's fields without decoding them:
//! each field is a number and a borrowed slice of the received bytes, so walking a message
//! allocates nothing, whatever it holds. `prescan.rs` uses it to count a request's lists before
//! prost builds them.
//!
//! It refuses only what prost refuses too (so no message prost accepts is refused here): a
//! truncated varint or field, a key past `u32::MAX`, field number 0, wire types 6 and 7, an end
//! group without its start, groups nested deeper than prost's recursion limit.

/// Why the bytes are not a protobuf message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// prost's recursion limit (`prost::RECURSION_LIMIT`), for nested groups.
const MAX_GROUP_DEPTH: usize = 100;

/// A field's value, as the wire format carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint,
    /// Wire type 1.
    Fixed64,
    /// Wire type 2: a string, bytes, a nested message or a packed repeated field.
    Len(&'a [u8]),
    /// Wire type 3: a group (skipped whole, with its end group).
    Group,
    /// Wire type 5.
    Fixed32,
}

/// A scalar element type of a packed repeated field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    /// bool, int32, int64, uint32, uint64, enums: one varint each.
    Varint,
    /// float, fixed32: four bytes each.
    Fixed32,
    /// double, fixed64: eight bytes each.
    Fixed64,
}

impl Scalar {
    /// Elements a repeated field of this type gains from one field on the wire: a packed run's
    /// count, or 1 for an unpacked element of the matching wire type. Any other wire type is
    /// refused, as prost refuses it.
    pub fn elements(self, value: Value<'_>) -> Result<usize, Malformed> {
        match (self, value) {
            (_, Value::Len(payload)) => self.packed(payload),
            (Scalar::Varint, Value::Varint)
            | (Scalar::Fixed32, Value::Fixed32)
            | (Scalar::Fixed64, Value::Fixed64) => Ok(1),
            _ => Err(Malformed("a repeated field with the wrong wire type")),
        }
    }

    /// Elements in a packed run, counted without decoding them.
    fn packed(self, payload: &[u8]) -> Result<usize, Malformed> {
        let width = match self {
            // Every varint ends with the one byte that has its top bit clear.
            Scalar::Varint => {
                if payload.last().is_some_and(|b| b & 0x80 != 0) {
                    return Err(Malformed("a packed varint cut short"));
                }
                return Ok(payload.iter().filter(|b| **b & 0x80 == 0).count());
            }
            Scalar::Fixed32 => 4,
            Scalar::Fixed64 => 8,
        };
        if !payload.len().is_multiple_of(width) {
            return Err(Malformed("a packed field of fixed-size values cut short"));
        }
        Ok(payload.len() / width)
    }
}

/// One field of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub number: u32,
    pub value: Value<'a>,
}

/// Walks the fields of one message (its bytes, without a length prefix).
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(message: &'a [u8]) -> Reader<'a> {
        Reader { rest: message }
    }

    /// The next field, or None at the end of the message.
    pub fn next_field(&mut self) -> Result<Option<Field<'a>>, Malformed> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let (number, wire_type) = self.key()?;
        let value = match wire_type {
            0 => self.varint().map(|_| Value::Varint)?,
            1 => self.take(8).map(|_| Value::Fixed64)?,
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| Malformed("a length past the end"))?;
                Value::Len(self.take(len)?)
            }
            3 => self.skip_group(number, 1).map(|_| Value::Group)?,
            4 => return Err(Malformed("an end group without its start")),
            5 => self.take(4).map(|_| Value::Fixed32)?,
            _ => return Err(Malformed("an unknown wire type")),
        };
        Ok(Some(Field { number, value }))
    }

    /// A field key: its number and wire type, checked as prost checks them.
    fn key(&mut self) -> Result<(u32, u8), Malformed> {
        let key = self.varint()?;
        let key = u32::try_from(key).map_err(|_| Malformed("a field key past u32"))?;
        let number = key >> 3;
        if number == 0 {
            return Err(Malformed("field number 0"));
        }
        Ok((number, (key & 7) as u8))
    }

    /// A varint of at most ten bytes.
    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut value = 0u64;
        for (i, byte) in self.rest.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if i == 9 && *byte > 1 {
                    return Err(Malformed("a varint past 64 bits"));
                }
                self.rest = &self.rest[i + 1..];
                return Ok(value);
            }
        }
        Err(Malformed(if self.rest.len() < 10 {
            "a varint cut short"
        } else {
            "a varint past ten bytes"
        }))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], Malformed> {
        if len > self.rest.len() {
            return Err(Malformed("a field past the end of its message"));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    /// Skips a group's fields up to its end group (same number), nested groups included.
    fn skip_group(&mut self, number: u32, depth: usize) -> Result<(), Malformed> {
        if depth > MAX_GROUP_DEPTH {
            return Err(Malformed("groups nested too deep"));
        }
        loop {
            if self.rest.is_empty() {
                return Err(Malformed("a group without its end"));
            }
            let (inner, wire_type) = self.key()?;
            match wire_type {
                0 => self.varint().map(drop)?,
                1 => self.take(8).map(drop)?,
                2 => {
                    let len = self.varint()?;
                    let len =
                        usize::try_from(len).map_err(|_| Malformed("a length past the end"))?;
                    self.take(len).map(drop)?
                }
                3 => self.skip_group(inner, depth + 1)?,
                4 if inner == number => return Ok(()),
                4 => return Err(Malformed("an end group of another group")),
                5 => self.take(4).map(drop)?,
                _ => return Err(Malformed("an unknown wire type")),
            }
        }
    }
}
