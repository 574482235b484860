//! [`ReadOnly`]: a tenant that only observes. `plan` runs through it, so a
//! plan against a real tenant cannot change anything, whatever the workflow says.

use std::path::Path;

use async_trait::async_trait;

use super::{
    BackendError, BackendReport, BackendStateError, Call, ErrorKind, OperationKind, Tenant,
    TenantIdentity,
};

/// Forwards observations to the inner tenant and refuses every other
/// operation with a [`ErrorKind::Precondition`] error, without forwarding it.
#[derive(Debug)]
pub struct ReadOnly<T: ?Sized>(pub std::sync::Arc<T>);

impl<T: ?Sized> ReadOnly<T> {
    /// Wrap `inner`.
    pub fn new(inner: std::sync::Arc<T>) -> ReadOnly<T> {
        ReadOnly(inner)
    }
}

/// The error a refused write gets.
pub fn refused(kind: OperationKind) -> BackendError {
    BackendError::new(
        ErrorKind::Precondition,
        format!(
            "{} changes the tenant, and this tenant is opened read-only (plan)",
            kind.info().name
        ),
    )
}

#[async_trait]
impl<T: Tenant + ?Sized> Tenant for ReadOnly<T> {
    async fn execute(&self, call: &Call) -> Result<serde_json::Value, BackendError> {
        let kind = call.op.kind();
        if !kind.info().observation {
            return Err(refused(kind));
        }
        self.0.execute(call).await
    }

    fn automates(&self, kind: OperationKind) -> bool {
        self.0.automates(kind)
    }

    fn needs(&self, kind: OperationKind) -> Option<&'static str> {
        self.0.needs(kind)
    }

    fn identity(&self) -> Option<TenantIdentity> {
        self.0.identity()
    }

    fn report(&self) -> Option<BackendReport> {
        self.0.report()
    }

    // Reading the state out is not a write to the tenant.
    fn backup_to(&self, dest: &Path) -> Option<Result<u64, BackendStateError>> {
        self.0.backup_to(dest)
    }
}
