//! Dispatch of client requests to the node's parts.

use meshgate_protocol::{
    Acks, CreateTopic, ErrorCode, GroupName, Produce, QueueName, Reply, Request, Response,
    RuleName, TopicName, WireError,
};
use meshgate_storage::OriginStream;

use super::Node;
use crate::mirror::PartitionKey;
use crate::{fetch, offsets};

impl Node {
    /// Answers one client request (the handshake is the connection's job).
    pub async fn handle(&self, request: Request) -> Response {
        match request {
            Request::Hello(_) => Err(WireError::new(
                ErrorCode::InvalidArgument,
                "hello is accepted once, as the first request of a connection",
            )),
            Request::CreateTopic(create) => self.create_topic(create).await,
            Request::DeleteTopic(TopicName { name }) => self.delete_topic(&name).await,
            Request::ListTopics => Ok(Reply::Topics(
                self.topics.list().iter().map(|t| t.summary()).collect(),
            )),
            Request::DescribeTopic(TopicName { name }) => self
                .topics
                .get(&name)
                .map(|topic| Reply::Topic(topic.describe())),
            Request::Produce(produce) => self.produce(produce).await,
            Request::Fetch(request) => fetch::fetch(&self.topics, &self.config.limits, request)
                .await
                .map(Reply::Fetched),
            Request::ListOffsets(request) => {
                fetch::list_offsets(&self.topics, &request).map(Reply::Offset)
            }
            Request::CommitOffsets(commit) => self.commit_offsets(commit).await,
            Request::FetchOffsets(request) => offsets::fetch(
                &self.meta,
                &self.topics,
                &request.group,
                request.partitions.as_deref(),
            )
            .map(Reply::CommittedOffsets),
            Request::NodeInfo => Ok(Reply::Node(self.info())),
            Request::Members => Ok(Reply::Members(self.members().await)),
            Request::JoinGroup(join) => self.join_group(join).await,
            Request::SyncGroup(sync) => {
                self.check_not_fenced(&sync.group, &sync.member_id)?;
                self.groups.sync(sync).await
            }
            Request::Heartbeat(heartbeat) => {
                self.check_not_fenced(&heartbeat.group, &heartbeat.member_id)?;
                self.groups.heartbeat(heartbeat).await
            }
            Request::LeaveGroup(leave) => self.groups.leave(leave).await,
            Request::ListGroups => Ok(Reply::Groups(self.list_groups().await)),
            Request::DescribeGroup(GroupName { group }) => {
                self.describe_group(&group).await.map(Reply::Group)
            }
            Request::AddMirrorRule(spec) => self
                .mirror_or_error()?
                .add_rule(&spec)
                .await
                .map(Reply::MirrorRules),
            Request::RemoveMirrorRule(RuleName { name }) => self
                .mirror_or_error()?
                .remove_rule(&name)
                .await
                .map(Reply::MirrorRules),
            Request::ListMirrorRules => Ok(Reply::MirrorRules(
                self.mirror_or_error()?
                    .rules()
                    .iter()
                    .map(crate::mirror::spec_from_rule)
                    .collect(),
            )),
            Request::MirrorStatus => {
                Ok(Reply::MirrorStatus(self.mirror_or_error()?.status().await))
            }
            Request::MirrorFollowers => Ok(Reply::MirrorFollowers(
                self.mirror_or_error()?.followers().await,
            )),
            Request::CreateQueue(spec) => self
                .queues_or_error()?
                .create_queue(spec)
                .await
                .map(Reply::Queues),
            Request::DeleteQueue(QueueName { queue }) => self
                .queues_or_error()?
                .delete_queue(&queue)
                .await
                .map(Reply::Queues),
            Request::ListQueues => self.queues_or_error()?.rules().await.map(Reply::Queues),
            Request::DescribeQueue(QueueName { queue }) => {
                self.queues_or_error()?.describe(&queue).map(Reply::Queue)
            }
            Request::Receive(receive) => self
                .queues_or_error()?
                .receive(receive)
                .await
                .map(Reply::Messages),
            Request::Settle(settle) => self.queues_or_error()?.settle(settle).map(Reply::Settled),
            Request::Redrive(redrive) => self
                .queues_or_error()?
                .redrive(redrive)
                .map(Reply::Redriven),
        }
    }

    fn queues_or_error(&self) -> Result<&std::sync::Arc<crate::queues::Queues>, WireError> {
        self.queues.get().ok_or_else(|| {
            WireError::new(
                ErrorCode::ShuttingDown,
                "dispatch queues are not running on this node",
            )
        })
    }

    fn mirror_or_error(&self) -> Result<&std::sync::Arc<crate::mirror::Mirror>, WireError> {
        self.mirror.get().ok_or_else(|| {
            WireError::new(
                ErrorCode::ShuttingDown,
                "mirroring is not running on this node",
            )
        })
    }

    /// Groups re-read partition counts after topics changed.
    pub fn topics_changed(&self) {
        self.groups.metadata_changed(&self.partition_counts());
        if let Some(queues) = self.queues.get() {
            queues.kick();
        }
    }

    async fn create_topic(&self, create: CreateTopic) -> Response {
        if let Some(mirror) = self.mirror.get() {
            let settings = self.topics.effective_settings(&create.settings)?;
            mirror
                .check_topic_create(&create.name, settings.partitions)
                .await?;
        }
        let topic = self.topics.create(&create.name, &create.settings).await?;
        self.topics_changed();
        Ok(Reply::Topic(topic.describe()))
    }

    async fn delete_topic(&self, name: &str) -> Response {
        let topic = self.topics.get(name)?;
        self.topics.delete(name).await?;
        self.topics_changed();
        if let Some(mirror) = self.mirror.get() {
            mirror
                .topic_deleted(name, topic.incarnation().0, topic.settings().clone())
                .await;
        }
        Ok(Reply::TopicDeleted)
    }

    /// Appends records with acknowledgement `none` or `local`, the
    /// idempotence of the request described by `run` (the Kafka listener
    /// numbers records, not batches). `mirrored(k)` acknowledgements are
    /// refused here: they go through [`Node::handle`].
    pub async fn produce_run(
        &self,
        produce: Produce,
        run: Option<crate::produce::SequenceRun>,
    ) -> Result<crate::produce::Produced, WireError> {
        if let Acks::Mirrored(_) = produce.acks {
            return Err(WireError::new(
                ErrorCode::InvalidArgument,
                "mirrored acknowledgements need Node::handle",
            ));
        }
        self.producers
            .produce_run(&self.topics, &*self.clock, produce, run)
            .await
    }

    async fn produce(&self, produce: Produce) -> Response {
        let acks = produce.acks;
        let (topic_name, partition) = (produce.topic.clone(), produce.partition);
        let produced = self
            .producers
            .produce(&self.topics, &*self.clock, produce)
            .await?;
        if let Acks::Mirrored(regions) = acks {
            let mirror = self.mirror_or_error()?;
            let topic = self.topics.get(&topic_name)?;
            let key = PartitionKey {
                topic: topic_name,
                incarnation: topic.incarnation().0,
                partition,
            };
            let origin = OriginStream {
                region: self.region.clone(),
                incarnation: topic.incarnation(),
            };
            mirror
                .wait_mirrored(&key, &origin, produced.seq_end, regions)
                .await?;
        }
        Ok(Reply::Produced(produced.ok))
    }
}
