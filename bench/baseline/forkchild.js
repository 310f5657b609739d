// The child of baseline/parent.js: Node's IPC channel.
let received = 0;
process.on('message', (message) => {
  if (message.kind === 'tick') {
    received++;
    return;
  }
  process.send({ id: message.id, data: message.kind === 'count' ? received : message.data });
});
process.on('disconnect', () => process.exit(0));
