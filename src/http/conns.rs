//! Admission of unitwatch-http's connections: which ones it keeps when
//! clients want more than it serves, so that no client, however many
//! sockets it opens and however slowly it talks, keeps `/health` from
//! answering a new one.
//!
//! The accept loop never waits for room. Each connection is taken off the
//! listen queue at once and admitted against two limits:
//! - a **share per peer** (an IPv4 address, or an IPv6 /64, which one host
//!   owns whole): one peer holds at most a quarter of the connections;
//! - the **cap** on all connections.
//!
//! Over either, the connection that has waited longest for its next request
//! is closed to make room (that peer's own, for the share): a slowloris
//! dribbling its headers, a flood's oldest socket, a kept-alive connection
//! gone quiet, a pipeliner that stopped reading its answers. A connection
//! inside a request is never chosen. When none can go, the newcomer is
//! closed instead. Every such close is counted.
//!
//! Why this defence and not the others:
//! - Waiting for a permit (before) let 1,300 idle sockets hold every slot
//!   for as long as they kept dribbling; new clients sat in the kernel's
//!   backlog.
//! - A per-peer limit alone does not stop a slowloris spread over a few
//!   addresses.
//! - A header deadline that shrinks under pressure still leaves new
//!   clients waiting for it to run out, and cuts slow honest links first.
//!
//! The accept loop drains a listen queue as long as the kernel allows
//! (`net.core.somaxconn`): a flood that fills it between two turns of the
//! loop gets everyone's SYNs dropped, a new client's too, and a client sends
//! its SYN again only after a second.
//!
//! A new client's connection is the youngest, so it is the last to go; an
//! attacker must open more connections than the cap between its accept and
//! its request (well under a millisecond on loopback) to shed it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

/// `Slot::since` while a request is being answered.
const BUSY: u64 = u64::MAX;

/// How many connections are served at once, in all and per peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub total: usize,
    pub per_peer: usize,
}

impl Limits {
    /// `total` connections, a quarter of them (at least one) per peer.
    pub fn new(total: usize) -> Self {
        let total = total.max(1);
        Limits {
            total,
            per_peer: (total / 4).max(1),
        }
    }
}

/// The peer a connection is counted against: an IPv4 address (also when
/// it arrives IPv4-mapped), or an IPv6 address's /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    V4(u32),
    V6(u64),
}

impl From<IpAddr> for Peer {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(a) => Peer::V4(a.into()),
            IpAddr::V6(a) => Peer::V6((u128::from(a) >> 64) as u64),
        }
    }
}

/// One admitted connection's shared state.
#[derive(Debug)]
pub struct Slot {
    /// [`Conns`]' epoch, which `since` counts from.
    epoch: Instant,
    /// Milliseconds since `epoch` at which the connection began waiting
    /// for its next request (its accept, or its last answer), or [`BUSY`]
    /// while a request is answered.
    since: AtomicU64,
    /// Told when the connection is shed; its task then drops it.
    shed: Notify,
}

impl Slot {
    /// Resolves when the connection has been chosen to go.
    pub async fn shed(&self) {
        self.shed.notified().await
    }
}

fn ms_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

/// The limits and the counts of what admission did, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub limits: Limits,
    pub open: usize,
    /// Closed to make room for their own peer's newer connection.
    pub shed_peer_share: u64,
    /// Closed to make room under the cap.
    pub shed_cap: u64,
    /// Newcomers closed at once: nothing could go to make room.
    pub refused: u64,
    /// `accept` failures (out of descriptors and the like).
    pub accept_errors: u64,
}

/// The open connections and the admission decisions over them.
#[derive(Debug)]
pub struct Conns {
    epoch: Instant,
    table: Mutex<Table>,
}

impl Conns {
    pub fn new(limits: Limits) -> Arc<Self> {
        let epoch = Instant::now();
        Arc::new(Conns {
            epoch,
            table: Mutex::new(Table::new(limits, epoch)),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // The table holds counts only; a panic elsewhere cannot leave it
        // half-changed in a way worth refusing every client over.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `ip`, shedding another if the limits call
    /// for it; None when the newcomer itself must be closed.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let now = ms_since(self.epoch);
        let (id, slot, shed) = self.table().admit(Peer::from(ip), now)?;
        if let Some(s) = shed {
            s.shed.notify_one();
        }
        Some(Admitted {
            conns: self.clone(),
            id,
            slot,
        })
    }

    /// Frees a descriptor when `accept` ran out of them: the connection
    /// that has waited longest goes. Returns the failures so far.
    pub fn accept_failed(&self) -> u64 {
        let mut t = self.table();
        t.accept_errors += 1;
        if let Some(s) = t.shed_oldest(None) {
            s.shed.notify_one();
        }
        t.accept_errors
    }

    pub fn stats(&self) -> Stats {
        let t = self.table();
        Stats {
            limits: t.limits,
            open: t.conns.len(),
            shed_peer_share: t.shed_peer_share,
            shed_cap: t.shed_cap,
            refused: t.refused,
            accept_errors: t.accept_errors,
        }
    }
}

/// A connection's place; it is given up when this is dropped.
#[derive(Debug)]
pub struct Admitted {
    conns: Arc<Conns>,
    id: u64,
    slot: Arc<Slot>,
}

impl Admitted {
    pub fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.conns.table().remove(self.id);
    }
}

/// A connection answering a request: it cannot be shed until this drops,
/// and then it waits for its next request from that moment.
#[derive(Debug)]
pub struct Busy(Arc<Slot>);

impl Busy {
    pub fn enter(slot: &Arc<Slot>) -> Busy {
        slot.since.store(BUSY, Ordering::Relaxed);
        Busy(slot.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0
            .since
            .store(ms_since(self.0.epoch), Ordering::Relaxed);
    }
}

/// The decisions, apart from the clock and the sockets.
#[derive(Debug)]
struct Table {
    limits: Limits,
    epoch: Instant,
    next_id: u64,
    conns: HashMap<u64, (Peer, Arc<Slot>)>,
    per_peer: HashMap<Peer, usize>,
    shed_peer_share: u64,
    shed_cap: u64,
    refused: u64,
    accept_errors: u64,
}

/// An admitted connection's id and slot, and the slot of the one shed for it.
type Admission = (u64, Arc<Slot>, Option<Arc<Slot>>);

impl Table {
    fn new(limits: Limits, epoch: Instant) -> Self {
        Table {
            limits,
            epoch,
            next_id: 0,
            conns: HashMap::new(),
            per_peer: HashMap::new(),
            shed_peer_share: 0,
            shed_cap: 0,
            refused: 0,
            accept_errors: 0,
        }
    }

    fn admit(&mut self, peer: Peer, now: u64) -> Option<Admission> {
        // Over a limit: the peer's own (Some) or anyone's (None) must go.
        let mine = self.per_peer.get(&peer).copied().unwrap_or(0);
        let over = if mine >= self.limits.per_peer {
            Some(Some(peer))
        } else if self.conns.len() >= self.limits.total {
            Some(None)
        } else {
            None
        };
        let shed = match over {
            None => None,
            Some(scope) => {
                let Some(s) = self.shed_oldest(scope) else {
                    self.refused += 1;
                    return None;
                };
                match scope {
                    Some(_) => self.shed_peer_share += 1,
                    None => self.shed_cap += 1,
                }
                Some(s)
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        let slot = Arc::new(Slot {
            epoch: self.epoch,
            since: AtomicU64::new(now),
            shed: Notify::new(),
        });
        self.conns.insert(id, (peer, slot.clone()));
        *self.per_peer.entry(peer).or_insert(0) += 1;
        Some((id, slot, shed))
    }

    /// Removes the connection (of `peer`, if given) that has waited longest
    /// for its next request and is not inside one; returns its slot to be
    /// told. Ties go to the older connection (the smaller id).
    fn shed_oldest(&mut self, peer: Option<Peer>) -> Option<Arc<Slot>> {
        let id = self
            .conns
            .iter()
            .filter(|(_, (p, _))| peer.is_none_or(|want| *p == want))
            .filter_map(|(id, (_, s))| {
                let since = s.since.load(Ordering::Relaxed);
                (since != BUSY).then_some((since, *id))
            })
            .min()?
            .1;
        self.remove(id)
    }

    fn remove(&mut self, id: u64) -> Option<Arc<Slot>> {
        let (peer, slot) = self.conns.remove(&id)?;
        if let Some(n) = self.per_peer.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&peer);
            }
        }
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Table {
        fn new_at(limits: Limits) -> Self {
            Table::new(limits, Instant::now())
        }
    }

    fn v4(last: u8) -> Peer {
        Peer::from(IpAddr::from([10, 0, 0, last]))
    }

    fn ids(t: &Table) -> Vec<u64> {
        let mut v: Vec<u64> = t.conns.keys().copied().collect();
        v.sort();
        v
    }

    #[test]
    fn under_the_limits_everyone_is_admitted() {
        let mut t = Table::new_at(Limits {
            total: 4,
            per_peer: 2,
        });
        for (i, p) in [1, 2, 1, 3].into_iter().enumerate() {
            let (_, _, shed) = t.admit(v4(p), i as u64).unwrap();
            assert!(shed.is_none());
        }
        assert_eq!(ids(&t), [0, 1, 2, 3]);
        assert_eq!((t.shed_cap, t.shed_peer_share, t.refused), (0, 0, 0));
    }

    #[test]
    fn at_the_cap_the_longest_waiting_goes() {
        let mut t = Table::new_at(Limits {
            total: 3,
            per_peer: 3,
        });
        for p in 1..=3 {
            t.admit(v4(p), 100 + p as u64).unwrap();
        }
        // Connection 0 answered a request at 150: it has waited less than
        // connection 1, which has sent nothing since 102.
        t.conns[&0].1.since.store(150, Ordering::Relaxed);
        let (id, _, shed) = t.admit(v4(9), 200).unwrap();
        assert!(shed.is_some());
        assert_eq!(ids(&t), [0, 2, id]);
        assert_eq!(t.shed_cap, 1);
        assert_eq!(t.per_peer.get(&v4(2)), None);
    }

    #[test]
    fn a_connection_inside_a_request_is_never_shed() {
        let mut t = Table::new_at(Limits {
            total: 2,
            per_peer: 2,
        });
        t.admit(v4(1), 1).unwrap();
        t.admit(v4(2), 2).unwrap();
        t.conns[&0].1.since.store(BUSY, Ordering::Relaxed);
        t.admit(v4(3), 3).unwrap();
        assert_eq!(ids(&t), [0, 2]);
        // Both busy now: the newcomer is refused, nobody is shed.
        t.conns[&2].1.since.store(BUSY, Ordering::Relaxed);
        assert!(t.admit(v4(4), 4).is_none());
        assert_eq!(ids(&t), [0, 2]);
        assert_eq!((t.shed_cap, t.refused), (1, 1));
    }

    #[test]
    fn a_peer_over_its_share_sheds_its_own_not_the_others() {
        let mut t = Table::new_at(Limits {
            total: 10,
            per_peer: 2,
        });
        t.admit(v4(7), 0).unwrap(); // the oldest of all: another peer's
        t.admit(v4(1), 1).unwrap();
        t.admit(v4(1), 2).unwrap();
        t.admit(v4(1), 3).unwrap();
        assert_eq!(ids(&t), [0, 2, 3]);
        assert_eq!(t.per_peer[&v4(1)], 2);
        assert_eq!((t.shed_peer_share, t.shed_cap), (1, 0));
        // The peer's own are all busy: its newcomer is refused.
        for id in [2, 3] {
            t.conns[&id].1.since.store(BUSY, Ordering::Relaxed);
        }
        assert!(t.admit(v4(1), 4).is_none());
        assert!(t.admit(v4(8), 5).is_some());
    }

    #[test]
    fn a_removed_connection_frees_its_peer_and_a_second_removal_is_nothing() {
        let mut t = Table::new_at(Limits::new(8));
        let (id, _, _) = t.admit(v4(1), 0).unwrap();
        assert!(t.remove(id).is_some());
        assert!(t.remove(id).is_none());
        assert!(t.per_peer.is_empty() && t.conns.is_empty());
    }

    #[test]
    fn peers_are_ipv4_addresses_and_ipv6_64s() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Peer::from(a), Peer::from(b));
        assert_ne!(Peer::from(a), Peer::from(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(Peer::from(mapped), v4(1));
        assert_ne!(v4(1), v4(2));
    }

    #[test]
    fn limits_give_a_peer_a_quarter() {
        assert_eq!(
            Limits::new(1024),
            Limits {
                total: 1024,
                per_peer: 256
            }
        );
        assert_eq!(Limits::new(2).per_peer, 1);
        assert_eq!(Limits::new(0).total, 1);
    }

    #[tokio::test]
    async fn the_shed_connection_is_told_and_busy_guards_restore_the_time() {
        let conns = Conns::new(Limits {
            total: 1,
            per_peer: 1,
        });
        let first = conns.admit(IpAddr::from([127, 0, 0, 1])).unwrap();
        {
            let _b = Busy::enter(first.slot());
            assert!(conns.admit(IpAddr::from([127, 0, 0, 2])).is_none());
        }
        let second = conns.admit(IpAddr::from([127, 0, 0, 2])).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), first.slot().shed())
            .await
            .expect("the shed connection was not told");
        drop(first); // its task ends: nothing more is removed
        let s = conns.stats();
        assert_eq!((s.open, s.shed_cap, s.refused), (1, 1, 1));
        drop(second);
        assert_eq!(conns.stats().open, 0);
    }
}
