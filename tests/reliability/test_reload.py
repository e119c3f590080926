"""Hot reload: the served bundle is replaced under concurrent load with no failed call; a bad bundle changes nothing."""
import json
import shutil
import signal
import threading

import grpc
import pytest

from loadtest.serverproc import server_process
from senti.client import SentiClient
from tests.reliability.conftest import sample, serving

WAIT = 60  # seconds: a bound on waits for events, never a timing assertion
OLD_LABELS = ("negative", "positive")
NEW_LABELS = ("差评", "好评")


@pytest.fixture(scope="module")
def renamed_bundle(tiny_bundle, tmp_path_factory):
    """The tiny bundle under another name with other label names: each answer says which bundle gave it."""
    bundle = tmp_path_factory.mktemp("reload") / "renamed"
    shutil.copytree(tiny_bundle, bundle)
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["name"], meta["labels"] = "tiny-renamed", list(NEW_LABELS)
    (bundle / "bundle.json").write_text(json.dumps(meta, ensure_ascii=False))
    return bundle


class Load:
    """Callers that predict and stream without pause until stopped, keeping every answer and every error."""

    def __init__(self, client: SentiClient, callers: int = 4):
        self.client = client
        self.stop = threading.Event()
        self.answers: list[tuple[str, ...]] = []
        self.errors: list[BaseException] = []
        self._cond = threading.Condition()
        self.started = threading.Barrier(callers + 1)
        self.threads = [threading.Thread(target=self._predict if i % 2 else self._stream, args=(i,))
                        for i in range(callers)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        self.started.wait(WAIT)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(WAIT)

    def _keep(self, prediction) -> None:
        with self._cond:
            self.answers.append(tuple(sorted(prediction.scores)))
            self._cond.notify_all()

    def _fail(self, error: BaseException) -> None:
        with self._cond:
            self.errors.append(error)
            self._cond.notify_all()

    def wait_for(self, count: int) -> None:
        """Waits until `count` answers have come (or an error did)."""
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.answers) >= count or self.errors, WAIT)
        assert not self.errors, self.errors[:3]

    def _predict(self, caller: int) -> None:
        self.started.wait(WAIT)
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                for prediction in self.client.predict([f"第{caller}号第{n}次", "很好"]):
                    self._keep(prediction)
            except grpc.RpcError as error:
                self._fail(error)

    def _stream(self, caller: int) -> None:
        def items():
            n = 0
            while not self.stop.is_set():
                n += 1
                yield f"{caller}-{n}", f"流{caller}第{n}条"

        self.started.wait(WAIT)
        try:
            for result in self.client.stream(items()):
                if result.ok:
                    self._keep(result.prediction)
                else:
                    self._fail(RuntimeError(f"{result.error_code}: {result.error_message}"))
        except grpc.RpcError as error:
            self._fail(error)


def test_reload_under_load_fails_no_call_and_every_answer_is_one_bundles(tiny_bundle, renamed_bundle):
    with serving(tiny_bundle, cache_size=0) as (running, client):
        before = client.info()
        with Load(client) as load:
            load.wait_for(50)  # the old bundle is answering under load
            assert running.reload([renamed_bundle])
            load.wait_for(len(load.answers) + 50)  # and now the new one
        assert load.errors == []
        kinds = {tuple(sorted(OLD_LABELS)), tuple(sorted(NEW_LABELS))}
        assert set(load.answers) == kinds  # both bundles answered, and nothing else did
        assert load.answers[-1] == tuple(sorted(NEW_LABELS))
        after = client.info()
        assert after.models[0].name == "tiny-renamed" and after.bundle_version != before.bundle_version
        assert after.bundle_version.startswith("tiny-renamed@")
        assert client.predict("很好")[0].label in NEW_LABELS
        assert sample(running.metrics, "senti_reloads_total", {"result": "ok"}) == 1


def test_a_bundle_that_fails_to_load_leaves_the_old_one_serving(tiny_bundle, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    (broken / json.loads((broken / "bundle.json").read_text())["files"]["model"]).write_bytes(b"not onnx")
    with serving(tiny_bundle) as (running, client):
        before = client.info().bundle_version
        assert not running.reload([broken])
        assert not running.reload([tmp_path / "missing"])
        assert client.info().bundle_version == before
        assert client.predict("很好")[0].label in OLD_LABELS
        assert sample(running.metrics, "senti_reloads_total", {"result": "failed"}) == 2


@pytest.mark.slow
def test_sighup_reloads_the_configured_bundle(tiny_bundle, tmp_path):
    # The configured path is a symlink a deploy points at the new version; SIGHUP picks the new one up.
    current = tmp_path / "current"
    current.symlink_to(tiny_bundle, target_is_directory=True)
    with server_process(current) as (proc, port):
        with SentiClient(f"127.0.0.1:{port}", timeout=30) as client:
            before = client.info().bundle_version
            renamed = tmp_path / "v2"
            shutil.copytree(tiny_bundle, renamed)
            meta = json.loads((renamed / "bundle.json").read_text())
            meta["name"] = "tiny-v2"
            (renamed / "bundle.json").write_text(json.dumps(meta))
            current.unlink()
            current.symlink_to(renamed, target_is_directory=True)
            proc.send_signal(signal.SIGHUP)
            watch = threading.Event()
            for _ in range(600):  # the reload runs on the server's own thread: poll its answer, bounded
                if client.info().bundle_version != before:
                    break
                watch.wait(0.05)
            assert client.info().bundle_version.startswith("tiny-v2@")
            assert client.predict("很好")[0].label in OLD_LABELS
