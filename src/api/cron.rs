//! `/api/v1/cron`: the scheduled entries this server's node evaluates, with their last and
//! next ticks.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, Json};
use super::ApiState;
use crate::maintenance::cron::{statuses, CronStatus};

/// The cron entries, by name.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CronList {
    pub entries: Vec<CronStatus>,
}

/// Each `[cron.NAME]` entry: its schedule, zone, job, catch-up policy, the last tick claimed
/// (by any node) and the next one.
#[utoipa::path(get, path = "/api/v1/cron", tag = "status",
    responses((status = 200, body = CronList), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(State(s): State<ApiState>) -> Result<Json<CronList>, ApiError> {
    let store = s.client().store();
    let entries = statuses(store.as_ref(), s.cron(), chrono::Utc::now()).await?;
    Ok(Json(CronList { entries }))
}
