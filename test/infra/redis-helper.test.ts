import { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { startRedis } from '../helpers/redis.js';

function ping(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    socket.once('error', reject);
    socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
    socket.once('data', (d) => {
      socket.destroy();
      resolve(d.toString().trim());
    });
  });
}

describe('the test Redis', () => {
  it('starts on a free port, answers, and stops and restarts on the same port', async () => {
    const redis = await startRedis();
    try {
      expect(await ping(redis.port)).toBe('+PONG');
      await redis.kill();
      await expect(ping(redis.port)).rejects.toThrow(/ECONNREFUSED/);
      await redis.restart();
      expect(await ping(redis.port)).toBe('+PONG');
    } finally {
      await redis.stop();
    }
  });
});
