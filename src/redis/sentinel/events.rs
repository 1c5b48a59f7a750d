//! Redis Sentinel's client protocol, as pure functions: the answer to `SENTINEL
//! get-master-addr-by-name`, the `+switch-master` event, and the order in which to ask the
//! sentinels.
//!
//! It follows redis.io's "Sentinel client spec": try the sentinels in turn with a short timeout,
//! and move the first one that answers to the head of the list, so the next discovery asks a
//! sentinel known to be reachable first; a null answer (the sentinel does not know the service)
//! means "ask the next one"; whatever a sentinel names is verified with `ROLE` before it is used
//! (the connect path does that). It owns no connection; the discovery that talks to sentinels
//! is elsewhere.

use redis_protocol::resp2::types::OwnedFrame;

use crate::config::redis_topology::HostPort;

/// What one sentinel said about the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterAddr {
    /// The primary's address (host as the sentinel knows it, usually an IP address).
    At(HostPort),
    /// A null reply: this sentinel does not monitor the service. Ask the next one.
    Unknown,
}

impl MasterAddr {
    /// Parses the reply to `SENTINEL get-master-addr-by-name SERVICE`: `[host, port]` or null.
    pub fn parse(reply: &OwnedFrame) -> Result<MasterAddr, String> {
        match reply {
            OwnedFrame::Null => Ok(MasterAddr::Unknown),
            OwnedFrame::Array(items) if items.is_empty() => Ok(MasterAddr::Unknown),
            OwnedFrame::Array(items) if items.len() == 2 => {
                let host = text(&items[0]).filter(|h| !h.is_empty()).ok_or("the sentinel named an empty host")?;
                let port = text(&items[1])
                    .and_then(|p| p.parse::<u16>().ok())
                    .filter(|&p| p > 0)
                    .ok_or("the sentinel named no valid port")?;
                Ok(MasterAddr::At(HostPort { host, port }))
            }
            OwnedFrame::Error(e) => Err(format!("the sentinel answered: {e}")),
            _ => Err("the sentinel's answer is not [host, port]".into()),
        }
    }
}

/// A `+switch-master` event: a failover of `service` finished, and `new` is the primary now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchMaster {
    /// The service that failed over.
    pub service: String,
    /// The old primary.
    pub old: HostPort,
    /// The new primary.
    pub new: HostPort,
}

impl SwitchMaster {
    /// The pub/sub message's payload: `<service> <old-ip> <old-port> <new-ip> <new-port>`.
    pub fn parse_payload(payload: &[u8]) -> Option<SwitchMaster> {
        let text = std::str::from_utf8(payload).ok()?;
        let w: Vec<&str> = text.split(' ').collect();
        let [service, old_host, old_port, new_host, new_port] = w.as_slice() else { return None };
        let port = |p: &str| p.parse::<u16>().ok().filter(|&p| p > 0);
        Some(SwitchMaster {
            service: service.to_string(),
            old: HostPort { host: old_host.to_string(), port: port(old_port)? },
            new: HostPort { host: new_host.to_string(), port: port(new_port)? },
        })
    }

    /// A pushed pub/sub frame, `["message", "+switch-master", payload]`, if it is this event.
    /// Subscription confirmations and other channels' messages are `None`.
    pub fn from_message(frame: &OwnedFrame) -> Option<SwitchMaster> {
        let OwnedFrame::Array(items) = frame else { return None };
        let [kind, channel, payload] = items.as_slice() else { return None };
        if text(kind)? != "message" || text(channel)? != "+switch-master" {
            return None;
        }
        match payload {
            OwnedFrame::BulkString(p) => SwitchMaster::parse_payload(p),
            _ => None,
        }
    }
}

/// A sentinel event about a failover, from the channels hitcore subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `+try-failover master NAME IP PORT`: a sentinel starts a failover of the primary at `old`.
    /// The primary it names still takes writes, but its replicas are about to leave it.
    TryFailover {
        /// The service.
        service: String,
        /// The primary being failed over.
        old: HostPort,
    },
    /// `-failover-abort-*` (no good replica, not elected, replica timeout): the primary stays.
    Aborted {
        /// The service.
        service: String,
    },
    /// `+switch-master`: the failover finished.
    Switched(SwitchMaster),
}

impl Event {
    /// The channels to `SUBSCRIBE` to.
    pub const CHANNELS: [&'static [u8]; 2] = [b"+switch-master", b"+try-failover"];
    /// The pattern to `PSUBSCRIBE` to.
    pub const ABORTS: &'static [u8] = b"-failover-abort-*";

    /// A pushed frame (`message` or `pmessage`), if it is one of these events.
    pub fn from_message(frame: &OwnedFrame) -> Option<Event> {
        let OwnedFrame::Array(items) = frame else { return None };
        let (channel, payload) = match items.as_slice() {
            [kind, channel, payload] if text(kind)? == "message" => (text(channel)?, payload),
            [kind, _pattern, channel, payload] if text(kind)? == "pmessage" => (text(channel)?, payload),
            _ => return None,
        };
        let OwnedFrame::BulkString(payload) = payload else { return None };
        if channel == "+switch-master" {
            return SwitchMaster::parse_payload(payload).map(Event::Switched);
        }
        // The other events name the instance as `master NAME IP PORT`.
        let payload = std::str::from_utf8(payload).ok()?;
        let w: Vec<&str> = payload.split(' ').collect();
        let ["master", service, host, port, ..] = w.as_slice() else { return None };
        let service = service.to_string();
        if channel == "+try-failover" {
            let port = port.parse::<u16>().ok().filter(|&p| p > 0)?;
            Some(Event::TryFailover { service, old: HostPort { host: host.to_string(), port } })
        } else if channel.starts_with("-failover-abort") {
            Some(Event::Aborted { service })
        } else {
            None
        }
    }

    /// The service the event is about.
    pub fn service(&self) -> &str {
        match self {
            Event::TryFailover { service, .. } | Event::Aborted { service } => service,
            Event::Switched(s) => &s.service,
        }
    }
}

fn text(f: &OwnedFrame) -> Option<String> {
    match f {
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => String::from_utf8(b.clone()).ok(),
        _ => None,
    }
}

/// The sentinels in the order to ask them; the one that last answered comes first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelList {
    /// Sentinels, the next one to ask first.
    order: Vec<HostPort>,
}

impl SentinelList {
    /// The sentinels as the URL lists them.
    pub fn new(sentinels: Vec<HostPort>) -> SentinelList {
        SentinelList { order: sentinels }
    }

    /// The order to ask them in.
    pub fn order(&self) -> &[HostPort] {
        &self.order
    }

    /// `answered` gave a usable answer: it goes to the head of the list (the client spec's
    /// step 1), the others keep their order.
    pub fn answered(&mut self, answered: &HostPort) {
        if let Some(i) = self.order.iter().position(|s| s == answered) {
            let s = self.order.remove(i);
            self.order.insert(0, s);
        }
    }
}

#[cfg(test)]
mod tests {
    use redis_protocol::resp2::decode::decode;

    use super::*;

    fn frame(bytes: &str) -> OwnedFrame {
        decode(bytes.as_bytes()).unwrap().unwrap().0
    }

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort { host: host.into(), port }
    }

    #[test]
    fn master_addr_replies() {
        let at = frame("*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n");
        assert_eq!(MasterAddr::parse(&at), Ok(MasterAddr::At(hp("127.0.0.1", 6380))));
        assert_eq!(MasterAddr::parse(&frame("*-1\r\n")), Ok(MasterAddr::Unknown));
        assert_eq!(MasterAddr::parse(&frame("$-1\r\n")), Ok(MasterAddr::Unknown));
        let noauth = MasterAddr::parse(&frame("-NOAUTH Authentication required.\r\n")).unwrap_err();
        assert!(noauth.contains("NOAUTH"), "{noauth}");
        for bad in ["*2\r\n$1\r\nh\r\n$1\r\nx\r\n", "*2\r\n$0\r\n\r\n$1\r\n1\r\n", "*1\r\n$1\r\nh\r\n", ":1\r\n"] {
            assert!(MasterAddr::parse(&frame(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn switch_master_events() {
        let payload = "hitsvc 127.0.0.1 6379 127.0.0.1 6380";
        let msg =
            frame(&format!("*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n${}\r\n{payload}\r\n", payload.len()));
        let want = SwitchMaster { service: "hitsvc".into(), old: hp("127.0.0.1", 6379), new: hp("127.0.0.1", 6380) };
        assert_eq!(SwitchMaster::from_message(&msg), Some(want));
        let confirm = frame("*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n");
        assert_eq!(SwitchMaster::from_message(&confirm), None);
        let other = frame("*3\r\n$7\r\nmessage\r\n$6\r\n+sdown\r\n$1\r\nx\r\n");
        assert_eq!(SwitchMaster::from_message(&other), None);
        for bad in ["svc 1.1.1.1 1 2.2.2.2", "svc a 1 b x", "svc a 1 b 2 c", ""] {
            assert_eq!(SwitchMaster::parse_payload(bad.as_bytes()), None, "{bad}");
        }
    }

    fn message(channel: &str, payload: &str) -> OwnedFrame {
        frame(&format!("*3\r\n$7\r\nmessage\r\n${}\r\n{channel}\r\n${}\r\n{payload}\r\n", channel.len(), payload.len()))
    }

    #[test]
    fn failover_events() {
        let try_failover = message("+try-failover", "master hitsvc 127.0.0.1 6379");
        let want = Event::TryFailover { service: "hitsvc".into(), old: hp("127.0.0.1", 6379) };
        assert_eq!(Event::from_message(&try_failover), Some(want));
        let p = "master hitsvc 127.0.0.1 6379";
        let abort = frame(&format!(
            "*4\r\n$8\r\npmessage\r\n$17\r\n-failover-abort-*\r\n$29\r\n-failover-abort-no-good-slave\r\n${}\r\n{p}\r\n",
            p.len()
        ));
        assert_eq!(Event::from_message(&abort), Some(Event::Aborted { service: "hitsvc".into() }));
        let switch = message("+switch-master", "hitsvc 127.0.0.1 6379 127.0.0.1 6380");
        assert_eq!(Event::from_message(&switch).map(|e| e.service().to_string()), Some("hitsvc".into()));
        assert_eq!(Event::from_message(&message("+try-failover", "slave x 1 2 @ hitsvc 1 2")), None);
        assert_eq!(Event::from_message(&message("+sdown", "master hitsvc 127.0.0.1 6379")), None);
    }

    #[test]
    fn the_sentinel_that_answered_is_asked_first_next_time() {
        let (a, b, c) = (hp("a", 1), hp("b", 2), hp("c", 3));
        let mut list = SentinelList::new(vec![a.clone(), b.clone(), c.clone()]);
        list.answered(&c);
        assert_eq!(list.order(), [c.clone(), a.clone(), b.clone()]);
        list.answered(&c);
        assert_eq!(list.order(), [c.clone(), a.clone(), b.clone()]);
        list.answered(&b);
        assert_eq!(list.order(), [b, c, a]);
        list.answered(&hp("unknown", 9));
        assert_eq!(list.order().len(), 3);
    }
}
