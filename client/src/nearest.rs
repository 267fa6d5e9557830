//! Choosing the nearest healthy gateway: the configured region first, then
//! the lowest measured round trip (quinn's estimate after the handshake and
//! hello). The ranking is kept so that, when the gateway in use dies, the
//! client moves to the next nearest.

use std::net::SocketAddr;
use std::time::Duration;

use meshgate_protocol::MemberInfo;

/// A gateway the client may use, as the membership view describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) address: SocketAddr,
    pub(crate) node_id: String,
    pub(crate) region: String,
}

/// The gateways worth dialling: members that are alive (or only suspected)
/// with a parsable client address, without duplicates.
pub(crate) fn candidates(members: &[MemberInfo]) -> Vec<Candidate> {
    let mut result: Vec<Candidate> = Vec::new();
    for member in members
        .iter()
        .filter(|m| m.state == "alive" || m.state == "suspect")
    {
        let Ok(address) = member.client_address.parse::<SocketAddr>() else {
            continue;
        };
        if result.iter().any(|c| c.address == address) {
            continue;
        }
        result.push(Candidate {
            address,
            node_id: member.node_id.clone(),
            region: member.region.clone(),
        });
    }
    result
}

/// Orders measured candidates: the preferred region first, then by round
/// trip, then by address (so equal measurements order the same way).
pub(crate) fn rank(
    mut measured: Vec<(Candidate, Duration)>,
    preferred_region: Option<&str>,
) -> Vec<(Candidate, Duration)> {
    measured.sort_by(|(a, a_rtt), (b, b_rtt)| {
        let a_preferred = preferred_region == Some(a.region.as_str());
        let b_preferred = preferred_region == Some(b.region.as_str());
        b_preferred
            .cmp(&a_preferred)
            .then(a_rtt.cmp(b_rtt))
            .then(a.address.cmp(&b.address))
    });
    measured
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(node: &str, region: &str, address: &str, state: &str) -> MemberInfo {
        MemberInfo {
            node_id: node.into(),
            region: region.into(),
            state: state.into(),
            incarnation: 1,
            client_address: address.into(),
            peer_address: String::new(),
            gossip_address: String::new(),
            last_heard_ms_ago: None,
            local: false,
        }
    }

    #[test]
    fn only_live_members_with_addresses_are_candidates() {
        let members = [
            member("a", "us", "127.0.0.1:1", "alive"),
            member("b", "us", "127.0.0.1:2", "down"),
            member("c", "eu", "not an address", "alive"),
            member("d", "eu", "127.0.0.1:4", "suspect"),
            member("e", "eu", "127.0.0.1:4", "alive"),
        ];
        let found: Vec<String> = candidates(&members)
            .into_iter()
            .map(|c| c.node_id)
            .collect();
        assert_eq!(found, vec!["a", "d"]);
    }

    #[test]
    fn the_preferred_region_comes_first_then_the_lowest_round_trip() {
        let candidate = |node: &str, region: &str, port: u16| Candidate {
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            node_id: node.into(),
            region: region.into(),
        };
        let measured = vec![
            (candidate("far-eu", "eu", 1), Duration::from_millis(90)),
            (candidate("near-us", "us", 2), Duration::from_millis(5)),
            (candidate("near-eu", "eu", 3), Duration::from_millis(30)),
        ];
        let by_rtt: Vec<String> = rank(measured.clone(), None)
            .into_iter()
            .map(|(c, _)| c.node_id)
            .collect();
        assert_eq!(by_rtt, vec!["near-us", "near-eu", "far-eu"]);
        let preferring: Vec<String> = rank(measured, Some("eu"))
            .into_iter()
            .map(|(c, _)| c.node_id)
            .collect();
        assert_eq!(preferring, vec!["near-eu", "far-eu", "near-us"]);
    }
}
