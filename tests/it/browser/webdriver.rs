//! A tiny W3C WebDriver client for the browser tests: Debian's `chromedriver`
//! starts Debian's headless `chromium`; commands are JSON over plain HTTP/1.1
//! on loopback (std `TcpStream`, no extra crates). Chrome DevTools commands go
//! through chromedriver's `goog/cdp/execute` endpoint.
//!
//! chromedriver runs in its own process group (chromium and its helpers
//! inherit it): on drop the session is closed and the whole group killed.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// WebDriver key codes (W3C WebDriver, "keyboard actions").
pub mod key {
    pub const TAB: &str = "\u{E004}";
    pub const ENTER: &str = "\u{E007}";
    pub const SHIFT: &str = "\u{E008}";
    pub const SPACE: &str = "\u{E00D}";
    pub const LEFT: &str = "\u{E012}";
    pub const UP: &str = "\u{E013}";
    pub const RIGHT: &str = "\u{E014}";
    pub const DOWN: &str = "\u{E015}";
}

/// The reference WebDriver gives to a DOM element.
#[derive(Debug, Clone)]
pub struct Element(pub String);

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

fn require(path: &str, what: &str) {
    assert!(
        Path::new(path).exists(),
        "{what} is missing ({path}): run scripts/install-test-deps (as root) to install \
         Debian's chromium and chromium-driver"
    );
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a fresh headless
    /// Chromium session with its own temporary profile, `width`×`height`.
    pub fn start(width: u32, height: u32) -> Browser {
        require(CHROMIUM, "Chromium");
        require(CHROMEDRIVER, "chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut driver = Command::new(CHROMEDRIVER)
            .args(["--port=0", "--log-level=WARNING"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {CHROMEDRIVER}: {e}; run scripts/install-test-deps")
            });
        // "ChromeDriver was started successfully on port 33233."
        let stdout = driver.stdout.take().expect("chromedriver stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(rest) = line.split("started successfully on port ").nth(1) {
                        let port: u16 = rest.trim_end_matches('.').trim().parse().unwrap_or(0);
                        let _ = tx.send(port);
                        sent = true;
                    }
                }
                // Keep draining so chromedriver never blocks on a full pipe.
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(p) if p != 0 => p,
            other => {
                kill_group(&mut driver);
                panic!("chromedriver did not report its port: {other:?}");
            }
        };
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            _profile: profile,
        };
        let args = [
            "--headless".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-quic".to_string(),
            "--no-first-run".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--hide-scrollbars".to_string(),
            "--force-color-profile=srgb".to_string(),
            "--lang=da-DK".to_string(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "timeouts": { "script": 20000, "pageLoad": 20000, "implicit": 0 },
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": args,
                        "prefs": { "intl.accept_languages": "da-DK,da" },
                    }
                }
            }
        });
        let v = browser
            .raw("POST", "/session", Some(caps))
            .unwrap_or_else(|e| panic!("cannot start a Chromium session: {e}"));
        browser.session = v["sessionId"].as_str().expect("session id").to_string();
        browser
    }

    /// One WebDriver command; `Err` carries WebDriver's error and message.
    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60))).ok();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
            self.port,
            body.len()
        );
        s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
        s.write_all(body.as_bytes()).map_err(|e| e.to_string())?;
        // chromedriver keeps the connection open: read the head, then exactly
        // Content-Length bytes.
        let mut reader = BufReader::new(s);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| format!("{method} {path}: {e}"))?;
            if n == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .ok_or_else(|| format!("no Content-Length in reply: {head}"))?;
        let mut buf = vec![0u8; len];
        reader.read_exact(&mut buf).map_err(|e| e.to_string())?;
        let body = String::from_utf8_lossy(&buf);
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
        if status == 200 {
            Ok(v["value"].clone())
        } else {
            Err(format!(
                "HTTP {status}: {} — {}",
                v["value"]["error"], v["value"]["message"]
            ))
        }
    }

    /// A command in this session; panics with WebDriver's message on error.
    pub fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_cmd(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    pub fn try_cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        self.raw(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Navigates and waits for the load event.
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Reloads (a page that answered a POST is POSTed again: chromedriver
    /// starts Chromium with `--disable-prompt-on-repost`).
    pub fn refresh(&self) {
        self.cmd("POST", "/refresh", Some(json!({})));
    }

    pub fn back(&self) {
        self.cmd("POST", "/back", Some(json!({})));
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Runs an async script: it ends by calling `arguments[arguments.length - 1]`.
    pub fn js_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Polls `script` (must return a truthy value when done) until `timeout`.
    pub fn wait_js(&self, what: &str, script: &str, timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            // A navigation in progress can make a poll fail: poll again.
            if let Ok(v) = self.try_cmd(
                "POST",
                "/execute/sync",
                Some(json!({ "script": script, "args": [] })),
            ) {
                let truthy = match &v {
                    Value::Null => false,
                    Value::Bool(b) => *b,
                    Value::Number(n) => n.as_f64() != Some(0.0),
                    Value::String(s) => !s.is_empty(),
                    _ => true,
                };
                if truthy {
                    return v;
                }
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; at {} the page says:\n{}",
                    self.url(),
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// Marks the current document, so [`Browser::wait_new_page`] can tell
    /// when another one has loaded.
    pub fn mark_page(&self) {
        self.js("window.__canvass_old_page = true;", vec![]);
    }

    pub fn wait_new_page(&self, what: &str) {
        self.wait_js(
            what,
            "return window.__canvass_old_page !== true && document.readyState === 'complete';",
            Duration::from_secs(15),
        );
    }

    /// `document.body.innerText`.
    pub fn text(&self) -> String {
        self.try_cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": "return document.body ? document.body.innerText : '';", "args": [] })),
        )
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
    }

    pub fn find(&self, css: &str) -> Element {
        let v = self
            .try_cmd(
                "POST",
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .unwrap_or_else(|e| panic!("no element {css}: {e}"));
        match v[ELEMENT_KEY].as_str() {
            Some(id) => Element(id.to_string()),
            None => panic!("no element {css}: {v}"),
        }
    }

    /// Clicks like a user (scrolls it into view; the element must be visible).
    pub fn click(&self, css: &str) {
        let el = self.find(css);
        self.cmd("POST", &format!("/element/{}/click", el.0), Some(json!({})));
    }

    /// Types into an element (focuses it first), as WebDriver's "send keys".
    pub fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.cmd(
            "POST",
            &format!("/element/{}/value", el.0),
            Some(json!({ "text": text })),
        );
    }

    /// Presses keys on the focused element, one after another (each a key
    /// code from [`key`] or one character / grapheme).
    pub fn press(&self, keys: &[&str]) {
        let mut actions = Vec::new();
        for k in keys {
            actions.push(json!({ "type": "keyDown", "value": k }));
            actions.push(json!({ "type": "keyUp", "value": k }));
        }
        self.cmd(
            "POST",
            "/actions",
            Some(json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] })),
        );
        let _ = self.try_cmd("DELETE", "/actions", None);
    }

    /// Types `text` with the keyboard on the focused element: a key down
    /// and up per character (emoji included: chromedriver sends them as key
    /// events carrying the character).
    pub fn keyboard_type(&self, text: &str) {
        let keys: Vec<String> = text.chars().map(|c| c.to_string()).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.press(&refs);
    }

    /// The id of the focused element.
    pub fn focused_id(&self) -> String {
        self.js(
            "return document.activeElement ? document.activeElement.id : '';",
            vec![],
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// A Chrome DevTools Protocol command, through chromedriver.
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(json!({ "cmd": cmd, "params": params })),
        )
    }

    /// A PNG of the whole page (not only the viewport), via DevTools.
    pub fn screenshot_full(&self) -> Vec<u8> {
        let size = self.js(
            "return [Math.ceil(document.documentElement.scrollWidth), Math.ceil(document.documentElement.scrollHeight)];",
            vec![],
        );
        let (w, h) = (
            size[0].as_f64().unwrap_or(800.0),
            size[1].as_f64().unwrap_or(600.0),
        );
        let v = self.cdp(
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": { "x": 0, "y": 0, "width": w, "height": h, "scale": 1 }
            }),
        );
        base64::engine::general_purpose::STANDARD
            .decode(v["data"].as_str().expect("screenshot data"))
            .expect("screenshot base64")
    }

    /// A PNG of the viewport (WebDriver's screenshot).
    pub fn screenshot(&self) -> Vec<u8> {
        let v = self.cmd("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("screenshot data"))
            .expect("screenshot base64")
    }

    /// Emulates a phone-sized viewport (CSS pixels), touch and mobile layout.
    pub fn emulate_mobile(&self, width: u32, height: u32) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": true }),
        );
    }

    /// Emulates a desktop window `width` × `height` device pixels zoomed to
    /// `zoom` (2.0 = 200 %): the page lays out in width / zoom CSS pixels,
    /// as browser zoom does.
    pub fn emulate_zoom(&self, width: u32, height: u32, zoom: f64) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({
                "width": (f64::from(width) / zoom).round() as u32,
                "height": (f64::from(height) / zoom).round() as u32,
                "deviceScaleFactor": zoom,
                "mobile": false
            }),
        );
    }

    pub fn clear_emulation(&self) {
        self.cdp("Emulation.clearDeviceMetricsOverride", json!({}));
    }
}

fn kill_group(child: &mut Child) {
    // The group id is the child's pid (process_group(0)).
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.raw("DELETE", &format!("/session/{}", self.session), None);
        }
        kill_group(&mut self.driver);
    }
}

/// Where screenshots go for a person to look at: `target/browser/`.
pub fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser");
    std::fs::create_dir_all(&dir).expect("target/browser");
    dir
}
