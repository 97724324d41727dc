//! What the HTTP tests share: a mailbox with recorded messages, the app with a simulated
//! client address, and a client that keeps cookies.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use jiff::Timestamp;
use tower::ServiceExt;
use voicemail_core::config::Config;
use voicemail_core::{CallSetup, CallState, Event, Input, Mailbox, MessageMeta, Output};
use voicemail_web::WebConfig;

pub const PASSWORD: &str = "correct horse battery";

/// A mailbox in `dir/spool` (UTC, no delivery target).
pub fn mailbox(dir: &Path) -> Mailbox {
    let mut c = Config::default_embedded();
    c.spool = dir.join("spool");
    c.delivery.maildir = None;
    c.store.min_free_bytes = 0;
    c.load_prompts().unwrap();
    Mailbox::open(c).unwrap()
}

/// The `[web]` table with user `anna` (and `extra` lines appended to the table).
pub fn web_config(extra: &str) -> WebConfig {
    let hash = voicemail_web::auth::hash_password_for_tests(PASSWORD).unwrap();
    let text = format!(
        "[web]\nlisten = \"127.0.0.1:0\"\noverdue_after = \"1h\"\n{extra}\n[[web.users]]\nname = \"anna\"\npassword_hash = \"{hash}\"\n"
    );
    WebConfig::from_toml_str(&text).unwrap().unwrap()
}

/// Records a call from `caller` (display name `name`) that started `ago` before now, with
/// `seconds` of audio, and stores it.
pub fn record(mailbox: &Mailbox, caller: &str, name: Option<&str>, ago: Duration, seconds: u32) -> MessageMeta {
    let started = Timestamp::now() - ago;
    let mut setup = CallSetup::new(caller, started);
    setup.caller_name = name.map(str::to_owned);
    let voicemail_core::StartedCall { mut call, lease } = mailbox.start_call(setup, Instant::now()).unwrap();
    let mut now = Instant::now();
    let drain = |call: &mut voicemail_core::Call| -> (Instant, Option<MessageMeta>) {
        let mut meta = None;
        loop {
            match call.poll_output() {
                Output::Event(Event::MessageRecorded(m)) => meta = Some(*m),
                Output::Event(_) | Output::SendRtp(_) => {}
                Output::Timeout(t) => return (t, meta),
            }
        }
    };
    call.handle_input(Input::Answered(now)).unwrap();
    let (mut deadline, _) = drain(&mut call);
    while call.state() != CallState::Recording {
        now = deadline.max(now);
        call.handle_input(Input::Tick(now)).unwrap();
        deadline = drain(&mut call).0;
    }
    let (mut seq, mut ts) = (100u16, 1000u32);
    for _ in 0..seconds * 50 {
        now += Duration::from_millis(20);
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&7u32.to_be_bytes());
        p.extend((0..160u32).map(|i| (((ts.wrapping_add(i)) / 8) % 64) as u8 | 0x10));
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(160);
        call.handle_input(Input::Rtp(now, &p)).unwrap();
        let _ = drain(&mut call);
    }
    now += Duration::from_millis(20);
    call.handle_input(Input::Hangup(now)).unwrap();
    let meta = drain(&mut call).1.unwrap();
    mailbox.finish_call(lease, meta, Timestamp::now()).unwrap()
}

/// An answer: status, headers, body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_owned())
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
    }
}

/// A browser-like client of the app: keeps cookies, comes from `peer`.
pub struct Client {
    pub app: Router,
    pub peer: SocketAddr,
    pub cookies: BTreeMap<String, String>,
}

impl Client {
    pub fn new(app: &Router, peer: &str) -> Client {
        Client { app: app.clone(), peer: peer.parse().unwrap(), cookies: BTreeMap::new() }
    }

    pub async fn send(&mut self, method: Method, uri: &str, headers: &[(&str, &str)], body: Body) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header("cookie", jar.join("; "));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let app = self.app.clone().layer(MockConnectInfo(self.peer));
        let response = app.oneshot(req.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 64 << 20).await.unwrap().to_vec();
        let answer = Answer { status, headers, body };
        for c in answer.set_cookies() {
            let pair = c.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() || c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        answer
    }

    pub async fn get(&mut self, uri: &str) -> Answer {
        self.send(Method::GET, uri, &[], Body::empty()).await
    }

    pub async fn get_with(&mut self, uri: &str, headers: &[(&str, &str)]) -> Answer {
        self.send(Method::GET, uri, headers, Body::empty()).await
    }

    /// Posts a form (`application/x-www-form-urlencoded`).
    pub async fn post_form(&mut self, uri: &str, fields: &[(&str, &str)]) -> Answer {
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
        self.send(
            Method::POST,
            uri,
            &[("content-type", "application/x-www-form-urlencoded")],
            Body::from(body.join("&")),
        )
        .await
    }

    /// Sends JSON with the given CSRF header (if any).
    pub async fn json(&mut self, method: Method, uri: &str, csrf: Option<&str>, body: serde_json::Value) -> Answer {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(c) = csrf {
            headers.push(("x-csrf-token", c));
        }
        self.send(method, uri, &headers, Body::from(body.to_string())).await
    }

    /// Signs in through the login form; returns the session's CSRF token.
    pub async fn sign_in(&mut self, user: &str, password: &str) -> Answer {
        let form = self.get("/login").await;
        assert_eq!(form.status, StatusCode::OK);
        let token = hidden(&form.text(), "csrf");
        self.post_form("/login", &[("csrf", &token), ("username", user), ("password", password)]).await
    }

    /// The CSRF token of the signed-in session (from the queue page).
    pub async fn csrf(&mut self) -> String {
        let page = self.get("/").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        hidden(&page.text(), "csrf")
    }
}

/// The value of the first hidden input `name` in a page.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("no hidden {name} in {page}")) + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
