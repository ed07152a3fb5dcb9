"""Transactions and producer state vs Kafka 4.1: every txn API version, and its error paths.

Producer ids differ between the brokers, so most requests are built per broker from the
producer (id, epoch) each one handed out; the comparison normalises producer ids.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from tests.differential.helpers import (
    Cases,
    batch,
    create_topic,
    fetch,
    init_producer,
    produce_both,
    produce_request,
    records_without_producer_ids,
    versions,
    warm_coordinator,
)
from tests.support.broker import BrokerProcess
from tests.support.differential import DifferentialPair, request_for
from tests.support.kafka_ref import KafkaReference
from tests.support.wire import KafkaWire

INIT_PRODUCER_ID, ADD_PARTITIONS, ADD_OFFSETS, END_TXN = 22, 24, 25, 26
WRITE_TXN_MARKERS, TXN_OFFSET_COMMIT = 27, 28
DESCRIBE_PRODUCERS, DESCRIBE_TRANSACTIONS, LIST_TRANSACTIONS = 61, 65, 66
PREFIX = "dtx-"
TXN_VOLATILE = {"transaction_start_time", "last_timestamp", "coordinator_epoch"}

Producers = dict[int, tuple[int, int]]  # id(conn) -> (producer id, epoch)


@pytest.fixture(scope="module")
def pair(
    differential_brokers: tuple[BrokerProcess, KafkaReference],
) -> Iterator[DifferentialPair]:
    ours, kafka = differential_brokers
    with DifferentialPair(ours.port, kafka.port) as p:
        for conn in (p.ours, p.kafka):
            # Transactional ids and groups hash over all 50 partitions of their topics.
            warm_coordinator(conn, f"{PREFIX}warm", 1)
            warm_coordinator(conn, f"{PREFIX}warm", 0)
            # A fresh Kafka answers COORDINATOR_LOAD_IN_PROGRESS until its producer id
            # block and transaction partitions are loaded: wait for both.
            init_producer(conn)
            init_producer(conn, f"{PREFIX}warm")
        yield p


def init_both(pair: DifferentialPair, txn_id: str | None) -> Producers:
    return {id(c): init_producer(c, txn_id) for c in (pair.ours, pair.kafka)}


def pid(producers: Producers, conn: KafkaWire, epoch_delta: int = 0) -> dict[str, int]:
    producer_id, epoch = producers[id(conn)]
    return {"producer_id": producer_id, "producer_epoch": epoch + epoch_delta}


def add_partitions(
    version: int, txn_id: str, ids: dict[str, int], topics: dict[str, list[int]], **kw: Any
) -> Any:
    topic_list = [{"name": t, "partitions": p} for t, p in topics.items()]
    if version <= 3:
        return request_for(
            ADD_PARTITIONS,
            version,
            v3_and_below_transactional_id=txn_id,
            v3_and_below_producer_id=ids["producer_id"],
            v3_and_below_producer_epoch=ids["producer_epoch"],
            v3_and_below_topics=topic_list,
        )
    return request_for(
        ADD_PARTITIONS,
        version,
        transactions=[
            {
                "transactional_id": txn_id,
                **ids,
                "verify_only": kw.get("verify_only", False),
                "topics": topic_list,
            }
        ],
    )


def end_txn(version: int, txn_id: str, ids: dict[str, int], commit: bool) -> Any:
    return request_for(END_TXN, version, transactional_id=txn_id, committed=commit, **ids)


def wait_ready(conn: KafkaWire, txn_id: str, ids: dict[str, int]) -> None:
    """Wait until the coordinator has completed the last EndTxn (markers written)."""
    deadline = time.monotonic() + 20
    request = request_for(DESCRIBE_TRANSACTIONS, 0, transactional_ids=[txn_id])
    while time.monotonic() < deadline:
        (state,) = conn.request(request).transaction_states
        if state.transaction_state in ("Empty", "CompleteCommit", "CompleteAbort"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{txn_id}: transaction still completing after 20s")


def test_init_producer_id_every_version(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    for v in versions(pair, INIT_PRODUCER_ID):
        txn = f"{PREFIX}init-v{v}"

        def compare(case: str, v: int = v, **fields: Any) -> None:
            fields.setdefault("producer_id", -1)
            fields.setdefault("producer_epoch", -1)
            cases.compare(
                f"init-producer-id-{case}-v{v}", request_for(INIT_PRODUCER_ID, v, **fields)
            )

        compare("idempotent", transactional_id=None, transaction_timeout=60_000)
        compare("transactional", transactional_id=txn, transaction_timeout=60_000)
        compare("again-bumps-epoch", transactional_id=txn, transaction_timeout=60_000)
        compare("zero-timeout", transactional_id=f"{txn}-z", transaction_timeout=0)
        compare("timeout-too-large", transactional_id=f"{txn}-l", transaction_timeout=10**9)
        compare("empty-id", transactional_id="", transaction_timeout=60_000)
        if v >= 3:
            compare(
                "unknown-producer",
                transactional_id=txn,
                transaction_timeout=60_000,
                producer_id=424242,
                producer_epoch=3,
            )
            producers = init_both(pair, f"{txn}-known")
            cases.compare_each(
                f"init-producer-id-with-current-v{v}",
                lambda c, v=v, t=f"{txn}-known", p=producers: request_for(
                    INIT_PRODUCER_ID,
                    v,
                    transactional_id=t,
                    transaction_timeout=60_000,
                    **pid(p, c),
                ),
            )
            cases.compare_each(
                f"init-producer-id-stale-epoch-v{v}",
                lambda c, v=v, t=f"{txn}-known", p=producers: request_for(
                    INIT_PRODUCER_ID,
                    v,
                    transactional_id=t,
                    transaction_timeout=60_000,
                    **pid(p, c),
                ),
            )
    cases.check()


def test_transaction_flow_every_version(pair: DifferentialPair) -> None:
    """Add partitions and offsets, commit offsets, end: each API at each of its versions."""
    cases = Cases(pair)
    topic = f"{PREFIX}flow"
    create_topic(pair, topic, partitions=2)
    add_versions = versions(pair, ADD_PARTITIONS)
    offsets_versions = versions(pair, ADD_OFFSETS)
    commit_versions = versions(pair, TXN_OFFSET_COMMIT)
    end_versions = versions(pair, END_TXN)
    rounds = max(len(add_versions), len(offsets_versions), len(commit_versions), len(end_versions))
    for i in range(rounds):
        av = add_versions[min(i, len(add_versions) - 1)]
        ov = offsets_versions[min(i, len(offsets_versions) - 1)]
        cv = commit_versions[min(i, len(commit_versions) - 1)]
        ev = end_versions[min(i, len(end_versions) - 1)]
        txn = f"{PREFIX}flow-{i}"
        group = f"{PREFIX}group-{i}"
        producers = init_both(pair, txn)
        tag = f"a{av}-o{ov}-c{cv}-e{ev}"

        def each(case: str, make: Any, **kw: Any) -> None:
            cases.compare_each(case, make, **kw)

        if av <= 3:
            each(
                f"add-partitions-unknown-txn-v{av}",
                lambda c, av=av, p=producers, t=txn: add_partitions(
                    av, f"{t}-nope", pid(p, c), {topic: [0]}
                ),
            )
            each(
                f"add-partitions-bad-epoch-v{av}",
                lambda c, av=av, p=producers, t=txn: add_partitions(
                    av, t, pid(p, c, 3), {topic: [0]}
                ),
            )
            each(
                f"add-partitions-unknown-topic-v{av}",
                lambda c, av=av, p=producers, t=txn: add_partitions(
                    av, t, pid(p, c), {f"{PREFIX}absent": [0], topic: [1]}
                ),
            )
            each(
                f"add-partitions-ok-v{av}",
                lambda c, av=av, p=producers, t=txn: add_partitions(
                    av, t, pid(p, c), {topic: [0, 1]}
                ),
            )
        else:
            each(
                f"add-partitions-verify-only-v{av}",
                lambda c, av=av, p=producers, t=txn: add_partitions(
                    av, t, pid(p, c), {topic: [0]}, verify_only=True
                ),
            )
            each(
                f"add-partitions-unknown-txn-v{av}",
                lambda c, av=av, p=producers, t=txn: add_partitions(
                    av, f"{t}-nope", pid(p, c), {topic: [0]}
                ),
            )
            # v4+ is the brokers' batched form; the partitions go in with a v3 request.
            for conn in (pair.ours, pair.kafka):
                resp = conn.request(add_partitions(3, txn, pid(producers, conn), {topic: [0, 1]}))
                assert all(
                    r.partition_error_code == ErrorCode.none
                    for t in resp.results_by_topic_v3_and_below
                    for r in t.results_by_partition
                ), resp
            each(
                f"add-partitions-already-added-verify-v{av}",
                lambda c, av=av, p=producers, t=txn: add_partitions(
                    av, t, pid(p, c), {topic: [0]}, verify_only=True
                ),
            )
        for conn in (pair.ours, pair.kafka):
            records = batch(
                [b"t1", b"t2"], transactional=True, base_sequence=0, **pid(producers, conn)
            )
            resp = conn.request(produce_request(9, topic, records, transactional_id=txn))
            assert resp.responses[0].partition_responses[0].error_code == ErrorCode.none, resp
        each(
            f"add-offsets-v{ov}",
            lambda c, ov=ov, p=producers, t=txn, g=group: request_for(
                ADD_OFFSETS, ov, transactional_id=t, group_id=g, **pid(p, c)
            ),
        )
        each(
            f"add-offsets-bad-epoch-v{ov}",
            lambda c, ov=ov, p=producers, t=txn, g=group: request_for(
                ADD_OFFSETS, ov, transactional_id=t, group_id=g, **pid(p, c, 2)
            ),
        )
        each(
            f"txn-offset-commit-v{cv}",
            lambda c, cv=cv, p=producers, t=txn, g=group: txn_offset_commit(
                cv, t, g, pid(p, c), topic
            ),
        )
        each(
            f"txn-offset-commit-unknown-topic-v{cv}",
            lambda c, cv=cv, p=producers, t=txn, g=group: txn_offset_commit(
                cv, t, g, pid(p, c), f"{PREFIX}absent"
            ),
        )
        each(
            f"txn-offset-commit-bad-epoch-v{cv}",
            lambda c, cv=cv, p=producers, t=txn, g=group: txn_offset_commit(
                cv, t, g, pid(p, c, 4), topic
            ),
        )
        cases.compare(
            f"describe-transactions-ongoing-{tag}",
            request_for(DESCRIBE_TRANSACTIONS, 0, transactional_ids=[txn]),
            volatile=TXN_VOLATILE,
            unordered={"topics", "partitions"},
        )
        each(
            f"end-txn-bad-epoch-v{ev}",
            lambda c, ev=ev, p=producers, t=txn: end_txn(ev, t, pid(p, c, 5), True),
        )
        each(
            f"end-txn-commit-v{ev}",
            lambda c, ev=ev, p=producers, t=txn: end_txn(ev, t, pid(p, c), True),
        )
        for conn in (pair.ours, pair.kafka):
            wait_ready(conn, txn, pid(producers, conn))
        cases.compare(
            f"describe-transactions-committed-{tag}",
            request_for(DESCRIBE_TRANSACTIONS, 0, transactional_ids=[txn]),
            volatile=TXN_VOLATILE,
        )
        each(
            f"end-txn-commit-again-v{ev}",
            lambda c, ev=ev, p=producers, t=txn: end_txn(ev, t, pid(p, c), True),
        )
        each(
            f"end-txn-abort-none-ongoing-v{ev}",
            lambda c, ev=ev, p=producers, t=txn: end_txn(ev, t, pid(p, c), False),
        )
        each(
            f"end-txn-unknown-txn-v{ev}",
            lambda c, ev=ev, p=producers, t=txn: end_txn(ev, f"{t}-nope", pid(p, c), True),
        )
    cases.check()


def txn_offset_commit(
    version: int, txn_id: str, group: str, ids: dict[str, int], topic: str
) -> Any:
    return request_for(
        TXN_OFFSET_COMMIT,
        version,
        transactional_id=txn_id,
        group_id=group,
        generation_id=-1,
        member_id="",
        group_instance_id=None,
        topics=[
            {
                "name": topic,
                "partitions": [
                    {
                        "partition_index": 0,
                        "committed_offset": 1,
                        "committed_leader_epoch": -1,
                        "committed_metadata": "m",
                    }
                ],
            }
        ],
        **ids,
    )


def test_transaction_introspection(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    topic = f"{PREFIX}introspect"
    create_topic(pair, topic)
    txn = f"{PREFIX}introspect-txn"
    producers = init_both(pair, txn)
    for conn in (pair.ours, pair.kafka):
        conn.request(add_partitions(3, txn, pid(producers, conn), {topic: [0]}))
        records = batch([b"x"], transactional=True, base_sequence=0, **pid(producers, conn))
        resp = conn.request(produce_request(9, topic, records, transactional_id=txn))
        assert resp.responses[0].partition_responses[0].error_code == ErrorCode.none, resp
    cases.compare(
        "describe-producers-ongoing-v0",
        request_for(DESCRIBE_PRODUCERS, 0, topics=[{"name": topic, "partition_indexes": [0, 3]}]),
        volatile=TXN_VOLATILE,
    )
    cases.compare(
        "describe-producers-unknown-topic-v0",
        request_for(
            DESCRIBE_PRODUCERS, 0, topics=[{"name": f"{PREFIX}absent", "partition_indexes": [0]}]
        ),
    )
    # (An unknown transactional id is answered with start time -1, which kio cannot
    # decode as a timestamp; so only known ids are described.)
    cases.compare(
        "describe-transactions-ongoing-v0",
        request_for(DESCRIBE_TRANSACTIONS, 0, transactional_ids=[txn]),
        volatile=TXN_VOLATILE,
        unordered={"topics", "partitions"},
    )

    def mine(plain: Any) -> Any:
        plain["transaction_states"] = sorted(
            (s for s in plain["transaction_states"] if s["transactional_id"].startswith(txn)),
            key=lambda s: s["transactional_id"],
        )
        return plain

    for v in versions(pair, LIST_TRANSACTIONS):
        cases.compare(
            f"list-transactions-all-v{v}",
            request_for(
                LIST_TRANSACTIONS, v, state_filters=[], producer_id_filters=[], duration_filter=-1
            ),
            transform=mine,
        )
        cases.compare(
            f"list-transactions-ongoing-v{v}",
            request_for(
                LIST_TRANSACTIONS,
                v,
                state_filters=["Ongoing"],
                producer_id_filters=[],
                duration_filter=-1,
            ),
            transform=mine,
        )
        cases.compare(
            f"list-transactions-unknown-state-v{v}",
            request_for(
                LIST_TRANSACTIONS,
                v,
                state_filters=["Bogus"],
                producer_id_filters=[],
                duration_filter=-1,
            ),
            transform=mine,
        )
        cases.compare_each(
            f"list-transactions-by-producer-v{v}",
            lambda c, v=v: request_for(
                LIST_TRANSACTIONS,
                v,
                state_filters=[],
                producer_id_filters=[producers[id(c)][0]],
                duration_filter=-1,
            ),
            transform=mine,
        )
        if v >= 1:
            cases.compare(
                f"list-transactions-long-running-v{v}",
                request_for(
                    LIST_TRANSACTIONS,
                    v,
                    state_filters=[],
                    producer_id_filters=[],
                    duration_filter=3_600_000,
                ),
                transform=mine,
            )
    # Client-sent WriteTxnMarkers (an inter-broker API).
    for v in versions(pair, WRITE_TXN_MARKERS):
        cases.compare_each(
            f"write-txn-markers-from-client-v{v}",
            lambda c, v=v: request_for(
                WRITE_TXN_MARKERS,
                v,
                markers=[
                    {
                        **pid(producers, c),
                        "transaction_result": False,
                        "topics": [{"name": topic, "partition_indexes": [0]}],
                        "coordinator_epoch": 0,
                    }
                ],
            ),
        )
    # Abort, then read the partition as both isolation levels at every Fetch version.
    for conn in (pair.ours, pair.kafka):
        resp = conn.request(end_txn(3, txn, pid(producers, conn), False))
        assert resp.error_code == ErrorCode.none, resp
        wait_ready(conn, txn, pid(producers, conn))
    produce_both(pair, topic, batch([b"after"]))
    for v in versions(pair, 1):
        for level in (0, 1):
            cases.compare_each(
                f"fetch-after-abort-isolation{level}-v{v}",
                # (From offset 1: from 0 Kafka may stop after the first batch, a read
                # bounded by its cached high-watermark position; both answers are valid.)
                lambda c, v=v, lvl=level: fetch(v, c, topic, {0: 1}, isolation_level=lvl),
                keep={"timestamp"},
                transform=records_without_producer_ids,
            )
    cases.check()
