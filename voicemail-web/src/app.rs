//! The app: shared state, routes, the sign-in middleware, errors, and the recordings.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE,
    LOCATION, REFERRER_POLICY, SET_COOKIE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Semaphore;
use voicemail_core::followup::FollowUpError;
use voicemail_core::store::{StoreError, StoredMessage};
use voicemail_core::{Mailbox, MailboxError, MessageId};

use crate::auth::{LoginLimiter, SessionInfo, Sessions, same_secret};
use crate::config::{WebConfig, check_user_name};
use crate::range::RangeRequest;
use crate::view::Viewer;
use crate::{api, pages};

/// The header the JSON API takes the CSRF token in.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// Password checks running at once (each takes 19 MiB and some CPU with the default cost).
const HASHES_AT_ONCE: usize = 2;

pub(crate) struct Inner {
    pub mailbox: Mailbox,
    pub config: WebConfig,
    pub sessions: Sessions,
    pub limiter: LoginLimiter,
    pub templates: minijinja::Environment<'static>,
    pub hashing: Semaphore,
    /// Checked against the password of an unknown user, so that it costs like a known one.
    pub dummy_hash: String,
}

/// The state every handler gets.
#[derive(Clone)]
pub(crate) struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The queue's routes over `mailbox`. Serve it with [`serve`] (the handlers need the peer's
/// address: `into_make_service_with_connect_info::<SocketAddr>()`).
pub fn router(mailbox: Mailbox, config: WebConfig) -> Router {
    let mut templates = minijinja::Environment::new();
    for (name, source) in [
        ("base.html", include_str!("../templates/base.html")),
        ("queue.html", include_str!("../templates/queue.html")),
        ("message.html", include_str!("../templates/message.html")),
        ("login.html", include_str!("../templates/login.html")),
        ("error.html", include_str!("../templates/error.html")),
    ] {
        // The templates are part of the binary and covered by the tests.
        #[allow(clippy::expect_used)]
        templates.add_template(name, source).expect("a valid built-in template");
    }
    // The hash of a fixed password with the cost of the first user's hash (the default cost
    // otherwise): a wrong user name takes as long to refuse as a wrong password.
    let dummy_hash = config
        .users
        .first()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".to_owned());
    let state = AppState(Arc::new(Inner {
        mailbox,
        config,
        sessions: Sessions::default(),
        limiter: LoginLimiter::default(),
        templates,
        hashing: Semaphore::new(HASHES_AT_ONCE),
        dummy_hash,
    }));

    let signed_in = Router::new()
        .route("/", get(pages::queue))
        .route("/logout", post(pages::logout))
        .route("/messages/{id}", get(pages::message))
        .route("/messages/{id}/audio", get(pages::audio))
        .route("/messages/{id}/assign", post(pages::assign))
        .route("/messages/{id}/called-back", post(pages::called_back))
        .route("/messages/{id}/delete", post(pages::delete))
        .route("/api/session", get(api::session))
        .route("/api/logout", post(api::logout))
        .route("/api/messages", get(api::list))
        .route("/api/messages/{id}", get(api::show).delete(api::delete))
        .route("/api/messages/{id}/audio", get(api::audio))
        .route("/api/messages/{id}/assign", post(api::assign))
        .route("/api/messages/{id}/called-back", post(api::called_back))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));

    Router::new()
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/api/login", post(api::login))
        .route("/static/app.js", get(script))
        .route("/static/style.css", get(style))
        .merge(signed_in)
        .fallback(not_found)
        .layer(middleware::map_response(security_headers))
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` completes, then lets requests in progress
/// finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

async fn script() -> Response {
    static_file("text/javascript; charset=utf-8", include_str!("../static/app.js"))
}

async fn style() -> Response {
    static_file("text/css; charset=utf-8", include_str!("../static/style.css"))
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    ([(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")], body).into_response()
}

async fn not_found(State(st): State<AppState>, req: Request) -> Response {
    let api = req.uri().path().starts_with("/api/");
    st.fail(api, None, AppError::new(StatusCode::NOT_FOUND, "not-found", "there is no such page"))
}

/// Headers on every answer: no framing, no sniffing, scripts and media from here only,
/// nothing cached (pages show callers' numbers).
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Whether the method changes nothing.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Signs the request in (session cookie, or a trusted proxy's header), checks the CSRF
/// header of the API's state-changing requests, and hands the session to the handler.
async fn authenticate(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let proxy_user = match st.proxy_user(peer.ip(), req.headers()) {
        Ok(u) => u,
        Err(e) => return st.fail(api, None, e),
    };
    let now = Instant::now();
    let existing =
        cookie(req.headers(), st.cookie_name()).and_then(|token| st.sessions.get(token, proxy_user.as_deref(), now));
    let mut new_cookie = None;
    let session = match (existing, proxy_user) {
        (Some(s), _) => s,
        (None, Some(user)) => {
            let s = st.sessions.open(&user, true, st.config.session_lifetime, now);
            tracing::info!(%user, proxy = %peer.ip(), "web: signed in by the proxy");
            new_cookie = Some(st.session_cookie(&s.token));
            s
        }
        (None, None) => return st.unauthenticated(api, req.uri().path()),
    };
    if api && !is_safe(req.method()) {
        let given = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !given.is_some_and(|g| same_secret(g, &session.csrf)) {
            return st.fail(api, Some(&session), AppError::csrf());
        }
    }
    req.extensions_mut().insert(session);
    let mut response = next.run(req).await;
    if let Some(c) = new_cookie {
        response.headers_mut().append(SET_COOKIE, c);
    }
    response
}

/// The value of cookie `name` in the request, if sent.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

impl AppState {
    /// The session cookie's name: `__Host-` prefixed when it is `Secure`.
    pub(crate) fn cookie_name(&self) -> &'static str {
        if self.config.secure_cookies() { "__Host-vm_session" } else { "vm_session" }
    }

    fn cookie_attributes(&self) -> &'static str {
        if self.config.secure_cookies() {
            "Path=/; HttpOnly; SameSite=Strict; Secure"
        } else {
            "Path=/; HttpOnly; SameSite=Strict"
        }
    }

    /// `Set-Cookie` for a new session.
    pub(crate) fn session_cookie(&self, token: &str) -> HeaderValue {
        let value = format!(
            "{}={token}; Max-Age={}; {}",
            self.cookie_name(),
            self.config.session_lifetime.as_secs(),
            self.cookie_attributes()
        );
        HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static("vm_session=; Max-Age=0"))
    }

    /// `Set-Cookie` that removes the session cookie.
    pub(crate) fn clear_cookie(&self) -> HeaderValue {
        let value = format!("{}=; Max-Age=0; {}", self.cookie_name(), self.cookie_attributes());
        HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static("vm_session=; Max-Age=0"))
    }

    /// The user a trusted proxy names on this request: `Ok(None)` when the request does not
    /// come from a trusted proxy or carries no header; an error when the name is not valid.
    fn proxy_user(&self, peer: IpAddr, headers: &HeaderMap) -> Result<Option<String>, AppError> {
        let Some(proxy) = &self.config.proxy else { return Ok(None) };
        if !proxy.trusted.contains(&peer) {
            return Ok(None);
        }
        let mut values = headers.get_all(&proxy.header).iter();
        let (Some(value), None) = (values.next(), values.next()) else { return Ok(None) };
        let name = value.to_str().ok().map(str::to_owned).filter(|n| check_user_name(n).is_ok()).ok_or_else(|| {
            AppError::new(StatusCode::FORBIDDEN, "bad-proxy-user", "the proxy named a user that is not valid")
        })?;
        Ok(Some(name))
    }

    /// The answer to a request without a session.
    fn unauthenticated(&self, api: bool, path: &str) -> Response {
        if api {
            return api::error(&AppError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "sign in first"));
        }
        if self.config.users.is_empty() {
            return self.fail(
                false,
                None,
                AppError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "sign in through the office's web proxy"),
            );
        }
        let next = pages::safe_next(path).map(|n| format!("?next={n}")).unwrap_or_default();
        let location = HeaderValue::try_from(format!("/login{next}")).unwrap_or(HeaderValue::from_static("/login"));
        (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response()
    }

    /// An error answer: JSON for the API, a page otherwise.
    pub(crate) fn fail(&self, api: bool, session: Option<&SessionInfo>, e: AppError) -> Response {
        if api { api::error(&e) } else { pages::error_page(self, session, &e) }
    }

    /// Builds views at the current time.
    pub(crate) fn viewer(&self) -> Viewer<'_> {
        Viewer { config: self.mailbox.config(), overdue_after: self.config.overdue_after, now: jiff::Timestamp::now() }
    }

    /// Runs a (blocking) mailbox call on the blocking pool.
    pub(crate) async fn mailbox<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Mailbox) -> Result<T, MailboxError> + Send + 'static,
    ) -> Result<T, AppError> {
        let mailbox = self.mailbox.clone();
        match tokio::task::spawn_blocking(move || f(&mailbox)).await {
            Ok(r) => r.map_err(AppError::from),
            Err(e) => Err(AppError::internal(format!("the mailbox task failed: {e}"))),
        }
    }

    /// One message by the id from the URL (400 when malformed, 404 when unknown).
    pub(crate) async fn message(&self, id: &str) -> Result<StoredMessage, AppError> {
        let id = parse_id(id)?;
        self.mailbox(move |m| m.show(&id)).await
    }

    /// The recording of message `id`, with range requests. It comes through the mailbox:
    /// from this node's spool, or from the shared store when another node recorded it.
    pub(crate) async fn audio(&self, id: &str, headers: &HeaderMap) -> Result<Response, AppError> {
        let id = parse_id(id)?;
        let gone = || AppError::new(StatusCode::NOT_FOUND, "no-recording", "this message has no recording (any more)");
        let audio = match self.mailbox(move |m| m.audio(&id)).await? {
            Some(bytes) => bytes,
            None => return Err(gone()),
        };
        let len = audio.len() as u64;
        let range = match headers.get(axum::http::header::IF_RANGE) {
            // No validator is ever sent, so none can match: the whole file (RFC 9110 §13.1.5).
            Some(_) => RangeRequest::Full,
            None => RangeRequest::parse(headers.get(axum::http::header::RANGE).and_then(|v| v.to_str().ok()), len),
        };
        let (status, first, count) = match range {
            RangeRequest::Full => (StatusCode::OK, 0, len),
            RangeRequest::Partial { first, last } => (StatusCode::PARTIAL_CONTENT, first, last - first + 1),
            RangeRequest::Unsatisfiable => {
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(CONTENT_RANGE, format!("bytes */{len}")), (ACCEPT_RANGES, "bytes".to_owned())],
                )
                    .into_response());
            }
        };
        let mut audio = audio;
        let end = usize::try_from(first.saturating_add(count)).unwrap_or(usize::MAX).min(audio.len());
        audio.truncate(end);
        audio.drain(..usize::try_from(first).unwrap_or(usize::MAX).min(end));
        let body = Body::from(audio);
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let h = response.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
        h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(CONTENT_LENGTH, HeaderValue::from(count));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
        if status == StatusCode::PARTIAL_CONTENT {
            let value = format!("bytes {first}-{}/{len}", first + count - 1);
            if let Ok(v) = HeaderValue::try_from(value) {
                h.insert(CONTENT_RANGE, v);
            }
        }
        Ok(response)
    }
}

/// A message id from a URL.
pub(crate) fn parse_id(id: &str) -> Result<MessageId, AppError> {
    MessageId::parse(id).map_err(|_| AppError::new(StatusCode::BAD_REQUEST, "invalid-id", "not a message id"))
}

/// Checks the CSRF token of a form.
pub(crate) fn check_csrf(session: &SessionInfo, given: Option<&str>) -> Result<(), AppError> {
    if given.is_some_and(|g| same_secret(g, &session.csrf)) { Ok(()) } else { Err(AppError::csrf()) }
}

/// Why a request failed: a status, a short stable kind for programs, and words for people.
#[derive(Debug, Clone)]
pub(crate) struct AppError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl AppError {
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into() }
    }

    pub(crate) fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "the request did not carry this session's CSRF token: reload the page and try again",
        )
    }

    pub(crate) fn internal(message: String) -> Self {
        tracing::error!(error = %message, "web: internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<MailboxError> for AppError {
    fn from(e: MailboxError) -> Self {
        let message = e.to_string();
        let (status, kind) = match &e {
            MailboxError::InvalidId(_) => (StatusCode::BAD_REQUEST, "invalid-id"),
            MailboxError::Store(StoreError::NotFound(_)) => (StatusCode::NOT_FOUND, "not-found"),
            MailboxError::Store(StoreError::Deleted { .. }) => (StatusCode::GONE, "deleted"),
            MailboxError::Store(StoreError::Recording(_)) => (StatusCode::CONFLICT, "recording"),
            MailboxError::Store(StoreError::FollowUp { id, source: FollowUpError::NotCalledBack { state } }) => {
                // The web offers no forced deletion: say what to do instead.
                let message = format!(
                    "message {id} is {state} and has not been called back: record the callback first, then delete it"
                );
                return AppError::new(StatusCode::CONFLICT, "not-called-back", message);
            }
            MailboxError::Store(StoreError::FollowUp { source, .. }) => match source {
                FollowUpError::InvalidTransition { .. } => (StatusCode::CONFLICT, "invalid-transition"),
                FollowUpError::InvalidText { .. } => (StatusCode::BAD_REQUEST, "invalid-text"),
                _ => (StatusCode::CONFLICT, "refused"),
            },
            _ => return AppError::internal(message),
        };
        AppError::new(status, kind, message)
    }
}
