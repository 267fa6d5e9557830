//! The accept loop: a connection limit, one task per connection, and a
//! graceful stop (stop accepting, let requests in progress finish within
//! the grace period, close).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{KafkaState, connection};

/// Accepts Kafka clients on `listener` until `shutdown` fires.
pub async fn serve(state: Arc<KafkaState>, listener: TcpListener, shutdown: CancellationToken) {
    let connections = Arc::new(Semaphore::new(
        state.node.config().limits.connections_max as usize,
    ));
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: pause, then go on.
                        tracing::warn!(target: "meshgate::kafka", %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    tracing::warn!(target: "meshgate::kafka", %peer, "connection limit reached; refusing");
                    drop(stream);
                    continue;
                };
                let (state, shutdown) = (state.clone(), shutdown.clone());
                tracker.spawn(async move {
                    connection::serve(state, stream, shutdown).await;
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    tracker.close();
    let grace = Duration::from_millis(state.node.config().shutdown_grace_ms);
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(target: "meshgate::kafka", "Kafka requests still running after the grace period are cut off");
    }
}
