//! The queue over HTTP (axum's router driven in-process, no browser): sign-in is required
//! everywhere but the login page; state-changing forms and API calls without the session's
//! CSRF token are refused; recordings honour range requests (206 with the right
//! Content-Range, 416 for ranges that cannot be served); malformed ids are 400 and unknown
//! ones 404; deleting a message before its callback is refused (the error shown) and works
//! after it; failed sign-ins are rate-limited; a trusted proxy's header signs in, an untrusted
//! one's does not; caller-supplied text is escaped; the queue lists the messages not called
//! back, oldest first, overdue ones marked.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::*;
use voicemail_core::followup::FollowUp;
use voicemail_core::store::Lifecycle;

const PEER: &str = "192.0.2.10:40000";

fn make_app(dir: &std::path::Path, extra: &str) -> (voicemail_core::Mailbox, axum::Router) {
    let mailbox = mailbox(dir);
    let router = voicemail_web::router(mailbox.clone(), web_config(extra));
    (mailbox, router)
}

#[tokio::test]
async fn everything_but_the_login_page_needs_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let (mailbox, app) = make_app(dir.path(), "");
    let meta = record(&mailbox, "+74951234567", None, Duration::from_secs(60), 1);
    let mut c = Client::new(&app, PEER);
    let id = meta.id.as_str();

    for page in ["/".to_owned(), format!("/messages/{id}"), format!("/messages/{id}/audio")] {
        let a = c.get(&page).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{page}");
        assert!(a.header("location").unwrap().starts_with("/login"), "{page}");
    }
    let a = c.get(&format!("/messages/{id}")).await;
    assert_eq!(a.header("location").unwrap(), format!("/login?next=/messages/{id}"), "back to the page after sign-in");
    let a = c.post_form(&format!("/messages/{id}/called-back"), &[("note", "x")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    for api in ["/api/messages".to_owned(), format!("/api/messages/{id}"), format!("/api/messages/{id}/audio")] {
        let a = c.get(&api).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{api}");
        assert_eq!(a.json()["kind"], "unauthenticated");
    }
    let a = c.json(Method::DELETE, &format!("/api/messages/{id}"), None, serde_json::json!({})).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // A made-up session cookie is no session.
    c.cookies.insert("vm_session".to_owned(), "ab".repeat(32));
    assert_eq!(c.get("/").await.status, StatusCode::SEE_OTHER);
    assert_eq!(mailbox.show(&meta.id).unwrap().followup, FollowUp::New, "nothing changed");

    // The login page and the static files are public.
    assert_eq!(c.get("/login").await.status, StatusCode::OK);
    assert_eq!(c.get("/static/app.js").await.status, StatusCode::OK);
    assert_eq!(c.get("/static/style.css").await.status, StatusCode::OK);
}

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let (_mailbox, app) = make_app(dir.path(), "");
    let mut c = Client::new(&app, PEER);
    let a = c.sign_in("anna", "wrong").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.text().contains("Wrong user name or password"), "{}", a.text());
    let a = c.sign_in("nobody", PASSWORD).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "an unknown user is refused like a wrong password");
    assert!(a.text().contains("Wrong user name or password"));

    let a = c.sign_in("anna", PASSWORD).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text());
    let cookie = a.set_cookies().into_iter().find(|c| c.starts_with("vm_session=")).unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "http: no Secure: {cookie}");
    let page = c.get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("anna"));
    for (h, v) in [("x-frame-options", "DENY"), ("x-content-type-options", "nosniff"), ("cache-control", "no-store")] {
        assert_eq!(page.header(h).as_deref(), Some(v), "{h}");
    }
    assert!(page.header("content-security-policy").unwrap().contains("script-src 'self'"));

    // The login form needs its own token: a form posted from elsewhere is refused.
    let mut other = Client::new(&app, PEER);
    let a = other.post_form("/login", &[("username", "anna"), ("password", PASSWORD)]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(!other.cookies.contains_key("vm_session"));

    // Signing out ends the session.
    let csrf = c.csrf().await;
    let old = c.cookies.get("vm_session").cloned().unwrap();
    let a = c.post_form("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    c.cookies.insert("vm_session".to_owned(), old);
    assert_eq!(c.get("/").await.status, StatusCode::SEE_OTHER, "the old cookie is no session any more");

    // With an https public URL the cookie is Secure and __Host- prefixed.
    let (_m, secure) = make_app(dir.path(), "public_url = \"https://vm.example.com\"");
    let mut s = Client::new(&secure, PEER);
    let a = s.sign_in("anna", PASSWORD).await;
    let cookie = a.set_cookies().into_iter().find(|c| c.starts_with("__Host-vm_session=")).unwrap();
    assert!(cookie.contains("; Secure") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));

    // The API signs in with JSON and says the CSRF token.
    let mut api = Client::new(&app, PEER);
    let a =
        api.json(Method::POST, "/api/login", None, serde_json::json!({"username": "anna", "password": PASSWORD})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let token = a.json()["csrf_token"].as_str().unwrap().to_owned();
    let s = api.get("/api/session").await.json();
    assert_eq!(s["user"], "anna");
    assert_eq!(s["csrf_token"], token.as_str());
}

#[tokio::test]
async fn changes_without_the_csrf_token_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mailbox, app) = make_app(dir.path(), "");
    let meta = record(&mailbox, "+74951234567", None, Duration::from_secs(60), 1);
    let id = meta.id.as_str();
    let mut c = Client::new(&app, PEER);
    c.sign_in("anna", PASSWORD).await;
    let csrf = c.csrf().await;

    // Forms.
    for (action, fields) in
        [("assign", vec![("to", "Boris")]), ("called-back", vec![("note", "done")]), ("delete", vec![])]
    {
        let uri = format!("/messages/{id}/{action}");
        let a = c.post_form(&uri, &fields).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{action} without a token");
        assert!(a.text().contains("CSRF"), "{}", a.text());
        let mut wrong = fields.clone();
        wrong.push(("csrf", "0123"));
        assert_eq!(c.post_form(&uri, &wrong).await.status, StatusCode::FORBIDDEN, "{action} with a wrong token");
    }
    let mut other = Client::new(&app, PEER);
    other.sign_in("anna", PASSWORD).await;
    let others = other.csrf().await;
    assert_ne!(others, csrf, "each session has its own token");
    let a = c.post_form(&format!("/messages/{id}/assign"), &[("to", "Boris"), ("csrf", &others)]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "another session's token");
    assert_eq!(mailbox.show(&meta.id).unwrap().followup, FollowUp::New, "nothing changed");
    assert_eq!(mailbox.show(&meta.id).unwrap().history.len(), 1, "only `recorded`");

    // The JSON API.
    let uri = format!("/api/messages/{id}/assign");
    let a = c.json(Method::POST, &uri, None, serde_json::json!({"to": "Boris"})).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.json()["kind"], "csrf");
    let a = c.json(Method::POST, &uri, Some("nope"), serde_json::json!({"to": "Boris"})).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = c.json(Method::DELETE, &format!("/api/messages/{id}"), None, serde_json::json!({})).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(c.send(Method::POST, "/api/logout", &[], Body::empty()).await.status, StatusCode::FORBIDDEN);
    assert_eq!(mailbox.show(&meta.id).unwrap().followup, FollowUp::New, "nothing changed");

    // With the token, it works.
    let a = c.post_form(&format!("/messages/{id}/assign"), &[("to", "Boris"), ("csrf", &csrf)]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text());
    assert!(matches!(mailbox.show(&meta.id).unwrap().followup, FollowUp::Assigned { ref to, .. } if to == "Boris"));
    let a = c.json(Method::POST, &uri, Some(&csrf), serde_json::json!({"to": "Carol"})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["assigned_to"], "Carol");
    let history = mailbox.show(&meta.id).unwrap().history;
    assert_eq!(history.iter().filter(|h| h.by == "anna").count(), 2, "changes are recorded as made by anna");
}

#[tokio::test]
async fn recordings_are_served_with_range_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (mailbox, app) = make_app(dir.path(), "");
    let meta = record(&mailbox, "+74951234567", None, Duration::from_secs(60), 2);
    let wav = std::fs::read(meta.wav_path.as_ref().unwrap()).unwrap();
    let len = wav.len();
    assert!(len > 30_000, "2 s of 8 kHz 16-bit audio");
    let mut c = Client::new(&app, PEER);
    c.sign_in("anna", PASSWORD).await;

    for base in [format!("/messages/{}/audio", meta.id), format!("/api/messages/{}/audio", meta.id)] {
        let a = c.get(&base).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.header("content-type").as_deref(), Some("audio/wav"));
        assert_eq!(a.header("accept-ranges").as_deref(), Some("bytes"));
        assert_eq!(a.header("content-length"), Some(len.to_string()));
        assert_eq!(a.body, wav, "the whole file");

        for (range, first, last) in [
            ("bytes=0-", 0, len - 1),
            ("bytes=0-99", 0, 99),
            ("bytes=100-199", 100, 199),
            ("bytes=-10", len - 10, len - 1),
            (&format!("bytes={}-", len - 1), len - 1, len - 1),
            (&format!("bytes=10-{}", len * 10), 10, len - 1),
        ] {
            let a = c.get_with(&base, &[("range", range)]).await;
            assert_eq!(a.status, StatusCode::PARTIAL_CONTENT, "{range}");
            assert_eq!(a.header("content-range"), Some(format!("bytes {first}-{last}/{len}")), "{range}");
            assert_eq!(a.header("content-length"), Some((last - first + 1).to_string()), "{range}");
            assert_eq!(a.body, wav[first..=last], "{range}");
        }
        for range in [
            format!("bytes={len}-"),
            format!("bytes={}-{}", len + 5, len + 10),
            "bytes=-0".to_owned(),
            "bytes=20-10".to_owned(),
            "bytes=0-1,5-6".to_owned(),
            "bytes=x-y".to_owned(),
            "bytes=99999999999999999999999-".to_owned(),
        ] {
            let a = c.get_with(&base, &[("range", &range)]).await;
            assert_eq!(a.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
            assert_eq!(a.header("content-range"), Some(format!("bytes */{len}")), "{range}");
            assert!(a.body.is_empty());
        }
        // Another unit is ignored, and so is a Range under an If-Range we cannot match.
        let a = c.get_with(&base, &[("range", "items=0-1")]).await;
        assert_eq!((a.status, a.body.len()), (StatusCode::OK, len));
        let a = c.get_with(&base, &[("range", "bytes=0-1"), ("if-range", "\"abc\"")]).await;
        assert_eq!((a.status, a.body.len()), (StatusCode::OK, len));
        // HEAD says the length without the body.
        let a = c.send(Method::HEAD, &base, &[("range", "bytes=0-9")], Body::empty()).await;
        assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(a.header("content-range"), Some(format!("bytes 0-9/{len}")));
        assert!(a.body.is_empty());
    }
}

#[tokio::test]
async fn ids_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let (mailbox, app) = make_app(dir.path(), "");
    record(&mailbox, "+74951234567", None, Duration::from_secs(60), 1);
    let mut c = Client::new(&app, PEER);
    c.sign_in("anna", PASSWORD).await;
    let csrf = c.csrf().await;
    let unknown = "20990101T000000Z-0123456789abcdef";

    for bad in ["..", ".hidden", "a%2F..%2F..%2Fetc%2Fpasswd", "x%00y", "%E2%98%83", &"a".repeat(300), "a..b"] {
        for uri in [
            format!("/messages/{bad}"),
            format!("/messages/{bad}/audio"),
            format!("/api/messages/{bad}"),
            format!("/api/messages/{bad}/audio"),
        ] {
            let a = c.get(&uri).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}: {}", a.text());
        }
        let a = c.post_form(&format!("/messages/{bad}/called-back"), &[("csrf", &csrf)]).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        let a = c.json(Method::DELETE, &format!("/api/messages/{bad}"), Some(&csrf), serde_json::json!({})).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(a.json()["kind"], "invalid-id");
    }
    for uri in [
        format!("/messages/{unknown}"),
        format!("/messages/{unknown}/audio"),
        format!("/api/messages/{unknown}"),
        format!("/api/messages/{unknown}/audio"),
    ] {
        assert_eq!(c.get(&uri).await.status, StatusCode::NOT_FOUND, "{uri}");
    }
    let a = c.post_form(&format!("/messages/{unknown}/assign"), &[("csrf", &csrf), ("to", "Boris")]).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a =
        c.json(Method::POST, &format!("/api/messages/{unknown}/called-back"), Some(&csrf), serde_json::json!({})).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json()["kind"], "not-found");
    assert_eq!(c.get("/no/such/page").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn deleting_before_the_callback_is_refused_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let (mailbox, app) = make_app(dir.path(), "");
    let a_msg = record(&mailbox, "+74951234567", None, Duration::from_secs(120), 1);
    let b_msg = record(&mailbox, "+74957654321", None, Duration::from_secs(60), 1);
    let mut c = Client::new(&app, PEER);
    c.sign_in("anna", PASSWORD).await;
    let csrf = c.csrf().await;

    // The form: the queue shows the error, the message stays.
    let a = c.post_form(&format!("/messages/{}/delete", a_msg.id), &[("csrf", &csrf), ("back", "queue")]).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let page = a.text();
    assert!(page.contains("class=\"error\"") && page.contains("has not been called back"), "{page}");
    assert!(page.contains(&format!("id=\"m-{}\"", a_msg.id)), "still in the queue");
    // From the message's page, the page shows it.
    let a = c.post_form(&format!("/messages/{}/delete", a_msg.id), &[("csrf", &csrf)]).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(a.text().contains("has not been called back") && a.text().contains("id=\"history\""));
    // The API.
    let a = c.json(Method::DELETE, &format!("/api/messages/{}", b_msg.id), Some(&csrf), serde_json::json!({})).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(a.json()["kind"], "not-called-back");
    for m in [&a_msg, &b_msg] {
        let s = mailbox.show(&m.id).unwrap();
        assert_eq!(s.lifecycle, Lifecycle::Stored);
        assert!(m.wav_path.as_ref().unwrap().is_file());
    }

    // Called back (with a note), then deleted.
    let a = c
        .post_form(&format!("/messages/{}/called-back", a_msg.id), &[("csrf", &csrf), ("note", "will send offer")])
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert!(
        matches!(mailbox.show(&a_msg.id).unwrap().followup, FollowUp::CalledBack { ref by, note: Some(ref n), .. } if by == "anna" && n == "will send offer")
    );
    let a = c.post_form(&format!("/messages/{}/delete", a_msg.id), &[("csrf", &csrf)]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text());
    assert_eq!(mailbox.show(&a_msg.id).unwrap().lifecycle, Lifecycle::Deleted);
    assert!(!a_msg.wav_path.as_ref().unwrap().exists(), "the recording is gone");
    assert_eq!(c.get(&format!("/messages/{}/audio", a_msg.id)).await.status, StatusCode::NOT_FOUND);
    let page = c.get(&format!("/messages/{}", a_msg.id)).await;
    assert_eq!(page.status, StatusCode::OK, "the record and its history stay");
    assert!(page.text().contains("deleted"));

    let uri = format!("/api/messages/{}", b_msg.id);
    let a = c.json(Method::POST, &format!("{uri}/called-back"), Some(&csrf), serde_json::json!({})).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["state"], "called-back");
    let a = c.json(Method::POST, &format!("{uri}/called-back"), Some(&csrf), serde_json::json!({})).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "called back twice");
    let a = c.json(Method::DELETE, &uri, Some(&csrf), serde_json::json!({})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["lifecycle"], "deleted");
}

#[tokio::test]
async fn the_queue_lists_unreturned_calls_oldest_first_overdue_marked() {
    let dir = tempfile::tempdir().unwrap();
    let (mailbox, app) = make_app(dir.path(), "");
    let fresh = record(&mailbox, "+74951110000", Some("<script>alert(1)</script>"), Duration::from_secs(600), 1);
    let old = record(&mailbox, "+7 (495) 222-00-00", None, Duration::from_secs(3 * 3600), 3);
    let done = record(&mailbox, "+74953330000", None, Duration::from_secs(7200), 1);
    let odd = record(&mailbox, "anonymous", None, Duration::from_secs(300), 1);
    mailbox.called_back(&done.id, "boris", Some("ok"), jiff::Timestamp::now()).unwrap();
    let mut c = Client::new(&app, PEER);
    c.sign_in("anna", PASSWORD).await;

    let list = c.get("/api/messages").await.json();
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [old.id.as_str(), fresh.id.as_str(), odd.id.as_str()], "not called back, oldest first");
    assert_eq!(list[0]["overdue"], true);
    assert_eq!(list[1]["overdue"], false);
    assert_eq!(list[0]["tel"], "tel:+74952220000");
    assert_eq!(list[2]["tel"], serde_json::Value::Null);
    assert_eq!(list[0]["duration"], "0:03");
    let all = c.get("/api/messages?all=true").await.json();
    assert_eq!(all.as_array().unwrap().len(), 4);

    let page = c.get("/").await.text();
    let pos = |id: &str| page.find(&format!("id=\"m-{id}\"")).unwrap_or_else(|| panic!("{id} not in {page}"));
    assert!(pos(old.id.as_str()) < pos(fresh.id.as_str()) && pos(fresh.id.as_str()) < pos(odd.id.as_str()));
    assert!(!page.contains(&format!("id=\"m-{}\"", done.id)), "called back: not in the queue");
    assert!(page.contains("class=\"message overdue\""), "the old one is marked");
    assert_eq!(page.matches("Overdue</span>").count(), 1);
    assert!(page.contains("href=\"tel:+74952220000\""));
    assert!(!page.contains("<script>alert(1)"), "caller text is escaped");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;") || page.contains("&lt;script&gt;alert(1)"));
    assert!(page.contains("Recently returned") && page.contains("“ok”"));

    let one = c.get(&format!("/api/messages/{}", done.id)).await.json();
    let events: Vec<&str> =
        one["history"].as_array().unwrap().iter().map(|h| h["event"]["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["recorded", "called-back"]);
    assert_eq!(one["called_back_by"], "boris");
}

#[tokio::test]
async fn failed_sign_ins_are_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let (_mailbox, app) = make_app(dir.path(), "");
    let mut c = Client::new(&app, PEER);
    for i in 0..voicemail_web::auth::MAX_FAILURES {
        assert_eq!(c.sign_in("anna", &format!("guess {i}")).await.status, StatusCode::UNAUTHORIZED);
    }
    let a = c.sign_in("anna", PASSWORD).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "even the right password waits");
    assert!(a.header("retry-after").is_some());
    assert!(a.text().contains("Too many failed sign-ins"));
    let a =
        c.json(Method::POST, "/api/login", None, serde_json::json!({"username": "anna", "password": PASSWORD})).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.json()["kind"], "rate-limited");
    // Another address is refused too: the user name has used up its failures.
    let mut other = Client::new(&app, "192.0.2.11:40000");
    assert_eq!(other.sign_in("anna", PASSWORD).await.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_trusted_proxy_signs_in_with_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let (mailbox, app) = make_app(dir.path(), "[web.proxy]\nheader = \"X-Remote-User\"\ntrusted = [\"127.0.0.1\"]\n");
    let meta = record(&mailbox, "+74951234567", None, Duration::from_secs(60), 1);

    // From the proxy: signed in as the header says, with a session for the CSRF token.
    let mut proxy = Client::new(&app, "127.0.0.1:50000");
    let a = proxy.get_with("/", &[("x-remote-user", "boris")]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.text().contains("boris"));
    assert!(proxy.cookies.contains_key("vm_session"));
    let csrf = hidden(&a.text(), "csrf");
    let a = proxy
        .send(
            Method::POST,
            &format!("/messages/{}/called-back", meta.id),
            &[("x-remote-user", "boris"), ("content-type", "application/x-www-form-urlencoded")],
            Body::from(format!("csrf={csrf}&note=ok")),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text());
    assert!(matches!(mailbox.show(&meta.id).unwrap().followup, FollowUp::CalledBack { ref by, .. } if by == "boris"));
    // The proxy's session is not valid for another user, nor without the proxy.
    let a = proxy.get_with("/api/session", &[("x-remote-user", "carol")]).await;
    assert_eq!(a.json()["user"], "carol", "a new session for the user the proxy names");
    let cookie = proxy.cookies.get("vm_session").cloned().unwrap();
    let mut direct = Client::new(&app, "192.0.2.10:40000");
    direct.cookies.insert("vm_session".to_owned(), cookie);
    assert_eq!(direct.get("/api/session").await.status, StatusCode::UNAUTHORIZED);
    // The header from anywhere else is ignored.
    let a = direct.get_with("/api/session", &[("x-remote-user", "boris")]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = direct.get_with("/", &[("x-remote-user", "boris")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    // A name that is not valid is refused.
    let a = proxy.get_with("/", &[("x-remote-user", " ")]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
}
