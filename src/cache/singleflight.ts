/**
 * Concurrent calls with one key share one run of fn; the map holds only keys
 * in flight (bounded by them): an entry goes as soon as its run settles, so a
 * call after that (a failure included) starts a new run.
 */
export class Singleflight<T> {
  private readonly inFlight = new Map<string, Promise<T>>();

  run(key: string, fn: () => Promise<T>): { promise: Promise<T>; leader: boolean } {
    const running = this.inFlight.get(key);
    if (running !== undefined) return { promise: running, leader: false };
    let promise: Promise<T>;
    try {
      promise = Promise.resolve(fn());
    } catch (err) {
      // A synchronous throw is the run's failure, shared like any other.
      promise = Promise.reject(err);
    }
    this.inFlight.set(key, promise);
    const done = (): void => {
      if (this.inFlight.get(key) === promise) this.inFlight.delete(key);
    };
    // Registered before any caller's handlers, so the key is gone by the time they run.
    promise.then(done, done);
    return { promise, leader: true };
  }

  get size(): number {
    return this.inFlight.size;
  }
}
