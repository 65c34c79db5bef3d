// v1 guest RPCs: thin translators to the guest module (agent/guest).
import type { AgentCore } from '../../agent/core';
import type { RpcBoundary } from '../../agent/server/rpc';
import type { AgentV1Handlers } from '../../protocol';
import { copyFileFromWire, guestDetailsToWire } from '../common-wire';

type Group = 'GetGuestDetails' | 'SetGuestDateTime' | 'OnlineCPUMem' | 'ReseedRandomDev' | 'CopyFile' | 'GetMetrics' | 'GetOOMEvent';

export function guestHandlers(core: AgentCore, rpc: RpcBoundary) {
  const { guest } = core;
  return {
    GetGuestDetails: rpc.unary(async (req) =>
      guestDetailsToWire(await guest.details({ memBlockSize: req.mem_block_size, memHotplugProbe: req.mem_hotplug_probe }))),
    SetGuestDateTime: rpc.unary((req) => {
      guest.setDateTime(req.sec, req.usec);
      return {};
    }),
    OnlineCPUMem: rpc.unary(async (req, ctx) => {
      await guest.onlineCpuMem({ wait: req.wait, nbCpus: req.nb_cpus, cpuOnly: req.cpu_only }, ctx.signal);
      return {};
    }),
    ReseedRandomDev: rpc.unary(async (req) => {
      await guest.reseedRandom(req.data);
      return {};
    }),
    CopyFile: rpc.unary(async (req) => {
      await guest.copyFile(copyFileFromWire(req));
      return {};
    }),
    GetMetrics: rpc.unary(async () => ({ metrics: await guest.metrics(core.callMetrics) })),
    GetOOMEvent: rpc.unary(async (_req, ctx) => ({ container_id: (await guest.nextOomEvent(ctx.signal)).containerId })),
  } satisfies Pick<AgentV1Handlers, Group>;
}
