// Messages typed while the socket is down: kept in order, sent after the reconnect, never
// dropped silently. The queue is bounded: past its limit a message is refused, visibly, and
// its text stays in the composer.

export class OfflineQueue {
  /** @param {number} limit the most messages kept while offline */
  constructor(limit) {
    this.limit = limit;
    this.entries = [];
  }

  get size() {
    return this.entries.length;
  }

  /** Keep ``entry``; false (and nothing kept) when the queue is full. */
  add(entry) {
    if (this.entries.length >= this.limit) return false;
    this.entries.push(entry);
    return true;
  }

  /** Everything queued, oldest first; the queue is empty afterwards. */
  drain() {
    const entries = this.entries;
    this.entries = [];
    return entries;
  }
}
