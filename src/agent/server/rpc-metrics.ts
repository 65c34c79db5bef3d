// Call counters per protocol version, method and status code, for GetMetrics.
import type { MetricsText } from '../guest/metrics';

export class RpcMetrics implements MetricsText {
  private readonly counts = new Map<string, number>();

  record(version: string, method: string, code: string): void {
    const key = `${version}\0${method}\0${code}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  /** Prometheus text exposition of the counters. */
  render(): string {
    const lines = ['# HELP agent_rpc_calls_total gRPC calls handled, by protocol version, method and status code.',
      '# TYPE agent_rpc_calls_total counter'];
    for (const [key, n] of [...this.counts].sort()) {
      const [version, method, code] = key.split('\0');
      lines.push(`agent_rpc_calls_total{version="${version}",method="${method}",code="${code}"} ${n}`);
    }
    return lines.join('\n') + '\n';
  }
}
