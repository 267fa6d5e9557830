//! Dispatch rules in the cluster configuration (`dispatch-rule/NAME`,
//! last writer wins, spread by gossip like mirroring rules), and the
//! reconciler that turns them into queues and dispatchers on this node.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use meshgate_protocol::{ErrorCode, QueueSpec, WireError};
use meshgate_storage::validate_name;

use super::domain::{DEAD_LETTER_SUFFIX, Domain};
use super::error::QueueError;
use super::filter::Filter;
use super::service::{QueueHandle, Queues};
use super::state_file;

/// The cluster-configuration key prefix of dispatch rules.
pub const RULE_KEY_PREFIX: &str = "dispatch-rule/";
/// Longest queue name, in bytes (its `.dlq` must fit the name rule too).
pub const QUEUE_NAME_BYTES_MAX: usize = 200;

/// Checks a rule as a client wrote it; returns its filter.
pub fn validate_spec(spec: &QueueSpec) -> Result<Filter, QueueError> {
    validate_name("queue", &spec.name, QUEUE_NAME_BYTES_MAX)
        .map_err(|error| QueueError::InvalidArgument(error.to_string()))?;
    if spec.name.ends_with(DEAD_LETTER_SUFFIX) {
        return Err(QueueError::InvalidArgument(format!(
            "queue names must not end with {DEAD_LETTER_SUFFIX} (it names the dead-letter queue)"
        )));
    }
    crate::topics::check_topic_name(&spec.topic)
        .map_err(|error| QueueError::InvalidArgument(error.message))?;
    spec.options
        .validate()
        .map_err(QueueError::InvalidArgument)?;
    let header = spec
        .filter_header
        .as_ref()
        .map(|(key, value)| format!("{key}={value}"));
    Ok(Filter::parse(
        Some(&spec.tags),
        header.as_deref(),
        spec.filter_key_prefix.as_deref(),
    )?)
}

fn internal(error: impl std::fmt::Display) -> WireError {
    WireError::new(ErrorCode::Internal, error)
}

impl Queues {
    /// Adds or replaces a rule and spreads it; returns every rule.
    pub async fn create_queue(&self, spec: QueueSpec) -> Result<Vec<QueueSpec>, WireError> {
        validate_spec(&spec)?;
        let value = rmp_serde::to_vec_named(&spec).map_err(internal)?;
        self.cluster
            .publish_config(format!("{RULE_KEY_PREFIX}{}", spec.name), Some(value))
            .await
            .map_err(internal)?;
        self.reconcile().await;
        self.rules().await
    }

    fn rules_path(&self) -> std::path::PathBuf {
        self.dir.join("rules.json")
    }

    fn load_saved_rules(&self) -> Vec<QueueSpec> {
        let path = self.rules_path();
        if !self.fs.exists(&path) {
            return Vec::new();
        }
        let read = self
            .fs
            .open(&path, meshgate_storage::OpenMode::Existing)
            .and_then(|file| file.read_all())
            .map_err(|error| error.to_string())
            .and_then(|bytes| {
                serde_json::from_slice::<Vec<QueueSpec>>(&bytes).map_err(|error| error.to_string())
            });
        match read {
            Ok(rules) => rules,
            Err(error) => {
                tracing::error!(target: "meshgate::queues", path = %path.display(), %error, "saved dispatch rules unreadable; ignored");
                Vec::new()
            }
        }
    }

    /// Keeps the rules this node knows, for its next start.
    fn save_rules(&self, rules: &[QueueSpec]) {
        let path = self.rules_path();
        // Plain structs of strings and numbers always encode.
        let bytes = serde_json::to_vec_pretty(rules).expect("rules encode");
        let result = self
            .fs
            .create_dir_all(&self.dir)
            .and_then(|()| meshgate_storage::fs::write_atomically(&*self.fs, &path, &bytes));
        if let Err(error) = result {
            tracing::error!(target: "meshgate::queues", path = %path.display(), %error, "cannot save dispatch rules");
        }
    }

    /// Removes a rule (and, on every node, its queue and state).
    pub async fn delete_queue(&self, name: &str) -> Result<Vec<QueueSpec>, WireError> {
        if !self.rules().await?.iter().any(|spec| spec.name == name) {
            return Err(QueueError::UnknownQueue(name.to_string()).into());
        }
        self.cluster
            .publish_config(format!("{RULE_KEY_PREFIX}{name}"), None)
            .await
            .map_err(internal)?;
        self.reconcile().await;
        self.rules().await
    }

    /// Every rule in the cluster configuration, by name.
    pub async fn rules(&self) -> Result<Vec<QueueSpec>, WireError> {
        let entries = self
            .cluster
            .membership()
            .config_entries()
            .await
            .map_err(internal)?;
        Ok(entries
            .iter()
            .filter(|entry| entry.key.starts_with(RULE_KEY_PREFIX))
            .filter_map(|entry| entry.value.as_deref())
            .filter_map(|value| rmp_serde::from_slice::<QueueSpec>(value).ok())
            .filter(|spec| validate_spec(spec).is_ok())
            .collect())
    }

    /// Publishes the rules this node knew before it stopped (kept in
    /// `queues/rules.json`: the cluster configuration lives in memory, so a
    /// lone node would forget them) and the configuration file's rules,
    /// unless the cluster holds them already. A rule deleted elsewhere
    /// while this node was down stays deleted: the delete's tombstone has
    /// a higher version than this node's write and wins once gossip syncs.
    async fn publish_configured(&self) {
        let known = self.rules().await.unwrap_or_default();
        let mut wanted = self.load_saved_rules();
        wanted.extend(self.config.rules.iter().cloned());
        for spec in &wanted {
            if known.contains(spec) {
                continue;
            }
            if let Err(error) = self.create_queue(spec.clone()).await {
                tracing::error!(target: "meshgate::queues", queue = %spec.name, %error, "configured rule refused");
            }
        }
    }

    /// Brings queues and dispatchers in line with the rules. Serialised.
    pub(super) async fn reconcile(&self) {
        let _running = self.reconciling.lock().await;
        let Some(node) = self.node() else { return };
        let Ok(rules) = self.rules().await else {
            return;
        };
        if self.restored.load(std::sync::atomic::Ordering::Acquire) {
            let mut saved = self.saved_rules.lock();
            if *saved != rules {
                self.save_rules(&rules);
                saved.clone_from(&rules);
            }
        }
        let wanted: BTreeMap<String, QueueSpec> = rules
            .into_iter()
            .map(|spec| (spec.name.clone(), spec))
            .collect();
        let now_ms = self.clock.now_ms();
        let mut removed = Vec::new();
        {
            let mut queues = self.queues.write();
            queues.retain(|name, handle| {
                let topic = node.topics().get(&handle.topic).ok();
                let keep = wanted
                    .get(name)
                    .is_some_and(|spec| spec.topic == handle.topic)
                    && topic.is_some_and(|topic| topic.incarnation().0 == handle.incarnation);
                if !keep {
                    removed.push((name.clone(), handle.clone()));
                }
                keep
            });
            for (name, spec) in &wanted {
                let Ok(filter) = validate_spec(spec) else {
                    continue;
                };
                if let Some(handle) = queues.get(name) {
                    let mut slot = handle.slot.lock();
                    if slot.spec != *spec {
                        slot.domain.set_options(spec.options.clone());
                        slot.filter = filter;
                        slot.spec = spec.clone();
                    }
                    continue;
                }
                // A queue waits for its topic; reconciliation runs again
                // when topics change.
                let Ok(topic) = node.topics().get(&spec.topic) else {
                    continue;
                };
                let incarnation = topic.incarnation().0;
                let path = self.dir.join(format!("{name}.state"));
                let state = match state_file::load(&*self.fs, &path) {
                    Ok(Some(state)) if state.topic_incarnation == incarnation => Some(state),
                    Ok(_) => None,
                    Err(error) => {
                        // Start over from the log start: everything not
                        // provably acked is delivered again (at-least-once).
                        tracing::error!(target: "meshgate::queues", queue = %name, %error, "queue state unreadable; redelivering from the log start");
                        let _ = self.fs.rename(&path, &path.with_extension("corrupt"));
                        None
                    }
                };
                let restored = state.is_some();
                let mut domain = Domain::restore(
                    spec.options.clone(),
                    self.lease_base(),
                    state.unwrap_or_default(),
                    now_ms,
                );
                for (partition, slot) in topic.slots().iter().enumerate() {
                    let partition = partition as u32;
                    if domain.floor(partition).is_some() {
                        continue;
                    }
                    let start = match slot {
                        crate::topics::PartitionSlot::Ready(log) if !restored => {
                            log.visible_offset().0
                        }
                        crate::topics::PartitionSlot::Ready(log) => log.lock().start_offset().0,
                        crate::topics::PartitionSlot::Unavailable(_) => 0,
                    };
                    domain.handle_start(partition, start);
                }
                if !restored {
                    // A new queue starts at the log's end: write that start
                    // down now, or a crash before the first flush would
                    // restart it at a later end and skip what came between
                    // (found by the simulation, queue-consumer-crashes).
                    let mut state = domain.state();
                    state.topic_incarnation = incarnation;
                    let saved = match self.fs.create_dir_all(&self.dir) {
                        Ok(()) => {
                            state_file::save(&*self.fs, &path, &state).map_err(|e| e.to_string())
                        }
                        Err(error) => Err(error.to_string()),
                    };
                    if let Err(error) = saved {
                        tracing::error!(target: "meshgate::queues", queue = %name, %error, "cannot write the new queue's state; a crash before the next flush may skip messages");
                    }
                }
                tracing::info!(target: "meshgate::queues", queue = %name, topic = %spec.topic, restored, "queue opened");
                queues.insert(
                    name.clone(),
                    Arc::new(QueueHandle::new(
                        spec.clone(),
                        filter,
                        domain,
                        incarnation,
                        path,
                    )),
                );
            }
        }
        for (name, handle) in removed {
            tracing::info!(target: "meshgate::queues", queue = %name, "queue removed");
            handle.notify.notify_waiters();
            if !wanted.contains_key(&name) {
                let path = self.dir.join(format!("{name}.state"));
                if self.fs.exists(&path)
                    && let Err(error) = self.fs.remove_file(&path)
                {
                    tracing::warn!(target: "meshgate::queues", queue = %name, %error, "removing queue state failed");
                }
            }
        }
        self.reconcile_dispatchers(&node);
    }

    fn reconcile_dispatchers(self: &Queues, node: &crate::node::Node) {
        let mut wanted: BTreeSet<(String, u64, u32)> = BTreeSet::new();
        for handle in self.queues.read().values() {
            if let Ok(topic) = node.topics().get(&handle.topic)
                && topic.incarnation().0 == handle.incarnation
            {
                for partition in 0..topic.partition_count() {
                    wanted.insert((handle.topic.clone(), handle.incarnation, partition));
                }
            }
        }
        let mut dispatchers = self.dispatchers.lock();
        dispatchers.retain(|key, cancel| {
            let keep = wanted.contains(key) && !cancel.is_cancelled();
            if !keep {
                cancel.cancel();
            }
            keep
        });
        for key in wanted {
            if dispatchers.contains_key(&key) {
                continue;
            }
            let Some(this) = self.this() else { return };
            let cancel = self.shutdown.child_token();
            dispatchers.insert(key.clone(), cancel.clone());
            tokio::spawn(super::dispatcher::run(this, key, cancel));
        }
    }

    fn this(&self) -> Option<Arc<Queues>> {
        self.node()?.queues().cloned()
    }
}

/// Runs the reconciler on every configuration change, topic change and
/// every `reconcile_ms`.
pub(super) async fn reconcile_loop(queues: Arc<Queues>) {
    queues.publish_configured().await;
    queues
        .restored
        .store(true, std::sync::atomic::Ordering::Release);
    let mut events = queues.cluster.membership().subscribe();
    let period = Duration::from_millis(queues.config.reconcile_ms);
    loop {
        queues.reconcile().await;
        tokio::select! {
            biased;
            () = queues.shutdown.cancelled() => return,
            () = queues.kick.notified() => {}
            event = events.recv() => {
                if matches!(event, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    tokio::time::sleep(period).await;
                }
            }
            () = tokio::time::sleep(period) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, tags: &str) -> QueueSpec {
        QueueSpec {
            name: name.into(),
            topic: "orders".into(),
            tags: tags.into(),
            filter_header: None,
            filter_key_prefix: None,
            options: Default::default(),
        }
    }

    #[test]
    fn rules_are_checked_before_they_spread() {
        assert!(validate_spec(&spec("orders.inventory", "created || paid")).is_ok());
        assert!(matches!(
            validate_spec(&spec("orders.inventory", "created |")),
            Err(QueueError::InvalidFilter(_))
        ));
        assert!(matches!(
            validate_spec(&spec("orders.dlq", "*")),
            Err(QueueError::InvalidArgument(_))
        ));
        assert!(matches!(
            validate_spec(&spec("bad name", "*")),
            Err(QueueError::InvalidArgument(_))
        ));
        let mut bad_options = spec("q", "*");
        bad_options.options.max_attempts = 0;
        assert!(matches!(
            validate_spec(&bad_options),
            Err(QueueError::InvalidArgument(_))
        ));
    }
}
