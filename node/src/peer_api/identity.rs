//! The one check of who a peer is, for every call of the node-to-node API.

use std::collections::HashSet;

use tonic::{Request, Status};

use crate::error_kind::ErrorKind;
use crate::grpc_status::status;
use crate::peers::certs;

/// The region a peer call comes from: the one its client certificate names (TLS has
/// already checked the certificate against the cluster CA), and only if that region is
/// one of `peers`. When the request also names a region (`claimed`), it must be the
/// certificate's: a peer is trusted for exactly what its certificate proves. A refusal
/// is logged (region names only) and answered UNAUTHENTICATED without a certificate,
/// PERMISSION_DENIED otherwise.
pub(super) fn peer_region<T>(
    request: &Request<T>,
    peers: &HashSet<String>,
    claimed: Option<&str>,
    local_region: &str,
) -> Result<String, Status> {
    let verdict = match request.peer_certs() {
        None => Err(status(
            ErrorKind::Unauthenticated,
            "peer calls need a client certificate",
        )),
        Some(certs) => {
            let named = certs.first().and_then(|c| certs::region_of(c.as_ref()));
            match (named, claimed) {
                (Some(region), Some(claimed)) if region != claimed => Err(status(
                    ErrorKind::Refused,
                    format!("caller claims region {claimed} but its certificate names {region}"),
                )),
                (Some(region), _) if peers.contains(&region) => Ok(region),
                (Some(region), _) => Err(status(
                    ErrorKind::Refused,
                    format!("region {region} is not a peer of {local_region}"),
                )),
                (None, _) => Err(status(
                    ErrorKind::Refused,
                    format!(
                        "caller claims region {} but its certificate names no region",
                        claimed.unwrap_or("(none)")
                    ),
                )),
            }
        }
    };
    verdict.inspect_err(|refusal| {
        tracing::warn!(
            claimed = claimed.unwrap_or(""),
            reason = %refusal.message(),
            "peer call refused"
        );
    })
}
