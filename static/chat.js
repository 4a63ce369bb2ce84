// The chat page: EventSource first, long-poll when it must; one cursor, duplicates dropped by id.
// Tabs of one room in one browser share one stream: the tab holding a Web Lock streams and relays
// every event to the others over a BroadcastChannel. Also: who is here, who is typing, scrolling
// back through older messages, and on / the list of active rooms.
// Plain JavaScript, no build step. Inserts only the server-rendered, escaped `html` fragments, or
// text nodes; no inline script or style (the page's CSP forbids both).
(function () {
  "use strict";

  var root = document.getElementById("chat");
  if (!root) return;

  var room = root.dataset.room;
  var cursor = root.dataset.cursor;          // id of the newest message shown (or the room's base)
  var streamUrl = root.dataset.streamUrl;
  var pollUrl = root.dataset.pollUrl;
  var postUrl = root.dataset.postUrl;
  var healthUrl = root.dataset.healthUrl;
  var historyUrl = root.dataset.historyUrl;
  var typingUrl = root.dataset.typingUrl;
  var presenceUrl = root.dataset.presenceUrl;
  var roomsUrl = root.dataset.roomsUrl;
  var inbox = document.getElementById("inbox");
  var form = document.getElementById("composer");
  var bodyInput = document.getElementById("body");
  var nameInput = document.getElementById("name");
  var statusEl = document.getElementById("status");
  var errorEl = document.getElementById("send-error");
  var hintEl = document.getElementById("hint");
  var pill = document.getElementById("new-messages");
  var peopleEl = document.getElementById("people");
  var peopleCount = document.getElementById("people-count");
  var membersEl = document.getElementById("members");
  var typingEl = document.getElementById("typing");
  var announceEl = document.getElementById("announce");
  var earlierBox = document.getElementById("earlier");
  var earlierButton = document.getElementById("load-earlier");
  var beginningEl = document.getElementById("beginning");

  var FALLBACK_KEY = "chat.transport";       // sessionStorage: this tab fell back to polling
  var NAME_KEY = "chat.name";                // localStorage: the nickname
  var OPEN_TIMEOUT = 3000;                   // no stream open by then: poll instead
  var SEND_TIMEOUT = 10000;
  var NEAR_BOTTOM = 80;                      // px: closer than this to the end counts as "at the end"
  var TYPING_EVERY = 3000;                   // ms between "I am typing" notices while one types
  var PRESENCE_EVERY = 5000;                 // ms between presence lookups while long-polling
  var EARLIER_PAGE = 50;                     // older messages fetched per scroll-back step
  var EARLIER_WAIT = 5000;                   // ms to wait for the stream's reset (see loadEarlier)
  var WIDE = "(min-width: 48rem)";           // the panels stand open beside the list (chat.css)

  function nickname() { return nameInput.value.trim(); }
  function noop() {}

  // ---- the connection, in plain words ---------------------------------------------------------
  var STATUS_WORDS = {
    connecting: "Connecting…",
    live: "Connected",
    polling: "Connected (compatibility mode)",
    reconnecting: "Reconnecting…",
    offline: "Offline"
  };
  var shownState = null;

  function connected(state) { return state === "live" || state === "polling"; }

  // #status is a live region: it is written only when the state changes, so a screen reader
  // hears "Connected" once, not once per message.
  function setStatus(state) {
    if (state === shownState) return;
    var was = shownState;
    shownState = state;
    statusEl.textContent = STATUS_WORDS[state] || state;
    statusEl.dataset.state = state;
    statusEl.hidden = false;                 // the page renders it hidden for browsers without script
    root.dataset.state = state;
    relay({ type: "status", state: state });
    // "Not sent: the server cannot be reached" is history once the page is connected again; the
    // message itself keeps its Retry button.
    if (connected(state) && !connected(was)) showSendError("");
  }

  // Capped, jittered exponential backoff that resets on success.
  function Backoff(base, cap) {
    this.base = base; this.cap = cap; this.tries = 0;
  }
  Backoff.prototype.next = function () {
    var delay = Math.min(this.cap, this.base * Math.pow(2, this.tries));
    this.tries += 1;
    return delay * (0.5 + Math.random() / 2);
  };
  Backoff.prototype.reset = function () { this.tries = 0; };

  // ---- time -----------------------------------------------------------------------------------
  function timeOf(node) {
    var time = node.querySelector("time[datetime]");
    var when = time ? new Date(time.getAttribute("datetime")) : new Date();
    return isNaN(when) ? new Date() : when;
  }

  function localizeTimes(node) {
    var times = node.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var when = new Date(times[i].getAttribute("datetime"));
      if (!isNaN(when)) {
        times[i].textContent = when.toLocaleTimeString([], { timeStyle: "short" });
        times[i].title = when.toLocaleString([], { dateStyle: "full", timeStyle: "short" });
      }
    }
  }

  function dayKey(date) {
    return date.getFullYear() + "-" + (date.getMonth() + 1) + "-" + date.getDate();
  }

  function dayLabel(key) {
    var parts = key.split("-");
    var day = new Date(+parts[0], parts[1] - 1, +parts[2]);
    var today = new Date();
    if (key === dayKey(today)) return "Today";
    var yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (key === dayKey(yesterday)) return "Yesterday";
    var options = { weekday: "long", month: "long", day: "numeric" };
    if (day.getFullYear() !== today.getFullYear()) options.year = "numeric";
    return day.toLocaleDateString([], options);
  }

  function relabelDays() {
    var days = inbox.querySelectorAll(".day");
    for (var i = 0; i < days.length; i++) days[i].textContent = dayLabel(days[i].dataset.day);
  }

  (function atMidnight() {                   // "Today" becomes "Yesterday" at midnight
    var now = new Date();
    var next = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1, 0, 0, 5);
    setTimeout(function () { relabelDays(); atMidnight(); }, next - now);
  }());

  // ---- the list -------------------------------------------------------------------------------
  // #inbox holds, top to bottom: delivered messages under day headings (stale ones above a reset
  // divider), then this page's own messages that have not been delivered yet (sending, not sent,
  // or confirmed but still on their way), without headings. Delivered messages go in above those.
  function isMessage(node) { return node && node.classList.contains("message"); }
  function unsettled(node) {
    return node.classList.contains("pending") || node.classList.contains("unsettled");
  }

  function insertionPoint() {
    return inbox.querySelector(".message.pending, .message.unsettled");
  }

  function previousMessageOrMark(anchor) {
    var node = anchor ? anchor.previousElementSibling : inbox.lastElementChild;
    while (node && !isMessage(node) && !node.classList.contains("day") &&
           !node.classList.contains("divider")) {
      node = node.previousElementSibling;
    }
    return node;
  }

  function removeInvitation() {
    var empty = document.getElementById("empty");
    if (empty) empty.remove();
  }

  // Puts a delivered message at the end of the delivered ones, with a day heading above it when
  // it starts a new day, or is the first after a reset divider.
  function place(node) {
    removeInvitation();
    var anchor = insertionPoint();
    var key = dayKey(timeOf(node));
    var before = previousMessageOrMark(anchor);
    var sameDay = before && (isMessage(before) ? dayKey(timeOf(before)) === key :
                             before.classList.contains("day") && before.dataset.day === key);
    if (!sameDay) {
      var heading = document.createElement("h2");
      heading.className = "day";
      heading.dataset.day = key;
      heading.textContent = dayLabel(key);
      inbox.insertBefore(heading, anchor);
    }
    inbox.insertBefore(node, anchor);
  }

  // Removes a message, and the day heading above it if that heading now heads nothing.
  function removeMessage(node) {
    var before = node.previousElementSibling;
    var after = node.nextElementSibling;
    node.remove();
    if (before && before.classList.contains("day") && !(isMessage(after) && !unsettled(after))) {
      before.remove();
    }
  }

  function fromHtml(html) {
    var template = document.createElement("template");
    template.innerHTML = html;               // escaped by the server's message.html
    var node = template.content.firstElementChild;
    if (node) localizeTimes(node);
    return node;
  }

  // Both transports feed this: in order, each message once, and the cursor follows.
  function showMessages(list) {
    var stick = nearBottom();
    var added = 0;
    for (var i = 0; i < list.length; i++) {
      var message = list[i];
      var existing = document.getElementById("m" + message.id);
      // A message of ours confirmed before delivery, or one kept from before a reset, moves to
      // its place in the delivered order; anything else already shown is a repeat.
      if (!existing || unsettled(existing) || existing.classList.contains("stale")) {
        var node = fromHtml(message.html);
        if (node) {
          if (existing) removeMessage(existing);
          else added += 1;
          place(node);
        }
      }
      cursor = message.id;
      if (message.name) stoppedTyping(message.name);
    }
    if (stick) scrollToEnd();
    else noteUnseen(added);
    noteUnread(added);
  }

  // The server no longer has the history our cursor belonged to (a restart of an in-memory
  // server, or we were away longer than it keeps). What the reader saw stays, dimmed, above a
  // divider; the new history follows. The divider is added to the log once, so it is announced once.
  function resetHistory() {
    generation += 1;                         // a scroll-back page on its way belongs to the old history
    earlierWaiting = false;
    moreEarlier = true;                      // of the new history: ask
    // Ours that were stored but never delivered belong to the old history too: up they go.
    var confirmed = inbox.querySelectorAll(".message.unsettled");
    for (var i = 0; i < confirmed.length; i++) {
      confirmed[i].classList.replace("unsettled", "stale");
      inbox.insertBefore(confirmed[i], insertionPoint());
    }
    var shown = inbox.querySelectorAll(".message:not(.pending):not(.stale)");
    for (var j = 0; j < shown.length; j++) shown[j].classList.add("stale");
    var anchor = insertionPoint();
    var last = previousMessageOrMark(anchor);
    if (!last || last.classList.contains("divider")) return;   // nothing shown since the last one
    var divider = document.createElement("p");
    divider.className = "divider";
    divider.textContent = "The chat history was reset. Earlier messages may be missing; new ones follow.";
    inbox.insertBefore(divider, anchor);
  }

  // ---- scrolling back -------------------------------------------------------------------------
  // Older messages of the current history go in above the oldest one shown, a page at a time,
  // when the reader reaches the top (an IntersectionObserver on #earlier) or presses "Load
  // earlier messages". The reader's place is kept; a message already shown is never added again.
  var moreEarlier = root.dataset.more === "true";
  var loadingEarlier = false;
  var earlierWaiting = false;                // the server answered "reset": wait for the stream's
  var earlierRetry = 0;                      // no automatic attempt before this time (after a failure)
  var generation = 0;                        // resets seen: a page from before one is dropped

  function oldestCurrent() {
    return inbox.querySelector(".message[id]:not(.stale):not(.pending):not(.unsettled)");
  }

  // Shows the button, or says this is the beginning; the box is above what the reader sees,
  // so its change of size must not move the list under them.
  function updateEarlier() {
    var oldest = oldestCurrent();
    var hadFocus = document.activeElement === earlierButton;
    var fromEnd = inbox.scrollHeight - inbox.scrollTop;
    var height = earlierBox.offsetHeight;
    earlierButton.hidden = !(moreEarlier && oldest && !earlierWaiting);
    beginningEl.hidden = moreEarlier || !oldest || !!inbox.querySelector(".message.stale");
    earlierBox.hidden = earlierButton.hidden && beginningEl.hidden;
    if (earlierBox.offsetHeight !== height) inbox.scrollTop = inbox.scrollHeight - fromEnd;
    // The button is gone (nothing older): keyboard users stay in the list, where it was.
    if (hadFocus && earlierButton.hidden) inbox.focus({ preventScroll: true });
  }

  function announce(text) {
    announceEl.textContent = "";
    setTimeout(function () { announceEl.textContent = text; }, 50);
  }

  function loadEarlier(byHand) {
    var oldest = oldestCurrent();
    if (loadingEarlier || !moreEarlier || earlierWaiting || !oldest) return;
    if (!byHand && Date.now() < earlierRetry) return;
    loadingEarlier = true;
    var started = generation;
    earlierButton.textContent = "Loading earlier messages…";
    inbox.setAttribute("aria-busy", "true");
    var url = historyUrl + "?room=" + encodeURIComponent(room) + "&before=" +
              encodeURIComponent(oldest.id.slice(1)) + "&limit=" + EARLIER_PAGE;
    fetch(url, { cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (reply) {
        if (started !== generation) return;  // the history was reset meanwhile
        if (reply.reset) {
          // Our history is no longer the server's: the stream says so next (resetHistory), and
          // scrolling back goes on in the new one. Should it not, ask again in a while.
          earlierWaiting = true;
          setTimeout(function () {
            if (started !== generation || !earlierWaiting) return;
            earlierWaiting = false;
            updateEarlier();
            watchEarlier();
          }, EARLIER_WAIT);
          return;
        }
        var added = showEarlier(reply.messages || [], oldestCurrent());
        moreEarlier = !!reply.more;
        if (added) announce(added === 1 ? "1 earlier message loaded." : added + " earlier messages loaded.");
        if (!moreEarlier) announce("This is the beginning of #" + room + ".");
      })
      .catch(function () {
        earlierRetry = Date.now() + 5000;
        setTimeout(watchEarlier, 5000);
        announce("Earlier messages could not be loaded. Try again in a moment.");
      })
      .then(function () {
        loadingEarlier = false;
        inbox.removeAttribute("aria-busy");
        earlierButton.textContent = "Load earlier messages";
        updateEarlier();
        watchEarlier();                      // still at the top (a short page): the next one
      });
  }

  // Inserts older messages (oldest first) above ``first``, the oldest message shown, with day
  // headings; the heading above ``first`` goes if the older ones end on its day.
  function showEarlier(list, first) {
    if (!first) return 0;
    var above = first.previousElementSibling;
    var anchor = above && above.classList.contains("day") ? above : first;
    var batch = document.createDocumentFragment();
    var lastDay = null;
    var added = 0;
    for (var i = 0; i < list.length; i++) {
      if (document.getElementById("m" + list[i].id)) continue;
      var node = fromHtml(list[i].html);
      if (!node) continue;
      var key = dayKey(timeOf(node));
      if (key !== lastDay) {
        var heading = document.createElement("h2");
        heading.className = "day";
        heading.dataset.day = key;
        heading.textContent = dayLabel(key);
        batch.appendChild(heading);
        lastDay = key;
      }
      batch.appendChild(node);
      added += 1;
    }
    if (!added) return 0;
    var fromEnd = inbox.scrollHeight - inbox.scrollTop;
    inbox.insertBefore(batch, anchor);
    if (anchor !== first && anchor.dataset.day === lastDay) anchor.remove();
    inbox.scrollTop = inbox.scrollHeight - fromEnd;
    return added;
  }

  var earlierWatcher = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    if (entries[entries.length - 1].isIntersecting) loadEarlier(false);
  }, { root: inbox, rootMargin: "100px 0px 0px 0px" }) : null;

  // (Re)start watching: the observer reports at once whether #earlier is in view now.
  function watchEarlier() {
    if (!earlierWatcher) return;
    earlierWatcher.unobserve(earlierBox);
    earlierWatcher.observe(earlierBox);
  }

  earlierButton.addEventListener("click", function () { loadEarlier(true); });

  // ---- scrolling, and what arrived out of sight -------------------------------------------------
  var unseen = 0;
  var unread = 0;
  var baseTitle = document.title;

  function nearBottom() {
    return inbox.scrollHeight - inbox.scrollTop - inbox.clientHeight < NEAR_BOTTOM;
  }

  function scrollToEnd() {
    inbox.scrollTop = inbox.scrollHeight;
    unseen = 0;
    pill.hidden = true;
  }

  function noteUnseen(count) {
    if (!count) return;
    unseen += count;
    pill.textContent = unseen === 1 ? "1 new message ↓" : unseen + " new messages ↓";
    pill.hidden = false;
  }

  function noteUnread(count) {
    if (!count || !document.hidden) return;
    unread += count;
    document.title = "(" + unread + ") " + baseTitle;
  }

  inbox.addEventListener("scroll", function () {
    if (!pill.hidden && nearBottom()) scrollToEnd();
  });
  pill.addEventListener("click", function () {
    scrollToEnd();
    inbox.focus({ preventScroll: true });    // the button is gone; keyboard users land on the list
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      unread = 0;
      document.title = baseTitle;
    }
  });

  // ---- transport: EventSource -------------------------------------------------------------------
  var streamName = null;                     // the name this tab's stream or poll counts under
  var source = null;
  var streaming = false;                     // EventSource is this page's transport
  var streamWorked = false;                  // some stream has opened on this page
  var streamBackoff = new Backoff(1000, 30000);

  function startStream() {
    streaming = true;
    var opened = false;
    streamName = nickname();                 // present under this name while the stream is open
    var url = streamUrl + "?room=" + encodeURIComponent(room) +
              "&last_event_id=" + encodeURIComponent(cursor) +
              (streamName ? "&name=" + encodeURIComponent(streamName) : "");
    var es = new EventSource(url);
    source = es;
    // A proxy that buffers the response never lets a stream open. Once a stream has opened on
    // this page, a slow reconnect (the network just came back) is not that: keep trying.
    var openTimer = setTimeout(function () {
      if (!opened && !streamWorked && source === es) {
        fallBack("no stream opened within " + OPEN_TIMEOUT + " ms");
      }
    }, OPEN_TIMEOUT);

    es.onopen = function () {
      opened = true;
      streamWorked = true;
      clearTimeout(openTimer);
      streamBackoff.reset();
      setStatus("live");
    };
    es.addEventListener("message", function (event) {
      received({ type: "messages", messages: [JSON.parse(event.data)] });
    });
    es.addEventListener("reset", function (event) {
      received({ type: "reset", cursor: event.lastEventId || null });
    });
    // Who is here and who is typing: frames without an id, so they never move the cursor.
    es.addEventListener("presence", function (event) {
      received({ type: "presence", data: JSON.parse(event.data) });
    });
    es.addEventListener("typing", function (event) {
      received({ type: "typing", data: JSON.parse(event.data) });
    });
    es.onerror = function () {
      if (source !== es) return;
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up for good (a non-200 answer, a wrong content type).
        clearTimeout(openTimer);
        if (!opened) {
          fallBack("the stream was refused");
        } else {
          es.close();
          setStatus("reconnecting");
          setTimeout(function () { if (source === es) startStream(); }, streamBackoff.next());
        }
      } else {
        // CONNECTING: the browser reconnects by itself and sends Last-Event-ID.
        setStatus(navigator.onLine === false ? "offline" : "reconnecting");
      }
    };
  }

  function fallBack(why) {
    streaming = false;
    if (source) { source.close(); source = null; }
    try { sessionStorage.setItem(FALLBACK_KEY, "poll"); } catch (e) { /* storage disabled */ }
    if (window.console) console.info("chat: long-polling, because " + why);
    startPoll();
  }

  // ---- transport: long-poll ------------------------------------------------------------------
  // A poll that waits sends nothing, so it cannot tell that the server is back. After a failure
  // the page asks /healthz instead, at most a second apart, and says "Connected" when it answers.
  var polling = false;
  var pollAbort = null;
  var pollBackoff = new Backoff(500, 15000);     // after an HTTP error from the poll itself
  var probeBackoff = new Backoff(250, 1000);     // between /healthz probes while the server is away
  var wakeFromSleep = null;

  function sleep(ms) {
    return new Promise(function (resolve) {
      var timer = setTimeout(done, ms);
      function done() { clearTimeout(timer); wakeFromSleep = null; resolve(); }
      wakeFromSleep = done;
    });
  }

  function startPoll() {
    if (polling) return;
    polling = true;
    untilServerAnswers(0).then(pollLoop);
    lookUpPresence();
  }

  // A long-poll gets no presence frames: ask now and then instead.
  var presenceTimer = null;
  function lookUpPresence() {
    clearTimeout(presenceTimer);
    if (!polling) return;
    fetch(presenceUrl + "?room=" + encodeURIComponent(room), { cache: "no-store", credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) { if (data && polling) received({ type: "presence", data: data }); })
      .catch(noop)
      .then(function () { if (polling) presenceTimer = setTimeout(lookUpPresence, PRESENCE_EVERY); });
  }

  function untilServerAnswers(delay) {
    return sleep(delay).then(function () {
      if (!polling) return null;
      return fetch(healthUrl, { cache: "no-store", credentials: "same-origin" })
        .then(function (response) { if (!response.ok) throw new Error("HTTP " + response.status); })
        .then(function () {
          probeBackoff.reset();
          setStatus("polling");
        }, function () {
          setStatus(navigator.onLine === false ? "offline" : "reconnecting");
          return untilServerAnswers(probeBackoff.next());
        });
    });
  }

  var restartPoll = false;                   // the poll was aborted to ask again under a new name

  function pollLoop() {
    if (!polling) return;
    pollAbort = new AbortController();
    streamName = nickname();
    var fields = { room: room, cursor: cursor };
    if (streamName) fields.name = streamName;
    postForm(pollUrl, fields, pollAbort.signal)
      .then(function (response) {
        if (!response.ok) {
          var error = new Error("HTTP " + response.status);
          error.status = response.status;
          throw error;
        }
        return response.json();
      })
      .then(function (reply) {
        pollBackoff.reset();
        setStatus("polling");
        if (reply.messages) {
          received({ type: "messages", reset: !!reply.reset, messages: reply.messages });
        }
        pollLoop();
      })
      .catch(function (error) {
        if (!polling) return;
        if (restartPoll) {
          restartPoll = false;
          pollLoop();
          return;
        }
        setStatus(navigator.onLine === false ? "offline" : "reconnecting");
        if (error.status) {
          sleep(pollBackoff.next()).then(pollLoop);        // it answered, but not with messages
        } else {
          untilServerAnswers(probeBackoff.next()).then(pollLoop);
        }
      });
  }

  // ---- sending --------------------------------------------------------------------------------
  // A message shows at once as "Sending…", is confirmed in place by the server's reply (its id),
  // or is marked "Not sent" with a Retry button. Each composed message has its own client_key,
  // sent again unchanged by every retry, so a server that honours it stores the message once.
  function xsrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
    return match ? decodeURIComponent(match[1]) : form.elements._xsrf.value;
  }

  function newClientKey() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);           // works outside secure contexts, unlike randomUUID
    var key = "";
    for (var i = 0; i < bytes.length; i++) key += (bytes[i] + 256).toString(16).slice(1);
    return key;
  }

  // POST a form with the _xsrf token. A 403 means our token is no longer valid (the server's
  // secret changed: a memory store restarted); the page hands out a fresh cookie when the one
  // it gets fails its check, so fetch the page (HEAD) once and send again with the new token.
  function postForm(url, fields, signal) {
    function attempt() {
      var data = new FormData();
      for (var key in fields) data.append(key, fields[key]);
      data.append("_xsrf", xsrfToken());
      return fetch(url, { method: "POST", body: data, signal: signal, credentials: "same-origin" });
    }
    return attempt().then(function (response) {
      if (response.status !== 403) return response;
      return fetch(location.pathname, { method: "HEAD", signal: signal, cache: "no-store",
                                        credentials: "same-origin" }).then(attempt);
    });
  }

  function showSendError(text) {
    errorEl.textContent = text;
    errorEl.hidden = !text;
  }

  function pendingNode(entry) {
    var node = document.createElement("div");
    node.className = "message pending";
    node.dataset.clientKey = entry.key;
    var article = document.createElement("article");
    var name = document.createElement("span");
    name.className = "name";
    name.dir = "auto";
    name.textContent = entry.name || "anonymous";
    var body = document.createElement("span");
    body.className = "body";
    body.dir = "auto";
    body.textContent = entry.text;
    var time = document.createElement("time");
    time.setAttribute("datetime", new Date().toISOString());
    var state = document.createElement("span");
    state.className = "send-state";
    article.append(name, " ", body, " ", time, " ", state);
    node.appendChild(article);
    localizeTimes(node);
    return node;
  }

  function markSending(entry) {
    entry.node.classList.remove("failed");
    entry.node.querySelector(".send-state").textContent = "Sending…";
    var retry = entry.node.querySelector(".retry");
    if (retry) retry.remove();
  }

  function markFailed(entry) {
    entry.node.classList.add("failed");
    entry.node.querySelector(".send-state").textContent = "Not sent";
    var retry = document.createElement("button");
    retry.type = "button";
    retry.className = "retry";
    retry.textContent = "Retry";
    retry.addEventListener("click", function () {
      var hadFocus = document.activeElement === retry;
      enqueue(entry);
      if (hadFocus) bodyInput.focus();
    });
    entry.node.querySelector("article").appendChild(retry);
  }

  // The server stored it: show its own fragment where the pending one was. It stays "unsettled"
  // (below whatever is delivered meanwhile) until the stream or poll brings it.
  function confirm(entry, message) {
    var node = message && message.id && message.html ? fromHtml(message.html) : null;
    if (!node) return;
    if (document.getElementById("m" + message.id)) {
      removeMessage(entry.node);             // already delivered: shown once
    } else {
      node.classList.add("unsettled");
      entry.node.replaceWith(node);
    }
  }

  var outbox = [];                           // composed, waiting their turn (sent one at a time)
  var inFlight = null;

  function enqueue(entry) {
    markSending(entry);
    outbox.push(entry);
    pump();
  }

  function pump() {
    if (inFlight || !outbox.length) return;
    var entry = inFlight = outbox.shift();
    var abort = new AbortController();
    var timer = setTimeout(function () { abort.abort(); }, SEND_TIMEOUT);
    postForm(postUrl, { room: room, body: entry.text, name: entry.name, client_key: entry.key },
             abort.signal)
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (reply) {
          if (!response.ok) throw new Error(reply.error || ("HTTP " + response.status));
          confirm(entry, reply);
          showSendError("");
        });
      })
      .catch(function (error) {
        var why = error.name === "AbortError" ? "the server did not answer" : error.message;
        if (error instanceof TypeError) why = "the server cannot be reached";
        markFailed(entry);
        showSendError("Not sent: " + why + ". Press Retry on the message to send it again.");
      })
      .then(function () {
        clearTimeout(timer);
        inFlight = null;
        pump();
      });
  }

  function send() {
    var text = bodyInput.value.trim();
    if (!text) return;
    var entry = { key: newClientKey(), text: text, name: nameInput.value.trim(), node: null };
    entry.node = pendingNode(entry);
    removeInvitation();
    inbox.appendChild(entry.node);
    bodyInput.value = "";
    fitComposer();
    scrollToEnd();                           // your own message always brings you down
    lastTyping = 0;                          // typing again later is news again
    enqueue(entry);
  }

  // ---- the composer ---------------------------------------------------------------------------
  // On a touch screen Enter adds a line and the Send button sends; with a keyboard Enter sends.
  var touch = window.matchMedia("(pointer: coarse)").matches;
  hintEl.textContent = touch ? "Enter adds a line. Send sends."
                             : "Enter sends. Shift+Enter adds a line.";
  hintEl.hidden = false;

  // Grows with its text up to the CSS max-height (about six lines), then scrolls.
  function fitComposer() {
    var style = getComputedStyle(bodyInput);
    var borders = parseFloat(style.borderTopWidth) + parseFloat(style.borderBottomWidth);
    bodyInput.style.height = "auto";
    bodyInput.style.height = (bodyInput.scrollHeight + borders) + "px";
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    send();
    if (!touch) bodyInput.focus();
  });
  // Pressing Send leaves the focus (and a phone's keyboard) in the message box.
  form.querySelector(".send").addEventListener("mousedown", function (event) {
    event.preventDefault();
  });
  bodyInput.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !touch) {
      event.preventDefault();
      send();
    }
  });
  bodyInput.addEventListener("input", function () {
    fitComposer();
    typed();
  });

  // ---- the nickname ---------------------------------------------------------------------------
  // One per browser (localStorage): a change in one tab shows in the others, and the tab that
  // streams reconnects under the new name, so presence lists it.
  try {
    nameInput.value = localStorage.getItem(NAME_KEY) || nameInput.value;
  } catch (e) { /* storage disabled */ }
  nameInput.addEventListener("change", function () {
    try { localStorage.setItem(NAME_KEY, nickname()); } catch (e) { /* ignore */ }
    nameChanged();
  });
  window.addEventListener("storage", function (event) {
    if (event.key !== NAME_KEY || document.activeElement === nameInput) return;
    nameInput.value = event.newValue || "";
    nameChanged();
  });

  function nameChanged() {
    markYou();
    if (role === "follower" || nickname() === (streamName || "")) return;
    if (streaming && source) {
      source.close();
      startStream();                         // from the cursor: nothing missed, nothing twice
    } else if (polling && pollAbort) {
      restartPoll = true;
      pollAbort.abort();
    }
  }

  // ---- typing ---------------------------------------------------------------------------------
  // While one types (with a nickname), "typing" at most every TYPING_EVERY ms; the server relays
  // it to the room as a typing frame that lasts until its `until`.
  var lastTyping = 0;

  function typed() {
    var name = nickname();
    if (!name || !bodyInput.value.trim() || Date.now() - lastTyping < TYPING_EVERY) return;
    lastTyping = Date.now();
    postForm(typingUrl, { room: room, name: name }).catch(noop);
  }

  var typers = new Map();                    // name -> timer that ends their "typing…"

  function showTyping(data) {
    if (!data || typeof data.name !== "string" || data.name === nickname()) return;
    // `until` is the server's clock; a browser whose clock is far off gets the usual 5 s.
    var left = data.until * 1000 - Date.now();
    if (!(left > 0 && left <= 60000)) left = 5000;
    clearTimeout(typers.get(data.name));
    typers.delete(data.name);                // re-added last: names in the order they typed
    typers.set(data.name, setTimeout(function () { stoppedTyping(data.name); }, left));
    renderTyping();
  }

  function stoppedTyping(name) {
    if (!typers.has(name)) return;
    clearTimeout(typers.get(name));
    typers.delete(name);
    renderTyping();
  }

  function renderTyping() {
    var names = Array.from(typers.keys());
    var text = "";
    if (names.length === 1) text = names[0] + " is typing…";
    else if (names.length === 2) text = names[0] + " and " + names[1] + " are typing…";
    else if (names.length === 3) text = names[0] + ", " + names[1] + " and " + names[2] + " are typing…";
    else if (names.length > 3) {
      text = names[0] + ", " + names[1] + " and " + (names.length - 2) + " others are typing…";
    }
    // Written only when it changes: the live region speaks once per change, not per notice.
    if (typingEl.textContent !== text) typingEl.textContent = text;
  }

  // ---- who is here ----------------------------------------------------------------------------
  // #people is a polite live region: its summary says how many are here, its list names them
  // (the server lists at most 100 names; the rest, and everyone without a name, are counted).
  var lastPresence = null;

  function showPresence(data) {
    if (!data || typeof data.count !== "number" || !Array.isArray(data.members)) return;
    var changed = !lastPresence || lastPresence.count !== data.count;
    lastPresence = data;
    if (changed && refreshRooms) refreshRooms();  // on /, this room's line in the rooms list
    peopleEl.hidden = false;
    var count = Math.max(data.count, data.members.length);
    var summary = count === 1 ? "1 person here" : count + " people here";
    if (peopleCount.textContent !== summary) peopleCount.textContent = summary;

    var items = new Map();
    var more = null;
    Array.prototype.forEach.call(membersEl.children, function (li) {
      if (li.classList.contains("more")) more = li;
      else items.set(li.dataset.name, li);
    });
    var wanted = new Set(data.members);
    items.forEach(function (li, name) { if (!wanted.has(name)) li.remove(); });
    data.members.forEach(function (name, i) {
      var li = items.get(name) || memberItem(name);
      var at = membersEl.children[i] || null;
      if (at !== li) membersEl.insertBefore(li, at);
    });
    var others = count - data.members.length;
    if (others > 0) {
      var text = data.members.length ? "and " + others + " more"
                                     : others === 1 ? "1 person without a name" : others + " people without a name";
      if (!more) {
        more = document.createElement("li");
        more.className = "more";
      }
      if (more.textContent !== text) more.textContent = text;
      if (membersEl.lastElementChild !== more) membersEl.appendChild(more);
    } else if (more) {
      more.remove();
    }
  }

  function memberItem(name) {
    var li = document.createElement("li");
    li.dataset.name = name;
    var who = document.createElement("span");
    who.className = "member";
    who.dir = "auto";
    who.textContent = name;
    li.appendChild(who);
    markYou(li);
    return li;
  }

  // "(you)" beside one's own name.
  function markYou(only) {
    var items = only ? [only] : Array.prototype.slice.call(membersEl.querySelectorAll("li[data-name]"));
    items.forEach(function (li) {
      var mark = li.querySelector(".you");
      var mine = li.dataset.name === nickname();
      if (mine && !mark) {
        mark = document.createElement("span");
        mark.className = "you";
        mark.textContent = "(you)";
        li.append(" ", mark);
      } else if (!mine && mark) {
        mark.previousSibling.remove();
        mark.remove();
      }
    });
  }

  // Wide screens show the panels open beside the list; a phone keeps them folded.
  if (window.matchMedia(WIDE).matches) {
    peopleEl.open = true;
    var roomsPanel = document.getElementById("rooms");
    if (roomsPanel) roomsPanel.open = true;
  }

  // ---- one stream per browser -----------------------------------------------------------------
  // Tabs of this room in this browser share one stream. The tab holding the Web Lock
  // "chat-stream:<room>" (the leader) runs the transport and relays every event over a
  // BroadcastChannel; the others (followers) show what it relays and keep their cursor from it.
  // When the leader goes, the lock passes to a follower, which streams from its own cursor: the
  // last id relayed, so nothing is missed and ids already shown are dropped. A new follower says
  // hello with its cursor (the newest message its page was rendered with); the leader answers
  // with the messages after it (it keeps the ones its page was rendered with and the latest it
  // relayed), who is here and the connection's state. A cursor the leader does not know is newer
  // than anything it has seen: what follows reaches the follower as relays. (Or it is older than
  // the last 1,000 relayed: a flood between a tab's render and its hello, the one case where a
  // new tab can miss messages; a reload fetches them.) Without Web Locks or
  // BroadcastChannel, or outside a secure context, every tab streams alone ("solo"), as does a
  // tab that polls.
  var SHARING = window.isSecureContext === true && !!navigator.locks &&
                typeof navigator.locks.request === "function" && typeof BroadcastChannel === "function";
  var LOCK = "chat-stream:" + room;
  var RECENT = 1000;                         // messages the leader keeps for a follower's hello
  var tabId = newClientKey();
  var role = "solo";
  var channel = null;
  var releaseLock = null;                    // ends the leader's hold on the lock
  var lockAbort = null;                      // withdraws a follower's queued request for it
  var synced = false;                        // a follower has been welcomed by the leader
  var helloTimer = null;
  var recent = [];                           // the rendered messages, then message and reset events
  var recentCount = 0;

  function setRole(value) {
    role = value;
    root.dataset.role = value;
  }

  // Everything a transport brings goes through here: shown in this tab, relayed to the others.
  function received(event) {
    apply(event);
    relay(event);
  }

  function relay(event) {
    if (role === "leader" && channel) channel.postMessage(event);
  }

  function apply(event) {
    if (event.type === "messages") {
      if (event.reset) resetHistory();
      showMessages(event.messages);
      remember(event);
      updateEarlier();
    } else if (event.type === "reset") {
      resetHistory();
      if (event.cursor) cursor = event.cursor;
      remember(event);
      updateEarlier();
    } else if (event.type === "presence") {
      showPresence(event.data);
    } else if (event.type === "typing") {
      showTyping(event.data);
    } else if (event.type === "status") {
      setStatus(event.state);
    }
  }

  function remember(event) {
    recent.push(event);
    recentCount += event.messages ? event.messages.length : 0;
    while (recentCount > RECENT && recent.length > 1) {
      var gone = recent.shift();
      recentCount -= gone.messages ? gone.messages.length : 0;
    }
  }

  // What a follower whose page ends at ``id`` (null: its page was empty) has not seen: the
  // events after that message, or all of them; [] when ``id`` is not among the recent messages.
  function eventsAfter(id) {
    var start = id === null ? 0 : -1;
    var skip = 0;
    for (var i = recent.length - 1; i >= 0 && start < 0; i--) {
      var list = recent[i].messages || [];
      for (var j = list.length - 1; j >= 0; j--) {
        if (list[j].id === id) { start = i; skip = j + 1; break; }
      }
    }
    if (start < 0) return [];
    return recent.slice(start).map(function (event, k) {
      if (!event.messages) return event;
      var list = event.messages.slice(k === 0 ? skip : 0).map(function (message) {
        if (!message.node) return message;
        var clone = message.node.cloneNode(true);  // a rendered message: the server's fragment
        clone.className = "message";
        return { id: message.id, html: clone.outerHTML };
      });
      return { type: "messages", reset: k === 0 ? false : event.reset, messages: list };
    }).filter(function (event) { return !event.messages || event.messages.length || event.reset; });
  }

  function onChannel(message) {
    var event = message.data || {};
    if (event.type === "hello") {
      if (role === "leader") {
        channel.postMessage({ type: "welcome", to: event.from, events: eventsAfter(event.last),
                              presence: lastPresence, status: shownState });
      }
    } else if (event.type === "welcome") {
      if (event.to === tabId) welcomed(event);
    } else if (role === "follower") {
      // Messages relayed before the welcome are in it.
      if ((event.type === "messages" || event.type === "reset") && !synced) return;
      apply(event);
    }
  }

  function welcomed(welcome) {
    if (role !== "follower" || synced) return;
    clearTimeout(helloTimer);
    synced = true;
    if (welcome.status) setStatus(welcome.status);
    if (welcome.presence) showPresence(welcome.presence);
    welcome.events.forEach(apply);
  }

  // Asks the leader for what this page lacks: the messages after the newest one it shows (or all
  // it has, when this page shows none). Unanswered (the leader may be changing hands), it asks
  // again; after a few tries this tab stops waiting for a leader that does not answer and
  // streams alone.
  var hellos = 0;

  function hello() {
    clearTimeout(helloTimer);
    if (role !== "follower" || synced || !channel) return;
    if (hellos >= 3) {
      if (lockAbort) lockAbort.abort();
      channel.close();
      channel = null;
      setRole("solo");
      startStream();
      return;
    }
    hellos += 1;
    var last = document.getElementById("m" + cursor) ? cursor : null;
    channel.postMessage({ type: "hello", from: tabId, last: last });
    helloTimer = setTimeout(hello, 2000);
  }

  function share() {
    channel = new BroadcastChannel("chat:" + room);
    channel.onmessage = onChannel;
    lockAbort = new AbortController();
    var signal = lockAbort.signal;
    navigator.locks.request(LOCK, { ifAvailable: true }, function (lock) {
      if (lock) return lead();
      setRole("follower");
      synced = false;
      hellos = 0;
      hello();
      navigator.locks.request(LOCK, { signal: signal }, lead).catch(noop);
      return null;
    }).catch(noop);
  }

  // This tab holds the lock: it streams, until the page goes (then the next tab takes over).
  function lead() {
    var takeover = role === "follower";
    setRole("leader");
    clearTimeout(helloTimer);
    synced = true;
    if (!takeover) setStatus("connecting");
    startStream();
    return new Promise(function (resolve) { releaseLock = resolve; });
  }

  // ---- connectivity ---------------------------------------------------------------------------
  // Offline, an open connection is dead or soon will be, yet the browser may leave it hanging
  // until TCP gives up (Chromium's offline mode never breaks it). Drop it now; once back online,
  // resume at once from the cursor instead of waiting for a timeout or a backoff.
  window.addEventListener("offline", function () {
    if (source) { source.close(); source = null; }
    if (pollAbort) pollAbort.abort();
    setStatus("offline");
  });
  window.addEventListener("online", function () {
    streamBackoff.reset();
    pollBackoff.reset();
    probeBackoff.reset();
    if (streaming) {
      if (!source || source.readyState === EventSource.CLOSED) {
        setStatus("connecting");
        startStream();
      }
    } else if (polling) {
      setStatus("connecting");
      if (wakeFromSleep) wakeFromSleep();    // ask the server now, not after the backoff
    }
  });
  window.addEventListener("pagehide", function () {
    polling = false;
    streaming = false;
    if (source) { source.close(); source = null; }
    if (pollAbort) pollAbort.abort();
    clearTimeout(presenceTimer);
    clearTimeout(helloTimer);
    if (releaseLock) { releaseLock(); releaseLock = null; }   // the next tab takes over now
    if (lockAbort) { lockAbort.abort(); lockAbort = null; }
    if (channel) { channel.close(); channel = null; }
    setRole("solo");
  });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) start();            // back from the back/forward cache
  });

  function start() {
    var remembered = null;
    try { remembered = sessionStorage.getItem(FALLBACK_KEY); } catch (e) { /* storage disabled */ }
    setStatus("connecting");
    if (!("EventSource" in window) || remembered === "poll") {
      setRole("solo");
      startPoll();
    } else if (SHARING) {
      share();
    } else {
      setRole("solo");
      startStream();
    }
  }

  // ---- the rooms (on /) -----------------------------------------------------------------------
  var refreshRooms = null;
  var roomsPanelEl = document.getElementById("rooms");
  if (roomsPanelEl) refreshRooms = setUpRooms(roomsPanelEl);

  function setUpRooms(panel) {
    var list = document.getElementById("room-list");
    var none = document.getElementById("no-rooms");
    var openForm = document.getElementById("open-room");
    var field = document.getElementById("room-name");
    var error = document.getElementById("room-error");
    var ROOM_NAME = /^[A-Za-z0-9_-]{1,64}$/;
    var relative = typeof Intl === "object" && Intl.RelativeTimeFormat
      ? new Intl.RelativeTimeFormat([], { numeric: "auto" }) : null;

    function ago(date) {
      var seconds = (Date.now() - date.getTime()) / 1000;
      if (!relative) return date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
      if (seconds < 60) return "just now";
      if (seconds < 3600) return relative.format(-Math.floor(seconds / 60), "minute");
      if (seconds < 86400) return relative.format(-Math.floor(seconds / 3600), "hour");
      return relative.format(-Math.floor(seconds / 86400), "day");
    }

    function people(count) {
      return count === 0 ? "nobody here" : count === 1 ? "1 person here" : count + " people here";
    }

    function item(entry) {
      var li = document.createElement("li");
      var link = document.createElement("a");
      link.href = "/rooms/" + encodeURIComponent(entry.room);
      link.textContent = "#" + entry.room;
      if (entry.room === room) link.setAttribute("aria-current", "page");
      var meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = people(entry.count);
      if (entry.last_ts) {
        var time = document.createElement("time");
        time.setAttribute("datetime", new Date(entry.last_ts * 1000).toISOString());
        meta.append(" · last message ", time);
      }
      li.append(link, " ", meta);
      return li;
    }

    function freshen() {
      var times = list.querySelectorAll("time[datetime]");
      for (var i = 0; i < times.length; i++) {
        var when = new Date(times[i].getAttribute("datetime"));
        if (isNaN(when)) continue;
        times[i].textContent = ago(when);
        times[i].title = when.toLocaleString([], { dateStyle: "full", timeStyle: "short" });
      }
    }

    function refresh() {
      if (!panel.open || document.hidden) return;
      fetch(roomsUrl, { cache: "no-store", credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (reply) {
          if (!reply || !Array.isArray(reply.rooms)) return;
          list.replaceChildren.apply(list, reply.rooms.map(item));
          list.hidden = !reply.rooms.length;
          none.hidden = !!reply.rooms.length;
          freshen();
        })
        .catch(noop);
    }

    freshen();
    setInterval(refresh, 20000);
    panel.addEventListener("toggle", refresh);

    function showRoomError(text) {
      error.textContent = text;
      error.hidden = !text;
      if (text) field.setAttribute("aria-invalid", "true");
      else field.removeAttribute("aria-invalid");
    }

    openForm.noValidate = true;              // our message, under the field, instead of a bubble
    openForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var name = field.value.trim().replace(/^#/, "");
      if (!ROOM_NAME.test(name)) {
        showRoomError(name ? "“" + name + "” cannot be a room name: use letters, digits, _ and -, up to 64."
                           : "Type a room name first.");
        field.focus();
        return;
      }
      showRoomError("");
      location.assign("/rooms/" + name);
    });
    field.addEventListener("input", function () { if (!error.hidden) showRoomError(""); });
    return refresh;
  }

  // The server-rendered list: local times, and day headings (placed again in order to add them).
  var rendered = Array.prototype.slice.call(inbox.querySelectorAll(".message"));
  rendered.forEach(function (node) { node.remove(); });
  rendered.forEach(function (node) {
    localizeTimes(node);
    place(node);
  });
  // The tab that streams may be asked for what came after them by a newer tab (see hello()).
  if (rendered.length) {
    remember({ type: "messages", messages: rendered.map(function (node) {
      return { id: node.id.slice(1), node: node };
    }) });
  }
  fitComposer();
  scrollToEnd();
  updateEarlier();
  watchEarlier();
  start();
}());
