use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use thiserror::Error;
use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
    StoreLimits, StoreLimitsBuilder, Trap, UpdateDeadline,
};
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

use super::limits::{
    CONCURRENT_CALLS_MAX, CORE_INSTANCES_PER_COMPONENT_MAX, EPOCH_TICK, MEMORIES_PER_COMPONENT_MAX,
    PLUGIN_SLOT_WAIT_MAX, PLUGIN_SLOT_WAITERS_MAX, PluginLimits, TABLES_PER_COMPONENT_MAX,
};
/// Dirtied linear memory reset in place (not returned to the kernel) when a call's
/// instance ends; bounds the resident memory of idle slots.
const MEMORY_KEEP_RESIDENT_BYTES: usize = 1 << 20;
const TABLE_KEEP_RESIDENT_BYTES: usize = 64 << 10;

/// Which world a plugin implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PluginKind {
    ResidencyPolicy,
    CdcRedactor,
    SagaStep,
}

impl PluginKind {
    pub const ALL: [PluginKind; 3] = [
        PluginKind::ResidencyPolicy,
        PluginKind::CdcRedactor,
        PluginKind::SagaStep,
    ];

    /// The kind `text` names (`residency-policy`, `cdc-redactor`, `saga-step`).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::ResidencyPolicy => "residency-policy",
            PluginKind::CdcRedactor => "cdc-redactor",
            PluginKind::SagaStep => "saga-step",
        }
    }
}

/// Why a component was refused. The active version of a plugin is never touched by a
/// refused load.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("plugin of {size_bytes} bytes exceeds plugin_size_max_bytes = {max_bytes}")]
    TooLarge { size_bytes: usize, max_bytes: usize },
    #[error("not a valid WASM component: {0}")]
    NotAComponent(String),
    #[error("component does not implement the {world} world: {detail}")]
    WrongWorld { world: &'static str, detail: String },
    #[error("component failed its trial instantiation: {0}")]
    Instantiation(String),
}

impl crate::error_kind::Classify for LoadError {
    fn kind(&self) -> crate::error_kind::ErrorKind {
        use crate::error_kind::ErrorKind;
        match self {
            LoadError::TooLarge { .. } => ErrorKind::Exhausted,
            LoadError::NotAComponent(_)
            | LoadError::WrongWorld { .. }
            | LoadError::Instantiation(_) => ErrorKind::Invalid,
        }
    }
}

/// Why one call failed. Every caller treats any of these as "deny / hold".
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CallError {
    #[error("plugin call exceeded its deadline of {deadline_ms} ms")]
    Timeout { deadline_ms: u64 },
    #[error("plugin exceeded its memory limit of {memory_max_bytes} bytes")]
    OutOfMemory { memory_max_bytes: usize },
    #[error("plugin trapped: {0}")]
    Trap(String),
    #[error("plugin returned an invalid answer: {0}")]
    InvalidOutput(String),
    #[error("plugin could not be instantiated: {0}")]
    Instantiation(String),
    /// Every instance slot was busy for as long as a call may wait: the node is
    /// overloaded, the plugin did not run. Fails closed like any error, but is no
    /// decision of the plugin (reported as unavailable, not as a denial).
    #[error(
        "no plugin instance free within {waited_ms} ms ({CONCURRENT_CALLS_MAX} calls run at \
         once): the node is overloaded, try again"
    )]
    Unavailable { waited_ms: u64 },
}

impl crate::error_kind::Classify for CallError {
    /// A plugin that broke is the operator's to look at; one that could not be asked in
    /// time may be asked again. (A residency refusal classifies its policy's failure
    /// itself: a decision not taken is refused until an operator acts.)
    fn kind(&self) -> crate::error_kind::ErrorKind {
        use crate::error_kind::ErrorKind;
        match self {
            CallError::Unavailable { .. } => ErrorKind::Unavailable,
            CallError::Timeout { .. }
            | CallError::OutOfMemory { .. }
            | CallError::Trap(_)
            | CallError::InvalidOutput(_)
            | CallError::Instantiation(_) => ErrorKind::Internal,
        }
    }
}

/// Counters of one loaded plugin version, for `system.plugins` and `/metrics`.
#[derive(Debug, Default)]
pub struct CallStats {
    calls: std::sync::atomic::AtomicU64,
    errors: std::sync::atomic::AtomicU64,
    timeouts: std::sync::atomic::AtomicU64,
    call_us_total: std::sync::atomic::AtomicU64,
}

/// A snapshot of [`CallStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallStatsSnapshot {
    pub calls: u64,
    /// Failed calls of any kind, timeouts included.
    pub errors: u64,
    pub timeouts: u64,
    pub call_us_total: u64,
}

impl CallStats {
    pub(super) fn record(&self, elapsed: Duration, error: Option<&CallError>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.call_us_total.fetch_add(elapsed_us, Ordering::Relaxed);
        if let Some(error) = error {
            self.errors.fetch_add(1, Ordering::Relaxed);
            if matches!(error, CallError::Timeout { .. }) {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A call that completed but whose answer the host refused.
    pub(super) fn record_rejected_answer(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CallStatsSnapshot {
        CallStatsSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            call_us_total: self.call_us_total.load(Ordering::Relaxed),
        }
    }
}

/// Per-call store data: WASI made inert, a resource table, and the memory limiter.
pub(super) struct HostState {
    /// Secret of the keyed-hash import (cdc-redactor world); empty elsewhere.
    pub(super) hmac_secret: Arc<[u8]>,
    /// What a saga step has read and staged (saga-step world); `None` elsewhere.
    pub(super) step: Option<super::saga_host::StepTransaction>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: CallLimits,
    /// When the running instantiation or call is interrupted (checked at every epoch
    /// tick; until then the guest yields to the executor at each tick).
    deadline: Instant,
    /// The instance slot this call holds, given back when the store is dropped.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// A call's resource limits: `StoreLimits` for counts and each memory's size, plus the
/// sum of all its linear memories, which `StoreLimits` does not bound (it checks each
/// memory alone, so a component with four memories could use four times the cap).
pub(super) struct CallLimits {
    each: StoreLimits,
    /// Bytes of linear memory the call's instances hold, all memories together.
    memory_total: usize,
    memory_max: usize,
    /// The last growth let through, taken back if it then failed.
    last_growth: usize,
}

impl CallLimits {
    fn new(memory_max: usize) -> Self {
        Self {
            each: StoreLimitsBuilder::new()
                .memory_size(memory_max)
                .instances(16)
                .tables(16)
                .memories(4)
                .trap_on_grow_failure(true)
                .build(),
            memory_total: 0,
            memory_max,
            last_growth: 0,
        }
    }
}

impl wasmtime::ResourceLimiter for CallLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.memory_total.saturating_add(growth);
        if total > self.memory_max {
            return Err(wasmtime::Error::msg(format!(
                "forcing trap when growing memory: the instance's linear memories would hold \
                 {total} bytes, over the limit of {}",
                self.memory_max
            )));
        }
        if !self.each.memory_growing(current, desired, maximum)? {
            return Ok(false);
        }
        self.memory_total = total;
        self.last_growth = growth;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_total = self.memory_total.saturating_sub(self.last_growth);
        self.last_growth = 0;
        self.each.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.each.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.each.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.each.instances()
    }

    fn tables(&self) -> usize {
        self.each.tables()
    }

    fn memories(&self) -> usize {
        self.each.memories()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A clock stopped at the epoch: plugins must not depend on time.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The node's one wasmtime engine and the thread that advances its epoch.
pub struct PluginRuntime {
    engine: Engine,
    limits: PluginLimits,
    ticker_stop: Arc<AtomicBool>,
    /// One permit per instance slot of the pooling allocator: a call waits for one
    /// (briefly, see `store`) instead of failing when the pool is full.
    slots: Arc<tokio::sync::Semaphore>,
    /// Calls waiting for a slot now; past `PLUGIN_SLOT_WAITERS_MAX` a call does not
    /// queue but is refused at once.
    waiting: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("limits", &self.limits)
            .finish()
    }
}

impl PluginRuntime {
    pub fn new(limits: PluginLimits) -> Result<Arc<Self>, LoadError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(CONCURRENT_CALLS_MAX)
            .total_core_instances(CONCURRENT_CALLS_MAX * CORE_INSTANCES_PER_COMPONENT_MAX)
            .total_memories(CONCURRENT_CALLS_MAX * MEMORIES_PER_COMPONENT_MAX)
            .total_tables(CONCURRENT_CALLS_MAX * TABLES_PER_COMPONENT_MAX)
            .total_stacks(CONCURRENT_CALLS_MAX)
            .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT_MAX)
            .max_memories_per_component(MEMORIES_PER_COMPONENT_MAX)
            .max_tables_per_component(TABLES_PER_COMPONENT_MAX)
            .max_memory_size(limits.memory_max_bytes)
            // A call's instance is dropped at its end. Resetting its memory with
            // madvise costs a TLB shootdown on every core the node runs on (profiled:
            // the largest cost of a policy call under load); instead the pages the
            // guest dirtied (found with PAGEMAP_SCAN, Linux >= 6.7) are reset with
            // memset, up to this much per memory, and stay resident for the next call.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT_BYTES)
            .table_keep_resident(TABLE_KEEP_RESIDENT_BYTES);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(1 << 20)
            .memory_reservation(limits.memory_max_bytes as u64)
            .memory_guard_size(64 << 10)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine =
            Engine::new(&config).map_err(|e| LoadError::Instantiation(format!("{e:#}")))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.weak();
        let stop = Arc::clone(&ticker_stop);
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match ticker_engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })
            .map_err(|e| LoadError::Instantiation(format!("cannot start the epoch thread: {e}")))?;
        Ok(Arc::new(Self {
            engine,
            limits,
            ticker_stop,
            slots: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_CALLS_MAX as usize)),
            waiting: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }))
    }

    /// An instance slot: at once if one is free, else after waiting for one up to
    /// `PLUGIN_SLOT_WAIT_MAX` in a queue of at most `PLUGIN_SLOT_WAITERS_MAX` calls.
    ///
    /// Errors: `Unavailable` when the queue is full or the wait runs out.
    async fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, CallError> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(permit);
        }
        /// Counts a waiting call for as long as it waits, even if it is cancelled.
        struct Waiting(Arc<std::sync::atomic::AtomicUsize>);
        impl Drop for Waiting {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let queued = self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(Arc::clone(&self.waiting));
        if queued >= PLUGIN_SLOT_WAITERS_MAX {
            return Err(CallError::Unavailable { waited_ms: 0 });
        }
        let waited_ms = u64::try_from(PLUGIN_SLOT_WAIT_MAX.as_millis()).unwrap_or(u64::MAX);
        // Without a Tokio runtime (tools, some tests) there is no timer to wait with.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(CallError::Unavailable { waited_ms: 0 });
        }
        match tokio::time::timeout(
            PLUGIN_SLOT_WAIT_MAX,
            Arc::clone(&self.slots).acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(CallError::Unavailable { waited_ms }),
        }
    }

    pub fn limits(&self) -> PluginLimits {
        self.limits
    }

    /// Compiles `bytes` as a component, refusing oversized or malformed input.
    fn compile(&self, bytes: &[u8]) -> Result<Component, LoadError> {
        let max_bytes = self.limits.component_size_max_bytes;
        if bytes.len() > max_bytes {
            return Err(LoadError::TooLarge {
                size_bytes: bytes.len(),
                max_bytes,
            });
        }
        Component::from_binary(&self.engine, bytes)
            .map_err(|e| LoadError::NotAComponent(format!("{e:#}")))
    }

    /// Compiles `bytes` and links it against inert WASI plus the imports `add_imports`
    /// grants (those of the plugin's world, nothing else). A component importing
    /// anything more fails here, as `WrongWorld`.
    pub(super) fn link(
        &self,
        bytes: &[u8],
        world: &'static str,
        add_imports: impl FnOnce(&mut Linker<HostState>) -> wasmtime::Result<()>,
    ) -> Result<InstancePre<HostState>, LoadError> {
        let component = self.compile(bytes)?;
        let mut linker = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| forbid_waiting(&mut linker))
            .and_then(|()| add_imports(&mut linker))
            .map_err(|e| LoadError::Instantiation(format!("{e:#}")))?;
        linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::WrongWorld {
                world,
                detail: format!("{e:#}"),
            })
    }

    /// A store for one call, holding an instance slot (see `slot`): fresh state, memory
    /// capped, and the call deadline armed for the guest's start-up code, which runs
    /// during instantiation (`instantiated` arms it again for the call itself).
    ///
    /// Errors: `Unavailable` when no slot comes free in time.
    pub(super) async fn store(&self) -> Result<Store<HostState>, CallError> {
        let slot = self.slot().await?;
        let wasi = WasiCtxBuilder::new()
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(wasmtime_wasi::Deterministic::new(vec![7; 32]))
            .insecure_random(wasmtime_wasi::Deterministic::new(vec![11; 32]))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut store = Store::new(
            &self.engine,
            HostState {
                hmac_secret: Arc::from(Vec::new()),
                step: None,
                wasi,
                table: ResourceTable::new(),
                limits: CallLimits::new(self.limits.memory_max_bytes),
                deadline: Instant::now() + self.limits.call_deadline,
                _slot: slot,
            },
        );
        store.limiter(|state| &mut state.limits);
        // At every tick: past the deadline the guest traps (`Trap::Interrupt`);
        // before it, the guest's fiber yields, so a long call shares its worker thread
        // with the node's other tasks instead of holding it for the whole deadline.
        store.epoch_deadline_callback(|store| {
            Ok(if Instant::now() >= store.data().deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        store.set_epoch_deadline(1);
        Ok(store)
    }

    /// Classifies the outcome of instantiating a call's fresh instance in `store`
    /// (a failure is counted in `stats`), and arms the call deadline: instantiation ran
    /// under its own.
    pub(super) fn instantiated<I>(
        &self,
        stats: &CallStats,
        store: &mut Store<HostState>,
        instance: wasmtime::Result<I>,
    ) -> Result<I, CallError> {
        let instance = instance.map_err(|e| {
            let error = match self.classify(&e) {
                // The slot's permit is given back when the store's data is dropped,
                // just before its instances return to the pool: a woken waiter can
                // find the pool still full for a moment. That is load, not a plugin
                // fault.
                CallError::Trap(text) if text.contains("maximum concurrent limit") => {
                    CallError::Unavailable { waited_ms: 0 }
                }
                CallError::Trap(text) => CallError::Instantiation(text),
                other => other,
            };
            stats.record(Duration::ZERO, Some(&error));
            error
        })?;
        store.data_mut().deadline = Instant::now() + self.limits.call_deadline;
        Ok(instance)
    }

    /// Runs one call of an instantiated guest and records its outcome in `stats`. Every
    /// failure comes back classified, for the caller to fail closed on.
    ///
    /// Traced as a `plugin call` span named after the guest's `function` (inside the
    /// traced work that asked, never on its own); its arguments are not recorded.
    pub(super) async fn run<T>(
        &self,
        stats: &CallStats,
        function: &'static str,
        call: impl Future<Output = wasmtime::Result<T>>,
    ) -> Result<T, CallError> {
        let span = if tracing::Span::current().is_none() {
            tracing::Span::none()
        } else {
            tracing::info_span!("plugin call", plugin.function = function)
        };
        let started = Instant::now();
        let result = tracing::Instrument::instrument(call, span)
            .await
            .map_err(|e| self.classify(&e));
        stats.record(started.elapsed(), result.as_ref().err());
        result
    }

    /// Instantiates once to prove a component starts (its start-up code runs under the
    /// call deadline).
    pub(super) fn instantiate_trial<F>(
        &self,
        instantiate: impl FnOnce(Store<HostState>) -> F + Send,
    ) -> Result<(), LoadError>
    where
        F: Future<Output = wasmtime::Result<()>> + Send,
    {
        blocking(async {
            let store = self
                .store()
                .await
                .map_err(|e| wasmtime::Error::msg(e.to_string()))?;
            instantiate(store).await
        })
        .map_err(|e| LoadError::Instantiation(format!("{e:#}")))
    }

    /// Sorts a wasmtime error from a call into what callers need to know.
    pub(super) fn classify(&self, error: &wasmtime::Error) -> CallError {
        if let Some(trap) = error.downcast_ref::<Trap>()
            && *trap == Trap::Interrupt
        {
            let deadline_ms =
                u64::try_from(self.limits.call_deadline.as_millis()).unwrap_or(u64::MAX);
            return CallError::Timeout { deadline_ms };
        }
        let text = format!("{error:#}");
        if text.contains("forcing trap when growing memory")
            || text.contains("memory") && text.contains("limit")
        {
            return CallError::OutOfMemory {
                memory_max_bytes: self.limits.memory_max_bytes,
            };
        }
        // A guest's panic message is its own text and may cite what it was given.
        CallError::Trap(crate::redact_text::withhold_values(
            &text,
            crate::redact_text::Origin::Plugin { seen: &[] },
        ))
    }
}

/// Waits for a plugin call from synchronous code. The call's fiber runs right here: in
/// `block_in_place` on a multi-threaded runtime's worker (other tasks move to another
/// thread meanwhile), on a scoped thread under a current-thread runtime (tests, tools).
/// Async callers (saga steps and their messages) await the call instead, and keep their
/// worker thread.
pub(super) fn blocking<F>(call: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    off_async_workers(move || match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(call),
        Err(_) => futures::executor::block_on(call),
    })
}

/// Runs `f` where blocking is allowed (see [`blocking`]).
pub(super) fn off_async_workers<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|scope| match scope.spawn(f).join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
        Err(_) => f(),
    }
}

/// Replaces WASI's blocking waits with traps. Nothing a plugin may reach is worth
/// waiting for (no files, sockets or input; clocks are frozen), and a host blocked in a
/// wait is out of reach of the epoch deadline: `sleep(1 hour)` would hold the call for an
/// hour. `pollable.ready` stays (it never blocks).
fn forbid_waiting(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi::p2::DynPollable;

    linker.allow_shadowing(true);
    let mut poll = linker.instance("wasi:io/poll@0.2.12")?;
    poll.func_wrap(
        "poll",
        |_, _: (Vec<Resource<DynPollable>>,)| -> wasmtime::Result<(Vec<u32>,)> {
            Err(wasmtime::Error::msg(
                "plugins may not wait (wasi:io/poll.poll)",
            ))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |_, _: (Resource<DynPollable>,)| -> wasmtime::Result<()> {
            Err(wasmtime::Error::msg(
                "plugins may not wait (pollable.block)",
            ))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::ResourceLimiter;

    use super::*;

    /// Issue 21: with every slot taken, a call used to fail at once; now it waits for
    /// one, and only a wait that runs out is refused, as unavailable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_waits_for_a_slot_and_fails_as_unavailable_only_when_none_comes() {
        let runtime = PluginRuntime::new(PluginLimits::default()).expect("runtime");
        let mut held = Vec::new();
        for _ in 0..CONCURRENT_CALLS_MAX {
            held.push(runtime.store().await.expect("a free slot"));
        }
        let started = Instant::now();
        let refused = runtime.store().await.err().expect("no slot left");
        assert!(
            matches!(refused, CallError::Unavailable { waited_ms } if waited_ms == 250),
            "{refused:?}"
        );
        assert!(started.elapsed() >= PLUGIN_SLOT_WAIT_MAX, "it waited first");

        // A slot given back while a call waits goes to that call.
        let waiter = {
            let runtime = Arc::clone(&runtime);
            tokio::spawn(async move { runtime.store().await.map(drop) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        held.pop();
        waiter.await.expect("join").expect("the freed slot");
        assert_eq!(runtime.waiting.load(Ordering::Relaxed), 0);
    }

    /// The start-up code of a guest runs under the call deadline, not a looser one.
    #[tokio::test]
    async fn start_up_runs_under_the_call_deadline() {
        let limits = PluginLimits {
            call_deadline: Duration::from_millis(5),
            ..PluginLimits::default()
        };
        let runtime = PluginRuntime::new(limits).expect("runtime");
        let before = Instant::now();
        let store = runtime.store().await.expect("store");
        assert!(store.data().deadline <= Instant::now() + limits.call_deadline);
        assert!(store.data().deadline >= before + limits.call_deadline);
    }

    /// `StoreLimits` caps each memory alone; a call's memories together stay under the
    /// documented cap.
    #[test]
    fn the_memory_cap_covers_all_of_a_calls_memories_together() {
        let cap = 10 << 20;
        let mut limits = CallLimits::new(cap);
        let six = 6 << 20;
        assert!(limits.memory_growing(0, six, None).expect("first memory"));
        let second = limits.memory_growing(0, six, None);
        let error = second.expect_err("two memories of 6 MiB exceed 10 MiB");
        assert!(
            error
                .to_string()
                .contains("forcing trap when growing memory")
        );
        // A growth let through that then fails is taken back.
        assert!(
            limits
                .memory_growing(0, 2 << 20, None)
                .expect("within the cap")
        );
        let _ = limits.memory_grow_failed(wasmtime::Error::msg("os refused"));
        assert_eq!(limits.memory_total, six);
        assert!(
            limits
                .memory_growing(0, 4 << 20, None)
                .expect("within the cap")
        );
        assert!(
            limits.memory_growing(six, six + 1, None).is_err(),
            "at the cap"
        );
    }
}
