//! The JSON API under `/api/`: the same actions as the pages. State-changing requests carry
//! the session's CSRF token in `X-CSRF-Token` (checked by the sign-in middleware); errors are
//! `{"error": "words", "kind": "not-called-back"}` with a 4xx or 5xx status.

use std::net::SocketAddr;

use axum::Extension;
use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::header::{RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Deserialize;

use crate::app::{AppError, AppState, parse_id};
use crate::auth::SessionInfo;
use crate::pages::{retry_after, sign_in};

/// An error as JSON.
pub(crate) fn error(e: &AppError) -> Response {
    (e.status, Json(serde_json::json!({ "error": e.message, "kind": e.kind }))).into_response()
}

fn session_json(session: &SessionInfo) -> serde_json::Value {
    serde_json::json!({ "user": session.user, "csrf_token": session.csrf })
}

#[derive(Deserialize)]
pub(crate) struct Login {
    username: String,
    password: String,
}

pub(crate) async fn login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<Login>,
) -> Response {
    match sign_in(&st, peer, &body.username, &body.password).await {
        Ok(session) => {
            let mut r = Json(session_json(&session)).into_response();
            r.headers_mut().append(SET_COOKIE, st.session_cookie(&session.token));
            r
        }
        Err(e) => {
            let mut r = error(&e);
            if let Some(wait) = retry_after(&e) {
                r.headers_mut().insert(RETRY_AFTER, wait);
            }
            r
        }
    }
}

pub(crate) async fn session(Extension(session): Extension<SessionInfo>) -> Response {
    Json(session_json(&session)).into_response()
}

pub(crate) async fn logout(State(st): State<AppState>, Extension(session): Extension<SessionInfo>) -> Response {
    st.sessions.close(&session.token);
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().append(SET_COOKIE, st.clear_cookie());
    r
}

#[derive(Deserialize, Default)]
pub(crate) struct ListQuery {
    #[serde(default)]
    all: bool,
}

pub(crate) async fn list(State(st): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    match st.mailbox(|m| m.list(false)).await {
        Ok(all) => {
            let viewer = st.viewer();
            let views = if q.all { all.iter().map(|m| viewer.message(m, false)).collect() } else { viewer.queue(&all) };
            Json(views).into_response()
        }
        Err(e) => error(&e),
    }
}

pub(crate) async fn show(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    match st.message(&id).await {
        Ok(m) => Json(st.viewer().message(&m, true)).into_response(),
        Err(e) => error(&e),
    }
}

pub(crate) async fn audio(State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    st.audio(&id, &headers).await.unwrap_or_else(|e| error(&e))
}

#[derive(Deserialize)]
pub(crate) struct Assign {
    to: String,
}

#[derive(Deserialize, Default)]
pub(crate) struct CalledBack {
    #[serde(default)]
    note: Option<String>,
}

pub(crate) async fn assign(
    State(st): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    Json(body): Json<Assign>,
) -> Response {
    change(&st, &id, move |m, id, now| m.assign(id, body.to.trim(), &session.user, now)).await
}

pub(crate) async fn called_back(
    State(st): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    Json(body): Json<CalledBack>,
) -> Response {
    let note = body.note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    change(&st, &id, move |m, id, now| m.called_back(id, &session.user, note.as_deref(), now)).await
}

pub(crate) async fn delete(
    State(st): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
) -> Response {
    change(&st, &id, move |m, id, now| m.delete(id, None, &session.user, now)).await
}

/// Applies a change to message `id` and answers with the message as it is now.
async fn change(
    st: &AppState,
    id: &str,
    f: impl FnOnce(
        &voicemail_core::Mailbox,
        &voicemail_core::MessageId,
        Timestamp,
    ) -> Result<voicemail_core::store::StoredMessage, voicemail_core::MailboxError>
    + Send
    + 'static,
) -> Response {
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(e) => return error(&e),
    };
    match st.mailbox(move |m| f(m, &id, Timestamp::now())).await {
        Ok(m) => Json(st.viewer().message(&m, true)).into_response(),
        Err(e) => error(&e),
    }
}
