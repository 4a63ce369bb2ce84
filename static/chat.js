// The chat page: EventSource first, long-poll when it must; one cursor, duplicates dropped by id.
// Plain JavaScript, no build step. Inserts only the server-rendered, escaped `html` fragments.
(function () {
  "use strict";

  var root = document.getElementById("chat");
  if (!root) return;

  var room = root.dataset.room;
  var cursor = root.dataset.cursor;          // id of the newest message shown (or the room's base)
  var streamUrl = root.dataset.streamUrl;
  var pollUrl = root.dataset.pollUrl;
  var postUrl = root.dataset.postUrl;
  var inbox = document.getElementById("inbox");
  var form = document.getElementById("composer");
  var bodyInput = document.getElementById("body");
  var nameInput = document.getElementById("name");
  var statusEl = document.getElementById("status");
  var errorEl = document.getElementById("send-error");

  var FALLBACK_KEY = "chat.transport";       // sessionStorage: this tab fell back to polling
  var NAME_KEY = "chat.name";                // localStorage: the nickname
  var OPEN_TIMEOUT = 3000;                   // no stream open by then: poll instead
  var SEND_TIMEOUT = 10000;

  // ---- state shown to the user -------------------------------------------------------------
  function setStatus(state) {
    statusEl.textContent = state;
    statusEl.dataset.state = state;
    statusEl.hidden = false;                 // the page renders it hidden for browsers without script
    root.dataset.state = state;
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

  // ---- messages -----------------------------------------------------------------------------
  function localizeTimes(node) {
    var times = node.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var when = new Date(times[i].getAttribute("datetime"));
      if (!isNaN(when)) {
        times[i].textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
        times[i].title = when.toLocaleString();
      }
    }
  }

  function nearBottom() {
    return inbox.scrollHeight - inbox.scrollTop - inbox.clientHeight < 80;
  }

  // Both transports feed this: in order, each message once, and the cursor follows.
  function showMessages(list) {
    var stick = nearBottom();
    var template = document.createElement("template");
    for (var i = 0; i < list.length; i++) {
      var message = list[i];
      if (!document.getElementById("m" + message.id)) {
        template.innerHTML = message.html;   // escaped by the server's message.html
        var node = template.content.firstElementChild;
        if (node) {
          localizeTimes(node);
          inbox.appendChild(node);
        }
      }
      cursor = message.id;
    }
    if (stick) inbox.scrollTop = inbox.scrollHeight;
  }

  function resetMessages() {
    inbox.replaceChildren();
  }

  // ---- transport: EventSource ----------------------------------------------------------------
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
      // Our cursor belonged to a history the server no longer has: start the list again.
      resetMessages();
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
  var polling = false;
  var pollAbort = null;
  var pollBackoff = new Backoff(500, 15000);
  var wakeFromBackoff = null;

  function sleep(ms) {
    return new Promise(function (resolve) {
      var timer = setTimeout(done, ms);
      function done() { clearTimeout(timer); wakeFromBackoff = null; resolve(); }
      wakeFromBackoff = done;
    });
  }

  function startPoll() {
    if (polling) return;
    polling = true;
    setStatus("polling");
    pollLoop();
  }

  function pollLoop() {
    if (!polling) return;
    pollAbort = new AbortController();
    postForm(pollUrl, { room: room, cursor: cursor }, pollAbort.signal)
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (reply) {
        pollBackoff.reset();
        setStatus("polling");
        if (reply.messages) {
          if (reply.reset) resetMessages();
          showMessages(reply.messages);
        }
        pollLoop();
      })
      .catch(function () {
        if (!polling) return;
        setStatus(navigator.onLine === false ? "offline" : "reconnecting");
        sleep(pollBackoff.next()).then(pollLoop);
      });
  }

  // ---- sending --------------------------------------------------------------------------------
  function xsrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
    return match ? decodeURIComponent(match[1]) : form.elements._xsrf.value;
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

  var sending = false;

  function showSendError(text) {
    errorEl.textContent = text;
    errorEl.hidden = !text;
  }

  function send() {
    if (sending) return;
    var text = bodyInput.value.trim();
    if (!text) return;
    sending = true;
    var abort = new AbortController();
    var timer = setTimeout(function () { abort.abort(); }, SEND_TIMEOUT);
    postForm(postUrl, { room: room, body: text, name: nameInput.value.trim() }, abort.signal)
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (reply) {
          if (!response.ok) throw new Error(reply.error || ("HTTP " + response.status));
          // The message arrives through the stream or poll like everyone else's: showing it
          // here would move the cursor past messages that are still on their way.
          if (bodyInput.value.trim() === text) bodyInput.value = "";
          showSendError("");
        });
      })
      .catch(function (error) {
        var why = error.name === "AbortError" ? "the server did not answer" : error.message;
        if (error instanceof TypeError) why = "the server cannot be reached";
        showSendError("Not sent: " + why + ". Your message is still here; press Enter to retry.");
      })
      .then(function () {
        clearTimeout(timer);
        sending = false;
        bodyInput.focus();
      });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    send();
  });
  bodyInput.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });

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
    if (streaming) {
      if (!source || source.readyState === EventSource.CLOSED) {
        setStatus("connecting");
        startStream();
      }
    } else if (polling) {
      setStatus("polling");                          // a failed poll sets it back at once
      if (wakeFromBackoff) wakeFromBackoff();        // poll again now, not after the backoff
    }
  });
  window.addEventListener("pagehide", function () {
    polling = false;
    streaming = false;
    if (source) { source.close(); source = null; }
    if (pollAbort) pollAbort.abort();
  });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) start();                    // back from the back/forward cache
  });

  function start() {
    var remembered = null;
    try { remembered = sessionStorage.getItem(FALLBACK_KEY); } catch (e) { /* storage disabled */ }
    if (!("EventSource" in window) || remembered === "poll") {
      startPoll();
    } else {
      setStatus("connecting");
      startStream();
    }
  }

  localizeTimes(inbox);
  inbox.scrollTop = inbox.scrollHeight;
  start();
}());
