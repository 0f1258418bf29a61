//! Free text as features: a document split into whitespace-separated tokens, each present or
//! removed. A coalition's row is a mask over the tokens (1 present, 0 removed) and becomes the
//! text of the present tokens, each with the whitespace that followed it, so the all-present
//! row is the document itself and the all-removed row the empty text.

use std::ops::Range;

/// Characters of a token quoted in its attribution's name.
const NAME_CHARS: usize = 32;

/// A document's tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokens<'a> {
    text: &'a str,
    /// Leading whitespace, kept in every row.
    lead: usize,
    /// Each token with the whitespace after it.
    pieces: Vec<Range<usize>>,
    /// Each token's own end (without the whitespace).
    ends: Vec<usize>,
}

impl<'a> Tokens<'a> {
    /// Splits `text` at whitespace.
    pub fn split(text: &'a str) -> Tokens<'a> {
        let lead = text.len() - text.trim_start().len();
        let mut pieces = Vec::new();
        let mut ends = Vec::new();
        let mut start = lead;
        let mut in_token = true;
        for (i, c) in text[lead..].char_indices() {
            let i = i + lead;
            match (in_token, c.is_whitespace()) {
                (true, true) => {
                    ends.push(i);
                    in_token = false;
                }
                (false, false) => {
                    pieces.push(start..i);
                    start = i;
                    in_token = true;
                }
                _ => {}
            }
        }
        if start < text.len() {
            if in_token {
                ends.push(text.len());
            }
            pieces.push(start..text.len());
        }
        Tokens {
            text,
            lead,
            pieces,
            ends,
        }
    }

    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The text of the tokens whose `mask` value is not 0.
    pub fn text(&self, mask: &[f64]) -> String {
        let mut out = String::with_capacity(self.text.len());
        out.push_str(&self.text[..self.lead]);
        for (piece, &m) in self.pieces.iter().zip(mask) {
            if m != 0.0 {
                out.push_str(&self.text[piece.clone()]);
            }
        }
        out
    }

    /// Each token's attribution name: its position and the token, `"3:great"` (long tokens cut
    /// to 32 characters and marked with `...`).
    pub fn names(&self) -> Vec<String> {
        self.pieces
            .iter()
            .zip(&self.ends)
            .enumerate()
            .map(|(i, (piece, &end))| {
                let token = &self.text[piece.start..end];
                match token.char_indices().nth(NAME_CHARS) {
                    Some((at, _)) => format!("{i}:{}...", &token[..at]),
                    None => format!("{i}:{token}"),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_present_is_the_document_and_all_removed_the_empty_text() {
        let doc = "  Thank you\tOhio!  #MAGA \n";
        let t = Tokens::split(doc);
        assert_eq!(t.len(), 4);
        assert_eq!(t.names(), ["0:Thank", "1:you", "2:Ohio!", "3:#MAGA"]);
        assert_eq!(t.text(&[1.0; 4]), doc);
        assert_eq!(t.text(&[0.0; 4]), "  ");
        assert_eq!(t.text(&[1.0, 0.0, 1.0, 0.0]), "  Thank Ohio!  ");
        assert!(Tokens::split("   ").is_empty());
        assert!(Tokens::split("").is_empty());
        let one = Tokens::split("word");
        assert_eq!(one.names(), ["0:word"]);
        assert_eq!(one.text(&[1.0]), "word");
    }

    #[test]
    fn long_tokens_are_cut_in_names_on_character_boundaries() {
        let long = "é".repeat(40);
        let t = Tokens::split(&long);
        let name = &t.names()[0];
        assert_eq!(name.chars().count(), 2 + 32 + 3, "{name}");
        assert_eq!(t.text(&[1.0]), long);
    }
}
