package pybroker.driver;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Pattern;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;

/**
 * Consumer group scenarios: members of one group run in threads of this JVM (a
 * KafkaConsumer belongs to one thread), the main thread produces phases of records and
 * waits on what the members report (assignment, rebalance callbacks, records consumed).
 */
final class GroupScenarios {
    private GroupScenarios() {}

    /** One group member: subscribes, polls, commits after every non-empty poll. */
    static final class Member implements Runnable {
        final String name;
        final Properties props;
        final String topic;
        final List<Map<String, Object>> events = Collections.synchronizedList(new ArrayList<>());
        final List<Map<String, Object>> consumed = Collections.synchronizedList(new ArrayList<>());
        volatile List<Integer> assignment = List.of();
        volatile int generation = -1;
        volatile String memberId = "";
        volatile boolean stop;
        volatile Throwable failure;
        final Thread thread;

        /** Subscribe to the topics matching topic + ".*" (KIP-848: the broker resolves it). */
        volatile boolean pattern;

        Member(String name, Properties props, String topic) {
            this(name, props, topic, false);
        }

        Member(String name, Properties props, String topic, boolean pattern) {
            this.pattern = pattern;
            this.name = name;
            this.props = props;
            this.topic = topic;
            this.thread = new Thread(this, "member-" + name);
            thread.setDaemon(true);
            thread.start();
        }

        private void event(String kind, Collection<TopicPartition> tps) {
            Map<String, Object> e = new LinkedHashMap<>();
            e.put("event", kind);
            e.put("partitions", Driver.partitions(tps));
            events.add(e);
        }

        @Override
        public void run() {
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
                ConsumerRebalanceListener listener = new ConsumerRebalanceListener() {
                    @Override
                    public void onPartitionsRevoked(Collection<TopicPartition> tps) {
                        event("revoked", tps);
                        if (!tps.isEmpty()) {
                            consumer.commitSync();
                        }
                    }

                    @Override
                    public void onPartitionsAssigned(Collection<TopicPartition> tps) {
                        event("assigned", tps);
                    }

                    @Override
                    public void onPartitionsLost(Collection<TopicPartition> tps) {
                        event("lost", tps);
                    }
                };
                if (pattern) {
                    consumer.subscribe(Pattern.compile(Pattern.quote(topic) + ".*"), listener);
                } else {
                    consumer.subscribe(List.of(topic), listener);
                }
                while (!stop) {
                    ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(100));
                    for (ConsumerRecord<String, String> r : records) {
                        consumed.add(Driver.record(r));
                    }
                    if (!records.isEmpty()) {
                        consumer.commitSync();
                    }
                    generation = consumer.groupMetadata().generationId();
                    memberId = consumer.groupMetadata().memberId();
                    assignment = Driver.partitions(consumer.assignment());
                }
            } catch (Throwable t) {
                failure = t;
            }
        }

        /** Stop polling and close the consumer (a dynamic member leaves the group). */
        void close() throws InterruptedException {
            stop = true;
            thread.join(30_000);
            check();
        }

        void check() {
            if (failure != null) {
                throw new IllegalStateException("member " + name + " failed", failure);
            }
        }

        long consumedWithPrefix(String prefix) {
            synchronized (consumed) {
                return consumed.stream().filter(r -> ((String) r.get("value")).startsWith(prefix + "-")).count();
            }
        }

        Map<String, Object> report() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("member_id", memberId);
            m.put("generation", generation);
            m.put("assignment", assignment);
            synchronized (events) {
                m.put("events", new ArrayList<>(events));
            }
            synchronized (consumed) {
                m.put("consumed", new ArrayList<>(consumed));
            }
            return m;
        }
    }

    private static Properties memberProps(Params p, String clientId, String instanceId) {
        Properties props = Driver.consumerProps(p);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, p.str("group"));
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, clientId);
        props.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "10");
        String protocol = p.str("protocol", "classic");
        props.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        if (protocol.equals("classic")) {
            String assignor = p.str("assignor", "range");
            props.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, switch (assignor) {
                case "range" -> RangeAssignor.class.getName();
                case "cooperative-sticky" -> CooperativeStickyAssignor.class.getName();
                default -> throw new IllegalArgumentException("assignor " + assignor);
            });
            props.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
            props.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "300");
        } else if (p.str("remote_assignor", null) != null) {
            props.put(ConsumerConfig.GROUP_REMOTE_ASSIGNOR_CONFIG, p.str("remote_assignor"));
        }
        if (instanceId != null) {
            props.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, instanceId);
        }
        return props;
    }

    private static void produce(Params p, String topic, int partitions, String prefix, int n) {
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(Driver.producerProps(p))) {
            for (int i = 0; i < n; i++) {
                producer.send(new ProducerRecord<>(topic, i % partitions, "k-" + i, prefix + "-" + i));
            }
            producer.flush();
        }
    }

    /** The members' assignments are disjoint, all non-empty, and cover every partition. */
    private static boolean split(int partitions, Member... members) {
        Set<Integer> seen = new HashSet<>();
        int total = 0;
        for (Member m : members) {
            m.check();
            if (m.assignment.isEmpty()) {
                return false;
            }
            seen.addAll(m.assignment);
            total += m.assignment.size();
        }
        return seen.size() == partitions && total == partitions;
    }

    private static void awaitConsumed(Params p, String prefix, int n, Member... members) throws InterruptedException {
        Driver.await(prefix + " records consumed", p.timeoutMs(), () -> {
            long total = 0;
            for (Member m : members) {
                m.check();
                total += m.consumedWithPrefix(prefix);
            }
            return total >= n;
        });
    }

    static Admin admin(Params p) {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, p.str("bootstrap"));
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
        return Admin.create(props);
    }

    /** describeConsumerGroups for one group, as the result reports it. */
    static Map<String, Object> describeGroup(Admin admin, String group) throws Exception {
        ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("group_id", d.groupId());
        m.put("simple", d.isSimpleConsumerGroup());
        m.put("state", d.groupState().toString());
        m.put("type", d.type().toString());
        m.put("assignor", d.partitionAssignor());
        m.put("group_epoch", d.groupEpoch());
        m.put("target_assignment_epoch", d.targetAssignmentEpoch());
        m.put("coordinator", d.coordinator() == null ? null : d.coordinator().id());
        List<Map<String, Object>> members = new ArrayList<>();
        for (MemberDescription md : d.members()) {
            Map<String, Object> mm = new LinkedHashMap<>();
            mm.put("member_id", md.consumerId());
            mm.put("instance_id", md.groupInstanceId());
            mm.put("client_id", md.clientId());
            mm.put("host", md.host());
            mm.put("assignment", Driver.partitions(md.assignment().topicPartitions()));
            mm.put("target_assignment", md.targetAssignment().map(a -> Driver.partitions(a.topicPartitions())));
            mm.put("member_epoch", md.memberEpoch());
            members.add(mm);
        }
        members.sort((a, b) -> (a.get("instance_id") + "/" + a.get("client_id"))
                .compareTo(b.get("instance_id") + "/" + b.get("client_id")));
        m.put("members", members);
        return m;
    }

    static Map<String, Object> groupOffsets(Admin admin, String group) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> offsets =
                admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        Map<String, Object> out = new TreeMap<>();
        offsets.forEach((tp, om) -> out.put(Driver.tp(tp), om == null ? null : om.offset()));
        return out;
    }

    /**
     * Two members of one group (classic with the range or cooperative-sticky assignor, or
     * the KIP-848 consumer protocol): a alone gets every partition; b joins and they split;
     * b leaves and a gets every partition again. A phase of records is consumed at each stage.
     */
    static Map<String, Object> group(Params p) throws Exception {
        String topic = p.str("topic");
        int partitions = p.integer("partitions", 4);
        int n = p.integer("per_phase", 20);
        long timeout = p.timeoutMs();
        Map<String, Object> result = new LinkedHashMap<>();
        try (Admin admin = admin(p)) {
            boolean pattern = p.str("pattern", "false").equals("true");
            Member a = new Member("a", memberProps(p, "member-a", null), topic, pattern);
            Driver.await("a assigned every partition", timeout, () -> split(partitions, a));
            produce(p, topic, partitions, "phase1", n);
            awaitConsumed(p, "phase1", n, a);
            result.put("a_alone", a.assignment);

            Member b = new Member("b", memberProps(p, "member-b", null), topic, pattern);
            Driver.await("a and b split the partitions", timeout, () -> split(partitions, a, b));
            result.put("split", Map.of("a", a.assignment, "b", b.assignment));
            produce(p, topic, partitions, "phase2", n);
            awaitConsumed(p, "phase2", n, a, b);
            result.put("describe_two", describeGroup(admin, p.str("group")));

            b.close();
            Driver.await("a assigned every partition after b left", timeout, () -> split(partitions, a));
            produce(p, topic, partitions, "phase3", n);
            awaitConsumed(p, "phase3", n, a);
            result.put("describe_one", describeGroup(admin, p.str("group")));
            a.close();
            result.put("a", a.report());
            result.put("b", b.report());
            result.put("committed", groupOffsets(admin, p.str("group")));
            result.put("end_offsets", ProducerScenarios.endOffsets(p, topic, partitions, "read_uncommitted"));
        }
        return result;
    }

    /**
     * Static membership (group.instance.id): one member (param restart: a, the first to join,
     * or b) is closed without leaving the group and a new consumer with its instance id
     * rejoins within the session timeout; it gets the same partitions back without a
     * rebalance (the other member sees no callback, the generation stays).
     */
    static Map<String, Object> staticMembership(Params p) throws Exception {
        String topic = p.str("topic");
        int partitions = p.integer("partitions", 4);
        int n = p.integer("per_phase", 20);
        long timeout = p.timeoutMs();
        boolean restartA = p.str("restart", "b").equals("a");
        Map<String, Object> result = new LinkedHashMap<>();
        try (Admin admin = admin(p)) {
            Member a = new Member("a", memberProps(p, "member-a", "static-a"), topic);
            Driver.await("a assigned every partition", timeout, () -> split(partitions, a));
            Member b = new Member("b", memberProps(p, "member-b", "static-b"), topic);
            Driver.await("a and b split the partitions", timeout,
                    () -> split(partitions, a, b) && a.generation == b.generation);
            produce(p, topic, partitions, "phase1", n);
            awaitConsumed(p, "phase1", n, a, b);
            result.put("describe_before", describeGroup(admin, p.str("group")));
            Member leaving = restartA ? a : b;
            Member staying = restartA ? b : a;
            result.put("staying_before", staying.report());

            leaving.close(); // a static member's close does not send LeaveGroup
            result.put("leaving", leaving.report());
            String instance = restartA ? "static-a" : "static-b";
            Member back = new Member("back", memberProps(p, "member-back", instance), topic);
            Driver.await("the instance rejoined", timeout, () -> {
                back.check();
                return !back.assignment.isEmpty();
            });
            produce(p, topic, partitions, "phase2", n);
            awaitConsumed(p, "phase2", n, staying, back);
            // Several heartbeat intervals, so that a rebalance the rejoin caused shows up.
            Thread.sleep(Long.parseLong(p.str("settle_ms", "1500")));
            result.put("describe_after", describeGroup(admin, p.str("group")));
            result.put("staying_after", staying.report());
            result.put("back", back.report());
            staying.close();
            back.close();
            result.put("committed", groupOffsets(admin, p.str("group")));
            result.put("end_offsets", ProducerScenarios.endOffsets(p, topic, partitions, "read_uncommitted"));
        }
        return result;
    }
}
