use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::proto::admin_server::Admin;
use super::proto::{
    ActivatePluginRequest, GetSagaRequest, ListPluginsRequest, ListPluginsResponse, ListSagasReply,
    ListSagasRequest, LoginReply, LoginRequest, PluginInfo, RollbackPluginRequest, SagaReply,
    StartSagaRequest, UploadPluginRequest,
};
use crate::auth::{AuthError, Authenticator, Principal, Role};
use crate::error_kind::{Classify, ErrorKind};
use crate::grpc_status::{status, status_of};
use crate::limits::SAGA_WAIT_MAX_MS;
use crate::plugins::{PluginKind, PluginRecord, PluginRegistry, PluginUpload};
use crate::residency::{AuditEntry, AuditPath, ResidencyGuard};
use crate::saga::{SagaEngine, SagaError, SagaRecord, SagaState};

pub struct AdminService {
    auth: Arc<Authenticator>,
    plugins: Arc<PluginRegistry>,
    sagas: Arc<SagaEngine>,
    guard: Arc<ResidencyGuard>,
}

impl AdminService {
    /// Saga records carry inputs, idempotency keys and step results: shown to admins
    /// and to users homed in this node's region (need to know, as `system.sagas`).
    fn may_read_saga_records(&self, principal: &crate::auth::Principal) -> Result<(), Status> {
        if principal.may(Role::Admin) || principal.home_region == self.guard.region() {
            Ok(())
        } else {
            Err(status(
                ErrorKind::Refused,
                format!(
                    "saga records are shown to admins and users homed in {}; \
                 SELECT * FROM system.sagas shows states",
                    self.guard.region()
                ),
            ))
        }
    }

    pub fn new(
        auth: Arc<Authenticator>,
        plugins: Arc<PluginRegistry>,
        sagas: Arc<SagaEngine>,
        guard: Arc<ResidencyGuard>,
    ) -> Self {
        Self {
            auth,
            plugins,
            sagas,
            guard,
        }
    }

    async fn with_role<T>(&self, request: &Request<T>, role: Role) -> Result<Principal, Status> {
        let principal = self.principal(request).await?;
        if principal.may(role) {
            Ok(principal)
        } else {
            Err(status(
                ErrorKind::Refused,
                format!("user {} lacks the {role} role", principal.user),
            ))
        }
    }

    /// A support action on a saga, audited whatever its outcome.
    async fn support(
        &self,
        request: Request<GetSagaRequest>,
        action: &'static str,
    ) -> Result<Response<SagaReply>, Status> {
        let principal = self.with_role(&request, Role::Admin).await?;
        let id = request.into_inner().id;
        let outcome = match action {
            "retry" => self.sagas.retry(&id).await,
            _ => self.sagas.compensate(&id).await,
        };
        let entry = AuditEntry {
            time_unix_ms: crate::clock::now_unix_ms(),
            principal: principal.user.clone(),
            path: AuditPath::Support,
            table: format!("saga/{id}"),
            columns: Vec::new(),
            source_region: principal.home_region.clone(),
            destination_region: principal.home_region.clone(),
            decision: if outcome.is_ok() { "allow" } else { "deny" }.into(),
            reason: Some(match &outcome {
                Ok(_) => format!("saga {action}"),
                Err(error) => format!("saga {action} refused: {error}"),
            }),
            rows: 0,
            plugin: None,
        };
        self.guard
            .record(entry)
            .await
            .map_err(|e| status(ErrorKind::Internal, crate::redact_text::shown(&e)))?;
        tracing::info!(user = %principal.user, saga = %id, action, ok = outcome.is_ok(), "saga support action");
        saga_reply(&outcome.map_err(saga_status)?)
    }

    /// The caller, from a bearer token (cheap) or Basic credentials (argon2).
    async fn principal<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let verified = match header {
            Some(bearer) if bearer.starts_with("Bearer ") => self.auth.principal(Some(bearer)),
            basic => {
                let client = request.remote_addr().map(|address| address.ip());
                self.auth.verify_basic(basic, client).await
            }
        };
        verified.map_err(auth_status)
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
            Err(status(
                ErrorKind::Refused,
                format!(
                    "user {} lacks the compliance role for jurisdiction {jurisdiction}",
                    principal.user
                ),
            ))
        }
    }
}

fn parse_kind(kind: &str) -> Result<PluginKind, Status> {
    PluginKind::parse(kind).ok_or_else(|| {
        status(
            ErrorKind::Invalid,
            format!("unknown plugin kind {kind:?} (residency-policy, cdc-redactor, saga-step)"),
        )
    })
}

fn info(record: PluginRecord, active: bool, refused_reason: Option<String>) -> PluginInfo {
    PluginInfo {
        refused_reason: refused_reason.unwrap_or_default(),
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

pub(crate) fn wait_limit(wait_ms: u64) -> std::time::Duration {
    std::time::Duration::from_millis(wait_ms.min(SAGA_WAIT_MAX_MS))
}

fn saga_reply(saga: &SagaRecord) -> Result<Response<SagaReply>, Status> {
    serde_json::to_string(saga)
        .map(|saga_json| Response::new(SagaReply { saga_json }))
        .map_err(|e| status(ErrorKind::Internal, format!("cannot encode the saga: {e}")))
}

/// The status of a refused login or token, for every service. Texts name no password
/// and quote no value: shown as written.
pub(crate) fn auth_status(error: AuthError) -> Status {
    status(error.kind(), error.to_string())
}

pub(crate) fn saga_status(error: SagaError) -> Status {
    status_of(&error)
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn login(&self, request: Request<LoginRequest>) -> Result<Response<LoginReply>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let client = request.remote_addr().map(|address| address.ip());
        let (token, principal) = self
            .auth
            .handshake(header, client)
            .await
            .map_err(auth_status)?;
        tracing::info!(user = %principal.user, "admin session opened");
        Ok(Response::new(LoginReply { token }))
    }

    async fn start_saga(
        &self,
        request: Request<StartSagaRequest>,
    ) -> Result<Response<SagaReply>, Status> {
        let principal = self.with_role(&request, Role::Writer).await?;
        let body = request.into_inner();
        let input = serde_json::from_str(&body.fields_json).map_err(|e| {
            status(
                ErrorKind::Invalid,
                format!("fields_json: {}", crate::redact_text::shown(&e)),
            )
        })?;
        // With a wait, the answer comes when the saga ended, or as it stands when the
        // wait ran out.
        let saga = self
            .sagas
            .start(
                &body.saga_type,
                input,
                &body.idempotency_key,
                wait_limit(body.wait_ms),
                &principal,
            )
            .await
            .map_err(saga_status)?;
        tracing::info!(user = %principal.user, saga = %saga.id, saga_type = %saga.saga_type, "saga start requested");
        saga_reply(&saga)
    }

    async fn get_saga(
        &self,
        request: Request<GetSagaRequest>,
    ) -> Result<Response<SagaReply>, Status> {
        let principal = self.with_role(&request, Role::Reader).await?;
        self.may_read_saga_records(&principal)?;
        let body = request.into_inner();
        let id = body.id;
        let saga = self
            .sagas
            .wait_settled(&id, wait_limit(body.wait_ms))
            .await
            .map_err(saga_status)?
            .ok_or_else(|| status(ErrorKind::NotFound, format!("no saga {id}")))?;
        saga_reply(&saga)
    }

    async fn list_sagas(
        &self,
        request: Request<ListSagasRequest>,
    ) -> Result<Response<ListSagasReply>, Status> {
        let principal = self.with_role(&request, Role::Reader).await?;
        self.may_read_saga_records(&principal)?;
        let state = request.into_inner().state;
        let wanted = match state.as_str() {
            "" => None,
            text => Some(SagaState::parse(text).ok_or_else(|| {
                status(ErrorKind::Invalid, format!(
                    "unknown state {text} (pending, running, committed, compensating, compensated, stuck)"
                ))
            })?),
        };
        let sagas_json = self
            .sagas
            .list()
            .map_err(saga_status)?
            .iter()
            .filter(|s| wanted.is_none_or(|w| s.state == w))
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| status(ErrorKind::Internal, crate::redact_text::shown(&e)))?;
        Ok(Response::new(ListSagasReply { sagas_json }))
    }

    async fn retry_saga(
        &self,
        request: Request<GetSagaRequest>,
    ) -> Result<Response<SagaReply>, Status> {
        self.support(request, "retry").await
    }

    async fn compensate_saga(
        &self,
        request: Request<GetSagaRequest>,
    ) -> Result<Response<SagaReply>, Status> {
        self.support(request, "compensate").await
    }

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
                Ok(Response::new(info(record, true, None)))
            }
            Err(error) => {
                tracing::warn!(user = %principal.user, %jurisdiction, %kind, version, %error, "plugin upload refused");
                Err(status_of(&error))
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
            .map_err(|e| status_of(&e))?
            .into_iter()
            .map(|(r, a)| {
                let refused = self.plugins.refusal(&r).map(|e| e.to_string());
                info(r, a, refused)
            })
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
            .map_err(|e| status_of(&e))?;
        tracing::info!(user = %principal.user, jurisdiction = %body.jurisdiction, kind = %body.kind, version = body.version, "plugin version activated");
        Ok(Response::new(info(record, true, None)))
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
            .map_err(|e| status_of(&e))?;
        tracing::info!(user = %principal.user, jurisdiction = %body.jurisdiction, kind = %body.kind, version = record.version, "plugin rolled back");
        Ok(Response::new(info(record, true, None)))
    }
}
