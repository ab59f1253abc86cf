/**
 * The part of an AbortSignal that request work listens to: whether and why it
 * was aborted, and one-shot 'abort' listeners. A web AbortSignal fits, and so
 * does the gateway's own per-request signal (api/admission.ts), which skips
 * the AbortController and EventTarget that cost ~8 us per request on the hot
 * path (created, listened to, let go).
 */
export interface CancelSignal {
  readonly aborted: boolean;
  readonly reason: unknown;
  /** Listeners run once, when the signal aborts; one added after that never runs (as with AbortSignal). */
  addEventListener(type: 'abort', listener: () => void, options?: { readonly once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}
