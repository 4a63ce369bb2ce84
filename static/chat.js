// The chat page: EventSource first, long-poll when it must; one cursor, duplicates dropped by id.
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
  var inbox = document.getElementById("inbox");
  var form = document.getElementById("composer");
  var bodyInput = document.getElementById("body");
  var nameInput = document.getElementById("name");
  var statusEl = document.getElementById("status");
  var errorEl = document.getElementById("send-error");
  var hintEl = document.getElementById("hint");
  var pill = document.getElementById("new-messages");

  var FALLBACK_KEY = "chat.transport";       // sessionStorage: this tab fell back to polling
  var NAME_KEY = "chat.name";                // localStorage: the nickname
  var OPEN_TIMEOUT = 3000;                   // no stream open by then: poll instead
  var SEND_TIMEOUT = 10000;
  var NEAR_BOTTOM = 80;                      // px: closer than this to the end counts as "at the end"

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
    }
    if (stick) scrollToEnd();
    else noteUnseen(added);
    noteUnread(added);
  }

  // The server no longer has the history our cursor belonged to (a restart of an in-memory
  // server, or we were away longer than it keeps). What the reader saw stays, dimmed, above a
  // divider; the new history follows. The divider is added to the log once, so it is announced once.
  function resetHistory() {
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
  var source = null;
  var streaming = false;                     // EventSource is this page's transport
  var streamWorked = false;                  // some stream has opened on this page
  var streamBackoff = new Backoff(1000, 30000);

  function startStream() {
    streaming = true;
    var opened = false;
    var url = streamUrl + "?room=" + encodeURIComponent(room) +
              "&last_event_id=" + encodeURIComponent(cursor);
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
      showMessages([JSON.parse(event.data)]);
    });
    es.addEventListener("reset", function (event) {
      resetHistory();
      cursor = event.lastEventId || cursor;
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

  function pollLoop() {
    if (!polling) return;
    pollAbort = new AbortController();
    postForm(pollUrl, { room: room, cursor: cursor }, pollAbort.signal)
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
          if (reply.reset) resetHistory();
          showMessages(reply.messages);
        }
        pollLoop();
      })
      .catch(function (error) {
        if (!polling) return;
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
  bodyInput.addEventListener("input", fitComposer);

  try {
    nameInput.value = localStorage.getItem(NAME_KEY) || nameInput.value;
  } catch (e) { /* storage disabled */ }
  nameInput.addEventListener("change", function () {
    try { localStorage.setItem(NAME_KEY, nameInput.value.trim()); } catch (e) { /* ignore */ }
  });

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
  });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) start();            // back from the back/forward cache
  });

  function start() {
    var remembered = null;
    try { remembered = sessionStorage.getItem(FALLBACK_KEY); } catch (e) { /* storage disabled */ }
    setStatus("connecting");
    if (!("EventSource" in window) || remembered === "poll") {
      startPoll();
    } else {
      startStream();
    }
  }

  // The server-rendered list: local times, and day headings (placed again in order to add them).
  var rendered = Array.prototype.slice.call(inbox.querySelectorAll(".message"));
  rendered.forEach(function (node) { node.remove(); });
  rendered.forEach(function (node) {
    localizeTimes(node);
    place(node);
  });
  fitComposer();
  scrollToEnd();
  start();
}());
