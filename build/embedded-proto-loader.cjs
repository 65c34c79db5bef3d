// Stand-in for @grpc/proto-loader inside the bundle, used only by
// grpc-health-check and @grpc/reflection. Both call loadSync() on .proto files
// that sit next to their own code on disk; a single-file agent has no such
// files, so the bundler embeds their text and this module parses it from
// memory. Every other call goes to the real proto-loader.
const protobuf = require('protobufjs');
const real = require('@grpc/proto-loader/build/src/index.js');
const embedded = require('embedded-protos'); // { 'health/v1/health.proto': '...', ... }

function loadSync(filename, options) {
  const key = Object.keys(embedded).find((k) => String(filename).replace(/\\/g, '/').endsWith(k));
  if (!key) return real.loadSync(filename, options);
  // Case is fixed at parse time: fromJSON cannot change it later.
  const root = protobuf.parse(embedded[key], { keepCase: Boolean(options && options.keepCase) }).root;
  return real.fromJSON(root.toJSON(), options);
}

module.exports = { ...real, loadSync };
