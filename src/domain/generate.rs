//! New secret values from the OS CSPRNG: passwords by rejection sampling (no modulo bias),
//! and raw random bytes as hex or base64.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::TryRngCore as _;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::secret::SecretBytes;

/// How `rotate --generator` makes a new value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generator {
    Password,
    Hex,
    Base64,
    /// One of Vault's password policies generates it.
    VaultPolicy,
}

impl Generator {
    pub const NAMES: [&'static str; 4] = ["password", "hex", "base64", "vault-policy"];
}

impl std::str::FromStr for Generator {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "password" => Ok(Generator::Password),
            "hex" => Ok(Generator::Hex),
            "base64" => Ok(Generator::Base64),
            "vault-policy" => Ok(Generator::VaultPolicy),
            _ => Err(format!(
                "{text:?} is not one of {}",
                Generator::NAMES.join(", ")
            )),
        }
    }
}

/// A generator with its parameters checked: what to make, and how long.
#[derive(Debug, Clone)]
pub enum Recipe {
    Password(PasswordSpec),
    Hex(usize),
    Base64(usize),
    /// The name of a Vault password policy; Vault makes the value.
    VaultPolicy(String),
}

impl Recipe {
    /// Makes a value locally; `None` for a recipe only Vault can carry out.
    pub fn generate_locally(&self) -> Option<Result<SecretBytes>> {
        match self {
            Recipe::Password(spec) => Some(spec.generate()),
            Recipe::Hex(bytes) => Some(random_hex(*bytes)),
            Recipe::Base64(bytes) => Some(random_base64(*bytes)),
            Recipe::VaultPolicy(_) => None,
        }
    }
}

/// Characters that are easy to misread; left out unless asked for.
pub const LOOKALIKES: &str = "0O1lI|`'\"";
pub const DEFAULT_SYMBOLS: &str = "!#%+-.:=@^_~";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharClass {
    Lower,
    Upper,
    Digit,
    Symbol,
}

impl CharClass {
    fn parse(name: &str) -> Result<Self> {
        match name.trim() {
            "lower" => Ok(CharClass::Lower),
            "upper" => Ok(CharClass::Upper),
            "digit" => Ok(CharClass::Digit),
            "symbol" => Ok(CharClass::Symbol),
            other => Err(Error::Usage(format!(
                "--charset: unknown class {other:?} (use lower, upper, digit, symbol)"
            ))),
        }
    }

    fn members(self, symbols: &str) -> Vec<u8> {
        match self {
            CharClass::Lower => (b'a'..=b'z').collect(),
            CharClass::Upper => (b'A'..=b'Z').collect(),
            CharClass::Digit => (b'0'..=b'9').collect(),
            CharClass::Symbol => symbols.bytes().collect(),
        }
    }
}

/// A password recipe: every listed class appears at least once.
#[derive(Debug, Clone)]
pub struct PasswordSpec {
    pub length: usize,
    /// The alphabet per required class, look-alikes already removed.
    classes: Vec<Vec<u8>>,
    alphabet: Vec<u8>,
}

impl PasswordSpec {
    pub fn new(
        length: usize,
        charset: Option<&str>,
        symbols: &str,
        allow_lookalikes: bool,
    ) -> Result<Self> {
        let names = charset.unwrap_or("lower,upper,digit,symbol");
        let mut classes = Vec::new();
        for name in names.split(',').filter(|n| !n.trim().is_empty()) {
            let class = CharClass::parse(name)?;
            let mut members = class.members(symbols);
            if !allow_lookalikes {
                members.retain(|c| !LOOKALIKES.as_bytes().contains(c));
            }
            if members.iter().any(|c| !c.is_ascii_graphic()) {
                return Err(Error::Usage(
                    "--symbols: only printable ASCII symbols are allowed".into(),
                ));
            }
            if members.is_empty() {
                return Err(Error::Usage(format!(
                    "--charset: class {name:?} has no characters left"
                )));
            }
            classes.push(members);
        }
        if classes.is_empty() {
            return Err(Error::Usage("--charset: name at least one class".into()));
        }
        if length < classes.len() || !(8..=1024).contains(&length) {
            return Err(Error::Usage(format!("--length {length}: a password needs 8 to 1024 characters and at least one per class")));
        }
        let mut alphabet: Vec<u8> = classes.concat();
        alphabet.sort_unstable();
        alphabet.dedup();
        Ok(Self {
            length,
            classes,
            alphabet,
        })
    }

    pub fn alphabet(&self) -> &[u8] {
        &self.alphabet
    }

    /// Each character is uniform over the alphabet; a draw that misses a required class is
    /// thrown away whole, which keeps the result uniform over all valid passwords.
    pub fn generate(&self) -> Result<SecretBytes> {
        loop {
            let mut password = Zeroizing::new(Vec::with_capacity(self.length));
            for _ in 0..self.length {
                password.push(self.alphabet[uniform_index(self.alphabet.len())?]);
            }
            if self
                .classes
                .iter()
                .all(|class| password.iter().any(|c| class.contains(c)))
            {
                return Ok(SecretBytes::new(password.to_vec()));
            }
        }
    }
}

/// A uniform index below `n` (n <= 256) by rejection sampling: bytes at or above the
/// largest multiple of `n` are redrawn instead of folded, which would bias low indexes.
fn uniform_index(n: usize) -> Result<usize> {
    debug_assert!((1..=256).contains(&n));
    let limit = 256 - (256 % n);
    loop {
        let byte = random_bytes(1)?[0] as usize;
        if byte < limit {
            return Ok(byte % n);
        }
    }
}

fn random_bytes(n: usize) -> Result<Zeroizing<Vec<u8>>> {
    let mut bytes = Zeroizing::new(vec![0u8; n]);
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| Error::Internal(format!("the OS random number generator failed: {e}")))?;
    Ok(bytes)
}

pub fn random_hex(bytes: usize) -> Result<SecretBytes> {
    Ok(SecretBytes::from_string(hex::encode(&*random_bytes(
        bytes,
    )?)))
}

pub fn random_base64(bytes: usize) -> Result<SecretBytes> {
    Ok(SecretBytes::from_string(
        STANDARD.encode(&*random_bytes(bytes)?),
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn password_characters_are_uniform_within_five_sigma() {
        let spec = PasswordSpec::new(50, None, DEFAULT_SYMBOLS, false).unwrap();
        let mut counts: BTreeMap<u8, u64> = spec.alphabet().iter().map(|c| (*c, 0)).collect();
        let mut total = 0u64;
        while total < 100_000 {
            let password = spec.generate().unwrap();
            for c in password.expose() {
                *counts.get_mut(c).expect("only alphabet characters") += 1;
                total += 1;
            }
        }
        let p = 1.0 / spec.alphabet().len() as f64;
        let expected = total as f64 * p;
        let sigma = (total as f64 * p * (1.0 - p)).sqrt();
        for (c, count) in counts {
            let deviation = (count as f64 - expected).abs() / sigma;
            assert!(deviation < 5.0, "{:?} seen {count} times, expected {expected:.0} (±{sigma:.0}): {deviation:.1} sigma", c as char);
        }
    }

    #[test]
    fn every_required_class_is_present_and_lookalikes_are_not() {
        let spec =
            PasswordSpec::new(8, Some("lower,upper,digit,symbol"), DEFAULT_SYMBOLS, false).unwrap();
        for _ in 0..2000 {
            let password = spec.generate().unwrap();
            let p = password.expose();
            assert_eq!(p.len(), 8);
            assert!(p.iter().any(u8::is_ascii_lowercase) && p.iter().any(u8::is_ascii_uppercase));
            assert!(
                p.iter().any(u8::is_ascii_digit)
                    && p.iter().any(|c| DEFAULT_SYMBOLS.as_bytes().contains(c))
            );
            assert!(!p.iter().any(|c| LOOKALIKES.as_bytes().contains(c)));
        }
    }

    #[test]
    fn bad_recipes_are_usage_errors() {
        assert!(PasswordSpec::new(4, None, DEFAULT_SYMBOLS, false).is_err());
        assert!(PasswordSpec::new(16, Some("emoji"), DEFAULT_SYMBOLS, false).is_err());
        assert!(PasswordSpec::new(16, Some("symbol"), "", false).is_err());
    }

    #[test]
    fn random_encodings_have_the_asked_size() {
        assert_eq!(random_hex(16).unwrap().expose().len(), 32);
        assert_eq!(
            STANDARD
                .decode(random_base64(32).unwrap().expose())
                .unwrap()
                .len(),
            32
        );
    }

    #[test]
    fn rejection_sampling_keeps_every_index_equally_likely() {
        // 62 and 255 do not divide 256: folding the top bytes in would favour low indexes.
        for n in [62usize, 255] {
            let draws = 100_000u64;
            let mut counts = vec![0u64; n];
            for _ in 0..draws {
                counts[uniform_index(n).unwrap()] += 1;
            }
            let p = 1.0 / n as f64;
            let expected = draws as f64 * p;
            let sigma = (draws as f64 * p * (1.0 - p)).sqrt();
            for (index, count) in counts.iter().enumerate() {
                let deviation = (*count as f64 - expected).abs() / sigma;
                assert!(
                    deviation < 5.0,
                    "n={n}: index {index} seen {count} times, expected {expected:.0}: {deviation:.1} sigma"
                );
            }
        }
    }

    #[test]
    fn generators_are_named_and_vault_policies_are_left_to_vault() {
        for name in Generator::NAMES {
            let generator: Generator = name.parse().unwrap();
            assert_eq!(
                Generator::NAMES[generator as usize],
                name,
                "{name} parses to its own generator"
            );
        }
        assert!("Password".parse::<Generator>().is_err());
        let hex = Recipe::Hex(4).generate_locally().unwrap().unwrap();
        assert_eq!(hex.expose().len(), 8);
        assert!(hex.expose().iter().all(u8::is_ascii_hexdigit));
        let base64 = Recipe::Base64(3).generate_locally().unwrap().unwrap();
        assert_eq!(STANDARD.decode(base64.expose()).unwrap().len(), 3);
        let spec = PasswordSpec::new(12, Some("digit"), DEFAULT_SYMBOLS, false).unwrap();
        let password = Recipe::Password(spec).generate_locally().unwrap().unwrap();
        assert_eq!(password.expose().len(), 12);
        assert!(password.expose().iter().all(u8::is_ascii_digit));
        assert!(Recipe::VaultPolicy("p".into()).generate_locally().is_none());
    }

    #[test]
    fn a_charset_names_exactly_the_classes_used() {
        let upper = PasswordSpec::new(8, Some(" upper "), DEFAULT_SYMBOLS, true).unwrap();
        assert_eq!(upper.alphabet(), (b'A'..=b'Z').collect::<Vec<_>>());
        let lower = PasswordSpec::new(8, Some("lower"), DEFAULT_SYMBOLS, true).unwrap();
        assert_eq!(lower.alphabet(), (b'a'..=b'z').collect::<Vec<_>>());
        let symbols = PasswordSpec::new(8, Some("symbol"), "!#", true).unwrap();
        assert_eq!(symbols.alphabet(), b"!#");
        assert!(PasswordSpec::new(1025, None, DEFAULT_SYMBOLS, false).is_err());
        assert!(PasswordSpec::new(1024, None, DEFAULT_SYMBOLS, false).is_ok());
        assert!(PasswordSpec::new(8, Some(","), DEFAULT_SYMBOLS, false).is_err());
    }
}
