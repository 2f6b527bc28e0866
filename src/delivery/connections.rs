//! How many connections the relay takes.
//!
//! Relays commonly cap connections per client: Postfix's
//! `smtpd_client_connection_count_limit`, and anvil's
//! `smtpd_client_connection_rate_limit`, both answered "421 4.7.0 … too
//! many connections" at the greeting. A connection refused while others
//! work is such a cap, not an outage: the number of connections the senders
//! may hold drops to the number open, the senders beyond it park (they take
//! no message) instead of knocking again, and after a quiet minute of
//! sending one more is tried, up to `sending.concurrency`. Only a refusal
//! while no connection is open is the server being down (see
//! [`super::outage`]); a refusal while others are still being opened waits
//! for their outcome, so that senders starting together do not take a
//! server that is merely full for one that is down.
//!
//! Each sender holds a [`Seat`]: parked, reserved (it may open a
//! connection), connecting, or open. Seats reserved, connecting and open
//! never outnumber the limit, but for the moment a refusal is weighed.

use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::Timestamp;
use crate::store::RelayCap;

/// Sending this long at the cap without a refusal earns a try of one more connection.
const PROBE_AFTER: Duration = Duration::from_secs(60);
/// A refusal waits at most this long for the connections being opened meanwhile.
const WEIGH_AT_MOST: Duration = Duration::from_secs(90);

/// A sender's share of the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Seat {
    /// Holds no connection and may not open one: waits for room.
    #[default]
    Parked,
    /// May open a connection when a message comes.
    Reserved,
    Connecting,
    Open,
}

/// What a refused connection means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Other connections work: the relay's cap, to record; `tell` the first
    /// time the relay is found to take this few (a probe refused says nothing).
    Capped { cap: RelayCap, tell: bool },
    /// No connection is open: the server cannot be reached.
    Outage,
}

/// A change of the limit that the engine records or tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The cap as it now stands (a probe raised the limit, or a probe's connection opened).
    Capped(RelayCap),
    /// The relay took `sending.concurrency` connections at once: no cap any more.
    Lifted { concurrency: usize },
}

/// Shared by every sender of one engine.
pub struct Connections {
    concurrency: usize,
    state: watch::Sender<State>,
    /// The limit for the metrics.
    gauge: Gauge,
}

#[derive(Debug)]
struct State {
    limit: usize,
    reserved: usize,
    connecting: usize,
    open: usize,
    /// While the relay takes fewer than `concurrency`: what was found and when.
    cap: Option<RelayCap>,
    /// The last refusal or raise: the probe upward waits a quiet while after it.
    last_change: Instant,
    /// The cap the log last told, so a probe that finds it again says nothing.
    told: Option<usize>,
}

impl State {
    fn held(&self) -> usize {
        self.reserved + self.connecting + self.open
    }

    fn count(&mut self, seat: Seat) -> Option<&mut usize> {
        match seat {
            Seat::Parked => None,
            Seat::Reserved => Some(&mut self.reserved),
            Seat::Connecting => Some(&mut self.connecting),
            Seat::Open => Some(&mut self.open),
        }
    }

    fn take(&mut self, seat: &mut Seat, to: Seat) {
        if let Some(n) = self.count(*seat) {
            *n = n.saturating_sub(1);
        }
        if let Some(n) = self.count(to) {
            *n += 1;
        }
        *seat = to;
    }
}

impl Connections {
    /// Up to `concurrency` connections; `gauge` is kept at the limit in force.
    pub fn new(concurrency: usize, gauge: Gauge) -> Self {
        let concurrency = concurrency.max(1);
        gauge.set(concurrency as i64);
        let state = State {
            limit: concurrency,
            reserved: 0,
            connecting: 0,
            open: 0,
            cap: None,
            last_change: Instant::now(),
            told: None,
        };
        Self { concurrency, state: watch::Sender::new(state), gauge }
    }

    /// Waits for room under the limit and reserves it.
    pub async fn take_seat(&self, seat: &mut Seat) {
        if *seat != Seat::Parked {
            return;
        }
        let mut changes = self.state.subscribe();
        loop {
            let taken = self.state.send_if_modified(|s| {
                let room = s.held() < s.limit;
                if room {
                    s.take(seat, Seat::Reserved);
                }
                room
            });
            if taken {
                return;
            }
            // The sender lives as long as `self`: `changed` only returns on a change.
            let _ = changes.changed().await;
        }
    }

    /// The sender starts opening a connection.
    pub fn connecting(&self, seat: &mut Seat) {
        self.state.send_modify(|s| s.take(seat, Seat::Connecting));
    }

    /// The sender's connection is open (opened now, or found ready). While
    /// capped, more open than the cap said means the relay takes that many;
    /// `sending.concurrency` of them lifts the cap.
    pub fn opened(&self, seat: &mut Seat, now: Timestamp) -> Option<Change> {
        let mut change = None;
        let concurrency = self.concurrency;
        self.state.send_modify(|s| {
            s.take(seat, Seat::Open);
            let open = s.open;
            if s.cap.as_ref().is_none_or(|cap| open <= cap.accepts) {
                return;
            }
            s.limit = s.limit.max(open);
            if open >= concurrency {
                s.cap = None;
                s.told = None;
                change = Some(Change::Lifted { concurrency });
                return;
            }
            let limit = s.limit;
            if let Some(cap) = s.cap.as_mut() {
                cap.accepts = open;
                cap.connections = limit;
                cap.checked_at = now;
                change = Some(Change::Capped(cap.clone()));
            }
        });
        self.gauge.set(self.state.borrow().limit as i64);
        change
    }

    /// The sender's connection closed (idle, dropped, let go): its seat is free for another.
    pub fn closed(&self, seat: &mut Seat) {
        if *seat == Seat::Open {
            self.state.send_modify(|s| s.take(seat, Seat::Parked));
        }
    }

    /// The sender could not open a connection (`reply` says why); its seat is given up.
    ///
    /// Waits (at most [`WEIGH_AT_MOST`]) until no other connection is being
    /// opened, then: with others open, the limit drops to their number;
    /// with none, it is an outage.
    pub async fn refused(&self, seat: &mut Seat, reply: &str, now: impl Fn() -> Timestamp) -> Refusal {
        self.state.send_modify(|s| s.take(seat, Seat::Parked));
        let mut changes = self.state.subscribe();
        let settled = changes.wait_for(|s| s.connecting == 0);
        let _ = tokio::time::timeout(WEIGH_AT_MOST, settled).await;
        let now = now();
        let mut refusal = Refusal::Outage;
        let concurrency = self.concurrency;
        self.state.send_modify(|s| {
            if s.open == 0 {
                return;
            }
            s.last_change = Instant::now();
            s.limit = s.open;
            let cap = match s.cap.take() {
                Some(cap) => RelayCap { accepts: s.open, connections: s.limit, checked_at: now, ..cap },
                None => RelayCap {
                    accepts: s.open,
                    connections: s.limit,
                    concurrency,
                    since: now,
                    checked_at: now,
                    reply: reply.to_owned(),
                },
            };
            let tell = s.told.is_none_or(|told| cap.accepts < told);
            if tell {
                s.told = Some(cap.accepts);
            }
            s.cap = Some(cap.clone());
            refusal = Refusal::Capped { cap, tell };
        });
        self.gauge.set(self.state.borrow().limit as i64);
        refusal
    }

    /// The server cannot be reached: a cap found before may have been it
    /// going away, so all of `sending.concurrency` may be tried once it
    /// answers. Returns whether there was a cap.
    pub fn forget_cap(&self) -> bool {
        let concurrency = self.concurrency;
        let forgot = self.state.send_if_modified(|s| {
            s.limit = concurrency;
            s.cap.take().is_some()
        });
        self.gauge.set(concurrency as i64);
        forgot
    }

    /// Whether the relay takes fewer connections than `sending.concurrency`.
    pub fn is_capped(&self) -> bool {
        self.state.borrow().cap.is_some()
    }

    /// A message was accepted: after a quiet while at the cap, one more connection may be tried.
    pub fn sent(&self, now: Timestamp) -> Option<Change> {
        self.sent_at(now, Instant::now())
    }

    fn sent_at(&self, now: Timestamp, at: Instant) -> Option<Change> {
        let mut change = None;
        let concurrency = self.concurrency;
        self.state.send_if_modified(|s| {
            if s.limit >= concurrency || at.duration_since(s.last_change) < PROBE_AFTER {
                return false;
            }
            let limit = s.limit + 1;
            let Some(cap) = s.cap.as_mut() else { return false };
            cap.connections = limit;
            cap.checked_at = now;
            change = Some(Change::Capped(cap.clone()));
            s.limit = limit;
            s.last_change = at;
            true
        });
        self.gauge.set(self.state.borrow().limit as i64);
        change
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn connections(n: usize) -> Connections {
        Connections::new(n, Gauge::default())
    }

    /// Seats for `n` senders, each reserved.
    async fn seated(c: &Connections, n: usize) -> Vec<Seat> {
        let mut seats = vec![Seat::Parked; n];
        for seat in &mut seats {
            c.take_seat(seat).await;
        }
        seats
    }

    /// A reserved seat opens a connection.
    fn open(c: &Connections, seat: &mut Seat, now: Timestamp) -> Option<Change> {
        c.connecting(seat);
        c.opened(seat, now)
    }

    /// A seat (taken again if parked) is refused a connection, no other being opened.
    async fn refuse(c: &Connections, seat: &mut Seat, now: Timestamp) -> Refusal {
        c.take_seat(seat).await;
        c.connecting(seat);
        c.refused(seat, "421 4.7.0 too many", || now).await
    }

    fn limit(c: &Connections) -> usize {
        c.state.borrow().limit
    }

    #[tokio::test]
    async fn a_refusal_while_others_work_is_a_cap_told_once() {
        let c = connections(8);
        let mut seats = seated(&c, 8).await;
        assert_eq!(open(&c, &mut seats[0], 10), None, "no cap yet");
        assert_eq!(open(&c, &mut seats[1], 10), None);
        let Refusal::Capped { cap, tell } = refuse(&c, &mut seats[2], 11).await else {
            panic!("two are open: a cap");
        };
        assert!(tell);
        assert_eq!((cap.accepts, cap.connections, cap.concurrency, cap.since), (2, 2, 8, 11));
        assert_eq!(cap.reply, "421 4.7.0 too many");
        for seat in &mut seats[3..] {
            let Refusal::Capped { cap, tell } = refuse(&c, seat, 12).await else { panic!("still a cap") };
            assert!(!tell, "said once");
            assert_eq!((cap.accepts, cap.since), (2, 11));
        }
        assert_eq!((limit(&c), c.gauge.get()), (2, 2));
        assert_eq!(seats[3..], [Seat::Parked; 5]);
        // A parked sender finds no room until an open connection closes.
        let waited = tokio::time::timeout(Duration::from_millis(50), c.take_seat(&mut seats[3])).await;
        assert!(waited.is_err(), "room beyond the cap");
        c.closed(&mut seats[0]);
        c.take_seat(&mut seats[3]).await;
        assert_eq!(seats[3], Seat::Reserved);
    }

    #[tokio::test]
    async fn a_refusal_with_none_open_is_an_outage_once_the_others_are_known() {
        let c = connections(4);
        let mut seats = seated(&c, 4).await;
        assert_eq!(refuse(&c, &mut seats[0], 1).await, Refusal::Outage, "nothing open, nothing opening");

        // Refused while two others are still connecting: weighed once they are known.
        let c = Arc::new(connections(4));
        let mut seats = seated(&c, 3).await;
        for seat in &mut seats {
            c.connecting(seat);
        }
        let weighing = {
            let c = c.clone();
            let mut seat = seats[0];
            tokio::spawn(async move { c.refused(&mut seat, "421", || 5).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!weighing.is_finished(), "decided before the other connections were known");
        c.opened(&mut seats[1], 5);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!weighing.is_finished(), "one is still connecting");
        assert!(matches!(c.refused(&mut seats[2], "421", || 5).await, Refusal::Capped { .. }));
        let Refusal::Capped { cap, .. } = weighing.await.unwrap() else { panic!("one opened meanwhile: a cap") };
        assert_eq!(cap.accepts, 1);
    }

    #[tokio::test]
    async fn an_outage_forgets_the_cap() {
        let c = connections(4);
        let mut seats = seated(&c, 3).await;
        open(&c, &mut seats[0], 1);
        assert!(matches!(refuse(&c, &mut seats[1], 1).await, Refusal::Capped { .. }));
        assert!(c.is_capped());
        c.closed(&mut seats[0]);
        assert_eq!(refuse(&c, &mut seats[2], 2).await, Refusal::Outage);
        assert!(c.forget_cap());
        assert_eq!((limit(&c), c.gauge.get()), (4, 4));
        assert!(!c.is_capped());
        assert!(!c.forget_cap(), "nothing more to forget");
    }

    #[tokio::test]
    async fn after_a_quiet_minute_one_more_is_tried_up_to_the_configured_number() {
        let c = connections(3);
        let mut seats = seated(&c, 3).await;
        open(&c, &mut seats[0], 1);
        refuse(&c, &mut seats[1], 1).await;
        refuse(&c, &mut seats[2], 1).await;
        assert_eq!(limit(&c), 1);
        let t0 = c.state.borrow().last_change;
        assert_eq!(c.sent_at(2, t0 + Duration::from_secs(30)), None, "not yet");
        let Some(Change::Capped(cap)) = c.sent_at(70, t0 + PROBE_AFTER) else { panic!("a probe") };
        assert_eq!((cap.accepts, cap.connections), (1, 2));
        // The probe's connection opens: the relay takes two.
        c.take_seat(&mut seats[1]).await;
        let Some(Change::Capped(cap)) = open(&c, &mut seats[1], 71) else { panic!("the cap moves up") };
        assert_eq!((cap.accepts, cap.connections), (2, 2));
        let t1 = t0 + PROBE_AFTER;
        assert_eq!(c.sent_at(72, t1 + Duration::from_secs(1)), None, "a quiet while after each raise");
        let Some(Change::Capped(cap)) = c.sent_at(140, t1 + PROBE_AFTER) else { panic!("a second probe") };
        assert_eq!((cap.accepts, cap.connections), (2, 3));
        // Refused: back to two, and the log is not told again.
        let Refusal::Capped { cap, tell } = refuse(&c, &mut seats[2], 141).await else { panic!("a cap") };
        assert_eq!((cap.accepts, cap.connections, tell), (2, 2, false));
        let t2 = c.state.borrow().last_change;
        assert_eq!(c.sent_at(200, t2 + PROBE_AFTER).map(|_| limit(&c)), Some(3));
        c.take_seat(&mut seats[2]).await;
        assert_eq!(open(&c, &mut seats[2], 201), Some(Change::Lifted { concurrency: 3 }), "all three open");
        assert!(!c.is_capped());
        assert_eq!(c.sent_at(300, t2 + 5 * PROBE_AFTER), None, "never above sending.concurrency");
        assert_eq!((limit(&c), c.gauge.get()), (3, 3));
    }
}
