// What the benches share about sockets.
import net from 'node:net';

/** Whether something accepts connections on the unix socket at `sock` now. */
export function canConnect(sock: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(sock);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
