//! SSRF rules (SPEC §13): unless `WEBHOOK_ALLOW_PRIVATE_NETWORKS=true`, an
//! endpoint must be `https` and its host may not be, or resolve to, an
//! address outside the public internet. Checked when a webhook is created or
//! its URL changes ([`check_url`], 400 `webhook_url_forbidden`), and again at
//! every delivery: the client resolves names through [`GuardedResolver`],
//! which refuses a name with any forbidden address, so the connection goes
//! to an address that was just checked (DNS may have changed since the
//! creation, or answer differently each time). IP-literal hosts never reach
//! a resolver; the worker checks them with [`forbidden_literal`].

use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    pin::Pin,
    sync::Arc,
};

use axum::http::StatusCode;
use reqwest::Url;

use crate::http::problem::Problem;

/// Why an address may not be reached, or None for a public one.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "unspecified (0.0.0.0/8)"),
        ([10, 0, 0, 0], 8, "private (10.0.0.0/8)"),
        (
            [100, 64, 0, 0],
            10,
            "shared address space, CGNAT (100.64.0.0/10)",
        ),
        ([127, 0, 0, 0], 8, "loopback (127.0.0.0/8)"),
        ([169, 254, 0, 0], 16, "link-local (169.254.0.0/16)"),
        ([172, 16, 0, 0], 12, "private (172.16.0.0/12)"),
        (
            [192, 0, 0, 0],
            24,
            "IETF protocol assignments (192.0.0.0/24)",
        ),
        ([192, 0, 2, 0], 24, "documentation (192.0.2.0/24)"),
        ([192, 88, 99, 0], 24, "6to4 relay anycast (192.88.99.0/24)"),
        ([192, 168, 0, 0], 16, "private (192.168.0.0/16)"),
        ([198, 18, 0, 0], 15, "benchmarking (198.18.0.0/15)"),
        ([198, 51, 100, 0], 24, "documentation (198.51.100.0/24)"),
        ([203, 0, 113, 0], 24, "documentation (203.0.113.0/24)"),
        ([224, 0, 0, 0], 4, "multicast (224.0.0.0/4)"),
        ([240, 0, 0, 0], 4, "reserved or broadcast (240.0.0.0/4)"),
    ];
    RANGES
        .iter()
        .find(|(net, bits, _)| in_v4(ip, *net, *bits))
        .map(|(_, _, why)| *why)
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // An IPv4-mapped address is the IPv4 address it maps (the socket
    // connects there).
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4).or(None);
    }
    let s = ip.segments();
    let in_v6 = |prefix: [u16; 2], bits: u32| {
        let top = (u32::from(s[0]) << 16) | u32::from(s[1]);
        let net = (u32::from(prefix[0]) << 16) | u32::from(prefix[1]);
        let mask = u32::MAX << (32 - bits);
        top & mask == net & mask
    };
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    // Everything outside global unicast 2000::/3: IPv4-compatible ::/96,
    // NAT64 64:ff9b::/96 and 64:ff9b:1::/48, discard 100::/64, ULA
    // fc00::/7, link-local fe80::/10, site-local fec0::/10, multicast ff00::/8.
    if !in_v6([0x2000, 0], 3) {
        return Some(if in_v6([0xfc00, 0], 7) {
            "unique local (fc00::/7)"
        } else if in_v6([0xfe80, 0], 10) {
            "link-local (fe80::/10)"
        } else if in_v6([0xff00, 0], 8) {
            "multicast (ff00::/8)"
        } else {
            "not global unicast (outside 2000::/3)"
        });
    }
    if in_v6([0x2001, 0x0db8], 32) {
        return Some("documentation (2001:db8::/32)");
    }
    if in_v6([0x2001, 0], 23) {
        return Some("IETF protocol assignments: Teredo, benchmarking, ORCHID (2001::/23)");
    }
    if in_v6([0x2002, 0], 16) {
        return Some("6to4 (2002::/16)");
    }
    if in_v6([0x3fff, 0], 20) {
        return Some("documentation (3fff::/20)");
    }
    None
}

/// An IP-literal host that may not be reached (a name is the resolver's).
pub fn forbidden_literal(url: &Url) -> Option<String> {
    match url.host()? {
        url::Host::Ipv4(ip) => forbidden(IpAddr::V4(ip)).map(|why| format!("{ip} is {why}")),
        url::Host::Ipv6(ip) => forbidden(IpAddr::V6(ip)).map(|why| format!("{ip} is {why}")),
        url::Host::Domain(_) => None,
    }
}

type Lookup<'a> = Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>>;

/// Name resolution, replaceable in tests (a resolver that can be steered).
pub trait Resolve: Send + Sync {
    fn lookup<'a>(&'a self, host: &'a str) -> Lookup<'a>;
}

/// The system's resolver (getaddrinfo, through tokio).
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup<'a>(&'a self, host: &'a str) -> Lookup<'a> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, 0)).await?.collect()) })
    }
}

/// How long a name may take to resolve.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Resolves `host` and refuses it if any of its addresses is forbidden.
pub async fn resolve_checked(
    resolver: &dyn Resolve,
    host: &str,
) -> Result<Vec<SocketAddr>, String> {
    // Bounded: a request must not wait on a resolver that does not answer.
    let addrs = tokio::time::timeout(LOOKUP_TIMEOUT, resolver.lookup(host))
        .await
        .map_err(|_| {
            format!(
                "{host} did not resolve within {} s",
                LOOKUP_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("{host} does not resolve: {e}"))?;
    if addrs.is_empty() {
        return Err(format!("{host} does not resolve"));
    }
    if let Some((addr, why)) = addrs
        .iter()
        .find_map(|a| forbidden(a.ip()).map(|why| (a.ip(), why)))
    {
        return Err(format!("{host} resolves to {addr}, which is {why}"));
    }
    Ok(addrs)
}

/// reqwest's resolver for deliveries: each connection resolves the name
/// again and connects only to addresses that pass [`forbidden`].
pub struct GuardedResolver(pub Arc<dyn Resolve>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.0.clone();
        Box::pin(async move {
            let addrs = resolve_checked(resolver.as_ref(), name.as_str())
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> {
                    format!("webhook_url_forbidden: {e}").into()
                })?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

fn refused(detail: String) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "webhook_url_forbidden", detail)
        .with_field("url", "not a public https endpoint")
}

/// The check of a new or changed endpoint URL, before the database sees it.
/// With `allow_private`, any http(s) URL passes and nothing is resolved.
pub async fn check_url(
    url: &str,
    allow_private: bool,
    resolver: &dyn Resolve,
) -> Result<(), Problem> {
    let Ok(parsed) = Url::parse(url) else {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "webhooks_url_invalid",
            "the url is not an absolute http(s) URL",
        )
        .with_field("url", "not a URL"));
    };
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "webhooks_url_invalid",
            "the url must be http(s)://host/…",
        )
        .with_field("url", "not an http(s) URL"));
    }
    if allow_private {
        return Ok(());
    }
    if parsed.scheme() != "https" {
        return Err(refused(
            "the url must be https (WEBHOOK_ALLOW_PRIVATE_NETWORKS is off)".into(),
        ));
    }
    if let Some(why) = forbidden_literal(&parsed) {
        return Err(refused(format!("the url's host {why}")));
    }
    if let Some(url::Host::Domain(host)) = parsed.host() {
        resolve_checked(resolver, host).await.map_err(refused)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{collections::HashMap, sync::Mutex};

    #[test]
    fn every_special_range_is_forbidden() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.1.2.3",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "100::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "2001:2::1",
            "2002:a00:1::1",
            "3fff::1",
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            assert!(forbidden(addr).is_some(), "{ip} should be forbidden");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.169.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "::ffff:8.8.8.8",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            assert_eq!(forbidden(addr), None, "{ip} should be allowed");
        }
    }

    /// A resolver the test steers: each name answers what the map says now.
    #[derive(Default)]
    pub struct Steered(pub Mutex<HashMap<String, Vec<IpAddr>>>);

    impl Steered {
        fn point(&self, host: &str, ips: &[&str]) {
            self.0.lock().unwrap().insert(
                host.into(),
                ips.iter().map(|ip| ip.parse().unwrap()).collect(),
            );
        }
    }

    impl Resolve for Steered {
        fn lookup<'a>(&'a self, host: &'a str) -> Lookup<'a> {
            let answer = self.0.lock().unwrap().get(host).cloned();
            Box::pin(async move {
                answer
                    .map(|ips| ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect())
                    .ok_or_else(|| std::io::Error::other("no such name"))
            })
        }
    }

    #[tokio::test]
    async fn urls_are_checked_by_scheme_literal_and_name() {
        let dns = Steered::default();
        dns.point("hooks.example.com", &["8.8.8.8"]);
        dns.point("localhost", &["127.0.0.1", "::1"]);
        dns.point("sneaky.example.com", &["8.8.8.8", "10.0.0.5"]);
        assert!(check_url("https://hooks.example.com/in", false, &dns)
            .await
            .is_ok());
        for bad in [
            "http://hooks.example.com/in",
            "https://127.0.0.1/in",
            "https://[::1]/in",
            "https://0.0.0.0/in",
            "https://[::ffff:127.0.0.1]/in",
            "https://169.254.169.254/latest/meta-data",
            "https://localhost/in",
            "https://sneaky.example.com/in",
            "https://100.64.0.1/in",
            "https://[fd00::1]/in",
        ] {
            let e = check_url(bad, false, &dns).await.unwrap_err();
            assert_eq!(e.code, "webhook_url_forbidden", "{bad}");
        }
        // A name that does not resolve is refused too.
        assert_eq!(
            check_url("https://nowhere.example.com/", false, &dns)
                .await
                .unwrap_err()
                .code,
            "webhook_url_forbidden"
        );
        // Allowed private networks: anything http(s), nothing resolved.
        assert!(check_url("http://127.0.0.1:9/in", true, &dns).await.is_ok());
        assert_eq!(
            check_url("ftp://hooks.example.com/", true, &dns)
                .await
                .unwrap_err()
                .code,
            "webhooks_url_invalid"
        );
    }

    /// DNS changed after the check: the delivery's client resolves again,
    /// through the guard, and does not connect (a local receiver is there
    /// to prove that without the guard it would have).
    #[tokio::test]
    async fn a_delivery_refuses_a_name_that_now_resolves_to_a_private_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            let app = axum::Router::new().fallback(move || {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { "ok" }
            });
            axum::serve(listener, app).await.unwrap();
        });
        let dns = Arc::new(Steered::default());
        dns.point("hooks.example.com", &["8.8.8.8"]);
        let url = format!("http://hooks.example.com:{port}/in");
        // At creation (https aside) the name was public.
        assert!(resolve_checked(dns.as_ref(), "hooks.example.com")
            .await
            .is_ok());
        dns.point("hooks.example.com", &["127.0.0.1"]);
        let guarded = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver(dns.clone())))
            .build()
            .unwrap();
        let e = guarded.post(&url).send().await.unwrap_err();
        assert!(
            crate::db::tls::error_chain(&e).contains("webhook_url_forbidden"),
            "{e:?}"
        );
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
        // The same name through an unguarded resolver does reach the receiver.
        struct Plain(Arc<Steered>);
        impl reqwest::dns::Resolve for Plain {
            fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
                let dns = self.0.clone();
                Box::pin(async move {
                    let addrs = dns.lookup(name.as_str()).await?;
                    let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
                    Ok(addrs)
                })
            }
        }
        let plain = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(Arc::new(Plain(dns.clone())))
            .build()
            .unwrap();
        assert!(plain.post(&url).send().await.unwrap().status().is_success());
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
