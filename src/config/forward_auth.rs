//! `forward_auth_listen` and `forward_auth`: where the gateway answers forward-auth
//! questions from another proxy (nginx `auth_request`, Traefik, Caddy, Envoy), and which
//! peers may ask. The headers of a question claim what the original request was, so the
//! listener must be reachable by the proxy alone: binding it beyond loopback and private
//! addresses without `trusted_proxies` is warned about.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::schema::{key, Section, Ty};
use super::yaml::{Fields, Problems};

#[rustfmt::skip]
pub(super) static KEYS: &Section = &Section {
    path: "forward_auth",
    keys: &[
        key("trusted_proxies", Ty::List(&Ty::Text), "Peers that may ask, as address blocks (10.0.0.0/8, fd00::/8) or addresses (default: any peer); others are answered 403."),
    ],
};

/// Settings of the forward-auth listener (`forward_auth:`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardAuth {
    /// The peers that may ask; any peer when empty. Others are answered 403.
    pub trusted_proxies: Vec<Cidr>,
}

impl ForwardAuth {
    /// Whether `peer` may ask questions (any peer when no proxies are listed).
    pub fn trusts(&self, peer: Option<IpAddr>) -> bool {
        self.trusted_proxies.is_empty()
            || peer.is_some_and(|ip| self.trusted_proxies.iter().any(|c| c.contains(ip)))
    }
}

/// An address block, `10.0.0.0/8` or `fd00::/8`; a bare address is the block of that one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/PREFIX` or `ADDR`, refusing host bits beyond the prefix (a typo
    /// for another block, more often than not).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let bad = || {
            format!("invalid address block \"{s}\": expected ADDR/PREFIX like 10.0.0.0/8 or fd00::/8, or one address")
        };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s.trim(), None),
        };
        let network: IpAddr = addr.parse().map_err(|_| bad())?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(bad)?,
            None => bits,
        };
        if masked(network, prefix) != bits_of(network) {
            let base = Cidr {
                network: from_bits(network, masked(network, prefix)),
                prefix,
            };
            return Err(format!(
                "invalid address block \"{s}\": host bits set beyond /{prefix} (did you mean {base}?)"
            ));
        }
        Ok(Cidr { network, prefix })
    }

    /// Whether `ip` lies in the block; an IPv4-mapped IPv6 address counts as its IPv4 one.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4()
            && masked(ip, self.prefix) == masked(self.network, self.prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn bits_of(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address's bits with those beyond `prefix` cleared.
fn masked(ip: IpAddr, prefix: u8) -> u128 {
    let width = if ip.is_ipv4() { 32 } else { 128 };
    let host = u32::from(width - prefix);
    let mask = u128::MAX.checked_shl(host).unwrap_or(0);
    bits_of(ip) & mask
}

fn from_bits(like: IpAddr, bits: u128) -> IpAddr {
    match like {
        // Masked bits of an IPv4 address fit in 32.
        IpAddr::V4(_) => IpAddr::from(u32::try_from(bits).unwrap_or(0).to_be_bytes()),
        IpAddr::V6(_) => IpAddr::from(bits.to_be_bytes()),
    }
}

/// Whether only machines on this host or on private networks can reach `ip`.
fn is_private(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local(),
    }
}

/// Reads `forward_auth_listen` (absent: no listener) and `forward_auth`.
pub(super) fn read(top: &Fields, p: &mut Problems) -> (Option<SocketAddr>, ForwardAuth) {
    let listen = top.get("forward_auth_listen").and_then(|f| {
        f.parsed(p, |s| {
            s.trim().parse::<SocketAddr>().map_err(|_| {
                format!("invalid address \"{s}\": expected IP:PORT like 127.0.0.1:9191")
            })
        })
    });
    let mut settings = ForwardAuth::default();
    if let Some(section) = top.get("forward_auth") {
        let f = section.fields(p, KEYS);
        if let Some(list) = f.get("trusted_proxies") {
            for (item, text) in list.strings(p).unwrap_or_default() {
                match Cidr::parse(&text) {
                    Ok(cidr) => settings.trusted_proxies.push(cidr),
                    Err(e) => item.fail(p, e),
                }
            }
        }
        if listen.is_none() {
            p.warn(&section.spot(), "has no effect without forward_auth_listen");
        }
    }
    if let Some(addr) = listen {
        if settings.trusted_proxies.is_empty() && !is_private(addr.ip()) {
            p.warn(
                &top.spot_of("forward_auth_listen"),
                format!(
                    "{addr} reaches beyond loopback and private networks, and forward_auth.trusted_proxies is empty: any client that reaches it can ask for decisions with made-up X-Forwarded-* headers; bind it to a private address or list the proxies"
                ),
            );
        }
    }
    (listen, settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_block_contains_exactly_its_addresses() {
        let cases = [
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("192.168.1.7", "192.168.1.7", true),
            ("192.168.1.7", "192.168.1.8", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "::1", false),
            ("127.0.0.0/8", "::ffff:127.0.0.1", true),
            ("fd00::/8", "fd12:3456::1", true),
            ("fd00::/8", "fe80::1", false),
            ("::1", "::1", true),
            ("::/0", "2001:db8::1", true),
        ];
        for (block, addr, inside) in cases {
            let cidr = Cidr::parse(block).unwrap();
            assert_eq!(cidr.contains(ip(addr)), inside, "{block} {addr}");
        }
    }

    #[test]
    fn malformed_blocks_and_host_bits_are_refused_naming_the_fix() {
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0/8",
            "proxy",
            "10.0.0.0/x",
            "",
        ] {
            let e = Cidr::parse(bad).unwrap_err();
            assert!(e.starts_with("invalid address block"), "{bad}: {e}");
        }
        assert_eq!(
            Cidr::parse("10.1.2.3/8").unwrap_err(),
            "invalid address block \"10.1.2.3/8\": host bits set beyond /8 (did you mean 10.0.0.0/8?)"
        );
    }

    #[test]
    fn no_trusted_proxies_trusts_every_peer_and_a_list_only_its_own() {
        assert!(ForwardAuth::default().trusts(Some(ip("203.0.113.9"))));
        let listed = ForwardAuth {
            trusted_proxies: vec![Cidr::parse("10.0.0.0/8").unwrap()],
        };
        assert!(listed.trusts(Some(ip("10.1.1.1"))));
        assert!(!listed.trusts(Some(ip("203.0.113.9"))));
        assert!(!listed.trusts(None), "an unknown peer is not a listed one");
    }

    #[test]
    fn loopback_private_and_link_local_addresses_are_private() {
        for private in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.0.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(ip(private)), "{private}");
        }
        for public in ["0.0.0.0", "::", "203.0.113.9", "2001:db8::1", "172.32.0.1"] {
            assert!(!is_private(ip(public)), "{public}");
        }
    }
}
