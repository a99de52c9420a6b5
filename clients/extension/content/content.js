// The content script: finds the video tiles (and the watch page's video) on YouTube pages,
// asks the extension's worker about them in batches and hides or blurs the flagged ones.
// Live deltas from the worker flag or restore tiles already on screen, without a reload.
//
// A classic script after selectors.js (which defines `RealTubeSelectors`). What it keeps:
// - `known`: what the worker said about each video/channel seen on this page (null = not in
//   the dataset), so a tile YouTube re-renders is decided without asking again;
// - `tracked`: which tiles show which video, so a delta touches only the tiles of its video.
// The MutationObserver looks only at the nodes a mutation added (and at changed video links),
// never at the whole page again.
'use strict';

(() => {
  const S = RealTubeSelectors;
  const BATCH_MS = 25; // tiles arriving within this window go to the worker as one lookup
  const MAX_IDS = 500; // per lookup message
  const RETRY_MS = [1000, 2000, 5000, 10000, 30000];
  const STATE = 'data-realtube'; // on tiles: hidden | blurred | revealed | shown
  const CATEGORY_NAMES = {
    fully_ai: 'fully AI',
    ai_voiceover: 'AI voice-over',
    ai_visuals: 'AI visuals',
    ai_thumbnails: 'AI thumbnail',
    ai_assisted: 'AI-assisted',
  };

  /** @type {{mode: string, thresholds: Record<string, number>}|null} */
  let settings = null;
  const known = { videos: new Map(), channels: new Map() };
  /** @type {Map<string, Set<Element>>} videoId -> tiles showing it */
  const tracked = new Map();
  /** @type {WeakMap<Element, {videoId: string, channelId: string|null}>} */
  const tileIds = new WeakMap();
  const revealed = new Set(); // videoIds the user chose to see anyway
  const queue = new Set(); // tiles waiting for a decision
  /** ids asked in the lookup under way; a delta for one of them wins over its answer */
  const inFlight = { ids: new Set(), overridden: new Set() };
  let timer = null;
  let busy = false;
  let failures = 0;
  let watchKey = null;
  let alive = true;
  let sweepAt = 1000;

  // -- asking the worker -----------------------------------------------------------------

  function send(message) {
    return chrome.runtime.sendMessage(message);
  }

  async function lookup(videoIds, channelIds) {
    const answer = { videos: {}, channels: {} };
    for (let i = 0; i < Math.max(videoIds.length, channelIds.length); i += MAX_IDS) {
      const part = await send({
        type: 'lookup',
        videoIds: videoIds.slice(i, i + MAX_IDS),
        channelIds: channelIds.slice(i, i + MAX_IDS),
      });
      if (!part || part.error) throw new Error(part?.error ?? 'no answer from the worker');
      Object.assign(answer.videos, part.videos);
      Object.assign(answer.channels, part.channels);
      if (part.settings) settings = part.settings;
    }
    return answer;
  }

  function remember(kind, answers) {
    for (const [id, entry] of Object.entries(answers)) {
      if (!inFlight.overridden.has(id)) known[kind].set(id, entry ?? null);
    }
  }

  // -- the decision ----------------------------------------------------------------------

  /**
   * Why a video is flagged, or null. A category counts at its share of the votes
   * (`weightedScore`) but never above the video's score, which carries the confidence in
   * those votes: one vote from a new account is a 100 % share of a score of 8.3.
   */
  function reason(videoId, tileChannelId) {
    const entry = known.videos.get(videoId) ?? null;
    const channel = known.channels.get(tileChannelId ?? entry?.channelId ?? '') ?? null;
    let best = null;
    for (const [category, tally] of Object.entries(entry?.categories ?? {})) {
      const value = Math.min(entry.score, tally.weightedScore);
      const threshold = settings.thresholds[category];
      if (threshold !== undefined && value >= threshold && (!best || value > best.value)) {
        best = { category, value };
      }
    }
    if (best) {
      return `Likely AI-generated: ${CATEGORY_NAMES[best.category] ?? best.category} (${Math.round(best.value)} %)`;
    }
    if (channel?.autoFlag) return 'From a channel flagged for AI-generated videos';
    return null;
  }

  function overlay(host, label, videoId) {
    let box = host.querySelector(':scope > .realtube-overlay');
    if (!box) {
      box = document.createElement('div');
      box.className = 'realtube-overlay';
      const text = document.createElement('span');
      text.className = 'realtube-label';
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'realtube-show';
      button.textContent = 'Show anyway';
      button.addEventListener('click', (event) => {
        event.preventDefault();
        event.stopPropagation();
        revealed.add(box.dataset.videoId);
        refreshVideo(box.dataset.videoId);
      });
      box.append(text, button);
      host.prepend(box);
    }
    box.dataset.videoId = videoId;
    box.querySelector('.realtube-label').textContent = label;
  }

  function clear(host) {
    host.classList.remove('realtube-hidden', 'realtube-blurred');
    host.querySelector(':scope > .realtube-overlay')?.remove();
  }

  function decideTile(tile, ids) {
    const why = reason(ids.videoId, ids.channelId);
    if (!why) {
      clear(tile);
      tile.setAttribute(STATE, 'shown');
    } else if (revealed.has(ids.videoId)) {
      clear(tile);
      tile.setAttribute(STATE, 'revealed');
    } else if (settings.mode === 'blur') {
      tile.classList.remove('realtube-hidden');
      tile.classList.add('realtube-blurred');
      overlay(tile, why, ids.videoId);
      tile.setAttribute(STATE, 'blurred');
    } else {
      tile.querySelector(':scope > .realtube-overlay')?.remove();
      tile.classList.remove('realtube-blurred');
      tile.classList.add('realtube-hidden');
      tile.setAttribute(STATE, 'hidden');
    }
    tile.setAttribute('data-realtube-video', ids.videoId);
  }

  /** The watch page: its player is covered (in either mode), never removed. */
  function decideWatch() {
    const ids = S.watchIds();
    const root = document.documentElement;
    const player = S.player();
    if (!ids || !player || !known.videos.has(ids.videoId)) return;
    const why = reason(ids.videoId, ids.channelId);
    if (!why || revealed.has(ids.videoId)) {
      clear(player);
      root.setAttribute('data-realtube-watch', why ? 'revealed' : 'shown');
      return;
    }
    player.classList.add('realtube-blurred');
    overlay(player, why, ids.videoId);
    for (const video of player.querySelectorAll('video')) video.pause();
    root.setAttribute('data-realtube-watch', 'flagged');
  }

  function refreshVideo(videoId) {
    for (const tile of tracked.get(videoId) ?? []) {
      if (tile.isConnected && tileIds.get(tile)?.videoId === videoId) decideTile(tile, tileIds.get(tile));
    }
    if (S.watchIds()?.videoId === videoId) decideWatch();
  }

  function refreshAll() {
    for (const videoId of tracked.keys()) refreshVideo(videoId);
    decideWatch();
  }

  // -- batching --------------------------------------------------------------------------

  function track(tile, ids) {
    const before = tileIds.get(tile);
    if (before && before.videoId !== ids.videoId) {
      tracked.get(before.videoId)?.delete(tile);
      clear(tile);
    }
    tileIds.set(tile, ids);
    let tiles = tracked.get(ids.videoId);
    if (!tiles) tracked.set(ids.videoId, (tiles = new Set()));
    tiles.add(tile);
  }

  /** Forget tiles YouTube removed, once the index has grown (not on every batch). */
  function sweep() {
    let count = 0;
    for (const [videoId, tiles] of tracked) {
      for (const tile of tiles) if (!tile.isConnected) tiles.delete(tile);
      if (tiles.size === 0) tracked.delete(videoId);
      count += tiles.size;
    }
    sweepAt = Math.max(1000, count * 2);
  }

  function schedule(delay = BATCH_MS) {
    if (timer === null && !busy && alive) timer = setTimeout(flush, delay);
  }

  function enqueue(tile) {
    queue.add(tile);
    schedule();
  }

  async function flush() {
    timer = null;
    busy = true;
    const tiles = [...queue];
    queue.clear();
    const videoIds = new Set();
    const channelIds = new Set();
    const ready = [];
    for (const tile of tiles) {
      if (!tile.isConnected) continue;
      const ids = S.tileIds(tile);
      if (!ids.videoId) continue; // not filled in yet: the mutation that fills it re-queues it
      track(tile, ids);
      ready.push([tile, ids]);
      if (!known.videos.has(ids.videoId)) videoIds.add(ids.videoId);
      if (ids.channelId && !known.channels.has(ids.channelId)) channelIds.add(ids.channelId);
    }
    const watch = S.watchIds();
    const key = watch ? `${watch.videoId}/${watch.channelId}` : null;
    if (watch && !known.videos.has(watch.videoId)) videoIds.add(watch.videoId);
    if (watch?.channelId && !known.channels.has(watch.channelId)) channelIds.add(watch.channelId);
    try {
      // Nothing to ask, nothing sent: a page without videos never wakes the worker.
      if (videoIds.size || channelIds.size) {
        inFlight.ids = new Set([...videoIds, ...channelIds]);
        const answer = await lookup([...videoIds], [...channelIds]);
        remember('videos', answer.videos);
        remember('channels', answer.channels);
        // Videos name their channel even where the tile does not (YouTube's /@handle links).
        const more = new Set();
        for (const entry of Object.values(answer.videos)) {
          if (entry?.channelId && !known.channels.has(entry.channelId)) more.add(entry.channelId);
        }
        if (more.size) {
          for (const id of more) inFlight.ids.add(id);
          remember('channels', (await lookup([], [...more])).channels);
        }
      }
      failures = 0;
      for (const [tile, ids] of ready) {
        if (tileIds.get(tile) === ids) decideTile(tile, ids);
      }
      if (key !== watchKey || videoIds.has(watch?.videoId)) decideWatch();
      watchKey = key;
    } catch (error) {
      if (!chrome.runtime?.id) return stop(); // the extension was reloaded or removed
      for (const [tile] of ready) queue.add(tile);
      watchKey = null;
      const delay = RETRY_MS[Math.min(failures++, RETRY_MS.length - 1)];
      console.debug('RealTube: lookup failed, retrying in', delay, 'ms:', String(error));
      busy = false;
      schedule(delay);
      return;
    } finally {
      inFlight.ids = new Set();
      inFlight.overridden.clear();
    }
    busy = false;
    if (tracked.size > sweepAt) sweep();
    if (queue.size) schedule();
  }

  // -- live deltas and settings ------------------------------------------------------------

  function applyDeltas(message) {
    if (message.reset) {
      known.videos.clear();
      known.channels.clear();
      for (const tiles of tracked.values()) for (const tile of tiles) queue.add(tile);
      watchKey = null;
      schedule(0);
    }
    const touched = new Set();
    for (const delta of message.videos ?? []) {
      const id = delta.videoId;
      if (!known.videos.has(id) && !inFlight.ids.has(id)) continue; // not on this page
      known.videos.set(id, delta.action === 'remove' ? null : delta);
      if (inFlight.ids.has(id)) inFlight.overridden.add(id);
      touched.add(id);
    }
    let channelChanged = false;
    for (const delta of message.channels ?? []) {
      const id = delta.channelId;
      if (!known.channels.has(id) && !inFlight.ids.has(id)) continue;
      known.channels.set(id, delta.action === 'remove' ? null : delta);
      if (inFlight.ids.has(id)) inFlight.overridden.add(id);
      channelChanged = true;
    }
    if (settings === null) return;
    if (channelChanged) refreshAll();
    else for (const id of touched) refreshVideo(id);
  }

  function onSettings(value) {
    if (!value || settings === null) return;
    settings = { ...settings, ...value, thresholds: { ...settings.thresholds, ...value.thresholds } };
    refreshAll();
  }

  /** What the popup needs to vote on this page's video. */
  function pageInfo() {
    const ids = S.watchIds();
    return ids ? { videoId: ids.videoId, channelId: ids.channelId, title: document.title } : null;
  }

  // -- watching the page -----------------------------------------------------------------

  const observer = new MutationObserver((mutations) => {
    for (const mutation of mutations) {
      if (mutation.type === 'attributes') {
        const tile = S.tileOf(mutation.target);
        if (tile) enqueue(tile);
        continue;
      }
      for (const node of mutation.addedNodes) {
        if (node.nodeType !== Node.ELEMENT_NODE) continue;
        if (node.classList.contains('realtube-overlay')) continue; // our own
        for (const tile of S.tilesIn(node)) enqueue(tile);
      }
    }
  });

  function onMessage(message, _sender, sendResponse) {
    if (message?.type === 'deltas') applyDeltas(message);
    else if (message?.type === 'page-info') sendResponse(pageInfo());
    return false;
  }

  function onStorage(changes, area) {
    if (area === 'local' && changes.settings) onSettings(changes.settings.newValue);
  }

  function onNavigate() {
    watchKey = null;
    schedule(0);
  }

  function stop() {
    alive = false;
    observer.disconnect();
    clearTimeout(timer);
    try {
      chrome.runtime.onMessage.removeListener(onMessage);
      chrome.storage.onChanged.removeListener(onStorage);
    } catch {
      // the extension context is gone already
    }
    window.removeEventListener('yt-navigate-finish', onNavigate);
    window.removeEventListener('popstate', onNavigate);
  }

  chrome.runtime.onMessage.addListener(onMessage);
  chrome.storage.onChanged.addListener(onStorage);
  // YouTube navigates between pages without reloading; it fires this when a page is shown.
  window.addEventListener('yt-navigate-finish', onNavigate);
  window.addEventListener('popstate', onNavigate);
  observer.observe(document.documentElement, {
    childList: true,
    subtree: true,
    attributes: true,
    attributeFilter: ['href'],
  });
  for (const tile of S.tilesIn(document)) queue.add(tile);
  schedule(0);
})();
