//! The survey form in a REAL headless Chromium (Debian's `chromium`, driven by
//! Debian's `chromedriver` over W3C WebDriver: `tests/it/browser/webdriver.rs`).
//!
//! - `invitation_link_to_thank_you`: the invitation goes through a real
//!   Postfix + Dovecot (`tests/it/harness`), is read over IMAP, and its link is
//!   opened; the form is answered with the keyboard and the mouse, errors
//!   first; the stored answer is exactly what was typed; a second submission
//!   stores nothing.
//! - `accessibility_has_no_serious_violations`: axe-core (pinned in
//!   `tests/browser/package.json`, installed by `scripts/install-test-deps`)
//!   on every page state, plus labels, fieldsets, language, no scripts, no
//!   third-party requests, no horizontal scrolling on a phone.
//! - `stored_answer_is_unlinkable`: the stored answer and the daemon's log
//!   hold neither the link's token nor the respondent's address.
//!
//! Screenshots for a person to look at go to `target/browser/`.
//! Needs root and `scripts/install-test-deps` (Dovecot, Postfix, Chromium,
//! chromedriver, axe-core); a missing piece fails the test and says so.

use crate::common;
use crate::harness;
mod webdriver;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use canvass::answer::{Answers, Value};
use canvass::config::Config;
use canvass::daemon::{self, Daemon};
use canvass::shutdown::Shutdown;
use canvass::store::StoredResponse;
use canvass::survey::Survey;
use common::{cc_trigger, deliver, file_config, files_in, open_window, survey_path, wait_for};
use harness::MailStack;
use serde_json::json;
use webdriver::{artifacts_dir, key, Browser};

const SURVEY: &str = "undersoegelse@siri.test";
const ANNE: &str = "anne.hansen@siri.test"; // Sjælland

const Q1_OTHER: &str = "Boligsocial medarbejder – Ærø 🌊";
const Q4_OTHER: &str = "Netværk på tværs – æøå ÆØÅ 😀";
const Q8_TEXT: &str = "Tak! Søren & Åse 👍 \"citat\" <b>ikke html</b>";

const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// The daemon's log, captured for the whole test process.

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once) a subscriber writing `warn,canvass=debug` as text into a
/// buffer; every test calls it first, so no daemon runs before it.
fn log_capture() -> Capture {
    static LOG: OnceLock<Capture> = OnceLock::new();
    LOG.get_or_init(|| {
        let capture = Capture(Arc::new(Mutex::new(Vec::new())));
        let writer = capture.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn,canvass=debug"))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_target(true)
            .try_init()
            .expect("the test's log subscriber is the only one");
        capture
    })
    .clone()
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

// ---------------------------------------------------------------------------
// Daemons.

struct Running {
    daemon: Option<Daemon>,
    shutdown: Shutdown,
    /// `http://127.0.0.1:<port>`: the config's base_url and the web server.
    base: String,
    dir: tempfile::TempDir,
}

impl Running {
    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("running")
    }

    fn responses(&self) -> Vec<StoredResponse> {
        self.daemon()
            .pipeline
            .store
            .responses()
            .collect::<Result<_, _>>()
            .expect("stored responses")
    }

    async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(d) = self.daemon.take() {
            tokio::time::timeout(Duration::from_secs(30), d.wait())
                .await
                .expect("drained in time")
                .expect("daemon ended cleanly");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if std::thread::panicking() {
            // The log goes into the capture buffer, not to stderr: show its end.
            let log = log_capture().text();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "---- canvass log (last 80 lines, every in-process daemon of the test binary) ----\n{}",
                lines[lines.len().saturating_sub(80)..].join("\n")
            );
        }
    }
}

/// Binds the web socket first, so the config's base_url can be the real
/// address; `write_config(dir, base_url)` writes the config; starts the daemon.
async fn start_daemon(
    dir: tempfile::TempDir,
    write_config: impl FnOnce(&Path, &str) -> PathBuf,
) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let path = write_config(dir.path(), &base);
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let shutdown = Shutdown::new();
    let daemon = daemon::start(cfg, listener, shutdown.clone())
        .await
        .unwrap();
    Running {
        daemon: Some(daemon),
        shutdown,
        base,
        dir,
    }
}

/// The daemon on the Maildir inbox and the .eml outbox (no mail server),
/// with [privacy], the accessibility statement and the English survey.
async fn start_file_daemon() -> Running {
    let dir = tempfile::tempdir().unwrap();
    start_daemon(dir, |dir, base| {
        let (s, e) = open_window();
        let path = file_config(dir, (&s, &e), "");
        let text = std::fs::read_to_string(&path).unwrap();
        let old = "base_url = \"http://127.0.0.1:1\"";
        assert!(
            text.contains(old),
            "common::file_config changed its base_url"
        );
        let en = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/survey.en.toml");
        let text = text
            .replace(
                old,
                &format!(
                    "base_url = \"{base}\"\ndefinition_en = \"{}\"",
                    en.display()
                ),
            )
            .replace(
                "[web]\n",
                &format!("{PRIVACY}\n[web]\naccessibility_statement_url = \"{STATEMENT}\"\n"),
            );
        std::fs::write(&path, text).unwrap();
        path
    })
    .await
}

const STATEMENT: &str = "https://was.digst.dk/undersoegelse-siri-test";
const PRIVACY: &str = "[privacy]
controller = \"Styrelsen for International Rekruttering og Integration (SIRI)\"
dpo = \"dpo@siri.test\"
purpose = \"at evaluere og forbedre sikkerhedskonsulentordningen\"
legal_basis = \"databeskyttelsesforordningens artikel 6, stk. 1, litra e\"
contact = \"undersoegelse@siri.test\"
";

/// A consultant's CC trigger into the Maildir; returns the personal link from
/// the invitation the daemon wrote.
fn invite_by_file(r: &Running, contact: &str) -> String {
    deliver(
        &r.dir.path().join("inbox"),
        &format!("trigger-{contact}.eml"),
        // One trigger per contact: a Message-ID seen before is not processed again.
        &cc_trigger(&format!("browser-{contact}"), ANNE, &[contact]),
    );
    let sent = r.dir.path().join("sent");
    let raw = wait_for("the invitation", WAIT, || {
        files_in(&sent)
            .into_iter()
            .map(|p| std::fs::read(p).unwrap_or_default())
            .find(|raw| {
                String::from_utf8_lossy(raw)
                    .to_lowercase()
                    .contains(&contact.to_lowercase())
            })
    });
    link_in(&raw, &r.base).expect("a personal link in the invitation")
}

/// The daemon against a real Postfix + Dovecot (as in tests/it/pipeline.rs).
fn stack_config(mail: &MailStack, dir: &Path, base: &str) -> PathBuf {
    common::StackConfig {
        base_url: base,
        password: harness::PASSWORD,
        ..common::StackConfig::new(mail.imap_port(), mail.smtp_port())
    }
    .write(dir)
}

/// The full personal link (`<base>/s/<token>`) in a raw invitation, with
/// quoted-printable soft line breaks undone.
fn link_in(raw: &[u8], base: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw)
        .replace("=\r\n", "")
        .replace("=\n", "");
    let prefix = format!("{base}/s/");
    let at = text.find(&prefix)? + prefix.len();
    let token: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    (token.len() >= 16).then(|| format!("{prefix}{token}"))
}

fn token_of(link: &str) -> String {
    link.rsplit("/s/").next().unwrap().to_string()
}

fn survey() -> Survey {
    Survey::load(&survey_path()).unwrap()
}

fn today() -> chrono::NaiveDate {
    chrono::Utc::now()
        .with_timezone(&canvass::window::TZ)
        .date_naive()
}

// ---------------------------------------------------------------------------
// Page helpers.

/// Submits the form with a click and waits for the next page.
fn submit_by_click(b: &Browser) {
    b.mark_page();
    b.click("form button[type=submit]");
    b.wait_new_page("the page after submitting");
}

/// Every form control's state: (checked ids, text values by id).
fn form_state(b: &Browser) -> (Vec<String>, BTreeMap<String, String>) {
    let v = b.js(
        "const checked = Array.from(document.querySelectorAll('input:checked')).map(e => e.id);
         const texts = {};
         document.querySelectorAll('input[type=text], textarea').forEach(e => texts[e.id] = e.value);
         return [checked, texts];",
        vec![],
    );
    let checked = serde_json::from_value(v[0].clone()).unwrap();
    let texts = serde_json::from_value(v[1].clone()).unwrap();
    (checked, texts)
}

/// The message shown at each question that has one: code → text.
fn error_messages(b: &Browser) -> BTreeMap<String, String> {
    let v = b.js(
        "const out = {};
         document.querySelectorAll('fieldset.question').forEach(f => {
           const e = f.querySelector('.error');
           if (e) out[f.id.replace(/^q-/, '')] = e.textContent.trim();
         });
         return out;",
        vec![],
    );
    serde_json::from_value(v).unwrap()
}

/// The error summary's links (href, text).
fn error_summary(b: &Browser) -> Vec<(String, String)> {
    let v = b.js(
        "return Array.from(document.querySelectorAll('.error-summary a'))
           .map(a => [a.getAttribute('href'), a.textContent.trim()]);",
        vec![],
    );
    serde_json::from_value(v).unwrap()
}

/// The message the form shows for a missing answer to `q`.
fn missing_message(q: &canvass::survey::Question) -> &'static str {
    match q.kind {
        canvass::survey::Kind::Multi => "Vælg mindst ét svar.",
        canvass::survey::Kind::Text => "Skriv et svar.",
        _ => "Vælg et svar.",
    }
}

/// Saves a screenshot into target/browser/ and checks the page was really
/// painted: at least `min_ink` of the pixels not white (or, in dark mode, not
/// the background), in many colours (text is antialiased).
fn check_screenshot(png_bytes: &[u8], name: &str, min_ink: f64) -> PathBuf {
    let path = artifacts_dir().join(name);
    std::fs::write(&path, png_bytes).unwrap();
    let decoder = png::Decoder::new(png_bytes);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    let channels = info.color_type.samples();
    assert!(
        channels >= 3,
        "{name}: unexpected colour type {:?}",
        info.color_type
    );
    let pixels = (info.width * info.height) as usize;
    let data = &buf[..info.buffer_size()];
    let background = (data[0], data[1], data[2]);
    let mut ink = 0usize;
    let mut colours = std::collections::HashSet::new();
    // Every 5th pixel is plenty (and keeps an unoptimised build quick).
    for px in data.chunks(channels).step_by(5) {
        let (r, g, b) = (px[0], px[1], px[2]);
        let far = |a: u8, b: u8| a.abs_diff(b) > 55;
        if far(r, background.0) || far(g, background.1) || far(b, background.2) {
            ink += 1;
        }
        colours.insert((r, g, b));
    }
    let share = ink as f64 / pixels.div_ceil(5) as f64;
    assert!(
        info.width >= 300 && info.height >= 300,
        "{name}: {}×{} is too small",
        info.width,
        info.height
    );
    assert!(
        share > min_ink && colours.len() > 30,
        "{name} looks blank: {:.2}% ink, {} colours ({})",
        share * 100.0,
        colours.len(),
        path.display()
    );
    path
}

/// Waits until the viewport has the emulated width.
fn wait_width(b: &Browser, width: u32) {
    b.wait_js(
        &format!("a {width} px wide viewport"),
        &format!("return window.innerWidth === {width} && document.readyState === 'complete';"),
        WAIT,
    );
}

/// WCAG 1.4.10 (reflow): no horizontal scrolling at 320 CSS pixels (a
/// 1280 px window at 400 %) and at 200 % zoom of a 1280 × 900 window; the
/// emulation is cleared again (back to 1280 px).
fn reflows(b: &Browser, what: &str) {
    b.emulate_mobile(320, 640);
    wait_width(b, 320);
    no_horizontal_scroll(b, &format!("{what} at 320 CSS px"));
    b.emulate_zoom(1280, 900, 2.0);
    wait_width(b, 640);
    assert_eq!(b.js("return window.devicePixelRatio;", vec![]), json!(2));
    no_horizontal_scroll(b, &format!("{what} at 200 % zoom"));
    b.clear_emulation();
    wait_width(b, 1280);
}

/// The footer every page carries (webtilgængelighedsloven): the statement
/// link and the agency's contact.
fn footer_check(b: &Browser, what: &str, statement: &str) {
    let v = b.js(
        "const f = document.querySelector('footer');
         if (!f) return null;
         return { links: Array.from(f.querySelectorAll('a')).map(a => [a.textContent.trim(), a.href]) };",
        vec![],
    );
    assert!(!v.is_null(), "{what}: no footer");
    let links: Vec<(String, String)> = serde_json::from_value(v["links"].clone()).unwrap();
    assert!(
        links.iter().any(|(_, href)| href == statement),
        "{what}: no link to the accessibility statement in {links:?}"
    );
    assert!(
        links.iter().any(|(_, href)| href.starts_with("mailto:")),
        "{what}: no contact in {links:?}"
    );
}

fn no_horizontal_scroll(b: &Browser, what: &str) {
    let v = b.js(
        "return [document.documentElement.scrollWidth, window.innerWidth,
                 Array.from(document.querySelectorAll('body *'))
                   .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                   .map(e => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className).slice(0, 10)];",
        vec![],
    );
    let (sw, iw) = (v[0].as_f64().unwrap(), v[1].as_f64().unwrap());
    assert!(
        sw <= iw,
        "{what}: scrolls sideways on a phone: scrollWidth {sw} > innerWidth {iw}; too wide: {}",
        v[2]
    );
}

// ---------------------------------------------------------------------------
// 1. The invitation through real mail, answered in the browser.

fn from_survey(msgs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    msgs.iter()
        .filter(|m| {
            let t = String::from_utf8_lossy(m);
            t.lines()
                .any(|l| l.starts_with("From:") && l.contains(SURVEY))
        })
        .cloned()
        .collect()
}

fn trigger(id: &str, from: &str, to: &str) -> Vec<u8> {
    format!(
        "Message-ID: <{id}@siri.test>\r\nDate: Mon, 12 Aug 2024 10:00:00 +0200\r\nFrom: Konsulent <{from}>\r\nTo: Kontakt <{to}>\r\nCc: {SURVEY}\r\nSubject: =?utf-8?q?Opf=C3=B8lgning?=\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nHej, tak for snakken i dag.\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitation_link_to_thank_you() {
    log_capture();
    let contact = "kontakt.browser@kommune.test";
    let mail = MailStack::start();
    mail.add_users(&[SURVEY, ANNE, contact]);
    let r = start_daemon(tempfile::tempdir().unwrap(), |dir, base| {
        stack_config(&mail, dir, base)
    })
    .await;

    // The consultant CCs the survey address; the contact gets the invitation.
    mail.send(
        ANNE,
        &[contact, SURVEY],
        &trigger("browser1", ANNE, contact),
    );
    let msgs = mail
        .wait_for_messages(contact, "INBOX", 2, Duration::from_secs(30))
        .await;
    let invitations = from_survey(&msgs);
    assert_eq!(invitations.len(), 1, "one invitation");
    let link = link_in(&invitations[0], &r.base).expect("a personal link in the invitation");

    let s = survey();
    let b = Browser::start(1280, 900);
    b.goto(&link);
    assert_eq!(b.url(), link);

    // The page really renders, in Danish.
    let title = b.js("return document.title;", vec![]);
    assert_eq!(title, json!(s.title));
    let text = b.text();
    assert!(text.contains(&s.title), "{text}");
    for q in &s.questions {
        assert!(
            text.contains(&q.text),
            "question {} is not visible:\n{text}",
            q.nr
        );
        for o in &q.options {
            assert!(
                text.contains(&o.label),
                "option {:?} is not visible",
                o.label
            );
        }
        if let Some(h) = &q.help {
            assert!(text.contains(h.as_str()), "help of question {}", q.nr);
        }
    }
    assert!(text.contains("Send besvarelse"));
    let shot = check_screenshot(&b.screenshot_full(), "form.png", 0.01);
    eprintln!("screenshot: {}", shot.display());

    // 1st submission, nothing filled: an error summary and a message at 1–7.
    submit_by_click(&b);
    let title = b.js("return document.title;", vec![]);
    assert_eq!(title, json!(format!("Fejl: {}", s.title)));
    let errors = error_messages(&b);
    let expected: BTreeMap<String, String> = s
        .questions
        .iter()
        .filter(|q| q.required)
        .map(|q| (q.code.clone(), format!("Fejl: {}", missing_message(q))))
        .collect();
    assert_eq!(errors, expected, "a message at each required question");
    assert_eq!(expected.len(), 7);
    let summary = error_summary(&b);
    let want: Vec<(String, String)> = s
        .questions
        .iter()
        .filter(|q| q.required)
        .map(|q| {
            (
                format!("#q-{}", q.code),
                format!("Spørgsmål {}: {}", q.nr, missing_message(q)),
            )
        })
        .collect();
    assert_eq!(summary, want);
    assert!(b.text().contains("Der mangler svar"));
    let (checked, texts) = form_state(&b);
    assert!(checked.is_empty(), "{checked:?}");
    assert!(texts.values().all(String::is_empty), "{texts:?}");
    check_screenshot(&b.screenshot_full(), "form-errors.png", 0.01);

    // 2nd submission, partly filled: q1 "Andet" (mouse, then Tab and typing),
    // q4 by mouse with "Andet (uddyb)" typed, q8 typed.
    b.click("label[for='f-organisation-andet']");
    b.press(&[key::TAB]);
    assert_eq!(
        b.focused_id(),
        "f-organisation-andet-tekst",
        "Tab from 'Andet' goes to its text field"
    );
    b.keyboard_type(Q1_OTHER);
    for id in ["risiko", "sikkerhed", "andet"] {
        b.click(&format!("label[for='f-raadgivning-{id}']"));
    }
    b.click("#f-raadgivning-andet-tekst");
    b.keyboard_type(Q4_OTHER);
    b.click("#f-kommentarer");
    b.keyboard_type(Q8_TEXT);
    submit_by_click(&b);
    let errors = error_messages(&b);
    assert_eq!(
        errors.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "anbefale",
            "antal_sager",
            "boern",
            "hjulpet_videre",
            "tilgaengelighed"
        ],
        "{errors:?}"
    );
    // What was entered is kept, exactly.
    let (checked, texts) = form_state(&b);
    assert_eq!(
        checked,
        [
            "f-organisation-andet",
            "f-raadgivning-risiko",
            "f-raadgivning-sikkerhed",
            "f-raadgivning-andet"
        ]
    );
    assert_eq!(texts["f-organisation-andet-tekst"], Q1_OTHER);
    assert_eq!(texts["f-raadgivning-andet-tekst"], Q4_OTHER);
    assert_eq!(texts["f-kommentarer"], Q8_TEXT);
    assert_eq!(
        b.js(
            "return document.querySelector('#f-kommentarer').innerHTML.includes('&lt;b&gt;');",
            vec![]
        ),
        json!(true),
        "the comment is re-shown as text, not as HTML"
    );
    assert_eq!(
        b.js(
            "return document.querySelectorAll('#f-kommentarer b, form b').length;",
            vec![]
        ),
        json!(0)
    );

    // The rest with the keyboard: Tab into a radio group, arrows to choose,
    // Space to check.
    b.click("#f-organisation-andet-tekst");
    b.press(&[key::TAB]);
    assert_eq!(b.focused_id(), "f-antal_sager-1");
    b.press(&[key::DOWN]);
    assert_eq!(b.focused_id(), "f-antal_sager-2_5");
    b.press(&[key::TAB]);
    assert_eq!(b.focused_id(), "f-boern-ja");
    b.press(&[key::SPACE]);
    b.press(&[key::TAB]);
    assert_eq!(
        b.focused_id(),
        "f-raadgivning-opmaerksomhed",
        "Tab goes on to question 4"
    );
    b.click("#f-raadgivning-andet-tekst");
    b.press(&[key::TAB]);
    assert_eq!(b.focused_id(), "f-tilgaengelighed-meget_hoej");
    b.press(&[key::DOWN]);
    assert_eq!(b.focused_id(), "f-tilgaengelighed-hoej");
    // Questions 6 and 7 with the mouse.
    b.click("label[for='f-hjulpet_videre-nogen']");
    b.click("label[for='f-anbefale-meget_hoej']");
    let (checked, _) = form_state(&b);
    assert_eq!(
        checked,
        [
            "f-organisation-andet",
            "f-antal_sager-2_5",
            "f-boern-ja",
            "f-raadgivning-risiko",
            "f-raadgivning-sikkerhed",
            "f-raadgivning-andet",
            "f-tilgaengelighed-hoej",
            "f-hjulpet_videre-nogen",
            "f-anbefale-meget_hoej"
        ]
    );
    check_screenshot(&b.screenshot_full(), "form-filled.png", 0.01);
    // Submit with the keyboard: Tab from the comment to the button, Enter.
    b.click("#f-kommentarer");
    b.press(&[key::TAB]);
    assert_eq!(
        b.js(
            "return document.activeElement.tagName + ':' + document.activeElement.type;",
            vec![]
        ),
        json!("BUTTON:submit")
    );
    b.mark_page();
    b.press(&[key::ENTER]);
    b.wait_new_page("the thank-you page");
    let text = b.text();
    assert!(text.contains("Tak for dit svar"), "{text}");
    assert_eq!(
        b.js("return document.title;", vec![]),
        json!("Tak for dit svar")
    );
    check_screenshot(&b.screenshot_full(), "thanks.png", 0.002);

    // Stored exactly as entered.
    let stored = r.responses();
    assert_eq!(stored.len(), 1);
    let mut want = Answers::new();
    let single = |code: &str| Value::Single {
        code: code.into(),
        other: None,
    };
    want.insert(
        "organisation".into(),
        Value::Single {
            code: "andet".into(),
            other: Some(Q1_OTHER.into()),
        },
    );
    want.insert("antal_sager".into(), single("2_5"));
    want.insert("boern".into(), single("ja"));
    want.insert(
        "raadgivning".into(),
        Value::Multi {
            codes: vec!["risiko".into(), "sikkerhed".into(), "andet".into()],
            other: Some(Q4_OTHER.into()),
        },
    );
    want.insert("tilgaengelighed".into(), single("hoej"));
    want.insert("hjulpet_videre".into(), single("nogen"));
    want.insert("anbefale".into(), single("meget_hoej"));
    want.insert(
        "kommentarer".into(),
        Value::Text {
            text: Q8_TEXT.into(),
        },
    );
    assert_eq!(stored[0].answers, want);
    assert_eq!(stored[0].survey_id, s.id);
    assert_eq!(stored[0].survey_version, s.version);
    assert_eq!(stored[0].day, today());
    assert!(
        matches!(stored[0].region.as_deref(), None | Some("Sjælland")),
        "{:?}",
        stored[0].region
    );

    // Posting the answer again (reload of the thank-you page re-posts it).
    b.mark_page();
    b.refresh();
    b.wait_new_page("the page after re-posting");
    assert!(b.text().contains("du har allerede svaret"), "{}", b.text());
    // Back to the page before, and its form data posted again.
    b.mark_page();
    b.back();
    b.wait_new_page("the page after going back");
    if b.js(
        "return !!document.querySelector('form button[type=submit]');",
        vec![],
    ) == json!(true)
    {
        eprintln!("Back showed the form again: submitting it again");
        submit_by_click(&b);
    } else {
        eprintln!(
            "Back showed {:?}: reloading re-posts it",
            b.text().lines().next().unwrap_or("")
        );
        b.mark_page();
        b.refresh();
        b.wait_new_page("the page after going back and re-posting");
    }
    assert!(b.text().contains("du har allerede svaret"), "{}", b.text());
    // And the link itself.
    b.goto(&link);
    assert!(b.text().contains("du har allerede svaret"), "{}", b.text());
    assert_eq!(r.responses(), stored, "nothing new is stored");

    // `canvass send-test` through the real Postfix: marked, invites no one,
    // its link opens the test page.
    let invited_before = r.daemon().pipeline.store.counters().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_canvass"))
        .args(["send-test", contact, "--config"])
        .arg(r.dir.path().join("canvass.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let msgs = mail
        .wait_for_messages(contact, "INBOX", 3, Duration::from_secs(30))
        .await;
    let test = msgs
        .iter()
        .find(|m| String::from_utf8_lossy(m).contains("X-Canvass-Test: yes"))
        .expect("the test mail arrived");
    let text = String::from_utf8_lossy(test).replace("=\r\n", "");
    assert!(!text.contains(&format!("{}/s/", r.base)), "{text}");
    let test_link = format!("{}/proeve", r.base);
    assert!(text.contains(&test_link), "{text}");
    b.goto(&test_link);
    assert!(b.text().contains("Prøve: linket virker"), "{}", b.text());
    assert_eq!(
        r.daemon().pipeline.store.counters().unwrap(),
        invited_before
    );
    drop(b);
    r.stop().await;
}

// ---------------------------------------------------------------------------
// 2. Accessibility.

fn axe_source() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "axe-core is missing ({}: {e}): run scripts/install-test-deps",
            path.display()
        )
    })
}

/// Runs axe-core on the current page; prints every violation and returns
/// the serious and critical ones, described.
fn axe(b: &Browser, source: &str, what: &str) -> Vec<String> {
    let version = b.js(&format!("{source}\n;return axe.version;"), vec![]);
    let v = b.js_async(
        "const done = arguments[arguments.length - 1];
         axe.run(document, { resultTypes: ['violations'] })
           .then(r => done({ ok: r.violations.map(v => ({
               id: v.id, impact: v.impact, help: v.help,
               nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary) })),
             passes: r.passes.length,
             incomplete: r.incomplete.map(i => i.id) }))
           .catch(e => done({ err: String(e) }));",
        vec![],
    );
    assert!(v["err"].is_null(), "axe failed on {what}: {}", v["err"]);
    let violations = v["ok"].as_array().cloned().unwrap_or_default();
    eprintln!(
        "axe {version} on {what}: {} violation(s), {} rule(s) passed, to review by hand: {}",
        violations.len(),
        v["passes"],
        v["incomplete"]
    );
    let mut bad = Vec::new();
    for x in &violations {
        let line = format!(
            "[{}] {} — {}\n    {}",
            x["impact"].as_str().unwrap_or("?"),
            x["id"].as_str().unwrap_or("?"),
            x["help"].as_str().unwrap_or(""),
            x["nodes"]
                .as_array()
                .map(|n| n
                    .iter()
                    .map(|s| s.as_str().unwrap_or("").to_string())
                    .collect::<Vec<_>>()
                    .join("\n    "))
                .unwrap_or_default()
        );
        eprintln!("  {line}");
        if matches!(x["impact"].as_str(), Some("serious") | Some("critical")) {
            bad.push(format!("{what}: {line}"));
        }
    }
    bad
}

/// Checks that need no axe: language, labels, fieldsets and legends, no
/// script, every resource from the page's own origin, the stylesheet applied.
fn page_checks(b: &Browser, what: &str, is_form: bool) {
    let v = b.js(
        "const bad = [];
         if (document.documentElement.lang !== 'da') bad.push('lang is ' + document.documentElement.lang);
         if (document.querySelectorAll('script').length) bad.push('has <script> elements');
         const res = performance.getEntriesByType('resource');
         res.filter(e => new URL(e.name).origin !== location.origin).forEach(e => bad.push('external request: ' + e.name));
         if (!res.some(e => new URL(e.name).pathname === '/assets/form.css')) bad.push('the stylesheet was not loaded');
         if (getComputedStyle(document.querySelector('main')).maxWidth === 'none') bad.push('the stylesheet is not applied');
         document.querySelectorAll('link[href], img[src], iframe, object, embed').forEach(e => {
           const u = e.getAttribute('href') || e.getAttribute('src') || '';
           if (new URL(u, location.href).origin !== location.origin) bad.push('external reference: ' + u);
         });
         document.querySelectorAll('input, textarea, select').forEach(e => {
           if (e.type === 'hidden') return;
           const names = Array.from(e.labels || []).map(l => l.textContent.trim()).filter(t => t);
           if (!names.length) bad.push('no label: #' + e.id);
           if (!e.closest('fieldset')) bad.push('outside a fieldset: #' + e.id);
         });
         document.querySelectorAll('form fieldset').forEach(f => {
           const l = f.querySelector(':scope > legend');
           if (!l || !l.textContent.trim()) bad.push('fieldset without legend: #' + f.id);
         });
         if (document.querySelectorAll('h1').length !== 1) bad.push('not exactly one h1');
         return { bad, fieldsets: document.querySelectorAll('form fieldset.question').length,
                  controls: document.querySelectorAll('input, textarea').length };",
        vec![],
    );
    let bad: Vec<String> = serde_json::from_value(v["bad"].clone()).unwrap();
    assert!(bad.is_empty(), "{what}:\n  {}", bad.join("\n  "));
    if is_form {
        assert_eq!(
            v["fieldsets"],
            json!(survey().questions.len()),
            "{what}: a fieldset per question"
        );
        assert!(
            v["controls"].as_u64().unwrap() > 30,
            "{what}: {}",
            v["controls"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accessibility_has_no_serious_violations() {
    log_capture();
    let source = axe_source();
    let r = start_file_daemon().await;
    let link = invite_by_file(&r, "tilgaengelig@kommune.test");
    let b = Browser::start(1280, 900);
    let mut serious = Vec::new();

    // The empty form.
    b.goto(&link);
    page_checks(&b, "the empty form", true);
    serious.extend(axe(&b, &source, "the empty form"));

    footer_check(&b, "the empty form", STATEMENT);

    // On a phone: no sideways scrolling.
    b.emulate_mobile(390, 844);
    wait_width(&b, 390);
    no_horizontal_scroll(&b, "the empty form");
    check_screenshot(&b.screenshot_full(), "form-mobile.png", 0.01);
    b.clear_emulation();
    wait_width(&b, 1280);
    reflows(&b, "the empty form");
    b.emulate_mobile(390, 844);
    wait_width(&b, 390);

    // The form with errors (submitted empty), on the phone and on a desktop.
    submit_by_click(&b);
    assert!(b.text().contains("Der mangler svar"));
    wait_width(&b, 390);
    no_horizontal_scroll(&b, "the form with errors");
    check_screenshot(&b.screenshot_full(), "form-errors-mobile.png", 0.01);
    b.clear_emulation();
    wait_width(&b, 1280);
    reflows(&b, "the form with errors");
    page_checks(&b, "the form with errors", true);
    serious.extend(axe(&b, &source, "the form with errors"));
    // The thank-you page.
    for id in [
        "f-organisation-politi",
        "f-antal_sager-1",
        "f-boern-nej",
        "f-raadgivning-risiko",
        "f-tilgaengelighed-ikke_relevant",
        "f-hjulpet_videre-hoej",
        "f-anbefale-hoej",
    ] {
        b.click(&format!("label[for='{id}']"));
    }
    // The same in dark mode (the stylesheet has a dark palette).
    b.cdp(
        "Emulation.setEmulatedMedia",
        json!({ "features": [{ "name": "prefers-color-scheme", "value": "dark" }] }),
    );
    b.wait_js(
        "dark mode",
        "return matchMedia('(prefers-color-scheme: dark)').matches;",
        WAIT,
    );
    serious.extend(axe(
        &b,
        &source,
        "the form with errors and answers, dark mode",
    ));
    check_screenshot(&b.screenshot_full(), "form-dark.png", 0.01);
    b.cdp("Emulation.setEmulatedMedia", json!({ "features": [] }));

    submit_by_click(&b);
    assert!(b.text().contains("Tak for dit svar"), "{}", b.text());
    page_checks(&b, "the thank-you page", false);
    footer_check(&b, "the thank-you page", STATEMENT);
    serious.extend(axe(&b, &source, "the thank-you page"));
    reflows(&b, "the thank-you page");
    b.emulate_mobile(390, 844);
    wait_width(&b, 390);
    no_horizontal_scroll(&b, "the thank-you page");
    b.clear_emulation();

    // The link again: "already answered".
    b.goto(&link);
    wait_width(&b, 1280);
    assert!(b.text().contains("du har allerede svaret"));
    page_checks(&b, "the already-answered page", false);
    serious.extend(axe(&b, &source, "the already-answered page"));

    // The privacy page and the opt-out page: the same standard.
    b.goto(&format!("{}/privatliv", r.base));
    assert!(b.text().contains("Sådan behandler vi dine oplysninger"));
    page_checks(&b, "the privacy page", false);
    footer_check(&b, "the privacy page", STATEMENT);
    serious.extend(axe(&b, &source, "the privacy page"));
    reflows(&b, "the privacy page");
    let other = invite_by_file(&r, "tilgaengelig2@kommune.test");
    b.goto(&other.replace("/s/", "/u/"));
    assert!(
        b.text().contains("Jeg ønsker ikke at deltage"),
        "{}",
        b.text()
    );
    page_checks(&b, "the opt-out page", false);
    serious.extend(axe(&b, &source, "the opt-out page"));
    reflows(&b, "the opt-out page");
    // The English form.
    b.goto(&format!("{other}?lang=en"));
    assert_eq!(
        b.js("return document.documentElement.lang;", vec![]),
        json!("en")
    );
    serious.extend(axe(&b, &source, "the English form"));
    reflows(&b, "the English form");

    // The check itself works: a pale paragraph and an unlabelled field,
    // added to the page, are caught.
    b.js(
        "const p = document.createElement('p');
         p.style.color = '#cccccc'; p.textContent = 'Næsten usynlig tekst';
         const i = document.createElement('input'); i.type = 'text';
         document.querySelector('main').append(p, i);",
        vec![],
    );
    let caught = axe(&b, &source, "a page spoilt on purpose");
    for id in ["color-contrast", "label"] {
        assert!(
            caught.iter().any(|c| c.contains(&format!("] {id} —"))),
            "axe did not catch {id}: {caught:?}"
        );
    }

    assert!(
        serious.is_empty(),
        "axe found serious or critical violations:\n{}",
        serious.join("\n")
    );
    drop(b);
    r.stop().await;
}

// ---------------------------------------------------------------------------
// 3. Unlinkable answers.

/// "hh:mm" anywhere, or a date followed by "T" and a digit.
fn finer_than_a_day(s: &str) -> Option<String> {
    let c: Vec<char> = s.chars().collect();
    for i in 0..c.len() {
        let d = |j: usize| c.get(j).is_some_and(|c| c.is_ascii_digit());
        if d(i) && d(i + 1) && c.get(i + 2) == Some(&':') && d(i + 3) && d(i + 4) {
            return Some(c[i.saturating_sub(10)..(i + 5)].iter().collect());
        }
        if d(i) && d(i + 1) && c.get(i + 2) == Some(&'T') && d(i + 3) {
            return Some(
                c[i.saturating_sub(10)..(i + 4).min(c.len())]
                    .iter()
                    .collect(),
            );
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_answer_is_unlinkable() {
    let logs = log_capture();
    let contact = "Unik.Respondent@Kommune.test";
    let r = start_file_daemon().await;
    let link = invite_by_file(&r, contact);
    let token = token_of(&link);
    assert!(token.len() >= 20, "{token}");

    let b = Browser::start(1024, 900);
    b.goto(&link);
    for id in [
        "f-organisation-kommune",
        "f-antal_sager-6_10",
        "f-boern-ja",
        "f-raadgivning-opmaerksomhed",
        "f-tilgaengelighed-nogen",
        "f-hjulpet_videre-hoej",
        "f-anbefale-hoej",
    ] {
        b.click(&format!("label[for='{id}']"));
    }
    b.click("#f-kommentarer");
    b.keyboard_type("Anonymt, håber jeg 🙂");
    submit_by_click(&b);
    assert!(b.text().contains("Tak for dit svar"), "{}", b.text());
    drop(b);

    let stored = r.responses();
    assert_eq!(stored.len(), 1);
    let day = today().to_string();
    for resp in &stored {
        let dump = format!(
            "{resp:?}\n{resp:#?}\n{}",
            serde_json::to_string_pretty(resp).unwrap()
        );
        let lower = dump.to_lowercase();
        assert!(
            !dump.contains(&token),
            "the token is in the stored answer:\n{dump}"
        );
        assert!(
            !lower.contains(&token.to_lowercase()),
            "the token (any case) is in the stored answer:\n{dump}"
        );
        assert!(
            !lower.contains(&contact.to_lowercase()),
            "the address is in the stored answer:\n{dump}"
        );
        assert!(
            !lower.contains("unik.respondent"),
            "the address' local part is in the stored answer:\n{dump}"
        );
        assert!(
            !dump.contains("127.0.0.1"),
            "the client's address is in the stored answer:\n{dump}"
        );
        assert!(
            finer_than_a_day(&dump).is_none(),
            "a time finer than the day: {:?}\n{dump}",
            finer_than_a_day(&dump)
        );
        let json = serde_json::to_value(resp).unwrap();
        assert_eq!(json["day"], json!(day), "the day, and nothing finer");
        eprintln!(
            "stored answer:\n{}",
            serde_json::to_string_pretty(resp).unwrap()
        );
    }
    r.stop().await;

    // The log: the web route and the answer are logged, without the token
    // or the address (and the token is in no line at all).
    let log = logs.text();
    let lines: Vec<&str> = log.lines().collect();
    for l in &lines {
        assert!(!l.contains(&token), "the token is logged: {l}");
    }
    let relevant: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| {
            let l = l.to_lowercase();
            l.contains("canvass::web") || l.contains("/s/") || l.contains("answer")
        })
        .collect();
    assert!(
        relevant
            .iter()
            .any(|l| l.contains("route=\"/s/{token}\"") && l.contains("POST")),
        "the web requests are logged (by route):\n{log}"
    );
    assert!(
        relevant.iter().any(|l| l.contains("answer stored")),
        "{log}"
    );
    for l in &relevant {
        let lower = l.to_lowercase();
        assert!(
            !lower.contains(&contact.to_lowercase()),
            "the address is logged with the web route or the answer: {l}"
        );
        assert!(
            !lower.contains("unik.respondent"),
            "the address is logged with the web route or the answer: {l}"
        );
        assert!(
            !lower.contains("127.0.0.1:") || !lower.contains("canvass::web"),
            "the client's address is logged: {l}"
        );
    }
    eprintln!(
        "log lines about the web route or the answer:\n{}",
        relevant.join("\n")
    );
}

// ---------------------------------------------------------------------------
// 4. English and one-click opt-out, in the browser.

/// The language switch, an English answer pooled by option code; the
/// opt-out link opened in the browser changes nothing until its button is
/// pressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn english_form_and_one_click_opt_out_in_chromium() {
    log_capture();
    let r = start_file_daemon().await;
    let link = invite_by_file(&r, "english.reader@ngo.test");
    let b = Browser::start(1280, 900);

    // Danish by default (the browser asks for da-DK); the switch to English.
    b.goto(&link);
    assert_eq!(
        b.js("return document.documentElement.lang;", vec![]),
        json!("da")
    );
    assert!(b
        .text()
        .contains("Hvilken type organisation arbejder du i?"));
    b.mark_page();
    b.click(".lang-switch a");
    b.wait_new_page("the English form");
    assert_eq!(
        b.js("return document.documentElement.lang;", vec![]),
        json!("en")
    );
    let text = b.text();
    assert!(
        text.contains("What type of organisation do you work in?"),
        "{text}"
    );
    assert!(text.contains("Send answers"));

    // Errors in English, then an answer.
    submit_by_click(&b);
    assert!(
        b.text().contains("Some answers are missing"),
        "{}",
        b.text()
    );
    for id in [
        "f-organisation-skole",
        "f-antal_sager-over_10",
        "f-boern-ja",
        "f-raadgivning-sikkerhed",
        "f-raadgivning-samarbejdspartnere",
        "f-tilgaengelighed-lav",
        "f-hjulpet_videre-nogen",
        "f-anbefale-meget_hoej",
    ] {
        b.click(&format!("label[for='{id}']"));
    }
    b.type_into("#f-kommentarer", "Very helpful – thank you");
    submit_by_click(&b);
    assert!(
        b.text().contains("Thank you for your answer"),
        "{}",
        b.text()
    );
    let stored = r.responses();
    assert_eq!(stored.len(), 1);
    let a = &stored[0].answers;
    assert_eq!(
        a["organisation"],
        Value::Single {
            code: "skole".into(),
            other: None
        }
    );
    assert_eq!(
        a["raadgivning"],
        Value::Multi {
            codes: vec!["sikkerhed".into(), "samarbejdspartnere".into()],
            other: None
        }
    );
    assert_eq!(
        a["kommentarer"],
        Value::Text {
            text: "Very helpful – thank you".into()
        }
    );

    // One-click opt-out: the link opened (as a scanner would) opts nobody out.
    let other = invite_by_file(&r, "vil.ikke@kommune.test");
    let unsub = other.replace("/s/", "/u/");
    let opted_out = |r: &Running| {
        let token = canvass::token::Token::from_url(&token_of(&other)).unwrap();
        match r.daemon().pipeline.store.link(&token).unwrap() {
            canvass::store::Link::Invitation(i) => i.opted_out,
            l => panic!("{l:?}"),
        }
    };
    b.goto(&unsub);
    b.refresh();
    assert!(
        b.text().contains("Meld fra til undersøgelsen"),
        "{}",
        b.text()
    );
    assert!(!opted_out(&r), "a GET opted out");
    b.mark_page();
    b.click("main form button");
    b.wait_new_page("the page after opting out");
    assert!(b.text().contains("Du har frameldt dig"), "{}", b.text());
    assert!(opted_out(&r));
    b.goto(&other);
    assert!(b.text().contains("Du har frameldt dig"), "{}", b.text());

    // The form's own button does the same.
    let third = invite_by_file(&r, "heller.ikke@kommune.test");
    b.goto(&third);
    b.mark_page();
    b.click("form.opt-out button");
    b.wait_new_page("the page after the form's opt-out");
    assert!(b.text().contains("Du har frameldt dig"), "{}", b.text());
    drop(b);
    r.stop().await;
}
