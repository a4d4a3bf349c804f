// Refreshing by polling: after each refresh, wait as the API's Retry-After says (clamped to
// 1-60 s), else DEFAULT_SECONDS. Nothing is asked while the tab is hidden (document.visibilityState);
// on return, one refresh at once, then the rhythm again. One refresh at a time, never overlapping.

export const DEFAULT_SECONDS = 5;
export const MIN_SECONDS = 1;
export const MAX_SECONDS = 60;

export function hidden() {
  return document.visibilityState === "hidden";
}

export class Poller {
  /**
   * tick(): a promise of `{retryAfter}` (seconds, or null), or a rejection (an ApiError may carry
   * retryAfter too). onState(state, detail) hears "updating", "live", "paused", "error".
   */
  constructor(tick, { onState = () => {}, defaultSeconds = DEFAULT_SECONDS } = {}) {
    this.tick = tick;
    this.onState = onState;
    this.defaultSeconds = defaultSeconds;
    this.timer = null;
    this.running = false;
    this.again = false;
    this.stopped = true;
    this.nextAt = null;
    this.visibility = () => (hidden() ? this.pause() : this.now());
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    document.addEventListener("visibilitychange", this.visibility);
    this.now();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    document.removeEventListener("visibilitychange", this.visibility);
  }

  pause() {
    clearTimeout(this.timer);
    this.timer = null;
    this.onState("paused");
  }

  /** Refresh now (or as soon as the refresh under way ends). */
  now() {
    if (this.stopped) return;
    if (hidden()) {
      this.pause();
      return;
    }
    clearTimeout(this.timer);
    this.timer = null;
    if (this.running) {
      this.again = true;
      return;
    }
    this.run();
  }

  async run() {
    this.running = true;
    this.again = false;
    this.onState("updating");
    let seconds = this.defaultSeconds;
    try {
      const outcome = await this.tick();
      if (outcome && outcome.retryAfter !== null && outcome.retryAfter !== undefined) seconds = outcome.retryAfter;
      this.onState("live", { at: Date.now() });
    } catch (error) {
      if (error && error.retryAfter !== null && error.retryAfter !== undefined) seconds = error.retryAfter;
      this.onState("error", { error, seconds });
    } finally {
      this.running = false;
    }
    if (this.stopped) return;
    if (hidden()) {
      this.pause();
      return;
    }
    if (this.again) {
      this.run();
      return;
    }
    const wait = Math.min(MAX_SECONDS, Math.max(MIN_SECONDS, seconds));
    this.nextAt = Date.now() + wait * 1000;
    this.timer = setTimeout(() => this.now(), wait * 1000);
  }
}
