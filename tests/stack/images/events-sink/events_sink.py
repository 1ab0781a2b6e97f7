"""A TCP json_lines sink: every line that parses as a JSON object is appended to SINK_FILE.
Lines that do not parse are counted in SINK_FILE + ".rejected", as Logstash would tag them."""
import json
import os
import socketserver
import sys
import threading
from pathlib import Path

PORT = int(os.environ.get("SINK_PORT", "5044"))
OUT = Path(os.environ.get("SINK_FILE", "/data/events.jsonl"))
LOCK = threading.Lock()


class Lines(socketserver.StreamRequestHandler):
    def handle(self):
        for raw in self.rfile:
            try:
                event = json.loads(raw)
                target = OUT if isinstance(event, dict) else None
            except ValueError:
                target = None
            with LOCK:
                with open(target or OUT.with_name(OUT.name + ".rejected"), "ab") as out:
                    out.write(raw.rstrip(b"\n") + b"\n")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def healthy() -> bool:
    """The container's healthcheck: the port accepts a connection."""
    import socket
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=2).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(0 if healthy() else 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    print(f"events sink on :{PORT} -> {OUT}", flush=True)
    Server(("0.0.0.0", PORT), Lines).serve_forever()
