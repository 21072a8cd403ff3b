"""A throwaway Synapse homeserver for Herald's Matrix tests: SQLite, loopback only, no federation.

    python synapse_server.py DIR PORT

Writes DIR/homeserver.yaml the first time (server name `localhost`, a client listener on
127.0.0.1:PORT, users registered with the shared secret `herald-test-shared-secret`, rate limits raised
for tests), makes its signing key, then becomes Synapse (exec), in the foreground: killing this process
stops the server, and starting it again on the same DIR keeps every user, room and message.

Run it with the python of ci/peers/install-synapse.sh's virtual environment.
"""

import os
import subprocess
import sys

SHARED_SECRET = "herald-test-shared-secret"


def config(directory: str, port: int) -> str:
    return f"""
server_name: "localhost"
pid_file: "{directory}/homeserver.pid"
public_baseurl: "http://127.0.0.1:{port}/"
listeners:
  - port: {port}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: "{directory}/homeserver.db"
log_config: "{directory}/log.yaml"
media_store_path: "{directory}/media_store"
signing_key_path: "{directory}/signing.key"
registration_shared_secret: "{SHARED_SECRET}"
enable_registration: false
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
presence:
  enabled: false
url_preview_enabled: false
enable_metrics: false
# Tests send fast; Synapse's defaults would answer 429.
rc_message: {{per_second: 1000, burst_count: 1000}}
rc_login:
  address: {{per_second: 1000, burst_count: 1000}}
  account: {{per_second: 1000, burst_count: 1000}}
  failed_attempts: {{per_second: 1000, burst_count: 1000}}
rc_joins:
  local: {{per_second: 1000, burst_count: 1000}}
  remote: {{per_second: 1000, burst_count: 1000}}
rc_invites:
  per_room: {{per_second: 1000, burst_count: 1000}}
  per_user: {{per_second: 1000, burst_count: 1000}}
  per_issuer: {{per_second: 1000, burst_count: 1000}}
rc_registration: {{per_second: 1000, burst_count: 1000}}
rc_key_requests: {{per_second: 1000, burst_count: 1000}}
rc_delayed_event_mgmt: {{per_second: 1000, burst_count: 1000}}
rc_room_creation: {{per_second: 1000, burst_count: 1000}}
"""


LOG = """
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(message)s'
handlers:
  console:
    class: logging.StreamHandler
    formatter: precise
loggers:
  synapse.storage.SQL:
    level: WARNING
root:
  level: WARNING
  handlers: [console]
disable_existing_loggers: false
"""


def main() -> None:
    directory = os.path.abspath(sys.argv[1])
    port = int(sys.argv[2])
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "homeserver.yaml")
    with open(path, "w") as f:
        f.write(config(directory, port))
    with open(os.path.join(directory, "log.yaml"), "w") as f:
        f.write(LOG)
    if not os.path.exists(os.path.join(directory, "signing.key")):
        subprocess.run(
            [sys.executable, "-m", "synapse.app.homeserver", "-c", path, "--generate-keys"],
            check=True,
            cwd=directory,
        )
    os.chdir(directory)
    os.execv(sys.executable, [sys.executable, "-m", "synapse.app.homeserver", "-c", path])


if __name__ == "__main__":
    main()
