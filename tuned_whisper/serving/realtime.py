"""`/v1/realtime?intent=transcription`: OpenAI's Realtime transcription protocol over a WebSocket.

The session and its audio buffer live here in the ingress, with server VAD (Silero, a few ms per 100 ms
chunk, cheaper than a hop to another deployment); every decode goes through the same long-form path to the
batched model replicas as file requests, so live turns and uploads share forward passes. This module only
speaks the protocol: `tuned_whisper.streaming.LiveSession` does the work.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from tuned_whisper.audio_formats import AudioFormat, decode_chunk
from tuned_whisper.config import ApiSettings, RealtimeSettings
from tuned_whisper.languages import language_code
from tuned_whisper.serving.admission import PerClient
from tuned_whisper.serving.client_secrets import ClientSecrets, is_api_key, key_caller, presented_key
from tuned_whisper.serving.errors import ApiError
from tuned_whisper.streaming import (
    Cleared,
    Committed,
    Completed,
    Delta,
    Event,
    Failed,
    LiveLoad,
    LiveSession,
    SessionLimits,
    SpeechStarted,
    SpeechStopped,
    TurnDetection,
)
from tuned_whisper.types import TranscribeOptions, Transcript

log = logging.getLogger("tuned_whisper.realtime")
POLICY, GOING_AWAY, TRY_LATER = 1008, 1001, 1013
KEY_SUBPROTOCOL = "openai-insecure-api-key."  # how browsers send a key (they cannot set headers)


class Backend(Protocol):
    async def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        progress: Any = None,
        *,
        caller: str = "",
        partial: bool = False,
    ) -> Transcript: ...


class ClientError(ValueError):
    """A bad client message: answered with an `error` event; the session stays open."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


def event_id() -> str:
    return f"event_{uuid.uuid4().hex[:20]}"


def error_event(
    code: str,
    message: str,
    *,
    param: str | None = None,
    kind: str = "invalid_request_error",
    client_event: str | None = None,
) -> dict[str, Any]:
    error = {"type": kind, "code": code, "message": message, "param": param, "event_id": client_event}
    return {"type": "error", "event_id": event_id(), "error": error}


def server_event(event: Event) -> dict[str, Any]:
    """A session event as OpenAI's JSON."""
    body: dict[str, Any]
    match event:
        case SpeechStarted(item_id, start):
            body = {"type": "input_audio_buffer.speech_started", "audio_start_ms": start, "item_id": item_id}
        case SpeechStopped(item_id, end):
            body = {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": end, "item_id": item_id}
        case Committed(item_id, previous):
            body = {"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": previous}
        case Cleared():
            body = {"type": "input_audio_buffer.cleared"}
        case Delta(item_id, delta):
            body = {
                "type": "conversation.item.input_audio_transcription.delta",
                "item_id": item_id,
                "content_index": 0,
                "delta": delta,
            }
        case Completed(item_id, transcript, seconds):
            body = {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id,
                "content_index": 0,
                "transcript": transcript,
                "usage": {"type": "duration", "seconds": round(seconds, 3)},
            }
        case Failed(item_id, message):
            body = {
                "type": "conversation.item.input_audio_transcription.failed",
                "item_id": item_id,
                "content_index": 0,
                "error": {"type": "server_error", "code": "transcription_failed", "message": message},
            }
    return {"event_id": event_id(), **body}


@dataclass
class Config:
    """What `session.update` set: the audio format, transcription options and turn detection."""

    audio_format: AudioFormat = field(default_factory=AudioFormat)
    model: str = "whisper-1"
    adapter: str | None = None
    """The registry adapter `model` names (None: the base model), resolved by the endpoint."""
    language: str | None = None
    prompt: str | None = None
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)

    def session(self, session_id: str) -> dict[str, Any]:
        detection = None
        if self.turn_detection is not None:
            detection = {
                "type": "server_vad",
                "threshold": self.turn_detection.threshold,
                "prefix_padding_ms": self.turn_detection.prefix_padding_ms,
                "silence_duration_ms": self.turn_detection.silence_duration_ms,
            }
        transcription = {"model": self.model, "language": self.language, "prompt": self.prompt}
        audio_input = {
            "format": self.audio_format.to_dict(),
            "transcription": transcription,
            "turn_detection": detection,
        }
        return {
            "type": "transcription",
            "id": session_id,
            "object": "realtime.transcription_session",
            "audio": {"input": audio_input},
        }

    def options(self) -> TranscribeOptions:
        return TranscribeOptions(language=self.language, initial_prompt=self.prompt, adapter=self.adapter)


def _base_only(model: str | None) -> str | None:
    """Without a registry every session decodes with the base model, whatever it names."""
    return None


def _mapping(value: object, param: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ClientError("invalid_value", f"{param} must be an object", param)
    return value


def _turn_detection(value: object) -> TurnDetection | None:
    if value is None:
        return None
    given = _mapping(value, "session.audio.input.turn_detection")
    if given.get("type", "server_vad") != "server_vad":
        raise ClientError(
            "unsupported_turn_detection",
            "turn_detection.type must be server_vad (or turn_detection null)",
            "session.audio.input.turn_detection.type",
        )
    base = TurnDetection()
    try:
        detection = TurnDetection(
            threshold=float(given.get("threshold", base.threshold)),
            prefix_padding_ms=int(given.get("prefix_padding_ms", base.prefix_padding_ms)),
            silence_duration_ms=int(given.get("silence_duration_ms", base.silence_duration_ms)),
        )
    except (TypeError, ValueError) as exc:
        raise ClientError(
            "invalid_value", f"turn_detection: {exc}", "session.audio.input.turn_detection"
        ) from exc
    if not 0.0 < detection.threshold < 1.0 or detection.silence_duration_ms < 100:
        raise ClientError(
            "invalid_value",
            "threshold must be in (0, 1) and silence_duration_ms at least 100",
            "session.audio.input.turn_detection",
        )
    return detection


def update(config: Config, session: object) -> Config:
    """`session.update`'s `session`, checked; fields it leaves out keep their values."""
    given = _mapping(session, "session")
    if given.get("type", "transcription") != "transcription":
        raise ClientError(
            "unsupported_session_type", "this server only does transcription sessions", "session.type"
        )
    audio_input = _mapping(_mapping(given.get("audio"), "session.audio").get("input"), "session.audio.input")
    new = Config(**vars(config))
    if "format" in audio_input:
        try:
            new.audio_format = AudioFormat.parse(audio_input["format"])
        except ValueError as exc:
            raise ClientError("invalid_audio_format", str(exc), "session.audio.input.format") from exc
    if "transcription" in audio_input:
        transcription = _mapping(audio_input["transcription"], "session.audio.input.transcription")
        new.model = str(transcription.get("model") or new.model)
        language = transcription.get("language")
        try:
            new.language = language_code(language) if language else None
        except ValueError as exc:
            raise ClientError(
                "unsupported_language", str(exc), "session.audio.input.transcription.language"
            ) from exc
        prompt = transcription.get("prompt")
        new.prompt = str(prompt)[:2000] if prompt else None
    if "turn_detection" in audio_input:
        new.turn_detection = _turn_detection(audio_input["turn_detection"])
    return new


def _audio(message: dict[str, Any], config: Config) -> np.ndarray:
    data = message.get("audio")
    if not isinstance(data, str):
        raise ClientError("invalid_value", "input_audio_buffer.append needs 'audio': base64 text", "audio")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ClientError("invalid_base64", f"'audio' is not valid base64: {exc}", "audio") from exc
    try:
        return decode_chunk(raw, config.audio_format)
    except ValueError as exc:
        raise ClientError("invalid_audio", str(exc), "audio") from exc


@dataclass
class Registry:
    """Open sessions of this ingress replica (its limit and `/metrics`)."""

    open: int = 0
    total: int = 0


class RealtimeEndpoint:
    """One WebSocket connection's life: handshake, limits, messages in, events out."""

    def __init__(self, backend: Backend, api: ApiSettings, settings: RealtimeSettings) -> None:
        self.backend = backend
        self.api = api
        self.client_secrets = ClientSecrets.from_keys(api.keys())
        self.settings = settings
        self.registry = Registry()
        self.clients = PerClient(settings.max_sessions_per_client)
        self.load = LiveLoad(partial_slots=settings.partial_slots)
        self.adapter_for: Callable[[str | None], str | None] = _base_only
        """A session's `model` -> its adapter; the ingress sets the API's (the registry), which raises
        the API's 404 for a model the server does not serve."""

    def adapter(self, model: str) -> str | None:
        try:
            return self.adapter_for(model)
        except ApiError as exc:
            param = "session.audio.input.transcription.model"
            raise ClientError("model_not_found", exc.message, param) from exc

    def _authorized(self, websocket: WebSocket) -> str | None:
        """The caller id, or None when keys are on and this one is missing or wrong.

        The key comes as `Authorization: Bearer …` or, from a browser (which cannot set headers), as the
        subprotocol `openai-insecure-api-key.<key>`, as OpenAI takes it; a client secret (`ek_…`, see
        `client_secrets`) works in place of the key.
        """
        if not self.api.guarded:
            return f"realtime-{uuid.uuid4().hex}"
        keys = self.api.keys()
        offered = [presented_key(websocket.headers.get("authorization", "")) or ""]
        offered += [
            p.removeprefix(KEY_SUBPROTOCOL) for p in _subprotocols(websocket) if p.startswith(KEY_SUBPROTOCOL)
        ]
        for token in filter(None, offered):
            if is_api_key(token, keys):
                return key_caller(token)
            if self.client_secrets is not None and (caller := self.client_secrets.caller(token)):
                return caller
        return None

    async def __call__(self, websocket: WebSocket) -> None:
        caller = self._authorized(websocket)
        if caller is None:
            await websocket.close(code=POLICY, reason="missing or incorrect API key")
            return
        # A browser that offered subprotocols drops a connection that picks none of them.
        await websocket.accept(subprotocol="realtime" if "realtime" in _subprotocols(websocket) else None)
        intent = websocket.query_params.get("intent", "transcription")
        if intent != "transcription":
            await self._refuse(websocket, "unsupported_intent", "only intent=transcription is served", POLICY)
            return
        if self.registry.open >= self.settings.max_sessions:
            message = f"this replica already holds {self.settings.max_sessions} sessions; retry shortly"
            await self._refuse(websocket, "too_many_sessions", message, TRY_LATER)
            return
        client = caller if self.api.guarded else f"peer-{websocket.client.host if websocket.client else '?'}"
        if not self.clients.enter(client):
            message = f"this client already holds {self.clients.limit} sessions; close one or retry shortly"
            await self._refuse(websocket, "too_many_sessions_for_client", message, TRY_LATER)
            return
        self.registry.open += 1
        self.registry.total += 1
        try:
            await Connection(self, websocket, caller).run()
        finally:
            self.registry.open -= 1
            self.clients.leave(client)

    async def _refuse(self, websocket: WebSocket, code: str, message: str, close_code: int) -> None:
        await websocket.send_json(error_event(code, message))
        await websocket.close(code=close_code, reason=message[:120])


class Connection:
    def __init__(self, endpoint: RealtimeEndpoint, websocket: WebSocket, caller: str) -> None:
        self.endpoint = endpoint
        self.websocket = websocket
        self.settings = endpoint.settings
        self.config = Config()
        self.session_id = f"sess_{uuid.uuid4().hex[:20]}"
        self.session = LiveSession(
            self._transcribe,
            self.config.options(),
            self.config.turn_detection,
            SessionLimits(
                max_turn_s=self.settings.max_turn_s,
                max_buffer_s=self.settings.max_buffer_s,
                partial_interval_s=self.settings.partial_interval_s,
            ),
            endpoint.load,
        )
        self.caller = caller
        self.send_lock = asyncio.Lock()

    async def _transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, *, partial: bool = False
    ) -> str:
        transcript = await self.endpoint.backend.transcribe(
            audio, options, caller=self.caller, partial=partial
        )
        return transcript.text

    async def send(self, event: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.websocket.send_text(json.dumps(event, ensure_ascii=False))

    async def run(self) -> None:
        await self.send(
            {
                "type": "session.created",
                "event_id": event_id(),
                "session": self.config.session(self.session_id),
            }
        )
        sender = asyncio.create_task(self._forward_events())
        try:
            await self._receive()
        except WebSocketDisconnect:
            log.info("realtime session %s: the client went away", self.session_id)
        finally:
            sender.cancel()
            await self.session.close()

    async def _forward_events(self) -> None:
        while True:
            event = await self.session.events.get()
            await self.send(server_event(event))

    async def _receive(self) -> None:
        deadline = time.monotonic() + self.settings.max_session_s
        while True:
            left = deadline - time.monotonic()
            try:
                received = await asyncio.wait_for(
                    self.websocket.receive(), timeout=max(0.0, min(left, self.settings.idle_timeout_s))
                )
            except TimeoutError:
                if time.monotonic() >= deadline:
                    message = f"the session reached its {self.settings.max_session_s:.0f} s limit"
                    await self._close("session_expired", message, POLICY)
                elif self.session.finals or not self.session.events.empty():
                    continue  # a client waiting for its last transcripts is not idle
                else:
                    message = f"no message for {self.settings.idle_timeout_s:.0f} s"
                    await self._close("idle_timeout", message, GOING_AWAY)
                return
            if received["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(received.get("code", 1000))
            if received.get("text") is None:
                await self.send(error_event("binary_not_supported", "send events as JSON text messages"))
                continue
            await self._handle(received["text"])

    async def _close(self, code: str, message: str, close_code: int) -> None:
        await self.send(error_event(code, message))
        await self.websocket.close(code=close_code, reason=message[:120])

    async def _handle(self, text: str) -> None:
        client_event: str | None = None
        try:
            if len(text) > self.settings.max_message_bytes:
                raise ClientError(
                    "message_too_large", f"messages are limited to {self.settings.max_message_bytes:,} bytes"
                )
            try:
                message = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ClientError("invalid_json", f"the message is not JSON: {exc}") from exc
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                raise ClientError("invalid_event", "an event is a JSON object with a 'type'", "type")
            client_event = message.get("event_id") if isinstance(message.get("event_id"), str) else None
            await self._dispatch(message)
        except ClientError as exc:
            await self.send(error_event(exc.code, str(exc), param=exc.param, client_event=client_event))

    async def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "session.update":
            config = update(self.config, message.get("session"))
            config.adapter = self.endpoint.adapter(config.model)
            self.config = config
            self.session.options = self.config.options()
            self.session.turn_detection = self.config.turn_detection
            await self.send(
                {
                    "type": "session.updated",
                    "event_id": event_id(),
                    "session": self.config.session(self.session_id),
                }
            )
        elif kind == "input_audio_buffer.append":
            samples = _audio(message, self.config)
            try:
                self.session.append(samples)
            except BufferError as exc:
                raise ClientError("input_audio_buffer_full", str(exc), "audio") from exc
        elif kind == "input_audio_buffer.commit":
            try:
                self.session.commit()
            except ValueError as exc:
                raise ClientError("input_audio_buffer_commit_empty", str(exc)) from exc
        elif kind == "input_audio_buffer.clear":
            self.session.clear()
        else:
            raise ClientError("unknown_event", f"unknown event type {kind!r}", "type")


def _subprotocols(websocket: WebSocket) -> list[str]:
    header = websocket.headers.get("sec-websocket-protocol", "")
    return [p.strip() for p in header.split(",") if p.strip()]


def add_realtime_route(app: FastAPI, endpoint: RealtimeEndpoint) -> None:
    """Mount the WebSocket at `/v1/realtime` (before any catch-all mount such as the UI)."""
    app.add_api_websocket_route("/v1/realtime", endpoint)
