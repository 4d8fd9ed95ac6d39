// metrics.jsonl of the selected runs, read incrementally: each poll asks the server only for the
// bytes appended since the last one (offset + file identity), so a long run costs the same per
// tick as a short one. Running runs are polled every POLL_MS; finished runs are read once.

import { getJSON, query } from "./api.js";

export const POLL_MS = 1000;

class RunMetrics {
  constructor(id) {
    this.id = id;
    this.rows = [];
    this.offset = 0;
    this.file = "";
    this.live = true;
    this.loaded = false;
  }

  // Fetch what was appended; returns true when rows changed.
  async fetchNew() {
    let changed = false;
    for (;;) {
      const chunk = await getJSON(query("api/metrics", { id: this.id, offset: this.offset, file: this.file }));
      if (chunk.reset) {
        this.rows = [];
        changed = true;
      }
      if (chunk.rows.length) {
        this.rows.push(...chunk.rows);
        changed = true;
      }
      this.offset = chunk.offset;
      this.file = chunk.file;
      if (!chunk.more) break;
    }
    this.loaded = true;
    return changed;
  }
}

export class MetricsFollower {
  // onChange(followed runs) after any of them got new rows; onError(error) when a poll fails.
  constructor(onChange, onError) {
    this.onChange = onChange;
    this.onError = onError;
    this.runs = new Map();
    this.pending = new Set(); // ids to read once (newly followed, or just finished)
    this.timer = null;
    this.busy = false;
    this.again = false;
    this.stopped = true;
  }

  // ids: runs to follow; live: Set of ids whose status is running (polled until they stop).
  async follow(ids, live) {
    for (const id of [...this.runs.keys()]) if (!ids.includes(id)) this.runs.delete(id);
    for (const id of ids) {
      if (!this.runs.has(id)) {
        this.runs.set(id, new RunMetrics(id));
        this.pending.add(id);
      }
      const run = this.runs.get(id);
      if (run.live && !live.has(id)) this.pending.add(id); // read its last lines once more
      run.live = live.has(id);
    }
    this.stopped = false;
    await this.tick();
  }

  get(id) {
    return this.runs.get(id);
  }

  async tick() {
    clearTimeout(this.timer);
    if (this.stopped) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    const due = [...this.runs.values()].filter((r) => r.live || this.pending.has(r.id));
    const forced = due.some((r) => this.pending.has(r.id));
    for (const r of due) this.pending.delete(r.id);
    try {
      const changed = await Promise.all(due.map((r) => r.fetchNew()));
      if (changed.some(Boolean) || forced) this.onChange([...this.runs.values()]);
    } catch (e) {
      for (const r of due) if (!r.loaded) this.pending.add(r.id);
      this.onError(e);
    } finally {
      this.busy = false;
    }
    if (this.again) {
      this.again = false;
      await this.tick();
      return;
    }
    if (!this.stopped && [...this.runs.values()].some((r) => r.live)) {
      this.timer = setTimeout(() => this.tick(), document.hidden ? POLL_MS * 5 : POLL_MS);
    }
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
