//! A client of the admin API: `domicile plugin upload | list | activate | rollback` and
//! `domicile saga start | list | show | retry | compensate`.

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use super::endpoint::Target;
use crate::admin::proto::admin_client::AdminClient;
use crate::admin::proto::{
    ActivatePluginRequest, GetSagaRequest, ListPluginsRequest, ListSagasRequest, LoginRequest,
    PluginInfo, RollbackPluginRequest, StartSagaRequest, UploadPluginRequest,
};
use crate::limits::GRPC_MESSAGE_SIZE_MAX_BYTES;
use crate::plugins::signing;
use crate::saga::SagaRecord;
use crate::saga::fields::Fields;

/// Where and as whom to reach a node's admin API (`listen.admin`, e.g.
/// `grpc://127.0.0.1:50052`).
#[derive(clap::Args)]
pub struct AdminArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long)]
    user: String,
    /// File holding the password; else DOMICILE_PASSWORD.
    #[arg(long)]
    password_file: Option<std::path::PathBuf>,
}

impl AdminArgs {
    /// Logs in with the password from `password_file`, DOMICILE_PASSWORD or the terminal.
    pub async fn connect(&self) -> anyhow::Result<AdminSession> {
        let password = super::sql_shell::read_password(&self.user, self.password_file.as_deref())?;
        AdminSession::connect_to(&self.target, &self.user, &password).await
    }
}

pub struct AdminSession {
    client: AdminClient<Channel>,
    authorization: MetadataValue<tonic::metadata::Ascii>,
}

impl AdminSession {
    /// [`AdminSession::connect_to`] `endpoint`, trusting the system's roots for
    /// `grpc+tls://` and allowing plaintext only to loopback.
    pub async fn connect(endpoint: &str, user: &str, password: &str) -> anyhow::Result<Self> {
        Self::connect_to(&Target::new(endpoint), user, password).await
    }

    /// Connects (see [`Target::connect`]) and logs in.
    pub async fn connect_to(target: &Target, user: &str, password: &str) -> anyhow::Result<Self> {
        let channel = target.connect().await?;
        let client =
            AdminClient::new(channel).max_encoding_message_size(GRPC_MESSAGE_SIZE_MAX_BYTES);
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let basic: MetadataValue<tonic::metadata::Ascii> =
            format!("Basic {credentials}")
                .parse()
                .context("credentials are not a valid header")?;
        let mut session = Self {
            client,
            authorization: basic,
        };
        // One password check (argon2, slow on purpose); later calls carry the token.
        let token = session
            .client
            .login(session.request(LoginRequest {}))
            .await
            .map_err(status_error)?
            .into_inner()
            .token;
        session.authorization = format!("Bearer {token}")
            .parse()
            .context("the node returned an invalid token")?;
        Ok(session)
    }

    fn request<T>(&self, body: T) -> Request<T> {
        let mut request = Request::new(body);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request
    }

    /// Starts a saga (or returns the one its idempotency key started before).
    pub async fn start_saga(
        &mut self,
        saga_type: &str,
        fields: &Fields,
        idempotency_key: &str,
    ) -> anyhow::Result<SagaRecord> {
        self.start_saga_settled(
            saga_type,
            fields,
            idempotency_key,
            std::time::Duration::ZERO,
        )
        .await
    }

    /// Starts a saga and answers once it ended, or as it stands after `wait` (at most
    /// 30 s): one call where start + `saga_settled` are two.
    pub async fn start_saga_settled(
        &mut self,
        saga_type: &str,
        fields: &Fields,
        idempotency_key: &str,
        wait: std::time::Duration,
    ) -> anyhow::Result<SagaRecord> {
        let request = self.request(StartSagaRequest {
            saga_type: saga_type.to_string(),
            fields_json: serde_json::to_string(fields)?,
            idempotency_key: idempotency_key.to_string(),
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        });
        let reply = self
            .client
            .start_saga(request)
            .await
            .map_err(status_error)?;
        Ok(serde_json::from_str(&reply.into_inner().saga_json)?)
    }

    pub async fn saga(&mut self, id: &str) -> anyhow::Result<SagaRecord> {
        self.saga_settled(id, std::time::Duration::ZERO).await
    }

    /// The saga once it ended (committed, compensated, stuck), or as it stands after
    /// `wait` (at most 30 s).
    pub async fn saga_settled(
        &mut self,
        id: &str,
        wait: std::time::Duration,
    ) -> anyhow::Result<SagaRecord> {
        let request = self.request(GetSagaRequest {
            id: id.to_string(),
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        });
        let reply = self.client.get_saga(request).await.map_err(status_error)?;
        Ok(serde_json::from_str(&reply.into_inner().saga_json)?)
    }

    /// This node's sagas, only those in `state` if given.
    pub async fn sagas(&mut self, state: Option<&str>) -> anyhow::Result<Vec<SagaRecord>> {
        let request = self.request(ListSagasRequest {
            state: state.unwrap_or_default().to_string(),
        });
        let reply = self
            .client
            .list_sagas(request)
            .await
            .map_err(status_error)?;
        reply
            .into_inner()
            .sagas_json
            .iter()
            .map(|json| Ok(serde_json::from_str(json)?))
            .collect()
    }

    /// Support: `retry` or `compensate` a stuck saga.
    pub async fn support_saga(&mut self, id: &str, action: &str) -> anyhow::Result<SagaRecord> {
        let request = self.request(GetSagaRequest {
            id: id.to_string(),
            wait_ms: 0,
        });
        let reply = match action {
            "retry" => self.client.retry_saga(request).await,
            _ => self.client.compensate_saga(request).await,
        }
        .map_err(status_error)?;
        Ok(serde_json::from_str(&reply.into_inner().saga_json)?)
    }

    /// Signs `file` with the secret key in `key_file` and uploads it.
    pub async fn upload(
        &mut self,
        jurisdiction: &str,
        kind: &str,
        version: u64,
        key_file: &Path,
        file: &Path,
    ) -> anyhow::Result<PluginInfo> {
        let secret =
            crate::bounded_file::read_to_string(key_file, crate::limits::KEY_FILE_SIZE_MAX_BYTES)
                .context("signing key")?;
        let key = signing::parse_signing_key(&secret).map_err(anyhow::Error::msg)?;
        // Uploaded in one message: a larger file could not be sent.
        let component = crate::bounded_file::read(file, GRPC_MESSAGE_SIZE_MAX_BYTES as u64)
            .context("component")?;
        let message = signing::signed_message(
            jurisdiction,
            kind,
            version,
            &signing::sha256_hex(&component),
        );
        let body = UploadPluginRequest {
            jurisdiction: jurisdiction.into(),
            kind: kind.into(),
            version,
            component,
            signature_hex: signing::sign(&key, &message),
        };
        let request = self.request(body);
        Ok(self
            .client
            .upload_plugin(request)
            .await
            .map_err(status_error)?
            .into_inner())
    }

    pub async fn list(&mut self) -> anyhow::Result<Vec<PluginInfo>> {
        let request = self.request(ListPluginsRequest {});
        Ok(self
            .client
            .list_plugins(request)
            .await
            .map_err(status_error)?
            .into_inner()
            .plugins)
    }

    pub async fn activate(
        &mut self,
        jurisdiction: &str,
        kind: &str,
        version: u64,
    ) -> anyhow::Result<PluginInfo> {
        let request = self.request(ActivatePluginRequest {
            jurisdiction: jurisdiction.into(),
            kind: kind.into(),
            version,
        });
        Ok(self
            .client
            .activate_plugin(request)
            .await
            .map_err(status_error)?
            .into_inner())
    }

    pub async fn rollback(&mut self, jurisdiction: &str, kind: &str) -> anyhow::Result<PluginInfo> {
        let request = self.request(RollbackPluginRequest {
            jurisdiction: jurisdiction.into(),
            kind: kind.into(),
        });
        Ok(self
            .client
            .rollback_plugin(request)
            .await
            .map_err(status_error)?
            .into_inner())
    }
}

fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", status.message(), status.code())
}

/// One line per plugin version, for people.
pub fn describe(info: &PluginInfo) -> String {
    let refused = if info.refused_reason.is_empty() {
        String::new()
    } else {
        format!(" (refused: {})", info.refused_reason)
    };
    format!(
        "{}/{} v{}{} sha256={} signer={} {} bytes{refused}",
        info.jurisdiction,
        info.kind,
        info.version,
        if info.active { " (active)" } else { "" },
        info.sha256,
        info.signer,
        info.size_bytes
    )
}
