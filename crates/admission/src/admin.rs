//! The users API: REST under `/admin/users` and AIBrix's metadata-service routes, so AIBrix's
//! scripts keep working. Every route needs `Authorization: Bearer <admin_key>`; without an
//! admin key configured the API answers 403. Errors use the OpenAI envelope.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use brix_api::openai::ErrorEnvelope;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::store::WriteMode;
use crate::user::User;
use crate::{AdminDenied, Admission, StoreError, UserError};

type Shared = Arc<Admission>;

/// Builds the router; state is the shared [`Admission`].
pub(crate) fn router(admission: Shared) -> Router {
    Router::new()
        .route("/admin/users", get(list_users))
        .route(
            "/admin/users/{name}",
            get(read_user).put(put_user).delete(delete_user),
        )
        .route("/CreateUser", post(aibrix_create))
        .route("/ReadUser", post(aibrix_read))
        .route("/UpdateUser", post(aibrix_update))
        .route("/DeleteUser", post(aibrix_delete))
        .with_state(admission)
}

/// Why an admin call failed; rendered once, as the OpenAI envelope.
#[derive(Debug, thiserror::Error)]
enum AdminError {
    #[error(transparent)]
    Denied(#[from] AdminDenied),
    #[error("User: {0} does not exist")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the user store is unavailable; retry later")]
    Store(#[from] StoreError),
}

impl From<UserError> for AdminError {
    fn from(err: UserError) -> Self {
        match err {
            UserError::InvalidName { .. } => AdminError::BadRequest(err.to_string()),
            UserError::Store(err) => AdminError::Store(err),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, kind, code) = match &self {
            AdminError::Denied(denied) => return denied.into_response(),
            AdminError::NotFound(_) => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("user_not_found"),
            ),
            AdminError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request_error", None),
            AdminError::Store(err) => {
                tracing::warn!(%err, "admin users API: store failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded_error",
                    Some("service_unavailable"),
                )
            }
        };
        let body = ErrorEnvelope::new(self.to_string(), kind).with_code(code.map(Into::into));
        (status, Json(body)).into_response()
    }
}

/// Proof that the caller presented the admin key; extracted before any body is read.
struct AdminAuth;

impl FromRequestParts<Shared> for AdminAuth {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, AdminError> {
        state.admin.check_headers(&parts.headers)?;
        Ok(AdminAuth)
    }
}

/// Parses a JSON body into `T`, answering 400 in the envelope (not axum's 422 text).
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, AdminError> {
    serde_json::from_slice(body)
        .map_err(|err| AdminError::BadRequest(format!("invalid body: {err}")))
}

async fn list_users(_: AdminAuth, State(adm): State<Shared>) -> Result<Response, AdminError> {
    let users = adm.list_users().await?;
    Ok(Json(json!({ "users": users })).into_response())
}

async fn read_user(
    _: AdminAuth,
    State(adm): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, AdminError> {
    match adm.get_user(&name).await? {
        Some(user) => Ok(Json(user).into_response()),
        None => Err(AdminError::NotFound(name)),
    }
}

/// Body of `PUT /admin/users/{name}`: the limits; a `name`, if given, must match the path.
#[derive(Deserialize)]
struct PutBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    rpm: Option<u64>,
    #[serde(default)]
    tpm: Option<u64>,
}

async fn put_user(
    _: AdminAuth,
    State(adm): State<Shared>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let body: PutBody = parse(&body)?;
    if body.name.as_deref().is_some_and(|n| n != name) {
        return Err(AdminError::BadRequest(format!(
            "body name does not match path name {name:?}"
        )));
    }
    let user = adm.put_user(User::new(name, body.rpm, body.tpm)).await?;
    Ok(Json(user).into_response())
}

async fn delete_user(
    _: AdminAuth,
    State(adm): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, AdminError> {
    if adm.delete_user(&name).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(AdminError::NotFound(name))
    }
}

/// AIBrix's reply shape: `{"message","user"}`.
fn reply(message: String, user: User) -> Response {
    Json(json!({ "message": message, "user": user })).into_response()
}

/// `POST /CreateUser`: creates if absent; an existing user is left as is and returned (AIBrix
/// returns the submitted one; Brix returns what is stored).
async fn aibrix_create(
    _: AdminAuth,
    State(adm): State<Shared>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let user: User = parse(&body)?;
    let (created, user) = adm.write_user(user, WriteMode::CreateOnly).await?;
    if created {
        return Ok(reply(format!("Created User: {}", user.name), user));
    }
    let existing = adm.get_user(&user.name).await?.unwrap_or(user);
    Ok(reply(format!("User: {} exists", existing.name), existing))
}

async fn aibrix_read(
    _: AdminAuth,
    State(adm): State<Shared>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let user: User = parse(&body)?;
    match adm.get_user(&user.name).await? {
        Some(stored) => Ok(reply(format!("User: {}", stored.name), stored)),
        None => Err(AdminError::NotFound(user.name)),
    }
}

async fn aibrix_update(
    _: AdminAuth,
    State(adm): State<Shared>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let user: User = parse(&body)?;
    let (updated, user) = adm.write_user(user, WriteMode::UpdateOnly).await?;
    if updated {
        Ok(reply(format!("Updated User: {}", user.name), user))
    } else {
        Err(AdminError::NotFound(user.name))
    }
}

async fn aibrix_delete(
    _: AdminAuth,
    State(adm): State<Shared>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let user: User = parse(&body)?;
    let Some(stored) = adm.get_user(&user.name).await? else {
        return Err(AdminError::NotFound(user.name));
    };
    if !adm.delete_user(&stored.name).await? {
        return Err(AdminError::NotFound(stored.name));
    }
    Ok(reply(format!("Deleted User: {}", stored.name), stored))
}
