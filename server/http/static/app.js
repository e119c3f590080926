// senti's page: plain JavaScript over the HTTP/JSON API of the same process (no build step, nothing fetched
// from elsewhere). User text is only ever written with textContent, never parsed as HTML.
"use strict";

(() => {
  // ---------------------------------------------------------------------------------------------------------
  // UI text. Every static element carries data-i18n (text), data-i18n-placeholder, data-i18n-title or
  // data-i18n-aria-label; dynamic elements carry the same attributes (with data-i18n-args as JSON), so the
  // language toggle re-renders everything already on the page.
  const I18N = {
    zh: {
      "page.title": "senti · 中文文本情感分析",
      "page.heading": "senti 中文文本分析",
      "page.subtitle": "情感分析 · 零样本分类 · 批量文件",
      "lang.toggle": "English",
      "lang.toggleTitle": "Switch to English",
      "token.summary": "访问令牌",
      "token.label": "服务开启鉴权时填写（仅保存在本标签页）",
      "token.placeholder": "Bearer 令牌",
      "tabs.label": "功能",
      "tabs.sentiment": "情感分析",
      "tabs.zeroshot": "零样本分类",
      "tabs.file": "文件批量",
      "common.clear": "清空",
      "common.shortcut": "Ctrl + Enter 提交",
      "common.working": "处理中…",
      "common.done": "完成：{n} 条，用时 {ms} 毫秒",
      "common.truncated": "已截断",
      "common.truncatedTitle": "文本超过模型的最大长度，只读取了开头部分",
      "sentiment.inputLabel": "评论文本（每行一条）",
      "sentiment.placeholder": "粘贴一条或多条评论，每行一条，例如：\n物流很快，包装也很好\n质量太差，用了两天就坏了",
      "sentiment.submit": "分析情感",
      "sentiment.empty": "请输入至少一条文本。",
      "polarity.POLARITY_POSITIVE": "正面",
      "polarity.POLARITY_NEGATIVE": "负面",
      "polarity.POLARITY_UNSPECIFIED": "其他",
      "zeroshot.unsupported": "当前模型不支持零样本分类。",
      "zeroshot.inputLabel": "文本（每行一条）",
      "zeroshot.placeholder": "例如：国足在世界杯预选赛中击败对手",
      "zeroshot.labelsLabel": "候选标签（用逗号分隔，中英文逗号均可）",
      "zeroshot.labelsPlaceholder": "体育，财经，科技，娱乐",
      "zeroshot.templateLabel": "假设模板（可选，须含一个 {}）",
      "zeroshot.multiLabel": "多标签（各标签独立打分）",
      "zeroshot.submit": "分类",
      "zeroshot.noLabels": "请输入至少一个候选标签。",
      "zeroshot.top": "最可能",
      "file.help": "上传 CSV（使用 text 列，没有则用第一列；可带 id 列）或 JSONL（每行 {\"id\",\"text\"}）。文件在浏览器中解析，逐条流式发送到服务，结果按完成顺序返回；出错的行会标注错误，不会中断任务。",
      "file.choose": "点击选择或拖入文件",
      "file.formats": ".csv · .jsonl（UTF-8 或 GBK）",
      "file.start": "开始处理",
      "file.cancel": "取消",
      "file.summary": "{format} 文件，共 {n} 行{extra}",
      "file.summaryCsv": "；文本列：{text}{id}",
      "file.summaryCsvNoHeader": "；无表头，使用第一列作为文本",
      "file.summaryId": "；ID 列：{id}",
      "file.noRows": "文件中没有数据行。",
      "file.readError": "无法读取文件：{message}",
      "file.progress": "{done} / {total}（{pct}%）",
      "file.counts": "成功 {ok} 条，出错 {errors} 条",
      "file.downloadCsv": "下载 CSV",
      "file.downloadJsonl": "下载 JSONL",
      "file.colId": "ID",
      "file.colText": "文本",
      "file.colLabel": "标签",
      "file.colScore": "分数",
      "file.colError": "错误",
      "file.tableNote": "表格只显示前 {shown} 行；下载文件包含全部 {total} 行。",
      "file.cancelled": "已取消；未完成的行标记为错误。",
      "rowError.badJson": "第 {line} 行不是 JSON 对象：{message}",
      "rowError.noText": "第 {line} 行没有字符串类型的 \"text\" 字段",
      "rowError.tooLong": "文本有 {n} 个字符，超过上限 {max}（maxCharsPerText）",
      "rowError.noAnswer": "服务没有返回这一行的结果{detail}",
      "rowError.cancelled": "已取消",
      "error.http": "请求失败（HTTP {status}{code}）：{message}",
      "error.network": "无法连接服务：{message}",
      "error.auth": "（如服务开启了鉴权，请在右上角“访问令牌”中填写令牌）",
      "model.heading": "模型信息",
      "model.refresh": "刷新",
      "model.loading": "加载中…",
      "model.name": "名称",
      "model.kind": "类型",
      "model.tasks": "任务",
      "model.labels": "标签",
      "model.maxTokens": "最大长度（token）",
      "model.backend": "推理后端",
      "model.quantization": "量化",
      "model.defaultTemplate": "默认模板",
      "model.metrics": "指标",
      "model.provenance": "来源",
      "model.limits": "请求限制",
      "model.maxTextsPerRequest": "每次请求最多文本数",
      "model.maxLabelsPerRequest": "每次请求最多标签数",
      "model.maxCharsPerText": "每条文本最多字符数",
      "model.maxStreamInFlight": "流式并发上限",
      "model.executionMode": "执行模式",
      "model.version": "服务版本",
      "task.TASK_SENTIMENT": "情感分析",
      "task.TASK_ZERO_SHOT": "零样本分类",
      "footer.api": "接口：",
    },
    en: {
      "page.title": "senti · Chinese text sentiment",
      "page.heading": "senti Chinese text analysis",
      "page.subtitle": "Sentiment · Zero-shot classification · Batch files",
      "lang.toggle": "中文",
      "lang.toggleTitle": "切换到中文",
      "token.summary": "Access token",
      "token.label": "Needed when the server requires auth (kept in this tab only)",
      "token.placeholder": "Bearer token",
      "tabs.label": "Tools",
      "tabs.sentiment": "Sentiment",
      "tabs.zeroshot": "Zero-shot",
      "tabs.file": "File batch",
      "common.clear": "Clear",
      "common.shortcut": "Ctrl + Enter to submit",
      "common.working": "Working…",
      "common.done": "Done: {n} in {ms} ms",
      "common.truncated": "truncated",
      "common.truncatedTitle": "The text is longer than the model's max length; only its beginning was read",
      "sentiment.inputLabel": "Comments (one per line)",
      "sentiment.placeholder": "Paste one or more comments, one per line, e.g.:\n物流很快，包装也很好\n质量太差，用了两天就坏了",
      "sentiment.submit": "Analyze sentiment",
      "sentiment.empty": "Enter at least one text.",
      "polarity.POLARITY_POSITIVE": "Positive",
      "polarity.POLARITY_NEGATIVE": "Negative",
      "polarity.POLARITY_UNSPECIFIED": "Other",
      "zeroshot.unsupported": "The loaded model does not serve zero-shot classification.",
      "zeroshot.inputLabel": "Texts (one per line)",
      "zeroshot.placeholder": "e.g. 国足在世界杯预选赛中击败对手",
      "zeroshot.labelsLabel": "Candidate labels (comma-separated; Chinese or ASCII commas)",
      "zeroshot.labelsPlaceholder": "体育, 财经, 科技, 娱乐",
      "zeroshot.templateLabel": "Hypothesis template (optional, exactly one {})",
      "zeroshot.multiLabel": "Multi-label (score each label on its own)",
      "zeroshot.submit": "Classify",
      "zeroshot.noLabels": "Enter at least one candidate label.",
      "zeroshot.top": "top",
      "file.help": "Upload a CSV (the text column, else the first column; an optional id column) or JSONL (one {\"id\",\"text\"} per line). The file is parsed in the browser and streamed to the server item by item; answers arrive as they finish. Bad rows get an error and never stop the job.",
      "file.choose": "Click to choose a file, or drop one here",
      "file.formats": ".csv · .jsonl (UTF-8 or GBK)",
      "file.start": "Start",
      "file.cancel": "Cancel",
      "file.summary": "{format} file, {n} rows{extra}",
      "file.summaryCsv": "; text column: {text}{id}",
      "file.summaryCsvNoHeader": "; no header, the first column is the text",
      "file.summaryId": "; id column: {id}",
      "file.noRows": "The file has no data rows.",
      "file.readError": "Cannot read the file: {message}",
      "file.progress": "{done} / {total} ({pct}%)",
      "file.counts": "{ok} succeeded, {errors} failed",
      "file.downloadCsv": "Download CSV",
      "file.downloadJsonl": "Download JSONL",
      "file.colId": "ID",
      "file.colText": "Text",
      "file.colLabel": "Label",
      "file.colScore": "Score",
      "file.colError": "Error",
      "file.tableNote": "The table shows the first {shown} rows; the downloads hold all {total}.",
      "file.cancelled": "Cancelled; unfinished rows are marked as errors.",
      "rowError.badJson": "line {line} is not a JSON object: {message}",
      "rowError.noText": "line {line} has no string \"text\" field",
      "rowError.tooLong": "the text has {n} characters; the limit is {max} (maxCharsPerText)",
      "rowError.noAnswer": "the server sent no answer for this row{detail}",
      "rowError.cancelled": "cancelled",
      "error.http": "Request failed (HTTP {status}{code}): {message}",
      "error.network": "Cannot reach the server: {message}",
      "error.auth": " (if the server requires auth, enter a token under \"Access token\" at the top right)",
      "model.heading": "Model info",
      "model.refresh": "Refresh",
      "model.loading": "Loading…",
      "model.name": "Name",
      "model.kind": "Kind",
      "model.tasks": "Tasks",
      "model.labels": "Labels",
      "model.maxTokens": "Max tokens",
      "model.backend": "Backend",
      "model.quantization": "Quantization",
      "model.defaultTemplate": "Default template",
      "model.metrics": "Metrics",
      "model.provenance": "Provenance",
      "model.limits": "Request limits",
      "model.maxTextsPerRequest": "Max texts per request",
      "model.maxLabelsPerRequest": "Max labels per request",
      "model.maxCharsPerText": "Max characters per text",
      "model.maxStreamInFlight": "Max stream items in flight",
      "model.executionMode": "Execution mode",
      "model.version": "Server version",
      "task.TASK_SENTIMENT": "sentiment",
      "task.TASK_ZERO_SHOT": "zero-shot",
      "footer.api": "API: ",
    },
  };

  const GRPC_CODES = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
    "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"];
  const TABLE_ROWS_SHOWN = 500;

  let lang = "zh";
  try { lang = localStorage.getItem("senti.lang") === "en" ? "en" : "zh"; } catch (_) { /* storage off */ }

  const $ = (id) => document.getElementById(id);

  function t(key, args) {
    const text = (I18N[lang] && I18N[lang][key]) ?? I18N.zh[key] ?? key;
    if (!args) return text;
    return text.replace(/\{(\w+)\}/g, (whole, name) => {
      if (!(name in args)) return whole;
      const value = args[name];
      // an argument may itself be a message: {"$key": ..., "$args": ...}
      return value && typeof value === "object" && value.$key ? t(value.$key, value.$args) : String(value);
    });
  }

  /** Sets an element's text to a message and remembers the key, so a language switch re-renders it. */
  function setText(el, key, args) {
    el.dataset.i18n = key;
    if (args) el.dataset.i18nArgs = JSON.stringify(args); else delete el.dataset.i18nArgs;
    el.textContent = t(key, args);
    return el;
  }

  function applyI18n() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.querySelectorAll("[data-i18n]").forEach((el) => {
      const args = el.dataset.i18nArgs ? JSON.parse(el.dataset.i18nArgs) : undefined;
      el.textContent = t(el.dataset.i18n, args);
    });
    for (const attr of ["placeholder", "title", "aria-label"]) {
      const data = "i18n" + attr.split("-").map((p) => p[0].toUpperCase() + p.slice(1)).join("");
      document.querySelectorAll(`[data-i18n-${attr}]`).forEach((el) => el.setAttribute(attr, t(el.dataset[data])));
    }
    document.title = t("page.title");
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "i18n") setText(node, value[0], value[1]);
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  // ---------------------------------------------------------------------------------------------------------
  // The API.
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;   // HTTP status, 0 when the request never got an answer
      this.code = code;       // google.rpc.Status code (a number) when the body had one
    }
  }

  function authHeaders() {
    const token = $("token-input").value.trim();
    return token ? { authorization: `Bearer ${token}` } : {};
  }

  async function api(path, body, { signal, contentType = "application/json" } = {}) {
    const init = body === undefined
      ? { method: "GET", headers: authHeaders(), signal }
      : { method: "POST", headers: { "content-type": contentType, ...authHeaders() }, signal,
          body: typeof body === "string" ? body : JSON.stringify(body) };
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, null, error.message || String(error));
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }

  async function apiJson(path, body) {
    return (await api(path, body)).json();
  }

  async function errorOf(response) {
    const text = await response.text().catch(() => "");
    let status = null;
    try { status = JSON.parse(text); } catch (_) { /* not JSON */ }
    const message = (status && typeof status.message === "string" && status.message) || text || response.statusText;
    return new ApiError(response.status, status && typeof status.code === "number" ? status.code : null, message);
  }

  function codeName(code) {
    return typeof code === "number" ? (GRPC_CODES[code] || String(code)) : "";
  }

  function showError(box, error) {
    if (!error) {
      box.hidden = true;
      box.textContent = "";
      return;
    }
    box.hidden = false;
    box.textContent = "";
    if (error instanceof ApiError && error.status === 0) {
      box.append(el("span", { i18n: ["error.network", { message: error.message }] }));
    } else if (error instanceof ApiError) {
      const name = codeName(error.code);
      box.append(el("span", { i18n: ["error.http", { status: error.status, code: name ? ` · ${name}` : "",
        message: error.message }], "data-testid": "error-message" }));
      if (error.status === 401 || error.code === 16) box.append(el("span", { i18n: ["error.auth"] }));
    } else if (error.i18nKey) {
      box.append(el("span", { i18n: [error.i18nKey, error.i18nArgs] }));
    } else {
      box.append(el("span", { text: error.message || String(error) }));
    }
  }

  function localError(key, args) {
    const error = new Error(t(key, args));
    error.i18nKey = key;
    error.i18nArgs = args;
    return error;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Model info (also gives the limits the other tools chunk by).
  let modelInfo = null;

  function limit(name, fallback) {
    const value = modelInfo && modelInfo.limits && modelInfo.limits[name];
    return value > 0 ? value : fallback;
  }

  function hasTask(task) {
    return !modelInfo || (modelInfo.models || []).some((m) => (m.tasks || []).includes(task));
  }

  async function loadModelInfo() {
    const box = $("model-info");
    showError($("model-error"), null);
    try {
      modelInfo = await apiJson("/v1/model-info");
    } catch (error) {
      modelInfo = null;
      box.textContent = "";
      showError($("model-error"), error);
      return;
    }
    renderModelInfo();
  }

  function dl(rows) {
    const list = el("dl", { class: "kv" });
    for (const [key, value, testid] of rows) {
      if (value === undefined || value === null || value === "") continue;
      list.append(el("dt", { i18n: [key] }),
        value instanceof Node ? el("dd", { "data-testid": testid }, value) : el("dd", { text: String(value), "data-testid": testid }));
    }
    return list;
  }

  function chips(values, prefix) {
    const wrap = el("span", { class: "chips" });
    for (const value of values || []) {
      wrap.append(prefix ? el("span", { class: "chip", i18n: [prefix + value] }) : el("span", { class: "chip", text: value }));
    }
    return wrap;
  }

  function renderModelInfo() {
    const box = $("model-info");
    box.textContent = "";
    for (const [i, model] of (modelInfo.models || []).entries()) {
      const card = el("div", { class: "model-card", "data-testid": "model-card" });
      card.append(el("h3", { class: "model-name", text: model.name, "data-testid": i === 0 ? "model-name" : undefined }));
      card.append(dl([
        ["model.kind", model.kind],
        ["model.tasks", chips(model.tasks, "task."), "model-tasks"],
        ["model.labels", chips(model.labels), "model-labels"],
        ["model.maxTokens", model.maxTokens],
        ["model.backend", model.backend],
        ["model.quantization", model.quantization],
        ["model.defaultTemplate", model.defaultTemplate, "model-template"],
      ]));
      const metrics = Object.entries(model.metrics || {});
      const provenance = Object.entries(model.provenance || {});
      for (const [key, entries] of [["model.metrics", metrics], ["model.provenance", provenance]]) {
        if (!entries.length) continue;
        const details = el("details", { class: "more" }, el("summary", { i18n: [key] }));
        details.append(el("dl", { class: "kv kv-small" },
          ...entries.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })])));
        card.append(details);
      }
      box.append(card);
    }
    const limits = modelInfo.limits || {};
    box.append(el("h3", { class: "section-title", i18n: ["model.limits"] }), dl([
      ["model.maxTextsPerRequest", limits.maxTextsPerRequest, "limit-max-texts"],
      ["model.maxLabelsPerRequest", limits.maxLabelsPerRequest],
      ["model.maxCharsPerText", limits.maxCharsPerText],
      ["model.maxStreamInFlight", limits.maxStreamInFlight],
      ["model.executionMode", modelInfo.executionMode],
      ["model.version", modelInfo.version, "model-version"],
    ]));
    // the zero-shot template the server would use, as the placeholder of the optional field
    const zs = (modelInfo.models || []).find((m) => (m.tasks || []).includes("TASK_ZERO_SHOT") && m.defaultTemplate);
    if (zs) $("zeroshot-template").placeholder = zs.defaultTemplate;
    $("zeroshot-unsupported").hidden = hasTask("TASK_ZERO_SHOT");
  }

  // ---------------------------------------------------------------------------------------------------------
  // Shared rendering.
  function pct(score) {
    return `${(Math.max(0, Math.min(1, score || 0)) * 100).toFixed(1)}%`;
  }

  function polarityClass(label, polarity) {
    if (polarity === "POLARITY_POSITIVE") return "pos";
    if (polarity === "POLARITY_NEGATIVE") return "neg";
    return /^(pos|positive|正面|积极)/i.test(label || "") ? "pos" : /^(neg|negative|负面|消极)/i.test(label || "") ? "neg" : "other";
  }

  function bar(label, score, kind, top) {
    const row = el("div", { class: `bar-row${top ? " top" : ""}`, "data-testid": "bar", dataset: { label, score: String(score) } });
    const track = el("div", { class: "bar-track" });
    const fill = el("div", { class: `bar-fill ${kind}` });
    fill.style.width = pct(score);
    track.append(fill);
    row.append(el("span", { class: "bar-label", text: label, title: label }), track,
      el("span", { class: "bar-value", text: pct(score), title: String(score) }));
    return row;
  }

  function textLines(value) {
    return value.split(/\r?\n/).map((line) => line.trim()).filter((line) => line.length > 0);
  }

  function chunks(items, size) {
    const out = [];
    for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
    return out;
  }

  async function busy(button, status, work) {
    button.disabled = true;
    setText(status, "common.working");
    const started = performance.now();
    try {
      const n = await work();
      if (n === undefined) status.textContent = "";
      else setText(status, "common.done", { n, ms: Math.round(performance.now() - started) });
    } catch (error) {
      status.textContent = "";
      throw error;
    } finally {
      button.disabled = false;
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Sentiment.
  async function runSentiment() {
    const results = $("sentiment-results");
    const errorBox = $("sentiment-error");
    showError(errorBox, null);
    results.textContent = "";
    const texts = textLines($("sentiment-input").value);
    if (!texts.length) {
      showError(errorBox, localError("sentiment.empty"));
      return undefined;
    }
    const predictions = [];
    for (const batch of chunks(texts, limit("maxTextsPerRequest", 64))) {
      const body = await apiJson("/v1/predict", { texts: batch, strict: false });
      predictions.push(...body.predictions);
    }
    predictions.forEach((p, i) => results.append(sentimentItem(texts[i], p, i)));
    return texts.length;
  }

  function sentimentItem(text, p, index) {
    const kind = polarityClass(p.label, p.polarity);
    const item = el("li", { class: "result", "data-testid": "sentiment-result", dataset: { index: String(index), label: p.label } });
    const head = el("div", { class: "result-head" },
      el("span", { class: `badge ${kind}`, i18n: [`polarity.${p.polarity || "POLARITY_UNSPECIFIED"}`], "data-testid": "sentiment-polarity" }),
      el("span", { class: "result-label", text: p.label, "data-testid": "sentiment-label" }),
      el("span", { class: "result-score", text: pct(p.score), title: String(p.score), "data-testid": "sentiment-score" }),
      p.truncated ? el("span", { class: "badge warn", i18n: ["common.truncated"], "data-i18n-title": "common.truncatedTitle",
        title: t("common.truncatedTitle"), "data-testid": "truncated" }) : null);
    const bars = el("div", { class: "bars" });
    for (const s of p.scores || []) bars.append(bar(s.label, s.score, polarityClass(s.label), s.label === p.label));
    item.append(el("p", { class: "result-text", text, "data-testid": "result-text" }), head, bars);
    return item;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Zero-shot.
  function parseLabels(value) {
    return value.split(/[,，、;；\n]/).map((s) => s.trim()).filter((s) => s.length > 0);
  }

  async function runZeroShot() {
    const results = $("zeroshot-results");
    const errorBox = $("zeroshot-error");
    showError(errorBox, null);
    results.textContent = "";
    const texts = textLines($("zeroshot-input").value);
    const labels = parseLabels($("zeroshot-labels").value);
    if (!texts.length) { showError(errorBox, localError("sentiment.empty")); return undefined; }
    if (!labels.length) { showError(errorBox, localError("zeroshot.noLabels")); return undefined; }
    const template = $("zeroshot-template").value.trim();
    const answers = [];
    for (const batch of chunks(texts, limit("maxTextsPerRequest", 64))) {
      const body = { texts: batch, labels, multiLabel: $("zeroshot-multi").checked };
      if (template) body.hypothesisTemplate = template;  // empty: the server's default template
      answers.push(...(await apiJson("/v1/zero-shot", body)).results);
    }
    answers.forEach((r, i) => {
      const ranked = [...(r.labels || [])].sort((a, b) => b.score - a.score);
      const top = ranked[0] || { label: "", score: 0 };
      const item = el("li", { class: "result", "data-testid": "zeroshot-result", dataset: { index: String(i), top: top.label } });
      const head = el("div", { class: "result-head" },
        el("span", { class: "badge top", i18n: ["zeroshot.top"] }),
        el("span", { class: "result-label", text: top.label, "data-testid": "zeroshot-top" }),
        el("span", { class: "result-score", text: pct(top.score), title: String(top.score) }),
        r.truncated ? el("span", { class: "badge warn", i18n: ["common.truncated"], "data-testid": "truncated" }) : null);
      const bars = el("div", { class: "bars" });
      ranked.forEach((s, rank) => bars.append(bar(s.label, s.score, rank === 0 ? "top" : "other", rank === 0)));
      item.append(el("p", { class: "result-text", text: texts[i], "data-testid": "result-text" }), head, bars);
      results.append(item);
    });
    return texts.length;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Files: parsing.

  /** RFC 4180 CSV: quoted fields with "" escapes and embedded newlines, CRLF or LF rows. */
  function parseCsv(text) {
    const rows = [];
    let row = [], field = "", quoted = false, sawQuote = false, i = 0;
    const endRow = () => {
      row.push(field);
      // a blank line is not a row (a row of one empty field is written "")
      if (!(row.length === 1 && row[0] === "" && !sawQuote)) rows.push(row);
      row = []; field = ""; sawQuote = false;
    };
    const n = text.length;
    while (i < n) {
      const c = text[i];
      if (quoted) {
        if (c === '"') {
          if (text[i + 1] === '"') { field += '"'; i += 2; continue; }
          quoted = false; i += 1; continue;
        }
        field += c; i += 1; continue;
      }
      if (c === '"' && field === "") { quoted = true; sawQuote = true; i += 1; continue; }
      if (c === ",") { row.push(field); field = ""; i += 1; continue; }
      if (c === "\r" || c === "\n") {
        endRow();
        i += c === "\r" && text[i + 1] === "\n" ? 2 : 1;
        continue;
      }
      field += c; i += 1;
    }
    if (field !== "" || row.length || sawQuote) endRow();
    return rows;
  }

  const TEXT_NAMES = ["text", "文本", "内容", "评论", "comment", "content", "review", "sentence"];
  const ID_NAMES = ["id", "编号", "序号"];

  /** Rows [{id, text, line, error?}] and a description of what was found. */
  function rowsOfCsv(text) {
    const table = parseCsv(text);
    if (!table.length) return { rows: [], info: { format: "CSV", header: false } };
    const header = table[0].map((h) => h.trim().toLowerCase());
    const textCol = header.findIndex((h) => TEXT_NAMES.includes(h));
    const idCol = header.findIndex((h) => ID_NAMES.includes(h));
    const hasHeader = textCol >= 0 || idCol >= 0;
    let col = textCol;
    if (col < 0) col = idCol === 0 && header.length > 1 ? 1 : 0;
    const body = hasHeader ? table.slice(1) : table;
    const rows = body.map((cells, i) => ({
      id: idCol >= 0 && hasHeader ? (cells[idCol] ?? "").trim() : String(i + 1),
      text: cells[col] ?? "",
      line: i + (hasHeader ? 2 : 1),
    }));
    return { rows, info: { format: "CSV", header: hasHeader, textName: hasHeader ? table[0][col] : null,
      idName: hasHeader && idCol >= 0 ? table[0][idCol] : null } };
  }

  function rowsOfJsonl(text) {
    const rows = [];
    text.split(/\r?\n/).forEach((line, i) => {
      if (!line.trim()) return;
      const number = i + 1;
      let value;
      try {
        value = JSON.parse(line);
      } catch (error) {
        rows.push({ id: String(number), text: line, line: number, error: { $key: "rowError.badJson", $args: { line: number, message: error.message } } });
        return;
      }
      if (!value || typeof value !== "object" || Array.isArray(value)) {
        rows.push({ id: String(number), text: line, line: number, error: { $key: "rowError.badJson", $args: { line: number, message: typeof value } } });
        return;
      }
      const id = value.id === undefined || value.id === null ? String(rows.length + 1) : String(value.id);
      if (typeof value.text !== "string") {
        rows.push({ id, text: "", line: number, error: { $key: "rowError.noText", $args: { line: number } } });
        return;
      }
      rows.push({ id, text: value.text, line: number });
    });
    return { rows, info: { format: "JSONL" } };
  }

  /** UTF-8 (with or without BOM); files Excel saved as GBK / GB18030 are read as such. */
  function decode(buffer) {
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(buffer);  // drops a BOM
    } catch (_) {
      return new TextDecoder("gb18030").decode(buffer);
    }
  }

  function parseFile(name, text) {
    const lower = name.toLowerCase();
    const jsonl = /\.(jsonl|ndjson|json)$/.test(lower) || (!/\.csv$/.test(lower) && text.trimStart().startsWith("{"));
    return jsonl ? rowsOfJsonl(text) : rowsOfCsv(text);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Files: the job.
  const job = { name: "", rows: [], info: null, controller: null, urls: [] };

  async function chooseFile(file) {
    showError($("file-error"), null);
    $("file-downloads").hidden = true;
    $("file-progress-wrap").hidden = true;
    $("file-table-wrap").hidden = true;
    $("file-start").disabled = true;
    $("file-name").textContent = file ? file.name : "";
    if (!file) return;
    let parsed;
    try {
      parsed = parseFile(file.name, decode(await file.arrayBuffer()));
    } catch (error) {
      showError($("file-error"), localError("file.readError", { message: error.message || String(error) }));
      return;
    }
    job.name = file.name;
    job.rows = parsed.rows;
    job.info = parsed.info;
    const summary = $("file-summary");
    summary.hidden = false;
    let extra = "";
    if (parsed.info.format === "CSV") {
      extra = parsed.info.header
        ? { $key: "file.summaryCsv", $args: { text: parsed.info.textName,
            id: parsed.info.idName ? { $key: "file.summaryId", $args: { id: parsed.info.idName } } : "" } }
        : { $key: "file.summaryCsvNoHeader" };
    }
    setText(summary, "file.summary", { format: parsed.info.format, n: parsed.rows.length, extra });
    if (!parsed.rows.length) {
      showError($("file-error"), localError("file.noRows"));
      return;
    }
    $("file-start").disabled = false;
  }

  function setProgress(done, total) {
    const value = total ? Math.floor((done / total) * 100) : 100;
    const progress = $("file-progress");
    progress.setAttribute("aria-valuenow", String(value));
    $("file-progress-fill").style.width = `${value}%`;
    setText($("file-progress-text"), "file.progress", { done, total, pct: value });
  }

  function errorText(error) {
    if (!error) return "";
    return typeof error === "string" ? error : t(error.$key, error.$args);
  }

  async function runFile() {
    const rows = job.rows.map((r) => ({ ...r, label: null, score: null, scores: null,
      error: r.error || null, done: Boolean(r.error) }));
    const maxChars = limit("maxCharsPerText", 0);
    // the stream id is the file's id when those are unique, else the row's position (ids may repeat)
    const unique = new Set(rows.map((r) => r.id)).size === rows.length && rows.every((r) => r.id !== "");
    const byId = new Map();
    const lines = [];
    rows.forEach((row, index) => {
      if (row.done) return;
      if (maxChars && row.text.length > maxChars) {  // a line the feed could not even read
        row.error = { $key: "rowError.tooLong", $args: { n: row.text.length, max: maxChars } };
        row.done = true;
        return;
      }
      const id = unique ? row.id : `#${index + 1}`;
      byId.set(id, row);
      lines.push(JSON.stringify({ id, text: row.text }));
    });
    const total = rows.length;
    let done = rows.filter((r) => r.done).length;
    const stray = [];  // error lines without an id (a line the server could not parse)
    showError($("file-error"), null);
    $("file-downloads").hidden = true;
    $("file-progress-wrap").hidden = false;
    $("file-start").disabled = true;
    $("file-cancel").hidden = false;
    setProgress(done, total);
    const controller = new AbortController();
    job.controller = controller;

    const answer = (message) => {
      const row = byId.get(message.id);
      if (!row || row.done) {
        if (message.error) stray.push(message.error.message);
        return;
      }
      if (message.prediction) {
        row.label = message.prediction.label;
        row.score = message.prediction.score;
        row.scores = message.prediction.scores;
      } else {
        const error = message.error || {};
        row.error = codeName(error.code) ? `${codeName(error.code)}: ${error.message}` : (error.message || "error");
      }
      row.done = true;
      done += 1;
      setProgress(done, total);
    };

    const answerLine = (line) => {
      let message;
      try { message = JSON.parse(line); } catch (error) { stray.push(`${error.message}: ${line.slice(0, 200)}`); return; }
      answer(message);
    };

    try {
      if (lines.length) {
        const response = await api("/v1/predict:stream", lines.join("\n") + "\n",
          { signal: controller.signal, contentType: "application/x-ndjson" });
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done: ended } = await reader.read();
          buffer += decoder.decode(value || new Uint8Array(), { stream: !ended });
          let end;
          while ((end = buffer.indexOf("\n")) >= 0) {
            const line = buffer.slice(0, end).trim();
            buffer = buffer.slice(end + 1);
            if (line) answerLine(line);
          }
          if (ended) break;
        }
        if (buffer.trim()) answerLine(buffer.trim());
      }
    } catch (error) {
      if (error.name === "AbortError") {
        showError($("file-error"), localError("file.cancelled"));
      } else {
        showError($("file-error"), error);
      }
      const reason = error.name === "AbortError" ? { $key: "rowError.cancelled" }
        : (error instanceof ApiError ? `${codeName(error.code) || `HTTP ${error.status}`}: ${error.message}` : error.message);
      for (const row of rows) if (!row.done) { row.error = reason; row.done = true; }
    } finally {
      job.controller = null;
      $("file-cancel").hidden = true;
      $("file-start").disabled = false;
    }
    for (const row of rows) {
      if (row.done) continue;
      row.error = { $key: "rowError.noAnswer", $args: { detail: stray.length ? `: ${stray.join("; ")}` : "" } };
      row.done = true;
    }
    setProgress(total, total);
    finishFile(rows);
  }

  function csvField(value) {
    const s = value === null || value === undefined ? "" : String(value);
    return /[",\r\n]/.test(s) || /^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  }

  function finishFile(rows) {
    for (const url of job.urls) URL.revokeObjectURL(url);
    const records = rows.map((r) => ({ id: r.id, text: r.text, label: r.label, score: r.score, error: r.error ? errorText(r.error) : null }));
    const csv = ["id,text,label,score,error",
      ...records.map((r) => [r.id, r.text, r.label, r.score, r.error].map(csvField).join(","))].join("\r\n") + "\r\n";
    const jsonl = records.map((r) => JSON.stringify(r)).join("\n") + "\n";
    // the BOM lets Excel open the UTF-8 CSV with its Chinese intact
    const csvUrl = URL.createObjectURL(new Blob(["\ufeff", csv], { type: "text/csv;charset=utf-8" }));
    const jsonlUrl = URL.createObjectURL(new Blob([jsonl], { type: "application/x-ndjson;charset=utf-8" }));
    job.urls = [csvUrl, jsonlUrl];
    const base = job.name.replace(/\.[^.]+$/, "") || "results";
    Object.assign($("download-csv"), { href: csvUrl, download: `${base}.results.csv` });
    Object.assign($("download-jsonl"), { href: jsonlUrl, download: `${base}.results.jsonl` });
    const errors = records.filter((r) => r.error).length;
    setText($("file-counts"), "file.counts", { ok: records.length - errors, errors });
    $("file-downloads").hidden = false;

    const tbody = $("file-tbody");
    tbody.textContent = "";
    rows.slice(0, TABLE_ROWS_SHOWN).forEach((r, i) => {
      const tr = el("tr", { class: r.error ? "row-error" : "", "data-testid": "file-row", dataset: { index: String(i), label: r.label || "" } });
      const labelCell = el("td", { "data-testid": "file-row-label" });
      if (r.label) labelCell.append(el("span", { class: `badge ${polarityClass(r.label)}`, text: r.label }));
      const errorCell = el("td", { class: "cell-error", "data-testid": "file-row-error" });
      if (r.error) {
        if (typeof r.error === "string") errorCell.textContent = r.error; else setText(errorCell, r.error.$key, r.error.$args);
      }
      tr.append(el("td", { text: r.id }), el("td", { class: "cell-text", text: r.text, title: r.text }), labelCell,
        el("td", { class: "num", text: r.score === null ? "" : pct(r.score) }), errorCell);
      tbody.append(tr);
    });
    const note = $("file-table-note");
    note.hidden = rows.length <= TABLE_ROWS_SHOWN;
    if (!note.hidden) setText(note, "file.tableNote", { shown: TABLE_ROWS_SHOWN, total: rows.length });
    $("file-table-wrap").hidden = false;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Wiring.
  function selectTab(name) {
    document.querySelectorAll("[role=tab]").forEach((tab) => {
      const on = tab.dataset.tab === name;
      tab.setAttribute("aria-selected", String(on));
      tab.tabIndex = on ? 0 : -1;
      $(`panel-${tab.dataset.tab}`).hidden = !on;
    });
  }

  function bindSubmit(button, status, errorBox, work, ...inputs) {
    const go = () => busy(button, status, work).catch((error) => showError(errorBox, error));
    button.addEventListener("click", go);
    for (const input of inputs) {
      input.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); go(); }
      });
    }
  }

  function init() {
    applyI18n();
    try { $("token-input").value = sessionStorage.getItem("senti.token") || ""; } catch (_) { /* storage off */ }
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      $("token-input").dispatchEvent(new Event("change"));
      $("token-box").open = false;
    });
    $("token-input").addEventListener("change", () => {
      try { sessionStorage.setItem("senti.token", $("token-input").value.trim()); } catch (_) { /* storage off */ }
      loadModelInfo();
    });
    $("lang-toggle").addEventListener("click", () => {
      lang = lang === "zh" ? "en" : "zh";
      try { localStorage.setItem("senti.lang", lang); } catch (_) { /* storage off */ }
      applyI18n();
    });
    document.querySelectorAll("[role=tab]").forEach((tab) => tab.addEventListener("click", () => selectTab(tab.dataset.tab)));

    bindSubmit($("sentiment-submit"), $("sentiment-status"), $("sentiment-error"), runSentiment, $("sentiment-input"));
    $("sentiment-clear").addEventListener("click", () => {
      $("sentiment-input").value = "";
      $("sentiment-results").textContent = "";
      $("sentiment-status").textContent = "";
      showError($("sentiment-error"), null);
    });
    bindSubmit($("zeroshot-submit"), $("zeroshot-status"), $("zeroshot-error"), runZeroShot,
      $("zeroshot-input"), $("zeroshot-labels"), $("zeroshot-template"));

    $("file-input").addEventListener("change", (event) => chooseFile(event.target.files[0]));
    const drop = $("file-drop");
    drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      if (event.dataTransfer.files.length) chooseFile(event.dataTransfer.files[0]);
    });
    $("file-start").addEventListener("click", () => runFile().catch((error) => showError($("file-error"), error)));
    $("file-cancel").addEventListener("click", () => job.controller && job.controller.abort());

    $("model-refresh").addEventListener("click", loadModelInfo);
    loadModelInfo();
  }

  init();
})();
