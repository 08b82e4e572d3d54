use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::proto::admin_server::Admin;
use super::proto::{
    ActivatePluginRequest, ListPluginsRequest, ListPluginsResponse, PluginInfo,
    RollbackPluginRequest, UploadPluginRequest,
};
use crate::auth::{AuthError, Authenticator, Principal};
use crate::plugins::{
    LoadError, PluginKind, PluginRecord, PluginRegistry, PluginUpload, UploadError,
};

pub struct AdminService {
    auth: Arc<Authenticator>,
    plugins: Arc<PluginRegistry>,
}

impl AdminService {
    pub fn new(auth: Arc<Authenticator>, plugins: Arc<PluginRegistry>) -> Self {
        Self { auth, plugins }
    }

    async fn principal<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        self.auth.verify_basic(header).await.map_err(|e| match e {
            AuthError::TooManySessions => Status::resource_exhausted(e.to_string()),
            other => Status::unauthenticated(other.to_string()),
        })
    }

    async fn compliance_officer<T>(
        &self,
        request: &Request<T>,
        jurisdiction: &str,
    ) -> Result<Principal, Status> {
        let principal = self.principal(request).await?;
        if principal.is_compliance_officer_for(jurisdiction) {
            Ok(principal)
        } else {
            Err(Status::permission_denied(format!(
                "user {} lacks the compliance role for jurisdiction {jurisdiction}",
                principal.user
            )))
        }
    }
}

fn parse_kind(kind: &str) -> Result<PluginKind, Status> {
    [
        PluginKind::ResidencyPolicy,
        PluginKind::CdcRedactor,
        PluginKind::SagaStep,
    ]
    .into_iter()
    .find(|k| k.as_str() == kind)
    .ok_or_else(|| {
        Status::invalid_argument(format!(
            "unknown plugin kind {kind:?} (residency-policy, cdc-redactor, saga-step)"
        ))
    })
}

fn info(record: PluginRecord, active: bool) -> PluginInfo {
    PluginInfo {
        jurisdiction: record.jurisdiction,
        kind: record.kind,
        version: record.version,
        sha256: record.sha256,
        signer: record.signer,
        size_bytes: record.size_bytes,
        uploaded_at_unix_ms: record.uploaded_at_unix_ms,
        active,
    }
}

/// The one mapping from registry errors to gRPC status.
fn upload_status(error: UploadError) -> Status {
    let message = error.to_string();
    match error {
        UploadError::Unsigned
        | UploadError::BadSignature(_)
        | UploadError::UntrustedJurisdiction(_) => Status::permission_denied(message),
        UploadError::VersionNotNewer { .. } => Status::already_exists(message),
        UploadError::UnknownVersion { .. } | UploadError::NothingToRollBack { .. } => {
            Status::not_found(message)
        }
        UploadError::Load(LoadError::TooLarge { .. }) => Status::resource_exhausted(message),
        UploadError::Load(
            LoadError::NotAComponent(_)
            | LoadError::WrongWorld { .. }
            | LoadError::Instantiation(_),
        ) => Status::invalid_argument(message),
        UploadError::Storage(_) | UploadError::Corrupt(_) => {
            tracing::error!(error = %message, "plugin registry failure");
            Status::internal(message)
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn upload_plugin(
        &self,
        request: Request<UploadPluginRequest>,
    ) -> Result<Response<PluginInfo>, Status> {
        let principal = self
            .compliance_officer(&request, &request.get_ref().jurisdiction)
            .await?;
        let body = request.into_inner();
        let upload = PluginUpload {
            kind: parse_kind(&body.kind)?,
            jurisdiction: body.jurisdiction,
            version: body.version,
            bytes: body.component,
            signature_hex: body.signature_hex,
        };
        let (jurisdiction, kind, version) =
            (upload.jurisdiction.clone(), body.kind, upload.version);
        match self.plugins.upload(upload).await {
            Ok(record) => {
                tracing::info!(user = %principal.user, %jurisdiction, %kind, version, "plugin upload accepted");
                Ok(Response::new(info(record, true)))
            }
            Err(error) => {
                tracing::warn!(user = %principal.user, %jurisdiction, %kind, version, %error, "plugin upload refused");
                Err(upload_status(error))
            }
        }
    }

    async fn list_plugins(
        &self,
        request: Request<ListPluginsRequest>,
    ) -> Result<Response<ListPluginsResponse>, Status> {
        self.principal(&request).await?;
        let plugins = self
            .plugins
            .list()
            .map_err(upload_status)?
            .into_iter()
            .map(|(r, a)| info(r, a))
            .collect();
        Ok(Response::new(ListPluginsResponse { plugins }))
    }

    async fn activate_plugin(
        &self,
        request: Request<ActivatePluginRequest>,
    ) -> Result<Response<PluginInfo>, Status> {
        let principal = self
            .compliance_officer(&request, &request.get_ref().jurisdiction)
            .await?;
        let body = request.into_inner();
        let record = self
            .plugins
            .activate(&body.jurisdiction, parse_kind(&body.kind)?, body.version)
            .await
            .map_err(upload_status)?;
        tracing::info!(user = %principal.user, jurisdiction = %body.jurisdiction, kind = %body.kind, version = body.version, "plugin version activated");
        Ok(Response::new(info(record, true)))
    }

    async fn rollback_plugin(
        &self,
        request: Request<RollbackPluginRequest>,
    ) -> Result<Response<PluginInfo>, Status> {
        let principal = self
            .compliance_officer(&request, &request.get_ref().jurisdiction)
            .await?;
        let body = request.into_inner();
        let record = self
            .plugins
            .rollback(&body.jurisdiction, parse_kind(&body.kind)?)
            .await
            .map_err(upload_status)?;
        tracing::info!(user = %principal.user, jurisdiction = %body.jurisdiction, kind = %body.kind, version = record.version, "plugin rolled back");
        Ok(Response::new(info(record, true)))
    }
}
