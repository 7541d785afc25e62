"""One batch of window jobs from any requests → decodes: grouped by options, short clips packed per
caller, Whisper's fallback rules applied. The model replica and the in-process runner both call it."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tuned_whisper.audio import SAMPLE_RATE
from tuned_whisper.engine import packing
from tuned_whisper.engine.base import WindowDecoder
from tuned_whisper.engine.quality import DecodingRules, compression_ratio, decode_with_fallback
from tuned_whisper.engine.windows import Decoded
from tuned_whisper.types import TranscribeOptions


@dataclass(frozen=True)
class WindowJob:
    """One window of one request, with how that request wants it decoded."""

    samples: np.ndarray
    options: TranscribeOptions
    language: str | None
    caller: str = ""
    """Who sent it: only one caller's clips share a packed window (unless packing across is allowed)."""
    packable: bool = False
    """The request's whole audio is this one short window."""
    partial: bool = False
    """Background work (a live turn's partial text, an asynchronous job's window): batched only when no
    other job waits, so a backlog never delays interactive requests."""


@dataclass(frozen=True)
class Packing:
    """How short clips are packed; `None` in place of it turns packing off."""

    gap_s: float = 3.0
    max_clip_s: float = 12.0
    across_callers: bool = False


@dataclass
class BatchReport:
    """What one call of `decode_jobs` did, for metrics and tests."""

    windows: int = 0
    packed_clips: int = 0
    unpacked_again: int = 0
    packs: list[tuple[str, ...]] | None = None
    """The callers in each packed window."""


def _pack_key(job: WindowJob, packing_: Packing) -> tuple[str | None, str]:
    return job.language, "" if packing_.across_callers else job.caller


def _packable(job: WindowJob, packing_: Packing | None) -> bool:
    return (
        packing_ is not None
        and job.packable
        and job.language is not None
        and not job.options.word_timestamps
        and len(job.samples) <= packing_.max_clip_s * SAMPLE_RATE
    )


class WindowBudget:
    """The windows a batch of jobs will take: one per job, except short clips that share a packing key
    (language and caller), which together take their share of the packed windows they fill."""

    def __init__(self, packing_: Packing | None) -> None:
        self.packing = packing_
        self.whole = 0
        self.shares: dict[tuple[str | None, str], float] = {}

    def windows(self, adding: WindowJob | None = None) -> int:
        """Windows of the jobs added so far, and of `adding` if it were added too."""
        whole, shares = self.whole, dict(self.shares)
        if adding is not None:
            key = self._key(adding)
            if key is None:
                whole += 1
            else:
                shares[key] = shares.get(key, 0.0) + self._share(adding)
        return whole + sum(math.ceil(share - 1e-9) for share in shares.values())

    def add(self, job: WindowJob) -> None:
        key = self._key(job)
        if key is None:
            self.whole += 1
        else:
            self.shares[key] = self.shares.get(key, 0.0) + self._share(job)

    def _key(self, job: WindowJob) -> tuple[str | None, str] | None:
        if self.packing is None or not _packable(job, self.packing):
            return None
        return _pack_key(job, self.packing)

    def _share(self, job: WindowJob) -> float:
        assert self.packing is not None
        return min(1.0, (len(job.samples) / SAMPLE_RATE + self.packing.gap_s) / packing.CAPACITY_S)


def decode_jobs(
    decoder: WindowDecoder,
    jobs: Sequence[WindowJob],
    rules: DecodingRules,
    packing_: Packing | None = None,
    report: BatchReport | None = None,
) -> list[Decoded]:
    """Decode every job; jobs that share options are decoded together."""
    report = report if report is not None else BatchReport()
    report.packs = report.packs or []
    groups: dict[TranscribeOptions, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(job.options, []).append(i)
    results: dict[int, Decoded] = {}
    for options, indices in groups.items():
        decoded = _decode_group(decoder, [jobs[i] for i in indices], options, rules, packing_, report)
        results.update(zip(indices, decoded, strict=True))
    return [results[i] for i in range(len(jobs))]


def _decode_group(
    decoder: WindowDecoder,
    jobs: Sequence[WindowJob],
    options: TranscribeOptions,
    rules: DecodingRules,
    packing_: Packing | None,
    report: BatchReport,
) -> list[Decoded]:
    packs: list[packing.Pack] = []
    if packing_ is not None:
        gap = round(packing_.gap_s * SAMPLE_RATE)
        by_key: dict[tuple[str | None, str], list[int]] = {}
        for i, job in enumerate(jobs):
            if _packable(job, packing_):
                by_key.setdefault(_pack_key(job, packing_), []).append(i)
        for members in by_key.values():
            for group in packing.plan([len(jobs[i].samples) for i in members], gap):
                if len(group) > 1:
                    chosen = [members[g] for g in group]
                    packs.append(packing.build(chosen, [j.samples for j in jobs], gap))
    packed = {i for pack in packs for i in pack.members}
    alone = [i for i in range(len(jobs)) if i not in packed]
    first_temperature = rules.schedule(options)[0]
    singles = [jobs[i].samples for i in alone]
    first = (
        decoder.decode(singles, [jobs[i].language for i in alone], options, first_temperature)
        if alone
        else []
    )
    # packs are aligned too: where each word was heard tells which clip a segment belongs to
    aligned = dataclasses.replace(options, word_timestamps=True)
    languages = [jobs[pack.members[0]].language for pack in packs]
    heard = decoder.decode([p.samples for p in packs], languages, aligned, first_temperature) if packs else []
    report.windows += len(alone) + len(packs)
    attempts: dict[int, Decoded | None] = dict(zip(alone, first, strict=True))
    for pack, decoded in zip(packs, heard, strict=True):
        report.packed_clips += len(pack.members)
        report.packs.append(tuple(jobs[i].caller for i in pack.members))
        shares = _shares(decoder, pack, decoded, rules, gap)
        for i, share in zip(pack.members, shares, strict=True):
            attempts[i] = share
            report.unpacked_again += share is None
    order = list(range(len(jobs)))
    final = decode_with_fallback(
        decoder,
        [jobs[i].samples for i in order],
        [jobs[i].language for i in order],
        options,
        rules,
        first=[attempts.get(i) for i in order],
    )
    return final


def _shares(
    decoder: WindowDecoder, pack: packing.Pack, decoded: Decoded, rules: DecodingRules, gap: int
) -> list[Decoded | None]:
    """Each member's part of a packed decode, or None where it must be decoded alone. The pack's
    log-probability and no-speech odds are judged for all; repetition clip by clip, since clips of one
    caller often say the same thing (the same prompt twice gzips like a loop)."""
    likely = rules.log_prob_threshold is None or decoded.avg_logprob >= rules.log_prob_threshold
    if rules.is_silence(decoded) or not likely:
        return [None] * len(pack.members)
    shares: list[Decoded | None] = []
    for share in packing.unpack(pack, decoded, decoder.vocab, gap):
        if share is not None:
            text = decoder.tokenizer.decode([int(t) for t in share.tokens], skip_special_tokens=True)
            share = dataclasses.replace(share, compression_ratio=compression_ratio(text))
        shares.append(None if share is None or rules.needs_fallback(share) else share)
    return shares
