"""`translator serve`: the HTTP service, its request batching and its answers to bad requests (localhost only)."""

import asyncio
import json
import random
import signal
import subprocess
import sys
import warnings

import pytest
from test_export import exported_reversal_run

LIMITS = {"max_sentences": 40, "max_characters": 600, "max_body_bytes": 20_000}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`translator serve --export` of a weak reversal run, on a free port; yields (url, run, sentences)."""
    from translator.serving import launch

    run, exported, sentences = exported_reversal_run(tmp_path_factory.mktemp("serving"), 21, "reverser")
    process, url = launch(["--export", str(exported), "--port", "0", "--max-wait-ms", "3"]
                          + [f"--{key.replace('_', '-')}={value}" for key, value in LIMITS.items()])
    try:
        yield url, run, sentences, process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


async def _post(session, url, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with session.post(url, data=data) as response:
        return response.status, await response.json(content_type=None)


def _run(coroutine_function, *args):
    """Run an aiohttp client coroutine with a session bounded by a total timeout."""
    import aiohttp

    async def main():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            return await coroutine_function(session, *args)

    return asyncio.run(main())


def test_concurrent_clients_get_the_offline_translations_of_their_sentences(server):
    from translator import Translator

    url, run, sentences, _ = server
    generator = random.Random(5)
    clients = [[generator.sample(sentences, generator.randint(1, 8)) for _ in range(25)] for _ in range(16)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the over-long edge case
        offline = dict(zip(sentences, Translator.load(run).translate(sentences)))

    async def client(session, requests):
        return [await _post(session, f"{url}/v1/translate", {"sentences": request}) for request in requests]

    async def all_clients(session):
        return await asyncio.gather(*(client(session, requests) for requests in clients))

    async def health(session):
        async with session.get(f"{url}/health") as response:
            return await response.json()

    before = _run(health)
    answers = _run(all_clients)
    after = _run(health)
    assert after["requests"] - before["requests"] == 16 * 25
    assert after["batches"] - before["batches"] < 16 * 25  # requests waiting together were batched together
    for requests, responses in zip(clients, answers):
        assert len(responses) == 25
        for request, (status, body) in zip(requests, responses):
            assert status == 200, body
            assert body["translations"] == [offline[sentence] for sentence in request]
            assert len(body["scores"]) == len(request)


def test_the_tensorflow_serving_rest_form_and_beam_size_and_health(server):
    from translator import Translator

    url, run, sentences, _ = server
    translator = Translator.load(run)
    some = sentences[:6]

    async def requests(session):
        async with session.get(f"{url}/health") as response:
            health = response.status, await response.json()
        return (health,
                await _post(session, f"{url}/v1/models/reverser:predict", {"instances": some}),
                await _post(session, f"{url}/v1/models/reverser:predict",
                            {"instances": [{"sentences": sentence} for sentence in some]}),
                await _post(session, f"{url}/v1/models/reverser:predict",
                            {"inputs": {"sentences": some}, "signature_name": "translate_beam_1"}),
                await _post(session, f"{url}/v1/translate", {"sentences": some, "beam_size": 1}))

    health, rows, named_rows, columns, greedy = _run(requests)
    assert health[0] == 200
    assert {key: health[1][key] for key in ("status", "model", "beam_sizes", "beam_size")} == \
        {"status": "ready", "model": "reverser", "beam_sizes": [1, 5], "beam_size": 5}
    expected = translator.translate(some)
    assert rows[0] == named_rows[0] == 200
    assert [row["translations"] for row in rows[1]["predictions"]] == expected
    assert named_rows[1] == rows[1]
    assert columns[1]["outputs"]["translations"] == greedy[1]["translations"] == translator.translate(some, beam_size=1)


BAD_REQUESTS = [  # body, status, words the error must contain
    (b"not json", 400, "not JSON"),
    (b"\xff\xfe", 400, "not JSON"),
    ([1, 2], 400, "JSON object"),
    ({"sentence": ["a"]}, 400, "missing field 'sentences'"),
    ({"sentences": ["a"], "beam": 2}, 400, "unknown field 'beam'"),
    ({"sentences": "a b c"}, 400, "list of strings"),
    ({"sentences": ["a", 3]}, 400, "'sentences'[1] must be a string"),
    ({"sentences": [None]}, 400, "'sentences'[0] must be a string"),
    ({"sentences": ["a"] * 41}, 400, "more than the limit of 40"),
    ({"sentences": ["a " * 301]}, 400, "more than the limit of 600"),
    ({"sentences": ["a"], "beam_size": 3}, 400, "must be one of [1, 5]"),
    ({"sentences": ["a"], "beam_size": True}, 400, "must be one of [1, 5]"),
    ({"sentences": ["a " * 299] * 40}, 413, "body size"),
]


def test_bad_requests_get_a_4xx_with_a_json_error_and_the_server_goes_on(server):
    url, _, _, process = server

    async def requests(session):
        answers = [await _post(session, f"{url}/v1/translate", body) for body, _, _ in BAD_REQUESTS]
        answers.append(await _post(session, f"{url}/v1/models/other:predict", {"instances": ["a"]}))
        answers.append(await _post(session, f"{url}/v1/models/reverser:predict", {"instances": ["a"], "inputs": []}))
        answers.append(await _post(session, f"{url}/v1/models/reverser:predict",
                                   {"instances": ["a"], "signature_name": "classify"}))
        answers.append(await _post(session, f"{url}/v1/models/reverser:predict", {"instances": [{"text": "a"}]}))
        answers.append(await _post(session, f"{url}/nowhere", {}))
        answers.append(await _post(session, f"{url}/v1/translate", {"sentences": ["a b"]}))
        answers.append(await _post(session, f"{url}/v1/translate", {"sentences": []}))
        return answers

    answers = _run(requests)
    for (body, status, words), (got_status, got) in zip(BAD_REQUESTS, answers):
        assert got_status == status and words in got["error"], (body, got_status, got)
    other, both, signature, row, nowhere, fine, empty = answers[len(BAD_REQUESTS):]
    assert other[0] == 404 and "no model 'other'" in other[1]["error"]
    assert both[0] == 400 and "either 'instances'" in both[1]["error"]
    assert signature[0] == 400 and "'signature_name' must be one of" in signature[1]["error"]
    assert row[0] == 400 and "'instances'[0] must be a string" in row[1]["error"]
    assert nowhere[0] == 404 and "error" in nowhere[1]
    assert fine[0] == 200 and len(fine[1]["translations"]) == 1
    assert empty == (200, {"translations": [], "scores": []})
    assert process.poll() is None


def test_a_backend_built_from_the_run_translates_as_the_export(server):
    from translator.serving import Backend

    url, run, sentences, _ = server
    backend = Backend.from_run(run)
    assert backend.name == "weak" and sorted(backend.functions) == [1, 5]
    texts, _ = backend.translate(sentences[:20], 5)

    async def request(session):
        return await _post(session, f"{url}/v1/translate", {"sentences": sentences[:20]})

    assert _run(request)[1]["translations"] == texts


def test_serve_refuses_bad_settings_and_non_translation_exports(tmp_path):
    result = subprocess.run([sys.executable, "-m", "translator", "serve", "--export", str(tmp_path), "--port", "0"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "export.json not found" in result.stderr
    (tmp_path / "export.json").write_text(json.dumps({"kind": "classifier"}))
    result = subprocess.run([sys.executable, "-m", "translator", "serve", "--export", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "holds a classifier" in result.stderr
    result = subprocess.run([sys.executable, "-m", "translator", "serve", "--export", str(tmp_path),
                             "--max-batch-sentences", "0"], capture_output=True, text=True)
    assert result.returncode == 2 and "--max-batch-sentences" in result.stderr and "positive integer" in result.stderr


def test_serve_bench_reports_every_client_count_and_no_difference_from_offline(server, tmp_path):
    from translator.serve_bench import run

    _, trained_run, _, _ = server
    results = run(trained_run, "test", clients=(1, 4), sentences_per_request=5, output_dir=tmp_path,
                  log=lambda *a: None)
    assert [row["clients"] for row in results["server"]] == [1, 4]
    assert all(row["different_from_offline"] == 0 and row["requests"] == 30 for row in results["server"])
    assert results["beam_size"] == 5 and len(results["offline"]["before_and_after"]) == 2
    assert json.loads((tmp_path / "serve.json").read_text()) == results
    assert "| 4 |" in (tmp_path / "serve.md").read_text()
