// Calls to the server. The session cookie (HttpOnly) goes with every call by itself; the
// page never holds the API key after signing in, and never stores it.

export class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onSignedOut = () => {};

export function whenSignedOut(callback) {
  onSignedOut = callback;
}

export async function api(path, { method = "GET", body, headers = {} } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  init.credentials = "same-origin";
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let reply;
  try {
    reply = await fetch(path, init);
  } catch (err) {
    throw new ApiFailure(0, "unreachable", `the server cannot be reached (${err.message})`);
  }
  const data = reply.status === 204 ? null : await reply.json().catch(() => null);
  if (!reply.ok) {
    const error = (data && data.error) || {};
    const failure = new ApiFailure(
      reply.status,
      error.code || "error",
      error.message || `HTTP ${reply.status}`,
    );
    if (reply.status === 401 && !headers.Authorization) onSignedOut(failure);
    throw failure;
  }
  return data;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(name, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// Repeats `step` every `interval_ms` after it finishes, while the tab is visible, until
// stopped: the pages' live updates (polling, not server-sent events: see
// docs/operations.md, Dashboard).
export function poll(step, intervalMs) {
  let timer = null;
  let stopped = false;
  const run = async () => {
    timer = null;
    if (stopped) return;
    if (document.hidden) {
      document.addEventListener("visibilitychange", run, { once: true });
      return;
    }
    try {
      await step();
    } catch (err) {
      if (!(err instanceof ApiFailure) || err.status !== 401) console.warn(err);
    }
    if (!stopped) timer = setTimeout(run, intervalMs);
  };
  run();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    document.removeEventListener("visibilitychange", run);
  };
}
