//! Node configuration: TOML, every key documented in README.md ("Configuration"), unknown
//! keys refused, validated at start so a bad value fails fast with the key's name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::auth::Role;
pub use crate::cache::CacheConfig;
use crate::limits::{CONFIG_FILE_SIZE_MAX_BYTES, KEY_FILE_SIZE_MAX_BYTES};
pub use crate::peers::{MeshConfig, PeerConfig};

#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be opened or read, is larger than
    /// `limits::CONFIG_FILE_SIZE_MAX_BYTES`, or is not UTF-8.
    #[error("cannot read config file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

/// The hex key in `path`, bounded before it is read.
fn read_public_key_file(path: &Path) -> Result<String, String> {
    let text =
        crate::bounded_file::read_to_string(path, KEY_FILE_SIZE_MAX_BYTES).map_err(
            |e| match e {
                crate::bounded_file::BoundedReadError::Io { .. } => format!(
                    "{e} (make it with `domicile plugin keygen --jurisdiction J --out KEY`, which \
                 writes KEY.pub)"
                ),
                other => format!("{other}: not a public key"),
            },
        )?;
    Ok(text.trim().to_string())
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's region, e.g. `eu-central`. Rows homed here are stored here.
    pub region: String,
    /// The jurisdiction whose law applies here, e.g. `EU`.
    pub jurisdiction: String,
    /// Where the database file and other node state live. Relative paths are relative
    /// to the config file's folder.
    pub data_dir: PathBuf,
    pub listen: ListenConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub logging: LoggingConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// Other regions' nodes; used by the mesh (not yet connected by this version).
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    #[serde(default)]
    pub plugins: PluginConfig,
    /// Public keys allowed to sign plugins, per jurisdiction.
    #[serde(default)]
    pub trusted_keys: Vec<TrustedKeyConfig>,
    #[serde(default)]
    pub residency: ResidencyConfig,
    pub mesh: Option<MeshConfig>,
    #[serde(default)]
    pub cdc: CdcConfig,
    #[serde(default)]
    pub saga: SagaConfig,
    #[serde(default)]
    pub federation: FederationConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub storage: StorageConfig,
}

/// The storage writer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Under contention, how long a group commit may wait for more statements before it
    /// fsyncs, in microseconds (only when the previous commit carried several and fewer
    /// are waiting; a lone writer never waits). 0 turns the wait off.
    #[serde(default = "default_commit_window_us")]
    pub commit_window_us: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            commit_window_us: default_commit_window_us(),
        }
    }
}

fn default_commit_window_us() -> u64 {
    crate::limits::COMMIT_WINDOW_DEFAULT_US
}

/// Queries over `mesh.<table>` (every region's rows).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// How long one region's part of a `mesh` query may take before the region counts
    /// as unreachable (the query fails, or answers without it if the session allows
    /// partial results), in milliseconds.
    #[serde(default = "default_federation_timeout_ms")]
    pub timeout_ms: u64,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            timeout_ms: default_federation_timeout_ms(),
        }
    }
}

fn default_federation_timeout_ms() -> u64 {
    5_000
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SagaConfig {
    /// How long the orchestrator retries a step that fails transiently (its region
    /// unreachable, say) before the saga compensates, in milliseconds.
    #[serde(default = "default_step_timeout_ms")]
    pub step_timeout_ms: u64,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            step_timeout_ms: default_step_timeout_ms(),
        }
    }
}

fn default_step_timeout_ms() -> u64 {
    10_000
}

/// How change events travel between regions. Without `kafka_brokers`, nodes stream
/// them to each other over the mesh (the embedded transport); with it, through Kafka.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdcConfig {
    /// Kafka bootstrap servers, `host:port[,host:port...]`. Each node then publishes its
    /// change stream to topics `domicile.cdc.<region>.<table>` and consumes every other
    /// region's topics.
    pub kafka_brokers: Option<String>,
    /// The consumer group of this node's replica consumer; default
    /// `domicile-replica-<region>`.
    pub kafka_group: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidencyConfig {
    /// `enforce` (default): every stored row and every result leaving for another
    /// region is decided by the jurisdiction's residency policy, and audited. `off`:
    /// no decisions (for measuring the guard's cost; never in production).
    #[serde(default)]
    pub guard: crate::residency::GuardMode,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Wall time one plugin call may take before it fails closed, in milliseconds.
    #[serde(default = "default_call_deadline_ms")]
    pub call_deadline_ms: u64,
    /// Linear memory one plugin instance may use, in bytes.
    #[serde(default = "default_plugin_memory_max_bytes")]
    pub memory_max_bytes: usize,
    /// Largest plugin component accepted at upload, in bytes.
    #[serde(default = "default_component_size_max_bytes")]
    pub component_size_max_bytes: usize,
    /// The oldest version of a plugin that may be uploaded or be active, by
    /// `"<jurisdiction>/<kind>"` (kind: residency-policy, cdc-redactor, saga-step), e.g.
    /// `minimum_versions = { "EU/residency-policy" = 3 }`: `activate` and `rollback`
    /// cannot go below it, and an older active version is deactivated at start.
    #[serde(default)]
    pub minimum_versions: BTreeMap<String, u64>,
}

impl Default for PluginConfig {
    fn default() -> Self {
        Self {
            call_deadline_ms: default_call_deadline_ms(),
            memory_max_bytes: default_plugin_memory_max_bytes(),
            component_size_max_bytes: default_component_size_max_bytes(),
            minimum_versions: BTreeMap::new(),
        }
    }
}

fn default_call_deadline_ms() -> u64 {
    10
}

fn default_plugin_memory_max_bytes() -> usize {
    32 << 20
}

fn default_component_size_max_bytes() -> usize {
    16 << 20
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKeyConfig {
    pub jurisdiction: String,
    /// ed25519 public key, hex (from `domicile plugin keygen`). Either this or
    /// `public_key_file`; after `NodeConfig::load` it always holds the key.
    #[serde(default)]
    pub public_key: String,
    /// A file holding the hex public key (`domicile plugin keygen --out K` writes
    /// `K.pub`), relative to the config file's folder; read once, at load.
    pub public_key_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// Arrow Flight SQL (gRPC). Port 0 picks a free port (printed at start).
    pub flight_sql: SocketAddr,
    /// Admin gRPC API (plugin management). Omit to disable.
    pub admin: Option<SocketAddr>,
    /// Prometheus `/metrics` over HTTP. Omit to disable.
    pub metrics: Option<SocketAddr>,
    /// Node-to-node gRPC with mutual TLS (needs `[mesh]`). Omit for a node without peers.
    pub peer: Option<SocketAddr>,
    /// TLS for the client listeners (`flight_sql` and `admin`). Without it they speak
    /// plaintext gRPC, which a node allows on loopback only (see `insecure`).
    pub tls: Option<ListenTlsConfig>,
    /// Lets `flight_sql` or `admin` listen on a non-loopback address without TLS
    /// (passwords and bearer tokens then cross the network in clear). For a node behind a
    /// TLS-terminating proxy on the same host or a private link; default false.
    #[serde(default)]
    pub insecure: bool,
    /// Connections one client address (an IPv6 client by its /64) may hold open on each
    /// listener; a client address never holds more than remain free in any case. Raise
    /// it for many clients behind one NAT or proxy. 1 to `CONNECTIONS_PER_LISTENER_MAX`.
    #[serde(default = "default_connections_per_address")]
    pub connections_per_address: usize,
    /// Calls one client address may have accepted and not yet answered on each gRPC
    /// listener (past it a call is refused with RESOURCE_EXHAUSTED); likewise never more
    /// than remain free. 1 to `calls_in_flight`.
    #[serde(default = "default_calls_in_flight_per_address")]
    pub calls_in_flight_per_address: usize,
    /// Calls accepted and not yet answered on each gRPC listener over all clients.
    /// 1 to `CALLS_IN_FLIGHT_PER_LISTENER_MAX`.
    #[serde(default = "default_calls_in_flight")]
    pub calls_in_flight: usize,
}

fn default_connections_per_address() -> usize {
    crate::limits::CONNECTIONS_PER_ADDRESS_MAX
}

fn default_calls_in_flight_per_address() -> usize {
    crate::limits::CALLS_IN_FLIGHT_PER_ADDRESS_MAX
}

fn default_calls_in_flight() -> usize {
    crate::limits::CALLS_IN_FLIGHT_PER_LISTENER_MAX
}

/// `[listen.tls]`: the certificate clients see on `flight_sql` and `admin`. PEM files,
/// relative to the config file's folder; read at start.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenTlsConfig {
    /// The server certificate chain (leaf first), e.g. from `domicile certs server`
    /// or a public CA. Its names must match what clients dial.
    pub cert: PathBuf,
    /// The certificate's private key (PKCS#8, SEC1 or PKCS#1 PEM).
    pub key: PathBuf,
    /// When set, clients must also present a certificate issued by this CA (mutual
    /// TLS), in addition to their password or token.
    pub client_ca: Option<PathBuf>,
}

impl ListenConfig {
    /// The client listeners as (config key, address): what TLS and the demo-password
    /// rule apply to. The metrics listener carries no credentials and no rows.
    pub fn client_listeners(&self) -> Vec<(&'static str, SocketAddr)> {
        let mut listeners = vec![("listen.flight_sql", self.flight_sql)];
        if let Some(admin) = self.admin {
            listeners.push(("listen.admin", admin));
        }
        listeners
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// How long a bearer token from the handshake stays valid, in seconds.
    #[serde(default = "default_token_ttl_secs")]
    pub token_ttl_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token_ttl_secs: default_token_ttl_secs(),
        }
    }
}

fn default_token_ttl_secs() -> u64 {
    3600
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `domicile=debug,info`. `RUST_LOG` overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: default_log_level(),
        }
    }
}

fn default_log_level() -> String {
    "info".into()
}

/// `[telemetry]`: distributed tracing, off unless `otlp_endpoint` is set.
///
/// The node's spans (each gRPC call, plan, statement, storage commit, plugin call, peer
/// call, saga step, CDC relay and apply) are exported in batches over OTLP/gRPC. W3C
/// trace context (`traceparent`) is taken from a client's request headers and carried
/// on in peer calls, mesh legs, saga steps and CDC messages (mesh or Kafka header), so
/// one trace follows a routed read or a transfer across regions. Spans hold no value of
/// a row and no SQL text.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The OTLP/gRPC collector, e.g. `http://127.0.0.1:4317` (an OpenTelemetry
    /// Collector, Jaeger, Tempo). Unset: no spans leave the process and no trace context
    /// is carried on.
    pub otlp_endpoint: Option<String>,
    /// The fraction (0.0 to 1.0) of traces begun at this node that are recorded; a trace
    /// begun by a caller keeps the caller's decision (parent-based sampling).
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// The `service.name` the spans are exported under; each span also carries
    /// `domicile.region`.
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            sample_ratio: default_sample_ratio(),
            service_name: default_service_name(),
        }
    }
}

fn default_sample_ratio() -> f64 {
    1.0
}

fn default_service_name() -> String {
    "domicile".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// argon2 PHC string; make one with `domicile hash-password`.
    pub password_hash: String,
    pub roles: Vec<Role>,
    /// The region where this user's own data lives.
    pub home_region: String,
    /// Jurisdictions (e.g. `EU`) whose plugins this user may upload, activate and roll
    /// back through the admin API.
    #[serde(default)]
    pub compliance: Vec<String>,
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = crate::bounded_file::read_to_string(path, CONFIG_FILE_SIZE_MAX_BYTES).map_err(
            |error| ConfigError::Read {
                path: path.to_path_buf(),
                reason: match error {
                    crate::bounded_file::BoundedReadError::Io { source, .. } => source.to_string(),
                    crate::bounded_file::BoundedReadError::TooLarge { max_bytes, .. } => {
                        format!("larger than {max_bytes} bytes (its bound)")
                    }
                    crate::bounded_file::BoundedReadError::NotText { .. } => {
                        "not UTF-8 text".to_string()
                    }
                },
            },
        )?;
        let mut config = Self::parse(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if let Some(folder) = path.parent() {
            let resolve = |p: &mut PathBuf| {
                if p.is_relative() {
                    *p = folder.join(&*p);
                }
            };
            resolve(&mut config.data_dir);
            for key in &mut config.trusted_keys {
                if let Some(file) = &mut key.public_key_file {
                    resolve(file);
                }
            }
            if let Some(tls) = &mut config.listen.tls {
                resolve(&mut tls.cert);
                resolve(&mut tls.key);
                if let Some(ca) = &mut tls.client_ca {
                    resolve(ca);
                }
            }
            if let Some(mesh) = &mut config.mesh {
                resolve(&mut mesh.ca_cert);
                resolve(&mut mesh.cert);
                resolve(&mut mesh.key);
            }
        }
        for (index, key) in config.trusted_keys.iter_mut().enumerate() {
            let Some(file) = &key.public_key_file else {
                continue;
            };
            if !key.public_key.is_empty() {
                return Err(invalid(
                    format!("trusted_keys[{index}]"),
                    "give public_key or public_key_file, not both",
                ));
            }
            key.public_key = read_public_key_file(file).map_err(|message| {
                invalid(format!("trusted_keys[{index}].public_key_file"), message)
            })?;
        }
        Ok(config)
    }

    /// The config in `text` as written: relative paths are not resolved and no key file
    /// is read (that is [`NodeConfig::load`]).
    ///
    /// Errors: TOML syntax, or a key of the wrong type or unknown.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The plugin trust this config declares: each `trusted_keys` entry's key, parsed,
    /// by jurisdiction, and `plugins.minimum_versions` by (jurisdiction, kind). The one
    /// place both are parsed; `validate` refuses a config whose trust does not parse.
    ///
    /// Errors: `ConfigError::Invalid` naming the entry (`trusted_keys[2].public_key`,
    /// `plugins.minimum_versions.<name>`).
    pub fn trust(&self) -> Result<crate::plugins::Trust, ConfigError> {
        let mut keys: std::collections::HashMap<String, Vec<_>> = Default::default();
        for (index, key) in self.trusted_keys.iter().enumerate() {
            check_name(
                &format!("trusted_keys[{index}].jurisdiction"),
                &key.jurisdiction,
            )?;
            let public = crate::plugins::signing::parse_public_key(&key.public_key)
                .map_err(|e| invalid(format!("trusted_keys[{index}].public_key"), e))?;
            keys.entry(key.jurisdiction.clone())
                .or_default()
                .push(public);
        }
        let mut minimum_versions = std::collections::HashMap::new();
        for (name, &version) in &self.plugins.minimum_versions {
            let parsed = name.split_once('/').and_then(|(jurisdiction, kind)| {
                let kind = crate::plugins::PluginKind::parse(kind)?;
                (!jurisdiction.is_empty()).then(|| (jurisdiction.to_string(), kind))
            });
            let Some(key) = parsed else {
                return Err(invalid(
                    format!("plugins.minimum_versions.{name}"),
                    "name a plugin as <jurisdiction>/<kind>, kind one of residency-policy, \
                     cdc-redactor, saga-step",
                ));
            };
            minimum_versions.insert(key, version);
        }
        Ok(crate::plugins::Trust {
            keys,
            minimum_versions,
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check_name("region", &self.region)?;
        check_name("jurisdiction", &self.jurisdiction)?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        if self.users.is_empty() {
            return Err(invalid(
                "users",
                "at least one user is needed, or nobody can connect",
            ));
        }
        for (index, user) in self.users.iter().enumerate() {
            let key = |field: &str| format!("users[{index}].{field}");
            check_name(&key("name"), &user.name)?;
            if self.users[..index].iter().any(|u| u.name == user.name) {
                return Err(invalid(
                    key("name"),
                    format!("user {} is declared twice", user.name),
                ));
            }
            if !user.password_hash.starts_with("$argon2") {
                return Err(invalid(
                    key("password_hash"),
                    "must be an argon2 PHC string (see `domicile hash-password`)",
                ));
            }
            if user.roles.is_empty() {
                return Err(invalid(
                    key("roles"),
                    "must name at least one of reader, writer, admin",
                ));
            }
            check_name(&key("home_region"), &user.home_region)?;
        }
        for (index, peer) in self.peers.iter().enumerate() {
            check_name(&format!("peers[{index}].region"), &peer.region)?;
            if peer.region == self.region {
                return Err(invalid(
                    format!("peers[{index}].region"),
                    "a peer cannot be this node's own region",
                ));
            }
        }
        let bounded = |key: &str, value: usize, max: usize| {
            if (1..=max).contains(&value) {
                Ok(())
            } else {
                Err(invalid(key, format!("must be between 1 and {max}")))
            }
        };
        bounded(
            "listen.connections_per_address",
            self.listen.connections_per_address,
            crate::limits::CONNECTIONS_PER_LISTENER_MAX,
        )?;
        bounded(
            "listen.calls_in_flight",
            self.listen.calls_in_flight,
            crate::limits::CALLS_IN_FLIGHT_PER_LISTENER_MAX,
        )?;
        bounded(
            "listen.calls_in_flight_per_address",
            self.listen.calls_in_flight_per_address,
            self.listen.calls_in_flight,
        )?;
        if self.listen.tls.is_none() && !self.listen.insecure {
            for (key, address) in self.listen.client_listeners() {
                if !address.ip().is_loopback() {
                    return Err(invalid(
                        key,
                        format!(
                            "{address} is not a loopback address and [listen.tls] is not set: \
                             passwords and tokens would cross the network in clear. Give \
                             [listen.tls] cert and key (e.g. `domicile certs server`), or set \
                             listen.insecure = true if something else encrypts the link"
                        ),
                    ));
                }
            }
        }
        if (self.listen.peer.is_some() || !self.peers.is_empty()) && self.mesh.is_none() {
            return Err(invalid(
                "mesh",
                "peers talk over mutual TLS only: give [mesh] ca_cert, cert and key (domicile certs)",
            ));
        }
        if let Some(mesh) = &self.mesh
            && (mesh.ping_interval_ms == 0 || mesh.peer_timeout_ms == 0)
        {
            return Err(invalid(
                "mesh",
                "ping_interval_ms and peer_timeout_ms must be > 0",
            ));
        }
        self.trust()?;
        if self.plugins.call_deadline_ms == 0 || self.plugins.call_deadline_ms > 60_000 {
            return Err(invalid("plugins.call_deadline_ms", "must be 1..=60000"));
        }
        if self.plugins.memory_max_bytes < (1 << 20) || self.plugins.memory_max_bytes > (1 << 30) {
            return Err(invalid(
                "plugins.memory_max_bytes",
                "must be between 1 MiB and 1 GiB",
            ));
        }
        if self.plugins.component_size_max_bytes == 0
            || self.plugins.component_size_max_bytes > (256 << 20)
        {
            return Err(invalid(
                "plugins.component_size_max_bytes",
                "must be between 1 byte and 256 MiB",
            ));
        }
        if let Some(brokers) = &self.cdc.kafka_brokers
            && (brokers.trim().is_empty()
                || brokers
                    .split(',')
                    .any(|b| b.trim().rsplit_once(':').is_none()))
        {
            return Err(invalid(
                "cdc.kafka_brokers",
                "must list host:port pairs separated by commas",
            ));
        }
        if self.storage.commit_window_us > crate::limits::COMMIT_WINDOW_MAX_US {
            return Err(invalid(
                "storage.commit_window_us",
                format!(
                    "must be at most {} (COMMIT_WINDOW_MAX_US); a commit waits no longer",
                    crate::limits::COMMIT_WINDOW_MAX_US
                ),
            ));
        }
        if self.saga.step_timeout_ms == 0 {
            return Err(invalid("saga.step_timeout_ms", "must be at least 1"));
        }
        if self.auth.token_ttl_secs == 0 {
            return Err(invalid("auth.token_ttl_secs", "must be at least 1"));
        }
        tracing_subscriber::EnvFilter::try_new(&self.logging.level)
            .map_err(|e| invalid("logging.level", e.to_string()))?;
        if let Some(endpoint) = &self.telemetry.otlp_endpoint {
            let scheme_ok = endpoint
                .parse::<tonic::codegen::http::Uri>()
                .ok()
                .filter(|uri| uri.host().is_some())
                .and_then(|uri| uri.scheme_str().map(str::to_string))
                .is_some_and(|scheme| scheme == "http" || scheme == "https");
            if !scheme_ok {
                return Err(invalid(
                    "telemetry.otlp_endpoint",
                    "must be an http:// or https:// URL of an OTLP/gRPC collector, e.g. http://127.0.0.1:4317",
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.telemetry.sample_ratio) {
            return Err(invalid(
                "telemetry.sample_ratio",
                "must be between 0.0 and 1.0",
            ));
        }
        if self.telemetry.service_name.trim().is_empty() {
            return Err(invalid("telemetry.service_name", "must not be empty"));
        }
        Ok(())
    }
}

impl UserConfig {
    /// The strongest role listed; roles include the weaker ones.
    pub fn role(&self) -> Role {
        self.roles.iter().copied().max().unwrap_or(Role::Reader)
    }
}

fn check_name(key: &str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{value:?} must be 1-63 characters of a-z, A-Z, 0-9, '-' or '_'"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
region = "eu-central"
jurisdiction = "EU"
data_dir = "data"
[listen]
flight_sql = "127.0.0.1:0"
[[users]]
name = "ana"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA"
roles = ["writer"]
home_region = "eu-central"
"#;

    fn load(text: &str) -> Result<NodeConfig, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.toml");
        std::fs::write(&path, text).expect("write");
        let config = NodeConfig::load(&path)?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn a_good_config_loads_with_defaults() {
        let config = load(GOOD).expect("valid");
        assert_eq!(config.auth.token_ttl_secs, 3600);
        assert_eq!(config.storage.commit_window_us, 200);
        assert_eq!(config.users[0].role(), Role::Writer);
        assert!(config.data_dir.ends_with("data") && config.data_dir.is_absolute());
        assert_eq!(config.listen.connections_per_address, 256);
        assert_eq!(config.listen.calls_in_flight, 2_048);
        assert_eq!(config.listen.calls_in_flight_per_address, 512);
        assert_eq!(config.telemetry.otlp_endpoint, None);
        assert_eq!(config.telemetry.sample_ratio, 1.0);
        let traced = load(&format!(
            "{GOOD}\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:4317\"\n"
        ))
        .expect("an OTLP endpoint");
        assert_eq!(
            traced.telemetry.otlp_endpoint.as_deref(),
            Some("http://127.0.0.1:4317")
        );
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                GOOD.replacen("\nregion = \"eu-central\"\n", "\n", 1),
                "region",
            ),
            (
                GOOD.replace("flight_sql = \"127.0.0.1:0\"", "flight_sql = \"nowhere\""),
                "flight_sql",
            ),
            (
                GOOD.replace("roles = [\"writer\"]", "roles = [\"king\"]"),
                "king",
            ),
            (
                GOOD.replace("roles = [\"writer\"]", "roles = []"),
                "users[0].roles",
            ),
            (
                GOOD.replace(
                    "jurisdiction = \"EU\"",
                    "jurisdiction = \"EU\"\ncolour = \"red\"",
                ),
                "colour",
            ),
            (GOOD.replace("$argon2id", "plain"), "users[0].password_hash"),
            (
                format!("{GOOD}\n[[trusted_keys]]\njurisdiction = \"EU\"\npublic_key = \"abcd\"\n"),
                "trusted_keys[0].public_key",
            ),
            (
                format!("{GOOD}\n[plugins]\ncall_deadline_ms = 0\n"),
                "plugins.call_deadline_ms",
            ),
            (
                format!("{GOOD}\n[storage]\ncommit_window_us = 60000\n"),
                "storage.commit_window_us",
            ),
            (
                format!("{GOOD}\n[telemetry]\notlp_endpoint = \"127.0.0.1:4317\"\n"),
                "telemetry.otlp_endpoint",
            ),
            (
                format!("{GOOD}\n[telemetry]\notlp_endpoint = \"ftp://collector:4317\"\n"),
                "telemetry.otlp_endpoint",
            ),
            (
                format!("{GOOD}\n[telemetry]\nsample_ratio = 1.5\n"),
                "telemetry.sample_ratio",
            ),
            (
                GOOD.replace(
                    "home_region = \"eu-central\"",
                    "home_region = \"eu central\"",
                ),
                "users[0].home_region",
            ),
            (
                GOOD.replace(
                    "flight_sql = \"127.0.0.1:0\"",
                    "flight_sql = \"127.0.0.1:0\"\nconnections_per_address = 0",
                ),
                "listen.connections_per_address",
            ),
            (
                GOOD.replace(
                    "flight_sql = \"127.0.0.1:0\"",
                    "flight_sql = \"127.0.0.1:0\"\ncalls_in_flight = 100000",
                ),
                "listen.calls_in_flight",
            ),
            (
                GOOD.replace(
                    "flight_sql = \"127.0.0.1:0\"",
                    "flight_sql = \"127.0.0.1:0\"\ncalls_in_flight = 64",
                ),
                "listen.calls_in_flight_per_address",
            ),
        ];
        for (text, key) in cases {
            let error = load(&text).expect_err(key).to_string();
            assert!(error.contains(key), "error {error:?} should name {key}");
        }
    }

    #[test]
    fn client_listeners_off_loopback_need_tls_or_an_explicit_insecure() {
        let wide = GOOD.replace("127.0.0.1:0", "0.0.0.0:0");
        let error = load(&wide).expect_err("plaintext off loopback").to_string();
        assert!(
            error.contains("listen.flight_sql") && error.contains("[listen.tls]"),
            "{error}"
        );
        let admin_wide = GOOD.replace(
            "flight_sql = \"127.0.0.1:0\"",
            "flight_sql = \"127.0.0.1:0\"\nadmin = \"[::]:0\"",
        );
        let error = load(&admin_wide)
            .expect_err("admin off loopback")
            .to_string();
        assert!(error.contains("listen.admin"), "{error}");
        let ipv6_loopback = GOOD.replace("127.0.0.1:0", "[::1]:0");
        load(&ipv6_loopback).expect("::1 is loopback");
        let insecure = wide.replace("[listen]", "[listen]\ninsecure = true");
        load(&insecure).expect("the operator said insecure");
        let tls = wide.replace(
            "[listen]",
            "[listen]\ntls = { cert = \"server.pem\", key = \"server.key\" }",
        );
        let config = load(&tls).expect("with TLS");
        let tls = config.listen.tls.expect("tls");
        assert!(tls.cert.is_absolute() && tls.key.ends_with("server.key"));
    }
}
