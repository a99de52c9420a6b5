// The popup: the worker's status in words a user understands, and a vote on the video of the
// current tab (through the worker's offline queue).
//
// It asks the worker for its status when it opens, then follows the status the worker sends
// on every change and the time of the last delta it notes in session storage, instead of
// polling: an open popup must not keep waking a worker that Chrome stopped. Ages and
// countdowns tick locally.

import { loadSettings } from '../settings.js';

const $ = (id) => document.getElementById(id);
let status = null;
let settings = null;

// -- status -------------------------------------------------------------------------------

const STATES = {
  live: 'Live',
  polling: 'Polling',
  connecting: 'Connecting',
  syncing: 'Syncing',
  offline: 'Offline',
  idle: 'Starting',
  stopped: 'Stopped',
  error: 'Not running',
};

const TRANSPORTS = {
  ws: 'live over a WebSocket',
  sse: 'live over server-sent events',
  poll: 'checked periodically',
};

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} days ago`;
}

function within(ms) {
  const s = Math.round((ms - Date.now()) / 1000);
  if (s <= 0) return 'now';
  if (s < 120) return `in ${s} s`;
  return `in ${Math.round(s / 60)} min`;
}

/**
 * An error of the worker in words a user can act on. The worker already words most of them;
 * browser and HTTP errors that still come through raw are translated here.
 */
export function plainError(error, apiBase) {
  if (!error) return null;
  const text = String(error);
  const server = apiBase ? `the server at ${apiBase}` : 'the server';
  if (/failed to fetch|networkerror|err_connection|econnrefused|load failed|could not connect/i.test(text)) {
    return `Cannot reach ${server}. Is it running, and is the API URL in the options right?`;
  }
  if (/WebSocket/.test(text) && /refused/.test(text) && !/CORS_ORIGINS/.test(text)) {
    return `${text}. If the server does not allow this extension, add ${location.origin} to its CORS_ORIGINS.`;
  }
  if (/\b403\b/.test(text) && !/CORS_ORIGINS/.test(text)) {
    return `${server[0].toUpperCase()}${server.slice(1)} refused this extension (403): its CORS_ORIGINS must allow ${location.origin}.`;
  }
  if (/\b429\b/.test(text)) return `${server[0].toUpperCase()}${server.slice(1)} asked to slow down (429); retrying later.`;
  if (/\b5\d\d\b/.test(text) && /^(Http)?Error/.test(text)) {
    return `${server[0].toUpperCase()}${server.slice(1)} had a problem (${text.match(/\b5\d\d\b/)[0]}); retrying.`;
  }
  return text.replace(/^(TypeError|Error|HttpError): /, '');
}

function render() {
  if (!status) return;
  const state = $('state');
  state.dataset.state = status.state;
  state.textContent = STATES[status.state] ?? status.state;

  let transport = TRANSPORTS[status.transport] ?? 'not connected';
  if (status.transport === 'poll' && settings) {
    transport = `checked every ${settings.pollMinutes} min` + (settings.live ? ' (live unavailable)' : ' (live updates off)');
  }
  $('transport').textContent = transport;
  $('last-delta').textContent = status.lastDeltaAt ? ago(status.lastDeltaAt) : 'none yet';
  $('cached').textContent = Number(status.cachedVideos ?? 0).toLocaleString('en');
  $('pending').textContent =
    status.pendingVotes > 0
      ? `${status.pendingVotes} (sent when the server is reachable)`
      : 'none';

  const problem = plainError(status.lastError, settings?.apiBase);
  $('problem').hidden = !problem;
  $('problem').textContent = problem ?? '';
  // live on a fallback (SSE): a note about the WebSocket rather than an alarm
  const fallback = status.state === 'live' && status.transport !== 'ws';
  $('problem').dataset.severity = fallback ? 'note' : 'error';
  const retry = status.nextRetryAt && (status.state !== 'live' || fallback);
  $('retry').hidden = !retry;
  $('retry').textContent = !retry
    ? ''
    : fallback
      ? `The WebSocket is tried again ${within(status.nextRetryAt)}.`
      : `Next try ${within(status.nextRetryAt)}.`;
  document.body.dataset.ready = 'true';
}

async function refresh() {
  try {
    status = await chrome.runtime.sendMessage({ type: 'status' });
  } catch (error) {
    status = {
      state: 'error',
      transport: null,
      lastError: `The extension's background worker does not answer (${error?.message ?? error}).`,
    };
  }
  render();
}

chrome.runtime.onMessage.addListener((message) => {
  if (message?.type !== 'status') return false;
  const { type: _type, ...rest } = message;
  status = { ...status, ...rest };
  render();
  return false;
});

// The worker notes each applied delta's time in session storage. The worker is awake then
// (it just wrote), so asking for the whole status (the count of cached videos changed too)
// wakes nobody; at most once a second.
let refreshing = null;
chrome.storage.onChanged.addListener((changes, area) => {
  if (area === 'session' && changes.lastDeltaAt && status) {
    status.lastDeltaAt = changes.lastDeltaAt.newValue ?? null;
    render();
    refreshing ??= new Promise((resolve) => setTimeout(resolve, 1000))
      .then(refresh)
      .finally(() => {
        refreshing = null;
      });
  }
  if (area === 'local' && changes.settings) {
    loadSettings().then((loaded) => {
      settings = loaded.settings;
      render();
    });
  }
});

// -- voting -------------------------------------------------------------------------------

/**
 * The tab whose video a vote is about: the active tab for the real popup. Opened in a tab
 * of its own (the tests do that; `?tab=ID` names one), the tab used before it.
 */
async function targetTab() {
  const named = new URLSearchParams(location.search).get('tab');
  if (named) return Number(named);
  const self = await chrome.tabs.getCurrent();
  if (!self) {
    const [active] = await chrome.tabs.query({ active: true, currentWindow: true });
    return active?.id ?? null;
  }
  const others = (await chrome.tabs.query({ windowId: self.windowId })).filter((t) => t.id !== self.id);
  others.sort((a, b) => (b.lastAccessed ?? 0) - (a.lastAccessed ?? 0));
  return others[0]?.id ?? null;
}

async function pageInfo() {
  const tabId = await targetTab();
  if (tabId === null) return null;
  try {
    // the content script answers on YouTube pages; elsewhere nobody does, which rejects
    return (await chrome.tabs.sendMessage(tabId, { type: 'page-info' })) ?? null;
  } catch {
    return null;
  }
}

let video = null;

function voteOutcome(answer) {
  if (!answer) return 'The extension did not answer; try again.';
  if (answer.error) return `Vote not sent: ${plainError(answer.error, settings?.apiBase)}`;
  if (answer.queued) {
    return 'The server cannot be reached: your vote is saved and will be sent when it is back.';
  }
  if (answer.applied === false) return 'A newer vote of yours on this video was already counted.';
  const score = typeof answer.newScore === 'number' ? ` The video's score is now ${answer.newScore}.` : '';
  return `Vote counted.${score}`;
}

$('vote-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  if (!video) return;
  const button = $('vote-button');
  button.disabled = true;
  $('vote-result').textContent = 'Sending...';
  let answer = null;
  try {
    answer = await chrome.runtime.sendMessage({
      type: 'vote',
      videoId: video.videoId,
      category: $('category').value,
      ...(video.channelId ? { channelId: video.channelId } : {}),
    });
  } catch (error) {
    answer = { error: String(error?.message ?? error) };
  }
  $('vote-result').textContent = voteOutcome(answer);
  $('vote-result').dataset.outcome = answer?.error ? 'error' : answer?.queued ? 'queued' : 'sent';
  button.disabled = false;
  await refresh();
});

$('open-options').addEventListener('click', (event) => {
  event.preventDefault();
  chrome.runtime.openOptionsPage();
});

async function main() {
  settings = (await loadSettings()).settings;
  const [info] = await Promise.all([pageInfo(), refresh()]);
  video = info?.videoId ? info : null;
  $('no-video').hidden = Boolean(video);
  $('vote-form').hidden = !video;
  if (video) $('video').textContent = `Video ${video.videoId}`;
  $('vote').dataset.ready = 'true';
  setInterval(render, 1000);
}

main();
