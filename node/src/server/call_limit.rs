//! Calls accepted and not yet answered, per client address and per listener.
//!
//! A listener holds at most `[listen] calls_in_flight` unanswered calls
//! (`CALLS_IN_FLIGHT_PER_LISTENER_MAX` by default), one client address at most
//! `[listen] calls_in_flight_per_address` (`CALLS_IN_FLIGHT_PER_ADDRESS_MAX`) and never
//! more than remain free (`client_address::FairShare`); past any of these a call is
//! answered at once with RESOURCE_EXHAUSTED rather than queued, since a queued call
//! still holds its stream. So neither one address (256 connections of 32 streams each)
//! nor a handful of them can take every slot of a listener from the other clients. The
//! address comes from the connection (tonic puts its `ConnectInfo` in the request's
//! extensions outside these layers) and is counted by `client_address::client_key`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tonic::codegen::http;

use crate::error_kind::ErrorKind;
use crate::grpc_status::status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::client_address::{FairShare, ShareRefusal, client_key};

/// The unanswered calls of one listener.
#[derive(Debug)]
struct InFlight {
    slots: Mutex<FairShare>,
}

impl InFlight {
    fn take(self: &Arc<Self>, address: IpAddr) -> Result<Slot, ShareRefusal> {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(address)?;
        Ok(Slot {
            in_flight: Arc::clone(self),
            address,
        })
    }
}

/// One call's place in the listener's count; freed when the call is answered (or
/// dropped).
struct Slot {
    in_flight: Arc<InFlight>,
    address: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_flight
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .give_back(self.address);
    }
}

/// The bounds of one listener, from `[listen]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallBounds {
    /// `[listen] calls_in_flight`.
    pub per_listener: usize,
    /// `[listen] calls_in_flight_per_address`.
    pub per_address: usize,
}

/// The layer: one per listener (its clones share the counts).
#[derive(Clone, Debug)]
pub(crate) struct CallLimitLayer {
    in_flight: Arc<InFlight>,
    bounds: CallBounds,
}

impl CallLimitLayer {
    pub(crate) fn new(bounds: CallBounds) -> Self {
        Self {
            in_flight: Arc::new(InFlight {
                slots: Mutex::new(FairShare::new(bounds.per_listener, bounds.per_address)),
            }),
            bounds,
        }
    }
}

impl<S> tower::Layer<S> for CallLimitLayer {
    type Service = CallLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallLimit {
            inner,
            in_flight: Arc::clone(&self.in_flight),
            bounds: self.bounds,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct CallLimit<S> {
    inner: S,
    in_flight: Arc<InFlight>,
    bounds: CallBounds,
}

impl CallBounds {
    /// What a refused call is told: the bound that refused it, by its config key.
    fn refusal(&self, refusal: ShareRefusal) -> tonic::Status {
        let message = match refusal {
            ShareRefusal::PoolFull => format!(
                "too many calls in flight on this listener (listen.calls_in_flight = {})",
                self.per_listener
            ),
            ShareRefusal::ClientFull => format!(
                "too many calls in flight from this client address \
                 (listen.calls_in_flight_per_address = {})",
                self.per_address
            ),
            ShareRefusal::OverShare => "too many calls in flight from this client address \
                 while the listener is nearly full (listen.calls_in_flight: an address \
                 holds no more than remain free)"
                .to_string(),
        };
        status(ErrorKind::Exhausted, message)
    }
}

/// The client address of a call, from its connection's info (plaintext or TLS).
fn remote_address<B>(request: &http::Request<B>) -> Option<IpAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        })
        .map(|address| client_key(address.ip()))
}

impl<S, B> tower::Service<http::Request<B>> for CallLimit<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // A call whose connection info is missing (none of the node's listeners) shares
        // one key rather than escaping the bound.
        let address = remote_address(&request).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let slot = match self.in_flight.take(address) {
            Ok(slot) => slot,
            Err(refusal) => {
                let status = self.bounds.refusal(refusal);
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
        };
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answered = answer.await;
            drop(slot);
            answered
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(per_listener: usize, per_address: usize) -> CallLimitLayer {
        CallLimitLayer::new(CallBounds {
            per_listener,
            per_address,
        })
    }

    #[test]
    fn each_refusal_names_the_bound_that_refused() {
        let bounds = CallBounds {
            per_listener: 8,
            per_address: 2,
        };
        for (refusal, key) in [
            (ShareRefusal::PoolFull, "listen.calls_in_flight = 8"),
            (
                ShareRefusal::ClientFull,
                "listen.calls_in_flight_per_address = 2",
            ),
            (ShareRefusal::OverShare, "nearly full"),
        ] {
            let status = bounds.refusal(refusal);
            assert_eq!(status.code(), tonic::Code::ResourceExhausted);
            assert!(status.message().contains(key), "{}", status.message());
        }
    }

    #[test]
    fn slots_are_shared_between_addresses_and_given_back() {
        let in_flight = layer(4, 3).in_flight;
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let first = in_flight.take(a).expect("first");
        let _second = in_flight.take(a).expect("second");
        // Two taken, two free: `a` holds as many as remain free.
        assert_eq!(in_flight.take(a).err(), Some(ShareRefusal::OverShare));
        let _other = in_flight.take(b).expect("another address gets a slot");
        drop(first);
        let _again = in_flight.take(a).expect("an answered call frees its slot");
    }

    #[tokio::test]
    async fn a_call_past_the_bound_is_answered_with_resource_exhausted() {
        use tower::{Layer, Service, ServiceExt};
        // An inner service that never answers: its calls stay in flight.
        let never = tower::service_fn(|_: http::Request<()>| {
            std::future::pending::<
                Result<http::Response<tonic::body::Body>, std::convert::Infallible>,
            >()
        });
        let mut service = layer(16, 1).layer(never);
        let request = || {
            let mut request = http::Request::new(());
            let info: TcpConnectInfo = tokio_connect_info();
            request.extensions_mut().insert(info);
            request
        };
        let held = service.ready().await.expect("ready").call(request());
        let refused = service
            .ready()
            .await
            .expect("ready")
            .call(request())
            .await
            .expect("an answer");
        let status = tonic::Status::from_header_map(refused.headers()).expect("a grpc status");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(
            status
                .message()
                .contains("listen.calls_in_flight_per_address = 1")
        );
        drop(held);
        // The held call was dropped: its slot is free again.
        let next = service.ready().await.expect("ready").call(request());
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), next)
                .await
                .is_err(),
            "admitted (and left waiting on the inner service)"
        );
    }

    /// The connect info of a real loopback TCP connection (its fields are private).
    fn tokio_connect_info() -> TcpConnectInfo {
        use tonic::transport::server::Connected;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        client.set_nonblocking(true).expect("nonblocking");
        let _server = listener.accept().expect("accept");
        let _guard = tokio::runtime::Handle::current().enter();
        tokio::net::TcpStream::from_std(client)
            .expect("tokio stream")
            .connect_info()
    }
}
