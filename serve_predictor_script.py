"""Start the tuned-whisper service: Ray Serve with the Gradio UI and the OpenAI-compatible API on one port.

    python serve_predictor_script.py [--port 8080] [--checkpoint checkpoint/] [--replicas 1] ...

Joins the Ray cluster at $RAY_ADDRESS when set, else starts a local one. Listens on 0.0.0.0:$PORT (8080 by
default, as Cloud Run sets it). On SIGTERM or Ctrl-C it stops taking requests, lets in-flight ones finish
(up to TW_SERVE__GRACEFUL_SHUTDOWN_S) and shuts down.
"""

from __future__ import annotations

import sys

from tuned_whisper.server import main

if __name__ == "__main__":
    sys.exit(main())
