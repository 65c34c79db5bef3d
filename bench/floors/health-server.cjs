// The floor for start-up and memory: the least a Node gRPC server answering
// grpc.health.v1.Health/Check on a unix socket can be (grpc-js, hand-encoded
// messages, nothing else). Usage: node health-server.cjs SOCKET
const grpc = require('@grpc/grpc-js');
const server = new grpc.Server();
const raw = (b) => b;
server.addService({
  Check: {
    path: '/grpc.health.v1.Health/Check', requestStream: false, responseStream: false,
    requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw,
  },
}, { Check: (_call, callback) => callback(null, Buffer.from([0x08, 0x01])) }); // status: SERVING
server.bindAsync(`unix:${process.argv[2]}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
});
