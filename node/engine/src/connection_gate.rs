//! Admission of TCP connections to the node's listeners.
//!
//! Without it a client could open connections until the process ran out of file
//! descriptors (then storage, peers and every listener fail), or hold thousands open
//! without ever speaking (slow-loris). Each listener therefore
//!
//! - keeps at most `per_listener` connections open, and at most `per_address` from one
//!   client address (`[listen] connections_per_address`, default
//!   [`CONNECTIONS_PER_ADDRESS_MAX`]) and never more than remain free
//!   (`client_address::FairShare`), closing the surplus at once: no client, and no set
//!   of fewer clients than there are slots, can take every slot;
//! - closes a connection whose first [`GREETING_BYTES`] bytes (the HTTP/2 preface, or
//!   the start of a TLS ClientHello) have not arrived within
//!   [`CONNECTION_HANDSHAKE_MAX_MS`]; after that, HTTP/2 keepalive pings and the TLS
//!   handshake timeout (set on the servers) close what stops answering;
//! - never stops accepting on an accept error (out of descriptors, say): it waits
//!   [`ACCEPT_ERROR_PAUSE`] and goes on, where tonic's own loop would end the listener.
//!
//! The listeners serve what this module admits: tonic's servers take
//! [`GatedListener::incoming`], the metrics server implements axum's `Listener` on it.
//!
//! `per_listener` comes from [`ConnectionLimits::for_listeners`], which divides the
//! process's descriptor limit between the listeners after keeping
//! [`FILES_RESERVED`] for storage, plugins and outgoing connections.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::client_address::{FairShare, ShareRefusal};
use crate::limits::{
    CONNECTION_HANDSHAKE_MAX_MS, CONNECTIONS_PER_ADDRESS_MAX, CONNECTIONS_PER_LISTENER_MAX,
};

/// Bytes a new connection must send within `CONNECTION_HANDSHAKE_MAX_MS`: the length of
/// the HTTP/2 client preface (RFC 9113 §3.4), shorter than any TLS ClientHello.
pub const GREETING_BYTES: usize = 24;

/// Descriptors kept out of the listeners' share: storage files, plugin files, peer
/// and Kafka connections, logs.
pub const FILES_RESERVED: u64 = 1_024;

/// How long a listener pauses after an accept error before accepting again.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Fewest connections a listener is given however low the descriptor limit.
const CONNECTIONS_PER_LISTENER_MIN: usize = 64;

/// How many connections each listener may hold, decided once at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub per_listener: usize,
    pub per_address: usize,
    /// The descriptor limit (RLIMIT_NOFILE, soft) the split was made from.
    pub descriptors: u64,
}

impl ConnectionLimits {
    /// Raises the soft descriptor limit to the hard one (the default soft limit of 1024
    /// would be the first thing an attacker exhausts) and gives each of `listeners` an
    /// equal share of what is left after [`FILES_RESERVED`], at most
    /// [`CONNECTIONS_PER_LISTENER_MAX`].
    pub fn for_listeners(listeners: usize) -> Self {
        Self::split(raise_descriptor_limit(), listeners)
    }

    /// These limits with `per_address` connections from one client address (at most
    /// the listener's own bound).
    pub fn with_per_address(self, per_address: usize) -> Self {
        Self {
            per_address: per_address.min(self.per_listener),
            ..self
        }
    }

    /// The share of `descriptors` each of `listeners` gets.
    pub fn split(descriptors: u64, listeners: usize) -> Self {
        let share = descriptors.saturating_sub(FILES_RESERVED) / listeners.max(1) as u64;
        let per_listener = usize::try_from(share)
            .unwrap_or(usize::MAX)
            .clamp(CONNECTIONS_PER_LISTENER_MIN, CONNECTIONS_PER_LISTENER_MAX);
        Self {
            per_listener,
            per_address: CONNECTIONS_PER_ADDRESS_MAX.min(per_listener),
            descriptors,
        }
    }
}

/// Sets RLIMIT_NOFILE's soft limit to its hard limit; returns the soft limit in force
/// afterwards (the old one if it could not be raised).
fn raise_descriptor_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    let Some(hard) = limit.maximum else {
        return current;
    };
    if hard <= current {
        return current;
    }
    let raised = rustix::process::Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => hard,
        Err(error) => {
            tracing::warn!(%error, current, hard, "could not raise the open-file limit");
            current
        }
    }
}

/// Why a connection was closed by the gate, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The listener held `per_listener` connections.
    ListenerFull,
    /// The client address held `per_address` connections.
    AddressFull,
    /// The client address held as many connections as remained free.
    OverShare,
}

/// Counters of one listener's gate (monotonic since start, except `open`).
#[derive(Debug, Default)]
pub struct GateCounters {
    pub open: AtomicU64,
    pub refused_listener_full: AtomicU64,
    pub refused_address_full: AtomicU64,
    pub refused_over_share: AtomicU64,
    pub greeting_timeouts: AtomicU64,
    pub accept_errors: AtomicU64,
}

/// The admission state of one listener.
#[derive(Debug)]
pub struct ConnectionGate {
    /// The listener's config key (`flight_sql`, `admin`, `peer`, `metrics`).
    pub listener: &'static str,
    handshake: Duration,
    slots: Mutex<FairShare>,
    pub counters: GateCounters,
}

impl ConnectionGate {
    pub fn new(listener: &'static str, limits: ConnectionLimits) -> Arc<Self> {
        Self::with_handshake(
            listener,
            limits,
            Duration::from_millis(CONNECTION_HANDSHAKE_MAX_MS),
        )
    }

    /// [`ConnectionGate::new`] with another greeting deadline (tests).
    pub fn with_handshake(
        listener: &'static str,
        limits: ConnectionLimits,
        handshake: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            listener,
            handshake,
            slots: Mutex::new(FairShare::new(limits.per_listener, limits.per_address)),
            counters: GateCounters::default(),
        })
    }

    /// A slot for a connection from `address` (counted by
    /// `client_address::client_key`: an IPv6 client by its /64), or why there is none.
    /// Slots are shared by [`FairShare`]: an address holds at most `per_address`, and
    /// never more than remain free, so no set of addresses locks the others out.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Admission, Refusal> {
        let address = crate::client_address::client_key(address);
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        match slots.take(address) {
            Ok(()) => {}
            Err(refusal) => {
                let (counter, refusal) = match refusal {
                    ShareRefusal::PoolFull => {
                        (&self.counters.refused_listener_full, Refusal::ListenerFull)
                    }
                    ShareRefusal::ClientFull => {
                        (&self.counters.refused_address_full, Refusal::AddressFull)
                    }
                    ShareRefusal::OverShare => {
                        (&self.counters.refused_over_share, Refusal::OverShare)
                    }
                };
                counter.fetch_add(1, Relaxed);
                return Err(refusal);
            }
        }
        self.counters.open.store(slots.held() as u64, Relaxed);
        Ok(Admission {
            gate: Arc::clone(self),
            address,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.counters.open.load(Relaxed)
    }

    fn release(&self, address: IpAddr) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.give_back(address);
        self.counters.open.store(slots.held() as u64, Relaxed);
    }
}

/// One admitted connection's slot; freed when dropped (when the connection closes).
#[derive(Debug)]
pub struct Admission {
    gate: Arc<ConnectionGate>,
    address: IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.gate.release(self.address);
    }
}

/// A listener that admits connections through a [`ConnectionGate`].
pub struct GatedListener {
    listener: TcpListener,
    gate: Arc<ConnectionGate>,
    lifetime: Option<Duration>,
}

impl GatedListener {
    pub fn new(listener: TcpListener, gate: Arc<ConnectionGate>) -> Self {
        Self {
            listener,
            gate,
            lifetime: None,
        }
    }

    /// Connections of this listener fail their reads (and so close) once `lifetime`
    /// old: for a listener of short requests (metrics scrapes), where a connection held
    /// longer is idle or hostile.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = Some(lifetime);
        self
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next admitted connection. Refused connections are closed at once; accept
    /// errors are counted and waited out; neither ends the listener.
    pub async fn accept_admitted(&mut self) -> (GatedStream, SocketAddr) {
        loop {
            let (stream, address) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    self.gate.counters.accept_errors.fetch_add(1, Relaxed);
                    tracing::debug!(listener = self.gate.listener, %error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            };
            let admission = match self.gate.admit(address.ip()) {
                Ok(admission) => admission,
                Err(refusal) => {
                    tracing::debug!(
                        listener = self.gate.listener,
                        ?refusal,
                        "connection refused"
                    );
                    continue;
                }
            };
            // Small request/response messages must not wait for Nagle's algorithm.
            let _ = stream.set_nodelay(true);
            let greeting = Greeting {
                deadline: Box::pin(tokio::time::sleep(self.gate.handshake)),
                seen: 0,
                expired: false,
            };
            return (
                GatedStream {
                    inner: stream,
                    greeting: Some(greeting),
                    lifetime: self.lifetime.map(|l| Box::pin(tokio::time::sleep(l))),
                    _admission: admission,
                },
                address,
            );
        }
    }

    /// The admitted connections as the stream tonic's `serve_with_incoming` takes.
    pub fn incoming(self) -> impl futures::Stream<Item = io::Result<GatedStream>> + Send {
        futures::stream::unfold(self, |mut listener| async move {
            let (stream, _) = listener.accept_admitted().await;
            Some((Ok(stream), listener))
        })
    }
}

struct Greeting {
    deadline: Pin<Box<Sleep>>,
    seen: usize,
    /// Counted once, however often the connection is read after the deadline.
    expired: bool,
}

/// An admitted TCP connection: holds its slot, and fails its reads once the greeting
/// deadline passed without [`GREETING_BYTES`] bytes read.
pub struct GatedStream {
    inner: TcpStream,
    greeting: Option<Greeting>,
    /// See [`GatedListener::with_lifetime`].
    lifetime: Option<Pin<Box<Sleep>>>,
    _admission: Admission,
}

impl AsyncRead for GatedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(lifetime) = this.lifetime.as_mut()
            && lifetime.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection older than its listener allows",
            )));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        let Some(greeting) = this.greeting.as_mut() else {
            return read;
        };
        if let Poll::Ready(Ok(())) = &read {
            greeting.seen += buf.filled().len() - before;
            if greeting.seen >= GREETING_BYTES || buf.filled().len() == before {
                // Greeted (or closed by the client): no deadline any more.
                this.greeting = None;
            }
            return read;
        }
        if read.is_ready() {
            return read;
        }
        ready!(greeting.deadline.as_mut().poll(cx));
        if !greeting.expired {
            greeting.expired = true;
            this._admission
                .gate
                .counters
                .greeting_timeouts
                .fetch_add(1, Relaxed);
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no protocol greeting within {CONNECTION_HANDSHAKE_MAX_MS} ms (limits::CONNECTION_HANDSHAKE_MAX_MS)"
            ),
        )))
    }
}

impl AsyncWrite for GatedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Connected for GatedStream {
    // The TCP stream's own info, so `Request::remote_addr` and, under TLS,
    // `Request::peer_certs` find it as they would without the gate.
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits(per_listener: usize, per_address: usize) -> ConnectionLimits {
        ConnectionLimits {
            per_listener,
            per_address,
            descriptors: 0,
        }
    }

    #[test]
    fn the_descriptor_limit_is_shared_between_listeners() {
        let split = ConnectionLimits::split(20_000, 4);
        assert_eq!(split.per_listener, (20_000 - 1_024) / 4);
        assert_eq!(split.per_address, CONNECTIONS_PER_ADDRESS_MAX);
        // A generous limit is capped; a tiny one still leaves a working listener.
        assert_eq!(
            ConnectionLimits::split(1 << 40, 1).per_listener,
            CONNECTIONS_PER_LISTENER_MAX
        );
        let tiny = ConnectionLimits::split(256, 3);
        assert_eq!(tiny.per_listener, CONNECTIONS_PER_LISTENER_MIN);
        assert!(tiny.per_address <= tiny.per_listener);
        // A configured per-address bound applies, but never above the listener's.
        assert_eq!(split.with_per_address(1_000).per_address, 1_000);
        assert_eq!(
            tiny.with_per_address(1_000).per_address,
            CONNECTIONS_PER_LISTENER_MIN
        );
    }

    #[test]
    fn slots_are_bounded_per_address_and_per_listener_and_freed_on_drop() {
        let gate = ConnectionGate::new("test", limits(3, 2));
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let first = gate.admit(a).expect("first");
        let _second = gate.admit(a).expect("second");
        assert_eq!(gate.admit(a).err(), Some(Refusal::AddressFull));
        let _third = gate.admit(b).expect("another address");
        assert_eq!(gate.admit(b).err(), Some(Refusal::ListenerFull));
        assert_eq!(gate.open(), 3);
        drop(first);
        assert_eq!(gate.open(), 2);
        // `a` now holds as many as remain free; the freed slot goes to another address.
        assert_eq!(gate.admit(a).err(), Some(Refusal::OverShare));
        let _again = gate
            .admit("10.0.0.3".parse().expect("ip"))
            .expect("a freed slot is reusable");
        assert_eq!(gate.counters.refused_address_full.load(Relaxed), 1);
        assert_eq!(gate.counters.refused_listener_full.load(Relaxed), 1);
    }

    #[test]
    fn a_handful_of_addresses_cannot_take_every_slot() {
        // 32 addresses at the per-address bound used to fill a listener of 8 192: with
        // a fair share each stops at about what remains free.
        let gate = ConnectionGate::new("test", limits(8_192, 256));
        let mut held = Vec::new();
        for round in 0..256 {
            for n in 0..32u8 {
                if let Ok(admission) = gate.admit(IpAddr::from([10, 0, 1, n])) {
                    held.push(admission);
                } else {
                    assert!(round > 0, "every address gets a first slot");
                }
            }
        }
        assert!(gate.open() < 8_192, "32 addresses filled the listener");
        let _newcomer = gate
            .admit("10.0.2.1".parse().expect("ip"))
            .expect("a new client still gets a connection");
        assert!(gate.counters.refused_over_share.load(Relaxed) > 0);
    }

    async fn gated(
        per_address: usize,
        handshake: Duration,
    ) -> (Arc<ConnectionGate>, SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let gate = ConnectionGate::with_handshake("test", limits(100, per_address), handshake);
        let server = spawn_echo(GatedListener::new(listener, Arc::clone(&gate)));
        (gate, address, server)
    }

    /// An echo server on `gated`: each connection answers what it reads until its
    /// stream fails or ends.
    fn spawn_echo(mut gated: GatedListener) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = gated.accept_admitted().await;
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n @ 1..) = stream.read(&mut buf).await {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        })
    }

    /// Reads until the server closes the connection; true if it did within `within`.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(within, async {
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            })
            .await,
            Ok(())
        )
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_after_the_greeting_deadline_and_frees_its_slot() {
        let (gate, address, server) = gated(10, Duration::from_millis(300)).await;
        let mut silent = TcpStream::connect(address).await.expect("connect");
        // A few bytes are not a greeting: the deadline still applies.
        silent.write_all(b"PRI * ").await.expect("write");
        let mut greeted = TcpStream::connect(address).await.expect("connect");
        greeted
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .expect("write");
        let mut echo = [0u8; GREETING_BYTES];
        greeted.read_exact(&mut echo).await.expect("echo");
        assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
        assert_eq!(gate.counters.greeting_timeouts.load(Relaxed), 1);
        // Past the deadline, the greeted connection still works.
        tokio::time::sleep(Duration::from_millis(400)).await;
        greeted.write_all(b"still here").await.expect("write");
        let mut back = [0u8; 10];
        greeted
            .read_exact(&mut back)
            .await
            .expect("echo after deadline");
        assert_eq!(&back, b"still here");
        assert_eq!(gate.open(), 1, "the silent connection's slot was freed");
        server.abort();
    }

    #[test]
    fn an_ipv6_client_counts_by_its_slash_64() {
        let gate = ConnectionGate::new("test", limits(100, 2));
        let one: IpAddr = "2001:db8::1".parse().expect("ip");
        let other: IpAddr = "2001:db8::ffff:2".parse().expect("ip");
        let _a = gate.admit(one).expect("first");
        let _b = gate.admit(other).expect("second, same /64");
        assert_eq!(
            gate.admit("2001:db8::3".parse().expect("ip")).err(),
            Some(Refusal::AddressFull)
        );
        gate.admit("2001:db8:0:1::1".parse().expect("ip"))
            .expect("another /64");
    }

    #[tokio::test]
    async fn a_listener_with_a_lifetime_closes_even_busy_connections_when_it_passes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let gate = ConnectionGate::new("test", limits(10, 10));
        let server = spawn_echo(
            GatedListener::new(listener, Arc::clone(&gate))
                .with_lifetime(Duration::from_millis(300)),
        );
        let mut client = TcpStream::connect(address).await.expect("connect");
        client
            .write_all(&[b'g'; GREETING_BYTES])
            .await
            .expect("greet");
        let mut echo = [0u8; GREETING_BYTES];
        client.read_exact(&mut echo).await.expect("echo");
        assert!(closed_within(&mut client, Duration::from_secs(5)).await);
        server.abort();
    }

    #[tokio::test]
    async fn connections_past_the_per_address_bound_are_closed_at_once() {
        let (gate, address, server) = gated(2, Duration::from_secs(30)).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(address).await.expect("connect");
            stream
                .write_all(&[b'x'; GREETING_BYTES])
                .await
                .expect("write");
            let mut echo = [0u8; GREETING_BYTES];
            stream.read_exact(&mut echo).await.expect("admitted");
            held.push(stream);
        }
        let mut third = TcpStream::connect(address).await.expect("TCP accepts");
        assert!(closed_within(&mut third, Duration::from_secs(5)).await);
        assert_eq!(gate.counters.refused_address_full.load(Relaxed), 1);
        drop(held.pop());
        // The freed slot is taken by the next connection.
        let admitted = async {
            loop {
                let mut stream = TcpStream::connect(address).await.expect("connect");
                let _ = stream.write_all(&[b'y'; GREETING_BYTES]).await;
                let mut echo = [0u8; GREETING_BYTES];
                if stream.read_exact(&mut echo).await.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), admitted)
            .await
            .expect("a freed slot admits again");
        server.abort();
    }
}
