"""`vaekit serve` and `vaekit export`: answers equal the CLI's, concurrent requests batch without
changing anyone's answer, bad requests get one-line 4xx answers and the server goes on, the token
guards every endpoint but /health, the explorer page works in a real browser, kill -9 leaves the
run untouched, and the ONNX models match PyTorch."""

import asyncio
import base64
import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("fastapi")
import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

import vaekit  # noqa: E402
from test_architecture import SMALL, tiny_data  # noqa: E402
from vaekit.cli import main  # noqa: E402
from vaekit.kinds import KINDS  # noqa: E402
from vaekit.serve import ServeOptions, make_app, open_runs  # noqa: E402

from conftest import free_port, one_line_error, vaekit_cli, wait_for  # noqa: E402


def train(*argv) -> None:
    assert main(["train", *map(str, argv), "--precision", "fp32", "--quiet"]) == 0


@pytest.fixture(scope="module")
def adult_run(adult, tmp_path_factory):
    """A small model of 3,000 Adult rows (conditioned on income), trained in seconds."""
    folder = tmp_path_factory.mktemp("serve-adult")
    pd.read_csv(adult / "train.csv", dtype=str, keep_default_na=False).head(3000).to_csv(folder / "adult.csv",
                                                                                          index=False)
    train("--data", folder / "adult.csv", "--target", "income", "--hidden", "64", "--latent-dim", "8",
          "--epochs", "3", "--min-steps", "0", "--out", folder / "adult")
    return folder / "adult"


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("serve-digits") / "digits"
    train("--data", "digits", "--hidden", "64", "--latent-dim", "4", "--epochs", "3", "--out", run)
    return run


@pytest.fixture(scope="module")
def client(adult_run, digits_run):
    with TestClient(make_app(open_runs([adult_run, digits_run]), ServeOptions(max_body=1 << 20))) as c:
        yield c


def rows_of(run, n: int) -> list[dict]:
    """n test rows of the run's table, as a client would send them (numbers as numbers)."""
    frame = vaekit.open(run).run.kind.frames(vaekit.open(run).run.cfg.data).test.head(n)
    return json.loads(frame.to_json(orient="records"))


def test_table_answers_equal_the_cli(client, adult_run, tmp_path, capsys):
    runs = client.get("/v1/runs").json()
    assert runs["adult"]["kind"] == "table" and "score" in runs["adult"]["commands"]
    assert runs["digits"]["kind"] == "image" and "recommend" not in runs["digits"]["commands"]
    rows = rows_of(adult_run, 25)
    pd.DataFrame(rows).to_csv(tmp_path / "rows.csv", index=False)
    served = client.post("/v1/adult/score", json={"inputs": rows}).json()
    assert main(["anomaly", str(adult_run), "--data", str(tmp_path / "rows.csv"), "--out", str(tmp_path / "a.csv")]) == 0
    cli = pd.read_csv(tmp_path / "a.csv", keep_default_na=False)
    assert np.allclose(served["score"], cli["score"], rtol=1e-4)
    assert served["flagged"] == [bool(v) for v in cli["flagged"]]
    assert served["top_columns"] == list(cli["top_columns"])
    assert main(["encode", str(adult_run), "--data", str(tmp_path / "rows.csv"), "--out", str(tmp_path / "e.npy")]) == 0
    mu = client.post("/v1/adult/encode", json={"inputs": rows}).json()["mu"]
    assert np.allclose(mu, np.load(tmp_path / "e.npy"), atol=1e-5)
    drawn = client.post("/v1/adult/sample", json={"num": 30, "seed": 2, "conditions": {"income": ">50K"}}).json()
    assert len(drawn["samples"]) == 30 and set(drawn["samples"][0]) == set(rows[0])
    assert {r["income"] for r in drawn["samples"]} == {">50K"}
    scored_again = client.post("/v1/adult/score", json={"inputs": drawn["samples"]})  # samples score as inputs
    assert scored_again.status_code == 200 and len(scored_again.json()["score"]) == 30


def test_image_answers_equal_the_cli(client, digits_run, tmp_path):
    served = np.array(client.post("/v1/digits/sample", json={"num": 6, "seed": 3}).json()["samples"])
    assert main(["sample", str(digits_run), "--num", "6", "--seed", "3", "--out", str(tmp_path / "s.npy")]) == 0
    assert served.shape == (6, 1, 8, 8) and np.allclose(served, np.load(tmp_path / "s.npy"), atol=1e-4)
    pngs = client.post("/v1/digits/sample", json={"num": 2, "format": "png"}).json()["samples"]
    from vaekit.kinds.image.commands import png_pixels

    assert png_pixels(pngs[0], (1, 8, 8), 0).shape == (1, 8, 8)
    scored = client.post("/v1/digits/score", json={"inputs": pngs + served.tolist()}).json()
    assert len(scored["score"]) == 8 and all(np.isfinite(scored["score"]))
    pair = client.post("/v1/digits/reconstruct", json={"inputs": served[:2].tolist()}).json()["outputs"]
    assert np.array(pair).shape == (2, 2, 1, 8, 8)


def test_concurrent_requests_are_batched_and_answered_as_alone(adult_run):
    served = open_runs([adult_run])
    app = make_app(served, ServeOptions())
    rows = rows_of(adult_run, 40)
    bad = dict(rows[0], age="old")

    async def ask(client, body):
        return await client.post("/v1/adult/score", json=body)

    async def main_():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            together = await asyncio.gather(*[ask(c, {"inputs": [r], "seed": i}) for i, r in enumerate(rows)],
                                            ask(c, {"inputs": [bad]}))
            alone = [await ask(c, {"inputs": [r], "seed": i}) for i, r in enumerate(rows[:5])]
            return together, alone

    together, alone = asyncio.run(main_())
    assert [r.status_code for r in together] == [200] * 40 + [422]
    assert "'age' holds 'old'" in together[-1].json()["error"]
    for a, b in zip(together, alone):
        assert np.allclose(a.json()["score"], b.json()["score"], rtol=1e-5)
        assert a.json()["top_columns"] == b.json()["top_columns"]
    batcher = served["adult"].batchers["score"]
    assert batcher.largest > 1 and batcher.batches < batcher.requests  # requests did share batches


BAD = [  # (body or raw bytes, path, status)
    (b"{", "/v1/adult/score", 400),
    (b"[1, 2]", "/v1/adult/score", 400),
    (b'{"inputs": [{"age": NaN}]}', "/v1/adult/score", 400),
    ({"inputs": [[1, 2, 3]]}, "/v1/adult/score", 422),
    ({"inputs": "age=3"}, "/v1/adult/score", 422),
    ({"inputs": []}, "/v1/adult/score", 422),
    ({"inputs": [{"nope": 1}]}, "/v1/adult/score", 422),
    ({"inputs": [{"age": 30}]}, "/v1/adult/score", 422),
    ({"inputs": "ROW", "num_samples": 0}, "/v1/adult/score", 422),
    ({"inputs": "ROW", "fpr": 2}, "/v1/adult/score", 422),
    ({"inputs": "ROW", "colour": "red"}, "/v1/adult/score", 422),
    ({"inputs": "ROW", "seed": "x"}, "/v1/adult/encode", 422),
    ({"num": 0}, "/v1/adult/sample", 422),
    ({"num": -3}, "/v1/adult/sample", 422),
    ({"num": "ten"}, "/v1/adult/sample", 422),
    ({"num": 10**12}, "/v1/adult/sample", 413),
    ({"num": 2, "conditions": {"income": "rich"}}, "/v1/adult/sample", 422),
    ({"num": 2, "temperature": -1}, "/v1/adult/sample", 422),
    ({"z": [[1, 2]]}, "/v1/adult/decode", 422),
    ({"z": "zz"}, "/v1/adult/decode", 422),
    ({"inputs": [[0.5] * 7]}, "/v1/digits/score", 422),
    ({"inputs": ["not a png"]}, "/v1/digits/encode", 422),
    ({"inputs": [[[2.0] * 8] * 8]}, "/v1/digits/score", 422),
    ({"inputs": [[1]]}, "/v1/adult/recommend", 404),
    ({"num": 1}, "/v1/nosuchrun/sample", 404),
    ({"num": 1}, "/v1/adult/nosuchcommand", 404),
    ({"num": 1}, "/v2/whatever", 404),
    (b"x" * (2 << 20), "/v1/adult/score", 413),
]


@pytest.mark.parametrize("body,path,status", BAD, ids=[f"{i}-{c[1].split('/')[-1]}" for i, c in enumerate(BAD)])
def test_bad_requests_get_one_line_4xx_and_the_server_goes_on(client, adult_run, body, path, status):
    row = rows_of(adult_run, 1)[0]
    wrong = dict(row, workclass="Astronaut")
    if isinstance(body, dict) and body.get("inputs") == "ROW":
        body = dict(body, inputs=[row])
    if body == {"inputs": [{"age": 30}]}:
        body = {"inputs": [wrong]}  # an unknown category
    r = client.post(path, content=body, headers={"content-type": "application/json"}) if isinstance(body, bytes) \
        else client.post(path, json=body)
    assert r.status_code == status, (r.status_code, r.text)
    error = r.json()["error"]
    assert isinstance(error, str) and error and "\n" not in error
    good = client.post("/v1/adult/score", json={"inputs": [row]})
    assert good.status_code == 200 and len(good.json()["score"]) == 1


def test_wrong_method_and_an_unknown_category_allowed(client, adult_run):
    r = client.get("/v1/adult/score")
    assert r.status_code == 405 and "GET" in r.json()["error"]
    row = dict(rows_of(adult_run, 1)[0], workclass="Astronaut")
    odd = client.post("/v1/adult/score", json={"inputs": [row], "unknown": "allow"}).json()
    usual = client.post("/v1/adult/score", json={"inputs": [dict(row, workclass="Private")]}).json()
    assert odd["score"][0] > usual["score"][0] and "workclass" in odd["top_columns"][0]


def test_the_token_guards_every_endpoint_but_health(digits_run):
    with TestClient(make_app(open_runs([digits_run], prepare=False), ServeOptions(token="s3cret"))) as c:
        assert c.get("/health").json() == {"status": "ok"}
        for r in (c.get("/v1/runs"), c.get("/"), c.post("/v1/digits/sample", json={"num": 1}),
                  c.post("/v1/digits/sample", json={"num": 1}, headers={"Authorization": "Bearer wrong"})):
            assert r.status_code == 401 and "token" in r.json()["error"]
        ok = c.post("/v1/digits/sample", json={"num": 1}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and c.get("/?token=s3cret").status_code == 200


def test_a_bug_is_one_line_500_and_the_docs_still_list_the_commands(digits_run, monkeypatch):
    from vaekit import serve

    def broken(served, body):
        raise RuntimeError("a bug\non two lines")

    with TestClient(make_app(open_runs([digits_run], prepare=False), ServeOptions())) as c:
        assert "/v1/{name}/{command}" in c.get("/openapi.json").json()["paths"]  # past Front, FastAPI's docs
        monkeypatch.setitem(serve.SINGLE, "sample", broken)
        r = c.post("/v1/digits/sample", json={"num": 1})
        assert r.status_code == 500 and r.json() == {"error": "internal error: RuntimeError: a bug on two lines"}
        monkeypatch.undo()
        assert len(c.post("/v1/digits/sample", json={"num": 2}).json()["samples"]) == 2


def tree_hash(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        h.update(str(f.relative_to(path)).encode() + (f.read_bytes() if f.is_file() else b""))
    return h.hexdigest()


def test_served_explorer_in_a_browser_and_kill_9_leaves_the_run(digits_run, tmp_path):
    from test_report import browser  # the report test's headless Chromium

    before = tree_hash(digits_run)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "vaekit", "serve", str(digits_run), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(url + "/health", server)
        assert httpx.get(url + "/docs").status_code == 200  # OpenAPI docs come with the app
        with browser() as b:
            b.get(url + "/")
            for _ in range(100):
                if b.find_elements("css selector", "#map circle"):
                    break
                time.sleep(0.1)
            points = b.find_elements("css selector", "#map circle")
            assert len(points) > 100  # the validation digits
            click = "arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))"  # points overlap
            b.execute_script(click, points[0])
            b.execute_script(click, points[5])
            for _ in range(100):
                if b.find_elements("css selector", "#path img"):
                    break
                time.sleep(0.1)
            assert b.find_elements("css selector", "#example img.pixels")
            assert len(b.find_elements("css selector", "#path img")) == 8
            severe = [e for e in b.get_log("browser") if e["level"] == "SEVERE"]
            assert not severe, severe
        for _ in range(20):  # answering when killed
            assert httpx.post(url + "/v1/digits/score", json={"inputs": [[[0.5] * 8] * 8]}).status_code == 200
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(10)
    assert tree_hash(digits_run) == before


def test_worker_processes_answer_large_requests_as_the_server_does(adult_run, client):
    rows = rows_of(adult_run, 400)  # a body over serve.LARGE: a worker's, once they are up
    body = {"inputs": rows, "seed": 3, "unknown": "allow"}  # (a 3,000-row run has not seen every category)
    expected = client.post("/v1/adult/score", json=body).json()  # the in-process answer
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "vaekit", "serve", str(adult_run), "--port", str(port),
                               "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(url + "/health", server)
        deadline = time.time() + 120
        while httpx.get(url + "/v1/runs").json()["adult"]["answered_by_workers"] < 3 and time.time() < deadline:
            answer = httpx.post(url + "/v1/adult/score", json=body, timeout=60).json()
            assert np.allclose(answer["score"], expected["score"], rtol=1e-5, atol=1e-4)
            assert answer["flagged"] == expected["flagged"] and answer["top_columns"] == expected["top_columns"]
        assert httpx.get(url + "/v1/runs").json()["adult"]["answered_by_workers"] >= 3
        bad = httpx.post(url + "/v1/adult/score", json={"inputs": rows[:-1] + [dict(rows[-1], age="old")]})
        assert bad.status_code == 422 and "'age'" in bad.json()["error"] and "\n" not in bad.json()["error"]
        assert httpx.post(url + "/v1/adult/score", json=body, timeout=60).status_code == 200
        workers = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) >= 2
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(10)
    deadline = time.time() + 30  # the workers leave with the server
    while time.time() < deadline and any(running(pid) for pid in workers):
        time.sleep(0.2)
    assert not any(running(pid) for pid in workers)


def running(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_serve_refuses_bad_setups_in_one_line(digits_run, tmp_path):
    one_line_error(vaekit_cli("serve", tmp_path / "missing"), "missing")
    (tmp_path / "token").write_text("\n")
    one_line_error(vaekit_cli("serve", digits_run, "--token-file", tmp_path / "token"), "empty")
    one_line_error(vaekit_cli("serve", digits_run, "--max-batch", "0"), "--max-batch")
    one_line_error(vaekit_cli("serve", digits_run, tmp_path / "gone", "--workers", "2"), "gone")


@pytest.fixture(scope="module", params=sorted(KINDS))
def tiny_served(request, tmp_path_factory):
    kind = request.param
    folder = tmp_path_factory.mktemp(f"serve-{kind}")
    data = tiny_data(kind, folder)
    train("--data", data, "--kind", kind, *SMALL[kind], "--epochs", "2", "--out", folder / kind)
    return kind, data, folder / kind


def test_every_kind_is_served_and_exported(tiny_served, tmp_path):
    """Each command /v1/runs lists answers a request in the kind's record form; the ONNX export
    matches PyTorch on the test inputs."""
    kind, data, run = tiny_served
    model = vaekit.open(run)
    with TestClient(make_app(open_runs([run]), ServeOptions())) as c:
        listed = c.get("/v1/runs").json()[kind]["commands"]
        x, y = model.run.inputs()
        records = {"image": lambda: c.post(f"/v1/{kind}/sample", json={"num": 3}).json()["samples"],
                   "table": lambda: json.loads(pd.read_csv(data).head(3).to_json(orient="records")),
                   "items": lambda: [["i1", "i2"], ["i3"], ["i4", "i5", "i6"]],
                   "smiles": lambda: ["CCO", "c1ccccc1", "CC(=O)O"],
                   "text": lambda: ["the cat sat", "a long letter", "her sister read"],
                   "series": lambda: json.loads(pd.read_csv(data).head(20).to_json(orient="records")),
                   "audio": lambda: [base64.b64encode(p.read_bytes()).decode() for p in sorted(data.glob("*.wav"))[:3]]
                   }[kind]()
        bodies = {"sample": {"num": 3}, "decode": {"z": [[0.0] * model.vae.latent_dim] * 2},
                  "recommend": {"inputs": records, "top": 3}, "interpolate": {"inputs": records, "steps": 3},
                  "optimize": {"property": "qed", "budget": 20, "top": 2},
                  "convert": {"inputs": records, "condition": ["speaker=bob"]}}
        for command in listed:
            r = c.post(f"/v1/{kind}/{command}", json=bodies.get(command, {"inputs": records}))
            if command == "optimize" and r.status_code == 422:  # 30 molecules fit no property predictor
                assert "too few" in r.json()["error"]
                continue
            assert r.status_code == 200, (kind, command, r.text)
            answer = r.json()
            assert answer and all(v is not None for v in answer.values()), (kind, command)
        assert {"encode", "score", "decode"} <= set(listed) and ("sample" in listed) == (kind != "items")
        if kind == "series":  # a stream's rows score as `vaekit anomaly` scores them in a file
            pd.DataFrame(records).to_csv(tmp_path / "rows.csv", index=False)
            assert main(["anomaly", str(run), "--data", str(tmp_path / "rows.csv"), "--out", str(tmp_path / "a.csv")]) == 0
            served = c.post(f"/v1/{kind}/score", json={"inputs": records}).json()
            cli = pd.read_csv(tmp_path / "a.csv")
            assert np.allclose(served["anomaly_score"], cli["anomaly_score"]) and served["flagged"] == list(cli["flagged"])
    if kind == "text":
        return  # as smiles (one sequence export)
    files = model.export(tmp_path / "onnx")
    assert {f.name for f in files} == {"encoder.onnx", "decoder.onnx", "model.json"}
    import onnxruntime as ort

    described = json.loads((tmp_path / "onnx" / "model.json").read_text())
    assert described["kind"] == kind and described["latent_dim"] == model.vae.latent_dim
    encoder = ort.InferenceSession(str(tmp_path / "onnx" / "encoder.onnx"))
    x_in = x.dense(torch.arange(len(x))) if kind == "items" else x
    feed = {"x": x_in.numpy() if kind not in ("smiles",) else x_in.long().numpy()}
    if "condition" in {i.name for i in encoder.get_inputs()}:  # an audio encoder takes no labels
        feed["condition"] = torch.nn.functional.one_hot(y.long(), described["num_classes"]).float().numpy()
    mu = encoder.run(None, feed)[0]
    want = model.vae.encode(x_in, model.vae.labels_for(y)).mean.detach().numpy()  # the model's own path
    assert np.allclose(mu, want, atol=1e-4, rtol=1e-4), np.abs(mu - want).max()


def test_export_needs_the_runs_test_inputs(digits_run, tmp_path):
    one_line_error(vaekit_cli("export", tmp_path / "nope", "--out", tmp_path / "o"), "nope")
