//! Which plugin version is active for each (jurisdiction, kind), persisted in node
//! storage and loaded at start.
//!
//! An upload is verified (size, signature by a key trusted for its jurisdiction, world,
//! trial instantiation) before anything is stored; only then is it persisted and made
//! active, in one storage commit, and swapped in memory. Callers hold an `Arc` of the
//! version they started with, so calls in flight finish on it while new calls see the
//! new one. A refused upload leaves the active version untouched.
//!
//! Trust is not only checked at upload: every start and every activation checks the
//! stored version again against the keys and minimum versions configured then
//! (`Trust`), so removing a key revokes what it signed and `activate` cannot downgrade
//! past a minimum.
//!
//! Node-state keys: `plugin/record/<jurisdiction>/<kind>/<version, 20 digits>` (JSON
//! `PluginRecord`), `plugin/blob/<sha256>` (component bytes),
//! `plugin/active/<jurisdiction>/<kind>` (active version, decimal).

use crate::clock::now_unix_ms;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::redactor::RedactorPlugin;
use super::residency::ResidencyPolicyPlugin;
use super::runtime::{CallStats, LoadError, PluginKind, PluginRuntime};
use super::saga::SagaStepPlugin;
use super::signing::{key_id, sha256_hex, signed_message, verify};
use crate::storage::{StorageError, Store};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRecord {
    pub jurisdiction: String,
    pub kind: String,
    pub version: u64,
    pub sha256: String,
    /// Key id of the key that signed it.
    pub signer: String,
    pub size_bytes: u64,
    pub uploaded_at_unix_ms: u64,
    /// The upload's signature (hex), kept so trust is re-checked at every start and
    /// activation against the keys trusted then. Empty for versions stored before it
    /// was kept: those are checked by `signer` (the key id) alone.
    #[serde(default)]
    pub signature_hex: String,
}

/// Who may sign a jurisdiction's plugins, and the oldest version of each plugin that
/// may be active. Checked at upload, and again at every start and activation: a key
/// removed from config revokes what it signed, and a minimum version forbids
/// downgrades by `activate` or `rollback`.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    pub keys: HashMap<String, Vec<VerifyingKey>>,
    /// Minimum version by (jurisdiction, kind).
    pub minimum_versions: HashMap<(String, PluginKind), u64>,
}

impl Trust {
    /// Why `record` may not be active under the trust configured now, if it may not:
    /// below the minimum version, or not signed by a key trusted now.
    pub fn refusal(&self, record: &PluginRecord) -> Option<UploadError> {
        let kind = kind_from_str(&record.kind)?;
        if let Some(error) = self.below_minimum(&record.jurisdiction, kind, record.version) {
            return Some(error);
        }
        let keys = self
            .keys
            .get(&record.jurisdiction)
            .map_or(&[][..], Vec::as_slice);
        let trusted = if record.signature_hex.is_empty() {
            keys.iter().any(|key| key_id(key) == record.signer)
        } else {
            let message = signed_message(
                &record.jurisdiction,
                &record.kind,
                record.version,
                &record.sha256,
            );
            keys.iter()
                .any(|key| verify(key, &message, &record.signature_hex))
        };
        (!trusted).then(|| UploadError::NoLongerTrusted {
            jurisdiction: record.jurisdiction.clone(),
            kind: record.kind.clone(),
            version: record.version,
            reason: format!(
                "its signer {} is not among the keys trusted for {} (trusted_keys)",
                record.signer, record.jurisdiction
            ),
        })
    }

    fn below_minimum(
        &self,
        jurisdiction: &str,
        kind: PluginKind,
        version: u64,
    ) -> Option<UploadError> {
        let minimum = *self
            .minimum_versions
            .get(&(jurisdiction.to_string(), kind))?;
        (version < minimum).then(|| UploadError::BelowMinimum {
            jurisdiction: jurisdiction.to_string(),
            kind: kind.as_str().to_string(),
            version,
            minimum,
        })
    }
}

impl From<HashMap<String, Vec<VerifyingKey>>> for Trust {
    fn from(keys: HashMap<String, Vec<VerifyingKey>>) -> Self {
        Self {
            keys,
            minimum_versions: HashMap::new(),
        }
    }
}

/// A plugin as submitted for upload.
pub struct PluginUpload {
    pub jurisdiction: String,
    pub kind: PluginKind,
    pub version: u64,
    pub bytes: Vec<u8>,
    /// Hex ed25519 signature over `signing::signed_message`.
    pub signature_hex: String,
}

#[derive(Debug, Error)]
pub enum UploadError {
    #[error("upload is not signed")]
    Unsigned,
    #[error("no key is trusted for jurisdiction {0}")]
    UntrustedJurisdiction(String),
    #[error("signature does not verify with any key trusted for jurisdiction {0}")]
    BadSignature(String),
    #[error("version {version} is not newer than {latest}, the latest of {jurisdiction}/{kind}")]
    VersionNotNewer {
        jurisdiction: String,
        kind: String,
        version: u64,
        latest: u64,
    },
    #[error("{jurisdiction}/{kind} has no version {version}")]
    UnknownVersion {
        jurisdiction: String,
        kind: String,
        version: u64,
    },
    #[error(
        "{jurisdiction}/{kind} has no earlier version to roll back to that trust allows \
         (trusted_keys, plugins.minimum_versions)"
    )]
    NothingToRollBack { jurisdiction: String, kind: String },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("corrupt plugin registry entry {0}")]
    Corrupt(String),
    #[error(
        "{jurisdiction}/{kind} v{version} is no longer trusted: {reason}; upload a version \
         signed by a trusted key"
    )]
    NoLongerTrusted {
        jurisdiction: String,
        kind: String,
        version: u64,
        reason: String,
    },
    #[error(
        "{jurisdiction}/{kind} v{version} is older than v{minimum}, the minimum version \
         configured for it (plugins.minimum_versions)"
    )]
    BelowMinimum {
        jurisdiction: String,
        kind: String,
        version: u64,
        minimum: u64,
    },
}

impl crate::error_kind::Classify for UploadError {
    fn kind(&self) -> crate::error_kind::ErrorKind {
        use crate::error_kind::ErrorKind;
        match self {
            UploadError::Unsigned
            | UploadError::BadSignature(_)
            | UploadError::UntrustedJurisdiction(_)
            | UploadError::NoLongerTrusted { .. } => ErrorKind::Refused,
            UploadError::BelowMinimum { .. } => ErrorKind::Precondition,
            UploadError::VersionNotNewer { .. } => ErrorKind::AlreadyExists,
            UploadError::UnknownVersion { .. } | UploadError::NothingToRollBack { .. } => {
                ErrorKind::NotFound
            }
            UploadError::Load(error) => error.kind(),
            UploadError::Storage(error) => error.kind(),
            UploadError::Corrupt(_) => ErrorKind::Internal,
        }
    }
}

/// An active version: its record and its loaded, callable form. Callers hold the `Arc`
/// for the length of a call, so a swap never pulls a version from under a call.
pub struct Active<P> {
    pub record: PluginRecord,
    pub plugin: P,
}

/// An active version of any kind.
#[derive(Clone)]
enum Slot {
    Residency(Arc<Active<ResidencyPolicyPlugin>>),
    Redactor(Arc<Active<RedactorPlugin>>),
    Saga(Arc<Active<SagaStepPlugin>>),
}

impl Slot {
    fn record(&self) -> &PluginRecord {
        match self {
            Slot::Residency(a) => &a.record,
            Slot::Redactor(a) => &a.record,
            Slot::Saga(a) => &a.record,
        }
    }

    fn stats(&self) -> &CallStats {
        match self {
            Slot::Residency(a) => a.plugin.stats(),
            Slot::Redactor(a) => a.plugin.stats(),
            Slot::Saga(a) => a.plugin.stats(),
        }
    }
}

/// A loaded component of a known kind, before it has a record.
enum Loaded {
    Residency(ResidencyPolicyPlugin),
    Redactor(RedactorPlugin),
    Saga(SagaStepPlugin),
}

impl Loaded {
    fn into_slot(self, record: PluginRecord) -> Slot {
        match self {
            Loaded::Residency(plugin) => Slot::Residency(Arc::new(Active { record, plugin })),
            Loaded::Redactor(plugin) => Slot::Redactor(Arc::new(Active { record, plugin })),
            Loaded::Saga(plugin) => Slot::Saga(Arc::new(Active { record, plugin })),
        }
    }
}

type Key = (String, PluginKind);

pub struct PluginRegistry {
    runtime: Arc<PluginRuntime>,
    store: Store,
    trust: Arc<Trust>,
    /// Secret of the redactors' keyed-hash import.
    hmac_secret: Arc<[u8]>,
    active: RwLock<HashMap<Key, Slot>>,
}

impl std::fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRegistry")
            .field("jurisdictions", &self.trust.keys.keys())
            .finish()
    }
}

fn record_prefix(jurisdiction: &str, kind: PluginKind) -> String {
    format!("plugin/record/{jurisdiction}/{}/", kind.as_str())
}

fn record_key(jurisdiction: &str, kind: PluginKind, version: u64) -> String {
    format!("{}{version:020}", record_prefix(jurisdiction, kind))
}

fn active_key(jurisdiction: &str, kind: PluginKind) -> String {
    format!("plugin/active/{jurisdiction}/{}", kind.as_str())
}

fn blob_key(sha256: &str) -> String {
    format!("plugin/blob/{sha256}")
}

fn kind_from_str(text: &str) -> Option<PluginKind> {
    PluginKind::parse(text)
}

impl PluginRegistry {
    /// Opens the registry and loads every active version. A version that no longer
    /// loads, or that `trust` no longer accepts (its key removed, below a minimum
    /// version), stays inactive (its callers fail closed), is logged, and is listed with
    /// the reason (`refusal`).
    pub fn open(
        runtime: Arc<PluginRuntime>,
        store: Store,
        trust: impl Into<Trust>,
        hmac_secret: Arc<[u8]>,
    ) -> Result<Arc<Self>, UploadError> {
        let registry = Arc::new(Self {
            runtime,
            store,
            trust: Arc::new(trust.into()),
            hmac_secret,
            active: RwLock::new(HashMap::new()),
        });
        for (key, value) in registry.store.state_with_prefix("plugin/active/")? {
            let mut parts = key.trim_start_matches("plugin/active/").splitn(2, '/');
            let (Some(jurisdiction), Some(kind)) =
                (parts.next(), parts.next().and_then(kind_from_str))
            else {
                return Err(UploadError::Corrupt(key));
            };
            let version: u64 = String::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| UploadError::Corrupt(key.clone()))?;
            match registry.load_version(jurisdiction, kind, version) {
                Ok(active) => {
                    registry.swap(jurisdiction, kind, active);
                }
                Err(error) => {
                    tracing::error!(%jurisdiction, kind = kind.as_str(), version, %error, "active plugin does not load; it stays inactive");
                }
            }
        }
        Ok(registry)
    }

    fn slot(&self, jurisdiction: &str, kind: PluginKind) -> Option<Slot> {
        self.active
            .read()
            .expect("plugin registry lock poisoned")
            .get(&(jurisdiction.to_string(), kind))
            .cloned()
    }

    /// The active residency policy of `jurisdiction`, if any.
    pub fn residency_policy(
        &self,
        jurisdiction: &str,
    ) -> Option<Arc<Active<ResidencyPolicyPlugin>>> {
        match self.slot(jurisdiction, PluginKind::ResidencyPolicy)? {
            Slot::Residency(active) => Some(active),
            _ => None,
        }
    }

    /// The active CDC redactor of `jurisdiction`, if any.
    pub fn redactor(&self, jurisdiction: &str) -> Option<Arc<Active<RedactorPlugin>>> {
        match self.slot(jurisdiction, PluginKind::CdcRedactor)? {
            Slot::Redactor(active) => Some(active),
            _ => None,
        }
    }

    /// The active saga-step plugin of `jurisdiction`, if any.
    pub fn saga_steps(&self, jurisdiction: &str) -> Option<Arc<Active<SagaStepPlugin>>> {
        match self.slot(jurisdiction, PluginKind::SagaStep)? {
            Slot::Saga(active) => Some(active),
            _ => None,
        }
    }

    /// Verifies, persists and activates an upload.
    pub async fn upload(&self, upload: PluginUpload) -> Result<PluginRecord, UploadError> {
        let limits = self.runtime.limits();
        if upload.bytes.len() > limits.component_size_max_bytes {
            return Err(LoadError::TooLarge {
                size_bytes: upload.bytes.len(),
                max_bytes: limits.component_size_max_bytes,
            }
            .into());
        }
        let sha256 = sha256_hex(&upload.bytes);
        let signer = self.verify_signature(&upload, &sha256)?;
        if let Some(error) = self.below_minimum(&upload.jurisdiction, upload.kind, upload.version) {
            return Err(error);
        }
        let loaded = self.load_bytes(upload.kind, &upload.bytes)?;
        let record = PluginRecord {
            jurisdiction: upload.jurisdiction.clone(),
            kind: upload.kind.as_str().to_string(),
            version: upload.version,
            sha256: sha256.clone(),
            signer,
            size_bytes: upload.bytes.len() as u64,
            uploaded_at_unix_ms: now_unix_ms(),
            signature_hex: upload.signature_hex.trim().to_string(),
        };
        let stored = record.clone();
        let (jurisdiction, kind, version) =
            (upload.jurisdiction.clone(), upload.kind, upload.version);
        let bytes = upload.bytes;
        let trust = Arc::clone(&self.trust);
        self.store
            .write(move |ctx| -> Result<(), UploadError> {
                // Newer than every version still trusted: one signed by a key removed
                // since (say with version u64::MAX) must not block later uploads.
                let mut newest_trusted = None;
                for key in ctx.state_keys(&record_prefix(&jurisdiction, kind))? {
                    let Some(json) = ctx.get_state(&key)? else {
                        continue;
                    };
                    let record: PluginRecord =
                        serde_json::from_slice(&json).map_err(|_| UploadError::Corrupt(key))?;
                    if trust.refusal(&record).is_none() {
                        newest_trusted = newest_trusted.max(Some(record.version));
                    }
                }
                if let Some(latest) = newest_trusted
                    && version <= latest
                {
                    return Err(UploadError::VersionNotNewer {
                        jurisdiction: jurisdiction.clone(),
                        kind: kind.as_str().into(),
                        version,
                        latest,
                    });
                }
                let json =
                    serde_json::to_vec(&stored).map_err(|e| UploadError::Corrupt(e.to_string()))?;
                ctx.put_state(record_key(&jurisdiction, kind, version), json);
                ctx.put_state(blob_key(&stored.sha256), bytes);
                ctx.put_state(
                    active_key(&jurisdiction, kind),
                    version.to_string().into_bytes(),
                );
                Ok(())
            })
            .await?;
        tracing::info!(jurisdiction = %record.jurisdiction, kind = %record.kind, version = record.version, sha256 = %record.sha256, signer = %record.signer, "plugin uploaded and activated");
        self.swap(
            &record.jurisdiction,
            upload.kind,
            loaded.into_slot(record.clone()),
        );
        Ok(record)
    }

    /// Makes a stored version active again.
    pub async fn activate(
        &self,
        jurisdiction: &str,
        kind: PluginKind,
        version: u64,
    ) -> Result<PluginRecord, UploadError> {
        let active = self.load_version(jurisdiction, kind, version)?;
        let (key, value) = (
            active_key(jurisdiction, kind),
            version.to_string().into_bytes(),
        );
        self.store
            .write(move |ctx| {
                ctx.put_state(key, value);
                Ok::<_, UploadError>(())
            })
            .await?;
        let record = active.record().clone();
        tracing::info!(%jurisdiction, kind = kind.as_str(), version, "plugin version activated");
        self.swap(jurisdiction, kind, active);
        Ok(record)
    }

    /// Activates the newest version older than the active one.
    pub async fn rollback(
        &self,
        jurisdiction: &str,
        kind: PluginKind,
    ) -> Result<PluginRecord, UploadError> {
        let current = self
            .active
            .read()
            .expect("plugin registry lock poisoned")
            .get(&(jurisdiction.to_string(), kind))
            .map(|a| a.record().version);
        let nothing = || UploadError::NothingToRollBack {
            jurisdiction: jurisdiction.into(),
            kind: kind.as_str().into(),
        };
        // With no active version (say the active one is no longer trusted), the newest
        // version that is trusted; versions trust refuses are skipped.
        let current = current.unwrap_or(u64::MAX);
        let previous = self
            .records()?
            .into_iter()
            .filter(|r| {
                r.jurisdiction == jurisdiction
                    && r.kind == kind.as_str()
                    && r.version < current
                    && self.refusal(r).is_none()
            })
            .map(|r| r.version)
            .max()
            .ok_or_else(nothing)?;
        self.activate(jurisdiction, kind, previous).await
    }

    /// Call statistics of every active version, by record.
    pub fn active_stats(&self) -> Vec<(PluginRecord, super::runtime::CallStatsSnapshot)> {
        self.active
            .read()
            .expect("plugin registry lock poisoned")
            .values()
            .map(|a| (a.record().clone(), a.stats().snapshot()))
            .collect()
    }

    /// Every stored version, with whether it is the active one.
    pub fn list(&self) -> Result<Vec<(PluginRecord, bool)>, UploadError> {
        let active = self.active.read().expect("plugin registry lock poisoned");
        Ok(self
            .records()?
            .into_iter()
            .map(|record| {
                let is_active = kind_from_str(&record.kind)
                    .and_then(|kind| active.get(&(record.jurisdiction.clone(), kind)))
                    .is_some_and(|a| a.record().version == record.version);
                (record, is_active)
            })
            .collect())
    }

    fn records(&self) -> Result<Vec<PluginRecord>, UploadError> {
        self.store
            .state_with_prefix("plugin/record/")?
            .into_iter()
            .map(|(key, json)| serde_json::from_slice(&json).map_err(|_| UploadError::Corrupt(key)))
            .collect()
    }

    /// Why `record` may not be active under the trust configured now, if it may not:
    /// below the minimum version, or not signed by a key trusted now.
    pub fn refusal(&self, record: &PluginRecord) -> Option<UploadError> {
        self.trust.refusal(record)
    }

    fn below_minimum(
        &self,
        jurisdiction: &str,
        kind: PluginKind,
        version: u64,
    ) -> Option<UploadError> {
        self.trust.below_minimum(jurisdiction, kind, version)
    }

    fn verify_signature(&self, upload: &PluginUpload, sha256: &str) -> Result<String, UploadError> {
        let keys = self
            .trust
            .keys
            .get(&upload.jurisdiction)
            .filter(|keys| !keys.is_empty())
            .ok_or_else(|| UploadError::UntrustedJurisdiction(upload.jurisdiction.clone()))?;
        if upload.signature_hex.trim().is_empty() {
            return Err(UploadError::Unsigned);
        }
        let message = signed_message(
            &upload.jurisdiction,
            upload.kind.as_str(),
            upload.version,
            sha256,
        );
        keys.iter()
            .find(|key| verify(key, &message, &upload.signature_hex))
            .map(key_id)
            .ok_or_else(|| UploadError::BadSignature(upload.jurisdiction.clone()))
    }

    /// Compiles, links and trial-instantiates a component: CPU-heavy, so off async
    /// workers.
    fn load_bytes(&self, kind: PluginKind, bytes: &[u8]) -> Result<Loaded, UploadError> {
        super::runtime::off_async_workers(|| self.load_kind(kind, bytes))
    }

    fn load_kind(&self, kind: PluginKind, bytes: &[u8]) -> Result<Loaded, UploadError> {
        let runtime = &self.runtime;
        Ok(match kind {
            PluginKind::ResidencyPolicy => {
                Loaded::Residency(ResidencyPolicyPlugin::load(runtime, bytes)?)
            }
            PluginKind::CdcRedactor => {
                Loaded::Redactor(RedactorPlugin::load(runtime, bytes, &self.hmac_secret)?)
            }
            PluginKind::SagaStep => Loaded::Saga(SagaStepPlugin::load(runtime, bytes)?),
        })
    }

    fn load_version(
        &self,
        jurisdiction: &str,
        kind: PluginKind,
        version: u64,
    ) -> Result<Slot, UploadError> {
        let unknown = || UploadError::UnknownVersion {
            jurisdiction: jurisdiction.into(),
            kind: kind.as_str().into(),
            version,
        };
        let key = record_key(jurisdiction, kind, version);
        let (_, json) = self
            .store
            .state_with_prefix(&key)?
            .into_iter()
            .next()
            .ok_or_else(unknown)?;
        let record: PluginRecord =
            serde_json::from_slice(&json).map_err(|_| UploadError::Corrupt(key))?;
        if let Some(refusal) = self.refusal(&record) {
            return Err(refusal);
        }
        let blob = blob_key(&record.sha256);
        let (_, bytes) = self
            .store
            .state_with_prefix(&blob)?
            .into_iter()
            .next()
            .ok_or_else(unknown)?;
        if sha256_hex(&bytes) != record.sha256 {
            return Err(UploadError::Corrupt(blob));
        }
        Ok(self.load_bytes(kind, &bytes)?.into_slot(record))
    }

    fn swap(&self, jurisdiction: &str, kind: PluginKind, active: Slot) {
        self.active
            .write()
            .expect("plugin registry lock poisoned")
            .insert((jurisdiction.to_string(), kind), active);
    }
}
