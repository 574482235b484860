//! [`SimTenant`]: a Teams tenant in a sled database, with the write-succeeds,
//! read-lags behaviour of the real service.
//!
//! Every action commits its effect (the truth) at once, and schedules when
//! reads start to show it. Commits are grouped: an action applies its records
//! in memory under the tenant's lock and is answered once the writer thread
//! ([`super::group_commit`]) has made them durable, and so is a read that may
//! have seen a change not yet durable. Changes the service makes on its own
//! (directory sync ticks, the operator's upload of a ported number) are stored
//! as scheduled events and applied lazily, in time order, whenever the entity
//! is read or written: state is a pure function of what is stored and the
//! injected clock, so a restarted process sees exactly the same tenant.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde_json::Value;

use super::config::{Profile, SimConfig};
use super::model::{
    ActiveMove, AuditEntry, AuditOutcome, Meta, NumberRecord, OutageRecord, OutboxEntry, SimStats,
    UserRecord, UserState,
};
use super::seed::{location, seed};
use crate::backend::sim::db::*;
use crate::backend::sim::group_commit::Syncer;
use crate::backend::sim::ops::*;
use crate::backend::{
    BackendError, Call, ErrorKind, NumberView, Operation, OperationKind, PortOrderView, Tenant,
};
use crate::clock::{SharedClock, Timestamp};
use crate::store::integrity;

/// Name of the operator that uploads migrated numbers.
pub const OPERATOR_NAME: &str = "Contoso Telecom";

pub(in crate::backend::sim) const ON_PREM_MESSAGE: &str =
    "The user already has a telephone number set in the on-premises \
Active Directory and synchronized to the cloud. To manage this user's telephone number in the \
cloud, first clear the phone number in the on-premises directory and synchronize the change to \
the cloud.";

/// An operator-locked number refuses a location change. Text from DOMAIN 1.3
/// (caught by the TeamsFunctions module; exact service wording UNCERTAIN).
pub(in crate::backend::sim) const OPERATOR_LOCKED_MESSAGE: &str =
    "Contact your operator to change the emergency address for this number.";

/// The view of a port order at `now`.
pub(in crate::backend::sim) fn port_view(
    p: &super::model::PortOrder,
    number: &str,
    now: Timestamp,
) -> PortOrderView {
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
    pub(in crate::backend::sim) shared: Arc<Shared>,
}

impl std::fmt::Debug for SimTenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTenant")
            .field("dir", &self.shared.dir)
            .field("tenant_id", &self.shared.meta.tenant_id)
            .finish_non_exhaustive()
    }
}

pub(in crate::backend::sim) struct Shared {
    pub(in crate::backend::sim) db: Arc<Db>,
    /// Makes applied batches durable for async callers.
    pub(in crate::backend::sim) syncer: Syncer,
    pub(in crate::backend::sim) dir: PathBuf,
    pub(in crate::backend::sim) config: SimConfig,
    pub(in crate::backend::sim) clock: SharedClock,
    pub(in crate::backend::sim) meta: Meta,
    pub(in crate::backend::sim) mem: Mutex<Mem>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Observations move the reached instant in memory only: keep it now.
        // Best effort (nothing to report to in a drop); actions applied theirs.
        let mem = self.mem.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = mem.reached.filter(|r| Some(*r) > mem.reached_stored) {
            let mut batch = sled::Batch::default();
            batch.insert(REACHED_KEY, sealed(REACHED_KEY, &r));
            let _ = self.db.apply(batch);
        }
        // Also what an action whose caller stopped waiting applied.
        let _ = self.db.sync();
        // The writer thread holds the database open: stop it before saying closed.
        self.syncer.stop();
        crate::store::sled_store::closed(&self.dir);
    }
}

/// In-memory state; the mutex also serializes every write to the store and
/// orders calls: each takes its instant under it.
pub(in crate::backend::sim) struct Mem {
    pub(in crate::backend::sim) next_audit: u64,
    pub(in crate::backend::sim) next_outbox: u64,
    /// Latest virtual instant an operation ran at (persisted with actions,
    /// and when the handle closes).
    pub(in crate::backend::sim) reached: Option<Timestamp>,
    /// The instant last written to the store.
    pub(in crate::backend::sim) reached_stored: Option<Timestamp>,
    pub(in crate::backend::sim) calls_per_key: HashMap<String, u64>,
    pub(in crate::backend::sim) bucket: Option<(f64, Timestamp)>,
    pub(in crate::backend::sim) stats: SimStats,
}

/// A message to append to the outbox: (user, kind, conference id).
pub(in crate::backend::sim) type Mail = (String, String, Option<String>);

/// What an action produced: its answer, the records to write, the messages sent.
pub(in crate::backend::sim) type Acted = (Value, Writes, Vec<Mail>);

impl SimTenant {
    /// Copy the tenant's database into `dest` (a new directory), durably.
    pub fn backup_to(&self, dest: &Path) -> Result<u64, SimError> {
        self.shared.db.backup_to(dest)
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
        let db = Db::open(dir)?;
        let meta = match db.get("meta")? {
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
                db.apply_durably(batch)?;
                meta
            }
        };
        let next_audit = db.last("a/")?.map_or(1, |(k, _)| audit_seq_of(&k) + 1);
        let next_outbox = db.last("o/")?.map_or(1, |(k, _)| audit_seq_of(&k) + 1);
        // Tenants stored before the instant was kept: the last audited call.
        let reached = match db.get(REACHED_KEY)? {
            Some(bytes) => Some(parse::<Timestamp>(REACHED_KEY, &bytes)?),
            None => match db.last("a/")? {
                Some((k, v)) => Some(parse::<AuditEntry>(&k, &v)?.at),
                None => None,
            },
        };
        let db = Arc::new(db);
        Ok(SimTenant {
            shared: Arc::new(Shared {
                syncer: Syncer::start(Arc::clone(&db)),
                db,
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
        let scanned = self.shared.db.scan_all(|item| {
            let (k, v) = match item {
                Ok(kv) => kv,
                Err(e) => {
                    c.damage.push((
                        "(scan)".into(),
                        format!("the store cannot be read further: {e}"),
                    ));
                    return false;
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
                return true;
            }
            match integrity::open(&k, &v) {
                Ok((_, integrity::Seal::Legacy)) => c.unchecked += 1,
                Ok(_) => {}
                Err(e) => {
                    c.damage.push((shown, e.to_string()));
                    return true;
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
            true
        });
        if let Err(e) = scanned {
            c.damage.push(("(scan)".into(), e.to_string()));
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
        seeded_upn(i)
    }

    /// Direct Routing number of seeded user `i` (1-based).
    pub fn seeded_number(i: u32) -> String {
        seeded_number(i)
    }

    /// Perform one operation on the calling thread, syncing the store on it
    /// when needed ([`Tenant::execute`] waits for the writer thread instead).
    pub fn execute_blocking(&self, op: &Operation) -> Result<Value, BackendError> {
        let done = self.shared.perform(op);
        if done.sync {
            self.shared.db.sync().map_err(fatal)?;
        }
        done.result
    }

    /// Every action received (observations excluded), oldest first.
    pub fn audit_log(&self) -> Result<Vec<AuditEntry>, SimError> {
        let mut out = Vec::new();
        self.shared.db.scan("a/", |k, v| {
            out.push(parse::<AuditEntry>(k, v)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Outages of users' numbers, by user in seeding order, oldest first, as
    /// of [`SimTenant::reached`] when that is later than the tenant's clock.
    pub fn outages(&self) -> Result<Vec<OutageRecord>, SimError> {
        let now = self.report_now();
        let mut users = Vec::new();
        self.shared.db.scan("u/", |k, v| {
            let mut rec = parse::<UserRecord>(k, v)?;
            self.shared.advance_user(&mut rec, now);
            if !rec.outages.is_empty() {
                users.push(rec);
            }
            Ok(())
        })?;
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
        let Some(mut rec) = self.shared.db.load::<UserRecord>(&user_key(upn))? else {
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
            if let Some(rec) = self.shared.db.load::<UserRecord>(&user_key(&upn))? {
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
        self.shared.db.scan("o/", |k, v| {
            out.push(parse::<OutboxEntry>(k, v)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The true current inventory row of a number, `None` if not in the tenant.
    pub fn number_state(&self, number: &str) -> Result<Option<NumberView>, SimError> {
        let now = self.shared.clock.now();
        let Some(mut rec) = self.shared.db.load::<NumberRecord>(&number_key(number))? else {
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
            let Some(rec) = self.shared.db.load::<UserRecord>(&user_key(&upn))? else {
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
        if let Some(mut rec) = self.shared.db.load::<UserRecord>(&key)? {
            f(&mut rec);
            self.shared
                .db
                .commit(vec![(key.into_bytes(), to_bytes(&rec))], None)?;
        }
        Ok(())
    }

    /// Replace a user's cloud view with `f`'s edit of it, visible at once
    /// (tests outside the simulator cannot name its record types).
    #[cfg(test)]
    pub(crate) fn edit_cloud_view(
        &self,
        upn: &str,
        f: impl FnOnce(&mut crate::backend::UserView),
    ) -> Result<(), SimError> {
        self.edit_user(upn, |rec| {
            let mut v = rec.cloud.truth().clone();
            f(&mut v);
            rec.cloud = crate::backend::sim::model::Timeline::new(v);
        })
    }

    /// Store a copy of seeded user `i` under another UPN and object id
    /// (tests of hostile UPNs from outside the simulator).
    #[cfg(test)]
    pub(crate) fn clone_user_as(&self, i: u32, upn: &str, id: &str) -> Result<(), SimError> {
        let _mem = self.shared.lock();
        let Some(mut rec) = self
            .shared
            .db
            .load::<UserRecord>(&user_key(&SimTenant::upn(i)))?
        else {
            return Ok(());
        };
        let mut v = rec.cloud.truth().clone();
        v.upn = upn.to_string();
        v.sip_address = upn.to_string();
        v.id = id.to_string();
        rec.cloud = super::model::Timeline::new(v);
        self.shared
            .db
            .commit(vec![(user_key(upn).into_bytes(), to_bytes(&rec))], None)
    }

    /// Make every licence of `upn` inherited from the seeded licence group
    /// only (tests from outside the simulator).
    #[cfg(test)]
    pub(crate) fn licences_via_group_only(&self, upn: &str) -> Result<(), SimError> {
        self.edit_user(upn, |rec| {
            let paths = rec
                .licences
                .iter()
                .map(|l| {
                    crate::backend::LicenceAssignment::via_group(l, super::seed::LICENCE_GROUP)
                })
                .collect();
            rec.set_licence_paths(paths);
        })
    }

    /// Call counters since the tenant was opened.
    pub fn stats(&self) -> SimStats {
        self.shared.lock().stats.clone()
    }
}

#[async_trait]
impl Tenant for SimTenant {
    async fn execute(&self, call: &Call) -> Result<Value, BackendError> {
        // Applying and reading touch memory only (a short critical section, no
        // I/O): do it here, then wait for the writer thread's fsync, parked as
        // a future rather than as a blocking-pool thread per call.
        let done = self.shared.perform(&call.op);
        if done.sync {
            self.shared.syncer.durable(&self.shared.db).await?;
        }
        done.result
    }

    /// The simulator performs every operation itself, the conference id reset
    /// included.
    fn automates(&self, kind: OperationKind) -> bool {
        !self.shared.config.manual.contains(&kind)
    }

    fn identity(&self) -> Option<crate::backend::TenantIdentity> {
        Some(crate::backend::TenantIdentity {
            tenant_id: self.tenant_id().to_string(),
            created_at: self.created_at(),
            reached: self.reached(),
        })
    }

    fn report(&self) -> Option<crate::backend::BackendReport> {
        let stats = self.stats();
        // A tenant that cannot list its outages still reports its calls.
        let outages = self.outages().unwrap_or_default();
        Some(crate::backend::BackendReport {
            calls: stats.calls,
            throttled: stats.throttled,
            rate_limited: stats.rate_limited,
            injected_faults: stats.injected_faults,
            outages: outages
                .into_iter()
                .map(|o| crate::backend::OutageSpan {
                    user: o.user,
                    number: o.number,
                    start: o.start,
                    end: o.end,
                })
                .collect(),
        })
    }

    fn backup_to(&self, dest: &Path) -> Option<Result<u64, crate::backend::BackendStateError>> {
        Some(
            SimTenant::backup_to(self, dest).map_err(|e| crate::backend::BackendStateError {
                what: format!("backing up simulated tenant to {}", dest.display()),
                source: Box::new(e),
            }),
        )
    }
}

impl Shared {
    pub(in crate::backend::sim) fn lock(&self) -> MutexGuard<'_, Mem> {
        self.mem.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An operation performed in memory: its answer, and whether it may be given
/// only once the store is durable.
pub(in crate::backend::sim) struct Performed {
    pub(in crate::backend::sim) result: Result<Value, BackendError>,
    /// An action applied records, or a read may have seen some not yet durable.
    pub(in crate::backend::sim) sync: bool,
}

impl Performed {
    fn at_once(result: Result<Value, BackendError>) -> Performed {
        Performed {
            result,
            sync: false,
        }
    }
}

impl Shared {
    /// Perform `op` against the in-memory store under the lock, taking its
    /// instant there: calls are ordered, so a read sees every action stamped
    /// at or before it. Nothing is durable yet; the caller syncs when
    /// [`Performed::sync`] says so, before answering.
    pub(in crate::backend::sim) fn perform(&self, op: &Operation) -> Performed {
        let kind = op.kind();
        let info = kind.info();
        if self.config.manual.contains(&kind) {
            return Performed::at_once(Err(BackendError::new(
                ErrorKind::Precondition,
                format!(
                    "{} cannot be automated on this tenant: {}",
                    info.name,
                    info.manual.unwrap_or(info.microsoft)
                ),
            )));
        }
        let mut mem = self.lock();
        let now = self.clock.now();
        mem.reached = Some(mem.reached.map_or(now, |r| r.max(now)));
        *mem.stats.calls.entry(info.name.to_string()).or_insert(0) += 1;
        let key = op.key();
        let gated = self.gate(&mut mem, key, now);
        if info.observation {
            let result =
                gated.and_then(|()| self.observe(op, now).unwrap_or_else(|e| Err(fatal(e))));
            drop(mem);
            // What it saw may be an action applied but not yet durable: answer
            // after that is (a no-op when the store is idle).
            return Performed { result, sync: true };
        }
        let (result, mut writes, mails) = match gated {
            Err(e) => (Err(e), Vec::new(), Vec::new()),
            Ok(()) => match self.act(op, now) {
                Ok(Ok((v, w, m))) => (Ok(v), w, m),
                Ok(Err(e)) => (Err(e), Vec::new(), Vec::new()),
                Err(e) => return Performed::at_once(Err(fatal(e))),
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
        if let Err(e) = self.db.stage(writes, Some((seq, &entry))) {
            return Performed::at_once(Err(fatal(e)));
        }
        // Applied: the sequence numbers are taken even if the sync fails, so
        // a later batch never reuses them.
        mem.reached_stored = mem.reached;
        mem.next_audit += 1;
        mem.next_outbox += mails.len() as u64;
        Performed { result, sync: true }
    }
}

impl Shared {
    pub(in crate::backend::sim) fn observe(
        &self,
        op: &Operation,
        now: Timestamp,
    ) -> Result<Result<Value, BackendError>, SimError> {
        match op {
            Operation::GetUser { user } => {
                let Some(mut rec) = self.db.load::<UserRecord>(&user_key(user))? else {
                    return Ok(Err(user_not_found(user)));
                };
                self.advance_user(&mut rec, now);
                Ok(Ok(to_value(rec.cloud.view(now))))
            }
            Operation::GetNumber { number } => {
                let Some(mut rec) = self.db.load::<NumberRecord>(&number_key(number))? else {
                    return Ok(Ok(Value::Null));
                };
                self.advance_number(&mut rec, now);
                Ok(Ok(to_value(rec.row.view(now))))
            }
            Operation::GetOnpremUser { user } => {
                // The SfB Server shell answers at once; unknown users are `null`.
                let rec = self.db.load::<UserRecord>(&user_key(user))?;
                Ok(Ok(to_value(&rec.and_then(|r| r.onprem))))
            }
            Operation::GetPortOrder { number } => {
                let Some(rec) = self.db.load::<NumberRecord>(&number_key(number))? else {
                    return Ok(Ok(Value::Null));
                };
                let view = rec
                    .port
                    .as_ref()
                    .map(|p| port_view(p, &rec.telephone_number, now));
                Ok(Ok(to_value(&view)))
            }
            Operation::GetConferencing { user } => {
                let Some(mut rec) = self.db.load::<UserRecord>(&user_key(user))? else {
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
    pub(in crate::backend::sim) fn act(
        &self,
        op: &Operation,
        now: Timestamp,
    ) -> Result<Result<Acted, BackendError>, SimError> {
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
        let Some(mut u) = self.db.load::<UserRecord>(&user_key(user))? else {
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
                let mut rec = self.db.load::<NumberRecord>(&number_key(&n))?;
                if let Some(r) = rec.as_mut() {
                    self.advance_number(r, now);
                }
                Some((n, rec))
            }
            None => None,
        };
        let moves = match op {
            Operation::MoveUser { .. } => {
                let mut m = self
                    .db
                    .load::<Vec<ActiveMove>>(MOVES_KEY)?
                    .unwrap_or_default();
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
}
