"""Serving: 10,000 points through MLflow's scoring server (``calliper serve`` / ``make serve``)
per request format, against in-process ``predict``.

The model is registered in a fresh store under ``.calliper/bench``: by default an untrained
model of the ``default`` preset's shape (four 128-d heads, 512 columns; throughput does not
depend on the weights), ``--heads 1`` the ``paper`` preset's shape (128 columns). The server is
started exactly as ``calliper serve`` starts it
(:func:`calliper_pipeline.tracking.serving.scoring_server_command`), on a free local port. Each
request is timed from sending it to having read the whole response (best and median of
``--repeats``); the response is then parsed and checked against in-process
``predict``. Sizes are the request and response bodies in bytes.

    python -m bench.bench_serving [--points 10000] [--repeats 3] [--heads 4]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import BENCH_HOME, Section, Table, best_of, log

LONDON_BOX_M = (503_000.0, 155_000.0, 562_000.0, 201_000.0)  # EPSG:27700, Greater London's extent


def _model(heads: int) -> Any:
    import torch

    from calliper_pipeline.config import EncoderConfig
    from calliper_pipeline.model.calliper import CalliperModel, ModelSpec

    torch.manual_seed(0)
    spec = ModelSpec(
        encoder=EncoderConfig(),
        text_dim=384,
        centre_m=(532_500.0, 178_000.0),
        metric_epsg=27700,
        text_encoder_id="x",
        city="london",
        bounds_m=LONDON_BOX_M,
        heads=heads,
    )
    return CalliperModel(spec).eval()


def _points(n: int) -> pd.DataFrame:
    from pyproj import Transformer

    rng = np.random.default_rng(0)
    min_x, min_y, max_x, max_y = LONDON_BOX_M
    x, y = rng.uniform(min_x, max_x, n), rng.uniform(min_y, max_y, n)
    lon, lat = Transformer.from_crs(27700, 4326, always_xy=True).transform(x, y)
    return pd.DataFrame({"lon": np.round(lon, 6), "lat": np.round(lat, 6)})


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    raise RuntimeError(f"server not up after {timeout_s} s:\n{log_path.read_text()[-2000:]}")


def _post(url: str, body: bytes, content_type: str) -> bytes:
    req = urllib.request.Request(url, body, {"Content-Type": content_type}, method="POST")
    with urllib.request.urlopen(req, timeout=600) as resp:
        return bytes(resp.read())


def _requests(points: pd.DataFrame) -> list[tuple[str, str, bytes, Callable[[Any], np.ndarray]]]:
    """(format, content type, body, predictions -> array) per request format."""

    def split(params: dict[str, Any] | None = None) -> bytes:
        body: dict[str, Any] = {"dataframe_split": points.to_dict(orient="split")}
        return json.dumps({**body, "params": params} if params else body).encode()

    def rows(preds: Any) -> np.ndarray:
        return np.array([list(p.values()) for p in preds], np.float32)

    def arrays(preds: Any) -> np.ndarray:
        return np.array(preds, np.float32)

    records = json.dumps({"dataframe_records": points.to_dict(orient="records")}).encode()
    csv = points.to_csv(index=False).encode()
    return [
        ("dataframe_split", "application/json", split(), rows),
        ("dataframe_records", "application/json", records, rows),
        ("CSV", "text/csv", csv, rows),
        ("dataframe_split + as_array", "application/json", split({"as_array": True}), arrays),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="1,000 points, one repeat")
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--heads", type=int, default=4, help="4: default preset (512-d); 1: paper")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    n = 1_000 if args.quick else args.points
    repeats = 1 if args.quick else args.repeats

    from calliper_pipeline.tracking.registry import log_and_register_model, promote_if_better
    from calliper_pipeline.tracking.runs import default_tracking, start_training_run
    from calliper_pipeline.tracking.serving import (
        load_pyfunc,
        predict_embeddings,
        scoring_server_command,
    )

    section = Section("Serving: 10,000 points through MLflow's scoring server")
    BENCH_HOME.mkdir(parents=True, exist_ok=True)
    points = _points(n)
    model = _model(args.heads)
    dim = model.spec.out_dim
    with tempfile.TemporaryDirectory(prefix="calliper-serving-", dir=BENCH_HOME) as tmp:
        tracking = default_tracking(Path(tmp) / "mlflow")
        log(f"serving: registering a {dim}-d model")
        with start_training_run(tracking, "london", "0" * 64, None, "bench", {}) as handle:
            version = log_and_register_model(handle, model, "london")
        promote_if_better(tracking, "london", version.version, 1.0, "x", True, 0.0, True)
        uri = "models:/calliper_london@champion"
        pyfunc = load_pyfunc(tracking, uri)
        want = predict_embeddings(pyfunc, points).to_numpy()
        best_df, med_df = best_of(lambda: pyfunc.predict(points), repeats)
        best_arr, med_arr = best_of(
            lambda: pyfunc.predict(points, params={"as_array": True}), repeats
        )

        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        cmd, env = scoring_server_command(tracking, uri, Path(sys.executable), env, port=port)
        log_path = Path(tmp) / "serve.log"
        with log_path.open("wb") as fh:
            proc = subprocess.Popen(
                cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )
        url = f"http://127.0.0.1:{port}"
        t0 = time.perf_counter()
        try:
            _wait(url, proc, log_path, 300.0)
            start_s = time.perf_counter() - t0
            shape = "default preset shape" if args.heads == 4 else f"{args.heads} head(s)"
            shape = "paper preset shape" if args.heads == 1 else shape
            table = section.table(
                f"{n:,} WGS84 points, {dim}-d model ({shape}, untrained), one uvicorn worker; "
                f"best (median) of {repeats}. In-process = "
                "`mlflow.pyfunc.load_model(...).predict` in this process; served = POST to "
                "/invocations until the whole response is read (client-side JSON parsing not "
                "included).",
                Table(("path", "seconds", "points/s", "request bytes", "response bytes")),
            )
            table.add("in-process predict (DataFrame)", f"{best_df:.2f} ({med_df:.2f})",
                      n / best_df, "–", "–")  # fmt: skip
            table.add("in-process predict (as_array)", f"{best_arr:.2f} ({med_arr:.2f})",
                      n / best_arr, "–", "–")  # fmt: skip
            for name, ctype, body, parse in _requests(points):
                log(f"serving: {name}")
                times, resp = [], b""
                _post(f"{url}/invocations", body, ctype)  # warm-up
                for _ in range(repeats):
                    t = time.perf_counter()
                    resp = _post(f"{url}/invocations", body, ctype)
                    times.append(time.perf_counter() - t)
                got = parse(json.loads(resp)["predictions"])
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
                best, med = min(times), statistics.median(times)
                table.add(f"served: {name}", f"{best:.2f} ({med:.2f})", n / best, len(body),
                          len(resp))  # fmt: skip
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)
    section.note(
        f"Server start to first healthy /ping: {start_s:.0f} s. Every served response was "
        "checked against in-process predict (rtol 1e-5). The cost of a served request is "
        "MLflow writing the JSON response with Python's pure-Python encoder (one call per "
        'value): the default `dataframe_*`/CSV answer is one `{"e000": ...}` object per '
        'point; `params: {"as_array": true}` answers one list per point, without the '
        "column names, which is the fastest answer the format allows."
    )
    if not args.no_write:
        section.write()
    else:
        print(section.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
