//! The Vault seam: login and the few KV v2 calls secops makes, over vaultrs, in secops's own
//! types. Every call is retried on temporary failures and classified in one place.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rustify::Endpoint as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::ser::{Serialize, SerializeMap, Serializer};
use vaultrs::api::kv2::requests::{
    ReadSecretRequest, SetSecretMetadataRequest, SetSecretRequestOptions,
};
use vaultrs::client::{Client as _, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::audit::{Action, AuditEvent};
use crate::domain::fingerprint::FingerprintKey;
use crate::domain::names::FINGERPRINT_KEY_PATH;
use crate::domain::outcome::Outcome;
use crate::domain::provenance::MetadataPatch;
use crate::error::{transport_fault, Error, Result, TransportFault};
use crate::retry::{RetryPolicy, RACE_ATTEMPTS};
use crate::secret::{SecretBytes, SecretData};

/// How secops logs in, with its credentials already read from files or the environment.
pub enum Login {
    Token(SecretString),
    Kubernetes {
        mount: String,
        role: String,
        jwt: SecretString,
    },
    AppRole {
        mount: String,
        role_id: String,
        secret_id: SecretString,
    },
}

/// Everything needed to reach Vault, validated before any connection is made (by `cli`).
pub struct VaultSettings {
    pub address: String,
    pub ca_cert: Option<PathBuf>,
    pub namespace: Option<String>,
    pub skip_verify: bool,
    pub timeout: Duration,
    pub login: Login,
}

/// The refusal for a fingerprint key that exists but cannot be read, with how to restore it.
pub fn fingerprint_key_gone(mount: &str, metadata: &VaultMetadata) -> Error {
    let version = metadata.current_version;
    let detail = if metadata.deleted_versions.contains(&version) {
        format!("version {version} is deleted; restore it: bao kv undelete -mount={mount} -versions={version} {FINGERPRINT_KEY_PATH}")
    } else {
        format!("version {version} is destroyed; recorded fingerprints can no longer be verified. Restore the key from a Vault backup")
    };
    Error::Refused {
        action: format!("read the fingerprint key {mount}/{FINGERPRINT_KEY_PATH}"),
        detail,
    }
}

/// What a KV mount is, as far as secops's writes care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvMount {
    /// KV v2 that secops can write: data with `cas`, metadata by patch.
    Usable,
    /// Not KV v2 (kv1, cubbyhole, another engine): `<mount>/config` does not exist.
    NotKvV2,
    /// KV v2 that demands check-and-set on metadata writes, which HashiCorp Vault does not
    /// offer and secops does not use.
    MetadataCasRequired,
}

/// One version of a KV v2 secret, values decoded back to raw bytes.
pub struct VaultSecret {
    pub version: u64,
    pub data: SecretData,
}

/// The metadata of a KV v2 path.
#[derive(Debug, Clone)]
pub struct VaultMetadata {
    pub current_version: u64,
    pub custom: BTreeMap<String, String>,
    /// Versions still readable (neither deleted nor destroyed), ascending.
    pub live_versions: Vec<u64>,
    /// Versions soft-deleted (restorable with undelete), ascending.
    pub deleted_versions: Vec<u64>,
    /// When the current version was written (its age is what `--max-age` judges).
    pub current_created_at: Option<jiff::Timestamp>,
}

/// The answer to a check-and-set write.
#[derive(Debug, PartialEq, Eq)]
pub enum CasWrite {
    Written {
        version: u64,
    },
    /// Someone else wrote first: re-read and re-decide.
    Mismatch,
    /// A create (`cas=0`) was refused with 403. Vault checks `update` before `cas` when the
    /// path exists, so under a create-only policy this is how "it exists" looks; a read
    /// decides whether it was that or a real denial (the path is absent).
    Denied,
}

/// A failure the caller decides on, as opposed to one it only reports.
enum Failure {
    CasMismatch,
    NotFound,
    Fatal(Error),
}

/// Classifies every vaultrs error in one place. Vault reports a CAS mismatch as an ordinary
/// 400, distinguishable only by its message, so that is the one text match secops makes.
fn classify(error: ClientError, action: &str) -> Failure {
    let fatal = |e: Error| Failure::Fatal(e);
    let (code, errors) = match error {
        ClientError::APIError { code, errors } => (code, errors),
        ClientError::RestClientError {
            source: rustify::errors::ClientError::ServerResponseError { code, content },
        } => {
            let errors = content
                .and_then(|c| serde_json::from_str::<serde_json::Value>(&c).ok())
                .and_then(|v| {
                    v["errors"].as_array().map(|a| {
                        a.iter()
                            .filter_map(|e| e.as_str().map(String::from))
                            .collect()
                    })
                })
                .unwrap_or_default();
            (code, errors)
        }
        ClientError::RestClientError {
            source: rustify::errors::ClientError::RequestError { source, .. },
        } => {
            let chain = one_line(
                &source
                    .chain()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(": "),
            );
            return fatal(match transport_fault(source.as_ref()) {
                TransportFault::Certificate => Error::Usage(format!(
                    "{action}: Vault's TLS certificate is not trusted (set --vault-cacert): {chain}"
                )),
                TransportFault::NotTls => Error::Usage(format!(
                    "{action}: Vault does not answer TLS at this address (is it http://?)"
                )),
                TransportFault::TimedOut => Error::temporary(action, "request timed out"),
                TransportFault::Unreachable => {
                    Error::temporary(action, format!("cannot reach Vault: {chain}"))
                }
            });
        }
        ClientError::RestClientError {
            source: rustify::errors::ClientError::ResponseError { .. },
        } => {
            return fatal(Error::Temporary {
                action: action.into(),
                detail: "the connection failed while reading the response".into(),
            });
        }
        // Never attach the parse error or the content: it could quote a secret value.
        ClientError::RestClientError { .. }
        | ClientError::JsonParseError { .. }
        | ClientError::ResponseEmptyError
        | ClientError::ResponseDataEmptyError => {
            return fatal(Error::Remote {
                action: action.into(),
                detail: "Vault's response could not be read".into(),
            });
        }
        ClientError::ParseCertificateError { path, .. }
        | ClientError::FileReadError { path, .. } => {
            return fatal(Error::Usage(format!("cannot use CA certificate {path}")));
        }
        other => return fatal(Error::Internal(format!("{action}: {other}"))),
    };
    let message = errors
        .first()
        .map(|e| one_line(e))
        .unwrap_or_else(|| format!("HTTP {code}"));
    match code {
        400 if errors
            .iter()
            .any(|e| e.contains("check-and-set parameter did not match")) =>
        {
            Failure::CasMismatch
        }
        404 => Failure::NotFound,
        _ => fatal(Error::from_status(code, action, "Vault", message)),
    }
}

/// The outcome of a call that answers nothing but success.
fn done(result: std::result::Result<(), ClientError>, action: &str) -> Result<()> {
    result.map_err(|e| match classify(e, action) {
        Failure::Fatal(error) => error,
        Failure::NotFound | Failure::CasMismatch => Error::Remote {
            action: action.into(),
            detail: "unexpected answer".into(),
        },
    })
}

/// The outcome of a read: 404 is an answer (absent), a check-and-set mismatch is not one
/// a read can give.
fn found<T>(result: std::result::Result<T, ClientError>, action: &str) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) => match classify(e, action) {
            Failure::NotFound => Ok(None),
            Failure::CasMismatch => Err(Error::Internal(format!(
                "{action}: unexpected check-and-set answer"
            ))),
            Failure::Fatal(error) => Err(error),
        },
    }
}

fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    line.chars().take(300).collect()
}

/// Serializes secret data for a KV write: UTF-8 values as strings, other values base64
/// (their keys are listed in `secops-base64-keys`).
struct WireData<'a>(&'a SecretData);

impl Serialize for WireData<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0.iter() {
            match value.as_utf8() {
                Some(text) => map.serialize_entry(key, text)?,
                None => map.serialize_entry(key, &STANDARD.encode(value.expose()))?,
            }
        }
        map.end()
    }
}

/// Keys whose values are not UTF-8 and therefore travel base64-encoded.
pub fn base64_keys(data: &SecretData) -> BTreeSet<String> {
    data.iter()
        .filter(|(_, v)| v.as_utf8().is_none())
        .map(|(k, _)| k.clone())
        .collect()
}

/// Takes ownership of the strings in Vault's answer, so the buffers are zeroized with the
/// [`SecretData`] instead of lingering.
fn decode_data(
    mut value: serde_json::Value,
    base64_keys: &BTreeSet<String>,
    action: &str,
) -> Result<SecretData> {
    // Not written by secops (which writes strings only): a conflict at the target, not a bug.
    let unreadable = || Error::ForeignData {
        action: action.into(),
    };
    let map = value.as_object_mut().ok_or_else(unreadable)?;
    let mut data = SecretData::new();
    for (key, value) in map.iter_mut() {
        let serde_json::Value::String(text) = std::mem::take(value) else {
            return Err(unreadable());
        };
        let bytes = if base64_keys.contains(key) {
            let decoded = STANDARD.decode(text.as_bytes()).map_err(|_| Error::Remote {
                action: action.into(),
                detail: format!("key {key:?} is listed in secops-base64-keys but is not base64"),
            });
            zeroize::Zeroize::zeroize(&mut text.into_bytes());
            decoded?
        } else {
            text.into_bytes()
        };
        data.insert(key.clone(), SecretBytes::new(bytes));
    }
    Ok(data)
}

/// A logged-in Vault client.
pub struct Vault {
    client: VaultClient,
    retry: RetryPolicy,
}

impl Vault {
    pub async fn connect(settings: &VaultSettings, retry: RetryPolicy) -> Result<Vault> {
        if settings.skip_verify {
            tracing::warn!("TLS verification of Vault is OFF (--vault-skip-verify): anyone on the path can read the secrets");
        }
        let mut builder = VaultClientSettingsBuilder::default();
        builder
            .address(&settings.address)
            .token("")
            .timeout(Some(settings.timeout))
            .verify(!settings.skip_verify)
            .ca_certs(
                settings
                    .ca_cert
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            );
        if let Some(namespace) = &settings.namespace {
            builder.set_namespace(namespace.clone());
        }
        let client_settings = builder
            .build()
            .map_err(|e| Error::Usage(format!("invalid Vault settings: {e}")))?;
        let client = VaultClient::new(client_settings).map_err(|e| {
            match classify(e, "configure Vault client") {
                Failure::Fatal(error) => error,
                _ => Error::Usage("cannot configure the Vault client".into()),
            }
        })?;
        let mut vault = Vault { client, retry };
        vault.login(&settings.login).await?;
        Ok(vault)
    }

    async fn login(&mut self, login: &Login) -> Result<()> {
        let (action, mount) = match login {
            Login::Token(token) => {
                self.client.set_token(token.expose_secret());
                return Ok(());
            }
            Login::Kubernetes { mount, .. } => ("kubernetes login", mount),
            Login::AppRole { mount, .. } => ("approle login", mount),
        };
        let action = format!("Vault {action} at auth/{mount}");
        let client = &self.client;
        let auth = self
            .retry
            .run(|| async {
                let result = match login {
                    Login::Kubernetes { mount, role, jwt } => {
                        vaultrs::auth::kubernetes::login(client, mount, role, jwt.expose_secret())
                            .await
                    }
                    Login::AppRole {
                        mount,
                        role_id,
                        secret_id,
                    } => {
                        vaultrs::auth::approle::login(
                            client,
                            mount,
                            role_id,
                            secret_id.expose_secret(),
                        )
                        .await
                    }
                    Login::Token(_) => unreachable!("token login needs no request"),
                };
                result.map_err(|e| match classify(e, &action) {
                    Failure::Fatal(Error::Forbidden { action, detail }) => {
                        Error::Unauthenticated { action, detail }
                    }
                    Failure::Fatal(Error::Usage(detail)) => Error::Unauthenticated {
                        action: action.clone(),
                        detail,
                    },
                    Failure::Fatal(error) => error,
                    Failure::NotFound => Error::Unauthenticated {
                        action: action.clone(),
                        detail: "no such auth mount or role".into(),
                    },
                    Failure::CasMismatch => {
                        Error::Internal(format!("{action}: unexpected check-and-set answer"))
                    }
                })
            })
            .await?;
        self.client.set_token(&auth.client_token);
        Ok(())
    }

    /// Writes a new version only if the path's current version is `cas` (0: must not exist).
    pub async fn write(
        &self,
        mount: &str,
        path: &str,
        data: &SecretData,
        cas: u64,
    ) -> Result<CasWrite> {
        let action = format!("write Vault {mount}/{path}");
        let cas = u32::try_from(cas)
            .map_err(|_| Error::Internal(format!("{action}: version {cas} out of range")))?;
        self.retry
            .run(|| async {
                let options = SetSecretRequestOptions { cas };
                match vaultrs::kv2::set_with_options(
                    &self.client,
                    mount,
                    path,
                    &WireData(data),
                    options,
                )
                .await
                {
                    Ok(written) => Ok(CasWrite::Written {
                        version: written.version,
                    }),
                    Err(e) => match classify(e, &action) {
                        Failure::CasMismatch => Ok(CasWrite::Mismatch),
                        Failure::Fatal(Error::Forbidden { .. }) if cas == 0 => Ok(CasWrite::Denied),
                        Failure::NotFound => Err(Error::NotFound {
                            what: format!("KV v2 mount {mount:?}"),
                        }),
                        Failure::Fatal(error) => Err(error),
                    },
                }
            })
            .await
    }

    /// Reads one version (the current one when `version` is `None`); `None` when the path,
    /// or that version, does not exist or was deleted or destroyed.
    pub async fn read(
        &self,
        mount: &str,
        path: &str,
        version: Option<u64>,
        base64_keys: &BTreeSet<String>,
    ) -> Result<Option<VaultSecret>> {
        let action = format!("read Vault {mount}/{path}");
        let response = self
            .retry
            .run(|| async {
                let request = ReadSecretRequest::builder()
                    .mount(mount)
                    .path(path)
                    .version(version)
                    .build()
                    .map_err(|e| Error::Internal(format!("{action}: {e}")))?;
                found(
                    vaultrs::api::exec_with_result(&self.client, request).await,
                    &action,
                )
            })
            .await?;
        let Some(response) = response else {
            return Ok(None);
        };
        if response.metadata.destroyed
            || !response.metadata.deletion_time.is_empty()
            || response.data.is_null()
        {
            return Ok(None);
        }
        let data = decode_data(response.data, base64_keys, &action)?;
        Ok(Some(VaultSecret {
            version: response.metadata.version,
            data,
        }))
    }

    pub async fn read_metadata(&self, mount: &str, path: &str) -> Result<Option<VaultMetadata>> {
        let action = format!("read Vault metadata {mount}/{path}");
        self.retry
            .run(|| async {
                let Some(meta) = found(
                    vaultrs::kv2::read_metadata(&self.client, mount, path).await,
                    &action,
                )?
                else {
                    return Ok(None);
                };
                let mut live_versions: Vec<u64> = meta
                    .versions
                    .iter()
                    .filter(|(_, v)| !v.destroyed && v.deletion_time.is_empty())
                    .filter_map(|(k, _)| k.parse().ok())
                    .collect();
                live_versions.sort_unstable();
                let mut deleted_versions: Vec<u64> = meta
                    .versions
                    .iter()
                    .filter(|(_, v)| !v.destroyed && !v.deletion_time.is_empty())
                    .filter_map(|(k, _)| k.parse().ok())
                    .collect();
                deleted_versions.sort_unstable();
                let current_created_at = meta
                    .versions
                    .get(&meta.current_version.to_string())
                    .and_then(|v| v.created_time.parse().ok());
                Ok(Some(VaultMetadata {
                    deleted_versions,
                    current_created_at,
                    current_version: meta.current_version,
                    custom: meta
                        .custom_metadata
                        .unwrap_or_default()
                        .into_iter()
                        .collect(),
                    live_versions,
                }))
            })
            .await
    }

    /// Changes some keys of the path's `custom_metadata` and leaves the others as they are
    /// (a JSON merge patch), so keys written by others survive without a read first.
    pub async fn patch_metadata(
        &self,
        mount: &str,
        path: &str,
        patch: &MetadataPatch,
    ) -> Result<()> {
        let action = format!("update Vault metadata {mount}/{path}");
        let middleware = MergePatch(&self.client.middle);
        self.retry
            .run(|| async {
                let request = PatchMetadataRequest {
                    mount: mount.to_string(),
                    path: path.to_string(),
                    custom_metadata: patch,
                };
                let answered = request
                    .with_middleware(&middleware)
                    .exec(&self.client.http)
                    .await
                    .map(drop)
                    .map_err(ClientError::from);
                done(answered, &action)
            })
            .await
    }

    /// Replaces the path's `custom_metadata` (KV v2 has no partial update in vaultrs; callers
    /// pass the merged map).
    pub async fn write_metadata(
        &self,
        mount: &str,
        path: &str,
        custom: &BTreeMap<String, String>,
    ) -> Result<()> {
        let action = format!("write Vault metadata {mount}/{path}");
        let custom: HashMap<String, String> = custom.clone().into_iter().collect();
        self.retry
            .run(|| async {
                let mut request = SetSecretMetadataRequest::builder();
                request.custom_metadata(custom.clone());
                done(
                    vaultrs::kv2::set_metadata(&self.client, mount, path, Some(&mut request)).await,
                    &action,
                )
            })
            .await
    }

    pub async fn destroy_versions(&self, mount: &str, path: &str, versions: &[u64]) -> Result<()> {
        let action = format!("destroy versions of Vault {mount}/{path}");
        self.retry
            .run(|| async {
                done(
                    vaultrs::kv2::destroy_versions(&self.client, mount, path, versions.to_vec())
                        .await,
                    &action,
                )
            })
            .await
    }

    /// The fingerprint key if it exists; reading never creates it.
    pub async fn existing_fingerprint_key(&self, mount: &str) -> Result<Option<FingerprintKey>> {
        let Some(existing) = self
            .read(mount, FINGERPRINT_KEY_PATH, None, &BTreeSet::new())
            .await?
        else {
            return Ok(None);
        };
        let encoded = existing
            .data
            .get("key")
            .and_then(|k| k.as_utf8())
            .unwrap_or("");
        let key = STANDARD.decode(encoded).ok().and_then(FingerprintKey::new);
        key.map(Some).ok_or_else(|| Error::Remote {
            action: format!("read fingerprint key {mount}/{FINGERPRINT_KEY_PATH}"),
            detail: "the key is not 32+ bytes of base64; restore it from Vault's version history"
                .into(),
        })
    }

    /// The fingerprint key, created with `cas=0` on first use; a racing creator's key wins
    /// and is read back, so every process agrees on one key.
    pub async fn fingerprint_key(&self, mount: &str) -> Result<FingerprintKey> {
        for _ in 0..RACE_ATTEMPTS {
            if let Some(key) = self.existing_fingerprint_key(mount).await? {
                return Ok(key);
            }
            let fresh = FingerprintKey::random();
            let mut data = SecretData::new();
            data.insert(
                "key".into(),
                SecretBytes::from_string(STANDARD.encode(fresh.expose())),
            );
            let denied = match self.write(mount, FINGERPRINT_KEY_PATH, &data, 0).await? {
                CasWrite::Written { version } => {
                    let target = format!("{mount}/{FINGERPRINT_KEY_PATH}");
                    AuditEvent::new(Action::CreateFingerprintKey, &target, Outcome::Written)
                        .version(version)
                        .emit();
                    return Ok(fresh);
                }
                CasWrite::Mismatch => false,
                CasWrite::Denied => true,
            };
            if let Some(key) = self.existing_fingerprint_key(mount).await? {
                return Ok(key); // a racing creator's
            }
            // There, yet unreadable: deleted or destroyed. A new key would make every recorded
            // fingerprint unverifiable, and no retry brings the old one back.
            match self.read_metadata(mount, FINGERPRINT_KEY_PATH).await {
                Ok(Some(metadata)) if metadata.current_version > 0 => {
                    return Err(fingerprint_key_gone(mount, &metadata))
                }
                Ok(None) if denied => {
                    return Err(Error::Forbidden {
                        action: "create the fingerprint key".into(),
                        detail: format!("no create permission on {mount}/{FINGERPRINT_KEY_PATH}"),
                    })
                }
                Ok(_) => continue, // gone again between the write and the read
                // Its metadata is not ours to read: say what can be said.
                Err(Error::Forbidden { .. }) => {
                    return Err(Error::Refused {
                        action: format!("read the fingerprint key {mount}/{FINGERPRINT_KEY_PATH}"),
                        detail: "it exists but cannot be read (deleted or destroyed?); restore it with bao kv undelete".into(),
                    })
                }
                Err(error) => return Err(error),
            }
        }
        Err(Error::LostRace {
            action: "create the fingerprint key".into(),
        })
    }

    /// Whether secops can write to this mount (`<mount>/config`, one read).
    pub async fn kv_mount(&self, mount: &str) -> Result<KvMount> {
        let action = format!("read Vault {mount}/config");
        let config = self
            .retry
            .run(|| async {
                let request = KvConfigRequest {
                    mount: mount.to_string(),
                };
                found(
                    vaultrs::api::exec_with_result(&self.client, request).await,
                    &action,
                )
            })
            .await?;
        Ok(match config {
            None => KvMount::NotKvV2,
            Some(config) if config.metadata_cas_required => KvMount::MetadataCasRequired,
            Some(_) => KvMount::Usable,
        })
    }

    /// The keys directly under a folder of the mount (folders end with `/`); empty when none.
    pub async fn list(&self, mount: &str, folder: &str) -> Result<Vec<String>> {
        let action = format!("list Vault {mount}/{folder}");
        self.retry
            .run(|| async {
                Ok(found(
                    vaultrs::kv2::list(&self.client, mount, folder).await,
                    &action,
                )?
                .unwrap_or_default())
            })
            .await
    }

    /// A password from one of Vault's password policies (`sys/policies/password/NAME/generate`),
    /// an endpoint vaultrs does not wrap.
    pub async fn generate_password(&self, policy: &str) -> Result<SecretBytes> {
        let action = format!("generate a password with Vault policy {policy:?}");
        let generated = self
            .retry
            .run(|| async {
                let request = GeneratePasswordRequest {
                    name: policy.to_string(),
                };
                found(
                    vaultrs::api::exec_with_result(&self.client, request).await,
                    &action,
                )?
                .ok_or_else(|| Error::NotFound {
                    what: format!("Vault password policy {policy:?}"),
                })
            })
            .await?;
        Ok(SecretBytes::from_string(generated.password))
    }

    /// Vault's `last_vault_rotation` of a static role (`GET MOUNT/static-roles/ROLE`): the
    /// proof an engine rotation happened. `None` when there is no such role; `Some(None)`
    /// when Vault has not rotated it yet.
    pub async fn static_role_last_rotation(
        &self,
        mount: &str,
        role: &str,
    ) -> Result<Option<Option<jiff::Timestamp>>> {
        let action = format!("read static role {mount}/static-roles/{role}");
        let read = self
            .retry
            .run(|| async {
                let request = StaticRoleRequest {
                    mount: mount.to_string(),
                    role: role.to_string(),
                };
                found(
                    vaultrs::api::exec_with_result(&self.client, request).await,
                    &action,
                )
            })
            .await?;
        Ok(read.map(|role| role.last_vault_rotation.and_then(|t| t.parse().ok())))
    }

    /// Asks the engine to rotate a static role's credential now (`POST
    /// MOUNT/rotate-role/ROLE`). Never retried here: a retry after a lost answer would rotate
    /// twice; the caller reads `last_vault_rotation` to learn whether the call happened.
    pub async fn rotate_static_role(&self, mount: &str, role: &str) -> Result<()> {
        let action = format!("rotate {mount}/rotate-role/{role}");
        let request = RotateRoleRequest {
            mount: mount.to_string(),
            role: role.to_string(),
        };
        match vaultrs::api::exec_with_empty(&self.client, request).await {
            Ok(()) => Ok(()),
            Err(e) => Err(match classify(e, &action) {
                Failure::Fatal(error) => error,
                Failure::NotFound => Error::NotFound {
                    what: format!("static role {mount}/{role}"),
                },
                Failure::CasMismatch => Error::Remote {
                    action,
                    detail: "unexpected answer".into(),
                },
            }),
        }
    }
}

/// `GET sys/policies/password/:name/generate`.
#[derive(rustify_derive::Endpoint)]
#[endpoint(
    path = "sys/policies/password/{self.name}/generate",
    response = "GeneratedPassword"
)]
struct GeneratePasswordRequest {
    #[endpoint(skip)]
    name: String,
}

#[derive(serde::Deserialize)]
struct GeneratedPassword {
    password: String,
}

/// `PATCH :mount/metadata/:path`: KV v2's partial metadata update.
#[derive(rustify_derive::Endpoint)]
#[endpoint(path = "{self.mount}/metadata/{self.path}", method = "PATCH")]
struct PatchMetadataRequest<'a> {
    #[endpoint(skip)]
    mount: String,
    #[endpoint(skip)]
    path: String,
    custom_metadata: &'a MetadataPatch,
}

/// vaultrs's middleware (address prefix, token, namespace) plus the content type Vault
/// requires of a PATCH, which rustify does not set.
struct MergePatch<'a>(&'a vaultrs::api::EndpointMiddleware);

impl rustify::MiddleWare for MergePatch<'_> {
    fn request<E: rustify::Endpoint>(
        &self,
        endpoint: &E,
        request: &mut http::Request<Vec<u8>>,
    ) -> std::result::Result<(), rustify::errors::ClientError> {
        self.0.request(endpoint, request)?;
        request.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/merge-patch+json"),
        );
        Ok(())
    }

    fn response<E: rustify::Endpoint>(
        &self,
        endpoint: &E,
        response: &mut http::Response<Vec<u8>>,
    ) -> std::result::Result<(), rustify::errors::ClientError> {
        self.0.response(endpoint, response)
    }
}

/// `GET :mount/config`: a KV v2 mount's settings (absent on any other engine).
#[derive(rustify_derive::Endpoint)]
#[endpoint(path = "{self.mount}/config", response = "KvConfig")]
struct KvConfigRequest {
    #[endpoint(skip)]
    mount: String,
}

#[derive(serde::Deserialize)]
struct KvConfig {
    /// OpenBao's; HashiCorp Vault has no such setting.
    #[serde(default)]
    metadata_cas_required: bool,
}

/// A Vault read whose 400 means "no such mount": OpenBao answers `sys/mounts/PATH` and
/// `sys/auth/PATH` for an absent mount with 400, not 404.
fn mount_found<T>(result: std::result::Result<T, ClientError>, action: &str) -> Result<Option<T>> {
    match found(result, action) {
        Err(Error::Rejected { .. }) => Ok(None),
        other => other,
    }
}

/// `vault-setup`: the Vault side the chart renders. Policies and roles travel as plain JSON;
/// none of them holds a secret.
impl Vault {
    /// The text of ACL policy `name` (`sys/policies/acl/NAME`); `None` when absent.
    pub async fn read_acl_policy(&self, name: &str) -> Result<Option<String>> {
        let action = format!("read Vault policy {name:?}");
        let read = self
            .retry
            .run(|| async {
                let request = ReadAclPolicyRequest {
                    name: name.to_string(),
                };
                found(
                    vaultrs::api::exec_with_result(&self.client, request).await,
                    &action,
                )
            })
            .await?;
        Ok(read.map(|p| p.policy))
    }

    pub async fn write_acl_policy(&self, name: &str, text: &str) -> Result<()> {
        let action = format!("write Vault policy {name:?}");
        let body = serde_json::to_vec(&serde_json::json!({ "policy": text }))
            .map_err(|e| Error::Internal(format!("{action}: {e}")))?;
        self.write_raw(&format!("sys/policies/acl/{name}"), body, &action)
            .await
    }

    /// Any `auth/...` or `sys/...` object as a JSON map (`None`: absent). For roles and
    /// auth configuration, whose fields hold no secret.
    pub async fn read_object(
        &self,
        path: &str,
    ) -> Result<Option<BTreeMap<String, serde_json::Value>>> {
        let action = format!("read Vault {path}");
        self.retry
            .run(|| async {
                let request = ReadObjectRequest {
                    path: path.to_string(),
                };
                found(
                    vaultrs::api::exec_with_result(&self.client, request).await,
                    &action,
                )
            })
            .await
    }

    /// Writes fields to an `auth/...` or `sys/...` path (a role, an auth configuration).
    pub async fn write_object(
        &self,
        path: &str,
        fields: &BTreeMap<String, serde_json::Value>,
    ) -> Result<()> {
        let action = format!("write Vault {path}");
        let body =
            serde_json::to_vec(fields).map_err(|e| Error::Internal(format!("{action}: {e}")))?;
        self.write_raw(path, body, &action).await
    }

    /// The type (and KV version) of the secrets engine at `mount`; `None` when absent.
    pub async fn read_secrets_mount(
        &self,
        mount: &str,
    ) -> Result<Option<crate::domain::vault_config::MountFacts>> {
        self.read_mount(&format!("sys/mounts/{mount}")).await
    }

    /// The type of the auth method at `mount`; `None` when absent.
    pub async fn read_auth_mount(
        &self,
        mount: &str,
    ) -> Result<Option<crate::domain::vault_config::MountFacts>> {
        self.read_mount(&format!("sys/auth/{mount}")).await
    }

    async fn read_mount(
        &self,
        path: &str,
    ) -> Result<Option<crate::domain::vault_config::MountFacts>> {
        let action = format!("read Vault {path}");
        let read = self
            .retry
            .run(|| async {
                let request = ReadMountRequest {
                    path: path.to_string(),
                };
                mount_found(
                    vaultrs::api::exec_with_result(&self.client, request).await,
                    &action,
                )
            })
            .await?;
        Ok(read.map(|m| crate::domain::vault_config::MountFacts {
            kind: m.kind,
            version: m.options.and_then(|o| o.get("version").cloned()),
        }))
    }

    /// Enables KV v2 at `mount` (`sys/mounts/MOUNT`).
    pub async fn enable_kv2(&self, mount: &str) -> Result<()> {
        let body = serde_json::json!({"type": "kv", "options": {"version": "2"}});
        self.write_raw(
            &format!("sys/mounts/{mount}"),
            body.to_string().into_bytes(),
            &format!("enable KV v2 at {mount:?}"),
        )
        .await
    }

    /// Enables the kubernetes auth method at `mount` (`sys/auth/MOUNT`).
    pub async fn enable_kubernetes_auth(&self, mount: &str) -> Result<()> {
        let body = serde_json::json!({"type": "kubernetes"});
        self.write_raw(
            &format!("sys/auth/{mount}"),
            body.to_string().into_bytes(),
            &format!("enable kubernetes auth at {mount:?}"),
        )
        .await
    }

    async fn write_raw(&self, path: &str, body: Vec<u8>, action: &str) -> Result<()> {
        self.retry
            .run(|| async {
                let request = WriteRawRequest {
                    path: path.to_string(),
                    body: body.clone(),
                };
                match vaultrs::api::exec_with_empty(&self.client, request).await {
                    Ok(()) => Ok(()),
                    Err(e) => match classify(e, action) {
                        Failure::Fatal(error) => Err(error),
                        Failure::NotFound => Err(Error::NotFound {
                            what: format!(
                                "the Vault mount of {path} (vault-setup --enable-missing enables it)"
                            ),
                        }),
                        Failure::CasMismatch => Err(Error::Remote {
                            action: action.into(),
                            detail: "unexpected answer".into(),
                        }),
                    },
                }
            })
            .await
    }
}

/// `GET sys/policies/acl/:name`.
#[derive(rustify_derive::Endpoint)]
#[endpoint(path = "sys/policies/acl/{self.name}", response = "AclPolicy")]
struct ReadAclPolicyRequest {
    #[endpoint(skip)]
    name: String,
}

#[derive(serde::Deserialize)]
struct AclPolicy {
    policy: String,
}

/// `GET :path`, answered as a plain map.
#[derive(rustify_derive::Endpoint)]
#[endpoint(path = "{self.path}", response = "BTreeMap<String, serde_json::Value>")]
struct ReadObjectRequest {
    #[endpoint(skip)]
    path: String,
}

/// `GET sys/mounts/:path` or `GET sys/auth/:path`.
#[derive(rustify_derive::Endpoint)]
#[endpoint(path = "{self.path}", response = "MountDescription")]
struct ReadMountRequest {
    #[endpoint(skip)]
    path: String,
}

#[derive(serde::Deserialize)]
struct MountDescription {
    #[serde(rename = "type")]
    kind: String,
    options: Option<BTreeMap<String, String>>,
}

/// `POST :path` with a JSON body made by the caller.
#[derive(rustify_derive::Endpoint)]
#[endpoint(path = "{self.path}", method = "POST")]
struct WriteRawRequest {
    #[endpoint(skip)]
    path: String,
    #[endpoint(raw)]
    body: Vec<u8>,
}

/// `GET :mount/static-roles/:role`.
#[derive(rustify_derive::Endpoint)]
#[endpoint(
    path = "{self.mount}/static-roles/{self.role}",
    response = "StaticRole"
)]
struct StaticRoleRequest {
    #[endpoint(skip)]
    mount: String,
    #[endpoint(skip)]
    role: String,
}

#[derive(serde::Deserialize)]
struct StaticRole {
    #[serde(default)]
    last_vault_rotation: Option<String>,
}

/// `POST :mount/rotate-role/:role`.
#[derive(rustify_derive::Endpoint)]
#[endpoint(path = "{self.mount}/rotate-role/{self.role}", method = "POST")]
struct RotateRoleRequest {
    #[endpoint(skip)]
    mount: String,
    #[endpoint(skip)]
    role: String,
}
