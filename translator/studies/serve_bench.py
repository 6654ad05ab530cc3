"""`translator serve-bench` (`make serve-bench`): the server's throughput and latency beside offline translation.

    translator serve-bench --run runs/demo      # writes bench/results/serve.json and serve.md
    translator serve-bench --run runs/demo --beam-size 1    # bench/results/serve-beam1.{json,md}
    translator serve-bench --run runs/demo --beam-size 1 --no-scores    # serve-beam1-texts.{json,md}

The sentences of the run's test split (test2016 for Multi30k) are translated
1. offline, by `Translator.translate` (sorted by length, batches of 64, two in flight), then
2. through `translator serve --run RUN` started in its own process, by 1, 8 and 32 concurrent
   clients (asyncio, aiohttp) that take requests of ``--sentences-per-request`` consecutive
   sentences from one queue until all are sent, ``--passes`` times over the split (3: one pass
   of greedy search takes well under a second, and the ramp up and down of the clients would
   weigh more than the steady load a server is for), then
3. offline again (on cores shared with other work the speed drifts; the server's throughput is
   compared with the mean of the two offline figures).
Both with the run's decoding settings (or ``--beam-size``), on the same machine, one after the
other. With ``--no-scores`` the requests ask for the translations only (``"scores": false``),
as `Translator.translate` gives them: the same work on both sides. Reported: sentences per second (and the ratio to offline), the median and 99th
percentile request latency, and how many responses differ from the offline translations
(there should be none).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import yaml


def _test_sentences(run: Path, split: str) -> list[str]:
    from translator.data.corpora import read_prepared_split

    data = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))["data"]
    return read_prepared_split(data["corpus"], split, data.get("work_dir", "work"))["source"]


def _offline(run: Path, sentences: list[str], beam_size: int | None) -> tuple[list[str], float, int]:
    """Translator's translations, their seconds, and the beam size (``beam_size`` or the run's)."""
    from translator import Translator

    translator = Translator.load(run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        translator.translate(sentences[:64], beam_size=beam_size)  # compiles the search
        started = time.perf_counter()
        translations = translator.translate(sentences, beam_size=beam_size)
    return translations, time.perf_counter() - started, beam_size or translator.beam_size


async def _load(url: str, requests: list[list[str]], clients: int, beam_size: int | None, scores: bool = True):
    """Send `requests` from `clients` concurrent clients; returns (seconds, latencies, responses)."""
    import aiohttp

    pending = asyncio.Queue()
    for index, request in enumerate(requests):
        pending.put_nowait((index, request))
    responses, latencies = [None] * len(requests), []

    async def client(session):
        while not pending.empty():
            index, sentences = pending.get_nowait()
            body = {"sentences": sentences} if beam_size is None else {"sentences": sentences, "beam_size": beam_size}
            if not scores:
                body["scores"] = False
            started = time.perf_counter()
            async with session.post(f"{url}/v1/translate", json=body) as response:
                answer = await response.json()
            latencies.append(time.perf_counter() - started)
            responses[index] = answer.get("translations")

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1800)) as session:
        async with session.post(f"{url}/v1/translate", json={"sentences": requests[0]}) as response:
            await response.read()  # a first request outside the measurement
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        return time.perf_counter() - started, latencies, responses


def run(run_dir, split: str = "test", clients=(1, 8, 32), sentences_per_request: int = 8,
        beam_size: int | None = None, output_dir="bench/results", log=print, passes: int = 3,
        scores: bool = True) -> dict:
    from translator.files import atomic_write_text
    from translator.service.serving import launch

    run_dir = Path(run_dir)
    sentences = _test_sentences(run_dir, split)
    log(f"offline: Translator.translate of {len(sentences):,} sentences ({split} split)")
    expected, first_seconds, searched_with = _offline(run_dir, sentences, beam_size)
    log(f"  {len(sentences) / first_seconds:.1f} sentences/s")
    requests = [sentences[start:start + sentences_per_request]
                for start in range(0, len(sentences), sentences_per_request)] * passes
    process, url = launch(["--run", str(run_dir), "--port", "0"]
                          + ([] if beam_size is None else ["--beam-sizes", str(beam_size)]))
    rows = []
    try:
        for count in clients:
            seconds, latencies, responses = asyncio.run(_load(url, requests, count, beam_size, scores))
            translations = [text for response in responses for text in (response or [])]
            rows.append({"clients": count, "sentences_per_second": round(passes * len(sentences) / seconds, 2),
                         "latency_p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1),
                         "latency_p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 1),
                         "requests": len(requests),
                         "different_from_offline": sum(a != b for a, b in zip(translations, expected * passes))
                         + abs(len(translations) - passes * len(expected))})
            log(f"  {count:>2} clients: {rows[-1]['sentences_per_second']:.1f} sentences/s, latency p50 "
                f"{rows[-1]['latency_p50_ms']:.0f} ms, p99 {rows[-1]['latency_p99_ms']:.0f} ms")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    # Offline again after the server: on shared cores the speed drifts; ratios are to the mean.
    _, last_seconds, _ = _offline(run_dir, sentences, beam_size)
    log(f"offline again: {len(sentences) / last_seconds:.1f} sentences/s")
    offline_rate = len(sentences) / ((first_seconds + last_seconds) / 2)
    for row in rows:
        row["of_offline"] = round(row["sentences_per_second"] / offline_rate, 3)
    results = {"run": str(run_dir), "split": split, "sentences": len(sentences),
               "sentences_per_request": sentences_per_request, "passes": passes, "beam_size": searched_with,
               "scores": scores,
               "offline": {"sentences_per_second": round(offline_rate, 2),
                           "before_and_after": [round(len(sentences) / first_seconds, 2),
                                                round(len(sentences) / last_seconds, 2)]},
               "server": rows, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    stem = ("serve" if beam_size is None else f"serve-beam{beam_size}") + ("" if scores else "-texts")
    output_dir = Path(output_dir)
    atomic_write_text(output_dir / f"{stem}.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(output_dir / f"{stem}.md", markdown(results))
    results["files"] = [str(output_dir / f"{stem}.{suffix}") for suffix in ("json", "md")]
    return results


def markdown(results: dict) -> str:
    lines = [f"# translator serve: {results['run']}, {results['sentences']:,} sentences of the {results['split']} "
             f"split, beam size {results['beam_size']}, {results['sentences_per_request']} sentences a request, "
             f"{results.get('passes', 1)} passes through the server"
             + ("" if results.get("scores", True) else ", translations only (no scores)"), "",
             f"Offline (`Translator.translate`): {results['offline']['sentences_per_second']:.1f} sentences/s, the mean "
             f"of {' and '.join(f'{rate:.1f}' for rate in results['offline']['before_and_after'])} measured before "
             f"and after the server.", "",
             "| clients | sentences/s | of offline | latency p50 | latency p99 | responses unlike offline |",
             "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {row['clients']} | {row['sentences_per_second']:.1f} | {row['of_offline']:.0%} | "
              f"{row['latency_p50_ms']:.0f} ms | {row['latency_p99_ms']:.0f} ms | {row['different_from_offline']} |"
              for row in results["server"]]
    return "\n".join(lines) + "\n"
