package pybroker.driver;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.ElectLeadersResult;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.ListOffsetsOptions;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;

/**
 * The AdminClient end to end: topics, configs, partitions, records and offsets, consumer
 * groups and their offsets, producers and transactions, the cluster. Every step's answer
 * (or the exception it failed with) goes into the result, in order; names start with the
 * prefix parameter so that the same run can be made against pybroker and Apache Kafka.
 */
final class AdminScenario {
    private AdminScenario() {}

    private static final List<String> TOPIC_CONFIGS =
            List.of("cleanup.policy", "retention.ms", "max.message.bytes", "segment.bytes", "min.insync.replicas");

    private final Map<String, Object> steps = new LinkedHashMap<>();

    private void step(String name, Callable<Object> action) {
        Object value;
        try {
            value = action.call();
        } catch (Exception e) {
            value = Driver.error(e);
        }
        steps.put(name, value);
    }

    /**
     * Wait until the broker's view shows a change just made: Kafka's brokers apply metadata
     * from the controller asynchronously, so an answer may lag the change it follows.
     */
    private static void settle(Params p, String what, Callable<Boolean> condition) throws InterruptedException {
        Driver.await(what, p.timeoutMs(), () -> {
            try {
                return condition.call();
            } catch (Exception e) {
                return false;
            }
        });
    }

    private static String configValue(Admin admin, ConfigResource resource, String name) throws Exception {
        return admin.describeConfigs(List.of(resource)).all().get().get(resource).get(name).value();
    }

    private static Map<String, Object> ok() {
        return Map.of("ok", true);
    }

    static Map<String, Object> run(Params p) throws Exception {
        AdminScenario s = new AdminScenario();
        try (Admin admin = GroupScenarios.admin(p)) {
            s.all(admin, p);
        }
        return s.steps;
    }

    private void all(Admin admin, Params p) throws Exception {
        String prefix = p.str("prefix");
        long baseTs = Long.parseLong(p.str("base_ts"));
        String t1 = prefix + "-t1";
        String t2 = prefix + "-t2";
        String g1 = prefix + "-g1";
        String g2 = prefix + "-g2";
        String txId = prefix + "-tx";
        TopicPartition t2p0 = new TopicPartition(t2, 0);
        TopicPartition t1p0 = new TopicPartition(t1, 0);
        TopicPartition t1p1 = new TopicPartition(t1, 1);

        step("describe_cluster", () -> {
            DescribeClusterResult r = admin.describeCluster();
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("cluster_id", r.clusterId().get());
            m.put("controller", node(r.controller().get()));
            List<Object> nodes = new ArrayList<>();
            for (Node n : r.nodes().get()) {
                nodes.add(node(n));
            }
            m.put("nodes", nodes);
            return m;
        });

        // ---- topics ----
        step("create_topics", () -> {
            NewTopic nt1 = new NewTopic(t1, 3, (short) 1).configs(Map.of("retention.ms", "3600000"));
            NewTopic nt2 = new NewTopic(t2, 1, (short) 1);
            CreateTopicsResult r = admin.createTopics(List.of(nt1, nt2));
            r.all().get();
            settle(p, "the topics to be described", () -> describeTopics(admin, List.of(t1, t2)).size() == 2);
            Map<String, Object> m = new LinkedHashMap<>();
            for (String t : List.of(t1, t2)) {
                Map<String, Object> tm = new LinkedHashMap<>();
                tm.put("num_partitions", r.numPartitions(t).get());
                tm.put("replication_factor", r.replicationFactor(t).get());
                tm.put("topic_id", r.topicId(t).get().toString());
                ConfigEntry retention = r.config(t).get().get("retention.ms");
                tm.put("retention.ms", retention == null ? null : retention.value());
                m.put(t, tm);
            }
            return m;
        });
        step("create_duplicate", () -> {
            admin.createTopics(List.of(new NewTopic(t1, 1, (short) 1))).all().get();
            return ok();
        });
        step("create_zero_partitions", () -> {
            admin.createTopics(List.of(new NewTopic(prefix + "-zero", 0, (short) 1))).all().get();
            return ok();
        });
        step("create_validate_only", () -> {
            admin.createTopics(List.of(new NewTopic(prefix + "-validate", 2, (short) 1)),
                    new CreateTopicsOptions().validateOnly(true)).all().get();
            return ok();
        });
        step("list_topics", () -> listTopics(admin, prefix));
        step("describe_topics", () -> describeTopics(admin, List.of(t1, t2)));

        // ---- configs ----
        ConfigResource t1Config = new ConfigResource(ConfigResource.Type.TOPIC, t1);
        step("describe_configs", () -> topicConfig(admin, t1Config));
        step("alter_configs", () -> {
            admin.incrementalAlterConfigs(Map.of(t1Config, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET),
                    new AlterConfigOp(new ConfigEntry("max.message.bytes", "2000000"), AlterConfigOp.OpType.SET),
                    new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.APPEND),
                    new AlterConfigOp(new ConfigEntry("segment.bytes", ""), AlterConfigOp.OpType.DELETE)
            ))).all().get();
            settle(p, "the altered configs", () -> configValue(admin, t1Config, "retention.ms").equals("7200000"));
            return ok();
        });
        step("describe_configs_altered", () -> topicConfig(admin, t1Config));
        step("alter_configs_invalid", () -> {
            admin.incrementalAlterConfigs(Map.of(t1Config, List.of(new AlterConfigOp(
                    new ConfigEntry("retention.ms", "not-a-number"), AlterConfigOp.OpType.SET)))).all().get();
            return ok();
        });
        step("alter_configs_unknown_topic", () -> {
            admin.incrementalAlterConfigs(Map.of(new ConfigResource(ConfigResource.Type.TOPIC, prefix + "-missing"),
                    List.of(new AlterConfigOp(new ConfigEntry("retention.ms", "1000"), AlterConfigOp.OpType.SET))))
                    .all().get();
            return ok();
        });
        step("alter_configs_delete", () -> {
            admin.incrementalAlterConfigs(Map.of(t1Config, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE),
                    new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.SUBTRACT)
            ))).all().get();
            settle(p, "the deleted config", () -> configValue(admin, t1Config, "retention.ms").equals("604800000"));
            return topicConfig(admin, t1Config);
        });
        step("describe_broker_config", () -> {
            String id = Integer.toString(admin.describeCluster().controller().get().id());
            ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER, id);
            Config c = admin.describeConfigs(List.of(broker)).all().get().get(broker);
            Map<String, Object> m = new TreeMap<>();
            for (String name : List.of("num.partitions", "offsets.topic.num.partitions", "log.retention.check.interval.ms")) {
                m.put(name, entry(c.get(name)));
            }
            return m;
        });

        // ---- partitions ----
        step("create_partitions", () -> {
            admin.createPartitions(Map.of(t1, NewPartitions.increaseTo(5))).all().get();
            settle(p, "the new partitions", () -> partitionCount(admin, t1) == 5);
            return partitionCount(admin, t1);
        });
        step("create_partitions_fewer", () -> {
            admin.createPartitions(Map.of(t1, NewPartitions.increaseTo(4))).all().get();
            return ok();
        });
        step("create_partitions_same", () -> {
            admin.createPartitions(Map.of(t1, NewPartitions.increaseTo(5))).all().get();
            return ok();
        });
        step("create_partitions_unknown_topic", () -> {
            admin.createPartitions(Map.of(prefix + "-missing", NewPartitions.increaseTo(5))).all().get();
            return ok();
        });

        // ---- records and offsets (an idempotent producer, for describeProducers) ----
        step("produce", () -> {
            Properties props = Driver.producerProps(p);
            props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
            props.put(ProducerConfig.ACKS_CONFIG, "all");
            List<Object> offsets = new ArrayList<>();
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
                for (int i = 0; i < 10; i++) {
                    offsets.add(producer.send(new ProducerRecord<>(t2, 0, baseTs + 10L * i, "k" + i, "v" + i))
                            .get().offset());
                }
            }
            return offsets;
        });
        step("list_offsets", () -> {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("earliest", listOffset(admin, t2p0, OffsetSpec.earliest()));
            m.put("latest", listOffset(admin, t2p0, OffsetSpec.latest()));
            m.put("max_timestamp", listOffset(admin, t2p0, OffsetSpec.maxTimestamp()));
            m.put("for_timestamp", listOffset(admin, t2p0, OffsetSpec.forTimestamp(baseTs + 45)));
            m.put("for_timestamp_future", listOffset(admin, t2p0, OffsetSpec.forTimestamp(baseTs + 1_000_000)));
            return m;
        });
        step("delete_records", () -> admin.deleteRecords(Map.of(t2p0, RecordsToDelete.beforeOffset(4)))
                .lowWatermarks().get(t2p0).get().lowWatermark());
        step("delete_records_beyond_end", () -> admin.deleteRecords(Map.of(t2p0, RecordsToDelete.beforeOffset(100)))
                .lowWatermarks().get(t2p0).get().lowWatermark());
        step("list_offsets_after_delete", () -> listOffset(admin, t2p0, OffsetSpec.earliest()));
        step("describe_producers", () -> producers(admin, t2p0));
        step("list_offsets_local_tiered", () -> {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("earliest_local", listOffset(admin, t2p0, OffsetSpec.earliestLocal()));
            m.put("latest_tiered", listOffset(admin, t2p0, OffsetSpec.latestTiered()));
            return m;
        });
        step("describe_log_dirs", () -> logDirs(admin, prefix));
        step("elect_leaders", () -> {
            ElectLeadersResult r = admin.electLeaders(ElectionType.PREFERRED, Set.of(t1p0));
            Optional<Throwable> e = r.partitions().get().get(t1p0);
            return e.isPresent() ? Driver.error(e.get()) : ok();
        });
        step("list_partition_reassignments", () -> admin.listPartitionReassignments().reassignments().get().size());

        // ---- consumer groups ----
        step("commit_offsets", () -> {
            Properties props = Driver.consumerProps(p);
            props.put(ConsumerConfig.GROUP_ID_CONFIG, g1);
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
                consumer.assign(List.of(t2p0, t1p0));
                consumer.commitSync(Map.of(t2p0, new OffsetAndMetadata(7, "meta-7"), t1p0, new OffsetAndMetadata(0)));
            }
            return ok();
        });
        step("list_groups", () -> listGroups(admin, prefix));
        step("list_groups_typed", () -> {
            List<Object> out = new ArrayList<>();
            for (GroupListing g : admin.listGroups(ListGroupsOptions.forConsumerGroups()
                    .inGroupStates(Set.of(GroupState.EMPTY))).all().get()) {
                if (g.groupId().startsWith(prefix)) {
                    out.add(List.of(g.groupId(), String.valueOf(g.type().orElse(null)), g.protocol(),
                            String.valueOf(g.groupState().orElse(null))));
                }
            }
            return out;
        });
        step("describe_group", () -> GroupScenarios.describeGroup(admin, g1));
        step("group_offsets", () -> groupOffsets(admin, g1));
        step("alter_group_offsets", () -> {
            admin.alterConsumerGroupOffsets(g1, Map.of(t2p0, new OffsetAndMetadata(5), t1p1, new OffsetAndMetadata(0)))
                    .all().get();
            return groupOffsets(admin, g1);
        });
        step("delete_group_offsets", () -> {
            admin.deleteConsumerGroupOffsets(g1, Set.of(t1p0)).all().get();
            return groupOffsets(admin, g1);
        });
        step("delete_group_offsets_unknown_group", () -> {
            admin.deleteConsumerGroupOffsets(prefix + "-nogroup", Set.of(t1p0)).all().get();
            return ok();
        });
        step("describe_unknown_group", () -> GroupScenarios.describeGroup(admin, prefix + "-nogroup"));
        step("active_group", () -> activeGroup(admin, p, g2, t2, t2p0));
        step("delete_groups", () -> {
            admin.deleteConsumerGroups(List.of(g1)).all().get();
            return listGroups(admin, prefix);
        });
        step("delete_groups_again", () -> {
            admin.deleteConsumerGroups(List.of(g1)).all().get();
            return ok();
        });

        // ---- transactions ----
        step("transactions", () -> transactions(admin, p, txId, t1p1));
        step("fence_producers", () -> fence(admin, p, prefix + "-fenced", t1p1));
        step("describe_unknown_transaction", () -> describeTransaction(admin, prefix + "-notx"));

        // ---- delete topics ----
        step("delete_topics", () -> {
            admin.deleteTopics(List.of(t1, t2)).all().get();
            settle(p, "the topics to go", () -> listTopics(admin, prefix).isEmpty());
            return listTopics(admin, prefix);
        });
        step("delete_topics_again", () -> {
            admin.deleteTopics(List.of(t1)).all().get();
            return ok();
        });
        step("describe_deleted_topic", () -> describeTopics(admin, List.of(t1)));
    }

    private static Map<String, Object> logDirs(Admin admin, String prefix) throws Exception {
        int id = admin.describeCluster().controller().get().id();
        Map<String, LogDirDescription> dirs = admin.describeLogDirs(List.of(id)).allDescriptions().get().get(id);
        Map<String, Object> out = new TreeMap<>();
        for (LogDirDescription d : dirs.values()) {
            d.replicaInfos().forEach((tp, info) -> {
                if (tp.topic().startsWith(prefix)) {
                    out.put(Driver.tp(tp), List.of(info.size() > 0, info.offsetLag(), info.isFuture()));
                }
            });
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("dirs", dirs.size());
        m.put("errors", dirs.values().stream().filter(d -> d.error() != null).count());
        m.put("total_bytes_set", dirs.values().stream().allMatch(d -> d.totalBytes().isPresent()));
        m.put("replicas", out);
        return m;
    }

    private static Map<String, Object> node(Node n) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("id", n.id());
        m.put("host", n.host());
        m.put("port", n.port());
        m.put("rack", n.rack());
        return m;
    }

    private static List<String> listTopics(Admin admin, String prefix) throws Exception {
        List<String> names = new ArrayList<>();
        for (String name : admin.listTopics().names().get()) {
            if (name.startsWith(prefix)) {
                names.add(name);
            }
        }
        names.sort(null);
        return names;
    }

    private static Map<String, Object> describeTopics(Admin admin, Collection<String> topics) throws Exception {
        Map<String, Object> out = new TreeMap<>();
        for (Map.Entry<String, TopicDescription> e : admin.describeTopics(topics).allTopicNames().get().entrySet()) {
            TopicDescription d = e.getValue();
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("internal", d.isInternal());
            m.put("topic_id", d.topicId().toString());
            List<Object> parts = new ArrayList<>();
            for (TopicPartitionInfo pi : d.partitions()) {
                Map<String, Object> pm = new LinkedHashMap<>();
                pm.put("partition", pi.partition());
                pm.put("leader", pi.leader() == null ? null : pi.leader().id());
                pm.put("replicas", pi.replicas().stream().map(Node::id).toList());
                pm.put("isr", pi.isr().stream().map(Node::id).toList());
                parts.add(pm);
            }
            m.put("partitions", parts);
            out.put(e.getKey(), m);
        }
        return out;
    }

    private static int partitionCount(Admin admin, String topic) throws Exception {
        return admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions().size();
    }

    private static Map<String, Object> entry(ConfigEntry e) {
        if (e == null) {
            return null;
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("value", e.value());
        m.put("source", e.source().toString());
        m.put("read_only", e.isReadOnly());
        m.put("sensitive", e.isSensitive());
        m.put("type", e.type().toString());
        return m;
    }

    private static Map<String, Object> topicConfig(Admin admin, ConfigResource resource) throws Exception {
        Config c = admin.describeConfigs(List.of(resource)).all().get().get(resource);
        Map<String, Object> m = new LinkedHashMap<>();
        for (String name : TOPIC_CONFIGS) {
            m.put(name, entry(c.get(name)));
        }
        List<String> names = new ArrayList<>();
        for (ConfigEntry e : c.entries()) {
            names.add(e.name());
        }
        names.sort(null);
        m.put("names", names);
        return m;
    }

    private static Map<String, Object> listOffset(Admin admin, TopicPartition tp, OffsetSpec spec) throws Exception {
        ListOffsetsResult.ListOffsetsResultInfo info = admin.listOffsets(Map.of(tp, spec)).partitionResult(tp).get();
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("offset", info.offset());
        m.put("timestamp", info.timestamp());
        m.put("leader_epoch", info.leaderEpoch());
        return m;
    }

    private static List<Object> producers(Admin admin, TopicPartition tp) throws Exception {
        List<Object> out = new ArrayList<>();
        for (ProducerState s : admin.describeProducers(List.of(tp)).partitionResult(tp).get().activeProducers()) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("producer_id", s.producerId());
            m.put("producer_epoch", s.producerEpoch());
            m.put("last_sequence", s.lastSequence());
            m.put("last_timestamp", s.lastTimestamp());
            m.put("current_txn_start_offset",
                    s.currentTransactionStartOffset().isPresent() ? s.currentTransactionStartOffset().getAsLong() : null);
            m.put("coordinator_epoch", s.coordinatorEpoch().isPresent() ? s.coordinatorEpoch().getAsInt() : null);
            out.add(m);
        }
        return out;
    }

    @SuppressWarnings("deprecation")
    private static List<Object> listGroups(Admin admin, String prefix) throws Exception {
        List<Object> out = new ArrayList<>();
        for (ConsumerGroupListing g : admin.listConsumerGroups().all().get()) {
            if (!g.groupId().startsWith(prefix)) {
                continue;
            }
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("group_id", g.groupId());
            m.put("state", g.groupState().map(Object::toString));
            m.put("type", g.type().map(Object::toString));
            m.put("simple", g.isSimpleConsumerGroup());
            out.add(m);
        }
        out.sort((a, b) -> ((String) ((Map<?, ?>) a).get("group_id")).compareTo((String) ((Map<?, ?>) b).get("group_id")));
        return out;
    }

    private static Map<String, Object> groupOffsets(Admin admin, String group) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> offsets =
                admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        Map<String, Object> out = new TreeMap<>();
        offsets.forEach((tp, om) -> {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("offset", om == null ? null : om.offset());
            m.put("metadata", om == null ? null : om.metadata());
            out.put(Driver.tp(tp), m);
        });
        return out;
    }

    /** A group with a live member: delete refused (not empty), offset delete refused (subscribed). */
    private static Map<String, Object> activeGroup(Admin admin, Params p, String group, String topic, TopicPartition tp)
            throws Exception {
        Map<String, Object> m = new LinkedHashMap<>();
        Properties props = Driver.consumerProps(p);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, "active-member");
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
            consumer.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + p.timeoutMs();
            while (consumer.assignment().isEmpty()) {
                if (System.currentTimeMillis() > deadline) {
                    throw new IllegalStateException("no assignment");
                }
                consumer.poll(Duration.ofMillis(100));
            }
            consumer.commitSync(Map.of(tp, new OffsetAndMetadata(6)));
            m.put("assignment", Driver.partitions(consumer.assignment()));
            m.put("describe", GroupScenarios.describeGroup(admin, group));
            m.put("delete_group", tryOk(() -> admin.deleteConsumerGroups(List.of(group)).all().get()));
            m.put("delete_offsets", tryOk(() -> admin.deleteConsumerGroupOffsets(group, Set.of(tp)).all().get()));
        }
        m.put("after_leave", GroupScenarios.describeGroup(admin, group));
        m.put("delete_group_after_leave", tryOk(() -> admin.deleteConsumerGroups(List.of(group)).all().get()));
        return m;
    }

    private static Object tryOk(Callable<Object> action) {
        try {
            action.call();
            return ok();
        } catch (Exception e) {
            return Driver.error(e);
        }
    }

    private static Object describeTransaction(Admin admin, String txId) throws Exception {
        TransactionDescription d = admin.describeTransactions(List.of(txId)).description(txId).get();
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("state", d.state().toString());
        m.put("producer_id", d.producerId());
        m.put("producer_epoch", d.producerEpoch());
        m.put("timeout_ms", d.transactionTimeoutMs());
        m.put("start_time_set", d.transactionStartTimeMs().isPresent());
        List<String> tps = new ArrayList<>();
        d.topicPartitions().forEach(tp -> tps.add(Driver.tp(tp)));
        tps.sort(null);
        m.put("partitions", tps);
        return m;
    }

    private static List<Object> listTransactions(Admin admin, String txId) throws Exception {
        List<Object> out = new ArrayList<>();
        for (TransactionListing t : admin.listTransactions().all().get()) {
            if (t.transactionalId().equals(txId)) {
                out.add(Map.of("transactional_id", t.transactionalId(), "producer_id", t.producerId(),
                        "state", t.state().toString()));
            }
        }
        return out;
    }

    /** Admin.fenceProducers (KIP-730) against a producer with an open transaction. */
    private static Map<String, Object> fence(Admin admin, Params p, String txId, TopicPartition tp) throws Exception {
        Map<String, Object> m = new LinkedHashMap<>();
        Properties props = Driver.producerProps(p);
        props.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txId);
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            producer.initTransactions();
            producer.beginTransaction();
            producer.send(new ProducerRecord<>(tp.topic(), tp.partition(), "k", "fenced")).get();
            admin.fenceProducers(List.of(txId)).all().get();
            Driver.await("the fenced transaction to abort", p.timeoutMs(), () -> {
                try {
                    return !"PrepareAbort".equals(((Map<?, ?>) describeTransaction(admin, txId)).get("state"));
                } catch (Exception e) {
                    return false;
                }
            });
            m.put("describe_after_fence", describeTransaction(admin, txId));
            m.put("commit", tryOk(() -> {
                producer.commitTransaction();
                return null;
            }));
        }
        return m;
    }

    private static Map<String, Object> transactions(Admin admin, Params p, String txId, TopicPartition tp)
            throws Exception {
        Map<String, Object> m = new LinkedHashMap<>();
        Properties props = Driver.producerProps(p);
        props.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txId);
        props.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "30000");
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            producer.initTransactions();
            m.put("after_init", describeTransaction(admin, txId));
            producer.beginTransaction();
            for (int i = 0; i < 3; i++) {
                producer.send(new ProducerRecord<>(tp.topic(), tp.partition(), "k", "tx-" + i));
            }
            producer.flush();
            m.put("list_ongoing", listTransactions(admin, txId));
            m.put("describe_ongoing", describeTransaction(admin, txId));
            m.put("producers_ongoing", producers(admin, tp));
            for (IsolationLevel level : IsolationLevel.values()) {
                ListOffsetsResult.ListOffsetsResultInfo info = admin.listOffsets(Map.of(tp, OffsetSpec.latest()),
                        new ListOffsetsOptions(level)).partitionResult(tp).get();
                m.put("latest_" + level.toString().toLowerCase(), info.offset());
            }
            producer.commitTransaction();
            // The EndTxn answer may come before the markers are written (PrepareCommit).
            Driver.await("the commit to complete", p.timeoutMs(), () -> {
                try {
                    return !"PrepareCommit".equals(((Map<?, ?>) describeTransaction(admin, txId)).get("state"));
                } catch (Exception e) {
                    return false;
                }
            });
            m.put("describe_committed", describeTransaction(admin, txId));
            m.put("list_committed", listTransactions(admin, txId));
            m.put("producers_committed", producers(admin, tp));
        }
        return m;
    }
}
