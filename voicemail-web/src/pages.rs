//! The HTML pages: the queue, a message with its history, sign-in; the forms' actions.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Extension;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Deserialize;
use voicemail_core::store::StoredMessage;

use crate::app::{AppError, AppState, check_csrf, cookie, parse_id};
use crate::auth::{SessionInfo, random_token, same_secret, verify_password};
use crate::config::MAX_USER_NAME_LEN;
use crate::view::MessageView;

/// The login form's own CSRF cookie.
const LOGIN_COOKIE: &str = "vm_login";
/// The longest password checked (longer ones are refused unhashed).
const MAX_PASSWORD_LEN: usize = 1024;
/// Called-back messages listed under the queue.
const RECENTLY_RETURNED: usize = 20;

fn html(status: StatusCode, body: String) -> Response {
    (status, [(CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

impl AppState {
    fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String, AppError> {
        self.templates
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| AppError::internal(format!("template {name}: {e:#}")))
    }

    /// The people to offer in "assign to": the directory's managers and the users.
    fn people(&self) -> Vec<String> {
        let mut people: Vec<String> = self
            .mailbox
            .config()
            .client_directory()
            .map(|d| d.clients().iter().map(|c| c.manager_name.clone()).collect())
            .unwrap_or_default();
        people.extend(self.config.users.iter().map(|u| u.name.clone()));
        people.sort();
        people.dedup();
        people
    }
}

/// An error as a page.
pub(crate) fn error_page(st: &AppState, session: Option<&SessionInfo>, e: &AppError) -> Response {
    let ctx = minijinja::context! {
        mailbox => st.mailbox.config().mailbox.clone(),
        user => session.map(|s| s.user.clone()),
        csrf => session.map(|s| s.csrf.clone()),
        title => e.status.canonical_reason().unwrap_or("Error"),
        error => e.message.clone(),
        status => e.status.as_u16(),
    };
    match st.render("error.html", ctx) {
        Ok(body) => html(e.status, body),
        Err(_) => (e.status, e.message.clone()).into_response(),
    }
}

/// `path` when it is a page of the queue to come back to after signing in.
pub(crate) fn safe_next(path: &str) -> Option<String> {
    if path == "/" {
        return None;
    }
    let id = path.strip_prefix("/messages/")?;
    parse_id(id).ok().map(|id| format!("/messages/{id}"))
}

/// A notice after a change, by code (no text from the URL reaches the page).
fn notice_text(code: &str) -> Option<&'static str> {
    match code {
        "assigned" => Some("The message was assigned."),
        "called-back" => Some("The callback was recorded: the message left the queue."),
        "deleted" => Some("The message was deleted."),
        _ => None,
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct QueueQuery {
    notice: Option<String>,
    id: Option<String>,
}

pub(crate) async fn queue(
    State(st): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Query(q): Query<QueueQuery>,
) -> Response {
    let notice = q.notice.as_deref().and_then(notice_text);
    let notice_id = q.id.as_deref().and_then(|i| parse_id(i).ok()).map(|i| i.to_string());
    match queue_page(&st, &session, StatusCode::OK, notice, notice_id, None).await {
        Ok(r) => r,
        Err(e) => error_page(&st, Some(&session), &e),
    }
}

async fn queue_page(
    st: &AppState,
    session: &SessionInfo,
    status: StatusCode,
    notice: Option<&str>,
    notice_id: Option<String>,
    error: Option<&AppError>,
) -> Result<Response, AppError> {
    let all = st.mailbox(|m| m.list(false)).await?;
    let viewer = st.viewer();
    let messages = viewer.queue(&all);
    let overdue = messages.iter().filter(|m| m.overdue).count();
    let mut returned: Vec<&StoredMessage> = all.iter().filter(|m| m.followup.is_called_back()).collect();
    returned.sort_by_key(|m| std::cmp::Reverse(called_back_at(m)));
    let returned: Vec<MessageView> =
        returned.into_iter().take(RECENTLY_RETURNED).map(|m| viewer.message(m, false)).collect();
    let ctx = minijinja::context! {
        mailbox => st.mailbox.config().mailbox.clone(),
        timezone => st.mailbox.config().timezone_name().to_owned(),
        user => session.user.clone(),
        csrf => session.csrf.clone(),
        title => "Callback queue",
        messages => minijinja::value::Serde(&messages),
        overdue => overdue,
        overdue_after => humanize(st.config.overdue_after),
        returned => minijinja::value::Serde(&returned),
        people => st.people(),
        notice => notice,
        notice_id => notice_id,
        error => error.map(|e| e.message.clone()),
    };
    Ok(html(status, st.render("queue.html", ctx)?))
}

fn called_back_at(m: &StoredMessage) -> Option<Timestamp> {
    match &m.followup {
        voicemail_core::followup::FollowUp::CalledBack { at, .. } => Some(*at),
        _ => None,
    }
}

fn humanize(d: std::time::Duration) -> String {
    let m = d.as_secs() / 60;
    match m {
        m if m % 1440 == 0 => format!("{} d", m / 1440),
        m if m % 60 == 0 => format!("{} h", m / 60),
        m if m > 60 => format!("{} h {} min", m / 60, m % 60),
        m => format!("{m} min"),
    }
}

pub(crate) async fn message(
    State(st): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
) -> Response {
    match message_page(&st, &session, &id, StatusCode::OK, None).await {
        Ok(r) => r,
        Err(e) => error_page(&st, Some(&session), &e),
    }
}

async fn message_page(
    st: &AppState,
    session: &SessionInfo,
    id: &str,
    status: StatusCode,
    error: Option<&AppError>,
) -> Result<Response, AppError> {
    let m = st.message(id).await?;
    let view = st.viewer().message(&m, true);
    let ctx = minijinja::context! {
        mailbox => st.mailbox.config().mailbox.clone(),
        timezone => st.mailbox.config().timezone_name().to_owned(),
        user => session.user.clone(),
        csrf => session.csrf.clone(),
        title => format!("Message from {}", view.caller),
        m => minijinja::value::Serde(&view),
        people => st.people(),
        error => error.map(|e| e.message.clone()),
    };
    Ok(html(status, st.render("message.html", ctx)?))
}

pub(crate) async fn audio(State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    match st.audio(&id, &headers).await {
        Ok(r) => r,
        Err(e) => (e.status, [(CONTENT_TYPE, "text/plain; charset=utf-8")], e.message).into_response(),
    }
}

/// The fields of the forms that change a message (each uses some).
#[derive(Deserialize, Default)]
pub(crate) struct ActionForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    note: Option<String>,
    /// `queue` to come back to the queue; the message's page otherwise.
    #[serde(default)]
    back: Option<String>,
}

enum Action {
    Assign,
    CalledBack,
    Delete,
}

pub(crate) async fn assign(
    st: State<AppState>,
    session: Extension<SessionInfo>,
    id: Path<String>,
    form: Form<ActionForm>,
) -> Response {
    act(st, session, id, form, Action::Assign).await
}

pub(crate) async fn called_back(
    st: State<AppState>,
    session: Extension<SessionInfo>,
    id: Path<String>,
    form: Form<ActionForm>,
) -> Response {
    act(st, session, id, form, Action::CalledBack).await
}

pub(crate) async fn delete(
    st: State<AppState>,
    session: Extension<SessionInfo>,
    id: Path<String>,
    form: Form<ActionForm>,
) -> Response {
    act(st, session, id, form, Action::Delete).await
}

async fn act(
    State(st): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
    action: Action,
) -> Response {
    let to_queue = form.back.as_deref() == Some("queue");
    if let Err(e) = check_csrf(&session, form.csrf.as_deref()) {
        return error_page(&st, Some(&session), &e);
    }
    let result = match parse_id(&id) {
        Err(e) => Err(e),
        Ok(mid) => {
            let by = session.user.clone();
            let now = Timestamp::now();
            match action {
                Action::Assign => {
                    let to = form.to.unwrap_or_default().trim().to_owned();
                    st.mailbox(move |m| m.assign(&mid, &to, &by, now)).await.map(|_| "assigned")
                }
                Action::CalledBack => {
                    let note = form.note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
                    st.mailbox(move |m| m.called_back(&mid, &by, note.as_deref(), now)).await.map(|_| "called-back")
                }
                Action::Delete => st.mailbox(move |m| m.delete(&mid, None, &by, now)).await.map(|_| "deleted"),
            }
        }
    };
    match result {
        Ok(done) => {
            tracing::info!(%id, user = %session.user, done, "web: message changed");
            let location = if to_queue || done == "deleted" || done == "called-back" {
                format!("/?notice={done}&id={id}")
            } else {
                format!("/messages/{id}")
            };
            redirect(&location)
        }
        Err(e) => {
            let page = if to_queue || matches!(e.kind, "invalid-id" | "not-found") {
                queue_page(&st, &session, e.status, None, None, Some(&e)).await
            } else {
                message_page(&st, &session, &id, e.status, Some(&e)).await
            };
            page.unwrap_or_else(|_| error_page(&st, Some(&session), &e))
        }
    }
}

fn redirect(location: &str) -> Response {
    let value = HeaderValue::try_from(location).unwrap_or(HeaderValue::from_static("/"));
    (StatusCode::SEE_OTHER, [(LOCATION, value)]).into_response()
}

#[derive(Deserialize, Default)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

pub(crate) async fn login_form(State(st): State<AppState>, Query(q): Query<NextQuery>) -> Response {
    login_page(&st, StatusCode::OK, q.next.as_deref().and_then(safe_next), None)
}

fn login_page(st: &AppState, status: StatusCode, next: Option<String>, error: Option<&str>) -> Response {
    let token = random_token();
    let secure = if st.config.secure_cookies() { "; Secure" } else { "" };
    let cookie = format!("{LOGIN_COOKIE}={token}; Path=/login; Max-Age=3600; HttpOnly; SameSite=Strict{secure}");
    let ctx = minijinja::context! {
        mailbox => st.mailbox.config().mailbox.clone(),
        title => "Sign in",
        csrf => token,
        next => next,
        error => error,
        passwords => !st.config.users.is_empty(),
    };
    match st.render("login.html", ctx) {
        Ok(body) => {
            let mut r = html(status, body);
            if let Ok(v) = HeaderValue::try_from(cookie) {
                r.headers_mut().append(SET_COOKIE, v);
            }
            r
        }
        Err(e) => error_page(st, None, &e),
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    next: Option<String>,
}

pub(crate) async fn login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = form.next.as_deref().and_then(safe_next);
    let sent = cookie(&headers, LOGIN_COOKIE);
    let fresh = matches!((sent, form.csrf.as_deref()), (Some(c), Some(f)) if same_secret(c, f));
    if !fresh {
        return login_page(
            &st,
            StatusCode::FORBIDDEN,
            next,
            Some("The sign-in form expired or came from another site: please sign in again."),
        );
    }
    match sign_in(&st, peer, &form.username, &form.password).await {
        Ok(session) => {
            let mut r = redirect(next.as_deref().unwrap_or("/"));
            r.headers_mut().append(SET_COOKIE, st.session_cookie(&session.token));
            if let Ok(v) = HeaderValue::try_from(format!("{LOGIN_COOKIE}=; Path=/login; Max-Age=0")) {
                r.headers_mut().append(SET_COOKIE, v);
            }
            r
        }
        Err(e) => {
            let mut r = login_page(&st, e.status, next, Some(&e.message));
            if let Some(wait) = retry_after(&e) {
                r.headers_mut().insert(RETRY_AFTER, wait);
            }
            r
        }
    }
}

/// `Retry-After` for a refused sign-in.
pub(crate) fn retry_after(e: &AppError) -> Option<HeaderValue> {
    (e.status == StatusCode::TOO_MANY_REQUESTS).then(|| HeaderValue::from(crate::auth::FAILURE_WINDOW.as_secs()))
}

/// Checks a user name and password, within the rate limit; opens a session.
pub(crate) async fn sign_in(
    st: &AppState,
    peer: SocketAddr,
    username: &str,
    password: &str,
) -> Result<SessionInfo, AppError> {
    let ip = peer.ip();
    // No configured name is longer: a longer one is cut (it matches nobody), so that the rate
    // limit's keys and the log stay small.
    let username: String = username.trim().chars().take(MAX_USER_NAME_LEN + 1).collect();
    let username = username.as_str();
    if let Err(wait) = st.limiter.check(ip, username, Instant::now()) {
        tracing::debug!(%ip, user = ?username, "web: sign-in refused: too many failures");
        return Err(AppError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            format!("Too many failed sign-ins: try again in {} min.", wait.div_ceil(60)),
        ));
    }
    let user = st.config.users.iter().find(|u| u.name == username);
    let hash = user.map_or_else(|| st.dummy_hash.clone(), |u| u.password_hash.clone());
    let password = password.to_owned();
    let ok = if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
        false
    } else {
        let _permit = st.hashing.acquire().await.map_err(|e| AppError::internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .map_err(|e| AppError::internal(e.to_string()))?
    };
    match user {
        Some(u) if ok => {
            st.limiter.succeeded(&u.name);
            tracing::info!(%ip, user = %u.name, "web: signed in");
            Ok(st.sessions.open(&u.name, false, st.config.session_lifetime, Instant::now()))
        }
        _ => {
            tracing::warn!(%ip, user = ?username, "web: sign-in failed");
            if st.limiter.failed(ip, username, Instant::now()) {
                tracing::warn!(%ip, user = ?username, "web: too many failed sign-ins: locked out for 15 min");
            }
            Err(AppError::new(StatusCode::UNAUTHORIZED, "wrong-password", "Wrong user name or password."))
        }
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

pub(crate) async fn logout(
    State(st): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(e) = check_csrf(&session, form.csrf.as_deref()) {
        return error_page(&st, Some(&session), &e);
    }
    st.sessions.close(&session.token);
    let mut r = if st.config.users.is_empty() {
        html(StatusCode::OK, "<!doctype html><title>Signed out</title><p>Signed out.</p>".to_owned())
    } else {
        redirect("/login")
    };
    r.headers_mut().append(SET_COOKIE, st.clear_cookie());
    r
}
