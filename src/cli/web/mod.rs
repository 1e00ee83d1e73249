//! `--web [ADDR:]PORT`: a live preview of the run in a browser. One page (HTML, CSS and JS embedded in the
//! binary from `page.html`; no CDN, no library) fed by server-sent events: the current image, the loss curves,
//! iteration, speed, ETA, adapter, size, scale, thumbnails of the content and style images, and a "stop and
//! save" button that does what Ctrl-C does.
//!
//! # API (used from `run.rs` and `observer.rs`)
//!
//! [`WebPreview`] is a handle; without `--web` it is [`WebPreview::start`]`(None, ..)` and every method does
//! nothing, so the call sites need no `if`.
//! 1. [`WebPreview::start`]: parse and bind before any work (a busy or forbidden port is a one-line error before
//!    an image is read or the GPU touched), print the URL with the run's token on stderr, start serving. It
//!    takes the flag that Ctrl-C sets; `POST /stop` sets the same flag, so the loop's existing check stops the
//!    run and the current image is written exactly as after Ctrl-C (exit 130).
//! 2. [`WebPreview::publish_run_info`]: once, right before the loop (adapter, size, scale, thumbnails; the
//!    speed clock starts here).
//! 3. [`WebPreview::publish_progress`]: after every iteration, with the losses when they were read back.
//! 4. [`WebPreview::offer_image`]: whenever the loop has an image on the host anyway (today: when losses are
//!    printed or a frame is saved). It never causes a GPU read-back of its own; a caller that keeps a host copy
//!    of the last iterate more often can offer it more often, the throttle below still applies.
//! 5. [`WebPreview::finish`]: once, after the output is written (the page says so and stops reconnecting).
//!
//! # The engine never waits for the browser
//! - Every method returns at once: a mutex held for a few field updates, and `try_send`s.
//! - An image is accepted only while a page is connected to `/events`, at most every [`IMAGE_INTERVAL`], and
//!   only when the encoder is idle (a channel of capacity 1; an offer while it is busy is dropped, before the
//!   image is even copied). A separate thread applies `--original-colors`, PNG-encodes and keeps the latest
//!   bytes for `/image.png`.
//! - Each event-stream client has its own bounded queue ([`CLIENT_QUEUE`] events) and its own thread writing to
//!   its socket; a client whose queue is full is dropped (its connection closes, the browser's EventSource
//!   reconnects and gets a fresh snapshot: run info, loss history, latest progress and image).
//! - At most [`MAX_CLIENTS`] event streams at a time; more get 503.
//!
//! # Safety
//! See [`guard`]: Host and Origin checks against DNS rebinding and cross-site requests, only the four routes,
//! and the per-run token (128 random bits, hex) on every route.
//!
//! # Server
//! tiny_http: a small, synchronous, well-kept HTTP/1.1 server crate (4 small dependencies) that fits a CLI
//! which has no async runtime; axum would bring tokio and hyper for four routes. It has no streaming-response
//! flush, so the event stream writes its own response head and events on the raw connection
//! (`Request::into_writer`), flushing after each event.

mod guard;

use std::fmt::Write as _;
use std::io::{Cursor, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use image::ImageFormat;
use neural_style::image_io;
use neural_style::{Losses, PlanarImage};
use serde_json::json;

use guard::{Decision, Guard, Route};

use super::CliError;

/// The page, embedded in the binary.
const PAGE: &str = include_str!("page.html");

/// Shortest time between two accepted preview images ("at most a few a second").
pub const IMAGE_INTERVAL: Duration = Duration::from_millis(300);
/// Shortest time between two progress events that carry no losses (the iteration counter, speed and ETA).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);
/// Events queued for one event-stream client before it is dropped as too slow.
pub const CLIENT_QUEUE: usize = 256;
/// Most event-stream clients at once.
pub const MAX_CLIENTS: usize = 8;
/// A comment line on an idle event stream this often (proxies and browsers keep it open; a dead client is
/// noticed when the write fails).
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Loss points kept for pages that connect late; beyond this every other point is dropped (first and last
/// kept), so the history spans the whole run at a coarser step.
const HISTORY_MAX: usize = 4096;
/// Threads answering requests (page, image, stop; each event stream gets a thread of its own).
const WORKERS: usize = 4;
/// Longest side of the content and style thumbnails.
const THUMB_SIDE: usize = 160;
/// How long [`WebPreview::finish`] lets connected pages receive the last event before the process exits.
const FINISH_GRACE: Duration = Duration::from_millis(500);

/// Parses `--web [ADDR:]PORT`: `8080`, `127.0.0.1:8080`, `[::1]:8080`, `localhost:8080`, `0.0.0.0:8080`. Port 0
/// asks for any free port. The address defaults to 127.0.0.1. Errors are one line for a usage error.
pub fn parse_listen_addr(spec: &str) -> Result<SocketAddr, String> {
    let bad = || format!("--web '{spec}': expected [ADDR:]PORT, e.g. 8080 or 127.0.0.1:8080");
    let port_of = |p: &str| -> Result<u16, String> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        p.parse::<u16>()
            .map_err(|_| format!("--web '{spec}': port {p} is out of range (1-65535, or 0 for any free port)"))
    };
    let spec_t = spec.trim();
    if !spec_t.contains(':') {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port_of(spec_t)?));
    }
    let (host, port) = if let Some(rest) = spec_t.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        (host, after.strip_prefix(':').ok_or_else(bad)?)
    } else {
        let (host, port) = spec_t.rsplit_once(':').ok_or_else(bad)?;
        if host.contains(':') {
            // An IPv6 address needs brackets, or its last group would be read as the port.
            return Err(format!("--web '{spec}': write an IPv6 address in brackets, e.g. [::1]:8080"));
        }
        (host, port)
    };
    let port = port_of(port)?;
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>().map_err(|_| {
            format!("--web '{spec}': '{host}' is not an IP address (give one of this machine's, or localhost)")
        })?
    };
    Ok(SocketAddr::new(ip, port))
}

/// Binds the listener, with a one-line error that says what is wrong with the address.
fn bind(spec: &str, addr: SocketAddr) -> Result<TcpListener, CliError> {
    TcpListener::bind(addr).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::AddrInUse => "address already in use".to_string(),
            std::io::ErrorKind::PermissionDenied if addr.port() < 1024 => {
                "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE; use 1024 or above)".to_string()
            }
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            std::io::ErrorKind::AddrNotAvailable => {
                "address not available (not an address of this machine)".to_string()
            }
            _ => super::one_line(&e.to_string()),
        };
        CliError::Runtime(format!("--web {spec}: {why}"))
    })
}

/// The page's address for the printed URL: a wildcard bind is reached locally through the loopback address.
fn url_host(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => format!("127.0.0.1:{}", addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => format!("[::1]:{}", addr.port()),
        _ => addr.to_string(),
    }
}

/// What the page shows about the run (sent once, and to every page that connects later).
pub struct RunInfo<'a> {
    /// The adapter's name.
    pub adapter: &'a str,
    /// Size of the optimised image.
    pub width: usize,
    pub height: usize,
    /// Iterations asked for.
    pub iterations: usize,
    /// `--style-scale` and the style images' longest side it gives.
    pub style_scale: f64,
    pub style_side: usize,
    /// The content image as preprocessed (also the source of `--original-colors`).
    pub content: &'a PlanarImage,
    /// The style images as preprocessed.
    pub styles: &'a [PlanarImage],
    /// Whether written images get the content's colours: the preview then shows them too.
    pub original_colors: bool,
    /// The output path (the page says where "stop and save" writes).
    pub output: &'a Path,
    /// A video: which frame this is, of which (the page shows it; the speed and ETA are the sequence's).
    pub sequence: Option<&'a str>,
}

/// The live preview; all methods are cheap and never block on a browser.
pub struct WebPreview {
    hub: Option<Arc<Hub>>,
    url: Option<String>,
}

impl WebPreview {
    /// Without `spec` (no `--web`): a handle that does nothing. With it: binds (a one-line runtime error when the
    /// port is busy, forbidden or the address is not this machine's), prints `web preview: URL` on stderr, and
    /// starts serving. `POST /stop` sets `stop` (the Ctrl-C flag).
    pub fn start(spec: Option<&str>, stop: &'static AtomicBool) -> Result<WebPreview, CliError> {
        let Some(spec) = spec else { return Ok(WebPreview { hub: None, url: None }) };
        let addr = parse_listen_addr(spec).map_err(CliError::Usage)?;
        let listener = bind(spec, addr)?;
        let local = listener.local_addr().map_err(|e| CliError::Runtime(format!("--web {spec}: {e}")))?;
        let token = new_token();
        let url = format!("http://{}/?token={token}", url_host(local));
        let guard = Guard { bound: local.ip(), port: local.port(), token };
        let server = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| CliError::Runtime(format!("--web {spec}: {}", super::one_line(&e.to_string()))))?;
        let (frames_tx, frames_rx) = sync_channel::<Frame>(1);
        let hub = Arc::new(Hub {
            guard,
            stop,
            state: Mutex::new(State::default()),
            image: Mutex::new(None),
            encoder_busy: AtomicBool::new(false),
            frames: frames_tx,
            streams: AtomicUsize::new(0),
            finished_delivered: AtomicUsize::new(0),
        });
        let server = Arc::new(server);
        for i in 0..WORKERS {
            let (server, hub) = (Arc::clone(&server), Arc::clone(&hub));
            spawn(&format!("web-{i}"), move || serve(&server, &hub))?;
        }
        {
            let hub = Arc::clone(&hub);
            spawn("web-encoder", move || encode_frames(&hub, frames_rx))?;
        }
        eprintln!("web preview: {url}");
        Ok(WebPreview { hub: Some(hub), url: Some(url) })
    }

    /// The printed URL (with the token), when serving.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// Sends the run's description to connected pages and keeps it for later ones; starts the speed clock.
    pub fn publish_run_info(&self, info: &RunInfo<'_>) {
        let Some(hub) = &self.hub else { return };
        let thumb = |img: &PlanarImage| {
            let side = THUMB_SIDE.min(img.width.max(img.height));
            let small = image_io::resize_longest(img, side);
            image_io::encode_image(&small, ImageFormat::Png)
                .map(|png| format!("data:image/png;base64,{}", base64(&png)))
                .unwrap_or_default()
        };
        let scale = format!("style scale {} ({} px longest side)", trim_float(info.style_scale), info.style_side);
        let data = json!({
            "adapter": info.adapter,
            "width": info.width,
            "height": info.height,
            "iterations": info.iterations,
            "scale": scale,
            "style_scale": info.style_scale,
            "style_side": info.style_side,
            "content_thumb": thumb(info.content),
            "style_thumbs": info.styles.iter().map(thumb).collect::<Vec<_>>(),
            "original_colors": info.original_colors,
            "output": info.output.display().to_string(),
            "sequence": info.sequence,
        });
        let event = sse_event("info", &data);
        let mut st = hub.lock_state();
        st.colors_from = info.original_colors.then(|| Arc::new(info.content.clone()));
        st.total = info.iterations;
        // Started once: a video sends this at every frame, and its speed and ETA are the sequence's.
        st.clock.get_or_insert_with(Instant::now);
        st.info = Some(Arc::clone(&event));
        st.broadcast(&event);
    }

    /// After an iteration: `iterations_done` updates so far, and the losses of image `iter` when they were read
    /// back. Events with losses always go out; others at most every 200 ms.
    pub fn publish_progress(&self, iterations_done: usize, losses: Option<(usize, &Losses)>) {
        let Some(hub) = &self.hub else { return };
        let mut st = hub.lock_state();
        let now = Instant::now();
        if let Some((iter, l)) = losses {
            st.history.push([iter as f64, l.total, l.content, l.style, l.tv]);
            if st.history.len() > HISTORY_MAX {
                thin_out(&mut st.history);
            }
        } else if st.last_progress_sent.is_some_and(|t| now - t < PROGRESS_INTERVAL) {
            st.done = iterations_done;
            return;
        }
        st.done = iterations_done;
        st.last_progress_sent = Some(now);
        let event = sse_event("progress", &st.progress_json(losses, now));
        st.progress = Some(Arc::clone(&event));
        st.broadcast(&event);
    }

    /// Offers the image after `iteration` updates. Accepted (copied and handed to the encoder) only while a page
    /// is connected, at most every [`IMAGE_INTERVAL`], and when the encoder is idle; returns whether it was.
    pub fn offer_image(&self, iteration: usize, img: &PlanarImage) -> bool {
        let Some(hub) = &self.hub else { return false };
        let mut st = hub.lock_state();
        let now = Instant::now();
        if hub.streams.load(Ordering::SeqCst) == 0
            || st.last_image_accepted.is_some_and(|t| now - t < IMAGE_INTERVAL)
            || hub.encoder_busy.swap(true, Ordering::SeqCst)
        {
            return false;
        }
        let frame = Frame { seq: st.next_seq, iteration, image: img.clone(), colors_from: st.colors_from.clone() };
        match hub.frames.try_send(frame) {
            Ok(()) => {
                st.next_seq += 1;
                st.last_image_accepted = Some(now);
                true
            }
            Err(_) => {
                hub.encoder_busy.store(false, Ordering::SeqCst);
                false
            }
        }
    }

    /// The run is over: `iteration` updates, `stopped` when by Ctrl-C or the page's button, the output written.
    /// Connected pages get a last event; waits at most 500 ms for them to receive it, and not at all without one.
    pub fn finish(&self, iteration: usize, stopped: bool, output: &Path) {
        let Some(hub) = &self.hub else { return };
        let data = json!({
            "state": if stopped { "stopped" } else { "finished" },
            "iteration": iteration,
            "output": output.display().to_string(),
        });
        self.send_finished(hub, &data);
    }

    fn send_finished(&self, hub: &Hub, data: &serde_json::Value) {
        let event = sse_event("finished", data);
        let waiting = {
            let mut st = hub.lock_state();
            st.finished = Some(Arc::clone(&event));
            st.broadcast(&event);
            st.clients.len()
        };
        let deadline = Instant::now() + FINISH_GRACE;
        while hub.finished_delivered.load(Ordering::SeqCst) < waiting && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for WebPreview {
    /// A run that ends without [`WebPreview::finish`] (an error) still tells the page it is over.
    fn drop(&mut self) {
        let Some(hub) = &self.hub else { return };
        if hub.lock_state().finished.is_none() {
            self.send_finished(hub, &json!({ "state": "ended" }));
        }
    }
}

/// A preview image on its way to the encoder.
struct Frame {
    seq: u64,
    iteration: usize,
    image: PlanarImage,
    colors_from: Option<Arc<PlanarImage>>,
}

/// The latest preview image. `/image.png` serves it whatever `?seq=` asks for (that parameter only defeats
/// caches) and says in headers which one it is, so the page labels it right.
#[derive(Clone)]
struct Encoded {
    seq: u64,
    iteration: usize,
    png: Arc<Vec<u8>>,
}

/// What the server threads share with the run.
struct Hub {
    guard: Guard,
    stop: &'static AtomicBool,
    state: Mutex<State>,
    /// The latest preview image, PNG-encoded.
    image: Mutex<Option<Encoded>>,
    /// A frame is queued or being encoded.
    encoder_busy: AtomicBool,
    frames: SyncSender<Frame>,
    /// Open event streams (a page is watching).
    streams: AtomicUsize,
    /// Event streams that have written the `finished` event.
    finished_delivered: AtomicUsize,
}

impl Hub {
    /// The state, also after a thread panicked while holding it (the data is plain and stays usable).
    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn latest_image(&self) -> Option<Encoded> {
        self.image.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Everything a page that connects now must be told, and the queues of those connected.
#[derive(Default)]
struct State {
    info: Option<Arc<str>>,
    progress: Option<Arc<str>>,
    image_event: Option<Arc<str>>,
    finished: Option<Arc<str>>,
    /// `[iter, total, content, style, tv]`.
    history: Vec<[f64; 5]>,
    total: usize,
    done: usize,
    /// Set by `publish_run_info`: the speed is measured from there.
    clock: Option<Instant>,
    last_progress_sent: Option<Instant>,
    last_image_accepted: Option<Instant>,
    next_seq: u64,
    colors_from: Option<Arc<PlanarImage>>,
    clients: Vec<SyncSender<Arc<str>>>,
}

impl State {
    /// Queues `event` for every client; drops those that are gone or too slow (their queue is full).
    fn broadcast(&mut self, event: &Arc<str>) {
        self.clients.retain(|c| match c.try_send(Arc::clone(event)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        });
    }

    fn progress_json(&self, losses: Option<(usize, &Losses)>, now: Instant) -> serde_json::Value {
        let secs = self.clock.map(|t| (now - t).as_secs_f64()).unwrap_or(0.0);
        let rate = (secs > 0.0 && self.done > 0).then(|| self.done as f64 / secs);
        let eta = rate.map(|r| self.total.saturating_sub(self.done) as f64 / r);
        let mut v = json!({
            "iteration": self.done,
            "total": self.total,
            "it_per_s": rate,
            "eta_s": eta,
        });
        if let Some((iter, l)) = losses {
            v["losses"] = json!({ "iter": iter, "total": l.total, "content": l.content, "style": l.style, "tv": l.tv });
        }
        v
    }

    /// The events that bring a newly connected page up to date, in order.
    fn snapshot(&self) -> Vec<Arc<str>> {
        let mut v: Vec<Arc<str>> = Vec::new();
        v.extend(self.info.clone());
        v.push(sse_event("history", &json!({ "points": self.history })));
        v.extend(self.progress.clone());
        v.extend(self.image_event.clone());
        v.extend(self.finished.clone());
        v
    }
}

/// Keeps the first and last points and every other one between.
fn thin_out(history: &mut Vec<[f64; 5]>) {
    let last = history.len() - 1;
    let mut i = 0;
    history.retain(|_| {
        let keep = i % 2 == 0 || i == last;
        i += 1;
        keep
    });
}

/// One server-sent event: `event: NAME` and the JSON on one `data:` line (serde_json escapes newlines).
fn sse_event(name: &str, data: &serde_json::Value) -> Arc<str> {
    Arc::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), CliError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(|_| ())
        .map_err(|e| CliError::Runtime(format!("--web: cannot start a server thread: {e}")))
}

/// 128 random bits from the OS-seeded CSPRNG, as 32 hex digits.
fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Standard base64 with padding (for the thumbnails' `data:` URLs).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `1` for 1.0, `0.75` for 0.75: the scale as the user typed it.
fn trim_float(v: f64) -> String {
    let s = format!("{v}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// The encoder thread: `--original-colors`, PNG, then tell the pages.
fn encode_frames(hub: &Hub, frames: Receiver<Frame>) {
    for frame in frames {
        let img = match &frame.colors_from {
            Some(content) => image_io::original_colors(&frame.image, content),
            None => frame.image,
        };
        if let Ok(png) = image_io::encode_image(&img, ImageFormat::Png) {
            let encoded = Encoded { seq: frame.seq, iteration: frame.iteration, png: Arc::new(png) };
            *hub.image.lock().unwrap_or_else(|e| e.into_inner()) = Some(encoded);
            let event = sse_event("image", &json!({ "seq": frame.seq, "iteration": frame.iteration }));
            let mut st = hub.lock_state();
            st.image_event = Some(Arc::clone(&event));
            st.broadcast(&event);
        }
        hub.encoder_busy.store(false, Ordering::SeqCst);
    }
}

/// `Arc<Vec<u8>>` as a response body without copying it.
struct SharedBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header")
}

/// Headers on every response: nothing cached (the token is in the URL), no sniffing, no framing (the stop
/// button cannot be clickjacked), no Referer (the token stays here).
fn common_headers() -> Vec<tiny_http::Header> {
    vec![
        header("Cache-Control", "no-store"),
        header("X-Content-Type-Options", "nosniff"),
        header("X-Frame-Options", "DENY"),
        header("Referrer-Policy", "no-referrer"),
    ]
}

/// The page's content security policy: only its own inline script and style, images from itself, `data:` (the
/// thumbnails) or `blob:` (the preview, fetched then shown), connections to itself; nothing from anywhere else.
const PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                        img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
                        frame-ancestors 'none'";

fn respond<R: AsRef<[u8]>>(rq: tiny_http::Request, status: u16, content_type: &str, body: R, extra: &[(&str, &str)]) {
    let len = body.as_ref().len();
    let mut headers = common_headers();
    headers.push(header("Content-Type", content_type));
    for (k, v) in extra {
        headers.push(header(k, v));
    }
    let response = tiny_http::Response::new(tiny_http::StatusCode(status), headers, Cursor::new(body), Some(len), None)
        .with_chunked_threshold(usize::MAX);
    // A client that went away is not the run's problem.
    let _ = rq.respond(response);
}

fn text(rq: tiny_http::Request, status: u16, body: &'static str) {
    respond(rq, status, "text/plain; charset=utf-8", body.as_bytes(), &[]);
}

/// A worker: answers requests until the server goes away.
fn serve(server: &tiny_http::Server, hub: &Arc<Hub>) {
    while let Ok(rq) = server.recv() {
        let find = |name: &'static str| rq.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str());
        let decision = hub.guard.decide(rq.method().as_str(), rq.url(), find("Host"), find("Origin"));
        match decision {
            Decision::Forbidden(r) => text(rq, 403, r.message()),
            Decision::NotFound => text(rq, 404, "not found\n"),
            Decision::Serve(Route::Page) => {
                respond(rq, 200, "text/html; charset=utf-8", PAGE.as_bytes(), &[("Content-Security-Policy", PAGE_CSP)])
            }
            Decision::Serve(Route::Image) => match hub.latest_image() {
                Some(img) => {
                    let (seq, iteration) = (img.seq.to_string(), img.iteration.to_string());
                    let extra = [("X-Preview-Seq", seq.as_str()), ("X-Preview-Iteration", iteration.as_str())];
                    respond(rq, 200, "image/png", SharedBytes(img.png), &extra)
                }
                None => text(rq, 503, "no image yet\n"),
            },
            Decision::Serve(Route::Stop) => {
                if !hub.stop.swap(true, Ordering::SeqCst) {
                    eprintln!("\nstop requested from the web preview: saving the current image");
                }
                respond(rq, 200, "application/json", &b"{\"stopping\":true}"[..], &[]);
            }
            Decision::Serve(Route::Events) => {
                // Count the stream before its thread starts, so that MAX_CLIENTS holds under a burst.
                if hub.streams.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
                    hub.streams.fetch_sub(1, Ordering::SeqCst);
                    text(rq, 503, "too many open previews\n");
                    continue;
                }
                let hub2 = Arc::clone(hub);
                let started = spawn("web-events", move || {
                    stream_events(&hub2, rq);
                    hub2.streams.fetch_sub(1, Ordering::SeqCst);
                });
                if started.is_err() {
                    hub.streams.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
    }
}

/// One event-stream client's connection.
struct EventStream<'a> {
    out: Box<dyn Write + Send>,
    hub: &'a Hub,
    /// The `finished` event was written and is not yet flushed.
    finished_pending: bool,
}

impl EventStream<'_> {
    fn send(&mut self, text: &str) -> std::io::Result<()> {
        self.out.write_all(text.as_bytes())?;
        self.finished_pending |= text.starts_with("event: finished\n");
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        if std::mem::take(&mut self.finished_pending) {
            self.hub.finished_delivered.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// One event-stream client: the response head, a snapshot, then its queue, until it or the server goes away.
fn stream_events(hub: &Hub, rq: tiny_http::Request) {
    let (tx, rx) = sync_channel::<Arc<str>>(CLIENT_QUEUE);
    // Snapshot and registration under one lock: no event is missed or sent twice.
    let snapshot = {
        let mut st = hub.lock_state();
        st.clients.push(tx);
        st.snapshot()
    };
    // tiny_http's own streaming bodies are chunked through an 8 KiB buffer with no flush: events would sit
    // there. So the head is written here, on the raw connection, and the body ends when the connection closes.
    let mut head =
        String::from("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nConnection: close\r\n");
    for h in common_headers() {
        let _ = write!(head, "{}: {}\r\n", h.field, h.value);
    }
    head.push_str("\r\nretry: 1000\n\n");
    let mut stream = EventStream { out: rq.into_writer(), hub, finished_pending: false };
    let _ = stream_to(&mut stream, &head, &snapshot, &rx);
}

/// Writes the head and the snapshot, then every queued event (a keep-alive comment when idle), flushing once
/// per batch. Returns when the client is gone (a write fails) or was dropped from the hub.
fn stream_to(
    stream: &mut EventStream<'_>,
    head: &str,
    snapshot: &[Arc<str>],
    rx: &Receiver<Arc<str>>,
) -> std::io::Result<()> {
    stream.send(head)?;
    for event in snapshot {
        stream.send(event)?;
    }
    stream.flush()?;
    loop {
        match rx.recv_timeout(KEEPALIVE) {
            Ok(event) => stream.send(&event)?,
            Err(RecvTimeoutError::Timeout) => stream.send(": keep-alive\n\n")?,
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
        while let Ok(more) = rx.try_recv() {
            stream.send(&more)?;
        }
        stream.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpStream;

    #[test]
    fn listen_addresses() {
        let ok = [
            ("8080", "127.0.0.1:8080"),
            ("0", "127.0.0.1:0"),
            ("127.0.0.1:9000", "127.0.0.1:9000"),
            ("localhost:9000", "127.0.0.1:9000"),
            ("0.0.0.0:65535", "0.0.0.0:65535"),
            ("[::1]:8080", "[::1]:8080"),
            ("192.168.1.20:1", "192.168.1.20:1"),
        ];
        for (spec, want) in ok {
            assert_eq!(parse_listen_addr(spec), Ok(want.parse().unwrap()), "{spec}");
        }
        for (spec, needle) in [
            ("", "expected [ADDR:]PORT"),
            ("http", "expected [ADDR:]PORT"),
            ("-1", "expected [ADDR:]PORT"),
            ("65536", "out of range"),
            ("127.0.0.1:99999", "out of range"),
            ("127.0.0.1:", "expected [ADDR:]PORT"),
            ("example.com:8080", "not an IP address"),
            ("::1:8080", "brackets"),
            ("[::1]8080", "expected [ADDR:]PORT"),
            ("300.1.1.1:80", "not an IP address"),
        ] {
            let e = parse_listen_addr(spec).unwrap_err();
            assert!(e.contains(needle), "{spec}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn history_thins_out_keeping_both_ends() {
        let mut h: Vec<[f64; 5]> = (0..9).map(|i| [i as f64; 5]).collect();
        thin_out(&mut h);
        assert_eq!(h.iter().map(|p| p[0] as usize).collect::<Vec<_>>(), vec![0, 2, 4, 6, 8]);
        let mut h: Vec<[f64; 5]> = (0..6).map(|i| [i as f64; 5]).collect();
        thin_out(&mut h);
        assert_eq!(h.iter().map(|p| p[0] as usize).collect::<Vec<_>>(), vec![0, 2, 4, 5]);
    }

    #[test]
    fn a_slow_client_is_dropped_not_waited_for() {
        let mut st = State::default();
        let (slow, _slow_rx) = sync_channel::<Arc<str>>(1);
        let (fast, fast_rx) = sync_channel::<Arc<str>>(4);
        st.clients = vec![slow, fast];
        st.broadcast(&Arc::from("a"));
        assert_eq!(st.clients.len(), 2);
        st.broadcast(&Arc::from("b")); // the slow client's queue is full: it is dropped
        assert_eq!(st.clients.len(), 1);
        assert_eq!(fast_rx.try_iter().map(|e| e.to_string()).collect::<Vec<_>>(), vec!["a", "b"]);
        drop(fast_rx);
        st.broadcast(&Arc::from("c")); // gone: dropped too
        assert!(st.clients.is_empty());
    }

    fn leak_flag() -> &'static AtomicBool {
        Box::leak(Box::new(AtomicBool::new(false)))
    }

    /// Port and token from the printed URL.
    fn port_and_token(web: &WebPreview) -> (u16, String) {
        let url = web.url().unwrap();
        let rest = url.strip_prefix("http://127.0.0.1:").unwrap();
        let (port, token) = rest.split_once("/?token=").unwrap();
        (port.parse().unwrap(), token.to_string())
    }

    /// One request on a fresh connection; returns (status, head, body).
    fn request(port: u16, method: &str, target: &str, headers: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req = format!("{method} {target} HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head, raw[split + 4..].to_vec())
    }

    /// Reads from an event stream until `needle` has arrived; returns everything read so far.
    fn read_until(s: &mut TcpStream, seen: &mut String, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        while !seen.contains(needle) {
            assert!(Instant::now() < deadline, "no {needle:?} in:\n{seen}");
            match s.read(&mut buf) {
                Ok(0) => panic!("stream closed before {needle:?}:\n{seen}"),
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn serves_its_routes_and_refuses_the_rest_over_a_real_socket() {
        let stop = leak_flag();
        let web = WebPreview::start(Some("127.0.0.1:0"), stop).unwrap();
        let (port, token) = port_and_token(&web);
        assert_eq!(token.len(), 32);
        let host = format!("127.0.0.1:{port}");
        let own = [("Host", host.as_str())];

        let (status, _, _) = request(port, "GET", &format!("/nope?token={token}"), &own);
        assert_eq!(status, 404);
        let (status, _, _) = request(port, "GET", &format!("/?token={token}"), &[("Host", "evil.example")]);
        assert_eq!(status, 403);
        let (status, _, body) =
            request(port, "GET", &format!("/?token={token}"), &[("Host", &format!("rebound.example:{port}"))]);
        assert_eq!(status, 403);
        assert!(String::from_utf8_lossy(&body).contains("Host"));
        let (status, _, _) = request(port, "GET", &format!("/?token={token}"), &[]);
        assert_eq!(status, 403, "no Host header");
        let cross = [("Host", host.as_str()), ("Origin", "http://evil.example")];
        let (status, _, _) = request(port, "POST", &format!("/stop?token={token}"), &cross);
        assert_eq!(status, 403);
        let (status, _, _) = request(port, "POST", "/stop", &own);
        assert_eq!(status, 403);
        let (status, _, _) = request(port, "POST", "/stop?token=00000000000000000000000000000000", &own);
        assert_eq!(status, 403);
        assert!(!stop.load(Ordering::SeqCst), "a refused stop must not stop the run");

        let (status, head, body) = request(port, "GET", &format!("/?token={token}"), &own);
        assert_eq!(status, 200);
        let head = head.to_lowercase();
        assert!(head.contains("content-type: text/html") && head.contains("content-security-policy"), "{head}");
        let page = String::from_utf8(body).unwrap();
        assert!(page.contains("EventSource") && page.contains("<canvas") && page.contains("id=\"stop\""));
        assert!(!page.contains("https://") && !page.contains("http://"), "nothing loaded from elsewhere");
        let (status, _, _) = request(port, "GET", &format!("/image.png?token={token}&seq=0"), &own);
        assert_eq!(status, 503, "no image yet");

        // Nobody watching: an image is not even copied.
        let img = PlanarImage::new(3, 2, (0..18).map(|v| v as f32 * 14.0).collect());
        assert!(!web.offer_image(1, &img));

        // A watcher: the snapshot, then pushed events.
        let content = PlanarImage::new(3, 2, vec![128.0; 18]);
        let mut es = TcpStream::connect(("127.0.0.1", port)).unwrap();
        es.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        write!(es, "GET /events?token={token} HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n\r\n").unwrap();
        let mut seen = String::new();
        read_until(&mut es, &mut seen, "event: history");
        assert!(seen.starts_with("HTTP/1.1 200 OK\r\n") && seen.contains("text/event-stream"), "{seen}");
        let info = RunInfo {
            adapter: "test adapter",
            width: 3,
            height: 2,
            iterations: 10,
            style_scale: 1.0,
            style_side: 3,
            content: &content,
            styles: std::slice::from_ref(&content),
            original_colors: false,
            output: Path::new("out.png"),
            sequence: None,
        };
        web.publish_run_info(&info);
        read_until(&mut es, &mut seen, "\"adapter\":\"test adapter\"");
        assert!(seen.contains("data:image/png;base64,"), "{seen}");
        let l = Losses { content: 1.0, style: 2.0, tv: 3.0, temporal: None, total: 6.0 };
        web.publish_progress(1, Some((0, &l)));
        read_until(&mut es, &mut seen, "\"losses\":{");
        assert!(seen.contains("\"iteration\":1") && seen.contains("\"total\":10"), "{seen}");

        assert!(web.offer_image(1, &img), "a watcher and an idle encoder: accepted");
        assert!(!web.offer_image(2, &img), "a second image within 300 ms is dropped");
        read_until(&mut es, &mut seen, "event: image\ndata: {\"iteration\":1,\"seq\":0}");
        let (status, head, body) = request(port, "GET", &format!("/image.png?token={token}&seq=0"), &own);
        assert_eq!(status, 200);
        let head = head.to_lowercase();
        assert!(head.contains("content-type: image/png") && head.contains("x-preview-iteration: 1"), "{head}");
        let png = image::load_from_memory(&body).unwrap().to_rgb8();
        assert_eq!(png.dimensions(), (3, 2));
        assert_eq!(png.get_pixel(2, 1)[0], 70, "the image offered (value 5 · 14)");

        // Stop and save: the Ctrl-C flag.
        let (status, _, _) =
            request(port, "POST", &format!("/stop?token={token}"), &[own[0], ("Origin", &format!("http://{host}"))]);
        assert_eq!(status, 200);
        assert!(stop.load(Ordering::SeqCst));

        web.finish(7, true, Path::new("out.png"));
        read_until(
            &mut es,
            &mut seen,
            "event: finished\ndata: {\"iteration\":7,\"output\":\"out.png\",\"state\":\"stopped\"}",
        );
    }

    #[test]
    fn a_busy_port_is_one_clear_error() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let spec = format!("127.0.0.1:{port}");
        match WebPreview::start(Some(&spec), leak_flag()) {
            Err(CliError::Runtime(m)) => assert_eq!(m, format!("--web 127.0.0.1:{port}: address already in use")),
            other => panic!("expected a runtime error, got {:?}", other.map(|w| w.url().map(str::to_string))),
        }
        // Not an address of this machine (TEST-NET-1, RFC 5737).
        match WebPreview::start(Some("192.0.2.1:8080"), leak_flag()) {
            Err(CliError::Runtime(m)) => assert!(m.starts_with("--web 192.0.2.1:8080: address not available"), "{m}"),
            other => panic!("expected a runtime error, got {:?}", other.map(|w| w.url().map(str::to_string))),
        }
        assert!(WebPreview::start(None, leak_flag()).unwrap().url().is_none());
    }
}
