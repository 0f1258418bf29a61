//! The API keys file: `[[keys]]` entries of a name, the SHA-256 digest of the key (so the file
//! holds no secret), scopes, and an optional rate limit. Parsed strictly: unknown fields, bad
//! digests, duplicate names or digests and unknown scopes are errors naming the entry.

use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::Scope;

/// A SHA-256 digest.
pub type KeyDigest = [u8; 32];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    sha256: String,
    scopes: Vec<Scope>,
    rps: Option<f64>,
    burst: Option<u32>,
}

/// One configured key, as the server holds it.
#[derive(Clone)]
pub struct KeySpec {
    /// A metric label and log field: `[a-z0-9_-]{1,64}`, unique in the file.
    pub name: String,
    pub digest: KeyDigest,
    pub scopes: Vec<Scope>,
    /// Requests per second and burst, when the key is rate limited.
    pub rate: Option<(f64, u32)>,
}

impl std::fmt::Debug for KeySpec {
    /// The digest is not a secret, but it is not printed either: a log has no use for it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySpec")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

/// The hex SHA-256 digest of a key, as the keys file stores it (`infera hash-key`).
pub fn hash_key(key: &str) -> String {
    hex(&digest(key.as_bytes()))
}

pub(super) fn digest(key: &[u8]) -> KeyDigest {
    Sha256::digest(key).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_digest(text: &str) -> Option<KeyDigest> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Reads and checks a keys file.
pub fn load(path: &Path) -> Result<Vec<KeySpec>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading keys file {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("keys file {}: {e}", path.display()))
}

/// Parses the TOML text of a keys file.
pub fn parse(text: &str) -> Result<Vec<KeySpec>, String> {
    let file: KeysFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
    let mut keys: Vec<KeySpec> = Vec::with_capacity(file.keys.len());
    for (i, entry) in file.keys.into_iter().enumerate() {
        let at = format!("keys[{i}] ({:?})", entry.name);
        if !valid_name(&entry.name) {
            return Err(format!(
                "{at}: name must be 1-64 characters of a-z, 0-9, _ and -"
            ));
        }
        let digest = parse_digest(&entry.sha256).ok_or_else(|| {
            format!("{at}: sha256 must be 64 hex digits (the output of `infera hash-key`)")
        })?;
        if entry.scopes.is_empty() {
            return Err(format!("{at}: scopes must name at least one scope"));
        }
        let rate = match (entry.rps, entry.burst) {
            (None, None) => None,
            (Some(rps), burst) if rps.is_finite() && rps > 0.0 => {
                let burst = burst.unwrap_or_else(|| rps.ceil().max(1.0) as u32);
                if burst == 0 {
                    return Err(format!("{at}: burst must be at least 1"));
                }
                Some((rps, burst))
            }
            (Some(_), _) => return Err(format!("{at}: rps must be a positive number")),
            (None, Some(_)) => return Err(format!("{at}: burst needs rps")),
        };
        if keys.iter().any(|k| k.name == entry.name) {
            return Err(format!("{at}: the name is used twice"));
        }
        if keys.iter().any(|k| k.digest == digest) {
            return Err(format!("{at}: the same key digest is listed twice"));
        }
        keys.push(KeySpec {
            name: entry.name,
            digest,
            scopes: entry.scopes,
            rate,
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_sha256_hex() {
        // sha256("abc"), from FIPS 180-2.
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_good_file_parses() {
        let text = format!(
            "[[keys]]\nname = \"frontend\"\nsha256 = \"{}\"\nscopes = [\"predict\", \"read\"]\nrps = 5.0\nburst = 10\n\n[[keys]]\nname = \"ops\"\nsha256 = \"{}\"\nscopes = [\"admin\"]\n",
            hash_key("k1"),
            hash_key("k2")
        );
        let keys = parse(&text).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].scopes, vec![Scope::Predict, Scope::Read]);
        assert_eq!(keys[0].rate, Some((5.0, 10)));
        assert_eq!(keys[1].rate, None);
        assert!(!format!("{:?}", keys[0]).contains(&hash_key("k1")));
    }

    #[test]
    fn bad_files_are_refused_naming_the_entry() {
        let good = hash_key("k");
        let cases = [
            (format!("[[keys]]\nname = \"Bad Name\"\nsha256 = \"{good}\"\nscopes = [\"predict\"]\n"), "name must be"),
            ("[[keys]]\nname = \"a\"\nsha256 = \"abc\"\nscopes = [\"predict\"]\n".to_string(), "64 hex"),
            (format!("[[keys]]\nname = \"a\"\nsha256 = \"{good}\"\nscopes = []\n"), "at least one scope"),
            (format!("[[keys]]\nname = \"a\"\nsha256 = \"{good}\"\nscopes = [\"root\"]\n"), "unknown variant"),
            (format!("[[keys]]\nname = \"a\"\nsha256 = \"{good}\"\nscopes = [\"predict\"]\nrps = -1.0\n"), "rps must be"),
            (format!("[[keys]]\nname = \"a\"\nsha256 = \"{good}\"\nscopes = [\"predict\"]\nkey = \"x\"\n"), "unknown field"),
            (format!("[[keys]]\nname = \"a\"\nsha256 = \"{good}\"\nscopes = [\"predict\"]\n[[keys]]\nname = \"a\"\nsha256 = \"{}\"\nscopes = [\"predict\"]\n", hash_key("other")), "used twice"),
            (format!("[[keys]]\nname = \"a\"\nsha256 = \"{good}\"\nscopes = [\"predict\"]\n[[keys]]\nname = \"b\"\nsha256 = \"{good}\"\nscopes = [\"predict\"]\n"), "digest is listed twice"),
        ];
        for (text, words) in cases {
            let err = parse(&text).unwrap_err();
            assert!(err.contains(words), "{words}: {err}");
        }
    }
}
