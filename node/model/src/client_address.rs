//! Who a client is, as far as per-client bounds can tell from its address (connection
//! slots, calls in flight, login back-off), and how a bounded pool of slots is shared
//! between client addresses ([`FairShare`]).

use std::collections::HashMap;
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

/// Why [`FairShare::take`] gave no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareRefusal {
    /// Every slot of the pool is taken.
    PoolFull,
    /// The client holds its fixed maximum (`per_client`).
    ClientFull,
    /// The client holds as many slots as remain free: the rest is kept for others.
    OverShare,
}

/// A pool of `total` slots (connections, calls in flight) shared by client keys
/// ([`client_key`]) so that no set of clients can take every slot from the others.
///
/// A client gets a slot while it holds fewer than `per_client` *and* fewer than remain
/// free. A newcomer (holding none) is therefore refused only when the pool is
/// completely full, and that takes about as many clients as the pool has slots: `k`
/// clients that each take all they can stop at about `total / (k + 1)` slots each and
/// leave as many free. A fixed per-client cap alone would let `total / per_client`
/// clients (4 for calls in flight, 32 for connections) lock everyone else out.
#[derive(Debug)]
pub struct FairShare {
    total: usize,
    per_client: usize,
    held: usize,
    by_client: HashMap<IpAddr, usize>,
}

impl FairShare {
    /// A pool of `total` slots of which one client may hold at most `per_client`.
    pub fn new(total: usize, per_client: usize) -> Self {
        Self {
            total,
            per_client,
            held: 0,
            by_client: HashMap::new(),
        }
    }

    /// One slot for `client` (already a [`client_key`]), or why there is none. Every
    /// slot taken must be given back once with [`FairShare::give_back`].
    pub fn take(&mut self, client: IpAddr) -> Result<(), ShareRefusal> {
        let free = self.total.saturating_sub(self.held);
        if free == 0 {
            return Err(ShareRefusal::PoolFull);
        }
        let own = self.by_client.get(&client).copied().unwrap_or(0);
        if own >= self.per_client {
            return Err(ShareRefusal::ClientFull);
        }
        if own >= free {
            return Err(ShareRefusal::OverShare);
        }
        *self.by_client.entry(client).or_insert(0) += 1;
        self.held += 1;
        Ok(())
    }

    /// Returns a slot [`FairShare::take`] gave `client`.
    pub fn give_back(&mut self, client: IpAddr) {
        if let Some(own) = self.by_client.get_mut(&client) {
            *own -= 1;
            if *own == 0 {
                self.by_client.remove(&client);
            }
            self.held -= 1;
        }
    }

    /// Slots held now, over all clients.
    pub fn held(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn one_client_stops_at_its_cap_and_gets_slots_back() {
        let mut pool = FairShare::new(100, 10);
        for _ in 0..10 {
            pool.take(client(1)).expect("under the cap");
        }
        assert_eq!(pool.take(client(1)), Err(ShareRefusal::ClientFull));
        pool.give_back(client(1));
        pool.take(client(1))
            .expect("a slot given back is free again");
        assert_eq!(pool.held(), 10);
    }

    #[test]
    fn greedy_clients_always_leave_room_for_a_newcomer() {
        // Every pool shape against 1..=40 greedy clients, which take a slot each in
        // turn until none gets more: a newcomer must still get a slot unless there are
        // as many greedy clients as slots (only the (10, 3) pool, from 10 on).
        for (total, per_client) in [(2048, 512), (8192, 256), (64, 64), (10, 3)] {
            for greedy in 1..=40u8 {
                let mut pool = FairShare::new(total, per_client);
                loop {
                    let mut taken = false;
                    for n in 0..greedy {
                        taken |= pool.take(client(n)).is_ok();
                    }
                    if !taken {
                        break;
                    }
                }
                if usize::from(greedy) >= total {
                    assert_eq!(pool.held(), total);
                    continue;
                }
                assert!(
                    pool.held() < total,
                    "total {total}, per client {per_client}, {greedy} greedy clients filled the pool"
                );
                assert!(
                    pool.take(client(200)).is_ok(),
                    "total {total}, {greedy} greedy clients locked a newcomer out"
                );
                for n in 0..greedy {
                    let own = pool.by_client.get(&client(n)).copied().unwrap_or(0);
                    assert!(own <= per_client);
                }
            }
        }
    }

    #[test]
    fn a_lone_client_gets_up_to_its_cap_or_half_the_pool() {
        let mut pool = FairShare::new(2048, 512);
        while pool.take(client(1)).is_ok() {}
        assert_eq!(pool.held(), 512);
        let mut pool = FairShare::new(100, 100);
        while pool.take(client(1)).is_ok() {}
        assert_eq!(
            pool.held(),
            50,
            "a client may not hold more than remain free"
        );
    }

    #[test]
    fn giving_back_what_was_never_taken_changes_nothing() {
        let mut pool = FairShare::new(4, 4);
        pool.give_back(client(9));
        assert_eq!(pool.held(), 0);
    }

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
