"""A small realtime client: audio → `/v1/realtime` at a chosen pace → completed turns as text lines.

`tuned-whisper stream` runs it; it speaks the same protocol as OpenAI's Realtime transcription, so it is
also a way to try the server without the `openai` package.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np

from tuned_whisper.audio import SAMPLE_RATE
from tuned_whisper.audio_formats import AudioFormat, decode_chunk, encode_pcm16, encode_ulaw

TRAILING_SILENCE_S = 1.5  # after the file, so that the last turn ends
GRACE_S = 5.0  # once everything is sent and answered: how long to wait for a last turn


class LiveClientError(RuntimeError):
    """The server could not be reached or refused the session; the message says why."""


def read_source(source: str, *, stdin_rate: int = 16000) -> np.ndarray:
    """A file through ffmpeg, or `-`: raw 16-bit little-endian PCM at `stdin_rate` on stdin."""
    if source == "-":
        return decode_chunk(sys.stdin.buffer.read(), AudioFormat("audio/pcm", stdin_rate))
    from tuned_whisper.audio import decode_audio

    return decode_audio(source)


def _clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes):02d}:{rest:04.1f}"


def stream_to_server(
    audio: np.ndarray,
    url: str,
    *,
    api_key: str | None = None,
    speed: float = 1.0,
    encoding: str = "pcm16",
    rate: int = 24000,
    language: str | None = None,
    partials: bool = False,
    timeout_s: float = 120,
) -> Iterator[str]:
    """Yield "[mm:ss.s] text" for each completed turn (and "... text" partials when asked)."""
    from websockets.exceptions import InvalidStatus, WebSocketException
    from websockets.sync.client import connect

    audio = np.concatenate([audio, np.zeros(round(TRAILING_SILENCE_S * SAMPLE_RATE), dtype=np.float32)])
    if encoding == "pcmu":
        data, step, fmt = encode_ulaw(audio), 800, {"type": "audio/pcmu"}
    else:
        data, step, fmt = encode_pcm16(audio, rate), rate // 10 * 2, {"type": "audio/pcm", "rate": rate}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    target = url + ("&" if "?" in url else "?") + "intent=transcription"
    try:
        ws = connect(target, additional_headers=headers, max_size=None)
    except InvalidStatus as exc:
        raise LiveClientError(
            f"{url} refused the session ({exc.response.status_code}); check --api-key"
        ) from exc
    except (OSError, WebSocketException) as exc:
        raise LiveClientError(f"cannot reach {url}: {exc}") from exc
    with ws:
        session = {
            "type": "transcription",
            "audio": {"input": {"format": fmt, "turn_detection": {"type": "server_vad"}}},
        }
        if language:
            session["audio"]["input"]["transcription"] = {"language": language}
        ws.send(json.dumps({"type": "session.update", "session": session}))
        sender = threading.Thread(target=_send, args=(ws, data, step, speed), daemon=True)
        sender.start()
        yield from _turns(ws, sender, partials, timeout_s)


def _send(ws: object, data: bytes, step: int, speed: float) -> None:
    started = time.monotonic()
    for n, start in enumerate(range(0, len(data), step)):
        piece = base64.b64encode(data[start : start + step]).decode()
        try:
            ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": piece}))  # type: ignore[attr-defined]
        except Exception:  # the reader reports why the connection ended
            return
        pause = started + (n + 1) * 0.1 / max(speed, 1e-3) - time.monotonic()
        if pause > 0:
            time.sleep(pause)


def _turns(ws: object, sender: threading.Thread, partials: bool, timeout_s: float) -> Iterator[str]:
    starts: dict[str, float] = {}
    pending: set[str] = set()
    while True:
        waiting = sender.is_alive() or pending
        try:
            event = json.loads(ws.recv(timeout=timeout_s if waiting else GRACE_S))  # type: ignore[attr-defined]
        except TimeoutError:
            if sender.is_alive() or pending:
                raise LiveClientError(f"no event from the server for {timeout_s:.0f} s") from None
            return
        except Exception as exc:
            raise LiveClientError(f"the connection ended: {exc}") from exc
        kind = event.get("type")
        if kind == "error":
            yield f"error: {event['error'].get('message')}"
        elif kind == "input_audio_buffer.speech_started":
            starts[event["item_id"]] = event["audio_start_ms"] / 1000
        elif kind == "input_audio_buffer.committed":
            pending.add(event["item_id"])
        elif kind == "conversation.item.input_audio_transcription.delta" and partials:
            yield f"... {event['delta']}"
        elif kind == "conversation.item.input_audio_transcription.completed":
            pending.discard(event["item_id"])
            if event["transcript"]:
                yield f"[{_clock(starts.get(event['item_id'], 0.0))}] {event['transcript']}"
            if not sender.is_alive() and not pending:
                return
