// editgraph's admin console: the page's only script, a file rather than inline so that the
// page's Content-Security-Policy admits no inline script (editgraph/admin_console.py).
//
// It is a client of /graphql like any other: the admin's token, typed once, is kept in this
// tab's sessionStorage (never localStorage, never a cookie) and sent as a bearer token. What
// the API answers is user-controlled (project names): it only ever reaches the page as text
// (textContent, text nodes, attributes), never as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "editgraph.admin.token";
  const ENDPOINT = "/graphql";
  const POLL_MS = 250;

  const AREAS = [
    ["videos", "Source videos"],
    ["proxy", "Proxies"],
    ["export", "Exports"],
    ["archive", "Archive"],
    ["segments", "Proxy segments"],
    ["temp", "Temp"],
  ];
  const STORAGE = `{ storageUsage { ${AREAS.map(([area]) => `${area} { bytes files }`).join(" ")} } }`;
  const QUEUE = `{ renderQueue {
    kinds { kind queued running doneLastDay failedLastDay averageSeconds }
    recentFailures(first: 10) { id kind version projectId error finishedAt attempts } } }`;
  const CANDIDATES = `query($daysOld: Int!, $keepLatest: Int!) {
    gcCandidates(daysOld: $daysOld, keepLatest: $keepLatest) {
      count bytes exports { id projectId version gcState pinned createdAt }
      staleProxies staleProxyBytes reclaimableSegments reclaimableSegmentBytes } }`;
  const DELETE_DUE = `query($daysInArchive: Int!, $daysOld: Int!, $keepLatest: Int!) {
    gcArchiveDue(daysInArchive: $daysInArchive) { count bytes }
    gcCandidates(daysOld: $daysOld, keepLatest: $keepLatest) {
      count bytes staleProxies staleProxyBytes reclaimableSegments reclaimableSegmentBytes } }`;
  const RUN_FIELDS = "id action status done total marked archived deleted bytesFreed error";
  const RUN = `query($id: ID!) { gcRun(id: $id) { ${RUN_FIELDS} } }`;
  const RUNS = `{ gcRuns(first: 10) { id action status holder done total marked archived deleted
    proxiesReclaimed restored bytesFreed error startedAt finishedAt } }`;
  const AUDIT = `query($after: String) { gcAudit(first: 50, after: $after) {
    edges { cursor node { id at action actor runId exportId bytes } }
    pageInfo { hasNextPage endCursor } } }`;
  const USERS = `{ users { id name isAdmin projects(first: 20) {
    nodes { id name currentVersion latestExport { id }
      exports { id version status pinned latest gcState bytes createdAt } }
    pageInfo { hasNextPage } } } }`;
  const RESTORE = `mutation($id: ID!) { gcRestore(exportId: $id) { __typename
    ... on ExportRestored { export { id version gcState } }
    ... on NotFound { message } } }`;

  // What each GC button runs; `confirm` first shows what it would delete, and may say no.
  const ACTIONS = {
    mark: {
      label: "Mark",
      field: "gcMark",
      query: `mutation($daysOld: Int!, $keepLatest: Int!) {
        gcMark(daysOld: $daysOld, keepLatest: $keepLatest) { ${RUN_FIELDS} } }`,
      variables: (rules) => ({ daysOld: rules.daysOld, keepLatest: rules.keepLatest }),
    },
    archive: {
      label: "Archive",
      field: "gcArchive",
      query: `mutation { gcArchive { ${RUN_FIELDS} } }`,
      variables: () => ({}),
    },
    delete: {
      label: "Delete",
      field: "gcDelete",
      // Old proxies go after daysOld days, as in a full cycle: the dry run counts the same.
      query: `mutation($daysInArchive: Int!, $proxyDaysOld: Int!) {
        gcDelete(confirm: true, daysInArchive: $daysInArchive, proxyDaysOld: $proxyDaysOld) {
          ${RUN_FIELDS} } }`,
      variables: (rules) => ({ daysInArchive: rules.daysInArchive, proxyDaysOld: rules.daysOld }),
      confirm: confirmDelete,
    },
    "full-cycle": {
      label: "Full cycle",
      field: "gcFullCycle",
      query: `mutation($daysOld: Int!, $keepLatest: Int!, $daysInArchive: Int!) {
        gcFullCycle(confirm: true, daysOld: $daysOld, keepLatest: $keepLatest,
                    daysInArchive: $daysInArchive) { ${RUN_FIELDS} } }`,
      variables: (rules) => rules,
      confirm: confirmFullCycle,
    },
  };

  const state = {
    generation: 0, // bumped by each refresh and by sign-out: older answers are dropped
    busy: false,
    auditCursor: null,
    exports: new Map(), // export id → "project vN", for the audit
    projects: new Map(), // project id → name
  };

  const $ = (id) => document.getElementById(id);
  const consoleMain = $("console");
  const sections = Array.from(consoleMain.querySelectorAll("section"));
  // Each section's signed-out text, to put back at sign-out.
  const initial = new Map(sections.map((s) => [s.id, s.querySelector(".body").cloneNode(true)]));

  // ---- building the page from data: text only ----

  function h(tag, props, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "className") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children || []) {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    }
    return node;
  }

  function table(headers, rows) {
    return h("table", {}, [
      h("thead", {}, [h("tr", {}, headers.map((text) => h("th", { scope: "col", text })))]),
      h("tbody", {}, rows),
    ]);
  }

  function row(cells, props) {
    return h(
      "tr",
      props,
      cells.map((cell) => (cell instanceof Node ? h("td", {}, [cell]) : h("td", { text: cell }))),
    );
  }

  function empty(text) {
    return h("p", { className: "empty", text });
  }

  function fill(sectionId, generation, nodes) {
    if (generation !== state.generation) return false; // signed out, or refreshed since
    $(sectionId).querySelector(".body").replaceChildren(...nodes.filter(Boolean));
    return true;
  }

  // ---- formatting ----

  function size(bytes) {
    if (bytes === null || bytes === undefined) return "—";
    const units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let value = Number(bytes);
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) {
      value /= 1000;
      unit += 1;
    }
    if (unit === 0) return `${value} B`;
    return `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ${units[unit]}`;
  }

  function count(n, one, many) {
    return `${n} ${n === 1 ? one : many}`;
  }

  // DateTimes without an offset are UTC; shown to the minute, in UTC, for every admin alike.
  function when(iso) {
    if (!iso) return "—";
    const zoned = /([zZ]|[+-]\d\d:?\d\d)$/.test(iso) ? iso : `${iso}Z`;
    const date = new Date(zoned);
    if (Number.isNaN(date.getTime())) return iso;
    return `${date.toISOString().slice(0, 16).replace("T", " ")} UTC`;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  }

  function yesNo(flag) {
    return flag ? "yes" : "";
  }

  function projectLabel(projectId) {
    const name = state.projects.get(projectId);
    return name === undefined ? projectId : name;
  }

  // ---- the API ----

  class ApiError extends Error {
    constructor(errors) {
      const first = errors[0] || {};
      super(first.message || "the request failed");
      this.errors = errors;
      this.code = (first.extensions && first.extensions.code) || null;
    }

    // "FORBIDDEN: this field is for administrators", once per distinct error.
    describe() {
      const lines = this.errors.map((error) => {
        const code = error.extensions && error.extensions.code;
        return code ? `${code}: ${error.message}` : error.message;
      });
      return Array.from(new Set(lines)).join("\n");
    }

    // Whether it says who may not do what: shown once, at the top, not in every section.
    get aboutAccess() {
      return this.code === "FORBIDDEN" || this.code === "UNAUTHENTICATED";
    }
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  async function gql(query, variables) {
    const headers = {
      "Content-Type": "application/json",
      Accept: "application/graphql-response+json, application/json;q=0.9",
    };
    const bearer = token();
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    let response;
    try {
      response = await fetch(ENDPOINT, {
        method: "POST",
        headers,
        body: JSON.stringify({ query, variables: variables || {} }),
        credentials: "omit",
        cache: "no-store",
      });
    } catch (error) {
      throw new ApiError([{ message: `the server did not answer (${error.message})` }]);
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (body === null || typeof body !== "object") {
      const text = `the server answered HTTP ${response.status} ${response.statusText}`;
      throw new ApiError([{ message: text.trim() }]);
    }
    if (Array.isArray(body.errors) && body.errors.length) throw new ApiError(body.errors);
    return body.data;
  }

  // ---- messages ----

  const HINTS = {
    FORBIDDEN: "This account is not an administrator: sign out and use an admin's token.",
    UNAUTHENTICATED: "Sign out and sign in again with a valid token.",
  };

  function describe(error) {
    if (!(error instanceof ApiError)) return String(error && error.message ? error.message : error);
    const hint = HINTS[error.code];
    return hint ? `${error.describe()}\n${hint}` : error.describe();
  }

  function showErrors(texts) {
    const box = $("message");
    const distinct = Array.from(new Set(texts));
    box.replaceChildren(...distinct.map((text) => h("p", { text })));
    box.hidden = distinct.length === 0;
  }

  function notify(text) {
    const box = $("notice");
    box.textContent = text;
    box.hidden = !text;
  }

  // ---- the sections ----

  async function loadStorage(generation) {
    const usage = (await gql(STORAGE)).storageUsage;
    const largest = Math.max(0, ...AREAS.map(([area]) => usage[area].bytes));
    let bytes = 0;
    let files = 0;
    const bars = AREAS.map(([area, label]) => {
      const figures = usage[area];
      bytes += figures.bytes;
      files += figures.files;
      const bar = h("span", { className: "bar-fill" });
      // Sized through the CSSOM, which the page's CSP allows (a style attribute it would not).
      bar.style.width = largest > 0 ? `${((100 * figures.bytes) / largest).toFixed(2)}%` : "0";
      if (figures.bytes > 0) bar.style.minWidth = "2px";
      return h("div", { className: "bar-row", role: "listitem", dataset: { area } }, [
        h("span", { className: "bar-label", text: label }),
        h("span", { className: "bar-track", "aria-hidden": "true" }, [bar]),
        h("span", {
          className: "bar-value",
          text: `${size(figures.bytes)} · ${count(figures.files, "file", "files")}`,
        }),
      ]);
    });
    fill("storage", generation, [
      h("div", { className: "chart", role: "list", "aria-label": "Bytes stored per area" }, bars),
      h("p", {
        className: "total",
        text: `In all: ${size(bytes)} in ${count(files, "file", "files")}.`,
      }),
      bytes === 0 ? empty("Nothing is stored yet.") : null,
    ]);
  }

  async function loadQueue(generation) {
    const queue = (await gql(QUEUE)).renderQueue;
    const kinds = queue.kinds.map((k) =>
      row(
        [
          k.kind,
          String(k.queued),
          String(k.running),
          String(k.doneLastDay),
          String(k.failedLastDay),
          duration(k.averageSeconds),
        ],
        { dataset: { kind: k.kind } },
      ),
    );
    // A failure's reason can be long: each is a line of facts, and its reason below.
    const failures = queue.recentFailures.map((r) =>
      h("li", { className: "failure", dataset: { renderId: r.id } }, [
        h("div", {}, [
          h("strong", { text: `${r.kind} v${r.version}` }),
          ` of ${projectLabel(r.projectId)} · ${count(r.attempts, "attempt", "attempts")} · ` +
            `failed ${when(r.finishedAt)}`,
        ]),
        h("div", { className: "error-text", text: r.error || "no reason was recorded" }),
      ]),
    );
    fill("queue", generation, [
      kinds.length
        ? table(["Kind", "Queued", "Running", "Done (24 h)", "Failed (24 h)", "Average time"], kinds)
        : empty("No render kinds reported."),
      h("h3", { text: "Recent failures" }),
      failures.length
        ? h("ul", { className: "failures" }, failures)
        : empty("No render has failed."),
    ]);
  }

  function numberOf(input) {
    const value = Number.parseInt(input.value, 10);
    return Number.isNaN(value) ? Number.parseInt(input.defaultValue, 10) : value;
  }

  function rules() {
    return {
      daysOld: numberOf($("days-old")),
      keepLatest: numberOf($("keep-latest")),
      daysInArchive: numberOf($("days-in-archive")),
    };
  }

  async function loadGc(generation) {
    const r = rules();
    const report = (await gql(CANDIDATES, { daysOld: r.daysOld, keepLatest: r.keepLatest }))
      .gcCandidates;
    const rows = report.exports.map((e) =>
      row(
        [
          projectLabel(e.projectId),
          `v${e.version}`,
          e.gcState,
          yesNo(e.pinned),
          when(e.createdAt),
        ],
        { dataset: { exportId: e.id, version: String(e.version), gcState: e.gcState } },
      ),
    );
    const shown = report.exports.length < report.count ? ` (the first ${report.exports.length})` : "";
    fill("gc", generation, [
      h("p", {
        className: "summary",
        text:
          `Mark would flag ${count(report.count, "export", "exports")} (${size(report.bytes)}) ` +
          `older than ${r.daysOld} days beyond the latest ${r.keepLatest} of each project. ` +
          `Delete would also take back ${count(report.staleProxies, "proxy", "proxies")} of ` +
          `old versions (${size(report.staleProxyBytes)}) and ` +
          `${count(report.reclaimableSegments, "unused proxy segment", "unused proxy segments")} ` +
          `(${size(report.reclaimableSegmentBytes)}).`,
      }),
      rows.length
        ? h("div", {}, [
            h("h3", { text: `Candidates${shown}` }),
            table(["Project", "Version", "GC state", "Pinned", "Created"], rows),
          ])
        : empty("No export is a candidate with these rules."),
      h("p", {
        className: "hint",
        text: "Archived exports can be restored from their project's history below.",
      }),
    ]);
  }

  function runProgress(run) {
    return run.total > 0 ? `${run.done}/${run.total}` : "—";
  }

  async function loadRuns(generation) {
    const runs = (await gql(RUNS)).gcRuns;
    const rows = runs.map((run) =>
      row(
        [
          when(run.startedAt),
          run.action,
          run.status,
          run.holder,
          runProgress(run),
          String(run.marked),
          String(run.archived),
          String(run.deleted),
          String(run.proxiesReclaimed),
          String(run.restored),
          size(run.bytesFreed),
          h("span", { className: "error-text", text: run.error || "" }),
        ],
        { dataset: { runId: run.id, status: run.status } },
      ),
    );
    fill("runs", generation, [
      rows.length
        ? table(
            [
              "Started",
              "Action",
              "Status",
              "By",
              "Progress",
              "Marked",
              "Archived",
              "Deleted",
              "Proxies",
              "Restored",
              "Freed",
              "Error",
            ],
            rows,
          )
        : empty("No GC run yet."),
    ]);
  }

  function auditRows(edges) {
    return edges.map(({ node }) =>
      row(
        [
          when(node.at),
          node.action,
          node.actor === null ? "CLI or cron" : node.actor,
          node.runId === null ? "—" : node.runId,
          node.exportId === null ? "—" : state.exports.get(node.exportId) || node.exportId,
          size(node.bytes),
        ],
        { dataset: { auditId: node.id } },
      ),
    );
  }

  async function loadAudit(generation, more) {
    const page = (await gql(AUDIT, { after: more ? state.auditCursor : null })).gcAudit;
    if (generation !== state.generation) return;
    const rows = auditRows(page.edges);
    const body = $("audit").querySelector(".body tbody");
    if (more && body) {
      body.append(...rows);
    } else {
      fill("audit", generation, [
        rows.length
          ? table(["At", "Action", "By", "Run", "Export", "Bytes"], rows)
          : empty("No GC action yet."),
      ]);
    }
    state.auditCursor = page.pageInfo.endCursor;
    $("audit-more").hidden = !page.pageInfo.hasNextPage;
  }

  function exportRow(project, e) {
    const label = `${project.name} v${e.version}`;
    // Export.latest is answered for the caller's own projects only: for another user's export
    // an admin reads false. The project's latestExport says it for anyone's.
    const latest = e.latest || (project.latestExport !== null && project.latestExport.id === e.id);
    const restore =
      e.gcState === "ARCHIVED"
        ? h("button", {
            type: "button",
            className: "restore",
            dataset: { exportId: e.id },
            "aria-label": `Restore ${label}`,
            text: "Restore",
          })
        : "";
    if (restore) restore.addEventListener("click", () => restoreExport(e.id, label));
    return row(
      [
        `v${e.version}`,
        e.status,
        yesNo(latest),
        yesNo(e.pinned),
        h("span", { className: `state state-${e.gcState.toLowerCase()}`, text: e.gcState }),
        size(e.bytes),
        when(e.createdAt),
        restore,
      ],
      {
        dataset: {
          exportId: e.id,
          version: String(e.version),
          gcState: e.gcState,
          latest: String(latest),
        },
      },
    );
  }

  async function loadUsers(generation) {
    const users = (await gql(USERS)).users;
    if (generation !== state.generation) return;
    state.projects.clear();
    state.exports.clear();
    const articles = users.map((user) => {
      const projects = user.projects.nodes.map((project) => {
        state.projects.set(project.id, `${project.name} (${user.name})`);
        for (const e of project.exports) state.exports.set(e.id, `${project.name} v${e.version}`);
        return h("div", { className: "project", dataset: { projectId: project.id } }, [
          h("h4", {}, [
            h("span", { className: "project-name", text: project.name }),
            h("span", { className: "muted", text: ` · current version ${project.currentVersion}` }),
          ]),
          project.exports.length
            ? table(
                ["Version", "Status", "Latest", "Pinned", "GC state", "Size", "Created", ""],
                project.exports.map((e) => exportRow(project, e)),
              )
            : empty("No exports yet."),
        ]);
      });
      return h("article", { className: "user", dataset: { user: user.name } }, [
        h("h3", {}, [user.name, user.isAdmin ? h("span", { className: "badge", text: "admin" }) : null]),
        ...(projects.length ? projects : [empty("No projects.")]),
        user.projects.pageInfo.hasNextPage ? empty("Only the 20 newest projects are shown.") : null,
      ]);
    });
    fill("users", generation, [articles.length ? h("div", {}, articles) : empty("No users.")]);
  }

  // ---- refreshing ----

  function setBusy(busy) {
    state.busy = busy;
    for (const button of document.querySelectorAll("[data-gc], button.restore")) {
      button.disabled = busy;
    }
  }

  function unavailable(sectionId, generation, error) {
    const text = error instanceof ApiError && error.aboutAccess ? "Not available." : describe(error);
    fill(sectionId, generation, [h("p", { className: "error-text", text: `Could not load: ${text}` })]);
  }

  // Everything again. `carried` are errors of what ran just before, still worth showing.
  async function refresh(carried) {
    const generation = ++state.generation;
    const problems = Array.from(carried || []);
    consoleMain.dataset.state = "loading";
    $("refresh").disabled = true;
    try {
      let me;
      try {
        me = (await gql("{ me { name isAdmin } }")).me;
      } catch (error) {
        if (generation !== state.generation) return;
        problems.push(describe(error));
        $("who").textContent = "Not signed in.";
        for (const section of sections) unavailable(section.id, generation, error);
        return;
      }
      if (generation !== state.generation) return;
      $("who").textContent = `Signed in as ${me.name}${me.isAdmin ? " (admin)" : " (not an admin)"}`;
      const attempt = (sectionId, load) =>
        load(generation).catch((error) => {
          problems.push(describe(error));
          unavailable(sectionId, generation, error);
        });
      // Users first: the other sections name projects and exports by what it found.
      await attempt("users", loadUsers);
      await Promise.all([
        attempt("storage", loadStorage),
        attempt("queue", loadQueue),
        attempt("gc", loadGc),
        attempt("runs", loadRuns),
        attempt("audit", (g) => loadAudit(g, false)),
      ]);
    } finally {
      if (generation === state.generation) {
        showErrors(problems);
        $("refresh").disabled = false;
        consoleMain.dataset.state = "ready";
      }
    }
  }

  // ---- the GC ----

  function confirmDialog(title, lines, okLabel) {
    const dialog = $("confirm");
    $("confirm-title").textContent = title;
    $("confirm-text").replaceChildren(...lines.map((text) => h("p", { text })));
    $("confirm-ok").textContent = okLabel;
    return new Promise((resolve) => {
      const listening = new AbortController();
      const answer = (yes) => {
        listening.abort();
        if (dialog.open) dialog.close();
        resolve(yes);
      };
      const options = { signal: listening.signal };
      $("confirm-ok").addEventListener("click", () => answer(true), options);
      $("confirm-cancel").addEventListener("click", () => answer(false), options);
      dialog.addEventListener("cancel", () => answer(false), options); // Escape
      dialog.showModal();
      $("confirm-cancel").focus();
    });
  }

  async function confirmDelete(r) {
    const due = await gql(DELETE_DUE, r);
    const archive = due.gcArchiveDue;
    const report = due.gcCandidates;
    return confirmDialog(
      "Delete permanently?",
      [
        `${count(archive.count, "archived export", "archived exports")} (${size(archive.bytes)}) ` +
          `archived more than ${r.daysInArchive} days ago will be deleted for good.`,
        `${count(report.staleProxies, "proxy", "proxies")} of old versions older than ` +
          `${r.daysOld} days (${size(report.staleProxyBytes)}) and ` +
          `${count(report.reclaimableSegments, "unused proxy segment", "unused proxy segments")} ` +
          `(${size(report.reclaimableSegmentBytes)}) will be taken back (rendered again on request).`,
        "Source files no video has used for a day are deleted too (not counted here).",
      ],
      "Delete permanently",
    );
  }

  async function confirmFullCycle(r) {
    const due = await gql(DELETE_DUE, r);
    const archive = due.gcArchiveDue;
    const report = due.gcCandidates;
    const lines = [
      `${count(report.count, "export", "exports")} (${size(report.bytes)}) older than ` +
        `${r.daysOld} days beyond the latest ${r.keepLatest} of each project will be marked ` +
        "and archived.",
      `${count(archive.count, "archived export", "archived exports")} (${size(archive.bytes)}) ` +
        `archived more than ${r.daysInArchive} days ago will be deleted for good.`,
    ];
    if (r.daysInArchive === 0 && report.count > 0) {
      lines.push("With 0 days in the archive, the exports this run archives are deleted too.");
    }
    lines.push(
      `${count(report.staleProxies, "proxy", "proxies")} of old versions ` +
        `(${size(report.staleProxyBytes)}) and ` +
        `${count(report.reclaimableSegments, "unused proxy segment", "unused proxy segments")} ` +
        `(${size(report.reclaimableSegmentBytes)}) will be taken back.`,
    );
    return confirmDialog("Run a full GC cycle?", lines, "Run the full cycle");
  }

  function showRun(action, run) {
    const box = $("gc-progress");
    box.hidden = false;
    box.dataset.action = action;
    box.dataset.status = run.status;
    box.dataset.runId = run.id;
    const bar = $("gc-progress-bar");
    bar.max = Math.max(run.total, 1);
    bar.value = run.status === "RUNNING" ? run.done : bar.max;
    const parts = [
      `${ACTIONS[action].label}: ${run.status}`,
      runProgress(run),
      `marked ${run.marked}`,
      `archived ${run.archived}`,
      `deleted ${run.deleted}`,
      `freed ${size(run.bytesFreed)}`,
    ];
    if (run.error) parts.push(`error: ${run.error}`);
    $("gc-progress-text").textContent = parts.join(" · ");
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  async function runGc(action) {
    if (state.busy) return;
    const spec = ACTIONS[action];
    const r = rules();
    const problems = [];
    setBusy(true);
    notify("");
    try {
      if (spec.confirm && !(await spec.confirm(r))) {
        notify(`${spec.label} cancelled: nothing was changed.`);
        return;
      }
      let run = (await gql(spec.query, spec.variables(r)))[spec.field];
      showRun(action, run);
      // The run works in the background: follow it until it stops running.
      while (run.status === "RUNNING") {
        await sleep(POLL_MS);
        const polled = (await gql(RUN, { id: run.id })).gcRun;
        if (polled === null) throw new Error(`GC run ${run.id} is gone`);
        run = polled;
        showRun(action, run);
      }
      notify(`${spec.label} finished: ${run.status}.`);
    } catch (error) {
      problems.push(describe(error));
    } finally {
      setBusy(false);
      await refresh(problems);
    }
  }

  async function restoreExport(exportId, label) {
    if (state.busy) return;
    const problems = [];
    setBusy(true);
    notify("");
    try {
      const result = (await gql(RESTORE, { id: exportId })).gcRestore;
      if (result.__typename === "ExportRestored") {
        notify(`Restored ${label}: its GC state is ${result.export.gcState} again.`);
      } else {
        problems.push(`Not restored: ${result.message}`);
      }
    } catch (error) {
      problems.push(describe(error));
    } finally {
      setBusy(false);
      await refresh(problems);
    }
  }

  // ---- signing in and out ----

  function showSignedIn(signedIn) {
    $("sign-in").hidden = signedIn;
    $("signed-in").hidden = !signedIn;
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    state.generation += 1; // answers still on their way are dropped
    state.auditCursor = null;
    state.projects.clear();
    state.exports.clear();
    for (const section of sections) {
      section.querySelector(".body").replaceChildren(initial.get(section.id).cloneNode(true));
    }
    $("audit-more").hidden = true;
    $("gc-progress").hidden = true;
    $("who").textContent = "";
    showErrors([]);
    notify("Signed out: the token is forgotten.");
    consoleMain.dataset.state = "signed-out";
    showSignedIn(false);
    $("token").focus();
  }

  $("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    const typed = $("token").value.trim().replace(/^Bearer\s+/i, "");
    $("token").value = "";
    if (!typed) return;
    sessionStorage.setItem(TOKEN_KEY, typed);
    notify("");
    showSignedIn(true);
    refresh();
  });
  $("sign-out").addEventListener("click", signOut);
  $("refresh").addEventListener("click", () => {
    notify("");
    refresh();
  });
  $("gc-rules").addEventListener("submit", (event) => event.preventDefault());
  $("gc-rules").addEventListener("change", () => {
    if (!token()) return;
    const generation = state.generation;
    loadGc(generation).catch((error) => {
      showErrors([describe(error)]);
      unavailable("gc", generation, error);
    });
  });
  for (const button of document.querySelectorAll("[data-gc]")) {
    button.addEventListener("click", () => runGc(button.dataset.gc));
  }
  $("audit-more").addEventListener("click", () => {
    const generation = state.generation;
    loadAudit(generation, true).catch((error) => showErrors([describe(error)]));
  });

  if (token()) {
    showSignedIn(true);
    refresh();
  } else {
    consoleMain.dataset.state = "signed-out";
    showSignedIn(false);
  }
})();
