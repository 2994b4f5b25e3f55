// tinytcp's page: the text protocol over a WebSocket at /ws, one line per message.
// Replies come in request order, so each request queues what to do with its reply;
// lines starting "MSG " are pushed by the server and are never replies.
"use strict";

(() => {
  const STATUS_EVERY_MS = 5000;
  const KEEP_LINES = 500;
  const $ = (id) => document.getElementById(id);

  let socket = null;
  let pending = [];
  let welcomed = false;
  let refusal = null;
  let nick = null;
  let hasInfo = false;
  let loggedIn = false;
  let statusTimer = null;
  let statusInFlight = false;
  const history = [];
  let historyAt = 0;

  // "WHO ann bob +2" -> {nicks: ["ann", "bob"], guests: 2}
  function parseWho(line) {
    const result = { nicks: [], guests: 0 };
    for (const word of line.split(" ").slice(1)) {
      if (/^\+\d+$/.test(word)) result.guests = Number(word.slice(1));
      else if (word) result.nicks.push(word);
    }
    return result;
  }

  // "INFO clients:3 text:2" -> [["clients", "3"], ["text", "2"]]
  function parseInfo(line) {
    return line.split(" ").slice(1).filter((w) => w.includes(":")).map((w) => {
      const at = w.indexOf(":");
      return [w.slice(0, at), w.slice(at + 1)];
    });
  }

  // INFO clients fields shown on the page, with a label a reader understands (docs/protocol.md §9)
  const INFO_LABELS = [
    ["connected", "online"],
    ["connected_text", "text and web"],
    ["connected_binary", "binary"],
    ["connections_total", "served since start"],
    ["max_connections", "limit"],
  ];

  // [["connected", "3"], ...] -> [["online", "3"], ...], in INFO_LABELS' order
  function infoRows(pairs) {
    const values = new Map(pairs);
    return INFO_LABELS.filter(([key]) => values.has(key)).map(([key, label]) => [label, values.get(key)]);
  }

  // "HELP TIME ECHO ... INFO" -> does the server have an INFO command?
  function helpHasInfo(line) {
    return line.startsWith("HELP ") && line.split(" ").slice(1).includes("INFO");
  }

  function clock() {
    return new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function append(list, parts, className) {
    const item = document.createElement("li");
    if (className) item.className = className;
    parts.forEach(([text, cls], i) => {
      const span = document.createElement("span");
      if (cls) span.className = cls;
      span.textContent = text;
      // a real space between the parts, for screen readers and for copying
      item.append(...(i ? [" ", span] : [span]));
    });
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(item);
    while (list.children.length > KEEP_LINES) list.firstElementChild.remove();
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  function chat(from, text, className) {
    const parts = [[clock(), "time"]];
    if (from) parts.push([from, "from"]);
    parts.push([text, "text"]);
    append($("chat"), parts, className);
  }

  function consoleLine(text, className) {
    append($("console-log"), [[text, null]], className);
  }

  function setConnection(text) {
    $("connection").textContent = text;
  }

  function enable(ids, on) {
    for (const id of ids) $(id).disabled = !on;
  }

  function request(line, onReply) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    pending.push(onReply || null);
    socket.send(line);
    return true;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws");
    pending = [];
    welcomed = false;
    refusal = null;
    setConnection("Connecting…");
    $("reconnect").hidden = true;
    socket.onmessage = (event) => received(typeof event.data === "string" ? event.data : "");
    socket.onclose = (event) => closed(event);
  }

  function received(line) {
    if (!welcomed) {
      if (line.startsWith("WELCOME ")) {
        welcomed = true;
        setConnection("Connected: " + line.slice(8));
        enable(["nick", "join-button", "command", "command-button"], true);
        if (nick) request("NICK " + nick, joined);
        request("HELP", (reply) => {
          hasInfo = helpHasInfo(reply);
          $("login").hidden = !(reply.startsWith("HELP ") && reply.split(" ").includes("LOGIN")) || loggedIn;
          refreshStatus();
        });
        statusTimer = setInterval(refreshStatus, STATUS_EVERY_MS);
        if (!nick) $("nick").focus();
      } else {
        refusal = "Refused: " + line;
        setConnection(refusal);
      }
      return;
    }
    if (line.startsWith("MSG ")) {
      pushed(line.slice(4));
    } else if (pending.length) {
      const onReply = pending.shift();
      if (onReply) onReply(line);
    } else {
      chat(null, line === "BYE" ? "The server said goodbye." : "Server: " + line, "notice");
      consoleLine(line, line.startsWith("ERROR") ? "error" : null);
    }
  }

  function pushed(payload) {
    const space = payload.indexOf(" ");
    const from = space < 0 ? payload : payload.slice(0, space);
    const text = space < 0 ? "" : payload.slice(space + 1);
    if (from === "*") {
      chat(null, text, "notice");
      refreshStatus();
    } else {
      chat(from, text);
    }
  }

  function closed(event) {
    clearInterval(statusTimer);
    statusTimer = null;
    statusInFlight = false;
    pending = [];
    const why = event.code === 1001 ? "the server is stopping" : event.code === 1009 ? "message too long" : "";
    setConnection(refusal || "Disconnected" + (why ? " (" + why + ")" : "") + ".");
    enable(["nick", "join-button", "message", "say-button", "command", "command-button"], false);
    $("reconnect").hidden = false;
    $("reconnect").focus();
  }

  // what the server answers LOGIN with, as a person reads it
  const LOGIN_ERRORS = {
    "ERROR AUTH_FAILED": "Wrong user name or password.",
    "ERROR RATE_LIMITED": "Too many failed attempts; wait a few minutes.",
    "ERROR TLS_REQUIRED": "Passwords are only sent over https: open this page over https.",
    "ERROR NICK_TAKEN": "That account is logged in elsewhere.",
  };

  function loginAnswered(reply) {
    if (reply.startsWith("LOGIN ")) {
      loggedIn = true;
      $("login").hidden = true;
      $("join").hidden = true;
      $("login-error").textContent = "";
      joined("NICK " + reply.slice(6));
    } else {
      $("login-error").textContent = LOGIN_ERRORS[reply] || reply;
    }
  }

  function joined(reply) {
    if (reply.startsWith("NICK ")) {
      nick = reply.slice(5);
      $("join-error").textContent = "";
      $("join-title").textContent = "You are " + nick;
      $("join-button").textContent = "Rename";
      $("say-hint").textContent = "as " + nick + "; Enter sends";
      enable(["message", "say-button"], true);
      $("message").focus();
      refreshStatus();
    } else if (reply === "ERROR NICK_TAKEN") {
      $("join-error").textContent = "Someone already has that nick; try another.";
    } else if (reply === "ERROR BAD_ARGUMENTS") {
      $("join-error").textContent = "A nick is 1 to 32 letters, digits, _ or -.";
    } else {
      $("join-error").textContent = reply;
    }
  }

  function refreshStatus() {
    if (statusInFlight || !welcomed) return;
    statusInFlight = true;
    request("WHO", (who) => {
      const people = parseWho(who);
      showPeople(people);
      if (!hasInfo) {
        statusInFlight = false;
        showStatus([
          ["online", String(people.nicks.length + people.guests)],
          ["in the chat", String(people.nicks.length)],
          ["guests", String(people.guests)],
        ], "From WHO, updated " + clock() + ".");
        return;
      }
      request("INFO clients", (info) => {
        statusInFlight = false;
        if (info.startsWith("INFO")) {
          showStatus(infoRows(parseInfo(info)), "From INFO clients, updated " + clock() + ".");
        } else {
          hasInfo = false;
          refreshStatus();
        }
      });
    });
  }

  function showPeople(people) {
    const list = $("people");
    list.replaceChildren(...people.nicks.map((name) => {
      const item = document.createElement("li");
      item.textContent = name === nick ? name + " (you)" : name;
      return item;
    }));
    $("guests").textContent = people.guests === 1 ? "and 1 guest" : "and " + people.guests + " guests";
  }

  function showStatus(pairs, source) {
    const list = $("status");
    const children = [];
    for (const [key, value] of pairs) {
      const dt = document.createElement("dt");
      dt.textContent = key;
      const dd = document.createElement("dd");
      dd.textContent = value;
      children.push(dt, dd);
    }
    list.replaceChildren(...children);
    $("status-source").textContent = source;
  }

  $("join").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("nick").value.trim();
    if (name) request("NICK " + name, joined);
  });

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const user = $("user").value.trim();
    const password = $("password").value;
    if (!user || !password || /\s/.test(password)) {
      $("login-error").textContent = "A user name and a password without blanks.";
      return;
    }
    $("password").value = "";
    request("LOGIN " + user + " " + password, loginAnswered);
  });

  $("say").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("message").value;
    if (!text.trim()) return;
    const sent = request("SAY " + text, (reply) => {
      if (reply.startsWith("SAID ")) chat(nick, text, "mine");
      else chat(null, "Not sent: " + reply, "error");
    });
    if (sent) $("message").value = "";
  });

  $("console").addEventListener("submit", (event) => {
    event.preventDefault();
    const line = $("command").value.trim();
    if (!line) return;
    const sent = request(line, (reply) => {
      consoleLine(reply, reply.startsWith("ERROR") ? "error" : null);
      if (/^nick\s/i.test(line)) joined(reply);
      if (/^(login|register)\s/i.test(line)) loginAnswered(reply.replace(/^REGISTER /, "LOGIN "));
    });
    if (!sent) return;
    // a password is neither shown nor kept in the history
    const shown = line.replace(/^((?:login|register)\s+\S+\s+).*$/i, "$1***");
    consoleLine("> " + shown, "request");
    history.push(shown);
    historyAt = history.length;
    $("command").value = "";
  });

  $("command").addEventListener("keydown", (event) => {
    if (event.key !== "ArrowUp" && event.key !== "ArrowDown") return;
    event.preventDefault();
    historyAt = Math.max(0, Math.min(history.length, historyAt + (event.key === "ArrowUp" ? -1 : 1)));
    $("command").value = history[historyAt] || "";
  });

  $("reconnect").addEventListener("click", connect);

  window.tinytcp = { parseWho, parseInfo, helpHasInfo };
  connect();
})();
