//! Group commit for the simulated tenant: actions apply their records to the
//! store in memory under the tenant's lock and then wait here; one writer
//! thread makes everything applied so far durable with one flush and fsync,
//! then acknowledges every action waiting for it. No thread per action: a
//! waiting action is a parked future, not a parked thread.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use tokio::sync::oneshot;

use super::db::{fatal, Db};
use crate::backend::{BackendError, ErrorKind};

type Waiter = oneshot::Sender<Result<(), BackendError>>;

/// Handle to the tenant's writer thread; dropping it stops and joins the thread.
pub(in crate::backend::sim) struct Syncer {
    tx: Option<mpsc::Sender<Waiter>>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    /// Start the writer thread over `db`. If the thread cannot start, waiters
    /// sync on their own (slower, still correct).
    pub(in crate::backend::sim) fn start(db: Arc<Db>) -> Syncer {
        let (tx, rx) = mpsc::channel::<Waiter>();
        let spawned = thread::Builder::new()
            .name("portflow-sim-sync".into())
            .spawn(move || run(&db, &rx));
        match spawned {
            Ok(thread) => Syncer {
                tx: Some(tx),
                thread: Some(thread),
            },
            Err(e) => {
                tracing::error!("cannot start the simulated tenant's sync thread: {e}");
                Syncer {
                    tx: None,
                    thread: None,
                }
            }
        }
    }

    /// Resolves once every batch applied to `db` before the call is durable.
    pub(in crate::backend::sim) async fn durable(&self, db: &Db) -> Result<(), BackendError> {
        if db.is_durable() {
            return Ok(());
        }
        let (ack, done) = oneshot::channel();
        match &self.tx {
            Some(tx) if tx.send(ack).is_ok() => {}
            _ => return db.sync().map_err(fatal),
        }
        done.await.unwrap_or_else(|_| {
            Err(BackendError::new(
                ErrorKind::Fatal,
                "simulated tenant: the sync thread stopped",
            ))
        })
    }

    /// Stop the thread once it has answered every waiter.
    pub(in crate::backend::sim) fn stop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The writer: one sync for every waiter queued while the last one ran.
fn run(db: &Db, rx: &mpsc::Receiver<Waiter>) {
    while let Ok(first) = rx.recv() {
        let mut waiters = vec![first];
        waiters.extend(rx.try_iter());
        // Each waiter applied its batch before queueing, so this covers it.
        let synced = db.sync().map_err(fatal);
        for w in waiters {
            let _ = w.send(synced.clone());
        }
    }
}
