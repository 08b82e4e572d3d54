//! A TCP proxy standing for the network link between two regions: it can add latency
//! (each direction) and cut the link (open connections are dropped, new ones refused
//! at once) and heal it. Runs on a runtime of its own so sync tests can use it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

struct LinkState {
    /// Where connections go; none yet: connections are refused.
    upstream: std::sync::Mutex<Option<SocketAddr>>,
    one_way_latency_micros: AtomicU64,
    cut: AtomicBool,
    /// Bumped on every cut: connections of an older generation close.
    generation: watch::Sender<u64>,
}

pub struct LinkProxy {
    pub listen: SocketAddr,
    state: Arc<LinkState>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which an async caller may not do.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl LinkProxy {
    /// A proxy on a free loopback port forwarding to `upstream` (none yet: see
    /// [`LinkProxy::set_upstream`]).
    pub fn start(upstream: Option<SocketAddr>) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        // Bound with std and adopted inside the proxy's runtime: callers may be inside
        // a runtime of their own, where blocking on another one is not allowed.
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let listen = std_listener.local_addr()?;
        let listener = {
            let _context = runtime.enter();
            TcpListener::from_std(std_listener)?
        };
        let (generation, _) = watch::channel(0);
        let state = Arc::new(LinkState {
            upstream: std::sync::Mutex::new(upstream),
            one_way_latency_micros: AtomicU64::new(0),
            cut: AtomicBool::new(false),
            generation,
        });
        let accept_state = Arc::clone(&state);
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if accept_state.cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let state = Arc::clone(&accept_state);
                let upstream = *state.upstream.lock().expect("upstream lock");
                let Some(upstream) = upstream else {
                    drop(client);
                    continue;
                };
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let mut cut = state.generation.subscribe();
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::select! {
                        _ = pipe(client_read, server_write, Arc::clone(&state)) => {}
                        _ = pipe(server_read, client_write, Arc::clone(&state)) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Ok(Self {
            listen,
            state,
            runtime: Some(runtime),
        })
    }

    /// Delay added to every chunk in each direction (an RTT of twice this).
    pub fn set_one_way_latency(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.state
            .one_way_latency_micros
            .store(micros, Ordering::SeqCst);
    }

    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.state.upstream.lock().expect("upstream lock") = Some(upstream);
    }

    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        self.state.generation.send_modify(|g| *g += 1);
    }

    pub fn heal(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }
}

/// Copies `from` to `to`, delivering each chunk one latency after it arrived (chunks
/// in flight overlap, as on a real link: latency is added once, not once per chunk).
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: Arc<LinkState>,
) {
    let (sender, mut receiver) =
        tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer_state = Arc::clone(&state);
    let writer = async move {
        while let Some((due, chunk)) = receiver.recv().await {
            tokio::time::sleep_until(due).await;
            if writer_state.cut.load(Ordering::SeqCst) || to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    let reader = async move {
        let mut buffer = vec![0u8; 64 << 10];
        loop {
            let read = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let latency = state.one_way_latency_micros.load(Ordering::SeqCst);
            let due = tokio::time::Instant::now() + Duration::from_micros(latency);
            if sender.send((due, buffer[..read].to_vec())).is_err() {
                return;
            }
        }
    };
    // The writer drains what was read before the reader hit end of stream.
    let (_, ()) = tokio::join!(reader, writer);
}
