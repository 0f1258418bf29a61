//! The n-gram pool of a TfIdfVectorizer, built once at load: every token of the pool gets an id,
//! every n-gram of ids its output column. Counting a row then costs one hash of each token's
//! text and one hash of a few integers per n-gram, with no allocation (the text of an n-gram is
//! never built).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use tract_onnx::tract_hir::internal::*;

/// The Fx hash (rustc's): a multiply and a rotate per word. The keys are the model's own
/// vocabulary, fixed at load; requests only look up, so no request can grow a bucket.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A token's id in the pool's vocabulary; `None` for a token no n-gram of the pool contains.
pub type TokenId = Option<u32>;

/// The n-grams of a TfIdfVectorizer, as token ids, with onnxruntime's walk over starts and skips.
#[derive(Debug)]
pub struct NgramPool {
    vocabulary: FxMap<Box<str>, u32>,
    columns: FxMap<Box<[u32]>, usize>,
    min_n: usize,
    max_n: usize,
    max_skip: usize,
}

impl NgramPool {
    /// A pool of `(n-gram tokens, column)`, counted for lengths `min_n..=max_n` and skips up to
    /// `max_skip` (already checked by the caller).
    pub fn new<'a>(
        grams: impl IntoIterator<Item = (&'a [String], usize)>,
        min_n: usize,
        max_n: usize,
        max_skip: usize,
    ) -> TractResult<NgramPool> {
        let mut vocabulary: FxMap<Box<str>, u32> = FxMap::default();
        let mut columns: FxMap<Box<[u32]>, usize> = FxMap::default();
        for (gram, column) in grams {
            let mut ids = Vec::with_capacity(gram.len());
            for token in gram {
                let next = u32::try_from(vocabulary.len())
                    .map_err(|_| format_err!("TfIdfVectorizer: vocabulary too large"))?;
                ids.push(*vocabulary.entry(token.as_str().into()).or_insert(next));
            }
            // A repeated n-gram counts into its last column (as before the pool held ids).
            columns.insert(ids.into_boxed_slice(), column);
        }
        Ok(NgramPool {
            vocabulary,
            columns,
            min_n,
            max_n,
            max_skip,
        })
    }

    /// The id of a token.
    #[inline]
    pub fn id(&self, token: &str) -> TokenId {
        self.vocabulary.get(token).copied()
    }

    /// Adds one row's n-gram counts (tokens given as ids) into `out`: unigrams once, longer
    /// n-grams once per skip distance. An unknown token ends every n-gram that would contain it.
    pub fn count(&self, row: &[TokenId], out: &mut [f32]) {
        let mut key = [0u32; super::text::MAX_GRAM];
        for distance in 1..=self.max_skip + 1 {
            let lo = if distance == 1 {
                self.min_n
            } else {
                self.min_n.max(2)
            };
            if lo > self.max_n {
                break;
            }
            for start in 0..row.len() {
                for n in 1..=self.max_n {
                    let Some(&token) = row.get(start + (n - 1) * distance) else {
                        break;
                    };
                    let Some(id) = token else {
                        break;
                    };
                    key[n - 1] = id;
                    if n < lo {
                        continue;
                    }
                    if let Some(c) = self.columns.get(&key[..n]) {
                        if let Some(o) = out.get_mut(*c) {
                            *o += 1.0;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(grams: &[(&str, usize)], min_n: usize, max_n: usize, skip: usize) -> NgramPool {
        let owned: Vec<(Vec<String>, usize)> = grams
            .iter()
            .map(|(g, c)| (g.split(' ').map(String::from).collect(), *c))
            .collect();
        NgramPool::new(
            owned.iter().map(|(g, c)| (g.as_slice(), *c)),
            min_n,
            max_n,
            skip,
        )
        .unwrap()
    }

    fn counts(p: &NgramPool, tokens: &[&str]) -> Vec<f32> {
        let ids: Vec<TokenId> = tokens.iter().map(|t| p.id(t)).collect();
        let mut out = vec![0.0; 4];
        p.count(&ids, &mut out);
        out
    }

    #[test]
    fn ngrams_are_counted_once_per_skip_distance_and_unigrams_once() {
        let grams = [("a", 0), ("b", 1), ("a b", 2), ("a a", 3)];
        let p = pool(&grams, 1, 2, 0);
        assert_eq!(counts(&p, &["a", "b", "a", "b"]), vec![2.0, 2.0, 2.0, 0.0]);
        // With one skip, "a _ a" adds an "a a" bigram; unigrams are not counted again.
        let p = pool(&grams, 1, 2, 1);
        assert_eq!(counts(&p, &["a", "b", "a", "b"]), vec![2.0, 2.0, 2.0, 1.0]);
        // Bigrams only.
        let p = pool(&[("a", 0), ("a b", 2)], 2, 2, 0);
        assert_eq!(counts(&p, &["a", "b", "#"]), vec![0.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn unknown_tokens_break_ngrams_and_trigrams_need_every_token() {
        let p = pool(&[("x", 0), ("x y", 1), ("x y z", 2), ("y z", 3)], 1, 3, 0);
        // "q" is in no n-gram: "x q" and "q y" never match.
        assert_eq!(counts(&p, &["x", "q", "y", "z"]), vec![1.0, 0.0, 0.0, 1.0]);
        assert_eq!(counts(&p, &["x", "y", "z"]), vec![1.0, 1.0, 1.0, 1.0]);
        // Tokens of the pool that are only inside longer n-grams count nothing alone.
        assert_eq!(counts(&p, &["z", "y"]), vec![0.0; 4]);
    }
}
