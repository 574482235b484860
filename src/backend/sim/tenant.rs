//! [`SimTenant`]: a Teams tenant in a sled database, with the write-succeeds,
//! read-lags behaviour of the real service.
//!
//! Every action commits its effect (the truth) at once and durably, and
//! schedules when reads start to show it. Changes the service makes on its own
//! (directory sync ticks, the operator's upload of a ported number) are stored
//! as scheduled events and applied lazily, in time order, whenever the entity
//! is read or written: state is a pure function of what is stored and the
//! injected clock, so a restarted process sees exactly the same tenant.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::config::{Profile, SimConfig};
use super::model::{
    ActiveMove, AuditEntry, AuditOutcome, EventKind, Meta, NumberRecord, OutageRecord, OutboxEntry,
    Scheduled, SimStats, StoredOutage, UserRecord, UserState,
};
use super::rng::Key;
use super::seed::{conference_id, country_of, location, operator_location, seed, LICENCE_GROUP};
use crate::backend::{
    AddressMode, BackendError, Call, ErrorKind, Homing, LicenceAssignment, NumberType, NumberView,
    Operation, OperationKind, PortOrderView, Tenant,
};
use crate::clock::{SharedClock, Timestamp};
use crate::store::integrity;
use crate::store::sled_store::CommitMark;
use crate::store::StoreError;

/// Name of the operator that uploads migrated numbers.
pub const OPERATOR_NAME: &str = "Contoso Telecom";

const ON_PREM_MESSAGE: &str = "The user already has a telephone number set in the on-premises \
Active Directory and synchronized to the cloud. To manage this user's telephone number in the \
cloud, first clear the phone number in the on-premises directory and synchronize the change to \
the cloud.";

/// An operator-locked number refuses a location change. Text from DOMAIN 1.3
/// (caught by the TeamsFunctions module; exact service wording UNCERTAIN).
const OPERATOR_LOCKED_MESSAGE: &str =
    "Contact your operator to change the emergency address for this number.";

/// Key of the list of moves in progress.
const MOVES_KEY: &str = "moves";

/// Key of the latest virtual instant any operation ran at.
const REACHED_KEY: &str = "reached";

/// The view of a port order at `now`.
fn port_view(p: &super::model::PortOrder, number: &str, now: Timestamp) -> PortOrderView {
    let (status, error) = match &p.error {
        Some((at, msg)) if *at <= now => ("Error", Some(msg.clone())),
        _ if now >= p.foc_at => ("Completed", None),
        _ if now >= p.pending_at => ("TransferPending", None),
        _ if now >= p.approved_at => ("TransferApproved", None),
        _ if now >= p.contacting_at => ("ContactingCarrier", None),
        _ => ("Processing", None),
    };
    let foc_known = error.is_none() && now >= p.approved_at;
    PortOrderView {
        order_id: p.order_id.clone(),
        number: number.to_string(),
        status: status.into(),
        foc_date: foc_known.then_some(p.foc_at),
        error,
    }
}

/// Errors of the simulator itself (not of simulated calls).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Another process (or another handle in this process) has the store open.
    #[error(
        "simulated tenant store {} is in use by another process (its lock is held); \
         stop the other portflow process or use another directory",
        path.display()
    )]
    InUse {
        /// The store directory.
        path: PathBuf,
    },
    /// The sled database failed.
    #[error("simulated tenant store {}: {source}", path.display())]
    Storage {
        /// The store directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: sled::Error,
    },
    /// A file operation failed.
    #[error("simulated tenant store {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A stored record does not parse.
    #[error("simulated tenant store: corrupt record {key}: {source}")]
    Corrupt {
        /// Its key.
        key: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// Writing the subjects CSV failed.
    #[error("writing subjects CSV: {0}")]
    Csv(#[from] csv::Error),
    /// The store will not open, lost writes, or a record fails its checksum.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A tenant that must exist (runs used it) has no state.
    #[error("simulated tenant store {} {why}", path.display())]
    Missing {
        /// The store directory.
        path: PathBuf,
        /// What was found instead.
        why: &'static str,
    },
}

impl SimError {
    /// The file system holding the store is full.
    pub fn is_no_space(&self) -> bool {
        match self {
            SimError::Storage {
                source: sled::Error::Io(e),
                ..
            }
            | SimError::Io { source: e, .. } => crate::store::is_no_space(e),
            SimError::Store(e) => matches!(e.root(), StoreError::NoSpace { .. }),
            _ => false,
        }
    }

    /// The store is damaged (restoring a backup is the way out).
    pub fn is_damage(&self) -> bool {
        match self {
            SimError::Corrupt { .. } => true,
            SimError::Storage { source, .. } => matches!(source, sled::Error::Corruption { .. }),
            SimError::Store(e) => e.is_damage(),
            _ => false,
        }
    }
}

/// What [`SimTenant::check_records`] found: (key, problem) pairs.
#[derive(Debug, Default)]
pub struct TenantCheck {
    /// Records read.
    pub records: u64,
    /// Of which written before checksums (read unchecked).
    pub unchecked: u64,
    /// Damage.
    pub damage: Vec<(String, String)>,
    /// Harmless findings.
    pub notes: Vec<(String, String)>,
}

/// The simulated tenant. Cheap to share: clone the handle or put it in an `Arc`.
#[derive(Clone)]
pub struct SimTenant {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SimTenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTenant")
            .field("dir", &self.shared.dir)
            .field("tenant_id", &self.shared.meta.tenant_id)
            .finish_non_exhaustive()
    }
}

struct Shared {
    db: sled::Db,
    db_file: File,
    mark: CommitMark,
    dir: PathBuf,
    config: SimConfig,
    clock: SharedClock,
    meta: Meta,
    mem: Mutex<Mem>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Observations move the reached instant in memory only: keep it now.
        // Best effort (nothing to report to in a drop); actions stored theirs.
        let mem = self.mem.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = mem.reached.filter(|r| Some(*r) > mem.reached_stored) {
            let mut batch = sled::Batch::default();
            batch.insert(REACHED_KEY, sealed(REACHED_KEY, &r));
            let n = self.mark.stamp(&mut batch);
            if self.db.apply_batch(batch).is_ok()
                && self.db.flush().is_ok()
                && self.db_file.sync_all().is_ok()
            {
                self.mark.applied(n);
                self.mark.confirm(n);
            }
        }
        crate::store::sled_store::closed(&self.dir);
    }
}

/// In-memory state; the mutex also serializes every write to the store.
struct Mem {
    next_audit: u64,
    next_outbox: u64,
    /// Latest virtual instant an operation ran at (persisted with actions,
    /// and when the handle closes).
    reached: Option<Timestamp>,
    /// The instant last written to the store.
    reached_stored: Option<Timestamp>,
    calls_per_key: HashMap<String, u64>,
    bucket: Option<(f64, Timestamp)>,
    stats: SimStats,
}

type Writes = Vec<(Vec<u8>, Vec<u8>)>;

/// A message to append to the outbox: (user, kind, conference id).
type Mail = (String, String, Option<String>);

/// What an action produced: its answer, the records to write, the messages sent.
type Acted = (Value, Writes, Vec<Mail>);

impl SimTenant {
    /// Copy the tenant's database into `dest` (a new directory), durably.
    pub fn backup_to(&self, dest: &Path) -> Result<u64, SimError> {
        crate::store::sled_store::copy_db(&self.shared.db, dest).map_err(|source| SimError::Io {
            path: dest.to_path_buf(),
            source,
        })
    }

    /// Open the tenant stored in `dir`, creating and seeding it (from
    /// `config.seed`, with `config.users` users) when the store is empty.
    /// An existing tenant is used as is: only the latency, sync, upload and
    /// fault knobs of `config` apply to it.
    pub fn open(dir: &Path, config: &SimConfig, clock: SharedClock) -> Result<SimTenant, SimError> {
        SimTenant::open_with(dir, config, clock, true)
    }

    /// Open a tenant that must already exist (runs have used it): a missing
    /// directory or an empty store is [`SimError::Missing`], never a new seed.
    /// A real tenant does not forget its state.
    pub fn open_existing(
        dir: &Path,
        config: &SimConfig,
        clock: SharedClock,
    ) -> Result<SimTenant, SimError> {
        if !dir.join("db").exists() {
            return Err(SimError::Missing {
                path: dir.to_path_buf(),
                why: "is gone",
            });
        }
        SimTenant::open_with(dir, config, clock, false)
    }

    fn open_with(
        dir: &Path,
        config: &SimConfig,
        clock: SharedClock,
        seed_if_empty: bool,
    ) -> Result<SimTenant, SimError> {
        std::fs::create_dir_all(dir).map_err(|source| SimError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let db = crate::store::sled_store::open_db(dir, 64 * 1024 * 1024).map_err(|e| match e {
            StoreError::Locked(path) => SimError::InUse { path },
            other => SimError::Store(other),
        })?;
        let mark = CommitMark::check(dir, &db)?;
        let db_path = dir.join("db");
        let db_file = File::open(&db_path).map_err(|source| SimError::Io {
            path: db_path,
            source,
        })?;
        let storage = |source| SimError::Storage {
            path: dir.to_path_buf(),
            source,
        };
        let meta = match db.get("meta").map_err(storage)? {
            Some(bytes) => parse::<Meta>("meta", &bytes)?,
            None if !seed_if_empty => {
                return Err(SimError::Missing {
                    path: dir.to_path_buf(),
                    why: "is empty (its data is gone)",
                })
            }
            None => {
                let (meta, mut batch) = seed(config, clock.now());
                batch.insert(REACHED_KEY, sealed(REACHED_KEY, &meta.created_at));
                let n = mark.stamp(&mut batch);
                db.apply_batch(batch).map_err(storage)?;
                mark.applied(n);
                db.flush().map_err(storage)?;
                db_file.sync_all().map_err(|source| SimError::Io {
                    path: dir.join("db"),
                    source,
                })?;
                mark.confirm(n);
                meta
            }
        };
        let next_audit = match db.scan_prefix("a/").next_back() {
            Some(Ok((k, _))) => audit_seq_of(&k) + 1,
            Some(Err(e)) => return Err(storage(e)),
            None => 1,
        };
        let next_outbox = match db.scan_prefix("o/").next_back() {
            Some(Ok((k, _))) => audit_seq_of(&k) + 1,
            Some(Err(e)) => return Err(storage(e)),
            None => 1,
        };
        // Tenants stored before the instant was kept: the last audited call.
        let reached = match db.get(REACHED_KEY).map_err(storage)? {
            Some(bytes) => Some(parse::<Timestamp>(REACHED_KEY, &bytes)?),
            None => match db.scan_prefix("a/").next_back() {
                Some(Ok((k, v))) => Some(parse::<AuditEntry>(&k, &v)?.at),
                Some(Err(e)) => return Err(storage(e)),
                None => None,
            },
        };
        Ok(SimTenant {
            shared: Arc::new(Shared {
                db,
                db_file,
                mark,
                dir: dir.to_path_buf(),
                config: config.clone(),
                clock,
                meta,
                mem: Mutex::new(Mem {
                    next_audit,
                    next_outbox,
                    reached,
                    reached_stored: reached,
                    calls_per_key: HashMap::new(),
                    bucket: None,
                    stats: SimStats::default(),
                }),
            }),
        })
    }

    /// The latest virtual instant any operation on this tenant ran at, across
    /// every run and process that used it (`None`: never used). Runs that
    /// share a named tenant start their clocks here.
    pub fn reached(&self) -> Option<Timestamp> {
        self.shared.lock().reached
    }

    /// The tenant's present for reports: its clock, or the instant it
    /// reached when that is later (a handle opened on the wall clock after a
    /// time-scaled run).
    fn report_now(&self) -> Timestamp {
        let now = self.shared.clock.now();
        self.reached().map_or(now, |r| r.max(now))
    }

    /// The tenant id used in error messages (a GUID derived from the seed).
    pub fn tenant_id(&self) -> &str {
        &self.shared.meta.tenant_id
    }

    /// Check every stored record (`portflow verify`): its checksum holds and
    /// it decodes as what its key says; the audit log and the outbox number
    /// their entries from 1 without a gap; the metadata is there.
    pub fn check_records(&self) -> TenantCheck {
        let mut c = TenantCheck::default();
        let (mut audit, mut outbox, mut meta) = (0u64, 0u64, false);
        for item in self.shared.db.iter() {
            let (k, v) = match item {
                Ok(kv) => kv,
                Err(e) => {
                    c.damage.push((
                        "(scan)".into(),
                        format!("the store cannot be read further: {e}"),
                    ));
                    break;
                }
            };
            c.records += 1;
            let shown = match &k[..k.len().min(2)] {
                b"a/" | b"o/" => {
                    format!("{}{}", String::from_utf8_lossy(&k[..2]), audit_seq_of(&k))
                }
                _ => String::from_utf8_lossy(&k).into_owned(),
            };
            if k.as_ref() == crate::store::sled_store::COMMIT_KEY {
                continue;
            }
            match integrity::open(&k, &v) {
                Ok((_, integrity::Seal::Legacy)) => c.unchecked += 1,
                Ok(_) => {}
                Err(e) => {
                    c.damage.push((shown, e.to_string()));
                    continue;
                }
            }
            let decoded = match &k[..k.len().min(2)] {
                b"u/" => parse::<UserRecord>(&k, &v).map(drop),
                b"n/" => parse::<NumberRecord>(&k, &v).map(drop),
                b"a/" => parse::<AuditEntry>(&k, &v).map(|e| {
                    audit += 1;
                    if e.seq != audit {
                        c.damage
                            .push((shown.clone(), format!("audit entry {audit} is missing")));
                        audit = e.seq;
                    }
                }),
                b"o/" => parse::<OutboxEntry>(&k, &v).map(|e| {
                    outbox += 1;
                    if e.seq != outbox {
                        c.damage
                            .push((shown.clone(), format!("outbox entry {outbox} is missing")));
                        outbox = e.seq;
                    }
                }),
                _ => match k.as_ref() {
                    b"meta" => parse::<Meta>(&k, &v).map(|_| meta = true),
                    b"moves" => parse::<Vec<ActiveMove>>(&k, &v).map(drop),
                    b"reached" => parse::<Timestamp>(&k, &v).map(drop),
                    _ => {
                        c.notes
                            .push((shown.clone(), "a key the simulator does not write".into()));
                        Ok(())
                    }
                },
            };
            if let Err(e) = decoded {
                c.damage.push((shown, e.to_string()));
            }
        }
        if !meta {
            c.damage
                .push(("meta".into(), "the tenant's metadata is missing".into()));
        }
        c
    }

    /// The virtual instant the tenant was seeded: with the tenant id, what
    /// tells this tenant from another seeded from the same seed.
    pub fn created_at(&self) -> Timestamp {
        self.shared.meta.created_at
    }

    /// Number of seeded users.
    pub fn user_count(&self) -> u32 {
        self.shared.meta.users
    }

    /// The migration profile the tenant was seeded with.
    pub fn profile(&self) -> Profile {
        self.shared.meta.profile
    }

    /// Validated US emergency location ids seeded users use (the full catalog,
    /// with unvalidated, invalid and foreign ones, answers `get_location`).
    pub fn locations(&self) -> &[String] {
        &self.shared.meta.locations
    }

    /// UPN of seeded user `i` (1-based).
    pub fn upn(i: u32) -> String {
        format!("user{i:04}@contoso.com")
    }

    /// Direct Routing number of seeded user `i` (1-based).
    pub fn seeded_number(i: u32) -> String {
        format!("+1425{i:07}")
    }

    /// Perform one operation on the calling thread (what [`Tenant::execute`]
    /// does on tokio's blocking pool).
    pub fn execute_blocking(&self, op: &Operation) -> Result<Value, BackendError> {
        self.shared.execute(op)
    }

    /// Every action received (observations excluded), oldest first.
    pub fn audit_log(&self) -> Result<Vec<AuditEntry>, SimError> {
        let mut out = Vec::new();
        for item in self.shared.db.scan_prefix("a/") {
            let (k, v) = item.map_err(|e| self.shared.storage(e))?;
            out.push(parse::<AuditEntry>(&k, &v)?);
        }
        Ok(out)
    }

    /// Outages of users' numbers, by user in seeding order, oldest first, as
    /// of [`SimTenant::reached`] when that is later than the tenant's clock.
    pub fn outages(&self) -> Result<Vec<OutageRecord>, SimError> {
        let now = self.report_now();
        let mut users = Vec::new();
        for item in self.shared.db.scan_prefix("u/") {
            let (k, v) = item.map_err(|e| self.shared.storage(e))?;
            let mut rec = parse::<UserRecord>(&k, &v)?;
            self.shared.advance_user(&mut rec, now);
            if !rec.outages.is_empty() {
                users.push(rec);
            }
        }
        users.sort_by_key(|u| u.index);
        let mut out = Vec::new();
        for u in users {
            for o in &u.outages {
                let end = o.end.filter(|e| *e <= now);
                out.push(OutageRecord {
                    user: u.cloud.base.upn.clone(),
                    number: o.number.clone(),
                    start: o.start,
                    end,
                    duration_ms: end.unwrap_or(now).since(o.start).as_millis() as u64,
                });
            }
        }
        Ok(out)
    }

    /// The true current state of a user, `None` if the tenant has no such user.
    pub fn user_state(&self, upn: &str) -> Result<Option<UserState>, SimError> {
        let now = self.shared.clock.now();
        let Some(mut rec) = self.shared.load::<UserRecord>(&user_key(upn))? else {
            return Ok(None);
        };
        self.shared.advance_user(&mut rec, now);
        Ok(Some(UserState {
            cloud: rec.cloud.truth().clone(),
            ad_line_uri: rec.ad_line.clone(),
            licences: rec.licences.clone(),
            oc_location_id: rec.oc_location_id.clone(),
            seeded_number: rec.seeded_number.clone(),
            converges_at: rec
                .cloud
                .converges_at()
                .max(rec.conferencing.converges_at()),
            onprem: rec.onprem.clone(),
            conferencing: rec.conferencing.truth().clone(),
            group_licensed: rec.group_licensed,
            licence_assignments: rec.licence_paths(),
            contacts_lost: rec.contacts_lost,
            tags: rec.tags.clone(),
        }))
    }

    /// UPNs of the seeded users carrying `tag` (one of [`super::tags`]), in
    /// seeding order.
    pub fn users_tagged(&self, tag: &str) -> Result<Vec<String>, SimError> {
        let mut out = Vec::new();
        for i in 1..=self.shared.meta.users {
            let upn = SimTenant::upn(i);
            if let Some(rec) = self.shared.load::<UserRecord>(&user_key(&upn))? {
                if rec.tags.iter().any(|t| t == tag) {
                    out.push(upn);
                }
            }
        }
        Ok(out)
    }

    /// Messages the tenant sent (conferencing e-mails, conference id resets),
    /// oldest first.
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>, SimError> {
        let mut out = Vec::new();
        for item in self.shared.db.scan_prefix("o/") {
            let (k, v) = item.map_err(|e| self.shared.storage(e))?;
            out.push(parse::<OutboxEntry>(&k, &v)?);
        }
        Ok(out)
    }

    /// The true current inventory row of a number, `None` if not in the tenant.
    pub fn number_state(&self, number: &str) -> Result<Option<NumberView>, SimError> {
        let now = self.shared.clock.now();
        let Some(mut rec) = self.shared.load::<NumberRecord>(&number_key(number))? else {
            return Ok(None);
        };
        self.shared.advance_number(&mut rec, now);
        Ok(rec.row.truth().clone())
    }

    /// Write the run subjects of the tenant's profile as CSV (header first),
    /// one row per seeded user in seeding order:
    /// `user,number,location_id` for `direct_routing`, `calling_plans` and
    /// `operator_connect` (the seeded number and the emergency location to
    /// assign with the Operator Connect number, or to set on it), and
    /// `user,number` for `on_premises` (the Direct Routing number to enable).
    pub fn export_subjects_csv(&self, w: impl io::Write) -> Result<(), SimError> {
        let mut out = csv::Writer::from_writer(w);
        let with_location = self.shared.meta.profile != Profile::OnPremises;
        if with_location {
            out.write_record(["user", "number", "location_id"])?;
        } else {
            out.write_record(["user", "number"])?;
        }
        for i in 1..=self.shared.meta.users {
            let upn = SimTenant::upn(i);
            let Some(rec) = self.shared.load::<UserRecord>(&user_key(&upn))? else {
                continue;
            };
            if with_location {
                out.write_record([
                    upn.as_str(),
                    rec.seeded_number.as_str(),
                    rec.oc_location_id.as_deref().unwrap_or(""),
                ])?;
            } else {
                out.write_record([upn.as_str(), rec.seeded_number.as_str()])?;
            }
        }
        out.flush().map_err(|source| SimError::Io {
            path: PathBuf::from("<subjects csv>"),
            source,
        })?;
        Ok(())
    }

    /// Change a stored user record in place (tests set up states no
    /// operation can reach).
    #[cfg(test)]
    pub(crate) fn edit_user(
        &self,
        upn: &str,
        f: impl FnOnce(&mut UserRecord),
    ) -> Result<(), SimError> {
        let key = user_key(upn);
        let _mem = self.shared.lock();
        if let Some(mut rec) = self.shared.load::<UserRecord>(&key)? {
            f(&mut rec);
            self.shared
                .commit(vec![(key.into_bytes(), to_bytes(&rec))], None)?;
        }
        Ok(())
    }

    /// Call counters since the tenant was opened.
    pub fn stats(&self) -> SimStats {
        self.shared.lock().stats.clone()
    }
}

#[async_trait]
impl Tenant for SimTenant {
    async fn execute(&self, call: &Call) -> Result<Value, BackendError> {
        // Reads are answered from memory and the page cache: run them here and
        // spare a thread hand-off each. Actions fsync, so they go to the blocking pool.
        if call.op.kind().info().observation {
            return self.shared.execute(&call.op);
        }
        let shared = Arc::clone(&self.shared);
        let op = call.op.clone();
        match tokio::task::spawn_blocking(move || shared.execute(&op)).await {
            Ok(r) => r,
            Err(e) => Err(BackendError::new(
                ErrorKind::Fatal,
                format!("simulated tenant call failed: {e}"),
            )),
        }
    }

    /// The simulator performs every operation itself, the conference id reset
    /// included.
    fn automates(&self, kind: OperationKind) -> bool {
        !self.shared.config.manual.contains(&kind)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Mem> {
        self.mem.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn storage(&self, source: sled::Error) -> SimError {
        SimError::Storage {
            path: self.dir.clone(),
            source,
        }
    }

    fn load<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SimError> {
        match self.db.get(key).map_err(|e| self.storage(e))? {
            Some(v) => parse(key, &v).map(Some),
            None => Ok(None),
        }
    }

    /// Apply `writes` (JSON payloads, sealed here with their keys) and the
    /// audit entry atomically, then make them durable.
    fn commit(&self, writes: Writes, audit: Option<(u64, &AuditEntry)>) -> Result<(), SimError> {
        let mut batch = sled::Batch::default();
        for (k, v) in writes {
            let v = integrity::seal(&k, &v);
            batch.insert(k, v);
        }
        if let Some((seq, entry)) = audit {
            let key = audit_key(seq);
            let v = sealed(&key, entry);
            batch.insert(key, v);
        }
        // Callers hold the `mem` lock, so stamps are in order.
        let n = self.mark.stamp(&mut batch);
        self.db.apply_batch(batch).map_err(|e| self.storage(e))?;
        self.mark.applied(n);
        self.db.flush().map_err(|e| self.storage(e))?;
        // sled's flush does not fsync on Linux.
        self.db_file.sync_all().map_err(|source| SimError::Io {
            path: self.dir.join("db"),
            source,
        })?;
        self.mark.confirm(n);
        Ok(())
    }

    fn execute(&self, op: &Operation) -> Result<Value, BackendError> {
        let now = self.clock.now();
        let kind = op.kind();
        let info = kind.info();
        if self.config.manual.contains(&kind) {
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "{} cannot be automated on this tenant: {}",
                    info.name,
                    info.manual.unwrap_or(info.microsoft)
                ),
            ));
        }
        let mut mem = self.lock();
        mem.reached = Some(mem.reached.map_or(now, |r| r.max(now)));
        *mem.stats.calls.entry(info.name.to_string()).or_insert(0) += 1;
        let key = op.key();
        let gated = self.gate(&mut mem, key, now);
        if info.observation {
            drop(mem);
            gated?;
            return self.observe(op, now).unwrap_or_else(|e| Err(fatal(e)));
        }
        let (result, mut writes, mails) = match gated {
            Err(e) => (Err(e), Vec::new(), Vec::new()),
            Ok(()) => match self.act(op, now) {
                Ok(Ok((v, w, m))) => (Ok(v), w, m),
                Ok(Err(e)) => (Err(e), Vec::new(), Vec::new()),
                Err(e) => return Err(fatal(e)),
            },
        };
        let first_mail = mem.next_outbox;
        for (i, (user, kind, conference_id)) in mails.iter().enumerate() {
            let seq = first_mail + i as u64;
            let entry = OutboxEntry {
                seq,
                at: now,
                user: user.clone(),
                kind: kind.clone(),
                conference_id: conference_id.clone(),
            };
            writes.push((outbox_key(seq), to_bytes(&entry)));
        }
        if let Some(r) = mem.reached {
            writes.push((REACHED_KEY.as_bytes().to_vec(), to_bytes(&r)));
        }
        let seq = mem.next_audit;
        let entry = AuditEntry {
            seq,
            at: now,
            op: kind,
            user: op.user().map(str::to_string),
            number: op.number().map(str::to_string),
            args: serde_json::to_value(op).unwrap_or(Value::Null),
            outcome: match &result {
                Ok(_) => AuditOutcome::Ok,
                Err(e) => AuditOutcome::Error {
                    kind: e.kind,
                    message: e.message.clone(),
                },
            },
        };
        self.commit(writes, Some((seq, &entry))).map_err(fatal)?;
        mem.reached_stored = mem.reached;
        mem.next_audit += 1;
        mem.next_outbox += mails.len() as u64;
        result
    }

    /// Rate limit and injected faults.
    fn gate(&self, mem: &mut Mem, key: &str, now: Timestamp) -> Result<(), BackendError> {
        let faults = &self.config.faults;
        let count = mem.calls_per_key.entry(key.to_string()).or_insert(0);
        let n = *count;
        *count += 1;
        if let Some(limit) = faults.throttle_limit {
            let rate = f64::from(limit.max(1));
            let (tokens, last) = mem.bucket.unwrap_or((rate, now));
            let elapsed = now.since(last).as_secs_f64();
            let tokens = (tokens + elapsed * rate).min(rate);
            if tokens < 1.0 {
                mem.bucket = Some((tokens, now));
                mem.stats.throttled += 1;
                mem.stats.rate_limited += 1;
                let wait_ms = ((1.0 - tokens) / rate * 1000.0).ceil().max(1.0) as u64;
                return Err(throttled().with_retry_after(Duration::from_millis(wait_ms)));
            }
            mem.bucket = Some((tokens - 1.0, now));
        }
        // The call counter lives in memory and restarts at 0 with the process; the
        // virtual instant keeps a restarted process from replaying the same faults.
        let draw = Key::new(self.config.seed)
            .str("fault")
            .str(key)
            .int(n)
            .int(now.0 as u64);
        if draw.unit() < faults.transient_rate {
            mem.stats.injected_faults += 1;
            return Err(BackendError::new(
                ErrorKind::Transient,
                "Service is unavailable. Please try again",
            ));
        }
        if draw.unit2() < faults.throttle_rate {
            mem.stats.injected_faults += 1;
            mem.stats.throttled += 1;
            let err = throttled();
            let r = draw.int(7);
            return Err(if r.unit() < 0.5 {
                err.with_retry_after(r.between(Duration::from_secs(5), Duration::from_secs(60)))
            } else {
                err
            });
        }
        Ok(())
    }

    fn observe(
        &self,
        op: &Operation,
        now: Timestamp,
    ) -> Result<Result<Value, BackendError>, SimError> {
        match op {
            Operation::GetUser { user } => {
                let Some(mut rec) = self.load::<UserRecord>(&user_key(user))? else {
                    return Ok(Err(user_not_found(user)));
                };
                self.advance_user(&mut rec, now);
                Ok(Ok(to_value(rec.cloud.view(now))))
            }
            Operation::GetNumber { number } => {
                let Some(mut rec) = self.load::<NumberRecord>(&number_key(number))? else {
                    return Ok(Ok(Value::Null));
                };
                self.advance_number(&mut rec, now);
                Ok(Ok(to_value(rec.row.view(now))))
            }
            Operation::GetOnpremUser { user } => {
                // The SfB Server shell answers at once; unknown users are `null`.
                let rec = self.load::<UserRecord>(&user_key(user))?;
                Ok(Ok(to_value(&rec.and_then(|r| r.onprem))))
            }
            Operation::GetPortOrder { number } => {
                let Some(rec) = self.load::<NumberRecord>(&number_key(number))? else {
                    return Ok(Ok(Value::Null));
                };
                let view = rec
                    .port
                    .as_ref()
                    .map(|p| port_view(p, &rec.telephone_number, now));
                Ok(Ok(to_value(&view)))
            }
            Operation::GetConferencing { user } => {
                let Some(mut rec) = self.load::<UserRecord>(&user_key(user))? else {
                    return Ok(Err(user_not_found(user)));
                };
                self.advance_user(&mut rec, now);
                Ok(Ok(to_value(rec.conferencing.view(now))))
            }
            Operation::GetLocation { location_id } => Ok(Ok(to_value(&location(location_id)))),
            _ => Ok(Err(BackendError::new(
                ErrorKind::Fatal,
                "not an observation",
            ))),
        }
    }

    /// Perform an action; the outer error is a storage failure.
    fn act(&self, op: &Operation, now: Timestamp) -> Result<Result<Acted, BackendError>, SimError> {
        if let Operation::SetNumberLocation {
            number,
            location_id,
        } = op
        {
            return self.set_number_location(number, location_id, now);
        }
        let Some(user) = op.user() else {
            return Ok(Err(BackendError::new(ErrorKind::Fatal, "not an action")));
        };
        let Some(mut u) = self.load::<UserRecord>(&user_key(user))? else {
            return Ok(Err(user_not_found(user)));
        };
        self.advance_user(&mut u, now);
        let number = match op {
            Operation::ClearOnpremLineUri { .. } => u.ad_line.clone(),
            Operation::RemoveLicence { .. } => u.cloud.truth().line_uri.clone(),
            _ => op.number().map(str::to_string),
        };
        let number = match number {
            Some(n) => {
                let mut rec = self.load::<NumberRecord>(&number_key(&n))?;
                if let Some(r) = rec.as_mut() {
                    self.advance_number(r, now);
                }
                Some((n, rec))
            }
            None => None,
        };
        let moves = match op {
            Operation::MoveUser { .. } => {
                let mut m = self.load::<Vec<ActiveMove>>(MOVES_KEY)?.unwrap_or_default();
                m.retain(|m| m.until > now);
                Some(m)
            }
            _ => None,
        };
        let mut out = Effects {
            shared: self,
            now,
            user: u,
            number,
            user_dirty: false,
            number_dirty: false,
            moves,
            mails: Vec::new(),
        };
        let r = match op {
            Operation::ClearOnpremLineUri { .. } => out.clear_onprem(),
            Operation::RemoveNumber { number_type, .. } => out.remove(*number_type),
            Operation::GrantVoiceRoutingPolicy { policy, .. } => out.grant(policy.clone()),
            Operation::AssignNumber {
                number_type,
                location_id,
                ..
            } => out.assign(*number_type, location_id.clone()),
            Operation::RemoveLicence { sku, .. } => out.remove_licence(sku),
            Operation::EnableOnpremVoice { .. } => out.enable_onprem_voice(),
            Operation::MoveUser { force, .. } => out.move_user(*force),
            Operation::EnableVoiceOnline { .. } => out.enable_voice_online(),
            Operation::EnableHostedVoicemail { .. } => out.enable_hosted_voicemail(),
            Operation::SendConferencingInfo { .. } => out.send_conferencing_info(),
            Operation::ResetConferenceId { .. } => out.reset_conference_id(),
            Operation::GetUser { .. }
            | Operation::GetNumber { .. }
            | Operation::GetOnpremUser { .. }
            | Operation::GetPortOrder { .. }
            | Operation::GetConferencing { .. }
            | Operation::GetLocation { .. }
            | Operation::SetNumberLocation { .. } => {
                Err(BackendError::new(ErrorKind::Fatal, "not an action"))
            }
        };
        Ok(r.map(|v| {
            let mails = std::mem::take(&mut out.mails);
            (v, out.into_writes(), mails)
        }))
    }

    /// `Set-CsPhoneNumberAssignment -TelephoneNumber -LocationId`.
    fn set_number_location(
        &self,
        number: &str,
        location_id: &str,
        now: Timestamp,
    ) -> Result<Result<Acted, BackendError>, SimError> {
        let not_found = || {
            BackendError::new(
                ErrorKind::NotFound,
                format!(
                    "Telephone Number '{number}' is not found from tenant '{}'",
                    self.meta.tenant_id
                ),
            )
        };
        let Some(mut rec) = self.load::<NumberRecord>(&number_key(number))? else {
            return Ok(Err(not_found()));
        };
        self.advance_number(&mut rec, now);
        let Some(row) = rec.row.truth().clone() else {
            return Ok(Err(not_found()));
        };
        // A locked address refuses any change, valid location or not.
        if row.mode() == AddressMode::OperatorLocked {
            return Ok(Err(BackendError::new(
                ErrorKind::Precondition,
                OPERATOR_LOCKED_MESSAGE,
            )));
        }
        if let Err(e) = self.check_location(location_id, &row.iso_country_code, number) {
            return Ok(Err(e));
        }
        if row.location_id.as_deref() == Some(location_id) {
            return Ok(Ok((json!({}), Vec::new(), Vec::new())));
        }
        let d = self.latency(&rec.telephone_number, "set_number_location", rec.seq);
        rec.seq += 1;
        let mut pending = row;
        pending.location_id = Some(location_id.to_string());
        pending.activation_state = "UpdatePending".into();
        let mut done = pending.clone();
        done.activation_state = "Activated".into();
        rec.row.push(now, now, Some(pending));
        rec.row.push(now, now.plus(d), Some(done));
        let w = vec![(number_key(number).into_bytes(), to_bytes(&rec))];
        Ok(Ok((json!({}), w, Vec::new())))
    }

    /// A location may be given to a number of `country`: it exists, its civic
    /// address is validated and in the same country.
    fn check_location(&self, id: &str, country: &str, number: &str) -> Result<(), BackendError> {
        let Some(loc) = location(id) else {
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "Location '{id}' is not found from tenant '{}'",
                    self.meta.tenant_id
                ),
            ));
        };
        if loc.validation_status != "Validated" {
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "The emergency address must be validated before it can be assigned \
                     (location '{id}' is {})",
                    loc.validation_status
                ),
            ));
        }
        if loc.country != country {
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "The country of location '{id}' ({}) does not match the country of \
                     telephone number '{number}' ({country})",
                    loc.country
                ),
            ));
        }
        Ok(())
    }

    fn latency(&self, user: &str, what: &str, seq: u64) -> Duration {
        latency_draw(&self.config, user, what, seq)
    }

    /// Apply the user's due scheduled events, then fold visible changes.
    fn advance_user(&self, rec: &mut UserRecord, now: Timestamp) {
        rec.scheduled.sort_by_key(|e| e.at);
        while rec.scheduled.first().is_some_and(|e| e.at <= now) {
            let ev = rec.scheduled.remove(0);
            match ev.kind {
                EventKind::UserDirSync => {
                    let mut s = rec.cloud.truth().clone();
                    if let Some(line) = s.on_prem_line_uri.take() {
                        if s.line_uri.as_deref() == Some(line.as_str()) {
                            s.line_uri = None;
                            s.enterprise_voice_enabled = false;
                        }
                        if !rec.released.contains(&line) {
                            rec.released.push(line);
                        }
                        rec.cloud.push(ev.at, ev.visible_at, s);
                    }
                }
                EventKind::UserDirSyncLine { line } => {
                    let mut s = rec.cloud.truth().clone();
                    s.on_prem_line_uri = Some(line.clone());
                    s.line_uri = Some(line);
                    rec.cloud.push(ev.at, ev.visible_at, s);
                }
                EventKind::LicencesArrive { skus } => {
                    // Group-based licensing: each SKU arrives through the group.
                    let mut paths = rec.licence_paths();
                    for sku in skus {
                        let path = LicenceAssignment::via_group(&sku, LICENCE_GROUP);
                        if !paths.contains(&path) {
                            paths.push(path);
                        }
                    }
                    rec.set_licence_paths(paths);
                    let mut s = rec.cloud.truth().clone();
                    rec.show_licences(&mut s);
                    if s.interpreted_user_type == "HybridOnpremSfBUserNeedsProvisioning" {
                        s.interpreted_user_type = "HybridOnpremSfBUser".into();
                    }
                    rec.cloud.push(ev.at, ev.visible_at, s);
                }
                EventKind::PortCompleted { number } => {
                    // Calls now go to the gaining operator: out of service in
                    // Teams until the Operator Connect assignment is active.
                    if rec.outages.last().is_none_or(|o| o.end.is_some()) {
                        rec.outages.push(StoredOutage {
                            number,
                            start: ev.at,
                            end: None,
                        });
                    }
                }
                EventKind::NumberDirSyncRemove
                | EventKind::NumberDirSyncAdd { .. }
                | EventKind::OperatorUpload { .. } => {}
            }
        }
        rec.cloud.compact(now);
        rec.conferencing.compact(now);
    }

    /// Apply the number's due scheduled events, then fold visible changes.
    fn advance_number(&self, rec: &mut NumberRecord, now: Timestamp) {
        loop {
            rec.scheduled.sort_by_key(|e| e.at);
            if rec.scheduled.first().is_none_or(|e| e.at > now) {
                break;
            }
            let ev = rec.scheduled.remove(0);
            match ev.kind {
                EventKind::NumberDirSyncRemove => {
                    let on_prem = rec
                        .row
                        .truth()
                        .as_ref()
                        .is_some_and(|r| r.number_source == "OnPremises");
                    if on_prem {
                        rec.row.push(ev.at, ev.visible_at, None);
                        self.dr_left(rec, ev.at);
                    }
                }
                EventKind::OperatorUpload {
                    partner,
                    address_mode,
                    location_id,
                } => {
                    if let Some(number) = rec.number_if_absent() {
                        let mode = address_mode.unwrap_or(AddressMode::TenantAssigns);
                        let row = NumberView {
                            iso_country_code: country_of(&number).unwrap_or("US").into(),
                            telephone_number: number,
                            number_type: NumberType::OperatorConnect,
                            activation_state: "Activated".into(),
                            pstn_assignment_status: "Unassigned".into(),
                            assigned_pstn_target_id: None,
                            location_id: location_id.filter(|_| mode.operator_sets_address()),
                            number_source: "Online".into(),
                            pstn_partner_name: Some(partner),
                            location_update_supported: mode != AddressMode::OperatorLocked,
                            address_mode: mode.as_str().into(),
                        };
                        rec.row.push(ev.at, ev.visible_at, Some(row));
                    } else {
                        // Still in the tenant: the upload fails; re-armed when it leaves.
                        rec.upload_scheduled = false;
                    }
                }
                EventKind::NumberDirSyncAdd { target_id } => {
                    if rec.row.truth().is_none() {
                        let row = NumberView {
                            telephone_number: rec.telephone_number.clone(),
                            number_type: NumberType::DirectRouting,
                            activation_state: "Activated".into(),
                            pstn_assignment_status: "UserAssigned".into(),
                            assigned_pstn_target_id: Some(target_id),
                            location_id: None,
                            number_source: "OnPremises".into(),
                            pstn_partner_name: None,
                            iso_country_code: country_of(&rec.telephone_number)
                                .unwrap_or("US")
                                .into(),
                            location_update_supported: true,
                            address_mode: AddressMode::TenantAssigns.as_str().into(),
                        };
                        rec.row.push(ev.at, ev.visible_at, Some(row));
                    }
                }
                EventKind::PortCompleted { .. } => {
                    // A ported-out number nobody holds leaves the inventory.
                    let unassigned = rec
                        .row
                        .truth()
                        .as_ref()
                        .is_some_and(|r| r.assigned_pstn_target_id.is_none());
                    if unassigned {
                        rec.row.push(ev.at, ev.visible_at, None);
                        self.dr_left(rec, ev.at);
                    }
                }
                EventKind::UserDirSync
                | EventKind::UserDirSyncLine { .. }
                | EventKind::LicencesArrive { .. } => {}
            }
        }
        rec.row.compact(now);
    }

    /// The Direct Routing representation of the number leaves (or left) the
    /// tenant at `at`: schedule the operator's upload, once. The instant is
    /// stored with the record, so a restart (even with other knobs) keeps it.
    ///
    /// The address mode and the location the operator sets are drawn here
    /// too (per number, from the seed and the `operator` knobs) and stored
    /// with the event.
    fn dr_left(&self, rec: &mut NumberRecord, at: Timestamp) {
        if rec.operator.is_none() || rec.upload_scheduled {
            return;
        }
        let operator = &self.config.operator;
        let key = Key::new(self.config.seed);
        let d = &self.config.operator_upload_delay;
        let delay = key
            .str("upload")
            .str(&rec.telephone_number)
            .between(d.min, d.max);
        let mut mode = operator
            .shares(self.meta.profile)
            .pick(key.str("address-mode").str(&rec.telephone_number).unit());
        let location_id = if mode.operator_sets_address() {
            let country = country_of(&rec.telephone_number).unwrap_or("US");
            operator_location(country, rec.operator_location.as_deref())
        } else {
            None
        };
        if location_id.is_none() {
            // No validated address in the number's country to reference.
            mode = AddressMode::TenantAssigns;
        }
        let when = at.plus(delay);
        rec.scheduled.push(Scheduled {
            at: when,
            visible_at: when,
            kind: EventKind::OperatorUpload {
                partner: operator.name.clone(),
                address_mode: Some(mode),
                location_id,
            },
        });
        rec.upload_scheduled = true;
    }
}

impl NumberRecord {
    /// The E.164 of this record if the tenant does not hold it now.
    fn number_if_absent(&self) -> Option<String> {
        match self.row.truth() {
            Some(_) => None,
            None => Some(self.telephone_number.clone()),
        }
    }
}

/// An action's work on one user and (optionally) one number record.
struct Effects<'a> {
    shared: &'a Shared,
    now: Timestamp,
    user: UserRecord,
    number: Option<(String, Option<NumberRecord>)>,
    user_dirty: bool,
    number_dirty: bool,
    /// Moves in progress (loaded for `move_user` only); written back when set.
    moves: Option<Vec<ActiveMove>>,
    /// Messages sent by the action.
    mails: Vec<Mail>,
}

impl Effects<'_> {
    fn upn(&self) -> String {
        self.user.cloud.truth().upn.clone()
    }

    fn not_in_tenant(&self, number: &str) -> BackendError {
        BackendError::new(
            ErrorKind::NotFound,
            format!(
                "Telephone Number '{number}' is not found from tenant '{}'",
                self.shared.meta.tenant_id
            ),
        )
    }

    /// Latency of the next change of this user, consuming a sequence number.
    fn next_visible(&mut self, what: &str) -> Timestamp {
        let upn = self.upn();
        let d = self.shared.latency(&upn, what, self.user.seq);
        self.user.seq += 1;
        self.now.plus(d)
    }

    fn start_outage(&mut self, number: &str) {
        let now = self.now;
        if let Some(o) = self.user.outages.last_mut() {
            // Still out, or its end (a restore not yet in service) is undone.
            if o.end.is_none_or(|e| e > now) {
                o.end = None;
                return;
            }
        }
        self.user.outages.push(StoredOutage {
            number: number.to_string(),
            start: self.now,
            end: None,
        });
    }

    /// The next directory sync tick after now.
    fn next_tick(&self) -> Timestamp {
        let interval = (self.shared.config.dirsync_interval.as_millis() as i64).max(1);
        Timestamp((self.now.0.div_euclid(interval) + 1) * interval)
    }

    fn has(&self, sku: &str) -> bool {
        self.user.licences.iter().any(|l| l == sku)
    }

    /// Commit a change of the cloud user object, visible after a latency draw.
    fn set_user(&mut self, what: &str, f: impl FnOnce(&mut crate::backend::UserView)) {
        let visible_at = self.next_visible(what);
        let mut s = self.user.cloud.truth().clone();
        f(&mut s);
        self.user.cloud.push(self.now, visible_at, s);
        self.user_dirty = true;
    }

    fn clear_onprem(&mut self) -> Result<Value, BackendError> {
        let Some(line) = self.user.ad_line.take() else {
            return Ok(json!({}));
        };
        if let Some(op) = self.user.onprem.as_mut() {
            op.line_uri = None;
        }
        let tick = self.next_tick();
        let visible_at = tick.plus(self.shared.latency(&self.upn(), "dirsync", self.user.seq));
        self.user.seq += 1;
        self.user.scheduled.push(Scheduled {
            at: tick,
            visible_at,
            kind: EventKind::UserDirSync,
        });
        self.start_outage(&line);
        self.user_dirty = true;
        if let Some((_, Some(rec))) = self.number.as_mut() {
            rec.scheduled.push(Scheduled {
                at: tick,
                visible_at,
                kind: EventKind::NumberDirSyncRemove,
            });
            self.shared.dr_left(rec, tick);
            self.number_dirty = true;
        }
        Ok(json!({}))
    }

    fn remove(&mut self, number_type: NumberType) -> Result<Value, BackendError> {
        let Some((number, rec)) = self.number.clone() else {
            return Err(BackendError::new(ErrorKind::Fatal, "no number given"));
        };
        let user_id = self.user.cloud.truth().id.clone();
        let ported = rec
            .as_ref()
            .and_then(|r| r.port.as_ref())
            .is_some_and(|p| p.completed(self.now));
        let row = rec.as_ref().and_then(|r| r.row.truth().clone());
        let row = match row {
            Some(r) if r.number_type == number_type => r,
            other => {
                let held_by_user = other
                    .as_ref()
                    .is_some_and(|r| r.assigned_pstn_target_id.as_deref() == Some(&user_id));
                if self.user.released.contains(&number) && !held_by_user {
                    return Ok(json!({}));
                }
                return Err(self.not_in_tenant(&number));
            }
        };
        match row.assigned_pstn_target_id.as_deref() {
            None => return Ok(json!({})),
            Some(t) if t != user_id => {
                return Err(BackendError::new(
                    ErrorKind::Conflict,
                    format!("Telephone Number '{number}' is assigned to another user"),
                ))
            }
            Some(_) => {}
        }
        if row.number_source == "OnPremises" {
            return Err(BackendError::new(ErrorKind::Precondition, ON_PREM_MESSAGE));
        }
        let visible_at = self.next_visible("remove_number");
        let Some((_, Some(rec))) = self.number.as_mut() else {
            return Err(self.not_in_tenant(&number));
        };
        if row.number_type == NumberType::DirectRouting || ported {
            // An unassigned Direct Routing number leaves the inventory, and so
            // does a Calling Plan number that was ported out.
            rec.row.push(self.now, visible_at, None);
            self.shared.dr_left(rec, self.now);
        } else {
            let mut r = row.clone();
            r.assigned_pstn_target_id = None;
            r.pstn_assignment_status = "Unassigned".into();
            r.activation_state = "Activated".into();
            rec.row.push(self.now, visible_at, Some(r));
        }
        self.number_dirty = true;
        let mut s = self.user.cloud.truth().clone();
        if s.line_uri.as_deref() == Some(number.as_str()) {
            s.line_uri = None;
        }
        s.enterprise_voice_enabled = false;
        self.user.cloud.push(self.now, visible_at, s);
        if !self.user.released.contains(&number) {
            self.user.released.push(number.clone());
        }
        self.start_outage(&number);
        self.user_dirty = true;
        Ok(json!({}))
    }

    fn grant(&mut self, policy: Option<String>) -> Result<Value, BackendError> {
        if self.user.cloud.truth().online_voice_routing_policy == policy {
            return Ok(json!({}));
        }
        let visible_at = self.next_visible("grant_voice_routing_policy");
        let mut s = self.user.cloud.truth().clone();
        s.online_voice_routing_policy = policy;
        self.user.cloud.push(self.now, visible_at, s);
        self.user_dirty = true;
        Ok(json!({}))
    }

    fn assign(
        &mut self,
        number_type: NumberType,
        location_id: Option<String>,
    ) -> Result<Value, BackendError> {
        let Some((number, rec)) = self.number.clone() else {
            return Err(BackendError::new(ErrorKind::Fatal, "no number given"));
        };
        let truth = self.user.cloud.truth().clone();
        let row = match rec.as_ref().and_then(|r| r.row.truth().clone()) {
            Some(r) if r.number_type == number_type => r,
            // Direct Routing numbers need no upload: assigning one creates its row
            // (how a rollback gives a user their Direct Routing number back).
            None if number_type == NumberType::DirectRouting => {
                let Some(country) = country_of(&number) else {
                    return Err(unknown_country(&number));
                };
                if let Some((_, rec)) = self.number.as_mut() {
                    rec.get_or_insert_with(|| NumberRecord {
                        telephone_number: number.clone(),
                        row: super::model::Timeline::new(None),
                        operator: None,
                        operator_location: None,
                        upload_scheduled: false,
                        scheduled: Vec::new(),
                        port: None,
                        seq: 0,
                    });
                }
                NumberView {
                    telephone_number: number.clone(),
                    number_type,
                    activation_state: "Activated".into(),
                    pstn_assignment_status: "Unassigned".into(),
                    assigned_pstn_target_id: None,
                    location_id: None,
                    number_source: "Online".into(),
                    pstn_partner_name: None,
                    iso_country_code: country.into(),
                    location_update_supported: true,
                    address_mode: AddressMode::TenantAssigns.as_str().into(),
                }
            }
            _ => return Err(self.not_in_tenant(&number)),
        };
        match row.assigned_pstn_target_id.as_deref() {
            Some(t) if t == truth.id => return Ok(json!({})),
            Some(_) => {
                return Err(BackendError::new(
                    ErrorKind::Conflict,
                    format!(
                        "Telephone Number '{number}' has already been assigned to another user"
                    ),
                ))
            }
            None => {}
        }
        if truth.on_prem_line_uri.is_some() {
            return Err(BackendError::new(ErrorKind::Precondition, ON_PREM_MESSAGE));
        }
        if truth.homed == Homing::OnPremises {
            // UNCERTAIN: wording; the rule is DOMAIN 1.6/1.8 (move first).
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "User '{}' is homed in Skype for Business Server on-premises and cannot be \
                     assigned an online '{number_type}' number; move the user to Teams first \
                     (Move-CsUser)",
                    truth.upn
                ),
            ));
        }
        if number_type != NumberType::DirectRouting
            && truth.teams_upgrade_effective_mode != "TeamsOnly"
        {
            // UNCERTAIN: wording; the rule is DOMAIN 1.8 and operator-connect-plan.md.
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "User '{}' must be in TeamsOnly mode to be assigned a '{number_type}' \
                     number (TeamsUpgradeEffectiveMode is '{}'); grant the UpgradeToTeams \
                     policy first",
                    truth.upn, truth.teams_upgrade_effective_mode
                ),
            ));
        }
        let licensed = self.user.licences.iter().any(|l| l == "MCOEV")
            && (number_type != NumberType::CallingPlan
                || self.user.licences.iter().any(|l| l.starts_with("MCOPSTN")));
        if !licensed {
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "User '{}' lacks appropriate licenses to assign a '{number_type}' number",
                    truth.upn
                ),
            ));
        }
        if truth.usage_location != row.iso_country_code {
            // The rule: Learn "Manage phone numbers for users" (same
            // country/region). UNCERTAIN: the service's wording.
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "The usage location of user '{}' ({}) does not match the country of \
                     telephone number '{number}' ({}); they must be the same country/region",
                    truth.upn, truth.usage_location, row.iso_country_code
                ),
            ));
        }
        let location_id = match location_id {
            Some(_) if row.mode() == AddressMode::OperatorLocked => {
                return Err(BackendError::new(
                    ErrorKind::Precondition,
                    OPERATOR_LOCKED_MESSAGE,
                ));
            }
            Some(loc) => {
                self.shared
                    .check_location(&loc, &row.iso_country_code, &number)?;
                Some(loc)
            }
            // Without -LocationId the number keeps the address it has (the
            // operator's, in the operator modes).
            None => row.location_id.clone(),
        };
        if location_id.is_none()
            && number_type == NumberType::OperatorConnect
            && matches!(row.iso_country_code.as_str(), "US" | "CA")
        {
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "An emergency LocationId is required to assign Operator Connect number \
                     '{number}' in country '{}'",
                    row.iso_country_code
                ),
            ));
        }
        if let Some(other) = truth.line_uri.as_deref().filter(|l| *l != number) {
            return Err(BackendError::new(
                ErrorKind::Conflict,
                format!(
                    "User '{}' already has telephone number '{other}' assigned; remove it first",
                    truth.upn
                ),
            ));
        }
        let visible_at = self.next_visible("assign_number");
        let Some((_, Some(rec))) = self.number.as_mut() else {
            return Err(self.not_in_tenant(&number));
        };
        let mut pending = row.clone();
        pending.assigned_pstn_target_id = Some(truth.id.clone());
        pending.pstn_assignment_status = "UserAssigned".into();
        pending.location_id = location_id;
        pending.activation_state = "AssignmentPending".into();
        let mut active = pending.clone();
        active.activation_state = "Activated".into();
        rec.row.push(self.now, self.now, Some(pending));
        let activated_at = rec.row.push(self.now, visible_at, Some(active));
        self.number_dirty = true;
        let mut s = truth;
        s.line_uri = Some(number.clone());
        s.enterprise_voice_enabled = true;
        self.user.cloud.push(self.now, visible_at, s);
        if let Some(o) = self.user.outages.last_mut().filter(|o| o.end.is_none()) {
            o.end = Some(activated_at);
        }
        self.user.released.retain(|n| *n != number);
        self.user_dirty = true;
        Ok(json!({}))
    }

    fn remove_licence(&mut self, sku: &str) -> Result<Value, BackendError> {
        if !self.has(sku) {
            return Ok(json!({}));
        }
        let paths = self.user.licence_paths();
        let direct = paths.iter().any(|p| p.sku == sku && !p.is_group());
        let inherited = paths.iter().any(|p| p.sku == sku && p.is_group());
        if !direct {
            // Only a group path: the licence cannot be removed per user.
            return Err(BackendError::new(
                ErrorKind::Precondition,
                "User license is inherited from a group membership and it cannot be removed \
                 directly from the user.",
            ));
        }
        let now = self.now;
        let truth = self.user.cloud.truth().clone();
        let visible_at = self.next_visible("remove_licence");
        self.user.set_licence_paths(
            paths
                .into_iter()
                .filter(|p| p.sku != sku || p.is_group())
                .collect(),
        );
        if inherited {
            // The group still grants the SKU: only the direct path goes.
            let mut s = truth;
            self.user.show_licences(&mut s);
            self.user.cloud.push(now, visible_at, s);
            self.user_dirty = true;
            return Ok(json!({}));
        }
        let calling_plan = sku.starts_with("MCOPSTN");
        let phone_system = sku == "MCOEV";
        let mut lost = None;
        if calling_plan || phone_system {
            if let Some((number, Some(rec))) = self.number.as_mut() {
                if let Some(row) = rec.row.truth().clone() {
                    let holds = row.assigned_pstn_target_id.as_deref() == Some(truth.id.as_str());
                    let needs = match row.number_type {
                        NumberType::CallingPlan => calling_plan || phone_system,
                        NumberType::OperatorConnect | NumberType::DirectRouting => phone_system,
                    };
                    if holds && needs {
                        let ported = rec.port.as_ref().is_some_and(|p| p.completed(now));
                        if row.number_type == NumberType::DirectRouting || ported {
                            // Phone System removal deletes a DR number from the
                            // number database; a ported-out CP number leaves too.
                            rec.row.push(now, visible_at, None);
                            self.shared.dr_left(rec, now);
                        } else {
                            let mut r = row;
                            r.assigned_pstn_target_id = None;
                            r.pstn_assignment_status = "Unassigned".into();
                            r.activation_state = "Activated".into();
                            rec.row.push(now, visible_at, Some(r));
                        }
                        lost = Some(number.clone());
                    }
                }
            }
        }
        let mut s = truth;
        self.user.show_licences(&mut s);
        if let Some(number) = &lost {
            if s.line_uri.as_deref() == Some(number.as_str()) {
                s.line_uri = None;
            }
            s.enterprise_voice_enabled = false;
        }
        self.user.cloud.push(now, visible_at, s);
        self.user_dirty = true;
        if let Some(number) = lost {
            self.number_dirty = true;
            if !self.user.released.contains(&number) {
                self.user.released.push(number.clone());
            }
            self.start_outage(&number);
        }
        Ok(json!({}))
    }

    fn enable_onprem_voice(&mut self) -> Result<Value, BackendError> {
        let upn = self.upn();
        // Users homed online but with their number set in on-premises AD (hybrid
        // Direct Routing) have no server object; their AD line is still settable.
        let op = self.user.onprem.clone();
        if op.is_none() && !self.user.cloud.truth().dir_synced {
            return Err(user_not_found(&upn));
        }
        let Some((number, _)) = self.number.clone() else {
            return Err(BackendError::new(ErrorKind::Fatal, "no number given"));
        };
        if country_of(&number).is_none() {
            return Err(unknown_country(&number));
        }
        let done = match &op {
            Some(o) => o.enterprise_voice_enabled && o.line_uri.as_deref() == Some(number.as_str()),
            None => self.user.ad_line.as_deref() == Some(number.as_str()),
        };
        if done {
            return Ok(json!({}));
        }
        if let Some(mut op) = op {
            op.enterprise_voice_enabled = true;
            op.line_uri = Some(number.clone());
            self.user.onprem = Some(op);
        }
        self.user.ad_line = Some(number.clone());
        let tick = self.next_tick();
        let visible_at = tick.plus(self.shared.latency(&upn, "dirsync", self.user.seq));
        self.user.seq += 1;
        self.user.scheduled.push(Scheduled {
            at: tick,
            visible_at,
            kind: EventKind::UserDirSyncLine {
                line: number.clone(),
            },
        });
        self.user_dirty = true;
        let target_id = self.user.cloud.truth().id.clone();
        if let Some((_, rec)) = self.number.as_mut() {
            let rec = rec.get_or_insert_with(|| NumberRecord {
                telephone_number: number.clone(),
                row: super::model::Timeline::new(None),
                operator: None,
                operator_location: None,
                upload_scheduled: false,
                scheduled: Vec::new(),
                port: None,
                seq: 0,
            });
            rec.scheduled.push(Scheduled {
                at: tick,
                visible_at,
                kind: EventKind::NumberDirSyncAdd {
                    target_id: target_id.clone(),
                },
            });
            self.number_dirty = true;
            // A rollback: the line is back in service once the sync brings
            // the Direct Routing row back (not if the operator uploaded the
            // number meanwhile). Replay the record to the tick to know.
            let mut probe = rec.clone();
            self.shared.advance_number(&mut probe, tick);
            let restored = probe.row.truth().as_ref().is_some_and(|r| {
                r.number_type == NumberType::DirectRouting
                    && r.assigned_pstn_target_id.as_deref() == Some(target_id.as_str())
            });
            if restored {
                if let Some(o) = self.user.outages.last_mut().filter(|o| o.end.is_none()) {
                    o.end = Some(visible_at);
                }
            }
        }
        Ok(json!({}))
    }

    fn move_user(&mut self, force: bool) -> Result<Value, BackendError> {
        let upn = self.upn();
        if self.user.moved_at.is_some() {
            // A re-issue of a move this tenant already made.
            return Ok(json!({}));
        }
        let Some(mut op) = self.user.onprem.clone() else {
            return Err(user_not_found(&upn));
        };
        if op.homed == Homing::Online {
            return Err(BackendError::new(
                ErrorKind::Precondition,
                "User is already homed online",
            ));
        }
        if !(self.has("Teams") && self.has("MCOProfessional")) {
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "User '{upn}' is not licensed for Teams and Skype for Business Online \
                     (Plan 2); assign both licences and let them provision before moving"
                ),
            ));
        }
        if op.enterprise_voice_enabled && !self.has("MCOEV") {
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "User '{upn}' is enabled for Enterprise Voice on-premises but is not \
                     licensed for Phone System online; assign the licence or use \
                     -BypassEnterpriseVoiceCheck"
                ),
            ));
        }
        let cap = self.shared.config.max_concurrent_moves as usize;
        let now = self.now;
        let Some(moves) = self.moves.as_mut() else {
            return Err(BackendError::new(ErrorKind::Fatal, "moves not loaded"));
        };
        if moves.len() >= cap {
            return Err(BackendError::new(
                ErrorKind::Transient,
                "The maximum number of concurrent user moves has been reached. \
                 Please try again later",
            ));
        }
        let took = Key::new(self.shared.config.seed)
            .str("move")
            .str(&upn)
            .between(Duration::from_secs(60), Duration::from_secs(300));
        moves.push(ActiveMove {
            user: upn,
            until: now.plus(took),
        });
        op.homed = Homing::Online;
        self.user.onprem = Some(op);
        self.user.moved_at = Some(now);
        self.user.contacts_lost = force;
        let visible_at = self.next_visible("move_user");
        let mut provisioning = self.user.cloud.truth().clone();
        provisioning.homed = Homing::Online;
        provisioning.hosting_provider = "sipfed.online.lync.com".into();
        provisioning.interpreted_user_type = "HybridOnlineSfBUserNeedsProvisioning".into();
        provisioning.account_type = "User".into();
        let mut done = provisioning.clone();
        done.interpreted_user_type = "HybridOnlineTeamsOnlyUser".into();
        done.teams_upgrade_effective_mode = "TeamsOnly".into();
        self.user.cloud.push(now, now, provisioning);
        self.user.cloud.push(now, visible_at, done);
        self.user_dirty = true;
        Ok(json!({}))
    }

    fn require_online(&self) -> Result<(), BackendError> {
        if self.user.cloud.truth().homed == Homing::Online {
            Ok(())
        } else {
            Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "User '{}' is homed on-premises; move the user to Teams first (Move-CsUser)",
                    self.upn()
                ),
            ))
        }
    }

    fn enable_voice_online(&mut self) -> Result<Value, BackendError> {
        self.require_online()?;
        if !self.has("MCOEV") {
            return Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "User '{}' lacks appropriate licenses to enable Enterprise Voice \
                     (Phone System)",
                    self.upn()
                ),
            ));
        }
        if !self.user.cloud.truth().enterprise_voice_enabled {
            self.set_user("enable_voice_online", |s| s.enterprise_voice_enabled = true);
        }
        Ok(json!({}))
    }

    fn enable_hosted_voicemail(&mut self) -> Result<Value, BackendError> {
        self.require_online()?;
        if !self.user.cloud.truth().hosted_voicemail {
            self.set_user("enable_hosted_voicemail", |s| s.hosted_voicemail = true);
        }
        Ok(json!({}))
    }

    /// The user's audio conferencing, when Microsoft is the provider.
    fn microsoft_conferencing(&self) -> Result<crate::backend::ConferencingView, BackendError> {
        match self.user.conferencing.truth() {
            None => Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "User '{}' is not enabled for audio conferencing",
                    self.upn()
                ),
            )),
            Some(c) if c.provider != "Microsoft" => Err(BackendError::new(
                ErrorKind::Precondition,
                "The user's audio conferencing provider is not Microsoft",
            )),
            Some(c) => Ok(c.clone()),
        }
    }

    fn send_conferencing_info(&mut self) -> Result<Value, BackendError> {
        let c = self.microsoft_conferencing()?;
        self.mails
            .push((self.upn(), "conferencing_info".into(), c.conference_id));
        Ok(json!({}))
    }

    fn reset_conference_id(&mut self) -> Result<Value, BackendError> {
        let mut c = self.microsoft_conferencing()?;
        let upn = self.upn();
        if let Some(old) = c.conference_id.take() {
            if !self.user.retired_conference_ids.contains(&old) {
                self.user.retired_conference_ids.push(old);
            }
        }
        let key = Key::new(self.shared.config.seed)
            .str("conf-reset")
            .str(&upn)
            .int(self.user.conference_resets);
        let id = (0u64..)
            .map(|attempt| conference_id(key.int(attempt)))
            .find(|id| !self.user.retired_conference_ids.contains(id))
            .unwrap_or_default();
        self.user.conference_resets += 1;
        let visible_at = self.next_visible("reset_conference_id");
        c.conference_id = Some(id.clone());
        self.user.conferencing.push(self.now, visible_at, Some(c));
        self.user_dirty = true;
        self.mails
            .push((upn, "conference_id_reset".into(), Some(id)));
        Ok(json!({}))
    }

    fn into_writes(self) -> Writes {
        let mut w = Writes::new();
        if let Some(m) = &self.moves {
            w.push((MOVES_KEY.as_bytes().to_vec(), to_bytes(m)));
        }
        if self.user_dirty {
            let key = user_key(&self.user.cloud.truth().upn);
            w.push((key.into_bytes(), to_bytes(&self.user)));
        }
        if self.number_dirty {
            if let Some((n, Some(rec))) = &self.number {
                w.push((number_key(n).into_bytes(), to_bytes(rec)));
            }
        }
        w
    }
}

/// Latency draw for change `seq` of `user` made by `what`.
pub(crate) fn latency_draw(config: &SimConfig, user: &str, what: &str, seq: u64) -> Duration {
    let l = &config.latency;
    let k = Key::new(config.seed)
        .str("latency")
        .str(user)
        .str(what)
        .int(seq);
    let typical_max = l.typical_max.max(l.min);
    if k.unit2() < l.tail_rate {
        let lo = typical_max + Duration::from_millis(1);
        k.between(lo, l.tail_max.max(lo))
    } else {
        let u = k.unit();
        let span = (typical_max - l.min).as_secs_f64();
        l.min + Duration::from_secs_f64(span * u * u)
    }
}

/// A GUID-looking string (version 4 layout) from a key.
pub(crate) fn guid(k: Key) -> String {
    let a = k.bits();
    let b = k.int(1).bits();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

pub(crate) fn user_key(upn: &str) -> String {
    format!("u/{}", upn.to_ascii_lowercase())
}

/// Numbers are accepted with or without the leading `+` (like the cmdlets).
pub(crate) fn number_key(number: &str) -> String {
    let n = number.trim();
    if n.starts_with('+') {
        format!("n/{n}")
    } else {
        format!("n/+{n}")
    }
}

fn audit_key(seq: u64) -> Vec<u8> {
    let mut k = b"a/".to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn outbox_key(seq: u64) -> Vec<u8> {
    let mut k = b"o/".to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Sequence number of an `a/` or `o/` key.
fn audit_seq_of(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    if key.len() == 10 {
        b.copy_from_slice(&key[2..]);
    }
    u64::from_be_bytes(b)
}

/// A number whose country the simulator cannot tell (see `seed::country_of`).
fn unknown_country(number: &str) -> BackendError {
    BackendError::new(
        ErrorKind::Precondition,
        format!(
            "simulated tenant: cannot tell the country of telephone number '{number}' \
             (known: +1 US/CA, +44 GB, +353 IE, +33 FR, +49 DE, +31 NL, +61 AU)"
        ),
    )
}

fn user_not_found(upn: &str) -> BackendError {
    BackendError::new(
        ErrorKind::NotFound,
        format!("Management object not found for identity '{upn}'"),
    )
}

fn throttled() -> BackendError {
    BackendError::new(ErrorKind::Throttled, "Too Many Requests")
}

fn fatal(e: SimError) -> BackendError {
    // A full disk under the simulator is the service failing for a while, not
    // a reason to fail the subject: the call is retried after a pause.
    let kind = if e.is_no_space() {
        ErrorKind::Transient
    } else {
        ErrorKind::Fatal
    };
    BackendError::new(kind, format!("simulated tenant: {e}"))
}

/// Decode a stored record, verifying its checksum (records written before
/// checksums are read unchecked).
fn parse<T: serde::de::DeserializeOwned>(
    key: impl AsRef<[u8]>,
    bytes: &[u8],
) -> Result<T, SimError> {
    let key = key.as_ref();
    let (json, _) = integrity::open(key, bytes)?;
    serde_json::from_slice(json).map_err(|source| SimError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

/// The stored form of `v` under `key` (JSON sealed with its checksum).
pub(crate) fn sealed<T: serde::Serialize>(key: impl AsRef<[u8]>, v: &T) -> Vec<u8> {
    integrity::seal(key.as_ref(), &to_bytes(v))
}

pub(crate) fn to_bytes<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Our records contain only strings, numbers and maps with string keys.
    serde_json::to_vec(v).unwrap_or_default()
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
