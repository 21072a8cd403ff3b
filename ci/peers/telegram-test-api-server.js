// Starts the telegram-test-api Bot API emulator (installed by install-telegram-test-api.sh) on
// 127.0.0.1:<port> and keeps it running until killed; prints `listening on N` once it listens.
// Usage: node telegram-test-api-server.js <port>
//
// Port 0 picks a free port here: the emulator itself cannot be given 0 (it takes 0 for "unset" and
// uses 9000), so a free port is found and the emulator started on it, again on another one should
// something take it in between. A caller reads the port from the output rather than reserving one
// beforehand, which races every other listener on the machine.
'use strict';
const net = require('net');
const path = require('path');
const dir = process.env.HERALD_TELEGRAM_TEST_API || path.join(__dirname, 'node_modules', 'telegram-test-api');
const TelegramServer = require(dir);

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

async function main() {
  const asked = Number(process.argv[2] || 9000);
  for (let attempt = 0; ; attempt++) {
    const port = asked === 0 ? await freePort() : asked;
    const server = new TelegramServer({ port, host: '127.0.0.1', storeTimeout: 600 });
    try {
      await server.start();
      process.stdout.write(`listening on ${port}\n`);
      return;
    } catch (e) {
      if (asked !== 0 || e.code !== 'EADDRINUSE' || attempt >= 20) {
        throw e;
      }
    }
  }
}

main().catch((e) => {
  process.stderr.write(`cannot start: ${e}\n`);
  process.exit(1);
});
