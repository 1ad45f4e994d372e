// The indexer web page: a client of the HTTP API, nothing more. Retrieval and answers happen on
// the server (the same engine as the CLI); this file only sends questions and shows what comes back.
"use strict";

(() => {
  const KEY_STORE = "indexer-api-key"; // sessionStorage: the key lives as long as the tab
  const CITATION = /\[(\d+(?:\s*,\s*\d+)*)\]/g;
  const $ = (id) => document.getElementById(id);

  let history = []; // {role, content} turns sent with each follow-up question
  let pending = null; // what to retry once the API key is given

  // -- requests --------------------------------------------------------------------------------

  class HttpError extends Error {
    constructor(status, message, retryAfter) {
      super(message);
      this.status = status;
      this.retryAfter = retryAfter;
    }
  }

  function headers() {
    const h = { "Content-Type": "application/json" };
    const key = sessionStorage.getItem(KEY_STORE);
    if (key) h.Authorization = `Bearer ${key}`;
    return h;
  }

  async function request(method, path, body) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: headers(),
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new HttpError(0, `cannot reach the server (${err.message})`);
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try {
        const data = await response.json();
        if (data && data.error && data.error.message) message = data.error.message;
      } catch (_) { /* not JSON: keep the status line */ }
      throw new HttpError(response.status, message, response.headers.get("Retry-After"));
    }
    return response;
  }

  // Server-Sent Events over fetch (EventSource cannot POST or send headers).
  async function* events(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) yield [name, JSON.parse(data.join("\n"))];
      }
    }
  }

  // -- messages and the API key -------------------------------------------------------------------

  function clearMessages() {
    $("messages").replaceChildren();
  }

  function showMessage(text, kind = "error") {
    const div = document.createElement("div");
    div.className = `message ${kind}`;
    div.textContent = text;
    $("messages").append(div);
  }

  function showError(err, retry) {
    if (err.status === 401) {
      pending = retry;
      sessionStorage.removeItem(KEY_STORE);
      $("key-form").hidden = false;
      $("api-key").focus();
      showMessage("This server needs an API key: enter it above.", "error auth");
      return;
    }
    if (err.status === 503) {
      const wait = err.retryAfter ? ` Try again in ${err.retryAfter} s.` : "";
      showMessage(`The server is busy: too many questions are waiting.${wait} (${err.message})`, "error busy");
      return;
    }
    showMessage(`Error: ${err.message}`);
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORE, key);
    $("api-key").value = "";
    $("key-form").hidden = true;
    clearMessages();
    const retry = pending;
    pending = null;
    loadIndex();
    if (retry) retry();
  });

  // -- the index panel ----------------------------------------------------------------------------

  async function loadIndex() {
    try {
      const info = await (await request("GET", "/v1/index")).json();
      const m = info.manifest || {};
      $("index-model").textContent = info.model;
      $("index-embedding").textContent = (m.embedding && m.embedding.name) || "?";
      $("index-chunks").textContent = String(info.counts.chunks);
      $("index-files").textContent = String(info.counts.documents);
      $("index-built").textContent = m.updated_at || m.created_at || "?";
      $("index-llm").textContent = info.llm ? "LLM" : "sources only (no model)";
      document.body.dataset.llm = info.llm ? "yes" : "no";
      if (!info.llm) $("sources-only").checked = true;
    } catch (err) {
      showError(err, null);
    }
  }

  // -- the conversation ---------------------------------------------------------------------------

  function newTurn(question) {
    const turn = document.createElement("article");
    turn.className = "turn";
    const q = document.createElement("p");
    q.className = "question";
    q.textContent = question;
    const answer = document.createElement("p");
    answer.className = "answer";
    answer.dataset.state = "streaming";
    turn.append(q, answer);
    $("conversation").append(turn);
    turn.scrollIntoView({ block: "end" });
    return turn;
  }

  function citeButton(n, source) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "cite";
    button.dataset.rank = String(n);
    button.textContent = String(n);
    button.addEventListener("click", () => showPassage(source));
    return button;
  }

  // The answer's text, sentence by sentence: a sentence no passage supports is marked, its
  // tooltip saying why; a citation the system added (the model wrote none) follows its sentence.
  function renderAnswer(node, text, sources, sentences) {
    if (!sentences || !sentences.length) {
      renderCitations(node, text, sources);
      return;
    }
    const ranks = new Map(sources.map((s) => [s.rank, s]));
    node.replaceChildren();
    let last = 0;
    for (const sentence of sentences) {
      node.append(text.slice(last, sentence.start));
      const span = document.createElement("span");
      span.className = "sentence";
      renderCitations(span, text.slice(sentence.start, sentence.end), sources);
      if (sentence.cited_by === "system") {
        const added = sentence.citations.filter((n) => ranks.has(n));
        if (added.length) {
          const mark = document.createElement("span");
          mark.className = "added";
          mark.title = "Citation added by the system: the model cited no passage here.";
          mark.append(" [");
          added.forEach((n, i) => {
            if (i) mark.append(", ");
            mark.append(citeButton(n, ranks.get(n)));
          });
          mark.append("]");
          span.append(mark);
        }
      }
      if (!sentence.supported) {
        span.classList.add("unsupported");
        span.title = `Not supported by the sources: ${sentence.reason || "no passage supports it"}`;
      }
      node.append(span);
      last = sentence.end;
    }
    node.append(text.slice(last));
  }

  // The text with each [n] that names a source turned into a button.
  function renderCitations(node, text, sources) {
    const ranks = new Map(sources.map((s) => [s.rank, s]));
    node.replaceChildren();
    let last = 0;
    for (const match of text.matchAll(CITATION)) {
      const numbers = match[1].split(",").map((n) => Number(n.trim()));
      if (!numbers.every((n) => ranks.has(n))) continue;
      node.append(text.slice(last, match.index), "[");
      numbers.forEach((n, i) => {
        if (i) node.append(", ");
        node.append(citeButton(n, ranks.get(n)));
      });
      node.append("]");
      last = match.index + match[0].length;
    }
    node.append(text.slice(last));
  }

  // Case, spacing and the kind of dash aside (indexer/labels.py same_label is the same rule).
  const labelKey = (label) => String(label || "").replace(/[\u2010-\u2015\u2212-]+/g, "-")
    .replace(/\s+/g, " ").trim().toLowerCase();
  const sameLabel = (a, b) => labelKey(a) !== "" && labelKey(a) === labelKey(b);

  function where(source) {
    const parts = [];
    if (source.page !== undefined && source.page !== null && source.page !== "") parts.push(`page ${source.page}`);
    // A section that is the title again (an index built before sections left it out) shows once.
    const section = sameLabel(source.section, source.title) ? "" : source.section;
    if (section) parts.push(`section ${section}`);
    if (source.title) parts.push(source.title);
    return parts.join(", ");
  }

  function renderSources(turn, sources) {
    const list = document.createElement("ol");
    list.className = "sources";
    for (const source of sources) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "source";
      button.dataset.rank = String(source.rank);
      const place = where(source);
      button.textContent = `[${source.rank}] ${source.file}${place ? ` (${place})` : ""}`;
      button.addEventListener("click", () => showPassage(source));
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = `score ${Number(source.score).toFixed(3)}`;
      item.append(button, score);
      if (source.relevance_label) {
        // The score ranks passages within one question; the label says how relevant one is at all.
        const label = document.createElement("span");
        label.className = `relevance relevance-${source.relevance_label}`;
        label.textContent = source.relevance_label;
        label.title = `relevance ${Number(source.relevance).toFixed(3)}: ${source.relevance_label}`;
        item.append(label);
      }
      list.append(item);
    }
    if (!sources.length) {
      const item = document.createElement("li");
      item.textContent = "No matching passages.";
      list.append(item);
    }
    turn.append(list);
  }

  function showNotice(turn, text) {
    if (!text) return;
    const p = document.createElement("p");
    p.className = "notice";
    p.textContent = text;
    turn.append(p);
  }

  function showPassage(source) {
    const panel = $("passage");
    panel.dataset.rank = String(source.rank);
    $("passage-title").textContent = `Source [${source.rank}]`;
    $("passage-file").textContent = source.file;
    $("passage-where").textContent = where(source) || "whole file";
    const rows = [["score", source.score], ...Object.entries(source.scores || {})];
    if (source.relevance !== null && source.relevance !== undefined) rows.push(["relevance", source.relevance]);
    $("passage-scores").tBodies[0].replaceChildren(
      ...rows.map(([name, value]) => {
        const tr = document.createElement("tr");
        tr.className = "score-row";
        const a = document.createElement("td");
        a.textContent = name;
        const b = document.createElement("td");
        b.textContent = Number(value).toFixed(4);
        tr.append(a, b);
        return tr;
      }),
    );
    $("passage-text").textContent = source.text;
    panel.hidden = false;
  }

  $("passage-close").addEventListener("click", () => {
    $("passage").hidden = true;
  });

  function options() {
    const body = {};
    const mode = $("mode").value;
    if (mode) body.mode = mode;
    const topK = $("top-k").value;
    if (topK) body.top_k = Number(topK);
    return body;
  }

  async function ask(question) {
    clearMessages();
    const turn = newTurn(question);
    const answer = turn.querySelector(".answer");
    const retry = () => {
      turn.remove();
      ask(question);
    };
    try {
      if ($("sources-only").checked) {
        const data = await (await request("POST", "/v1/retrieve", { question, ...options() })).json();
        answer.remove();
        renderSources(turn, data.sources);
        history.push({ role: "user", content: question });
        return;
      }
      const body = { question, stream: true, history: history.slice(-12), ...options() };
      const response = await request("POST", "/v1/query", body);
      let text = "";
      let sources = [];
      let tokens = 0;
      for await (const [name, data] of events(response)) {
        if (name === "token") {
          text += data.text;
          answer.textContent = text;
          answer.dataset.tokens = String(++tokens); // how many pieces arrived, one by one
        } else if (name === "sources") {
          sources = data.sources;
        } else if (name === "done") {
          const answered = data.answer !== null && data.answer !== undefined;
          if (answered) renderAnswer(answer, data.answer, sources, data.sentences);
          else answer.remove();
          if (data.abstained) turn.classList.add("abstained");
          showNotice(turn, data.notice || (answered ? "" : "No answer: this server has no LLM. The sources:"));
          renderSources(turn, sources);
          history.push({ role: "user", content: question });
          if (data.answer) history.push({ role: "assistant", content: data.answer });
        } else if (name === "error") {
          throw new HttpError(500, (data.error && data.error.message) || "generation failed");
        }
      }
    } catch (err) {
      if (answer.isConnected && !answer.textContent) turn.remove();
      showError(err, retry);
    } finally {
      answer.dataset.state = "done";
      turn.dataset.state = "done";
    }
  }

  $("ask-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const question = $("question").value.trim();
    if (!question) return;
    $("ask").disabled = true;
    try {
      await ask(question);
      $("question").value = "";
    } finally {
      $("ask").disabled = false;
    }
  });

  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("ask-form").requestSubmit();
    }
  });

  $("new-chat").addEventListener("click", () => {
    history = [];
    $("conversation").replaceChildren();
    $("passage").hidden = true;
    clearMessages();
  });

  loadIndex();
})();
