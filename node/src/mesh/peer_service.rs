//! The server side of the node-to-node API.

use std::collections::HashSet;

use tonic::{Request, Response, Status};

use super::certs;
use super::proto::peer_server::Peer;
use super::proto::{PingReply, PingRequest};

pub struct PeerService {
    region: String,
    peers: HashSet<String>,
}

impl PeerService {
    pub fn new(region: String, peers: impl IntoIterator<Item = String>) -> Self {
        Self {
            region,
            peers: peers.into_iter().collect(),
        }
    }

    /// The caller's region, proven by its certificate (TLS has already checked the
    /// certificate against the cluster CA): it must be the region the caller claims, and
    /// one this node knows as a peer.
    fn caller<T>(&self, request: &Request<T>, claimed: &str) -> Result<String, Status> {
        let certs = request
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("peer calls need a client certificate"))?;
        let named = certs.first().and_then(|c| certs::region_of(c.as_ref()));
        match named {
            Some(region) if region == claimed && self.peers.contains(&region) => Ok(region),
            Some(region) if region == claimed => Err(Status::permission_denied(format!(
                "region {region} is not a peer of {}",
                self.region
            ))),
            other => Err(Status::permission_denied(format!(
                "caller claims region {claimed} but its certificate names {}",
                other.as_deref().unwrap_or("no region")
            ))),
        }
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn ping(&self, request: Request<PingRequest>) -> Result<Response<PingReply>, Status> {
        let claimed = request.get_ref().region.clone();
        if let Err(refusal) = self.caller(&request, &claimed) {
            tracing::warn!(claimed = %claimed, reason = %refusal.message(), "peer call refused");
            return Err(refusal);
        }
        Ok(Response::new(PingReply {
            region: self.region.clone(),
        }))
    }
}
