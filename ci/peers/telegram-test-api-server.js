// Starts the telegram-test-api Bot API emulator (installed by install-telegram-test-api.sh) on
// 127.0.0.1:<port> and keeps it running until killed. Usage: node telegram-test-api-server.js <port>
'use strict';
const path = require('path');
const dir = process.env.HERALD_TELEGRAM_TEST_API || path.join(__dirname, 'node_modules', 'telegram-test-api');
const TelegramServer = require(dir);
const port = Number(process.argv[2] || 9000);
const server = new TelegramServer({ port, host: '127.0.0.1', storeTimeout: 600 });
server.start().then(
  () => process.stdout.write(`listening on ${port}\n`),
  (e) => { process.stderr.write(`cannot start: ${e}\n`); process.exit(1); },
);
