// GetMetrics: Prometheus text exposition (version 0.0.4) of the agent's RPC
// counters, the agent process, the guest (memory, load) and its containers.
import fs from 'node:fs/promises';
import path from 'node:path';

/** Counters kept outside the core (the RPC boundary's), shown by GetMetrics as they are. */
export interface MetricsText {
  /** Prometheus text exposition of the families. */
  render(): string;
}

export interface MetricsSources {
  /** Already rendered families (MetricsText.render()). */
  rpcText: string;
  /** Container states, one entry per container. */
  containerStates: string[];
  oom: { events: number; pending: number; dropped: number };
  procRoot?: string;
}

const CONTAINER_STATES = ['created', 'running', 'paused', 'stopped'];

export async function renderMetrics(src: MetricsSources): Promise<string> {
  const proc = src.procRoot ?? '/proc';
  const out = new Families();

  const mem = process.memoryUsage();
  out.gauge('agent_process_resident_memory_bytes', 'Resident set size of the agent process.', mem.rss);
  // The part of the RSS that is the agent's own (heap, stacks, buffers): the rest is its executable's file pages.
  const anon = await residentAnonBytes(proc);
  if (anon !== null) out.gauge('agent_process_resident_anon_bytes', 'Anonymous resident memory of the agent process (RssAnon).', anon);
  out.gauge('agent_process_heap_used_bytes', 'V8 heap in use by the agent.', mem.heapUsed);
  out.gauge('agent_process_heap_total_bytes', 'V8 heap reserved by the agent.', mem.heapTotal);
  out.gauge('agent_process_uptime_seconds', 'Seconds since the agent process started.', round(process.uptime()));
  const fds = await openFds(proc);
  if (fds !== null) out.gauge('agent_process_open_fds', 'File descriptors the agent holds open.', fds);

  const meminfo = await readMeminfo(proc);
  if (meminfo.MemTotal !== undefined) out.gauge('guest_memory_total_bytes', 'Guest memory (MemTotal).', meminfo.MemTotal);
  if (meminfo.MemAvailable !== undefined) {
    out.gauge('guest_memory_available_bytes', 'Guest memory available for new work (MemAvailable).', meminfo.MemAvailable);
  }
  const load = await readLoadavg(proc);
  if (load) {
    out.gauge('guest_load_average', 'Guest load average over 1, 5 and 15 minutes.',
      [['1m', load[0]], ['5m', load[1]], ['15m', load[2]]].map(([window, v]) => ({ labels: { window: window as string }, value: v as number })));
  }

  const counts = new Map(CONTAINER_STATES.map((s) => [s, 0]));
  for (const s of src.containerStates) counts.set(s, (counts.get(s) ?? 0) + 1);
  out.gauge('agent_containers', 'Containers the agent manages, by state.',
    [...counts].map(([state, n]) => ({ labels: { state }, value: n })));
  out.counter('agent_oom_events_total', 'OOM kills seen in container cgroups.', src.oom.events);
  out.gauge('agent_oom_events_pending', 'OOM events queued for GetOOMEvent callers.', src.oom.pending);
  out.counter('agent_oom_events_dropped_total', 'OOM events dropped because the queue was full.', src.oom.dropped);

  return src.rpcText + out.text();
}

type Sample = { labels: Record<string, string>; value: number };

class Families {
  private readonly lines: string[] = [];

  gauge(name: string, help: string, value: number | Sample[]): void {
    this.family(name, 'gauge', help, value);
  }

  counter(name: string, help: string, value: number | Sample[]): void {
    this.family(name, 'counter', help, value);
  }

  private family(name: string, type: string, help: string, value: number | Sample[]): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    const samples = typeof value === 'number' ? [{ labels: {}, value }] : value;
    for (const s of samples) {
      const labels = Object.entries(s.labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',');
      this.lines.push(`${name}${labels ? `{${labels}}` : ''} ${s.value}`);
    }
  }

  text(): string {
    return this.lines.join('\n') + '\n';
  }
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

const round = (n: number) => Math.round(n * 1000) / 1000;

async function openFds(proc: string): Promise<number | null> {
  try {
    // readdir opens the directory itself for a moment; that fd is not counted.
    return (await fs.readdir(path.join(proc, 'self', 'fd'))).length - 1;
  } catch {
    return null;
  }
}

async function residentAnonBytes(proc: string): Promise<number | null> {
  const status = await fs.readFile(path.join(proc, 'self', 'status'), 'utf8').catch(() => '');
  const kb = /^RssAnon:\s+(\d+) kB$/m.exec(status);
  return kb ? Number(kb[1]) * 1024 : null;
}

/** /proc/meminfo values in bytes ("MemTotal:  16384 kB"). */
export async function readMeminfo(proc = '/proc'): Promise<Record<string, number>> {
  const text = await fs.readFile(path.join(proc, 'meminfo'), 'utf8').catch(() => '');
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^(\w+):\s+(\d+)(?:\s+kB)?$/gm)) {
    out[m[1]!] = Number(m[2]) * (m[0].endsWith('kB') ? 1024 : 1);
  }
  return out;
}

async function readLoadavg(proc: string): Promise<[number, number, number] | null> {
  const text = await fs.readFile(path.join(proc, 'loadavg'), 'utf8').catch(() => '');
  const parts = text.trim().split(/\s+/).slice(0, 3).map(Number);
  return parts.length === 3 && parts.every(Number.isFinite) ? (parts as [number, number, number]) : null;
}
