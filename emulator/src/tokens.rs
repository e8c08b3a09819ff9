//! Service-account tokens: signed ES256 JWTs with the claims of a projected token, and
//! their review (the TokenReview API that OpenBao's kubernetes auth calls).

use std::collections::BTreeSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde_json::{json, Value};

pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The audiences the API server itself answers to; a TokenReview without audiences uses these.
pub const API_AUDIENCES: &[&str] = &["https://kubernetes.default.svc", ISSUER];

/// Who a verified token belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceAccountIdentity {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub audiences: Vec<String>,
    pub jti: String,
}

impl ServiceAccountIdentity {
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

/// Signs and verifies the emulator's tokens with one P-256 key made at start-up.
pub struct TokenAuthority {
    signing: SigningKey,
    verifying: VerifyingKey,
    key_id: String,
    revoked: BTreeSet<String>,
}

impl TokenAuthority {
    pub fn new() -> Self {
        let signing = SigningKey::random(&mut rand_core::OsRng);
        let verifying = *signing.verifying_key();
        let key_id = hex_prefix(&verifying.to_encoded_point(true).to_bytes());
        Self {
            signing,
            verifying,
            key_id,
            revoked: BTreeSet::new(),
        }
    }

    /// Issues a token for a service account, as `POST .../serviceaccounts/NAME/token` does.
    pub fn issue(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        audiences: &[String],
        lifetime_seconds: i64,
        now: i64,
    ) -> String {
        let jti = random_id();
        let claims = json!({
            "aud": audiences,
            "exp": now + lifetime_seconds,
            "iat": now,
            "nbf": now,
            "iss": ISSUER,
            "jti": jti,
            "sub": format!("system:serviceaccount:{namespace}:{name}"),
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": name, "uid": uid},
            },
        });
        let header = json!({"alg": "ES256", "kid": self.key_id, "typ": "JWT"});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature: Signature = self.signing.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }

    pub fn revoke(&mut self, jti: &str) {
        self.revoked.insert(jti.to_string());
    }

    /// Checks signature, validity window and revocation; the caller checks that the
    /// service account (by uid) still exists.
    pub fn verify(&self, token: &str, now: i64) -> Option<ServiceAccountIdentity> {
        let mut parts = token.trim().split('.');
        let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).ok()?).ok()?;
        self.verifying
            .verify(format!("{header}.{claims}").as_bytes(), &signature)
            .ok()?;
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        let exp = claims["exp"].as_i64()?;
        let nbf = claims["nbf"].as_i64()?;
        if now >= exp || now < nbf || claims["iss"] != ISSUER {
            return None;
        }
        let jti = claims["jti"].as_str()?.to_string();
        if self.revoked.contains(&jti) {
            return None;
        }
        let k8s = &claims["kubernetes.io"];
        let audiences = match &claims["aud"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(list) => list
                .iter()
                .filter_map(|a| a.as_str().map(String::from))
                .collect(),
            _ => return None,
        };
        Some(ServiceAccountIdentity {
            namespace: k8s["namespace"].as_str()?.to_string(),
            name: k8s["serviceaccount"]["name"].as_str()?.to_string(),
            uid: k8s["serviceaccount"]["uid"].as_str()?.to_string(),
            audiences,
            jti,
        })
    }
}

impl Default for TokenAuthority {
    fn default() -> Self {
        Self::new()
    }
}

/// The audiences a review may accept: the intersection of the requested ones (or the API
/// server's own when none are requested) with the token's.
pub fn reviewed_audiences(requested: &[String], token_audiences: &[String]) -> Vec<String> {
    let wanted: Vec<String> = if requested.is_empty() {
        API_AUDIENCES.iter().map(|a| a.to_string()).collect()
    } else {
        requested.to_vec()
    };
    wanted
        .into_iter()
        .filter(|a| token_audiences.contains(a))
        .collect()
}

pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex_prefix(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_until_expiry_or_revocation() {
        let mut authority = TokenAuthority::new();
        let aud = vec!["vault".to_string()];
        let token = authority.issue("ns", "sa", "uid-1", &aud, 600, 1_000);
        let id = authority.verify(&token, 1_001).expect("valid token");
        assert_eq!(id.username(), "system:serviceaccount:ns:sa");
        assert_eq!(id.uid, "uid-1");
        assert!(authority.verify(&token, 1_600).is_none(), "expired");
        let mut tampered = token.clone();
        tampered.insert(token.len() / 2, 'x');
        assert!(authority.verify(&tampered, 1_001).is_none(), "tampered");
        assert!(
            TokenAuthority::new().verify(&token, 1_001).is_none(),
            "other key"
        );
        authority.revoke(&id.jti);
        assert!(authority.verify(&token, 1_001).is_none(), "revoked");
    }

    #[test]
    fn review_audiences_are_an_intersection() {
        let token_aud = vec!["a".to_string(), API_AUDIENCES[0].to_string()];
        assert_eq!(
            reviewed_audiences(&["a".into(), "b".into()], &token_aud),
            vec!["a".to_string()]
        );
        assert_eq!(
            reviewed_audiences(&[], &token_aud),
            vec![API_AUDIENCES[0].to_string()]
        );
        assert!(reviewed_audiences(&["b".into()], &token_aud).is_empty());
    }
}
