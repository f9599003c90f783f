//! Relay addresses in LTTng's URL convention: `net://HOST[:CTRL_PORT[:DATA_PORT]]`
//! (`net6://` is accepted too; an IPv6 host is written in brackets, `net://[::1]:5342`).
//! Default ports: control 5342, data 5343; live viewers connect to 5344.

use std::fmt;

/// Default control port of `lttng-relayd`.
pub const DEFAULT_CONTROL_PORT: u16 = 5342;
/// Default data port.
pub const DEFAULT_DATA_PORT: u16 = 5343;
/// Default live (viewer) port.
pub const DEFAULT_LIVE_PORT: u16 = 5344;

/// A parsed relay address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayUrl {
    /// Host name or address (without brackets).
    pub host: String,
    /// Control port.
    pub control_port: u16,
    /// Data port.
    pub data_port: u16,
}

impl RelayUrl {
    /// Parse `net://HOST[:CTRL[:DATA]]`; the error says what is wrong in one line.
    pub fn parse(s: &str) -> Result<RelayUrl, String> {
        let bad = |why: &str| {
            format!("relay URL {s:?}: {why} (expected net://HOST[:CTRL_PORT[:DATA_PORT]])")
        };
        let rest = s
            .strip_prefix("net://")
            .or_else(|| s.strip_prefix("net6://"))
            .ok_or_else(|| bad("it must start with net://"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(bad("a path is not allowed"));
        }
        let (host, ports) = if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(|| bad("missing ]"))?;
            let after = &r[end + 1..];
            let ports = match after.strip_prefix(':') {
                Some(p) => p,
                None if after.is_empty() => "",
                None => return Err(bad("unexpected text after ]")),
            };
            (&r[..end], ports)
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, p),
                None => (rest, ""),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = |p: &str| -> Result<u16, String> {
            p.parse::<u16>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad(&format!("bad port {p:?}")))
        };
        let (control_port, data_port) = if ports.is_empty() {
            (DEFAULT_CONTROL_PORT, DEFAULT_DATA_PORT)
        } else {
            let mut it = ports.split(':');
            let c = port(it.next().unwrap_or(""))?;
            let d = match it.next() {
                Some(d) => port(d)?,
                None => DEFAULT_DATA_PORT,
            };
            if it.next().is_some() {
                return Err(bad("at most two ports"));
            }
            (c, d)
        };
        Ok(RelayUrl {
            host: host.to_string(),
            control_port,
            data_port,
        })
    }

    /// `HOST:PORT` for a socket address lookup (brackets around an IPv6 address).
    pub fn addr(&self, port: u16) -> String {
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }
}

impl fmt::Display for RelayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "net://{h}:{}:{}", self.control_port, self.data_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lttng_urls() {
        let u = RelayUrl::parse("net://relay.example").unwrap();
        assert_eq!(
            (u.host.as_str(), u.control_port, u.data_port),
            ("relay.example", 5342, 5343)
        );
        let u = RelayUrl::parse("net://10.0.0.1:6000").unwrap();
        assert_eq!((u.control_port, u.data_port), (6000, 5343));
        let u = RelayUrl::parse("net://10.0.0.1:6000:6001/").unwrap();
        assert_eq!((u.control_port, u.data_port), (6000, 6001));
        let u = RelayUrl::parse("net6://[::1]:7000:7001").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.addr(7000), "[::1]:7000");
        assert_eq!(u.to_string(), "net://[::1]:7000:7001");
        for bad in [
            "tcp://h",
            "net://",
            "net://h:0",
            "net://h:x",
            "net://h:1:2:3",
            "net://h/x",
            "net://[::1",
            "net://h:99999",
        ] {
            let e = RelayUrl::parse(bad).unwrap_err();
            assert!(e.starts_with("relay URL") && !e.contains('\n'), "{e}");
        }
    }
}
