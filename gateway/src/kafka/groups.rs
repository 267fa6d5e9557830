//! FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! DescribeGroups and ListGroups, on the node's group coordinator.
//!
//! Kafka groups are leader-assigned (`AssignmentMode::Leader`): protocol
//! names and metadata pass through untouched and the leader's SyncGroup
//! carries every assignment. The node reads one thing from the metadata:
//! the subscribed topics of the standard `consumer` protocol, to decide
//! whether the group needs a mirroring lease. An empty member id means a
//! new member; JoinGroup v0 has no rebalance timeout (the session timeout
//! stands in); timeouts are clamped into the node's allowed ranges.
//! Static membership (`group.instance.id`) is not supported: such members
//! join as dynamic ones.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use meshgate_protocol::{
    GroupProtocol, Heartbeat, JoinGroup, LeaveGroup, Reply, Request as NodeRequest, SyncGroup,
};

use super::KafkaState;
use super::connection::Connection;
use super::dispatch::{Request, text};
use super::errors::{Context, from_wire};
use super::records::Reader;
use crate::groups::{AssignmentMode, GroupState};

/// Coordinator types of FindCoordinator.
const COORDINATOR_GROUP: i8 = 0;

/// Topics a `consumer`-protocol subscription names: version (i16), then an
/// array of topic names. Undecodable metadata yields none.
pub fn subscribed_topics(metadata: &[u8]) -> Vec<String> {
    let mut reader = Reader::new(metadata);
    let parse = |reader: &mut Reader<'_>| -> Option<Vec<String>> {
        let _version = reader.i16().ok()?;
        let count = usize::try_from(reader.i32().ok()?).ok()?;
        if count > reader.rest().len() / 2 {
            return None;
        }
        let mut topics = Vec::with_capacity(count);
        for _ in 0..count {
            let length = usize::try_from(reader.i16().ok()?).ok()?;
            let name = reader.take(length).ok()?;
            topics.push(String::from_utf8(name.to_vec()).ok()?);
        }
        Some(topics)
    };
    parse(&mut reader).unwrap_or_default()
}

/// Answers FindCoordinator: this node, for groups; transactions are not
/// supported.
pub fn find_coordinator(
    state: &Arc<KafkaState>,
    connection: &Connection,
    request: &Request,
    body: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let host = text(state.advertised_host(connection));
    let port = i32::from(connection.local.port());
    let node_id = BrokerId(state.broker_id);
    let error =
        (body.key_type != COORDINATOR_GROUP).then_some(ResponseError::UnsupportedForMessageFormat);
    if request.version >= 4 {
        let coordinators = body
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let coordinator = Coordinator::default().with_key(key);
                match error {
                    Some(error) => coordinator
                        .with_error_code(error.code())
                        .with_error_message(Some(text("transactions are not supported")))
                        .with_node_id(BrokerId(-1)),
                    None => coordinator
                        .with_node_id(node_id)
                        .with_host(host.clone())
                        .with_port(port),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match error {
        Some(error) => {
            let mut response = FindCoordinatorResponse::default()
                .with_error_code(error.code())
                .with_node_id(BrokerId(-1));
            if request.version >= 1 {
                response.error_message = Some(text("transactions are not supported"));
            }
            response
        }
        None => FindCoordinatorResponse::default()
            .with_node_id(node_id)
            .with_host(host)
            .with_port(port),
    }
}

fn clamp_ms(value: i32, min: u32, max: u32) -> u32 {
    (value.max(0) as u32).clamp(min, max)
}

/// Answers JoinGroup; waits for the end of the join phase.
pub async fn join(
    state: &Arc<KafkaState>,
    connection: &Connection,
    request: &Request,
    body: JoinGroupRequest,
) -> JoinGroupResponse {
    let config = &state.node.config().groups;
    let session = clamp_ms(
        body.session_timeout_ms,
        config.session_timeout_ms_min,
        config.session_timeout_ms_max,
    );
    let rebalance = if request.version >= 1 {
        body.rebalance_timeout_ms
    } else {
        body.session_timeout_ms
    };
    let rebalance = clamp_ms(
        rebalance,
        config.rebalance_timeout_ms_min,
        config.rebalance_timeout_ms_max,
    );
    let subscription = if body.protocol_type.as_str() == "consumer" {
        body.protocols
            .first()
            .map(|protocol| subscribed_topics(&protocol.metadata))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let join = JoinGroup {
        group: body.group_id.0.to_string(),
        member_id: (!body.member_id.is_empty()).then(|| body.member_id.to_string()),
        client_id: connection.client_id.clone(),
        session_timeout_ms: session,
        rebalance_timeout_ms: rebalance,
        protocols: body
            .protocols
            .iter()
            .map(|protocol| GroupProtocol {
                name: protocol.name.to_string(),
                metadata: protocol.metadata.clone(),
            })
            .collect(),
    };
    let reply = state
        .node
        .join_group_leader_assigned(join, &subscription)
        .await;
    let mut response = JoinGroupResponse::default();
    match reply {
        Ok(Reply::Joined(joined)) => {
            state.remember_member_host(&joined.member_id, format!("/{}", connection.peer.ip()));
            response.generation_id = joined.generation as i32;
            response.protocol_name = Some(text(joined.protocol));
            if request.version >= 7 {
                response.protocol_type = Some(body.protocol_type.clone());
            }
            response.leader = text(joined.leader_id);
            response.member_id = text(joined.member_id);
            response.members = joined
                .members
                .into_iter()
                .map(|member| {
                    JoinGroupResponseMember::default()
                        .with_member_id(text(member.member_id))
                        .with_metadata(member.metadata)
                })
                .collect();
        }
        Ok(_) => response.error_code = ResponseError::UnknownServerError.code(),
        Err(error) => {
            response.error_code = from_wire(&error, Context::Group).code();
            response.generation_id = -1;
            response.member_id = body.member_id.clone();
            if request.version < 7 {
                response.protocol_name = Some(Default::default());
            }
        }
    }
    response
}

/// Answers SyncGroup; a follower waits for the leader's assignments.
pub async fn sync(
    state: &Arc<KafkaState>,
    _connection: &Connection,
    request: &Request,
    body: SyncGroupRequest,
) -> SyncGroupResponse {
    let Ok(generation) = u32::try_from(body.generation_id) else {
        return SyncGroupResponse::default()
            .with_error_code(ResponseError::IllegalGeneration.code());
    };
    let sync = SyncGroup {
        group: body.group_id.0.to_string(),
        generation,
        member_id: body.member_id.to_string(),
        assignments: body
            .assignments
            .into_iter()
            .map(|assignment| (assignment.member_id.to_string(), assignment.assignment))
            .collect(),
    };
    let mut response = SyncGroupResponse::default();
    if request.version >= 5 {
        response.protocol_type = body.protocol_type;
        response.protocol_name = body.protocol_name;
    }
    match state.node.handle(NodeRequest::SyncGroup(sync)).await {
        Ok(Reply::Synced(assignment)) => response.with_assignment(assignment),
        Ok(_) => response.with_error_code(ResponseError::UnknownServerError.code()),
        Err(error) => response.with_error_code(from_wire(&error, Context::Group).code()),
    }
}

/// Answers Heartbeat.
pub async fn heartbeat(
    state: &Arc<KafkaState>,
    _request: &Request,
    body: HeartbeatRequest,
) -> HeartbeatResponse {
    let Ok(generation) = u32::try_from(body.generation_id) else {
        return HeartbeatResponse::default()
            .with_error_code(ResponseError::IllegalGeneration.code());
    };
    let heartbeat = Heartbeat {
        group: body.group_id.0.to_string(),
        generation,
        member_id: body.member_id.to_string(),
    };
    match state.node.heartbeat(heartbeat).await {
        Ok(_) => HeartbeatResponse::default(),
        Err(error) => {
            HeartbeatResponse::default().with_error_code(from_wire(&error, Context::Group).code())
        }
    }
}

async fn leave_one(state: &KafkaState, group: &str, member_id: &str) -> i16 {
    let leave = LeaveGroup {
        group: group.to_string(),
        member_id: member_id.to_string(),
    };
    match state.node.handle(NodeRequest::LeaveGroup(leave)).await {
        Ok(_) => 0,
        Err(error) => from_wire(&error, Context::Group).code(),
    }
}

/// Answers LeaveGroup: one member (v0-2) or several (v3+).
pub async fn leave(
    state: &Arc<KafkaState>,
    request: &Request,
    body: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let group = body.group_id.0.to_string();
    if request.version < 3 {
        let code = leave_one(state, &group, body.member_id.as_str()).await;
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let mut members = Vec::with_capacity(body.members.len());
    for member in body.members {
        let code = leave_one(state, &group, member.member_id.as_str()).await;
        members.push(
            MemberResponse::default()
                .with_member_id(member.member_id)
                .with_group_instance_id(member.group_instance_id)
                .with_error_code(code),
        );
    }
    LeaveGroupResponse::default().with_members(members)
}

fn kafka_state(state: GroupState) -> &'static str {
    match state {
        GroupState::Empty => "Empty",
        GroupState::PreparingRebalance => "PreparingRebalance",
        GroupState::CompletingRebalance => "CompletingRebalance",
        GroupState::Stable => "Stable",
    }
}

fn kafka_state_name(native: &str) -> &'static str {
    match native {
        "preparing_rebalance" => "PreparingRebalance",
        "completing_rebalance" => "CompletingRebalance",
        "stable" => "Stable",
        _ => "Empty",
    }
}

/// Answers DescribeGroups. Groups the coordinator does not hold are
/// `Empty` when they have committed offsets, else `Dead`.
pub async fn describe(
    state: &Arc<KafkaState>,
    _request: &Request,
    body: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(body.groups.len());
    for group_id in body.groups {
        let name = group_id.0.to_string();
        let mut described = DescribedGroup::default().with_group_id(group_id);
        match state.node.group_details(&name).await {
            Some(details) => {
                described.group_state = text(kafka_state(details.state));
                described.protocol_type = text(match details.mode {
                    Some(AssignmentMode::Node) => "meshgate",
                    _ => "consumer",
                });
                described.protocol_data = text(details.protocol.unwrap_or_default());
                described.members = details
                    .members
                    .into_iter()
                    .map(|member| {
                        DescribedGroupMember::default()
                            .with_client_host(text(state.member_host(&member.member_id)))
                            .with_member_id(text(member.member_id))
                            .with_client_id(text(member.client_id))
                            .with_member_metadata(member.metadata)
                            .with_member_assignment(member.assignment)
                    })
                    .collect();
            }
            None => {
                let known = state
                    .node
                    .list_groups()
                    .await
                    .iter()
                    .any(|g| g.group == name);
                described.group_state = text(if known { "Empty" } else { "Dead" });
            }
        }
        groups.push(described);
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

/// Answers ListGroups, with the state (v4+) and type (v5+) filters.
pub async fn list(
    state: &Arc<KafkaState>,
    request: &Request,
    body: ListGroupsRequest,
) -> ListGroupsResponse {
    let groups = state
        .node
        .list_groups()
        .await
        .into_iter()
        .map(|summary| (summary.group, kafka_state_name(&summary.state)))
        .filter(|(_, group_state)| {
            body.states_filter.is_empty()
                || body
                    .states_filter
                    .iter()
                    .any(|wanted| wanted.as_str().eq_ignore_ascii_case(group_state))
        })
        .filter(|_| {
            body.types_filter.is_empty()
                || body
                    .types_filter
                    .iter()
                    .any(|t| t.as_str().eq_ignore_ascii_case("classic"))
        })
        .map(|(group, group_state)| {
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(text(group)))
                .with_protocol_type(text("consumer"));
            if request.version >= 4 {
                listed.group_state = text(group_state);
            }
            if request.version >= 5 {
                listed.group_type = text("classic");
            }
            listed
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_subscriptions_name_their_topics_and_garbage_names_none() {
        let mut metadata = vec![0, 1, 0, 0, 0, 2];
        for topic in ["orders", "payments"] {
            metadata.extend_from_slice(&(topic.len() as i16).to_be_bytes());
            metadata.extend_from_slice(topic.as_bytes());
        }
        metadata.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // null user data
        assert_eq!(subscribed_topics(&metadata), vec!["orders", "payments"]);
        assert!(subscribed_topics(&[0, 1, 0x7f, 0xff, 0xff, 0xff]).is_empty());
        assert!(subscribed_topics(b"").is_empty());
    }
}
