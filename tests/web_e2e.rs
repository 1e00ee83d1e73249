//! The live preview (`--web`) end to end: a real run of the binary (tiny images, on the adapter wgpu picks:
//! lavapipe on CI), its page opened in headless Chromium driven through chromedriver (W3C WebDriver), checks that
//! the image and the loss plot change while the run goes on, then a click on "stop and save": exit 130 and the
//! output written, as after Ctrl-C. And the refusals of `--web` that need no browser.
//!
//! Without `chromium` and `chromedriver` (Debian: `apt-get install chromium chromium-driver`) the browser test
//! says on stderr that it was skipped, unless `NEURAL_STYLE_REQUIRE_BROWSER=1` (set by `.ci/run`): then a missing
//! browser is a failure. `NEURAL_STYLE_SCREENSHOT=PATH` runs it on the example images at 64 px, longer, and
//! writes a screenshot of the page to PATH (how `docs/web-preview.png` was made).
//!
//! The HTTP client is a few lines over `TcpStream`: WebDriver is JSON over HTTP/1.1 on localhost, and the
//! refusal tests must send Host headers a client library would not let through.

mod cli_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cli_support::*;
use image::{DynamicImage, GenericImageView, ImageFormat};
use serde_json::{json, Value};

/// Kills and reaps a child process (the run, chromedriver) when a test ends, also by a failed assertion.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A program on `PATH`.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|dir| names.iter().map(move |n| dir.join(n))).find(|p| p.is_file())
}

/// Chromium and chromedriver, or why the browser test cannot run. A missing browser fails the test when
/// `NEURAL_STYLE_REQUIRE_BROWSER=1`, and is reported as skipped otherwise.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let chromium = on_path(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = on_path(&["chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        (c, d) => {
            let missing: Vec<&str> = [("chromium", c.is_none()), ("chromedriver", d.is_none())]
                .iter()
                .filter(|m| m.1)
                .map(|m| m.0)
                .collect();
            let why = format!(
                "{} not found on PATH (Debian: apt-get install chromium chromium-driver)",
                missing.join(" and ")
            );
            if std::env::var("NEURAL_STYLE_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
                panic!("NEURAL_STYLE_REQUIRE_BROWSER=1 but {why}");
            }
            // Straight to the process's stderr: the test harness captures eprintln! of passing tests, and a skip
            // must be seen.
            let _ = writeln!(std::io::stderr(), "SKIPPED the browser test of the web preview: {why}");
            None
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP/1.1 request with a JSON body on a fresh connection; returns the status and the parsed JSON body.
fn http_json(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // chromedriver answers "Connection: close" but keeps the connection open: read by Content-Length.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let (head, mut payload) = loop {
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break (String::from_utf8_lossy(&raw[..split]).to_lowercase(), raw[split + 4..].to_vec());
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before a response head");
        raw.extend_from_slice(&buf[..n]);
    };
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let length =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).map(|v| v.trim().parse::<usize>().unwrap());
    let chunked = head.contains("transfer-encoding:") && head.contains("chunked");
    loop {
        let complete = match length {
            Some(len) => payload.len() >= len,
            None if chunked => payload.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if complete {
            break;
        }
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break; // delimited by the end of the connection
        }
        payload.extend_from_slice(&buf[..n]);
    }
    if chunked {
        payload = dechunk(&payload);
    }
    let value = if payload.is_empty() { Value::Null } else { serde_json::from_slice(&payload).unwrap() };
    (status, value)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).split(';').next().unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 2 + size + 2..];
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let clean: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, c)| n | (value(*c) as u32) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// A W3C WebDriver session on a chromedriver of our own.
struct Browser {
    port: u16,
    session: String,
    _driver: KillOnDrop,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(chromium: &Path, chromedriver: &Path) -> Browser {
        let port = free_port();
        let driver = KillOnDrop(
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver"),
        );
        let start = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok()
                && http_json(port, "GET", "/status", None).1["value"]["ready"] == true
            {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "chromedriver did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        // As root Chromium needs --no-sandbox; the rest keeps it from reaching out to the network or syncing.
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1200,860".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium.display().to_string(), "args": args },
        }}});
        let (status, v) = http_json(port, "POST", "/session", Some(&caps));
        assert_eq!(status, 200, "new session: {v}");
        let session = v["value"]["sessionId"].as_str().expect("a session id").to_string();
        Browser { port, session, _driver: driver, _profile: profile }
    }

    fn call(&self, method: &str, what: &str, body: Option<&Value>) -> Value {
        let (status, v) = http_json(self.port, method, &format!("/session/{}{what}", self.session), body);
        assert_eq!(status, 200, "{method} {what}: {v}");
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", Some(&json!({ "url": url })));
    }

    fn script(&self, body: &str) -> Value {
        self.call("POST", "/execute/sync", Some(&json!({ "script": body, "args": [] })))
    }

    /// Clicks the element `css` selects (W3C: the element reference is under this fixed key).
    fn click(&self, css: &str) {
        let found = self.call("POST", "/element", Some(&json!({ "using": "css selector", "value": css })));
        let id = found["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("no element id: {found}"))
            .to_string();
        self.call("POST", &format!("/element/{id}/click"), Some(&json!({})));
    }

    fn screenshot(&self) -> Vec<u8> {
        base64_decode(self.call("GET", "/screenshot", None).as_str().expect("base64 PNG"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http_json(self.port, "DELETE", &format!("/session/{}", self.session), None);
    }
}

/// What the page shows, read in the browser: the sequence number of the image shown (null before the first),
/// its size and a hash of its pixels, the number of points in the loss plot, the status line.
const PAGE_STATE: &str = r#"
const img = document.getElementById("current");
const out = { seq: null, width: 0, hash: 0, points: Number(document.getElementById("plot").dataset.points),
              status: document.getElementById("status").textContent,
              iteration: document.getElementById("iteration").textContent };
if (img.dataset.seq && img.complete && img.naturalWidth > 0) {
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let h = 0;
  for (let i = 0; i < d.length; i++) h = (Math.imul(h, 31) + d[i]) >>> 0;
  out.seq = Number(img.dataset.seq); out.width = img.naturalWidth; out.hash = h;
}
return out;
"#;

/// Polls the page until `ok` holds (or panics after `limit`, with the last state and the run's stderr).
fn wait_for(browser: &Browser, limit: Duration, what: &str, log: &Log, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let state = browser.script(PAGE_STATE);
        if ok(&state) {
            return state;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}; page: {state}\nrun's stderr:\n{}", log.text());
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The run's stderr, read on a thread (so the run never blocks on a full pipe), line by line.
struct Log {
    lines: mpsc::Receiver<String>,
    seen: std::cell::RefCell<Vec<String>>,
}

impl Log {
    fn new(child: &mut Child) -> Log {
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Log { lines: rx, seen: Default::default() }
    }

    fn next_line(&self, limit: Duration) -> Option<String> {
        let line = self.lines.recv_timeout(limit).ok()?;
        self.seen.borrow_mut().push(line.clone());
        Some(line)
    }

    fn text(&self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.borrow_mut().push(line);
        }
        self.seen.borrow().join("\n")
    }
}

#[test]
fn web_preview_in_a_real_browser() {
    let Some((chromium, chromedriver)) = browser() else { return };
    let test_start = Instant::now();
    let screenshot = std::env::var_os("NEURAL_STYLE_SCREENSHOT").map(PathBuf::from);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    // The test: 48x36 content at 24 px (24x18). The screenshot: the README's example images at 64 px.
    let (content, style, size, want) = match &screenshot {
        None => {
            save(d, "content.png", &DynamicImage::ImageRgb8(picture(48, 36, 0)), ImageFormat::Png);
            save(d, "style.png", &DynamicImage::ImageRgb8(stripes(32, 32)), ImageFormat::Png);
            (d.join("content.png"), d.join("style.png"), "24", (24, 18))
        }
        Some(_) => (examples.join("chelsea.png"), examples.join("starry_night.jpg"), "64", (64, 43)), // 451x300
    };
    let mut child = Command::new(bin())
        .current_dir(d)
        .arg(&content)
        .arg(&style)
        .args(["--image-size", size, "--iterations", "100000", "--print-every", "1", "--web", "127.0.0.1:0"])
        .arg("--weights")
        .arg(weights())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Log::new(&mut child);
    let mut run = KillOnDrop(child);

    // The URL is printed first, as soon as the port is bound.
    let url = loop {
        let line = log.next_line(Duration::from_secs(60)).unwrap_or_else(|| panic!("no URL printed:\n{}", log.text()));
        if let Some(url) = line.strip_prefix("web preview: ") {
            break url.to_string();
        }
        assert!(is_driver_noise(&line), "the URL must be the first line, got {line:?}");
    };
    assert!(url.starts_with("http://127.0.0.1:") && url.contains("/?token="), "{url}");

    let browser = Browser::start(&chromium, &chromedriver);
    browser.go(&url);
    let long = Duration::from_secs(if screenshot.is_some() { 600 } else { 40 });

    // The page fills in: an image of the run's size and a plot with points.
    let first = wait_for(&browser, long, "a first image and two plot points", &log, |s| {
        s["seq"].is_number() && s["points"].as_u64() >= Some(2)
    });
    assert_eq!(first["width"].as_u64(), Some(want.0 as u64), "{first}");
    // And goes on changing while the run goes on: a newer image with other pixels, more points.
    let later = wait_for(&browser, long, "a newer image and more plot points", &log, |s| {
        s["seq"].as_u64() > first["seq"].as_u64()
            && s["hash"] != first["hash"]
            && s["points"].as_u64() > first["points"].as_u64()
    });
    assert!(later["iteration"].as_str().is_some_and(|t| t.ends_with("/ 100000")), "{later}");
    let text = browser.script("return document.body.innerText;");
    let text = text.as_str().unwrap();
    for needle in ["it/s", "px", "style scale 1", "Stop and save"] {
        assert!(text.contains(needle), "page lacks {needle:?}:\n{text}");
    }
    let thumbs = browser.script("return [...document.querySelectorAll('#thumbs img')].map(i => i.naturalWidth);");
    assert_eq!(thumbs.as_array().map(Vec::len), Some(2), "content and style thumbnails: {thumbs}");

    if let Some(path) = &screenshot {
        // Enough of the run for a plot worth showing.
        wait_for(&browser, long, "30 plot points", &log, |s| s["points"].as_u64() >= Some(30));
        std::thread::sleep(Duration::from_secs(2));
        let png = browser.screenshot();
        assert_eq!(image::guess_format(&png).unwrap(), ImageFormat::Png);
        std::fs::write(path, &png).unwrap();
        eprintln!("wrote the screenshot to {}", path.display());
    }

    // "Stop and save" does what Ctrl-C does: the current image is written and the exit code is 130.
    browser.click("#stop");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = run.0.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the run did not stop:\n{}", log.text());
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = log.text();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("stop requested from the web preview") && stderr.contains("interrupted after"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let out = image::open(d.join("out.png")).unwrap();
    assert_eq!(out.dimensions(), want);
    assert!(!files(d).iter().any(|n| n.starts_with(".tmp")), "temporary files left: {:?}", files(d));
    // The page was told before the server went away.
    let done = wait_for(&browser, Duration::from_secs(10), "the page to say it stopped", &log, |s| {
        s["status"].as_str().is_some_and(|t| t.starts_with("stopped after"))
    });
    assert!(done["status"].as_str().unwrap().contains("out.png"), "{done}");
    eprintln!("browser test took {:.1} s", test_start.elapsed().as_secs_f64());
}

#[test]
fn a_busy_port_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    save(d, "style.png", &DynamicImage::ImageRgb8(stripes(32, 32)), ImageFormat::Png);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let spec = format!("127.0.0.1:{port}");
    // The content image does not exist: the port is checked before any image is read.
    let e = assert_refused(d, &["missing.png", "style.png", "--web", &spec], Some(1), "address already in use");
    assert!(e.contains(&format!("error: --web {spec}: address already in use")), "{e}");
    assert_refused(d, &["missing.png", "style.png", "--web", "70000"], Some(2), "out of range");
    assert_refused(d, &["missing.png", "style.png", "--web", "example.com:8080"], Some(2), "not an IP address");
}
