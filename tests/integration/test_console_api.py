"""The web console's JSON API and static files (issue 13) against real brokers.

Real clients (confluent-kafka) create what the console must show: topics with several
segments, one partition per compression codec, a transactional producer (a committed and
an aborted transaction), a consumer group with lag. Each route's answer is checked against
what the test did: offsets, segment base offsets against the partition directory's files,
lag = log end - committed, records' keys/values/headers, control markers. The login flow
runs against SASL users (PLAIN from JAAS, SCRAM from AlterUserScramCredentials) with an
authorizer; a cluster check shows replicas/ISR and out-of-sync replicas.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from tests.support.broker import BrokerProcess, free_port

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
SEGMENTED = 60  # records in the segmented topic (several 2 KiB segments)
COMMITTED = 25


class Http:
    """A tiny client: (status, headers, body) for any request, nothing normalised."""

    def __init__(self, port: int, cookie: str | None = None) -> None:
        self.port = port
        self.cookie = cookie

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            hdrs = dict(headers or {})
            if self.cookie:
                hdrs["Cookie"] = self.cookie
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def json(self, path: str, status: int = 200) -> Any:
        got, headers, body = self.request("GET", path)
        assert got == status, (path, got, body[:300])
        assert headers["content-type"] == "application/json"
        return json.loads(body)


def wait_for(check: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def create(admin: AdminClient, *topics: NewTopic) -> None:
    for fut in admin.create_topics(list(topics)).values():
        fut.result(30)


def produce(bootstrap: str, topic: str, n: int, partition: int = 0, **conf: Any) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **conf})
    for i in range(n):
        p.produce(
            topic,
            key=f"key-{i}".encode(),
            value=f"value-{i}-".encode() * 3,
            headers=[("n", str(i).encode()), ("bin", b"\xff\x00")],
            partition=partition,
        )
    assert p.flush(30) == 0


# ---------------------------------------------------------------------- single broker


class Scene:
    def __init__(self, broker: BrokerProcess) -> None:
        self.broker = broker
        self.http = Http(broker.http_port)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    data = tmp_path_factory.mktemp("console") / "data"
    broker = BrokerProcess(
        data,
        overrides={
            "num.partitions": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
        },
    ).start()
    try:
        bootstrap = broker.bootstrap
        admin = AdminClient({"bootstrap.servers": bootstrap})
        create(
            admin,
            NewTopic("segmented", 1, 1, config={"segment.bytes": "2048"}),
            NewTopic("codecs", len(CODECS), 1),
            NewTopic("txn", 1, 1),
        )
        produce(bootstrap, "segmented", SEGMENTED, **{"batch.size": 200})
        for i, codec in enumerate(CODECS):
            produce(bootstrap, "codecs", 7, partition=i, **{"compression.type": codec})
        tp = Producer({"bootstrap.servers": bootstrap, "transactional.id": "console-txn"})
        tp.init_transactions(30)
        tp.begin_transaction()
        for i in range(5):
            tp.produce("txn", key=b"c%d" % i, value=b"committed", partition=0)
        tp.commit_transaction(30)
        tp.begin_transaction()
        for i in range(3):
            tp.produce("txn", key=b"a%d" % i, value=b"aborted", partition=0)
        assert tp.flush(30) == 0  # abort_transaction drops unsent records
        tp.abort_transaction(30)
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "console-group",
                "client.id": "console-client",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        consumer.subscribe(["segmented"])
        wait_for(lambda: consumer.poll(0.5) is not None or consumer.assignment(), "assignment")
        consumer.commit(offsets=[TopicPartition("segmented", 0, COMMITTED)], asynchronous=False)
        modern = Consumer(  # a KIP-848 consumer group
            {
                "bootstrap.servers": bootstrap,
                "group.id": "console-848",
                "group.protocol": "consumer",
                "client.id": "modern-client",
            }
        )
        modern.subscribe(["codecs"])
        wait_for(lambda: (modern.poll(0.2), len(modern.assignment()) == 5)[1], "848")
        yield Scene(broker)
        consumer.close()
        modern.close()
    finally:
        broker.stop()


def test_cluster(scene: Scene) -> None:
    c = scene.http.json("/api/cluster")
    assert c["node_id"] == 0 and c["controller_id"] == 0 and c["mode"] == "single"
    assert c["cluster_id"] and c["version"] and c["started_ms"] <= time.time() * 1000
    (b,) = c["brokers"]
    assert (b["id"], b["port"], b["is_controller"]) == (0, scene.broker.port, True)
    assert b["listeners"] == [
        {
            "name": "PLAINTEXT",
            "host": "127.0.0.1",
            "port": scene.broker.port,
            "security_protocol": "PLAINTEXT",
        }
    ]


def test_topics_and_segments(scene: Scene) -> None:
    topics = {t["name"]: t for t in scene.http.json("/api/topics")["topics"]}
    names = list(topics)
    assert names == sorted(names)
    assert {"segmented", "codecs", "txn", "__consumer_offsets", "__transaction_state"} <= set(names)
    assert topics["codecs"]["partitions"] == len(CODECS)
    assert topics["__consumer_offsets"]["internal"] and not topics["segmented"]["internal"]
    seg = topics["segmented"]
    assert (seg["replication_factor"], seg["under_replicated"], seg["offline"]) == (1, 0, 0)
    part_dir = scene.broker.data_dir / "segmented-0"
    on_disk = sum(f.stat().st_size for f in part_dir.glob("*.log"))
    assert seg["size_bytes"] == on_disk

    t = scene.http.json("/api/topics/segmented")
    assert t["configs"] == {"segment.bytes": "2048"}
    (p,) = t["partitions"]
    assert (p["leader"], p["replicas"], p["isr"], p["out_of_sync"]) == (0, [0], [0], [])
    assert p["local"] and not p["offline"]
    assert (p["log_start_offset"], p["log_end_offset"]) == (0, SEGMENTED)
    assert p["high_watermark"] == p["last_stable_offset"] == SEGMENTED
    bases = sorted(int(f.name.split(".")[0]) for f in part_dir.glob("*.log"))
    assert len(bases) > 2
    segments = p["segments"]
    assert [s["base_offset"] for s in segments] == bases
    assert [s["next_offset"] for s in segments] == [*bases[1:], SEGMENTED]
    for s in segments:
        path = part_dir / f"{s['base_offset']:020d}.log"
        assert s["size_bytes"] == path.stat().st_size
        assert s["first_timestamp"] <= s["max_timestamp"]
        assert s["txnindex_bytes"] == 0
    assert [s["active"] for s in segments] == [False] * (len(bases) - 1) + [True]
    for s in segments[:-1]:  # closed segments' indexes are trimmed to their entries
        index = part_dir / f"{s['base_offset']:020d}.index"
        assert s["index_bytes"] == index.stat().st_size

    txn = scene.http.json("/api/topics/txn")["partitions"][0]
    assert (txn["log_end_offset"], txn["high_watermark"], txn["last_stable_offset"]) == (
        10,
        10,
        10,
    )
    assert txn["segments"][0]["txnindex_bytes"] == 34  # one aborted transaction


def test_records_every_codec(scene: Scene) -> None:
    for i, _codec in enumerate(CODECS):
        r = scene.http.json(f"/api/records?topic=codecs&partition={i}&offset=2&max=4")
        assert (r["offset"], r["high_watermark"], r["next_offset"]) == (2, 7, 6)
        assert [x["offset"] for x in r["records"]] == [2, 3, 4, 5]
        for x in r["records"]:
            n = x["offset"]
            assert x["key_text"] == f"key-{n}"
            assert base64.b64decode(x["value_b64"]) == f"value-{n}-".encode() * 3
            assert x["headers"] == [
                {"key": "n", "value_b64": base64.b64encode(str(n).encode()).decode(),
                 "value_text": str(n)},
                {"key": "bin", "value_b64": "/wA=", "value_text": None},
            ]  # fmt: skip
            assert x["timestamp_type"] == "create" and not x["control"]
    r = scene.http.json("/api/records?topic=codecs&partition=0&offset=6&max=50")
    assert [x["offset"] for x in r["records"]] == [6] and r["next_offset"] == 7
    r = scene.http.json("/api/records?topic=segmented&partition=0&offset=0&max=100000")
    assert [x["offset"] for x in r["records"]] == list(range(SEGMENTED))  # across segments


def test_records_transactional(scene: Scene) -> None:
    r = scene.http.json("/api/records?topic=txn&partition=0")
    rows = [(x["offset"], x["key_text"], x["transactional"], x["control"]) for x in r["records"]]
    data = [(i, f"c{i}", True, False) for i in range(5)]
    aborted = [(6 + i, f"a{i}", True, False) for i in range(3)]
    assert [row for row in rows if not row[3]] == data + aborted
    assert [row[0] for row in rows if row[3]] == [5, 9]  # the commit and abort markers
    pids = {x["producer_id"] for x in r["records"]}
    assert len(pids) == 1 and pids.pop() >= 0


def test_transactions_and_producers(scene: Scene) -> None:
    t = scene.http.json("/api/transactions")
    (txn,) = [x for x in t["transactions"] if x["transactional_id"] == "console-txn"]
    assert txn["state"] == "CompleteAbort" and txn["partitions"] == []
    assert txn["producer_epoch"] >= 0 and txn["timeout_ms"] > 0
    (prod,) = [p for p in t["producers"] if p["topic"] == "txn"]
    assert prod["producer_id"] == txn["producer_id"] and prod["partition"] == 0
    assert prod["last_sequence"] == 7 and prod["current_txn_start_offset"] is None


def test_groups_and_lag(scene: Scene) -> None:
    groups = {g["group_id"]: g for g in scene.http.json("/api/groups")["groups"]}
    g = groups["console-group"]
    assert g["state"] == "Stable" and g["members"] == 1 and g["protocol_type"] == "consumer"
    assert g["total_lag"] == SEGMENTED - COMMITTED
    d = scene.http.json("/api/groups/console-group")
    assert d["offsets"] == [
        {
            "topic": "segmented",
            "partition": 0,
            "committed_offset": COMMITTED,
            "log_end_offset": SEGMENTED,
            "lag": SEGMENTED - COMMITTED,
            "metadata": "",
        }
    ]
    (m,) = d["members"]
    assert m["client_id"] == "console-client"
    assert m["assignment"] == [{"topic": "segmented", "partitions": [0]}]
    assert d["epoch"] >= 1

    def sampled() -> list[dict[str, int]]:
        return scene.http.json("/api/groups/console-group")["lag_history"]

    def stable() -> dict[str, Any] | None:
        g = scene.http.json("/api/groups/console-848")
        return g if g["state"] == "Stable" else None

    modern = wait_for(stable, "the KIP-848 group to settle")
    assert (modern["group_type"], modern["protocol_type"]) == ("consumer", "consumer")
    assert modern["offsets"] == [] and modern["epoch"] >= 1
    (m,) = modern["members"]
    assert m["client_id"] == "modern-client"
    assert m["assignment"] == [{"topic": "codecs", "partitions": list(range(len(CODECS)))}]
    assert groups["console-848"]["group_type"] == "consumer"

    history = wait_for(sampled, "a lag sample", timeout=15)
    assert history[-1]["lag"] == SEGMENTED - COMMITTED
    assert scene.http.json("/api/groups/nope", 404) == {"error": "no group 'nope'"}


def test_rates(scene: Scene) -> None:
    produce(scene.broker.bootstrap, "codecs", 50, partition=0)

    def moving() -> dict[str, Any] | None:
        r = scene.http.json("/api/rates")
        return r if r["topics"].get("codecs", {}).get("messages_in_per_sec", 0) > 0 else None

    r = wait_for(moving, "a message rate", timeout=15)
    assert r["topics"]["codecs"]["bytes_in_per_sec"] > 0
    assert r["total"]["messages_in_per_sec"] == pytest.approx(
        sum(t["messages_in_per_sec"] for t in r["topics"].values())
    )


def test_static_files_and_headers(scene: Scene) -> None:
    status, headers, body = scene.http.request("GET", "/")
    assert status == 200 and b"/static/app.js" in body
    assert headers["content-security-policy"].startswith("default-src 'self'")
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-cache"
    status, headers, body = scene.http.request("GET", "/static/app.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    assert body == (Path(__file__).parents[2] / "broker" / "console" / "app.js").read_bytes()
    assert scene.http.request("GET", "/login")[0] == 303  # nothing needs a login here
    assert scene.http.request("GET", "/metrics")[0] == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/static/../../../etc/passwd", 404),
        ("GET", "/static/..%2f..%2fconfig%2fserver.properties", 404),
        ("GET", "/static/%2e%2e/api.py", 404),
        ("GET", "/static/api.py", 404),  # sources are not served
        ("GET", "/static/.hidden.js", 404),
        ("GET", "/static/", 404),
        ("GET", "/api/records?topic=segmented&partition=x", 400),
        ("GET", "/api/records?topic=segmented&partition=0&offset=-1", 400),
        ("GET", "/api/records?topic=segmented&partition=0&offset=1e3", 400),
        ("GET", "/api/records?topic=segmented&partition=0&max=" + "9" * 40, 400),
        ("GET", "/api/records?topic=segmented&partition=0&max=0", 400),
        ("GET", "/api/records?topic=segmented&partition=0&partition=0", 400),
        ("GET", "/api/records?partition=0", 400),
        ("GET", "/api/records?topic=segmented&partition=7", 404),
        ("GET", "/api/records?topic=nope&partition=0", 404),
        ("GET", "/api/records?topic=" + "a" * 1900 + "&partition=0", 400),
        ("GET", "/api/topics/nope", 404),
        ("GET", "/api/topics/" + "x" * 600, 404),
        ("GET", "/api/groups/%ff", 400),
        ("GET", "/api/nothing", 404),
        ("GET", "/api/records?topic=" + "a" * 3000, 414),
        ("POST", "/api/topics", 405),
    ],
)
def test_hostile_requests(scene: Scene, method: str, path: str, status: int) -> None:
    got, _headers, body = scene.http.request(method, path)
    assert got == status, body[:200]
    if path.startswith("/api/") and status in (400, 404):
        assert "error" in json.loads(body)


def test_post_bodies_are_bounded(scene: Scene) -> None:
    got, _h, _b = scene.http.request("POST", "/login", body=b"u" * 5000)
    assert got == 413
    assert scene.http.request("GET", "/healthz")[0] == 200  # the endpoint still serves


# ---------------------------------------------------------------------- login

PLAIN_JAAS = (
    "org.apache.kafka.common.security.plain.PlainLoginModule required "
    'username="admin" password="admin-secret" '
    'user_admin="admin-secret" user_alice="alice-secret";'
)
DELAY_MS = 300


def login(port: int, user: str, password: str) -> tuple[int, dict[str, str]]:
    form = urllib.parse.urlencode({"username": user, "password": password}).encode()
    status, headers, _ = Http(port).request(
        "POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    return status, headers


def test_login_and_acls(tmp_path: Path) -> None:
    b = BrokerProcess(tmp_path / "data")
    sasl_port = free_port()
    listeners = f"PLAINTEXT://127.0.0.1:{b.port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}"
    b.overrides.update(
        {
            "listeners": listeners,
            "advertised.listeners": listeners,
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
            "connection.failed.authentication.delay.ms": str(DELAY_MS),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": "User:admin",
        }
    )
    b.start()
    try:
        admin = AdminClient(
            {
                "bootstrap.servers": f"127.0.0.1:{sasl_port}",
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "PLAIN",
                "sasl.username": "admin",
                "sasl.password": "admin-secret",
            }
        )
        create(admin, NewTopic("visible", 1, 1), NewTopic("hidden", 1, 1))
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
        for fut in admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion("bob", info, b"bob-secret")]
        ).values():
            fut.result(30)
        acl = AclBinding(
            ResourceType.TOPIC,
            "visible",
            ResourcePatternType.LITERAL,
            "User:alice",
            "*",
            AclOperation.DESCRIBE,
            AclPermissionType.ALLOW,
        )
        for fut in admin.create_acls([acl]).values():
            fut.result(30)
        port = b.http_port
        anon = Http(port)
        assert anon.json("/api/topics", 401) == {"error": "login required"}
        status, headers, _ = anon.request("GET", "/")
        assert (status, headers["location"]) == (303, "/login")
        status, headers, body = anon.request("GET", "/login")
        assert status == 200 and b"password" in body
        assert anon.request("GET", "/metrics")[0] == 200  # never behind the login
        assert anon.request("GET", "/readyz")[0] == 200

        started = time.monotonic()
        with ThreadPoolExecutor(1) as pool:  # the delay holds that answer, not the loop
            failed = pool.submit(login, port, "alice", "wrong")
            time.sleep(0.05)
            assert anon.request("GET", "/healthz")[0] == 200
            assert not failed.done()
            status, headers = failed.result(10)
        assert status == 401 and "set-cookie" not in headers
        assert time.monotonic() - started >= DELAY_MS / 1000
        assert login(port, "nobody", "alice-secret")[0] == 401
        assert login(port, "bob", "alice-secret")[0] == 401

        status, headers = login(port, "alice", "alice-secret")
        assert (status, headers["location"]) == (303, "/")
        cookie = headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        alice = Http(port, cookie.split(";", 1)[0])
        assert [t["name"] for t in alice.json("/api/topics")["topics"]] == ["visible"]
        assert alice.json("/api/topics/hidden", 404)["error"]
        assert alice.json("/api/topics/visible")["partitions"][0]["leader"] == 0
        # records need READ on the topic: alice only has DESCRIBE
        alice.json("/api/records?topic=visible&partition=0", 404)
        assert set(alice.json("/api/rates")["topics"]) <= {"visible"}
        assert alice.request("GET", "/")[0] == 200

        status, headers = login(port, "bob", "bob-secret")  # SCRAM-SHA-512 credential
        assert status == 303
        bob = Http(port, headers["set-cookie"].split(";", 1)[0])
        assert bob.json("/api/topics")["topics"] == []
        status, headers = login(port, "admin", "admin-secret")
        admin_http = Http(port, headers["set-cookie"].split(";", 1)[0])
        names = {t["name"] for t in admin_http.json("/api/topics")["topics"]}
        assert {"visible", "hidden"} <= names  # a super user sees everything
        records = admin_http.json("/api/records?topic=hidden&partition=0")
        assert (records["high_watermark"], records["records"]) == (0, [])

        evil = {"Origin": "http://evil.example", "Content-Length": "0"}
        assert alice.request("POST", "/logout", b"", evil)[0] == 403
        status, headers, _ = alice.request("POST", "/logout", b"")
        assert status == 303 and "Max-Age=0" in headers["set-cookie"]
        assert alice.json("/api/topics", 401) == {"error": "login required"}
        assert Http(port, "pybroker_console=forged").json("/api/cluster", 401)
    finally:
        b.stop()


# ---------------------------------------------------------------------- cluster


def test_cluster_replicas_and_out_of_sync(tmp_path: Path) -> None:
    """Three brokers: /api/topics/<t> shows replicas and ISR, and the stopped follower as
    out of sync (on the leader at once, on the other follower once its image catches up)."""
    from tests.support.cluster import Cluster

    cluster = Cluster(tmp_path, 3).start()
    try:
        cluster.create_topic("rep", 1, 3)
        view = cluster.wait_for_isr("rep", 0, {1, 2, 3})
        leader = Http(cluster.brokers[view.leader].http_port)
        c = leader.json("/api/cluster")
        assert c["mode"] == "zookeeper" and c["node_id"] == view.leader
        assert [b["id"] for b in c["brokers"]] == [1, 2, 3]
        assert sum(b["is_controller"] for b in c["brokers"]) == 1
        (p,) = leader.json("/api/topics/rep")["partitions"]
        assert p["leader"] == view.leader and p["replicas"] == list(view.replicas)
        assert sorted(p["isr"]) == [1, 2, 3] and p["out_of_sync"] == [] and p["local"]

        follower_id, other_id = (r for r in view.replicas if r != view.leader)
        cluster.brokers[follower_id].stop()
        cluster.wait_for_isr("rep", 0, {view.leader, other_id})

        def out_of_sync(http: Http) -> dict[str, Any] | None:
            (part,) = http.json("/api/topics/rep")["partitions"]
            return part if part["out_of_sync"] == [follower_id] else None

        p = wait_for(lambda: out_of_sync(leader), "the leader's out-of-sync replica")
        assert sorted(p["isr"]) == sorted([view.leader, other_id])
        assert p["replicas"] == list(view.replicas)
        (t,) = [t for t in leader.json("/api/topics")["topics"] if t["name"] == "rep"]
        assert (t["under_replicated"], t["replication_factor"]) == (1, 3)
        other = Http(cluster.brokers[other_id].http_port)
        p = wait_for(lambda: out_of_sync(other), "the other follower's view")
        assert p["local"] and p["leader"] == view.leader
    finally:
        cluster.stop()
