//! Secret values in memory: zeroized when dropped and impossible to print.
//!
//! Neither type implements `Display`, and `Debug` of [`SecretData`] shows key names only, so
//! a value cannot reach a log line or an error message by accident.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

/// One secret value, as raw bytes.
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of the buffer so that no unzeroized copy is left behind.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub fn from_string(text: String) -> Self {
        Self::new(text.into_bytes())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn as_utf8(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl Clone for SecretBytes {
    fn clone(&self) -> Self {
        Self::new(self.0.to_vec())
    }
}

/// The key/value pairs of one secret. Key names are not secret; values are.
#[derive(Clone, Default)]
pub struct SecretData(BTreeMap<String, SecretBytes>);

impl SecretData {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, key: String, value: SecretBytes) {
        self.0.insert(key, value);
    }

    pub fn get(&self, key: &str) -> Option<&SecretBytes> {
        self.0.get(key)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn keys(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }

    /// Pairs in key order (byte order of the UTF-8 key), which the fingerprint relies on.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &SecretBytes)> {
        self.0.iter()
    }
}

impl FromIterator<(String, SecretBytes)> for SecretData {
    fn from_iter<I: IntoIterator<Item = (String, SecretBytes)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl std::fmt::Debug for SecretData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretData")
            .field("keys", &self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_keys_but_never_values() {
        let data: SecretData = [(
            "password".to_string(),
            SecretBytes::from_string("canary-7f3a".into()),
        )]
        .into_iter()
        .collect();
        let printed = format!("{data:?}");
        assert!(printed.contains("password"));
        assert!(!printed.contains("canary-7f3a"));
    }
}
