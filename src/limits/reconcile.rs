//! `tessera usage reconcile [--fix]`: recomputes every tenant's quota counters from the tables
//! and reports where they drifted (a hand edit, a bug, a counter row missing after an upgrade).
//!
//! Tenants are listed on the platform path; each tenant is recounted in its own transaction as
//! the app role, in its context (the counters and the counted tables are its rows). With `--fix`
//! the recount and the repair share one transaction that locks the counter row first, so a
//! create racing the repair is counted once, either before or after.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use diesel_async::scoped_futures::ScopedFutureExt;

use super::quota::{self, Counters};
use crate::db::schema::tenants;
use crate::error::AppResult;
use crate::ids::TenantId;
use crate::tenancy::{Door, PlatformDoor, TxScope};

/// One tenant whose counters differ from its tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// The tenant.
    pub tenant: TenantId,
    /// Its slug.
    pub slug: String,
    /// What the counters said.
    pub counted: Counters,
    /// What the tables hold.
    pub actual: Counters,
}

impl Drift {
    /// `records 5 → 4, seats 1 → 1`-style text of the counters that differ.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, c, a) in [
            ("records", self.counted.records, self.actual.records),
            ("seats", self.counted.seats, self.actual.seats),
            (
                "webhook_endpoints",
                self.counted.webhook_endpoints,
                self.actual.webhook_endpoints,
            ),
        ] {
            if c != a {
                parts.push(format!("{name} counted {c}, actual {a}"));
            }
        }
        parts.join("; ")
    }
}

/// What a reconcile run found.
#[derive(Debug, Default)]
pub struct Report {
    /// Tenants checked.
    pub tenants: usize,
    /// Those that drifted (fixed too, when asked).
    pub drifted: Vec<Drift>,
}

/// Recounts every tenant (deleted and suspended ones too); with `fix`, overwrites drifted
/// counters with the recount.
pub async fn run(door: &Door, platform: &PlatformDoor, fix: bool) -> AppResult<Report> {
    let all: Vec<(TenantId, String)> = platform
        .tx(true, |tx| {
            async move {
                Ok(tenants::table
                    .select((tenants::id, tenants::slug))
                    .order(tenants::id)
                    .load::<(TenantId, String)>(tx.conn())
                    .await?)
            }
            .scope_boxed()
        })
        .await?;
    let mut report = Report {
        tenants: all.len(),
        ..Default::default()
    };
    for (tenant, slug) in all {
        let drift = door
            .write(TxScope::tenant(tenant), move |tx| {
                async move {
                    // Lock the counter row (if any) before counting, so no create slips between.
                    diesel::sql_query(
                        "SELECT 1 FROM quota_counters WHERE tenant_id = $1 FOR UPDATE",
                    )
                    .bind::<diesel::sql_types::Uuid, _>(tenant.as_uuid())
                    .execute(tx.conn())
                    .await?;
                    let counted = quota::counters(tx).await?;
                    let actual = quota::recount(tx).await?;
                    if counted == actual {
                        return Ok(None);
                    }
                    if fix {
                        quota::overwrite(tx, actual).await?;
                    }
                    Ok(Some(Drift {
                        tenant,
                        slug,
                        counted,
                        actual,
                    }))
                }
                .scope_boxed()
            })
            .await?;
        report.drifted.extend(drift);
    }
    Ok(report)
}
