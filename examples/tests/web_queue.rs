//! The web callback queue in a real browser: headless Chromium driven through WebDriver
//! (chromedriver, fantoccini). The answering machine runs with `[web]`; a SIPp call
//! (examples/sipp/call.xml, 6 s of examples/samples/caller.flac made μ-law with sox) leaves a
//! message from a client of the directory, and `offline_call` adds two older messages. Then,
//! in the browser: sign in; the queue shows the three messages oldest first, the five-hour-old
//! one marked overdue (and assigned to its manager from the browser), and the call's message
//! with its `tel:` link, client and manager;
//! its `<audio>` player plays the recording (served with range requests) and reports the
//! message's duration (±0.3 s); deleting it is refused and the error shown; marking it called
//! back with a note takes it out of the queue, and its page shows the callback in its history
//! (and `inbox show` agrees).
//!
//! A failed run keeps a screenshot and the page's HTML in `target/web-test-screenshots/` (the
//! failure message names the files). Every run writes the queue's screenshot there as
//! `queue.png`; with `VOICEMAIL_UPDATE_SCREENSHOT=1` it is also copied to `docs/web-queue.png`
//! (the README's picture).
//!
//! Needs SIPp (`sip-tester`), sox, `chromium` and `chromium-driver`; without them the test
//! prints `SKIPPED` and passes, unless `VOICEMAIL_REQUIRE_INTEROP` is set.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use voicemail_core::MessageMeta;

const USER: &str = "anna";
const PASSWORD: &str = "queue test password";
const NOTE: &str = "Called back: sending the offer today";
/// Bounds every wait in the browser.
const WAIT: Duration = Duration::from_secs(30);

/// Where screenshots go: `<target>/web-test-screenshots/`.
fn screenshot_dir() -> PathBuf {
    // <target>/<profile>/deps/<test binary>
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().and_then(Path::parent).and_then(Path::parent).unwrap();
    let dir = target.join("web-test-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_queue_in_a_browser() {
    let Some(sipp_bin) = sipp() else { return };
    let Some(sox) = tool("sox", "sox") else { return };
    let Some(chromium) = tool("chromium", "chromium") else { return };
    let Some(chromedriver) = tool("chromedriver", "chromium-driver") else { return };
    let dir = temp_dir("web");
    std::fs::create_dir_all(dir.path().join("voicemail-data")).unwrap();
    let made = Command::new(&sox)
        .arg(examples_dir().join("samples/caller.flac"))
        .args(["-e", "mu-law"])
        .arg(dir.path().join("voicemail-data/caller-ulaw.wav"))
        .args(["trim", "0", "6"])
        .status()
        .unwrap();
    assert!(made.success(), "sox failed");

    // The mailbox: Moscow time, the example client directory, the web queue with one user.
    std::fs::copy(examples_dir().join("clients.csv"), dir.path().join("clients.csv")).unwrap();
    let hash = voicemail_web::auth::hash_password(PASSWORD).unwrap();
    let config = dir.path().join("vm.toml");
    std::fs::write(
        &config,
        format!(
            "mailbox = \"Sales\"\ntimezone = \"Europe/Moscow\"\nspool = \"spool\"\n\n\
             [sip]\nlisten = \"127.0.0.1:0\"\nrtp_ports = \"34000-34999\"\n\n\
             [directory]\npath = \"clients.csv\"\ndefault_region = \"RU\"\n\n\
             [web]\nlisten = \"127.0.0.1:0\"\noverdue_after = \"4h\"\n\
             [[web.users]]\nname = \"{USER}\"\npassword_hash = \"{hash}\"\n"
        ),
    )
    .unwrap();
    let mut am = AnsweringMachine::start(&config);
    let web = format!("http://{}", am.web.clone().expect("the ready line names the web queue"));

    // The call: the SIPp caller is +74951234567, a client (ООО «Ромашка», manager Анна Петрова).
    let mut call = sipp_call(&sipp_bin, dir.path(), &am.addr, &examples_dir().join("sipp/call.xml"), "voicemail");
    let status = call.wait_timeout(Duration::from_secs(90)).expect("sipp did not finish");
    assert!(status.success(), "sipp failed: {status:?} (see {}/*_errors.log)", dir.path().display());
    let meta = am.next_message(Duration::from_secs(30)).expect("the message is printed");
    assert!(meta.duration_ms > 3000, "the message has audio: {} ms", meta.duration_ms);

    // Two older messages, as another front-end stores them.
    let now = jiff::Timestamp::now();
    let older = |caller: &str, ago: Duration| -> MessageMeta {
        let at = now - jiff::SignedDuration::try_from(ago).unwrap();
        let out = run_bounded(
            "offline_call",
            Command::new(example("offline_call"))
                .arg("--config")
                .arg(&config)
                .args(["--input", examples_dir().join("samples/caller.flac").to_str().unwrap()])
                .args(["--caller", caller, "--hangup-at", "11", "--at", &at.to_string()]),
            Duration::from_secs(60),
        );
        assert_eq!(out.code(), Some(0), "offline_call: {}", out.stderr);
        serde_json::from_str(out.stdout.trim()).unwrap()
    };
    let overdue = older("+78005553535", Duration::from_secs(5 * 3600 + 20 * 60));
    let recent = older("+74997654321", Duration::from_secs(35 * 60));

    // The browser.
    let driver_port = free_port();
    let driver = ChildGuard::spawn(
        "chromedriver",
        Command::new(&chromedriver)
            .arg(format!("--port={driver_port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    // Dropped first: the browser chromedriver started goes with it, even if the test fails.
    let _browser = ProcessGroup(driver.pid());
    assert!(wait_for_port(driver_port, Duration::from_secs(30)), "chromedriver did not listen");
    let profile = dir.path().join("chromium-profile");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let shots = screenshot_dir();
    runtime.block_on(async {
        let client = connect(driver_port, &chromium, &profile).await;
        let ids = Ids { call: &meta, overdue: &overdue, recent: &recent };
        let result = tokio::time::timeout(Duration::from_secs(180), in_the_browser(&client, &web, &ids, &shots)).await;
        let failure = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some("the browser steps did not finish within 180 s".to_owned()),
        };
        if let Some(e) = failure {
            let png = shots.join("failure.png");
            let html = shots.join("failure.html");
            if let Ok(Ok(bytes)) = tokio::time::timeout(Duration::from_secs(20), client.screenshot()).await {
                let _ = std::fs::write(&png, bytes);
            }
            if let Ok(Ok(source)) = tokio::time::timeout(Duration::from_secs(20), client.source()).await {
                let _ = std::fs::write(&html, source);
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), client.clone().close()).await;
            panic!("{e}\nscreenshot: {}\npage: {}", png.display(), html.display());
        }
        client.close().await.unwrap();
    });

    // The mailbox agrees.
    let shown = show(&config, meta.id.as_str());
    assert_eq!(shown["followup"]["state"], "called-back", "{shown}");
    assert_eq!(shown["followup"]["by"], USER);
    assert_eq!(shown["followup"]["note"], NOTE);
    assert!(am.stop("TERM").success(), "the answering machine (and its web queue) stops cleanly");
}

/// The process group of chromedriver (its own, with the browsers it starts): killed, by its
/// id, when dropped.
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.0)]).stderr(Stdio::null()).status();
    }
}

struct Ids<'a> {
    call: &'a MessageMeta,
    overdue: &'a MessageMeta,
    recent: &'a MessageMeta,
}

async fn connect(port: u16, chromium: &Path, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--autoplay-policy=no-user-gesture-required", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap_or_else(|e| panic!("cannot start chromium through chromedriver: {e}"))
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

fn err(context: &str) -> impl Fn(fantoccini::error::CmdError) -> String + '_ {
    move |e| format!("{context}: {e}")
}

async fn text_of(client: &Client, css: &str) -> Result<String, String> {
    let element = client.wait().at_most(WAIT).for_element(Locator::Css(css)).await.map_err(err(css))?;
    element.text().await.map_err(err(css))
}

/// Everything the person does, in order; any unexpected page is an error (screenshot kept).
async fn in_the_browser(client: &Client, web: &str, ids: &Ids<'_>, shots: &Path) -> Result<(), String> {
    let id = ids.call.id.as_str();

    // Not signed in: the queue sends us to the login form.
    client.goto(&format!("{web}/")).await.map_err(err("open the queue"))?;
    let url = client.current_url().await.map_err(err("url"))?;
    check(url.path() == "/login", || format!("expected the login page, got {url}"))?;
    let user = client.wait().at_most(WAIT).for_element(Locator::Id("username")).await.map_err(err("username"))?;
    user.send_keys(USER).await.map_err(err("type the user"))?;
    let password = client.find(Locator::Id("password")).await.map_err(err("password"))?;
    password.send_keys(PASSWORD).await.map_err(err("type the password"))?;
    let _ = client.screenshot().await.map(|png| std::fs::write(shots.join("login.png"), png));
    client.find(Locator::Id("sign-in")).await.map_err(err("sign-in button"))?.click().await.map_err(err("click"))?;

    // The queue: three messages, oldest first, the old one overdue.
    client.wait().at_most(WAIT).for_element(Locator::Id("queue")).await.map_err(err("the queue after sign-in"))?;
    let order: Vec<String> = {
        let mut v = Vec::new();
        for li in client.find_all(Locator::Css("#queue > li")).await.map_err(err("rows"))? {
            v.push(li.attr("data-id").await.map_err(err("data-id"))?.unwrap_or_default());
        }
        v
    };
    let expected = [ids.overdue.id.as_str(), ids.recent.id.as_str(), id];
    check(order == expected, || format!("queue order {order:?}, expected {expected:?}"))?;
    let overdue_class = client
        .find(Locator::Css(&format!("#m-{}", ids.overdue.id)))
        .await
        .map_err(err("overdue row"))?
        .attr("class")
        .await
        .map_err(err("class"))?
        .unwrap_or_default();
    check(overdue_class.contains("overdue"), || format!("the 5 h old message is not marked: {overdue_class:?}"))?;

    // The overdue message was assigned to its client's manager when it was stored (by the
    // directory): the form offers the current assignee. Reassign it from the browser.
    let overdue_row = format!("#m-{}", ids.overdue.id);
    let to =
        client.find(Locator::Css(&format!("{overdue_row} form.assign input[name=to]"))).await.map_err(err("to"))?;
    let offered = to.prop("value").await.map_err(err("value"))?.unwrap_or_default();
    check(offered == "boris.ivanov@example.com", || format!("the assign form offers {offered:?}"))?;
    to.clear().await.map_err(err("clear the assignee"))?;
    to.send_keys("Boris Ivanov").await.map_err(err("type the assignee"))?;
    client
        .find(Locator::Css(&format!("{overdue_row} form.assign button")))
        .await
        .map_err(err("assign button"))?
        .click()
        .await
        .map_err(err("click assign"))?;
    let notice = text_of(client, "#notice").await?;
    check(notice.contains("assigned"), || format!("notice {notice:?}"))?;
    client.goto(&format!("{web}/")).await.map_err(err("reload the queue"))?;
    let state = text_of(client, &format!("{overdue_row} .badge.state-assigned")).await?;
    check(state == "ASSIGNED TO BORIS IVANOV" || state == "assigned to Boris Ivanov", || format!("state {state:?}"))?;

    let row = format!("#m-{id}");
    let caller = client.find(Locator::Css(&format!("{row} a.caller"))).await.map_err(err("caller link"))?;
    let href = caller.attr("href").await.map_err(err("href"))?.unwrap_or_default();
    check(href == "tel:+74951234567", || format!("caller link {href:?}"))?;
    let client_name = text_of(client, &format!("{row} .client")).await?;
    check(client_name == "ООО «Ромашка»", || format!("client {client_name:?}"))?;
    let manager = text_of(client, &format!("{row} .manager")).await?;
    check(manager == "Анна Петрова", || format!("manager {manager:?}"))?;
    let row_class = client
        .find(Locator::Css(&row))
        .await
        .map_err(err("row"))?
        .attr("class")
        .await
        .map_err(err("class"))?
        .unwrap_or_default();
    check(!row_class.contains("overdue"), || "the new message is marked overdue".to_owned())?;

    // Play the recording: the player reports the message's duration, and plays.
    client
        .update_timeouts(fantoccini::wd::TimeoutConfiguration::new(Some(WAIT), Some(WAIT), Some(WAIT)))
        .await
        .map_err(err("timeouts"))?;
    let played = client
        .execute_async(
            r#"
            const [id, done] = arguments;
            const a = document.querySelector(`audio[data-id="${id}"]`);
            if (!a) { done({error: "no audio element"}); return; }
            a.muted = true;
            a.addEventListener("error", () => done({error: "media error " + (a.error && a.error.code)}));
            const play = () => a.play().then(() => {
              const check = () => {
                if (a.currentTime > 0.5) {
                  done({duration: a.duration, currentTime: a.currentTime, paused: a.paused, src: a.currentSrc});
                } else {
                  setTimeout(check, 50);
                }
              };
              check();
            }).catch((e) => done({error: String(e)}));
            if (a.readyState >= 1) { play(); } else { a.addEventListener("loadedmetadata", play, {once: true}); a.load(); }
            "#,
            vec![serde_json::json!(id)],
        )
        .await
        .map_err(err("play the audio"))?;
    check(played.get("error").is_none(), || format!("the player failed: {played}"))?;
    let duration = played["duration"].as_f64().unwrap_or(f64::NAN);
    let expected = ids.call.duration_ms as f64 / 1000.0;
    check((duration - expected).abs() <= 0.3, || {
        format!("the player says {duration} s, the message lasts {expected} s: {played}")
    })?;
    check(played["paused"] == false, || format!("not playing: {played}"))?;
    client.execute("document.querySelectorAll('audio').forEach(a => a.pause())", vec![]).await.map_err(err("pause"))?;
    eprintln!("the player reports {duration:.3} s for a message of {expected:.3} s: {played}");

    // The README's picture.
    let png = client.screenshot().await.map_err(err("screenshot"))?;
    std::fs::write(shots.join("queue.png"), &png).map_err(|e| format!("write queue.png: {e}"))?;
    if std::env::var_os("VOICEMAIL_UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
        let docs = examples_dir().join("../docs/web-queue.png");
        std::fs::write(&docs, &png).map_err(|e| format!("write {}: {e}", docs.display()))?;
        eprintln!("wrote {}", docs.display());
    }

    // Delete before the callback: asked, then refused with the error on the page.
    client
        .find(Locator::Css(&format!("{row} form.delete button")))
        .await
        .map_err(err("delete button"))?
        .click()
        .await
        .map_err(err("click delete"))?;
    let question = client.get_alert_text().await.map_err(err("the confirmation"))?;
    check(question.contains("Delete"), || format!("confirmation {question:?}"))?;
    client.accept_alert().await.map_err(err("accept"))?;
    let error = text_of(client, "#error").await?;
    check(error.contains("has not been called back"), || format!("the error shown: {error:?}"))?;
    client.wait().at_most(WAIT).for_element(Locator::Css(&row)).await.map_err(err("still queued"))?;

    // Called back, with a note: the message leaves the queue.
    let note =
        client.find(Locator::Css(&format!("{row} form.called-back input[name=note]"))).await.map_err(err("note"))?;
    note.send_keys(NOTE).await.map_err(err("type the note"))?;
    client
        .find(Locator::Css(&format!("{row} form.called-back button")))
        .await
        .map_err(err("called-back button"))?
        .click()
        .await
        .map_err(err("click called back"))?;
    let notice = text_of(client, "#notice").await?;
    check(notice.contains("left the queue"), || format!("notice {notice:?}"))?;
    let left = client.find_all(Locator::Css(&row)).await.map_err(err("rows"))?;
    check(left.is_empty(), || "the message is still in the queue".to_owned())?;
    let rows = client.find_all(Locator::Css("#queue > li")).await.map_err(err("rows"))?;
    check(rows.len() == 2, || format!("{} messages left, expected 2", rows.len()))?;
    let returned = text_of(client, "#returned").await?;
    check(returned.contains(NOTE), || format!("recently returned: {returned:?}"))?;

    // Its page: the history says who called back, with the note.
    client.goto(&format!("{web}/messages/{id}")).await.map_err(err("the message page"))?;
    let history = text_of(client, "#history").await?;
    check(history.contains(&format!("{USER}: called back: {NOTE}")), || format!("history: {history:?}"))?;
    check(history.contains("recorded"), || format!("history: {history:?}"))?;
    let png = client.screenshot().await.map_err(err("screenshot"))?;
    std::fs::write(shots.join("message.png"), &png).map_err(|e| format!("write message.png: {e}"))?;
    Ok(())
}
