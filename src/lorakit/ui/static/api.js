// HTTP calls of the page. The API key (when the server has one) lives in this tab's
// sessionStorage only and goes out as `Authorization: Bearer <key>`.

const KEY_STORAGE = "lorakit.apiKey";

export class HttpError extends Error {
  constructor(status, message, type) {
    super(message);
    this.status = status;
    this.type = type || "";
  }
  get text() {
    return `${this.status}${this.status ? " " : ""}${this.message}`;
  }
}

const authListeners = new Set();

// fn(error) is called on every 401 (the page then asks for the key).
export function onAuthError(fn) {
  authListeners.add(fn);
}

export function getKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

export function headers(extra = {}) {
  const key = getKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : { ...extra };
}

// The error carried by a non-2xx response ({"error": {"message", "type"}} when the server says).
export async function errorOf(response) {
  let message = response.statusText || "request failed";
  let type = "";
  try {
    const body = await response.json();
    if (body && body.error) {
      message = typeof body.error === "string" ? body.error : String(body.error.message || message);
      type = body.error.type || "";
    } else if (body && body.detail) {
      message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    }
  } catch {
    /* not JSON: keep the status text */
  }
  const err = new HttpError(response.status, message, type);
  if (response.status === 401) for (const fn of authListeners) fn(err);
  return err;
}

export async function request(url, options = {}) {
  let response;
  try {
    response = await fetch(url, { ...options, headers: headers(options.headers || {}) });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new HttpError(0, `cannot reach the server (${e.message})`, "connection_error");
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

export async function getJSON(url, options = {}) {
  return (await request(url, options)).json();
}

export async function postJSON(url, body, options = {}) {
  return request(url, {
    ...options,
    method: "POST",
    body: JSON.stringify(body),
    headers: { "Content-Type": "application/json" },
  });
}

export function query(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    for (const item of Array.isArray(v) ? v : [v]) if (item !== undefined && item !== null) q.append(k, item);
  }
  return `${path}?${q}`;
}
