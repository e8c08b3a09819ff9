//! Keyed fingerprints: `hmac-sha256:<hex>` over a canonical encoding of the key/value pairs.
//!
//! The key lives in Vault, so a fingerprint printed in an annotation cannot be used to
//! brute-force a low-entropy value offline, as a plain hash could.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::bootstrap::Target;
use crate::secret::SecretData;

const PREFIX: &str = "hmac-sha256:";

/// The HMAC key; never printed.
pub struct FingerprintKey(Zeroizing<Vec<u8>>);

/// A fingerprint as stored in annotations and Vault metadata.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fingerprint(String);

impl FingerprintKey {
    pub const LEN: usize = 32;

    pub fn new(bytes: Vec<u8>) -> Option<Self> {
        (bytes.len() >= Self::LEN).then(|| Self(Zeroizing::new(bytes)))
    }

    /// A fresh key from the OS CSPRNG.
    pub fn random() -> Self {
        let mut bytes = Zeroizing::new(vec![0u8; Self::LEN]);
        rand::fill(&mut bytes[..]);
        Self(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The fingerprint of `data` as recorded for `target`. The target is part of the MAC, so
    /// fingerprints recorded for different paths cannot be compared: someone who can have a
    /// guess fingerprinted under their own path learns nothing about another path's value.
    pub fn fingerprint(&self, target: &Target, data: &SecretData) -> Fingerprint {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        for part in [target.mount.as_bytes(), target.path.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.update(&canonical_encoding(data));
        Fingerprint(format!(
            "{PREFIX}{}",
            hex::encode(mac.finalize().into_bytes())
        ))
    }
}

impl Fingerprint {
    /// Accepts only the exact form secops writes, so a hand-edited annotation cannot pass.
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix(PREFIX)?;
        let ok = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Count, then for each pair in key order: length-prefixed key, length-prefixed value (u64
/// big-endian lengths). Lengths make boundaries unambiguous: `{"ab":"c"}` and `{"a":"bc"}`
/// encode differently.
pub fn canonical_encoding(data: &SecretData) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::new());
    out.extend_from_slice(&(data.len() as u64).to_be_bytes());
    for (key, value) in data.iter() {
        for field in [key.as_bytes(), value.expose()] {
            out.extend_from_slice(&(field.len() as u64).to_be_bytes());
            out.extend_from_slice(field);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretBytes;

    fn data(pairs: &[(&str, &[u8])]) -> SecretData {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), SecretBytes::new(v.to_vec())))
            .collect()
    }

    fn key(byte: u8) -> FingerprintKey {
        FingerprintKey::new(vec![byte; 32]).unwrap()
    }

    #[test]
    fn canonical_encoding_keeps_boundaries_apart() {
        assert_ne!(
            *canonical_encoding(&data(&[("ab", b"c")])),
            *canonical_encoding(&data(&[("a", b"bc")]))
        );
        assert_ne!(
            *canonical_encoding(&data(&[("a", b""), ("b", b"")])),
            *canonical_encoding(&data(&[("a", b"\0\0\0\0\0\0\0\x01b")]))
        );
    }

    #[test]
    fn canonical_encoding_is_pinned() {
        let encoded = canonical_encoding(&data(&[("k", b"v")]));
        let expected: Vec<u8> = [
            &1u64.to_be_bytes()[..],
            &1u64.to_be_bytes(),
            b"k",
            &1u64.to_be_bytes(),
            b"v",
        ]
        .concat();
        assert_eq!(*encoded, expected);
    }

    fn target(mount: &str, path: &str) -> Target {
        Target {
            mount: mount.into(),
            path: path.into(),
        }
    }

    #[test]
    fn fingerprints_depend_on_key_target_and_data() {
        let at = target("secret", "team-a/db");
        let d = data(&[("password", b"hunter2"), ("user", b"app")]);
        let fp = key(1).fingerprint(&at, &d);
        assert_eq!(fp, key(1).fingerprint(&at, &d.clone()));
        assert_ne!(fp, key(2).fingerprint(&at, &d));
        let other = data(&[("password", b"hunter3"), ("user", b"app")]);
        assert_ne!(fp, key(1).fingerprint(&at, &other));
        assert!(Fingerprint::parse(fp.as_str()).is_some());
        assert!(!fp.as_str().contains(&hex::encode(b"hunter2")));
    }

    #[test]
    fn the_same_value_under_another_target_is_incomparable() {
        // No guessing oracle: a guess fingerprinted for team-b's path says nothing about
        // team-a's, and the length prefixes keep mount and path from sliding into each other.
        let d = data(&[("password", b"hunter2")]);
        let a = key(1).fingerprint(&target("secret", "team-a/db"), &d);
        assert_ne!(a, key(1).fingerprint(&target("secret", "team-b/db"), &d));
        assert_ne!(a, key(1).fingerprint(&target("kv", "team-a/db"), &d));
        assert_ne!(
            key(1).fingerprint(&target("ab", "c"), &d),
            key(1).fingerprint(&target("a", "bc"), &d)
        );
    }

    #[test]
    fn fingerprint_parse_rejects_other_forms() {
        for bad in [
            "",
            "sha256:00",
            "hmac-sha256:xyz",
            &format!("hmac-sha256:{}", "A".repeat(64)),
        ] {
            assert!(Fingerprint::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(FingerprintKey::new(vec![0; 16]).is_none());
    }

    #[test]
    fn keys_are_32_random_bytes_or_more() {
        let a = FingerprintKey::random();
        assert_eq!(a.expose().len(), FingerprintKey::LEN);
        assert_ne!(a.expose(), FingerprintKey::random().expose());
        assert_eq!(
            FingerprintKey::new(vec![7; 32]).unwrap().expose(),
            &[7u8; 32][..]
        );
        assert!(FingerprintKey::new(vec![7; 31]).is_none());
        let fp = key(1).fingerprint(&target("secret", "a"), &data(&[("k", b"v")]));
        assert_eq!(fp.to_string(), fp.as_str());
        assert!(fp.as_str().starts_with("hmac-sha256:"));
    }
}
