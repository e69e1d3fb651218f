// syft-chat's page. Plain JavaScript, no build step, no third-party code.
// Everything a peer wrote (names, texts, file names, reactions) is put in the page with
// textContent or as an attribute value, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const PAGE = 50;
  const REACTIONS = ["\u{1F44D}", "\u2764\uFE0F", "\u{1F602}", "\u{1F62E}", "\u{1F622}", "\u{1F389}"];
  const STATUS_MARK = { queued: "\u25F7", sent: "\u2713", delivered: "\u2713\u2713", read: "\u2713\u2713", failed: "\u26A0" };

  const state = {
    me: "",
    blocked: new Set(),
    conversations: new Map(), // id -> row
    order: [],
    nextOffset: null,
    current: null, // conversation id
    group: null, // group details of the current conversation
    thread: null, // thread id shown, or null
    before: null, // cursor of the older page
    loadingOlder: false,
    messages: new Map(), // key -> message
    replyTo: null,
    uploadLimit: 0,
  };

  const key = (m) => m.sender + "\n" + m.msg_id;
  // a status event can overtake the answer to the send that caused it: remember the
  // furthest status heard per own message, and never show one that goes backwards
  const RANK = { queued: 0, sent: 1, delivered: 2, read: 3, failed: 4 };
  const heard = new Map(); // msg_id -> {status, error}

  function furthest(m) {
    if (!m.mine) return m;
    const seen = heard.get(m.msg_id);
    if (seen && (RANK[seen.status] ?? -1) > (RANK[m.status] ?? -1)) {
      return Object.assign({}, m, { status: seen.status, error: seen.error });
    }
    heard.set(m.msg_id, { status: m.status, error: m.error });
    return m;
  }

  // ------------------------------------------------------------------ the secret

  // The per-run secret arrives in the address's fragment (#token=..., never sent to a
  // server), is kept in this tab's sessionStorage (per origin: port included) and goes
  // out only as a header on this page's own API calls. The cookie opens the page shell,
  // nothing else: the browser hands cookies to every port of 127.0.0.1.
  const TOKEN_KEY = "syft-chat-token";
  const TOKEN = (() => {
    const found = new URLSearchParams(location.hash.slice(1)).get("token");
    if (found) {
      try { sessionStorage.setItem(TOKEN_KEY, found); } catch (_) { /* storage off: this load only */ }
      history.replaceState(null, "", location.pathname + location.search);
      return found;
    }
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (_) { return ""; }
  })();
  const AUTH = { "X-Syft-Chat-Token": TOKEN };

  // ------------------------------------------------------------------ helpers

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  async function api(path, body, options) {
    const init = { headers: { "X-Syft-Chat": "1", ...AUTH }, credentials: "same-origin" };
    if (body !== undefined) {
      init.method = "POST";
      if (body instanceof Blob) {
        init.body = body;
        init.headers["Content-Type"] = "application/octet-stream";
      } else {
        init.body = JSON.stringify(body);
        init.headers["Content-Type"] = "application/json";
      }
    }
    Object.assign(init, options || {});
    const response = await fetch(path, init);
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (!response.ok) {
      const text = (data && data.error) || response.status + " " + response.statusText;
      throw new Error(text);
    }
    return data;
  }

  function showError(error) {
    const box = $("error");
    box.textContent = error ? String(error.message || error) : "";
    box.hidden = !error;
    if (error) setTimeout(() => { if (box.textContent === String(error.message || error)) box.hidden = true; }, 8000);
  }

  function when(iso) {
    const d = new Date(iso);
    const now = new Date();
    const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    if (d.toDateString() === now.toDateString()) return time;
    return d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + time;
  }

  function shortName(email) {
    return email || "";
  }

  function sizeText(bytes) {
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(1) + " KB";
    return (bytes / 1024 / 1024).toFixed(1) + " MB";
  }

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
  }

  // ------------------------------------------------------------------ dialogs

  function modal(title, build, okText) {
    // a small form dialog; resolves with build's collect() result, or null if cancelled
    return new Promise((resolve) => {
      const dialog = $("dialog");
      $("dialog-title").textContent = title;
      const body = $("dialog-body");
      body.replaceChildren();
      const collect = build(body);
      $("dialog-ok").textContent = okText || "OK";
      const finish = (value) => {
        dialog.removeEventListener("close", onClose);
        $("dialog-form").removeEventListener("submit", onSubmit);
        $("dialog-cancel").removeEventListener("click", onCancel);
        if (dialog.open) dialog.close();
        resolve(value);
      };
      const onSubmit = (event) => { event.preventDefault(); finish(collect ? collect() : true); };
      const onCancel = () => finish(null);
      const onClose = () => finish(null);
      $("dialog-form").addEventListener("submit", onSubmit);
      $("dialog-cancel").addEventListener("click", onCancel);
      dialog.addEventListener("close", onClose);
      dialog.showModal();
      const first = body.querySelector("input, textarea, select");
      if (first) first.focus();
    });
  }

  function field(label, input) {
    return el("label", { class: "field" }, el("span", { text: label }), input);
  }

  async function peopleChooser(body, exclude) {
    const list = el("div", { class: "people", role: "group", "aria-label": "Datasites" });
    const other = el("input", { type: "text", placeholder: "or type emails, separated by commas", "aria-label": "Other emails" });
    body.append(list, field("Others", other));
    try {
      const { users } = await api("/api/users");
      for (const email of users) {
        if (exclude && exclude.has(email)) continue;
        const box = el("input", { type: "checkbox", value: email });
        list.append(el("label", { class: "person" }, box, el("span", { text: email })));
      }
      if (!list.childElementCount) list.append(el("p", { class: "hint", text: "No other datasite serves syft-chat here yet." }));
    } catch (error) { list.append(el("p", { class: "hint", text: String(error.message) })); }
    return () => {
      const chosen = [...list.querySelectorAll("input:checked")].map((b) => b.value);
      for (const part of other.value.split(",")) if (part.trim()) chosen.push(part.trim());
      return chosen;
    };
  }

  // ------------------------------------------------------------------ conversation list

  async function loadConversations(more) {
    const offset = more ? state.nextOffset || 0 : 0;
    const limit = more ? PAGE : Math.max(PAGE, state.order.length);
    const data = await api(`/api/conversations?offset=${offset}&limit=${limit}`);
    if (!more) { state.conversations.clear(); state.order = []; }
    for (const row of data.items) {
      if (!state.conversations.has(row.id)) state.order.push(row.id);
      state.conversations.set(row.id, row);
    }
    state.nextOffset = data.next_offset;
    renderConversations();
  }
  const refreshConversations = debounce(() => loadConversations(false).catch(showError), 150);

  function renderConversations() {
    const list = $("conversations");
    list.replaceChildren();
    const ids = [...state.order];
    if (state.current && !state.conversations.has(state.current)) ids.unshift(state.current);
    for (const id of ids) {
      const row = state.conversations.get(id) || { id, title: id, kind: id.startsWith("group:") ? "group" : "direct", unread: 0, last_message: null };
      const last = row.last_message;
      const preview = last ? (last.deleted ? "message deleted" : (last.mine ? "You: " : (row.kind === "group" ? last.sender + ": " : "")) + (last.content || (last.attachments.length ? "\u{1F4CE} " + last.attachments[0].name : ""))) : "no messages yet";
      const item = el("li", {},
        el("button", {
          type: "button",
          class: "conv" + (id === state.current ? " active" : ""),
          "data-id": id,
          "aria-current": id === state.current ? "true" : null,
          "aria-label": `${row.kind === "group" ? "Group " : ""}${row.title}${row.unread ? ", " + row.unread + " unread" : ""}`,
          onclick: () => openConversation(id),
        },
        el("span", { class: "conv-top" },
          el("span", { class: "conv-title", text: (row.kind === "group" ? "# " : "") + row.title }),
          last ? el("time", { class: "conv-time", text: when(last.timestamp) }) : null),
        el("span", { class: "conv-bottom" },
          el("span", { class: "conv-preview", text: preview }),
          row.unread ? el("span", { class: "badge", text: String(row.unread), "aria-hidden": "true" }) : null,
          row.blocked ? el("span", { class: "tag", text: "blocked" }) : null)));
      list.append(item);
    }
    if (!ids.length) list.append(el("li", { class: "hint", text: "No conversations yet: start one with New chat." }));
    const searching = !$("search-results").hidden;
    $("more-conversations").hidden = searching || state.nextOffset === null || state.nextOffset === undefined;
  }

  // ------------------------------------------------------------------ one conversation

  async function openConversation(id, focusMsg) {
    if (state.current !== id) {
      state.current = id;
      state.thread = null;
      state.replyTo = null;
    }
    document.body.classList.add("show-chat");
    state.group = null;
    renderHeader();
    renderConversations();
    $("empty").hidden = true;
    $("messages").hidden = false;
    $("composer").hidden = false;
    $("thread-bar").hidden = !state.thread;
    renderReply();
    if (id.startsWith("group:")) {
      api("/api/groups/" + encodeURIComponent(id.slice(6))).then((g) => { state.group = g; renderHeader(); }).catch(showError);
    }
    await loadHistory();
    if (focusMsg) {
      const node = document.querySelector(`[data-msg-id="${CSS.escape(focusMsg)}"]`);
      if (node) { node.scrollIntoView({ block: "center" }); node.classList.add("flash"); }
    }
    markRead(id);
    $("input").focus();
  }

  function renderHeader() {
    const id = state.current;
    const row = state.conversations.get(id);
    const isGroup = id && id.startsWith("group:");
    $("chat-title").textContent = !id ? "syft-chat" : (state.group ? state.group.name : (row ? row.title : id));
    const sub = $("chat-sub");
    if (isGroup && state.group) sub.textContent = `${state.group.members.length} members: ${state.group.members.join(", ")}`;
    else if (isGroup) sub.textContent = "group";
    else sub.textContent = id ? (state.blocked.has(id) ? "blocked" : "one-to-one") : "";
    $("members-btn").hidden = !isGroup;
    const block = $("block-btn");
    block.hidden = !id || isGroup;
    if (id && !isGroup) {
      const blocked = state.blocked.has(id);
      block.textContent = blocked ? "Unblock" : "Block";
      block.setAttribute("aria-label", (blocked ? "Unblock " : "Block ") + id);
    }
  }

  async function loadHistory() {
    const id = state.current;
    const params = new URLSearchParams({ conversation: id, limit: String(PAGE) });
    if (state.thread) params.set("thread_id", state.thread);
    const data = await api("/api/history?" + params);
    if (id !== state.current) return;
    state.messages.clear();
    state.before = data.before;
    const box = $("messages");
    box.replaceChildren();
    for (const m of data.messages) upsert(m, false);
    box.scrollTop = box.scrollHeight;
  }

  async function loadOlder() {
    if (!state.before || state.loadingOlder) return;
    state.loadingOlder = true;
    const id = state.current;
    try {
      const params = new URLSearchParams({ conversation: id, limit: String(PAGE), before: state.before });
      if (state.thread) params.set("thread_id", state.thread);
      const data = await api("/api/history?" + params);
      if (id !== state.current) return;
      const box = $("messages");
      const height = box.scrollHeight;
      state.before = data.before;
      const first = box.firstChild;
      for (const m of data.messages) {
        if (state.messages.has(key(m))) continue;
        state.messages.set(key(m), m);
        box.insertBefore(renderMessage(m), first);
      }
      box.scrollTop += box.scrollHeight - height;
    } finally { state.loadingOlder = false; }
  }

  function belongsHere(m) {
    if (m.conversation !== state.current) return false;
    return !state.thread || m.thread_id === state.thread;
  }

  function upsert(m, live) {
    m = furthest(m);
    const box = $("messages");
    const k = key(m);
    const old = state.messages.get(k);
    state.messages.set(k, m);
    const node = renderMessage(m);
    const existing = box.querySelector(`[data-key="${CSS.escape(k)}"]`);
    if (existing) { existing.replaceWith(node); return; }
    if (old && !existing) return;
    const stick = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    // newest at the bottom: insert before the first later message (usually: append)
    let after = null;
    for (const child of box.children) {
      if (child.dataset.ts && Number(child.dataset.ts) > Date.parse(m.timestamp)) { after = child; break; }
    }
    box.insertBefore(node, after);
    if (live && (stick || m.mine)) box.scrollTop = box.scrollHeight;
    // replies quoting this message show it now
    for (const quote of box.querySelectorAll(`[data-quote="${CSS.escape(m.msg_id)}"]`)) quote.textContent = quoteText(m);
  }

  function findById(msgId) {
    for (const m of state.messages.values()) if (m.msg_id === msgId) return m;
    return null;
  }

  function quoteText(parent) {
    if (!parent) return "\u21AA a reply to an earlier message";
    const text = parent.deleted ? "message deleted" : (parent.content || "attachment");
    return "\u21AA " + parent.sender + ": " + (text.length > 120 ? text.slice(0, 120) + "\u2026" : text);
  }

  function statusNode(m) {
    if (!m.mine || !m.status) return null;
    const label = m.status === "failed" && m.error ? `failed: ${m.error}` : m.status;
    return el("span", {
      class: "status status-" + m.status,
      "data-status": m.status,
      title: label,
      "aria-label": "delivery: " + label,
    }, el("span", { class: "mark", text: STATUS_MARK[m.status] || "", "aria-hidden": "true" }), el("span", { class: "status-text", text: label }));
  }

  function renderMessage(m) {
    const classes = ["msg", m.mine ? "mine" : "theirs"];
    if (m.deleted) classes.push("deleted");
    if (m.mine && m.status === "failed") classes.push("failed");
    const node = el("article", {
      class: classes.join(" "),
      "data-key": key(m),
      "data-msg-id": m.msg_id,
      "data-ts": String(Date.parse(m.timestamp)),
      "aria-label": `${m.mine ? "You" : m.sender} at ${when(m.timestamp)}`,
    });
    node.append(el("div", { class: "meta" },
      el("span", { class: "sender", text: m.mine ? "You" : shortName(m.sender) }),
      m.auto ? el("span", { class: "tag", text: "bot" }) : null,
      el("time", { datetime: m.timestamp, text: when(m.timestamp) })));
    if (m.reply_to && m.reply_to !== m.msg_id) {
      node.append(el("div", { class: "quote", "data-quote": m.reply_to, text: quoteText(findById(m.reply_to)) }));
    }
    const onlyFile = m.attachments.length === 1 && m.content === m.attachments[0].name;
    if (!onlyFile || m.deleted) node.append(el("div", { class: "text", text: m.deleted ? "This message was deleted." : m.content }));
    if (!m.deleted && m.attachments && m.attachments.length) node.append(renderAttachments(m));
    const reactions = el("div", { class: "reactions" });
    for (const [emoji, users] of Object.entries(m.reactions || {})) {
      if (!users.length) continue;
      const mineToo = users.includes(state.me);
      reactions.append(el("button", {
        type: "button",
        class: "chip" + (mineToo ? " chosen" : ""),
        title: users.join(", "),
        "aria-label": `${emoji} by ${users.join(", ")}${mineToo ? " (click to take yours back)" : ""}`,
        "aria-pressed": mineToo ? "true" : "false",
        onclick: () => react(m, emoji, mineToo),
      }, el("span", { class: "emoji", text: emoji }), el("span", { class: "count", text: String(users.length) })));
    }
    if (reactions.childElementCount) node.append(reactions);
    const foot = el("div", { class: "foot" }, m.edited && !m.deleted ? el("span", { class: "edited", text: "edited" }) : null, statusNode(m));
    if (foot.childElementCount) node.append(foot);
    if (!m.deleted) node.append(renderTools(m));
    return node;
  }

  function renderAttachments(m) {
    const box = el("div", { class: "attachments" });
    for (const a of m.attachments) {
      const href = `/api/attachments/${encodeURIComponent(m.msg_id)}/${encodeURIComponent(a.id)}?sender=${encodeURIComponent(m.sender)}`;
      const available = a.state === "available" || a.state === "";
      const inline = available && /^image\/(png|jpeg|gif|webp)$/.test(a.media_type);
      if (inline) {
        const img = el("img", { alt: a.name, class: "inline-image" });
        const link = el("a", { target: "_blank", rel: "noopener noreferrer", class: "image-link", "aria-label": "Open image " + a.name }, img);
        blobUrl(href).then((url) => { img.src = url; link.href = url; }).catch(showError);
        box.append(el("figure", { class: "image" }, link,
          el("figcaption", {}, el("bdi", { text: a.name }), el("span", { text: ` \u00B7 ${sizeText(a.size)}` }))));
      } else if (available) {
        box.append(el("a", { href: "#", download: a.name, class: "file", "aria-label": `Download ${a.name}`, onclick: (e) => download(e, href, a.name) },
          el("bdi", { text: "\u{1F4CE} " + a.name }), el("span", { class: "size", text: " " + sizeText(a.size) })));
      } else {
        box.append(el("span", { class: "file unavailable" }, el("bdi", { text: "\u{1F4CE} " + a.name }), el("span", { text: ` (${a.state})` })));
      }
    }
    return box;
  }

  // an attachment is an API call like any other: fetched with the secret, shown as a blob
  const blobs = new Map(); // href -> Promise of an object URL
  function blobUrl(href) {
    if (!blobs.has(href)) {
      blobs.set(href, fetch(href, { headers: AUTH, credentials: "same-origin" }).then((response) => {
        if (!response.ok) throw new Error(`attachment: ${response.status} ${response.statusText}`);
        return response.blob();
      }).then((blob) => URL.createObjectURL(blob)));
      blobs.get(href).catch(() => blobs.delete(href));
    }
    return blobs.get(href);
  }

  async function download(event, href, name) {
    event.preventDefault();
    try {
      const save = el("a", { href: await blobUrl(href), download: name, hidden: true });
      document.body.append(save);
      save.click();
      save.remove();
    } catch (error) { showError(error); }
  }

  function renderTools(m) {
    const tools = el("div", { class: "tools", role: "group", "aria-label": "Message actions" });
    tools.append(el("button", { type: "button", text: "Reply", "aria-label": "Reply to this message", onclick: () => setReply(m) }));
    const picker = el("span", { class: "picker", hidden: true });
    for (const emoji of REACTIONS) {
      picker.append(el("button", { type: "button", class: "pick", text: emoji, "aria-label": "React with " + emoji, onclick: () => { picker.hidden = true; react(m, emoji, (m.reactions[emoji] || []).includes(state.me)); } }));
    }
    tools.append(el("button", { type: "button", text: "React", "aria-label": "Add a reaction", "aria-expanded": "false", onclick: (e) => { picker.hidden = !picker.hidden; e.currentTarget.setAttribute("aria-expanded", String(!picker.hidden)); } }), picker);
    if (m.thread_id && !state.thread) {
      tools.append(el("button", { type: "button", text: "Thread", "aria-label": "Show this message's thread", onclick: () => showThread(m) }));
    }
    if (m.mine) {
      tools.append(el("button", { type: "button", text: "Edit", "aria-label": "Edit this message", onclick: () => editMessage(m) }));
      tools.append(el("button", { type: "button", text: "Delete", "aria-label": "Delete this message", onclick: () => deleteMessage(m) }));
    }
    if (m.mine && m.group_id) {
      tools.append(el("button", { type: "button", text: "Delivery", "aria-label": "Each member's delivery", onclick: () => showDelivery(m) }));
    }
    return tools;
  }

  // ------------------------------------------------------------------ actions

  async function react(m, emoji, remove) {
    try {
      const updated = await api(`/api/messages/${encodeURIComponent(m.msg_id)}/react`, { emoji, remove, sender: m.sender });
      if (updated && updated.msg_id) upsert(updated, false);
    } catch (error) { showError(error); }
  }

  async function editMessage(m) {
    const text = await modal("Edit message", (body) => {
      const area = el("textarea", { rows: 4, "aria-label": "New text" });
      area.value = m.content;
      body.append(area);
      return () => area.value;
    }, "Save");
    if (text === null || text === m.content) return;
    try { upsert(await api(`/api/messages/${encodeURIComponent(m.msg_id)}/edit`, { content: text }), false); }
    catch (error) { showError(error); }
  }

  async function deleteMessage(m) {
    const ok = await modal("Delete this message for everyone?", (body) => {
      body.append(el("p", { class: "quote", text: m.content }));
      return () => true;
    }, "Delete");
    if (!ok) return;
    try { upsert(await api(`/api/messages/${encodeURIComponent(m.msg_id)}/delete`, {}), false); refreshConversations(); }
    catch (error) { showError(error); }
  }

  async function showDelivery(m) {
    try {
      const statuses = await api(`/api/messages/${encodeURIComponent(m.msg_id)}/delivery`);
      await modal("Delivery to each member", (body) => {
        const list = el("ul", { class: "plain" });
        for (const [member, status] of Object.entries(statuses)) list.append(el("li", { text: `${member}: ${status}` }));
        body.append(list);
        return () => true;
      }, "Close");
    } catch (error) { showError(error); }
  }

  function setReply(m) {
    state.replyTo = m;
    renderReply();
    $("input").focus();
  }

  function renderReply() {
    const m = state.replyTo;
    $("reply-bar").hidden = !m;
    $("reply-text").textContent = m ? `${m.mine ? "you" : m.sender}: ${(m.content || "").slice(0, 80)}` : "";
  }

  function showThread(m) {
    state.thread = m.thread_id;
    $("thread-bar").hidden = false;
    setReply(m);
    loadHistory().catch(showError);
  }

  async function send() {
    const input = $("input");
    const content = input.value;
    if (!content.trim() || !state.current) return;
    const body = { conversation: state.current, content };
    const replyTo = state.replyTo;
    if (replyTo) body.reply_to = replyTo.msg_id;
    // the composer empties at once: what is typed while this one is on its way is the
    // next message, never wiped when this one's answer comes
    input.value = "";
    autosize();
    state.replyTo = null;
    renderReply();
    try {
      const m = await api("/api/send", body);
      if (belongsHere(m)) upsert(m, true);
      refreshConversations();
    } catch (error) {
      showError(error);
      if (!input.value) {  // not sent: the text comes back, unless something new is typed
        input.value = content;
        autosize();
        state.replyTo = replyTo;
        renderReply();
      }
    } finally { input.focus(); }
  }

  async function upload(file) {
    if (!state.current || !file) return;
    if (file.size > state.uploadLimit) {
      showError(new Error(`${file.name} is larger than ${sizeText(state.uploadLimit)}`));
      return;
    }
    const params = new URLSearchParams({ conversation: state.current, name: file.name });
    const text = $("input").value;
    if (text.trim()) params.set("content", text);
    const replyTo = state.replyTo;
    if (replyTo) params.set("reply_to", replyTo.msg_id);
    if (text.trim()) $("input").value = "";  // it goes with the file (see send())
    state.replyTo = null;
    renderReply();
    try {
      const m = await api("/api/upload?" + params, file);
      if (m && m.msg_id && belongsHere(m)) upsert(m, true);
      refreshConversations();
    } catch (error) {
      showError(error);
      if (text.trim() && !$("input").value) $("input").value = text;
      state.replyTo = replyTo;
      renderReply();
    }
  }

  // mark a conversation read (once per burst of messages, per conversation)
  const readTimers = new Map();
  function markRead(id) {
    id = id || state.current;
    if (!id || readTimers.has(id)) return;
    readTimers.set(id, setTimeout(async () => {
      readTimers.delete(id);
      if (document.hidden) return;
      try {
        const { marked } = await api("/api/read", { conversation: id });
        if (marked) refreshConversations();
      } catch (error) { showError(error); }
    }, 100));
  }

  async function newChat() {
    const chosen = await modal("New conversation", (body) => {
      const collect = peopleChooser(body, new Set());
      return () => collect;
    }, "Open");
    if (!chosen) return;
    const emails = (await chosen)();
    if (emails.length) openConversation(emails[0]).catch(showError);
  }

  async function newGroup() {
    let nameInput;
    const collector = await modal("New group", (body) => {
      nameInput = el("input", { type: "text", required: true, maxlength: 200, "aria-label": "Group name" });
      body.append(field("Name", nameInput));
      const collect = peopleChooser(body, new Set());
      return () => collect;
    }, "Create");
    if (!collector) return;
    const members = (await collector)();
    try {
      const group = await api("/api/groups", { name: nameInput.value, members });
      await loadConversations(false);
      openConversation(group.id).catch(showError);
    } catch (error) { showError(error); }
  }

  async function manageMembers() {
    const g = state.group;
    if (!g) return;
    const result = await modal(`Members of ${g.name}`, (body) => {
      const list = el("ul", { class: "plain members" });
      const remove = new Set();
      for (const member of g.members) {
        const role = member === g.owner ? " (owner)" : (g.admins.includes(member) ? " (admin)" : "");
        const row = el("li", {}, el("span", { text: member + role }));
        if (g.may_manage && member !== g.owner && member !== state.me) {
          const box = el("input", { type: "checkbox", "aria-label": "Remove " + member, onchange: (e) => { if (e.target.checked) remove.add(member); else remove.delete(member); } });
          row.append(el("label", { class: "remove" }, box, el("span", { text: "remove" })));
        }
        list.append(row);
      }
      body.append(list);
      let add = null;
      if (g.may_manage) {
        add = el("input", { type: "text", placeholder: "emails, separated by commas", "aria-label": "Add members" });
        body.append(field("Add", add));
      }
      let leave = null;
      if (g.member) {
        leave = el("input", { type: "checkbox", "aria-label": "Leave this group" });
        body.append(el("label", { class: "field inline" }, leave, el("span", { text: "Leave this group" })));
      }
      return () => ({
        add: add ? add.value.split(",").map((s) => s.trim()).filter(Boolean) : [],
        remove: [...remove],
        leave: leave ? leave.checked : false,
      });
    }, "Apply");
    if (!result) return;
    try {
      if (result.add.length || result.remove.length) {
        state.group = await api(`/api/groups/${encodeURIComponent(g.group_id)}/members`, { add: result.add, remove: result.remove });
      }
      if (result.leave) state.group = await api(`/api/groups/${encodeURIComponent(g.group_id)}/leave`, {});
      renderHeader();
    } catch (error) { showError(error); }
  }

  async function toggleBlock() {
    const id = state.current;
    if (!id || id.startsWith("group:")) return;
    const action = state.blocked.has(id) ? "unblock" : "block";
    try {
      const policy = await api(`/api/contacts/${action}`, { email: id });
      state.blocked = new Set(policy.blocked);
      renderHeader();
      refreshConversations();
    } catch (error) { showError(error); }
  }

  // ------------------------------------------------------------------ search

  async function search(query) {
    const results = $("search-results");
    if (!query.trim()) { clearSearch(); return; }
    try {
      const { hits } = await api("/api/search?q=" + encodeURIComponent(query));
      results.replaceChildren();
      for (const hit of hits) {
        const m = hit.message;
        results.append(el("li", {}, el("button", {
          type: "button", class: "hit", "aria-label": `Result from ${m.sender}: ${m.content}`,
          onclick: () => openConversation(m.conversation, m.msg_id).catch(showError),
        }, el("span", { class: "conv-top" }, el("span", { class: "conv-title", text: m.conversation }), el("time", { class: "conv-time", text: when(m.timestamp) })),
        el("span", { class: "conv-preview", text: `${m.mine ? "You" : m.sender}: ${hit.snippet}` }))));
      }
      if (!hits.length) results.append(el("li", { class: "hint", text: "Nothing found." }));
      results.hidden = false;
      $("conversations").hidden = true;
      $("more-conversations").hidden = true;
      $("search-clear").hidden = false;
    } catch (error) { showError(error); }
  }

  function clearSearch() {
    $("search").value = "";
    $("search-results").hidden = true;
    $("conversations").hidden = false;
    $("search-clear").hidden = true;
    renderConversations();
  }

  // ------------------------------------------------------------------ live events

  // server-sent events read from a fetch stream (EventSource cannot send the secret's
  // header); a dropped stream reconnects after a second
  async function connect() {
    const status = $("connection");
    for (;;) {
      try {
        const response = await fetch("/api/events", { headers: AUTH, credentials: "same-origin", cache: "no-store" });
        if (!response.ok || !response.body) throw new Error(`events: ${response.status}`);
        status.textContent = ""; document.body.classList.remove("offline");
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const frame = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const data = frame.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
            if (!data) continue;
            let event;
            try { event = JSON.parse(data); } catch (_) { continue; }
            handle(event);
          }
        }
      } catch (_) { /* offline, or the server went away: retried below */ }
      status.textContent = "reconnecting\u2026"; document.body.classList.add("offline");
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  let connectedOnce = false;
  function handle(event) {
    if (event.type === "ready") {
      if (connectedOnce) resync();
      connectedOnce = true;
    } else if (event.type === "message") {
      const m = event.message;
      if (belongsHere(m)) { upsert(m, true); if (!m.mine) markRead(m.conversation); }
      refreshConversations();
    } else if (event.type === "status") {
      const seen = heard.get(event.msg_id);
      if (!seen || (RANK[event.status] ?? -1) >= (RANK[seen.status] ?? -1)) {
        heard.set(event.msg_id, { status: event.status, error: event.error });
      }
      const m = state.messages.get(state.me + "\n" + event.msg_id);
      if (m) upsert(m, false);
    } else if (event.type === "change") {
      const m = event.message;
      if (state.messages.has(key(m))) upsert(m, false);
      refreshConversations();
    } else if (event.type === "resync") {
      resync();
    }
  }

  function resync() {
    refreshConversations();
    if (state.current) loadHistory().catch(showError);
  }

  // ------------------------------------------------------------------ wiring

  function autosize() {
    const input = $("input");
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 200) + "px";
  }

  function wire() {
    $("composer").addEventListener("submit", (e) => { e.preventDefault(); send(); });
    $("input").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
      if (e.key === "Escape" && state.replyTo) { state.replyTo = null; renderReply(); }
    });
    $("input").addEventListener("input", autosize);
    $("reply-cancel").addEventListener("click", () => { state.replyTo = null; renderReply(); });
    $("thread-close").addEventListener("click", () => { state.thread = null; $("thread-bar").hidden = true; loadHistory().catch(showError); });
    $("messages").addEventListener("scroll", () => { if ($("messages").scrollTop < 60) loadOlder().catch(showError); });
    $("more-conversations").addEventListener("click", () => loadConversations(true).catch(showError));
    $("new-chat").addEventListener("click", () => newChat().catch(showError));
    $("new-group").addEventListener("click", () => newGroup().catch(showError));
    $("members-btn").addEventListener("click", () => manageMembers().catch(showError));
    $("block-btn").addEventListener("click", () => toggleBlock());
    $("back").addEventListener("click", () => document.body.classList.remove("show-chat"));
    $("search-form").addEventListener("submit", (e) => { e.preventDefault(); search($("search").value); });
    $("search").addEventListener("input", debounce(() => search($("search").value), 250));
    $("search-clear").addEventListener("click", clearSearch);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) markRead(state.current); });
    if (state.uploadLimit) {
      $("attach").hidden = false;
      $("attach").addEventListener("click", () => $("file").click());
      $("file").addEventListener("change", () => { const f = $("file").files[0]; if (f) upload(f); $("file").value = ""; });
      const chat = $("chat");
      chat.addEventListener("dragover", (e) => { if (state.current) { e.preventDefault(); $("drop-hint").hidden = false; } });
      chat.addEventListener("dragleave", (e) => { if (e.target === chat) $("drop-hint").hidden = true; });
      chat.addEventListener("drop", (e) => {
        e.preventDefault();
        $("drop-hint").hidden = true;
        for (const f of e.dataTransfer.files) upload(f);
      });
    }
  }

  async function start() {
    if (!TOKEN) { showError(new Error("not signed in: open the address syft-chat printed")); return; }
    try {
      const me = await api("/api/me");
      state.me = me.email;
      state.blocked = new Set(me.blocked);
      state.uploadLimit = me.upload_limit;
      $("me").textContent = me.email;
      document.title = "syft-chat \u2013 " + me.email;
      wire();
      connect();
      await loadConversations(false);
    } catch (error) { showError(error); }
  }

  start();
})();
