package pybroker.driver;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;

/** Producer scenarios: the idempotent producer, transactions, consume-transform-produce. */
final class ProducerScenarios {
    private ProducerScenarios() {}

    static List<TopicPartition> topicPartitions(String topic, int partitions) {
        List<TopicPartition> tps = new ArrayList<>();
        for (int i = 0; i < partitions; i++) {
            tps.add(new TopicPartition(topic, i));
        }
        return tps;
    }

    /**
     * enable.idempotence with acks=all and 5 requests in flight, small batches so that many
     * are in flight at once: every record must be acknowledged, in send order per partition,
     * at consecutive offsets; then a consumer reads the topic back.
     */
    static Map<String, Object> idempotent(Params p) throws Exception {
        String topic = p.str("topic");
        int count = p.integer("count", 600);
        int partitions = p.integer("partitions", 3);
        long baseTs = Long.parseLong(p.str("base_ts"));
        Properties props = Driver.producerProps(p);
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");
        props.put(ProducerConfig.BATCH_SIZE_CONFIG, "256");
        props.put(ProducerConfig.LINGER_MS_CONFIG, "0");
        props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, p.str("compression", "none"));

        List<Map<String, Object>> acks = Collections.synchronizedList(new ArrayList<>());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            for (int i = 0; i < count; i++) {
                final int index = i;
                ProducerRecord<String, String> rec = new ProducerRecord<>(
                        topic, i % partitions, baseTs + i, "k-" + i, "idem-" + i);
                rec.headers().add("i", Integer.toString(i).getBytes(StandardCharsets.UTF_8));
                producer.send(rec, (md, exc) -> {
                    Map<String, Object> ack = new LinkedHashMap<>();
                    ack.put("index", index);
                    if (exc != null) {
                        ack.putAll(Driver.error(exc));
                    } else {
                        ack.put("partition", md.partition());
                        ack.put("offset", md.offset());
                        ack.put("timestamp", md.timestamp());
                    }
                    acks.add(ack);
                });
            }
            producer.flush();
        }
        Map<String, Object> result = new LinkedHashMap<>();
        result.put("acks", new ArrayList<>(acks)); // in callback order
        result.put("consumed", readAll(p, topic, partitions, "read_uncommitted", count));
        return result;
    }

    /**
     * One idempotent producer across a broker restart: a first half of the records, a pause
     * while the test restarts (or kills and restarts) the broker, then the second half with
     * the same producer id and continuing sequence numbers. Everything must be acknowledged
     * once, at consecutive offsets, with no OutOfOrderSequence or duplicate.
     */
    static Map<String, Object> idempotentRestart(Params p) throws Exception {
        String topic = p.str("topic");
        int count = p.integer("count", 200);
        int partitions = p.integer("partitions", 2);
        Properties props = Driver.producerProps(p);
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");
        props.put(ProducerConfig.BATCH_SIZE_CONFIG, "256");
        props.put(ProducerConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "200");
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");
        List<Map<String, Object>> acks = Collections.synchronizedList(new ArrayList<>());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            for (int half = 0; half < 2; half++) {
                for (int i = half * count / 2; i < (half + 1) * count / 2; i++) {
                    final int index = i;
                    producer.send(new ProducerRecord<>(topic, i % partitions, "k-" + i, "restart-" + i), (md, exc) -> {
                        Map<String, Object> ack = new LinkedHashMap<>();
                        ack.put("index", index);
                        if (exc != null) {
                            ack.putAll(Driver.error(exc));
                        } else {
                            ack.put("partition", md.partition());
                            ack.put("offset", md.offset());
                        }
                        acks.add(ack);
                    });
                }
                producer.flush();
                if (half == 0) {
                    Driver.pause("restart");
                }
            }
        }
        Map<String, Object> result = new LinkedHashMap<>();
        result.put("acks", new ArrayList<>(acks));
        result.put("consumed", readAll(p, topic, partitions, "read_uncommitted", count));
        return result;
    }

    /** Every record of the topic from the beginning, in poll order, up to the end offsets. */
    static List<Map<String, Object>> readAll(Params p, String topic, int partitions, String isolation, int atLeast)
            throws InterruptedException {
        Properties props = Driver.consumerProps(p);
        props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        List<Map<String, Object>> out = new ArrayList<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
            List<TopicPartition> tps = topicPartitions(topic, partitions);
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Map<TopicPartition, Long> end = consumer.endOffsets(tps);
            long deadline = System.currentTimeMillis() + p.timeoutMs();
            while (true) {
                boolean done = out.size() >= atLeast;
                for (TopicPartition tp : tps) {
                    done &= consumer.position(tp) >= end.get(tp);
                }
                if (done) {
                    break;
                }
                if (System.currentTimeMillis() > deadline) {
                    throw new IllegalStateException("read " + out.size() + " records of " + topic + "; end " + end);
                }
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                    out.add(Driver.record(r));
                }
            }
        }
        return out;
    }

    static Map<String, Long> endOffsets(Params p, String topic, int partitions, String isolation) {
        Properties props = Driver.consumerProps(p);
        props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
            Map<String, Long> out = new TreeMap<>();
            consumer.endOffsets(topicPartitions(topic, partitions)).forEach((tp, off) -> out.put(Driver.tp(tp), off));
            return out;
        }
    }

    private static Properties transactional(Params p, String transactionalId) {
        Properties props = Driver.producerProps(p);
        props.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId);
        props.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "30000");
        return props;
    }

    private static List<String> sendBatch(KafkaProducer<String, String> producer, String topic, int partitions,
            String prefix, int n) {
        List<String> values = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            String value = prefix + "-" + i;
            producer.send(new ProducerRecord<>(topic, i % partitions, "k-" + i, value));
            values.add(value);
        }
        return values;
    }

    /**
     * One transaction committed, one aborted, one committed; a read_committed consumer sees
     * only the committed ones, read_uncommitted sees all. While a fourth is open, the
     * read_committed end offset (the LSO) stops at its first record.
     */
    static Map<String, Object> transactions(Params p) throws Exception {
        String topic = p.str("topic");
        int partitions = p.integer("partitions", 2);
        int n = p.integer("count", 6);
        Map<String, Object> result = new LinkedHashMap<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(transactional(p, p.str("transactional_id")))) {
            producer.initTransactions();
            producer.beginTransaction();
            List<String> first = sendBatch(producer, topic, partitions, "commit1", n);
            producer.commitTransaction();
            producer.beginTransaction();
            List<String> aborted = sendBatch(producer, topic, partitions, "abort", n);
            producer.flush();
            producer.abortTransaction();
            producer.beginTransaction();
            List<String> second = sendBatch(producer, topic, partitions, "commit2", n);
            producer.commitTransaction();
            result.put("committed", concat(first, second));
            result.put("aborted", aborted);

            result.put("end_before_open", endOffsets(p, topic, partitions, "read_uncommitted"));
            producer.beginTransaction();
            result.put("open", sendBatch(producer, topic, partitions, "open", n));
            producer.flush();
            result.put("lso_while_open", endOffsets(p, topic, partitions, "read_committed"));
            result.put("hw_while_open", endOffsets(p, topic, partitions, "read_uncommitted"));
            producer.abortTransaction();
        }
        result.put("end_offsets", endOffsets(p, topic, partitions, "read_uncommitted"));
        result.put("lso", endOffsets(p, topic, partitions, "read_committed"));
        result.put("read_committed", readAll(p, topic, partitions, "read_committed", 2 * n));
        result.put("read_uncommitted", readAll(p, topic, partitions, "read_uncommitted", 4 * n));
        return result;
    }

    /**
     * Fencing: a second producer with the same transactional.id (initTransactions) fences
     * the first, whose open transaction is aborted; the first cannot commit.
     */
    static Map<String, Object> fencing(Params p) throws Exception {
        String topic = p.str("topic");
        int partitions = p.integer("partitions", 2);
        int n = p.integer("count", 4);
        String txId = p.str("transactional_id");
        Map<String, Object> result = new LinkedHashMap<>();
        KafkaProducer<String, String> zombie = new KafkaProducer<>(transactional(p, txId));
        try {
            zombie.initTransactions();
            zombie.beginTransaction();
            result.put("zombie", sendBatch(zombie, topic, partitions, "zombie", n));
            zombie.flush();
            try (KafkaProducer<String, String> live = new KafkaProducer<>(transactional(p, txId))) {
                live.initTransactions();
                Map<String, Object> commit = new LinkedHashMap<>();
                try {
                    zombie.commitTransaction();
                    commit.put("ok", true);
                } catch (Exception e) {
                    commit = Driver.error(e);
                }
                result.put("zombie_commit", commit);
                live.beginTransaction();
                result.put("live", sendBatch(live, topic, partitions, "live", n));
                live.commitTransaction();
            }
        } finally {
            zombie.close(Duration.ofSeconds(5));
        }
        result.put("read_committed", readAll(p, topic, partitions, "read_committed", n));
        result.put("read_uncommitted", readAll(p, topic, partitions, "read_uncommitted", 2 * n));
        return result;
    }

    private static List<String> concat(List<String> a, List<String> b) {
        List<String> out = new ArrayList<>(a);
        out.addAll(b);
        return out;
    }

    private static Map<TopicPartition, OffsetAndMetadata> nextOffsets(ConsumerRecords<String, String> records) {
        Map<TopicPartition, OffsetAndMetadata> out = new HashMap<>();
        for (TopicPartition tp : records.partitions()) {
            List<ConsumerRecord<String, String>> rs = records.records(tp);
            out.put(tp, new OffsetAndMetadata(rs.get(rs.size() - 1).offset() + 1));
        }
        return out;
    }

    private static Map<String, Object> committed(KafkaConsumer<String, String> consumer, Set<TopicPartition> tps) {
        Map<String, Object> out = new TreeMap<>();
        consumer.committed(tps).forEach((tp, om) -> out.put(Driver.tp(tp), om == null ? null : om.offset()));
        return out;
    }

    private static List<Map<String, Object>> transform(KafkaProducer<String, String> producer, String output,
            ConsumerRecords<String, String> records) {
        List<Map<String, Object>> sent = new ArrayList<>();
        for (ConsumerRecord<String, String> r : records) {
            String value = r.value().toUpperCase();
            producer.send(new ProducerRecord<>(output, r.partition(), r.key(), value));
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("partition", r.partition());
            m.put("offset", r.offset());
            m.put("value", value);
            sent.add(m);
        }
        return sent;
    }

    /**
     * Exactly-once consume-transform-produce: a group member reads the input, a transactional
     * producer writes upper-cased copies and commits the group's offsets in the same
     * transaction (sendOffsetsToTransaction with the consumer's group metadata). The first
     * batch is aborted (its offsets must not be committed) and processed again.
     */
    static Map<String, Object> consumeTransformProduce(Params p) throws Exception {
        String input = p.str("input");
        String output = p.str("output");
        int count = p.integer("count", 40);
        Properties cprops = Driver.consumerProps(p);
        cprops.put(ConsumerConfig.GROUP_ID_CONFIG, p.str("group"));
        cprops.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        cprops.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, p.str("batch", "7"));
        Map<String, Object> result = new LinkedHashMap<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cprops);
                KafkaProducer<String, String> producer = new KafkaProducer<>(transactional(p, p.str("transactional_id")))) {
            producer.initTransactions();
            consumer.subscribe(List.of(input));
            long deadline = System.currentTimeMillis() + p.timeoutMs();
            ConsumerRecords<String, String> records = ConsumerRecords.empty();
            while (records.isEmpty()) {
                if (System.currentTimeMillis() > deadline) {
                    throw new IllegalStateException("no input records");
                }
                records = consumer.poll(Duration.ofMillis(200));
            }
            result.put("generation", consumer.groupMetadata().generationId());
            producer.beginTransaction();
            result.put("aborted", transform(producer, output, records));
            producer.sendOffsetsToTransaction(nextOffsets(records), consumer.groupMetadata());
            producer.flush(); // written to the log, then aborted (not dropped unsent)
            producer.abortTransaction();
            result.put("committed_after_abort", committed(consumer, consumer.assignment()));
            for (TopicPartition tp : records.partitions()) {
                consumer.seek(tp, records.records(tp).get(0).offset());
            }

            List<Map<String, Object>> produced = new ArrayList<>();
            int transactions = 0;
            while (produced.size() < count) {
                if (System.currentTimeMillis() > deadline) {
                    throw new IllegalStateException("processed " + produced.size() + " of " + count);
                }
                records = consumer.poll(Duration.ofMillis(200));
                if (records.isEmpty()) {
                    continue;
                }
                producer.beginTransaction();
                produced.addAll(transform(producer, output, records));
                producer.sendOffsetsToTransaction(nextOffsets(records), consumer.groupMetadata());
                producer.commitTransaction();
                transactions++;
            }
            result.put("produced", produced);
            result.put("transactions", transactions);
            result.put("committed", committed(consumer, consumer.assignment()));
        }
        return result;
    }
}
