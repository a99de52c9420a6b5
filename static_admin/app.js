/**
 * RealTube admin dashboard: plain ES module, no build step.
 *
 * Data sources (all same-origin, the session cookie is HttpOnly so this script never sees it):
 * - `GET /api/admin/session` decides between the login form and the dashboard;
 * - `GET /api/live/admin` (SSE): `stats` every second (cumulative counters of every instance,
 *   turned into rates here from successive snapshots) and `deltas` (live score changes);
 * - `GET /api/admin/{top,auto-flagged,audit}`, refreshed every 15 s and after each action;
 * - `POST /api/admin/{videos|channels|users}/{id}/{action}` for moderation.
 *
 * Everything from the server is written with `textContent`, never as HTML.
 *
 * @module static_admin/app
 */

import uPlot from './vendor/uPlot-1.6.32.esm.js';

/** Seconds of history kept for the charts. */
const HISTORY_SECONDS = 300;
/** Window over which rates are computed (s): long enough to smooth, short enough to move. */
const RATE_WINDOW_SECONDS = 10;
const FEED_MAX = 100;
const REFRESH_MS = 15_000;
/** After score changes, the lists are re-read at most this often. */
const CHANGE_REFRESH_MS = 3_000;
const ACTIONS = {
  videos: ['lock', 'unlock', 'hide', 'unhide'],
  channels: ['lock', 'unlock'],
  users: ['shadowban', 'unban'],
};

const $ = (id) => document.getElementById(id);

/** @type {EventSource|null} */
let stream = null;
/** @type {ReturnType<typeof setInterval>|null} */
let refresher = null;
/** @type {ReturnType<typeof setTimeout>|null} */
let changeRefresh = null;
/** @type {Array<{at: number, stats: any}>} successive snapshots, oldest first */
const history = [];
const charts = { rates: null, lag: null };

// -- HTTP --------------------------------------------------------------------------------------

/** An API error, with the contract's code. */
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * JSON request to the admin API; a 401 sends the user back to the login form.
 * @param {string} path
 * @param {{method?: string, body?: object}} [options]
 * @returns {Promise<any>}
 */
async function api(path, { method = 'GET', body } = {}) {
  const response = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error ?? {};
    if (response.status === 401 && path !== '/api/admin/login') showLogin();
    throw new ApiError(response.status, error.code ?? 'HTTP', error.message ?? response.statusText);
  }
  return data;
}

// -- login / logout ----------------------------------------------------------------------------

function showLogin(message = '') {
  stopLive();
  $('dashboard').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
  $('token').focus();
}

async function showDashboard() {
  $('login').hidden = true;
  $('dashboard').hidden = false;
  $('logout').hidden = false;
  setupCharts();
  startLive();
  await refreshLists();
  refresher = setInterval(refreshLists, REFRESH_MS);
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('login-error').textContent = '';
  try {
    await api('/api/admin/login', { method: 'POST', body: { token: $('token').value } });
    $('token').value = '';
    await showDashboard();
  } catch (error) {
    $('login-error').textContent = error.message;
  }
});

$('logout').addEventListener('click', async () => {
  await api('/api/admin/logout', { method: 'POST' }).catch(() => {});
  showLogin('Logged out.');
});

// -- the live topic ----------------------------------------------------------------------------

function setLiveStatus(state, text) {
  const pill = $('live-status');
  pill.dataset.state = state;
  pill.textContent = text;
}

function startLive() {
  stopLive();
  stream = new EventSource('/api/live/admin');
  stream.addEventListener('welcome', (e) => {
    const welcome = JSON.parse(e.data);
    setLiveStatus('live', `live · ${welcome.instance}`);
  });
  stream.addEventListener('stats', (e) => onStats(JSON.parse(e.data)));
  stream.addEventListener('deltas', (e) => onDeltas(JSON.parse(e.data)));
  stream.addEventListener('error', async () => {
    setLiveStatus('reconnecting', 'reconnecting…');
    // EventSource hides the status: ask whether the session is still valid
    try {
      await api('/api/admin/session');
    } catch {
      // api() switched to the login form on 401
    }
  });
}

function stopLive() {
  stream?.close();
  stream = null;
  if (refresher) clearInterval(refresher);
  if (changeRefresh) clearTimeout(changeRefresh);
  refresher = null;
  changeRefresh = null;
  setLiveStatus('idle', 'not connected');
}

// -- stats -------------------------------------------------------------------------------------

/**
 * The rate of a cumulative counter per second over the last `RATE_WINDOW_SECONDS`
 * (0 when a counter went backwards: an instance restarted).
 * @param {(stats: any) => number} pick
 * @returns {number|null}
 */
function rate(pick) {
  if (history.length < 2) return null;
  const last = history[history.length - 1];
  let first = history[0];
  for (const entry of history) {
    if (last.at - entry.at <= RATE_WINDOW_SECONDS) {
      first = entry;
      break;
    }
  }
  const seconds = last.at - first.at;
  if (seconds <= 0) return null;
  return Math.max(0, (pick(last.stats) - pick(first.stats)) / seconds);
}

const fmt = {
  int: (n) => (n == null ? '–' : Math.round(n).toLocaleString('en')),
  one: (n) => (n == null ? '–' : n.toFixed(1)),
  ms: (n) => (n == null ? '–' : `${n.toFixed(n < 10 ? 1 : 0)} ms`),
  secs: (n) => (n == null ? '–' : n < 1 ? `${Math.round(n * 1000)} ms` : `${n.toFixed(1)} s`),
  pct: (n) => (n == null ? '–' : `${(n * 100).toFixed(1)} %`),
  age: (s) => (s < 120 ? `${Math.round(s)} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`),
};

/** Apply one `stats` event: counters, instance table, charts. */
function onStats(stats) {
  history.push({ at: stats.at, stats });
  while (history.length && stats.at - history[0].at > HISTORY_SECONDS) history.shift();

  const c = stats.connections;
  $('conn-total').textContent = fmt.int(c.total);
  $('conn-detail').textContent = `ws ${c.ws} · sse ${c.sse} · admin ${c.admin}`;
  $('instances-count').textContent = fmt.int(stats.instances.length);
  $('instances-detail').textContent = stats.instances.map((i) => i.instance).join(', ');

  const votesPerMin = rate((s) => s.votes);
  const deltasPerSec = rate((s) => s.deltasPublished);
  $('votes-rate').textContent = votesPerMin == null ? '–' : fmt.one(votesPerMin * 60);
  $('votes-total').textContent = fmt.int(stats.votes);
  $('deltas-rate').textContent = fmt.one(deltasPerSec);
  $('deltas-total').textContent = fmt.int(stats.deltasPublished);
  $('delivered-total').textContent = fmt.int(stats.deltasDelivered);

  showLag(stats.fanoutLag);
  showScoreWorker(stats.scoreWorker);
  showCache(stats.cacheHits, stats.cacheMisses);

  $('db-pool').textContent = `${stats.dbPool.inUse} / ${stats.dbPool.size}`;
  $('db-max').textContent = fmt.int(stats.dbPool.max);

  const rows = stats.instances.map((i) =>
    row([
      i.instance,
      fmt.age(i.uptime),
      num(i.connections.ws),
      num(i.connections.sse),
      num(i.connections.admin),
      `${i.dbPool.inUse}/${i.dbPool.size}`,
    ]),
  );
  fillTable($('instances'), rows);

  charts.series.push([
    stats.at,
    votesPerMin == null ? null : votesPerMin * 60,
    deltasPerSec,
    stats.fanoutLag.p50Ms,
    stats.fanoutLag.p99Ms,
    c.total,
  ]);
  while (charts.series.length && stats.at - charts.series[0][0] > HISTORY_SECONDS) {
    charts.series.shift();
  }
  const col = (i) => charts.series.map((point) => point[i]);
  charts.rates.setData([col(0), col(1), col(2)]);
  charts.lag.setData([col(0), col(3), col(4), col(5)]);
}

/** A counter's large value; `empty` marks a sentence shown instead of a number. */
function setOutput(id, text, { empty = false } = {}) {
  const output = $(id);
  output.textContent = text;
  output.toggleAttribute('data-empty', empty);
}

/** Fan-out lag: p50 large, p99 and the number of frames measured beside it. */
function showLag({ p50Ms, p99Ms, samples, windowSeconds }) {
  if (!samples) {
    setOutput('lag-p50', 'no frames', { empty: true });
    $('lag-detail').textContent = `nothing sent to live clients in the last ${windowSeconds} s`;
    return;
  }
  setOutput('lag-p50', fmt.ms(p50Ms));
  $('lag-detail').textContent = `p99 ${fmt.ms(p99Ms)} · ${fmt.int(samples)} frames / ${windowSeconds} s`;
}

/** Score worker lag: how long the oldest queued video has waited, and how many wait. */
function showScoreWorker({ lagSeconds, queueDepth }) {
  if (lagSeconds == null) {
    setOutput('score-lag', 'unknown', { empty: true });
    $('score-detail').textContent = 'not measured: no instance could read the queue';
    return;
  }
  setOutput('score-lag', fmt.secs(lagSeconds));
  $('score-detail').textContent = queueDepth
    ? `oldest of ${fmt.int(queueDepth)} queued video${queueDepth === 1 ? '' : 's'} waiting`
    : 'queue empty: every vote is in the scores';
}

/**
 * Cache hit ratio since the instances started, from the same counters as
 * `realtube_cache_requests_total`; a plain sentence while nothing has read the cache.
 */
function showCache(hits, misses) {
  const lookups = hits + misses;
  if (!lookups) {
    setOutput('cache-ratio', 'no lookups yet', { empty: true });
    $('cache-detail').textContent =
      'only video, prefix, channel and stats lookups read the cache; votes and sync do not';
    return;
  }
  setOutput('cache-ratio', fmt.pct(hits / lookups));
  $('cache-detail').textContent = `hits ${fmt.int(hits)} · misses ${fmt.int(misses)} since start`;
}

// -- charts ------------------------------------------------------------------------------------

function chartSize(el) {
  return { width: Math.max(280, el.clientWidth), height: 200 };
}

/** The x axis always spans the kept history, so a fresh page shows minutes, not milliseconds. */
function lastMinutes(_chart, min, max) {
  return max == null ? [min, max] : [max - HISTORY_SECONDS, max];
}

function setupCharts() {
  if (charts.rates) return;
  charts.series = [];
  const ratesEl = $('chart-rates');
  charts.rates = new uPlot(
    {
      ...chartSize(ratesEl),
      legend: { live: false },
      scales: { x: { time: true, range: lastMinutes }, d: { auto: true } },
      series: [
        {},
        { label: 'votes/min', stroke: '#3b5bdb', width: 2, spanGaps: true },
        { label: 'deltas/s', stroke: '#e8590c', width: 2, scale: 'd', spanGaps: true },
      ],
      axes: [{}, { label: 'votes/min' }, { side: 1, scale: 'd', label: 'deltas/s', grid: { show: false } }],
    },
    [[], [], []],
    ratesEl,
  );
  const lagEl = $('chart-lag');
  charts.lag = new uPlot(
    {
      ...chartSize(lagEl),
      legend: { live: false },
      scales: { x: { time: true, range: lastMinutes }, c: { auto: true } },
      series: [
        {},
        { label: 'p50 ms', stroke: '#2b8a3e', width: 2, spanGaps: true },
        { label: 'p99 ms', stroke: '#c92a2a', width: 2, spanGaps: true },
        { label: 'connections', stroke: '#868e96', width: 1, scale: 'c', spanGaps: true },
      ],
      axes: [{}, { label: 'ms' }, { side: 1, scale: 'c', label: 'connections', grid: { show: false } }],
    },
    [[], [], [], []],
    lagEl,
  );
  window.addEventListener('resize', () => {
    charts.rates.setSize(chartSize(ratesEl));
    charts.lag.setSize(chartSize(lagEl));
  });
}

// -- the feed of score changes -----------------------------------------------------------------

/** Prepend one line per delta of a `deltas` frame (newest first, capped); see the legend. */
function onDeltas(frame) {
  const feed = $('feed');
  const time = new Date().toLocaleTimeString('en-GB');
  const items = [
    ...frame.videos.map((v) => ({ kind: 'video', id: v.videoId, d: v })),
    ...frame.channels.map((c) => ({ kind: 'channel', id: c.channelId, d: c })),
  ];
  for (const { kind, id, d } of items) {
    const li = document.createElement('li');
    li.className = 'new';
    li.dataset.id = id;
    li.append(
      el('time', time),
      el('span', kind, `kind ${kind}`),
      el('span', id, 'id'),
      el('span', d.action === 'remove' ? 'removed' : fmt.one(d.score), d.action === 'remove' ? 'remove' : ''),
    );
    if (d.locked) li.append(el('span', 'locked', 'badge locked'));
    if (d.autoFlag) li.append(el('span', 'auto-flag', 'badge'));
    feed.prepend(li);
  }
  while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
  $('feed-empty').hidden = feed.children.length > 0;
  // the top lists follow score changes, at most every few seconds
  changeRefresh ??= setTimeout(() => {
    changeRefresh = null;
    refreshLists();
  }, CHANGE_REFRESH_MS);
}

// -- lists: top, auto-flagged, audit -----------------------------------------------------------

function el(tag, text, className = '') {
  const node = document.createElement(tag);
  node.textContent = text;
  if (className) node.className = className;
  return node;
}

function num(n) {
  const td = el('td', fmt.int(n), 'num');
  td.dataset.num = '1';
  return td;
}

/**
 * Replace a table body's rows; with none, one row saying so (the body's `data-empty` text), so
 * an empty section never looks like a page that failed to load.
 * @param {HTMLTableSectionElement} tbody
 * @param {HTMLTableRowElement[]} rows
 */
function fillTable(tbody, rows) {
  if (rows.length) {
    tbody.replaceChildren(...rows);
    return;
  }
  const td = el('td', tbody.dataset.empty, 'empty');
  td.colSpan = tbody.parentElement.tHead.rows[0].cells.length;
  const tr = document.createElement('tr');
  tr.append(td);
  tbody.replaceChildren(tr);
}

/** A table row; each cell is a string (shown as text) or a ready `<td>`. */
function row(cells) {
  const tr = document.createElement('tr');
  for (const cell of cells) tr.append(cell instanceof Node ? cell : el('td', String(cell)));
  return tr;
}

/** An id cell, with a `locked` badge when the target is locked. */
function idCell(id, locked) {
  const td = el('td', id);
  if (locked) td.append(' ', el('span', 'locked', 'badge locked'));
  return td;
}

/** A cell with a small button that prefills the moderation form. */
function prefill(type, id, action) {
  const td = document.createElement('td');
  const button = el('button', action, 'link');
  button.type = 'button';
  button.title = `Fill the moderation form to ${action} ${id} (then give a reason and apply)`;
  button.addEventListener('click', () => {
    $('mod-type').value = type;
    fillActions();
    $('mod-target').value = id;
    $('mod-action').value = action;
    $('mod-reason').focus();
  });
  td.append(button);
  return td;
}

async function refreshLists() {
  try {
    const [top, auto, audit] = await Promise.all([
      api('/api/admin/top?limit=10'),
      api('/api/admin/auto-flagged?hours=24&limit=10'),
      api('/api/admin/audit?limit=50'),
    ]);
    fillTable(
      $('top-videos'),
      top.videos.map((v) =>
        row([
          idCell(v.videoId, v.locked),
          fmt.one(v.score),
          num(v.totalVotes),
          prefill('videos', v.videoId, v.locked ? 'unlock' : 'lock'),
        ]),
      ),
    );
    fillTable(
      $('top-channels'),
      top.channels.map((c) =>
        row([
          idCell(c.channelId, c.locked),
          fmt.one(c.score),
          num(c.flaggedVideos),
          prefill('channels', c.channelId, c.locked ? 'unlock' : 'lock'),
        ]),
      ),
    );
    fillTable(
      $('auto-flagged'),
      auto.channels.map((c) =>
        row([c.channelId, fmt.one(c.score), num(c.flaggedVideos), c.lastUpdated.replace('T', ' ').replace('Z', '')]),
      ),
    );
    fillTable(
      $('audit'),
      audit.actions.map((a) =>
        row([
          a.createdAt.replace('T', ' ').replace('Z', ''),
          a.actor,
          a.action,
          `${a.targetType} ${a.targetId}`,
          a.reason,
        ]),
      ),
    );
  } catch (error) {
    if (error.status !== 401) console.warn('refresh failed', error);
  }
}

// -- moderation --------------------------------------------------------------------------------

function fillActions() {
  const select = $('mod-action');
  const current = select.value;
  select.replaceChildren(...ACTIONS[$('mod-type').value].map((a) => el('option', a)));
  if ([...select.options].some((o) => o.value === current)) select.value = current;
}

$('mod-type').addEventListener('change', fillActions);
fillActions();

$('mod-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const type = $('mod-type').value;
  const target = $('mod-target').value.trim();
  const action = $('mod-action').value;
  const result = $('mod-result');
  result.textContent = '…';
  delete result.dataset.ok;
  try {
    const body = await api(
      `/api/admin/${type}/${encodeURIComponent(target)}/${action}`,
      { method: 'POST', body: { reason: $('mod-reason').value } },
    );
    result.dataset.ok = 'true';
    result.textContent = `${action} ${target}: done (${body.requeuedVideos} video(s) re-scored)`;
    $('mod-reason').value = '';
    refreshLists();
  } catch (error) {
    result.dataset.ok = 'false';
    result.textContent = `${action} ${target}: ${error.message}`;
  }
});

// -- start -------------------------------------------------------------------------------------

try {
  await api('/api/admin/session');
  await showDashboard();
} catch {
  showLogin();
}
