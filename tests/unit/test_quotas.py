"""Client quota units: Kafka's Rate arithmetic, the DefaultQuotaCallback's resolution
order, the throttle patched into responses, and the entity store's layout."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from pybroker.broker.client_quota_manager import ClientQuotaManager, with_throttle
from pybroker.broker.quota_rate import Rate
from pybroker.protocol.codec import build, encode_body, response_type
from pybroker.protocol.fetch_encoder import encode_fetch_response
from pybroker.replication import client_quotas as cq
from pybroker.replication.entity_configs import LocalEntityConfigs, _path, nested_type


def test_rate_counts_at_least_samples_minus_one_windows() -> None:
    r = Rate(11, 1000)
    r.record(5_000, 0)
    assert r.window_size(500) == 10_500  # 500 ms elapsed + 10 assumed full windows
    assert abs(r.measure(500) - 5_000 / 10.5) < 1e-9
    # 10 KB/s quota: 20 KB at once is within (20 KB / 10 s); 120 KB more is over by 13x.
    r2 = Rate(11, 1000)
    assert r2.record_and_throttle(20_000, 10_000, 0) == 0
    throttle = r2.record_and_throttle(120_000, 10_000, 0)
    assert throttle == round((140_000 / 10.0 - 10_000) / 10_000 * 10_000)


def test_pybrokers_rate_counts_only_the_time_really_elapsed() -> None:
    # A fresh client gets no ten-second allowance: one window at least, then real time.
    r = Rate(11, 1000, min_windows=1)
    r.record(5_000, 0)
    assert r.window_size(500) == 1_500  # 500 ms + the missing full window
    assert r.window_size(2_500) == 2_500
    r2 = Rate(11, 1000, min_windows=1)
    assert r2.record_and_throttle(10_000, 10_000, 0) == 0  # one window's worth
    assert r2.record_and_throttle(20_000, 10_000, 0) == 2_000  # 2 s to pay the rest back


def test_rate_samples_expire_after_the_whole_window() -> None:
    r = Rate(11, 1000)
    r.record(1_000_000, 0)
    for t in range(1000, 11_000, 1000):
        r.record(1, t)
    assert r.measure(10_999) > 90_000
    assert r.measure(11_000 + 1) < 10  # the first sample's last event is 11 s old: reset


def _manager(entities: dict[cq.Entity, dict[str, float]]) -> ClientQuotaManager:
    m = ClientQuotaManager(LocalEntityConfigs(Path("/nonexistent")), poll=False)
    for ent, values in entities.items():
        for key, value in values.items():
            m._by_key.setdefault(key, {})[ent] = value
    m.active = True
    return m


def test_most_specific_entity_wins_in_kafkas_order() -> None:
    key = "producer_byte_rate"
    layers = [
        (cq.entity(user="u", client_id="c"), 1.0),
        (cq.entity(user="u", client_id=None), 2.0),
        (cq.entity(user="u"), 3.0),
        (cq.entity(user=None, client_id="c"), 4.0),
        (cq.entity(user=None, client_id=None), 5.0),
        (cq.entity(user=None), 6.0),
        (cq.entity(client_id="c"), 7.0),
        (cq.entity(client_id=None), 8.0),
    ]
    for i in range(len(layers)):
        m = _manager({ent: {key: v} for ent, v in layers[i:]})
        tags = m.metric_tags(key, "u", "c")
        assert m.quota_limit(key, *tags) == layers[i][1], (i, tags)
    # A user-level quota is shared by all of the user's clients; a default-client one is not.
    m = _manager({cq.entity(user="u"): {key: 1.0}})
    assert m.metric_tags(key, "u", "a") == m.metric_tags(key, "u", "b") == ("u", "")
    m = _manager({cq.entity(client_id=None): {key: 1.0}})
    assert m.metric_tags(key, "u", "a") == ("", "a")
    assert m.quota_limit(key, "", "") is None  # no client id: no client quota applies
    assert m.record("consumer_byte_rate", "User:u", "a", 1e12) == 0  # other key: no quota


def test_throttle_is_written_into_every_response_form() -> None:
    kio = build(response_type(3, 12), throttle_time=0, brokers=[], topics=[])
    patched = with_throttle(kio, 3, 12, 250)
    assert patched.throttle_time.total_seconds() == 0.25
    body = encode_body(build(response_type(19, 7), throttle_time=0, topics=[]))
    assert with_throttle(body, 19, 7, 77)[:4] == (77).to_bytes(4, "big")
    assert with_throttle(body, 19, 7, 77)[4:] == body[4:]
    fetch = encode_fetch_response(13, [], throttle_ms=0, session_id=9)
    out = with_throttle(fetch, 1, 13, 1234)
    assert bytes(out.parts[0][:4]) == (1234).to_bytes(4, "big") and out.size == fetch.size


def test_quota_entities_keep_kafkas_layout_and_scram_keys(tmp_path: Path) -> None:
    store = LocalEntityConfigs(tmp_path)
    scram = "salt=YQ==,stored_key=Yg==,server_key=Yw==,iterations=4096"

    async def run() -> dict[cq.Entity, dict[str, float]]:
        await store.set("users", "alice", {"SCRAM-SHA-256": scram})
        await cq.apply(store, cq.entity(user="alice"), {"producer_byte_rate": 1024.0})
        await cq.apply(store, cq.entity(user="a/b", client_id=None), {"request_percentage": 12.5})
        await cq.apply(store, cq.entity(client_id=None), {"consumer_byte_rate": 5.0})
        await cq.apply(store, cq.entity(user="alice"), {"producer_byte_rate": None})
        return await cq.load_all(store)

    found = asyncio.run(run())
    data = json.loads((tmp_path / "pybroker-entity-configs.json").read_text())
    assert data["users"]["alice"] == {"SCRAM-SHA-256": scram}
    assert data["users/a%2Fb/clients"]["<default>"] == {"request_percentage": "12.5"}
    assert data["clients"]["<default>"] == {"consumer_byte_rate": "5"}
    assert found == {
        cq.entity(user="a/b", client_id=None): {"request_percentage": 12.5},
        cq.entity(client_id=None): {"consumer_byte_rate": 5.0},
    }
    assert _path(nested_type("a/b"), "<default>") == "/config/users/a%2Fb/clients/<default>"
    assert _path("clients", "x y") == "/config/clients/x%20y"
