use std::time::Duration;

/// Default wall-time budget of one policy call.
pub(crate) const POLICY_CALL_DEADLINE_DEFAULT: Duration = Duration::from_millis(10);
/// Default linear-memory cap of one plugin instance, in bytes.
pub(crate) const PLUGIN_MEMORY_MAX_BYTES_DEFAULT: usize = 32 << 20;
/// Largest plugin component accepted, in bytes.
pub(crate) const PLUGIN_SIZE_MAX_BYTES_DEFAULT: usize = 16 << 20;
/// Longest denial reason a policy may return, in bytes; a longer one is a plugin error.
pub(crate) const DENIAL_REASON_MAX_BYTES: usize = 1024;
/// How often the epoch advances: the resolution of call deadlines.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Instance slots in the pooling allocator: the most plugin calls running at once.
pub(crate) const CONCURRENT_CALLS_MAX: u32 = 64;
/// What one plugin instance may hold of the pool (wasmtime's per-component maxima). The
/// pool's totals are these times `CONCURRENT_CALLS_MAX`, so each of the 64 slots a call
/// may wait for can hold any accepted plugin: the pool never runs out of memories or
/// tables while a slot is free. A component that needs more does not instantiate and is
/// refused at upload. (A Rust `wasm32-wasip2` component uses one memory, a few tables
/// and about five core instances.)
pub(crate) const CORE_INSTANCES_PER_COMPONENT_MAX: u32 = 16;
pub(crate) const MEMORIES_PER_COMPONENT_MAX: u32 = 2;
pub(crate) const TABLES_PER_COMPONENT_MAX: u32 = 8;
/// How long a call waits for a free instance slot before it fails as unavailable.
pub(crate) const PLUGIN_SLOT_WAIT_MAX: Duration = Duration::from_millis(250);
/// Calls that may wait for a slot at once; one more is refused at once (unavailable),
/// so a burst cannot queue without bound behind the pool.
pub(crate) const PLUGIN_SLOT_WAITERS_MAX: usize = 1024;

/// Most distinct rows one step may read, and most it may write.
pub(crate) const STEP_ROWS_READ_MAX: usize = 1024;
pub(crate) const STEP_ROWS_WRITTEN_MAX: usize = 256;

/// Sandbox bounds for plugin calls.
#[derive(Clone, Copy, Debug)]
pub struct PluginLimits {
    /// Wall time one call may run before it is interrupted (and fails closed).
    pub call_deadline: Duration,
    /// Linear memory one instance may grow to, in bytes.
    pub memory_max_bytes: usize,
    /// Largest component accepted at load, in bytes.
    pub component_size_max_bytes: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            call_deadline: POLICY_CALL_DEADLINE_DEFAULT,
            memory_max_bytes: PLUGIN_MEMORY_MAX_BYTES_DEFAULT,
            component_size_max_bytes: PLUGIN_SIZE_MAX_BYTES_DEFAULT,
        }
    }
}

const _: () = assert!(PLUGIN_MEMORY_MAX_BYTES_DEFAULT <= 1 << 30);
