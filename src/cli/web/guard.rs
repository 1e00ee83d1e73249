//! Who may ask what of the preview server: the routes, and the checks against other web pages. Pure functions of
//! the request line and two headers, so that every rule is unit-tested without a socket.
//!
//! Threats, in the order the checks run:
//! 1. DNS rebinding: a page on `evil.example` re-points its name to 127.0.0.1 and reads our responses as
//!    same-origin. Its requests carry `Host: evil.example:PORT`, so any Host that is not one of our own names
//!    (the bound address, `localhost` on a loopback or wildcard bind, any IP literal on a wildcard bind: an IP
//!    literal cannot be re-pointed) is refused with 403.
//! 2. Cross-site requests: any page can send a POST to `127.0.0.1:PORT`, and browsers attach an `Origin` header
//!    to it (and to EventSource and fetch requests). An Origin that is present and not our own `http://` origin
//!    (including `null`, from sandboxed frames and files) is refused with 403.
//! 3. Unknown routes are 404, whatever the token: only `GET /`, `GET /image.png`, `GET /events` and
//!    `POST /stop` exist.
//! 4. The per-run token (`?token=` in the URL the CLI prints) is required on every route, reads included: the
//!    page shows the user's content and style images and the painting, and on a shared machine every local
//!    user can reach 127.0.0.1; the token limits that to whoever was shown the printed URL. `POST /stop`
//!    without it cannot be forged by a page that never saw it.

use std::net::IpAddr;

/// The four routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: the page.
    Page,
    /// `GET /image.png`: the latest preview image.
    Image,
    /// `GET /events`: the server-sent event stream.
    Events,
    /// `POST /stop`: stop and save, as Ctrl-C does.
    Stop,
}

/// Why a request was refused with 403.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Missing, or not one of the server's own names (DNS rebinding).
    Host,
    /// Present and not the server's own origin (a cross-site request).
    Origin,
    /// Missing or wrong `?token=`.
    Token,
}

impl Refusal {
    /// The body of the 403 response.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Host => "forbidden: the Host header is not this server's own address\n",
            Refusal::Origin => "forbidden: cross-site request\n",
            Refusal::Token => "forbidden: open the URL that neural-style printed (it carries the run's token)\n",
        }
    }
}

/// What to do with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Serve(Route),
    /// 404.
    NotFound,
    /// 403.
    Forbidden(Refusal),
}

/// The server's own address and the run's token.
#[derive(Clone, Debug)]
pub struct Guard {
    /// The address the listener is bound to (may be a wildcard: 0.0.0.0 or ::).
    pub bound: IpAddr,
    /// The port it listens on (the real one, also after `--web 0`).
    pub port: u16,
    /// The per-run secret.
    pub token: String,
}

impl Guard {
    /// Decides on a request from its method, its request target (path and query), and its Host and Origin
    /// headers. The order of the checks is the module's: Host, Origin, route, token.
    pub fn decide(&self, method: &str, target: &str, host: Option<&str>, origin: Option<&str>) -> Decision {
        if !host.is_some_and(|h| self.host_ok(h)) {
            return Decision::Forbidden(Refusal::Host);
        }
        if origin.is_some_and(|o| !self.origin_ok(o)) {
            return Decision::Forbidden(Refusal::Origin);
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let route = match (method, path) {
            ("GET", "/") => Route::Page,
            ("GET", "/image.png") => Route::Image,
            ("GET", "/events") => Route::Events,
            ("POST", "/stop") => Route::Stop,
            _ => return Decision::NotFound,
        };
        let given = query.split('&').find_map(|kv| kv.strip_prefix("token="));
        if !given.is_some_and(|t| same_secret(t, &self.token)) {
            return Decision::Forbidden(Refusal::Token);
        }
        Decision::Serve(route)
    }

    /// Whether a `Host` header value names this server: `NAME[:PORT]` (port 80 when absent, as browsers omit
    /// it) with the server's port, and a name that is the bound IP, `localhost` when bound to a loopback or
    /// wildcard address, or any IP literal when bound to a wildcard address.
    pub fn host_ok(&self, host: &str) -> bool {
        let Some((name, port)) = split_host_port(host) else { return false };
        if port != self.port {
            return false;
        }
        if name.eq_ignore_ascii_case("localhost") {
            return self.bound.is_loopback() || self.bound.is_unspecified();
        }
        match name.parse::<IpAddr>() {
            Ok(ip) => ip == self.bound || self.bound.is_unspecified(),
            Err(_) => false,
        }
    }

    /// Whether an `Origin` header value is this server's own origin: `http://` and a host that passes
    /// [`Guard::host_ok`], nothing after it.
    pub fn origin_ok(&self, origin: &str) -> bool {
        origin.strip_prefix("http://").is_some_and(|rest| !rest.contains('/') && self.host_ok(rest))
    }
}

/// Splits `name[:port]` or `[v6][:port]`; the port is 80 when absent. `None` when malformed.
fn split_host_port(host: &str) -> Option<(&str, u16)> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (name, after) = rest.split_once(']')?;
        match after {
            "" => (name, None),
            _ => (name, Some(after.strip_prefix(':')?)),
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if name.is_empty() {
        return None;
    }
    let port = match port {
        None => 80,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
    };
    Some((name, port))
}

/// Compares a given token with the secret without returning early at the first differing byte, so that the
/// response time does not tell how much of a guess was right.
fn same_secret(given: &str, secret: &str) -> bool {
    let (a, b) = (given.as_bytes(), secret.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(bound: &str, port: u16) -> Guard {
        Guard { bound: bound.parse().unwrap(), port, token: "0123abcd".into() }
    }

    const HOST: Option<&str> = Some("127.0.0.1:8080");

    #[test]
    fn routes_with_token() {
        let g = guard("127.0.0.1", 8080);
        let cases = [
            ("GET", "/?token=0123abcd", Route::Page),
            ("GET", "/image.png?token=0123abcd&seq=3", Route::Image),
            ("GET", "/image.png?seq=3&token=0123abcd", Route::Image),
            ("GET", "/events?token=0123abcd", Route::Events),
            ("POST", "/stop?token=0123abcd", Route::Stop),
        ];
        for (method, target, route) in cases {
            assert_eq!(g.decide(method, target, HOST, None), Decision::Serve(route), "{method} {target}");
        }
        // Same-origin requests carry our own Origin.
        assert_eq!(
            g.decide("POST", "/stop?token=0123abcd", HOST, Some("http://127.0.0.1:8080")),
            Decision::Serve(Route::Stop)
        );
    }

    #[test]
    fn unknown_routes_and_methods_are_404() {
        let g = guard("127.0.0.1", 8080);
        for (method, target) in [
            ("GET", "/nope?token=0123abcd"),
            ("GET", "/nope"),
            ("GET", "/index.html"),
            ("GET", "/stop?token=0123abcd"),
            ("POST", "/?token=0123abcd"),
            ("DELETE", "/events?token=0123abcd"),
            ("HEAD", "/"),
            ("GET", "/image.png/x"),
            ("GET", "//"),
            ("GET", "http://127.0.0.1:8080/"),
        ] {
            assert_eq!(g.decide(method, target, HOST, None), Decision::NotFound, "{method} {target}");
        }
    }

    #[test]
    fn token_is_required_on_every_route() {
        let g = guard("127.0.0.1", 8080);
        for (method, path) in [("GET", "/"), ("GET", "/image.png"), ("GET", "/events"), ("POST", "/stop")] {
            for query in ["", "?token=", "?token=0123abce", "?token=0123abcd0", "?tok=0123abcd", "?xtoken=0123abcd"] {
                let target = format!("{path}{query}");
                assert_eq!(
                    g.decide(method, &target, HOST, None),
                    Decision::Forbidden(Refusal::Token),
                    "{method} {target}"
                );
            }
        }
    }

    #[test]
    fn foreign_hosts_are_refused_before_anything_else() {
        let g = guard("127.0.0.1", 8080);
        for host in [
            None,
            Some("evil.example:8080"),
            Some("evil.example"),
            Some("127.0.0.1"),      // port 80
            Some("127.0.0.1:8081"), // another port
            Some("127.0.0.2:8080"),
            Some("localhost.evil.example:8080"),
            Some("[::1]:8080"), // not the bound address
            Some("127.0.0.1:80a"),
            Some(":8080"),
            Some(""),
        ] {
            for target in ["/?token=0123abcd", "/nope", "/stop"] {
                assert_eq!(g.decide("GET", target, host, None), Decision::Forbidden(Refusal::Host), "{host:?}");
            }
        }
        for host in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST:8080"] {
            assert!(g.host_ok(host), "{host}");
        }
    }

    #[test]
    fn cross_site_origins_are_refused() {
        let g = guard("127.0.0.1", 8080);
        for origin in [
            "http://evil.example",
            "http://evil.example:8080",
            "https://127.0.0.1:8080",
            "http://127.0.0.1:8081",
            "http://127.0.0.1:8080/",
            "null",
            "",
        ] {
            assert_eq!(
                g.decide("POST", "/stop?token=0123abcd", HOST, Some(origin)),
                Decision::Forbidden(Refusal::Origin),
                "{origin}"
            );
        }
        assert!(g.origin_ok("http://localhost:8080"));
    }

    #[test]
    fn hosts_for_other_binds() {
        let v6 = guard("::1", 9000);
        assert!(v6.host_ok("[::1]:9000") && v6.host_ok("localhost:9000"));
        assert!(!v6.host_ok("127.0.0.1:9000") && !v6.host_ok("[::1]") && !v6.host_ok("[::1]9000"));
        assert!(v6.origin_ok("http://[::1]:9000"));

        // A wildcard bind answers on every interface: any IP literal is fine (it cannot be rebound), names not.
        let any = guard("0.0.0.0", 9000);
        assert!(any.host_ok("192.168.1.20:9000") && any.host_ok("localhost:9000") && any.host_ok("127.0.0.1:9000"));
        assert!(!any.host_ok("my-laptop.example:9000") && !any.host_ok("192.168.1.20:9001"));

        // A LAN address: only itself (a loopback name would not reach it anyway).
        let lan = guard("192.168.1.20", 9000);
        assert!(lan.host_ok("192.168.1.20:9000"));
        assert!(!lan.host_ok("localhost:9000") && !lan.host_ok("127.0.0.1:9000"));

        // Port 80: browsers send the Host without a port.
        let p80 = guard("127.0.0.1", 80);
        assert!(p80.host_ok("127.0.0.1") && p80.host_ok("127.0.0.1:80") && p80.origin_ok("http://localhost"));
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc") && !same_secret("ab", "abc") && !same_secret("", "abc"));
    }
}
