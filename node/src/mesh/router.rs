//! Calls to the node that owns a row: today, inserts of rows homed in another region.

use std::collections::HashMap;
use std::time::Duration;

use arrow::array::RecordBatch;
use thiserror::Error;
use tonic::transport::{Channel, Endpoint};

use super::proto::peer_client::PeerClient;
use super::proto::{ForwardedPrincipal, InsertRowsRequest};
use super::tls::MeshTls;
use crate::auth::Principal;
use crate::config::PeerConfig;

/// Why a forwarded write did not happen. Texts name regions and tables, not values.
#[derive(Debug, Error)]
pub enum ForwardError {
    #[error("region {0} is not a peer of this node, so rows homed there cannot be written here")]
    UnknownRegion(String),
    #[error(
        "region {region} is unreachable ({detail}); rows homed there cannot be written until it is back"
    )]
    Unreachable { region: String, detail: String },
    #[error("region {region} refused the rows: {message}")]
    Refused {
        region: String,
        code: tonic::Code,
        message: String,
    },
    #[error("cannot encode rows for region {0}")]
    Encode(String),
}

pub struct PeerRouter {
    region: String,
    clients: HashMap<String, PeerClient<Channel>>,
}

impl std::fmt::Debug for PeerRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerRouter")
            .field("peers", &self.clients.keys())
            .finish()
    }
}

impl PeerRouter {
    /// A router for a node without peers: every remote region is unknown.
    pub fn none(region: &str) -> Self {
        Self {
            region: region.into(),
            clients: HashMap::new(),
        }
    }

    pub fn new(
        region: &str,
        peers: &[PeerConfig],
        tls: &MeshTls,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut clients = HashMap::new();
        for peer in peers {
            let channel = Endpoint::from_shared(format!("https://{}", peer.address))?
                .tls_config(tls.client(&peer.region))?
                .connect_timeout(timeout)
                .timeout(timeout)
                .connect_lazy();
            clients.insert(peer.region.clone(), PeerClient::new(channel));
        }
        Ok(Self {
            region: region.into(),
            clients,
        })
    }

    /// Sends `rows` (full rows of `table`, all homed in `home`) to `home`'s node, which
    /// stores them for `principal`; returns how many it stored.
    pub async fn insert_rows(
        &self,
        home: &str,
        principal: &Principal,
        table: &str,
        rows: &RecordBatch,
    ) -> Result<u64, ForwardError> {
        let mut client = self
            .clients
            .get(home)
            .cloned()
            .ok_or_else(|| ForwardError::UnknownRegion(home.into()))?;
        let arrow_ipc = encode(rows).map_err(|_| ForwardError::Encode(home.into()))?;
        let request = InsertRowsRequest {
            region: self.region.clone(),
            principal: Some(ForwardedPrincipal {
                user: principal.user.clone(),
                role: principal.role.to_string(),
                home_region: principal.home_region.clone(),
            }),
            table: table.into(),
            arrow_ipc,
        };
        match client.insert_rows(request).await {
            Ok(reply) => Ok(reply.into_inner().count),
            Err(status)
                if status.code() == tonic::Code::Unavailable
                    || status.code() == tonic::Code::DeadlineExceeded
                    || status.code() == tonic::Code::Unknown
                        && status.message().contains("transport") =>
            {
                Err(ForwardError::Unreachable {
                    region: home.into(),
                    detail: status.message().into(),
                })
            }
            Err(status) => Err(ForwardError::Refused {
                region: home.into(),
                code: status.code(),
                message: status.message().into(),
            }),
        }
    }
}

fn encode(batch: &RecordBatch) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut out = Vec::new();
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

/// The batches of one Arrow IPC stream.
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?.collect()
}
