package pybroker.ref;

import java.nio.ByteBuffer;
import java.util.List;
import java.util.Map;

import org.apache.kafka.common.metrics.KafkaMetric;
import org.apache.kafka.common.metrics.MetricsReporter;
import org.apache.kafka.server.authorizer.AuthorizableRequestContext;
import org.apache.kafka.server.telemetry.ClientTelemetry;
import org.apache.kafka.server.telemetry.ClientTelemetryPayload;
import org.apache.kafka.server.telemetry.ClientTelemetryReceiver;
import org.apache.kafka.shaded.io.opentelemetry.proto.metrics.v1.MetricsData;

/**
 * The reference broker's KIP-714 receiver (metric.reporters): with one configured, Kafka
 * advertises GetTelemetrySubscriptions and PushTelemetry as pybroker does, and a payload that
 * is not OTLP MetricsData fails the export (INVALID_RECORD), as pybroker's decoder does.
 */
public class TelemetryReceiver implements MetricsReporter, ClientTelemetry {
    @Override
    public void configure(Map<String, ?> configs) {}

    @Override
    public void init(List<KafkaMetric> metrics) {}

    @Override
    public void metricChange(KafkaMetric metric) {}

    @Override
    public void metricRemoval(KafkaMetric metric) {}

    @Override
    public void close() {}

    @Override
    public ClientTelemetryReceiver clientReceiver() {
        return (AuthorizableRequestContext context, ClientTelemetryPayload payload) -> {
            ByteBuffer data = payload.data().duplicate();
            try {
                MetricsData.parseFrom(data);
            } catch (Exception e) {
                throw new IllegalArgumentException("not OTLP MetricsData: " + e.getMessage(), e);
            }
        };
    }
}
