//! Calls accepted and not yet answered, per client address and per listener.
//!
//! A client address may hold `CALLS_IN_FLIGHT_PER_ADDRESS_MAX` unanswered calls on a
//! listener; the next is answered at once with RESOURCE_EXHAUSTED, before it reaches
//! the listener-wide bound (`CALLS_IN_FLIGHT_PER_LISTENER_MAX`), so one address (256
//! connections of 32 streams each) cannot take every slot of a listener from the other
//! clients. The address comes from the connection (tonic puts its `ConnectInfo` in the
//! request's extensions outside these layers) and is counted by
//! `client_address::client_key`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::client_address::client_key;
use crate::limits::CALLS_IN_FLIGHT_PER_ADDRESS_MAX;

/// Unanswered calls per client key of one listener.
#[derive(Debug, Default)]
struct InFlight {
    by_address: Mutex<HashMap<IpAddr, usize>>,
}

impl InFlight {
    fn take(self: &Arc<Self>, address: IpAddr, max: usize) -> Option<Slot> {
        let mut by_address = self
            .by_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = by_address.entry(address).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Slot {
            in_flight: Arc::clone(self),
            address,
        })
    }
}

/// One call's place in its address's count; freed when the call is answered (or
/// dropped).
struct Slot {
    in_flight: Arc<InFlight>,
    address: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut by_address = self
            .in_flight
            .by_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = by_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                by_address.remove(&self.address);
            }
        }
    }
}

/// The layer: one per listener (its clones share the counts).
#[derive(Clone, Debug)]
pub(super) struct PerAddressCallLimitLayer {
    in_flight: Arc<InFlight>,
    max: usize,
}

impl PerAddressCallLimitLayer {
    pub(super) fn new() -> Self {
        Self::with_max(CALLS_IN_FLIGHT_PER_ADDRESS_MAX)
    }

    fn with_max(max: usize) -> Self {
        Self {
            in_flight: Arc::default(),
            max,
        }
    }
}

impl<S> tower::Layer<S> for PerAddressCallLimitLayer {
    type Service = PerAddressCallLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PerAddressCallLimit {
            inner,
            in_flight: Arc::clone(&self.in_flight),
            max: self.max,
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct PerAddressCallLimit<S> {
    inner: S,
    in_flight: Arc<InFlight>,
    max: usize,
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

impl<S, B> tower::Service<http::Request<B>> for PerAddressCallLimit<S>
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
        let slot = match remote_address(&request) {
            Some(address) => match self.in_flight.take(address, self.max) {
                Some(slot) => Some(slot),
                None => {
                    let status = tonic::Status::resource_exhausted(format!(
                        "too many calls in flight from this client address \
                         (calls_in_flight_per_address_max = {})",
                        self.max
                    ));
                    return Box::pin(std::future::ready(Ok(status.into_http())));
                }
            },
            None => None,
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

    #[test]
    fn an_address_holds_at_most_its_slots_and_gets_them_back() {
        let in_flight = Arc::new(InFlight::default());
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let first = in_flight.take(a, 2).expect("first");
        let _second = in_flight.take(a, 2).expect("second");
        assert!(
            in_flight.take(a, 2).is_none(),
            "a third call of one address"
        );
        let _other = in_flight
            .take(b, 2)
            .expect("another address is not affected");
        drop(first);
        let _again = in_flight
            .take(a, 2)
            .expect("an answered call frees its slot");
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
        let mut service = PerAddressCallLimitLayer::with_max(1).layer(never);
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
        assert!(status.message().contains("calls_in_flight_per_address_max"));
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
