// Generates everything derived from proto/: a JSON descriptor the agent and
// client load at run time (so the bundle reads no .proto file from disk), and
// TypeScript types for every message and service (so handlers are type-checked
// against the protocol). Output goes to src/generated/, which is not committed.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const protoRoot = path.join(repo, 'proto');
const outDir = path.join(repo, 'src', 'generated');

function protoFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return protoFiles(full);
    return name.endsWith('.proto') ? [path.relative(protoRoot, full)] : [];
  }).sort();
}

const files = protoFiles(protoRoot);
rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });

const root = new protobuf.Root();
root.resolvePath = (_origin, target) => path.join(protoRoot, target);
root.loadSync(files, { keepCase: true });
root.resolveAll();
writeFileSync(path.join(outDir, 'protos.json'), JSON.stringify(root.toJSON({ keepComments: false })));

execFileSync(process.execPath, [
  path.join(repo, 'node_modules/@grpc/proto-loader/build/bin/proto-loader-gen-types.js'),
  ...files,
  '--longs=Number', '--enums=String', '--defaults', '--oneofs', '--keepCase',
  '--grpcLib=@grpc/grpc-js', `--outDir=${outDir}`, `--includeDirs=${protoRoot}`,
], { stdio: 'inherit' });
console.log(`generated ${outDir} from ${files.join(', ')}`);
