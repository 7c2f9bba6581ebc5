// AirDisplay fleet page: one Alpine component (CSP build, so templates only read properties and call the
// methods below). Pages come from GET /api/v1/banners; live state from the WebSocket of docs/realtime.md.
'use strict';

(function () {
  /** A page of cards: fits a laptop screen and keeps every tick cheap. */
  const PAGE_SIZE = 24;
  const STREAM_PATH = '/api/v1/stream';
  /** Countdown refresh; the bar's CSS transition has the same length so it drains smoothly. */
  const TICK_MS = 250;
  /** Reconnect backoff: 0.5 s doubling to 10 s, with jitter so a restarted server is not stampeded. */
  const RETRY_FIRST_MS = 500;
  const RETRY_MAX_MS = 10000;
  const KEY_STORAGE = 'airdisplay.apiKey';
  /** Server clock estimate: skew below a second is latency noise and is left alone. */
  const SKEW_SAMPLES = 10;
  const SKEW_IGNORE_MS = 1000;
  /** Strip text sizes: a towed banner shows a short text big, a long one smaller. */
  const LED_MEDIUM = 18;
  const LED_SMALL = 34;
  /** The server's default limit on a message (domain DEFAULT_MAX_TEXT_LENGTH, AIRDISPLAY_MAX_TEXT_LENGTH);
   *  a banners page that carries `max_text_length` overrides it. */
  const DEFAULT_TEXT_LIMIT = 64;
  /** What a registration may hold, said in words: the API's own 422 text for an id is its regular
   *  expression (domain BANNER_ID_PATTERN; names: schemas.BannerCreate and domain MAX_NAME_LENGTH). */
  const REGISTER_FIELD_TEXT = {
    id: 'An id is 1 to 64 lowercase letters (a–z), digits and hyphens, and starts and ends with a letter '
      + 'or digit, e.g. n123ab.',
    name: 'A banner needs a name of 1 to 100 characters.',
  };

  function parseTime(value) {
    const ms = Date.parse(value);
    return Number.isNaN(ms) ? 0 : ms;
  }

  /** Idempotency keys make the one automatic retry after a network error safe; getRandomValues also
   *  works on plain-http origins, where crypto.randomUUID does not exist. */
  function newIdempotencyKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function makeCard(banner) {
    const card = {
      id: banner.id, name: banner.name, version: 0, createdAt: '', message: null, shownMs: 0, expiresMs: 0,
      gone: false, draft: '', sending: false, problem: '', busyUntil: 0, device: null, displayVersion: 0,
      queue: [], mine: null, booking: false, queueFullUntil: 0,
      historyOpen: false, history: [], historyNote: '',
    };
    setBanner(card, banner);
    return card;
  }

  function setBanner(card, banner) {
    card.name = banner.name;
    card.version = banner.version;
    card.createdAt = banner.created_at;
    card.gone = false;
    card.message = banner.message;
    card.device = banner.device || null;
    card.displayVersion = banner.display_version || 0;
    card.shownMs = banner.message ? parseTime(banner.message.shown_at) : 0;
    card.expiresMs = banner.message ? parseTime(banner.message.expires_at) : 0;
    card.queue = banner.queue || [];
    if (!banner.message) card.busyUntil = 0; // it is free now, whatever the last refusal said
    // This page's own booking: done once it is neither waiting nor showing.
    if (card.mine && !card.queue.some((b) => b.id === card.mine.id)
        && !(banner.message && banner.message.id === card.mine.id)) card.mine = null;
  }

  /** A stream frame applies when it is newer than the card, or when it tells that the banner left
   *  (`deleted`, `missing`) or came back: a banner registered again is a new life of the id, whose
   *  versions start again at 1, told apart by its `created_at`. The stream keeps each banner's frames
   *  in order, so a new life seen there is the current one. */
  function applies(card, frame) {
    if (frame.kind === 'deleted' || frame.kind === 'missing') return !card.gone || frame.version > card.version;
    if (!frame.banner) return false;
    return card.gone || frame.banner.created_at !== card.createdAt || frame.version > card.version;
  }

  /** An HTTP answer may be overtaken by the stream, so it only ever moves the same life forward. */
  function advances(card, banner) {
    return !card.gone && banner.created_at === card.createdAt && banner.version > card.version;
  }

  function problemText(response) {
    const body = response.data;
    if (body && typeof body.detail === 'string' && body.detail) return body.detail;
    if (body && typeof body.title === 'string' && body.title) return body.title;
    return 'The server answered ' + response.status;
  }

  /** A refused registration in words: the fields the API's 422 `errors` name, else the problem's detail. */
  function registerProblemText(response) {
    const errors = response.data && Array.isArray(response.data.errors) ? response.data.errors : [];
    const fields = new Set(errors.map((error) => (Array.isArray(error.loc) ? error.loc.at(-1) : '')));
    const said = Object.keys(REGISTER_FIELD_TEXT).filter((field) => fields.has(field));
    return said.length ? said.map((field) => REGISTER_FIELD_TEXT[field]).join(' ') : problemText(response);
  }

  /** Characters as the server counts them: user-perceived characters (grapheme clusters) of the NFC form,
   *  trimmed (domain BannerRules); code points where the browser has no Intl.Segmenter. */
  const GRAPHEMES = typeof Intl.Segmenter === 'function' ? new Intl.Segmenter(undefined, { granularity: 'grapheme' }) : null;
  function textLength(text) {
    const cleaned = text.normalize('NFC').trim();
    return GRAPHEMES ? Array.from(GRAPHEMES.segment(cleaned)).length : Array.from(cleaned).length;
  }

  function fleet() {
    // Not reactive: connection plumbing and the id → card index of the page on screen.
    let socket = null;
    let retries = 0;
    let retryTimer = null;
    let tickTimer = null;
    let loadSeq = 0;
    let skewSamples = [];
    let skewMs = 0;
    let index = new Map();

    return {
      cards: [],
      cursors: [], // `after` of each page before this one; the first page has none
      nextAfter: null,
      query: '',
      loading: false,
      loaded: false,
      fleetError: '',
      link: 'connecting', // connecting | live | reconnecting
      synced: false, // the server confirmed a subscription to exactly the cards on screen
      now: Date.now(),
      toolsOpen: false,
      textLimit: DEFAULT_TEXT_LIMIT,
      apiKey: '',
      keyDraft: '',
      keyNote: '',
      keyWanted: false,
      newId: '',
      newName: '',
      registering: false,
      registerNote: '',
      registerFailed: false,

      init() {
        this.apiKey = readStoredKey();
        tickTimer = setInterval(() => { this.now = Date.now() + skewMs; }, TICK_MS);
        this.connect();
        this.loadPage([]);
      },

      destroy() {
        clearInterval(tickTimer);
        clearTimeout(retryTimer);
        if (socket) socket.close(1000);
      },

      // ---- fleet pages -------------------------------------------------------------------------------

      /** Fetch the page after `cursors`' last id; the page and its cursors change together on success. */
      async loadPage(cursors, goingOn) {
        const seq = ++loadSeq;
        const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
        if (cursors.length) params.set('after', cursors[cursors.length - 1]);
        const q = this.query.trim();
        if (q) params.set('q', q);
        this.loading = true;
        let response;
        try {
          response = await this.request('GET', '/api/v1/banners?' + params.toString());
        } catch (err) {
          if (seq === loadSeq) {
            this.loading = false;
            this.fleetError = 'Cannot reach the server; the page loads again when it is back.';
          }
          return;
        }
        if (seq !== loadSeq) return; // a newer navigation won
        this.loading = false;
        if (response.status !== 200 || !response.data || !Array.isArray(response.data.items)) {
          this.fleetError = 'Could not load the fleet: ' + problemText(response);
          return;
        }
        const items = response.data.items;
        if (goingOn && items.length === 0 && this.cards.length) {
          this.nextAfter = null; // the last page was exactly full: there is nothing after it
          return;
        }
        this.fleetError = '';
        const limit = response.data.max_text_length;
        if (Number.isInteger(limit) && limit > 0) this.textLimit = limit;
        this.cursors = cursors;
        this.nextAfter = response.data.next_after;
        this.cards = items.map(makeCard);
        index = new Map(this.cards.map((card) => [card.id, card])); // the reactive proxies
        this.loaded = true;
        this.subscribePage();
      },

      nextPage() {
        if (this.nextAfter) this.loadPage(this.cursors.concat([this.nextAfter]), true);
      },

      previousPage() {
        if (this.cursors.length) this.loadPage(this.cursors.slice(0, -1), false);
      },

      search() {
        this.loadPage([], false);
      },

      reloadPage() {
        this.loadPage(this.cursors, false);
      },

      cannotGoBack() { return this.cursors.length === 0 || this.loading; },
      cannotGoOn() { return !this.nextAfter || this.loading; },

      pageText() {
        if (!this.loaded) return 'Loading…';
        const first = this.cursors.length * PAGE_SIZE + 1;
        if (!this.cards.length) return 'Page ' + (this.cursors.length + 1);
        return 'Page ' + (this.cursors.length + 1) + ' · ' + first + '–' + (first + this.cards.length - 1);
      },

      isEmpty() { return this.loaded && this.cards.length === 0; },
      emptyTitle() { return this.query.trim() ? 'No banner matches “' + this.query.trim() + '”' : 'No banners yet'; },
      emptyHint() {
        return this.query.trim() ? 'Search looks at the start of ids and names.'
          : 'Open Operator to register the first banner of the fleet.';
      },

      // ---- live updates ------------------------------------------------------------------------------

      connect() {
        clearTimeout(retryTimer);
        const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
        let ws;
        try {
          ws = new WebSocket(scheme + location.host + STREAM_PATH);
        } catch (err) {
          this.scheduleReconnect();
          return;
        }
        socket = ws;
        ws.onopen = () => {
          if (socket !== ws) return;
          skewSamples = [];
          this.link = 'live';
          if (this.fleetError) this.reloadPage(); // the server is back: the page it failed to load
          else this.subscribePage();
        };
        ws.onmessage = (event) => {
          if (socket !== ws) return;
          let frame;
          try { frame = JSON.parse(event.data); } catch (err) { return; }
          this.onFrame(frame);
        };
        ws.onclose = () => {
          if (socket !== ws) return;
          socket = null;
          this.synced = false;
          this.scheduleReconnect();
        };
      },

      scheduleReconnect() {
        this.link = 'reconnecting';
        const ceiling = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** retries);
        retries += 1;
        retryTimer = setTimeout(() => this.connect(), ceiling / 2 + Math.random() * ceiling / 2);
      },

      /** Subscribe to exactly the cards on screen, telling the versions we hold so nothing goes back. */
      subscribePage() {
        if (!socket || socket.readyState !== WebSocket.OPEN || !this.loaded) return;
        this.synced = false;
        const known = {};
        for (const card of this.cards) if (!card.gone && card.version > 0) known[card.id] = card.version;
        socket.send(JSON.stringify({ type: 'set', banners: this.cards.map((card) => card.id), known }));
      },

      onFrame(frame) {
        if (typeof frame.at === 'string' && frame.kind !== 'snapshot') this.sampleClock(frame.at);
        if (frame.type === 'subscribed') {
          retries = 0; // the server took our subscription: the link works
          const wanted = new Set(index.keys());
          const got = Array.isArray(frame.banners) ? frame.banners : [];
          this.synced = got.length === wanted.size && got.every((id) => wanted.has(id));
        } else if (frame.type === 'banner') {
          const card = index.get(frame.banner_id);
          if (card && applies(card, frame)) this.applyFrame(card, frame);
        } else if (frame.type === 'error') {
          console.warn('AirDisplay stream refused a frame:', frame.detail);
        }
      },

      applyFrame(card, frame) {
        if (frame.banner) {
          this.showBanner(card, frame.banner);
          return;
        }
        card.gone = true;
        card.version = frame.version;
        card.message = null;
        card.busyUntil = 0;
      },

      showBanner(card, banner) {
        this.now = Date.now() + skewMs; // a new countdown starts from now, not from the last tick
        setBanner(card, banner);
      },

      /** The server's clock from event times: `at` minus latency never exceeds it, so keep the max. */
      sampleClock(at) {
        const ms = parseTime(at);
        if (!ms) return;
        skewSamples.push(ms - Date.now());
        if (skewSamples.length > SKEW_SAMPLES) skewSamples.shift();
        const best = Math.max(...skewSamples);
        skewMs = Math.abs(best) < SKEW_IGNORE_MS ? 0 : best;
      },

      linkText() {
        if (this.link === 'live') return 'Live';
        if (this.link === 'reconnecting') return 'Reconnecting…';
        return 'Connecting…';
      },
      linkClass() { return 'link-' + this.link; },
      linkTitle() {
        return this.link === 'live' ? 'Live updates on' : 'Live updates paused; what you see may be out of date';
      },
      fleetClass() { return this.link === 'live' ? '' : 'stale'; },

      // ---- a card ------------------------------------------------------------------------------------

      stateOf(card) {
        if (card.gone) return 'gone';
        if (card.sending) return 'sending';
        return card.message ? 'showing' : 'free';
      },
      stateText(card) {
        const state = this.stateOf(card);
        if (this.link !== 'live' && state !== 'sending') return 'offline';
        return { gone: 'removed', sending: 'sending…', showing: 'showing', free: 'free' }[state];
      },
      cardClass(card) { return 'is-' + this.stateOf(card); },

      /** What the physical banner reports, comparing like with like: the display version it acknowledged
       *  against the one it should show (docs/device-protocol.md). A free banner that acknowledged its
       *  blank display is online, not "showing" anything. */
      deviceState(card) {
        if (!card.device || !card.device.online) return 'offline';
        if (card.device.displayed_version !== card.displayVersion) return 'sending';
        return card.message ? 'on-banner' : 'online';
      },
      deviceText(card) {
        return {
          offline: 'device offline', online: 'device online', 'on-banner': 'showing on banner', sending: 'sending…',
        }[this.deviceState(card)];
      },
      deviceClass(card) { return 'device-' + this.deviceState(card); },

      messageText(card) { return card.message ? card.message.text : ''; },
      isIdle(card) { return !card.message; },
      idleText(card) { return card.gone ? 'not in the fleet' : 'free'; },
      stripClass(card) {
        if (!card.message) return 'strip-idle';
        const length = card.message.text.length;
        if (length > LED_SMALL) return 'strip-lit led-small';
        return length > LED_MEDIUM ? 'strip-lit led-medium' : 'strip-lit';
      },

      /** Time left on the message, never more than its whole duration (a clock a little behind the
       *  server's must not show 61 s of a 60 s message). */
      msLeft(card) {
        if (!card.message) return 0;
        return Math.min(card.expiresMs - card.shownMs, Math.max(0, card.expiresMs - this.now));
      },
      secondsLeft(card) {
        return card.message ? Math.ceil(this.msLeft(card) / 1000) : 0;
      },
      secondsText(card) {
        return card.message ? this.secondsLeft(card) + ' s' : '—';
      },
      barStyle(card) {
        let fraction = 0;
        const total = card.expiresMs - card.shownMs;
        if (card.message && total > 0) fraction = Math.min(1, this.msLeft(card) / total);
        return { transform: 'scaleX(' + fraction.toFixed(4) + ')' };
      },
      countdownClass(card) {
        if (!card.message) return 'countdown-idle';
        return this.msLeft(card) <= 10000 ? 'countdown-ending' : '';
      },

      // ---- submitting --------------------------------------------------------------------------------

      cannotSend(card) { return card.sending || card.gone || this.tooLong(card); },
      sendLabel(card) { return card.sending ? 'Sending…' : 'Send'; },

      // The draft against the server's limit, live, so an over-long text is caught before Send.
      draftLength(card) { return textLength(card.draft); },
      tooLong(card) { return this.draftLength(card) > this.textLimit; },
      countText(card) { return this.draftLength(card) + '/' + this.textLimit; },
      countClass(card) { return this.tooLong(card) ? 'count-over' : ''; },
      countId(card) { return 'count-' + card.id; },

      async submit(card) {
        if (this.cannotSend(card)) return;
        card.sending = true;
        card.problem = '';
        card.busyUntil = 0;
        card.queueFullUntil = 0;
        const path = '/api/v1/banners/' + encodeURIComponent(card.id) + '/message';
        const body = { text: card.draft };
        const headers = { 'Idempotency-Key': newIdempotencyKey() };
        let response;
        try {
          try {
            response = await this.request('POST', path, body, headers);
          } catch (err) {
            response = await this.request('POST', path, body, headers); // same key: cannot show twice
          }
        } catch (err) {
          card.sending = false;
          card.problem = 'Network error: the message was not sent.';
          return;
        }
        card.sending = false;
        if (response.status === 201) {
          card.draft = '';
          if (response.data && advances(card, response.data)) this.showBanner(card, response.data);
        } else if (response.status === 409 && response.data && response.data.free_at) {
          card.busyUntil = parseTime(response.data.free_at) || (this.now + retryAfterMs(response));
        } else if (response.status === 401 || response.status === 403) {
          card.problem = this.askForKey(response, 'to send messages');
        } else {
          card.problem = problemText(response);
        }
      },

      // ---- booking the next slot ----------------------------------------------------------------------

      queueText(card) {
        const waiting = card.queue.length;
        if (!waiting) return '';
        const next = new Date(parseTime(card.queue[0].starts_at) - skewMs).toLocaleTimeString();
        return waiting + ' waiting, next at ' + next;
      },
      /** A refused submit offers the next free slot instead, when the page holds no booking yet. */
      canBook(card) {
        return card.busyUntil > 0 && !card.mine && !card.gone && !this.tooLong(card) && card.draft.trim() !== '';
      },
      bookLabel(card) { return card.booking ? 'Booking…' : 'Book the next slot'; },
      mineText(card) {
        const mine = card.mine;
        if (!mine) return '';
        if (card.message && card.message.id === mine.id) return 'Your message is showing now.';
        const index = card.queue.findIndex((b) => b.id === mine.id);
        if (index < 0) return '';
        const at = new Date(parseTime(card.queue[index].starts_at) - skewMs).toLocaleTimeString();
        return 'Your message is number ' + (index + 1) + ' in line: it shows at ' + at + '.';
      },
      canCancelMine(card) {
        return Boolean(card.mine) && card.queue.some((b) => b.id === card.mine.id);
      },

      async book(card) {
        if (!this.canBook(card) || card.booking) return;
        card.booking = true;
        card.problem = '';
        const path = '/api/v1/banners/' + encodeURIComponent(card.id) + '/bookings';
        const body = { text: card.draft };
        const headers = { 'Idempotency-Key': newIdempotencyKey() };
        let response;
        try {
          response = await this.request('POST', path, body, headers);
        } catch (err) {
          card.booking = false;
          card.problem = 'Network error: the slot was not booked.';
          return;
        }
        card.booking = false;
        if (response.status === 202 && response.data) {
          card.draft = '';
          card.busyUntil = 0;
          card.mine = { id: response.data.booking_id, token: response.data.cancel_token };
        } else if (response.status === 201) {
          card.draft = '';
          card.busyUntil = 0;
          if (response.data && advances(card, response.data)) this.showBanner(card, response.data);
        } else if (response.status === 409 && response.data && response.data.frees_at) {
          card.busyUntil = 0;
          card.queueFullUntil = parseTime(response.data.frees_at) || (this.now + retryAfterMs(response));
        } else if (response.status === 401 || response.status === 403) {
          card.problem = response.data && response.data.type && response.data.type.endsWith('/booking-off')
            ? 'This server takes no bookings: send again when the banner is free.'
            : this.askForKey(response, 'to book');
        } else {
          card.problem = problemText(response);
        }
      },

      async cancelMine(card) {
        const mine = card.mine;
        if (!mine) return;
        const path = '/api/v1/banners/' + encodeURIComponent(card.id) + '/bookings/' + encodeURIComponent(mine.id);
        let response;
        try {
          response = await this.request('DELETE', path, undefined, { 'Cancel-Token': mine.token || '' });
        } catch (err) {
          card.problem = 'Network error: the booking was not cancelled.';
          return;
        }
        if (response.status === 204 || response.status === 404) card.mine = null;
        else card.problem = problemText(response);
      },

      // ---- what the banner showed ---------------------------------------------------------------------

      async toggleHistory(card) {
        card.historyOpen = !card.historyOpen;
        if (card.historyOpen) await this.loadHistory(card);
      },
      async loadHistory(card) {
        card.historyNote = 'Loading…';
        let response;
        try {
          response = await this.request('GET', '/api/v1/banners/' + encodeURIComponent(card.id) + '/history?limit=10');
        } catch (err) {
          card.historyNote = 'Network error: the history did not load.';
          return;
        }
        if (response.status !== 200 || !response.data) {
          card.historyNote = problemText(response);
          return;
        }
        card.history = response.data.items;
        card.historyNote = card.history.length ? '' : 'Nothing shown yet.';
      },
      historyLabel(card) { return card.historyOpen ? 'Hide history' : 'History'; },
      historyWhen(entry) {
        const at = parseTime(entry.shown_at || entry.slot_start);
        return at ? new Date(at - skewMs).toLocaleString() : '';
      },
      historyHow(entry) {
        if (!entry.ended) return 'showing now';
        const how = { expired: 'shown in full', cleared: 'cleared early', deleted: 'banner deleted',
          missed: 'missed its slot' }[entry.ended] || entry.ended;
        return entry.acked_at ? how + ' · on the banner' : how;
      },
      queueSlots(card) {
        return card.queue.map((b, i) => ({
          id: b.id,
          text: (i + 1) + '. at ' + new Date(parseTime(b.starts_at) - skewMs).toLocaleTimeString()
            + (card.mine && card.mine.id === b.id ? ' (yours)' : ''),
        }));
      },

      hasNotice(card) {
        return this.tooLong(card) || Boolean(card.problem) || card.busyUntil > 0 || card.queueFullUntil > this.now;
      },
      noticeText(card) {
        if (this.tooLong(card)) {
          const over = this.draftLength(card) - this.textLimit;
          return over + (over === 1 ? ' character' : ' characters') + ' too many: a banner shows at most '
            + this.textLimit + '.';
        }
        if (card.busyUntil > 0) {
          const seconds = Math.max(0, Math.ceil((card.busyUntil - this.now) / 1000));
          const at = new Date(card.busyUntil - skewMs).toLocaleTimeString();
          return 'Banner busy — free in ' + seconds + ' s (at ' + at + ')';
        }
        if (card.queueFullUntil > this.now) {
          const seconds = Math.max(0, Math.ceil((card.queueFullUntil - this.now) / 1000));
          return 'The line for this banner is full — a place frees in ' + seconds + ' s';
        }
        return card.problem;
      },
      noticeClass(card) {
        const waiting = card.busyUntil > 0 || card.queueFullUntil > this.now;
        return waiting && !this.tooLong(card) ? 'notice-busy' : 'notice-error';
      },

      // ---- operator tools ----------------------------------------------------------------------------

      toggleTools() { this.toolsOpen = !this.toolsOpen; },
      toolsClass() { return this.keyWanted ? 'attention' : ''; },
      hasKey() { return Boolean(this.apiKey); },

      // Only a 401/403 from the server asks for a key: servers that need none never show the prompt.
      askForKey(response, what) {
        this.toolsOpen = true;
        this.keyWanted = true;
        this.keyNote = this.apiKey ? 'The server refused this key (' + response.status + '). Enter the right one.'
          : 'This server needs a key ' + what + '.';
        return 'API key needed ' + what + ': enter it under Operator, then try again.';
      },

      saveKey() {
        const key = this.keyDraft.trim();
        if (!/^[\x21-\x7e]+$/.test(key)) {
          this.keyNote = 'A key is visible ASCII characters without spaces.';
          return;
        }
        this.apiKey = key;
        this.keyDraft = '';
        this.keyWanted = false;
        this.keyNote = 'Key saved in this browser.';
        try { localStorage.setItem(KEY_STORAGE, key); } catch (err) { /* private mode: keep it in memory */ }
        for (const card of this.cards) if (card.problem.startsWith('API key needed')) card.problem = '';
      },

      forgetKey() {
        this.apiKey = '';
        this.keyNote = 'Key forgotten.';
        try { localStorage.removeItem(KEY_STORAGE); } catch (err) { /* nothing stored */ }
      },

      keyHint() {
        if (this.keyNote) return this.keyNote;
        return this.apiKey ? 'A key is saved in this browser.' : 'Only needed when the server has one set.';
      },
      keyHintClass() { return this.keyWanted ? 'hint-error' : ''; },

      async register() {
        if (this.registering) return;
        this.registering = true;
        this.registerNote = '';
        let response;
        try {
          response = await this.request('POST', '/api/v1/banners', { id: this.newId.trim(), name: this.newName });
        } catch (err) {
          this.registering = false;
          this.registerFailed = true;
          this.registerNote = 'Network error: the banner was not registered.';
          return;
        }
        this.registering = false;
        if (response.status === 201) {
          this.registerFailed = false;
          this.registerNote = 'Registered ' + response.data.id + '.';
          this.newId = '';
          this.newName = '';
          this.reloadPage();
        } else {
          this.registerFailed = true;
          this.registerNote = response.status === 401 || response.status === 403
            ? this.askForKey(response, 'to register banners (an operator key)') : registerProblemText(response);
        }
      },
      registerHintClass() { return this.registerFailed ? 'hint-error' : 'hint-ok'; },

      // ---- HTTP --------------------------------------------------------------------------------------

      async request(method, path, body, extraHeaders) {
        const headers = { Accept: 'application/json, application/problem+json' };
        if (body !== undefined) headers['Content-Type'] = 'application/json';
        if (this.apiKey) headers.Authorization = 'Bearer ' + this.apiKey;
        Object.assign(headers, extraHeaders || {});
        const response = await fetch(path, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          cache: 'no-store',
          credentials: 'same-origin',
        });
        let data = null;
        try { data = await response.json(); } catch (err) { data = null; }
        return { status: response.status, data, headers: response.headers };
      },
    };
  }

  function retryAfterMs(response) {
    const seconds = Number(response.headers.get('Retry-After'));
    return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0;
  }

  function readStoredKey() {
    try { return localStorage.getItem(KEY_STORAGE) || ''; } catch (err) { return ''; }
  }

  document.addEventListener('alpine:init', () => {
    window.Alpine.data('fleet', fleet);
  });
})();
