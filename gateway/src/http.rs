//! Admin HTTP: JSON views of the node, Prometheus `/metrics`, and a small
//! web console at `/`.
//!
//! | path | answer |
//! | --- | --- |
//! | `GET /health` | `{"status":"ok", ...}` |
//! | `GET /node` | node id, region, version, client address |
//! | `GET /members` | the cluster's membership as this node sees it |
//! | `GET /mirror/rules`, `POST /mirror/rules`, `DELETE /mirror/rules/{name}` | mirroring rules (JSON `MirrorRuleSpec`) |
//! | `GET /mirror/status` | pull links with state and lag |
//! | `GET /mirror/followers` | regions pulling from this node, and how far behind each is |
//! | `GET /topics`, `GET /topics/{name}` | topic list, one topic with partitions |
//! | `GET /groups`, `GET /groups/{name}` | group list, one group with offsets and lag |
//! | `GET /queues`, `POST /queues`, `GET /queues/{name}`, `DELETE /queues/{name}` | dispatch rules (JSON `QueueSpec`); one queue with its figures (`NAME.dlq` for its dead letters) |
//! | `POST /queues/{name}/redrive` | moves the queue's dead letters back; answers how many moved |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /` | the web console |

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use meshgate_protocol::{ErrorCode, WireError};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::node::Node;

/// Serves the admin API until `shutdown` fires.
pub async fn serve(
    node: Arc<Node>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) {
    let app = router(node);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(error) = result {
        tracing::error!(target: "meshgate::http", %error, "admin HTTP stopped");
    }
}

/// The admin routes.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/", get(console))
        .route("/health", get(health))
        .route("/node", get(node_info))
        .route("/topics", get(topics))
        .route("/topics/{name}", get(topic))
        .route("/groups", get(groups))
        .route("/groups/{name}", get(group))
        .route("/members", get(members))
        .route("/mirror/rules", get(mirror_rules).post(add_mirror_rule))
        .route(
            "/mirror/rules/{name}",
            axum::routing::delete(remove_mirror_rule),
        )
        .route("/mirror/status", get(mirror_status))
        .route("/mirror/followers", get(mirror_followers))
        .route("/queues", get(queues).post(create_queue))
        .route("/queues/{name}", get(queue).delete(delete_queue))
        .route("/queues/{name}/redrive", axum::routing::post(redrive_queue))
        .route("/metrics", get(metrics))
        .with_state(node)
}

/// A wire error as an HTTP answer.
struct ApiError(WireError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.0.code {
            ErrorCode::UnknownTopic | ErrorCode::UnknownQueue => StatusCode::NOT_FOUND,
            ErrorCode::InvalidName | ErrorCode::InvalidArgument | ErrorCode::InvalidFilter => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::Busy | ErrorCode::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = json!({ "code": format!("{:?}", self.0.code), "message": self.0.message });
        (status, axum::Json(body)).into_response()
    }
}

async fn health(State(node): State<Arc<Node>>) -> impl IntoResponse {
    axum::Json(json!({ "status": "ok", "node": node.node_id(), "region": node.region().as_str() }))
}

async fn node_info(State(node): State<Arc<Node>>) -> impl IntoResponse {
    axum::Json(node.info())
}

async fn topics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let list: Vec<_> = node
        .topics()
        .list()
        .iter()
        .map(|topic| topic.summary())
        .collect();
    axum::Json(list)
}

async fn topic(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let topic = node.topics().get(&name).map_err(ApiError)?;
    Ok(axum::Json(topic.describe()))
}

async fn groups(State(node): State<Arc<Node>>) -> impl IntoResponse {
    axum::Json(node.list_groups().await)
}

async fn group(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let group = node.describe_group(&name).await.map_err(ApiError)?;
    Ok(axum::Json(group))
}

async fn members(State(node): State<Arc<Node>>) -> impl IntoResponse {
    axum::Json(node.members().await)
}

fn mirror(node: &Node) -> Result<&Arc<crate::mirror::Mirror>, ApiError> {
    node.mirror().ok_or_else(|| {
        ApiError(WireError::new(
            ErrorCode::ShuttingDown,
            "mirroring is not running",
        ))
    })
}

async fn mirror_rules(State(node): State<Arc<Node>>) -> Result<impl IntoResponse, ApiError> {
    let rules: Vec<_> = mirror(&node)?
        .rules()
        .iter()
        .map(crate::mirror::spec_from_rule)
        .collect();
    Ok(axum::Json(rules))
}

async fn add_mirror_rule(
    State(node): State<Arc<Node>>,
    axum::Json(spec): axum::Json<meshgate_protocol::MirrorRuleSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let rules = mirror(&node)?.add_rule(&spec).await.map_err(ApiError)?;
    Ok(axum::Json(rules))
}

async fn remove_mirror_rule(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let rules = mirror(&node)?.remove_rule(&name).await.map_err(ApiError)?;
    Ok(axum::Json(rules))
}

async fn mirror_status(State(node): State<Arc<Node>>) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(mirror(&node)?.status().await))
}

async fn mirror_followers(State(node): State<Arc<Node>>) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(mirror(&node)?.followers().await))
}

/// Answers a queue request through the node's dispatcher.
async fn queue_request(
    node: &Node,
    request: meshgate_protocol::Request,
) -> Result<Response, ApiError> {
    use meshgate_protocol::Reply;
    Ok(match node.handle(request).await.map_err(ApiError)? {
        Reply::Queues(specs) => axum::Json(specs).into_response(),
        Reply::Queue(description) => axum::Json(description).into_response(),
        Reply::Redriven(moved) => axum::Json(json!({ "moved": moved })).into_response(),
        other => ApiError(WireError::new(
            ErrorCode::Internal,
            format!("unexpected reply {other:?}"),
        ))
        .into_response(),
    })
}

async fn queues(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    queue_request(&node, meshgate_protocol::Request::ListQueues).await
}

async fn create_queue(
    State(node): State<Arc<Node>>,
    axum::Json(spec): axum::Json<meshgate_protocol::QueueSpec>,
) -> Result<Response, ApiError> {
    queue_request(&node, meshgate_protocol::Request::CreateQueue(spec)).await
}

async fn queue(
    State(node): State<Arc<Node>>,
    Path(queue): Path<String>,
) -> Result<Response, ApiError> {
    let request = meshgate_protocol::Request::DescribeQueue(meshgate_protocol::QueueName { queue });
    queue_request(&node, request).await
}

async fn delete_queue(
    State(node): State<Arc<Node>>,
    Path(queue): Path<String>,
) -> Result<Response, ApiError> {
    let request = meshgate_protocol::Request::DeleteQueue(meshgate_protocol::QueueName { queue });
    queue_request(&node, request).await
}

async fn redrive_queue(
    State(node): State<Arc<Node>>,
    Path(queue): Path<String>,
) -> Result<Response, ApiError> {
    let request = meshgate_protocol::Request::Redrive(meshgate_protocol::Redrive {
        queue,
        count_max: None,
    });
    queue_request(&node, request).await
}

async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        node.render_metrics().await,
    )
}

async fn console() -> Html<&'static str> {
    Html(include_str!("console.html"))
}
