// Reading a process's output through the v1 polling calls.
import type { AgentClient } from '../../src/client/client';

/** Reads ReadStdout or ReadStderr until end of stream (an empty answer). */
export async function readToEnd(
  client: AgentClient,
  container_id: string,
  exec_id: string,
  which: 'ReadStdout' | 'ReadStderr' = 'ReadStdout',
): Promise<string> {
  const parts: Buffer[] = [];
  for (;;) {
    const { data } = await client.v1(which, { container_id, exec_id, len: 65536 });
    if (data.length === 0) return Buffer.concat(parts).toString();
    parts.push(data);
  }
}

/** Reads until `pattern` appears in the output (or end of stream). */
export async function readUntil(client: AgentClient, container_id: string, exec_id: string, pattern: RegExp): Promise<string> {
  let text = '';
  while (!pattern.test(text)) {
    const { data } = await client.v1('ReadStdout', { container_id, exec_id, len: 65536 });
    if (data.length === 0) break;
    text += data.toString();
  }
  return text;
}
