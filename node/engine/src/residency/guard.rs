//! The residency guard. Fail closed: no active policy, a policy that traps, times out or
//! answers out of contract, all mean "refused".

use crate::clock::now_unix_ms;
use std::sync::Arc;

use serde::Deserialize;
use thiserror::Error;

use super::audit_entry::{AuditEntry, AuditPath, PluginRef};
use crate::auth::Principal;
use crate::catalog::TableDef;
use crate::limits::POLICY_BATCH_ROWS_MAX;
use crate::plugins::residency_types::{
    BatchDecision, ColumnAction, Decision, Purpose, RowBatch, Table,
};
use crate::plugins::{Active, CallError, PluginRegistry, ResidencyPolicyPlugin, wit_values};
use crate::storage::{StorageError, Store, Value};

/// Whether the guard decides. `off` exists for measuring the guard's cost and for
/// development; a node logs a warning at start when it runs with the guard off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardMode {
    #[default]
    Enforce,
    Off,
}

/// Why data was refused. Texts name tables, columns, regions and jurisdictions, never
/// row values.
#[derive(Debug, Error)]
pub enum GuardError {
    #[error("refused by the residency policy of {jurisdiction} (code {code}): {reason}")]
    Denied {
        jurisdiction: String,
        code: u32,
        reason: String,
    },
    #[error(
        "refused: no residency policy is active for jurisdiction {0}, so its data is neither \
         stored nor released (upload one with `domicile plugin upload`)"
    )]
    NoPolicy(String),
    #[error("refused: the residency policy of {jurisdiction} failed ({error})")]
    PolicyFailed {
        jurisdiction: String,
        error: CallError,
    },
    #[error(
        "refused: the residency policy of {0} answered with column changes for rows being \
         stored; a policy may allow or deny storage, not rewrite rows"
    )]
    AlteredStore(String),
    #[error("refused: the decision could not be audited: {0}")]
    Audit(#[from] StorageError),
}

impl crate::error_kind::Classify for GuardError {
    fn kind(&self) -> crate::error_kind::ErrorKind {
        use crate::error_kind::ErrorKind;
        match self {
            GuardError::Denied { .. } | GuardError::AlteredStore(_) => ErrorKind::Refused,
            // No slot for the policy: refused now, worth retrying.
            GuardError::PolicyFailed { .. } if self.is_unavailable() => ErrorKind::Unavailable,
            // Nothing to decide with, or the policy broke: refused until an operator acts.
            GuardError::NoPolicy(_) | GuardError::PolicyFailed { .. } => ErrorKind::Precondition,
            GuardError::Audit(error) => error.kind(),
        }
    }
}

impl GuardError {
    /// Whether the policy could not be asked at all because the node is overloaded
    /// (no plugin instance free in time): a retryable refusal, not a decision.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            GuardError::PolicyFailed {
                error: CallError::Unavailable { .. },
                ..
            }
        )
    }
}

/// The outcome of one decision, and the audit entry that records it (`None` when no
/// decision was needed: a GLOBAL table, a reader in the data's own region, guard off).
#[derive(Debug)]
pub struct Verdict {
    pub outcome: Result<(), GuardError>,
    pub audit: Option<AuditEntry>,
}

impl Verdict {
    fn none() -> Self {
        Self {
            outcome: Ok(()),
            audit: None,
        }
    }
}

pub struct ResidencyGuard {
    registry: Arc<PluginRegistry>,
    store: Store,
    region: Arc<str>,
    jurisdiction: String,
    mode: GuardMode,
    decisions: DecisionCounts,
}

/// Decisions made since start, by path and outcome (`allow`, `allow-with`, `deny`,
/// `unavailable`), for `/metrics`. Counted when decided, so a decision of a statement
/// that later failed or rolled back counts too (the audit log holds the committed ones).
#[derive(Debug, Default)]
struct DecisionCounts(std::sync::Mutex<std::collections::BTreeMap<(&'static str, String), u64>>);

impl DecisionCounts {
    fn count(&self, audit: &AuditEntry) {
        let mut counts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *counts
            .entry((audit.path.as_str(), audit.decision.clone()))
            .or_default() += 1;
    }

    fn snapshot(&self) -> Vec<(&'static str, String, u64)> {
        let counts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts
            .iter()
            .map(|((path, decision), n)| (*path, decision.clone(), *n))
            .collect()
    }
}

impl std::fmt::Debug for ResidencyGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResidencyGuard")
            .field("region", &self.region)
            .field("jurisdiction", &self.jurisdiction)
            .field("mode", &self.mode)
            .finish()
    }
}

/// Masks text as the WIT contract says: all but the last four characters become '*'.
pub(crate) fn mask_text(text: &str) -> String {
    let count = text.chars().count();
    text.chars()
        .enumerate()
        .map(|(i, c)| if i + 4 >= count { c } else { '*' })
        .collect()
}

/// The decision that applies to row `row`.
fn effective(decision: &BatchDecision, row: usize) -> &Decision {
    decision
        .exceptions
        .iter()
        .find(|(index, _)| *index as usize == row)
        .map_or(&decision.default, |(_, d)| d)
}

fn describe_actions(columns: &[String], actions: &[ColumnAction]) -> String {
    columns
        .iter()
        .zip(actions)
        .filter_map(|(column, action)| match action {
            ColumnAction::Keep => None,
            ColumnAction::Remove => Some(format!("{column}=remove")),
            ColumnAction::Mask => Some(format!("{column}=mask")),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl ResidencyGuard {
    /// The region this guard decides for (the node's).
    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn new(
        registry: Arc<PluginRegistry>,
        store: Store,
        region: Arc<str>,
        jurisdiction: String,
        mode: GuardMode,
    ) -> Self {
        Self {
            registry,
            store,
            region,
            jurisdiction,
            mode,
            decisions: DecisionCounts::default(),
        }
    }

    pub fn mode(&self) -> GuardMode {
        self.mode
    }

    /// Whether decisions can be made: the guard does not enforce, or the policy of its
    /// jurisdiction is active (readiness: without it every governed write is refused).
    pub fn policy_loaded(&self) -> bool {
        self.mode != GuardMode::Enforce || self.policy().is_ok()
    }

    /// Decisions made since start: (path, outcome, count), for `/metrics`.
    pub fn decisions(&self) -> Vec<(&'static str, String, u64)> {
        self.decisions.snapshot()
    }

    /// Settles `audit`'s decision from `outcome` and counts it.
    fn settle(&self, audit: &mut AuditEntry, outcome: &Result<(), GuardError>) {
        finish(audit, outcome);
        self.decisions.count(audit);
    }

    /// Whether rows of `def` need a decision at all: the guard is on and the table
    /// holds regional data (GLOBAL tables hold no personal data and live everywhere).
    fn governs(&self, def: &TableDef) -> bool {
        self.mode == GuardMode::Enforce && def.is_governed()
    }

    fn entry(
        &self,
        principal: &Principal,
        path: AuditPath,
        table: &str,
        columns: Vec<String>,
        destination: &str,
        rows: usize,
    ) -> AuditEntry {
        AuditEntry {
            time_unix_ms: now_unix_ms(),
            principal: principal.user.clone(),
            path,
            table: table.to_string(),
            columns,
            source_region: self.region.to_string(),
            destination_region: destination.to_string(),
            decision: "deny".into(),
            reason: None,
            rows: rows as u64,
            plugin: None,
        }
    }

    /// The active policy, or the refusal that its absence means.
    fn policy(&self) -> Result<Arc<Active<ResidencyPolicyPlugin>>, GuardError> {
        self.registry
            .residency_policy(&self.jurisdiction)
            .ok_or_else(|| GuardError::NoPolicy(self.jurisdiction.clone()))
    }

    fn failed(&self, error: CallError) -> GuardError {
        GuardError::PolicyFailed {
            jurisdiction: self.jurisdiction.clone(),
            error,
        }
    }

    fn denied(&self, decision: &Decision) -> Option<GuardError> {
        match decision {
            Decision::Deny(denial) => Some(GuardError::Denied {
                jurisdiction: self.jurisdiction.clone(),
                code: denial.code,
                reason: policy_reason(&denial.reason),
            }),
            _ => None,
        }
    }

    /// May these rows (every column, table order) be stored on this node? They are
    /// homed here (the write path checked that before asking).
    pub fn check_store(
        &self,
        principal: &Principal,
        def: &TableDef,
        rows: &[Vec<Value>],
    ) -> Verdict {
        self.whole_rows(principal, def, rows, None)
    }

    /// May these rows (every column), written here but homed in `home`, travel there?
    /// This node's policy decides: the rows are on its territory now. Column changes
    /// are refused, as for storage.
    pub fn check_travel(
        &self,
        principal: &Principal,
        def: &TableDef,
        rows: &[Vec<Value>],
        home: &str,
    ) -> Verdict {
        self.whole_rows(principal, def, rows, Some(home))
    }

    /// A decision on whole rows that are stored as they are: here, or at `travel_to`.
    fn whole_rows(
        &self,
        principal: &Principal,
        def: &TableDef,
        rows: &[Vec<Value>],
        travel_to: Option<&str>,
    ) -> Verdict {
        if !self.governs(def) || rows.is_empty() {
            return Verdict::none();
        }
        let columns: Vec<String> = def.columns.iter().map(|c| c.name.clone()).collect();
        let (path, destination) = match travel_to {
            Some(home) => (AuditPath::Forward, home),
            None => (AuditPath::Store, &*self.region),
        };
        let mut audit = self.entry(principal, path, &def.name, columns, destination, rows.len());
        let outcome = self.decide_store(def, rows, travel_to, &mut audit);
        self.settle(&mut audit, &outcome);
        Verdict {
            outcome,
            audit: Some(audit),
        }
    }

    /// `may-store` here (`travel_to` none), or `may-leave` for storage in `travel_to`.
    fn decide_store(
        &self,
        def: &TableDef,
        rows: &[Vec<Value>],
        travel_to: Option<&str>,
        audit: &mut AuditEntry,
    ) -> Result<(), GuardError> {
        let policy = self.policy()?;
        audit.plugin = Some(plugin_ref(&policy));
        for chunk in rows.chunks(POLICY_BATCH_ROWS_MAX) {
            let mut regions = vec![self.region.to_string()];
            if let Some(home) = travel_to {
                regions.push(home.to_string());
            }
            let home = u16::from(travel_to.is_some());
            let batch = RowBatch {
                table: wit_values::table(def),
                regions,
                home_regions: vec![home; chunk.len()],
                rows: chunk
                    .iter()
                    .map(|r| wit_values::row_to_wit(def, r))
                    .collect(),
            };
            let decision = match travel_to {
                Some(_) => policy.plugin.may_leave(&batch, 1, Purpose::Storage),
                None => policy.plugin.may_store(&batch, 0),
            }
            .map_err(|e| self.failed(e))?;
            self.require_unaltered(&decision, chunk.len())?;
        }
        Ok(())
    }

    /// Rows are stored (or cached) as they are or not at all: a denial, or an allowance
    /// that would change a column, refuses the whole write.
    fn require_unaltered(&self, decision: &BatchDecision, rows: usize) -> Result<(), GuardError> {
        for row in 0..rows {
            let decision = effective(decision, row);
            if let Some(refusal) = self.denied(decision) {
                return Err(refusal);
            }
            if let Decision::AllowWith(actions) = decision
                && actions.iter().any(|a| *a != ColumnAction::Keep)
            {
                return Err(GuardError::AlteredStore(self.jurisdiction.clone()));
            }
        }
        Ok(())
    }

    /// May these rows of `def` (only `columns`, as another region released them to
    /// this node), homed in `home`, be kept in this node's cache (memory and disk)?
    /// This node's policy decides (`may-store`); a decision that would alter the rows
    /// counts as a refusal (the cache keeps answers whole or not at all).
    pub fn check_cache(
        &self,
        principal: &Principal,
        def: &TableDef,
        columns: &[usize],
        rows: &[Vec<Value>],
        home: &str,
    ) -> Verdict {
        if !self.governs(def) || rows.is_empty() {
            return Verdict::none();
        }
        let mut projected = def.clone();
        projected.columns = columns.iter().map(|&i| def.columns[i].clone()).collect();
        let names: Vec<String> = projected.columns.iter().map(|c| c.name.clone()).collect();
        let mut audit = self.entry(
            principal,
            AuditPath::Cache,
            &def.name,
            names,
            &self.region,
            rows.len(),
        );
        audit.source_region = home.to_string();
        let outcome = (|| {
            let policy = self.policy()?;
            audit.plugin = Some(plugin_ref(&policy));
            for chunk in rows.chunks(POLICY_BATCH_ROWS_MAX) {
                let batch = RowBatch {
                    table: wit_values::table(&projected),
                    regions: vec![self.region.to_string(), home.to_string()],
                    home_regions: vec![1; chunk.len()],
                    rows: chunk
                        .iter()
                        .map(|r| wit_values::row_to_wit(&projected, r))
                        .collect(),
                };
                let decision = policy
                    .plugin
                    .may_store(&batch, 0)
                    .map_err(|e| self.failed(e))?;
                self.require_unaltered(&decision, chunk.len())?;
            }
            Ok(())
        })();
        self.settle(&mut audit, &outcome);
        Verdict {
            outcome,
            audit: Some(audit),
        }
    }

    /// Whether rows of `def` released to `destinations` need a decision: one of them is
    /// not this region.
    pub fn decides_egress(&self, destinations: &[&str], def: &TableDef) -> bool {
        self.governs(def) && destinations.iter().any(|d| *d != &*self.region)
    }

    /// Rows of `def` (projected to `projection`) about to be released for `principal`
    /// to `destinations`. The policy decides for each one other than this region, each
    /// time on the rows as stored; all decisions are applied (removed → NULL, masked),
    /// so the strictest action wins, and a row any destination refuses refuses the
    /// release. Returns the outcome and one audit entry per region decided.
    pub fn check_egress(
        &self,
        principal: &Principal,
        destinations: &[&str],
        def: &TableDef,
        projection: &[usize],
        rows: &mut [Vec<Value>],
    ) -> (Result<(), GuardError>, Vec<AuditEntry>) {
        let mut away: Vec<&str> = Vec::new();
        for destination in destinations {
            if *destination != &*self.region && !away.contains(destination) {
                away.push(*destination);
            }
        }
        if !self.governs(def) || away.is_empty() || rows.is_empty() {
            return (Ok(()), Vec::new());
        }
        let columns: Vec<String> = projection
            .iter()
            .map(|&i| def.columns[i].name.clone())
            .collect();
        let mut audits: Vec<AuditEntry> = away
            .iter()
            .map(|to| {
                let columns = columns.clone();
                self.entry(
                    principal,
                    AuditPath::QueryResult,
                    &def.name,
                    columns,
                    to,
                    rows.len(),
                )
            })
            .collect();
        let outcome = self.decide_egress(def, projection, &columns, &away, rows, &mut audits);
        for audit in &mut audits {
            self.settle(audit, &outcome);
        }
        (outcome, audits)
    }

    fn decide_egress(
        &self,
        def: &TableDef,
        projection: &[usize],
        columns: &[String],
        destinations: &[&str],
        rows: &mut [Vec<Value>],
        audits: &mut [AuditEntry],
    ) -> Result<(), GuardError> {
        let policy = self.policy()?;
        for audit in audits.iter_mut() {
            audit.plugin = Some(plugin_ref(&policy));
        }
        let mut changed = vec![Vec::new(); destinations.len()];
        for chunk in rows.chunks_mut(POLICY_BATCH_ROWS_MAX) {
            // Every destination decides on the rows as stored, not as another left them.
            let stored = chunk.to_vec();
            for (destination, changed) in destinations.iter().zip(&mut changed) {
                self.release_chunk(
                    &policy,
                    def,
                    projection,
                    columns,
                    destination,
                    &stored,
                    chunk,
                    changed,
                )?;
            }
        }
        for (audit, changed) in audits.iter_mut().zip(changed) {
            if !changed.is_empty() {
                audit.decision = "allow-with".into();
                audit.reason = Some(changed.join("; "));
            }
        }
        Ok(())
    }

    /// Decides one policy call's worth of rows (`stored`) for `destination` and applies
    /// the column actions to `rows` (the same rows, as earlier decisions left them):
    /// removal and masking only ever add up, so the strictest action wins.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call's whole context, all borrowed"
    )]
    fn release_chunk(
        &self,
        policy: &Active<ResidencyPolicyPlugin>,
        def: &TableDef,
        projection: &[usize],
        columns: &[String],
        destination: &str,
        stored: &[Vec<Value>],
        rows: &mut [Vec<Value>],
        changed: &mut Vec<String>,
    ) -> Result<(), GuardError> {
        let projected: Vec<_> = projection.iter().map(|&i| &def.columns[i]).collect();
        let batch = RowBatch {
            table: Table {
                name: def.name.clone(),
                columns: projected.iter().map(|c| wit_values::column(c)).collect(),
            },
            regions: vec![self.region.to_string(), destination.to_string()],
            home_regions: vec![0; stored.len()],
            rows: stored
                .iter()
                .map(|row| {
                    row.iter()
                        .zip(&projected)
                        .map(|(value, column)| wit_values::to_wit(value, column.column_type))
                        .collect()
                })
                .collect(),
        };
        let decision = policy
            .plugin
            .may_leave(&batch, 1, Purpose::QueryResult)
            .map_err(|e| self.failed(e))?;
        for (index, row) in rows.iter_mut().enumerate() {
            match effective(&decision, index) {
                Decision::Allow => {}
                Decision::Deny(denial) => {
                    return Err(GuardError::Denied {
                        jurisdiction: self.jurisdiction.clone(),
                        code: denial.code,
                        reason: policy_reason(&denial.reason),
                    });
                }
                Decision::AllowWith(actions) => {
                    for (value, action) in row.iter_mut().zip(actions) {
                        match action {
                            ColumnAction::Keep => {}
                            ColumnAction::Remove => *value = Value::Null,
                            ColumnAction::Mask => {
                                *value = match value {
                                    Value::Text(text) => Value::Text(mask_text(text)),
                                    _ => Value::Null,
                                };
                            }
                        }
                    }
                    let described = describe_actions(columns, actions);
                    if !described.is_empty() && !changed.contains(&described) {
                        changed.push(described);
                    }
                }
            }
        }
        Ok(())
    }

    /// May these (already redacted) rows of `table`, homed here, be published for
    /// replication to every one of `destinations`? One answer must hold for all of them
    /// (a Kafka topic or a relayed stream is read by every region), so the strictest
    /// column action across destinations wins and a row any destination refuses is
    /// withheld (`None`). A policy that is missing or fails is an error: the caller
    /// holds the rows and asks again later.
    pub fn check_replication(
        &self,
        table: &str,
        governed: bool,
        columns: &[crate::plugins::residency_types::Column],
        rows: &[Vec<crate::plugins::residency_types::Value>],
        destinations: &[String],
    ) -> Result<ReplicationVerdict, GuardError> {
        let keep_all = || vec![ColumnAction::Keep; columns.len()];
        if self.mode != GuardMode::Enforce || !governed || rows.is_empty() {
            return Ok(ReplicationVerdict {
                rows: rows.iter().map(|_| Some(keep_all())).collect(),
                audit: None,
            });
        }
        let policy = self.policy()?;
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let mut audit = self.entry(
            &Principal::system("cdc-relay", &self.region),
            AuditPath::Replication,
            table,
            names.clone(),
            &destinations.join(","),
            rows.len(),
        );
        audit.plugin = Some(plugin_ref(&policy));
        let mut verdicts: Vec<Option<Vec<ColumnAction>>> =
            rows.iter().map(|_| Some(keep_all())).collect();
        let mut refusal = None;
        for destination in destinations {
            let mut start = 0;
            for chunk in rows.chunks(POLICY_BATCH_ROWS_MAX) {
                let batch = RowBatch {
                    table: Table {
                        name: table.to_string(),
                        columns: columns.to_vec(),
                    },
                    regions: vec![self.region.to_string(), destination.clone()],
                    home_regions: vec![0; chunk.len()],
                    rows: chunk.to_vec(),
                };
                let decision = policy
                    .plugin
                    .may_leave(&batch, 1, Purpose::Replication)
                    .map_err(|e| self.failed(e))?;
                for index in 0..chunk.len() {
                    let verdict = &mut verdicts[start + index];
                    match effective(&decision, index) {
                        Decision::Allow => {}
                        Decision::Deny(denial) => {
                            *verdict = None;
                            refusal.get_or_insert_with(|| policy_reason(&denial.reason));
                        }
                        Decision::AllowWith(actions) if actions.len() != columns.len() => {
                            return Err(self.failed(CallError::InvalidOutput(format!(
                                "{} column actions for {} columns",
                                actions.len(),
                                columns.len()
                            ))));
                        }
                        Decision::AllowWith(actions) => {
                            if let Some(current) = verdict {
                                for (mine, theirs) in current.iter_mut().zip(actions) {
                                    *mine = stricter(*mine, *theirs);
                                }
                            }
                        }
                    }
                }
                start += chunk.len();
            }
        }
        let withheld = verdicts.iter().filter(|v| v.is_none()).count();
        let mut changed = Vec::new();
        for actions in verdicts.iter().flatten() {
            let described = describe_actions(&names, actions);
            if !described.is_empty() && !changed.contains(&described) {
                changed.push(described);
            }
        }
        if withheld > 0 {
            changed.push(format!(
                "{withheld} rows withheld: {}",
                refusal.unwrap_or_default()
            ));
        }
        audit.decision = match (withheld, changed.is_empty()) {
            (w, _) if w == rows.len() => "deny".into(),
            (_, true) => "allow".into(),
            (_, false) => "allow-with".into(),
        };
        audit.reason = (!changed.is_empty()).then(|| changed.join("; "));
        self.decisions.count(&audit);
        Ok(ReplicationVerdict {
            rows: verdicts,
            audit: Some(audit),
        })
    }

    /// May this saga step message (references and amounts) go to `destination`? This
    /// node's policy decides (`may-send-step`). With the guard off, every message may go.
    ///
    /// The decision comes with its audit entry, which the caller must make durable
    /// before the message leaves (the orchestrator writes it in the commit that
    /// records the saga's progress); `None` when the guard does not enforce.
    pub async fn decide_step_message(
        &self,
        saga_type: &str,
        step: &str,
        fields: &[(String, crate::plugins::residency_types::Value)],
        destination: &str,
    ) -> (Result<(), GuardError>, Option<AuditEntry>) {
        if self.mode != GuardMode::Enforce {
            return (Ok(()), None);
        }
        let mut audit = self.entry(
            &Principal::system("saga-orchestrator", &self.region),
            AuditPath::SagaStep,
            saga_type,
            fields.iter().map(|(name, _)| name.clone()).collect(),
            destination,
            1,
        );
        audit.table = format!("{saga_type}/{step}");
        let outcome = async {
            let policy = self.policy()?;
            audit.plugin = Some(plugin_ref(&policy));
            let payload = crate::plugins::residency_types::StepPayload {
                saga_type: saga_type.to_string(),
                step: step.to_string(),
                fields: fields.to_vec(),
            };
            let decision = policy
                .plugin
                .may_send_step(&payload, &self.region, destination)
                .await
                .map_err(|e| self.failed(e))?;
            match self.denied(&decision) {
                Some(refusal) => Err(refusal),
                None => Ok(()),
            }
        }
        .await;
        self.settle(&mut audit, &outcome);
        (outcome, Some(audit))
    }

    /// Appends an entry on its own (a refusal, or a release of rows that wrote no data),
    /// durably, before the caller acts on the decision.
    pub async fn record(&self, entry: AuditEntry) -> Result<(), GuardError> {
        let body = entry.to_bytes();
        self.store
            .write(move |ctx| {
                ctx.append_audit(body);
                Ok::<_, StorageError>(())
            })
            .await?;
        Ok(())
    }
}

/// Remove is stricter than mask, mask than keep.
fn stricter(a: ColumnAction, b: ColumnAction) -> ColumnAction {
    let rank = |action| match action {
        ColumnAction::Keep => 0,
        ColumnAction::Mask => 1,
        ColumnAction::Remove => 2,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// What may be published for replication: per row, the column actions to apply, or
/// `None` if the row is withheld; and the audit entry of the decision (none when no
/// decision was needed).
#[derive(Debug)]
pub struct ReplicationVerdict {
    pub rows: Vec<Option<Vec<ColumnAction>>>,
    pub audit: Option<AuditEntry>,
}

fn plugin_ref(active: &Active<ResidencyPolicyPlugin>) -> PluginRef {
    PluginRef {
        jurisdiction: active.record.jurisdiction.clone(),
        version: active.record.version,
        sha256: active.record.sha256.clone(),
    }
}

/// A policy's reason for a denial, as texts that leave the node (statuses, the audit
/// log, `system.cdc`) may carry it.
fn policy_reason(reason: &str) -> String {
    use crate::redact_text::{Origin, withhold_values};
    withhold_values(reason, Origin::Plugin { seen: &[] })
}

/// Fills in the decision and reason of `audit` from `outcome` (an `allow-with` set by
/// the decision itself is kept).
fn finish(audit: &mut AuditEntry, outcome: &Result<(), GuardError>) {
    match outcome {
        Ok(()) if audit.decision == "allow-with" => {}
        Ok(()) => audit.decision = "allow".into(),
        Err(error) => {
            // Refused either way (fail closed), but an overloaded node is not a policy
            // decision: auditors counting denials must not count load.
            audit.decision = if error.is_unavailable() {
                "unavailable"
            } else {
                "deny"
            }
            .into();
            audit.reason = Some(crate::redact_text::shown(error));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ColumnAction, mask_text, stricter};

    #[test]
    fn an_overloaded_policy_is_audited_as_unavailable_not_as_a_denial() {
        use super::{AuditEntry, CallError, GuardError, finish};
        let entry = || AuditEntry {
            time_unix_ms: 0,
            principal: "ana".into(),
            path: crate::residency::AuditPath::QueryResult,
            table: "accounts".into(),
            columns: Vec::new(),
            source_region: "eu-central".into(),
            destination_region: "us-east".into(),
            decision: "deny".into(),
            reason: None,
            rows: 1,
            plugin: None,
        };
        let failed = |error| GuardError::PolicyFailed {
            jurisdiction: "EU".into(),
            error,
        };
        let mut busy = entry();
        finish(
            &mut busy,
            &Err(failed(CallError::Unavailable { waited_ms: 250 })),
        );
        assert_eq!(busy.decision, "unavailable");
        assert!(busy.reason.as_deref().unwrap_or("").contains("overloaded"));
        let mut broken = entry();
        finish(&mut broken, &Err(failed(CallError::Trap("boom".into()))));
        assert_eq!(broken.decision, "deny", "a broken policy still denies");
    }

    #[test]
    fn the_strictest_column_action_wins_across_destinations() {
        use ColumnAction::{Keep, Mask, Remove};
        for (a, b, strictest) in [
            (Keep, Keep, Keep),
            (Keep, Mask, Mask),
            (Mask, Keep, Mask),
            (Mask, Remove, Remove),
            (Remove, Keep, Remove),
        ] {
            assert_eq!(stricter(a, b), strictest, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn masking_keeps_the_last_four_characters() {
        assert_eq!(
            mask_text("DE89370400440532013000"),
            "******************3000"
        );
        assert_eq!(mask_text("ab"), "ab");
    }
}
