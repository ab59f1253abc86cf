import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import type { Logger } from '../observability/logger.js';

export interface ConfigFileWatch {
  close(): void;
}

export interface WatchOptions {
  /** Events closer together than this make one reload: a save is often a truncate and a write, or several renames. */
  readonly debounceMs?: number;
  /** The text the gateway started from: an event that leaves the file at this text is not a change. */
  readonly initialText?: string;
  readonly logger: Logger;
}

/**
 * Calls `onChange` with the file's new text once it settles after a change.
 * Watches the directory, not the file: editors that save by writing a new file
 * and renaming it over the old one replace the inode a file watch would hold.
 */
export function watchConfigFile(path: string, onChange: (text: string) => void, opts: WatchOptions): ConfigFileWatch {
  const file = resolve(path);
  const name = basename(file);
  const debounceMs = opts.debounceMs ?? 200;
  let lastText = opts.initialText;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const settle = async (): Promise<void> => {
    timer = undefined;
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      // Mid-rename the file may be missing for a moment; the rename's own event brings us back.
      opts.logger.debug({ file, err: (err as Error).message }, 'config file not readable yet');
      return;
    }
    if (closed || text === lastText) return;
    lastText = text;
    onChange(text);
  };

  const watcher: FSWatcher = watch(dirname(file), { persistent: false }, (_event, changed) => {
    // Some platforms give no file name: then any change in the directory may be ours.
    if (closed || (changed !== null && changed !== name)) return;
    clearTimeout(timer);
    timer = setTimeout(() => void settle(), debounceMs);
  });
  watcher.on('error', (err) => opts.logger.warn({ file, err: err.message }, 'config file watch failed; reload with SIGHUP or the admin API'));

  return {
    close() {
      closed = true;
      clearTimeout(timer);
      watcher.close();
    },
  };
}
