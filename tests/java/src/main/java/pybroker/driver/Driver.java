package pybroker.driver;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.function.BooleanSupplier;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Java client test driver: {@code Driver <scenario> bootstrap=HOST:PORT key=value...}
 * runs one scenario with Apache Kafka's own client against a broker and prints one JSON
 * line with what it produced, consumed and observed, for pytest to check. A scenario that
 * throws prints {"error": ...} and exits 1.
 */
public final class Driver {
    private Driver() {}

    interface Scenario {
        Map<String, Object> run(Params p) throws Exception;
    }

    private static final Map<String, Scenario> SCENARIOS = new LinkedHashMap<>();

    static {
        SCENARIOS.put("idempotent", ProducerScenarios::idempotent);
        SCENARIOS.put("transactions", ProducerScenarios::transactions);
        SCENARIOS.put("idempotent-restart", ProducerScenarios::idempotentRestart);
        SCENARIOS.put("fencing", ProducerScenarios::fencing);
        SCENARIOS.put("consume-transform-produce", ProducerScenarios::consumeTransformProduce);
        SCENARIOS.put("group", GroupScenarios::group);
        SCENARIOS.put("static-membership", GroupScenarios::staticMembership);
        SCENARIOS.put("admin", AdminScenario::run);
    }

    public static void main(String[] args) {
        if (args.length < 1 || !SCENARIOS.containsKey(args[0])) {
            System.err.println("usage: Driver <" + String.join("|", SCENARIOS.keySet()) + "> key=value...");
            System.exit(2);
        }
        int code = 0;
        Map<String, Object> result;
        try {
            result = SCENARIOS.get(args[0]).run(new Params(args, 1));
        } catch (Throwable t) {
            t.printStackTrace();
            result = error(t);
            code = 1;
        }
        System.out.println(Json.write(result));
        System.out.flush();
        // Client threads (if a scenario left one) must not keep the JVM alive.
        System.exit(code);
    }

    // ---- shared helpers ----------------------------------------------------------------

    static Properties producerProps(Params p) {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, p.str("bootstrap"));
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
        props.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "20000");
        return props;
    }

    static Properties consumerProps(Params p) {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, p.str("bootstrap"));
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        props.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
        return props;
    }

    /** A consumed record as the result reports it. */
    static Map<String, Object> record(ConsumerRecord<String, String> r) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("partition", r.partition());
        m.put("offset", r.offset());
        m.put("key", r.key());
        m.put("value", r.value());
        m.put("timestamp", r.timestamp());
        Map<String, Object> headers = new LinkedHashMap<>();
        for (Header h : r.headers()) {
            headers.put(h.key(), h.value() == null ? null : new String(h.value(), StandardCharsets.UTF_8));
        }
        m.put("headers", headers);
        return m;
    }

    static String tp(TopicPartition tp) {
        return tp.topic() + "-" + tp.partition();
    }

    /** Partition numbers, sorted (for assignments of one topic). */
    static List<Integer> partitions(Collection<TopicPartition> tps) {
        List<Integer> out = new ArrayList<>();
        for (TopicPartition tp : tps) {
            out.add(tp.partition());
        }
        out.sort(Comparator.naturalOrder());
        return out;
    }

    /** The exception a future or call failed with, as {"error": class, "message": text}. */
    static Map<String, Object> error(Throwable t) {
        while ((t instanceof ExecutionException || t instanceof CompletionException) && t.getCause() != null) {
            t = t.getCause();
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("error", t.getClass().getSimpleName());
        m.put("message", t.getMessage());
        return m;
    }

    /**
     * Stop and let the test act on the broker: print {"pause": name} and wait for a line on
     * stdin (the runner's "go on").
     */
    static void pause(String name) throws java.io.IOException {
        System.out.println(Json.write(Map.of("pause", name)));
        System.out.flush();
        if (new java.io.BufferedReader(new java.io.InputStreamReader(System.in)).readLine() == null) {
            throw new IllegalStateException("stdin closed during pause " + name);
        }
    }

    /** Poll a condition until it holds; throws (naming what) when the deadline passes. */
    static void await(String what, long timeoutMs, BooleanSupplier condition) throws InterruptedException {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (!condition.getAsBoolean()) {
            if (System.currentTimeMillis() > deadline) {
                throw new IllegalStateException("timed out waiting for " + what);
            }
            Thread.sleep(20);
        }
    }
}
