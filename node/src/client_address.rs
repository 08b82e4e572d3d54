//! Who a client is, as far as per-client bounds can tell from its address (connection
//! slots, login back-off).

use std::net::IpAddr;

/// The address a client's per-client bounds count under: an IPv4 address as itself,
/// also when a dual-stack listener sees it as IPv4-mapped IPv6 (`::ffff:a.b.c.d`); an
/// IPv6 address by its /64, since one host is usually given a whole /64 (RFC 6177,
/// RFC 7421) and could otherwise take a fresh address for every attempt.
pub fn client_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> IpAddr {
        client_key(text.parse().expect("address"))
    }

    #[test]
    fn ipv4_counts_alone_ipv6_by_its_slash_64() {
        assert_eq!(key("192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        // Seen through a dual-stack listener, an IPv4 client is still itself: before,
        // every such client fell into one /64 (::) and shared one back-off.
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("::ffff:192.0.2.7"), key("::ffff:192.0.2.8"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }
}
