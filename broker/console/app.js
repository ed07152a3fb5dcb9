// pybroker web console: a single page app over the broker's JSON API (/api/*).
// Plain DOM, no framework: every page is a function that fetches JSON and returns the
// nodes to show. Live pages refresh every REFRESH_MS while the tab is visible.
"use strict";

const REFRESH_MS = 3000;
const RECORDS_PAGE = 20;

// ---- small DOM helpers --------------------------------------------------------------

/** h("td", {class: "num", "data-testid": "x"}, "text", otherNode) -> element. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : String(c));
  return el;
}

function caption(text) {
  return h("p", { class: "caption" }, text);
}

function table(testid, headers, rows, empty) {
  if (!rows.length) return h("p", { class: "muted", "data-testid": testid + "-empty" }, empty);
  // A column of numbers gets a right-aligned header like its cells.
  const numeric = (i) => rows[0].children[i] && rows[0].children[i].classList.contains("num");
  return h(
    "table",
    { "data-testid": testid },
    h("thead", {}, h("tr", {}, headers.map((t, i) => h("th", { class: numeric(i) ? "num" : null }, t)))),
    h("tbody", {}, rows),
  );
}

function cell(testid, value, cls) {
  return h("td", { "data-testid": testid, class: cls }, value === null || value === undefined ? "–" : value);
}

function num(testid, value) {
  return cell(testid, value, "num");
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

function bytesCell(testid, n) {
  const td = num(testid, fmtBytes(n));
  if (n !== null && n !== undefined) td.setAttribute("data-bytes", n);
  return td;
}

function fmtRate(x) {
  if (x === null || x === undefined) return "–";
  return x >= 100 ? x.toFixed(0) : x.toFixed(1);
}

function fmtTime(ms) {
  if (ms === null || ms === undefined || ms < 0) return "–";
  return new Date(ms).toISOString().replace("T", " ").replace("Z", "");
}

function topicLink(name) {
  return h("a", { href: "#/topics/" + encodeURIComponent(name) }, name);
}

function b64ToBytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function toHex(b64) {
  return Array.from(b64ToBytes(b64), (b) => b.toString(16).padStart(2, "0")).join(" ");
}

// ---- data access ----------------------------------------------------------------------

class HttpError extends Error {}

async function api(path) {
  const resp = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (resp.status === 401) {
    window.location.assign("/login");
    throw new HttpError("login required");
  }
  let body = null;
  try {
    body = await resp.json();
  } catch (_) {
    body = null;
  }
  if (!resp.ok) throw new HttpError((body && body.error) || `${path}: HTTP ${resp.status}`);
  return body;
}

// ---- pages --------------------------------------------------------------------------------

const state = { showInternal: false, hex: false };

async function pageOverview() {
  const [c, rates] = await Promise.all([api("/api/cluster"), api("/api/rates")]);
  const rows = c.brokers.map((b) =>
    h(
      "tr",
      { "data-testid": "broker-row", "data-broker-id": b.id, class: b.is_controller ? "controller" : null },
      num("broker-id", b.id),
      cell("broker-address", `${b.host}:${b.port}`),
      cell("broker-rack", b.rack),
      h(
        "td",
        { "data-testid": "broker-listeners" },
        b.listeners.map((l) =>
          h(
            "span",
            { class: "chip", title: l.security_protocol },
            `${l.name} ${l.host}:${l.port}` + (l.name === l.security_protocol ? "" : ` (${l.security_protocol})`),
          ),
        ),
      ),
      h(
        "td",
        {},
        b.is_controller ? h("span", { class: "badge", "data-testid": "controller-badge" }, "controller") : null,
        b.id === c.node_id ? h("span", { class: "badge plain" }, "this broker") : null,
      ),
    ),
  );
  return [
    h("h1", {}, "Cluster overview"),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Cluster id"),
      h("dd", { "data-testid": "cluster-id" }, c.cluster_id),
      h("dt", {}, "Mode"),
      h("dd", { "data-testid": "cluster-mode" }, c.mode === "zookeeper" ? "cluster (ZooKeeper)" : "single node"),
      h("dt", {}, "Controller"),
      h("dd", { "data-testid": "controller-id" }, c.controller_id),
      h("dt", {}, "This broker"),
      h("dd", { "data-testid": "node-id" }, c.node_id),
      h("dt", {}, "pybroker version"),
      h("dd", { "data-testid": "version" }, c.version),
      h("dt", {}, "Up since"),
      h("dd", {}, fmtTime(c.started_ms)),
      h("dt", {}, "Traffic"),
      h(
        "dd",
        { "data-testid": "total-rates" },
        `${fmtRate(rates.total.messages_in_per_sec)} msg/s in, ${fmtBytes(Math.round(rates.total.bytes_in_per_sec))}/s in, ` +
          `${fmtBytes(Math.round(rates.total.bytes_out_per_sec))}/s out`,
      ),
    ),
    h("h2", {}, "Brokers"),
    caption(
      "A broker is one server process holding partition replicas. The controller is the one broker that " +
        "elects partition leaders and records ISR changes for the whole cluster.",
    ),
    table("brokers", ["Id", "Address", "Rack", "Listeners", ""], rows, "No brokers registered."),
  ];
}

async function pageTopics() {
  const data = await api("/api/topics");
  const shown = data.topics.filter((t) => state.showInternal || !t.internal);
  const rows = shown.map((t) =>
    h(
      "tr",
      { "data-testid": "topic-row", "data-topic": t.name, class: t.offline ? "bad" : t.under_replicated ? "warn" : null },
      h("td", { "data-testid": "topic-name" }, topicLink(t.name), t.internal ? h("span", { class: "badge plain" }, "internal") : null),
      num("topic-partitions", t.partitions),
      num("topic-rf", t.replication_factor),
      num("topic-urp", t.under_replicated),
      num("topic-offline", t.offline),
      bytesCell("topic-size", t.size_bytes),
      num("topic-msg-in", fmtRate(t.messages_in_per_sec)),
      num("topic-bytes-in", fmtBytes(Math.round(t.bytes_in_per_sec)) + "/s"),
      num("topic-bytes-out", fmtBytes(Math.round(t.bytes_out_per_sec)) + "/s"),
    ),
  );
  const toggle = h("input", {
    type: "checkbox",
    "data-testid": "show-internal",
    checked: state.showInternal,
    onchange: (e) => {
      state.showInternal = e.target.checked;
      refresh();
    },
  });
  return [
    h("h1", {}, "Topics"),
    caption(
      "A topic is split into partitions, each an ordered log replicated to replication-factor brokers. " +
        "Under-replicated: a replica has fallen out of the ISR; offline: no leader can serve the partition.",
    ),
    h("label", { class: "toggle" }, toggle, " show internal topics (__consumer_offsets, __transaction_state)"),
    table(
      "topics",
      ["Topic", "Partitions", "RF", "Under-replicated", "Offline", "Size", "Msg/s in", "Bytes in", "Bytes out"],
      rows,
      "No topics yet.",
    ),
  ];
}

function replicaChips(p, testid) {
  return p.replicas.map((r) => {
    const oos = p.out_of_sync.includes(r);
    const classes = ["chip"];
    if (oos) classes.push("oos");
    if (r === p.leader) classes.push("leader");
    return h(
      "span",
      {
        class: classes.join(" "),
        "data-testid": oos ? "replica-oos" : testid,
        "data-replica": r,
        title: oos ? "out of sync: not in the ISR" : r === p.leader ? "leader" : "in sync follower",
      },
      String(r),
    );
  });
}

function segmentsTable(p) {
  const rows = p.segments.map((g) =>
    h(
      "tr",
      { "data-testid": "segment-row", "data-partition": p.partition, "data-base-offset": g.base_offset, class: g.active ? "active" : null },
      num("segment-base", g.base_offset),
      num("segment-next", g.next_offset),
      bytesCell("segment-size", g.size_bytes),
      cell("segment-first-ts", fmtTime(g.first_timestamp)),
      cell("segment-max-ts", fmtTime(g.max_timestamp)),
      bytesCell("segment-index", g.index_bytes),
      bytesCell("segment-timeindex", g.timeindex_bytes),
      bytesCell("segment-txnindex", g.txnindex_bytes),
      cell("segment-active", g.active ? "active" : ""),
    ),
  );
  return h(
    "div",
    { class: "segments", "data-testid": "segments", "data-partition": p.partition },
    h("h3", {}, `Partition ${p.partition}: ${p.segments.length} segment${p.segments.length === 1 ? "" : "s"}`),
    table(
      "segments-table",
      ["Base offset", "Next offset", "Size", "First timestamp", "Max timestamp", ".index", ".timeindex", ".txnindex", ""],
      rows,
      p.local ? "No segments." : "No replica of this partition on this broker.",
    ),
  );
}

async function pageTopic(name) {
  const t = await api("/api/topics/" + encodeURIComponent(name));
  const rows = t.partitions.map((p) =>
    h(
      "tr",
      {
        "data-testid": "partition-row",
        "data-partition": p.partition,
        class: p.offline ? "bad" : p.out_of_sync.length ? "warn" : null,
      },
      num("partition-id", p.partition),
      num("partition-leader", p.offline ? "offline" : p.leader),
      num("partition-epoch", p.leader_epoch),
      h("td", { "data-testid": "partition-replicas" }, replicaChips(p, "replica")),
      h("td", { "data-testid": "partition-isr" }, p.isr.join(", ")),
      num("partition-log-start", p.log_start_offset),
      num("partition-log-end", p.log_end_offset),
      num("partition-hw", p.high_watermark),
      num("partition-lso", p.last_stable_offset),
      bytesCell("partition-size", p.size_bytes),
      h("td", {}, h("a", { href: `#/records/${encodeURIComponent(t.name)}/${p.partition}?offset=0` }, "records")),
    ),
  );
  const configs = Object.entries(t.configs || {}).sort();
  return [
    h("h1", {}, "Topic ", h("span", { "data-testid": "topic-title" }, t.name), t.internal ? h("span", { class: "badge plain" }, "internal") : null),
    h("p", { class: "muted" }, "Topic id ", h("code", { "data-testid": "topic-id" }, t.topic_id)),
    configs.length
      ? h("p", { "data-testid": "topic-configs" }, "Configs: ", configs.map(([k, v]) => h("span", { class: "chip" }, `${k}=${v}`)))
      : null,
    h("h2", {}, "Partitions"),
    caption(
      "Each partition has one leader (bold) that takes writes and followers that copy it. The ISR " +
        "(in-sync replicas) are those caught up with the leader; a replica out of sync is shown in red.",
    ),
    caption(
      "Log start/end: first offset still kept and next offset to be written. HW (high watermark): " +
        "records below it are on every ISR replica and visible to consumers. LSO (last stable offset): " +
        "below it no transaction is still open; read_committed consumers stop there.",
    ),
    table(
      "partitions",
      ["Partition", "Leader", "Epoch", "Replicas", "ISR", "Log start", "Log end", "HW", "LSO", "Size", ""],
      rows,
      "No partitions.",
    ),
    h("h2", {}, "Segments on disk"),
    caption(
      "A partition's log is a series of segment files named by their base offset (first offset inside); " +
        "only the last, active one is written. Each .log has a sparse .index (offset to file position) " +
        "and .timeindex (timestamp to offset) so a fetch or a time lookup needs no scan; .txnindex lists aborted transactions.",
    ),
    t.partitions.map(segmentsTable),
  ];
}

async function pageGroups() {
  const data = await api("/api/groups");
  const rows = data.groups.map((g) =>
    h(
      "tr",
      { "data-testid": "group-row", "data-group": g.group_id },
      h("td", { "data-testid": "group-id" }, h("a", { href: "#/groups/" + encodeURIComponent(g.group_id) }, g.group_id)),
      cell("group-type", g.group_type),
      cell("group-protocol-type", g.protocol_type),
      cell("group-state", g.state),
      num("group-members", g.members),
      num("group-lag", g.total_lag),
    ),
  );
  return [
    h("h1", {}, "Consumer groups"),
    caption(
      "Consumers in a group share a topic's partitions; the group coordinator stores each group's committed " +
        "offsets in __consumer_offsets. Lag = log end offset − committed offset: records not yet consumed.",
    ),
    table("groups", ["Group", "Type", "Protocol type", "State", "Members", "Total lag"], rows, "No consumer groups."),
  ];
}

/** The lag-over-time chart: a polyline over lag_history, y from 0 to the max lag. */
function lagChart(history) {
  const W = 640;
  const H = 180;
  const pad = { l: 56, r: 12, t: 12, b: 28 };
  const svg = s("svg", {
    class: "chart",
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-label": "total lag over time",
    "data-testid": "lag-chart",
    "data-points": history.length,
    "data-last-lag": history.length ? history[history.length - 1].lag : "",
  });
  svg.append(s("rect", { x: pad.l, y: pad.t, width: W - pad.l - pad.r, height: H - pad.t - pad.b, class: "plot" }));
  if (!history.length) {
    svg.append(s("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis" }, "no samples yet (one every 5 s)"));
    return svg;
  }
  const t0 = history[0].t;
  const t1 = Math.max(history[history.length - 1].t, t0 + 1);
  const maxLag = Math.max(1, ...history.map((p) => p.lag));
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (W - pad.l - pad.r);
  const y = (v) => H - pad.b - (v / maxLag) * (H - pad.t - pad.b);
  const pts = history.map((p) => `${x(p.t).toFixed(1)},${y(p.lag).toFixed(1)}`).join(" ");
  svg.append(s("polyline", { points: pts, class: "line", "data-testid": "lag-line" }));
  const last = history[history.length - 1];
  svg.append(s("circle", { cx: x(last.t).toFixed(1), cy: y(last.lag).toFixed(1), r: 3, class: "dot" }));
  svg.append(s("text", { x: pad.l - 6, y: pad.t + 10, "text-anchor": "end", class: "axis" }, String(maxLag)));
  svg.append(s("text", { x: pad.l - 6, y: H - pad.b, "text-anchor": "end", class: "axis" }, "0"));
  svg.append(s("text", { x: pad.l, y: H - 8, class: "axis" }, new Date(t0).toLocaleTimeString()));
  svg.append(s("text", { x: W - pad.r, y: H - 8, "text-anchor": "end", class: "axis" }, new Date(last.t).toLocaleTimeString()));
  return svg;
}

async function pageGroup(id) {
  const g = await api("/api/groups/" + encodeURIComponent(id));
  const members = g.members.map((m) =>
    h(
      "tr",
      { "data-testid": "member-row", "data-member": m.member_id },
      cell("member-id", m.member_id, "mono"),
      cell("member-client-id", m.client_id),
      cell("member-host", m.client_host),
      cell("member-instance", m.group_instance_id),
      h(
        "td",
        { "data-testid": "member-assignment" },
        m.assignment.map((a) => h("span", { class: "chip" }, `${a.topic} [${a.partitions.join(", ")}]`)),
      ),
    ),
  );
  const offsets = g.offsets.map((o) =>
    h(
      "tr",
      { "data-testid": "offset-row", "data-topic": o.topic, "data-partition": o.partition, class: o.lag > 0 ? "warn" : null },
      h("td", {}, topicLink(o.topic)),
      num("offset-partition", o.partition),
      num("offset-committed", o.committed_offset),
      num("offset-end", o.log_end_offset),
      num("offset-lag", o.lag),
      cell("offset-metadata", o.metadata),
    ),
  );
  return [
    h("h1", {}, "Group ", h("span", { "data-testid": "group-title" }, g.group_id)),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Type"),
      h("dd", { "data-testid": "group-type" }, g.group_type),
      h("dt", {}, "Protocol type"),
      h("dd", { "data-testid": "group-protocol-type" }, g.protocol_type || "–"),
      h("dt", {}, "Assignor"),
      h("dd", { "data-testid": "group-protocol" }, g.protocol || "–"),
      h("dt", {}, "State"),
      h("dd", { "data-testid": "group-state" }, g.state),
      h("dt", {}, "Epoch"),
      h("dd", { "data-testid": "group-epoch" }, g.epoch),
    ),
    caption(
      "classic groups rebalance through JoinGroup/SyncGroup (the generation is the epoch); consumer groups " +
        "(KIP-848) are assigned by the broker with heartbeats, each change bumping the group epoch.",
    ),
    h("h2", {}, "Members"),
    table("members", ["Member id", "Client id", "Host", "Static id", "Assignment"], members, "No active members."),
    h("h2", {}, "Committed offsets and lag"),
    table("offsets", ["Topic", "Partition", "Committed", "Log end", "Lag", "Metadata"], offsets, "No committed offsets."),
    h("h2", {}, "Total lag over time"),
    caption("Sampled by the broker every 5 s, last 30 minutes."),
    lagChart(g.lag_history),
  ];
}

async function pageTransactions() {
  const data = await api("/api/transactions");
  const txns = data.transactions.map((t) =>
    h(
      "tr",
      { "data-testid": "txn-row", "data-txn": t.transactional_id },
      cell("txn-id", t.transactional_id),
      num("txn-pid", t.producer_id),
      num("txn-epoch", t.producer_epoch),
      cell("txn-state", t.state),
      num("txn-timeout", t.timeout_ms),
      cell("txn-start", fmtTime(t.start_ms)),
      h(
        "td",
        { "data-testid": "txn-partitions" },
        t.partitions.map((p) => h("span", { class: "chip" }, `${p.topic}-${p.partition}`)),
      ),
    ),
  );
  const producers = data.producers.map((p) =>
    h(
      "tr",
      { "data-testid": "producer-row", "data-topic": p.topic, "data-partition": p.partition, "data-pid": p.producer_id },
      h("td", {}, topicLink(p.topic)),
      num("producer-partition", p.partition),
      num("producer-id", p.producer_id),
      num("producer-epoch", p.producer_epoch),
      num("producer-seq", p.last_sequence),
      cell("producer-last-ts", fmtTime(p.last_timestamp)),
      num("producer-txn-start", p.current_txn_start_offset),
    ),
  );
  return [
    h("h1", {}, "Transactions"),
    caption(
      "A transactional producer writes to several partitions atomically. Its transaction coordinator keeps " +
        "the state (Ongoing, PrepareCommit, CompleteCommit, …) in __transaction_state and finally writes a " +
        "commit or abort marker into every partition.",
    ),
    table("transactions", ["Transactional id", "Producer id", "Epoch", "State", "Timeout ms", "Started", "Partitions"], txns, "No transactional ids."),
    h("h2", {}, "Producers per partition"),
    caption(
      "Each partition leader remembers the last sequence number per idempotent producer to drop duplicates " +
        "on retry; an open transaction's first offset holds back the partition's LSO.",
    ),
    table(
      "producers",
      ["Topic", "Partition", "Producer id", "Epoch", "Last sequence", "Last write", "Open txn from offset"],
      producers,
      "No active producers.",
    ),
  ];
}

function payload(b64, text) {
  if (b64 === null || b64 === undefined) return h("span", { class: "muted" }, "null");
  if (state.hex || text === null || text === undefined) return h("code", { class: "hex" }, toHex(b64));
  return text;
}

async function pageRecords(topic, partition, offset) {
  const topics = await api("/api/topics");
  const names = topics.topics.map((t) => t.name);
  const tSel = h("select", { "data-testid": "records-topic" }, names.map((n) => h("option", { value: n, selected: n === topic }, n)));
  const pIn = h("input", { type: "number", min: 0, value: partition ?? 0, "data-testid": "records-partition" });
  const oIn = h("input", { type: "number", min: 0, value: offset ?? 0, "data-testid": "records-offset" });
  const go = (o) => {
    window.location.hash = `#/records/${encodeURIComponent(tSel.value)}/${pIn.value || 0}?offset=${Math.max(0, o)}`;
  };
  const form = h(
    "form",
    {
      class: "controls",
      onsubmit: (e) => {
        e.preventDefault();
        go(Number(oIn.value || 0));
      },
    },
    h("label", {}, "Topic ", tSel),
    h("label", {}, "Partition ", pIn),
    h("label", {}, "From offset ", oIn),
    h("button", { type: "submit", "data-testid": "records-go" }, "Read"),
    h(
      "label",
      { class: "toggle" },
      h("input", {
        type: "checkbox",
        checked: state.hex,
        "data-testid": "records-hex",
        onchange: (e) => {
          state.hex = e.target.checked;
          refresh();
        },
      }),
      " hex",
    ),
  );
  const head = [
    h("h1", {}, "Record browser"),
    caption(
      "Read a partition from an offset, as a consumer would (up to the high watermark). Keys and values are " +
        "plain bytes to Kafka: shown as text when they are UTF-8, else as hex. Headers are key/value pairs " +
        "carried beside the value.",
    ),
    form,
  ];
  if (topic === null || !names.includes(topic)) {
    return [...head, h("p", { class: "muted", "data-testid": "records-pick" }, "Pick a topic and partition.")];
  }
  const q = new URLSearchParams({ topic, partition: String(partition), offset: String(offset), max: String(RECORDS_PAGE) });
  const r = await api("/api/records?" + q.toString());
  const rows = r.records.map((rec) =>
    h(
      "tr",
      { "data-testid": "record-row", "data-offset": rec.offset, class: rec.control ? "control" : null },
      num("record-offset", rec.offset),
      cell("record-ts", `${fmtTime(rec.timestamp)} (${rec.timestamp_type === "log_append" ? "log append" : "create"})`),
      h("td", { "data-testid": "record-key" }, payload(rec.key_b64, rec.key_text)),
      h(
        "td",
        { "data-testid": "record-headers" },
        rec.headers.map((hd) => h("span", { class: "chip", "data-testid": "record-header" }, `${hd.key}=`, payload(hd.value_b64, hd.value_text))),
      ),
      h("td", { "data-testid": "record-value" }, rec.control ? h("span", { class: "badge plain" }, "control marker") : payload(rec.value_b64, rec.value_text)),
      cell("record-pid", rec.producer_id >= 0 ? `${rec.producer_id}${rec.transactional ? " (txn)" : ""}` : ""),
    ),
  );
  const prevOffset = Math.max(r.log_start_offset, r.offset - RECORDS_PAGE);
  const nav = h(
    "div",
    { class: "pager" },
    h("button", { type: "button", "data-testid": "records-prev", disabled: r.offset <= r.log_start_offset, onclick: () => go(prevOffset) }, "← previous"),
    h("span", { "data-testid": "records-range" }, `log start ${r.log_start_offset} · high watermark ${r.high_watermark} · showing from ${r.offset}`),
    h("button", { type: "button", "data-testid": "records-next", disabled: r.next_offset >= r.high_watermark, onclick: () => go(r.next_offset) }, "next →"),
  );
  return [
    ...head,
    nav,
    table("records", ["Offset", "Timestamp", "Key", "Headers", "Value", "Producer"], rows, "No records from this offset."),
  ];
}

async function pageClients() {
  const data = await api("/api/clients");
  const rows = data.clients.map((c) =>
    h(
      "tr",
      { "data-testid": "client-row", "data-client": c.client_instance_id },
      cell("client-id", c.client_id),
      cell("client-instance", c.client_instance_id, "mono"),
      cell("client-software", `${c.software_name} ${c.software_version}`),
      cell("client-address", c.source_address),
      cell("client-last-push", fmtTime(c.last_push_ms)),
      h(
        "td",
        { "data-testid": "client-metrics" },
        h(
          "details",
          {},
          h("summary", {}, `${c.metrics.length} metrics`),
          h(
            "ul",
            { class: "metrics" },
            c.metrics.map((m) => {
              const attrs = Object.entries(m.attributes || {}).map(([k, v]) => `${k}=${v}`).join(", ");
              return h("li", {}, h("code", {}, m.name), attrs ? ` {${attrs}}` : "", ` = ${m.value}`);
            }),
          ),
        ),
      ),
    ),
  );
  return [
    h("h1", {}, "Clients"),
    caption(
      "KIP-714: clients that support it (librdkafka, the Java client) push their own metrics to the broker " +
        "when a client-metrics subscription matches them.",
    ),
    rows.length
      ? table("clients", ["Client id", "Instance id", "Software", "Address", "Last push", "Metrics"], rows, "")
      : h("p", { class: "muted", "data-testid": "clients-empty" }, "no clients push telemetry"),
  ];
}

// ---- router and refresh -----------------------------------------------------------------

/** "#/records/t/0?offset=5" -> {parts: ["records", "t", "0"], query}. */
function parseRoute() {
  const raw = window.location.hash.replace(/^#/, "") || "/";
  const [path, qs] = raw.split("?");
  const decode = (p) => {
    try {
      return decodeURIComponent(p);
    } catch (_) {
      return p; // a hand-typed "%" that is no escape
    }
  };
  const parts = path.split("/").filter(Boolean).map(decode);
  const query = new URLSearchParams(qs || "");
  return { parts, query };
}

function pageFor(route) {
  const [name, a, b] = route.parts;
  switch (name || "overview") {
    case "overview":
      return { render: pageOverview, live: true };
    case "topics":
      return a === undefined ? { render: pageTopics, live: true } : { render: () => pageTopic(a), live: true };
    case "groups":
      return a === undefined ? { render: pageGroups, live: true } : { render: () => pageGroup(a), live: true };
    case "transactions":
      return { render: pageTransactions, live: true };
    case "records": {
      const offset = Number(route.query.get("offset") || 0);
      const partition = b === undefined ? 0 : Number(b);
      return { render: () => pageRecords(a ?? null, partition, offset), live: false };
    }
    case "clients":
      return { render: pageClients, live: true };
    default:
      return { render: async () => [h("h1", {}, "Not found"), h("p", {}, `No page ${window.location.hash}`)], live: false };
  }
}

let timer = null;
let generation = 0;

function setStatus(text, bad) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.classList.toggle("bad", Boolean(bad));
}

async function refresh() {
  const gen = ++generation;
  if (timer !== null) clearTimeout(timer);
  timer = null;
  const route = parseRoute();
  const page = pageFor(route);
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("current", a.getAttribute("data-route") === (route.parts[0] || "overview"));
  }
  const view = document.getElementById("view");
  try {
    const nodes = await page.render();
    if (gen !== generation) return; // the user moved on meanwhile
    // Keep focus and open <details> across a live redraw.
    const open = new Set(Array.from(view.querySelectorAll("details[open]"), (d) => d.textContent.slice(0, 40)));
    view.replaceChildren(...[nodes].flat(2).filter(Boolean));
    for (const d of view.querySelectorAll("details")) if (open.has(d.textContent.slice(0, 40))) d.open = true;
    view.setAttribute("data-page", route.parts[0] || "overview");
    view.setAttribute("data-loaded", String(Date.now()));
    setStatus("updated " + new Date().toLocaleTimeString() + (page.live ? "" : " (static)"));
  } catch (err) {
    if (gen !== generation) return;
    setStatus("error: " + err.message, true);
    if (!view.hasAttribute("data-loaded") || view.getAttribute("data-page") !== (route.parts[0] || "overview")) {
      view.replaceChildren(h("p", { class: "error", "data-testid": "error" }, err.message));
    }
  }
  if (page.live && gen === generation && !document.hidden) timer = setTimeout(refresh, REFRESH_MS);
}

window.addEventListener("hashchange", () => {
  document.getElementById("view").removeAttribute("data-loaded");
  refresh();
});
document.addEventListener("visibilitychange", () => {
  if (document.hidden) {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  } else {
    refresh();
  }
});
document.addEventListener("DOMContentLoaded", refresh);
