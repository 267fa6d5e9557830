//! One request frame in, one response frame (or none) out: the request
//! header, the version check, the shape check, decoding, the handler, and
//! the response header.
//!
//! What a client gets when something is wrong with its request:
//! - an API key this node does not serve, or a version outside the served
//!   range: a response with the request's correlation id whose body is the
//!   error code UNSUPPORTED_VERSION (35) alone, the field most Kafka
//!   responses start with in their oldest versions; the connection stays
//!   open (clients that negotiate through ApiVersions never get here);
//! - ApiVersions of a version newer than served: the v0 form of the
//!   ApiVersions response with error 35 and the served ranges, as Kafka
//!   does, so the client retries with a version listed;
//! - a body that does not decode: the same short answer with
//!   INVALID_REQUEST (42), and the connection stays open (the frame
//!   boundary is intact).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use super::connection::Connection;
use super::versions::{SUPPORTED, served};
use super::{KafkaState, fetch, groups, offsets, preflight, produce, topics};

/// Bytes of the fixed request header: api key, version, correlation id.
pub const HEADER_FIXED_BYTES: usize = 8;

/// What to send back for one request.
#[derive(Debug)]
pub enum Outcome {
    /// A whole response frame, length prefix included.
    Respond(Bytes),
    /// Nothing (a Produce with acks 0).
    Silent,
}

/// A response frame with just an error code as its body.
pub fn error_frame(correlation_id: i32, code: i16) -> Bytes {
    let mut out = BytesMut::with_capacity(10);
    out.put_i32(6);
    out.put_i32(correlation_id);
    out.put_i16(code);
    out.freeze()
}

/// Reads the api key, version and correlation id of a frame (at least
/// [`HEADER_FIXED_BYTES`] long, which the listener checks).
pub fn fixed_header(frame: &[u8]) -> (i16, i16, i32) {
    // The listener refuses frames shorter than the fixed header.
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    (api_key, version, correlation_id)
}

/// Handles one request frame (without its length prefix).
pub async fn handle_frame(
    state: &Arc<KafkaState>,
    connection: &mut Connection,
    frame: Bytes,
) -> Outcome {
    assert!(
        frame.len() >= HEADER_FIXED_BYTES,
        "the listener checks the header fits"
    );
    let (api_key, version, correlation_id) = fixed_header(&frame);
    let Ok(api) = ApiKey::try_from(api_key) else {
        tracing::debug!(target: "meshgate::kafka", api_key, "unknown API key");
        return Outcome::Respond(error_frame(
            correlation_id,
            ResponseError::UnsupportedVersion.code(),
        ));
    };
    let Some(range) = served(api).filter(|range| (range.min..=range.max).contains(&version)) else {
        tracing::debug!(target: "meshgate::kafka", ?api, version, "unsupported API or version");
        if api == ApiKey::ApiVersions {
            return Outcome::Respond(api_versions_error(correlation_id));
        }
        return Outcome::Respond(error_frame(
            correlation_id,
            ResponseError::UnsupportedVersion.code(),
        ));
    };
    let mut body = frame;
    let header = match RequestHeader::decode(&mut body, api.request_header_version(version)) {
        Ok(header) => header,
        Err(error) => {
            tracing::debug!(target: "meshgate::kafka", ?api, %error, "bad request header");
            return Outcome::Respond(error_frame(
                correlation_id,
                ResponseError::InvalidRequest.code(),
            ));
        }
    };
    connection.client_id = header
        .client_id
        .as_ref()
        .map(|id| id.to_string())
        .unwrap_or_default();
    // Produce 0-2 bodies are checked by their own decoder.
    let legacy = api == ApiKey::Produce && version < 3;
    if !legacy && let Err(error) = preflight::check(api, version, &body) {
        tracing::debug!(target: "meshgate::kafka", ?api, version, %error, "request refused");
        return Outcome::Respond(error_frame(
            correlation_id,
            ResponseError::InvalidRequest.code(),
        ));
    }
    let request = Request {
        api,
        version,
        correlation_id,
        range_max: range.max,
    };
    match route(state, connection, &request, body).await {
        Ok(outcome) => outcome,
        Err(error) => {
            tracing::debug!(target: "meshgate::kafka", ?api, version, %error, "request failed to decode or encode");
            Outcome::Respond(error_frame(
                correlation_id,
                ResponseError::InvalidRequest.code(),
            ))
        }
    }
}

/// What a handler needs to know about its request.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    /// The API.
    pub api: ApiKey,
    /// Its version.
    pub version: i16,
    /// The correlation id to answer with.
    pub correlation_id: i32,
    /// The newest version served of this API.
    pub range_max: i16,
}

/// Decodes the body as `T` at the request's version.
fn decode<T: Decodable>(request: &Request, body: &mut Bytes) -> anyhow::Result<T> {
    T::decode(body, request.version)
}

/// Encodes a response frame: length, header, body.
pub fn respond<T: Encodable + HeaderVersion>(
    request: &Request,
    response: &T,
) -> anyhow::Result<Outcome> {
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(request.correlation_id);
    header.encode(&mut out, T::header_version(request.version))?;
    response.encode(&mut out, request.version)?;
    let length = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&length.to_be_bytes());
    Ok(Outcome::Respond(out.freeze()))
}

async fn route(
    state: &Arc<KafkaState>,
    connection: &mut Connection,
    request: &Request,
    mut body: Bytes,
) -> anyhow::Result<Outcome> {
    let r = request;
    match r.api {
        ApiKey::ApiVersions => respond(r, &api_versions(decode(r, &mut body)?)),
        ApiKey::Metadata => respond(
            r,
            &topics::metadata(state, connection, r, decode(r, &mut body)?).await,
        ),
        ApiKey::CreateTopics => respond(r, &topics::create(state, r, decode(r, &mut body)?).await),
        ApiKey::DeleteTopics => respond(r, &topics::delete(state, r, decode(r, &mut body)?).await),
        ApiKey::DescribeConfigs => respond(
            r,
            &topics::describe_configs(state, r, decode(r, &mut body)?),
        ),
        ApiKey::Produce if r.version < 3 => produce::legacy(state, r, &body).await,
        ApiKey::Produce => produce::produce(state, r, decode(r, &mut body)?).await,
        ApiKey::InitProducerId => respond(
            r,
            &produce::init_producer_id(state, r, decode(r, &mut body)?),
        ),
        ApiKey::Fetch => respond(
            r,
            &fetch::fetch(state, connection, r, decode(r, &mut body)?).await,
        ),
        ApiKey::ListOffsets => respond(
            r,
            &fetch::list_offsets(state, r, decode(r, &mut body)?).await,
        ),
        ApiKey::FindCoordinator => respond(
            r,
            &groups::find_coordinator(state, connection, r, decode(r, &mut body)?),
        ),
        ApiKey::JoinGroup => respond(
            r,
            &groups::join(state, connection, r, decode(r, &mut body)?).await,
        ),
        ApiKey::SyncGroup => respond(
            r,
            &groups::sync(state, connection, r, decode(r, &mut body)?).await,
        ),
        ApiKey::Heartbeat => respond(r, &groups::heartbeat(state, r, decode(r, &mut body)?).await),
        ApiKey::LeaveGroup => respond(r, &groups::leave(state, r, decode(r, &mut body)?).await),
        ApiKey::DescribeGroups => {
            respond(r, &groups::describe(state, r, decode(r, &mut body)?).await)
        }
        ApiKey::ListGroups => respond(r, &groups::list(state, r, decode(r, &mut body)?).await),
        ApiKey::OffsetCommit => respond(r, &offsets::commit(state, r, decode(r, &mut body)?).await),
        ApiKey::OffsetFetch => respond(
            r,
            &offsets::fetch(state, connection, r, decode(r, &mut body)?).await,
        ),
        other => anyhow::bail!("{other:?} is listed as served but has no handler"),
    }
}

fn api_version_list() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|range| {
            ApiVersion::default()
                .with_api_key(range.key as i16)
                .with_min_version(range.min)
                .with_max_version(range.max)
        })
        .collect()
}

fn api_versions(_request: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_version_list())
}

/// The v0 ApiVersions answer to a version this node does not serve.
fn api_versions_error(correlation_id: i32) -> Bytes {
    let response = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_version_list());
    let request = Request {
        api: ApiKey::ApiVersions,
        version: 0,
        correlation_id,
        range_max: 0,
    };
    match respond(&request, &response) {
        Ok(Outcome::Respond(frame)) => frame,
        _ => error_frame(correlation_id, ResponseError::UnsupportedVersion.code()),
    }
}

/// A `StrBytes` of an owned string.
pub fn text(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}
