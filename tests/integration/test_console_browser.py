"""The web console (issue 13) in a real browser: Debian's headless Chromium driven by
Selenium against live brokers.

The test makes the state itself (topics, one with many small segments; records with keys
and headers; a consumer group with lag; an open transaction), loads every page and checks
that the DOM shows exactly that state: topics, partitions, ISR, segment base offsets equal
to the .log files on disk, lag per partition, the transaction and its LSO, record keys,
headers and values. Any SEVERE entry in the browser console fails it. In a three-broker
cluster a stopped follower shows as out of sync; with SASL on, the login page gates it.

Screenshots of every page go to the test's tmp dir and, when PYBROKER_SCREENSHOTS names a
directory, there too (the README's docs/console-topic.png is made this way).
"""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests.support.broker import BrokerProcess, free_port
from tests.support.cluster import Cluster

CHROMEDRIVER = "/usr/bin/chromedriver"
# The real binary: /usr/bin/chromium is Debian's wrapper script around it.
CHROMIUM = next(p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.path.exists(p))
SEG_TOPIC, PLAIN_TOPIC, TXN_TOPIC = "console-seg", "console-plain", "console-txn"
RATE_TOPIC = "console-rates"
GROUP, TXN_ID = "console-group", "console-txn-id"
PER_PARTITION = 30
COMMITTED = {0: 10, 1: 20, 2: 25}  # committed offsets -> lag 20, 10, 5

# Every row of a data-testid with its data-* attributes, class, the text of its inner
# data-testid cells and its replica chips: read in one script, so never half-redrawn.
ROWS_JS = """
const out = [];
for (const r of document.querySelectorAll(`[data-testid="${arguments[0]}"]`)) {
  const cells = {};
  for (const c of r.querySelectorAll('[data-testid]')) {
    if (!(c.dataset.testid in cells)) cells[c.dataset.testid] = c.textContent.trim();
  }
  const chips = Array.from(r.querySelectorAll('[data-replica]'),
    (e) => [Number(e.dataset.replica), e.dataset.testid, e.getAttribute('class')]);
  out.push({data: Object.assign({}, r.dataset), cls: r.getAttribute('class') || '',
            cells, chips, text: r.textContent});
}
return out;
"""


class ConsolePage:
    """One Chromium session pointed at one broker's console."""

    def __init__(self, driver: webdriver.Chrome, shots: list[Path]) -> None:
        self.driver = driver
        self.shots = shots
        self.base = ""

    def open(self, http_port: int, route: str, page: str) -> None:
        """Load ``#<route>`` and wait until the view rendered ``page`` from fresh data."""
        self.base = f"http://127.0.0.1:{http_port}/"
        self.driver.get(self.base + "#" + route)
        self.wait(
            f"page {page} loaded",
            lambda: self.driver.execute_script(
                "const v = document.getElementById('view');"
                "return v && v.getAttribute('data-page') === arguments[0]"
                " && v.hasAttribute('data-loaded');",
                page,
            ),
        )

    def rows(self, testid: str) -> list[dict[str, Any]]:
        return self.driver.execute_script(ROWS_JS, testid)

    def text(self, testid: str) -> str:
        return self.driver.execute_script(
            "const e = document.querySelector(`[data-testid='${arguments[0]}']`);"
            "return e ? e.textContent.trim() : null;",
            testid,
        )

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = check()
            except AssertionError as exc:
                last = exc
            else:
                if last:
                    return last
            time.sleep(0.2)
        page = self.driver.execute_script(
            "const v = document.getElementById('view'), s = document.getElementById('status');"
            "return [s && s.textContent, v && v.textContent.slice(0, 400)];"
        )
        raise AssertionError(f"timed out waiting for {what}; last: {last!r}; page: {page}")

    def expect(self, what: str, check: Callable[[], None], timeout: float = 20.0) -> None:
        """Retry ``check`` (which asserts) until it passes: the page refreshes every 3 s."""

        def ok() -> bool:
            check()
            return True

        self.wait(what, ok, timeout)

    def screenshot(self, name: str) -> None:
        for d in self.shots:
            d.mkdir(parents=True, exist_ok=True)
            assert self.driver.save_screenshot(str(d / f"console-{name}.png"))

    def leave(self) -> None:
        """Stop the page's refresh timer before its broker goes away."""
        self.driver.get("about:blank")

    def severe_logs(self) -> list[dict[str, Any]]:
        return [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def assert_no_console_errors(self) -> None:
        errors = self.severe_logs()
        assert errors == [], errors


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    d.set_page_load_timeout(30)
    d.set_script_timeout(30)
    try:
        yield d
    finally:
        d.quit()


@pytest.fixture
def console(driver: webdriver.Chrome, tmp_path: Path) -> Iterator[ConsolePage]:
    shots = [tmp_path / "screenshots"]
    if os.environ.get("PYBROKER_SCREENSHOTS"):
        shots.append(Path(os.environ["PYBROKER_SCREENSHOTS"]))
    page = ConsolePage(driver, shots)
    yield page
    page.leave()
    driver.delete_all_cookies()
    page.assert_no_console_errors()  # also between a test's last check and its end


# ------------------------------------------------------------------------ the state


def create_topics(bootstrap: str, topics: list[NewTopic]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for name, fut in admin.create_topics(topics, operation_timeout=30).items():
        assert fut.result(30) is None, name


def produce_segments(bootstrap: str) -> None:
    """30 records per partition, flushed a few at a time so segments of 1 KiB roll."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
    for i in range(PER_PARTITION):
        for part in range(3):
            p.produce(
                SEG_TOPIC,
                key=f"key-{part}-{i}".encode(),
                value=f"value-{part}-{i} ".encode() + b"x" * 60,
                headers=[("trace", f"h-{part}-{i}".encode())],
                partition=part,
            )
        if i % 3 == 2:
            assert p.flush(10) == 0
    p.produce(PLAIN_TOPIC, key=b"k-text", value=b"hi", partition=0)
    p.produce(PLAIN_TOPIC, key=None, value=b"\x00\x01\xff", partition=0)
    assert p.flush(10) == 0


def lagging_consumer(bootstrap: str) -> Consumer:
    """A live member of GROUP owning SEG_TOPIC's 3 partitions, committed at COMMITTED."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": GROUP,
            "client.id": "console-consumer",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([SEG_TOPIC])
    deadline = time.monotonic() + 30
    while not c.assignment() and time.monotonic() < deadline:
        c.poll(0.2)
    assert len(c.assignment()) == 3
    offsets = [TopicPartition(SEG_TOPIC, p, o) for p, o in COMMITTED.items()]
    assert all(tp.error is None for tp in c.commit(offsets=offsets, asynchronous=False))
    return c


def disk_segments(data_dir: Path, topic: str, partition: int) -> list[int]:
    return sorted(int(f.stem) for f in (data_dir / f"{topic}-{partition}").glob("*.log"))


def disk_log_bytes(data_dir: Path, topic: str) -> int:
    return sum(f.stat().st_size for f in data_dir.glob(f"{topic}-*/*.log"))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    b = BrokerProcess(
        tmp_path_factory.mktemp("console") / "data",
        overrides={
            "offsets.topic.num.partitions": "3",
            "group.initial.rebalance.delay.ms": "0",
            "transaction.state.log.num.partitions": "2",
        },
    )
    b.start()
    try:
        yield b
    finally:
        b.stop()


# ------------------------------------------------------------------------ the pages


def test_console_pages_show_the_broker_state(live: BrokerProcess, console: ConsolePage) -> None:
    started = time.monotonic()
    create_topics(
        live.bootstrap,
        [
            NewTopic(SEG_TOPIC, 3, 1, config={"segment.bytes": "1024"}),
            NewTopic(PLAIN_TOPIC, 1, 1),
            NewTopic(TXN_TOPIC, 1, 1),
            NewTopic(RATE_TOPIC, 2, 1),
        ],
    )
    produce_segments(live.bootstrap)
    consumer = lagging_consumer(live.bootstrap)
    txn = Producer({"bootstrap.servers": live.bootstrap, "transactional.id": TXN_ID})
    try:
        txn.init_transactions(30)
        txn.begin_transaction()
        txn.produce(TXN_TOPIC, key=b"t0", value=b"in-txn-0", partition=0)
        txn.produce(TXN_TOPIC, key=b"t1", value=b"in-txn-1", partition=0)
        assert txn.flush(10) == 0
        node_id = check_overview(console, live)
        check_topics(console, live)
        check_topic_segments(console, live, node_id)
        check_groups(console, live)
        check_open_transaction(console, live)
        txn.commit_transaction(30)
        check_committed_transaction(console, live)
        check_records(console, live)
        check_clients(console, live)
    finally:
        consumer.close()
    print(f"console browser checks: {time.monotonic() - started:.1f}s")


def check_overview(console: ConsolePage, live: BrokerProcess) -> int:
    console.open(live.http_port, "/", "overview")
    meta = AdminClient({"bootstrap.servers": live.bootstrap}).list_topics(timeout=10)
    node_id = next(iter(meta.brokers))
    assert console.text("cluster-id") == meta.cluster_id
    assert console.text("controller-id") == str(meta.controller_id)
    assert console.text("node-id") == str(node_id)
    assert console.text("version")
    brokers = console.rows("broker-row")
    assert [b["data"]["brokerId"] for b in brokers] == [str(node_id)]
    assert brokers[0]["cells"]["broker-address"] == live.bootstrap
    assert brokers[0]["cells"]["broker-listeners"] == f"PLAINTEXT 127.0.0.1:{live.port}"
    assert brokers[0]["cells"]["controller-badge"] == "controller"
    console.screenshot("overview")
    console.assert_no_console_errors()
    return node_id


def check_topics(console: ConsolePage, live: BrokerProcess) -> None:
    console.open(live.http_port, "/topics", "topics")
    expected = {SEG_TOPIC: "3", PLAIN_TOPIC: "1", TXN_TOPIC: "1", RATE_TOPIC: "2"}
    # Live rates (over the last ~10 s): a burst into RATE_TOPIC now shows up in them.
    burst = Producer({"bootstrap.servers": live.bootstrap, "linger.ms": 5})
    for i in range(200):
        burst.produce(RATE_TOPIC, value=b"r" * 100, partition=i % 2)
    assert burst.flush(10) == 0

    def shown() -> None:
        rows = {r["data"]["topic"]: r for r in console.rows("topic-row")}
        assert {t: r["cells"]["topic-partitions"] for t, r in rows.items()} == expected
        for r in rows.values():
            assert r["cells"]["topic-rf"] == "1"
            assert r["cells"]["topic-urp"] == "0"
            assert r["cells"]["topic-offline"] == "0"
            assert r["cells"]["topic-size"]
        # Size = the bytes of the partitions' .log files on disk.
        size = console.driver.execute_script(
            "return document.querySelector(`[data-topic='${arguments[0]}'] "
            "[data-testid='topic-size']`).dataset.bytes;",
            SEG_TOPIC,
        )
        assert int(size) == disk_log_bytes(live.data_dir, SEG_TOPIC)
        rates = rows[RATE_TOPIC]["cells"]
        assert float(rates["topic-msg-in"]) > 0
        assert rates["topic-bytes-in"] != "0 B/s"

    console.expect("the three topics", shown)
    # Internal topics appear only when asked for.
    console.driver.find_element(By.CSS_SELECTOR, "[data-testid='show-internal']").click()
    console.expect(
        "internal topics",
        lambda: _assert(
            "__consumer_offsets" in {r["data"]["topic"] for r in console.rows("topic-row")}
        ),
    )
    console.driver.find_element(By.CSS_SELECTOR, "[data-testid='show-internal']").click()
    console.expect("internal hidden", lambda: _assert(len(console.rows("topic-row")) == 4))
    console.screenshot("topics")
    check_refresh_pauses_while_hidden(console)
    console.assert_no_console_errors()


API_FETCHES_JS = """
return [document.visibilityState,
        performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/')).length];
"""


def check_refresh_pauses_while_hidden(console: ConsolePage) -> None:
    """A live page refetches every 3 s while visible, never while hidden."""
    d = console.driver

    def fetches() -> tuple[str, int]:
        state, count = d.execute_script(API_FETCHES_JS)
        return state, count

    d.execute_script("performance.clearResourceTimings();")
    console.wait("a refresh", lambda: fetches()[1] >= 1, timeout=10)
    d.minimize_window()
    console.wait("hidden", lambda: fetches()[0] == "hidden")
    time.sleep(1)  # a fetch already in flight lands
    before = fetches()[1]
    time.sleep(7)  # two refresh periods and more
    assert fetches() == ("hidden", before)
    d.set_window_rect(width=1280, height=1000)
    console.wait(
        "a refresh on becoming visible", lambda: fetches() == ("visible", before + 1), timeout=5
    )


def _assert(cond: bool) -> None:
    assert cond


def check_topic_segments(console: ConsolePage, live: BrokerProcess, node_id: int) -> None:
    console.open(live.http_port, f"/topics/{SEG_TOPIC}", "topics")
    assert console.text("topic-title") == SEG_TOPIC
    assert "segment.bytes=1024" in console.text("topic-configs")
    rows = console.rows("partition-row")
    assert [r["data"]["partition"] for r in rows] == ["0", "1", "2"]
    for r in rows:
        c = r["cells"]
        assert c["partition-leader"] == str(node_id)
        assert r["chips"] == [[node_id, "replica", "chip leader"]]
        assert c["partition-isr"] == str(node_id)
        assert (c["partition-log-start"], c["partition-log-end"]) == ("0", str(PER_PARTITION))
        assert (c["partition-hw"], c["partition-lso"]) == (str(PER_PARTITION), str(PER_PARTITION))
    seen = 0
    for part in range(3):
        on_disk = disk_segments(live.data_dir, SEG_TOPIC, part)
        assert len(on_disk) >= 3, on_disk  # 1 KiB segments: the log rolled
        segs = [s for s in console.rows("segment-row") if s["data"]["partition"] == str(part)]
        assert [int(s["data"]["baseOffset"]) for s in segs] == on_disk
        assert [s["cells"]["segment-active"] for s in segs] == [""] * (len(segs) - 1) + ["active"]
        # Each segment ends where the next one starts.
        nexts = [int(s["cells"]["segment-next"]) for s in segs]
        assert nexts == on_disk[1:] + [PER_PARTITION]
        seen += len(segs)
    assert seen == len(console.rows("segment-row"))
    console.screenshot("topic")
    console.assert_no_console_errors()


def check_groups(console: ConsolePage, live: BrokerProcess) -> None:
    total = sum(PER_PARTITION - o for o in COMMITTED.values())
    console.open(live.http_port, "/groups", "groups")

    def listed() -> None:
        rows = console.rows("group-row")
        assert [r["data"]["group"] for r in rows] == [GROUP]
        c = rows[0]["cells"]
        assert (c["group-type"], c["group-protocol-type"]) == ("classic", "consumer")
        assert (c["group-state"], c["group-members"], c["group-lag"]) == ("Stable", "1", str(total))

    console.expect("the group", listed)
    console.screenshot("groups")
    console.open(live.http_port, f"/groups/{GROUP}", "groups")
    assert console.text("group-title") == GROUP
    assert console.text("group-state") == "Stable"
    members = console.rows("member-row")
    assert len(members) == 1
    assert members[0]["cells"]["member-client-id"] == "console-consumer"
    assert members[0]["cells"]["member-assignment"] == f"{SEG_TOPIC} [0, 1, 2]"
    offsets = console.rows("offset-row")
    assert [
        (
            r["data"]["partition"],
            r["cells"]["offset-committed"],
            r["cells"]["offset-end"],
            r["cells"]["offset-lag"],
        )
        for r in offsets
    ] == [
        (str(p), str(o), str(PER_PARTITION), str(PER_PARTITION - o)) for p, o in COMMITTED.items()
    ]
    # The broker samples lag every 5 s: the chart fills in and is redrawn with the total.
    chart_js = (
        "const c = document.querySelector(\"[data-testid='lag-chart']\");"
        "return c && [Number(c.dataset.points), c.dataset.lastLag,"
        " c.querySelector('polyline') !== null];"
    )
    console.wait(
        "the lag chart",
        lambda: (
            (got := console.driver.execute_script(chart_js))
            and got[0] >= 2
            and got[1] == str(total)
            and got[2]
        ),
        timeout=30,
    )
    console.screenshot("group")
    console.assert_no_console_errors()


def check_open_transaction(console: ConsolePage, live: BrokerProcess) -> None:
    console.open(live.http_port, "/transactions", "transactions")

    def ongoing() -> None:
        rows = console.rows("txn-row")
        assert [r["data"]["txn"] for r in rows] == [TXN_ID]
        c = rows[0]["cells"]
        assert c["txn-state"] == "Ongoing"
        assert c["txn-partitions"] == f"{TXN_TOPIC}-0"
        prods = [r for r in console.rows("producer-row") if r["data"]["topic"] == TXN_TOPIC]
        assert len(prods) == 1
        assert prods[0]["data"]["pid"] == c["txn-pid"]
        assert prods[0]["cells"]["producer-txn-start"] == "0"

    console.expect("the open transaction", ongoing)
    console.screenshot("transactions")
    # The open transaction holds the LSO at its first offset while the HW moved on.
    console.open(live.http_port, f"/topics/{TXN_TOPIC}", "topics")
    row = console.rows("partition-row")[0]["cells"]
    assert (row["partition-hw"], row["partition-lso"]) == ("2", "0")
    console.assert_no_console_errors()


def check_committed_transaction(console: ConsolePage, live: BrokerProcess) -> None:
    console.open(live.http_port, "/transactions", "transactions")

    def committed() -> None:
        rows = console.rows("txn-row")
        assert [(r["data"]["txn"], r["cells"]["txn-state"]) for r in rows] == [
            (TXN_ID, "CompleteCommit")
        ]

    console.expect("the committed transaction", committed)
    console.open(live.http_port, f"/topics/{TXN_TOPIC}", "topics")
    row = console.rows("partition-row")[0]["cells"]
    assert (row["partition-hw"], row["partition-lso"]) == ("3", "3")  # 2 records + marker
    console.assert_no_console_errors()


def check_records(console: ConsolePage, live: BrokerProcess) -> None:
    console.open(live.http_port, f"/records/{SEG_TOPIC}/1?offset=0", "records")

    def page(first: int, count: int) -> None:
        rows = console.rows("record-row")
        assert [int(r["data"]["offset"]) for r in rows] == list(range(first, first + count))
        for r in rows:
            i = int(r["data"]["offset"])
            assert r["cells"]["record-key"] == f"key-1-{i}"
            assert r["cells"]["record-headers"] == f"trace=h-1-{i}"
            assert r["cells"]["record-value"] == f"value-1-{i} " + "x" * 60

    console.expect("records 0..19", lambda: page(0, 20))
    console.screenshot("records")
    console.driver.find_element(By.CSS_SELECTOR, "[data-testid='records-next']").click()
    console.expect("records 20..29", lambda: page(20, 10))
    assert not console.driver.find_element(
        By.CSS_SELECTOR, "[data-testid='records-next']"
    ).is_enabled()
    console.driver.find_element(By.CSS_SELECTOR, "[data-testid='records-prev']").click()
    console.expect("back to 0..19", lambda: page(0, 20))

    # Text when UTF-8, hex when not or when asked.
    console.open(live.http_port, f"/records/{PLAIN_TOPIC}/0?offset=0", "records")

    def values(expected: list[tuple[str, str]]) -> None:
        rows = console.rows("record-row")
        got = [(r["cells"]["record-key"], r["cells"]["record-value"]) for r in rows]
        assert got == expected

    console.expect("text values", lambda: values([("k-text", "hi"), ("null", "00 01 ff")]))
    console.driver.find_element(By.CSS_SELECTOR, "[data-testid='records-hex']").click()
    console.expect(
        "hex values", lambda: values([("6b 2d 74 65 78 74", "68 69"), ("null", "00 01 ff")])
    )
    console.driver.find_element(By.CSS_SELECTOR, "[data-testid='records-hex']").click()
    console.assert_no_console_errors()


def check_clients(console: ConsolePage, live: BrokerProcess) -> None:
    """librdkafka asks for telemetry subscriptions (KIP-714) on connect: it is listed."""
    console.open(live.http_port, "/clients", "clients")
    rows = console.rows("client-row")
    assert "console-consumer" in {r["cells"]["client-id"] for r in rows}
    for r in rows:  # every client of this test is confluent-kafka
        assert r["cells"]["client-software"].startswith("confluent-kafka-python 2.")
        assert r["cells"]["client-address"] == "127.0.0.1"
    console.screenshot("clients")
    console.assert_no_console_errors()


# ------------------------------------------------------------------------ cluster mode


def test_stopped_follower_is_highlighted_out_of_sync(tmp_path: Path, console: ConsolePage) -> None:
    cluster = Cluster(tmp_path, 3)
    try:
        cluster.start()
        cluster.create_topic("console-rf3", 1, 3)
        view = cluster.wait_for_isr("console-rf3", 0, {1, 2, 3})
        leader = cluster.brokers[view.leader]
        follower = next(r for r in view.replicas if r != view.leader)
        cluster.brokers[follower].stop()
        cluster.wait_for_isr("console-rf3", 0, set(view.replicas) - {follower})
        console.open(leader.http_port, "/topics/console-rf3", "topics")

        def highlighted() -> None:
            row = console.rows("partition-row")[0]
            assert "warn" in row["cls"]
            oos = [r for r, testid, _ in row["chips"] if testid == "replica-oos"]
            assert oos == [follower]
            assert sorted(r for r, _, _ in row["chips"]) == sorted(view.replicas)
            isr = {int(r) for r in row["cells"]["partition-isr"].split(", ")}
            assert isr == set(view.replicas) - {follower}

        console.expect("the stopped follower out of sync", highlighted)
        console.screenshot("cluster-topic")
        # Only raw protocol requests here: no client asked for telemetry.
        console.open(leader.http_port, "/clients", "clients")
        assert console.text("clients-empty") == "no clients push telemetry"
        console.assert_no_console_errors()
    finally:
        console.leave()
        cluster.stop()


# ------------------------------------------------------------------------ login


def test_login_when_sasl_is_on(tmp_path: Path, console: ConsolePage) -> None:
    plain, sasl = free_port(), free_port()
    listeners = f"PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl}"
    b = BrokerProcess(
        tmp_path / "data",
        port=plain,
        overrides={
            "listeners": listeners,
            "advertised.listeners": listeners,
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                'username="admin" password="admin-secret" user_admin="admin-secret";'
            ),
        },
    )
    b.start()
    try:
        create_topics(b.bootstrap, [NewTopic("console-secret", 2, 1)])
        d = console.driver
        d.get(f"http://127.0.0.1:{b.http_port}/#/topics")
        # The redirect keeps the fragment: the URL is /login#/topics.
        console.wait("the login form", lambda: path_of(d.current_url) == "/login")
        assert not d.find_element(By.CSS_SELECTOR, "[data-testid='login-error']").is_displayed()
        d.find_element(By.CSS_SELECTOR, "[data-testid='login-username']").send_keys("admin")
        d.find_element(By.CSS_SELECTOR, "[data-testid='login-password']").send_keys("wrong")
        d.find_element(By.CSS_SELECTOR, "[data-testid='login-submit']").click()
        console.wait(
            "the form again",
            lambda: d.execute_script(
                "return document.readyState === 'complete'"
                " && document.querySelector(\"[data-testid='login-form']\") !== null"
                " && document.getElementById('view') === null;"
            ),
        )
        assert path_of(d.current_url) == "/login"
        assert console.text("login-error") == "Wrong user name or password."
        assert d.get_cookies() == []
        # The 401 of the refused form is the one console entry this test expects.
        errors = console.severe_logs()
        assert all("/login" in e["message"] and "401" in e["message"] for e in errors), errors
        console.screenshot("login")
        d.find_element(By.CSS_SELECTOR, "[data-testid='login-username']").send_keys("admin")
        d.find_element(By.CSS_SELECTOR, "[data-testid='login-password']").send_keys("admin-secret")
        d.find_element(By.CSS_SELECTOR, "[data-testid='login-submit']").click()
        console.wait("the console", lambda: path_of(d.current_url) == "/")
        assert [c["name"] for c in d.get_cookies()] == ["pybroker_console"]
        console.open(b.http_port, "/topics", "topics")
        console.expect(
            "the topic after login",
            lambda: _assert(
                [
                    (r["data"]["topic"], r["cells"]["topic-partitions"])
                    for r in console.rows("topic-row")
                ]
                == [("console-secret", "2")]
            ),
        )
        console.assert_no_console_errors()
        # Log out: the session ends and the console asks for the login again.
        d.find_element(By.CSS_SELECTOR, "[data-testid='logout']").click()
        console.wait("logged out", lambda: path_of(d.current_url) == "/login")
        assert d.get_cookies() == []
        d.get(f"http://127.0.0.1:{b.http_port}/#/groups")
        console.wait("the login again", lambda: path_of(d.current_url) == "/login")
        console.assert_no_console_errors()
    finally:
        console.leave()
        b.stop()


def path_of(url: str) -> str:
    return urllib.parse.urlsplit(url).path
