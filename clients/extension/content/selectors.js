// Every YouTube DOM selector the content script relies on, in one place: YouTube renames its
// elements every few months, and this file is what changes when it does.
//
// A classic script (content scripts are not modules): it defines `RealTubeSelectors` on the
// content script's global object, which content.js reads.
'use strict';

// eslint-disable-next-line no-unused-vars
const RealTubeSelectors = (() => {
  /** Elements that are one video tile. Nested matches are folded into the outermost. */
  const TILE = [
    // www.youtube.com: home grid, search results, watch-page sidebar, channel and
    // subscription grids, playlists, Shorts shelves, the newer "lockup" view models
    'ytd-rich-item-renderer',
    'ytd-video-renderer',
    'ytd-compact-video-renderer',
    'ytd-grid-video-renderer',
    'ytd-playlist-video-renderer',
    'ytd-playlist-panel-video-renderer',
    'ytd-reel-item-renderer',
    'yt-lockup-view-model',
    'ytm-shorts-lockup-view-model',
    'ytm-shorts-lockup-view-model-v2',
    // m.youtube.com
    'ytm-rich-item-renderer',
    'ytm-video-with-context-renderer',
    'ytm-compact-video-renderer',
    'ytm-video-card-renderer',
    'ytm-reel-item-renderer',
    // anything else marked up for us (the tests' fixture site uses YouTube's names above)
    '[data-realtube-tile]',
  ].join(',');

  /** The link of a tile that names its video. */
  const VIDEO_LINK = 'a[href*="watch?v="], a[href*="/shorts/"]';

  /** An element carrying a channel id as data (YouTube's /@handle links do not name it). */
  const CHANNEL_DATA = '[data-channel-id]';
  const CHANNEL_LINK = 'a[href*="/channel/"]';

  /** Where the watch page's channel is named. */
  const WATCH_CHANNEL = [
    'ytd-watch-flexy ytd-video-owner-renderer [data-channel-id]',
    'ytd-video-owner-renderer a[href*="/channel/"]',
    'meta[itemprop="channelId"]',
    'ytm-slim-owner-renderer a[href*="/channel/"]',
  ];

  /** The player of the watch page (the overlay goes on top of it), most specific first. */
  const PLAYER = ['#movie_player', 'ytd-player', '#player-container-id', 'ytm-player', '#player'];

  const VIDEO_ID = /^[A-Za-z0-9_-]{1,16}$/;
  const CHANNEL_ID = /^[A-Za-z0-9_-]{1,32}$/;

  /** The video id a URL points at (`/watch?v=ID` or `/shorts/ID`), or null. */
  function videoIdFromUrl(href, base = location.href) {
    let url;
    try {
      url = new URL(href, base);
    } catch {
      return null;
    }
    let id = null;
    if (/^\/watch\/?$/.test(url.pathname)) id = url.searchParams.get('v');
    else if (url.pathname.startsWith('/shorts/')) id = url.pathname.split('/')[2] ?? null;
    return id && VIDEO_ID.test(id) ? id : null;
  }

  /** The channel id of `/channel/ID` (not `/@handle`), or null. */
  function channelIdFromUrl(href) {
    const match = /\/channel\/([A-Za-z0-9_-]{1,32})/.exec(href ?? '');
    return match ? match[1] : null;
  }

  function channelIdOf(root) {
    const data = root.matches(CHANNEL_DATA) ? root : root.querySelector(CHANNEL_DATA);
    const fromData = data?.getAttribute('data-channel-id');
    if (fromData && CHANNEL_ID.test(fromData)) return fromData;
    return channelIdFromUrl(root.querySelector(CHANNEL_LINK)?.getAttribute('href'));
  }

  /** The outermost tile containing `node` (itself included), or null. */
  function tileOf(node) {
    let tile = node.closest?.(TILE) ?? null;
    for (let outer = tile?.parentElement?.closest(TILE); outer; ) {
      tile = outer;
      outer = outer.parentElement?.closest(TILE);
    }
    return tile;
  }

  /** Every outermost tile in `root` and below (each once). */
  function tilesIn(root) {
    const found = new Set();
    const self = root.nodeType === Node.ELEMENT_NODE ? tileOf(root) : null;
    if (self) found.add(self);
    for (const tile of root.querySelectorAll(TILE)) {
      if (!tile.parentElement?.closest(TILE)) found.add(tile);
    }
    return found;
  }

  /** `{videoId, channelId}` of a tile; videoId is null while YouTube has not filled it in. */
  function tileIds(tile) {
    const link = tile.querySelector(VIDEO_LINK);
    return {
      videoId: link ? videoIdFromUrl(link.getAttribute('href')) : null,
      channelId: channelIdOf(tile),
    };
  }

  /** `{videoId, channelId}` of the watch page, or null on any other page. */
  function watchIds(doc = document, loc = location) {
    const videoId = videoIdFromUrl(loc.href);
    if (!videoId) return null;
    let channelId = null;
    for (const selector of WATCH_CHANNEL) {
      const node = doc.querySelector(selector);
      if (!node) continue;
      const value =
        node.getAttribute('data-channel-id') ??
        (node.tagName === 'META' ? node.getAttribute('content') : null) ??
        channelIdFromUrl(node.getAttribute('href'));
      if (value && CHANNEL_ID.test(value)) {
        channelId = value;
        break;
      }
    }
    return { videoId, channelId };
  }

  /** The watch page's player, or null. */
  function player(doc = document) {
    for (const selector of PLAYER) {
      const found = doc.querySelector(selector);
      if (found) return found;
    }
    return null;
  }

  return { tileOf, tilesIn, tileIds, watchIds, player };
})();
