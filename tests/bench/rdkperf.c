/* rdkperf: the load generator of tests/bench/bench_vs_kafka.py, a thin C loop on librdkafka.
 *
 * Why C: a Python produce() loop caps near 1 M calls/s, below what a broker takes with
 * 100-byte records; this loop costs librdkafka's own per-message work only. It links the
 * librdkafka that confluent-kafka's wheel bundles (no headers there, so the few functions
 * used are declared below; their ABI has been stable since librdkafka 1.0).
 *
 *   rdkperf produce BOOTSTRAP TOPIC SECONDS MAX_RECORDS SIZE ACKS [key=value ...]
 *   rdkperf consume BOOTSTRAP TOPIC PARTITIONS RECORDS TIMEOUT_S [key=value ...]
 *
 * Prints one JSON line: produce {sent, acked, failed, bytes, seconds}; consume {records,
 * bytes, seconds, errors}. Exits 1 when librdkafka cannot be set up.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_conf_s rd_kafka_conf_t;
typedef struct rd_kafka_topic_s rd_kafka_topic_t;
typedef struct rd_kafka_topic_partition_list_s rd_kafka_topic_partition_list_t;
typedef struct {
    int err;
    rd_kafka_topic_t *rkt;
    int32_t partition;
    void *payload;
    size_t len;
    void *key;
    size_t key_len;
    int64_t offset;
    void *_private;
} rd_kafka_message_t;

rd_kafka_conf_t *rd_kafka_conf_new(void);
int rd_kafka_conf_set(rd_kafka_conf_t *, const char *, const char *, char *, size_t);
void rd_kafka_conf_set_dr_msg_cb(rd_kafka_conf_t *,
                                 void (*)(rd_kafka_t *, const rd_kafka_message_t *, void *));
rd_kafka_t *rd_kafka_new(int type, rd_kafka_conf_t *, char *, size_t);
void rd_kafka_destroy(rd_kafka_t *);
rd_kafka_topic_t *rd_kafka_topic_new(rd_kafka_t *, const char *, void *);
void rd_kafka_topic_destroy(rd_kafka_topic_t *);
int rd_kafka_produce(rd_kafka_topic_t *, int32_t, int, void *, size_t, const void *, size_t,
                     void *);
int rd_kafka_last_error(void);
int rd_kafka_poll(rd_kafka_t *, int);
int rd_kafka_flush(rd_kafka_t *, int);
int rd_kafka_outq_len(rd_kafka_t *);
int rd_kafka_poll_set_consumer(rd_kafka_t *);
rd_kafka_message_t *rd_kafka_consumer_poll(rd_kafka_t *, int);
void rd_kafka_message_destroy(rd_kafka_message_t *);
int rd_kafka_consumer_close(rd_kafka_t *);
rd_kafka_topic_partition_list_t *rd_kafka_topic_partition_list_new(int);
void *rd_kafka_topic_partition_list_add(rd_kafka_topic_partition_list_t *, const char *, int32_t);
int rd_kafka_topic_partition_list_set_offset(rd_kafka_topic_partition_list_t *, const char *,
                                             int32_t, int64_t);
void rd_kafka_topic_partition_list_destroy(rd_kafka_topic_partition_list_t *);
int rd_kafka_assign(rd_kafka_t *, const rd_kafka_topic_partition_list_t *);
const char *rd_kafka_err2str(int);

#define PRODUCER 0
#define CONSUMER 1
#define QUEUE_FULL (-184)
#define PARTITION_UA (-1)
#define OFFSET_BEGINNING (-2)

static long long acked, failed;
static int first_error;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    if (m->err == 0) {
        acked++;
    } else {
        failed++;
        if (!first_error) first_error = m->err;
    }
}

static void set(rd_kafka_conf_t *conf, const char *key, const char *value) {
    char err[512];
    if (rd_kafka_conf_set(conf, key, value, err, sizeof err) != 0) {
        fprintf(stderr, "config %s=%s: %s\n", key, value, err);
        exit(1);
    }
}

static void set_extra(rd_kafka_conf_t *conf, int argc, char **argv, int from) {
    for (int i = from; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) {
            fprintf(stderr, "expected key=value, got %s\n", argv[i]);
            exit(1);
        }
        *eq = '\0';
        set(conf, argv[i], eq + 1);
    }
}

static rd_kafka_t *client(int type, rd_kafka_conf_t *conf) {
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "rd_kafka_new: %s\n", err);
        exit(1);
    }
    return rk;
}

static int produce(int argc, char **argv) {
    const char *topic = argv[3];
    double seconds = atof(argv[4]);
    long long max_records = atoll(argv[5]);
    size_t size = (size_t)atol(argv[6]);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", argv[2]);
    set(conf, "acks", argv[7]);
    set_extra(conf, argc, argv, 8);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = client(PRODUCER, conf);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    char *payload = malloc(size);
    for (size_t i = 0; i < size; i++) payload[i] = (char)('a' + i % 26);
    long long sent = 0;
    double start = now(), stop = start + seconds;
    while (sent < max_records) {
        /* Payload is never freed nor copied (flags 0): one buffer serves every record. */
        if (rd_kafka_produce(rkt, PARTITION_UA, 0, payload, size, NULL, 0, NULL) == 0) {
            sent++;
            if ((sent & 1023) == 0) {
                rd_kafka_poll(rk, 0);
                if (now() >= stop) break;
            }
        } else if (rd_kafka_last_error() == QUEUE_FULL) {
            rd_kafka_poll(rk, 1);
        } else {
            fprintf(stderr, "produce: %s\n", rd_kafka_err2str(rd_kafka_last_error()));
            break;
        }
    }
    rd_kafka_flush(rk, 60000);
    double elapsed = now() - start;
    int left = rd_kafka_outq_len(rk);
    printf("{\"sent\": %lld, \"acked\": %lld, \"failed\": %lld, \"unflushed\": %d, "
           "\"bytes\": %lld, \"seconds\": %.6f, \"first_error\": \"%s\"}\n",
           sent, acked, failed, left, acked * (long long)size, elapsed,
           first_error ? rd_kafka_err2str(first_error) : "");
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    free(payload);
    return 0;
}

static int consume(int argc, char **argv) {
    const char *topic = argv[3];
    int partitions = atoi(argv[4]);
    long long want = atoll(argv[5]);
    double timeout = atof(argv[6]);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", argv[2]);
    set(conf, "group.id", "rdkperf");
    set(conf, "enable.auto.commit", "false");
    set_extra(conf, argc, argv, 7);
    rd_kafka_t *rk = client(CONSUMER, conf);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++) {
        rd_kafka_topic_partition_list_add(parts, topic, p);
        rd_kafka_topic_partition_list_set_offset(parts, topic, p, OFFSET_BEGINNING);
    }
    rd_kafka_assign(rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    long long records = 0, bytes = 0, errors = 0;
    double start = 0, deadline = now() + timeout;
    while (records < want && now() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) continue;
        if (m->err == 0) {
            if (records == 0) start = now();  /* from the first record: excludes connecting */
            records++;
            bytes += (long long)m->len;
        } else {
            errors++;
        }
        rd_kafka_message_destroy(m);
    }
    double elapsed = records ? now() - start : 0;
    printf("{\"records\": %lld, \"bytes\": %lld, \"seconds\": %.6f, \"errors\": %lld}\n", records,
           bytes, elapsed, errors);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 8 && strcmp(argv[1], "produce") == 0) return produce(argc, argv);
    if (argc >= 7 && strcmp(argv[1], "consume") == 0) return consume(argc, argv);
    fprintf(stderr, "usage: see the comment at the top of rdkperf.c\n");
    return 2;
}
